#include "examples/kv/kv.h"

#include <algorithm>
#include <cassert>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace caracal::examples::kv {
namespace {

// Watches belong to sessions (they end when the session closes, and events
// need a session to go to), so a command without one has nobody to notify.
void RequireSession(std::string_view op, const Session& session, const std::string& prefix) {
  if (session.id() == 0) {
    throw OperationError(absl::FailedPreconditionError(absl::StrCat(
        std::string(op), " '", prefix,
        "': watches belong to client sessions, and this command was submitted without one (session 0)")));
  }
}

}  // namespace

void KvStateMachine::Configure(Executor& executor) {
  executor_ = &executor;
  executor.Register<Put>(this, &KvStateMachine::OnPut);
  executor.Register<Get>(this, &KvStateMachine::OnGet);
  executor.Register<Remove>(this, &KvStateMachine::OnRemove);
  executor.Register<CompareAndSet>(this, &KvStateMachine::OnCompareAndSet);
  executor.Register<Size>(this, &KvStateMachine::OnSize);
  executor.Register<Watch>(this, &KvStateMachine::OnWatch);
  executor.Register<Unwatch>(this, &KvStateMachine::OnUnwatch);
}

std::optional<std::string> KvStateMachine::Set(const std::string& key, std::string value, Index index,
                                               int64_t ttl_ms, std::optional<Commit<Put>> put) {
  std::optional<std::string> previous;
  auto [it, inserted] = map_.try_emplace(key);
  Value& v = it->second;
  if (!inserted) {
    previous = std::move(v.value);
    v.expiry.Cancel();                           // destroys a TTL's expiry, releasing its Put
    Value replaced = std::exchange(v, Value{});  // releases a Put without a TTL that wrote it
  }
  v.value = std::move(value);
  v.written_at = index;
  if (ttl_ms > 0) {
    // Copycat's TTL pattern: the expiry, not the map, holds the Put. An
    // overwrite or remove cancels it, which destroys it and so releases the
    // Put; otherwise it releases the Put when the key expires.
    assert(put.has_value());
    v.expiry = executor_->Schedule(std::chrono::milliseconds(ttl_ms),
                                   [this, key, index, commit = std::move(*put)]() mutable {
                                     Expire(key, index);
                                     commit.release();
                                   });
  } else if (put) {
    v.put = std::move(*put);
  }
  Notify(key, &v.value, index);
  return previous;
}

void KvStateMachine::Expire(const std::string& key, Index written_at) {
  auto it = map_.find(key);
  // An overwrite or remove cancels the expiry: the key is still this Put's.
  assert(it != map_.end() && it->second.written_at == written_at);
  if (it == map_.end() || it->second.written_at != written_at) return;
  map_.erase(it);
  ++expirations_;
  Notify(key, nullptr, executor_->index());
}

std::optional<std::string> KvStateMachine::Erase(const std::string& key, Index index) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  std::optional<std::string> previous = std::move(it->second.value);
  it->second.expiry.Cancel();
  map_.erase(it);
  Notify(key, nullptr, index);
  return previous;
}

void KvStateMachine::Notify(const std::string& key, const std::string* value, Index index) const {
  if (by_prefix_.empty()) return;
  // Every prefix of `key` (shortest first, including "" and the key itself)
  // that someone watches; a session watching several of them is told once.
  std::set<uint64_t> sessions;
  for (size_t length = 0; length <= key.size(); ++length) {
    auto it = by_prefix_.find(key.substr(0, length));
    if (it != by_prefix_.end()) sessions.insert(it->second.begin(), it->second.end());
  }
  if (sessions.empty()) return;
  const Changed event{.key = key, .value = value ? std::optional<std::string>(*value) : std::nullopt, .index = index};
  for (uint64_t id : sessions) watchers_.at(id).session.Publish(kChangedEvent, event);
}

std::optional<std::string> KvStateMachine::OnPut(Commit<Put> commit) {
  int64_t ttl = commit->ttl_ms;
  if (ttl < 0 || ttl > kMaxTtlMs) {
    throw OperationError(absl::InvalidArgumentError(
        absl::StrCat("kv.put '", commit->key, "': ttl_ms ", ttl, " is outside [0, ", kMaxTtlMs, "] (0: no expiry)")));
  }
  // The map keeps the key and value; the Commit stays only to hold its entry
  // live, so they move out of it rather than being copied.
  std::string key = std::move(commit.operation().key);
  std::string value = std::move(commit.operation().value);
  Index index = commit.index();
  return Set(key, std::move(value), index, ttl, std::move(commit));
}

std::optional<std::string> KvStateMachine::OnGet(Commit<Get> commit) {
  auto it = map_.find(commit->key);
  if (it == map_.end()) return std::nullopt;
  return it->second.value;
}

std::optional<std::string> KvStateMachine::OnRemove(Commit<Remove> commit) {
  // A tombstone: it changes state only by cancelling earlier puts, so it is
  // released at once (the compactor keeps it until those puts are gone).
  return Erase(commit->key, commit.index());
}

bool KvStateMachine::OnCompareAndSet(Commit<CompareAndSet> commit) {
  auto it = map_.find(commit->key);
  std::optional<std::string> current;
  if (it != map_.end()) current = it->second.value;
  if (current != commit->expected) return false;
  // The CAS entry defines the value now; the old Put is released. A CAS
  // result is small, so the value is re-stated without holding this commit
  // (a later snapshot covers it).
  Set(commit->key, commit->value, commit.index(), 0, std::nullopt);
  return true;
}

uint64_t KvStateMachine::OnSize(Commit<Size>) { return map_.size(); }

bool KvStateMachine::OnWatch(Commit<Watch> commit) {
  RequireSession(Watch::kName, commit.session(), commit->prefix);
  const uint64_t id = commit.session().id();
  const std::string prefix = commit->prefix;
  auto [it, inserted] = watchers_.try_emplace(id);
  if (inserted) it->second.session = commit.session();
  // Already watched: the first Watch stays live, this one is released on return.
  if (it->second.watches.contains(prefix)) return false;
  it->second.watches.emplace(prefix, std::move(commit));
  by_prefix_[prefix].insert(id);
  CheckInvariants();
  return true;
}

bool KvStateMachine::OnUnwatch(Commit<Unwatch> commit) {
  RequireSession(Unwatch::kName, commit.session(), commit->prefix);
  const uint64_t id = commit.session().id();
  auto it = watchers_.find(id);
  if (it == watchers_.end() || it->second.watches.erase(commit->prefix) == 0) return false;  // releases the Watch
  if (it->second.watches.empty()) watchers_.erase(it);
  auto sessions = by_prefix_.find(commit->prefix);
  sessions->second.erase(id);
  if (sessions->second.empty()) by_prefix_.erase(sessions);
  CheckInvariants();
  return true;
}

void KvStateMachine::OnClose(const Session& session) {
  auto it = watchers_.find(session.id());
  if (it == watchers_.end()) return;
  for (const auto& [prefix, watch] : it->second.watches) {
    auto sessions = by_prefix_.find(prefix);
    sessions->second.erase(session.id());
    if (sessions->second.empty()) by_prefix_.erase(sessions);
  }
  watchers_.erase(it);  // releases the session's Watch commands
  CheckInvariants();
}

void KvStateMachine::CheckInvariants() const {
#ifndef NDEBUG
  std::map<std::string, std::set<uint64_t>> expected;
  for (const auto& [id, watcher] : watchers_) {
    assert(id != 0 && watcher.session.id() == id && !watcher.watches.empty());
    for (const auto& [prefix, watch] : watcher.watches) expected[prefix].insert(id);
  }
  assert(expected == by_prefix_);
#endif
}

std::string KvStateMachine::Digest() const {
  std::string out;
  std::vector<const std::pair<const std::string, Value>*> entries;
  entries.reserve(map_.size());
  for (const auto& entry : map_) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  for (const auto* entry : entries) {
    const auto& [k, v] = *entry;
    absl::StrAppend(&out, k, "=", v.value, "@", v.written_at, v.expiry.active() ? "~" : "", ";");
  }
  if (!watchers_.empty()) {
    absl::StrAppend(&out, "|watches:");
    for (const auto& [id, watcher] : watchers_) {
      for (const auto& [prefix, watch] : watcher.watches) absl::StrAppend(&out, id, ":", prefix, "@", watch.index(), ";");
    }
  }
  return out;
}

}  // namespace caracal::examples::kv

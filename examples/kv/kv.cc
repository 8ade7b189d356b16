#include "examples/kv/kv.h"

#include "absl/strings/str_cat.h"

namespace caracal::examples::kv {

void KvStateMachine::Configure(Executor& executor) {
  executor_ = &executor;
  executor.Register<Put>(this, &KvStateMachine::OnPut);
  executor.Register<Get>(this, &KvStateMachine::OnGet);
  executor.Register<Remove>(this, &KvStateMachine::OnRemove);
  executor.Register<CompareAndSet>(this, &KvStateMachine::OnCompareAndSet);
  executor.Register<Size>(this, &KvStateMachine::OnSize);
}

std::optional<std::string> KvStateMachine::Set(const std::string& key, std::string value, Index index,
                                               int64_t ttl_ms, std::optional<Commit<Put>> put) {
  std::optional<std::string> previous;
  auto it = map_.find(key);
  if (it != map_.end()) {
    previous = std::move(it->second.value);
    it->second.expiry.Cancel();
    map_.erase(it);  // releases the Put that wrote the old value
  }
  Value& v = map_[key];
  v.value = std::move(value);
  v.written_at = index;
  if (put) v.put = std::move(*put);
  if (ttl_ms > 0) {
    v.expiry = executor_->Schedule(std::chrono::milliseconds(ttl_ms), [this, key, index] {
      auto it = map_.find(key);
      if (it != map_.end() && it->second.written_at == index) {
        map_.erase(it);
        ++expirations_;
      }
    });
  }
  return previous;
}

std::optional<std::string> KvStateMachine::Erase(const std::string& key) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  std::optional<std::string> previous = std::move(it->second.value);
  it->second.expiry.Cancel();
  map_.erase(it);
  return previous;
}

std::optional<std::string> KvStateMachine::OnPut(Commit<Put> commit) {
  std::string key = commit->key;
  std::string value = commit->value;
  int64_t ttl = commit->ttl_ms;
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
  return Erase(commit->key);
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

std::string KvStateMachine::Digest() const {
  std::string out;
  for (const auto& [k, v] : map_) absl::StrAppend(&out, k, "=", v.value, "@", v.written_at, v.expiry.active() ? "~" : "", ";");
  return out;
}

}  // namespace caracal::examples::kv

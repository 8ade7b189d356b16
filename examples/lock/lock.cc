#include "examples/lock/lock.h"

#include <algorithm>
#include <cassert>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace caracal::examples::lock {
namespace {

// Rejects the command being applied: nothing was changed, and the caller sees
// `code` and `message`.
[[noreturn]] void Reject(absl::StatusCode code, std::string message) {
  throw OperationError(absl::Status(code, message));
}

// Locks belong to sessions (they pass on when the session closes), so a
// command without one has no owner to give the lock to.
void RequireSessionAndName(const std::string& op, const Session& session, const std::string& name) {
  if (session.id() == 0) {
    Reject(absl::StatusCode::kFailedPrecondition, absl::StrCat(op, " '", name,
                        "': locks belong to client sessions, and this command was submitted without one (session 0)"));
  }
  if (name.empty()) Reject(absl::StatusCode::kInvalidArgument, absl::StrCat(op, ": the lock name must not be empty"));
}

}  // namespace

void LockStateMachine::Configure(Executor& executor) {
  executor_ = &executor;
  executor.Register<Lock>(this, &LockStateMachine::OnLock);
  executor.Register<TryLock>(this, &LockStateMachine::OnTryLock);
  executor.Register<Unlock>(this, &LockStateMachine::OnUnlock);
  executor.Register<Holder>(this, &LockStateMachine::OnHolder);
}

bool LockStateMachine::OnLock(Commit<Lock> commit) {
  RequireSessionAndName(std::string(Lock::kName), commit.session(), commit->name);
  return Acquire(std::move(commit));
}

bool LockStateMachine::OnTryLock(Commit<TryLock> commit) {
  RequireSessionAndName(std::string(TryLock::kName), commit.session(), commit->name);
  return Acquire(std::move(commit));
}

template <typename Op>
bool LockStateMachine::Acquire(Commit<Op> commit) {
  const uint64_t session = commit.session().id();
  const std::string name = commit->name;
  auto it = locks_.find(name);
  if (it == locks_.end()) {
    const Index index = commit.index();
    locks_.emplace(name, LockState{.holder = Claim{session, index, std::move(commit)}});
    claims_[session].insert(name);
    CheckInvariants();
    return true;
  }
  LockState& lock = it->second;
  // Not re-entrant: a second request by the holder or a waiter changes
  // nothing, and its commit is released on return.
  if (lock.holder.session == session) return true;
  if constexpr (std::is_same_v<Op, Lock>) {
    const bool waiting = std::any_of(lock.waiters.begin(), lock.waiters.end(),
                                     [&](const Commit<Lock>& w) { return w.session().id() == session; });
    if (!waiting) {
      lock.waiters.push_back(std::move(commit));
      claims_[session].insert(name);
    }
  }
  CheckInvariants();
  return false;
}

uint64_t LockStateMachine::OnUnlock(Commit<Unlock> commit) {
  RequireSessionAndName(std::string(Unlock::kName), commit.session(), commit->name);
  const uint64_t session = commit.session().id();
  auto it = locks_.find(commit->name);
  if (it == locks_.end() || it->second.holder.session != session) {
    Reject(absl::StatusCode::kPermissionDenied,
           absl::StrCat(std::string(Unlock::kName), " '", commit->name, "': session ", session,
                        " does not hold this lock, so it may not unlock it (",
                        it == locks_.end() ? std::string("the lock is free")
                                           : absl::StrCat("it is held by session ", it->second.holder.session),
                        ")"));
  }
  ForgetClaim(session, commit->name);
  uint64_t next = PassOn(it, commit.index());
  CheckInvariants();
  return next;  // the Unlock commit is released on return: a tombstone
}

HolderInfo LockStateMachine::OnHolder(Commit<Holder> commit) {
  auto it = locks_.find(commit->name);
  if (it == locks_.end()) return HolderInfo{};
  return HolderInfo{.session = it->second.holder.session, .waiters = it->second.waiters.size()};
}

void LockStateMachine::OnClose(const Session& session) {
  auto claims = claims_.find(session.id());
  if (claims == claims_.end()) return;
  const std::set<std::string> names = std::move(claims->second);
  claims_.erase(claims);
  // In name order, so that every server publishes the same events in the
  // same order.
  for (const std::string& name : names) {
    auto it = locks_.find(name);
    assert(it != locks_.end());
    if (it->second.holder.session == session.id()) {
      PassOn(it, executor_->index());
    } else {
      std::erase_if(it->second.waiters, [&](const Commit<Lock>& w) { return w.session().id() == session.id(); });
    }
  }
  CheckInvariants();
}

uint64_t LockStateMachine::PassOn(LockMap::iterator it, Index at) {
  LockState& lock = it->second;
  if (lock.waiters.empty()) {
    locks_.erase(it);  // releases the holder's command
    return 0;
  }
  Commit<Lock> next = std::move(lock.waiters.front());
  lock.waiters.pop_front();
  const Session session = next.session();  // the waiter's own Session reaches its client
  const Index index = next.index();
  lock.holder = Claim{session.id(), index, std::move(next)};  // releases the previous holder's command
  session.Publish(kGrantedEvent,
                  Granted{.name = it->first, .session = session.id(), .lock_index = index, .granted_at = at});
  return session.id();
}

void LockStateMachine::ForgetClaim(uint64_t session, const std::string& name) {
  auto it = claims_.find(session);
  if (it == claims_.end()) return;
  it->second.erase(name);
  if (it->second.empty()) claims_.erase(it);
}

void LockStateMachine::CheckInvariants() const {
#ifndef NDEBUG
  std::map<uint64_t, std::set<std::string>> expected;
  for (const auto& [name, lock] : locks_) {
    assert(lock.holder.session != 0);
    bool first = expected[lock.holder.session].insert(name).second;
    for (const Commit<Lock>& w : lock.waiters) {
      assert(w.session().id() != 0);
      first = expected[w.session().id()].insert(name).second && first;
    }
    assert(first && "a session holds or waits for a lock at most once");
  }
  assert(expected == claims_);
#endif
}

std::string LockStateMachine::Digest() const {
  std::string out;
  for (const auto& [name, lock] : locks_) {
    absl::StrAppend(&out, name, "=", lock.holder.session, "@", lock.holder.index);
    for (const Commit<Lock>& w : lock.waiters) absl::StrAppend(&out, ",", w.session().id(), "@", w.index());
    absl::StrAppend(&out, ";");
  }
  return out;
}

}  // namespace caracal::examples::lock

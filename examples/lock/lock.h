#ifndef CARACAL_EXAMPLES_LOCK_LOCK_H_
#define CARACAL_EXAMPLES_LOCK_LOCK_H_

// The lock example: named, exclusive, FIFO-fair locks owned by client
// sessions.
//
//   Lock{name}     acquires the lock if it is free (true); otherwise queues the
//                  session and answers false. When the lock later passes to
//                  it, the session receives a "granted" event (Granted).
//   TryLock{name}  acquires the lock if it is free (true); never queues.
//   Unlock{name}   only the holder may unlock; the lock passes to the first
//                  waiter, which receives "granted". Returns that session (0:
//                  the lock is free now).
//   Holder{name}   a query: the holder's session (0: free) and the queue length.
//
// Locks belong to sessions: a command without one (session 0) is rejected,
// and when a session expires or is closed every lock it holds passes on and
// it leaves every queue (SessionListener::OnClose). Locks are not re-entrant:
// the holder's Lock or TryLock answers true and changes nothing, a waiter's
// Lock answers false and keeps its place, and one Unlock releases.
//
// A rejected command (no session, empty name, Unlock by a non-holder) changes
// nothing; the caller sees an error status whose message says why:
// FailedPrecondition (no session), InvalidArgument (empty name),
// PermissionDenied (Unlock by a non-holder).
//
// Release tracking: the Lock (or TryLock) command that made a session the
// holder or a waiter is kept live while that claim stands, and released when
// the session unlocks, its wait ends or the session closes. Everything else
// is released at once. So replaying just the live entries, in order, rebuilds
// the same holders and queues: a holder's command precedes every current
// waiter's (it acquired a free lock before they queued, or was at the head of
// the queue), and waiters queue in the order their commands were applied.
// One thing a compactor must know: the "granted" event an Unlock (or an
// Unregister) publishes is derived from the Lock it releases. The framework
// keeps the publishing entry until the event is acknowledged, but nothing
// keeps that released Lock, and a replay without it publishes nothing.
//
// Invariants (checked by CheckInvariants() in debug builds):
//   * every lock in locks_ has a holder; a free lock is not in locks_;
//   * a session is the holder of a lock or waits for it at most once, never both;
//   * claims_[s] names exactly the locks s holds or waits for, and has no
//     empty sets.

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "caracal/operation.h"
#include "caracal/state_machine.h"

namespace caracal::examples::lock {

// The name of the event a waiter receives when the lock passes to it.
inline constexpr std::string_view kGrantedEvent = "granted";

struct Lock : Command<bool> {  // true: acquired now; false: queued, "granted" follows
  static constexpr std::string_view kName = "lock.lock";
  std::string name;
  CARACAL_FIELDS(name)
  // Live while the session holds or waits for the lock.
  CompactionMode compaction() const { return CompactionMode::kRelease; }
};

struct TryLock : Command<bool> {  // true: acquired now; false: held by someone, not queued
  static constexpr std::string_view kName = "lock.try_lock";
  std::string name;
  CARACAL_FIELDS(name)
  CompactionMode compaction() const { return CompactionMode::kRelease; }
};

struct Unlock : Command<uint64_t> {  // the session the lock passed to; 0: it is free now
  static constexpr std::string_view kName = "lock.unlock";
  std::string name;
  CARACAL_FIELDS(name)
  // It changes state only by ending the holder's Lock: a tombstone, released
  // at once, kept by the compactor until that Lock is gone.
  CompactionMode compaction() const { return CompactionMode::kTombstone; }
};

struct HolderInfo {
  uint64_t session = 0;  // the holder; 0: the lock is free
  uint64_t waiters = 0;  // sessions queued behind it
  CARACAL_FIELDS(session, waiters)
  friend bool operator==(const HolderInfo&, const HolderInfo&) = default;
};

struct Holder : Query<HolderInfo> {
  static constexpr std::string_view kName = "lock.holder";
  std::string name;
  CARACAL_FIELDS(name)
};

// Published as kGrantedEvent to the session a lock passed to.
struct Granted {
  std::string name;      // the lock
  uint64_t session = 0;  // the new holder: the session receiving the event
  Index lock_index = 0;  // the Lock command this grants (its response was false)
  Index granted_at = 0;  // where the lock passed: the Unlock, or the Unregister of the previous holder
  CARACAL_FIELDS(name, session, lock_index, granted_at)
  friend bool operator==(const Granted&, const Granted&) = default;
};

class LockStateMachine : public StateMachine, public SessionListener {
 public:
  void Configure(Executor& executor) override;

  bool OnLock(Commit<Lock> commit);
  bool OnTryLock(Commit<TryLock> commit);
  uint64_t OnUnlock(Commit<Unlock> commit);
  HolderInfo OnHolder(Commit<Holder> commit);

  // Expiry and unregistration both end in OnClose: the session's locks pass
  // on and it leaves every queue.
  void OnClose(const Session& session) override;

  // For tests: every lock, its holder and its queue, in a canonical form.
  std::string Digest() const;

 private:
  // The holder's claim: the command that acquired the lock, kept live while
  // the session holds it.
  struct Claim {
    uint64_t session = 0;
    Index index = 0;
    std::variant<Commit<Lock>, Commit<TryLock>> commit;
  };
  struct LockState {
    Claim holder;
    std::deque<Commit<Lock>> waiters;  // FIFO, each kept live while it waits
  };
  using LockMap = std::map<std::string, LockState>;

  template <typename Op>
  bool Acquire(Commit<Op> commit);
  // The holder of `it` let go at index `at`: the first waiter holds it now
  // (and is told), or the lock is free. Returns the new holder, 0 if none.
  uint64_t PassOn(LockMap::iterator it, Index at);
  void ForgetClaim(uint64_t session, const std::string& name);
  void CheckInvariants() const;

  Executor* executor_ = nullptr;
  LockMap locks_;
  std::map<uint64_t, std::set<std::string>> claims_;  // session -> locks it holds or waits for
};

}  // namespace caracal::examples::lock

#endif  // CARACAL_EXAMPLES_LOCK_LOCK_H_

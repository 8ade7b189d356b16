#ifndef CARACAL_FRAMEWORK_SERVER_EXECUTOR_IMPL_H_
#define CARACAL_FRAMEWORK_SERVER_EXECUTOR_IMPL_H_

// The machinery behind caracal::Executor: the handler table, the
// deterministic timer queue, the apply context and release tracking.
//
// Invariants:
//   - time_ never decreases; timers fire in (deadline, creation) order, each
//     before the first entry whose timestamp reaches its deadline;
//   - timers_ holds exactly the timers that will still fire: a cancelled one
//     is removed (and its callable destroyed) by Cancel(), so what it owns is
//     released then; each queued timer's State names its key in timers_;
//   - while a query runs, nothing may be scheduled or published (in_query_);
//   - handlers_ is only changed during StateMachine::Configure.
// State machine thread only.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "caracal/state_machine.h"
#include "framework/common/types.h"
#include "framework/server/release_tracker.h"

namespace caracal {

// What a Scheduled handle shares with the executor that queued it.
struct Scheduled::State {
  // The executor whose queue holds the timer; null once the timer will never
  // fire again (fired for good, cancelled, or the executor is gone).
  internal::ExecutorImpl* owner = nullptr;
  std::pair<LogTime, uint64_t> key;  // (deadline, creation sequence) in owner's queue
  bool cancelled = false;
  bool done = false;
};

namespace internal {

class ExecutorImpl : public SessionSink {
 public:
  explicit ExecutorImpl(server::ReleaseTracker* tracker) : tracker_(tracker), executor_(this) {}
  // Destroys the pending timers' callables (releasing what they hold into
  // the tracker, which must outlive this); handles still held elsewhere
  // become inert.
  ~ExecutorImpl() override;
  ExecutorImpl(const ExecutorImpl&) = delete;
  ExecutorImpl& operator=(const ExecutorImpl&) = delete;

  Executor& executor() { return executor_; }
  server::ReleaseTracker& tracker() { return *tracker_; }

  // Runs every timer due at or before `time`, as part of applying `index`.
  void FireTimers(Index index, LogTime time);
  // Applies a command entry at `index`: OK with the encoded response in
  // *result (replaced; its capacity is reused), or an error for the caller
  // (unknown operation, undecodable arguments, a handler that threw). Either
  // way the entry is applied. `operation` is read in place: no copy, and no
  // allocation beyond what the handler's own types need.
  absl::Status ApplyCommand(Index index, LogTime time, uint64_t session, std::string_view operation,
                            std::string* result);
  // An entry that carries no command (Initialize, Time, ...) applied at index.
  void ApplyEmpty(Index index, LogTime time);
  // Runs a query against the current state.
  absl::StatusOr<std::string> RunQuery(uint64_t session, std::string_view operation);

  // Side effects the last command asked for (LeaderSideEffect).
  std::vector<absl::AnyInvocable<void()>> TakeSideEffects();

  Index index() const { return index_; }
  LogTime time() const { return time_; }
  size_t pending_timers() const { return timers_.size(); }
  std::optional<LogTime> NextTimer() const {
    if (timers_.empty()) return std::nullopt;
    return timers_.begin()->first.first;
  }
  uint64_t timers_fired() const { return timers_fired_; }

  // Executor's implementation.
  void AddHandler(std::string_view name, bool is_command, Executor::Handler handler);
  Scheduled Schedule(LogTime delay, LogTime interval, absl::AnyInvocable<void()> fn);
  // Removes the timer from the queue and destroys its callable (unless it is
  // running: then it is dropped when it returns).
  void Cancel(Scheduled::State& state);
  void LeaderSideEffect(absl::AnyInvocable<void()> fn);
  void CheckMayChangeState(const char* what) const;

  // Executor::sessions(): the runner lists its open sessions, in id order.
  using SessionsFn = std::function<std::vector<Session>()>;
  void SetSessions(SessionsFn fn) { sessions_ = std::move(fn); }
  std::vector<Session> Sessions() const { return sessions_ ? sessions_() : std::vector<Session>{}; }

  // Session::Publish lands here; the runner decides where events go.
  using PublishFn = std::function<void(uint64_t session, Index index, std::string name, std::string payload)>;
  void SetPublisher(PublishFn fn) { publisher_ = std::move(fn); }
  void Publish(uint64_t session, std::string_view name, std::string payload) override;

 private:
  struct Registered {
    bool is_command = false;
    Executor::Handler handler;
  };
  struct Timer {
    LogTime interval = 0;  // 0: one-shot
    absl::AnyInvocable<void()> fn;
    std::shared_ptr<Scheduled::State> state;
  };
  std::string KnownOperations() const;
  // The handler registered for `name`, or an error naming what is known.
  absl::StatusOr<const Registered*> Lookup(std::string_view name, bool command) const;

  server::ReleaseTracker* tracker_;
  Executor executor_;
  absl::flat_hash_map<std::string, Registered> handlers_;
  std::map<std::pair<LogTime, uint64_t>, Timer> timers_;  // (deadline, creation sequence)
  uint64_t timer_sequence_ = 0;
  uint64_t timers_fired_ = 0;
  Index index_ = 0;
  LogTime time_ = 0;
  bool in_query_ = false;
  std::string current_operation_;
  codec::internal::ParsedMessage command_message_;  // reused by every command (parsed in place)
  codec::internal::ParsedMessage query_message_;
  std::vector<absl::AnyInvocable<void()>> side_effects_;
  PublishFn publisher_;
  SessionsFn sessions_;
};

}  // namespace internal
}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_SERVER_EXECUTOR_IMPL_H_

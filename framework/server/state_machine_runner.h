#ifndef CARACAL_FRAMEWORK_SERVER_STATE_MACHINE_RUNNER_H_
#define CARACAL_FRAMEWORK_SERVER_STATE_MACHINE_RUNNER_H_

// Applies committed entries to a user StateMachine, synchronously: decodes
// command entries, fires log-time timers, dispatches to the registered
// handlers, tracks releases, runs leader side effects, serves queries.
//
// It has no thread of its own: ApplyLoop runs it on the state machine thread
// in production, and the simulator runs it inline, which is what lets tests
// replay a log on fresh runners and compare everything they produce.
//
// Invariant: entries are applied in index order, each exactly once.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "caracal/state_machine.h"
#include "framework/common/types.h"
#include "framework/raft/raft.h"
#include "framework/server/executor_impl.h"
#include "framework/server/release_tracker.h"

namespace caracal::server {

class StateMachineRunner {
 public:
  // Calls state_machine->Configure. `applied` is the index state starts at
  // (the log's first index - 1).
  StateMachineRunner(std::unique_ptr<StateMachine> state_machine, NodeId id, Index applied = 0);
  ~StateMachineRunner();

  // Applies `entry` (entry.index == applied() + 1). For a command, the
  // response (or the error the caller should see); for other entries an
  // Aborted status saying no command was applied there.
  absl::StatusOr<std::string> Apply(const Entry& entry);
  // An index compaction removed (a released entry): nothing to apply.
  void ApplyHole(Index index);
  absl::StatusOr<std::string> Query(uint64_t session, std::string_view operation);
  // *Non-deterministic* role hooks; also decides where side effects run.
  void SetRole(raft::Role role, Term term, NodeId leader);

  Index applied() const { return applied_; }
  const ReleaseTracker& tracker() const { return tracker_; }
  const internal::ExecutorImpl& executor() const { return executor_; }
  StateMachine& state_machine() { return *state_machine_; }

 private:
  // Runs (leader of the entry's term) or drops the side effects asked for
  // while applying `entry`.
  void RunSideEffects(const Entry& entry);

  NodeId id_;
  Index applied_;
  ReleaseTracker tracker_;  // before the state machine: commits it holds release into it
  internal::ExecutorImpl executor_;
  std::unique_ptr<StateMachine> state_machine_;
  raft::Role role_ = raft::Role::kFollower;
  Term term_ = 0;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_STATE_MACHINE_RUNNER_H_

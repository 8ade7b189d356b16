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
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "caracal/state_machine.h"
#include "framework/common/types.h"
#include "framework/raft/raft.h"
#include "framework/server/executor_impl.h"
#include "framework/server/release_tracker.h"
#include "framework/server/sessions.h"

namespace caracal::server {

// The error a command (or a client's Unregister) gets when its session is
// not open: kUnauthenticated, which the client library reads as "my session
// expired" (an application handler's own errors never carry that code).
absl::Status SessionNotOpen(uint64_t session);
// The error a session command gets when it reaches the log ahead of its
// predecessor (kAborted: the client retries it, and the leader's sequencing
// puts the retry after the predecessor). It is not applied.
absl::Status CommandArrivedEarly(uint64_t session, uint64_t sequence);
// A KeepAlive entry's response lists the sessions it named that are not open
// (8 bytes little-endian each): the server tells those clients.
void AppendUnknownSession(uint64_t session, std::string* out);
std::vector<uint64_t> DecodeUnknownSessions(std::string_view bytes);

// A result as Bytes (one allocation: off the hot path) and back.
absl::StatusOr<Bytes> ResultBytes(absl::StatusOr<std::string> result);
absl::StatusOr<std::string> ResultString(const absl::StatusOr<Bytes>& result);

class StateMachineRunner {
 public:
  // Calls state_machine->Configure. `applied` is the index state starts at
  // (the log's first index - 1).
  StateMachineRunner(std::unique_ptr<StateMachine> state_machine, NodeId id, Index applied = 0);
  ~StateMachineRunner();

  // A response the entry produced, for the waiter at `index`.
  struct Response {
    Index index = 0;
    Term term = 0;  // of the entry at `index`
    absl::StatusOr<Bytes> result;
    // A session command's: the session's last event batch before the
    // response (the client delivers those events first).
    Index event_index = 0;
    // Where the command ran, when not at `index`: a duplicate's first copy.
    // The client orders events by it.
    Index ran_at = 0;
  };
  // Applies `entry` (entry.index == applied() + 1) and returns its response,
  // for the waiter at entry.index (a vector, reused, so that applying costs
  // no allocation). Commands run in log order, so every handler sees a
  // strictly increasing commit index; a session command that is a duplicate
  // of one already applied is answered from the response cache (it runs
  // once), one that is ahead of its predecessor is refused
  // (CommandArrivedEarly) and does not run.
  // A command's response is its result or the error its caller should see;
  // a Register answers OK (the session id is its index), a KeepAlive OK with
  // the unknown sessions (DecodeUnknownSessions), an Unregister OK or
  // SessionNotOpen; other entries answer Aborted ("no command was applied").
  //
  // Command results are carved out of an arena (BytesArena): applying a
  // command allocates nothing of the framework's own (its operation is read
  // in place, its result encoded into a reused buffer).
  void ApplyEntry(const Entry& entry, std::vector<Response>* out);  // replaces *out
  std::vector<Response> ApplyEntry(const Entry& entry);
  // ApplyEntry's response for entry.index itself.
  absl::StatusOr<std::string> Apply(const Entry& entry);
  // An index compaction removed (a released entry): nothing to apply.
  void ApplyHole(Index index);
  absl::StatusOr<std::string> Query(uint64_t session, std::string_view operation);
  // *Non-deterministic* role hooks; also decides where side effects run.
  void SetRole(raft::Role role, Term term, NodeId leader);

  Index applied() const { return applied_; }
  const SessionTable& sessions() const { return sessions_; }
  // Sessions whose keep-alives stopped, as of the current log time: the
  // leader proposes an Unregister{expired} for each.
  std::vector<uint64_t> SuspectSessions() const { return sessions_.Suspects(executor_.time()); }
  // The earliest log time at which a timer fires or a session turns suspect:
  // an idle leader commits a Time entry once its clock passes it.
  std::optional<LogTime> NextDeadline() const;
  // The (session, batch index) pairs that received events while the last
  // ApplyEntry ran, in publication order (each pair once).
  std::vector<std::pair<uint64_t, Index>> TakePublished() { return std::exchange(published_, {}); }
  // The sessions whose last applied sequence changed (or that closed) since
  // the last ClearSequenced (a set: bounded by the sessions, whether anyone
  // clears it or not).
  const absl::flat_hash_set<uint64_t>& sequenced() const { return sequenced_; }
  void ClearSequenced() { sequenced_.clear(); }
  const ReleaseTracker& tracker() const { return tracker_; }
  const internal::ExecutorImpl& executor() const { return executor_; }
  StateMachine& state_machine() { return *state_machine_; }

 private:
  // Runs (leader of the entry's term) or drops the side effects asked for
  // while applying `entry`.
  void RunSideEffects(const Entry& entry);
  absl::StatusOr<std::string> ApplyRegister(const Entry& entry);
  absl::StatusOr<std::string> ApplyKeepAlive(const Entry& entry);
  absl::StatusOr<std::string> ApplyUnregister(const Entry& entry);
  void ApplySessionCommand(const Entry& entry, uint64_t session, uint64_t sequence, std::string_view operation,
                           std::vector<Response>* out);
  // The result of a command that ran: its bytes (copied from result_buffer_
  // into the arena) or its error.
  absl::StatusOr<Bytes> Result(absl::Status status);
  void OnPublish(uint64_t session, Index index, std::string name, std::string payload);
  SessionListener* listener();

  NodeId id_;
  Index applied_;
  ReleaseTracker tracker_;  // before the state machine: commits it holds release into it
  SessionTable sessions_;
  internal::ExecutorImpl executor_;
  std::unique_ptr<StateMachine> state_machine_;
  raft::Role role_ = raft::Role::kFollower;
  Term term_ = 0;
  std::vector<std::pair<uint64_t, Index>> published_;
  absl::flat_hash_set<uint64_t> sequenced_;
  std::string result_buffer_;  // a handler's encoded result, reused
  BytesArena results_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_STATE_MACHINE_RUNNER_H_

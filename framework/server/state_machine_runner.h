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
    // Where the command ran, when not at `index`: a duplicate's first copy,
    // a held-back command's gap filler. The client orders events by it.
    Index ran_at = 0;
  };
  // Applies `entry` (entry.index == applied() + 1) and returns the responses
  // it produced: usually one, for entry.index; none for a command held back
  // for sequencing; several when it fills a gap and held commands run too.
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
  // ApplyEntry's response for entry.index itself (Unavailable if held back).
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
  const ReleaseTracker& tracker() const { return tracker_; }
  const internal::ExecutorImpl& executor() const { return executor_; }
  StateMachine& state_machine() { return *state_machine_; }

 private:
  // Runs (leader of the entry's term) or drops the side effects asked for
  // while applying `entry`.
  void RunSideEffects(const Entry& entry);
  absl::StatusOr<std::string> ApplyRegister(const Entry& entry);
  absl::StatusOr<std::string> ApplyKeepAlive(const Entry& entry);
  // Also answers the commands the session still held back (SessionNotOpen).
  absl::StatusOr<std::string> ApplyUnregister(const Entry& entry, std::vector<Response>* out);
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
  std::string result_buffer_;  // a handler's encoded result, reused
  BytesArena results_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_STATE_MACHINE_RUNNER_H_

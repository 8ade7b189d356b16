#ifndef CARACAL_FRAMEWORK_SERVER_APPLY_LOOP_H_
#define CARACAL_FRAMEWORK_SERVER_APPLY_LOOP_H_

// The state machine thread. It applies committed entries in log order, in
// batches (everything committed since the last wake-up, read from the log in
// chunks), fires log-time timers, runs queries once the state they need is
// applied, and delivers role changes to the state machine between entries.
//
// Other threads talk to it through a mutex-protected inbox: Commit (raise the
// commit target), ExpectResult / ExpectOutcome / ExpectRouted (who waits for
// the response at an index: a callback, or a client request whose outcome goes
// to the RouteSink in batches), Query, RoleChanged. Callbacks run on the state
// machine thread and must only hand results on (post to another thread), never
// block. Outcomes leave in apply order, routed or not, and before the events
// published after them.
//
// Invariants: applied_ only grows, one index at a time, each index exactly
// once; entries are read only at or below the commit target, which only grows
// and never exceeds what the raft core reported durable.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "caracal/operation.h"
#include "caracal/state_machine.h"
#include "framework/common/ring_buffer.h"
#include "framework/common/types.h"
#include "framework/raft/raft.h"
#include "framework/server/state_machine_runner.h"
#include "framework/storage/log.h"

namespace caracal::server {

using ResultCallback = std::function<void(absl::StatusOr<std::string>)>;

// What a waiter or a query learns: the result, the index it belongs to (where
// a command ran — its own index, or for a duplicate the index that produced
// the result; the applied index a query read at)
// and, for a session command, the session's last event batch before it.
struct Outcome {
  absl::StatusOr<Bytes> result;
  Index index = 0;
  Index event_index = 0;
};
using OutcomeCallback = std::function<void(Outcome)>;

// A client request waiting at an index (ExpectRouted): its outcome goes to the
// RouteSink with the others of the same batch, so a command costs no callback
// object of its own.
struct Route {
  uint64_t connection = 0;
  uint64_t request_id = 0;
};
struct RoutedOutcome {
  Route route;
  Outcome outcome;
};
// Takes the outcomes of a batch (it may swap the vector's contents out; the
// loop reuses what is left). Runs on the state machine thread, and for
// failures on the thread calling Stop or ExpectRouted, possibly at the same
// time: it must be thread-safe. Hand them on, never block. Routed and
// callback outcomes leave the loop in apply order.
using RouteSink = std::function<void(std::vector<RoutedOutcome>& batch)>;

// Event delivery: `subscriber` (a client connection) receives `batch` of
// `session`. Runs on the state machine thread; hand it on, never block.
using EventSink = std::function<void(uint64_t subscriber, uint64_t session, const EventBatch& batch)>;

// What the leader needs to keep log time and sessions moving (DESIGN.md
// section 4), as of the last applied entry.
struct LeaderDuties {
  std::vector<uint64_t> suspects;       // sessions to propose an Unregister{expired} for
  std::optional<LogTime> next_deadline; // commit a Time entry once the clock passes it
  Index applied = 0;
};

struct ApplyStats {
  Index applied = 0;
  Index commit_target = 0;          // queue depth = commit_target - applied
  uint64_t entries_applied = 0;
  uint64_t batches = 0;             // wake-ups that applied at least one entry
  uint64_t commands = 0;
  uint64_t queries = 0;
  uint64_t timers_fired = 0;
  size_t pending_queries = 0;
  size_t live_commits = 0;
  double apply_latency_avg_us = 0;  // commit notification -> applied, per entry
  double apply_latency_max_us = 0;
};

class ApplyLoop {
 public:
  ApplyLoop(const storage::Log* log, std::unique_ptr<StateMachine> state_machine, NodeId id);
  ~ApplyLoop();
  ApplyLoop(const ApplyLoop&) = delete;
  ApplyLoop& operator=(const ApplyLoop&) = delete;

  void Start();
  // Fails every waiter and pending query, then joins the thread. Idempotent.
  void Stop();

  // Entries up to `commit` are committed and durable: apply them.
  void Commit(Index commit);
  // `done` gets the response of the command at `index` if the entry applied
  // there has term `term`; Aborted otherwise (a leader change replaced it).
  void ExpectResult(Index index, Term term, ResultCallback done);
  void ExpectOutcome(Index index, Term term, OutcomeCallback done);
  // The same for a client request: the outcome goes to the RouteSink.
  void ExpectRouted(Index index, Term term, Route route);
  // Set before Start().
  void SetRouteSink(RouteSink sink);
  // Runs the query once applied >= min_index.
  void Query(uint64_t session, std::string operation, Index min_index, ResultCallback done);
  // Runs the query once applied >= min_index and the session has applied
  // every command up to `sequence` (those its client submitted before the
  // query: a session's query sees its own earlier commands, at every
  // consistency level). A query whose session's commands do not arrive
  // within the query wait timeout fails with Unavailable (its client then
  // resends its pending commands and queries). A session this server does
  // not know (closed, or registered above what it applied) waits only for
  // the index.
  void QueryOutcome(uint64_t session, uint64_t sequence, std::string operation, Index min_index,
                    OutcomeCallback done);
  // How long a query may wait for its session's commands (default 5 s).
  void SetQueryWaitTimeout(std::chrono::milliseconds timeout);

  // The last sequence `session` applied, as of the last applied batch; 0 if
  // the session is not open (or not yet registered) here. Any thread.
  uint64_t AppliedSequence(uint64_t session) const;
  // Called on the state machine thread after a batch changed what
  // AppliedSequence answers (the leader's sequencer may then let held
  // commands go). Hand it on, never block. Set before Start().
  void SetSequenceListener(std::function<void()> listener);
  void RoleChanged(raft::Role role, Term term, NodeId leader);

  // ---- events ----
  // Set before Start().
  void SetEventSink(EventSink sink);
  // From now on `subscriber` receives `session`'s batches: first every stored
  // batch after `after` (a resend), then each new one as it is applied. One
  // subscriber per session (the latest wins). `done` runs after the resend
  // was handed to the sink: OK, or SessionNotOpen.
  void Subscribe(uint64_t session, uint64_t subscriber, Index after, std::function<void(absl::Status)> done);
  // Drops every subscription of `subscriber` (its connection closed).
  void Unsubscribe(uint64_t subscriber);

  LeaderDuties Duties() const;

  ApplyStats Stats() const;
  Index applied() const;

 private:
  struct Waiter {
    Term term = 0;
    OutcomeCallback done;  // empty: a routed waiter
    Route route;
  };
  // Waiters by index: a ring over [base_, base_ + size) that grows by
  // doubling and then stops allocating (a leader proposes at increasing
  // indexes; slots of indexes nobody waits for stay empty, term 0).
  class WaiterRing {
   public:
    // The waiter at `index`, if any.
    Waiter* Find(Index index);
    void Put(Index index, Waiter waiter);
    // Removes and returns the waiter at `index` (term 0 if none).
    Waiter Take(Index index);
    template <typename F>
    void ForEach(F f) {
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].term != 0) f(base_ + i, slots_[i]);
      }
    }
    void Clear() { slots_.clear(); }

   private:
    RingBuffer<Waiter> slots_;
    Index base_ = 0;
  };
  struct PendingQuery {
    uint64_t session = 0;
    uint64_t sequence = 0;  // the session's commands it must see
    std::string operation;
    OutcomeCallback done;
    int64_t since = 0;       // when its index was reached (steady us)
    int64_t wait_until = 0;  // blocked on its session's commands until (steady us)
  };
  struct Subscription {
    uint64_t session;
    uint64_t subscriber;  // 0: unsubscribe every session of `after`'s subscriber
    Index after;
    std::function<void(absl::Status)> done;
  };
  struct RoleEvent {
    raft::Role role;
    Term term;
    NodeId leader;
  };

  void Expect(Index index, Waiter waiter);
  void Run();
  // Applies [applied_+1, target]; returns false on a log read error.
  bool ApplyUpTo(Index target);
  void RunQueries();
  // Runs `q` if its session applied its commands, fails it if it waited too
  // long; false if it must go on waiting.
  bool TryQuery(PendingQuery& q, int64_t now);
  void RunQuery(PendingQuery& q);
  // Publishes the sequences of the sessions this batch touched (AppliedSequence).
  void PublishSequences();
  void CompleteWaiter(Index index, Term term, absl::StatusOr<Bytes> result, Index event_index = 0,
                      Index ran_at = 0);
  void Deliver(Waiter& waiter, Outcome outcome);
  // Hands the routed outcomes collected so far to the sink.
  void FlushRouted();
  void HandleSubscriptions(std::deque<Subscription> subscriptions);
  void DeliverPublished();

  const storage::Log* log_;
  const NodeId id_;
  StateMachineRunner runner_;  // state machine thread only

  mutable std::mutex mu_;
  std::condition_variable wake_;
  Index commit_target_ = 0;
  WaiterRing waiters_;
  RouteSink route_sink_;
  std::vector<RoutedOutcome> routed_;  // state machine thread: this batch's, not yet handed on
  // Reused from batch to batch (state machine thread).
  std::vector<Entry> read_entries_;
  std::vector<HoleRun> read_holes_;
  std::vector<StateMachineRunner::Response> responses_;
  std::multimap<Index, PendingQuery> queries_;  // by the index each needs applied
  std::vector<PendingQuery> blocked_;  // state machine thread: index reached, waiting for their session's commands
  int64_t query_wait_us_ = 5'000'000;
  size_t blocked_count_ = 0;  // blocked_.size(), under mu_ (for Stats)
  absl::flat_hash_map<uint64_t, uint64_t> applied_sequences_;  // session -> last applied sequence (under mu_)
  std::function<void()> sequence_listener_;
  std::deque<RoleEvent> role_events_;
  std::deque<std::pair<Index, int64_t>> commit_times_;  // (commit target, when notified, us)
  bool stopping_ = false;
  ApplyStats stats_;
  LeaderDuties duties_;
  std::deque<Subscription> subscriptions_;  // inbox
  EventSink sink_;
  std::map<uint64_t, uint64_t> subscribers_;  // session -> subscriber (state machine thread only)
  std::thread thread_;

};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_APPLY_LOOP_H_

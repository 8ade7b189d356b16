#ifndef CARACAL_TESTS_SIM_SESSION_CLIENTS_H_
#define CARACAL_TESTS_SIM_SESSION_CLIENTS_H_

// Simulated clients of the session layer, living in a sim::World: driven by
// its event queue and its PRNG, so a seed still replays exactly.
//
// The servers' side is modelled on ClientService and ApplyLoop: a request
// reaches one server; a server that does not lead answers Unavailable (with
// its view of the leader); a leader proposes the entry and keeps a waiter at
// (its index, its term); when that server applies the index the waiter gets
// the runner's response if the term matches, Aborted otherwise (the entry was
// replaced after a leader change). Keep-alives that reach a leader together
// are batched into one KeepAlive entry. A client subscribes to its session's
// events at the server it talks to (ResetEvents: every stored batch after an
// index is resent); that server then pushes each new batch as it applies it.
// A crash loses a server's waiters, subscriptions, pending keep-alives,
// sequencer and waiting queries.
//
// Commands go through the production server::CommandSequencer, driven as
// ClientService drives it: one per server, its knowledge tied to the raft
// term (Reset, holding ones refused "not the leader", when the term changes
// or the server stops leading); Offer with the session's last applied
// sequence from the server's runner; what it lets through is proposed in
// order, and a failed proposal refuses that one and the rest and resets it.
// Held commands are re-checked (Applied) when the server applies entries and
// at its duties every heartbeat interval, where Expire refuses those held
// past the hold timeout (on the world's clock). A client resends a command
// the sequencer refused, like any other Unavailable/Aborted.
//
// Client to server and server to client messages travel with the world's
// faults while they are on (loss, duplication, delay hence reordering); on
// top of that, a client may be cut from one server for a while (at most
// ClientOptions::max_cut, so a client is never silenced for a session
// timeout). A lost push is like a TCP connection that broke silently: the
// client re-subscribes at every keep-alive.
//
// Each client does what DESIGN.md section 11 asks of a real one:
//   - registers a session (a Register entry; the session id is its index);
//   - keeps it alive with KeepAlive entries every keep_alive_interval,
//     carrying the highest contiguous sequence whose response it delivered
//     and the last event batch it delivered;
//   - pipelines commands (session, sequence 1, 2, 3, ...), at most `window` in
//     flight; a request without an answer within request_timeout, or answered
//     Unavailable/Aborted, is retried with the SAME sequence on another server
//     (the leader the refusal named, else any other);
//   - delivers, in this order: responses in sequence order; before a
//     response, every event batch up to its event_index; a batch only when no
//     command is pending whose response could precede it. A batch whose
//     `previous` is not the last one it has makes it ask for a resend.
// Everything a client delivers is recorded, for the checks.
//
// Queries (ClientOptions::make_query), as ClientService and ApplyLoop serve
// them. A query carries the sequence of the last command its client
// submitted before it (those may still be in flight: queries are pipelined
// after commands) and the highest index its client has seen. LINEARIZABLE:
// only a leader takes it; it asks its raft core for a read index
// (World::RequestReadAt). LINEARIZABLE_LEASE: the same, or the leader's
// lease read index while its lease holds. SEQUENTIAL: any server, with no
// read index. Then the server waits until it applied max(read index, the
// client's index) AND the session applied the query's sequence (a session it
// does not know: until it applied the session's Register), runs the query on
// its runner and answers with its applied index; one that waits for its
// session's commands longer than ClientOptions::query_wait is refused
// Unavailable. A server that loses leadership before the confirmation
// answers Unavailable; a crash loses the query. A client has one query in
// flight at a time; each picks its consistency at random with
// ClientOptions::mixed_consistency (else LINEARIZABLE). LINEARIZABLE ones go
// to the server the client talks to, SEQUENTIAL ones there or to a random
// server; a refusal names the leader: the retry goes there. A query refused
// or unanswered within request_timeout is retried as a new operation (reads
// change nothing, so that is safe), on another server unless a refusal named
// one; on Unavailable the client also resends its pending commands, as the
// real client does when it reconnects. (The real client also completes
// queries and commands in submission order; this model records a query's
// answer when it arrives.)
//
// For a linearizability check, every client records each operation it
// issued (ClientRecord::operations): when it was invoked, when the answer
// arrived and what it was. A command is one operation however often it is
// resent (same sequence: it takes effect once); a query attempt is one
// operation. One still pending at the end (its session was lost, its client
// killed) may or may not have taken effect.
//
// The checks (CheckHistories, after Drain):
//   - each client delivered its responses in sequence order, each exactly
//     once, each after every batch of an earlier index (its event_index) and
//     before every later batch;
//   - every query answered OK read at an index at or above the index where
//     each of its session's commands submitted before it ran (where the
//     replay ran it): a session's query sees its earlier commands, at every
//     consistency level;
//   - each client delivered exactly the event batches the committed log
//     publishes to its session (a replay of the longest log on a fresh
//     runner), once each and in order, across every failover;
//   - (ClientOptions::check_releases) the entries the replay leaves live are
//     exactly the ones open sessions need: no leaked hold, no early release;
//   - no session of a live client was expired (neither in the log nor as the
//     client was told) -- with ClientOptions::excuse_unreachable_expiry,
//     unless nothing from it got into the log for a whole timeout -- and a
//     killed client's session was expired by an Unregister{expired} entry,
//     after it was killed.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "caracal/operation.h"
#include "framework/server/command_sequencer.h"
#include "framework/server/sessions.h"
#include "framework/server/state_machine_runner.h"
#include "tests/sim/sim.h"

namespace caracal::sim {

struct ClientOptions {
  int clients = 3;
  uint64_t session_timeout_ms = 5'000;
  Micros keep_alive_interval = 0;      // 0: a quarter of the session timeout
  Micros request_timeout = 1'000'000;  // no answer within this: retry elsewhere
  Micros start_within = 300'000;       // each client starts at a random time before this
  int window = 4;                      // commands in flight per client
  Micros command_gap_max = 200'000;    // next command within this (uniform)
  bool submit_commands = true;
  bool cut_client_links = false;  // while faults are on
  Micros max_cut = 1'000'000;
  // The operation bytes of a client's n-th command (n = 1, 2, ...).
  std::function<std::string(std::mt19937_64&, int client, uint64_t n)> make_operation;
  // A deliberately broken client (for the test that the checks catch it): a
  // retry takes a NEW sequence number instead of the same one.
  bool bug_new_sequence_on_retry = false;
  // An expiry of a live client's session passes the check if the log shows
  // no sign of life from it (a keep-alive, a new leader) for a whole timeout
  // before the expiry was proposed: the network kept its keep-alives out.
  // Off, any expiry of a live client's session is a violation.
  bool excuse_unreachable_expiry = false;
  // The state machine keeps no Commit: after the replay, the entries still
  // live must be exactly those the session layer needs (CheckReleases).
  bool check_releases = false;
  // Debugging a seed: print what this client sends and receives (0: none).
  int trace_client = 0;
  // Queries: the bytes of a client's n-th query (n = 1, 2, ...); null: none.
  // A submission is a query with probability query_share (when the client
  // has none in flight), else a command.
  std::function<std::string(std::mt19937_64&, int client, uint64_t n)> make_query;
  double query_share = 0.0;
  // Off: every query is LINEARIZABLE. On: each query picks LINEARIZABLE,
  // LINEARIZABLE_LEASE or SEQUENTIAL at random (SEQUENTIAL ones go to the
  // client's server or a random one; the checks then cannot ask for
  // linearizability, only for session order).
  bool mixed_consistency = false;
  // How long a server lets a query wait for its session's earlier commands
  // before answering Unavailable (ApplyLoop::SetQueryWaitTimeout). 0: half
  // the request timeout, so that the client hears the refusal (and resends
  // its commands) before it gives up on the query itself.
  Micros query_wait = 0;
  // The leader's CommandSequencer (as ClientServiceOptions::sequencer).
  server::CommandSequencerOptions sequencer;
  // A deliberately broken server (for the test that the linearizability
  // check catches it): any server, leader or not, answers a query from the
  // state it has applied, without a read index (nor the client's index; it
  // still waits for the session's own earlier commands).
  bool bug_stale_reads = false;
  // A deliberately broken server (for the test that the session-order check
  // of queries catches it): a query runs as soon as its index is applied,
  // without waiting for the session's earlier commands (what the servers
  // did before queries carried a sequence).
  bool bug_query_ignores_sequence = false;
  // The control for the sequencer: leaders propose commands as they arrive,
  // without a CommandSequencer (what ClientService did before b4b5f99).
  bool skip_sequencer = false;
};

// One operation a client issued, for a linearizability check.
struct ClientOperation {
  enum class Kind { kCommand, kQuery };
  // kPending: no answer (yet); it may take effect at any time after `invoked`,
  // or never. kUnknown: a query given up on (timed out). kRefused: a query a
  // server refused before running it: it surely did not happen.
  enum class Outcome { kPending, kOk, kRefused, kUnknown };
  Kind kind = Kind::kCommand;
  uint64_t n = 0;         // the client's command or query number
  std::string operation;  // the operation bytes
  Micros invoked = 0;
  Micros completed = 0;  // kOk, kRefused, kUnknown: when the client learned it
  Outcome outcome = Outcome::kPending;
  std::string result;  // kOk: the encoded result
  // A query: its consistency, the sequence of the last command its client
  // submitted before it (the commands it must see), and, kOk, the applied
  // index of the server that ran it (the state it read).
  Consistency consistency = Consistency::kLinearizable;
  uint64_t sequence = 0;
  Index index = 0;
};

// One thing a client handed to its application, in delivery order.
struct Delivery {
  enum class Kind { kResponse, kEvents };
  Kind kind = Kind::kResponse;
  Micros at = 0;
  // A response:
  uint64_t sequence = 0;
  uint64_t command = 0;  // which of the client's commands (n of make_operation)
  Index index = 0;       // the response's index (the command entry's)
  Index event_index = 0;
  std::string result;
  // An event batch (index is the batch's):
  Index previous = 0;
  std::vector<server::PublishedEvent> events;
};

// What a client did, for the checks.
struct ClientRecord {
  int id = 0;
  uint64_t session = 0;  // the session it uses (0: never registered)
  bool killed = false;
  Micros killed_at = 0;
  std::vector<Delivery> delivered;
  std::vector<ClientOperation> operations;  // in invocation order
  std::vector<std::string> errors;  // what it was told that a correct server never says to it
  std::string lost;                 // it was told its session is gone
  std::string expiry_excused;       // its session expired because nothing got through (see ClientOptions)
  uint64_t submitted = 0;
  uint64_t retries = 0;
  uint64_t keep_alives_ok = 0;
  uint64_t resends_asked = 0;
};

struct ClientStats {
  uint64_t requests = 0;
  uint64_t responses_delivered = 0;
  uint64_t batches_delivered = 0;
  uint64_t events_delivered = 0;
  uint64_t retries = 0;
  uint64_t aborted = 0;     // a waiter answered Aborted (its entry replaced)
  uint64_t sequencer_held = 0;     // commands a leader's CommandSequencer held for a predecessor
  uint64_t sequencer_refused = 0;  // commands it refused (held too long or too many, replaced, leadership lost)
  uint64_t early_refused = 0;      // in the replayed log: commands refused as ahead of their predecessor
  uint64_t duplicates = 0;  // in the replayed log: retries answered from the response cache
  uint64_t gaps = 0;        // batches that arrived after a gap
  uint64_t cuts = 0;
  uint64_t orphan_sessions = 0;      // registered twice by a retried Register: one is never used
  uint64_t expired_sessions = 0;     // in the replayed log
  uint64_t expired_unreachable = 0;  // live clients' sessions the network silenced for a timeout
  uint64_t queries_answered = 0;
  uint64_t queries_refused = 0;    // not the leader, or leadership lost before the read index was confirmed
  uint64_t queries_timed_out = 0;
  // Answered, by consistency (Consistency's order: LINEARIZABLE,
  // LINEARIZABLE_LEASE, SEQUENTIAL).
  uint64_t queries_by_level[3] = {0, 0, 0};
  uint64_t lease_reads = 0;          // LINEARIZABLE_LEASE served from the leader's lease, without a round
  uint64_t queries_waited = 0;       // reached their index before their session's commands applied
  uint64_t queries_wait_refused = 0;  // ... and were refused Unavailable after the query wait
};

class SessionClients : public WorldObserver {
 public:
  // A leader stamps entries with its clock as of its last tick (every 5 ms).
  static constexpr Micros kClockSlack = 20'000;

  SessionClients(World* world, ClientOptions options);
  ~SessionClients() override;

  void Start();
  // Stops submitting new commands (the ones in flight go on).
  void StopSubmitting() { submitting_ = false; }
  // Queues a query for `client` (after the one in flight, if any), whether
  // or not it is submitting: for final reads. Drain waits for it.
  void SubmitQuery(int client, std::string operation);
  // The client has a session and neither was killed nor lost it.
  bool Alive(int client) const;
  // The client stops for good: no more requests, keep-alives or deliveries.
  void Kill(int client);
  // Stops submitting, then runs until every live client has a response for
  // everything it submitted and every event published to its session, and
  // every server applied everything (or `limit` passes).
  absl::Status Drain(Micros limit);
  // Replays the longest log on a fresh runner and checks every client's
  // history against it (see the file comment). The replay stays available.
  absl::Status CheckHistories();
  const server::StateMachineRunner* replay() const { return replay_.get(); }
  // From the replay: (session, sequence) -> the index the command ran at.
  const std::map<std::pair<uint64_t, uint64_t>, Index>& ran_at() const { return ran_at_; }

  const std::vector<ClientRecord>& records() const { return records_; }
  const ClientStats& stats() const { return stats_; }
  LogTime session_timeout() const { return static_cast<LogTime>(options_.session_timeout_ms) * 1000; }
  // Per killed client's session, from the replay: the log time its
  // Unregister{expired} applied at minus its last keep-alive time (-1: never expired).
  std::map<uint64_t, LogTime> expiry_delays() const { return expiry_delays_; }

  // WorldObserver:
  void OnApplied(NodeId server, const Entry& entry, const std::vector<server::StateMachineRunner::Response>& responses,
                 const std::vector<std::pair<uint64_t, Index>>& published) override;
  void OnCrash(NodeId server) override;

 private:
  enum class Kind { kRegister, kKeepAlive, kCommand, kResetEvents, kQuery };
  struct Request {
    Kind kind = Kind::kCommand;
    int client = 0;
    uint64_t id = 0;
    uint64_t session = 0;
    uint64_t sequence = 0;          // command; query: the last command submitted before it
    uint64_t command_sequence = 0;  // keep-alive
    Index event_index = 0;          // keep-alive: delivered; reset: resend after
    Index min_index = 0;            // query: the highest index its client has seen
    Consistency consistency = Consistency::kLinearizable;  // query
    std::string operation;
  };
  struct Reply {
    Kind kind = Kind::kCommand;
    uint64_t id = 0;
    uint64_t sequence = 0;
    NodeId from = 0;
    absl::Status status;
    NodeId leader = 0;
    Index index = 0;
    Index event_index = 0;
    std::string result;
  };
  struct Waiter {
    Term term = 0;
    std::vector<Request> requests;  // one, or a keep-alive batch
  };
  struct Command {
    uint64_t command = 0;  // n
    std::string operation;
    uint64_t request = 0;  // the latest attempt's request id
    NodeId sent_to = 0;
    size_t record = 0;  // in ClientRecord::operations
  };
  struct QueryState {
    uint64_t n = 0;
    std::string operation;
    Consistency consistency = Consistency::kLinearizable;
    uint64_t sequence = 0;  // the last command submitted before it
    uint64_t request = 0;  // the current attempt's (0: waiting to resend)
    NodeId server = 0;     // where the next attempt goes
    size_t record = 0;     // the current attempt's, in ClientRecord::operations
  };
  struct Received {
    uint64_t command = 0;
    Index index = 0;
    Index event_index = 0;
    std::string result;
  };
  struct Client {
    int id = 0;
    bool alive = true;
    NodeId server = 1;  // the server it talks to
    NodeId leader = 0;  // the last leader a server named
    uint64_t next_request = 1;
    uint64_t register_request = 0;
    uint64_t session = 0;
    uint64_t next_sequence = 1;
    uint64_t next_command = 1;
    std::map<uint64_t, Command> outstanding;  // sequence -> no response yet
    std::map<uint64_t, Received> received;    // sequence -> not delivered yet
    std::set<uint64_t> abandoned;             // bug_new_sequence_on_retry only
    uint64_t completed = 0;                   // every sequence <= this was delivered
    uint64_t keep_alive_request = 0;
    uint64_t reset_request = 0;
    Index delivered_events = 0;                   // the last batch delivered
    std::map<Index, server::EventBatch> batches;  // received, not delivered: by `previous`
    Index seen_index = 0;  // the highest index a response carried (a SEQUENTIAL query's minimum)
    uint64_t next_query = 1;
    std::optional<QueryState> query;   // in flight
    std::deque<std::string> queued;    // SubmitQuery: after it
  };

  // Network: the delays of the copies of one message (none: lost).
  std::vector<Micros> Delays(int client, NodeId server);
  void SendToServer(Client& c, Request request, NodeId server = 0);  // 0: the client's server
  void SendToClient(int client, NodeId from, std::function<void(Client&)> deliver);
  void ScheduleCut();

  // A server's ClientService state for commands: the production sequencer,
  // and the term its knowledge belongs to (lost in a crash).
  struct SequencerState {
    explicit SequencerState(server::CommandSequencerOptions options) : sequencer(options) {}
    server::CommandSequencer<Request> sequencer;
    Term term = 0;
    uint64_t duty_runs = 0;
  };
  using Refusals = std::vector<server::CommandSequencer<Request>::Refused>;
  // A query whose index this server applied, waiting for its session's
  // earlier commands (ApplyLoop's blocked queries).
  struct BlockedQuery {
    Request request;
    Micros wait_until = 0;
  };

  // Server side (ClientService + ApplyLoop).
  void OnRequest(NodeId server, Request request);
  // As ClientService::ProposeCommand / ProposeSequenced / SyncSequencerTerm /
  // SequencerDuties.
  SequencerState& Sequencer(NodeId server);
  void OfferCommand(NodeId server, Request request);
  void SyncSequencerTerm(NodeId server, Refusals* refused);
  void ProposeSequenced(NodeId server, std::vector<Request> propose, Refusals refused);
  void SequencerDuties(NodeId server);
  void PostSequencerDuties(NodeId server);  // soon, outside the world's callbacks
  void ScheduleServerDuties();              // every server, each heartbeat interval
  uint64_t AppliedSequence(NodeId server, uint64_t session);
  void Answer(NodeId server, const Request& request, absl::Status status, Index index = 0, Index event_index = 0,
              std::string result = {});
  void FlushKeepAlives(NodeId server);
  void Subscribe(NodeId server, const Request& request);
  void Push(NodeId server, int client, uint64_t session, const server::EventBatch& batch);
  void Complete(NodeId server, const Waiter& waiter, const absl::StatusOr<Bytes>& result, Index index,
                Index event_index);
  void ServeQuery(NodeId server, const Request& request);
  void WaitForIndex(NodeId server, Index index, const Request& request);
  // The queries whose index its runner applied: run those whose session's
  // commands applied too, refuse those that waited too long (ApplyLoop::RunQueries).
  void RunQueries(NodeId server);
  bool TryQuery(NodeId server, BlockedQuery& query);  // false: it goes on waiting
  void RunQuery(NodeId server, const Request& request);  // now, on its runner, and answers

  // Client side.
  void StartClient(Client& c);
  void SendRegister(Client& c);
  void SendKeepAlive(Client& c);
  void SendCommand(Client& c, uint64_t sequence);
  void Resend(Client& c, uint64_t sequence);
  void ResendLater(Client& c, uint64_t sequence, Micros delay);  // unless resent meanwhile
  void KeepAliveLater(Client& c, Micros delay);                  // unless answered or resent meanwhile
  void AskResend(Client& c);
  Index ChainEnd(const Client& c) const;  // the last batch received without a gap
  void ScheduleKeepAlive(Client& c);
  void ScheduleSubmit(Client& c);
  // After request_timeout, runs `on_timeout` if `still_waiting` holds.
  void ArmTimeout(Client& c, std::function<bool(Client&)> still_waiting, std::function<void(Client&)> on_timeout);
  void SwitchServer(Client& c, NodeId hint);
  void RetryCommand(Client& c, uint64_t sequence, NodeId hint);
  void OnReply(Client& c, const Reply& reply);
  void OnCommandReply(Client& c, const Reply& reply);
  void OnBatch(Client& c, uint64_t session, server::EventBatch batch);
  void StartQuery(Client& c, std::string operation);
  void SendQuery(Client& c);
  void RetryQuery(Client& c, ClientOperation::Outcome outcome, NodeId hint);
  NodeId QueryServer(Client& c, Consistency consistency);
  void OnQueryReply(Client& c, const Reply& reply);
  void Deliver(Client& c);
  void SessionLost(Client& c, const absl::Status& status);
  bool Retriable(const absl::Status& status) const;
  Micros Backoff(bool leader_known);
  void Trace(const Client& c, const std::string& what) const;
  NodeId RandomServer();

  // Checks.
  bool Drained() const;
  absl::Status Replay();
  absl::Status CheckClient(const ClientRecord& record) const;
  absl::Status CheckQueries(const ClientRecord& record) const;
  absl::Status CheckReleases() const;

  World* world_;
  ClientOptions options_;
  bool submitting_ = true;
  std::vector<Client> clients_;
  std::vector<ClientRecord> records_;
  std::map<std::pair<NodeId, Index>, Waiter> waiters_;       // (server, index)
  std::map<NodeId, std::vector<Request>> keep_alive_batch_;  // server -> pending keep-alives
  std::map<NodeId, bool> keep_alive_flush_posted_;
  std::map<NodeId, std::map<uint64_t, int>> subscribers_;  // server -> session -> client
  std::map<NodeId, std::multimap<Index, Request>> queries_;  // server -> index to wait for -> query
  std::map<NodeId, std::vector<BlockedQuery>> blocked_queries_;  // server -> index reached, session behind
  std::map<NodeId, SequencerState> sequencers_;              // server -> its ClientService's (while up)
  std::set<NodeId> duties_posted_;
  std::set<std::pair<int, NodeId>> cut_;                   // (client, server) links down
  std::map<Index, Micros> first_applied_at_;               // Unregister entries: when first applied
  NodeId replayed_from_ = 0;  // the server whose log the replay applied
  std::unique_ptr<server::StateMachineRunner> replay_;
  std::map<uint64_t, std::vector<server::EventBatch>> published_;  // from the replay, per client session
  std::map<std::pair<uint64_t, uint64_t>, Index> ran_at_;          // (session, sequence) -> the index it ran at
  std::map<uint64_t, LogTime> expiry_delays_;
  ClientStats stats_;
};

}  // namespace caracal::sim

#endif  // CARACAL_TESTS_SIM_SESSION_CLIENTS_H_

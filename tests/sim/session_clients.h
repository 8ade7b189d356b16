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
// A crash loses a server's waiters, subscriptions and pending keep-alives.
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
// Queries (ClientOptions::make_query), as ClientService serves a
// LINEARIZABLE one: only a leader takes it; it asks its raft core for a read
// index (World::RequestReadAt) and, once that is confirmed and its state
// machine applied up to it, runs the query on its runner and answers. A
// server that loses leadership before the confirmation answers Unavailable;
// a crash loses the query. A client has one query in flight at a time, sent
// to the server it talks to (a refusal names the leader: the retry goes
// there); a query refused or unanswered within request_timeout is retried as
// a new operation (reads change nothing, so that is safe), on another server
// unless a refusal named one.
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
  // A deliberately broken server (for the test that the linearizability
  // check catches it): any server, leader or not, answers a query at once
  // from the state it has applied, without a read index.
  bool bug_stale_reads = false;
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
  uint64_t held_back = 0;   // in the replayed log: commands that ran when a later entry filled their gap
  uint64_t duplicates = 0;  // in the replayed log: retries answered from the response cache
  uint64_t gaps = 0;        // batches that arrived after a gap
  uint64_t cuts = 0;
  uint64_t orphan_sessions = 0;      // registered twice by a retried Register: one is never used
  uint64_t expired_sessions = 0;     // in the replayed log
  uint64_t expired_unreachable = 0;  // live clients' sessions the network silenced for a timeout
  uint64_t queries_answered = 0;
  uint64_t queries_refused = 0;    // not the leader, or leadership lost before the read index was confirmed
  uint64_t queries_timed_out = 0;
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
    uint64_t sequence = 0;          // command
    uint64_t command_sequence = 0;  // keep-alive
    Index event_index = 0;          // keep-alive: delivered; reset: resend after
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
    uint64_t next_query = 1;
    std::optional<QueryState> query;   // in flight
    std::deque<std::string> queued;    // SubmitQuery: after it
  };

  // Network: the delays of the copies of one message (none: lost).
  std::vector<Micros> Delays(int client, NodeId server);
  void SendToServer(Client& c, Request request, NodeId server = 0);  // 0: the client's server
  void SendToClient(int client, NodeId from, std::function<void(Client&)> deliver);
  void ScheduleCut();

  // Server side (ClientService + ApplyLoop).
  void OnRequest(NodeId server, Request request);
  void Answer(NodeId server, const Request& request, absl::Status status, Index index = 0, Index event_index = 0,
              std::string result = {});
  void FlushKeepAlives(NodeId server);
  void Subscribe(NodeId server, const Request& request);
  void Push(NodeId server, int client, uint64_t session, const server::EventBatch& batch);
  void Complete(NodeId server, const Waiter& waiter, const absl::StatusOr<Bytes>& result, Index index,
                Index event_index);
  void ServeQuery(NodeId server, const Request& request);
  void RunQueries(NodeId server);  // the confirmed reads its runner has applied far enough for
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
  std::map<NodeId, std::multimap<Index, Request>> confirmed_reads_;  // server -> read index -> query
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

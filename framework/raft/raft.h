#ifndef CARACAL_FRAMEWORK_RAFT_RAFT_H_
#define CARACAL_FRAMEWORK_RAFT_RAFT_H_

// The raft core: elections (with pre-vote and check-quorum), pipelined and
// batched replication, commitment by a quorum of *durable* entries.
//
// It owns no threads, sockets, files or clocks. It is driven by inputs
//   Tick(now)            time advanced (monotonic and wall readings)
//   Step(message)        a message from a peer arrived
//   Propose(type, data)  the application wants an entry appended (leader only)
//   OnPersisted(w)       storage made write w (and every earlier write) durable
// and hands back its outputs through TakeReady():
//   hard_state  term/vote to make durable BEFORE sending this Ready's messages
//   write       entries (and holes) to write at write.first, replacing any
//               suffix at or after it; asynchronous, in order: report
//               OnPersisted(write.id) once it (and all before it) is fsynced
//   messages    to send (any order, may be lost: the core retransmits)
//   commit      highest index known committed
// so the same code runs in production (driver in framework/server) and in the
// seeded simulator (tests/sim).
//
// Invariants (checked with assert in debug builds):
//   - term_ never decreases; voted_for_ is for term_ only.
//   - the log seen through this object is [first, LastIndex()], made of the
//     stable part (<= stable_last_, readable from the LogReader) and the
//     unstable part (unstable_, emitted but not yet reported durable).
//   - commit_ never decreases and never exceeds LastIndex().
//   - a leader counts itself towards a quorum only up to stable_last_.
//   - a follower acknowledges an AppendEntries only once the entries it
//     matched are durable (so match indexes at the leader are durable).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "framework/common/ring_buffer.h"
#include "framework/common/types.h"
#include "framework/raft/log_reader.h"
#include "framework/raft/message.h"

namespace caracal::raft {

using Micros = int64_t;

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// Switches that deliberately break Raft, so tests can prove the safety checks
// catch a broken core. Never set outside tests.
struct FaultInjection {
  bool vote_twice_in_a_term = false;       // grant every vote request
  bool commit_without_quorum = false;      // leader commits what it has written
  bool read_without_quorum = false;        // leader confirms reads without a heartbeat round
};

struct Config {
  NodeId id = 0;
  std::vector<NodeId> voters;              // the initial (bootstrap) configuration
  Micros election_timeout_min = 150'000;   // randomized in [min, max)
  Micros election_timeout_max = 300'000;
  Micros heartbeat_interval = 50'000;
  size_t max_append_entries = 1024;        // per AppendEntries message
  size_t max_append_bytes = 1 << 20;
  size_t max_inflight = 16;                // pipelined AppendEntries per follower
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t seed = 1;                       // for randomized timeouts (deterministic)
  // Lease reads assume clocks run at the same rate within this fraction: the
  // lease lasts election_timeout_min * (1 - max_clock_drift) from the moment
  // the confirming heartbeat round was sent.
  double max_clock_drift = 0.2;
  FaultInjection faults;
};

// The outcome of RequestRead: once the state machine has applied `index`, a
// linearizable query may be answered (ok), or leadership was lost (!ok).
struct ReadState {
  uint64_t id = 0;
  Index index = 0;
  bool ok = false;
};

// What a Ready asks the driver to write to the log.
struct LogWrite {
  uint64_t id = 0;                 // increasing; OnPersisted(id) acknowledges it
  Index first = 0;                 // write starts here; storage drops any suffix >= first
  std::vector<Entry> entries;      // ascending
  std::vector<HoleRun> holes;      // with `entries`, covers [first, last()] exactly
  Index last() const;
  Term last_term() const;
  bool empty() const { return entries.empty() && holes.empty(); }
};

struct Ready {
  std::optional<HardState> hard_state;
  std::optional<LogWrite> write;
  std::vector<Message> messages;
  std::vector<ReadState> reads;    // completed (or failed) RequestRead calls
  // Not OK when the core could not read its own log (an I/O error): the
  // server must stop, as if it had crashed.
  absl::Status error;
  Index commit = 0;
  Role role = Role::kFollower;
  NodeId leader = 0;
  Term term = 0;
};

struct Status {
  NodeId id = 0;
  Role role = Role::kFollower;
  Term term = 0;
  NodeId leader = 0;
  Index last_index = 0;
  Index stable_last = 0;
  Index commit = 0;
};

class Raft {
 public:
  // `log` holds what is durable from before (after a restart), and is read for
  // everything this core reported durable. It must outlive the core.
  Raft(Config config, const LogReader* log, HardState hard_state, Micros now, LogTime wall);

  void Tick(Micros now, LogTime wall);
  void Step(const Message& message);
  // Appends an entry stamped with log time max(previous, wall). Returns its
  // index, or FailedPrecondition("not the leader; leader is N") elsewhere.
  absl::StatusOr<Index> Propose(EntryType type, Bytes payload);
  // Write `write_id` and every write handed out before it are durable.
  // Acknowledging by write, not by (index, term), matters: an index can be
  // truncated by one leader and rewritten with the same term by a later one
  // while an old write's acknowledgement is still on its way.
  void OnPersisted(uint64_t write_id);
  // Read index (Raft dissertation 6.4): the leader confirms with a quorum
  // heartbeat round sent after this call that it still leads, then reports
  // {id, index} in Ready::reads. Reads are batched: every read waiting when a
  // round is sent is confirmed by it. FailedPrecondition on a non-leader.
  absl::Status RequestRead(uint64_t id);
  // True while this leader's lease holds: a quorum acknowledged a heartbeat
  // round sent less than election_timeout_min * (1 - max_clock_drift) ago.
  // Followers reject votes for election_timeout_min after hearing from a
  // leader (and after starting), so no other leader can exist meanwhile.
  bool LeaseValid() const;
  // The index a lease read must wait for, while the lease holds and this
  // term's first entry is committed; nullopt otherwise (use RequestRead).
  std::optional<Index> LeaseReadIndex() const;

  // Hands over what accumulated since the previous call.
  Ready TakeReady();
  bool HasReady() const;

  Status GetStatus() const;
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId leader() const { return leader_; }
  NodeId id() const { return config_.id; }
  Index commit() const { return commit_; }
  Index last_index() const { return LastIndex(); }
  Index stable_last() const { return stable_last_; }
  std::optional<Term> TermAt(Index index) const;

 private:
  struct Item {  // one index of the unstable log
    Entry entry;
    bool hole = false;
  };
  enum class Progress { kProbe, kReplicate };
  struct Peer {
    Index match = 0;
    Index next = 1;
    Progress progress = Progress::kProbe;
    bool probe_sent = false;            // probe: one message in flight
    RingBuffer<Index> inflight;         // replicate: last index of each message in flight
    bool recent_active = false;         // heard from it since the last check-quorum
    Micros last_progress = 0;           // when match last advanced or the probe was answered
    uint64_t acked_round = 0;
  };

  // ---- log view ----
  Index LastIndex() const;
  Term LastTerm() const;
  Index FirstIndex() const;
  bool IsUpToDate(Index last_index, Term last_term) const;
  // Items in [from, ...] up to the size limits, for an AppendEntries.
  void CollectForAppend(Index from, AppendEntries* out) const;
  // Writes `items` starting at items.front().index, dropping what follows.
  // Moves from `items`.
  void AppendItems(std::span<Item> items);

  // ---- roles ----
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre_vote, bool transfer);
  void ResetElectionTimer();
  void SetTerm(Term term);

  // ---- message handling ----
  void HandleRequestVote(NodeId from, const RequestVote& m);
  void HandleVoteResponse(NodeId from, const RequestVoteResponse& m);
  void HandleAppendEntries(NodeId from, const AppendEntries& m);
  void HandleAppendResponse(NodeId from, const AppendEntriesResponse& m);
  void HandleTimeoutNow(NodeId from, const TimeoutNow& m);

  // ---- leader ----
  // `with_entries` false: a bare probe (prev index/term only), for a
  // follower that did not answer the last one.
  void SendAppend(NodeId to, Peer& peer, bool allow_empty, bool with_entries = true);
  void PausePeer(Peer& peer);
  void BroadcastAppends();
  void BroadcastHeartbeats();
  bool MaybeAdvanceCommit();
  void CheckQuorum();
  void RetransmitStalled();
  void StartReadRound();
  void MaybeCompleteReads();
  void FailReads();

  // ---- follower ----
  void FlushPendingAcks();

  void Send(NodeId to, MessageBody body);
  bool IsVoter(NodeId id) const;
  size_t Quorum() const { return config_.voters.size() / 2 + 1; }
  bool InLease() const;

  Config config_;
  const LogReader* log_;
  std::mt19937_64 rng_;

  Term term_ = 0;
  NodeId voted_for_ = 0;
  bool hard_state_dirty_ = false;
  Role role_ = Role::kFollower;
  NodeId leader_ = 0;

  Index stable_last_ = 0;
  // Indexes stable_last_+1 ... (a ring, not a deque: entries stream through
  // it, and a deque allocates a block every few of them).
  RingBuffer<Item> unstable_;
  std::optional<LogWrite> pending_write_;
  struct WriteInFlight {
    uint64_t id;
    Index first;
    Index last;
  };
  RingBuffer<WriteInFlight> writes_in_flight_;  // handed to the driver, not yet durable
  // Entries in the largest write handed out lately (capped at
  // max_append_entries): a new write reserves room for that many, so
  // proposals one at a time do not regrow its vector as it fills.
  size_t write_entries_hint_ = 0;
  uint64_t next_write_id_ = 1;
  mutable absl::Status error_;  // set by const readers too (CollectForAppend)
  Index commit_ = 0;
  LogTime last_timestamp_ = 0;

  Micros now_ = 0;
  LogTime wall_ = 0;
  Micros election_deadline_ = 0;
  Micros last_heard_from_leader_ = -1;   // for pre-vote / vote stickiness
  Micros next_heartbeat_ = 0;
  Micros next_quorum_check_ = 0;
  Micros started_ = 0;                   // votes are refused for a while after a (re)start
  uint64_t round_ = 0;
  Index term_start_ = 0;                 // index of this leader's Initialize entry

  struct PendingRead {
    uint64_t id;
    Index index;
    uint64_t round;  // the first heartbeat round that can confirm it
  };
  std::deque<PendingRead> pending_reads_;
  std::vector<ReadState> completed_reads_;
  std::map<uint64_t, Micros> round_sent_;  // rounds not yet confirmed -> when sent
  uint64_t confirmed_round_ = 0;
  Micros lease_start_ = -1;

  std::map<NodeId, bool> votes_;
  std::map<NodeId, Peer> peers_;

  // Follower: an acknowledgement waiting for its entries to become durable.
  struct PendingAck {
    NodeId leader = 0;
    Term term = 0;
    Index index = 0;
    uint64_t round = 0;
  };
  std::optional<PendingAck> pending_ack_;

  std::vector<Message> outbox_;
};

}  // namespace caracal::raft

#endif  // CARACAL_FRAMEWORK_RAFT_RAFT_H_

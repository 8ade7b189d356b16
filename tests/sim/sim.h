#ifndef CARACAL_TESTS_SIM_SIM_H_
#define CARACAL_TESTS_SIM_SIM_H_

// A deterministic, seeded world for the raft core: N servers in one process,
// a simulated network (delay, loss, duplication, reordering, symmetric and
// one-way partitions), simulated disks (a crash loses what was not fsynced
// and may tear the last write), drifting clocks, and crash/restart of any
// server at any time. Everything random comes from one PRNG seeded by
// Options::seed, and events run in (time, sequence) order, so a seed replays
// exactly.
//
// After every event the world checks Raft's safety properties:
//   - election safety: at most one leader per term;
//   - log matching: two logs holding the same term at an index hold the same
//     prefix up to it;
//   - leader completeness: a leader of term T holds every entry committed in
//     an earlier term;
//   - state machine safety: no two servers apply different entries at an
//     index (also across restarts, when a server re-applies from its log);
//   - lease safety: while a leader's lease holds, no leader of a newer term
//     exists (clock drift stays within the configured margin);
//   - read index: a confirmed read covers everything committed anywhere
//     before it was requested;
//   - commit durability: what a server once reported committed is never
//     contradicted later, whatever crashed;
//   - state machine determinism (with Options::state_machine): every server
//     that applies an index produces the same response there.
// With Options::state_machine, Run() also ends by replaying the committed log
// of the server that applied the most on a fresh state machine, and checks it
// reproduces every server's responses, timer firings and digest. With
// Options::leader_duties, leaders also expire silent sessions and keep log
// time moving, as ClientService does; a WorldObserver (simulated clients,
// tests/sim/session_clients.h) sees every server's responses and events.
// A violation stops the run with a description; the test prints the seed and
// the command that replays it.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "caracal/state_machine.h"
#include "framework/raft/raft.h"
#include "framework/server/state_machine_runner.h"

namespace caracal::sim {

using raft::Micros;

struct Faults {
  double drop = 0.0;            // probability a message is lost
  double duplicate = 0.0;       // probability a message is delivered twice
  Micros min_delay = 200;       // per-message delay, uniform: reordering comes from it
  Micros max_delay = 2'000;
  Micros fsync_min = 100;
  Micros fsync_max = 2'000;
  bool partitions = false;      // symmetric splits, isolated nodes, one-way links
  bool crashes = false;         // crash/restart with loss of unsynced writes
  bool torn_writes = false;     // a crash may keep part of the last unsynced write
  double clock_drift = 0.0;     // each clock runs at 1 +/- up to this rate
  bool codec = false;           // send every message through the wire codec

  static Faults None() { return Faults{}; }
  static Faults All();
};

struct Options {
  uint64_t seed = 1;
  int nodes = 3;
  Micros duration = 10'000'000;           // simulated time with faults on
  Micros liveness_window = 10'000'000;    // after healing: a leader and a commit within this
  Micros propose_interval = 20'000;       // a client proposal this often (to the leader)
  Faults faults;
  raft::FaultInjection broken;            // break the core (tests of the checks)
  int broken_node = 1;                    // which server runs the broken core (0: all)

  // Optional: every server runs a real state machine (through
  // server::StateMachineRunner), applying committed entries as they commit,
  // rebuilt from its log after a crash. Client proposals become command
  // entries whose operation bytes come from `make_operation` (drawn from the
  // world's PRNG, so a seed still replays exactly).
  std::function<std::unique_ptr<StateMachine>()> state_machine;
  std::function<std::string(std::mt19937_64&)> make_operation;
  // A digest of a state machine's whole state, compared between servers.
  std::function<std::string(StateMachine&)> digest;
  // With a state machine: every leader runs the production leader duties
  // (ClientService::RunDuties) each heartbeat interval: an Unregister{expired}
  // entry for each suspect session not already being expired, and an empty
  // Time entry once its clock passed the runner's next deadline while nothing
  // is in flight (so sessions expire and timers fire in an idle cluster).
  bool leader_duties = false;
  // Off only in tests that must show another check (the clients' histories)
  // catches a broken read index: the world then does not stop the run at a
  // read confirmed below what was already committed.
  bool check_read_index = true;
  // raft::Config::check_quorum for every server. Off, a leader cut off from
  // its followers keeps leading (in its own eyes) until it hears of a newer
  // term: what the read index round alone must then make safe.
  bool check_quorum = true;
};

struct Stats {
  uint64_t events = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_delivered = 0;
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t elections_won = 0;
  uint64_t proposals = 0;
  uint64_t reads_requested = 0;
  uint64_t reads_confirmed = 0;
  Index max_commit = 0;
  uint64_t applied_entries = 0;
  // With a state machine, from the final replay: what the log contains and did.
  uint64_t replayed_entries = 0;
  uint64_t replayed_commands_ok = 0;
  uint64_t replayed_timers_fired = 0;
  // With Options::leader_duties: what the leaders proposed.
  uint64_t expiry_proposals = 0;
  uint64_t time_entries = 0;
};

// Something that lives in the world beside the servers (simulated clients,
// tests/sim/session_clients.h). The world tells it, synchronously:
//   - what a server's runner produced for each entry it applied, in apply
//     order (the responses, and the sessions that got an event batch), the
//     way ApplyLoop completes its waiters and pushes events;
//   - that a server crashed (its volatile state -- waiters, subscriptions --
//     is gone).
// It must not step the world from these callbacks; it schedules events (At).
class WorldObserver {
 public:
  virtual ~WorldObserver() = default;
  virtual void OnApplied(NodeId server, const Entry& entry,
                         const std::vector<server::StateMachineRunner::Response>& responses,
                         const std::vector<std::pair<uint64_t, Index>>& published) = 0;
  virtual void OnCrash(NodeId server) = 0;
};

// A server's disk: the log as written (what reads see) and as durable (what
// survives a crash), and the hard state (made durable before messages go out).
class SimDisk : public raft::LogReader {
 public:
  struct Item {
    Entry entry;
    bool hole = false;
    uint64_t prefix_hash = 0;  // hash of the whole log up to and including this item
  };

  // Applies `write` to the written log; it becomes durable at a later Sync.
  void Write(const raft::LogWrite& write);
  size_t pending_writes() const { return pending_.size(); }
  // Makes the first `n` pending writes durable; returns the id of the last
  // one, what the raft core is told is persisted.
  uint64_t Sync(size_t n);
  uint64_t DurablePrefixHash(Index index) const;
  // Loses unsynced writes; with `torn`, keeps a random prefix of them, the
  // last one possibly cut short.
  void Crash(std::mt19937_64& rng, bool torn);

  const Item* At(Index index) const;
  uint64_t PrefixHash(Index index) const;

  Index FirstIndex() const override { return 1; }
  Index LastIndex() const override { return written_.size(); }
  std::optional<Term> TermAt(Index index) const override;
  absl::Status Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                    std::vector<HoleRun>* holes) const override;

  HardState hard_state;

 private:
  static void Apply(std::vector<Item>& log, const raft::LogWrite& write, size_t max_items);
  std::vector<Item> written_;
  std::vector<Item> durable_;
  std::deque<raft::LogWrite> pending_;
};

class World {
 public:
  explicit World(Options options);
  ~World();

  // Runs the faulty phase for options.duration, then heals everything and
  // checks liveness. Returns the first violation.
  absl::Status Run();

  // Pieces of Run, for tests that script a scenario.
  absl::Status RunFor(Micros duration);
  void HealAll();
  absl::Status CheckLiveness();
  std::optional<NodeId> Leader() const;       // an up leader (of the highest term)
  absl::StatusOr<Index> Propose(std::string payload);  // at the current leader
  absl::Status RequestRead();                          // a read index at the current leader
  const raft::Raft* Node(NodeId id) const;
  Index Applied(NodeId id) const;
  void Crash(NodeId id);
  void Restart(NodeId id);
  void Block(NodeId from, NodeId to);          // one-way link cut
  void Unblock(NodeId from, NodeId to);
  // With Options::state_machine: replays the log of the server that applied
  // the most on a fresh runner and compares responses, timer firings and
  // digests with every server at the index it applied.
  absl::Status CheckReplay();
  // The live runner of a server (null while crashed or without a state machine).
  server::StateMachineRunner* Runner(NodeId id);
  Micros now() const { return now_; }
  const Stats& stats() const { return stats_; }
  // A digest of everything that happened, to show two runs of a seed agree.
  uint64_t trace_hash() const { return trace_hash_; }

  // ---- for inhabitants of the world (simulated clients) ----
  void SetObserver(WorldObserver* observer) { observer_ = observer; }
  // Runs `fn` at simulated time `at`, in (time, scheduling order) with
  // everything else: that is what keeps a seed replayable.
  void At(Micros at, std::function<void()> fn) { Schedule(at, std::move(fn)); }
  std::mt19937_64& rng() { return rng_; }
  const Options& options() const { return options_; }
  bool faults_on() const { return faults_on_; }
  bool Up(NodeId id) const;
  Micros Clock(NodeId id) const;  // the server's (drifting) clock
  // Proposes at server `id` (which must lead): the entry's (index, term).
  absl::StatusOr<std::pair<Index, Term>> ProposeAt(NodeId id, EntryType type, std::string payload);
  const SimDisk& Disk(NodeId id) const;
  // A read index at server `id` (which must lead, else FailedPrecondition):
  // `done` runs when its core confirms the read (ok, with the index a query
  // must wait for) or fails it (leadership lost). A crash of the server drops
  // it (never run). Checked like every read (Options::check_read_index).
  absl::Status RequestReadAt(NodeId id, std::function<void(const raft::ReadState&)> done);
  // With an observer: when the leader of `term` proposed the entry at `index`.
  std::optional<Micros> ProposedAt(Index index, Term term) const;
  // A fresh runner of Options::state_machine (for replays).
  std::unique_ptr<server::StateMachineRunner> NewRunner() const { return MakeRunner(0); }
  // Runs events until `done()` holds (checked after each event) or `limit`
  // of simulated time passed (DeadlineExceeded).
  absl::Status RunUntil(const std::function<bool()>& done, Micros limit);

 private:
  struct Server;
  struct Event {
    Micros time;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };

  void Schedule(Micros at, std::function<void()> fn);
  absl::Status Step();  // runs one event, then the checks
  void Process(Server& s);
  void SendMessage(raft::Message m);
  void ScheduleTick(Server& s);
  void ScheduleSync(Server& s);
  void ScheduleDuties(Server& s);
  void RunDuties(Server& s);
  void ScheduleCrash();
  void SchedulePartition();
  void ApplyCommitted(Server& s);
  void ApplyToStateMachine(Server& s, const SimDisk::Item& item);
  std::unique_ptr<server::StateMachineRunner> MakeRunner(NodeId id) const;
  Micros LocalTime(const Server& s) const;
  raft::Config MakeConfig(NodeId id) const;
  void Fail(std::string what);
  void CheckSafety();
  void CheckRead(const Server& s, const raft::ReadState& read);
  void Trace(uint64_t a, uint64_t b = 0);

  Options options_;
  std::mt19937_64 rng_;
  Micros now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::vector<std::unique_ptr<Server>> servers_;  // index = id - 1
  std::set<std::pair<NodeId, NodeId>> blocked_;
  bool faults_on_ = true;
  uint64_t proposal_counter_ = 0;
  uint64_t read_counter_ = 0;
  std::map<uint64_t, Index> read_floor_;  // read id -> committed index at request time
  struct ReadWaiter {
    NodeId server = 0;
    std::function<void(const raft::ReadState&)> done;
  };
  std::map<uint64_t, ReadWaiter> read_waiters_;  // RequestReadAt: read id -> who waits

  // What the checks have seen.
  std::map<Term, NodeId> leader_of_term_;
  std::vector<uint64_t> applied_hash_;                 // index-1 -> prefix hash applied
  std::vector<std::string> responses_;                 // index-1 -> response of the first server to apply it
  std::vector<std::pair<Term, uint64_t>> committed_;   // index-1 -> (term, prefix hash)
  std::map<Term, Index> committed_by_term_;            // observer term -> max committed index seen
  std::optional<std::string> violation_;
  WorldObserver* observer_ = nullptr;
  std::map<std::pair<Index, Term>, Micros> proposed_at_;  // with an observer
  Stats stats_;
  uint64_t trace_hash_ = 0;
};

// Every fault on, at an intensity drawn from the seed: some seeds are gentle,
// some lose a fifth of all messages or hold them back for half a second.
Options AllFaultsForSeed(uint64_t seed);

// Runs one seed with all faults; on a violation the status says what broke,
// with the seed and the one-line replay command.
absl::Status RunSeed(uint64_t seed, const Options& base);
std::string ReplayCommand(uint64_t seed);

}  // namespace caracal::sim

#endif  // CARACAL_TESTS_SIM_SIM_H_

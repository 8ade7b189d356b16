// Linearizability end to end, in the seeded simulation with every fault on:
// simulated clients (tests/sim/session_clients.h) with sessions run the
// key-value example (examples/kv) through servers that crash, lose their
// disks' unsynced tails, get partitioned and change leaders, over a network
// that loses, duplicates and reorders -- and every operation they issue is
// recorded in a history (tests/verification/history.h) that the Wing & Gong
// / Lowe checker (tests/verification/linearizability.h) must accept.
//
// The workload, per seed: 2 to 6 clients over 2 to 4 shared keys; each
// pipelines (1 to 6 in flight) session commands -- put (of a value never
// written before), compare-and-set (expecting the key's latest generated
// value, or absent), remove -- retried with the same sequence until answered
// (exactly once), and linearizable reads, sent to the server the client
// talks to while its commands are in flight: a leader asks its raft core for
// a read index and answers once it applied that far (and the client's last
// seen index) and the session applied the commands submitted before the read
// (a refused or unanswered read is retried as a new operation). In a third of the seeds one client dies with commands in
// flight. Faults for 3 to 5 s of simulated time, then healing, draining, and
// a final read of every key.
//
// History: an operation is invoked when the client issues it and completes
// (ok, with its observed result) when the answer reaches the client. A
// command still unanswered at the end (its client died, its session was
// lost) is info: it may have taken effect at any time after its invocation,
// or never; so is a read given up on. A read a server refused (not the
// leader, leadership lost before the confirmation) is fail: it surely did
// not run.
//
// Every seed must be linearizable (and pass the session clients' own checks:
// exactly once, ordering, a query sees its session's earlier commands, no
// expiry of live sessions, a replay of the log);
// the checker's search budget may leave a verdict unknown, which must stay
// rare (at most 1% of seeds). Then the checker is shown to catch broken
// reads: servers that answer queries from whatever they have applied
// (followers, deposed leaders), and a raft core that confirms a read index
// without a quorum round -- while with that round, reads stay linearizable
// even when deposed leaders linger (no check-quorum).
//
// Replay a seed:    CARACAL_SIM_SEED=<n> build/tests/linearizability_sim_test
//                   --gtest_filter='LinearizabilitySim.Replay'
// (with CARACAL_SIM_VARIANT=no-check-quorum, =stale-reads or
// =read-without-quorum for another variant, CARACAL_SIM_DUMP_HISTORY=1 to
// print the history, CARACAL_SIM_TRACE_CLIENT=<n> to trace client n).
// Soak:             CARACAL_SIM_SOAK_SEEDS=<count> [CARACAL_SIM_FIRST_SEED=<n>]
//                   --gtest_filter='LinearizabilitySim.Soak'

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/sim/session_clients.h"
#include "tests/sim/sim.h"
#include "tests/verification/history.h"
#include "tests/verification/linearizability.h"

namespace caracal::sim {
namespace {

using examples::kv::CompareAndSet;
using examples::kv::Get;
using examples::kv::KvStateMachine;
using examples::kv::Put;
using examples::kv::Remove;
using verification::CheckLinearizability;
using verification::CheckResult;
using verification::History;
using verification::HistoryRecorder;
using verification::KeyValueModel;
using verification::Value;
using verification::Verdict;

const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

constexpr uint64_t kSeedsPerShard = 200;
constexpr int kShards = 25;  // 5,000 seeds in CI, about 3 ms of CPU each

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// ---- variants: the real read path, and two broken ones the checker must catch ----

enum class Variant {
  kCorrect,
  // Correct reads, but servers without check-quorum: a leader cut off from
  // its followers keeps leading in its own eyes until it hears of a newer
  // term (for a whole partition), so only the read index round stands
  // between a client and a stale read.
  kNoCheckQuorum,
  // Broken: any server, follower or deposed leader, answers a query at once
  // from the state it has applied, without a read index.
  kStaleReads,
  // Broken: reads go through the raft core, which confirms a read index
  // without a quorum heartbeat round; without check-quorum (as above), so
  // that deposed leaders live long enough for clients to meet them.
  kReadWithoutQuorum,
};
constexpr Variant kVariants[] = {Variant::kCorrect, Variant::kNoCheckQuorum, Variant::kStaleReads,
                                 Variant::kReadWithoutQuorum};

const char* VariantName(Variant v) {
  switch (v) {
    case Variant::kCorrect:
      return "correct";
    case Variant::kNoCheckQuorum:
      return "no-check-quorum";
    case Variant::kStaleReads:
      return "stale-reads";
    case Variant::kReadWithoutQuorum:
      return "read-without-quorum";
  }
  return "?";
}

Variant VariantFromEnv() {
  const char* v = std::getenv("CARACAL_SIM_VARIANT");
  std::string_view name = v == nullptr ? "" : v;
  for (Variant variant : kVariants) {
    if (name == VariantName(variant)) return variant;
  }
  return Variant::kCorrect;
}

std::string ReplayCommand(uint64_t seed, Variant variant) {
  std::string env = variant == Variant::kCorrect ? "" : absl::StrCat("CARACAL_SIM_VARIANT=", VariantName(variant), " ");
  return absl::StrCat(env, "CARACAL_SIM_SEED=", seed,
                      " build/tests/linearizability_sim_test --gtest_filter='LinearizabilitySim.Replay'");
}

// ---- the workload ----

// Generates the clients' operations over a few shared keys. Put values are
// unique ("c<client>.<n>"), which keeps the checker's search narrow: a read
// names the one write it saw. A compare-and-set expects the latest value
// generated for its key (often still current, so many succeed) or absence.
class KvWorkload {
 public:
  explicit KvWorkload(int keys) {
    for (int k = 0; k < keys; ++k) keys_.push_back(std::string(1, static_cast<char>('a' + k)));
  }

  const std::vector<std::string>& keys() const { return keys_; }

  std::string Command(std::mt19937_64& rng, int client, uint64_t n) {
    const std::string& key = keys_[rng() % keys_.size()];
    std::string value = absl::StrCat("c", client, ".", n);
    uint64_t pick = rng() % 20;
    if (pick < 11) {
      latest_[key] = value;
      return codec::EncodeOperation(Put{.key = key, .value = value});
    }
    if (pick < 17) {
      std::optional<std::string> expected;
      if (rng() % 4 != 0 && latest_.contains(key)) expected = latest_[key];
      latest_[key] = value;
      return codec::EncodeOperation(CompareAndSet{.key = key, .expected = expected, .value = value});
    }
    return codec::EncodeOperation(Remove{.key = key});
  }

  std::string Query(std::mt19937_64& rng) const {
    return codec::EncodeOperation(Get{.key = keys_[rng() % keys_.size()]});
  }

 private:
  std::vector<std::string> keys_;
  std::map<std::string, std::string> latest_;
};

std::string KvDigest(StateMachine& sm) { return static_cast<KvStateMachine&>(sm).Digest(); }

struct SeedSetup {
  Options world;
  ClientOptions clients;
  std::shared_ptr<KvWorkload> workload;
  // In some seeds a client dies with commands in flight: they may or may not
  // take effect (info operations), and its session expires.
  int kill_client = 0;  // 0: none
  Micros kill_at = 0;
};

// The world's faults as in the raft simulation, for a short run; the clients'
// timing follows the network's worst delay (as in session_sim_test).
SeedSetup Setup(uint64_t seed, Variant variant) {
  SeedSetup setup;
  Options& o = setup.world;
  o = AllFaultsForSeed(seed);
  std::mt19937_64 rng(seed ^ 0x11ea71ull);
  o.duration = 3'000'000 + static_cast<Micros>(rng() % 2'000'000);
  o.state_machine = [] { return std::make_unique<KvStateMachine>(); };
  o.digest = KvDigest;
  o.propose_interval = 0;  // the simulated clients are the only writers
  o.leader_duties = true;
  o.check_quorum = variant != Variant::kNoCheckQuorum && variant != Variant::kReadWithoutQuorum;
  if (variant == Variant::kReadWithoutQuorum) {
    o.broken.read_without_quorum = true;
    o.broken_node = 0;            // every server
    o.check_read_index = false;   // the clients' history must show it, not the world's own check
  }
  setup.workload = std::make_shared<KvWorkload>(2 + static_cast<int>(rng() % 3));
  ClientOptions& c = setup.clients;
  c.clients = 2 + static_cast<int>(rng() % 5);
  c.window = 1 + static_cast<int>(rng() % 6);
  c.command_gap_max = 20'000 + static_cast<Micros>(rng() % 80'000);
  c.request_timeout = 400'000 + 3 * o.faults.max_delay;
  c.session_timeout_ms = static_cast<uint64_t>(std::max<Micros>(3'000'000, 6 * c.request_timeout) / 1000);
  c.cut_client_links = true;
  c.excuse_unreachable_expiry = true;
  c.max_cut = 1'000'000;
  std::shared_ptr<KvWorkload> workload = setup.workload;
  c.make_operation = [workload](std::mt19937_64& rng, int client, uint64_t n) {
    return workload->Command(rng, client, n);
  };
  c.make_query = [workload](std::mt19937_64& rng, int, uint64_t) { return workload->Query(rng); };
  c.query_share = 0.4;
  c.bug_stale_reads = variant == Variant::kStaleReads;
  c.trace_client = static_cast<int>(EnvU64("CARACAL_SIM_TRACE_CLIENT", 0));
  if (rng() % 3 == 0) {
    setup.kill_client = 1 + static_cast<int>(rng() % c.clients);
    setup.kill_at = 500'000 + static_cast<Micros>(rng() % static_cast<uint64_t>(o.duration - 500'000));
  }
  return setup;
}

// ---- from the clients' records to a history ----

struct Call {
  std::string function;
  std::vector<Value> args;
  std::optional<Value> output;  // decoded from an ok operation's result
};

// An operation of type T as a call of the key-value model; `args_of` maps
// its fields to the model's arguments.
template <typename T, typename ArgsOf>
absl::StatusOr<Call> DecodeAs(const codec::OperationView& view, const ClientOperation& op, std::string function,
                              ArgsOf args_of) {
  absl::StatusOr<T> decoded = view.DecodeArgs<T>();
  if (!decoded.ok()) return decoded.status();
  Call call{std::move(function), args_of(*decoded), std::nullopt};
  if (op.outcome == ClientOperation::Outcome::kOk) {
    auto result = codec::DecodeResult<T>(op.result);
    if (!result.ok()) return result.status();
    call.output = Value(*result);
  }
  return call;
}

absl::StatusOr<Call> DecodeCall(const ClientOperation& op) {
  absl::StatusOr<codec::OperationView> view = codec::ParseOperation(op.operation);
  if (!view.ok()) return view.status();
  using Args = std::vector<Value>;
  std::string_view name = view->name();
  if (name == Put::kName) return DecodeAs<Put>(*view, op, "put", [](const Put& p) { return Args{p.key, p.value}; });
  if (name == CompareAndSet::kName) {
    return DecodeAs<CompareAndSet>(*view, op, "cas", [](const CompareAndSet& c) {
      return Args{c.key, Value(c.expected), c.value};
    });
  }
  if (name == Remove::kName) return DecodeAs<Remove>(*view, op, "remove", [](const Remove& r) { return Args{r.key}; });
  if (name == Get::kName) return DecodeAs<Get>(*view, op, "get", [](const Get& g) { return Args{g.key}; });
  return absl::InvalidArgumentError(absl::StrCat("unexpected operation ", std::string(name)));
}

struct HistoryCounts {
  uint64_t ok = 0, info = 0, fail = 0;
  uint64_t info_commands = 0;  // unanswered commands (their session was lost)
};

absl::StatusOr<History> BuildHistory(const std::vector<ClientRecord>& records, HistoryCounts* counts) {
  HistoryRecorder recorder([] { return verification::Timestamp{0}; });
  for (const ClientRecord& rec : records) {
    for (const ClientOperation& op : rec.operations) {
      absl::StatusOr<Call> call = DecodeCall(op);
      if (!call.ok()) return call.status();
      int64_t id = recorder.InvokeAt(op.invoked, rec.id, call->function, call->args);
      switch (op.outcome) {
        case ClientOperation::Outcome::kOk:
          recorder.OkAt(op.completed, id, call->output);
          ++counts->ok;
          break;
        case ClientOperation::Outcome::kRefused:
          recorder.FailAt(op.completed, id);
          ++counts->fail;
          break;
        case ClientOperation::Outcome::kPending:
        case ClientOperation::Outcome::kUnknown:
          recorder.InfoAt(op.completed, id);
          ++counts->info;
          if (op.kind == ClientOperation::Kind::kCommand) ++counts->info_commands;
          break;
      }
    }
  }
  return recorder.Snapshot();
}

// ---- one seed ----

struct SeedResult {
  absl::Status status;  // a violation, or another failure (liveness, client checks)
  Verdict verdict = Verdict::kLinearizable;
  HistoryCounts counts;
  uint64_t operations_checked = 0;
  uint64_t final_reads = 0;
  int64_t states_explored = 0;
  ClientStats clients;
  Stats world;
  uint64_t trace_hash = 0;
  std::string history;  // the dump, when asked for
};

SeedResult RunLinearizabilitySeed(uint64_t seed, Variant variant, bool keep_history = false) {
  SeedSetup setup = Setup(seed, variant);
  World world(setup.world);
  SessionClients clients(&world, setup.clients);
  SeedResult result;
  auto finish = [&](absl::Status s) {
    result.world = world.stats();
    result.clients = clients.stats();
    result.trace_hash = world.trace_hash();
    if (!s.ok()) {
      result.status = absl::Status(
          s.code(), absl::StrCat("seed ", seed, " (", VariantName(variant), "): ", s.message(),
                                 "\n  replay: ", ReplayCommand(seed, variant)));
    }
    return result;
  };
  clients.Start();
  if (setup.kill_client != 0) world.At(setup.kill_at, [&clients, &setup] { clients.Kill(setup.kill_client); });
  if (absl::Status s = world.RunFor(setup.world.duration); !s.ok()) return finish(s);
  world.HealAll();
  if (absl::Status s = clients.Drain(30'000'000); !s.ok()) return finish(s);
  // A final read of every key, so that a lost or resurrected write shows.
  for (int c = 1; c <= setup.clients.clients; ++c) {
    if (!clients.Alive(c)) continue;
    for (const std::string& key : setup.workload->keys()) {
      clients.SubmitQuery(c, codec::EncodeOperation(Get{.key = key}));
      ++result.final_reads;
    }
    break;
  }
  if (absl::Status s = clients.Drain(10'000'000); !s.ok()) return finish(s);
  if (absl::Status s = world.CheckReplay(); !s.ok()) return finish(s);
  if (absl::Status s = clients.CheckHistories(); !s.ok()) return finish(s);
  absl::StatusOr<History> history = BuildHistory(clients.records(), &result.counts);
  if (!history.ok()) return finish(history.status());
  if (keep_history) result.history = history->ToString();
  absl::StatusOr<CheckResult> check = CheckLinearizability(*history, *KeyValueModel());
  if (!check.ok()) return finish(check.status());
  result.verdict = check->verdict;
  result.operations_checked = static_cast<uint64_t>(check->stats.operations);
  result.states_explored = check->stats.states_explored;
  if (check->verdict == Verdict::kViolation) {
    return finish(absl::InternalError(absl::StrCat("not linearizable (", history->size(), " operations):\n",
                                                   check->explanation)));
  }
  return finish(absl::OkStatus());
}

struct Totals {
  uint64_t seeds = 0, operations = 0, ok = 0, info = 0, info_commands = 0, fail = 0, unknown = 0, final_reads = 0;
  uint64_t violations = 0, other_failures = 0;
  uint64_t queries = 0, queries_refused = 0, queries_timed_out = 0, retries = 0, aborted = 0, crashes = 0;
  int64_t states = 0;
  void Add(const SeedResult& r) {
    ++seeds;
    operations += r.operations_checked;
    ok += r.counts.ok;
    info += r.counts.info;
    info_commands += r.counts.info_commands;
    fail += r.counts.fail;
    unknown += r.verdict == Verdict::kUnknown ? 1 : 0;
    violations += r.verdict == Verdict::kViolation ? 1 : 0;
    other_failures += !r.status.ok() && r.verdict != Verdict::kViolation ? 1 : 0;
    final_reads += r.final_reads;
    queries += r.clients.queries_answered;
    queries_refused += r.clients.queries_refused;
    queries_timed_out += r.clients.queries_timed_out;
    retries += r.clients.retries;
    aborted += r.clients.aborted;
    crashes += r.world.crashes;
    states += r.states_explored;
  }
  void Print() const {
    std::printf(
        "linearizability: %lu seeds, %lu operations checked (ok=%lu info=%lu of which %lu commands; fail=%lu "
        "dropped), violations=%lu, unknown verdicts=%lu, other failures=%lu; reads answered=%lu (final %lu) "
        "refused=%lu timed out=%lu; command retries=%lu aborted=%lu; crashes=%lu; states explored=%ld\n",
        seeds, operations, ok, info, info_commands, fail, violations, unknown, other_failures, queries, final_reads,
        queries_refused, queries_timed_out, retries, aborted, crashes, states);
  }
};

// ---- every seed linearizable ----

class LinearizabilitySimShard : public ::testing::TestWithParam<int> {};

TEST_P(LinearizabilitySimShard, EveryHistoryIsLinearizable) {
  uint64_t first = EnvU64("CARACAL_SIM_FIRST_SEED", 1) + GetParam() * kSeedsPerShard;
  Totals total;
  for (uint64_t seed = first; seed < first + kSeedsPerShard; ++seed) {
    SeedResult r = RunLinearizabilitySeed(seed, Variant::kCorrect);
    EXPECT_TRUE(r.status.ok()) << r.status.message();  // and go on: every failing seed of the shard is listed
    if (r.verdict == Verdict::kUnknown) {
      std::printf("seed %lu: the checker's budget ran out (unknown)\n  replay: %s\n", seed,
                  ReplayCommand(seed, Variant::kCorrect).c_str());
    }
    total.Add(r);
  }
  total.Print();
  // The histories were worth checking: reads, retries, unknown outcomes and
  // crashes in every shard.
  EXPECT_GT(total.ok, kSeedsPerShard * 50);
  EXPECT_GT(total.queries, kSeedsPerShard * 10);
  EXPECT_GT(total.retries, kSeedsPerShard * 10);
  EXPECT_GT(total.queries_refused, kSeedsPerShard);
  EXPECT_GT(total.info_commands, 0u);
  EXPECT_GT(total.aborted, 0u);
  EXPECT_GT(total.crashes, kSeedsPerShard);
  // Unknown verdicts (search budget exhausted) stay rare: at most 1% of seeds.
  EXPECT_LE(total.unknown, kSeedsPerShard / 100);
}

INSTANTIATE_TEST_SUITE_P(Seeds, LinearizabilitySimShard, ::testing::Range(0, kShards));

TEST(LinearizabilitySim, Replay) {
  const char* seed = std::getenv("CARACAL_SIM_SEED");
  if (seed == nullptr) GTEST_SKIP() << "set CARACAL_SIM_SEED=<seed> to replay one seed";
  bool dump = EnvU64("CARACAL_SIM_DUMP_HISTORY", 0) != 0;
  SeedResult r = RunLinearizabilitySeed(std::strtoull(seed, nullptr, 10), VariantFromEnv(), dump);
  if (dump) std::printf("%s", r.history.c_str());
  EXPECT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_NE(r.verdict, Verdict::kUnknown);
  Totals total;
  total.Add(r);
  total.Print();
}

TEST(LinearizabilitySim, Soak) {
  uint64_t n = EnvU64("CARACAL_SIM_SOAK_SEEDS", 0);
  if (n == 0) GTEST_SKIP() << "set CARACAL_SIM_SOAK_SEEDS=<count> to soak";
  uint64_t first = EnvU64("CARACAL_SIM_FIRST_SEED", 1'000'000);
  Totals total;
  for (uint64_t seed = first; seed < first + n; ++seed) {
    SeedResult r = RunLinearizabilitySeed(seed, Variant::kCorrect);
    EXPECT_TRUE(r.status.ok()) << r.status.message();
    if (r.verdict == Verdict::kUnknown) std::printf("seed %lu: unknown\n", seed);
    total.Add(r);
    if (total.seeds % 10'000 == 0 && total.seeds < n) total.Print();
  }
  total.Print();
}

TEST(LinearizabilitySim, SameSeedReplaysTheSameHistory) {
  SeedResult a = RunLinearizabilitySeed(7, Variant::kCorrect, true);
  SeedResult b = RunLinearizabilitySeed(7, Variant::kCorrect, true);
  SeedResult c = RunLinearizabilitySeed(8, Variant::kCorrect, true);
  ASSERT_TRUE(a.status.ok()) << a.status.message();
  ASSERT_TRUE(c.status.ok()) << c.status.message();
  EXPECT_EQ(a.trace_hash, b.trace_hash);
  EXPECT_EQ(a.history, b.history);
  EXPECT_NE(a.history, c.history);
}

// ---- the checker catches broken reads ----

// The first of seeds 1..limit whose history the checker rejects (0: none);
// `passed` counts the linearizable seeds before it. Any other failure stops
// the test: it must be the history that told.
uint64_t FirstViolation(Variant variant, uint64_t limit, std::string* message, uint64_t* passed) {
  for (uint64_t seed = 1; seed <= limit; ++seed) {
    SeedResult r = RunLinearizabilitySeed(seed, variant);
    if (r.status.ok()) {
      ++*passed;
      continue;
    }
    *message = std::string(r.status.message());
    EXPECT_NE(message->find("not linearizable"), std::string::npos) << *message;
    EXPECT_NE(message->find(absl::StrCat("replay: CARACAL_SIM_VARIANT=", VariantName(variant))), std::string::npos);
    return seed;
  }
  return 0;
}

TEST(LinearizabilitySim, ServingReadsWithoutAReadIndexIsCaught) {
  std::string message;
  uint64_t passed = 0;
  uint64_t seed = FirstViolation(Variant::kStaleReads, 200, &message, &passed);
  ASSERT_NE(seed, 0u) << "200 seeds of servers answering reads without a read index gave no violation";
  std::printf("stale reads caught at seed %lu (after %lu linearizable seeds):\n%s\n", seed, passed, message.c_str());
}

// Without check-quorum a deposed leader lives for a whole partition; the
// read index round alone keeps its reads linearizable...
TEST(LinearizabilitySim, ReadIndexAloneKeepsReadsLinearizableWithoutCheckQuorum) {
  Totals total;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SeedResult r = RunLinearizabilitySeed(seed, Variant::kNoCheckQuorum);
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    total.Add(r);
  }
  total.Print();
  EXPECT_LE(total.unknown, 2u);
}

// ... and a core that confirms reads without that round serves stale state.
// Rarely, now: a query waits for max(read index, the highest index its client
// has seen) and for its session's earlier commands, so a deposed leader can
// mislead only a client that has not yet seen the newer writes (the first
// violation is at seed 267).
TEST(LinearizabilitySim, ReadIndexWithoutQuorumIsCaught) {
  std::string message;
  uint64_t passed = 0;
  uint64_t seed = FirstViolation(Variant::kReadWithoutQuorum, 600, &message, &passed);
  ASSERT_NE(seed, 0u) << "600 seeds of a core confirming reads without a quorum round gave no violation";
  std::printf("read index without quorum caught at seed %lu (after %lu linearizable seeds):\n%s\n", seed, passed,
              message.c_str());
}

}  // namespace
}  // namespace caracal::sim

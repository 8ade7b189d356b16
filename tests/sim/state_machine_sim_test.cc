// Determinism of the state machine layer, in the seeded simulation with every
// fault on: every server runs the key-value example through
// StateMachineRunner on a random workload (puts with and without a TTL,
// removes, compare-and-sets). The same log replayed on a fresh server gives
// identical state, identical timer firings and identical responses:
//   - after every event, every server that applied an index answered it the
//     same way (also after re-applying from its log after a crash);
//   - at the end, the log of the server that applied the most is replayed on
//     a fresh state machine, and its responses, timer firings and digest are
//     compared with every server at the index that server applied.
// And proof that both checks catch a state machine that is not deterministic.

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/sim/sim.h"

namespace caracal::sim {
namespace {

using examples::kv::CompareAndSet;
using examples::kv::KvStateMachine;
using examples::kv::Put;
using examples::kv::Remove;

const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

constexpr uint64_t kSeedsPerShard = 100;
constexpr int kShards = 10;  // 1,000 seeds in CI

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// A random key-value command over a few keys, so that puts overwrite, removes
// and compare-and-sets hit, and TTLs (1 to 400 ms of log time) expire while
// the run goes on.
std::string RandomKvOperation(std::mt19937_64& rng) {
  std::string key(1, static_cast<char>('a' + rng() % 6));
  std::string value = absl::StrCat("v", rng() % 8);
  switch (rng() % 10) {
    case 0:
    case 1:
    case 2:
      return codec::EncodeOperation(Put{.key = key, .value = value});
    case 3:
    case 4:
    case 5:
      return codec::EncodeOperation(Put{.key = key, .value = value, .ttl_ms = static_cast<int64_t>(1 + rng() % 400)});
    case 6:
      return codec::EncodeOperation(Remove{.key = key});
    default: {
      std::optional<std::string> expected;
      if (rng() % 3 != 0) expected = absl::StrCat("v", rng() % 8);
      return codec::EncodeOperation(CompareAndSet{.key = key, .expected = expected, .value = value});
    }
  }
}

std::string KvDigest(StateMachine& sm) {
  auto& kv = static_cast<KvStateMachine&>(sm);
  return absl::StrCat(kv.Digest(), "|expired:", kv.expirations());
}

// Every fault on, at an intensity drawn from the seed (as in raft_sim_test).
Options KvAllFaults(uint64_t seed) {
  Options o = AllFaultsForSeed(seed);
  o.state_machine = [] { return std::make_unique<KvStateMachine>(); };
  o.make_operation = RandomKvOperation;
  o.digest = KvDigest;
  return o;
}

std::string Replay(uint64_t seed) {
  return absl::StrCat("CARACAL_SIM_SEED=", seed, " build/tests/state_machine_sim_test --gtest_filter='KvSim.Replay'");
}

absl::Status RunKvSeed(uint64_t seed, Stats* stats = nullptr, Options (*options)(uint64_t) = KvAllFaults) {
  World world(options(seed));
  absl::Status s = world.Run();
  if (stats != nullptr) *stats = world.stats();
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("seed ", seed, ": ", s.message(), "\n  replay: ", Replay(seed)));
}

class KvSimShard : public ::testing::TestWithParam<int> {};

TEST_P(KvSimShard, SameLogReplayedOnFreshServersGivesIdenticalStateTimersAndResponses) {
  uint64_t first = EnvU64("CARACAL_SIM_FIRST_SEED", 1) + GetParam() * kSeedsPerShard;
  uint64_t commands_ok = 0, timers_fired = 0, seeds_with_expirations = 0;
  for (uint64_t seed = first; seed < first + kSeedsPerShard; ++seed) {
    Stats st;
    absl::Status s = RunKvSeed(seed, &st);
    ASSERT_TRUE(s.ok()) << s.message();
    commands_ok += st.replayed_commands_ok;
    timers_fired += st.replayed_timers_fired;
    if (st.replayed_timers_fired > 0) ++seeds_with_expirations;
  }
  // The workload really exercised the state machine, and TTLs really expired.
  EXPECT_GT(commands_ok, kSeedsPerShard * 50);
  EXPECT_GT(timers_fired, kSeedsPerShard * 10);
  EXPECT_GT(seeds_with_expirations, kSeedsPerShard * 3 / 4);
}

INSTANTIATE_TEST_SUITE_P(Seeds, KvSimShard, ::testing::Range(0, kShards));

TEST(KvSim, Replay) {
  const char* seed = std::getenv("CARACAL_SIM_SEED");
  if (seed == nullptr) GTEST_SKIP() << "set CARACAL_SIM_SEED=<seed> to replay one seed";
  absl::Status s = RunKvSeed(std::strtoull(seed, nullptr, 10));
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(KvSim, EveryServerRunsTheKvStateMachineAndKeysExpire) {
  World world(KvAllFaults(5));
  ASSERT_TRUE(world.Run().ok());
  const Stats& st = world.stats();
  EXPECT_GT(st.crashes, 0u);
  EXPECT_GT(st.replayed_commands_ok, 100u);
  EXPECT_GT(st.replayed_timers_fired, 10u);
  uint64_t expirations = 0;
  for (NodeId id = 1; id <= 5; ++id) {
    server::StateMachineRunner* runner = world.Runner(id);
    ASSERT_NE(runner, nullptr);
    EXPECT_GT(runner->applied(), 0u);
    expirations = std::max(expirations, static_cast<KvStateMachine&>(runner->state_machine()).expirations());
  }
  EXPECT_GT(expirations, 5u) << "no TTL expired: the workload does not test timers";
  std::printf("entries=%lu commands_ok=%lu timers_fired=%lu expirations=%lu crashes=%lu\n", st.replayed_entries,
              st.replayed_commands_ok, st.replayed_timers_fired, expirations, st.crashes);
}

TEST(KvSim, SameSeedReplaysTheSameHistory) {
  World a(KvAllFaults(11)), b(KvAllFaults(11));
  ASSERT_TRUE(a.Run().ok());
  ASSERT_TRUE(b.Run().ok());
  EXPECT_EQ(a.trace_hash(), b.trace_hash());
  EXPECT_EQ(a.stats().replayed_timers_fired, b.stats().replayed_timers_fired);
}

// ---- the checks can fail ----

// The first violation over a few seeds (OK if none).
absl::Status FirstFailure(Options (*options)(uint64_t)) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    if (absl::Status s = RunKvSeed(seed, nullptr, options); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Answers puts with something that differs between state machine instances:
// servers disagree at the same index.
std::atomic<uint64_t> g_instances{0};

struct InstanceStampedKv : KvStateMachine {
  void Configure(Executor& executor) override {
    KvStateMachine::Configure(executor);
    executor.Register<Touch>([this](Commit<Touch>) -> uint64_t { return instance_; });
  }
  struct Touch : Command<uint64_t> {
    static constexpr std::string_view kName = "test.touch";
    CARACAL_FIELDS()
  };
  uint64_t instance_ = ++g_instances;
};

Options StampedOptions(uint64_t seed) {
  Options o = KvAllFaults(seed);
  o.state_machine = [] { return std::make_unique<InstanceStampedKv>(); };
  o.make_operation = [](std::mt19937_64& rng) {
    return rng() % 50 == 0 ? codec::EncodeOperation(InstanceStampedKv::Touch{}) : RandomKvOperation(rng);
  };
  return o;
}

TEST(KvSim, StateMachineWhoseResponsesDependOnTheServerIsCaught) {
  absl::Status s = FirstFailure(StampedOptions);
  ASSERT_FALSE(s.ok()) << "20 seeds of a state machine that answers with its instance number raised no violation";
  EXPECT_NE(s.message().find("state machine determinism"), std::string_view::npos) << s.message();
  EXPECT_NE(s.message().find("replay: CARACAL_SIM_SEED="), std::string_view::npos) << s.message();
}

// Responses agree (the extra timer touches nothing), but its timer fires at
// instance-dependent log times: only the final replay can see it.
struct DriftingTimerKv : KvStateMachine {
  void Configure(Executor& executor) override {
    KvStateMachine::Configure(executor);
    uint64_t instance = ++g_instances;
    executor.Schedule(std::chrono::milliseconds(1), std::chrono::milliseconds(50 + instance % 7), [] {});
  }
};

Options DriftingTimerOptions(uint64_t seed) {
  Options o = KvAllFaults(seed);
  o.state_machine = [] { return std::make_unique<DriftingTimerKv>(); };
  return o;
}

TEST(KvSim, StateMachineWhoseTimersDependOnTheServerIsCaughtByTheReplay) {
  absl::Status s = FirstFailure(DriftingTimerOptions);
  ASSERT_FALSE(s.ok()) << "20 seeds of a state machine with instance-dependent timers raised no violation";
  EXPECT_NE(s.message().find("replay: server"), std::string_view::npos) << s.message();
  EXPECT_NE(s.message().find("fired timers"), std::string_view::npos) << s.message();
}

}  // namespace
}  // namespace caracal::sim

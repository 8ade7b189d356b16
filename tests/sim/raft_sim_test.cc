// The raft core in the seeded simulation: thousands of seeds with every fault
// on, the safety checks after every event, liveness after healing; and proof
// that the checks catch a deliberately broken core.

#include <cstdlib>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/sim/sim.h"

namespace caracal::sim {
namespace {

// The simulation logs every election at info level; keep test output readable.
const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

constexpr uint64_t kSeedsPerShard = 500;
constexpr int kShards = 10;  // 5,000 seeds in CI

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

Options AllFaults(uint64_t seed) { return AllFaultsForSeed(seed); }

absl::Status RunAllFaults(uint64_t seed) {
  World world(AllFaults(seed));
  absl::Status s = world.Run();
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("seed ", seed, ": ", s.message(), "\n  replay: ", ReplayCommand(seed)));
}

class RaftSimShard : public ::testing::TestWithParam<int> {};

TEST_P(RaftSimShard, AllFaultsKeepEverySafetyPropertyAndRecover) {
  uint64_t first = EnvU64("CARACAL_SIM_FIRST_SEED", 1) + GetParam() * kSeedsPerShard;
  for (uint64_t seed = first; seed < first + kSeedsPerShard; ++seed) {
    absl::Status s = RunAllFaults(seed);
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, RaftSimShard, ::testing::Range(0, kShards));

TEST(RaftSim, Replay) {
  const char* seed = std::getenv("CARACAL_SIM_SEED");
  if (seed == nullptr) GTEST_SKIP() << "set CARACAL_SIM_SEED=<seed> to replay one seed";
  absl::Status s = RunAllFaults(std::strtoull(seed, nullptr, 10));
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(RaftSim, Soak) {
  uint64_t n = EnvU64("CARACAL_SIM_SOAK_SEEDS", 0);
  if (n == 0) GTEST_SKIP() << "set CARACAL_SIM_SOAK_SEEDS=<count> to soak";
  uint64_t first = EnvU64("CARACAL_SIM_FIRST_SEED", 1'000'000);
  for (uint64_t seed = first; seed < first + n; ++seed) {
    absl::Status s = RunAllFaults(seed);
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

TEST(RaftSim, SameSeedReplaysTheSameHistory) {
  World a(AllFaults(77)), b(AllFaults(77)), c(AllFaults(78));
  ASSERT_TRUE(a.Run().ok());
  ASSERT_TRUE(b.Run().ok());
  ASSERT_TRUE(c.Run().ok());
  EXPECT_EQ(a.trace_hash(), b.trace_hash());
  EXPECT_EQ(a.stats().events, b.stats().events);
  EXPECT_NE(a.trace_hash(), c.trace_hash());
}

TEST(RaftSim, FaultsActuallyHappen) {
  // Guard against a harness that silently stopped injecting faults.
  World world(AllFaults(5));
  ASSERT_TRUE(world.Run().ok());
  const Stats& st = world.stats();
  EXPECT_GT(st.crashes, 0u);
  EXPECT_GT(st.partitions, 0u);
  EXPECT_LT(st.messages_delivered, st.messages_sent);
  EXPECT_GT(st.elections_won, 1u);
  EXPECT_GT(st.max_commit, 50u);
  EXPECT_GT(st.reads_confirmed, 50u);
  std::printf("events=%lu sent=%lu delivered=%lu crashes=%lu partitions=%lu elections=%lu proposals=%lu reads=%lu/%lu max_commit=%lu applied=%lu now=%ld\n",
              st.events, st.messages_sent, st.messages_delivered, st.crashes, st.partitions, st.elections_won,
              st.proposals, st.reads_confirmed, st.reads_requested, st.max_commit, st.applied_entries, world.now());
}

// ---- the checks can fail: a deliberately broken core is caught ----

uint64_t FirstViolatingSeed(raft::FaultInjection broken, uint64_t seeds, std::string* message) {
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    Options o = AllFaults(seed);
    o.broken = broken;
    o.broken_node = 0;  // every server runs the broken core
    World world(o);
    absl::Status s = world.Run();
    if (!s.ok()) {
      *message = std::string(s.message());
      return seed;
    }
  }
  return 0;
}

TEST(RaftSim, CoreThatVotesTwiceInATermIsCaught) {
  raft::FaultInjection broken;
  broken.vote_twice_in_a_term = true;
  std::string message;
  uint64_t seed = FirstViolatingSeed(broken, 200, &message);
  ASSERT_NE(seed, 0u) << "200 seeds of a core that votes twice per term raised no violation";
  std::printf("caught at seed %lu: %s\n", seed, message.c_str());
  EXPECT_TRUE(message.find("election safety") != std::string::npos ||
              message.find("log matching") != std::string::npos ||
              message.find("committed") != std::string::npos)
      << message;
}

TEST(RaftSim, CoreThatCommitsWithoutAQuorumIsCaught) {
  raft::FaultInjection broken;
  broken.commit_without_quorum = true;
  std::string message;
  uint64_t seed = FirstViolatingSeed(broken, 200, &message);
  ASSERT_NE(seed, 0u) << "200 seeds of a core that commits without a quorum raised no violation";
  std::printf("caught at seed %lu: %s\n", seed, message.c_str());
  EXPECT_NE(message.find("committed"), std::string::npos) << message;
}

TEST(RaftSim, LeaderThatConfirmsReadsWithoutAQuorumIsCaught) {
  raft::FaultInjection broken;
  broken.read_without_quorum = true;
  std::string message;
  uint64_t seed = FirstViolatingSeed(broken, 200, &message);
  ASSERT_NE(seed, 0u) << "200 seeds of a leader serving unconfirmed reads raised no violation";
  std::printf("caught at seed %lu: %s\n", seed, message.c_str());
  EXPECT_NE(message.find("read index"), std::string::npos) << message;
}

}  // namespace
}  // namespace caracal::sim

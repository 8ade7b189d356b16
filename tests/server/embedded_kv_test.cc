// The key-value example on an embedded 3-server cluster: the whole path from
// a submitted operation through the log to every server's state machine.

#include <limits>

#include "caracal/embedded.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"

namespace caracal::examples::kv {
namespace {

const bool kQuiet = (spdlog::set_level(std::getenv("CARACAL_LOG") ? spdlog::level::debug : spdlog::level::warn), true);

std::unique_ptr<EmbeddedCluster> StartKv(int servers = 3) {
  auto cluster = EmbeddedCluster::Start(
      {.servers = servers, .state_machine = [] { return std::make_unique<KvStateMachine>(); }});
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return *std::move(cluster);
}

TEST(EmbeddedKvTest, PutGetRemoveAndCompareAndSet) {
  auto cluster = StartKv();
  ASSERT_TRUE(cluster->WaitForLeader().ok());
  auto first = cluster->Submit(Put{.key = "a", .value = "1"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, std::nullopt);
  auto second = cluster->Submit(Put{.key = "a", .value = "2"});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, "1");
  auto got = cluster->Query(Get{.key = "a"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "2");

  EXPECT_FALSE(*cluster->Submit(CompareAndSet{.key = "a", .expected = "1", .value = "x"}));
  EXPECT_TRUE(*cluster->Submit(CompareAndSet{.key = "a", .expected = "2", .value = "3"}));
  EXPECT_TRUE(*cluster->Submit(CompareAndSet{.key = "b", .expected = std::nullopt, .value = "new"}));
  EXPECT_EQ(*cluster->Query(Get{.key = "a"}), "3");

  EXPECT_EQ(*cluster->Submit(Remove{.key = "a"}), "3");
  EXPECT_EQ(*cluster->Query(Get{.key = "a"}), std::nullopt);
  EXPECT_EQ(*cluster->Query(Size{}), 1u);
}

TEST(EmbeddedKvTest, ATtlOutsideItsRangeIsRejected) {
  auto cluster = StartKv();
  ASSERT_TRUE(cluster->WaitForLeader().ok());
  for (int64_t ttl : {int64_t{-1}, kMaxTtlMs + 1, std::numeric_limits<int64_t>::max()}) {
    auto r = cluster->Submit(Put{.key = "a", .value = "1", .ttl_ms = ttl});
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << ttl << ": " << r.status();
  }
  EXPECT_EQ(*cluster->Query(Get{.key = "a"}), std::nullopt);
  EXPECT_TRUE(cluster->Submit(Put{.key = "a", .value = "1", .ttl_ms = kMaxTtlMs}).ok());
}

TEST(EmbeddedKvTest, EveryServerAppliesTheSameState) {
  auto cluster = StartKv();
  ASSERT_TRUE(cluster->WaitForLeader().ok());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(cluster->Submit(Put{.key = "k" + std::to_string(i % 7), .value = std::to_string(i)}).ok());
  }
  NodeId leader = *cluster->WaitForLeader();
  Index applied = cluster->server(leader)->Info().applied;
  ASSERT_TRUE(cluster->WaitForApplied(applied));
  for (NodeId id = 1; id <= 3; ++id) {
    auto v = cluster->Query(Get{.key = "k3"}, Consistency::kSequential, id, applied);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, "45") << "server " << id;
  }
}

struct Bogus : Command<int> {
  static constexpr std::string_view kName = "kv.bogus";
  CARACAL_FIELDS()
};

TEST(EmbeddedKvTest, UnknownOperationIsAClearErrorAndChangesNothing) {
  auto cluster = StartKv();
  ASSERT_TRUE(cluster->WaitForLeader().ok());
  auto r = cluster->Submit(Bogus{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("unknown operation 'kv.bogus'"), std::string::npos) << r.status();
  EXPECT_EQ(*cluster->Query(Size{}), 0u);
}

}  // namespace
}  // namespace caracal::examples::kv

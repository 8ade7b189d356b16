// Query consistency levels (DESIGN.md section 5) on an embedded 3-server
// cluster running the key-value example, with the network cut under them:
// a leader that lost its majority must not answer linearizable reads, a lease
// read never sees a value older than an acknowledged write, a sequential read
// waits for the index it needs, and queries never enter the log. Plus the
// apply loop's batching and statistics.

#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "caracal/embedded.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"

namespace caracal::examples::kv {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Value = std::optional<std::string>;
using QueryFuture = std::future<absl::StatusOr<std::string>>;

const bool kQuiet = (spdlog::set_level(std::getenv("CARACAL_LOG") ? spdlog::level::debug : spdlog::level::warn), true);

constexpr auto kAnswerWithin = seconds(10);  // every wait in this file is bounded

std::unique_ptr<EmbeddedCluster> StartKv() {
  auto cluster = EmbeddedCluster::Start(
      {.servers = 3, .state_machine = [] { return std::make_unique<KvStateMachine>(); }});
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

QueryFuture SubmitGet(Server* server, const std::string& key, Consistency consistency, Index min_index = 0) {
  return server->SubmitQuery(codec::EncodeOperation(Get{.key = key}), consistency, min_index);
}

// Waits (bounded) for a Get's answer and decodes it.
absl::StatusOr<Value> Answer(QueryFuture& future, std::chrono::milliseconds within = kAnswerWithin) {
  if (future.wait_for(within) != std::future_status::ready) {
    return absl::DeadlineExceededError("the query was not answered in time");
  }
  absl::StatusOr<std::string> bytes = future.get();
  if (!bytes.ok()) return bytes.status();
  return codec::DecodeResult<Get>(*bytes);
}

absl::StatusOr<Value> GetFrom(Server* server, const std::string& key, Consistency consistency, Index min_index = 0) {
  QueryFuture f = SubmitGet(server, key, consistency, min_index);
  return Answer(f);
}

// An error a deposed or partitioned leader may give instead of an answer.
bool IsRefusal(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsFailedPrecondition(s) || absl::IsAborted(s);
}

// Waits (bounded) until a server other than `old_leader` leads a higher term.
absl::StatusOr<NodeId> WaitForNewLeader(EmbeddedCluster& cluster, NodeId old_leader, Term old_term) {
  auto deadline = std::chrono::steady_clock::now() + kAnswerWithin;
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<NodeId> leader = cluster.WaitForLeader(kAnswerWithin);
    if (!leader.ok()) return leader.status();
    if (*leader != old_leader && cluster.server(*leader)->Info().term > old_term) return *leader;
    std::this_thread::sleep_for(milliseconds(5));  // polling a condition, within the deadline
  }
  return absl::DeadlineExceededError("no new leader was elected by the majority");
}

TEST(QueryConsistencyTest, LinearizableReadOnTheLeaderSeesEveryAcknowledgedWrite) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> leader = cluster->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  Server* server = cluster->server(*leader);
  for (int i = 0; i < 50; ++i) {
    std::string value = std::to_string(i);
    ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = value}).ok());
    absl::StatusOr<Value> got = GetFrom(server, "k", Consistency::kLinearizable);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, value);
  }
  // The default consistency of Get is LINEARIZABLE.
  EXPECT_EQ(Get{}.consistency(), Consistency::kLinearizable);
  EXPECT_EQ(*cluster->Query(Get{.key = "k"}), "49");
}

TEST(QueryConsistencyTest, DeposedLeaderDoesNotAnswerLinearizableReads) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> old_leader = cluster->WaitForLeader();
  ASSERT_TRUE(old_leader.ok()) << old_leader.status();
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "old"}).ok());
  Server* old = cluster->server(*old_leader);
  Term old_term = old->Info().term;

  cluster->Isolate(*old_leader);
  // Submitted while it still believes it leads: it cannot confirm leadership.
  QueryFuture during = SubmitGet(old, "k", Consistency::kLinearizable);

  absl::StatusOr<NodeId> new_leader = WaitForNewLeader(*cluster, *old_leader, old_term);
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  auto written = cluster->Submit(Put{.key = "k", .value = "new"});
  ASSERT_TRUE(written.ok()) << written.status();
  QueryFuture after = SubmitGet(old, "k", Consistency::kLinearizable);

  for (QueryFuture* f : {&during, &after}) {
    absl::StatusOr<Value> got = Answer(*f);
    ASSERT_FALSE(got.ok()) << "a deposed leader answered a linearizable read with " << got->value_or("<none>");
    EXPECT_TRUE(IsRefusal(got.status())) << got.status();
  }
  EXPECT_EQ(*GetFrom(cluster->server(*new_leader), "k", Consistency::kLinearizable), "new");
}

TEST(QueryConsistencyTest, LeaseReadsStopWhenTheLeaderIsCutOffAndNeverReturnAnOverwrittenValue) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> old_leader = cluster->WaitForLeader();
  ASSERT_TRUE(old_leader.ok()) << old_leader.status();
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "old"}).ok());
  Server* old = cluster->server(*old_leader);
  Term old_term = old->Info().term;
  // While the lease holds the leader answers.
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<Value> got = GetFrom(old, "k", Consistency::kLinearizableLease);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "old");
  }

  cluster->Isolate(*old_leader);
  absl::StatusOr<NodeId> new_leader = WaitForNewLeader(*cluster, *old_leader, old_term);
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "new"}).ok());
  // Once a newer write was acknowledged, the old leader must never answer
  // with "old": its lease has run out (no new leader can exist before that).
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<Value> got = GetFrom(old, "k", Consistency::kLinearizableLease);
    ASSERT_FALSE(got.ok()) << "read " << i << " on the cut-off leader returned " << got->value_or("<none>")
                           << " after 'new' was acknowledged";
    EXPECT_TRUE(IsRefusal(got.status())) << got.status();
  }
  EXPECT_EQ(*GetFrom(cluster->server(*new_leader), "k", Consistency::kLinearizableLease), "new");
}

TEST(QueryConsistencyTest, SequentialReadOnAStaleFollowerWaitsForTheIndexItNeeds) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> leader = cluster->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "v1"}).ok());
  ASSERT_TRUE(cluster->WaitForApplied(cluster->server(*leader)->Info().applied));
  NodeId follower = *leader % 3 + 1;
  Server* stale = cluster->server(follower);

  cluster->Isolate(follower);
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "v2"}).ok());
  Index latest = cluster->server(*leader)->Info().applied;  // the index of the v2 write (nothing since)
  ASSERT_LT(stale->Info().applied, latest);

  QueryFuture waiting = SubmitGet(stale, "k", Consistency::kSequential, latest);
  // It waits: not answered while the follower lags.
  EXPECT_EQ(waiting.wait_for(milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(stale->Info().pending_queries, 1u);
  // Without a floor the follower answers at once, from its own (stale) state.
  absl::StatusOr<Value> now = GetFrom(stale, "k", Consistency::kSequential, 0);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, "v1");
  EXPECT_EQ(waiting.wait_for(milliseconds(0)), std::future_status::timeout);

  cluster->Heal();
  absl::StatusOr<Value> caught_up = Answer(waiting);
  ASSERT_TRUE(caught_up.ok()) << caught_up.status();
  EXPECT_EQ(*caught_up, "v2");
  EXPECT_GE(stale->Info().applied, latest);
}

TEST(QueryConsistencyTest, QueriesNeverEnterTheLog) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> leader = cluster->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster->Submit(Put{.key = "k", .value = "v"}).ok());
  Server* server = cluster->server(*leader);
  ASSERT_TRUE(cluster->WaitForApplied(server->Info().applied));
  ServerInfo before = server->Info();
  const Consistency levels[] = {Consistency::kLinearizable, Consistency::kLinearizableLease,
                                Consistency::kSequential};
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Value> got = GetFrom(server, "k", levels[i % 3]);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "v");
  }
  ServerInfo after = server->Info();
  EXPECT_EQ(after.commit, before.commit);
  EXPECT_EQ(after.last_index, before.last_index);
  EXPECT_EQ(after.applied, before.applied);
  EXPECT_EQ(after.term, before.term);
}

TEST(ApplyLoopTest, CommandsCommittedTogetherAreAppliedInFewerBatchesThanEntries) {
  auto cluster = StartKv();
  absl::StatusOr<NodeId> leader = cluster->WaitForLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  Server* server = cluster->server(*leader);
  std::vector<std::future<absl::StatusOr<std::string>>> pending;
  constexpr int kCommands = 500;
  for (int i = 0; i < kCommands; ++i) {
    pending.push_back(server->SubmitCommand(codec::EncodeOperation(Put{.key = absl::StrCat("k", i % 17), .value = "v"})));
  }
  for (auto& f : pending) {
    ASSERT_EQ(f.wait_for(kAnswerWithin), std::future_status::ready);
    ASSERT_TRUE(f.get().ok());
  }
  Index last = server->Info().last_index;
  ASSERT_TRUE(cluster->WaitForApplied(last));
  for (NodeId id = 1; id <= 3; ++id) {
    ServerInfo info = cluster->server(id)->Info();
    SCOPED_TRACE(absl::StrCat("server ", id));
    EXPECT_EQ(info.applied, last);
    EXPECT_EQ(info.entries_applied, last);  // the memory log starts at index 1
    EXPECT_GE(info.entries_applied, static_cast<uint64_t>(kCommands));
    EXPECT_GT(info.apply_batches, 0u);
    EXPECT_LT(info.apply_batches, info.entries_applied) << "every entry applied in a batch of its own";
    EXPECT_EQ(info.apply_queue_depth, 0u);
    EXPECT_EQ(info.pending_queries, 0u);
    EXPECT_EQ(info.live_commits, 17u);  // one live Put per key
  }
}

}  // namespace
}  // namespace caracal::examples::kv

// A session's order on real caracal-server processes: a client pipelines
// commands and queries (Copycat: a session's queries see the commands it
// submitted before them, and everything completes in submission order) while
// the leader is killed with SIGKILL and restarted.

#include <signal.h>

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "caracal/client.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "tests/testing/server_cluster.h"
#include "tests/testing/temp_dir.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;
namespace kv = examples::kv;

constexpr std::chrono::milliseconds kClusterUp = 30s;
constexpr std::chrono::milliseconds kRoundDeadline = 60s;
constexpr int kPairs = 50;  // Put(k, v) then Get(k), per round, without waiting
constexpr int kRounds = 12;
constexpr int kKillAfterRound = 3;
constexpr int kRestartAfterRound = 7;

std::string Outputs(ServerCluster& c) {
  std::string all;
  for (int i = 1; i <= c.size(); ++i) all += "---- server " + std::to_string(i) + "\n" + c.Output(i);
  return all;
}

Consistency Level(int i) {
  static constexpr Consistency kLevels[] = {Consistency::kLinearizable, Consistency::kLinearizableLease,
                                            Consistency::kSequential};
  return kLevels[i % 3];
}

// One round: kPairs (put, get) pairs of one key each, all in flight at once.
// Every get must see its own session's put, and the callbacks must run in
// submission order.
struct Round {
  std::mutex mu;
  std::vector<int> completed;  // submission numbers, in completion order
  std::vector<std::string> stale;
  std::vector<std::string> errors;
  std::promise<void> done;
  int remaining = 2 * kPairs;

  void Completed(int n, const std::string& error = {}) {
    std::lock_guard lock(mu);
    completed.push_back(n);
    if (!error.empty()) errors.push_back(error);
    if (--remaining == 0) done.set_value();
  }
};

void RunRound(Client& client, int round, Round& r) {
  for (int i = 0; i < kPairs; ++i) {
    std::string key = absl::StrCat("k", i);
    std::string value = absl::StrCat("r", round, "-", i);
    client.Submit(kv::Put{.key = key, .value = value},
                  [&r, n = 2 * i](absl::StatusOr<std::optional<std::string>> put) {
                    r.Completed(n, put.ok() ? "" : absl::StrCat("put: ", put.status().ToString()));
                  });
    Consistency level = Level(round * kPairs + i);
    client.Submit(kv::Get{.key = key}, level,
                  [&r, n = 2 * i + 1, key, value, level](absl::StatusOr<std::optional<std::string>> got) {
                    if (got.ok() && *got != value) {
                      std::lock_guard lock(r.mu);
                      r.stale.push_back(absl::StrCat(key, " at level ", static_cast<int>(level), ": got '",
                                                     got->value_or("(none)"), "', its session had put '", value,
                                                     "'"));
                    }
                    r.Completed(n, got.ok() ? "" : absl::StrCat("get ", key, ": ", got.status().ToString()));
                  });
  }
}

TEST(SessionOrderProcessTest, PipelinedQueriesSeeTheirSessionsEarlierCommandsAcrossALeaderKill) {
  TempDir dir;
  ServerCluster cluster(3, CARACAL_SERVER_BINARY, dir.path(),
                        {"--election-timeout-ms", "150", "--heartbeat-ms", "30", "--state-machine", "kv",
                         "--log-level", "warn"});
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitFor(kClusterUp, [&] {
    auto leader = cluster.Leader();
    return leader && leader->commit > 0;
  })) << Outputs(cluster);

  auto client = Client::Builder()
                    .WithServers(absl::StrSplit(cluster.Addresses(), ','))
                    .WithConnectionStrategy(ConnectionStrategy::kAny)  // SEQUENTIAL reads go to any server
                    .WithSessionTimeout(10s)
                    .WithAttemptTimeout(1s)
                    .WithQueryTimeout(30s)
                    .Connect();
  ASSERT_TRUE(client.ok()) << client.status();

  NodeId killed = 0;
  for (int round = 0; round < kRounds; ++round) {
    if (round == kKillAfterRound) {
      auto leader = cluster.Leader();
      ASSERT_TRUE(leader.has_value()) << Outputs(cluster);
      killed = leader->id;
    }
    Round r;
    auto done = r.done.get_future();
    RunRound(**client, round, r);
    // Kill the leader while the round is in flight.
    if (round == kKillAfterRound) cluster.Kill(killed, SIGKILL);
    if (round == kRestartAfterRound) cluster.Start(killed);
    ASSERT_EQ(done.wait_for(kRoundDeadline), std::future_status::ready)
        << "round " << round << " did not complete\n"
        << Outputs(cluster);
    std::lock_guard lock(r.mu);
    EXPECT_TRUE(r.errors.empty()) << "round " << round << ": " << r.errors.size() << " failed, first: " << r.errors[0];
    EXPECT_TRUE(r.stale.empty()) << "round " << round << ": " << r.stale.size() << " of " << kPairs
                                 << " gets missed their session's put, first: " << r.stale[0];
    if (round == kKillAfterRound) {
      auto leader = cluster.Leader();
      ASSERT_TRUE(leader && leader->id != killed) << "the round completed without a new leader\n" << Outputs(cluster);
    }
    for (size_t i = 0; i < r.completed.size(); ++i) {
      ASSERT_EQ(r.completed[i], static_cast<int>(i)) << "round " << round << ": completion order differs from submission order";
    }
  }
  EXPECT_TRUE((*client)->Close().ok());
}

}  // namespace
}  // namespace caracal::testing

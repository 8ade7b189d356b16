// Real caracal-server processes over TCP on 127.0.0.1.

#include <signal.h>

#include <chrono>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/testing/server_cluster.h"
#include "tests/testing/temp_dir.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> FastTimeouts() { return {"--election-timeout-ms", "150", "--heartbeat-ms", "30"}; }

std::string Outputs(ServerCluster& c) {
  std::string all;
  for (int i = 1; i <= c.size(); ++i) all += "---- server " + std::to_string(i) + "\n" + c.Output(i);
  return all;
}

TEST(ServerProcessTest, ThreeServersElectALeaderThatCommits) {
  TempDir dir;
  ServerCluster cluster(3, CARACAL_SERVER_BINARY, dir.path(), FastTimeouts());
  cluster.StartAll();
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    auto leader = cluster.Leader();
    if (!leader || leader->commit == 0) return false;
    for (int i = 1; i <= 3; ++i) {
      auto s = cluster.Status(i);
      if (!s || s->applied < leader->commit || s->leader != leader->id) return false;
    }
    return true;
  })) << Outputs(cluster);
}

TEST(ServerProcessTest, KillingTheLeaderWithSigkillElectsANewLeaderThatCommits) {
  TempDir dir;
  ServerCluster cluster(3, CARACAL_SERVER_BINARY, dir.path(), FastTimeouts());
  cluster.StartAll();
  std::optional<ServerStatus> old;
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    old = cluster.Leader();
    return old && old->commit > 0;
  })) << Outputs(cluster);

  cluster.Kill(old->id, SIGKILL);

  std::optional<ServerStatus> fresh;
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    fresh = cluster.Leader();
    // A new leader's first entry (its Initialize) is committed only with the
    // remaining follower's durable acknowledgement: commit > the old commit.
    return fresh && fresh->id != old->id && fresh->term > old->term && fresh->commit > old->commit;
  })) << Outputs(cluster);

  // The killed server restarts from its disk and follows the new leader.
  cluster.Start(old->id);
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    auto s = cluster.Status(old->id);
    auto leader = cluster.Leader();
    return s && leader && s->leader == leader->id && s->applied >= fresh->commit;
  })) << Outputs(cluster);
}

TEST(ServerProcessTest, WrongFlagsGiveAClearErrorAndNonZeroExit) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{"--id", "1"}, "--members is required"},
      {{"--id", "4", "--members", "1=127.0.0.1:1,2=127.0.0.1:2", "--data-dir", dir.path().string()},
       "--id 4 is not one of --members"},
      {{"--id", "1", "--members", "1=nonsense", "--data-dir", dir.path().string()}, "member 1"},
      {{"--id", "1", "--members", "1=127.0.0.1:1", "--storage", "tape"}, "--storage"},
      {{"--id", "1", "--members", "1=127.0.0.1:1"}, "--data-dir is required"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CARACAL_SERVER_BINARY};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto out = dir.path() / "out.txt";
    std::filesystem::remove(out);
    auto p = Process::Spawn(argv, out);
    ASSERT_TRUE(p.ok());
    auto code = p->Wait(10s);
    ASSERT_TRUE(code.has_value()) << "did not exit";
    EXPECT_NE(*code, 0);
    std::ifstream in(out);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find(c.expected), std::string::npos) << "output was: " << text;
  }
}

}  // namespace
}  // namespace caracal::testing

// Clients against real caracal-server processes over TCP on 127.0.0.1:
// caracal-client (tools/client) on the key-value example, and lock_holder
// (a caracal::Client program, lock_holder.cc) on the lock example.

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/server_cluster.h"
#include "tests/testing/temp_dir.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Every wait is bounded; these are generous because the machine may be busy.
constexpr std::chrono::milliseconds kClusterUp = 30s;
constexpr std::chrono::milliseconds kCommandDeadline = 30s;
constexpr const char* kClientTimeoutMs = "10000";

std::string Outputs(ServerCluster& c) {
  std::string all;
  for (int i = 1; i <= c.size(); ++i) all += "---- server " + std::to_string(i) + "\n" + c.Output(i);
  return all;
}

std::string Describe(const Completed& run) {
  return absl::StrCat("exit ", run.exit_code ? std::to_string(*run.exit_code) : "(still running: killed)", " after ",
                      run.elapsed.count(), " ms\n--- stdout\n", run.out, "--- stderr\n", run.err);
}

// A 3-server cluster hosting `state_machine`, with a leader that committed
// and followers that applied as far.
class ClusterTest : public ::testing::Test {
 protected:
  void StartCluster(const std::string& state_machine) {
    cluster_.emplace(3, CARACAL_SERVER_BINARY, dir_.path(),
                     std::vector<std::string>{"--election-timeout-ms", "150", "--heartbeat-ms", "30",
                                              "--state-machine", state_machine, "--log-level", "warn"});
    cluster_->StartAll();
    ASSERT_TRUE(cluster_->WaitFor(kClusterUp, [&] {
      auto leader = cluster_->Leader();
      if (!leader || leader->commit == 0) return false;
      for (int i = 1; i <= 3; ++i) {
        auto s = cluster_->Status(i);
        if (!s || s->applied < leader->commit || s->leader != leader->id) return false;
      }
      return true;
    })) << Outputs(*cluster_);
  }

  // Runs caracal-client against the cluster with `args` (after the global flags).
  Completed Client(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {CARACAL_CLIENT_BINARY, "--servers", cluster_->Addresses(), "--timeout-ms",
                                     kClientTimeoutMs};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv);
  }
  Completed RunProgram(const std::vector<std::string>& argv) {
    auto run = RunToExit(argv, dir_.path(), kCommandDeadline);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : Completed{};
  }
  // Expects exit 0 and exactly `out` on stdout.
  void ExpectPrints(const std::vector<std::string>& args, const std::string& out) {
    Completed run = Client(args);
    EXPECT_EQ(run.exit_code, 0) << "caracal-client " << ::testing::PrintToString(args) << ": " << Describe(run);
    EXPECT_EQ(run.out, out) << "caracal-client " << ::testing::PrintToString(args) << ": " << Describe(run);
  }

  TempDir dir_;
  std::optional<ServerCluster> cluster_;
};

class ClientProcessTest : public ClusterTest {};

TEST_F(ClientProcessTest, PutGetWithEveryConsistencyCasAndRemove) {
  StartCluster("kv");
  ExpectPrints({"put", "color", "blue"}, "");  // no previous value
  ExpectPrints({"put", "color", "green"}, "blue\n");
  for (const char* consistency : {"linearizable", "lease", "sequential"}) {
    ExpectPrints({"get", "color", "--consistency", consistency}, "green\n");
  }
  ExpectPrints({"get", "color"}, "green\n");  // linearizable by default

  ExpectPrints({"cas", "color", "blue", "red"}, "false\n");
  ExpectPrints({"cas", "color", "green", "red"}, "true\n");
  ExpectPrints({"cas", "--absent", "shape", "round"}, "true\n");
  ExpectPrints({"cas", "--absent", "shape", "square"}, "false\n");
  ExpectPrints({"get", "color"}, "red\n");

  ExpectPrints({"remove", "color"}, "red\n");
  ExpectPrints({"remove", "color"}, "");  // nothing was there

  Completed missing = Client({"get", "color"});
  EXPECT_EQ(missing.exit_code, 1) << Describe(missing);
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err, "caracal-client: get 'color': not found\n");
}

TEST_F(ClientProcessTest, WatchPrintsEachChangeOfAMatchingKeyAndExitsAfterCount) {
  StartCluster("kv");
  auto out = dir_.path() / "watch.out", err = dir_.path() / "watch.err";
  auto watch = Process::Spawn({CARACAL_CLIENT_BINARY, "--servers", cluster_->Addresses(), "--timeout-ms",
                               kClientTimeoutMs, "watch", "user/", "--count", "3"},
                              out, err);
  ASSERT_TRUE(watch.ok()) << watch.status();
  // The watch is registered once it says so: changes from then on are seen.
  ASSERT_TRUE(WaitForText(err, "watching keys starting with 'user/'", kCommandDeadline))
      << "stdout: " << ReadFile(out) << "\nstderr: " << ReadFile(err);

  ExpectPrints({"put", "user/ann", "1"}, "");
  ExpectPrints({"put", "other", "x"}, "");
  ExpectPrints({"cas", "user/ann", "1", "2"}, "true\n");
  ExpectPrints({"remove", "user/ann"}, "2\n");

  auto code = watch->Wait(kCommandDeadline);
  ASSERT_TRUE(code.has_value()) << "watch did not exit after 3 changes; stdout: " << ReadFile(out);
  EXPECT_EQ(*code, 0) << ReadFile(err);
  std::string printed = ReadFile(out);
  EXPECT_THAT(printed, ::testing::MatchesRegex("user/ann=1 index=[0-9]+\n"
                                               "user/ann=2 index=[0-9]+\n"
                                               "user/ann removed index=[0-9]+\n"))
      << printed;
}

TEST_F(ClientProcessTest, AWatchEndsCleanlyOnSigterm) {
  StartCluster("kv");
  auto out = dir_.path() / "watch.out", err = dir_.path() / "watch.err";
  auto watch = Process::Spawn(
      {CARACAL_CLIENT_BINARY, "--servers", cluster_->Addresses(), "--timeout-ms", kClientTimeoutMs, "watch", ""}, out,
      err);
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(WaitForText(err, "watching keys starting with ''", kCommandDeadline)) << ReadFile(err);
  ExpectPrints({"put", "k", "v"}, "");
  ASSERT_TRUE(WaitForText(out, "k=v index=", kCommandDeadline)) << ReadFile(out);

  watch->Signal(SIGTERM);

  auto code = watch->Wait(kCommandDeadline);
  ASSERT_TRUE(code.has_value()) << "watch ignored SIGTERM";
  EXPECT_EQ(*code, 0) << ReadFile(err);
}

TEST(ClientProcessErrorsTest, AnUnreachableClusterFailsWithinTheTimeoutWithAClearMessage) {
  TempDir dir;
  std::string nobody = absl::StrCat("127.0.0.1:", PickFreePort());
  auto start = std::chrono::steady_clock::now();
  auto run = RunToExit({CARACAL_CLIENT_BINARY, "--servers", nobody, "--timeout-ms", "1000", "get", "k"}, dir.path(),
                       kCommandDeadline);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE(run->exit_code.has_value()) << Describe(*run);
  EXPECT_EQ(*run->exit_code, 3) << Describe(*run);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "--timeout-ms 1000 bounds the wait";
  EXPECT_THAT(run->err, StartsWith("caracal-client: cannot reach the cluster at " + nobody)) << Describe(*run);
  EXPECT_EQ(std::count(run->err.begin(), run->err.end(), '\n'), 1) << "one line: " << run->err;
  EXPECT_EQ(run->out, "");
}

TEST(ClientProcessErrorsTest, WrongFlagsGiveAClearErrorAndNonZeroExit) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::string servers = "127.0.0.1:1";
  std::vector<Case> cases = {
      {{"get", "k"}, "--servers is required"},
      {{"--servers", servers}, "subcommand"},
      {{"--servers", servers, "--bogus", "get", "k"}, "--bogus"},
      {{"--servers", servers, "get", "k", "--consistency", "eventual"}, "--consistency"},
      {{"--servers", servers, "put", "k"}, "VALUE is required"},
      {{"--servers", servers, "--timeout-ms", "0", "get", "k"}, "--timeout-ms"},
      {{"--servers", servers, "cas", "k", "v"}, "cas: expected KEY EXPECTED NEW"},
      {{"--servers", "nonsense", "get", "k"}, "--servers: 'nonsense'"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CARACAL_CLIENT_BINARY};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto run = RunToExit(argv, dir.path(), kCommandDeadline);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE(run->exit_code.has_value()) << "did not exit: " << ::testing::PrintToString(c.args);
    EXPECT_EQ(*run->exit_code, 2) << ::testing::PrintToString(c.args) << ": " << Describe(*run);
    EXPECT_THAT(run->err, HasSubstr(c.expected)) << ::testing::PrintToString(c.args) << ": " << Describe(*run);
    EXPECT_EQ(run->out, "") << ::testing::PrintToString(c.args);
  }
  auto help = RunToExit({CARACAL_CLIENT_BINARY, "--help"}, dir.path(), kCommandDeadline);
  ASSERT_TRUE(help.ok());
  EXPECT_EQ(help->exit_code, 0);
  EXPECT_THAT(help->out, HasSubstr("Exit codes:"));
}

// Issue 5: a lock whose holder dies passes to the next waiter once the dead
// holder's session times out.
class LockProcessTest : public ClusterTest {
 protected:
  // Starts a lock_holder that asks for `lock`; its stdout is `name`.out.
  Process StartHolder(const std::string& name, const std::string& lock) {
    auto p = Process::Spawn({CARACAL_LOCK_HOLDER_BINARY, cluster_->Addresses(), lock, "1500"}, Out(name),
                            dir_.path() / (name + ".err"));
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : Process();
  }
  std::filesystem::path Out(const std::string& name) const { return dir_.path() / (name + ".out"); }
  std::string Said(const std::string& name) const {
    return "stdout: " + ReadFile(Out(name)) + "stderr: " + ReadFile(dir_.path() / (name + ".err"));
  }
};

TEST_F(LockProcessTest, AWaiterIsGrantedTheLockAfterTheKilledHoldersSessionTimesOut) {
  StartCluster("lock");
  Process a = StartHolder("a", "printer");
  ASSERT_TRUE(WaitForText(Out("a"), "acquired\n", kCommandDeadline)) << Said("a");
  Process b = StartHolder("b", "printer");
  ASSERT_TRUE(WaitForText(Out("b"), "queued\n", kCommandDeadline)) << Said("b");

  a.KillAndWait();  // SIGKILL: no Unlock, no Unregister; only its session timeout (1.5 s) frees the lock
  auto killed = std::chrono::steady_clock::now();

  ASSERT_TRUE(WaitForText(Out("b"), "granted\n", kCommandDeadline)) << Said("b") << Outputs(*cluster_);
  auto waited = std::chrono::steady_clock::now() - killed;
  // A's last keep-alive was at most a third of the timeout before the kill.
  EXPECT_GE(waited, 900ms) << "granted before A's session could have timed out";
  EXPECT_EQ(ReadFile(Out("b")), "queued\ngranted\n");
  EXPECT_TRUE(b.running()) << "B keeps its session (and the lock)";
}

}  // namespace
}  // namespace caracal::testing

// The real-process fault harness: caracal-server processes behind proxies,
// a nemesis, concurrent clients, and a linearizability check of what they
// saw. CTest label `faults`.
//
//   CARACAL_FAULT_SEED=N   replays a seed (the same faults in the same order;
//                          real processes make the interleaving differ)
//   CARACAL_FAULT_KEEP=1   keeps the history, fault log and server logs of a
//                          passing run too (a failing run always keeps them)
//   tools/soak-faults [SECONDS] [SERVERS]   the long run (FaultHarness.Soak)

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/kv/kv.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/faults_harness/fault_run.h"
#include "tests/testing/temp_dir.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;
using verification::Completion;
using verification::Verdict;

std::optional<uint64_t> EnvNumber(const char* name) {
  const char* text = std::getenv(name);
  uint64_t v = 0;
  if (text == nullptr || !absl::SimpleAtoi(text, &v)) return std::nullopt;
  return v;
}

uint64_t SeedFromEnvironment() {
  if (auto seed = EnvNumber("CARACAL_FAULT_SEED")) return *seed;
  std::random_device rd;
  return (uint64_t{rd()} << 16) ^ rd();
}

std::string TestName() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(info->test_suite_name(), ".", info->name());
}

std::string ReplayLine(uint64_t seed) {
  std::string env;
  for (const char* name : {"CARACAL_FAULT_SOAK_SECONDS", "CARACAL_FAULT_SOAK_SERVERS"}) {
    if (const char* v = std::getenv(name)) absl::StrAppend(&env, name, "=", v, " ");
  }
  return absl::StrCat("replay: ", env, "CARACAL_FAULT_SEED=", seed, " ", ::testing::internal::GetArgvs()[0],
                      " --gtest_filter=", TestName());
}

FaultRunOptions BaseOptions(const TempDir& dir, uint64_t seed) {
  spdlog::set_level(spdlog::level::err);  // the clients' failover warnings would drown the report
  FaultRunOptions o;
  o.binary = CARACAL_SERVER_BINARY;
  o.directory = dir.path();
  o.seed = seed;
  o.log = [](const std::string& line) { std::printf("  %s\n", line.c_str()); };
  return o;
}

// Keeps what a failed run leaves for a post-mortem: the history (History::Parse
// reads it back), the fault log, the checker's explanation and the servers'
// outputs. Returns the directory.
std::string SaveArtifacts(const FaultRunReport& report, const std::filesystem::path& run_dir) {
  const char* base = std::getenv("TMPDIR");
  std::filesystem::path out = std::filesystem::path(base && *base ? base : "/tmp") /
                              absl::StrCat("caracal-faults-seed", report.seed, "-", getpid());
  std::filesystem::create_directories(out);
  std::ofstream(out / "history.txt") << report.history.ToString();
  std::ofstream(out / "faults.txt") << absl::StrJoin(report.fault_log, "\n") << "\n";
  std::ofstream summary(out / "summary.txt");
  summary << report.Summary() << "\n";
  if (report.check.ok()) summary << report.check->explanation << "\n";
  for (const auto& lost : report.lost_writes) summary << "LOST: " << lost << "\n";
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir, ignored)) {
    auto ext = entry.path().extension();
    if (ext == ".out" || ext == ".stacks")
      std::filesystem::copy_file(entry.path(), out / entry.path().filename(), ignored);
  }
  return out.string();
}

// Runs the harness and asserts: linearizable (never "unknown": a search that
// ran out of budget is reported and fails), no acknowledged write lost, a
// leader after healing, a final read of every key.
void RunAndExpectCorrect(FaultRunOptions options, const TempDir& dir) {
  std::printf("%s\n", ReplayLine(options.seed).c_str());
  FaultRun run(options);
  FaultRunReport report = run.Run();
  std::printf("%s", report.Summary().c_str());
  if (report.passed() && std::getenv("CARACAL_FAULT_KEEP") != nullptr) {
    std::printf("kept in %s\n", SaveArtifacts(report, dir.path()).c_str());
  }
  if (!report.passed()) {
    std::string kept = SaveArtifacts(report, dir.path());
    ADD_FAILURE() << "fault run failed (" << ReplayLine(options.seed) << "); history, faults and server logs kept in "
                  << kept << "\n"
                  << report.Summary()
                  << (report.check.ok() ? report.check->explanation : std::string(report.check.status().message()))
                  << "\n"
                  << absl::StrJoin(report.lost_writes, "\n");
  }
  EXPECT_TRUE(report.check.ok()) << report.check.status();
  EXPECT_FALSE(report.unknown()) << "the checker's budget ran out: this run proves nothing (tune the workload)";
  EXPECT_FALSE(report.violation()) << "NOT LINEARIZABLE";
  EXPECT_TRUE(report.lost_writes.empty());
  EXPECT_TRUE(report.converged);
  EXPECT_TRUE(report.keys_without_final_read.empty());
  EXPECT_GT(report.ok, 100) << "too little got done to mean anything";
  EXPECT_GE(report.total_faults(), 3) << "the nemesis hardly did anything";
}

TEST(FindLostWritesTest, AnAcknowledgedWriteMustBeFinalOrFollowedByAnotherWrite) {
  auto history = verification::History::Parse(R"(
    0 p0 [10, 20] ok put("a", "1") -> nil
    1 p1 [30, 40] ok put("a", "2") -> "1"
    2 p2 [50, inf] info put("a", "3")
    3 p0 [10, 20] ok put("b", "1") -> nil
    4 p1 [30, 40] ok cas("b", "1", "2") -> true
    5 p2 [10, 20] ok put("c", "1") -> nil
    6 p1 [30, 40] ok cas("c", "9", "2") -> false
    7 p2 [50, 60] fail put("c", "3")
  )");
  ASSERT_TRUE(history.ok()) << history.status();
  // "a": 1 and 2 were overwritten, perhaps by the unknown 3. "b": fine.
  EXPECT_TRUE(FindLostWrites(*history, {{"a", "3"}, {"b", "2"}, {"c", "1"}}).empty());
  EXPECT_TRUE(FindLostWrites(*history, {{"a", "2"}}).empty());
  // "b" lost its last acknowledged write.
  EXPECT_EQ(FindLostWrites(*history, {{"b", "1"}}).size(), 1u);
  // "c" = 3 came from a write that failed; nothing acknowledged follows put 1,
  // so the final value contradicts it (the checker would also call it a
  // violation).
  EXPECT_EQ(FindLostWrites(*history, {{"c", "3"}}).size(), 1u);
  // Only writes are judged: an unknown write may follow both acknowledged
  // ones of "a", so even an impossible final nil is not a lost write here
  // (the linearizability check is what rejects it).
  EXPECT_TRUE(FindLostWrites(*history, {{"a", std::nullopt}}).empty());
}

// The setup itself: per-server member lists through proxies work (raft
// knows peers by id, peers say Hello with theirs), the peers' traffic really
// goes through the proxies, and cutting a leader's links replaces it.
TEST(ProxiedClusterTest, ServersTalkThroughTheProxiesAndAnIsolatedLeaderIsReplaced) {
  TempDir dir;
  ProxiedCluster cluster({.servers = 3,
                          .binary = CARACAL_SERVER_BINARY,
                          .directory = dir.path(),
                          .extra_flags = {"--election-timeout-ms", "300", "--heartbeat-ms", "50"}});
  cluster.StartAll();
  std::optional<ServerStatus> old;
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    old = cluster.Leader();
    return old && old->commit > 0;
  })) << cluster.AllOutputs();
  // Followers talk to the leader only: its links both ways carry the traffic.
  ASSERT_TRUE(cluster.WaitFor(10s, [&] {
    for (NodeId id : cluster.ids()) {
      if (id == old->id) continue;
      if (cluster.PeerLink(old->id, id).counters().bytes_forwarded == 0) return false;
      if (cluster.PeerLink(id, old->id).counters().bytes_forwarded == 0) return false;
    }
    return true;
  })) << "a link between the leader and a follower carried nothing";

  cluster.Isolate(old->id, /*clients_too=*/true, TcpProxy::BlockMode::kBlackhole);

  std::optional<ServerStatus> fresh;
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    fresh = std::nullopt;
    for (NodeId id : cluster.ids()) {
      auto s = cluster.Status(id);
      if (id != old->id && s && s->role == "leader" && s->term > old->term) fresh = s;
    }
    return fresh.has_value();
  })) << cluster.AllOutputs();

  cluster.Heal();

  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    auto s = cluster.Status(old->id);
    auto leader = cluster.Leader();
    return s && leader && s->role == "follower" && s->leader == leader->id && s->term == leader->term;
  })) << cluster.AllOutputs();
}

// CI: three servers, 25 s of faults.
TEST(FaultHarness, ThreeServersUnderFaultsStayLinearizableAndLoseNoAcknowledgedWrite) {
  TempDir dir;
  FaultRunOptions o = BaseOptions(dir, SeedFromEnvironment());
  o.servers = 3;
  o.nemesis_duration = 25s;
  RunAndExpectCorrect(o, dir);
}

// Outside CI (tools/soak-faults): CARACAL_FAULT_SOAK_SECONDS of faults on
// CARACAL_FAULT_SOAK_SERVERS (default 5) servers.
TEST(FaultHarness, Soak) {
  auto seconds = EnvNumber("CARACAL_FAULT_SOAK_SECONDS");
  if (!seconds) GTEST_SKIP() << "set CARACAL_FAULT_SOAK_SECONDS (tools/soak-faults) to soak";
  TempDir dir;
  FaultRunOptions o = BaseOptions(dir, SeedFromEnvironment());
  o.servers = static_cast<int>(EnvNumber("CARACAL_FAULT_SOAK_SERVERS").value_or(5));
  o.nemesis_duration = std::chrono::seconds(*seconds);
  // Keys rotate every 30 s, so partitions stay small however long the run;
  // the budget only guards against a pathological search.
  o.check.max_states = 100'000'000;
  RunAndExpectCorrect(o, dir);
}

// Partitions follower F from its peers (clients still reach it), writes a new
// value through the majority, then reads from F through a fresh session
// whose SEQUENTIAL query carries no index: F answers the value it had. The
// read is recorded as if it were linearizable. Returns what F answered.
std::optional<std::string> StaleReadFromAPartitionedFollower(FaultRun& run) {
  ProxiedCluster& cluster = run.cluster();
  auto leader = cluster.Leader();
  if (!leader) return std::nullopt;
  NodeId f = leader->id == 1 ? 2 : 1;
  auto writer = run.Connect("probe-writer");
  if (!writer.ok()) return std::nullopt;
  int64_t process = run.NewProcess();
  const std::string key = "probe";
  if (RecordedPut(**writer, run.recorder(), process, key, "old", 5s) != Completion::kOk) return std::nullopt;
  run.Note(absl::StrCat("probe: isolate follower ", f, " from its peers (clients still reach it)"));
  cluster.Isolate(f, /*clients_too=*/false, TcpProxy::BlockMode::kReset);
  std::optional<std::string> stale;
  if (RecordedPut(**writer, run.recorder(), process, key, "new", 5s) == Completion::kOk) {
    // Registers through the leader (second in the list: tried first), reads
    // through the follower (first in the list: the read connection's first
    // choice among non-leaders).
    auto reader = run.Connect("probe-reader", ConnectionStrategy::kFollowers,
                              {cluster.ClientLink(f).address(), cluster.ClientLink(leader->id).address()});
    if (reader.ok()) {
      std::optional<std::string> value;
      if (RecordedGet(**reader, run.recorder(), run.NewProcess(), key, Consistency::kSequential, 5s, &value) ==
          Completion::kOk) {
        stale = value.value_or("<nil>");
      }
      (void)(*reader)->Close();
    }
  }
  (void)(*writer)->Close();
  cluster.Heal();
  run.Note(absl::StrCat("probe: follower ", f, " answered ", stale.value_or("nothing"), "; healed"));
  return stale;
}

// The deliberately broken variant: reads served SEQUENTIAL by followers,
// without the reader's own index, recorded as linearizable. The checker must
// call that a violation. The random part (stale reads under the nemesis)
// usually finds one by itself; the probe at the end makes it certain.
TEST(FaultHarness, TheCheckerCatchesStaleFollowerReadsRecordedAsLinearizable) {
  TempDir dir;
  FaultRunOptions o = BaseOptions(dir, SeedFromEnvironment());
  o.servers = 3;
  o.nemesis_duration = 10s;
  o.stale_follower_reads = true;
  std::printf("%s\n", ReplayLine(o.seed).c_str());
  FaultRun run(o);
  ASSERT_TRUE(run.StartCluster()) << run.cluster().AllOutputs();
  run.StartWorkload();
  run.RunNemesis();
  ASSERT_TRUE(run.HealAndConverge());
  run.StopWorkload();
  FaultRunReport random_part = run.Check();
  std::printf("random part: %s", random_part.Summary().c_str());
  ASSERT_TRUE(random_part.check.ok()) << random_part.check.status();

  std::optional<std::string> answered = StaleReadFromAPartitionedFollower(run);
  ASSERT_TRUE(answered.has_value()) << "the probe could not run";
  ASSERT_NE(*answered, "new") << "the partitioned follower had the new value: the probe did not set up a stale read";
  FaultRunReport report = run.Check();
  std::printf("with the probe: %s", report.Summary().c_str());

  ASSERT_TRUE(report.check.ok()) << report.check.status();
  EXPECT_EQ(report.check->verdict, Verdict::kViolation) << report.check->explanation;
  // The probe alone, whatever the random part did.
  verification::History probe;
  for (const auto& op : report.history.operations()) {
    if (op.args[0].as_string() == "probe") probe.mutable_operations().push_back(op);
  }
  auto probe_check = verification::CheckLinearizability(probe, *verification::KeyValueModel());
  ASSERT_TRUE(probe_check.ok()) << probe_check.status();
  EXPECT_EQ(probe_check->verdict, Verdict::kViolation) << probe.ToString();
  std::printf("random part alone: %s; with the probe: %s (partition %s)\n%s\n",
              std::string(VerdictName(random_part.check->verdict)).c_str(),
              std::string(VerdictName(report.check->verdict)).c_str(), report.check->partition.c_str(),
              report.check->explanation.c_str());
}

}  // namespace
}  // namespace caracal::testing

// Bad input end to end on a real caracal-server process: a disk that fills
// up (a file size limit) and a corrupt log segment. Each must end in a clear
// error, and no write the server acknowledged may be lost.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "caracal/client.h"
#include "examples/kv/kv.h"
#include "framework/storage/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/testing/process.h"
#include "tests/testing/server_cluster.h"
#include "tests/testing/temp_dir.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace kv = examples::kv;

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

// One single-server cluster in `dir`, optionally under a file size limit.
class SingleServer {
 public:
  SingleServer(std::filesystem::path dir, uint16_t port) : dir_(std::move(dir)), port_(port) {}
  void Start(std::optional<size_t> file_size_limit = std::nullopt) {
    std::vector<std::string> argv;
    if (file_size_limit) argv = {"/usr/bin/prlimit", absl::StrCat("--fsize=", *file_size_limit), "--"};
    for (std::string a : {std::string(CARACAL_SERVER_BINARY), std::string("--id"), std::string("1"),
                          std::string("--members"), absl::StrCat("1=", address()), std::string("--data-dir"),
                          (dir_ / "data").string(), std::string("--election-timeout-ms"), std::string("150"),
                          std::string("--heartbeat-ms"), std::string("30"), std::string("--log-level"),
                          std::string("warn")}) {
      argv.push_back(a);
    }
    auto p = Process::Spawn(argv, dir_ / absl::StrCat("server", ++starts_, ".out"));
    ASSERT_TRUE(p.ok()) << p.status();
    process_ = *std::move(p);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string output() const { return ReadFile(dir_ / absl::StrCat("server", starts_, ".out")); }
  std::filesystem::path log_dir() const { return dir_ / "data" / "log"; }
  Process& process() { return process_; }

 private:
  std::filesystem::path dir_;
  uint16_t port_;
  int starts_ = 0;
  Process process_;
};

absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& address) {
  return Client::Builder()
      .WithServers({address})
      .WithConnectTimeout(20s)
      .WithAttemptTimeout(1s)
      .WithSessionTimeout(5s)
      .Connect();
}

TEST(BadInputProcessTest, AFullDiskStopsTheServerClearlyAndLosesNoAcknowledgedWrite) {
  TempDir dir;
  SingleServer server(dir.path(), PickFreePort());
  server.Start(/*file_size_limit=*/256 * 1024);
  auto client = Connect(server.address());
  ASSERT_TRUE(client.ok()) << client.status() << server.output();

  // Write 1 KiB values until the disk is "full".
  std::vector<std::string> acknowledged;
  std::string value(1024, 'x');
  for (int i = 0; i < 2000; ++i) {
    std::string key = absl::StrCat("k", i);
    auto f = (*client)->Submit(kv::Put{.key = key, .value = value});
    if (f.wait_for(5s) != std::future_status::ready) break;  // the server stopped answering
    if (!f.get().ok()) break;
    acknowledged.push_back(key);
  }
  ASSERT_GT(acknowledged.size(), 10u) << server.output();
  ASSERT_LT(acknowledged.size(), 2000u) << "the size limit never bit";
  auto code = server.process().Wait(20s);
  ASSERT_TRUE(code.has_value()) << "the server kept running on a full disk\n" << server.output();
  EXPECT_NE(*code, 0);
  EXPECT_THAT(server.output(), HasSubstr("File too large")) << server.output();
  client->reset();

  // With room again, every acknowledged write is there.
  server.Start();
  auto again = Connect(server.address());
  ASSERT_TRUE(again.ok()) << again.status() << server.output();
  for (const auto& key : acknowledged) {
    auto got = (*again)->Submit(kv::Get{.key = key}).get();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, value) << key << " was acknowledged and is lost";
  }
}

TEST(BadInputProcessTest, ACorruptSegmentIsAClearErrorAtStartAndNotSilentlyDropped) {
  TempDir dir;
  SingleServer server(dir.path(), PickFreePort());
  server.Start();
  auto client = Connect(server.address());
  ASSERT_TRUE(client.ok()) << client.status() << server.output();
  for (int i = 0; i < 200; ++i) {
    auto r = (*client)->Submit(kv::Put{.key = absl::StrCat("k", i), .value = std::string(100, 'v')}).get();
    ASSERT_TRUE(r.ok()) << r.status();
  }
  client->reset();
  server.process().Signal(SIGTERM);
  ASSERT_TRUE(server.process().Wait(20s).has_value());

  // Flip bytes in the middle of the first segment: acknowledged entries are
  // damaged, which is not a torn tail to cut off.
  std::vector<std::filesystem::path> segments;
  for (const auto& e : std::filesystem::directory_iterator(server.log_dir())) segments.push_back(e.path());
  ASSERT_FALSE(segments.empty());
  std::sort(segments.begin(), segments.end());
  // The records end where the file's zeros begin (the rest is preallocated).
  auto data = storage::ReadWholeFile(segments.front());
  ASSERT_TRUE(data.ok()) << data.status();
  size_t size = data->find_last_not_of('\0') + 1;
  ASSERT_GT(size, 4096u);
  {
    std::fstream f(segments.front(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write("\xde\xad\xbe\xef\xde\xad\xbe\xef", 8);
  }
  server.Start();
  auto code = server.process().Wait(20s);
  ASSERT_TRUE(code.has_value()) << "the server started on a corrupt log\n" << server.output();
  EXPECT_NE(*code, 0);
  EXPECT_THAT(server.output(), HasSubstr(segments.front().filename().string())) << server.output();
}

TEST(BadInputProcessTest, UnreachablePeersAreReportedAndTheClusterFormsWhenTheyArrive) {
  TempDir dir;
  ServerCluster cluster(3, CARACAL_SERVER_BINARY, dir.path(),
                        {"--election-timeout-ms", "150", "--heartbeat-ms", "30", "--log-level", "warn"});
  cluster.Start(1);
  // Alone, it says which peers it cannot reach, and keeps running.
  ASSERT_TRUE(cluster.WaitFor(20s, [&] {
    std::string out = cluster.Output(1);
    return out.find("cannot reach node 2") != std::string::npos && out.find("cannot reach node 3") != std::string::npos;
  })) << cluster.Output(1);
  EXPECT_THAT(cluster.Output(1), HasSubstr("Connection refused"));
  ASSERT_TRUE(cluster.Running(1));
  EXPECT_FALSE(cluster.Leader().has_value()) << "a leader without a quorum";
  // The others arrive: a leader is elected and commits.
  cluster.Start(2);
  cluster.Start(3);
  ASSERT_TRUE(cluster.WaitFor(30s, [&] {
    auto leader = cluster.Leader();
    return leader && leader->commit > 0;
  })) << cluster.Output(1);
}

}  // namespace
}  // namespace caracal::testing

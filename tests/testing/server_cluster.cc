#include "tests/testing/server_cluster.h"

#include <signal.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace caracal::testing {

ServerCluster::ServerCluster(int servers, std::filesystem::path binary, std::filesystem::path directory,
                             std::vector<std::string> extra_flags)
    : binary_(std::move(binary)), directory_(std::move(directory)), extra_flags_(std::move(extra_flags)) {
  for (int i = 0; i < servers; ++i) ports_.push_back(PickFreePort());
  for (int i = 1; i <= servers; ++i) std::filesystem::create_directories(DataDir(i));
}

ServerCluster::~ServerCluster() {
  for (auto& [id, p] : processes_) p.Signal(SIGCONT);  // a stopped process cannot die of SIGTERM
}

std::string ServerCluster::Members() const {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ports_.size(); ++i) parts.push_back(absl::StrCat(i + 1, "=127.0.0.1:", ports_[i]));
  return absl::StrJoin(parts, ",");
}

std::string ServerCluster::Addresses() const {
  std::vector<std::string> parts;
  for (uint16_t port : ports_) parts.push_back(absl::StrCat("127.0.0.1:", port));
  return absl::StrJoin(parts, ",");
}

std::filesystem::path ServerCluster::DataDir(NodeId id) const { return directory_ / absl::StrCat("server-", id); }

void ServerCluster::StartAll() {
  for (int i = 1; i <= size(); ++i) Start(i);
}

void ServerCluster::Start(NodeId id) {
  std::filesystem::remove(DataDir(id) / "status");
  std::vector<std::string> argv = {binary_.string(), "--id", absl::StrCat(id), "--members", Members(),
                                   "--data-dir", DataDir(id).string()};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  auto p = Process::Spawn(argv, directory_ / absl::StrCat("server-", id, ".out"));
  if (!p.ok()) throw std::runtime_error(std::string(p.status().message()));
  processes_[id] = *std::move(p);
}

void ServerCluster::Kill(NodeId id, int signal) {
  auto it = processes_.find(id);
  if (it == processes_.end()) return;
  if (signal == SIGKILL) {
    it->second.KillAndWait();
  } else {
    it->second.Signal(signal);
  }
}

bool ServerCluster::Running(NodeId id) {
  auto it = processes_.find(id);
  return it != processes_.end() && it->second.running();
}

std::optional<ServerStatus> ParseServerStatus(const std::string& line) {
  if (line.empty()) return std::nullopt;
  ServerStatus s;
  for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    uint64_t v = 0;
    bool number = absl::SimpleAtoi(kv.second, &v);
    if (kv.first == "role") s.role = std::string(kv.second);
    if (!number) continue;
    if (kv.first == "id") s.id = v;
    if (kv.first == "term") s.term = v;
    if (kv.first == "leader") s.leader = v;
    if (kv.first == "commit") s.commit = v;
    if (kv.first == "applied") s.applied = v;
    if (kv.first == "last") s.last = v;
    if (kv.first == "failed") s.failed = v != 0;
  }
  return s;
}

std::optional<ServerStatus> ServerCluster::Status(NodeId id) {
  if (!Running(id)) return std::nullopt;
  std::ifstream in(DataDir(id) / "status");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return ParseServerStatus(line);
}

std::optional<ServerStatus> ServerCluster::Leader() {
  std::optional<ServerStatus> best;
  for (int i = 1; i <= size(); ++i) {
    auto s = Status(i);
    if (s && s->role == "leader" && (!best || s->term > best->term)) best = s;
  }
  return best;
}

bool ServerCluster::WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& ready) {
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i <= size(); ++i) dirs.push_back(DataDir(i));
  return WaitForFiles(dirs, timeout, ready);
}

std::string ServerCluster::Output(NodeId id) const {
  std::ifstream in(directory_ / absl::StrCat("server-", id, ".out"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace caracal::testing

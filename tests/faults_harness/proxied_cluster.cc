#include "tests/faults_harness/proxied_cluster.h"

#include <signal.h>

#include <fstream>
#include <stdexcept>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace caracal::testing {
namespace {

TcpProxy& Must(const std::unique_ptr<TcpProxy>* proxy, const std::string& what) {
  if (proxy == nullptr || !*proxy) throw std::out_of_range(absl::StrCat("no proxy ", what));
  return **proxy;
}

}  // namespace

ProxiedCluster::ProxiedCluster(Options options) : options_(std::move(options)) {
  for (NodeId id : ids()) {
    ports_[id] = PickFreePort();
    std::filesystem::create_directories(DataDir(id));
  }
  for (NodeId to : ids()) {
    auto client = TcpProxy::Start(ports_[to], absl::StrCat("c->", to));
    if (!client.ok()) throw std::runtime_error(std::string(client.status().message()));
    client_links_[to] = *std::move(client);
    for (NodeId from : ids()) {
      if (from == to) continue;
      auto peer = TcpProxy::Start(ports_[to], absl::StrCat(from, "->", to));
      if (!peer.ok()) throw std::runtime_error(std::string(peer.status().message()));
      peer_links_[{from, to}] = *std::move(peer);
    }
  }
}

ProxiedCluster::~ProxiedCluster() {
  for (auto& [id, p] : processes_) {
    p.Signal(SIGCONT);
    p.KillAndWait();
  }
  for (auto& [key, proxy] : peer_links_) proxy->Stop();
  for (auto& [id, proxy] : client_links_) proxy->Stop();
}

std::vector<NodeId> ProxiedCluster::ids() const {
  std::vector<NodeId> all;
  for (int i = 1; i <= options_.servers; ++i) all.push_back(static_cast<NodeId>(i));
  return all;
}

std::filesystem::path ProxiedCluster::DataDir(NodeId id) const {
  return options_.directory / absl::StrCat("server-", id);
}

std::vector<std::string> ProxiedCluster::ArgvFor(NodeId id) const {
  std::vector<std::string> members;
  for (NodeId other : ids()) {
    std::string address = other == id ? client_links_.at(id)->address() : peer_links_.at({id, other})->address();
    members.push_back(absl::StrCat(other, "=", address));
  }
  std::vector<std::string> argv = {options_.binary.string(),
                                   "--id",
                                   absl::StrCat(id),
                                   "--members",
                                   absl::StrJoin(members, ","),
                                   "--listen",
                                   absl::StrCat("127.0.0.1:", ports_.at(id)),
                                   "--data-dir",
                                   DataDir(id).string()};
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  return argv;
}

void ProxiedCluster::StartAll() {
  for (NodeId id : ids()) Start(id);
}

void ProxiedCluster::Start(NodeId id) {
  std::filesystem::remove(DataDir(id) / "status");
  auto p = Process::Spawn(ArgvFor(id), options_.directory / absl::StrCat("server-", id, ".out"));
  if (!p.ok()) throw std::runtime_error(std::string(p.status().message()));
  processes_[id] = *std::move(p);
  paused_.erase(id);
}

void ProxiedCluster::Kill(NodeId id) {
  auto it = processes_.find(id);
  if (it == processes_.end()) return;
  it->second.Signal(SIGCONT);
  it->second.KillAndWait();
  paused_.erase(id);
}

void ProxiedCluster::Pause(NodeId id) {
  auto it = processes_.find(id);
  if (it == processes_.end() || !it->second.running()) return;
  it->second.Signal(SIGSTOP);
  paused_.insert(id);
}

void ProxiedCluster::Resume(NodeId id) {
  auto it = processes_.find(id);
  if (it != processes_.end()) it->second.Signal(SIGCONT);
  paused_.erase(id);
}

bool ProxiedCluster::Running(NodeId id) {
  auto it = processes_.find(id);
  return it != processes_.end() && it->second.running();
}

std::optional<ServerStatus> ProxiedCluster::Status(NodeId id) {
  if (!Running(id)) return std::nullopt;
  std::ifstream in(DataDir(id) / "status");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return ParseServerStatus(line);
}

std::optional<ServerStatus> ProxiedCluster::Leader() {
  std::optional<ServerStatus> best;
  for (NodeId id : ids()) {
    if (Paused(id)) continue;
    auto s = Status(id);
    if (s && s->role == "leader" && (!best || s->term > best->term)) best = s;
  }
  return best;
}

bool ProxiedCluster::WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& ready) {
  std::vector<std::filesystem::path> dirs;
  for (NodeId id : ids()) dirs.push_back(DataDir(id));
  return WaitForFiles(dirs, timeout, ready);
}

std::string ProxiedCluster::Output(NodeId id) const {
  return ReadFile(options_.directory / absl::StrCat("server-", id, ".out"));
}

std::string ProxiedCluster::AllOutputs() const {
  std::string all;
  for (NodeId id : ids()) absl::StrAppend(&all, "---- server ", id, "\n", Output(id));
  return all;
}

std::vector<std::string> ProxiedCluster::Describe() {
  std::vector<std::string> lines;
  for (NodeId id : ids()) {
    std::ifstream in(DataDir(id) / "status");
    std::string status;
    std::getline(in, status);
    lines.push_back(
        absl::StrCat("server ", id, Running(id) ? (Paused(id) ? " paused" : " running") : " down", ": ", status));
  }
  auto link = [](const TcpProxy& p) {
    TcpProxy::Counters c = p.counters();
    return absl::StrCat("link ", p.name(), p.blocked() ? " CUT" : "", p.delay().count() > 0 ? " delayed" : "",
                        ": open ", c.open, ", accepted ", c.accepted, ", forwarded ", c.bytes_forwarded, ", dropped ",
                        c.bytes_dropped);
  };
  for (const auto& [key, proxy] : peer_links_) lines.push_back(link(*proxy));
  for (const auto& [id, proxy] : client_links_) lines.push_back(link(*proxy));
  return lines;
}

void ProxiedCluster::DumpStacks() {
  const std::filesystem::path gdb = "/usr/bin/gdb";
  if (!std::filesystem::exists(gdb)) return;
  for (auto& [id, process] : processes_) {
    if (!process.running()) continue;
    auto done = RunToExit({gdb.string(), "-p", absl::StrCat(process.pid()), "-batch", "-ex", "thread apply all bt"},
                          options_.directory, std::chrono::seconds(60));
    if (done.ok()) std::ofstream(options_.directory / absl::StrCat("server-", id, ".stacks")) << done->out;
  }
}

TcpProxy& ProxiedCluster::PeerLink(NodeId from, NodeId to) {
  auto it = peer_links_.find({from, to});
  return Must(it == peer_links_.end() ? nullptr : &it->second, absl::StrCat(from, "->", to));
}

TcpProxy& ProxiedCluster::ClientLink(NodeId to) {
  auto it = client_links_.find(to);
  return Must(it == client_links_.end() ? nullptr : &it->second, absl::StrCat("c->", to));
}

std::vector<std::string> ProxiedCluster::ClientAddresses() const {
  std::vector<std::string> all;
  for (const auto& [id, proxy] : client_links_) all.push_back(proxy->address());
  return all;
}

void ProxiedCluster::Partition(const std::set<NodeId>& side, TcpProxy::BlockMode mode) {
  for (auto& [key, proxy] : peer_links_) {
    if (side.contains(key.first) != side.contains(key.second)) proxy->Block(mode);
  }
}

void ProxiedCluster::Isolate(NodeId id, bool clients_too, TcpProxy::BlockMode mode) {
  for (auto& [key, proxy] : peer_links_) {
    if (key.first == id || key.second == id) proxy->Block(mode);
  }
  if (clients_too) ClientLink(id).Block(mode);
}

void ProxiedCluster::Slow(NodeId id, std::chrono::milliseconds delay) {
  for (auto& [key, proxy] : peer_links_) {
    if (key.first == id || key.second == id) proxy->SetDelay(delay);
  }
}

void ProxiedCluster::Heal() {
  for (auto& [key, proxy] : peer_links_) {
    proxy->Unblock();
    proxy->SetDelay(std::chrono::milliseconds(0));
  }
  for (auto& [id, proxy] : client_links_) {
    proxy->Unblock();
    proxy->SetDelay(std::chrono::milliseconds(0));
  }
}

TcpProxy::Counters ProxiedCluster::NetworkCounters() const {
  TcpProxy::Counters sum;
  auto add = [&](const TcpProxy& p) {
    TcpProxy::Counters c = p.counters();
    sum.accepted += c.accepted;
    sum.refused += c.refused;
    sum.target_unreachable += c.target_unreachable;
    sum.reset_by_block += c.reset_by_block;
    sum.bytes_forwarded += c.bytes_forwarded;
    sum.bytes_dropped += c.bytes_dropped;
    sum.open += c.open;
  };
  for (const auto& [key, proxy] : peer_links_) add(*proxy);
  for (const auto& [id, proxy] : client_links_) add(*proxy);
  return sum;
}

}  // namespace caracal::testing

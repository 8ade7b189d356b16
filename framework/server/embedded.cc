#include "caracal/embedded.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "framework/transport/in_memory_transport.h"

namespace caracal {
namespace {

// Polls `ready` until it holds or `timeout` passes. The servers run on their
// own threads; there is nothing to wait on but their state, so this checks it
// every millisecond, always within a deadline.
template <typename F>
bool PollUntil(std::chrono::milliseconds timeout, F ready) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

EmbeddedCluster::EmbeddedCluster(EmbeddedClusterOptions options) : options_(std::move(options)) {
  transport::InMemoryNetworkOptions net;
  net.round_trip_codec = options_.round_trip_codec;
  network_ = transport::InMemoryNetwork::Create(net);
}

EmbeddedCluster::~EmbeddedCluster() {
  for (auto& [id, s] : servers_) {
    if (s) s->Stop();
  }
}

absl::StatusOr<std::unique_ptr<EmbeddedCluster>> EmbeddedCluster::Start(EmbeddedClusterOptions options) {
  if (options.servers < 1) return absl::InvalidArgumentError("an embedded cluster needs at least one server");
  if (!options.state_machine) return absl::InvalidArgumentError("no state machine factory");
  std::unique_ptr<EmbeddedCluster> cluster(new EmbeddedCluster(std::move(options)));
  for (int i = 1; i <= cluster->size(); ++i) {
    if (absl::Status s = cluster->StartServer(i); !s.ok()) return s;
  }
  return cluster;
}

absl::Status EmbeddedCluster::StartServer(NodeId id) {
  ServerOptions o;
  o.id = id;
  for (int i = 1; i <= size(); ++i) o.members[i] = absl::StrCat("embedded-", i);
  if (options_.directory.empty()) {
    o.in_memory = true;
  } else {
    o.data_directory = options_.directory / absl::StrCat("server-", id);
  }
  o.election_timeout = options_.election_timeout;
  o.heartbeat_interval = options_.heartbeat_interval;
  o.state_machine = options_.state_machine;
  o.in_memory_network = network_;
  auto server = Server::Create(std::move(o));
  if (!server.ok()) return server.status();
  if (absl::Status s = (*server)->Start(); !s.ok()) return s;
  servers_[id] = *std::move(server);
  return absl::OkStatus();
}

Server* EmbeddedCluster::server(NodeId id) {
  auto it = servers_.find(id);
  return it == servers_.end() ? nullptr : it->second.get();
}

absl::StatusOr<NodeId> EmbeddedCluster::WaitForLeader(std::chrono::milliseconds timeout) {
  NodeId leader = 0;
  bool ok = PollUntil(timeout, [&] {
    Term best = 0;
    NodeId who = 0;
    int leaders_in_best = 0;
    for (auto& [id, s] : servers_) {
      if (!s) continue;
      ServerInfo info = s->Info();
      if (info.role != "leader") continue;
      if (info.term > best) {
        best = info.term;
        who = id;
        leaders_in_best = 1;
      } else if (info.term == best) {
        ++leaders_in_best;
      }
    }
    if (who == 0 || leaders_in_best != 1) return false;
    ServerInfo info = servers_[who]->Info();
    if (info.commit == 0 || info.applied < info.commit) return false;
    leader = who;
    return true;
  });
  if (!ok) return absl::DeadlineExceededError("no leader was elected in time");
  return leader;
}

absl::StatusOr<std::string> EmbeddedCluster::SubmitCommand(std::string operation, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::Status last = absl::DeadlineExceededError("no leader");
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    absl::StatusOr<NodeId> leader = WaitForLeader(left);
    if (!leader.ok()) return leader.status();
    auto future = servers_[*leader]->SubmitCommand(operation);
    if (future.wait_until(deadline) != std::future_status::ready) break;
    absl::StatusOr<std::string> result = future.get();
    // Retry only what says the command was not applied.
    if (result.ok() || !(absl::IsFailedPrecondition(result.status()) || absl::IsAborted(result.status()) ||
                         absl::IsUnavailable(result.status()))) {
      return result;
    }
    last = result.status();
  }
  return absl::DeadlineExceededError(absl::StrCat("command not applied in time; last error: ", last.ToString()));
}

absl::StatusOr<std::string> EmbeddedCluster::SubmitQuery(std::string operation, Consistency consistency, NodeId on,
                                                         Index min_index) {
  if (on == 0) {
    absl::StatusOr<NodeId> leader = WaitForLeader();
    if (!leader.ok()) return leader.status();
    on = *leader;
  }
  Server* s = server(on);
  if (s == nullptr) return absl::UnavailableError(absl::StrCat("server ", on, " is stopped"));
  auto future = s->SubmitQuery(std::move(operation), consistency, min_index);
  if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return absl::DeadlineExceededError(absl::StrCat("server ", on, " did not answer the query within 10 s"));
  }
  return future.get();
}

bool EmbeddedCluster::WaitForApplied(Index index, std::chrono::milliseconds timeout) {
  return PollUntil(timeout, [&] {
    for (auto& [id, s] : servers_) {
      if (s && s->Info().applied < index) return false;
    }
    return true;
  });
}

void EmbeddedCluster::Isolate(NodeId id) { network_->Isolate(id); }
void EmbeddedCluster::Partition(NodeId a, NodeId b) { network_->Partition(a, b); }
void EmbeddedCluster::Block(NodeId from, NodeId to) { network_->Block(from, to); }
void EmbeddedCluster::Heal() { network_->Heal(); }

void EmbeddedCluster::Stop(NodeId id) {
  auto it = servers_.find(id);
  if (it == servers_.end() || !it->second) return;
  it->second->Stop();
  it->second.reset();
}

absl::Status EmbeddedCluster::Restart(NodeId id) {
  Stop(id);
  return StartServer(id);
}

}  // namespace caracal

#include "caracal/server.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "framework/common/thread_name.h"
#include "framework/server/apply_loop.h"
#include "framework/server/client_service.h"
#include "framework/server/raft_node.h"
#include "framework/transport/in_memory_transport.h"
#include "framework/transport/tcp_transport.h"
#include "serialization/codec.h"
#include "spdlog/spdlog.h"

namespace caracal {

// Owns the three threads' worth of machinery: the io_context thread (raft
// and network), the RaftNode (and through it the storage thread), and the
// ApplyLoop (state machine thread).
class Server::Impl {
 public:
  explicit Impl(ServerOptions options) : options_(std::move(options)), work_(io_.get_executor()) {}

  ~Impl() { Stop(); }

  absl::Status Open() {
    absl::flat_hash_map<NodeId, std::string> peers;
    std::vector<NodeId> voters;
    for (const auto& [id, address] : options_.members) {
      voters.push_back(id);
      if (id != options_.id) peers[id] = address;
    }
    if (options_.in_memory_network) {
      auto t = options_.in_memory_network->Attach(options_.id, io_);
      if (!t.ok()) return t.status();
      transport_ = *std::move(t);
    } else {
      auto tcp = std::make_unique<transport::TcpTransport>(io_, options_.id, options_.cluster_id, peers);
      tcp_ = tcp.get();
      transport_ = std::move(tcp);
    }
    server::RaftNodeOptions o;
    o.id = options_.id;
    o.voters = voters;
    o.data_directory = options_.data_directory;
    o.storage_level = options_.in_memory ? storage::StorageLevel::kMemory : storage::StorageLevel::kDisk;
    o.election_timeout = options_.election_timeout;
    o.heartbeat_interval = options_.heartbeat_interval;
    auto node = server::RaftNode::Open(io_, o, transport_.get());
    if (!node.ok()) return node.status();
    node_ = *std::move(node);
    apply_ = std::make_unique<server::ApplyLoop>(&node_->log(), options_.state_machine(), options_.id);
    node_->SetCommitHandler([this](Index, Index commit) { apply_->Commit(commit); });
    server::ClientServiceOptions so;
    so.id = options_.id;
    so.members = options_.members;
    so.election_timeout = options_.election_timeout;
    so.heartbeat_interval = options_.heartbeat_interval;
    service_ = std::make_unique<server::ClientService>(io_, so, node_.get(), apply_.get(), tcp_);
    node_->SetStatusHandler([this](const server::RaftNodeStatus& s) {
      if (s.raft.role != last_role_ || s.raft.term != last_term_) {
        last_role_ = s.raft.role;
        last_term_ = s.raft.term;
        apply_->RoleChanged(s.raft.role, s.raft.term, s.raft.leader);
      }
      {
        std::lock_guard lock(status_mu_);
        status_ = s;
      }
      if (options_.on_status_change) options_.on_status_change();
    });
    status_ = node_->status();
    return absl::OkStatus();
  }

  absl::Status Start() {
    if (tcp_ != nullptr) {
      std::string listen = options_.listen_address.empty() ? options_.members.at(options_.id) : options_.listen_address;
      if (absl::Status s = tcp_->Listen(listen); !s.ok()) return s;
    }
    service_->Start();
    apply_->Start();
    node_->Start();
    thread_ = std::thread([this] {
      SetThreadName("caracal-io");
      io_.run();
    });
    return absl::OkStatus();
  }

  void Stop() {
    if (stopped_) return;
    stopped_ = true;
    if (thread_.joinable()) {
      // Let the io thread run dry: requests already posted still run (and fail
      // with Unavailable), so no caller is left with a broken promise.
      boost::asio::post(io_, [this] {
        service_->Stop();
        node_->Stop();
        if (tcp_ != nullptr) tcp_->Close();
        transport_.reset();
        work_.reset();
      });
      thread_.join();
    } else if (node_) {
      node_->Stop();
    }
    if (apply_) apply_->Stop();
  }

  ServerInfo Info() const {
    ServerInfo info;
    server::RaftNodeStatus s;
    {
      std::lock_guard lock(status_mu_);
      s = status_;
    }
    info.id = options_.id;
    info.role = raft::RoleName(s.raft.role);
    info.term = s.raft.term;
    info.leader = s.raft.leader;
    info.commit = s.raft.commit;
    info.last_index = s.raft.last_index;
    info.failed = s.failed;
    info.failure = s.failure;
    server::ApplyStats a = apply_->Stats();
    info.applied = a.applied;
    info.entries_applied = a.entries_applied;
    info.apply_batches = a.batches;
    info.apply_latency_avg_us = a.apply_latency_avg_us;
    info.apply_queue_depth = a.commit_target - a.applied;
    info.pending_queries = a.pending_queries;
    info.queries_served = a.queries;
    info.live_commits = a.live_commits;
    info.port = tcp_ != nullptr ? tcp_->port() : 0;
    return info;
  }

  uint16_t port() const { return tcp_ != nullptr ? tcp_->port() : 0; }

  std::future<absl::StatusOr<std::string>> SubmitCommand(std::string operation, uint64_t session, uint64_t sequence) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
    auto future = promise->get_future();
    if (stopped_) {
      promise->set_value(absl::UnavailableError("server stopped"));
      return future;
    }
    std::string payload = serialization::EncodeCommandEntry(session, sequence, operation);
    boost::asio::post(io_, [this, promise, payload = std::move(payload)]() mutable {
      auto proposed = node_->Propose(EntryType::kCommand, Bytes(std::move(payload)));
      if (!proposed.ok()) {
        promise->set_value(proposed.status());
        return;
      }
      apply_->ExpectResult(proposed->first, proposed->second,
                           [promise](absl::StatusOr<std::string> r) { promise->set_value(std::move(r)); });
      node_->Flush();
    });
    return future;
  }

  std::future<absl::StatusOr<std::string>> SubmitQuery(std::string operation, Consistency consistency,
                                                       Index min_index, uint64_t session) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
    auto future = promise->get_future();
    auto done = [promise](absl::StatusOr<std::string> r) { promise->set_value(std::move(r)); };
    if (stopped_) {
      done(absl::UnavailableError("server stopped"));
      return future;
    }
    if (consistency == Consistency::kSequential) {
      apply_->Query(session, std::move(operation), min_index, std::move(done));
      return future;
    }
    bool lease = consistency == Consistency::kLinearizableLease;
    boost::asio::post(io_, [this, lease, min_index, session, operation = std::move(operation),
                            done = std::move(done)]() mutable {
      node_->ReadIndex(lease, [this, min_index, session, operation = std::move(operation),
                               done = std::move(done)](absl::StatusOr<Index> index) mutable {
        if (!index.ok()) {
          done(index.status());
          return;
        }
        apply_->Query(session, std::move(operation), std::max(*index, min_index), std::move(done));
      });
    });
    return future;
  }

 private:
  ServerOptions options_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<transport::Transport> transport_;
  transport::TcpTransport* tcp_ = nullptr;
  std::unique_ptr<server::RaftNode> node_;
  std::unique_ptr<server::ApplyLoop> apply_;
  std::unique_ptr<server::ClientService> service_;
  std::thread thread_;
  std::atomic<bool> stopped_ = false;
  raft::Role last_role_ = raft::Role::kFollower;
  Term last_term_ = 0;
  mutable std::mutex status_mu_;
  server::RaftNodeStatus status_;
};

// ---- Builder ----

Server::Builder& Server::Builder::WithId(NodeId id) {
  options_.id = id;
  return *this;
}
Server::Builder& Server::Builder::WithMembers(std::map<NodeId, std::string> members) {
  options_.members = std::move(members);
  return *this;
}
Server::Builder& Server::Builder::WithListenAddress(std::string address) {
  options_.listen_address = std::move(address);
  return *this;
}
Server::Builder& Server::Builder::WithDataDirectory(std::filesystem::path directory) {
  options_.data_directory = std::move(directory);
  return *this;
}
Server::Builder& Server::Builder::InMemory() {
  options_.in_memory = true;
  return *this;
}
Server::Builder& Server::Builder::WithClusterId(std::string cluster_id) {
  options_.cluster_id = std::move(cluster_id);
  return *this;
}
Server::Builder& Server::Builder::WithElectionTimeout(std::chrono::milliseconds timeout) {
  options_.election_timeout = timeout;
  return *this;
}
Server::Builder& Server::Builder::WithHeartbeatInterval(std::chrono::milliseconds interval) {
  options_.heartbeat_interval = interval;
  return *this;
}
Server::Builder& Server::Builder::WithStateMachine(StateMachineFactory factory) {
  options_.state_machine = std::move(factory);
  return *this;
}
Server::Builder& Server::Builder::WithInMemoryNetwork(std::shared_ptr<transport::InMemoryNetwork> network) {
  options_.in_memory_network = std::move(network);
  return *this;
}
Server::Builder& Server::Builder::OnStatusChange(std::function<void()> fn) {
  options_.on_status_change = std::move(fn);
  return *this;
}
absl::StatusOr<std::unique_ptr<Server>> Server::Builder::Build() { return Server::Create(options_); }

// ---- Server ----

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  if (options.id == 0) return absl::InvalidArgumentError("server id must be a positive number (WithId)");
  if (!options.members.contains(options.id)) {
    return absl::InvalidArgumentError(absl::StrCat("server ", options.id, " is not among the members (WithMembers)"));
  }
  if (!options.state_machine) return absl::InvalidArgumentError("no state machine (WithStateMachine)");
  if (!options.in_memory && options.data_directory.empty()) {
    return absl::InvalidArgumentError("no data directory (WithDataDirectory, or InMemory for tests)");
  }
  if (options.election_timeout <= options.heartbeat_interval) {
    return absl::InvalidArgumentError("the election timeout must be longer than the heartbeat interval");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
absl::Status Server::Start() { return impl_->Start(); }
void Server::Stop() { impl_->Stop(); }
ServerInfo Server::Info() const { return impl_->Info(); }
uint16_t Server::port() const { return impl_->port(); }

std::future<absl::StatusOr<std::string>> Server::SubmitCommand(std::string operation, uint64_t session,
                                                               uint64_t sequence) {
  return impl_->SubmitCommand(std::move(operation), session, sequence);
}

std::future<absl::StatusOr<std::string>> Server::SubmitQuery(std::string operation, Consistency consistency,
                                                             Index min_index, uint64_t session) {
  return impl_->SubmitQuery(std::move(operation), consistency, min_index, session);
}

}  // namespace caracal

#ifndef CARACAL_SERVER_H_
#define CARACAL_SERVER_H_

// caracal::Server: one member of a Caracal cluster, built around an
// application's StateMachine.
//
//   auto server = caracal::Server::Builder()
//                     .WithId(1)
//                     .WithMembers({{1, "127.0.0.1:5001"}, {2, "127.0.0.1:5002"}, {3, "127.0.0.1:5003"}})
//                     .WithDataDirectory("/var/lib/myapp/1")
//                     .WithStateMachine<MapStateMachine>()
//                     .Build();
//   if (!server.ok()) { ... (*server).status().message() says what is wrong ... }
//   (*server)->Start();
//
// Threads: one network/raft thread, one storage thread (appends, group-commit
// fsyncs), one state machine thread. User code never delays heartbeats.
//
// The Submit* functions are thread-safe and return futures; they are what
// the embedded mode uses (remote applications use caracal::Client). Commands
// must reach the leader: a follower answers FailedPrecondition naming the
// leader, and does not forward the command. Forwarding would not make a
// command submitted here safe to retry: without a session (id 0) nothing
// deduplicates it, so a caller that retried after a lost forward could apply
// it twice. caracal::Client finds the leader itself and retries under its
// session's sequence numbers (exactly once); EmbeddedCluster submits to its
// current leader. SEQUENTIAL queries are answered by any server.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "caracal/codec.h"
#include "caracal/operation.h"
#include "caracal/state_machine.h"

namespace caracal {

namespace transport {
class InMemoryNetwork;
}  // namespace transport

using StateMachineFactory = std::function<std::unique_ptr<StateMachine>()>;

struct ServerOptions {
  NodeId id = 0;
  std::map<NodeId, std::string> members;  // every voting member: id -> "host:port"
  std::string listen_address;             // default: members[id]
  std::filesystem::path data_directory;   // required unless in_memory
  bool in_memory = false;                 // nothing survives a restart (tests, embedded)
  std::string cluster_id = "caracal";
  std::chrono::milliseconds election_timeout{300};  // randomized in [t, 2t)
  std::chrono::milliseconds heartbeat_interval{50};
  StateMachineFactory state_machine;
  // Embedded mode: talk over this in-process network instead of TCP.
  std::shared_ptr<transport::InMemoryNetwork> in_memory_network;
  // Called (on the raft thread) whenever role, term, leader or commit changed.
  std::function<void()> on_status_change;
};

struct ServerInfo {
  NodeId id = 0;
  std::string role;  // "leader", "follower", "candidate", "pre-candidate"
  Term term = 0;
  NodeId leader = 0;
  Index commit = 0;
  Index applied = 0;          // by the state machine
  Index last_index = 0;
  uint64_t entries_applied = 0;
  uint64_t apply_batches = 0;
  double apply_latency_avg_us = 0;
  Index apply_queue_depth = 0;
  size_t pending_queries = 0;
  uint64_t queries_served = 0;
  size_t live_commits = 0;
  uint16_t port = 0;          // TCP port (0 in embedded mode)
  bool failed = false;
  std::string failure;
};

class Server {
 public:
  class Builder {
   public:
    Builder& WithId(NodeId id);
    Builder& WithMembers(std::map<NodeId, std::string> members);
    Builder& WithListenAddress(std::string address);
    Builder& WithDataDirectory(std::filesystem::path directory);
    Builder& InMemory();
    Builder& WithClusterId(std::string cluster_id);
    Builder& WithElectionTimeout(std::chrono::milliseconds timeout);
    Builder& WithHeartbeatInterval(std::chrono::milliseconds interval);
    Builder& WithStateMachine(StateMachineFactory factory);
    template <typename SM, typename... Args>
    Builder& WithStateMachine(Args... args) {
      return WithStateMachine([args...]() -> std::unique_ptr<StateMachine> { return std::make_unique<SM>(args...); });
    }
    Builder& WithInMemoryNetwork(std::shared_ptr<transport::InMemoryNetwork> network);
    // `fn` runs on the raft thread whenever role, term, leader or commit
    // changed; call Info() from it for the details. Keep it short.
    Builder& OnStatusChange(std::function<void()> fn);
    // Checks the options and opens storage (recovering the log).
    absl::StatusOr<std::unique_ptr<Server>> Build();

   private:
    ServerOptions options_;
  };

  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens and starts the threads.
  absl::Status Start();
  // Stops every thread; pending requests fail with Unavailable. Idempotent.
  void Stop();

  ServerInfo Info() const;
  uint16_t port() const;

  // Encoded operations (caracal::codec::EncodeOperation) in, encoded results
  // out. A command with a session goes into the log as given, without the
  // leader's sequencing that client requests get: submit a session's
  // commands in sequence order (one that reaches the log ahead of its
  // predecessor fails with Aborted and is not applied).
  std::future<absl::StatusOr<std::string>> SubmitCommand(std::string operation, uint64_t session = 0,
                                                         uint64_t sequence = 0);
  std::future<absl::StatusOr<std::string>> SubmitQuery(std::string operation, Consistency consistency,
                                                       Index min_index = 0, uint64_t session = 0);

  // Typed convenience over the two above (blocking).
  template <OperationType Op>
  absl::StatusOr<WireResultOf<Op>> Submit(const Op& op) {
    if constexpr (CommandType<Op>) {
      return Decode<Op>(SubmitCommand(codec::EncodeOperation(op)).get());
    } else {
      return Decode<Op>(SubmitQuery(codec::EncodeOperation(op), op.consistency()).get());
    }
  }
  template <QueryType Op>
  absl::StatusOr<WireResultOf<Op>> Submit(const Op& op, Consistency consistency, Index min_index = 0) {
    return Decode<Op>(SubmitQuery(codec::EncodeOperation(op), consistency, min_index).get());
  }

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  template <OperationType Op>
  static absl::StatusOr<WireResultOf<Op>> Decode(absl::StatusOr<std::string> bytes) {
    if (!bytes.ok()) return bytes.status();
    return codec::DecodeResult<Op>(*bytes);
  }
  std::unique_ptr<Impl> impl_;
};

}  // namespace caracal

#endif  // CARACAL_SERVER_H_

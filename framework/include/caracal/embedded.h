#ifndef CARACAL_EMBEDDED_H_
#define CARACAL_EMBEDDED_H_

// A whole Caracal cluster inside one process: N servers, each with its own
// threads, talking over an in-memory network, storing in memory (or on disk
// under a directory). For tests, examples and applications that want
// replicated state without separate processes.
//
//   auto cluster = caracal::EmbeddedCluster::Start({.servers = 3, .state_machine = [] {
//     return std::make_unique<MapStateMachine>(); }});
//   auto previous = (*cluster)->Submit(Put{.key = "a", .value = "1"});
//
// Faults can be injected: Isolate/Partition/Heal cut the in-memory network,
// Stop/Restart take a server down and bring it back (from its disk when the
// cluster stores on disk).

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "caracal/server.h"

namespace caracal {

struct EmbeddedClusterOptions {
  int servers = 3;
  StateMachineFactory state_machine;
  // Empty: memory storage. Otherwise server i stores under directory/server-i.
  std::filesystem::path directory;
  std::chrono::milliseconds election_timeout{100};
  std::chrono::milliseconds heartbeat_interval{20};
  bool round_trip_codec = true;  // encode every raft message, as over TCP
};

class EmbeddedCluster {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedCluster>> Start(EmbeddedClusterOptions options);
  ~EmbeddedCluster();

  int size() const { return options_.servers; }
  // The server with this id (1..size()); null while stopped.
  Server* server(NodeId id);
  // Waits until exactly one running server leads the highest term seen, and
  // it has applied an entry of its term.
  absl::StatusOr<NodeId> WaitForLeader(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Submits a command to the current leader, following leader changes until
  // `timeout`. Not exactly-once across retries (sessions provide that).
  template <CommandType Op>
  absl::StatusOr<WireResultOf<Op>> Submit(const Op& op, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    absl::StatusOr<std::string> bytes = SubmitCommand(codec::EncodeOperation(op), timeout);
    if (!bytes.ok()) return bytes.status();
    return codec::DecodeResult<Op>(*bytes);
  }
  // Runs a query on server `on` (the leader when 0).
  template <QueryType Op>
  absl::StatusOr<WireResultOf<Op>> Query(const Op& op, Consistency consistency, NodeId on = 0, Index min_index = 0) {
    absl::StatusOr<std::string> bytes = SubmitQuery(codec::EncodeOperation(op), consistency, on, min_index);
    if (!bytes.ok()) return bytes.status();
    return codec::DecodeResult<Op>(*bytes);
  }
  template <QueryType Op>
  absl::StatusOr<WireResultOf<Op>> Query(const Op& op) {
    return Query(op, op.consistency());
  }

  absl::StatusOr<std::string> SubmitCommand(std::string operation, std::chrono::milliseconds timeout);
  absl::StatusOr<std::string> SubmitQuery(std::string operation, Consistency consistency, NodeId on, Index min_index);

  // Waits until every running server applied at least `index`.
  bool WaitForApplied(Index index, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // ---- faults ----
  void Isolate(NodeId id);
  void Partition(NodeId a, NodeId b);
  void Block(NodeId from, NodeId to);
  void Heal();
  void Stop(NodeId id);
  absl::Status Restart(NodeId id);

 private:
  explicit EmbeddedCluster(EmbeddedClusterOptions options);
  absl::Status StartServer(NodeId id);

  EmbeddedClusterOptions options_;
  std::shared_ptr<transport::InMemoryNetwork> network_;
  std::map<NodeId, std::unique_ptr<Server>> servers_;
};

}  // namespace caracal

#endif  // CARACAL_EMBEDDED_H_

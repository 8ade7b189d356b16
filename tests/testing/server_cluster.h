#ifndef CARACAL_TESTS_TESTING_SERVER_CLUSTER_H_
#define CARACAL_TESTS_TESTING_SERVER_CLUSTER_H_

// A cluster of real caracal-server processes on 127.0.0.1 for fault tests:
// start, SIGKILL, SIGSTOP/SIGCONT, restart; read each server's status file;
// wait (with a deadline) until the cluster reaches a state.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "framework/common/types.h"
#include "tests/testing/process.h"

namespace caracal::testing {

struct ServerStatus {
  NodeId id = 0;
  std::string role;
  Term term = 0;
  NodeId leader = 0;
  Index commit = 0;
  Index applied = 0;
  Index last = 0;
  bool failed = false;
};

// Parses a status line "id=1 role=leader term=3 leader=1 commit=9 ..." as
// caracal-server writes it (tools/server/main.cc); nullopt for an empty line.
std::optional<ServerStatus> ParseServerStatus(const std::string& line);

class ServerCluster {
 public:
  ServerCluster(int servers, std::filesystem::path binary, std::filesystem::path directory,
                std::vector<std::string> extra_flags = {});
  ~ServerCluster();

  void StartAll();
  void Start(NodeId id);
  void Kill(NodeId id, int signal);  // SIGKILL reaps; SIGSTOP/SIGCONT leave it
  bool Running(NodeId id);
  // The status a running server last wrote (nullopt when it is not running).
  std::optional<ServerStatus> Status(NodeId id);
  // The running leader with the highest term, if any.
  std::optional<ServerStatus> Leader();
  bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& ready);
  std::string Members() const;
  // Every server's address, for clients: "127.0.0.1:P1,127.0.0.1:P2,...".
  std::string Addresses() const;
  std::filesystem::path DataDir(NodeId id) const;
  std::string Output(NodeId id) const;  // what it printed, for failure messages
  int size() const { return static_cast<int>(ports_.size()); }

 private:
  std::filesystem::path binary_;
  std::filesystem::path directory_;
  std::vector<std::string> extra_flags_;
  std::vector<uint16_t> ports_;
  std::map<NodeId, Process> processes_;
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_TESTING_SERVER_CLUSTER_H_

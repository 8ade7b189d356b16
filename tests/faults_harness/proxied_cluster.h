#ifndef CARACAL_TESTS_FAULTS_HARNESS_PROXIED_CLUSTER_H_
#define CARACAL_TESTS_FAULTS_HARNESS_PROXIED_CLUSTER_H_

// N caracal-server processes on 127.0.0.1 whose every link runs through a
// TcpProxy the test controls, so that it can cut, heal and slow links as
// well as kill (-9), stop (SIGSTOP), continue and restart servers.
//
// Addresses. Server i listens on its own port P_i (--listen). Raft only
// knows peers by id, and a peer says Hello with its id, so every server may
// have its own view of where the others are: server j's --members lists,
// for every i != j, the proxy j->i (whose target is P_i), and for itself its
// client proxy c->j. So the raft messages j sends to i all pass through
// proxy j->i (each direction of a pair is its own proxy: i's messages to j
// and i's answers to j's messages go through i->j), and a client given the
// client proxies reaches server i through c->i.
//
// Caveat: servers tell clients their member list, and clients remember those
// addresses. A client may therefore also reach server i through some proxy
// j->i it learned from server j. Cutting c->i alone is thus not airtight;
// cutting every proxy into i (Isolate) is.
//
// Data directories survive kills and restarts (same port, same directory);
// the proxies outlive the servers behind them (a dead target closes the
// proxied connection at once).

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "framework/common/types.h"
#include "tests/testing/process.h"
#include "tests/testing/server_cluster.h"
#include "tests/testing/tcp_proxy.h"

namespace caracal::testing {

class ProxiedCluster {
 public:
  struct Options {
    int servers = 3;
    std::filesystem::path binary;     // caracal-server
    std::filesystem::path directory;  // data directories and outputs go here
    std::vector<std::string> extra_flags;
  };

  // Picks the ports (bound to 0) and starts the proxies; no server yet.
  explicit ProxiedCluster(Options options);
  ~ProxiedCluster();  // SIGCONTs and SIGKILLs every server, stops every proxy

  int size() const { return options_.servers; }
  std::vector<NodeId> ids() const;

  // ---- processes ----
  void StartAll();
  void Start(NodeId id);   // (again) with its data directory; throws if it cannot spawn
  void Kill(NodeId id);    // SIGKILL and reap
  void Pause(NodeId id);   // SIGSTOP
  void Resume(NodeId id);  // SIGCONT
  bool Running(NodeId id);
  bool Paused(NodeId id) const { return paused_.contains(id); }
  // What a running server last wrote in its status file (a paused server's
  // is stale, and returned anyway).
  std::optional<ServerStatus> Status(NodeId id);
  // The leader with the highest term among running, not paused servers.
  std::optional<ServerStatus> Leader();
  bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& ready);
  std::filesystem::path DataDir(NodeId id) const;
  std::string Output(NodeId id) const;
  std::string AllOutputs() const;
  // A line per server (process state and status file) and per link (cut,
  // delay, open connections, bytes), for failure reports.
  std::vector<std::string> Describe();
  // Writes every running server's thread stacks (gdb, if installed) to
  // server-N.stacks in the directory, for a hang's post-mortem.
  void DumpStacks();

  // ---- network ----
  TcpProxy& PeerLink(NodeId from, NodeId to);  // the proxy `from` sends to `to` through
  TcpProxy& ClientLink(NodeId to);
  // The client proxies, "127.0.0.1:P" each, in id order.
  std::vector<std::string> ClientAddresses() const;
  // Cuts every peer link between `side` and the rest, both ways.
  void Partition(const std::set<NodeId>& side, TcpProxy::BlockMode mode);
  // Cuts every peer link into and out of `id` (and its client link, if
  // `clients_too`).
  void Isolate(NodeId id, bool clients_too, TcpProxy::BlockMode mode);
  // Every link of `id` (peer links both ways) delays by `delay`.
  void Slow(NodeId id, std::chrono::milliseconds delay);
  // Unblocks every link and removes every delay.
  void Heal();
  // Summed over every proxy.
  TcpProxy::Counters NetworkCounters() const;

 private:
  std::vector<std::string> ArgvFor(NodeId id) const;

  Options options_;
  std::map<NodeId, uint16_t> ports_;  // where each server listens
  std::map<std::pair<NodeId, NodeId>, std::unique_ptr<TcpProxy>> peer_links_;
  std::map<NodeId, std::unique_ptr<TcpProxy>> client_links_;
  std::map<NodeId, Process> processes_;
  std::set<NodeId> paused_;
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_FAULTS_HARNESS_PROXIED_CLUSTER_H_

// caracal-server: one Caracal server process. Runs a Raft member over TCP.
//
//   caracal-server --id 1 --members 1=127.0.0.1:5001,2=127.0.0.1:5002,3=127.0.0.1:5003 --data-dir /var/lib/caracal/1
//
// See --help for every flag.

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "caracal/server.h"
#include "examples/registry.h"
#include "framework/transport/tcp_transport.h"
#include "spdlog/spdlog.h"

namespace {

using caracal::NodeId;

// "1=host:port,2=host:port" -> {1: "host:port", ...}
absl::StatusOr<std::map<NodeId, std::string>> ParseMembers(const std::string& text) {
  std::map<NodeId, std::string> members;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    NodeId id = 0;
    if (!absl::SimpleAtoi(kv.first, &id) || id == 0 || kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--members: '", std::string(item), "' is not ID=HOST:PORT with a positive ID"));
    }
    if (auto hp = caracal::transport::ParseHostPort(kv.second); !hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--members: member ", id, ": ", hp.status().message()));
    }
    if (!members.emplace(id, kv.second).second) {
      return absl::InvalidArgumentError(absl::StrCat("--members: member ", id, " is listed twice"));
    }
  }
  if (members.empty()) return absl::InvalidArgumentError("--members: no members given");
  return members;
}

// Writes the status file atomically (temp + rename) so readers never see half a line.
void WriteStatus(const std::filesystem::path& path, const caracal::ServerInfo& s) {
  if (path.empty()) return;
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "id=" << s.id << " role=" << s.role << " term=" << s.term << " leader=" << s.leader
        << " commit=" << s.commit << " applied=" << s.applied << " last=" << s.last_index
        << " failed=" << (s.failed ? 1 : 0) << " port=" << s.port << " pid=" << getpid() << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caracal-server: one member of a Caracal cluster (Raft over TCP)."};
  uint64_t id = 0;
  std::string members_text, listen, data_dir, storage = "disk", cluster_id = "caracal", log_level = "info";
  std::string status_file, state_machine = "kv";
  int election_ms = 300, heartbeat_ms = 50;
  app.add_option("--id", id, "This server's id (a member of --members)")->required();
  app.add_option("--members", members_text, "Every member, as ID=HOST:PORT,ID=HOST:PORT,...")->required();
  app.add_option("--listen", listen, "Address to listen on (default: this server's address in --members)");
  app.add_option("--data-dir", data_dir, "Directory for the log and metadata (created if missing)");
  app.add_option("--storage", storage, "disk (default) or memory (nothing survives a restart)")
      ->check(CLI::IsMember({"disk", "memory"}));
  app.add_option("--cluster-id", cluster_id, "Peers with another cluster id are refused")->capture_default_str();
  app.add_option("--election-timeout-ms", election_ms, "Election timeout, randomized in [t, 2t)")
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", heartbeat_ms, "Leader heartbeat interval")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--status-file", status_file,
                 "File rewritten with one status line on every change (default: DATA_DIR/status)");
  app.add_option("--state-machine", state_machine, "Which example state machine to host")
      ->check(CLI::IsMember(caracal::examples::StateMachineNames()))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Signals are taken synchronously by the main thread (sigtimedwait below);
  // block them before any thread starts so none of those threads gets them.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  spdlog::set_level(spdlog::level::from_str(log_level));
  auto members = ParseMembers(members_text);
  if (!members.ok()) {
    std::fprintf(stderr, "caracal-server: %s\n", std::string(members.status().message()).c_str());
    return 2;
  }
  if (!members->contains(id)) {
    std::fprintf(stderr, "caracal-server: --id %lu is not one of --members\n", static_cast<unsigned long>(id));
    return 2;
  }
  if (storage == "disk" && data_dir.empty()) {
    std::fprintf(stderr, "caracal-server: --data-dir is required with --storage disk\n");
    return 2;
  }
  if (election_ms <= heartbeat_ms) {
    std::fprintf(stderr, "caracal-server: --election-timeout-ms must be larger than --heartbeat-ms\n");
    return 2;
  }
  if (listen.empty()) listen = members->at(id);
  if (status_file.empty() && !data_dir.empty()) status_file = (std::filesystem::path(data_dir) / "status").string();
  if (!data_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    if (ec) {
      std::fprintf(stderr, "caracal-server: cannot create --data-dir %s: %s\n", data_dir.c_str(), ec.message().c_str());
      return 1;
    }
  }

  // A file size limit (RLIMIT_FSIZE) must surface as a failed write (EFBIG)
  // that stops the server with a clear error, not as a silent SIGXFSZ death.
  std::signal(SIGXFSZ, SIG_IGN);

  caracal::StateMachineFactory factory = caracal::examples::FindStateMachine(state_machine);
  std::map<caracal::NodeId, std::string> member_map(members->begin(), members->end());
  std::filesystem::path status_path = status_file == "-" ? "" : status_file;
  std::mutex status_mu;
  caracal::Server* server_ptr = nullptr;
  std::string last_role_key;
  auto write_status = [&] {
    std::lock_guard lock(status_mu);
    if (server_ptr != nullptr) WriteStatus(status_path, server_ptr->Info());
  };
  // On the raft thread: only role, term, leader and failure changes are
  // written at once (a file write per commit would slow every commit); the
  // main loop below refreshes commit and applied every 100 ms.
  auto on_status_change = [&] {
    std::lock_guard lock(status_mu);
    if (server_ptr == nullptr) return;
    caracal::ServerInfo info = server_ptr->Info();
    std::string key = absl::StrCat(info.role, "/", info.term, "/", info.leader, "/", info.failed);
    if (key == last_role_key) return;
    last_role_key = key;
    WriteStatus(status_path, info);
  };
  auto built = caracal::Server::Builder()
                   .WithId(id)
                   .WithMembers(member_map)
                   .WithListenAddress(listen)
                   .WithDataDirectory(data_dir)
                   .WithClusterId(cluster_id)
                   .WithElectionTimeout(std::chrono::milliseconds(election_ms))
                   .WithHeartbeatInterval(std::chrono::milliseconds(heartbeat_ms))
                   .WithStateMachine(factory)
                   .OnStatusChange(on_status_change);
  if (storage == "memory") built.InMemory();
  auto server = built.Build();
  if (!server.ok()) {
    std::fprintf(stderr, "caracal-server: cannot open server %lu: %s\n", static_cast<unsigned long>(id),
                 std::string(server.status().message()).c_str());
    return 1;
  }
  if (absl::Status s = (*server)->Start(); !s.ok()) {
    std::fprintf(stderr, "caracal-server: cannot start server %lu on %s: %s\n", static_cast<unsigned long>(id),
                 listen.c_str(), std::string(s.message()).c_str());
    return 1;
  }
  {
    std::lock_guard lock(status_mu);
    server_ptr = server->get();
  }
  spdlog::info("server {}: {} state machine, listening on {} (port {}), {} members", id, state_machine, listen,
               (*server)->port(), members->size());

  // Wait for SIGINT/SIGTERM; refresh the status file meanwhile (applied
  // progress happens on the state machine thread and is not a status event).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int sig = 0;
  for (;;) {
    write_status();
    if ((*server)->Info().failed) break;
    timespec wait{0, 100'000'000};
    sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig > 0) break;
  }
  bool failed = (*server)->Info().failed;
  if (sig > 0) spdlog::info("server {}: signal {}, shutting down", id, sig);
  {
    std::lock_guard lock(status_mu);
    server_ptr = nullptr;
  }
  (*server)->Stop();
  return failed ? 1 : 0;
}

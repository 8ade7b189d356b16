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
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/signal_set.hpp"
#include "framework/server/raft_node.h"
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
void WriteStatus(const std::filesystem::path& path, const caracal::server::RaftNodeStatus& s) {
  if (path.empty()) return;
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "id=" << s.raft.id << " role=" << caracal::raft::RoleName(s.raft.role) << " term=" << s.raft.term
        << " leader=" << s.raft.leader << " commit=" << s.raft.commit << " applied=" << s.applied
        << " last=" << s.raft.last_index << " failed=" << (s.failed ? 1 : 0) << " pid=" << getpid() << "\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caracal-server: one member of a Caracal cluster (Raft over TCP)."};
  uint64_t id = 0;
  std::string members_text, listen, data_dir, storage = "disk", cluster_id = "caracal", log_level = "info";
  std::string status_file;
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
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

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

  boost::asio::io_context io;
  absl::flat_hash_map<NodeId, std::string> peers;
  std::vector<NodeId> voters;
  for (const auto& [mid, address] : *members) {
    voters.push_back(mid);
    if (mid != id) peers[mid] = address;
  }
  caracal::transport::TcpTransport transport(io, id, cluster_id, peers);
  if (absl::Status s = transport.Listen(listen); !s.ok()) {
    std::fprintf(stderr, "caracal-server: cannot listen on %s: %s\n", listen.c_str(), std::string(s.message()).c_str());
    return 1;
  }

  caracal::server::RaftNodeOptions options;
  options.id = id;
  options.voters = voters;
  options.data_directory = data_dir;
  options.storage_level =
      storage == "disk" ? caracal::storage::StorageLevel::kDisk : caracal::storage::StorageLevel::kMemory;
  options.election_timeout = std::chrono::milliseconds(election_ms);
  options.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
  auto node = caracal::server::RaftNode::Open(io, options, &transport);
  if (!node.ok()) {
    std::fprintf(stderr, "caracal-server: cannot open server %lu: %s\n", static_cast<unsigned long>(id),
                 std::string(node.status().message()).c_str());
    return 1;
  }
  std::filesystem::path status_path = status_file == "-" ? "" : status_file;
  (*node)->SetStatusHandler([&](const caracal::server::RaftNodeStatus& s) {
    WriteStatus(status_path, s);
    if (s.failed) io.stop();
  });
  WriteStatus(status_path, (*node)->status());

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("server {}: signal {}, shutting down", id, sig);
    (*node)->Stop();
    transport.Close();
    io.stop();
  });
  spdlog::info("server {}: listening on {} (port {}), {} members", id, listen, transport.port(), members->size());
  (*node)->Start();
  io.run();
  bool failed = (*node)->status().failed;
  (*node)->Stop();
  return failed ? 1 : 0;
}

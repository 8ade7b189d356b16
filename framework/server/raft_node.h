#ifndef CARACAL_FRAMEWORK_SERVER_RAFT_NODE_H_
#define CARACAL_FRAMEWORK_SERVER_RAFT_NODE_H_

// RaftNode: the raft core running for real. It binds the deterministic core
// (framework/raft) to a clock, a transport and durable storage:
//
//   network/raft thread (the caller's io_context): ticks, incoming messages,
//     proposals, the core's Ready handling, hard state saves (rare, synchronous:
//     a vote is durable before it is sent);
//   storage thread (storage::LogWriter): appends and group-commit fsyncs; when
//     a batch is durable it posts OnPersisted back to the raft thread.
//
// Every public member function must be called on the io_context's thread
// (or before it runs). Commit notifications run there too.
//
// A storage failure (disk full, I/O error) stops the node: it stops ticking
// and answering, exactly like a crashed server, and says why in the log and
// in status(). Nothing acknowledged is lost: acknowledgements only ever
// follow a successful fsync.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "framework/common/types.h"
#include "framework/raft/raft.h"
#include "framework/server/log_adapter.h"
#include "framework/storage/log.h"
#include "framework/storage/log_writer.h"
#include "framework/storage/metadata.h"
#include "framework/transport/transport.h"

namespace caracal::server {

struct RaftNodeOptions {
  NodeId id = 0;
  std::vector<NodeId> voters;
  std::filesystem::path data_directory;           // DISK: log/ and metadata live here
  storage::StorageLevel storage_level = storage::StorageLevel::kDisk;
  std::chrono::milliseconds election_timeout{300}; // randomized in [t, 2t)
  std::chrono::milliseconds heartbeat_interval{50};
  std::chrono::milliseconds tick_interval{10};
  size_t segment_bytes = 64u << 20;
};

struct RaftNodeStatus {
  raft::Status raft;
  Index applied = 0;     // highest index handed to the commit handler
  Index durable = 0;     // highest index fsynced
  bool failed = false;
  std::string failure;   // why it stopped, when failed
};

class RaftNode {
 public:
  // Called on the raft thread with every newly committed, durable range
  // (first, last]; read the entries from log().
  using CommitHandler = std::function<void(Index previous, Index commit)>;
  using StatusHandler = std::function<void(const RaftNodeStatus&)>;

  // Opens (or creates) the log and metadata, then builds the core from them.
  static absl::StatusOr<std::unique_ptr<RaftNode>> Open(boost::asio::io_context& io, RaftNodeOptions options,
                                                        transport::Transport* transport);
  ~RaftNode();
  RaftNode(const RaftNode&) = delete;
  RaftNode& operator=(const RaftNode&) = delete;

  // Starts ticking and handling messages.
  void Start();
  // Stops ticking, drains the storage thread. Idempotent.
  void Stop();

  // Appends an entry (leader only) and returns its index and term; it is
  // sent and written at the next Flush() (or tick), so a caller can first
  // arrange to hear about its outcome. FailedPrecondition naming the leader
  // on a follower; Unavailable when stopped.
  absl::StatusOr<std::pair<Index, Term>> Propose(EntryType type, Bytes payload);
  // Hands what the core produced to storage and the network.
  void Flush() { Process(); }

  // How far a query must wait: `done` gets the index the state machine must
  // have applied before a linearizable query may run (read index, or the
  // lease when `lease` and it holds), or an error (not the leader, leadership
  // lost before confirmation, stopped).
  void ReadIndex(bool lease, std::function<void(absl::StatusOr<Index>)> done);

  void SetCommitHandler(CommitHandler handler) { commit_handler_ = std::move(handler); }
  // Called whenever role, term, leader, commit or failure changed.
  void SetStatusHandler(StatusHandler handler) { status_handler_ = std::move(handler); }

  RaftNodeStatus status() const;
  // The core's role and leader, without building a whole status (hot path).
  raft::Role role() const { return raft_->role(); }
  NodeId leader() const { return raft_->leader(); }
  Term term() const { return raft_->term(); }
  const storage::Log& log() const { return *log_; }

 private:

  RaftNode(boost::asio::io_context& io, RaftNodeOptions options, transport::Transport* transport);
  void ScheduleTick();
  void Process();
  void OnWriteDone(absl::Status status, uint64_t write_id);
  void Fail(const absl::Status& status);
  void FailReads(const absl::Status& status);
  static std::pair<int64_t, int64_t> Now();

  boost::asio::io_context& io_;
  RaftNodeOptions options_;
  transport::Transport* transport_;
  std::unique_ptr<storage::Log> log_;
  std::unique_ptr<LogAdapter> adapter_;
  std::unique_ptr<storage::MetadataStore> metadata_;
  std::unique_ptr<storage::LogWriter> writer_;
  std::unique_ptr<raft::Raft> raft_;
  boost::asio::steady_timer tick_timer_;
  std::shared_ptr<bool> alive_;  // posted callbacks check it (raft thread only)
  bool running_ = false;
  bool stopped_ = false;
  bool failed_ = false;
  std::string failure_;
  Index applied_ = 0;
  uint64_t next_read_id_ = 1;
  std::map<uint64_t, std::function<void(absl::StatusOr<Index>)>> reads_;
  CommitHandler commit_handler_;
  StatusHandler status_handler_;
  raft::Status last_reported_;
  Index last_reported_applied_ = 0;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_RAFT_NODE_H_

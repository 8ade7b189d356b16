#include "framework/server/raft_node.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "spdlog/spdlog.h"

namespace caracal::server {

std::pair<int64_t, int64_t> RaftNode::Now() {
  using namespace std::chrono;
  int64_t mono = duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
  int64_t wall = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  return {mono, wall};
}

RaftNode::RaftNode(boost::asio::io_context& io, RaftNodeOptions options, transport::Transport* transport)
    : io_(io),
      options_(std::move(options)),
      transport_(transport),
      tick_timer_(io),
      alive_(std::make_shared<bool>(true)) {}

absl::StatusOr<std::unique_ptr<RaftNode>> RaftNode::Open(boost::asio::io_context& io, RaftNodeOptions options,
                                                         transport::Transport* transport) {
  if (options.id == 0) return absl::InvalidArgumentError("server id must be a positive number");
  if (std::find(options.voters.begin(), options.voters.end(), options.id) == options.voters.end()) {
    return absl::InvalidArgumentError(absl::StrCat("server ", options.id, " is not among the members"));
  }
  std::unique_ptr<RaftNode> node(new RaftNode(io, std::move(options), transport));
  const RaftNodeOptions& o = node->options_;
  bool disk = o.storage_level == storage::StorageLevel::kDisk;

  storage::LogOptions log_options;
  log_options.level = o.storage_level;
  log_options.directory = o.data_directory / "log";
  log_options.segment_bytes = o.segment_bytes;
  auto log = storage::Log::Open(log_options);
  if (!log.ok()) return log.status();
  node->log_ = *std::move(log);
  if (disk) {
    auto metadata = storage::MetadataStore::Open(o.data_directory);
    if (!metadata.ok()) return metadata.status();
    node->metadata_ = *std::move(metadata);
  } else {
    node->metadata_ = storage::MetadataStore::OpenInMemory();
  }
  node->adapter_ = std::make_unique<LogAdapter>(node->log_.get());
  node->writer_ = std::make_unique<storage::LogWriter>(node->log_.get());

  raft::Config config;
  config.id = o.id;
  config.voters = o.voters;
  config.election_timeout_min = std::chrono::duration_cast<std::chrono::microseconds>(o.election_timeout).count();
  config.election_timeout_max = 2 * config.election_timeout_min;
  config.heartbeat_interval = std::chrono::duration_cast<std::chrono::microseconds>(o.heartbeat_interval).count();
  config.seed = std::random_device{}();
  auto [mono, wall] = Now();
  node->raft_ = std::make_unique<raft::Raft>(config, node->adapter_.get(), node->metadata_->Load().hard_state, mono,
                                             wall);
  node->applied_ = node->log_->FirstIndex() - 1;
  spdlog::info("server {}: opened log [{}, {}] (durable {}), term {}", o.id, node->log_->FirstIndex(),
               node->log_->LastIndex(), node->log_->DurableIndex(), node->raft_->term());
  return node;
}

RaftNode::~RaftNode() {
  Stop();
  *alive_ = false;
}

void RaftNode::Start() {
  if (running_ || failed_) return;
  running_ = true;
  std::weak_ptr<bool> alive = alive_;
  transport_->SetHandler([this, alive](raft::Message m) {
    auto token = alive.lock();
    if (!token || !*token || !running_) return;
    // Time a message is received by, for the lease and election timers:
    // the io thread may have been busy (an fsync of the hard state).
    auto [mono, wall] = Now();
    raft_->Tick(mono, wall);
    raft_->Step(m);
    Process();
  });
  ScheduleTick();
  Process();
}

void RaftNode::Stop() {
  if (stopped_) return;
  stopped_ = true;
  running_ = false;
  tick_timer_.cancel();
  if (transport_) transport_->SetHandler(nullptr);
  if (writer_) writer_->Shutdown();  // drains; its callbacks post to io_ and find alive_ false or !running_
  FailReads(absl::UnavailableError("server stopped"));
}

void RaftNode::FailReads(const absl::Status& status) {
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [id, done] : reads) done(status);
}

void RaftNode::ScheduleTick() {
  tick_timer_.expires_after(options_.tick_interval);
  tick_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    auto token = alive.lock();
    if (ec || !token || !*token || !running_) return;
    auto [mono, wall] = Now();
    raft_->Tick(mono, wall);
    Process();
    ScheduleTick();
  });
}

absl::StatusOr<std::pair<Index, Term>> RaftNode::Propose(EntryType type, Bytes payload) {
  if (!running_) {
    return absl::UnavailableError(failed_ ? absl::StrCat("server failed: ", failure_) : "server is not running");
  }
  auto [mono, wall] = Now();
  raft_->Tick(mono, wall);  // stamp with a fresh wall clock
  auto index = raft_->Propose(type, std::move(payload));
  if (!index.ok()) return index.status();
  return std::make_pair(*index, raft_->term());
}

void RaftNode::ReadIndex(bool lease, std::function<void(absl::StatusOr<Index>)> done) {
  if (!running_) {
    done(absl::UnavailableError(failed_ ? absl::StrCat("server failed: ", failure_) : "server is not running"));
    return;
  }
  auto [mono, wall] = Now();
  raft_->Tick(mono, wall);
  if (lease) {
    if (std::optional<Index> index = raft_->LeaseReadIndex()) {
      done(*index);
      return;
    }
  }
  uint64_t id = next_read_id_++;
  if (absl::Status s = raft_->RequestRead(id); !s.ok()) {
    done(s);
    return;
  }
  reads_[id] = std::move(done);
  Process();
}

void RaftNode::Process() {
  while (running_ && raft_->HasReady()) {
    raft::Ready r = raft_->TakeReady();
    if (r.hard_state) {
      // A vote or term must be durable before any message of this Ready leaves.
      if (absl::Status s = metadata_->Save(*r.hard_state, metadata_->Load().configuration); !s.ok()) {
        Fail(s);
        return;
      }
    }
    if (!r.error.ok()) {
      Fail(r.error);
      return;
    }
    if (r.write) {
      uint64_t write_id = r.write->id;
      storage::WriteRequest request;
      request.truncate_from = r.write->first;
      request.entries = std::move(r.write->entries);
      request.holes = std::move(r.write->holes);
      std::weak_ptr<bool> alive = alive_;
      absl::Status s = writer_->Submit(std::move(request), [this, alive, write_id](absl::Status st, Index) {
        boost::asio::post(io_, [this, alive, st, write_id] {
          auto token = alive.lock();
          if (!token || !*token) return;
          OnWriteDone(st, write_id);
        });
      });
      if (!s.ok()) {
        Fail(s);
        return;
      }
    }
    for (auto& m : r.messages) transport_->Send(std::move(m));
    for (const auto& read : r.reads) {
      auto it = reads_.find(read.id);
      if (it == reads_.end()) continue;
      auto done = std::move(it->second);
      reads_.erase(it);
      if (read.ok) {
        done(read.index);
      } else {
        done(absl::UnavailableError(absl::StrCat("server ", options_.id,
                                                 " lost leadership before confirming the read; retry")));
      }
    }
  }
  if (!running_) return;
  raft::Status now = raft_->GetStatus();
  if (status_handler_ && (now.role != last_reported_.role || now.term != last_reported_.term ||
                          now.leader != last_reported_.leader || now.commit != last_reported_.commit ||
                          applied_ != last_reported_applied_)) {
    last_reported_ = now;
    last_reported_applied_ = applied_;
    status_handler_(status());
  }
  // After the status: a step-down must reach the state machine before the
  // entries committed with it, or it would run leader-only side effects.
  Index commit = std::min(raft_->commit(), raft_->stable_last());
  if (commit > applied_) {
    Index previous = applied_;
    applied_ = commit;
    if (commit_handler_) commit_handler_(previous, commit);
  }
}

void RaftNode::OnWriteDone(absl::Status status, uint64_t write_id) {
  if (!running_) return;
  if (!status.ok()) {
    Fail(status);
    return;
  }
  raft_->OnPersisted(write_id);
  Process();
}

void RaftNode::Fail(const absl::Status& status) {
  spdlog::critical("server {}: storage failed, stopping: {}", options_.id, std::string(status.message()));
  failed_ = true;
  failure_ = std::string(status.message());
  running_ = false;
  tick_timer_.cancel();
  transport_->SetHandler(nullptr);
  FailReads(absl::UnavailableError(absl::StrCat("server failed: ", failure_)));
  if (status_handler_) status_handler_(this->status());
}

RaftNodeStatus RaftNode::status() const {
  RaftNodeStatus s;
  s.raft = raft_->GetStatus();
  s.applied = applied_;
  s.durable = log_->DurableIndex();
  s.failed = failed_;
  s.failure = failure_;
  return s;
}

}  // namespace caracal::server

#include "framework/storage/log_writer.h"

#include <utility>

#include "framework/common/thread_name.h"

namespace caracal::storage {

LogWriter::LogWriter(Log* log, LogWriterOptions options)
    : log_(log), options_(options), thread_([this] { Run(); }) {}

LogWriter::~LogWriter() { Shutdown(); }

absl::Status LogWriter::Submit(WriteRequest request, Callback done) {
  size_t bytes = 0;
  for (const Entry& e : request.entries) bytes += e.payload.size();
  std::unique_lock lock(mu_);
  auto full = [&] {
    return !queue_.empty() &&
           (queue_.size() >= options_.max_queued_requests || queued_bytes_ + bytes > options_.max_queued_bytes);
  };
  if (!stopping_ && full()) {
    ++stats_.blocked_submits;
    ++stats_.waiting_submitters;
    room_ready_.wait(lock, [&] { return stopping_ || !full(); });
    --stats_.waiting_submitters;
  }
  if (stopping_) return absl::FailedPreconditionError("the log writer is shutting down");
  queue_.push_back({std::move(request), std::move(done), bytes});
  queued_bytes_ += bytes;
  stats_.queued_requests = queue_.size();
  work_ready_.notify_one();
  return absl::OkStatus();
}

void LogWriter::Run() {
  SetThreadName("caracal-log");
  std::vector<Item> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is drained
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
      queue_.clear();
      queued_bytes_ = 0;
      stats_.queued_requests = 0;
      room_ready_.notify_all();
    }
    ProcessBatch(batch);
    batch.clear();
  }
}

void LogWriter::ProcessBatch(std::vector<Item>& batch) {
  std::vector<absl::Status>& results = results_;  // keeps its capacity from batch to batch
  results.clear();
  results.reserve(batch.size());
  for (Item& item : batch) {
    absl::Status s;
    if (item.request.truncate_from) s = log_->TruncateSuffix(*item.request.truncate_from);
    if (s.ok()) s = log_->Append(item.request.entries, item.request.holes);
    results.push_back(std::move(s));
  }
  absl::Status synced = log_->Sync();
  Index durable = log_->DurableIndex();
  {
    // Before the callbacks, so that whoever they wake sees the stats of their batch.
    std::lock_guard lock(mu_);
    stats_.requests += batch.size();
    ++stats_.batches;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    absl::Status s = results[i].ok() ? synced : results[i];
    batch[i].done(std::move(s), durable);
  }
}

void LogWriter::Shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    work_ready_.notify_all();
    room_ready_.notify_all();
  }
  std::lock_guard join(join_mu_);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool LogWriter::ShuttingDown() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

LogWriterStats LogWriter::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace caracal::storage

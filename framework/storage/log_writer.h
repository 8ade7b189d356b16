#ifndef CARACAL_FRAMEWORK_STORAGE_LOG_WRITER_H_
#define CARACAL_FRAMEWORK_STORAGE_LOG_WRITER_H_

// The storage thread: applies write requests to a Log in submission order and
// makes them durable with group commit.
//
// The thread loop: wait for work; take *everything* queued; apply each
// request (its truncate_from first, then its entries and holes); call
// Log::Sync() once; run the callbacks in submission order. So N requests that
// arrive while one fsync is in progress cost one more fsync, not N.
//
// The queue is bounded by a request count and a payload byte budget. A full
// queue blocks Submit (the producer slows down); nothing is ever dropped. A
// single request larger than the byte budget is admitted when the queue is
// empty, so it cannot wait forever.
//
// Each callback runs exactly once, on the storage thread, with the request's
// own status (a request that fails validation fails alone; later requests
// are still applied, and fail too if they depended on it) combined with the
// Sync status, and the log's DurableIndex() after the Sync. Callbacks must not
// block for long (they hold up the next batch) and must not call Submit when
// the queue may be full.
//
// Shutdown() (also run by the destructor) refuses new requests, lets the
// thread drain what is queued (applied, synced, called back), then joins.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "framework/common/types.h"
#include "framework/storage/log.h"

namespace caracal::storage {

struct WriteRequest {
  std::optional<Index> truncate_from;  // TruncateSuffix(*truncate_from) before appending
  std::vector<Entry> entries;
  std::vector<HoleRun> holes;
};

struct LogWriterOptions {
  size_t max_queued_requests = 4096;
  size_t max_queued_bytes = 64 << 20;  // payload bytes
};

struct LogWriterStats {
  uint64_t requests = 0;        // requests applied and synced (counted just before their callbacks)
  uint64_t batches = 0;         // groups taken off the queue, each with one Log::Sync()
  uint64_t blocked_submits = 0; // Submit calls that had to wait for room
  size_t waiting_submitters = 0;  // Submit calls blocked right now
  size_t queued_requests = 0;
};

class LogWriter {
 public:
  using Callback = std::function<void(absl::Status status, Index durable_index)>;

  // `log` must outlive the writer.
  explicit LogWriter(Log* log, LogWriterOptions options = {});
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Queues `request`; blocks while the queue is full. Returns
  // FailedPrecondition (and never calls `done`) once Shutdown has begun;
  // otherwise `done` will be called exactly once.
  absl::Status Submit(WriteRequest request, Callback done);

  void Shutdown();
  bool ShuttingDown() const;
  LogWriterStats Stats() const;

 private:
  struct Item {
    WriteRequest request;
    Callback done;
    size_t bytes = 0;
  };
  void Run();
  void ProcessBatch(std::vector<Item>& batch);

  Log* const log_;
  const LogWriterOptions options_;

  mutable std::mutex mu_;
  std::condition_variable work_ready_;  // the thread waits for items or shutdown
  std::condition_variable room_ready_;  // submitters wait for space
  std::deque<Item> queue_;
  size_t queued_bytes_ = 0;
  bool stopping_ = false;
  LogWriterStats stats_;

  std::vector<absl::Status> results_;  // ProcessBatch's, on the writer thread only

  std::mutex join_mu_;  // Shutdown may race with the destructor
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_LOG_WRITER_H_

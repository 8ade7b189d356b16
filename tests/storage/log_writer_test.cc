// The storage thread: ordering, group commit, bounded queue, shutdown.
// Waits are bounded (absl::Notification with timeouts, WaitFor); no sleeps.

#include "framework/storage/log_writer.h"

#include <atomic>
#include <mutex>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/log_test_util.h"
#include "tests/testing/temp_dir.h"

namespace caracal::storage {
namespace {

using ::caracal::storage::testing::MakeEntries;
using ::caracal::storage::testing::MakeEntry;
using ::caracal::storage::testing::WaitFor;

constexpr absl::Duration kTimeout = absl::Seconds(20);

WriteRequest AppendRequest(Index first, Index last, Term term = 1) {
  WriteRequest r;
  r.entries = MakeEntries(first, last, term);
  return r;
}

// Collects callback results; Wait() returns once `n` arrived (or times out).
class Results {
 public:
  LogWriter::Callback Callback(int id) {
    return [this, id](absl::Status status, Index durable) {
      std::lock_guard lock(mu_);
      order_.push_back(id);
      statuses_.push_back(std::move(status));
      durables_.push_back(durable);
    };
  }
  bool Wait(size_t n) {
    return WaitFor([&] {
      std::lock_guard lock(mu_);
      return order_.size() >= n;
    }, std::chrono::seconds(20));
  }
  std::vector<int> order() const {
    std::lock_guard lock(mu_);
    return order_;
  }
  std::vector<absl::Status> statuses() const {
    std::lock_guard lock(mu_);
    return statuses_;
  }
  std::vector<Index> durables() const {
    std::lock_guard lock(mu_);
    return durables_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<int> order_;
  std::vector<absl::Status> statuses_;
  std::vector<Index> durables_;
};

class LogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LogOptions options;
    options.directory = dir_.path() / "log";
    options.segment_bytes = 16 << 10;
    auto log = Log::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
  }
  caracal::testing::TempDir dir_;
  std::unique_ptr<Log> log_;
};

TEST_F(LogWriterTest, AppliesRequestsInSubmissionOrderAndReportsDurability) {
  LogWriter writer(log_.get());
  Results results;
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE(writer.Submit(AppendRequest(i, i), results.Callback(i)).ok());
  ASSERT_TRUE(results.Wait(100));

  std::vector<int> expected(100);
  for (int i = 0; i < 100; ++i) expected[i] = i + 1;
  EXPECT_EQ(results.order(), expected);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_TRUE(results.statuses()[i].ok()) << results.statuses()[i];
    EXPECT_GE(results.durables()[i], i + 1);  // its own entry is durable when it is called back
  }
  EXPECT_EQ(log_->DurableIndex(), 100u);
  auto e = log_->Get(57);
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ(**e, MakeEntry(57, 1));
}

TEST_F(LogWriterTest, RequestsQueuedDuringASyncShareOneSync) {
  LogWriter writer(log_.get());
  Results results;
  absl::Notification release;
  // The first callback holds the storage thread while the others queue up.
  ASSERT_TRUE(writer
                  .Submit(AppendRequest(1, 1),
                          [&](absl::Status, Index) { release.WaitForNotificationWithTimeout(kTimeout); })
                  .ok());
  for (int i = 2; i <= 21; ++i) ASSERT_TRUE(writer.Submit(AppendRequest(i, i), results.Callback(i)).ok());
  release.Notify();
  ASSERT_TRUE(results.Wait(20));

  EXPECT_LE(writer.Stats().batches, 2u);
  EXPECT_LE(log_->Stats().syncs, 2u);  // 21 requests, at most 2 group commits
  EXPECT_EQ(log_->DurableIndex(), 21u);
}

TEST_F(LogWriterTest, ConcurrentSubmittersCostFewerSyncsThanRequests) {
  LogWriter writer(log_.get());
  constexpr int kThreads = 4, kPerThread = 50;
  std::mutex index_mu;  // raft assigns indexes in order; so do these submitters
  Index next = 1;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < kPerThread; ++k) {
        auto done = std::make_shared<absl::Notification>();
        {
          std::lock_guard lock(index_mu);
          absl::Status s = writer.Submit(AppendRequest(next, next), [done, &failures](absl::Status st, Index) {
            if (!st.ok()) ++failures;
            done->Notify();
          });
          if (!s.ok()) ++failures;
          ++next;
        }
        if (!done->WaitForNotificationWithTimeout(kTimeout)) ++failures;  // like a client awaiting its ack
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(log_->LastIndex(), Index{kThreads * kPerThread});
  EXPECT_EQ(writer.Stats().requests, uint64_t{kThreads * kPerThread});
  EXPECT_LT(log_->Stats().syncs, uint64_t{kThreads * kPerThread});
}

TEST_F(LogWriterTest, TruncateAndAppendInOneRequest) {
  LogWriter writer(log_.get());
  Results results;
  ASSERT_TRUE(writer.Submit(AppendRequest(1, 10, 1), results.Callback(1)).ok());
  WriteRequest replace = AppendRequest(6, 8, 2);
  replace.truncate_from = 6;
  ASSERT_TRUE(writer.Submit(std::move(replace), results.Callback(2)).ok());
  ASSERT_TRUE(results.Wait(2));

  EXPECT_TRUE(results.statuses()[1].ok()) << results.statuses()[1];
  EXPECT_EQ(results.durables()[1], 8u);
  EXPECT_EQ(log_->LastIndex(), 8u);
  EXPECT_EQ(log_->TermAt(5), Term{1});
  EXPECT_EQ(log_->TermAt(6), Term{2});
}

TEST_F(LogWriterTest, AnInvalidRequestFailsAlone) {
  LogWriter writer(log_.get());
  Results results;
  ASSERT_TRUE(writer.Submit(AppendRequest(1, 3), results.Callback(1)).ok());
  ASSERT_TRUE(writer.Submit(AppendRequest(7, 8), results.Callback(2)).ok());  // gap
  ASSERT_TRUE(writer.Submit(AppendRequest(4, 5), results.Callback(3)).ok());
  ASSERT_TRUE(results.Wait(3));

  EXPECT_TRUE(results.statuses()[0].ok());
  EXPECT_EQ(results.statuses()[1].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(results.statuses()[2].ok());
  EXPECT_EQ(log_->LastIndex(), 5u);
}

TEST_F(LogWriterTest, FullQueueBlocksTheSubmitterUntilThereIsRoom) {
  LogWriter writer(log_.get(), LogWriterOptions{.max_queued_requests = 2, .max_queued_bytes = 1 << 20});
  Results results;
  absl::Notification release;
  ASSERT_TRUE(writer
                  .Submit(AppendRequest(1, 1),
                          [&](absl::Status, Index) { release.WaitForNotificationWithTimeout(kTimeout); })
                  .ok());
  // Wait until the storage thread holds request 1, so the queue is empty.
  ASSERT_TRUE(WaitFor([&] { return writer.Stats().queued_requests == 0; }));
  ASSERT_TRUE(writer.Submit(AppendRequest(2, 2), results.Callback(2)).ok());
  ASSERT_TRUE(writer.Submit(AppendRequest(3, 3), results.Callback(3)).ok());
  std::atomic<bool> fourth_submitted{false};
  std::thread blocked([&] {
    EXPECT_TRUE(writer.Submit(AppendRequest(4, 4), results.Callback(4)).ok());
    fourth_submitted = true;
  });
  ASSERT_TRUE(WaitFor([&] { return writer.Stats().waiting_submitters == 1; }));
  EXPECT_FALSE(fourth_submitted.load());  // the queue is full: the producer waits, nothing is dropped

  release.Notify();
  blocked.join();
  ASSERT_TRUE(results.Wait(3));
  EXPECT_EQ(results.order(), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(writer.Stats().blocked_submits, 1u);
  EXPECT_EQ(log_->LastIndex(), 4u);
}

TEST_F(LogWriterTest, ShutdownDrainsQueuedWork) {
  auto writer = std::make_unique<LogWriter>(log_.get());
  Results results;
  absl::Notification release;
  ASSERT_TRUE(writer
                  ->Submit(AppendRequest(1, 1),
                           [&](absl::Status, Index) { release.WaitForNotificationWithTimeout(kTimeout); })
                  .ok());
  for (int i = 2; i <= 30; ++i) ASSERT_TRUE(writer->Submit(AppendRequest(i, i), results.Callback(i)).ok());
  std::thread stopper([&] { writer->Shutdown(); });
  ASSERT_TRUE(WaitFor([&] { return writer->ShuttingDown(); }));
  EXPECT_EQ(writer->Submit(AppendRequest(31, 31), results.Callback(31)).code(),
            absl::StatusCode::kFailedPrecondition);

  release.Notify();  // the queued requests are still to be done
  stopper.join();
  EXPECT_EQ(results.order().size(), 29u);
  for (const absl::Status& s : results.statuses()) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(log_->LastIndex(), 30u);
  EXPECT_EQ(log_->DurableIndex(), 30u);
  writer.reset();  // a second shutdown (the destructor) is harmless
}

TEST(LogWriterMemoryTest, WorksOnAMemoryLog) {
  LogOptions options;
  options.level = StorageLevel::kMemory;
  auto log = Log::Open(options);
  ASSERT_TRUE(log.ok());
  LogWriter writer(log->get());
  Results results;
  ASSERT_TRUE(writer.Submit(AppendRequest(1, 5), results.Callback(1)).ok());
  ASSERT_TRUE(results.Wait(1));
  EXPECT_TRUE(results.statuses()[0].ok());
  EXPECT_EQ(results.durables()[0], 5u);
}

}  // namespace
}  // namespace caracal::storage

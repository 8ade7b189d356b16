// Heap allocations on the state machine thread per applied command: none of
// the framework's own. The operations here carry and return integers, so
// anything counted is the framework's (decoding the entry and the operation,
// dispatch, release tracking, the result, the response cache, the waiter and
// the hand-off of the response).

#include <condition_variable>
#include <mutex>
#include <vector>

#include "caracal/codec.h"
#include "caracal/state_machine.h"
#include "framework/server/apply_loop.h"
#include "framework/server/state_machine_runner.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"
#include "tests/alloc/alloc_counter.h"

namespace caracal::server {
namespace {

using testing::AllocationCounter;
using testing::ThreadAllocations;

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

struct Add : Command<int64_t> {  // returns the sum after adding
  static constexpr std::string_view kName = "alloc.add";
  int64_t by = 1;
  CARACAL_FIELDS(by)
};

class Counter : public StateMachine {
 public:
  Counter() { samples.reserve(1 << 16); }
  void Configure(Executor& executor) override { executor.Register<Add>(this, &Counter::OnAdd); }
  int64_t OnAdd(Commit<Add> c) {
    if (samples.size() < samples.capacity()) samples.push_back(ThreadAllocations());
    return sum += c->by;
  }
  int64_t sum = 0;
  std::vector<uint64_t> samples;  // this thread's allocation count at each command
};

// `n` command entries of `session` from `index`, sequences from `sequence`,
// each acknowledging the response before it (as a pipelining client does).
std::vector<Entry> Commands(Index index, uint64_t session, uint64_t sequence, int n, BytesArena& arena) {
  std::vector<Entry> out;
  std::string operation = codec::EncodeOperation(Add{.by = 2});
  for (int i = 0; i < n; ++i) {
    out.push_back(Entry{index + i, 1, static_cast<LogTime>(index + i), EntryType::kCommand,
                        serialization::EncodeCommandEntry(arena, session, sequence + i, operation, sequence + i - 1)});
  }
  return out;
}

Entry Register(Index index) {
  return Entry{index, 1, static_cast<LogTime>(index), EntryType::kRegister,
               Bytes(serialization::EncodeRegisterEntry({"client", 60'000}))};
}

TEST(ApplyAllocTest, TheRunnerAppliesACommandWithoutAllocating) {
  auto sm = std::make_unique<Counter>();
  Counter* counter = sm.get();
  StateMachineRunner runner(std::move(sm), 1);
  ASSERT_TRUE(runner.Apply(Register(1)).ok());
  const uint64_t session = 1;
  BytesArena arena;
  uint64_t sequence = 1;
  std::vector<StateMachineRunner::Response> out;
  // Allocations while applying `n` commands.
  auto apply = [&](int n) {
    std::vector<Entry> entries = Commands(runner.applied() + 1, session, sequence, n, arena);
    sequence += n;
    AllocationCounter count;
    for (const Entry& e : entries) {
      runner.ApplyEntry(e, &out);
      if (out.size() != 1 || !out[0].result.ok()) {
        ADD_FAILURE() << "entry " << e.index << ": " << (out.empty() ? "no response" : out[0].result.status().ToString());
        break;
      }
    }
    return count.allocations();
  };
  apply(2000);  // warm-up: rings, the arena's first chunks, the tracker
  uint64_t few = apply(100);
  uint64_t many = apply(2000);
  EXPECT_EQ(counter->sum, 2 * (2000 + 100 + 2000));
  // A result is ~24 bytes: 2,000 of them fill under one 64 KiB arena chunk.
  EXPECT_LE(many, few + 2) << "100 commands: " << few << " allocations; 2,000 commands: " << many;
  EXPECT_LE(many, 8u);
}

TEST(ApplyAllocTest, TheApplyLoopAppliesAndRoutesACommandWithoutAllocating) {
  storage::LogOptions o;
  o.level = storage::StorageLevel::kMemory;
  std::unique_ptr<storage::Log> log = *storage::Log::Open(o);
  auto sm = std::make_unique<Counter>();
  Counter* counter = sm.get();
  ApplyLoop loop(log.get(), std::move(sm), 1);
  std::mutex mu;
  std::condition_variable cv;
  uint64_t answered = 0, failed = 0;
  loop.SetRouteSink([&](std::vector<RoutedOutcome>& batch) {
    std::lock_guard lock(mu);
    for (const auto& r : batch) (r.outcome.result.ok() ? answered : failed) += 1;
    batch.clear();
    cv.notify_all();
  });
  loop.Start();
  ASSERT_TRUE(log->Append({Register(1)}).ok());
  loop.Commit(1);
  BytesArena arena;
  uint64_t sequence = 1;
  uint64_t expected = 0;
  // Allocations on the state machine thread from the first command of a batch
  // of `n` to its last.
  auto batch = [&](int n) -> uint64_t {
    size_t first_sample = counter->samples.size();  // the loop is idle: read after its last wake-up
    std::vector<Entry> entries = Commands(log->LastIndex() + 1, 1, sequence, n, arena);
    sequence += n;
    EXPECT_TRUE(log->Append(entries).ok());
    for (const Entry& e : entries) loop.ExpectRouted(e.index, e.term, Route{7, e.index});
    expected += n;
    loop.Commit(entries.back().index);
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered + failed >= expected; }));
    EXPECT_EQ(failed, 0u);
    return counter->samples.back() - counter->samples[first_sample];
  };
  batch(3000);  // warm-up
  uint64_t few = batch(100);
  uint64_t many = batch(3000);
  loop.Stop();
  EXPECT_EQ(answered, expected);
  EXPECT_LE(many, few + 3) << "100 commands: " << few << " allocations; 3,000 commands: " << many;
}

}  // namespace
}  // namespace caracal::server

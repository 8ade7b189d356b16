// Behaviour of storage::Log at both storage levels, and what survives a
// reopen at the DISK level.

#include "framework/storage/log.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/log_test_util.h"
#include "tests/testing/temp_dir.h"

namespace caracal::storage {
namespace {

using ::caracal::storage::testing::MakeEntries;
using ::caracal::storage::testing::MakeEntry;
using ::testing::HasSubstr;

std::vector<std::string> FileNames(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& item : std::filesystem::directory_iterator(dir)) names.push_back(item.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Every behaviour holds at both storage levels and whatever the tail cache
// holds: off, one entry (reads straddle its edge), or the default 4 MiB
// (reads of recent entries are served from memory).
struct LogTestParam {
  StorageLevel level;
  size_t cache_bytes;
};

class LogTest : public ::testing::TestWithParam<LogTestParam> {
 protected:
  StorageLevel Level() const { return GetParam().level; }
  LogOptions Options(size_t segment_bytes = 64 << 20) const {
    LogOptions options;
    options.level = Level();
    options.cache_bytes = GetParam().cache_bytes;
    options.directory = dir_.path() / "log";
    options.segment_bytes = segment_bytes;
    return options;
  }
  std::unique_ptr<Log> OpenLog(size_t segment_bytes = 64 << 20) {
    auto log = Log::Open(Options(segment_bytes));
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }
  // All entries and holes of the whole log, read in one go.
  static void ReadAll(const Log& log, std::vector<Entry>* entries, std::vector<HoleRun>* holes) {
    ASSERT_TRUE(log.Read(log.FirstIndex(), log.LastIndex(), SIZE_MAX, entries, holes).ok());
  }

  caracal::testing::TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Levels, LogTest,
                         ::testing::Values(LogTestParam{StorageLevel::kMemory, 4u << 20},
                                           LogTestParam{StorageLevel::kDisk, 4u << 20},
                                           LogTestParam{StorageLevel::kMemory, 0},
                                           LogTestParam{StorageLevel::kDisk, 0},
                                           LogTestParam{StorageLevel::kMemory, 1},
                                           LogTestParam{StorageLevel::kDisk, 1}),
                         [](const auto& info) {
                           std::string name = info.param.level == StorageLevel::kMemory ? "Memory" : "Disk";
                           if (info.param.cache_bytes == 0) return name + "NoCache";
                           if (info.param.cache_bytes == 1) return name + "OneEntryCache";
                           return name;
                         });

TEST_P(LogTest, FreshLogIsEmpty) {
  auto log = OpenLog();
  EXPECT_EQ(log->FirstIndex(), 1u);
  EXPECT_EQ(log->LastIndex(), 0u);
  EXPECT_EQ(log->DurableIndex(), 0u);
  EXPECT_EQ(log->TermAt(0), Term{0});
  EXPECT_EQ(log->TermAt(1), std::nullopt);
  EXPECT_EQ(log->Get(1).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_P(LogTest, AppendedEntriesCanBeReadBack) {
  auto log = OpenLog();
  auto entries = MakeEntries(1, 10, 1);
  entries[5].term = entries[6].term = entries[7].term = entries[8].term = entries[9].term = 3;
  ASSERT_TRUE(log->Append(entries).ok());

  EXPECT_EQ(log->LastIndex(), 10u);
  for (const Entry& e : entries) {
    auto got = log->Get(e.index);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ(**got, e);
    EXPECT_EQ(log->TermAt(e.index), e.term);
  }
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ASSERT_TRUE(log->Read(3, 7, SIZE_MAX, &read, &holes).ok());
  EXPECT_EQ(read, std::vector<Entry>(entries.begin() + 2, entries.begin() + 7));
  EXPECT_TRUE(holes.empty());
  EXPECT_EQ(log->Stats().entries, 10u);
}

TEST_P(LogTest, ReadsAfterTruncationAndHolesSeeTheNewEntriesNotTheCachedOldOnes) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 10, 1)).ok());
  ASSERT_TRUE(log->TruncateSuffix(6).ok());
  auto replacement = MakeEntries(6, 9, 2, /*payload_bytes=*/40);
  ASSERT_TRUE(log->Append(replacement).ok());
  auto seven = log->Get(7);
  ASSERT_TRUE(seven.ok() && seven->has_value());
  EXPECT_EQ(**seven, replacement[1]);

  // A hole run, then entries again: reads across all of it.
  ASSERT_TRUE(log->Append({}, std::vector<HoleRun>{{10, 12, 2}}).ok());
  auto tail = MakeEntries(13, 14, 3);
  ASSERT_TRUE(log->Append(tail).ok());
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ASSERT_TRUE(log->Read(1, 14, SIZE_MAX, &read, &holes).ok());
  ASSERT_EQ(read.size(), 11u);
  EXPECT_EQ(read[4].index, 5u);
  EXPECT_EQ(read[4].term, 1u);
  EXPECT_EQ(std::vector<Entry>(read.begin() + 5, read.begin() + 9), replacement);
  EXPECT_EQ(std::vector<Entry>(read.begin() + 9, read.end()), tail);
  EXPECT_EQ(holes, (std::vector<HoleRun>{{10, 12, 2}}));

  // Cut inside the hole run: the log ends in a hole, then continues.
  ASSERT_TRUE(log->TruncateSuffix(12).ok());
  EXPECT_EQ(log->LastIndex(), 11u);
  auto after = MakeEntries(12, 13, 4);
  ASSERT_TRUE(log->Append(after).ok());
  read.clear();
  holes.clear();
  ASSERT_TRUE(log->Read(9, 13, SIZE_MAX, &read, &holes).ok());
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[0], replacement[3]);
  EXPECT_EQ(std::vector<Entry>(read.begin() + 1, read.end()), after);
  EXPECT_EQ(holes, (std::vector<HoleRun>{{10, 11, 2}}));

  // Compacted away: never served, from the cache or otherwise.
  ASSERT_TRUE(log->RemovePrefix(12).ok());
  EXPECT_EQ(log->Get(12).status().code(), absl::StatusCode::kOutOfRange);
  read.clear();
  ASSERT_TRUE(log->Read(13, 13, SIZE_MAX, &read, &holes).ok());
  EXPECT_EQ(read, std::vector<Entry>{after[1]});
}

TEST_P(LogTest, TheTailCacheStaysWithinItsBudgetEvenForEmptyEntries) {
  LogOptions options = Options();
  const bool cache_on = options.cache_bytes > 0;
  options.cache_bytes = cache_on ? 16 << 10 : 0;
  auto log = Log::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append(MakeEntries(1, 20000, 1, /*payload_bytes=*/0)).ok());
  LogStats stats = (*log)->Stats();
  if (!cache_on) {
    EXPECT_EQ(stats.cached_entries, 0u);
    return;
  }
  EXPECT_GT(stats.cached_entries, 0u);
  EXPECT_LT(stats.cached_entries, 1000u) << "empty entries must cost something, or they are never evicted";
  EXPECT_LE(stats.cached_bytes, options.cache_bytes);
  auto last = (*log)->Get(20000);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->index, 20000u);
}

TEST_P(LogTest, ReadStopsAtMaxBytesButReturnsAtLeastOneItem) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 10, 1, /*payload_bytes=*/100)).ok());
  std::vector<Entry> read;
  std::vector<HoleRun> holes;

  ASSERT_TRUE(log->Read(1, 10, 250, &read, &holes).ok());
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[1].index, 2u);

  read.clear();
  ASSERT_TRUE(log->Read(4, 10, 0, &read, &holes).ok());
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].index, 4u);

  read.clear();
  ASSERT_TRUE(log->Read(1, 10, 1000, &read, &holes).ok());
  EXPECT_EQ(read.size(), 10u);
}

TEST_P(LogTest, ReadOutsideTheLogIsOutOfRange) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 5, 1)).ok());
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  EXPECT_EQ(log->Read(0, 3, SIZE_MAX, &read, &holes).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(log->Read(3, 6, SIZE_MAX, &read, &holes).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(log->Read(4, 3, SIZE_MAX, &read, &holes).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(log->Get(6).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(read.empty());
}

TEST_P(LogTest, HoleRunsAreStoredAsOneRecordAndReadAsHoles) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append({MakeEntry(1, 1), MakeEntry(2, 1), MakeEntry(8, 3)}, {{3, 7, 2}}).ok());

  EXPECT_EQ(log->LastIndex(), 8u);
  auto hole = log->Get(5);
  ASSERT_TRUE(hole.ok());
  EXPECT_FALSE(hole->has_value());
  EXPECT_EQ(log->TermAt(2), Term{1});
  EXPECT_EQ(log->TermAt(3), Term{2});
  EXPECT_EQ(log->TermAt(7), Term{2});
  EXPECT_EQ(log->TermAt(8), Term{3});
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ASSERT_TRUE(log->Read(1, 8, SIZE_MAX, &read, &holes).ok());
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[2], MakeEntry(8, 3));
  EXPECT_EQ(holes, (std::vector<HoleRun>{{3, 7, 2}}));
  holes.clear();
  ASSERT_TRUE(log->Read(4, 6, SIZE_MAX, &read, &holes).ok());
  EXPECT_EQ(holes, (std::vector<HoleRun>{{4, 6, 2}}));  // clipped to the range
  EXPECT_EQ(log->Stats().hole_runs, 1u);
  EXPECT_EQ(log->Stats().hole_indexes, 5u);
}

TEST_P(LogTest, AppendRejectsGapsOverlapsAndDecreasingTerms) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 3, 2)).ok());

  absl::Status gap = log->Append({MakeEntry(5, 2)});
  EXPECT_EQ(gap.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(gap.message()), HasSubstr("continue at index 4"));
  EXPECT_EQ(log->Append({MakeEntry(3, 2)}).code(), absl::StatusCode::kInvalidArgument);        // overlap
  EXPECT_EQ(log->Append({MakeEntry(4, 1)}).code(), absl::StatusCode::kInvalidArgument);        // lower term
  EXPECT_EQ(log->Append({MakeEntry(4, 0)}).code(), absl::StatusCode::kInvalidArgument);        // term 0
  EXPECT_EQ(log->Append({MakeEntry(4, 3), MakeEntry(5, 2)}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append({}, {{4, 3, 2}}).code(), absl::StatusCode::kInvalidArgument);           // last < first
  EXPECT_EQ(log->Append({MakeEntry(4, 2)}, {{4, 6, 2}}).code(), absl::StatusCode::kInvalidArgument);  // both at 4
  EXPECT_EQ(log->LastIndex(), 3u);  // nothing of a rejected append is written
  EXPECT_TRUE(log->Append({}, {}).ok());
  EXPECT_TRUE(log->Append({MakeEntry(4, 2), MakeEntry(8, 2)}, {{5, 7, 2}}).ok());
  EXPECT_EQ(log->LastIndex(), 8u);
}

TEST_P(LogTest, SegmentsRollOverAtSegmentBytes) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  for (Index i = 1; i <= 60; i += 3) ASSERT_TRUE(log->Append(MakeEntries(i, i + 2, 1, 100)).ok());

  auto segments = log->Segments();
  ASSERT_GT(segments.size(), 5u);
  Index next = 1;
  for (const SegmentInfo& s : segments) {
    EXPECT_EQ(s.first, next);
    EXPECT_LE(s.bytes, 1024u + 200u) << s.name;  // closed once past the limit
    next = s.last + 1;
  }
  EXPECT_EQ(next, 61u);
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ReadAll(*log, &read, &holes);
  EXPECT_EQ(read, MakeEntries(1, 60, 1, 100));
}

TEST_P(LogTest, TruncateSuffixWithinASegment) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 10, 1)).ok());
  ASSERT_TRUE(log->Sync().ok());

  ASSERT_TRUE(log->TruncateSuffix(6).ok());
  EXPECT_EQ(log->LastIndex(), 5u);
  EXPECT_EQ(log->DurableIndex(), 5u);
  EXPECT_EQ(log->TermAt(6), std::nullopt);
  ASSERT_TRUE(log->Append(MakeEntries(6, 8, 2)).ok());
  auto six = log->Get(6);
  ASSERT_TRUE(six.ok() && six->has_value());
  EXPECT_EQ(**six, MakeEntry(6, 2));
  EXPECT_EQ(log->TermAt(5), Term{1});
  EXPECT_EQ(log->TermAt(8), Term{2});
}

TEST_P(LogTest, TruncateSuffixAcrossSegments) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  for (Index i = 1; i <= 60; i += 3) ASSERT_TRUE(log->Append(MakeEntries(i, i + 2, 1, 100)).ok());
  ASSERT_TRUE(log->Sync().ok());
  size_t before = log->Segments().size();

  ASSERT_TRUE(log->TruncateSuffix(20).ok());
  EXPECT_EQ(log->LastIndex(), 19u);
  EXPECT_LT(log->Segments().size(), before);
  EXPECT_EQ(log->Segments().back().last, 19u);
  ASSERT_TRUE(log->Append(MakeEntries(20, 40, 2, 100)).ok());
  ASSERT_TRUE(log->Sync().ok());
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ReadAll(*log, &read, &holes);
  auto expected = MakeEntries(1, 19, 1, 100);
  for (const Entry& e : MakeEntries(20, 40, 2, 100)) expected.push_back(e);
  EXPECT_EQ(read, expected);
}

TEST_P(LogTest, TruncateSuffixInsideAHoleRunKeepsItsLowerPart) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append({MakeEntry(1, 1), MakeEntry(11, 2)}, {{2, 10, 1}}).ok());

  ASSERT_TRUE(log->TruncateSuffix(6).ok());
  EXPECT_EQ(log->LastIndex(), 5u);
  EXPECT_EQ(log->TermAt(5), Term{1});
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ReadAll(*log, &read, &holes);
  EXPECT_EQ(holes, (std::vector<HoleRun>{{2, 5, 1}}));
  EXPECT_EQ(log->Stats().hole_indexes, 4u);
}

// Entries between many hole runs: every index is found in the right record,
// whatever the truncations in between, and after a reopen (DISK).
TEST_P(LogTest, IndexesBetweenManyHoleRunsAreFoundAfterTruncationsAndReopen) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  std::vector<Entry> entries;
  std::vector<HoleRun> holes;
  for (Index i = 1; i <= 200;) {  // runs: 2 entries, a hole run of (i % 4 + 1) indexes
    entries.push_back(MakeEntry(i, 1 + i / 50));
    entries.push_back(MakeEntry(i + 1, 1 + i / 50));
    holes.push_back({i + 2, i + 2 + i % 4, 1 + (i + 2) / 50});
    i = holes.back().last + 1;
  }
  auto next_item = [&](Index index) {  // the first entry at or after `index`
    return std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.index >= index; });
  };
  ASSERT_TRUE(log->Append(entries, holes).ok());
  const Index last = holes.back().last;
  // Cut inside a hole run, at its start, and between entries.
  const HoleRun& inside = holes[holes.size() / 2];
  ASSERT_TRUE(log->TruncateSuffix(inside.first + 1 <= inside.last ? inside.first + 1 : inside.first).ok());
  Index cut = log->LastIndex() + 1;
  entries.erase(next_item(cut), entries.end());
  while (!holes.empty() && holes.back().first >= cut) holes.pop_back();
  if (!holes.empty() && holes.back().last >= cut) holes.back().last = cut - 1;
  ASSERT_LT(log->LastIndex(), last);
  ASSERT_TRUE(log->Sync().ok());
  if (Level() == StorageLevel::kDisk) {
    log.reset();
    log = OpenLog(/*segment_bytes=*/1024);
  }

  for (Index i = 1; i <= log->LastIndex(); ++i) {
    auto got = log->Get(i);
    ASSERT_TRUE(got.ok()) << got.status();
    auto e = next_item(i);
    bool is_entry = e != entries.end() && e->index == i;
    ASSERT_EQ(got->has_value(), is_entry) << "index " << i;
    if (is_entry) {
      EXPECT_EQ(**got, *e);
    }
  }
  std::vector<Entry> read;
  std::vector<HoleRun> read_holes;
  ReadAll(*log, &read, &read_holes);
  EXPECT_EQ(read, entries);
  EXPECT_EQ(read_holes, holes);
  EXPECT_EQ(log->Stats().hole_runs, holes.size());
  EXPECT_EQ(log->Stats().entries, entries.size());
}

// The in-memory index of a segment costs about 4 bytes per entry record
// (offsets as u32; only hole runs need more), not a 32-byte record each.
TEST_P(LogTest, RecordIndexTakesAboutFourBytesPerEntry) {
  constexpr Index kEntries = 100000;
  auto log = OpenLog();
  for (Index i = 1; i <= kEntries; i += 1000) ASSERT_TRUE(log->Append(MakeEntries(i, i + 999, 1, 8)).ok());

  ASSERT_EQ(log->Segments().size(), 1u);
  LogStats stats = log->Stats();
  EXPECT_LT(static_cast<double>(stats.index_bytes) / kEntries, 6.0) << stats.index_bytes << " bytes";
  EXPECT_EQ(log->Segments().front().index_bytes, stats.index_bytes);
  auto last = log->Get(kEntries);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ(**last, MakeEntry(kEntries, 1, 8));
}

TEST_P(LogTest, TruncateSuffixOutsideTheLogIsRejected) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 10, 1)).ok());
  ASSERT_TRUE(log->RemovePrefix(3).ok());

  EXPECT_EQ(log->TruncateSuffix(12).code(), absl::StatusCode::kOutOfRange);
  absl::Status below = log->TruncateSuffix(3);
  EXPECT_EQ(below.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(below.message()), HasSubstr("[4, 11]"));
  EXPECT_TRUE(log->TruncateSuffix(11).ok());  // no-op
  EXPECT_TRUE(log->TruncateSuffix(4).ok());   // empties the log, keeps the base
  EXPECT_EQ(log->LastIndex(), 3u);
  EXPECT_EQ(log->TermAt(3), Term{1});
}

TEST_P(LogTest, RemovePrefixKeepsTheBaseTermAndHidesOlderIndexes) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  ASSERT_TRUE(log->Append(MakeEntries(1, 30, 1, 100)).ok());
  ASSERT_TRUE(log->Append(MakeEntries(31, 40, 2, 100)).ok());
  size_t before = log->Segments().size();

  ASSERT_TRUE(log->RemovePrefix(32).ok());
  EXPECT_EQ(log->FirstIndex(), 33u);
  EXPECT_EQ(log->TermAt(32), Term{2});
  EXPECT_EQ(log->TermAt(31), std::nullopt);
  EXPECT_EQ(log->Get(32).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_LT(log->Segments().size(), before);
  EXPECT_LE(log->Segments().front().first, 33u);
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  EXPECT_EQ(log->Read(31, 40, SIZE_MAX, &read, &holes).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(log->Read(33, 40, SIZE_MAX, &read, &holes).ok());
  EXPECT_EQ(read, MakeEntries(33, 40, 2, 100));
  EXPECT_EQ(log->RemovePrefix(41).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(log->RemovePrefix(10).ok());  // already gone: no-op
  EXPECT_EQ(log->FirstIndex(), 33u);
}

TEST_P(LogTest, RemovePrefixOfEverythingLeavesAnEmptyLogThatContinues) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 5, 3)).ok());

  ASSERT_TRUE(log->RemovePrefix(5).ok());
  EXPECT_EQ(log->FirstIndex(), 6u);
  EXPECT_EQ(log->LastIndex(), 5u);
  EXPECT_EQ(log->Stats().segments, 0u);
  EXPECT_EQ(log->Append({MakeEntry(6, 2)}).code(), absl::StatusCode::kInvalidArgument);  // below base term
  ASSERT_TRUE(log->Append({MakeEntry(6, 3)}).ok());
  EXPECT_EQ(log->TermAt(5), Term{3});
}

TEST_P(LogTest, ResetDropsEverythingAndContinuesAfterTheBase) {
  auto log = OpenLog();
  ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1)).ok());

  ASSERT_TRUE(log->Reset(100, 7).ok());
  EXPECT_EQ(log->FirstIndex(), 101u);
  EXPECT_EQ(log->LastIndex(), 100u);
  EXPECT_EQ(log->DurableIndex(), 100u);
  EXPECT_EQ(log->TermAt(100), Term{7});
  EXPECT_EQ(log->TermAt(20), std::nullopt);
  EXPECT_EQ(log->Append({MakeEntry(1, 7)}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(log->Append({MakeEntry(101, 7)}).ok());
  EXPECT_EQ(log->Reset(5, 0).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(log->Reset(3, 1).ok());  // a Reset may also move the log backwards
  EXPECT_EQ(log->LastIndex(), 3u);
}

TEST_P(LogTest, SyncMakesEverythingDurable) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  ASSERT_TRUE(log->Append(MakeEntries(1, 30, 1, 100)).ok());
  EXPECT_EQ(log->DurableIndex(), 0u);

  ASSERT_TRUE(log->Sync().ok());
  EXPECT_EQ(log->DurableIndex(), 30u);
  EXPECT_EQ(log->Stats().syncs, 1u);
  ASSERT_TRUE(log->Sync().ok());  // nothing new: no work
  EXPECT_EQ(log->Stats().syncs, 1u);
  if (Level() == StorageLevel::kDisk) {
    EXPECT_GE(log->Stats().fsyncs, 2u);  // the files and the directory
  }
}

TEST_P(LogTest, ReadersRunConcurrentlyWithTheWriter) {
  auto log = OpenLog(/*segment_bytes=*/4096);
  ASSERT_TRUE(log->Append(MakeEntries(1, 1, 1, 64)).ok());
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!done) {
      Index first = log->FirstIndex();
      Index last = log->LastIndex();
      if (last < first) continue;
      std::vector<Entry> read;
      std::vector<HoleRun> holes;
      absl::Status s = log->Read(first, last, 4096, &read, &holes);
      // A concurrent TruncateSuffix/RemovePrefix may move the range; anything else is a bug.
      if (!s.ok() && s.code() != absl::StatusCode::kOutOfRange && bad++ == 0) ADD_FAILURE() << s;
      for (const Entry& e : read) {
        if (e.payload != MakeEntry(e.index, e.term, 64).payload && bad++ == 0) ADD_FAILURE() << e;
      }
    }
  });
  Term term = 1;
  absl::Status status;
  for (Index i = 2; i < 400 && status.ok(); i += 4) {
    status.Update(log->Append(MakeEntries(i, i + 3, term, 64)));
    if (i % 40 == 2) {
      status.Update(log->Sync());
      status.Update(log->TruncateSuffix(i + 2));
      ++term;
      status.Update(log->Append(MakeEntries(i + 2, i + 3, term, 64)));
    }
    if (i % 100 == 2) status.Update(log->RemovePrefix(i / 2));
  }
  done = true;
  reader.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(bad.load(), 0);
}

// ---------------------------------------------------------------- DISK only

class LogDiskTest : public ::testing::Test {
 protected:
  LogOptions Options(size_t segment_bytes = 64 << 20) const {
    LogOptions options;
    options.directory = dir_.path() / "log";
    options.segment_bytes = segment_bytes;
    return options;
  }
  std::unique_ptr<Log> OpenLog(size_t segment_bytes = 64 << 20) {
    auto log = Log::Open(Options(segment_bytes));
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }
  caracal::testing::TempDir dir_;
};

TEST_F(LogDiskTest, ReopenPreservesEntriesHolesAndPrefixBase) {
  std::vector<Entry> entries;
  std::vector<HoleRun> holes;
  {
    auto log = OpenLog(/*segment_bytes=*/1024);
    ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1, 100)).ok());
    ASSERT_TRUE(log->Append({MakeEntry(31, 3, 100)}, {{21, 30, 2}}).ok());
    ASSERT_TRUE(log->Append(MakeEntries(32, 50, 3, 100)).ok());
    ASSERT_TRUE(log->RemovePrefix(12).ok());
    ASSERT_TRUE(log->Sync().ok());
    ASSERT_TRUE(log->Read(13, 50, SIZE_MAX, &entries, &holes).ok());
  }
  auto log = OpenLog(/*segment_bytes=*/1024);
  EXPECT_EQ(log->FirstIndex(), 13u);
  EXPECT_EQ(log->LastIndex(), 50u);
  EXPECT_EQ(log->DurableIndex(), 50u);
  EXPECT_EQ(log->TermAt(12), Term{1});
  EXPECT_EQ(log->TermAt(25), Term{2});
  std::vector<Entry> entries2;
  std::vector<HoleRun> holes2;
  ASSERT_TRUE(log->Read(13, 50, SIZE_MAX, &entries2, &holes2).ok());
  EXPECT_EQ(entries2, entries);
  EXPECT_EQ(holes2, (std::vector<HoleRun>{{21, 30, 2}}));
  EXPECT_TRUE(log->Stats().recovery_note.empty()) << log->Stats().recovery_note;
}

TEST_F(LogDiskTest, ReopenAfterResetKeepsTheBaseOnly) {
  {
    auto log = OpenLog();
    ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1)).ok());
    ASSERT_TRUE(log->Reset(500, 9).ok());
    ASSERT_TRUE(log->Append(MakeEntries(501, 505, 9)).ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  auto log = OpenLog();
  EXPECT_EQ(log->FirstIndex(), 501u);
  EXPECT_EQ(log->LastIndex(), 505u);
  EXPECT_EQ(log->TermAt(500), Term{9});
  EXPECT_EQ(log->Stats().epoch, 1u);
}

TEST_F(LogDiskTest, FileNamesShowSealedAndOpenSegments) {
  auto log = OpenLog(/*segment_bytes=*/1024);
  ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1, 100)).ok());
  auto before_sync = FileNames(Options().directory);
  EXPECT_GT(before_sync.size(), 1u);
  for (const auto& name : before_sync) EXPECT_THAT(name, ::testing::StartsWith("open-"));  // not durable yet

  ASSERT_TRUE(log->Sync().ok());
  auto segments = log->Segments();
  auto names = FileNames(Options().directory);
  ASSERT_EQ(names.size(), segments.size());
  EXPECT_EQ(names.front(), SealedSegmentName(1, segments.front().last));
  EXPECT_EQ(names.front().substr(0, 20), "00000000000000000001");
  EXPECT_EQ(names.back(), OpenSegmentName(segments.back().first));
}

TEST_F(LogDiskTest, TruncateSuffixReopensASealedSegment) {
  {
    auto log = OpenLog(/*segment_bytes=*/1024);
    ASSERT_TRUE(log->Append(MakeEntries(1, 30, 1, 100)).ok());
    ASSERT_TRUE(log->Sync().ok());
    ASSERT_TRUE(log->TruncateSuffix(5).ok());
    ASSERT_TRUE(log->Sync().ok());
    EXPECT_EQ(FileNames(Options().directory), std::vector<std::string>{OpenSegmentName(1)});
    ASSERT_TRUE(log->Append(MakeEntries(5, 6, 2, 100)).ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  auto log = OpenLog(/*segment_bytes=*/1024);
  EXPECT_EQ(log->LastIndex(), 6u);
  EXPECT_EQ(log->TermAt(4), Term{1});
  EXPECT_EQ(log->TermAt(5), Term{2});
}

TEST_F(LogDiskTest, UnsyncedRolloverIsSealedOnReopen) {
  {
    auto log = OpenLog(/*segment_bytes=*/1024);
    ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1, 100)).ok());
    // No Sync: every segment is still named open-*.log (a crash here).
  }
  auto log = OpenLog(/*segment_bytes=*/1024);
  EXPECT_EQ(log->LastIndex(), 20u);
  auto segments = log->Segments();
  for (size_t i = 0; i + 1 < segments.size(); ++i) EXPECT_FALSE(segments[i].open) << segments[i].name;
  EXPECT_TRUE(segments.back().open);
}

TEST_F(LogDiskTest, SegmentsLeftBehindByAResetAreDeletedOnOpen) {
  std::filesystem::path dir = Options().directory;
  std::filesystem::path saved = dir_.path() / "saved.log";
  {
    auto log = OpenLog();
    ASSERT_TRUE(log->Append(MakeEntries(1, 20, 1)).ok());
    ASSERT_TRUE(log->Sync().ok());
    std::filesystem::copy_file(dir / OpenSegmentName(1), saved);
    ASSERT_TRUE(log->Reset(10, 4).ok());
  }
  // As if Reset crashed after writing prefix-base but before deleting segments.
  std::filesystem::copy_file(saved, dir / OpenSegmentName(1));

  auto log = OpenLog();
  EXPECT_EQ(log->FirstIndex(), 11u);
  EXPECT_EQ(log->LastIndex(), 10u);
  EXPECT_EQ(log->TermAt(10), Term{4});
  EXPECT_FALSE(std::filesystem::exists(dir / OpenSegmentName(1)));
}

TEST_F(LogDiskTest, SegmentsLeftBehindByRemovePrefixAreDeletedOnOpen) {
  std::filesystem::path dir = Options().directory;
  std::filesystem::path saved = dir_.path() / "saved.log";
  std::string first_name;
  {
    auto log = OpenLog(/*segment_bytes=*/1024);
    ASSERT_TRUE(log->Append(MakeEntries(1, 30, 1, 100)).ok());
    ASSERT_TRUE(log->Sync().ok());
    first_name = log->Segments().front().name;
    std::filesystem::copy_file(dir / first_name, saved);
    ASSERT_TRUE(log->RemovePrefix(25).ok());
  }
  std::filesystem::copy_file(saved, dir / first_name);

  auto log = OpenLog(/*segment_bytes=*/1024);
  EXPECT_EQ(log->FirstIndex(), 26u);
  EXPECT_EQ(log->LastIndex(), 30u);
  EXPECT_FALSE(std::filesystem::exists(dir / first_name));
}

TEST_F(LogDiskTest, ReadOnlyOpenChangesNothing) {
  uint64_t records_end = 0;
  {
    auto log = OpenLog();
    ASSERT_TRUE(log->Append(MakeEntries(1, 5, 1)).ok());
    records_end = log->Segments().back().bytes;  // the file itself is preallocated past it
  }
  std::filesystem::path tail = Options().directory / OpenSegmentName(1);
  std::filesystem::resize_file(tail, records_end - 3);  // torn
  auto size = std::filesystem::file_size(tail);
  LogOptions options = Options();
  options.read_only = true;

  auto log = Log::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->LastIndex(), 4u);
  EXPECT_THAT((*log)->Stats().recovery_note, HasSubstr("torn tail"));
  EXPECT_EQ((*log)->Append({MakeEntry(5, 1)}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::filesystem::file_size(tail), size);
}

// Segment files are allocated to segment_bytes up front, so appends do not
// change a file's length; a segment is cut back to its records when the next
// one starts (a sealed segment holds its records and nothing else), and an
// all-zero tail is unused space on reopen, not a torn write.
TEST_F(LogDiskTest, PreallocatedSegmentsAreCutBackWhenFullAndReopenCleanly) {
  constexpr size_t kSegment = 4096;
  std::vector<Entry> written = MakeEntries(1, 50, 1, 200);
  {
    auto log = OpenLog(kSegment);
    ASSERT_TRUE(log->Append(std::vector<Entry>(written.begin(), written.begin() + 25)).ok());
    ASSERT_TRUE(log->Append(std::vector<Entry>(written.begin() + 25, written.end())).ok());
    ASSERT_TRUE(log->Sync().ok());
    std::vector<SegmentInfo> segments = log->Segments();
    ASSERT_GE(segments.size(), 3u);
    for (const SegmentInfo& s : segments) {
      uint64_t on_disk = std::filesystem::file_size(Options().directory / s.name);
      if (s.open) {
        EXPECT_EQ(on_disk, std::max<uint64_t>(kSegment, s.bytes)) << s.name << ": the open tail is preallocated";
      } else {
        EXPECT_EQ(on_disk, s.bytes) << s.name << ": a sealed segment is exactly its records";
      }
    }
  }
  auto log = OpenLog(kSegment);
  EXPECT_EQ(log->Stats().recovery_note, "") << "unused preallocated space is not a torn tail";
  EXPECT_EQ(log->Stats().recovered_torn_bytes, 0u);
  std::vector<Entry> read;
  std::vector<HoleRun> holes;
  ASSERT_TRUE(log->Read(1, 50, SIZE_MAX, &read, &holes).ok());
  EXPECT_EQ(read, written);
  // The reopened tail is preallocated again and keeps taking appends.
  SegmentInfo tail = log->Segments().back();
  EXPECT_EQ(std::filesystem::file_size(Options().directory / tail.name), std::max<uint64_t>(kSegment, tail.bytes));
  ASSERT_TRUE(log->Append({MakeEntry(51, 2, 200)}).ok());
  ASSERT_TRUE(log->Sync().ok());
  log.reset();
  log = OpenLog(kSegment);
  EXPECT_EQ(log->LastIndex(), 51u);
  EXPECT_EQ(log->Stats().recovery_note, "");
}

TEST_F(LogDiskTest, WithoutPreallocationFilesAreExactlyTheirRecords) {
  LogOptions options = Options(4096);
  options.preallocate = false;
  auto log = Log::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append(MakeEntries(1, 5, 1)).ok());
  SegmentInfo tail = (*log)->Segments().back();
  EXPECT_EQ(std::filesystem::file_size(options.directory / tail.name), tail.bytes);
}

TEST_F(LogDiskTest, ReadOnlyOpenOfAMissingDirectoryIsNotFound) {
  LogOptions options = Options();
  options.read_only = true;
  EXPECT_EQ(Log::Open(options).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LogDiskTest, TooSmallSegmentBytesIsRejected) {
  auto log = Log::Open(Options(/*segment_bytes=*/10));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
}

// A full segment plus one record must keep its offsets within u32.
TEST_F(LogDiskTest, TooLargeSegmentBytesIsRejected) {
  auto log = Log::Open(Options(/*segment_bytes=*/kMaxSegmentBytes + 1));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Log::Open(Options(/*segment_bytes=*/kMaxSegmentBytes)).ok());
}

// A segment file no log could have written (over 4 GiB) is refused by name,
// before it is read, instead of wrapping the in-memory offsets.
TEST_F(LogDiskTest, SegmentFileTooLargeForTheIndexIsDataLoss) {
  {
    auto log = OpenLog();
    ASSERT_TRUE(log->Append(MakeEntries(1, 5, 1)).ok());
  }
  std::filesystem::path tail = Options().directory / OpenSegmentName(1);
  std::filesystem::resize_file(tail, kMaxSegmentFileBytes + 1);  // sparse: costs no disk
  LogOptions read_only = Options();
  read_only.read_only = true;

  for (const LogOptions& options : {Options(), read_only}) {
    auto log = Log::Open(options);
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(log.status().message()), HasSubstr(OpenSegmentName(1)));
    EXPECT_THAT(std::string(log.status().message()), HasSubstr("more than a segment can hold"));
  }
  EXPECT_EQ(std::filesystem::file_size(tail), kMaxSegmentFileBytes + 1);  // left alone
}

}  // namespace
}  // namespace caracal::storage

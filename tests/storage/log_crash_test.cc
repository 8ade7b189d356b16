// What Log::Open makes of damaged files: torn tails (cut at every kind of
// offset), bit flips in the open tail, bit flips in sealed segments and in the
// prefix-base file. The rule under test: a recovered log is always EXACTLY a
// prefix of what was written, and damage to fsynced (sealed) data is an error
// naming the file and offset, never silently skipped.
//
// Each randomized case prints its seed; CARACAL_SEED=<n> replays one.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "framework/storage/file.h"
#include "framework/storage/log.h"
#include "framework/storage/segment.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/storage/log_test_util.h"
#include "tests/testing/temp_dir.h"

namespace caracal::storage {
namespace {

using ::caracal::storage::testing::MakeEntries;
using ::caracal::storage::testing::MakeEntry;
using ::testing::HasSubstr;

constexpr size_t kSegmentBytes = 2048;

std::string ReadBytes(const std::filesystem::path& path) {
  auto data = ReadWholeFile(path);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : std::string();
}

void WriteBytes(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Seeds: 1..n, or only CARACAL_SEED when set.
std::vector<uint64_t> Seeds(uint64_t n) {
  if (const char* s = std::getenv("CARACAL_SEED")) return {std::strtoull(s, nullptr, 10)};
  std::vector<uint64_t> seeds;
  for (uint64_t i = 1; i <= n; ++i) seeds.push_back(i);
  return seeds;
}

class LogCrashTest : public ::testing::Test {
 protected:
  // A reference log: several sealed segments and an open tail with entries of
  // varied sizes, rising terms and hole runs; fsynced and closed.
  void SetUp() override {
    saved_level_ = spdlog::get_level();
    spdlog::set_level(spdlog::level::err);  // hundreds of expected "torn tail" warnings otherwise
    auto log = Log::Open(Options(ref_dir()));
    ASSERT_TRUE(log.ok()) << log.status();
    std::mt19937_64 rng(7);
    Index next = 1;
    Term term = 1;
    while (next <= 120) {
      if (rng() % 10 == 0) term += 1;
      if (rng() % 8 == 0) {
        Index last = next + rng() % 5;
        ASSERT_TRUE((*log)->Append({}, {{next, last, term}}).ok());
        next = last + 1;
      } else {
        ASSERT_TRUE((*log)->Append({MakeEntry(next, term, rng() % 200)}).ok());
        ++next;
      }
    }
    ASSERT_TRUE((*log)->Sync().ok());
    ASSERT_TRUE((*log)->Read(1, (*log)->LastIndex(), SIZE_MAX, &entries_, &holes_).ok());
    segments_ = (*log)->Segments();
    ASSERT_GE(segments_.size(), 3u);
    ASSERT_TRUE(segments_.back().open);
    ASSERT_FALSE(segments_.front().open);
    tail_bytes_ = ReadBytes(ref_dir() / segments_.back().name);
    auto scan = ScanSegment(segments_.back().name, tail_bytes_, true, 0);
    ASSERT_TRUE(scan.ok()) << scan.status();
    tail_records_.assign(scan->records.begin(), scan->records.end());
    ASSERT_GE(tail_records_.size(), 3u);
  }

  void TearDown() override { spdlog::set_level(saved_level_); }

  // Without preallocation, so that a file's bytes are exactly its records and
  // cutting bytes off models a torn write (PreallocatedTail* cover the other mode).
  static LogOptions Options(const std::filesystem::path& dir, bool preallocate = false) {
    LogOptions options;
    options.directory = dir;
    options.segment_bytes = kSegmentBytes;
    options.preallocate = preallocate;
    return options;
  }
  std::filesystem::path ref_dir() const { return dir_.path() / "ref"; }
  // A fresh copy of the reference log to damage.
  std::filesystem::path FreshCopy() {
    std::filesystem::path copy = dir_.path() / "copy";
    std::filesystem::remove_all(copy);
    std::filesystem::copy(ref_dir(), copy);
    return copy;
  }
  // The last index of the longest run of tail records (from the start) whose
  // bytes in `damaged` are exactly the original ones: what recovery must keep.
  Index LastIndexOfIntactTailPrefix(const std::string& damaged) const {
    Index last = segments_.back().first - 1;
    if (damaged.compare(0, kSegmentHeaderBytes, tail_bytes_, 0, kSegmentHeaderBytes) != 0) return last;
    for (const RecordMeta& r : tail_records_) {
      if (damaged.size() < r.offset + r.size || damaged.compare(r.offset, r.size, tail_bytes_, r.offset, r.size) != 0) {
        break;
      }
      last = r.last;
    }
    return last;
  }
  // The recovered log must be exactly the reference up to `last`.
  void ExpectExactPrefix(const Log& log, Index last) {
    ASSERT_EQ(log.LastIndex(), last);
    ASSERT_EQ(log.DurableIndex(), last);
    std::vector<Entry> entries;
    std::vector<HoleRun> holes;
    ASSERT_TRUE(log.Read(1, last, SIZE_MAX, &entries, &holes).ok());
    std::vector<Entry> want_entries;
    std::vector<HoleRun> want_holes;
    for (const Entry& e : entries_) {
      if (e.index <= last) want_entries.push_back(e);
    }
    for (const HoleRun& h : holes_) {
      if (h.last <= last) want_holes.push_back(h);
    }
    EXPECT_EQ(entries, want_entries);
    EXPECT_EQ(holes, want_holes);
  }
  // After recovery the log must take appends and survive another reopen.
  void ExpectUsableAfterRecovery(const std::filesystem::path& dir, std::unique_ptr<Log> log) {
    Index next = log->LastIndex() + 1;
    Term term = *log->TermAt(next - 1);
    ASSERT_TRUE(log->Append({MakeEntry(next, term + 1, 50)}).ok());
    ASSERT_TRUE(log->Sync().ok());
    log.reset();
    auto again = Log::Open(Options(dir));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->LastIndex(), next);
    EXPECT_TRUE((*again)->Stats().recovery_note.empty()) << (*again)->Stats().recovery_note;
  }

  spdlog::level::level_enum saved_level_ = spdlog::level::info;
  caracal::testing::TempDir dir_;
  std::vector<Entry> entries_;
  std::vector<HoleRun> holes_;
  std::vector<SegmentInfo> segments_;
  std::vector<RecordMeta> tail_records_;
  std::string tail_bytes_;
};

TEST_F(LogCrashTest, TornTailIsTruncatedOnOpenToAnExactPrefix) {
  for (uint64_t seed : Seeds(300)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " (replay: CARACAL_SEED=", seed, ")"));
    std::mt19937_64 rng(seed);
    std::filesystem::path dir = FreshCopy();
    std::filesystem::path tail = dir / segments_.back().name;
    uint64_t size = std::filesystem::file_size(tail);
    uint64_t cut = rng() % size;  // keep [0, cut)
    std::filesystem::resize_file(tail, cut);
    std::string data = ReadBytes(tail);
    if (seed % 3 == 0) {  // a crash may also leave zero-filled blocks after the data
      data.append(rng() % 600, '\0');
      WriteBytes(tail, data);
    }
    // Zero fill can restore a record whose cut-off tail was zero padding: it is then intact.
    Index expected = LastIndexOfIntactTailPrefix(data);

    auto log = Log::Open(Options(dir));
    ASSERT_TRUE(log.ok()) << log.status();
    ExpectExactPrefix(**log, expected);
    if (seed % 20 == 0) ExpectUsableAfterRecovery(dir, *std::move(log));
  }
}

// With preallocation the tail file is segment_bytes long whatever was
// written: a crash leaves the records that reached the disk, then zeros (the
// allocated space), or a partly written record then zeros. Recovery keeps
// exactly the intact records; only a partial record counts as a torn tail.
TEST_F(LogCrashTest, PreallocatedTailKeepsTheIntactRecordsBeforeItsZeros) {
  int clean = 0, torn = 0;
  for (uint64_t seed : Seeds(200)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " (replay: CARACAL_SEED=", seed, ")"));
    std::mt19937_64 rng(seed);
    std::filesystem::path dir = FreshCopy();
    std::filesystem::path tail = dir / segments_.back().name;
    // Half the time exactly at a record boundary (a clean stop), else anywhere.
    uint64_t cut = seed % 2 == 0 ? tail_records_[rng() % tail_records_.size()].offset
                                 : kSegmentHeaderBytes + rng() % (tail_bytes_.size() - kSegmentHeaderBytes);
    std::string data = tail_bytes_.substr(0, cut);
    data.resize(std::max<size_t>(kSegmentBytes, tail_bytes_.size()), '\0');
    WriteBytes(tail, data);
    Index expected = LastIndexOfIntactTailPrefix(data);

    auto log = Log::Open(Options(dir, /*preallocate=*/true));
    ASSERT_TRUE(log.ok()) << log.status();
    ExpectExactPrefix(**log, expected);
    bool at_boundary = std::any_of(tail_records_.begin(), tail_records_.end(),
                                   [&](const RecordMeta& r) { return r.offset == cut; });
    if (at_boundary) {
      EXPECT_EQ((*log)->Stats().recovery_note, "") << "a clean stop inside preallocated space is not damage";
      ++clean;
    } else if (!(*log)->Stats().recovery_note.empty()) {
      ++torn;
    }
    if (seed % 20 == 0) ExpectUsableAfterRecovery(dir, *std::move(log));
  }
  EXPECT_GT(clean, 0);
  EXPECT_GT(torn, 0);
}

// A damaged last record is a torn write: the log ends before it. Damage
// with whole records after it is corruption of written data: Open refuses
// (cutting there would drop entries that may have been acknowledged) —
// except damage to a record's length field, which cannot be told from a
// torn write (the next record cannot be found without a search that garbage
// in values could fool): the log is cut there.
TEST_F(LogCrashTest, BitFlipInTheTailCutsATornLastRecordAndRefusesDamageInTheMiddle) {
  int cut = 0, refused = 0;
  for (uint64_t seed : Seeds(300)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " (replay: CARACAL_SEED=", seed, ")"));
    std::mt19937_64 rng(seed);
    std::filesystem::path dir = FreshCopy();
    std::filesystem::path tail = dir / segments_.back().name;
    std::string data = ReadBytes(tail);
    uint64_t offset = rng() % data.size();
    data[offset] = static_cast<char>(data[offset] ^ (1 << (rng() % 8)));
    WriteBytes(tail, data);
    bool in_last_record = offset >= tail_records_.back().offset;
    bool in_header = offset < kSegmentHeaderBytes;
    bool in_length_field = false;
    for (const RecordMeta& r : tail_records_) in_length_field |= offset >= r.offset && offset < r.offset + 4;

    auto log = Log::Open(Options(dir));
    if (in_header || in_last_record || in_length_field) {
      ASSERT_TRUE(log.ok()) << log.status();
      ExpectExactPrefix(**log, LastIndexOfIntactTailPrefix(data));
      if (seed % 20 == 0) ExpectUsableAfterRecovery(dir, *std::move(log));
      ++cut;
    } else {
      ASSERT_FALSE(log.ok()) << "damage at offset " << offset << " in the middle was cut off silently";
      EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
      EXPECT_THAT(log.status().message(), HasSubstr("corrupt in the middle")) << log.status();
      EXPECT_THAT(log.status().message(), HasSubstr(segments_.back().name)) << log.status();
      ++refused;
    }
  }
  EXPECT_GT(cut, 0);
  EXPECT_GT(refused, 0);
}

TEST_F(LogCrashTest, BitFlipInTheTailHeaderDropsTheWholeTail) {
  std::filesystem::path dir = FreshCopy();
  std::filesystem::path tail = dir / segments_.back().name;
  std::string data = ReadBytes(tail);
  data[16] ^= 0x04;  // the first index
  WriteBytes(tail, data);

  auto log = Log::Open(Options(dir));
  ASSERT_TRUE(log.ok()) << log.status();
  ExpectExactPrefix(**log, segments_.back().first - 1);
  EXPECT_THAT((*log)->Stats().recovery_note, HasSubstr("header checksum"));
  EXPECT_FALSE(std::filesystem::exists(tail));
}

TEST_F(LogCrashTest, BitFlipInASealedSegmentFailsOpenNamingFileAndOffset) {
  const SegmentInfo& sealed = segments_[1];
  auto scan = ScanSegment(sealed.name, ReadBytes(ref_dir() / sealed.name), true, 0);
  ASSERT_TRUE(scan.ok());
  for (uint64_t seed : Seeds(100)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " (replay: CARACAL_SEED=", seed, ")"));
    std::mt19937_64 rng(seed);
    std::filesystem::path dir = FreshCopy();
    std::string data = ReadBytes(dir / sealed.name);
    uint64_t offset = rng() % data.size();
    data[offset] = static_cast<char>(data[offset] ^ (1 << (rng() % 8)));
    WriteBytes(dir / sealed.name, data);
    uint64_t record_offset = 0;  // the header, unless a record holds the byte
    for (const RecordMeta& r : scan->records) {
      if (r.offset <= offset) record_offset = r.offset;
    }

    auto log = Log::Open(Options(dir));
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(log.status().message()),
                HasSubstr(absl::StrCat("segment ", sealed.name, ": ")));
    EXPECT_THAT(std::string(log.status().message()), HasSubstr(absl::StrCat("at offset ", record_offset)));
  }
}

TEST_F(LogCrashTest, BitFlipInASealedSegmentHeaderFailsOpen) {
  std::filesystem::path dir = FreshCopy();
  const std::string& name = segments_.front().name;
  std::string data = ReadBytes(dir / name);
  data[24] ^= 0x01;  // the epoch
  WriteBytes(dir / name, data);

  auto log = Log::Open(Options(dir));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(std::string(log.status().message()),
            absl::StrCat("segment ", name, ": bad segment header checksum at offset 0"));
}

TEST_F(LogCrashTest, TruncatedSealedSegmentFailsOpen) {
  std::filesystem::path dir = FreshCopy();
  const std::string& name = segments_.front().name;
  std::filesystem::resize_file(dir / name, std::filesystem::file_size(dir / name) - 1);

  auto log = Log::Open(Options(dir));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr(name));
}

TEST_F(LogCrashTest, MissingMiddleSegmentFailsOpenNamingTheGap) {
  std::filesystem::path dir = FreshCopy();
  std::filesystem::remove(dir / segments_[1].name);

  auto log = Log::Open(Options(dir));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()),
              HasSubstr(absl::StrCat(segments_[0].name, " ends at index ", segments_[0].last)));
}

TEST_F(LogCrashTest, CorruptPrefixBaseFailsOpen) {
  {
    auto log = Log::Open(Options(ref_dir()));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->RemovePrefix(5).ok());
  }
  std::filesystem::path dir = FreshCopy();
  std::string data = ReadBytes(dir / kBaseFileName);
  data[20] ^= 0x10;
  WriteBytes(dir / kBaseFileName, data);

  auto log = Log::Open(Options(dir));
  EXPECT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(log.status().message()), HasSubstr("prefix-base"));
}

TEST_F(LogCrashTest, StaleTempFilesAreDeletedOnOpen) {
  std::filesystem::path dir = FreshCopy();
  WriteBytes(dir / "prefix-base.tmp", "half a file");

  auto log = Log::Open(Options(dir));
  ASSERT_TRUE(log.ok()) << log.status();
  ExpectExactPrefix(**log, entries_.back().index > holes_.back().last ? entries_.back().index : holes_.back().last);
  EXPECT_FALSE(std::filesystem::exists(dir / "prefix-base.tmp"));
}

}  // namespace
}  // namespace caracal::storage

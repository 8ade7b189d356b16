// RecordIndex: the compact in-memory index of a segment's records must
// answer exactly what a plain list of RecordMeta would, in about 4 bytes per
// entry record.

#include "framework/storage/record_index.h"

#include <cstdlib>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace caracal::storage {
namespace {

constexpr uint64_t kStart = 48;  // a segment header

// Seeds: 1..n, or only CARACAL_SEED when set.
std::vector<uint64_t> Seeds(uint64_t n) {
  if (const char* s = std::getenv("CARACAL_SEED")) return {std::strtoull(s, nullptr, 10)};
  std::vector<uint64_t> seeds;
  for (uint64_t i = 1; i <= n; ++i) seeds.push_back(i);
  return seeds;
}

// The plain representation RecordIndex replaces: the reference to compare with.
class Reference {
 public:
  explicit Reference(Index first) : next_(first) {}
  void Add(Index first, Index last, bool hole, uint32_t size) {
    records_.push_back({first, last, end_, size, hole});
    end_ += size;
    next_ = last + 1;
  }
  void Truncate(size_t k) {
    if (k >= records_.size()) return;
    end_ = records_[k].offset;
    next_ = records_[k].first;
    records_.resize(k);
  }
  const std::vector<RecordMeta>& records() const { return records_; }
  Index next() const { return next_; }
  uint64_t end() const { return end_; }

 private:
  std::vector<RecordMeta> records_;
  Index next_;
  uint64_t end_ = kStart;
};

void ExpectSame(const RecordIndex& index, const Reference& ref, Index first) {
  ASSERT_EQ(index.size(), ref.records().size());
  EXPECT_EQ(index.empty(), ref.records().empty());
  EXPECT_EQ(index.first(), first);
  EXPECT_EQ(index.last(), ref.next() - 1);
  EXPECT_EQ(index.bytes(), ref.end());
  for (size_t k = 0; k < ref.records().size(); ++k) {
    const RecordMeta& want = ref.records()[k];
    ASSERT_EQ(index[k], want) << "record " << k;
    for (Index i = want.first; i <= want.last; ++i) ASSERT_EQ(index.RecordOf(i), k) << "index " << i;
  }
  std::vector<RecordMeta> iterated(index.begin(), index.end());
  EXPECT_EQ(iterated, ref.records());
}

TEST(RecordIndexTest, EmptyIndexCoversNothingAndEndsAtItsStart) {
  RecordIndex index(100, kStart);

  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.first(), 100u);
  EXPECT_EQ(index.last(), 99u);
  EXPECT_EQ(index.bytes(), kStart);
  EXPECT_EQ(index.begin(), index.end());
}

TEST(RecordIndexTest, EntryRecordsTakeTheirSizeFromTheNextOffset) {
  RecordIndex index(10, kStart);
  index.Add(10, 10, false, 64);
  index.Add(11, 11, false, 80);
  index.Add(12, 12, false, 72);

  EXPECT_EQ(index[0], (RecordMeta{10, 10, 48, 64, false}));
  EXPECT_EQ(index[1], (RecordMeta{11, 11, 112, 80, false}));
  EXPECT_EQ(index[2], (RecordMeta{12, 12, 192, 72, false}));  // the last: up to bytes()
  EXPECT_EQ(index.bytes(), 264u);
  EXPECT_EQ(index.RecordOf(12), 2u);
}

TEST(RecordIndexTest, HoleRecordsShiftThePositionOfLaterIndexes) {
  RecordIndex index(1, kStart);
  index.Add(1, 1, false, 40);
  index.Add(2, 10, true, 32);  // one record for 9 indexes
  index.Add(11, 11, false, 40);
  index.Add(12, 12, false, 40);
  index.Add(13, 13, true, 32);  // a hole run of one index
  index.Add(14, 20, true, 32);  // right after another hole run
  index.Add(21, 21, false, 40);

  EXPECT_EQ(index.RecordOf(1), 0u);
  for (Index i = 2; i <= 10; ++i) EXPECT_EQ(index.RecordOf(i), 1u) << i;
  EXPECT_EQ(index.RecordOf(11), 2u);
  EXPECT_EQ(index.RecordOf(12), 3u);
  EXPECT_EQ(index.RecordOf(13), 4u);
  EXPECT_EQ(index.RecordOf(17), 5u);
  EXPECT_EQ(index.RecordOf(21), 6u);
  EXPECT_EQ(index[1], (RecordMeta{2, 10, 88, 32, true}));
  EXPECT_EQ(index[3], (RecordMeta{12, 12, 160, 40, false}));
  EXPECT_EQ(index[5], (RecordMeta{14, 20, 232, 32, true}));
  EXPECT_EQ(index[6], (RecordMeta{21, 21, 264, 40, false}));
}

TEST(RecordIndexTest, TruncateCutsTheBytesAndDropsTheHolesAfterTheCut) {
  RecordIndex index(1, kStart);
  index.Add(1, 1, false, 40);
  index.Add(2, 10, true, 32);
  index.Add(11, 11, false, 40);

  index.Truncate(1);  // the hole run and what follows

  EXPECT_EQ(index.size(), 1u);
  EXPECT_EQ(index.last(), 1u);
  EXPECT_EQ(index.bytes(), 88u);
  index.Add(2, 5, true, 32);  // a shorter hole run where the old one started
  EXPECT_EQ(index[1], (RecordMeta{2, 5, 88, 32, true}));
  EXPECT_EQ(index.RecordOf(5), 1u);
  index.Truncate(0);
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.last(), 0u);
  EXPECT_EQ(index.bytes(), kStart);
}

TEST(RecordIndexTest, AnswersLikeAPlainRecordListUnderRandomAddsAndTruncations) {
  for (uint64_t seed : Seeds(50)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, " (replay: CARACAL_SEED=", seed, ")"));
    std::mt19937_64 rng(seed);
    const Index first = 1 + rng() % 1000;
    RecordIndex index(first, kStart);
    Reference ref(first);
    for (int step = 0; step < 300; ++step) {
      if (rng() % 20 == 0) {
        size_t k = ref.records().empty() ? 0 : rng() % ref.records().size();
        index.Truncate(k);
        ref.Truncate(k);
        continue;
      }
      bool hole = rng() % 4 == 0;
      Index from = ref.next();
      Index last = hole ? from + rng() % 5 : from;  // hole runs of 1..5 indexes
      uint32_t size = 24 + 8 * static_cast<uint32_t>(rng() % 20);
      index.Add(from, last, hole, size);
      ref.Add(from, last, hole, size);
    }
    ExpectSame(index, ref, first);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(RecordIndexTest, TakesAboutFourBytesPerEntryRecord) {
  constexpr size_t kEntries = 100000;
  RecordIndex index(1, kStart);
  for (Index i = 1; i <= kEntries; ++i) index.Add(i, i, false, 64);

  double per_entry = static_cast<double>(index.HeapBytes()) / kEntries;
  EXPECT_LT(per_entry, 6.0);  // growing: capacity is at most about twice the size
  index.ShrinkToFit();
  EXPECT_EQ(index.HeapBytes(), kEntries * sizeof(uint32_t));
  EXPECT_EQ(index.RecordOf(kEntries), kEntries - 1);
  EXPECT_EQ(index.back(), (RecordMeta{kEntries, kEntries, kStart + (kEntries - 1) * 64, 64, false}));
}

TEST(RecordIndexTest, OffsetsReachTheLargestSegmentFile) {
  RecordIndex index(1, kStart);
  index.Add(1, 1, false, kMaxSegmentFileBytes - kStart - 64);
  index.Add(2, 2, false, 64);

  EXPECT_EQ(index.bytes(), kMaxSegmentFileBytes);
  EXPECT_EQ(index[1].offset, kMaxSegmentFileBytes - 64);
  EXPECT_EQ(index[1].size, 64u);
}

}  // namespace
}  // namespace caracal::storage

#ifndef CARACAL_FRAMEWORK_STORAGE_RECORD_INDEX_H_
#define CARACAL_FRAMEWORK_STORAGE_RECORD_INDEX_H_

// Internal to storage: the in-memory index of one segment's records (where
// each record lies in the file, which indexes it covers), kept by the log for
// every segment and built by ScanSegment. It costs about 4 bytes per record.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

#include "framework/common/types.h"

namespace caracal::storage {

// A segment file holds at most this many bytes: record offsets are kept as
// u32 (Log::Open bounds segment_bytes so that a full segment plus one maximal
// record stays below it; recovery refuses a larger file).
inline constexpr uint64_t kMaxSegmentFileBytes = UINT32_MAX;

// One record of a segment, as the accessors of RecordIndex return it.
struct RecordMeta {
  Index first = 0;      // an entry record covers [first, first]; a hole record [first, last]
  Index last = 0;
  uint64_t offset = 0;  // of the record header in the file
  uint32_t size = 0;    // header + body
  bool hole = false;
  friend bool operator==(const RecordMeta&, const RecordMeta&) = default;
};

// Entry records hold consecutive indexes and only hole records span several,
// so the index stores the start offset of every record (u32) and, apart, the
// few hole records with their position and range. A record's size is the next
// record's offset minus its own (bytes() minus its own for the last record);
// its indexes follow from the nearest hole record at or before it.
//
// Invariants (asserted in debug builds):
//  * records cover [first(), last()] consecutively; last() == first() - 1 when empty.
//  * offsets_ strictly increase, and all lie below bytes_ <= kMaxSegmentFileBytes.
//  * holes_ are sorted by position (hence by range), each position < size(),
//    each with first <= last.
// Not thread-safe: the log guards it with its readers' lock.
class RecordIndex {
 public:
  RecordIndex() = default;  // for a segment without a valid header: empty, covers nothing
  // An empty index for a segment whose first record would hold index `first`
  // at offset `start` (the header size).
  RecordIndex(Index first, uint64_t start);

  bool empty() const { return offsets_.empty(); }
  size_t size() const { return offsets_.size(); }
  Index first() const { return first_; }
  Index last() const { return last_; }
  // Offset just past the last record: where the next record goes.
  uint64_t bytes() const { return bytes_; }

  RecordMeta operator[](size_t k) const;  // k < size()
  RecordMeta back() const { return (*this)[size() - 1]; }
  // Position of the record holding `index` (first() <= index <= last()).
  size_t RecordOf(Index index) const;

  // Appends a record of `size` bytes at offset bytes() covering [first, last]
  // (first == last() + 1; last == first unless hole). The caller keeps
  // bytes() + size <= kMaxSegmentFileBytes.
  void Add(Index first, Index last, bool hole, uint64_t size);
  // Keeps records [0, k): bytes() becomes the offset of record k.
  void Truncate(size_t k);
  // Releases spare capacity (a segment that will not grow any more).
  void ShrinkToFit();
  // Heap memory held, by capacity.
  size_t HeapBytes() const;

  // Iteration yields RecordMeta values.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;  // yields values, not references
    using value_type = RecordMeta;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = RecordMeta;
    Iterator() = default;
    Iterator(const RecordIndex* index, size_t k) : index_(index), k_(k) {}
    RecordMeta operator*() const { return (*index_)[k_]; }
    Iterator& operator++() {
      ++k_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator old = *this;
      ++k_;
      return old;
    }
    friend bool operator==(const Iterator& a, const Iterator& b) { return a.k_ == b.k_; }

   private:
    const RecordIndex* index_ = nullptr;
    size_t k_ = 0;
  };
  Iterator begin() const { return Iterator(this, 0); }
  Iterator end() const { return Iterator(this, size()); }

 private:
  struct Hole {
    Index first = 0;
    Index last = 0;
    uint32_t pos = 0;  // position in the record list
  };
  void CheckTail() const;  // the invariants at the end of the lists (O(1))

  Index first_ = 1;
  Index last_ = 0;
  uint32_t bytes_ = 0;
  std::vector<uint32_t> offsets_;
  std::vector<Hole> holes_;
};

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_RECORD_INDEX_H_

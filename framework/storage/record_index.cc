#include "framework/storage/record_index.h"

#include <algorithm>
#include <cassert>

namespace caracal::storage {

RecordIndex::RecordIndex(Index first, uint64_t start)
    : first_(first), last_(first - 1), bytes_(static_cast<uint32_t>(start)) {
  assert(start <= kMaxSegmentFileBytes);
}

RecordMeta RecordIndex::operator[](size_t k) const {
  assert(k < offsets_.size());
  RecordMeta meta;
  meta.offset = offsets_[k];
  meta.size = (k + 1 < offsets_.size() ? offsets_[k + 1] : bytes_) - offsets_[k];
  // The last hole record at or before position k.
  auto it = std::upper_bound(holes_.begin(), holes_.end(), k, [](size_t pos, const Hole& h) { return pos < h.pos; });
  if (it == holes_.begin()) {
    meta.first = meta.last = first_ + k;
  } else if (const Hole& h = *std::prev(it); h.pos == k) {
    meta.first = h.first;
    meta.last = h.last;
    meta.hole = true;
  } else {  // entries follow hole h one index each
    meta.first = meta.last = h.last + (k - h.pos);
  }
  return meta;
}

size_t RecordIndex::RecordOf(Index index) const {
  assert(index >= first_ && index <= last_);
  // The first hole record ending at or after `index`: it holds `index`, or
  // every hole before it ends below `index`.
  auto it = std::lower_bound(holes_.begin(), holes_.end(), index, [](const Hole& h, Index i) { return h.last < i; });
  if (it != holes_.end() && it->first <= index) return it->pos;
  if (it == holes_.begin()) return static_cast<size_t>(index - first_);
  const Hole& h = *std::prev(it);
  return h.pos + static_cast<size_t>(index - h.last);
}

void RecordIndex::Add(Index first, Index last, bool hole, uint64_t size) {
  assert(first == last_ + 1 && last >= first && (hole || last == first));
  assert(size > 0 && bytes_ + size <= kMaxSegmentFileBytes);
  if (hole) holes_.push_back({first, last, static_cast<uint32_t>(offsets_.size())});
  offsets_.push_back(bytes_);
  bytes_ = static_cast<uint32_t>(bytes_ + size);
  last_ = last;
  CheckTail();
}

void RecordIndex::Truncate(size_t k) {
  if (k >= offsets_.size()) return;
  bytes_ = offsets_[k];
  offsets_.resize(k);
  while (!holes_.empty() && holes_.back().pos >= k) holes_.pop_back();
  last_ = k == 0 ? first_ - 1 : (*this)[k - 1].last;
  CheckTail();
}

void RecordIndex::ShrinkToFit() {
  offsets_.shrink_to_fit();
  holes_.shrink_to_fit();
}

size_t RecordIndex::HeapBytes() const {
  return offsets_.capacity() * sizeof(uint32_t) + holes_.capacity() * sizeof(Hole);
}

void RecordIndex::CheckTail() const {
  assert(offsets_.empty() ? last_ == first_ - 1 : last_ >= first_);
  assert(offsets_.empty() || offsets_.back() < bytes_);
  assert(offsets_.size() < 2 || offsets_[offsets_.size() - 2] < offsets_.back());
  assert(holes_.empty() || (holes_.back().pos < offsets_.size() && holes_.back().first <= holes_.back().last));
  assert(holes_.size() < 2 || holes_[holes_.size() - 2].pos < holes_.back().pos);
}

}  // namespace caracal::storage

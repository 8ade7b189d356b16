#ifndef CARACAL_FRAMEWORK_COMMON_BYTES_H_
#define CARACAL_FRAMEWORK_COMMON_BYTES_H_

// Bytes: an immutable, reference-counted byte string, or a slice of one.
// BytesArena: hands out Bytes carved from shared chunks.
//
// Entries are handed from the raft core to storage, to several followers'
// messages and to the applier; sharing the payload means none of them copies
// it. A slice shares its owner's storage: the entries of one received frame,
// or the entries proposed in one turn of the io loop, cost one allocation
// between them (their chunk), not one each. The storage lives as long as any
// slice of it does.

#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace caracal {

class Bytes {
 public:
  Bytes() = default;
  // Takes ownership of `data` (one allocation for the reference count).
  explicit Bytes(std::string data) {
    auto owned = std::make_shared<const std::string>(std::move(data));
    data_ = owned->data();
    size_ = owned->size();
    owner_ = std::move(owned);
  }
  // Copies `data` into one new allocation.
  explicit Bytes(std::string_view data) {
    if (data.empty()) return;
    // One allocation, 8-byte aligned (Cap'n Proto reads aligned words in place).
    auto block = std::make_shared_for_overwrite<uint64_t[]>((data.size() + 7) / 8);
    std::memcpy(block.get(), data.data(), data.size());
    data_ = reinterpret_cast<const char*>(block.get());
    size_ = data.size();
    owner_ = std::move(block);
  }
  // `view` lies inside storage kept alive by `owner`.
  Bytes(std::shared_ptr<const void> owner, std::string_view view)
      : owner_(std::move(owner)), data_(view.data()), size_(view.size()) {}

  // [offset, offset + size) of this string, sharing its storage.
  Bytes Slice(size_t offset, size_t size) const {
    assert(offset <= size_ && size <= size_ - offset);
    return Bytes(owner_, std::string_view(data_ + offset, size));
  }
  // A slice of this string's storage: `part` must lie inside view().
  Bytes SliceOf(std::string_view part) const {
    assert(part.empty() || (part.data() >= data_ && part.data() + part.size() <= data_ + size_));
    return Bytes(owner_, part);
  }

  std::string_view view() const { return std::string_view(data_, size_); }
  operator std::string_view() const { return view(); }  // NOLINT: reads like the string it is
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The storage this string keeps alive (for tests and accounting).
  const void* owner() const { return owner_.get(); }

  friend bool operator==(const Bytes& a, const Bytes& b) { return a.view() == b.view(); }
  friend bool operator==(const Bytes& a, std::string_view b) { return a.view() == b; }

 private:
  std::shared_ptr<const void> owner_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Carves Bytes out of chunks of `chunk_bytes`: many small strings cost one
// allocation per chunk. A chunk is freed when the last slice of it goes, so an
// arena suits strings that die at about the same time (the entries of a
// batch); a string longer than a quarter chunk gets a block of its own, so the
// waste at a chunk's end stays under a quarter. One thread at a time.
class BytesArena {
 public:
  static constexpr size_t kDefaultChunkBytes = 64 << 10;
  explicit BytesArena(size_t chunk_bytes = kDefaultChunkBytes) : chunk_bytes_((chunk_bytes + 7) & ~size_t{7}) {}

  // Room for `size` bytes: write them through data(), then Finish().
  class Reservation {
   public:
    char* data() const { return data_; }
    size_t size() const { return size_; }

   private:
    friend class BytesArena;
    Reservation(char* data, size_t size) : data_(data), size_(size) {}
    char* data_;
    size_t size_;
  };

  Reservation Reserve(size_t size) {
    if (size > chunk_bytes_ / 4) {
      big_ = Allocate(size);
      return Reservation(reinterpret_cast<char*>(big_.get()), size);
    }
    if (chunk_ == nullptr || chunk_bytes_ - used_ < size) {
      chunk_ = Allocate(chunk_bytes_);
      used_ = 0;
    }
    return Reservation(reinterpret_cast<char*>(chunk_.get()) + used_, size);
  }
  // `used` (<= the reservation) bytes were written: they become a Bytes.
  Bytes Finish(const Reservation& r, size_t used) {
    assert(used <= r.size_);
    if (big_ != nullptr && r.data_ == reinterpret_cast<char*>(big_.get())) {
      return Bytes(std::shared_ptr<const void>(std::move(big_)), std::string_view(r.data_, used));
    }
    used_ += (used + 7) & ~size_t{7};  // keeps later slices 8-byte aligned
    if (used_ > chunk_bytes_) used_ = chunk_bytes_;
    return Bytes(chunk_, std::string_view(r.data_, used));
  }

  Bytes Copy(std::string_view data) {
    Reservation r = Reserve(data.size());
    if (!data.empty()) std::memcpy(r.data(), data.data(), data.size());
    return Finish(r, data.size());
  }

  // Chunks allocated so far (tests).
  const void* current_chunk() const { return chunk_.get(); }

 private:
  // One allocation, 8-byte aligned (Cap'n Proto reads aligned words in place).
  static std::shared_ptr<uint64_t[]> Allocate(size_t bytes) {
    return std::make_shared_for_overwrite<uint64_t[]>((bytes + 7) / 8);
  }

  size_t chunk_bytes_;
  std::shared_ptr<uint64_t[]> chunk_;
  size_t used_ = 0;
  std::shared_ptr<uint64_t[]> big_;
};

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_BYTES_H_

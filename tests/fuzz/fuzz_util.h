#ifndef CARACAL_TESTS_FUZZ_FUZZ_UTIL_H_
#define CARACAL_TESTS_FUZZ_FUZZ_UTIL_H_

// Helpers shared by the fuzz targets (tests/fuzz/*_fuzz.cc) and the seed
// corpus generator (make_corpus.cc).
//
// Two ideas recur:
//  * Checksums. Records, segment headers, prefix-base and metadata files end
//    in an XXH3 that random mutation never gets right, so a target that only
//    fed the raw bytes would never get past the checksum test. Targets feed
//    the raw bytes *and* a copy whose checksums (and framing lengths, where
//    they cannot be learned) are repaired, so mutations reach the decoders
//    behind them.
//  * Scripts. Targets that need several values (a log directory, a sequence
//    of entries) read them from the input with ByteReader; make_corpus writes
//    the same shapes with ByteWriter, so seeds are valid scripts.
//
// A violated property (e.g. a decoded value that does not survive being
// encoded and decoded again) calls FUZZ_CHECK, which prints and aborts: the
// fuzzer reports it as a crash and keeps the input.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "framework/common/endian.h"
#include "serialization/framing.h"

#define FUZZ_CHECK(condition)                                                              \
  do {                                                                                     \
    if (!(condition)) {                                                                    \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

namespace caracal::fuzz {

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Reads little-endian integers and byte strings off the front of an input;
// past the end it yields zeros and empty strings (never fails).
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  bool empty() const { return data_.empty(); }
  size_t remaining() const { return data_.size(); }

  uint8_t U8() {
    if (data_.empty()) return 0;
    uint8_t v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return v;
  }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  uint64_t U64() { return static_cast<uint64_t>(U32()) | (static_cast<uint64_t>(U32()) << 32); }
  std::string_view Bytes(size_t n) {
    n = std::min(n, data_.size());
    std::string_view out = data_.substr(0, n);
    data_.remove_prefix(n);
    return out;
  }
  // A u16 length, then that many bytes.
  std::string_view Chunk() { return Bytes(U16()); }
  std::string_view Rest() { return Bytes(data_.size()); }

 private:
  std::string_view data_;
};

// The writing side of ByteReader, for make_corpus.
class ByteWriter {
 public:
  ByteWriter& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  ByteWriter& U16(uint16_t v) { return U8(static_cast<uint8_t>(v)).U8(static_cast<uint8_t>(v >> 8)); }
  ByteWriter& U32(uint32_t v) { return U16(static_cast<uint16_t>(v)).U16(static_cast<uint16_t>(v >> 16)); }
  ByteWriter& U64(uint64_t v) { return U32(static_cast<uint32_t>(v)).U32(static_cast<uint32_t>(v >> 32)); }
  ByteWriter& Bytes(std::string_view b) {
    out_.append(b);
    return *this;
  }
  ByteWriter& Chunk(std::string_view b) { return U16(static_cast<uint16_t>(b.size())).Bytes(b.substr(0, 0xffff)); }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// Walks `data` as back-to-back records (serialization/framing.h) starting at
// `offset`, and for each one whose length field is usable sets the format
// field and recomputes the checksum. Stops at the first unusable length.
inline void RepairRecords(std::string* data, size_t offset) {
  using serialization::kRecordHeaderBytes;
  while (offset + kRecordHeaderBytes <= data->size()) {
    char* h = data->data() + offset;
    uint32_t length = GetU32(h);
    if (length == 0 || length % 8 != 0 || length > data->size() - offset - kRecordHeaderBytes) return;
    PutU32(h + 4, serialization::kRecordFormat);
    // The checksum covers the first 8 header bytes followed by the body.
    std::string covered(h, 8);
    covered.append(h + kRecordHeaderBytes, length);
    PutU64(h + 8, serialization::Checksum(covered));
    offset += kRecordHeaderBytes + length;
  }
}

// Sets the u64 at `at` to the XXH3 of bytes [0, at) if the data is long enough.
inline void RepairTrailingChecksum(std::string* data, size_t at) {
  if (data->size() < at + 8) return;
  PutU64(data->data() + at, serialization::Checksum(std::string_view(data->data(), at)));
}

}  // namespace caracal::fuzz

#endif  // CARACAL_TESTS_FUZZ_FUZZ_UTIL_H_

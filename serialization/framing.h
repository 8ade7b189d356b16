#ifndef CARACAL_SERIALIZATION_FRAMING_H_
#define CARACAL_SERIALIZATION_FRAMING_H_

// Byte framing for Cap'n Proto messages on disk and on the wire.
//
// A *record* (disk) is
//
//   offset 0   u32 LE  body length in bytes (a multiple of 8, > 0)
//   offset 4   u32 LE  record format (kRecordFormat)
//   offset 8   u64 LE  XXH3-64 of bytes [0, 8) followed by the body
//   offset 16  body: one Cap'n Proto message, flat-array encoding
//
// so a record is 16 + length bytes and every body starts 8-byte aligned when the
// record does. A torn write shows up as a short record or a checksum mismatch;
// a length larger than kMaxRecordBytes is treated as corruption, never
// allocated.
//
// A *frame* (wire, over TCP) is
//
//   offset 0   u32 LE  body length in bytes (a multiple of 8, > 0)
//   offset 4   u32 LE  kFrameMagic
//   offset 8   body: one Cap'n Proto message (a caracal::wire::Frame)
//
// TCP already checksums; the magic catches a peer that is not speaking Caracal.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "framework/common/bytes.h"
#include "kj/exception.h"

namespace caracal::serialization {

inline constexpr uint32_t kRecordFormat = 1;
inline constexpr size_t kRecordHeaderBytes = 16;
inline constexpr size_t kMaxRecordBytes = 64u << 20;

inline constexpr uint32_t kFrameMagic = 0x4c435243;  // "CRCL"
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr size_t kMaxFrameBytes = 64u << 20;

// XXH3-64 of `data`.
uint64_t Checksum(std::string_view data);

// Appends `message` as one record to `out`.
void AppendRecord(capnp::MessageBuilder& message, std::string* out);

// Outcome of looking at the bytes that should start with a record.
struct RecordView {
  enum class Kind {
    kOk,         // `body` holds a checked body; the record is `size` bytes long
    kIncomplete, // fewer bytes than the header announces (a torn tail)
    kCorrupt,    // bad length, unknown format or checksum mismatch
  };
  Kind kind = Kind::kCorrupt;
  std::string_view body;
  size_t size = 0;
  std::string reason;  // for kCorrupt / kIncomplete: what was wrong
};
RecordView ReadRecord(std::string_view data);

// Appends `message` as one wire frame to `out`.
void AppendFrame(capnp::MessageBuilder& message, std::string* out);

// Bytes of a message as a flat array (no framing).
std::string MessageBytes(capnp::MessageBuilder& message);
// The same, appended to `out`; returns how many bytes.
size_t AppendMessage(capnp::MessageBuilder& message, std::string* out);
// The flat array's size in bytes, and the flat array written into exactly
// that many bytes at `dest` (no allocation).
size_t FlatSize(capnp::MessageBuilder& message);
void WriteFlat(capnp::MessageBuilder& message, char* dest, size_t size);

// A Cap'n Proto reader over bytes that came from outside (disk or network):
// bounded traversal, and a word-aligned private copy when `bytes` is not
// aligned. Reading fields may still throw kj::Exception on hostile input;
// decoders wrap their field access in DecodeGuard (codec.h).
//
// Lives on the stack: parsing aligned bytes allocates nothing. `bytes` must
// outlive the reader (unless they were copied for alignment).
class MessageReader {
 public:
  MessageReader() = default;
  MessageReader(const MessageReader&) = delete;
  MessageReader& operator=(const MessageReader&) = delete;

  absl::Status Parse(std::string_view bytes);
  // After a successful Parse.
  template <typename T>
  typename T::Reader Root() {
    return reader_->getRoot<T>();
  }

 private:
  kj::Array<capnp::word> copy_;
  std::optional<capnp::FlatArrayMessageReader> reader_;
};

// Parses `bytes` and runs `read` on its root (a Root::Reader). Bad framing
// returns MessageReader's error; anything Cap'n Proto throws while `read`
// walks hostile data becomes DataLoss("malformed WHAT: ..."). `read` returns
// a T or an absl::StatusOr<T>.
template <typename Root, typename T, typename Fn>
absl::StatusOr<T> ReadMessage(std::string_view bytes, std::string_view what, Fn&& read) {
  MessageReader reader;
  if (absl::Status s = reader.Parse(bytes); !s.ok()) return s;
  try {
    return read(reader.template Root<Root>());
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed ", std::string(what), ": ", e.getDescription().cStr()));
  }
}

// Splits a byte stream into frames. Feed it what the socket delivered (or,
// without a copy, let the socket read straight into WritableSpace() and
// Commit what it wrote); take whole frame bodies out. A malformed header is a
// sticky error: the connection is to be closed.
//
// Buffering: bytes land in shared chunks (kDefaultChunkBytes, or as big as the
// frame being assembled when that is larger), and Next() hands out each body
// as a Bytes slice of its chunk: no allocation or copy per frame. A chunk
// lives as long as any body cut from it. Every frame starts at an 8-aligned
// offset of its chunk (frames are whole words long and a chunk starts
// aligned), so every body is 8-byte aligned and Cap'n Proto reads it, and the
// Data fields inside it, in place. When a chunk is full, the partial frame at
// its end moves to the front of that chunk if nothing else holds it, else to
// a fresh chunk. A header announcing more than kMaxFrameBytes is rejected
// before anything is allocated for it.
//
// Invariants: begin_ <= end_ <= capacity_; begin_ % 8 == 0; the bytes in
// [begin_, end_) of chunk_ are the unconsumed stream; bodies handed out lie
// in [0, begin_) of some chunk and are never written again.
class FrameSplitter {
 public:
  static constexpr size_t kDefaultChunkBytes = 256u << 10;

  explicit FrameSplitter(size_t chunk_bytes = kDefaultChunkBytes);

  // Copies `bytes` in.
  void Feed(std::string_view bytes);
  // Room for the next read: at least one byte, at the end of the buffered
  // stream. Valid until the next call of a non-const member.
  struct Space {
    char* data;
    size_t size;
  };
  Space WritableSpace();
  // `bytes` (<= WritableSpace().size) were written at WritableSpace().data.
  void Commit(size_t bytes);

  // Next frame body if a whole one is buffered, an empty optional-like status
  // kUnavailable if more bytes are needed, or kDataLoss on a malformed header.
  absl::StatusOr<Bytes> Next();
  size_t buffered() const { return end_ - begin_; }

 private:
  // Checks the header at begin_ (when 8 bytes are buffered): sets error_ if
  // it is malformed. Returns the whole frame's size, or 0 if unknown.
  size_t FrameSize();
  // Moves the unconsumed bytes to the front of a chunk of at least `capacity`
  // bytes: this one if nobody else holds it and it is big enough, else a new one.
  void Relocate(size_t capacity);

  const size_t chunk_bytes_;
  std::shared_ptr<uint64_t[]> chunk_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  absl::Status error_;
};

}  // namespace caracal::serialization

#endif  // CARACAL_SERIALIZATION_FRAMING_H_

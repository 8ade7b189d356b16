#include "serialization/framing.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "framework/common/endian.h"
#include "kj/exception.h"
#define XXH_STATIC_LINKING_ONLY  // for XXH3_state_t on the stack
#include "xxhash.h"

namespace caracal::serialization {
namespace {

uint64_t RecordChecksum(const char* header8, std::string_view body) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header8, 8);
  XXH3_64bits_update(&state, body.data(), body.size());
  return XXH3_64bits_digest(&state);
}

}  // namespace

size_t FlatSize(capnp::MessageBuilder& message) {
  return capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
}

void WriteFlat(capnp::MessageBuilder& message, char* dest, size_t size) {
  // messageToFlatArray allocates; writing into the caller's buffer avoids the copy.
  kj::ArrayOutputStream stream(kj::arrayPtr(reinterpret_cast<kj::byte*>(dest), size));
  capnp::writeMessage(stream, message.getSegmentsForOutput());
}

size_t AppendMessage(capnp::MessageBuilder& message, std::string* out) {
  size_t size = FlatSize(message);
  size_t start = out->size();
  out->resize(start + size);
  WriteFlat(message, out->data() + start, size);
  return size;
}

uint64_t Checksum(std::string_view data) { return XXH3_64bits(data.data(), data.size()); }

void AppendRecord(capnp::MessageBuilder& message, std::string* out) {
  size_t header = out->size();
  out->resize(header + kRecordHeaderBytes);
  size_t body_size = AppendMessage(message, out);
  char* h = out->data() + header;
  PutU32(h, static_cast<uint32_t>(body_size));
  PutU32(h + 4, kRecordFormat);
  std::string_view body(out->data() + header + kRecordHeaderBytes, body_size);
  PutU64(h + 8, RecordChecksum(h, body));
}

RecordView ReadRecord(std::string_view data) {
  RecordView view;
  if (data.size() < kRecordHeaderBytes) {
    view.kind = RecordView::Kind::kIncomplete;
    view.reason = absl::StrCat("record header cut short (", data.size(), " of ", kRecordHeaderBytes, " bytes)");
    return view;
  }
  uint32_t length = GetU32(data.data());
  uint32_t format = GetU32(data.data() + 4);
  if (length == 0 || length % 8 != 0 || length > kMaxRecordBytes) {
    view.reason = absl::StrCat("bad record length ", length);
    return view;
  }
  if (format != kRecordFormat) {
    view.reason = absl::StrCat("unknown record format ", format);
    return view;
  }
  if (data.size() - kRecordHeaderBytes < length) {
    view.kind = RecordView::Kind::kIncomplete;
    view.reason = absl::StrCat("record body cut short (", data.size() - kRecordHeaderBytes, " of ", length, " bytes)");
    return view;
  }
  std::string_view body = data.substr(kRecordHeaderBytes, length);
  if (RecordChecksum(data.data(), body) != GetU64(data.data() + 8)) {
    view.reason = "bad checksum";
    return view;
  }
  view.kind = RecordView::Kind::kOk;
  view.body = body;
  view.size = kRecordHeaderBytes + length;
  return view;
}

void AppendFrame(capnp::MessageBuilder& message, std::string* out) {
  size_t header = out->size();
  out->resize(header + kFrameHeaderBytes);
  size_t body_size = AppendMessage(message, out);
  PutU32(out->data() + header, static_cast<uint32_t>(body_size));
  PutU32(out->data() + header + 4, kFrameMagic);
}

std::string MessageBytes(capnp::MessageBuilder& message) {
  std::string out;
  AppendMessage(message, &out);
  return out;
}

absl::Status MessageReader::Parse(std::string_view bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return absl::DataLossError(absl::StrCat("message of ", bytes.size(), " bytes is not whole 8-byte words"));
  }
  kj::ArrayPtr<const capnp::word> words;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    words = kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(bytes.data()),
                                            bytes.size() / sizeof(capnp::word));
  } else {
    copy_ = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(copy_.begin(), bytes.data(), bytes.size());
    words = kj::ArrayPtr<const capnp::word>(copy_.begin(), copy_.size());
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = bytes.size() / sizeof(capnp::word) * 4 + 1024;
  options.nestingLimit = 16;
  try {
    reader_.emplace(words, options);
  } catch (const kj::Exception& e) {
    reader_.reset();
    return absl::DataLossError(absl::StrCat("malformed Cap'n Proto message: ", e.getDescription().cStr()));
  }
  return absl::OkStatus();
}

namespace {

// Below this much room at a chunk's end, a read whose frame size is not known
// yet starts a new chunk rather than reading a sliver.
constexpr size_t kMinReadBytes = 4096;

// "Need more bytes", made once: copying a Status with a message only counts a
// reference, so reporting it costs no allocation.
const absl::Status& NeedMoreBytes() {
  static const absl::Status* const status = new absl::Status(absl::UnavailableError("need more bytes"));
  return *status;
}

size_t RoundUp8(size_t n) { return (n + 7) & ~size_t{7}; }

// True if `chunk` is referenced by nobody else: no body cut from it is alive
// (on any thread), so its bytes may be written again. The fence orders our
// coming writes after the other threads' reads that ended with their release.
bool Unshared(const std::shared_ptr<uint64_t[]>& chunk) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences: it would see the reuse as a race.
  // Under it, a chunk is never reused (a fresh one each time).
  (void)chunk;
  return false;
#else
  if (chunk.use_count() != 1) return false;
  std::atomic_thread_fence(std::memory_order_acquire);
  return true;
#endif
}

}  // namespace

FrameSplitter::FrameSplitter(size_t chunk_bytes)
    : chunk_bytes_(std::max<size_t>(RoundUp8(chunk_bytes), 2 * kFrameHeaderBytes)) {}

void FrameSplitter::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    Space space = WritableSpace();
    size_t n = std::min(space.size, bytes.size());
    std::memcpy(space.data, bytes.data(), n);
    Commit(n);
    bytes.remove_prefix(n);
  }
}

size_t FrameSplitter::FrameSize() {
  if (!error_.ok() || buffered() < kFrameHeaderBytes) return 0;
  const char* h = reinterpret_cast<const char*>(chunk_.get()) + begin_;
  uint32_t length = GetU32(h);
  uint32_t magic = GetU32(h + 4);
  if (magic != kFrameMagic) {
    error_ = absl::DataLossError(absl::StrCat("bad frame magic 0x", absl::Hex(magic), ": peer is not speaking Caracal"));
    return 0;
  }
  if (length == 0 || length % 8 != 0 || length > kMaxFrameBytes) {
    error_ = absl::DataLossError(absl::StrCat("bad frame length ", length));
    return 0;
  }
  return kFrameHeaderBytes + length;
}

void FrameSplitter::Relocate(size_t capacity) {
  capacity = RoundUp8(capacity);
  const size_t n = buffered();
  char* base = reinterpret_cast<char*>(chunk_.get());
  // Reuse this chunk only if no body cut from it is still alive, it is big
  // enough, and it is not a big frame's chunk that would stay pinned.
  const bool reuse = chunk_ != nullptr && capacity_ >= capacity && Unshared(chunk_) &&
                     (capacity_ <= chunk_bytes_ || capacity > chunk_bytes_);
  if (reuse) {
    if (n > 0 && begin_ > 0) std::memmove(base, base + begin_, n);
  } else {
    auto fresh = std::make_shared_for_overwrite<uint64_t[]>(capacity / 8);
    if (n > 0) std::memcpy(fresh.get(), base + begin_, n);
    chunk_ = std::move(fresh);
    capacity_ = capacity;
  }
  begin_ = 0;
  end_ = n;
}

FrameSplitter::Space FrameSplitter::WritableSpace() {
  size_t frame = FrameSize();
  if (!error_.ok()) end_ = begin_;  // the stream is dead: keep no more of it
  if (chunk_ != nullptr && begin_ == end_ && capacity_ <= chunk_bytes_ && Unshared(chunk_)) {
    begin_ = end_ = 0;  // empty and ours alone: start over at the front
  }
  const size_t room = capacity_ - end_;
  const size_t min_read = std::min(kMinReadBytes, chunk_bytes_ / 2);
  // A new place when there is none, no room at all, or too little room to be
  // worth a read while the frame being assembled (or its size is unknown yet)
  // does not fit where it starts.
  const bool fits = frame > 0 && capacity_ - begin_ >= frame;
  if (chunk_ == nullptr || room == 0 || (!fits && room < min_read)) {
    // Whole frames left buffered (a caller feeding without taking them out)
    // get twice the room, so that feeding on does not copy them again and again.
    const size_t grow = frame > 0 && buffered() >= frame ? 2 * buffered() : 0;
    // A frame bigger than a chunk gets room as its bytes arrive (doubling),
    // not all it announces as soon as its header does: a bare header must not
    // cost 64 MiB.
    const size_t for_frame = frame > chunk_bytes_ ? std::min(frame, std::max(2 * buffered(), chunk_bytes_)) : frame;
    Relocate(std::max({chunk_bytes_, for_frame, buffered() + min_read, grow}));
  }
  assert(capacity_ > end_);
  return Space{reinterpret_cast<char*>(chunk_.get()) + end_, capacity_ - end_};
}

void FrameSplitter::Commit(size_t bytes) {
  assert(bytes <= capacity_ - end_);
  end_ += bytes;
}

absl::StatusOr<Bytes> FrameSplitter::Next() {
  size_t frame = FrameSize();
  if (!error_.ok()) return error_;
  if (frame == 0 || buffered() < frame) return NeedMoreBytes();
  const char* body = reinterpret_cast<const char*>(chunk_.get()) + begin_ + kFrameHeaderBytes;
  Bytes out(chunk_, std::string_view(body, frame - kFrameHeaderBytes));
  begin_ += frame;
  return out;
}

}  // namespace caracal::serialization

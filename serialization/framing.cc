#include "serialization/framing.h"

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

// Appends the flat-array encoding of `message` to `out`, returns its size.
size_t AppendMessage(capnp::MessageBuilder& message, std::string* out) {
  auto segments = message.getSegmentsForOutput();
  size_t words = capnp::computeSerializedSizeInWords(message);
  size_t start = out->size();
  out->resize(start + words * sizeof(capnp::word));
  kj::ArrayPtr<capnp::word> dest(reinterpret_cast<capnp::word*>(out->data() + start), words);
  // messageToFlatArray allocates; writing into our buffer avoids the copy.
  kj::ArrayOutputStream stream(dest.asBytes());
  capnp::writeMessage(stream, segments);
  return words * sizeof(capnp::word);
}

}  // namespace

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

absl::StatusOr<std::string> FrameSplitter::Next() {
  if (!error_.ok()) return error_;
  if (buffered() < kFrameHeaderBytes) return absl::UnavailableError("need more bytes");
  const char* h = buffer_.data() + consumed_;
  uint32_t length = GetU32(h);
  uint32_t magic = GetU32(h + 4);
  if (magic != kFrameMagic) {
    error_ = absl::DataLossError(absl::StrCat("bad frame magic 0x", absl::Hex(magic), ": peer is not speaking Caracal"));
    return error_;
  }
  if (length == 0 || length % 8 != 0 || length > kMaxFrameBytes) {
    error_ = absl::DataLossError(absl::StrCat("bad frame length ", length));
    return error_;
  }
  if (buffered() < kFrameHeaderBytes + length) return absl::UnavailableError("need more bytes");
  std::string body(h + kFrameHeaderBytes, length);
  consumed_ += kFrameHeaderBytes + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > (1u << 20) && consumed_ > buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return body;
}

}  // namespace caracal::serialization

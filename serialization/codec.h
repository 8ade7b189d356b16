#ifndef CARACAL_SERIALIZATION_CODEC_H_
#define CARACAL_SERIALIZATION_CODEC_H_

// Conversions between Caracal's plain values and their Cap'n Proto encodings.
// Every decoder takes bytes from outside (disk, network) and returns a
// Status naming what was wrong; none throws or crashes on any input.

#include <string>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"
#include "framework/common/types.h"
#include "framework/raft/message.h"
#include "serialization/caracal.capnp.h"
#include "serialization/client_protocol.h"

namespace caracal::serialization {

// ---- log records (disk) ----
using LogRecordValue = std::variant<Entry, HoleRun>;
void AppendEntryRecord(const Entry& entry, std::string* out);
void AppendHoleRecord(const HoleRun& holes, std::string* out);
absl::StatusOr<LogRecordValue> DecodeLogRecordBody(std::string_view body);

// ---- hard state (metadata file) ----
std::string EncodeHardState(const HardState& state);
absl::StatusOr<HardState> DecodeHardState(std::string_view bytes);

// ---- entry payloads ----
struct CommandEntryValue {
  uint64_t session = 0;
  uint64_t sequence = 0;
  std::string operation;  // Operation message bytes (framework/include/caracal/codec.h)
  // The client had received every response up to this sequence when it sent
  // the command: the servers drop those cached responses as they apply it
  // (as with a keep-alive), so the cache stays small under steady load.
  uint64_t acked_sequence = 0;
};
std::string EncodeCommandEntry(uint64_t session, uint64_t sequence, std::string_view operation,
                               uint64_t acked_sequence = 0);
// The same, carved out of `arena` (8-byte aligned): no allocation of its own.
Bytes EncodeCommandEntry(BytesArena& arena, uint64_t session, uint64_t sequence, std::string_view operation,
                         uint64_t acked_sequence);
absl::StatusOr<CommandEntryValue> DecodeCommandEntry(std::string_view payload);

// A command entry read in place: `operation` points into the payload (or into
// the reader's aligned copy of it) and is valid while both live.
struct CommandEntryView {
  uint64_t session = 0;
  uint64_t sequence = 0;
  std::string_view operation;
  uint64_t acked_sequence = 0;
};
class MessageReader;
absl::StatusOr<CommandEntryView> ReadCommandEntry(std::string_view payload, MessageReader* reader);

// ---- wire frames ----
// Builders fill a wire::Frame; the body is then framed with AppendFrame.
void AppendRaftFrame(const raft::Message& message, std::string* out);

struct HelloValue {
  NodeId node_id = 0;
  std::string cluster_id;
};
void AppendHelloFrame(const HelloValue& hello, std::string* out);

// A decoded frame body. Client messages: serialization/client_protocol.h.
using FrameValue =
    std::variant<HelloValue, raft::Message, ClientRequestValue, ClientResponseValue, PublishEventsValue>;
// Copies every payload, operation and result out of `body`.
absl::StatusOr<FrameValue> DecodeFrame(std::string_view body);
// Zero-copy: entry payloads, command operations and results come out as
// slices of `body` (which stay valid however long they are kept). An 8-byte
// aligned body (as FrameSplitter hands out) is read in place, so the slices
// are aligned where their Cap'n Proto data is word-aligned; an unaligned one
// is read from a copy and its fields are copied too.
absl::StatusOr<FrameValue> DecodeFrame(const Bytes& body);

// Fills/reads Cap'n Proto builders directly (for callers composing bigger messages).
void ToWire(const Entry& entry, wire::Entry::Builder out);
// `source`: as for the client messages' FromWire (client_protocol.h).
absl::StatusOr<Entry> FromWire(wire::Entry::Reader in, const Bytes* source = nullptr);

}  // namespace caracal::serialization

#endif  // CARACAL_SERIALIZATION_CODEC_H_

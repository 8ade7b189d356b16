#ifndef CARACAL_SERIALIZATION_CLIENT_PROTOCOL_H_
#define CARACAL_SERIALIZATION_CLIENT_PROTOCOL_H_

// The client protocol's messages as plain values, and their wire encodings.
//
// A client opens one TCP connection to one server and says Hello with node id
// 0 (serialization/codec.h, AppendHelloFrame). It then sends ClientRequests
// and receives ClientResponses, matched by request_id (possibly out of order),
// plus PublishEvents the server pushes unasked. Each message is one frame
// (serialization/framing.h); DecodeFrame (codec.h) returns these values.
// What the fields mean for sessions, sequencing and events: DESIGN.md
// sections 4, 6 and 11; the schema is wire::ClientRequest, wire::ClientResponse
// and wire::PublishEvents in serialization/caracal.capnp.
//
// Decoding is strict about what this build cannot represent: an unknown
// request or response kind, an unknown status code, consistency level or
// member type is an error naming it (a newer peer speaking a kind we do not
// know must not be misread as some other kind).

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "framework/common/types.h"
#include "serialization/caracal.capnp.h"

namespace caracal::serialization {

// Mirrors wire::Consistency; values must match.
enum class Consistency : uint8_t {
  kLinearizable = 0,
  kLinearizableLease = 1,
  kSequential = 2,
};

// Mirrors wire::MemberType; values must match.
enum class MemberType : uint8_t {
  kActive = 0,
  kPassive = 1,
  kReserve = 2,
  kInactive = 3,
};

struct MemberValue {
  NodeId id = 0;
  std::string address;  // host:port of its Raft/client endpoint
  MemberType type = MemberType::kActive;
  friend bool operator==(const MemberValue&, const MemberValue&) = default;
};

// ---- requests (client -> server) ----

struct ConnectRequest {
  std::string client_id;
  friend bool operator==(const ConnectRequest&, const ConnectRequest&) = default;
};

struct RegisterRequest {
  std::string client_id;
  uint64_t timeout_ms = 0;
  friend bool operator==(const RegisterRequest&, const RegisterRequest&) = default;
};

struct KeepAliveRequest {
  uint64_t session = 0;
  uint64_t command_sequence = 0;  // highest sequence whose response the client received
  Index event_index = 0;          // highest event batch index the client received
  friend bool operator==(const KeepAliveRequest&, const KeepAliveRequest&) = default;
};

struct UnregisterRequest {
  uint64_t session = 0;
  friend bool operator==(const UnregisterRequest&, const UnregisterRequest&) = default;
};

struct CommandRequest {
  uint64_t session = 0;
  uint64_t sequence = 0;
  // Operation message bytes (framework/include/caracal/codec.h). Decoded from
  // a frame held as Bytes, a slice of that frame (no copy).
  Bytes operation;
  uint64_t acked_sequence = 0;  // every response up to here was received (lets the servers drop them)
  friend bool operator==(const CommandRequest&, const CommandRequest&) = default;
};

struct QueryRequest {
  uint64_t session = 0;
  uint64_t sequence = 0;  // the last command sequence the client submitted
  Index index = 0;        // the highest index the client has seen
  Consistency consistency = Consistency::kLinearizable;
  std::string operation;
  friend bool operator==(const QueryRequest&, const QueryRequest&) = default;
};

struct ResetEventsRequest {
  uint64_t session = 0;
  Index from_index = 0;  // resend every batch after this index
  friend bool operator==(const ResetEventsRequest&, const ResetEventsRequest&) = default;
};

using ClientRequestBody = std::variant<ConnectRequest, RegisterRequest, KeepAliveRequest, UnregisterRequest,
                                       CommandRequest, QueryRequest, ResetEventsRequest>;

struct ClientRequestValue {
  uint64_t request_id = 0;
  ClientRequestBody body;
  friend bool operator==(const ClientRequestValue&, const ClientRequestValue&) = default;
};

// "connect", "register", ... for logs.
const char* ClientRequestKindName(const ClientRequestValue& request);

// ---- responses (server -> client) ----

struct RegisterResult {
  uint64_t session = 0;
  uint64_t timeout_ms = 0;
  friend bool operator==(const RegisterResult&, const RegisterResult&) = default;
};

// wire::OperationResult answering a command. (Commands and queries share the
// wire struct; distinct C++ types keep which one it answers.)
struct CommandResult {
  Index index = 0;        // the command's index
  Index event_index = 0;  // the session's last event batch index at or before `index`
  Bytes result;           // the encoded result (codec::EncodeResult)
  friend bool operator==(const CommandResult&, const CommandResult&) = default;
};

// wire::OperationResult answering a query.
struct QueryResult {
  Index index = 0;  // the index the query read at
  Index event_index = 0;
  Bytes result;  // the encoded result (codec::EncodeResult)
  friend bool operator==(const QueryResult&, const QueryResult&) = default;
};

// monostate: wire `none` (connect, keepAlive, unregister, resetEvents, errors).
using ClientResponseBody = std::variant<std::monostate, RegisterResult, CommandResult, QueryResult>;

struct ClientResponseValue {
  uint64_t request_id = 0;
  // Code and message travel; absl::Status payloads do not.
  absl::Status status;
  NodeId leader = 0;  // the server's view of the leader (0: unknown)
  std::vector<MemberValue> members;
  ClientResponseBody body;
  friend bool operator==(const ClientResponseValue&, const ClientResponseValue&) = default;
};

// ---- pushed events (server -> client, unasked) ----

struct EventValue {
  std::string name;
  std::string payload;  // a codec Value message
  friend bool operator==(const EventValue&, const EventValue&) = default;
};

// The events published to a session at one index. Decoding requires
// previous_index < event_index (the batches of a session are ordered).
struct PublishEventsValue {
  uint64_t session = 0;
  Index event_index = 0;
  Index previous_index = 0;  // 0 if none; a gap means a resend is due
  std::vector<EventValue> events;
  friend bool operator==(const PublishEventsValue&, const PublishEventsValue&) = default;
};

// ---- frames ----
// Each appends one whole wire frame (header included) to `out`. A message
// whose encoding exceeds kMaxFrameBytes still encodes; senders check the size.
void AppendClientRequestFrame(const ClientRequestValue& request, std::string* out);
void AppendClientResponseFrame(const ClientResponseValue& response, std::string* out);
void AppendPublishEventsFrame(const PublishEventsValue& events, std::string* out);

// Readers for DecodeFrame (codec.h) and for callers composing bigger
// messages. They may throw kj::Exception on hostile bytes: call them inside
// a guard that turns it into a Status, as DecodeFrame does.
//
// `source`, if given, is the message `in` was read from, held as Bytes (a
// frame body): Data fields lying inside it (command operations, results)
// come out as slices of it instead of copies.
absl::StatusOr<ClientRequestValue> FromWire(wire::ClientRequest::Reader in, const Bytes* source = nullptr);
absl::StatusOr<ClientResponseValue> FromWire(wire::ClientResponse::Reader in, const Bytes* source = nullptr);
absl::StatusOr<PublishEventsValue> FromWire(wire::PublishEvents::Reader in);
// `data` as Bytes: a slice of `source` when it lies inside it, else a copy.
Bytes BytesFromData(capnp::Data::Reader data, const Bytes* source);

void ToWire(const ClientRequestValue& request, wire::ClientRequest::Builder out);
void ToWire(const ClientResponseValue& response, wire::ClientResponse::Builder out);
void ToWire(const PublishEventsValue& events, wire::PublishEvents::Builder out);

}  // namespace caracal::serialization

#endif  // CARACAL_SERIALIZATION_CLIENT_PROTOCOL_H_

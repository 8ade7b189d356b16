#include "serialization/client_protocol.h"

#include <type_traits>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "serialization/framing.h"
#include "serialization/scratch_message.h"

namespace caracal::serialization {
namespace {

// The largest absl::StatusCode (kUnauthenticated); codes 0..16 are all defined.
constexpr uint16_t kMaxStatusCode = 16;
constexpr uint16_t kMaxConsistency = 2;
constexpr uint16_t kMaxMemberType = 3;

kj::ArrayPtr<const kj::byte> AsData(const std::string& s) {
  return kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

capnp::Text::Reader AsText(const std::string& s) { return capnp::Text::Reader(s.data(), s.size()); }

std::string FromData(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

kj::ArrayPtr<const kj::byte> AsData(const Bytes& b) {
  return kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(b.data()), b.size());
}

std::string FromText(capnp::Text::Reader text) { return std::string(text.begin(), text.size()); }

template <typename Fill>
void AppendClientFrame(size_t payload_bytes, Fill fill, std::string* out) {
  ScratchMessage scratch(payload_bytes);
  capnp::MessageBuilder& message = scratch.message();
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(wire::FORMAT_VERSION);
  fill(frame);
  AppendFrame(message, out);
}

template <typename Result>
void OperationResultToWire(const Result& r, wire::OperationResult::Builder out) {
  out.setIndex(r.index);
  out.setEventIndex(r.event_index);
  out.setResult(AsData(r.result));
}

template <typename Result>
Result OperationResultFromWire(wire::OperationResult::Reader in, const Bytes* source) {
  return Result{in.getIndex(), in.getEventIndex(), BytesFromData(in.getResult(), source)};
}

absl::StatusOr<MemberValue> MemberFromWire(wire::Member::Reader in) {
  uint16_t type = static_cast<uint16_t>(in.getType());
  if (type > kMaxMemberType) {
    return absl::DataLossError(absl::StrCat("member ", in.getId(), " has unknown member type ", type));
  }
  return MemberValue{in.getId(), FromText(in.getAddress()), static_cast<MemberType>(type)};
}

// Reads the carried status into `out`; the result says whether it could.
// (Not StatusOr<Status>: there an error and a value are too easy to confuse.)
absl::Status StatusFromWire(wire::ResponseStatus::Reader in, absl::Status* out) {
  uint16_t code = in.getCode();
  if (code > kMaxStatusCode) return absl::DataLossError(absl::StrCat("unknown status code ", code));
  auto message = in.getMessage();
  *out = absl::Status(static_cast<absl::StatusCode>(code), absl::string_view(message.begin(), message.size()));
  return absl::OkStatus();
}

}  // namespace

Bytes BytesFromData(capnp::Data::Reader data, const Bytes* source) {
  std::string_view view(reinterpret_cast<const char*>(data.begin()), data.size());
  if (view.empty()) return Bytes();
  if (source != nullptr) {
    auto begin = reinterpret_cast<uintptr_t>(source->data());
    auto at = reinterpret_cast<uintptr_t>(view.data());
    if (at >= begin && at - begin <= source->size() && view.size() <= source->size() - (at - begin)) {
      return source->SliceOf(view);
    }
  }
  return Bytes(view);
}

const char* ClientRequestKindName(const ClientRequestValue& request) {
  static constexpr const char* kNames[] = {"connect", "register", "keepAlive", "unregister",
                                           "command", "query",    "resetEvents"};
  static_assert(std::size(kNames) == std::variant_size_v<ClientRequestBody>);
  return kNames[request.body.index()];
}

// ---------------------------------------------------------------- requests

void ToWire(const ClientRequestValue& request, wire::ClientRequest::Builder out) {
  out.setRequestId(request.request_id);
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, ConnectRequest>) {
          out.initConnect().setClientId(AsText(b.client_id));
        } else if constexpr (std::is_same_v<T, RegisterRequest>) {
          auto o = out.initRegister();
          o.setClientId(AsText(b.client_id));
          o.setTimeoutMs(b.timeout_ms);
        } else if constexpr (std::is_same_v<T, KeepAliveRequest>) {
          auto o = out.initKeepAlive();
          o.setSession(b.session);
          o.setCommandSequence(b.command_sequence);
          o.setEventIndex(b.event_index);
        } else if constexpr (std::is_same_v<T, UnregisterRequest>) {
          out.initUnregister().setSession(b.session);
        } else if constexpr (std::is_same_v<T, CommandRequest>) {
          auto o = out.initCommand();
          o.setSession(b.session);
          o.setSequence(b.sequence);
          o.setOperation(AsData(b.operation));
          o.setAckedSequence(b.acked_sequence);
        } else if constexpr (std::is_same_v<T, QueryRequest>) {
          auto o = out.initQuery();
          o.setSession(b.session);
          o.setSequence(b.sequence);
          o.setIndex(b.index);
          o.setConsistency(static_cast<wire::Consistency>(b.consistency));
          o.setOperation(AsData(b.operation));
        } else {
          static_assert(std::is_same_v<T, ResetEventsRequest>);
          auto o = out.initResetEvents();
          o.setSession(b.session);
          o.setFromIndex(b.from_index);
        }
      },
      request.body);
}

absl::StatusOr<ClientRequestValue> FromWire(wire::ClientRequest::Reader in, const Bytes* source) {
  ClientRequestValue r;
  r.request_id = in.getRequestId();
  switch (in.which()) {
    case wire::ClientRequest::CONNECT:
      r.body = ConnectRequest{FromText(in.getConnect().getClientId())};
      return r;
    case wire::ClientRequest::REGISTER: {
      auto i = in.getRegister();
      r.body = RegisterRequest{FromText(i.getClientId()), i.getTimeoutMs()};
      return r;
    }
    case wire::ClientRequest::KEEP_ALIVE: {
      auto i = in.getKeepAlive();
      r.body = KeepAliveRequest{i.getSession(), i.getCommandSequence(), i.getEventIndex()};
      return r;
    }
    case wire::ClientRequest::UNREGISTER:
      r.body = UnregisterRequest{in.getUnregister().getSession()};
      return r;
    case wire::ClientRequest::COMMAND: {
      auto i = in.getCommand();
      r.body = CommandRequest{i.getSession(), i.getSequence(), BytesFromData(i.getOperation(), source),
                              i.getAckedSequence()};
      return r;
    }
    case wire::ClientRequest::QUERY: {
      auto i = in.getQuery();
      uint16_t consistency = static_cast<uint16_t>(i.getConsistency());
      if (consistency > kMaxConsistency) {
        return absl::DataLossError(
            absl::StrCat("client request ", r.request_id, ": query with unknown consistency ", consistency));
      }
      r.body = QueryRequest{i.getSession(), i.getSequence(), i.getIndex(), static_cast<Consistency>(consistency),
                            FromData(i.getOperation())};
      return r;
    }
    case wire::ClientRequest::RESET_EVENTS: {
      auto i = in.getResetEvents();
      r.body = ResetEventsRequest{i.getSession(), i.getFromIndex()};
      return r;
    }
  }
  return absl::UnimplementedError(absl::StrCat("client request ", r.request_id, " is of unknown kind ",
                                               static_cast<int>(in.which()), " (sent by a newer client?)"));
}

// ---------------------------------------------------------------- responses

void ToWire(const ClientResponseValue& response, wire::ClientResponse::Builder out) {
  out.setRequestId(response.request_id);
  auto status = out.initStatus();
  status.setCode(static_cast<uint16_t>(response.status.code()));
  auto message = response.status.message();
  status.setMessage(capnp::Text::Reader(message.data(), message.size()));
  out.setLeader(response.leader);
  auto members = out.initMembers(static_cast<unsigned>(response.members.size()));
  for (size_t i = 0; i < response.members.size(); ++i) {
    const MemberValue& m = response.members[i];
    members[i].setId(m.id);
    members[i].setAddress(AsText(m.address));
    members[i].setType(static_cast<wire::MemberType>(m.type));
  }
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out.setNone();
        } else if constexpr (std::is_same_v<T, RegisterResult>) {
          auto o = out.initRegister();
          o.setSession(b.session);
          o.setTimeoutMs(b.timeout_ms);
        } else if constexpr (std::is_same_v<T, CommandResult>) {
          OperationResultToWire(b, out.initCommand());
        } else {
          static_assert(std::is_same_v<T, QueryResult>);
          OperationResultToWire(b, out.initQuery());
        }
      },
      response.body);
}

absl::StatusOr<ClientResponseValue> FromWire(wire::ClientResponse::Reader in, const Bytes* source) {
  ClientResponseValue r;
  r.request_id = in.getRequestId();
  if (auto read = StatusFromWire(in.getStatus(), &r.status); !read.ok()) {
    return absl::DataLossError(absl::StrCat("response to request ", r.request_id, ": ", read.message()));
  }
  r.leader = in.getLeader();
  auto members = in.getMembers();
  r.members.reserve(members.size());
  for (auto m : members) {
    auto member = MemberFromWire(m);
    if (!member.ok()) {
      return absl::DataLossError(absl::StrCat("response to request ", r.request_id, ": ", member.status().message()));
    }
    r.members.push_back(*std::move(member));
  }
  switch (in.which()) {
    case wire::ClientResponse::NONE:
      r.body = std::monostate();
      return r;
    case wire::ClientResponse::REGISTER: {
      auto i = in.getRegister();
      r.body = RegisterResult{i.getSession(), i.getTimeoutMs()};
      return r;
    }
    case wire::ClientResponse::COMMAND:
      r.body = OperationResultFromWire<CommandResult>(in.getCommand(), source);
      return r;
    case wire::ClientResponse::QUERY:
      r.body = OperationResultFromWire<QueryResult>(in.getQuery(), source);
      return r;
  }
  return absl::UnimplementedError(absl::StrCat("response to request ", r.request_id, " is of unknown kind ",
                                               static_cast<int>(in.which()), " (sent by a newer server?)"));
}

// ---------------------------------------------------------------- events

void ToWire(const PublishEventsValue& events, wire::PublishEvents::Builder out) {
  out.setSession(events.session);
  out.setEventIndex(events.event_index);
  out.setPreviousIndex(events.previous_index);
  auto list = out.initEvents(static_cast<unsigned>(events.events.size()));
  for (size_t i = 0; i < events.events.size(); ++i) {
    list[i].setName(AsText(events.events[i].name));
    list[i].setPayload(AsData(events.events[i].payload));
  }
}

absl::StatusOr<PublishEventsValue> FromWire(wire::PublishEvents::Reader in) {
  PublishEventsValue p;
  p.session = in.getSession();
  p.event_index = in.getEventIndex();
  p.previous_index = in.getPreviousIndex();
  if (p.previous_index >= p.event_index) {
    return absl::DataLossError(absl::StrCat("event batch of session ", p.session, " at index ", p.event_index,
                                            " names previous batch ", p.previous_index,
                                            "; the previous index must be lower"));
  }
  auto events = in.getEvents();
  p.events.reserve(events.size());
  for (auto e : events) p.events.push_back(EventValue{FromText(e.getName()), FromData(e.getPayload())});
  return p;
}

// ---------------------------------------------------------------- frames

void AppendClientRequestFrame(const ClientRequestValue& request, std::string* out) {
  size_t payload = std::visit(
      [](const auto& body) -> size_t {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, CommandRequest> || std::is_same_v<T, QueryRequest>) {
          return body.operation.size();
        } else {
          return 64;
        }
      },
      request.body);
  AppendClientFrame(payload, [&](wire::Frame::Builder f) { ToWire(request, f.initClientRequest()); }, out);
}

void AppendClientResponseFrame(const ClientResponseValue& response, std::string* out) {
  size_t payload = response.status.message().size() + response.members.size() * 48;
  if (const auto* c = std::get_if<CommandResult>(&response.body)) payload += c->result.size();
  if (const auto* q = std::get_if<QueryResult>(&response.body)) payload += q->result.size();
  AppendClientFrame(payload, [&](wire::Frame::Builder f) { ToWire(response, f.initClientResponse()); }, out);
}

void AppendPublishEventsFrame(const PublishEventsValue& events, std::string* out) {
  size_t payload = 0;
  for (const EventValue& e : events.events) payload += e.name.size() + e.payload.size() + 32;
  AppendClientFrame(payload, [&](wire::Frame::Builder f) { ToWire(events, f.initPublishEvents()); }, out);
}

}  // namespace caracal::serialization

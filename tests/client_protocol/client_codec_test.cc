// The client protocol codec: every message kind round-trips exactly, what
// this build cannot represent is a clear error, and no input crashes the
// decoder.

#include <random>
#include <string>
#include <vector>

#include "capnp/any.h"
#include "capnp/message.h"
#include "capnp/schema.h"
#include "gtest/gtest.h"
#include "serialization/caracal.capnp.h"
#include "serialization/client_protocol.h"
#include "serialization/codec.h"
#include "serialization/framing.h"

namespace caracal::serialization {
namespace {

// The body of the one whole frame in `frame` (which must hold exactly one).
std::string Body(const std::string& frame) {
  FrameSplitter splitter;
  splitter.Feed(frame);
  auto body = splitter.Next();
  EXPECT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(splitter.buffered(), 0u);
  return body.ok() ? std::string(body->view()) : std::string();
}

template <typename T>
T Decoded(const std::string& frame) {
  auto value = DecodeFrame(Body(frame));
  EXPECT_TRUE(value.ok()) << value.status();
  if (!value.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*value)) << "decoded as alternative " << value->index();
  if (!std::holds_alternative<T>(*value)) return T{};
  return std::get<T>(*std::move(value));
}

ClientRequestValue RoundTrip(const ClientRequestValue& v) {
  std::string frame;
  AppendClientRequestFrame(v, &frame);
  return Decoded<ClientRequestValue>(frame);
}
ClientResponseValue RoundTrip(const ClientResponseValue& v) {
  std::string frame;
  AppendClientResponseFrame(v, &frame);
  return Decoded<ClientResponseValue>(frame);
}
PublishEventsValue RoundTrip(const PublishEventsValue& v) {
  std::string frame;
  AppendPublishEventsFrame(v, &frame);
  return Decoded<PublishEventsValue>(frame);
}

// Bytes 0..255 and some more, so that no byte value is special.
std::string Binary(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i < 256 ? i : rng());
  return out;
}

std::vector<ClientRequestValue> EveryRequestKind() {
  return {
      {1, ConnectRequest{"client-a"}},
      {2, RegisterRequest{"client-b", 30000}},
      {3, KeepAliveRequest{17, 42, 99}},
      {4, UnregisterRequest{17}},
      {5, CommandRequest{17, 43, Bytes(Binary(300, 1)), /*acked_sequence=*/42}},
      {6, QueryRequest{17, 43, 120, Consistency::kLinearizable, Binary(40, 2)}},
      {7, QueryRequest{17, 43, 121, Consistency::kLinearizableLease, "op"}},
      {8, QueryRequest{17, 43, 122, Consistency::kSequential, ""}},
      {UINT64_MAX, ResetEventsRequest{UINT64_MAX, UINT64_MAX - 1}},
      {0, ConnectRequest{""}},
  };
}

std::vector<ClientResponseValue> EveryResponseKind() {
  std::vector<MemberValue> members = {{1, "10.0.0.1:7000", MemberType::kActive},
                                      {2, "[::1]:7001", MemberType::kPassive},
                                      {3, "host-c:7002", MemberType::kReserve},
                                      {4, "", MemberType::kInactive}};
  return {
      {1, absl::OkStatus(), 2, members, std::monostate()},
      {2, absl::OkStatus(), 0, {}, RegisterResult{55, 10000}},
      {3, absl::OkStatus(), 1, members, CommandResult{56, 50, Bytes(Binary(500, 3))}},
      {4, absl::OkStatus(), 1, {}, QueryResult{57, 50, Bytes(std::string("r"))}},
      {5, absl::OkStatus(), 1, {}, CommandResult{}},  // an empty result is not "no result"
      {6, absl::OkStatus(), 1, {}, QueryResult{}},
  };
}

TEST(ClientCodecTest, EveryRequestKindRoundTrips) {
  for (const auto& request : EveryRequestKind()) {
    EXPECT_EQ(RoundTrip(request), request) << ClientRequestKindName(request) << " " << request.request_id;
  }
}

TEST(ClientCodecTest, EveryResponseKindRoundTrips) {
  for (const auto& response : EveryResponseKind()) {
    EXPECT_EQ(RoundTrip(response), response) << "request " << response.request_id;
  }
}

TEST(ClientCodecTest, CommandAndQueryResultsStayDistinct) {
  ClientResponseValue command{1, absl::OkStatus(), 0, {}, CommandResult{5, 4, Bytes(std::string("x"))}};
  ClientResponseValue query{1, absl::OkStatus(), 0, {}, QueryResult{5, 4, Bytes(std::string("x"))}};
  EXPECT_TRUE(std::holds_alternative<CommandResult>(RoundTrip(command).body));
  EXPECT_TRUE(std::holds_alternative<QueryResult>(RoundTrip(query).body));
}

TEST(ClientCodecTest, ErrorsOfEveryCodeRoundTripWithTheirMessages) {
  for (int code = 1; code <= 16; ++code) {
    ClientResponseValue response;
    response.request_id = static_cast<uint64_t>(code);
    response.status = absl::Status(static_cast<absl::StatusCode>(code), absl::StrCat("error ", code, ": ünïcödé"));
    response.leader = 3;
    auto decoded = RoundTrip(response);
    EXPECT_EQ(decoded.status, response.status);
    EXPECT_EQ(decoded, response);
  }
}

TEST(ClientCodecTest, ManyMembersAndBigPayloadsRoundTrip) {
  ClientResponseValue response{9, absl::OkStatus(), 1000, {},
                               CommandResult{uint64_t{1} << 40, 7, Bytes(Binary(8u << 20, 4))}};
  for (NodeId id = 1; id <= 1000; ++id) {
    response.members.push_back(
        {id, absl::StrCat("server-", id, ".example.com:", 7000 + id), static_cast<MemberType>(id % 4)});
  }
  EXPECT_EQ(RoundTrip(response), response);

  ClientRequestValue command{10, CommandRequest{1, 2, Bytes(Binary(8u << 20, 5))}};
  EXPECT_EQ(RoundTrip(command), command);
}

TEST(ClientCodecTest, ManyEventsRoundTrip) {
  PublishEventsValue events{77, 1000, 990, {}};
  for (int i = 0; i < 10000; ++i) events.events.push_back({absl::StrCat("event-", i), Binary(i % 97, i)});
  events.events.push_back({"big", Binary(4u << 20, 6)});
  events.events.push_back({"", ""});
  EXPECT_EQ(RoundTrip(events), events);

  PublishEventsValue first{77, 5, 0, {{"only", "x"}}};  // the first batch of a session
  EXPECT_EQ(RoundTrip(first), first);
}

TEST(ClientCodecTest, FramesOfEveryKindSplitFromOneStreamByteByByte) {
  std::string stream;
  for (const auto& r : EveryRequestKind()) AppendClientRequestFrame(r, &stream);
  for (const auto& r : EveryResponseKind()) AppendClientResponseFrame(r, &stream);
  AppendPublishEventsFrame({1, 2, 1, {{"e", "p"}}}, &stream);
  AppendHelloFrame({0, "cluster"}, &stream);
  FrameSplitter splitter;
  std::vector<size_t> kinds;
  for (char c : stream) {
    splitter.Feed(std::string_view(&c, 1));
    auto body = splitter.Next();
    if (absl::IsUnavailable(body.status())) continue;
    ASSERT_TRUE(body.ok()) << body.status();
    auto frame = DecodeFrame(*body);
    ASSERT_TRUE(frame.ok()) << frame.status();
    kinds.push_back(frame->index());
  }
  std::vector<size_t> expected(EveryRequestKind().size(), 2);
  expected.insert(expected.end(), EveryResponseKind().size(), 3);
  expected.push_back(4);
  expected.push_back(0);
  EXPECT_EQ(kinds, expected);
}

// ---- what this build cannot represent ----

// A frame whose body `fill` built, decoded.
template <typename Fill>
absl::StatusOr<FrameValue> DecodeBuilt(Fill fill) {
  capnp::MallocMessageBuilder message;
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(wire::FORMAT_VERSION);
  fill(frame);
  return DecodeFrame(MessageBytes(message));
}

// Overwrites the union discriminant of `builder` with `which`, as a newer
// schema with more union members would have written it.
template <typename Builder>
void SetDiscriminant(Builder builder, uint16_t which) {
  using T = typename Builder::Builds;
  const uint32_t offset = capnp::Schema::from<T>().getProto().getStruct().getDiscriminantOffset();
  capnp::AnyStruct::Builder any(kj::mv(builder));
  auto data = any.getDataSection();
  ASSERT_GE(data.size(), offset * 2 + 2);
  data[offset * 2] = static_cast<kj::byte>(which);
  data[offset * 2 + 1] = static_cast<kj::byte>(which >> 8);
}

void ExpectError(const absl::StatusOr<FrameValue>& decoded, absl::StatusCode code, const std::string& needle) {
  ASSERT_FALSE(decoded.ok()) << "decoded as alternative " << decoded->index();
  EXPECT_EQ(decoded.status().code(), code) << decoded.status();
  EXPECT_NE(decoded.status().message().find(needle), absl::string_view::npos) << decoded.status();
}

TEST(ClientCodecTest, UnknownRequestKindIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    auto r = f.initClientRequest();
    r.setRequestId(12);
    SetDiscriminant(r, 40);
  });
  ExpectError(decoded, absl::StatusCode::kUnimplemented, "client request 12 is of unknown kind 40");
}

TEST(ClientCodecTest, UnknownResponseKindIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    auto r = f.initClientResponse();
    r.setRequestId(13);
    SetDiscriminant(r, 41);
  });
  ExpectError(decoded, absl::StatusCode::kUnimplemented, "response to request 13 is of unknown kind 41");
}

TEST(ClientCodecTest, UnknownFrameKindIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    f.initHello();
    SetDiscriminant(f, 42);
  });
  ExpectError(decoded, absl::StatusCode::kUnimplemented, "unsupported frame kind 42");
}

TEST(ClientCodecTest, UnknownStatusCodeIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    auto r = f.initClientResponse();
    r.setRequestId(14);
    r.initStatus().setCode(17);
  });
  ExpectError(decoded, absl::StatusCode::kDataLoss, "response to request 14: unknown status code 17");
}

TEST(ClientCodecTest, UnknownConsistencyIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    auto r = f.initClientRequest();
    r.setRequestId(15);
    r.initQuery().setConsistency(static_cast<wire::Consistency>(9));
  });
  ExpectError(decoded, absl::StatusCode::kDataLoss, "unknown consistency 9");
}

TEST(ClientCodecTest, UnknownMemberTypeIsAClearError) {
  auto decoded = DecodeBuilt([](wire::Frame::Builder f) {
    auto r = f.initClientResponse();
    auto m = r.initMembers(2);
    m[0].setId(1);
    m[1].setId(8);
    m[1].setType(static_cast<wire::MemberType>(11));
  });
  ExpectError(decoded, absl::StatusCode::kDataLoss, "member 8 has unknown member type 11");
}

TEST(ClientCodecTest, EventBatchWhosePreviousIndexIsNotLowerIsRejected) {
  for (auto [index, previous] : {std::pair<Index, Index>{5, 5}, {5, 6}, {0, 0}}) {
    auto decoded = DecodeBuilt([&](wire::Frame::Builder f) {
      auto p = f.initPublishEvents();
      p.setSession(3);
      p.setEventIndex(index);
      p.setPreviousIndex(previous);
    });
    ExpectError(decoded, absl::StatusCode::kDataLoss, "the previous index must be lower");
  }
}

// ---- hostile bytes ----

std::vector<std::string> ValidBodies() {
  std::vector<std::string> bodies;
  for (const auto& r : EveryRequestKind()) {
    std::string frame;
    AppendClientRequestFrame(r, &frame);
    bodies.push_back(Body(frame));
  }
  for (const auto& r : EveryResponseKind()) {
    std::string frame;
    AppendClientResponseFrame(r, &frame);
    bodies.push_back(Body(frame));
  }
  std::string frame;
  AppendPublishEventsFrame({1, 9, 3, {{"a", "b"}, {"c", Binary(100, 7)}}}, &frame);
  bodies.push_back(Body(frame));
  return bodies;
}

// A decoded value that is re-encoded and decoded again does not change:
// whatever the decoder accepts is something the encoder can represent.
void ExpectStable(const FrameValue& value) {
  std::string frame;
  if (auto* r = std::get_if<ClientRequestValue>(&value)) {
    AppendClientRequestFrame(*r, &frame);
    EXPECT_EQ(Decoded<ClientRequestValue>(frame), *r);
  } else if (auto* r = std::get_if<ClientResponseValue>(&value)) {
    AppendClientResponseFrame(*r, &frame);
    EXPECT_EQ(Decoded<ClientResponseValue>(frame), *r);
  } else if (auto* p = std::get_if<PublishEventsValue>(&value)) {
    AppendPublishEventsFrame(*p, &frame);
    EXPECT_EQ(Decoded<PublishEventsValue>(frame), *p);
  }
}

TEST(ClientCodecTest, MutatedMessagesNeverCrashTheDecoder) {
  std::mt19937_64 rng(7);
  size_t accepted = 0;
  size_t rejected = 0;
  for (const auto& body : ValidBodies()) {
    for (int i = 0; i < 400; ++i) {
      std::string mutated = body;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) mutated[rng() % mutated.size()] = static_cast<char>(rng());
      if (rng() % 5 == 0) mutated.resize((rng() % (mutated.size() / 8) + 1) * 8);  // truncated, whole words
      auto decoded = DecodeFrame(mutated);
      if (decoded.ok()) {
        ++accepted;
        ExpectStable(*decoded);
      } else {
        ++rejected;
        EXPECT_FALSE(decoded.status().message().empty());
      }
    }
  }
  // Both outcomes happen, so the mutations reach past the first check.
  EXPECT_GT(accepted, 0u);
  EXPECT_GT(rejected, 0u);
}

TEST(ClientCodecTest, RandomBytesNeverCrashTheDecoder) {
  std::mt19937_64 rng(8);
  for (int i = 0; i < 3000; ++i) {
    std::string junk((rng() % 40 + 1) * 8, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    // A plausible root pointer and Frame kind now and then, to get past the first checks.
    if (i % 2 == 0 && junk.size() >= 24) {
      junk[0] = junk[1] = junk[2] = junk[3] = 0;  // one segment
      const uint32_t words = static_cast<uint32_t>(junk.size() / 8 - 1);
      for (int b = 0; b < 4; ++b) junk[4 + b] = static_cast<char>(words >> (8 * b));
      junk[8] = 0;  // struct pointer, offset 0
      junk[18] = static_cast<char>(3 + rng() % 3);  // clientRequest / clientResponse / publishEvents
      junk[19] = 0;
    }
    (void)DecodeFrame(junk);
  }
  SUCCEED();  // reaching here without a crash or sanitizer report is the assertion
}

}  // namespace
}  // namespace caracal::serialization

#include "serialization/codec.h"

#include "gtest/gtest.h"
#include "serialization/framing.h"

namespace caracal::serialization {
namespace {

raft::Message RoundTrip(const raft::Message& m) {
  std::string frame;
  AppendRaftFrame(m, &frame);
  FrameSplitter splitter;
  splitter.Feed(frame);
  auto body = splitter.Next();
  EXPECT_TRUE(body.ok()) << body.status();
  auto value = DecodeFrame(*body);
  EXPECT_TRUE(value.ok()) << value.status();
  return std::get<raft::Message>(*value);
}

TEST(CodecTest, EveryRaftMessageKindRoundTrips) {
  raft::AppendEntries append;
  append.term = 7;
  append.prev_log_index = 10;
  append.prev_log_term = 6;
  append.entries = {Entry{11, 7, 1000, EntryType::kCommand, Bytes(std::string("a"))},
                    Entry{15, 7, 1001, EntryType::kKeepAlive, Bytes()}};
  append.holes = {HoleRun{12, 14, 7}};
  append.commit_index = 9;
  append.round = 33;
  std::vector<raft::Message> messages = {
      {1, 2, raft::RequestVote{5, 9, 4, true, false}},
      {2, 1, raft::RequestVoteResponse{5, true, true}},
      {1, 3, append},
      {3, 1, raft::AppendEntriesResponse{7, false, 0, 8, 5, 33, 20, 12}},
      {1, 2, raft::TimeoutNow{9}},
  };
  for (const auto& m : messages) EXPECT_EQ(RoundTrip(m), m) << raft::MessageKindName(m);
}

TEST(CodecTest, HardStateRoundTrips) {
  auto decoded = DecodeHardState(EncodeHardState(HardState{42, 3}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, (HardState{42, 3}));
}

TEST(CodecTest, UnknownEntryTypeIsAClearError) {
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<wire::LogRecord>().initEntry();
  e.setIndex(1);
  e.setTerm(1);
  e.setType(static_cast<wire::EntryType>(200));
  auto decoded = DecodeLogRecordBody(MessageBytes(message));
  EXPECT_TRUE(absl::IsDataLoss(decoded.status()));
  EXPECT_NE(decoded.status().message().find("unknown entry type 200"), std::string::npos) << decoded.status();
}

TEST(CodecTest, FutureFrameVersionIsRejected) {
  capnp::MallocMessageBuilder message;
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(99);
  frame.initHello().setNodeId(1);
  auto decoded = DecodeFrame(MessageBytes(message));
  EXPECT_TRUE(absl::IsFailedPrecondition(decoded.status())) << decoded.status();
}

}  // namespace
}  // namespace caracal::serialization

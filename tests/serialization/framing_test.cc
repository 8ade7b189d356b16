#include "serialization/framing.h"

#include <random>

#include "gtest/gtest.h"
#include "serialization/caracal.capnp.h"
#include "serialization/codec.h"

namespace caracal::serialization {
namespace {

std::string OneRecord(Index index, std::string payload) {
  std::string out;
  AppendEntryRecord(Entry{index, 3, 77, EntryType::kCommand, Bytes(payload)}, &out);
  return out;
}

TEST(FramingTest, RecordRoundTripsAndIsWordAligned) {
  std::string bytes = OneRecord(12, "hello");
  EXPECT_EQ(bytes.size() % 8, 0u);
  RecordView view = ReadRecord(bytes);
  ASSERT_EQ(view.kind, RecordView::Kind::kOk) << view.reason;
  EXPECT_EQ(view.size, bytes.size());
  auto value = DecodeLogRecordBody(view.body);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(std::get<Entry>(*value), (Entry{12, 3, 77, EntryType::kCommand, Bytes(std::string("hello"))}));
}

TEST(FramingTest, EveryTruncationOfARecordIsIncompleteNeverOk) {
  std::string bytes = OneRecord(1, std::string(100, 'x'));
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    RecordView view = ReadRecord(std::string_view(bytes).substr(0, cut));
    EXPECT_NE(view.kind, RecordView::Kind::kOk) << "cut at " << cut;
  }
}

TEST(FramingTest, EverySingleBitFlipIsDetected) {
  std::string bytes = OneRecord(5, "payload-bytes");
  for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    std::string damaged = bytes;
    damaged[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    RecordView view = ReadRecord(damaged);
    EXPECT_NE(view.kind, RecordView::Kind::kOk) << "bit " << bit;
  }
}

TEST(FramingTest, HugeLengthIsCorruptionNotAllocation) {
  std::string bytes = OneRecord(5, "x");
  bytes[3] = static_cast<char>(0x7f);  // length ~2 GiB
  EXPECT_EQ(ReadRecord(bytes).kind, RecordView::Kind::kCorrupt);
}

TEST(FramingTest, FrameSplitterReassemblesByteByByte) {
  std::string stream;
  for (int i = 1; i <= 3; ++i) {
    raft::Message m{1, 2, raft::TimeoutNow{static_cast<Term>(i)}};
    AppendRaftFrame(m, &stream);
  }
  FrameSplitter splitter;
  std::vector<raft::Message> got;
  for (char c : stream) {
    splitter.Feed(std::string_view(&c, 1));
    auto body = splitter.Next();
    if (absl::IsUnavailable(body.status())) continue;
    ASSERT_TRUE(body.ok()) << body.status();
    auto frame = DecodeFrame(*body);
    ASSERT_TRUE(frame.ok()) << frame.status();
    got.push_back(std::get<raft::Message>(*frame));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(raft::MessageTerm(got[2]), 3u);
  EXPECT_EQ(splitter.buffered(), 0u);
}

TEST(FramingTest, FrameSplitterRejectsForeignProtocol) {
  FrameSplitter splitter;
  splitter.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto body = splitter.Next();
  EXPECT_TRUE(absl::IsDataLoss(body.status())) << body.status();
  // The error is sticky: the connection is to be closed.
  EXPECT_TRUE(absl::IsDataLoss(splitter.Next().status()));
}

TEST(FramingTest, RandomBytesNeverCrashTheDecoders) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string junk((rng() % 20 + 1) * 8, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    (void)DecodeFrame(junk);
    (void)DecodeLogRecordBody(junk);
    (void)DecodeHardState(junk);
  }
  SUCCEED();  // reaching here without a crash or sanitizer report is the assertion
}

}  // namespace
}  // namespace caracal::serialization

#include "serialization/framing.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "framework/common/endian.h"

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

// One wire frame: an AppendEntries from node 1 to node 2 of `n` entries
// after `prev`, each with a `payload_bytes`-byte payload naming its index.
std::string AppendEntriesFrame(Index prev, size_t n, size_t payload_bytes = 24) {
  raft::AppendEntries ae;
  ae.term = 4;
  ae.prev_log_index = prev;
  ae.prev_log_term = 4;
  for (Index i = prev + 1; i <= prev + n; ++i) {
    std::string payload = absl::StrCat("entry-", i);
    payload.resize(std::max(payload.size(), payload_bytes), '.');
    ae.entries.push_back(Entry{i, 4, 0, EntryType::kCommand, Bytes(std::move(payload))});
  }
  std::string out;
  AppendRaftFrame(raft::Message{1, 2, std::move(ae)}, &out);
  return out;
}

const raft::AppendEntries& AppendEntriesIn(const absl::StatusOr<FrameValue>& frame) {
  return std::get<raft::AppendEntries>(std::get<raft::Message>(*frame).body);
}

bool Inside(const Bytes& part, const Bytes& whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

TEST(FramingTest, DecodedPayloadsAreAlignedSlicesOfTheirFrame) {
  FrameSplitter splitter;
  splitter.Feed(AppendEntriesFrame(0, 50, 13));
  auto body = splitter.Next();
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(body->data()) % 8, 0u);
  auto frame = DecodeFrame(*body);
  ASSERT_TRUE(frame.ok()) << frame.status();
  const auto& ae = AppendEntriesIn(frame);
  ASSERT_EQ(ae.entries.size(), 50u);
  for (const Entry& e : ae.entries) {
    EXPECT_EQ(e.payload.owner(), body->owner());
    EXPECT_TRUE(Inside(e.payload, *body));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e.payload.data()) % 8, 0u) << "entry " << e.index;
    EXPECT_EQ(e.payload.view().substr(0, 6), "entry-");
  }
  // The copying decoder gives equal values that share nothing with the frame.
  auto copied = DecodeFrame(body->view());
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(AppendEntriesIn(copied), ae);
  EXPECT_NE(AppendEntriesIn(copied).entries[0].payload.owner(), body->owner());
}

TEST(FramingTest, PayloadsOutliveTheSplitterAndLaterReads) {
  std::vector<Entry> kept;
  {
    FrameSplitter splitter(4096);  // small chunks: many rollovers
    std::string stream;
    for (Index f = 0; f < 40; ++f) stream += AppendEntriesFrame(f * 10, 10, 40);
    for (size_t at = 0; at < stream.size(); at += 777) {
      splitter.Feed(std::string_view(stream).substr(at, 777));
      for (auto body = splitter.Next(); body.ok(); body = splitter.Next()) {
        auto frame = DecodeFrame(*body);
        ASSERT_TRUE(frame.ok()) << frame.status();
        for (const Entry& e : AppendEntriesIn(frame).entries) kept.push_back(e);
      }
    }
    EXPECT_EQ(splitter.buffered(), 0u);
  }
  ASSERT_EQ(kept.size(), 400u);
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(kept[i].index, i + 1);
    EXPECT_EQ(kept[i].payload.view().substr(0, absl::StrCat("entry-", i + 1, ".").size()),
              absl::StrCat("entry-", i + 1, "."));
  }
}

TEST(FramingTest, FramesSpanningReadsAndChunksComeOutWholeAndAligned) {
  std::string stream;
  std::vector<size_t> sizes;
  for (Index f = 0; f < 30; ++f) {
    std::string frame = AppendEntriesFrame(f * 100, f % 7 == 0 ? 300 : f + 1);
    sizes.push_back(frame.size() - kFrameHeaderBytes);
    stream += frame;
  }
  std::mt19937_64 rng(7);
  FrameSplitter splitter(8192);  // smaller than the big frames
  size_t taken = 0;
  for (size_t at = 0; at < stream.size();) {
    FrameSplitter::Space space = splitter.WritableSpace();
    ASSERT_GT(space.size, 0u);
    size_t n = std::min({space.size, stream.size() - at, static_cast<size_t>(rng() % 3000 + 1)});
    std::memcpy(space.data, stream.data() + at, n);
    splitter.Commit(n);
    at += n;
    for (auto body = splitter.Next(); body.ok(); body = splitter.Next()) {
      ASSERT_LT(taken, sizes.size());
      EXPECT_EQ(body->size(), sizes[taken]);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(body->data()) % 8, 0u);
      auto frame = DecodeFrame(*body);
      ASSERT_TRUE(frame.ok()) << frame.status();
      EXPECT_EQ(AppendEntriesIn(frame).prev_log_index, taken * 100);
      ++taken;
    }
  }
  EXPECT_EQ(taken, sizes.size());
  EXPECT_EQ(splitter.buffered(), 0u);
  EXPECT_TRUE(absl::IsUnavailable(splitter.Next().status()));
}

TEST(FramingTest, FrameSplitterRejectsAnOversizeFrameFromItsHeader) {
  std::string header(kFrameHeaderBytes, '\0');
  PutU32(header.data(), static_cast<uint32_t>(kMaxFrameBytes + 8));
  PutU32(header.data() + 4, kFrameMagic);
  FrameSplitter splitter;
  splitter.Feed(header);
  EXPECT_TRUE(absl::IsDataLoss(splitter.Next().status()));
  // Whatever follows is not buffered for the dead stream.
  splitter.Feed(std::string(1 << 20, 'x'));
  EXPECT_LE(splitter.buffered(), size_t{1} << 20);
  EXPECT_TRUE(absl::IsDataLoss(splitter.Next().status()));
}

TEST(FramingTest, FrameSplitterRejectsALengthThatIsNotWholeWords) {
  std::string frame = AppendEntriesFrame(0, 1);
  PutU32(frame.data(), GetU32(frame.data()) - 4);
  FrameSplitter splitter;
  splitter.Feed(frame);
  EXPECT_TRUE(absl::IsDataLoss(splitter.Next().status()));
}

TEST(FramingTest, AFrameBiggerThanAChunkGrowsAsItArrivesAndComesOutWhole) {
  std::string big = AppendEntriesFrame(0, 2000, 100);
  ASSERT_GT(big.size(), 64u << 10);
  FrameSplitter splitter(64 << 10);
  for (size_t at = 0; at < big.size(); at += 4096) {
    splitter.Feed(std::string_view(big).substr(at, 4096));
    if (at + 4096 < big.size()) {
      EXPECT_TRUE(absl::IsUnavailable(splitter.Next().status())) << at;
    }
  }
  auto body = splitter.Next();
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->view(), std::string_view(big).substr(kFrameHeaderBytes));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(body->data()) % 8, 0u);
}

TEST(FramingTest, AHeaderAloneDoesNotGetTheRoomItAnnounces) {
  // A peer announcing the largest frame and sending nothing more must not
  // cost the server 64 MiB per connection.
  std::string header(kFrameHeaderBytes, '\0');
  PutU32(header.data(), static_cast<uint32_t>(kMaxFrameBytes));
  PutU32(header.data() + 4, kFrameMagic);
  FrameSplitter splitter(64 << 10);
  splitter.Feed(header);
  EXPECT_TRUE(absl::IsUnavailable(splitter.Next().status()));
  EXPECT_LE(splitter.WritableSpace().size, 128u << 10);
}

TEST(FramingTest, RandomBytesNeverCrashTheDecoders) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string junk((rng() % 20 + 1) * 8, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    (void)DecodeFrame(junk);
    (void)DecodeFrame(Bytes(std::string_view(junk)));
    (void)DecodeLogRecordBody(junk);
    (void)DecodeHardState(junk);
  }
  SUCCEED();  // reaching here without a crash or sanitizer report is the assertion
}

}  // namespace
}  // namespace caracal::serialization

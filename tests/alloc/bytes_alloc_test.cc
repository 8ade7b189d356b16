// Bytes, BytesArena and RingBuffer: what they share and what they allocate.

#include <cstring>
#include <string>
#include <vector>

#include "framework/common/bytes.h"
#include "framework/common/ring_buffer.h"
#include "gtest/gtest.h"
#include "tests/alloc/alloc_counter.h"

namespace caracal {
namespace {

using testing::AllocationCounter;

TEST(BytesTest, ACopyIsOneAllocationAndSlicesShareIt) {
  AllocationCounter count;
  Bytes b(std::string_view("a payload longer than any small-string buffer"));
  EXPECT_EQ(count.allocations(), 1u);
  Bytes slice = b.Slice(2, 7);
  Bytes copy = slice;
  EXPECT_EQ(count.allocations(), 1u);
  EXPECT_EQ(slice.view(), "payload");
  EXPECT_EQ(copy.owner(), b.owner());
  EXPECT_EQ(b.SliceOf(b.view().substr(10, 6)).view(), "longer");
}

TEST(BytesTest, SlicesOutliveTheirOriginal) {
  Bytes slice;
  {
    Bytes b(std::string("0123456789abcdefghij"));
    slice = b.Slice(10, 10);
  }
  EXPECT_EQ(slice.view(), "abcdefghij");
  EXPECT_TRUE(Bytes().empty());
  EXPECT_EQ(Bytes(std::string_view()).size(), 0u);
}

TEST(BytesArenaTest, ManySmallStringsCostOneAllocationPerChunk) {
  BytesArena arena(64 << 10);
  std::vector<Bytes> kept;
  kept.reserve(1000);
  std::string value(300, 'v');
  AllocationCounter count;
  for (int i = 0; i < 1000; ++i) {
    value[0] = static_cast<char>('a' + i % 26);
    kept.push_back(arena.Copy(value));
  }
  // 1000 strings of 304 bytes (aligned) fill 5 chunks of 64 KiB.
  EXPECT_LE(count.allocations(), 5u);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(kept[i].size(), 300u);
    EXPECT_EQ(kept[i].view()[0], static_cast<char>('a' + i % 26));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(kept[i].data()) % 8, 0u) << i;
  }
}

TEST(BytesArenaTest, ALongStringGetsItsOwnBlockAndLeavesTheChunkAlone) {
  BytesArena arena(4096);
  Bytes small = arena.Copy("small");
  const void* chunk = arena.current_chunk();
  Bytes big = arena.Copy(std::string(2000, 'x'));
  Bytes after = arena.Copy("after");
  EXPECT_NE(big.owner(), small.owner());
  EXPECT_EQ(after.owner(), small.owner());
  EXPECT_EQ(arena.current_chunk(), chunk);
  EXPECT_EQ(big.view(), std::string(2000, 'x'));
  EXPECT_EQ(small.view(), "small");
  EXPECT_EQ(after.view(), "after");
}

TEST(BytesArenaTest, AReservationMayBeFinishedShort) {
  BytesArena arena(4096);
  auto r = arena.Reserve(100);
  std::memcpy(r.data(), "abc", 3);
  Bytes b = arena.Finish(r, 3);
  Bytes next = arena.Copy("def");
  EXPECT_EQ(b.view(), "abc");
  EXPECT_EQ(next.view(), "def");
  EXPECT_EQ(next.data() - b.data(), 8);  // the unused 97 bytes went back
}

}  // namespace
}  // namespace caracal

namespace caracal {
namespace {

TEST(RingBufferTest, BothEndsWrapAroundInOrderAndSteadyUseAllocatesNothing) {
  RingBuffer<std::string> ring;
  for (int i = 0; i < 10; ++i) ring.push_back(std::to_string(i));
  for (int i = 0; i < 8; ++i) ring.pop_front();
  for (int i = 1; i <= 3; ++i) ring.push_front(std::to_string(-i));  // wraps below slot 0
  for (int i = 10; i < 20; ++i) ring.push_back(std::to_string(i));   // and past the end
  std::vector<std::string> seen;
  for (size_t i = 0; i < ring.size(); ++i) seen.push_back(ring[i]);
  std::vector<std::string> expected = {"-3", "-2", "-1", "8", "9"};
  for (int i = 10; i < 20; ++i) expected.push_back(std::to_string(i));
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(ring.capacity(), 16u);
  testing::AllocationCounter count;
  for (int round = 0; round < 1000; ++round) {
    ring.push_front(std::string());
    ring.pop_back();
  }
  EXPECT_EQ(count.allocations(), 0u);
  EXPECT_EQ(ring.size(), expected.size());
}

}  // namespace
}  // namespace caracal

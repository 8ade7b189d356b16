// ScratchMessage: the thread's scratch first segment is reused and left zeroed,
// so back-to-back messages of any shape encode exactly as with a fresh
// MallocMessageBuilder; a nested builder and an oversized message still work.

#include "serialization/scratch_message.h"

#include <string>
#include <thread>

#include "capnp/serialize.h"
#include "gtest/gtest.h"
#include "serialization/caracal.capnp.h"

namespace caracal::serialization {
namespace {

std::string Flat(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string EncodeCommand(capnp::MessageBuilder& message, uint64_t session, const std::string& operation) {
  auto root = message.initRoot<wire::CommandEntry>();
  root.setSession(session);
  root.setSequence(session * 2);
  root.setOperation(kj::arrayPtr(reinterpret_cast<const kj::byte*>(operation.data()), operation.size()));
  return Flat(message);
}

std::string Reference(uint64_t session, const std::string& operation) {
  capnp::MallocMessageBuilder fresh;
  return EncodeCommand(fresh, session, operation);
}

TEST(ScratchMessageTest, ReusedScratchEncodesExactlyLikeAFreshBuilder) {
  // Large, then small: leftovers of the first in the scratch would show up in the second.
  for (const auto& [session, size] : {std::pair{1, 3000}, {2, 10}, {3, 0}, {4, 700}, {5, 1}}) {
    std::string operation(static_cast<size_t>(size), static_cast<char>('a' + session));
    ScratchMessage scratch(operation.size());
    EXPECT_EQ(EncodeCommand(scratch.message(), session, operation), Reference(session, operation))
        << "session " << session;
  }
}

TEST(ScratchMessageTest, ANestedBuilderAndAnUnderestimatedMessageStillEncode) {
  std::string big(5 * ScratchMessage::kScratchWords * sizeof(capnp::word), 'x');  // past the scratch
  ScratchMessage outer(0);  // announced small: takes the scratch, then grows on the heap
  {
    ScratchMessage inner(16);  // the scratch is busy: heap
    EXPECT_EQ(EncodeCommand(inner.message(), 7, "inner"), Reference(7, "inner"));
  }
  EXPECT_EQ(EncodeCommand(outer.message(), 8, big), Reference(8, big));
  ScratchMessage after(4);  // the outer one still holds the scratch
  EXPECT_EQ(EncodeCommand(after.message(), 9, "after"), Reference(9, "after"));
}

TEST(ScratchMessageTest, AMessageAnnouncedBiggerThanTheScratchGetsOneSegmentOfItsSize) {
  std::string big(5 * ScratchMessage::kScratchWords * sizeof(capnp::word), 'y');
  ScratchMessage oversized(big.size());
  std::string flat = EncodeCommand(oversized.message(), 10, big);
  EXPECT_EQ(oversized.message().getSegmentsForOutput().size(), 1u);
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(flat.data()),
                                        flat.size() / sizeof(capnp::word));
  capnp::FlatArrayMessageReader reader(words);
  auto root = reader.getRoot<wire::CommandEntry>();
  EXPECT_EQ(root.getSession(), 10u);
  auto op = root.getOperation();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(op.begin()), op.size()), big);
  ScratchMessage small(4);  // the scratch was left free
  EXPECT_EQ(EncodeCommand(small.message(), 11, "small"), Reference(11, "small"));
}

TEST(ScratchMessageTest, EachThreadHasItsOwnScratch) {
  std::string a, b;
  std::thread t([&] {
    ScratchMessage scratch;
    a = EncodeCommand(scratch.message(), 10, "thread");
  });
  {
    ScratchMessage scratch;
    b = EncodeCommand(scratch.message(), 11, "main");
  }
  t.join();
  EXPECT_EQ(a, Reference(10, "thread"));
  EXPECT_EQ(b, Reference(11, "main"));
}

}  // namespace
}  // namespace caracal::serialization

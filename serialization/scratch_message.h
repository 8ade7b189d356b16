#ifndef CARACAL_SERIALIZATION_SCRATCH_MESSAGE_H_
#define CARACAL_SERIALIZATION_SCRATCH_MESSAGE_H_

// ScratchMessage: a Cap'n Proto message builder for the hot paths (entries,
// frames, operations, results). Its first segment is this thread's scratch
// buffer, reused from message to message, so encoding a message that fits
// (kScratchWords words, 16 KiB) makes no heap allocation; a larger one goes
// on in heap segments as usual. When the builder goes away it zeroes the part
// of the scratch it used (Cap'n Proto needs a zeroed first segment). A second
// ScratchMessage alive on the same thread at the same time uses the heap.
//
//   ScratchMessage scratch(payload_bytes);
//   auto root = scratch.message().initRoot<wire::Frame>();

#include <array>
#include <cstddef>
#include <cstring>
#include <optional>

#include "capnp/message.h"

namespace caracal::serialization {

class ScratchMessage {
 public:
  static constexpr size_t kScratchWords = 2048;

  // `payload_bytes`: about how much data the message will carry (an upper
  // bound is best); sizes the first heap segment when the scratch is busy or
  // too small, so that a big message (an AppendEntries of many entries) costs
  // one allocation rather than a chain of growing segments.
  explicit ScratchMessage(size_t payload_bytes = 0) {
    const size_t words = payload_bytes / sizeof(capnp::word) + 32;
    Scratch& s = ThreadScratch();
    if (!s.in_use && words <= kScratchWords) {
      s.in_use = true;
      scratch_ = &s;
      builder_.emplace(kj::arrayPtr(s.words.data(), s.words.size()), capnp::AllocationStrategy::GROW_HEURISTICALLY);
    } else {
      builder_.emplace(static_cast<unsigned>(words));
    }
  }
  ~ScratchMessage() {
    if (scratch_ == nullptr) return;
    size_t used = 0;
    auto segments = builder_->getSegmentsForOutput();
    if (segments.size() > 0 && segments[0].begin() == scratch_->words.data()) used = segments[0].size();
    builder_.reset();
    std::memset(scratch_->words.data(), 0, used * sizeof(capnp::word));
    scratch_->in_use = false;
  }
  ScratchMessage(const ScratchMessage&) = delete;
  ScratchMessage& operator=(const ScratchMessage&) = delete;

  capnp::MessageBuilder& message() { return *builder_; }

 private:
  struct Scratch {
    std::array<capnp::word, kScratchWords> words{};  // zero: Cap'n Proto's first-segment contract
    bool in_use = false;
  };
  static Scratch& ThreadScratch() {
    thread_local Scratch scratch;
    return scratch;
  }

  Scratch* scratch_ = nullptr;
  std::optional<capnp::MallocMessageBuilder> builder_;
};

}  // namespace caracal::serialization

#endif  // CARACAL_SERIALIZATION_SCRATCH_MESSAGE_H_

// Fuzz target: the wire (serialization/framing.h, codec.h, client_protocol.h).
//
// The input is a byte stream as a TCP connection delivers it. It goes through
// FrameSplitter in uneven pieces, and every whole frame body through
// DecodeFrame (hello, raft messages, client requests and responses, published
// events). The bytes after the first frame header are also decoded as a body
// whatever that header says, at an unaligned address, so that mutations of a
// body are not all lost to a broken length or magic.
//
// Properties: nothing crashes, leaks or hangs; the splitter never returns
// more bytes than it was fed; a frame that decodes re-encodes to a frame that
// decodes to an equal value.

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "serialization/client_protocol.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

using serialization::FrameValue;
using serialization::HelloValue;

std::string EncodeFrame(const FrameValue& value) {
  std::string out;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, HelloValue>) {
          serialization::AppendHelloFrame(v, &out);
        } else if constexpr (std::is_same_v<T, raft::Message>) {
          serialization::AppendRaftFrame(v, &out);
        } else if constexpr (std::is_same_v<T, serialization::ClientRequestValue>) {
          serialization::AppendClientRequestFrame(v, &out);
        } else if constexpr (std::is_same_v<T, serialization::ClientResponseValue>) {
          serialization::AppendClientResponseFrame(v, &out);
        } else {
          static_assert(std::is_same_v<T, serialization::PublishEventsValue>);
          serialization::AppendPublishEventsFrame(v, &out);
        }
      },
      value);
  return out;
}

bool Equal(const FrameValue& a, const FrameValue& b) {
  if (a.index() != b.index()) return false;
  if (const auto* h = std::get_if<HelloValue>(&a)) {
    const auto& g = std::get<HelloValue>(b);
    return h->node_id == g.node_id && h->cluster_id == g.cluster_id;
  }
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, HelloValue>) {
          return false;  // handled above
        } else {
          return x == std::get<T>(b);
        }
      },
      a);
}

void DecodeBody(std::string_view body) {
  auto value = serialization::DecodeFrame(body);
  if (!value.ok()) return;
  std::string frame = EncodeFrame(*value);
  serialization::FrameSplitter splitter;
  splitter.Feed(frame);
  auto again = splitter.Next();
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(splitter.buffered() == 0);
  auto decoded = serialization::DecodeFrame(*again);  // zero-copy: fields are slices of the frame
  FUZZ_CHECK(decoded.ok());
  FUZZ_CHECK(Equal(*value, *decoded));
}

// A body the splitter handed out: the zero-copy decoder must agree with the
// copying one.
void DecodeBody(const Bytes& body) {
  auto sliced = serialization::DecodeFrame(body);
  auto copied = serialization::DecodeFrame(body.view());
  FUZZ_CHECK(sliced.ok() == copied.ok());
  if (sliced.ok()) FUZZ_CHECK(Equal(*sliced, *copied));
  DecodeBody(body.view());
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace caracal::fuzz;
  std::string_view input = AsView(data, size);

  // The stream, fed in pieces of 1..64 bytes chosen by a generator seeded
  // with the size (deterministic per input).
  caracal::serialization::FrameSplitter splitter;
  uint32_t state = static_cast<uint32_t>(size) * 2654435761u + 1;
  size_t fed = 0;
  size_t taken = 0;
  while (fed < input.size()) {
    state = state * 1103515245u + 12345u;
    size_t piece = std::min<size_t>(1 + (state >> 16) % 64, input.size() - fed);
    splitter.Feed(input.substr(fed, piece));
    fed += piece;
    while (true) {
      auto body = splitter.Next();
      if (!body.ok()) break;
      taken += caracal::serialization::kFrameHeaderBytes + body->size();
      FUZZ_CHECK(taken <= fed);
      DecodeBody(*body);
    }
  }

  // The first frame's body, whatever the header says, one byte off alignment.
  if (input.size() > caracal::serialization::kFrameHeaderBytes) {
    std::string shifted = " ";
    shifted.append(input.substr(caracal::serialization::kFrameHeaderBytes));
    DecodeBody(std::string_view(shifted).substr(1));
  }
  return 0;
}

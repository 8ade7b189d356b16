// Fuzz target: the operation codec (framework/include/caracal/codec.h): an
// operation message as a client sends it (codec::ParseOperation, DecodeArgs)
// and a result or event value as a server sends it (FromBytes, DecodeResult).
//
// codec::FuzzOperationBytes decodes the input into the codec's own set of
// representative types (every supported shape, and a recursive one); on top
// of that this target decodes it as the example applications' operations,
// results and events (examples/kv, examples/lock), and as a nested type that
// is then re-encoded.
//
// Properties: nothing crashes, leaks or hangs; a value of a type without
// floating point (where == is exact) that decodes re-encodes to bytes that
// decode to an equal value, and re-encoding that is stable (same bytes).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "caracal/codec.h"
#include "examples/kv/kv.h"
#include "examples/lock/lock.h"
#include "tests/fuzz/fuzz_types.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace kv = examples::kv;
namespace lock = examples::lock;

// Decodes `bytes` as T; if that works, T must survive a round trip.
template <typename T>
void RoundTrip(std::string_view bytes) {
  auto value = codec::FromBytes<T>(bytes);
  if (!value.ok()) return;
  std::string encoded = codec::ToBytes(*value);
  auto again = codec::FromBytes<T>(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == *value);
  FUZZ_CHECK(codec::ToBytes(*again) == encoded);
}

// Decodes an operation's args as T whatever its name (DecodeArgs checks the
// name first, codec::Decode does not).
template <typename T>
void DecodeAs(const codec::OperationView& op, wire::Value::Reader args) {
  (void)op.DecodeArgs<T>();
  T value;
  (void)codec::Decode(args, &value);
}

void Run(std::string_view bytes) {
  codec::FuzzOperationBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());

  if (auto op = codec::ParseOperation(bytes); op.ok()) {
    FUZZ_CHECK(!op->name().empty());
    if (auto args = op->Args(); args.ok()) {
      DecodeAs<kv::Put>(*op, *args);
      DecodeAs<kv::Get>(*op, *args);
      DecodeAs<kv::Remove>(*op, *args);
      DecodeAs<kv::CompareAndSet>(*op, *args);
      DecodeAs<kv::Size>(*op, *args);
      DecodeAs<kv::Watch>(*op, *args);
      DecodeAs<lock::Lock>(*op, *args);
      DecodeAs<lock::Unlock>(*op, *args);
      DecodeAs<lock::Holder>(*op, *args);
    }
  }

  (void)codec::DecodeResult<kv::Put>(bytes);
  (void)codec::DecodeResult<kv::CompareAndSet>(bytes);
  (void)codec::DecodeResult<kv::Size>(bytes);
  (void)codec::DecodeResult<lock::Unlock>(bytes);
  RoundTrip<lock::HolderInfo>(bytes);
  RoundTrip<kv::Changed>(bytes);
  RoundTrip<lock::Granted>(bytes);
  RoundTrip<Nested>(bytes);
  RoundTrip<std::optional<std::string>>(bytes);
  RoundTrip<std::map<std::string, std::optional<std::vector<int64_t>>>>(bytes);
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  caracal::fuzz::Run(caracal::fuzz::AsView(data, size));
  return 0;
}

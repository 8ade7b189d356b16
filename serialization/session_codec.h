#ifndef CARACAL_SERIALIZATION_SESSION_CODEC_H_
#define CARACAL_SERIALIZATION_SESSION_CODEC_H_

// Payloads of the session entries (Register, KeepAlive, Unregister) as
// plain values. Decoders read log entries, which came from the network
// first: they never throw or crash, and say what was wrong.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace caracal::serialization {

struct RegisterEntryValue {
  std::string client_id;
  uint64_t timeout_ms = 0;
};
std::string EncodeRegisterEntry(const RegisterEntryValue& value);
absl::StatusOr<RegisterEntryValue> DecodeRegisterEntry(std::string_view payload);

struct KeepAliveItemValue {
  uint64_t session = 0;
  uint64_t command_sequence = 0;
  uint64_t event_index = 0;
};
struct KeepAliveEntryValue {
  std::vector<KeepAliveItemValue> sessions;
};
std::string EncodeKeepAliveEntry(const KeepAliveEntryValue& value);
absl::StatusOr<KeepAliveEntryValue> DecodeKeepAliveEntry(std::string_view payload);

struct UnregisterEntryValue {
  uint64_t session = 0;
  bool expired = false;
};
std::string EncodeUnregisterEntry(const UnregisterEntryValue& value);
absl::StatusOr<UnregisterEntryValue> DecodeUnregisterEntry(std::string_view payload);

}  // namespace caracal::serialization

#endif  // CARACAL_SERIALIZATION_SESSION_CODEC_H_

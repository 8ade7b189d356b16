// Fuzz target: the payloads of log entries (serialization/session_codec.h
// register / keep-alive / unregister entries, codec.h DecodeCommandEntry).
// Their bytes are made from what clients send and reach every server through
// the log, so every decoder sees every input.
//
// Properties: nothing crashes, leaks or hangs; a payload that decodes
// re-encodes to one that decodes to an equal value; a command entry's
// operation goes on to the operation codec (codec::FuzzOperationBytes).

#include <cstdint>
#include <string>
#include <string_view>

#include "caracal/codec.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace s = serialization;

void Run(std::string_view payload) {
  if (auto reg = s::DecodeRegisterEntry(payload); reg.ok()) {
    auto again = s::DecodeRegisterEntry(s::EncodeRegisterEntry(*reg));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->client_id == reg->client_id && again->timeout_ms == reg->timeout_ms);
  }
  if (auto batch = s::DecodeKeepAliveEntry(payload); batch.ok()) {
    auto again = s::DecodeKeepAliveEntry(s::EncodeKeepAliveEntry(*batch));
    FUZZ_CHECK(again.ok() && again->sessions.size() == batch->sessions.size());
    for (size_t i = 0; i < batch->sessions.size(); ++i) {
      const auto& a = batch->sessions[i];
      const auto& b = again->sessions[i];
      FUZZ_CHECK(a.session == b.session && a.command_sequence == b.command_sequence &&
                 a.event_index == b.event_index);
    }
  }
  if (auto unreg = s::DecodeUnregisterEntry(payload); unreg.ok()) {
    auto again = s::DecodeUnregisterEntry(s::EncodeUnregisterEntry(*unreg));
    FUZZ_CHECK(again.ok() && again->session == unreg->session && again->expired == unreg->expired);
  }
  if (auto command = s::DecodeCommandEntry(payload); command.ok()) {
    auto again = s::DecodeCommandEntry(
        s::EncodeCommandEntry(command->session, command->sequence, command->operation, command->acked_sequence));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->session == command->session && again->sequence == command->sequence &&
               again->operation == command->operation && again->acked_sequence == command->acked_sequence);
    codec::FuzzOperationBytes(reinterpret_cast<const uint8_t*>(command->operation.data()),
                              command->operation.size());
  }
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  caracal::fuzz::Run(caracal::fuzz::AsView(data, size));
  return 0;
}

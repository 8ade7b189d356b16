#include "serialization/session_codec.h"

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "kj/exception.h"
#include "serialization/caracal.capnp.h"
#include "serialization/framing.h"
#include "serialization/scratch_message.h"

namespace caracal::serialization {
std::string EncodeRegisterEntry(const RegisterEntryValue& value) {
  ScratchMessage scratch(value.client_id.size());
  capnp::MessageBuilder& message = scratch.message();
  auto root = message.initRoot<wire::RegisterEntry>();
  root.setClientId(value.client_id);
  root.setTimeoutMs(value.timeout_ms);
  return MessageBytes(message);
}

absl::StatusOr<RegisterEntryValue> DecodeRegisterEntry(std::string_view payload) {
  return ReadMessage<wire::RegisterEntry, RegisterEntryValue>(payload, "register entry", [](wire::RegisterEntry::Reader r) {
    return RegisterEntryValue{std::string(r.getClientId().cStr()), r.getTimeoutMs()};
  });
}

std::string EncodeKeepAliveEntry(const KeepAliveEntryValue& value) {
  ScratchMessage scratch(value.sessions.size() * 24);
  capnp::MessageBuilder& message = scratch.message();
  auto list = message.initRoot<wire::KeepAliveEntry>().initSessions(value.sessions.size());
  for (size_t i = 0; i < value.sessions.size(); ++i) {
    list[i].setSession(value.sessions[i].session);
    list[i].setCommandSequence(value.sessions[i].command_sequence);
    list[i].setEventIndex(value.sessions[i].event_index);
  }
  return MessageBytes(message);
}

absl::StatusOr<KeepAliveEntryValue> DecodeKeepAliveEntry(std::string_view payload) {
  return ReadMessage<wire::KeepAliveEntry, KeepAliveEntryValue>(
      payload, "keep-alive entry", [](wire::KeepAliveEntry::Reader r) {
        KeepAliveEntryValue v;
        for (auto item : r.getSessions()) {
          v.sessions.push_back(KeepAliveItemValue{item.getSession(), item.getCommandSequence(), item.getEventIndex()});
        }
        return v;
      });
}

std::string EncodeUnregisterEntry(const UnregisterEntryValue& value) {
  ScratchMessage scratch(0);
  capnp::MessageBuilder& message = scratch.message();
  auto root = message.initRoot<wire::UnregisterEntry>();
  root.setSession(value.session);
  root.setExpired(value.expired);
  return MessageBytes(message);
}

absl::StatusOr<UnregisterEntryValue> DecodeUnregisterEntry(std::string_view payload) {
  return ReadMessage<wire::UnregisterEntry, UnregisterEntryValue>(
      payload, "unregister entry",
      [](wire::UnregisterEntry::Reader r) { return UnregisterEntryValue{r.getSession(), r.getExpired()}; });
}

}  // namespace caracal::serialization

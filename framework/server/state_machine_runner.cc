#include "framework/server/state_machine_runner.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "framework/common/endian.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {

StateMachineRunner::StateMachineRunner(std::unique_ptr<StateMachine> state_machine, NodeId id, Index applied)
    : id_(id), applied_(applied), executor_(&tracker_), state_machine_(std::move(state_machine)) {
  executor_.SetPublisher([this](uint64_t session, Index index, std::string name, std::string payload) {
    OnPublish(session, index, std::move(name), std::move(payload));
  });
  // Executor::sessions(): the session table's open sessions, in id order.
  executor_.SetSessions([this] {
    std::vector<Session> open;
    open.reserve(sessions_.sessions().size());
    for (const auto& [id, state] : sessions_.sessions()) open.emplace_back(id, &executor_);
    return open;
  });
  state_machine_->Configure(executor_.executor());
}

StateMachineRunner::~StateMachineRunner() {
  // Commits the state machine still holds release into tracker_: destroy the
  // state machine first.
  state_machine_.reset();
}

absl::StatusOr<std::string> StateMachineRunner::Apply(const Entry& entry) {
  std::vector<Response> out = ApplyEntry(entry);
  assert(out.size() == 1 && out.front().index == entry.index);
  return ResultString(out.front().result);
}

absl::StatusOr<Bytes> ResultBytes(absl::StatusOr<std::string> result) {
  if (!result.ok()) return result.status();
  return Bytes(*std::move(result));
}

absl::StatusOr<std::string> ResultString(const absl::StatusOr<Bytes>& result) {
  if (!result.ok()) return result.status();
  return std::string(result->view());
}

std::vector<StateMachineRunner::Response> StateMachineRunner::ApplyEntry(const Entry& entry) {
  std::vector<Response> out;
  ApplyEntry(entry, &out);
  return out;
}

absl::StatusOr<Bytes> StateMachineRunner::Result(absl::Status status) {
  if (!status.ok()) return status;
  return results_.Copy(result_buffer_);
}

void StateMachineRunner::ApplyEntry(const Entry& entry, std::vector<Response>* responses) {
  assert(entry.index == applied_ + 1);
  applied_ = entry.index;
  published_.clear();
  std::vector<Response>& out = *responses;
  out.clear();
  switch (entry.type) {
    case EntryType::kRegister:
      out.push_back(Response{entry.index, entry.term, ResultBytes(ApplyRegister(entry))});
      break;
    case EntryType::kKeepAlive:
      out.push_back(Response{entry.index, entry.term, ResultBytes(ApplyKeepAlive(entry))});
      break;
    case EntryType::kUnregister:
      out.push_back(Response{entry.index, entry.term, ResultBytes(ApplyUnregister(entry))});
      break;
    case EntryType::kCommand: {
      // Read in place: the operation stays a view into the entry (or into
      // the reader's aligned copy), alive while `reader` is.
      serialization::MessageReader reader;
      auto payload = serialization::ReadCommandEntry(entry.payload.view(), &reader);
      if (!payload.ok()) {
        executor_.ApplyEmpty(entry.index, entry.timestamp);
        out.push_back(Response{entry.index, entry.term, payload.status()});
      } else if (payload->session == 0) {
        absl::Status s = executor_.ApplyCommand(entry.index, entry.timestamp, 0, payload->operation, &result_buffer_);
        out.push_back(Response{entry.index, entry.term, Result(std::move(s))});
      } else {
        sessions_.AcknowledgeResponses(payload->session, payload->acked_sequence);
        ApplySessionCommand(entry, payload->session, payload->sequence, payload->operation, &out);
      }
      break;
    }
    case EntryType::kInitialize:
      // A new leader: no session may expire for the time nobody could
      // receive its keep-alives.
      executor_.ApplyEmpty(entry.index, entry.timestamp);
      sessions_.ResetKeepAlives(entry.timestamp);
      break;
    case EntryType::kConfiguration:
    case EntryType::kTime:
      executor_.ApplyEmpty(entry.index, entry.timestamp);
      break;
  }
  // Whatever the entry, timers fired before it may have asked for side
  // effects: they belong to this entry (run now or never, not with a later one).
  RunSideEffects(entry);
  if (entry.type == EntryType::kInitialize || entry.type == EntryType::kConfiguration ||
      entry.type == EntryType::kTime) {
    out.push_back(Response{entry.index, entry.term, absl::AbortedError(absl::StrCat("no command was applied at index ",
                                                                        entry.index))});
  }
}

absl::Status CommandArrivedEarly(uint64_t session, uint64_t sequence) {
  return absl::AbortedError(absl::StrCat("command ", sequence, " of session ", session,
                                         " reached the log before command ", sequence - 1,
                                         ": it was not applied; retry it"));
}

absl::Status SessionNotOpen(uint64_t session) {
  return absl::UnauthenticatedError(absl::StrCat("session ", session, " is not open: it expired or was closed"));
}

void AppendUnknownSession(uint64_t session, std::string* out) {
  size_t at = out->size();
  out->resize(at + 8);
  PutU64(out->data() + at, session);
}

std::vector<uint64_t> DecodeUnknownSessions(std::string_view bytes) {
  std::vector<uint64_t> out;
  for (size_t at = 0; at + 8 <= bytes.size(); at += 8) out.push_back(GetU64(bytes.data() + at));
  return out;
}

SessionListener* StateMachineRunner::listener() { return dynamic_cast<SessionListener*>(state_machine_.get()); }

absl::StatusOr<std::string> StateMachineRunner::ApplyRegister(const Entry& entry) {
  executor_.ApplyEmpty(entry.index, entry.timestamp);
  auto reg = serialization::DecodeRegisterEntry(entry.payload.view());
  if (!reg.ok()) return reg.status();
  // The client service bounds the timeout; an entry is trusted only so far
  // (no overflow of keep-alive + timeout in log time).
  constexpr uint64_t kMaxTimeoutMs = uint64_t{1} << 40;  // about 35 years
  LogTime timeout = static_cast<LogTime>(std::min(reg->timeout_ms, kMaxTimeoutMs)) * 1000;
  sessions_.Register(entry.index, entry.timestamp, reg->client_id, timeout);
  tracker_.Hold(entry.index);  // live while the session is open
  if (SessionListener* l = listener()) {
    try {
      l->OnRegister(Session(entry.index, &executor_));
    } catch (const std::exception& e) {
      spdlog::error("server {}: OnRegister for session {} threw: {}", id_, entry.index, e.what());
    }
  }
  return std::string();
}

absl::StatusOr<std::string> StateMachineRunner::ApplyKeepAlive(const Entry& entry) {
  executor_.ApplyEmpty(entry.index, entry.timestamp);
  auto batch = serialization::DecodeKeepAliveEntry(entry.payload.view());
  if (!batch.ok()) {
    spdlog::error("server {}: keep-alive entry {} does not decode: {}", id_, entry.index,
                  std::string(batch.status().message()));
    return batch.status();
  }
  std::string unknown;
  for (const auto& item : batch->sessions) {
    const SessionState* s = sessions_.Find(item.session);
    if (s == nullptr) {
      AppendUnknownSession(item.session, &unknown);
      continue;
    }
    Index previous = s->keep_alive_index;
    std::vector<Index> acked_batches;
    for (const auto& b : s->events) {
      if (b.index <= item.event_index) acked_batches.push_back(b.index);
    }
    sessions_.KeepAlive(item.session, entry.index, entry.timestamp, item.command_sequence, item.event_index);
    tracker_.Hold(entry.index);  // the session's latest keep-alive stays in the log
    if (previous != 0) tracker_.Release(previous);
    for (Index b : acked_batches) tracker_.Release(b);  // events acknowledged
  }
  return unknown;
}

absl::StatusOr<std::string> StateMachineRunner::ApplyUnregister(const Entry& entry) {
  executor_.ApplyEmpty(entry.index, entry.timestamp);  // a tombstone: released at once
  auto unreg = serialization::DecodeUnregisterEntry(entry.payload.view());
  if (!unreg.ok()) {
    spdlog::error("server {}: unregister entry {} does not decode: {}", id_, entry.index,
                  std::string(unreg.status().message()));
    return unreg.status();
  }
  std::optional<SessionState> gone = sessions_.Unregister(unreg->session, entry.timestamp, unreg->expired);
  if (!gone) {
    // Unknown, or a keep-alive voided the expiry.
    if (unreg->expired) return std::string();
    return SessionNotOpen(unreg->session);
  }
  tracker_.Release(gone->id);
  sequenced_.insert(gone->id);
  if (gone->keep_alive_index != 0) tracker_.Release(gone->keep_alive_index);
  for (const auto& b : gone->events) tracker_.Release(b.index);
  if (SessionListener* l = listener()) {
    Session session(gone->id, &executor_);
    try {
      if (unreg->expired) {
        l->OnExpire(session);
      } else {
        l->OnUnregister(session);
      }
      l->OnClose(session);
    } catch (const std::exception& e) {
      spdlog::error("server {}: session listener for session {} threw: {}", id_, gone->id, e.what());
    }
  }
  return std::string();
}

void StateMachineRunner::ApplySessionCommand(const Entry& entry, uint64_t session, uint64_t sequence,
                                             std::string_view operation, std::vector<Response>* out) {
  switch (sessions_.Classify(session, sequence)) {
    case SessionTable::Order::kUnknownSession:
      executor_.ApplyEmpty(entry.index, entry.timestamp);
      out->push_back(Response{entry.index, entry.term, SessionNotOpen(session)});
      return;
    case SessionTable::Order::kDuplicate: {
      executor_.ApplyEmpty(entry.index, entry.timestamp);  // a retry: answered from the cache, applied once
      auto cached = sessions_.CachedFor(session, sequence);
      if (cached.ok()) {
        out->push_back(Response{entry.index, entry.term, cached->result, cached->event_index, cached->index});
      } else {
        out->push_back(Response{entry.index, entry.term, cached.status(), 0});
      }
      return;
    }
    case SessionTable::Order::kEarly:
      // The leader sequences a session's commands before they enter the log
      // (ClientService, CommandSequencer), so this is a safety net: a command
      // ahead of its predecessor never runs at an index below one already
      // applied. It is refused here, identically on every server, and the
      // client's retry lands after its predecessor.
      executor_.ApplyEmpty(entry.index, entry.timestamp);
      out->push_back(Response{entry.index, entry.term, CommandArrivedEarly(session, sequence)});
      return;
    case SessionTable::Order::kNext:
      break;
  }
  absl::StatusOr<Bytes> result =
      Result(executor_.ApplyCommand(entry.index, entry.timestamp, session, operation, &result_buffer_));
  Index event_index = sessions_.RecordResponse(session, sequence, CachedResponse{entry.index, result, 0});
  out->push_back(Response{entry.index, entry.term, std::move(result), event_index});
  sequenced_.insert(session);
}

void StateMachineRunner::OnPublish(uint64_t session, Index index, std::string name, std::string payload) {
  const SessionState* s = sessions_.Find(session);
  if (s == nullptr) {
    throw std::logic_error(absl::StrCat("Session::Publish('", name, "'): session ", session, " is not open"));
  }
  bool new_batch = s->last_event_index != index;
  sessions_.Publish(session, index, PublishedEvent{std::move(name), std::move(payload)});
  if (new_batch) {
    tracker_.Hold(index);  // kept until the client acknowledges the batch
    published_.emplace_back(session, index);
  }
}

std::optional<LogTime> StateMachineRunner::NextDeadline() const {
  std::optional<LogTime> timer = executor_.NextTimer();
  std::optional<LogTime> expiry = sessions_.NextExpiry();
  if (timer && expiry) return std::min(*timer, *expiry);
  return timer ? timer : expiry;
}

void StateMachineRunner::RunSideEffects(const Entry& entry) {
  auto effects = executor_.TakeSideEffects();
  if (role_ != raft::Role::kLeader || entry.term != term_) return;
  for (auto& fn : effects) {
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("server {}: leader side effect at index {} threw: {}", id_, entry.index, e.what());
    }
  }
}

void StateMachineRunner::ApplyHole(Index index) {
  assert(index == applied_ + 1);
  applied_ = index;
  tracker_.Applied(index);
}

absl::StatusOr<std::string> StateMachineRunner::Query(uint64_t session, std::string_view operation) {
  return executor_.RunQuery(session, operation);
}

void StateMachineRunner::SetRole(raft::Role role, Term term, NodeId leader) {
  role_ = role;
  term_ = term;
  try {
    if (role == raft::Role::kLeader) {
      state_machine_->OnBecomeLeader(term);
    } else {
      state_machine_->OnBecomeFollower(term, leader);
    }
  } catch (const std::exception& e) {
    spdlog::error("server {}: role hook threw: {}", id_, e.what());
  }
}

}  // namespace caracal::server

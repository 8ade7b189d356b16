#include "framework/server/sessions.h"

#include "absl/strings/str_cat.h"

namespace caracal::server {

void ResponseCache::Put(uint64_t sequence, CachedResponse response) {
  if (sequence < first_) return;
  if (slots_.empty()) first_ = sequence;
  uint64_t offset = sequence - first_;
  while (slots_.size() <= offset) slots_.push_back(std::nullopt);
  slots_[offset] = std::move(response);
}

const CachedResponse* ResponseCache::Find(uint64_t sequence) const {
  if (sequence < first_ || sequence - first_ >= slots_.size() || !slots_[sequence - first_]) return nullptr;
  return &*slots_[sequence - first_];
}

void ResponseCache::TrimThrough(uint64_t sequence) {
  while (!slots_.empty() && first_ <= sequence) {
    slots_.pop_front();
    ++first_;
  }
  if (slots_.empty()) first_ = std::max(first_, sequence + 1);
}

void ResponseCache::Detach() {
  // Only what arrived since the last Detach: the rest has storage of its own.
  for (size_t i = detached_through_ >= first_ ? detached_through_ - first_ + 1 : 0; i < slots_.size(); ++i) {
    auto& slot = slots_[i];
    if (slot && slot->result.ok()) slot->result = Bytes(slot->result->view());
  }
  if (!slots_.empty()) detached_through_ = std::max(detached_through_, first_ + slots_.size() - 1);
}

size_t ResponseCache::size() const {
  size_t n = 0;
  for (size_t i = 0; i < slots_.size(); ++i) n += slots_[i].has_value();
  return n;
}

SessionState& SessionTable::Register(Index index, LogTime time, std::string client_id, LogTime timeout) {
  SessionState& s = sessions_[index];
  s = SessionState{};
  s.id = index;
  s.client_id = std::move(client_id);
  s.timeout = timeout;
  s.keep_alive = time;
  return s;
}

void SessionTable::Acknowledge(SessionState& s, uint64_t sequence) {
  if (sequence <= s.acked_sequence) return;
  s.acked_sequence = std::min(sequence, s.last_sequence);
  s.responses.TrimThrough(s.acked_sequence);
}

void SessionTable::AcknowledgeResponses(uint64_t id, uint64_t sequence) {
  if (SessionState* s = FindMutable(id)) Acknowledge(*s, sequence);
}

bool SessionTable::KeepAlive(uint64_t id, Index index, LogTime time, uint64_t command_sequence, Index event_index) {
  SessionState* s = FindMutable(id);
  if (s == nullptr) return false;
  s->keep_alive = std::max(s->keep_alive, time);
  s->keep_alive_index = index;
  Acknowledge(*s, command_sequence);
  s->responses.Detach();
  if (event_index > s->acked_event_index) {
    s->acked_event_index = std::min(event_index, s->last_event_index);
    while (!s->events.empty() && s->events.front().index <= s->acked_event_index) s->events.pop_front();
  }
  return true;
}

std::optional<SessionState> SessionTable::Unregister(uint64_t id, LogTime time, bool expired) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (expired && !it->second.Suspect(time)) return std::nullopt;
  SessionState state = std::move(it->second);
  sessions_.erase(it);
  return state;
}

void SessionTable::ResetKeepAlives(LogTime time) {
  for (auto& [id, s] : sessions_) s.keep_alive = std::max(s.keep_alive, time);
}

SessionTable::Order SessionTable::Classify(uint64_t id, uint64_t sequence) const {
  const SessionState* s = Find(id);
  if (s == nullptr) return Order::kUnknownSession;
  if (sequence <= s->last_sequence) return Order::kDuplicate;
  if (sequence == s->last_sequence + 1) return Order::kNext;
  return Order::kEarly;
}

Index SessionTable::RecordResponse(uint64_t id, uint64_t sequence, CachedResponse response) {
  SessionState* s = FindMutable(id);
  if (s == nullptr) return 0;
  s->last_sequence = std::max(s->last_sequence, sequence);
  // The client completes this response once it has every batch up to here:
  // the batches published *before* the command. Its own events (at its own
  // index) are delivered after the response.
  response.event_index = 0;
  for (const auto& b : s->events) {
    if (b.index < response.index) response.event_index = b.index;
  }
  if (s->events.empty() || s->events.front().index >= response.index) {
    response.event_index = std::min(s->acked_event_index, response.index - 1);
  }
  Index event_index = response.event_index;
  s->responses.Put(sequence, std::move(response));
  return event_index;
}

absl::StatusOr<CachedResponse> SessionTable::CachedFor(uint64_t id, uint64_t sequence) const {
  const SessionState* s = Find(id);
  if (s == nullptr) return absl::NotFoundError(absl::StrCat("session ", id, " is not open"));
  const CachedResponse* cached = s->responses.Find(sequence);
  if (cached == nullptr) {
    return absl::NotFoundError(absl::StrCat("the response to command ", sequence, " of session ", id,
                                            " was already acknowledged and dropped"));
  }
  return *cached;
}

void SessionTable::Publish(uint64_t id, Index index, PublishedEvent event) {
  SessionState* s = FindMutable(id);
  if (s == nullptr) return;
  if (s->events.empty() || s->events.back().index != index) {
    s->events.push_back(EventBatch{index, s->last_event_index, {}});
    s->last_event_index = index;
  }
  s->events.back().events.push_back(std::move(event));
}

std::vector<EventBatch> SessionTable::EventsAfter(uint64_t id, Index after) const {
  std::vector<EventBatch> out;
  const SessionState* s = Find(id);
  if (s == nullptr) return out;
  for (const auto& b : s->events) {
    if (b.index > after) out.push_back(b);
  }
  return out;
}

const SessionState* SessionTable::Find(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

SessionState* SessionTable::FindMutable(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

std::vector<uint64_t> SessionTable::Suspects(LogTime now) const {
  std::vector<uint64_t> out;
  for (const auto& [id, s] : sessions_) {
    if (s.Suspect(now)) out.push_back(id);
  }
  return out;
}

std::optional<LogTime> SessionTable::NextExpiry() const {
  std::optional<LogTime> next;
  for (const auto& [id, s] : sessions_) {
    LogTime at = s.keep_alive + s.timeout;
    if (!next || at < *next) next = at;
  }
  return next;
}

std::string SessionTable::Digest() const {
  std::string out;
  for (const auto& [id, s] : sessions_) {
    absl::StrAppend(&out, id, "{", s.client_id, " t=", s.timeout, " ka=", s.keep_alive, "@", s.keep_alive_index,
                    " seq=", s.last_sequence, "/", s.acked_sequence, " resp=");
    s.responses.ForEach([&](uint64_t seq, const CachedResponse& r) {
      absl::StrAppend(&out, seq, ":", r.index, ":", r.result.ok() ? std::string(r.result->view()) : r.result.status().ToString(), ",");
    });
    absl::StrAppend(&out, " ev=", s.last_event_index, "/", s.acked_event_index, ":");
    for (const auto& b : s.events) {
      absl::StrAppend(&out, b.index, "<", b.previous, "[");
      for (const auto& e : b.events) absl::StrAppend(&out, e.name, "=", e.payload.size(), ";");
      absl::StrAppend(&out, "]");
    }
    absl::StrAppend(&out, "}\n");
  }
  return out;
}

}  // namespace caracal::server

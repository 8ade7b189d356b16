#ifndef CARACAL_FRAMEWORK_SERVER_SESSIONS_H_
#define CARACAL_FRAMEWORK_SERVER_SESSIONS_H_

// Client sessions as replicated state (DESIGN.md sections 4 and 6): what
// every server derives, identically, from the Register, KeepAlive,
// Unregister, Initialize and Command entries it applies.
//
//   * A session is opened by a Register entry; its id is that entry's index.
//   * Its keep-alive time is the log time of the last KeepAlive entry that
//     named it (or of the last Initialize entry: a new leader must never
//     expire healthy sessions in a burst).
//   * It is *suspect* once log time passes keep-alive + timeout. Suspicion
//     changes nothing by itself: the leader commits an Unregister{expired}
//     for it, and only applying that entry expires it — unless a keep-alive
//     was applied first, which clears the suspicion and voids the entry.
//   * Commands carry (session, sequence). The leader puts them into the log
//     in sequence order (CommandSequencer), so applying them in log order
//     runs them in sequence order: a duplicate is answered from the response
//     cache, an early one (a leader's mistake) is refused, and the cache is
//     trimmed by the client's acknowledged sequence.
//   * Events published by a command are kept per session, as batches tagged
//     with the command's index and the previous batch's index, until the
//     client acknowledges them.
//
// Invariants: for every open session, last_sequence == the highest sequence
// applied; event batch
// indexes increase and each names its predecessor. State machine thread only.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "framework/common/ring_buffer.h"
#include "framework/common/types.h"

namespace caracal::server {

struct PublishedEvent {
  std::string name;
  std::string payload;  // a codec Value message
  friend bool operator==(const PublishedEvent&, const PublishedEvent&) = default;
};

struct EventBatch {
  Index index = 0;     // the command that published these events
  Index previous = 0;  // the session's previous batch, 0 if none
  std::vector<PublishedEvent> events;
  friend bool operator==(const EventBatch&, const EventBatch&) = default;
};

// The response a session's command produced, kept until acknowledged.
struct CachedResponse {
  Index index = 0;
  absl::StatusOr<Bytes> result;  // shares the response's bytes (no copy)
  Index event_index = 0;  // the session's last event batch before `index` (the client delivers up to it first)
};

// A session's cached responses by command sequence, kept until the client
// acknowledges them. A session's commands run in sequence order, so responses
// arrive in increasing sequence and are trimmed from the front: a deque
// indexed by offset, with no node allocation per command.
// A session's cached responses by sequence number, in a ring that grows to
// the most responses ever outstanding at once and then stops allocating.
class ResponseCache {
 public:
  // Records `response` for `sequence`; a sequence at or below the trimmed
  // point is ignored, a recorded one is replaced.
  void Put(uint64_t sequence, CachedResponse response);
  const CachedResponse* Find(uint64_t sequence) const;
  // Drops every response at or below `sequence`.
  void TrimThrough(uint64_t sequence);
  // Gives every cached result storage of its own. Results are carved out of
  // the state machine thread's arena; a session that went quiet must not keep
  // a whole arena chunk alive for its last response.
  void Detach();
  size_t size() const;
  // (sequence, response) in increasing sequence.
  template <typename F>
  void ForEach(F f) const {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i]) f(first_ + i, *slots_[i]);
    }
  }

 private:
  uint64_t first_ = 1;  // the sequence of slots_.front()
  uint64_t detached_through_ = 0;  // Detach copied every result up to this sequence
  RingBuffer<std::optional<CachedResponse>> slots_;
};

struct SessionState {
  uint64_t id = 0;
  std::string client_id;
  LogTime timeout = 0;          // microseconds of log time
  LogTime keep_alive = 0;       // log time of the last keep-alive (or Initialize)
  Index keep_alive_index = 0;   // the KeepAlive entry that holds it live (0: none)
  uint64_t last_sequence = 0;
  uint64_t acked_sequence = 0;
  ResponseCache responses;
  std::deque<EventBatch> events;
  Index last_event_index = 0;
  Index acked_event_index = 0;

  bool Suspect(LogTime now) const { return now > keep_alive + timeout; }
};

// What the framework learned from applying a session entry, for listeners.
enum class SessionChange { kRegistered, kUnregistered, kExpired };

class SessionTable {
 public:
  // ---- entries ----
  SessionState& Register(Index index, LogTime time, std::string client_id, LogTime timeout);
  // A keep-alive for `id`; false if there is no such session. Trims the
  // response cache and the stored events by what the client acknowledged.
  bool KeepAlive(uint64_t id, Index index, LogTime time, uint64_t command_sequence, Index event_index);
  // Removes the session (closed by its client, or expired by the leader).
  // An expiry is void — nothing happens, false — if the session is no longer
  // suspect at `time` (a keep-alive was applied after the leader decided).
  // Returns the removed state.
  std::optional<SessionState> Unregister(uint64_t id, LogTime time, bool expired);
  // A new leader took over: every session's keep-alive restarts at `time`.
  void ResetKeepAlives(LogTime time);

  // ---- commands ----
  enum class Order { kNext, kDuplicate, kEarly, kUnknownSession };
  Order Classify(uint64_t id, uint64_t sequence) const;
  // The client has every response up to `sequence`: drops them from the
  // cache (as a keep-alive does). No-op for an unknown session.
  void AcknowledgeResponses(uint64_t id, uint64_t sequence);
  // Caches the response and returns its event index (0 if the session is gone).
  Index RecordResponse(uint64_t id, uint64_t sequence, CachedResponse response);
  // The cached response for a duplicate; NotFound if already trimmed.
  absl::StatusOr<CachedResponse> CachedFor(uint64_t id, uint64_t sequence) const;

  // ---- events ----
  void Publish(uint64_t id, Index index, PublishedEvent event);
  // Batches after `after`, in order.
  std::vector<EventBatch> EventsAfter(uint64_t id, Index after) const;

  // ---- queries ----
  const SessionState* Find(uint64_t id) const;
  SessionState* FindMutable(uint64_t id);
  const std::map<uint64_t, SessionState>& sessions() const { return sessions_; }
  // Open sessions suspect at `now`, in id order.
  std::vector<uint64_t> Suspects(LogTime now) const;
  // The earliest log time at which some open session becomes suspect.
  std::optional<LogTime> NextExpiry() const;
  // For determinism tests: everything, in a canonical text form.
  std::string Digest() const;

 private:
  static void Acknowledge(SessionState& s, uint64_t sequence);

  std::map<uint64_t, SessionState> sessions_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_SESSIONS_H_

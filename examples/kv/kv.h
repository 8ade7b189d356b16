#ifndef CARACAL_EXAMPLES_KV_KV_H_
#define CARACAL_EXAMPLES_KV_KV_H_

// The key-value example: a replicated map with put/get/remove, put with a
// time-to-live (expired by a log-time timer, identically on every server),
// compare-and-set, and watches.
//
// Each live key keeps the Commit of the Put that wrote it: the entry stays in
// the log while it defines the value, and is released when the key is
// overwritten, removed or expires — which is what lets the compactor drop
// everything else. A Put with a TTL is held by its expiry timer instead
// (Copycat's TTL pattern): the timer releases it when it expires the key, and
// cancelling the timer (overwrite, remove) destroys it, releasing the Put.
//
// Watches. Watch{prefix} registers the calling session's interest in every key
// that starts with `prefix` (the empty prefix: every key). From then on each
// change of such a key publishes a kChangedEvent ("kv.changed", a Changed) to
// that session: a Put (even of the same value: it is a new write), a
// successful CompareAndSet, a Remove of a present key, and a TTL expiry. A
// session watching several prefixes that match one key receives one event per
// change. Watches belong to sessions: a Watch without one (session 0) is
// rejected (FailedPrecondition), and a session's watches end with it (SessionListener::OnClose) or
// with Unwatch{prefix}. The Watch command is kept live (release tracking)
// while its watch stands, so replaying the live entries rebuilds the watches.
// Events go out in ascending session order, so every server publishes the
// same events at the same index.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "caracal/operation.h"
#include "caracal/state_machine.h"

namespace caracal::examples::kv {

inline constexpr int64_t kMaxTtlMs = int64_t{10} * 365 * 24 * 3600 * 1000;  // ten years

struct Put : Command<std::optional<std::string>> {  // returns the previous value
  static constexpr std::string_view kName = "kv.put";
  std::string key;
  std::string value;
  int64_t ttl_ms = 0;  // > 0: the key expires this long (in log time) after the put; at most kMaxTtlMs
  CARACAL_FIELDS(key, value, ttl_ms)
  CompactionMode compaction() const { return ttl_ms > 0 ? CompactionMode::kExpiring : CompactionMode::kRelease; }
};

struct Get : Query<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.get";
  std::string key;
  CARACAL_FIELDS(key)
};

struct Remove : Command<std::optional<std::string>> {  // returns the removed value
  static constexpr std::string_view kName = "kv.remove";
  std::string key;
  CARACAL_FIELDS(key)
  CompactionMode compaction() const { return CompactionMode::kTombstone; }
};

// Sets `value` only if the current value equals `expected` (nullopt: the key
// must be absent). Returns whether it did.
struct CompareAndSet : Command<bool> {
  static constexpr std::string_view kName = "kv.cas";
  std::string key;
  std::optional<std::string> expected;
  std::string value;
  CARACAL_FIELDS(key, expected, value)
  CompactionMode compaction() const { return CompactionMode::kRelease; }
};

struct Size : Query<uint64_t> {
  static constexpr std::string_view kName = "kv.size";
  CARACAL_FIELDS()
};

// Watches keys starting with `prefix` for the calling session. Returns false
// (and changes nothing) when the session already watched exactly `prefix`.
struct Watch : Command<bool> {
  static constexpr std::string_view kName = "kv.watch";
  std::string prefix;
  CARACAL_FIELDS(prefix)
  // Live while the watch stands.
  CompactionMode compaction() const { return CompactionMode::kRelease; }
};

// Ends the calling session's watch of exactly `prefix`. Returns whether there
// was one.
struct Unwatch : Command<bool> {
  static constexpr std::string_view kName = "kv.unwatch";
  std::string prefix;
  CARACAL_FIELDS(prefix)
  // It changes state only by ending a Watch: a tombstone.
  CompactionMode compaction() const { return CompactionMode::kTombstone; }
};

// The name of the event a watching session receives for each change.
inline constexpr std::string_view kChangedEvent = "kv.changed";

// Published as kChangedEvent.
struct Changed {
  std::string key;
  std::optional<std::string> value;  // the new value; nullopt: removed or expired
  Index index = 0;                   // where it changed (the command, or the entry whose time fired the TTL)
  CARACAL_FIELDS(key, value, index)
  friend bool operator==(const Changed&, const Changed&) = default;
};

// Invariants: watchers_ and by_prefix_ describe the same set of (session,
// prefix) pairs, and neither holds an empty set or map.
class KvStateMachine : public StateMachine, public SessionListener {
 public:
  void Configure(Executor& executor) override;

  std::optional<std::string> OnPut(Commit<Put> commit);
  std::optional<std::string> OnGet(Commit<Get> commit);
  std::optional<std::string> OnRemove(Commit<Remove> commit);
  bool OnCompareAndSet(Commit<CompareAndSet> commit);
  uint64_t OnSize(Commit<Size> commit);
  bool OnWatch(Commit<Watch> commit);
  bool OnUnwatch(Commit<Unwatch> commit);

  // Expiry and unregistration both end in OnClose: the session's watches end.
  void OnClose(const Session& session) override;

  // For tests: a digest of the whole map (keys, values, expiry deadlines) and
  // of the watches.
  std::string Digest() const;
  uint64_t expirations() const { return expirations_; }

 private:
  struct Value {
    std::string value;
    Index written_at = 0;
    Commit<Put> put;          // holds the writing Put (if it was a Put without a TTL)
    Scheduled expiry;         // active while a TTL is pending; its callback holds the Put
  };
  std::optional<std::string> Set(const std::string& key, std::string value, Index index, int64_t ttl_ms,
                                 std::optional<Commit<Put>> put);
  std::optional<std::string> Erase(const std::string& key, Index index);
  // The TTL of the Put at `written_at` ran out: the key goes.
  void Expire(const std::string& key, Index written_at);
  // Tells every session watching a prefix of `key` that it changed at `index`
  // (to *value; nullptr: removed).
  void Notify(const std::string& key, const std::string* value, Index index) const;
  void CheckInvariants() const;

  struct Watcher {
    Session session{0};                           // from its Watch commits: reaches its client
    std::map<std::string, Commit<Watch>> watches;  // prefix -> the Watch that made it, held live
  };

  Executor* executor_ = nullptr;
  absl::flat_hash_map<std::string, Value> map_;  // point lookups only (Digest sorts)
  uint64_t expirations_ = 0;
  std::map<uint64_t, Watcher> watchers_;                     // session -> its watches
  std::map<std::string, std::set<uint64_t>> by_prefix_;      // prefix -> sessions watching it
};

}  // namespace caracal::examples::kv

#endif  // CARACAL_EXAMPLES_KV_KV_H_

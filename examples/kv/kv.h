#ifndef CARACAL_EXAMPLES_KV_KV_H_
#define CARACAL_EXAMPLES_KV_KV_H_

// The key-value example: a replicated map with put/get/remove, put with a
// time-to-live (expired by a log-time timer, identically on every server) and
// compare-and-set.
//
// Each live key keeps the Commit of the Put that wrote it: the entry stays in
// the log while it defines the value, and is released when the key is
// overwritten, removed or expires — which is what lets the compactor drop
// everything else.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "caracal/operation.h"
#include "caracal/state_machine.h"

namespace caracal::examples::kv {

struct Put : Command<std::optional<std::string>> {  // returns the previous value
  static constexpr std::string_view kName = "kv.put";
  std::string key;
  std::string value;
  int64_t ttl_ms = 0;  // > 0: the key expires this long (in log time) after the put
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

class KvStateMachine : public StateMachine {
 public:
  void Configure(Executor& executor) override;

  std::optional<std::string> OnPut(Commit<Put> commit);
  std::optional<std::string> OnGet(Commit<Get> commit);
  std::optional<std::string> OnRemove(Commit<Remove> commit);
  bool OnCompareAndSet(Commit<CompareAndSet> commit);
  uint64_t OnSize(Commit<Size> commit);

  // For tests: a digest of the whole map (keys, values, expiry deadlines).
  std::string Digest() const;
  uint64_t expirations() const { return expirations_; }

 private:
  struct Value {
    std::string value;
    Index written_at = 0;
    Commit<Put> put;          // holds the writing Put (if it was a Put)
    Scheduled expiry;         // active while a TTL is pending
  };
  std::optional<std::string> Set(const std::string& key, std::string value, Index index, int64_t ttl_ms,
                                 std::optional<Commit<Put>> put);
  std::optional<std::string> Erase(const std::string& key);

  Executor* executor_ = nullptr;
  std::map<std::string, Value> map_;
  uint64_t expirations_ = 0;
};

}  // namespace caracal::examples::kv

#endif  // CARACAL_EXAMPLES_KV_KV_H_

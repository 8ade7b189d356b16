// Time-to-live keys in the key-value example (examples/kv), on three servers'
// StateMachineRunners fed the same log, so that every server can be looked at
// after every entry. What is checked: DESIGN.md section 4 (everything
// time-based is decided on log time, so every server decides the same thing
// at the same index), section 7 (a timer runs before the first entry whose
// timestamp reaches its deadline) and section 8 (a Commit is live while it
// contributes to state), through Copycat's TTL pattern
// (reference/copycat-state-machines.txt, "Handling Time-to-live Commands"):
// the expiry callback holds the Put's commit and releases it when it removes
// the key.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "examples/kv/kv.h"
#include "framework/server/state_machine_runner.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::examples::kv {
namespace {

using server::StateMachineRunner;

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

constexpr LogTime kMs = 1000;
constexpr LogTime kStart = 1'000 * kMs;

// Three servers applying the same log, entry by entry; every accessor answers
// for all three, in server order, so a test compares them at each index.
class ThreeServers {
 public:
  ThreeServers() {
    for (NodeId id = 1; id <= 3; ++id) {
      servers_.push_back(std::make_unique<StateMachineRunner>(std::make_unique<KvStateMachine>(), id));
    }
  }

  // Appends a command (without a session) stamped `time`; returns its index.
  template <CommandType Op>
  Index Submit(LogTime time, const Op& op) {
    return Append(time, EntryType::kCommand, serialization::EncodeCommandEntry(0, 0, codec::EncodeOperation(op)));
  }
  // Appends a Time entry (what an idle leader commits to move log time on).
  Index Time(LogTime time) { return Append(time, EntryType::kTime, std::string()); }

  std::vector<std::optional<std::string>> Get(const std::string& key) {
    std::vector<std::optional<std::string>> out;
    for (auto& s : servers_) {
      absl::StatusOr<std::string> bytes = s->Query(0, codec::EncodeOperation(kv::Get{.key = key}));
      EXPECT_TRUE(bytes.ok()) << bytes.status();
      out.push_back(bytes.ok() ? *codec::DecodeResult<kv::Get>(*bytes) : std::nullopt);
    }
    return out;
  }
  std::vector<bool> Released(Index index) const {
    std::vector<bool> out;
    for (const auto& s : servers_) out.push_back(s->tracker().IsReleased(index));
    return out;
  }
  std::vector<size_t> PendingTimers() const {
    std::vector<size_t> out;
    for (const auto& s : servers_) out.push_back(s->executor().pending_timers());
    return out;
  }
  std::vector<uint64_t> Expirations() const {
    std::vector<uint64_t> out;
    for (const auto& s : servers_) out.push_back(static_cast<KvStateMachine&>(s->state_machine()).expirations());
    return out;
  }

 private:
  Index Append(LogTime time, EntryType type, std::string payload) {
    Index index = servers_[0]->applied() + 1;
    for (auto& s : servers_) {
      s->ApplyEntry(Entry{index, /*term=*/1, time, type, Bytes(payload)});
      EXPECT_EQ(s->applied(), index);
    }
    return index;
  }

  std::vector<std::unique_ptr<StateMachineRunner>> servers_;
};

using Values = std::vector<std::optional<std::string>>;
using Flags = std::vector<bool>;
const Flags kNone = {false, false, false};
const Flags kAll = {true, true, true};
Values Everywhere(std::optional<std::string> v) { return Values(3, v); }

TEST(KvTtlTest, AKeyExpiresOnLogTimeAtTheSameIndexOnEveryServerAndItsPutIsReleasedThen) {
  ThreeServers servers;
  Index put = servers.Submit(kStart, Put{.key = "k", .value = "v", .ttl_ms = 5});  // deadline kStart + 5 ms

  // Before the deadline: present everywhere, the Put live (its expiry holds it).
  servers.Submit(kStart + 2 * kMs, Put{.key = "other", .value = "x"});
  servers.Time(kStart + 5 * kMs - 1);
  EXPECT_EQ(servers.Get("k"), Everywhere("v"));
  EXPECT_EQ(servers.Released(put), kNone);
  EXPECT_EQ(servers.PendingTimers(), std::vector<size_t>(3, 1));

  // The first entry whose timestamp reaches the deadline expires it, on every
  // server, and the Put is released at that index.
  servers.Time(kStart + 5 * kMs);
  EXPECT_EQ(servers.Get("k"), Everywhere(std::nullopt));
  EXPECT_EQ(servers.Released(put), kAll);
  EXPECT_EQ(servers.Expirations(), std::vector<uint64_t>(3, 1));
  EXPECT_EQ(servers.PendingTimers(), std::vector<size_t>(3, 0));
  EXPECT_EQ(servers.Get("other"), Everywhere("x"));
}

TEST(KvTtlTest, AnOverwriteBeforeTheDeadlineReleasesTheEarlierPutAndCancelsItsExpiry) {
  ThreeServers servers;
  Index first = servers.Submit(kStart, Put{.key = "k", .value = "1", .ttl_ms = 5});
  Index second = servers.Submit(kStart + 1 * kMs, Put{.key = "k", .value = "2"});

  EXPECT_EQ(servers.Released(first), kAll) << "released by the overwrite, not at the old deadline";
  EXPECT_EQ(servers.Released(second), kNone);
  EXPECT_EQ(servers.PendingTimers(), std::vector<size_t>(3, 0));

  servers.Time(kStart + 10 * kMs);  // well past the first put's deadline
  EXPECT_EQ(servers.Get("k"), Everywhere("2"));
  EXPECT_EQ(servers.Expirations(), std::vector<uint64_t>(3, 0));
  EXPECT_EQ(servers.Released(second), kNone);
}

TEST(KvTtlTest, AnOverwriteWithANewTtlExpiresOnlyAtItsOwnDeadline) {
  ThreeServers servers;
  Index first = servers.Submit(kStart, Put{.key = "k", .value = "1", .ttl_ms = 5});
  Index second = servers.Submit(kStart + 4 * kMs, Put{.key = "k", .value = "2", .ttl_ms = 5});  // until +9 ms
  EXPECT_EQ(servers.Released(first), kAll);

  servers.Time(kStart + 8 * kMs);  // past the first deadline only
  EXPECT_EQ(servers.Get("k"), Everywhere("2"));
  EXPECT_EQ(servers.Released(second), kNone);

  servers.Time(kStart + 9 * kMs);
  EXPECT_EQ(servers.Get("k"), Everywhere(std::nullopt));
  EXPECT_EQ(servers.Released(second), kAll);
  EXPECT_EQ(servers.Expirations(), std::vector<uint64_t>(3, 1));
}

TEST(KvTtlTest, ARemoveBeforeTheDeadlineReleasesThePutAndCancelsItsExpiry) {
  ThreeServers servers;
  Index put = servers.Submit(kStart, Put{.key = "k", .value = "v", .ttl_ms = 5});
  servers.Submit(kStart + 1 * kMs, Remove{.key = "k"});
  EXPECT_EQ(servers.Released(put), kAll);
  EXPECT_EQ(servers.PendingTimers(), std::vector<size_t>(3, 0));

  // A new put of the key (no TTL) is not touched by the old deadline.
  Index again = servers.Submit(kStart + 2 * kMs, Put{.key = "k", .value = "again"});
  servers.Time(kStart + 10 * kMs);
  EXPECT_EQ(servers.Get("k"), Everywhere("again"));
  EXPECT_EQ(servers.Released(again), kNone);
  EXPECT_EQ(servers.Expirations(), std::vector<uint64_t>(3, 0));
}

}  // namespace
}  // namespace caracal::examples::kv

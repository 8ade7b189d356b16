// Watches in the key-value example (examples/kv), applied through the
// StateMachineRunner with the entries a real server logs: Register, Command,
// KeepAlive, Unregister, Time. Events are read back from the session table,
// as the server would push them.

#include <map>
#include <string>
#include <vector>

#include "examples/kv/kv.h"
#include "framework/server/state_machine_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::examples::kv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using server::StateMachineRunner;

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

constexpr LogTime kMs = 1000;

// One runner fed log entries built like the real server builds them; every
// entry is kept so that the log can be replayed on a fresh runner.
class WatchHarness {
 public:
  WatchHarness() : runner_(std::make_unique<KvStateMachine>(), /*id=*/1) {}

  void Apply(Entry entry) {
    time_ = std::max(time_, entry.timestamp);
    for (auto& r : runner_.ApplyEntry(entry)) responses_.insert_or_assign(r.index, std::move(r.result));
    log_.push_back(std::move(entry));
  }
  Index Next() const { return runner_.applied() + 1; }
  LogTime Tick(LogTime by = kMs) { return time_ += by; }

  uint64_t Open(uint64_t timeout_ms = 10'000) {
    Index index = Next();
    Apply(Entry{index, 1, Tick(), EntryType::kRegister,
                Bytes(serialization::EncodeRegisterEntry({"client", timeout_ms}))});
    return index;
  }
  // Applies `op` from `session` (0: no session) with its next sequence.
  template <typename Op>
  absl::StatusOr<ResultOf<Op>> Submit(uint64_t session, const Op& op, LogTime advance = kMs) {
    uint64_t sequence = session == 0 ? 0 : ++sequences_[session];
    last_command_ = Next();
    Apply(Entry{last_command_, 1, Tick(advance), EntryType::kCommand,
                Bytes(serialization::EncodeCommandEntry(session, sequence, codec::EncodeOperation(op)))});
    const absl::StatusOr<std::string>& result = responses_.at(last_command_);
    if (!result.ok()) return result.status();
    return codec::DecodeResult<Op>(*result);
  }
  Index last_command() const { return last_command_; }
  // A Time entry `advance` later: fires the timers due by then.
  Index Time(LogTime advance) {
    Index index = Next();
    Apply(Entry{index, 1, Tick(advance), EntryType::kTime, Bytes()});
    return index;
  }
  void Close(uint64_t session) { Unregister(session, /*expired=*/false); }
  void Unregister(uint64_t session, bool expired, LogTime advance = kMs) {
    Apply(Entry{Next(), 1, Tick(advance), EntryType::kUnregister,
                Bytes(serialization::EncodeUnregisterEntry({session, expired}))});
  }

  // Every unacknowledged "kv.changed" event of `session`, in order.
  std::vector<Changed> ChangesFor(uint64_t session) const {
    std::vector<Changed> out;
    for (const auto& batch : runner_.sessions().EventsAfter(session, 0)) {
      for (const auto& event : batch.events) {
        EXPECT_EQ(event.name, kChangedEvent);
        auto changed = codec::FromBytes<Changed>(event.payload);
        EXPECT_TRUE(changed.ok()) << changed.status();
        if (changed.ok()) {
          EXPECT_EQ(changed->index, batch.index) << "an event is published at the index it describes";
          out.push_back(*changed);
        }
      }
    }
    return out;
  }
  bool IsReleased(Index index) const { return runner_.tracker().IsReleased(index); }
  std::string Digest() { return static_cast<KvStateMachine&>(runner_.state_machine()).Digest(); }
  const std::vector<Entry>& log() const { return log_; }
  StateMachineRunner& runner() { return runner_; }

 private:
  StateMachineRunner runner_;
  LogTime time_ = 0;
  Index last_command_ = 0;
  std::map<uint64_t, uint64_t> sequences_;
  std::map<Index, absl::StatusOr<std::string>> responses_;
  std::vector<Entry> log_;
};

Changed Set(std::string key, std::string value, Index index) {
  return Changed{.key = std::move(key), .value = std::move(value), .index = index};
}
Changed Gone(std::string key, Index index) { return Changed{.key = std::move(key), .value = std::nullopt, .index = index}; }

TEST(KvWatchTest, AWatcherIsToldOfEveryChangeOfAMatchingKeyAndOfNothingElse) {
  WatchHarness h;
  uint64_t s = h.Open();
  ASSERT_EQ(h.Submit(s, Watch{.prefix = "user/"}).value_or(false), true);

  ASSERT_TRUE(h.Submit(0, Put{.key = "user/a", .value = "1"}).ok());
  Index put = h.last_command();
  ASSERT_TRUE(h.Submit(0, Put{.key = "other", .value = "x"}).ok());
  ASSERT_TRUE(h.Submit(0, Put{.key = "user", .value = "shorter than the prefix"}).ok());
  ASSERT_EQ(h.Submit(0, CompareAndSet{.key = "user/a", .expected = "nope", .value = "2"}).value_or(true), false);
  ASSERT_EQ(h.Submit(0, CompareAndSet{.key = "user/a", .expected = "1", .value = "2"}).value_or(false), true);
  Index cas = h.last_command();
  ASSERT_TRUE(h.Submit(0, Remove{.key = "user/missing"}).ok());
  ASSERT_EQ(h.Submit(0, Remove{.key = "user/a"}).value_or(std::nullopt), "2");
  Index remove = h.last_command();

  EXPECT_THAT(h.ChangesFor(s), ElementsAre(Set("user/a", "1", put), Set("user/a", "2", cas), Gone("user/a", remove)))
      << "a failed cas and a remove of a missing key change nothing and publish nothing";
}

TEST(KvWatchTest, AnExpiredKeyIsPublishedAsRemovedAtTheEntryThatFiredItsTimer) {
  WatchHarness h;
  uint64_t s = h.Open();
  ASSERT_TRUE(h.Submit(s, Watch{.prefix = "t"}).ok());
  ASSERT_TRUE(h.Submit(0, Put{.key = "temp", .value = "v", .ttl_ms = 5}).ok());
  Index put = h.last_command();

  Index early = h.Time(2 * kMs);  // not yet due
  Index fired = h.Time(10 * kMs);

  EXPECT_NE(early, fired);
  EXPECT_THAT(h.ChangesFor(s), ElementsAre(Set("temp", "v", put), Gone("temp", fired)));
  EXPECT_EQ(h.Digest().find("temp="), std::string::npos) << h.Digest();
}

TEST(KvWatchTest, EachWatchingSessionIsToldOnceEvenWhenSeveralOfItsPrefixesMatch) {
  WatchHarness h;
  uint64_t a = h.Open(), b = h.Open(), idle = h.Open();
  ASSERT_TRUE(h.Submit(a, Watch{.prefix = ""}).ok());  // every key
  ASSERT_TRUE(h.Submit(a, Watch{.prefix = "ab"}).ok());
  ASSERT_TRUE(h.Submit(b, Watch{.prefix = "abc"}).ok());

  ASSERT_TRUE(h.Submit(b, Put{.key = "abc", .value = "1"}).ok());  // the writer is told too: it watches
  Index abc = h.last_command();
  ASSERT_TRUE(h.Submit(idle, Put{.key = "b", .value = "2"}).ok());
  Index other = h.last_command();

  EXPECT_THAT(h.ChangesFor(a), ElementsAre(Set("abc", "1", abc), Set("b", "2", other)));
  EXPECT_THAT(h.ChangesFor(b), ElementsAre(Set("abc", "1", abc)));
  EXPECT_TRUE(h.ChangesFor(idle).empty());
}

TEST(KvWatchTest, WatchingWithoutASessionIsRejectedAndChangesNothing) {
  WatchHarness h;
  std::string before = h.Digest();
  auto watch = h.Submit(0, Watch{.prefix = "k"});
  ASSERT_FALSE(watch.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(watch.status())) << watch.status();
  EXPECT_THAT(std::string(watch.status().message()), HasSubstr("session 0"));
  EXPECT_THAT(std::string(watch.status().message()), HasSubstr("watches belong to client sessions"));
  EXPECT_TRUE(h.IsReleased(h.last_command()));
  auto unwatch = h.Submit(0, Unwatch{.prefix = "k"});
  ASSERT_FALSE(unwatch.ok());
  EXPECT_THAT(std::string(unwatch.status().message()), HasSubstr("session 0"));
  EXPECT_EQ(h.Digest(), before);
  EXPECT_TRUE(h.Submit(0, Put{.key = "k", .value = "v"}).ok()) << "nobody watches: nothing to publish";
}

TEST(KvWatchTest, TheWatchCommandStaysLiveUntilUnwatchOrARepeatIsReleasedAtOnce) {
  WatchHarness h;
  uint64_t s = h.Open();
  ASSERT_EQ(h.Submit(s, Watch{.prefix = "p"}).value_or(false), true);
  Index watch = h.last_command();
  ASSERT_EQ(h.Submit(s, Watch{.prefix = "p"}).value_or(true), false) << "already watching";
  Index repeat = h.last_command();
  EXPECT_FALSE(h.IsReleased(watch)) << "an active watch keeps its Watch entry in the log";
  EXPECT_TRUE(h.IsReleased(repeat));

  ASSERT_EQ(h.Submit(s, Unwatch{.prefix = "p"}).value_or(false), true);
  EXPECT_TRUE(h.IsReleased(watch));
  EXPECT_TRUE(h.IsReleased(h.last_command())) << "Unwatch is a tombstone";
  ASSERT_EQ(h.Submit(s, Unwatch{.prefix = "p"}).value_or(true), false) << "nothing left to unwatch";

  ASSERT_TRUE(h.Submit(0, Put{.key = "p1", .value = "v"}).ok());
  EXPECT_TRUE(h.ChangesFor(s).empty());
}

TEST(KvWatchTest, AClosedSessionsWatchesEndAndTheirCommandsAreReleased) {
  WatchHarness h;
  uint64_t s = h.Open(), other = h.Open();
  ASSERT_TRUE(h.Submit(s, Watch{.prefix = "a"}).ok());
  Index first = h.last_command();
  ASSERT_TRUE(h.Submit(s, Watch{.prefix = "b"}).ok());
  Index second = h.last_command();
  ASSERT_TRUE(h.Submit(other, Watch{.prefix = "a"}).ok());

  h.Close(s);

  EXPECT_TRUE(h.IsReleased(first));
  EXPECT_TRUE(h.IsReleased(second));
  ASSERT_TRUE(h.Submit(0, Put{.key = "a1", .value = "v"}).ok()) << "publishing must not reach the closed session";
  EXPECT_THAT(h.ChangesFor(other), ElementsAre(Set("a1", "v", h.last_command())));
  EXPECT_THAT(h.Digest(), HasSubstr("|watches:" + std::to_string(other) + ":a@"));
  EXPECT_THAT(h.Digest(), ::testing::Not(HasSubstr(std::to_string(s) + ":b@")));
}

TEST(KvWatchTest, AnExpiredSessionsWatchesEnd) {
  WatchHarness h;
  uint64_t s = h.Open(/*timeout_ms=*/100);
  ASSERT_TRUE(h.Submit(s, Watch{.prefix = ""}).ok());
  Index watch = h.last_command();

  h.Unregister(s, /*expired=*/true, /*advance=*/500 * kMs);  // keep-alives stopped long ago

  ASSERT_EQ(h.runner().sessions().Find(s), nullptr);
  EXPECT_TRUE(h.IsReleased(watch));
  EXPECT_TRUE(h.Submit(0, Put{.key = "k", .value = "v", .ttl_ms = 1}).ok());
  h.Time(5 * kMs);  // the expiry publishes to nobody
  EXPECT_EQ(h.Digest(), "") << "no key and no watch left";
}

TEST(KvWatchTest, ReplayingTheLogRebuildsTheSameWatchesAndEvents) {
  WatchHarness h;
  uint64_t a = h.Open(), b = h.Open();
  ASSERT_TRUE(h.Submit(a, Watch{.prefix = "x"}).ok());
  ASSERT_TRUE(h.Submit(b, Watch{.prefix = "x"}).ok());
  ASSERT_TRUE(h.Submit(a, Put{.key = "x1", .value = "1", .ttl_ms = 3}).ok());
  ASSERT_TRUE(h.Submit(b, Unwatch{.prefix = "x"}).ok());
  ASSERT_TRUE(h.Submit(b, Watch{.prefix = "x1"}).ok());
  h.Time(10 * kMs);
  ASSERT_TRUE(h.Submit(0, CompareAndSet{.key = "x1", .expected = std::nullopt, .value = "2"}).ok());

  WatchHarness replay;
  for (const Entry& e : h.log()) replay.Apply(e);

  EXPECT_EQ(replay.Digest(), h.Digest());
  EXPECT_EQ(replay.runner().sessions().Digest(), h.runner().sessions().Digest());
  EXPECT_EQ(replay.ChangesFor(a), h.ChangesFor(a));
  EXPECT_EQ(replay.ChangesFor(b), h.ChangesFor(b));
  EXPECT_EQ(h.ChangesFor(a).size(), 3u);  // put, expiry, cas
  EXPECT_EQ(h.ChangesFor(b).size(), 3u);  // put (before its unwatch), expiry, cas (through "x1")
}

}  // namespace
}  // namespace caracal::examples::kv

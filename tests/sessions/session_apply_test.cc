// Sessions applied through the StateMachineRunner: exactly-once commands,
// sequencing, expiry, listeners, events and release tracking.

#include <limits>
#include <map>

#include "framework/server/state_machine_runner.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {
namespace {

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

struct Incr : Command<int64_t> {  // returns the counter after adding
  static constexpr std::string_view kName = "test.incr";
  int64_t by = 1;
  CARACAL_FIELDS(by)
};
struct Shout : Command<void> {  // publishes one event per word
  static constexpr std::string_view kName = "test.shout";
  std::vector<std::string> words;
  CARACAL_FIELDS(words)
};

class Counter : public StateMachine, public SessionListener {
 public:
  void Configure(Executor& executor) override {
    executor.Register<Incr>(this, &Counter::OnIncr);
    executor.Register<Shout>(this, &Counter::OnShout);
  }
  int64_t OnIncr(Commit<Incr> c) {
    ++applications;
    return value += c->by;
  }
  void OnShout(Commit<Shout> c) {
    for (const auto& w : c->words) c.session().Publish("word", w);
  }
  void OnRegister(const Session& s) override { log.push_back("register " + std::to_string(s.id())); }
  void OnUnregister(const Session& s) override { log.push_back("unregister " + std::to_string(s.id())); }
  void OnExpire(const Session& s) override { log.push_back("expire " + std::to_string(s.id())); }
  void OnClose(const Session& s) override { log.push_back("close " + std::to_string(s.id())); }

  int64_t value = 0;
  int applications = 0;
  std::vector<std::string> log;
};

constexpr LogTime kMs = 1000;

class SessionApplyTest : public ::testing::Test {
 protected:
  SessionApplyTest() {
    auto sm = std::make_unique<Counter>();
    counter_ = sm.get();
    runner_ = std::make_unique<StateMachineRunner>(std::move(sm), 1);
  }

  Index Next() const { return runner_->applied() + 1; }

  uint64_t Register(LogTime time, uint64_t timeout_ms = 1000) {
    Index index = Next();
    auto r = runner_->Apply(Entry{index, 1, time, EntryType::kRegister,
                                  Bytes(serialization::EncodeRegisterEntry({"c", timeout_ms}))});
    EXPECT_TRUE(r.ok()) << r.status();
    return index;
  }
  template <typename Op>
  std::vector<StateMachineRunner::Response> Submit(LogTime time, uint64_t session, uint64_t sequence, const Op& op,
                                                   uint64_t acked_sequence = 0) {
    return runner_->ApplyEntry(Entry{Next(), 1, time, EntryType::kCommand,
                                     Bytes(serialization::EncodeCommandEntry(
                                         session, sequence, codec::EncodeOperation(op), acked_sequence))});
  }
  void KeepAlive(LogTime time, uint64_t session, uint64_t sequence = 0, Index event_index = 0) {
    (void)runner_->Apply(Entry{Next(), 1, time, EntryType::kKeepAlive,
                         Bytes(serialization::EncodeKeepAliveEntry({{{session, sequence, event_index}}}))});
  }
  void Unregister(LogTime time, uint64_t session, bool expired) {
    (void)runner_->Apply(Entry{Next(), 1, time, EntryType::kUnregister,
                         Bytes(serialization::EncodeUnregisterEntry({session, expired}))});
  }
  static int64_t Value(const StateMachineRunner::Response& r) {
    EXPECT_TRUE(r.result.ok()) << r.result.status();
    return r.result.ok() ? *codec::DecodeResult<Incr>(*r.result) : -1;
  }

  Counter* counter_;
  std::unique_ptr<StateMachineRunner> runner_;
};

TEST_F(SessionApplyTest, ARetriedCommandIsAppliedOnceAndAnsweredFromTheCache) {
  uint64_t s = Register(0);
  auto first = Submit(1, s, 1, Incr{.by = 5});
  auto retry = Submit(2, s, 1, Incr{.by = 5});  // the same (session, sequence) logged again
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(Value(first[0]), 5);
  EXPECT_EQ(Value(retry[0]), 5);
  EXPECT_EQ(counter_->applications, 1);
  EXPECT_TRUE(runner_->tracker().IsReleased(retry[0].index)) << "a duplicate entry holds no state";
}

// Copycat: a commit's index "is guaranteed to be unique and monotonically
// increasing", and commands are applied "in strict order on all servers". The
// leader sequences a session's commands before they enter the log; a command
// that nonetheless reaches the log ahead of its predecessor is refused and
// never runs below an index already applied.
TEST_F(SessionApplyTest, AnEarlyCommandIsRefusedAndNeverRunsBelowAnAppliedIndex) {
  uint64_t s = Register(0);
  auto third = Submit(1, s, 3, Incr{.by = 100});
  auto second = Submit(2, s, 2, Incr{.by = 10});
  ASSERT_EQ(third.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(third[0].result.status())) << third[0].result.status();
  EXPECT_TRUE(absl::IsAborted(second[0].result.status())) << second[0].result.status();
  EXPECT_EQ(counter_->applications, 0);
  EXPECT_TRUE(runner_->tracker().IsReleased(s + 1)) << "a refused command holds nothing";
  // The retries, in order, run at their own (increasing) indexes.
  Index first_index = Next();
  EXPECT_EQ(Value(Submit(3, s, 1, Incr{.by = 1})[0]), 1);
  EXPECT_EQ(Value(Submit(4, s, 2, Incr{.by = 10})[0]), 11);
  auto retried = Submit(5, s, 3, Incr{.by = 100});
  EXPECT_EQ(Value(retried[0]), 111);
  EXPECT_EQ(retried[0].index, first_index + 2);
  EXPECT_EQ(counter_->applications, 3);
}

// DESIGN.md section 6: a command's response completes after every event
// published before it, and its own events follow its response. With commands
// run at their own index, a command's events are at its own index.
TEST_F(SessionApplyTest, EachCommandPublishesAtItsOwnIndexAfterTheBatchesBeforeIt) {
  uint64_t s = Register(0);
  Submit(1, s, 1, Shout{.words = {"a"}});
  Index first = runner_->applied();
  auto early = Submit(2, s, 3, Shout{.words = {"c"}});  // refused: 2 is missing
  ASSERT_EQ(early.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(early[0].result.status()));
  EXPECT_TRUE(runner_->TakePublished().empty()) << "a refused command publishes nothing";
  auto second = Submit(3, s, 2, Shout{.words = {"b"}});
  Index second_index = runner_->applied();
  auto third = Submit(4, s, 3, Shout{.words = {"c"}});
  Index third_index = runner_->applied();
  ASSERT_EQ(second.size(), 1u);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(second[0].event_index, first);
  EXPECT_EQ(third[0].event_index, second_index);
  auto batches = runner_->sessions().EventsAfter(s, 0);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1].index, second_index);
  EXPECT_EQ(batches[1].previous, first);
  EXPECT_EQ(batches[2].index, third_index);
  EXPECT_EQ(batches[2].previous, second_index);
  std::vector<std::pair<uint64_t, Index>> published = runner_->TakePublished();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0], std::make_pair(s, third_index));
}

TEST_F(SessionApplyTest, AKeepAliveAnswersWhichOfItsSessionsAreNotOpen) {
  uint64_t s = Register(0);
  auto r = runner_->ApplyEntry(Entry{Next(), 1, 1, EntryType::kKeepAlive,
                                     Bytes(serialization::EncodeKeepAliveEntry({{{s, 0, 0}, {99, 0, 0}}}))});
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].result.ok()) << r[0].result.status();
  EXPECT_EQ(DecodeUnknownSessions(*r[0].result), std::vector<uint64_t>{99});
  // A client's unregister of an unknown session says so; an expiry is void.
  auto gone = runner_->ApplyEntry(Entry{Next(), 1, 2, EntryType::kUnregister,
                                        Bytes(serialization::EncodeUnregisterEntry({77, false}))});
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_TRUE(absl::IsUnauthenticated(gone[0].result.status())) << gone[0].result.status();
  auto expired = runner_->ApplyEntry(Entry{Next(), 1, 3, EntryType::kUnregister,
                                           Bytes(serialization::EncodeUnregisterEntry({77, true}))});
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_TRUE(expired[0].result.ok());
}

TEST_F(SessionApplyTest, AHugeTimeoutInARegisterEntryDoesNotOverflowLogTime) {
  uint64_t s = Register(1'000'000, std::numeric_limits<uint64_t>::max());
  ASSERT_NE(runner_->sessions().Find(s), nullptr);
  EXPECT_FALSE(runner_->sessions().Find(s)->Suspect(LogTime{1'000'000} + LogTime{100'000'000'000'000}));  // 3 years on
  EXPECT_GT(*runner_->NextDeadline(), LogTime{1'000'000});
}

TEST_F(SessionApplyTest, CommandsOfAnUnknownSessionFailAndChangeNothing) {
  auto r = Submit(1, 42, 1, Incr{});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(absl::IsUnauthenticated(r[0].result.status())) << r[0].result.status();
  EXPECT_EQ(counter_->applications, 0);
}

TEST_F(SessionApplyTest, AcknowledgedResponsesAreDropped) {
  uint64_t s = Register(0);
  Submit(1, s, 1, Incr{});
  KeepAlive(2, s, /*sequence=*/1);
  auto retry = Submit(3, s, 1, Incr{});
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_TRUE(absl::IsNotFound(retry[0].result.status()));
  EXPECT_EQ(counter_->applications, 1) << "never applied twice, even when the cache was trimmed";
}

TEST_F(SessionApplyTest, ACommandCarriesTheAcknowledgementThatDropsCachedResponses) {
  uint64_t s = Register(0);
  Submit(1, s, 1, Incr{});
  Submit(2, s, 2, Incr{}, /*acked_sequence=*/1);
  const SessionState* state = runner_->sessions().Find(s);
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(state->acked_sequence, 1u);
  EXPECT_EQ(state->responses.size(), 1u) << "only command 2's response is still cached";
  auto retry = Submit(3, s, 1, Incr{});
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_TRUE(absl::IsNotFound(retry[0].result.status()));
  auto retry2 = Submit(4, s, 2, Incr{});
  ASSERT_EQ(retry2.size(), 1u);
  EXPECT_TRUE(retry2[0].result.ok()) << "command 2 was not acknowledged: still answered from the cache";
  // An acknowledgement beyond what ran trims only what exists; the command itself still runs.
  auto third = Submit(5, s, 3, Incr{}, /*acked_sequence=*/99);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_TRUE(third[0].result.ok());
  EXPECT_EQ(runner_->sessions().Find(s)->acked_sequence, 2u);
  EXPECT_EQ(counter_->applications, 3);
}

TEST_F(SessionApplyTest, ExpiryNeedsTheLeadersEntryAndIsVoidAfterAKeepAlive) {
  uint64_t s = Register(0, /*timeout_ms=*/100);
  Submit(200 * kMs, 0, 0, Incr{});  // log time passes the timeout
  EXPECT_EQ(runner_->SuspectSessions(), std::vector<uint64_t>{s});
  EXPECT_NE(runner_->sessions().Find(s), nullptr) << "suspicion alone changes nothing";
  KeepAlive(210 * kMs, s);
  Unregister(215 * kMs, s, /*expired=*/true);  // decided before the keep-alive was applied
  EXPECT_NE(runner_->sessions().Find(s), nullptr);
  Unregister(400 * kMs, s, /*expired=*/true);
  EXPECT_EQ(runner_->sessions().Find(s), nullptr);
  EXPECT_EQ(counter_->log, (std::vector<std::string>{"register 1", "expire 1", "close 1"}));
}

TEST_F(SessionApplyTest, ANewLeaderNeverExpiresHealthySessionsInABurst) {
  uint64_t a = Register(0, 100), b = Register(0, 100);
  // Leaderless for a second, then a new leader's Initialize.
  (void)runner_->Apply(Entry{Next(), 2, 1000 * kMs, EntryType::kInitialize, Bytes()});
  EXPECT_TRUE(runner_->SuspectSessions().empty());
  EXPECT_NE(runner_->sessions().Find(a), nullptr);
  EXPECT_NE(runner_->sessions().Find(b), nullptr);
}

TEST_F(SessionApplyTest, ClosingASessionCallsTheListenerAndReleasesItsEntries) {
  uint64_t s = Register(0);
  KeepAlive(1, s);
  Index keep_alive = s + 1;
  EXPECT_FALSE(runner_->tracker().IsReleased(s)) << "the Register entry is live while the session is open";
  EXPECT_FALSE(runner_->tracker().IsReleased(keep_alive));
  KeepAlive(2, s);
  EXPECT_TRUE(runner_->tracker().IsReleased(keep_alive)) << "a later keep-alive releases the earlier one";
  Unregister(3, s, /*expired=*/false);
  EXPECT_TRUE(runner_->tracker().IsReleased(s));
  EXPECT_TRUE(runner_->tracker().IsReleased(keep_alive + 1));
  EXPECT_EQ(counter_->log, (std::vector<std::string>{"register 1", "unregister 1", "close 1"}));
}

TEST_F(SessionApplyTest, PublishedEventsAreKeptUntilAcknowledged) {
  uint64_t s = Register(0);
  auto r = Submit(1, s, 1, Shout{.words = {"hello", "world"}});
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].result.ok()) << r[0].result.status();
  Index shout = r[0].index;
  auto batches = runner_->sessions().EventsAfter(s, 0);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].index, shout);
  ASSERT_EQ(batches[0].events.size(), 2u);
  EXPECT_EQ(*codec::FromBytes<std::string>(batches[0].events[1].payload), "world");
  EXPECT_FALSE(runner_->tracker().IsReleased(shout)) << "a command whose events are unacknowledged stays";
  KeepAlive(2, s, 1, /*event_index=*/shout);
  EXPECT_TRUE(runner_->sessions().EventsAfter(s, 0).empty());
  EXPECT_TRUE(runner_->tracker().IsReleased(shout));
}

TEST_F(SessionApplyTest, PublishingWithoutASessionIsAnError) {
  auto r = Submit(1, 0, 0, Shout{.words = {"x"}});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].result.ok());
  EXPECT_NE(std::string(r[0].result.status().message()).find("without a session"), std::string::npos)
      << r[0].result.status();
}

TEST_F(SessionApplyTest, NextDeadlineIsTheEarliestExpiry) {
  Register(10 * kMs, 100);
  EXPECT_EQ(runner_->NextDeadline(), 110 * kMs);
}

}  // namespace
}  // namespace caracal::server

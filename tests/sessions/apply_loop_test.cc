// ApplyLoop's session plumbing on a memory log: waiters replaced after a
// leader change, a retry of a held-back command answered with it, and event
// subscriptions (resend, live pushes after the response, lagging servers).

#include "framework/server/apply_loop.h"

#include <future>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "caracal/state_machine.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {
namespace {

using namespace std::chrono_literals;

struct Say : Command<int64_t> {  // publishes `word` to the caller; returns how many were said
  static constexpr std::string_view kName = "test.say";
  std::string word;
  CARACAL_FIELDS(word)
};

class Sayer : public StateMachine {
 public:
  void Configure(Executor& executor) override { executor.Register<Say>(this, &Sayer::OnSay); }
  int64_t OnSay(Commit<Say> c) {
    c.session().Publish("said", c->word);
    return ++said_;
  }

 private:
  int64_t said_ = 0;
};

// Everything the loop hands out, in order, as text.
struct Journal {
  std::mutex mu;
  std::vector<std::string> lines;
  void Add(std::string s) {
    std::lock_guard lock(mu);
    lines.push_back(std::move(s));
  }
  std::vector<std::string> Take() {
    std::lock_guard lock(mu);
    return std::exchange(lines, {});
  }
};

class ApplyLoopTest : public ::testing::Test {
 protected:
  ApplyLoopTest() {
    storage::LogOptions o;
    o.level = storage::StorageLevel::kMemory;
    log_ = *storage::Log::Open(o);
    loop_ = std::make_unique<ApplyLoop>(log_.get(), std::make_unique<Sayer>(), 1);
    loop_->SetEventSink([this](uint64_t subscriber, uint64_t session, const EventBatch& b) {
      journal_.Add(absl::StrCat("to ", subscriber, ": session ", session, " batch ", b.index, " after ", b.previous,
                                " (", b.events.size(), " events)"));
    });
    loop_->SetRouteSink([this](std::vector<RoutedOutcome>& batch) {
      for (const RoutedOutcome& r : batch) {
        const Outcome& o = r.outcome;
        journal_.Add(o.result.ok() ? absl::StrCat("route ", r.route.connection, "/", r.route.request_id, ": ok at ",
                                                  o.index, " events<=", o.event_index)
                                   : absl::StrCat("route ", r.route.connection, "/", r.route.request_id, ": ",
                                                  absl::StatusCodeToString(o.result.status().code())));
      }
      batch.clear();
    });
    loop_->Start();
  }
  ~ApplyLoopTest() override { loop_->Stop(); }

  Index Append(EntryType type, std::string payload, Term term = 1) {
    Index index = log_->LastIndex() + 1;
    Entry e{index, term, static_cast<LogTime>(index) * 1000, type, Bytes(std::move(payload))};
    EXPECT_TRUE(log_->Append({e}).ok());
    return index;
  }
  Index Command(uint64_t session, uint64_t sequence, std::string word, Term term = 1) {
    return Append(EntryType::kCommand,
                  serialization::EncodeCommandEntry(session, sequence, codec::EncodeOperation(Say{.word = word})),
                  term);
  }
  void Expect(Index index, Term term, const std::string& name) {
    loop_->ExpectOutcome(index, term, [this, name](Outcome o) {
      journal_.Add(o.result.ok() ? absl::StrCat(name, ": ok at ", o.index, " events<=", o.event_index)
                                 : absl::StrCat(name, ": ", absl::StatusCodeToString(o.result.status().code())));
    });
  }
  // Commits everything appended and waits until it is applied.
  void CommitAll() {
    Index last = log_->LastIndex();
    loop_->Commit(last);
    for (int i = 0; i < 2000 && loop_->applied() < last; ++i) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(loop_->applied(), last);
  }
  absl::Status Subscribe(uint64_t session, uint64_t subscriber, Index after) {
    std::promise<absl::Status> p;
    loop_->Subscribe(session, subscriber, after, [&](absl::Status s) { p.set_value(std::move(s)); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return f.get();
  }

  std::unique_ptr<storage::Log> log_;
  std::unique_ptr<ApplyLoop> loop_;
  Journal journal_;
};

TEST_F(ApplyLoopTest, AWaiterReplacedByALaterTermLearnsItsEntryWasNotApplied) {
  Expect(1, 1, "old");
  Expect(1, 2, "new");  // a later leader proposed at the same index
  EXPECT_EQ(journal_.Take(), std::vector<std::string>{"old: ABORTED"});
  Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}), 2);
  CommitAll();
  EXPECT_EQ(journal_.Take(), std::vector<std::string>{"new: ok at 1 events<=0"});
}

TEST_F(ApplyLoopTest, ARoutedWaiterReplacedByALaterTermLearnsItThroughTheSink) {
  loop_->ExpectRouted(1, 1, Route{3, 30});
  loop_->ExpectRouted(1, 2, Route{4, 40});
  EXPECT_EQ(journal_.Take(), std::vector<std::string>{"route 3/30: ABORTED"});
  Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}), 2);
  CommitAll();
  EXPECT_EQ(journal_.Take(), std::vector<std::string>{"route 4/40: ok at 1 events<=0"});
}

TEST_F(ApplyLoopTest, AWaiterForAnIndexAlreadyAppliedIsToldAtOnce) {
  Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  CommitAll();
  Expect(1, 1, "late");
  loop_->ExpectRouted(1, 1, Route{5, 50});
  EXPECT_EQ(journal_.Take(), (std::vector<std::string>{"late: UNAVAILABLE", "route 5/50: UNAVAILABLE"}));
}

TEST_F(ApplyLoopTest, RoutedResponsesComeBeforeTheEventsPublishedAfterThem) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  CommitAll();
  ASSERT_TRUE(Subscribe(s, 7, 0).ok());
  // Waiters at indexes far apart and out of order: the ring grows and
  // re-lays its slots.
  Index first = Command(s, 1, "a");
  Index second = Command(s, 2, "b");
  loop_->ExpectRouted(second, 1, Route{7, 2});
  loop_->ExpectRouted(first, 1, Route{7, 1});
  for (uint64_t seq = 3; seq < 40; ++seq) loop_->ExpectRouted(Command(s, seq, "x"), 1, Route{7, seq});
  CommitAll();
  std::vector<std::string> lines = journal_.Take();
  ASSERT_EQ(lines.size(), 2u * 39);
  EXPECT_EQ(lines[0], absl::StrCat("route 7/1: ok at ", first, " events<=0"));
  EXPECT_EQ(lines[1], absl::StrCat("to 7: session ", s, " batch ", first, " after 0 (1 events)"));
  EXPECT_EQ(lines[2], absl::StrCat("route 7/2: ok at ", second, " events<=", first));
  EXPECT_EQ(lines[77], absl::StrCat("to 7: session ", s, " batch ", first + 38, " after ", first + 37, " (1 events)"));
}

TEST_F(ApplyLoopTest, RoutedAndCallbackOutcomesLeaveInApplyOrder) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  CommitAll();
  Index command = Command(s, 1, "a");
  loop_->ExpectRouted(command, 1, Route{7, 1});
  // A retry, answered from the cache: it publishes nothing (publishing would
  // hand the routed outcomes on anyway).
  loop_->ExpectRouted(Command(s, 1, "a"), 1, Route{7, 2});
  Index bye = Append(EntryType::kUnregister, serialization::EncodeUnregisterEntry({s, false}));
  Expect(bye, 1, "bye");
  CommitAll();
  EXPECT_EQ(journal_.Take(), (std::vector<std::string>{absl::StrCat("route 7/1: ok at ", command, " events<=0"),
                                                       absl::StrCat("route 7/2: ok at ", command, " events<=0"),
                                                       absl::StrCat("bye: ok at ", bye, " events<=0")}));
}

TEST_F(ApplyLoopTest, EventsGoToTheSubscriberAfterTheResponseAndAreResentOnSubscribe) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  CommitAll();
  ASSERT_TRUE(Subscribe(s, 7, 0).ok());
  Index first = Command(s, 1, "a");
  Expect(first, 1, "a");
  Index second = Command(s, 2, "b");
  Expect(second, 1, "b");
  CommitAll();
  EXPECT_EQ(journal_.Take(),
            (std::vector<std::string>{absl::StrCat("a: ok at ", first, " events<=0"),
                                      absl::StrCat("to 7: session ", s, " batch ", first, " after 0 (1 events)"),
                                      absl::StrCat("b: ok at ", second, " events<=", first),
                                      absl::StrCat("to 7: session ", s, " batch ", second, " after ", first,
                                                   " (1 events)")}));
  // Another connection takes over and asks for what followed `first`.
  ASSERT_TRUE(Subscribe(s, 9, first).ok());
  EXPECT_EQ(journal_.Take(), std::vector<std::string>{absl::StrCat("to 9: session ", s, " batch ", second,
                                                                   " after ", first, " (1 events)")});
  loop_->Unsubscribe(9);
  Command(s, 3, "c");
  CommitAll();
  EXPECT_TRUE(journal_.Take().empty()) << "pushed to a closed connection";
}

TEST_F(ApplyLoopTest, SubscribingToASessionTheServerHasNotAppliedYetIsUnavailableNotExpired) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  EXPECT_TRUE(absl::IsUnavailable(Subscribe(s, 1, 0))) << "a lagging server must not declare a session gone";
  CommitAll();
  EXPECT_TRUE(Subscribe(s, 1, 0).ok());
  Append(EntryType::kUnregister, serialization::EncodeUnregisterEntry({s, false}));
  CommitAll();
  EXPECT_TRUE(absl::IsUnauthenticated(Subscribe(s, 1, 0)));
}

TEST_F(ApplyLoopTest, ARetryOfAHeldBackCommandIsAnsweredWhenTheFirstCopyRuns) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  Index early = Command(s, 2, "second");   // held: 1 is missing
  Index retry = Command(s, 2, "second");   // the client retried it
  Index filler = Command(s, 1, "first");
  Expect(early, 1, "early");
  Expect(retry, 1, "retry");
  Expect(filler, 1, "filler");
  CommitAll();
  std::vector<std::string> got = journal_.Take();
  // All three ran at the filler: that is the index the client orders by.
  EXPECT_EQ(got, (std::vector<std::string>{absl::StrCat("filler: ok at ", filler, " events<=0"),
                                           absl::StrCat("retry: ok at ", filler, " events<=0"),
                                           absl::StrCat("early: ok at ", filler, " events<=0")}));
}

TEST_F(ApplyLoopTest, ARetryOfAnAppliedCommandReportsWhereTheCommandRan) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  Index first = Command(s, 1, "a");
  Index second = Command(s, 2, "b");
  Index retry = Command(s, 1, "a");  // after a failover, the client resent 1
  Expect(first, 1, "first");
  Expect(second, 1, "second");
  Expect(retry, 1, "retry");
  CommitAll();
  // The retry's answer says index `first`: were it `retry`, a client would
  // take every event batch up to `retry` (command 2's too) as safe to
  // deliver before command 2's response.
  EXPECT_EQ(journal_.Take(), (std::vector<std::string>{absl::StrCat("first: ok at ", first, " events<=0"),
                                                       absl::StrCat("second: ok at ", second, " events<=", first),
                                                       absl::StrCat("retry: ok at ", first, " events<=0")}));
}

}  // namespace
}  // namespace caracal::server

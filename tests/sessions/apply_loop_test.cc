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

struct Said : Query<int64_t> {  // how many were said
  static constexpr std::string_view kName = "test.said";
  CARACAL_FIELDS()
};

class Sayer : public StateMachine {
 public:
  void Configure(Executor& executor) override {
    executor.Register<Say>(this, &Sayer::OnSay);
    executor.Register<Said>(this, &Sayer::OnSaid);
  }
  int64_t OnSay(Commit<Say> c) {
    c.session().Publish("said", c->word);
    return ++said_;
  }
  int64_t OnSaid(Commit<Said>) { return said_; }

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
  std::future<Outcome> Query(uint64_t session, uint64_t sequence) {
    auto p = std::make_shared<std::promise<Outcome>>();
    loop_->QueryOutcome(session, sequence, codec::EncodeOperation(Said{}), 0,
                        [p](Outcome o) { p->set_value(std::move(o)); });
    return p->get_future();
  }
  // Polls `ready` for up to 10 s.
  static bool Eventually(const std::function<bool()>& ready) {
    for (int i = 0; i < 10000; ++i) {
      if (ready()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return ready();
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

// Copycat: a session's query is sequenced after the commands the session
// submitted before it; it sees them, at every consistency level.
TEST_F(ApplyLoopTest, AQueryWaitsForTheCommandsItsSessionSubmittedBeforeIt) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  Command(s, 1, "a");
  CommitAll();
  auto waiting = Query(s, /*sequence=*/2);  // command 2 was submitted before it
  // A query that needs no command of its session, queued after it: once it
  // is answered, the first one was tried too.
  auto free = Query(s, /*sequence=*/1);
  ASSERT_EQ(free.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(*codec::DecodeResult<Said>(*free.get().result), 1);
  EXPECT_EQ(waiting.wait_for(0s), std::future_status::timeout) << "it ran before its session's command 2";
  Command(s, 2, "b");
  CommitAll();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  Outcome o = waiting.get();
  ASSERT_TRUE(o.result.ok()) << o.result.status();
  EXPECT_EQ(*codec::DecodeResult<Said>(*o.result), 2) << "it must see command 2";
}

TEST_F(ApplyLoopTest, AQueryWhoseSessionsCommandsNeverArriveFailsUnavailableInBoundedTime) {
  loop_->SetQueryWaitTimeout(50ms);
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  CommitAll();
  auto waiting = Query(s, /*sequence=*/5);
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  absl::Status status = waiting.get().result.status();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find("command 5 of session"), std::string::npos) << status;
}

TEST_F(ApplyLoopTest, AQueryOfASessionThisServerHasNotAppliedYetWaitsForItsRegister) {
  auto waiting = Query(/*session=*/1, /*sequence=*/1);
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  ASSERT_EQ(s, 1u);
  CommitAll();
  EXPECT_EQ(Query(s, 0).wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waiting.wait_for(0s), std::future_status::timeout);
  Command(s, 1, "a");
  CommitAll();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(*codec::DecodeResult<Said>(*waiting.get().result), 1);
}

TEST_F(ApplyLoopTest, AppliedSequenceFollowsTheSessionsAppliedCommands) {
  uint64_t s = Append(EntryType::kRegister, serialization::EncodeRegisterEntry({"c", 1000}));
  Command(s, 1, "a");
  Command(s, 2, "b");
  CommitAll();
  EXPECT_TRUE(Eventually([&] { return loop_->AppliedSequence(s) == 2; }));
  Append(EntryType::kUnregister, serialization::EncodeUnregisterEntry({s, false}));
  CommitAll();
  EXPECT_TRUE(Eventually([&] { return loop_->AppliedSequence(s) == 0; })) << "a closed session has no sequence";
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

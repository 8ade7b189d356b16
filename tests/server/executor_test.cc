// The state machine API, driven synchronously through StateMachineRunner with
// hand-built log entries: Commit semantics and release tracking, log-time
// timers (move-only callables among them), Executor::sessions(), errors that
// change nothing (and what a query may not do), leader side effects and role
// hooks.

#include <limits>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "caracal/operation.h"
#include "caracal/state_machine.h"
#include "framework/server/state_machine_runner.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {
namespace {

const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

using std::chrono::microseconds;

// ---- the operations of the test state machine (namespace scope: they have
// static members) ----

// Sets key = value. With keep, the state machine keeps the commit (the entry
// stays live) until the key is overwritten or dropped.
struct SetOp : Command<int64_t> {  // returns the previous value (0 when absent)
  static constexpr std::string_view kName = "test.set";
  std::string key;
  int64_t value = 0;
  bool keep = false;
  CARACAL_FIELDS(key, value, keep)
};

// The same wire name with a different field type: its arguments do not decode
// as SetOp's.
struct SetOpWrongTypes : Command<int64_t> {
  static constexpr std::string_view kName = "test.set";
  int64_t key = 0;
  CARACAL_FIELDS(key)
};

struct DropOp : Command<bool> {  // releases the kept commit of `key`
  static constexpr std::string_view kName = "test.drop";
  std::string key;
  CARACAL_FIELDS(key)
};

struct GetOp : Query<int64_t> {
  static constexpr std::string_view kName = "test.get";
  std::string key;
  CARACAL_FIELDS(key)
};

// Schedules a timer named `tag`; interval_us > 0 makes it periodic. With
// cancel_tag, the timer cancels that other timer when it fires; with
// then_tag/then_delay_us it schedules another timer when it fires.
struct ScheduleOp : Command<void> {
  static constexpr std::string_view kName = "test.schedule";
  std::string tag;
  int64_t delay_us = 0;
  int64_t interval_us = 0;
  std::string cancel_tag;
  std::string then_tag;
  int64_t then_delay_us = 0;
  int64_t stop_after = 0;  // a periodic timer cancels itself after this many firings
  CARACAL_FIELDS(tag, delay_us, interval_us, cancel_tag, then_tag, then_delay_us, stop_after)
};

struct CancelOp : Command<bool> {
  static constexpr std::string_view kName = "test.cancel";
  std::string tag;
  CARACAL_FIELDS(tag)
};

// Returns what the timers fired so far, as the command sees it: "tag@index/now,".
struct FiredOp : Command<std::string> {
  static constexpr std::string_view kName = "test.fired";
  CARACAL_FIELDS()
};

// Describes the commit it was handed.
struct DescribeOp : Command<std::string> {
  static constexpr std::string_view kName = "test.describe";
  std::string note;
  CARACAL_FIELDS(note)
};

struct ThrowOp : Command<int64_t> {  // throws (an OperationError with `code` when it is not 0)
  static constexpr std::string_view kName = "test.throw";
  int code = 0;
  CARACAL_FIELDS(code)
};

struct EffectOp : Command<void> {  // asks for a leader side effect
  static constexpr std::string_view kName = "test.effect";
  std::string tag;
  CARACAL_FIELDS(tag)
};

// Copycat's TTL pattern: schedules a one-shot timer that owns this command's
// Commit (a move-only capture) and releases it when it fires, recording
// "tag@index/now".
struct HoldOp : Command<void> {
  static constexpr std::string_view kName = "test.hold";
  std::string tag;
  int64_t delay_us = 0;
  CARACAL_FIELDS(tag, delay_us)
};

// A periodic timer whose callable owns a counter (a unique_ptr: move-only),
// recording "tag#run" each time it runs.
struct CountOp : Command<void> {
  static constexpr std::string_view kName = "test.count";
  std::string tag;
  int64_t interval_us = 0;
  CARACAL_FIELDS(tag, interval_us)
};

// Publishes `note` to every open session but the caller's, through
// Executor::sessions(); returns the ids it listed ("1,2,").
struct NotifyOthersOp : Command<std::string> {
  static constexpr std::string_view kName = "test.notify_others";
  std::string note;
  CARACAL_FIELDS(note)
};

// Each tries one thing a query may not do.
struct ScheduleFromQuery : Query<int64_t> {
  static constexpr std::string_view kName = "test.query_schedules";
  bool periodic = false;
  CARACAL_FIELDS(periodic)
};

struct PublishFromQuery : Query<int64_t> {
  static constexpr std::string_view kName = "test.query_publishes";
  uint64_t to = 0;  // a session from Executor::sessions(); 0: the caller's own
  CARACAL_FIELDS(to)
};

struct CancelFromQuery : Query<int64_t> {
  static constexpr std::string_view kName = "test.query_cancels";
  std::string tag;
  CARACAL_FIELDS(tag)
};

struct EffectFromQuery : Query<int64_t> {
  static constexpr std::string_view kName = "test.query_side_effect";
  CARACAL_FIELDS()
};

struct NotRegistered : Command<int64_t> {
  static constexpr std::string_view kName = "test.not_registered";
  CARACAL_FIELDS()
};

// What the test state machine observed, shared with the test (the runner owns
// the state machine itself).
struct Observed {
  std::vector<std::string> fired;       // "tag@index/now"
  std::vector<std::string> effects;     // side effects that ran
  std::vector<std::string> roles;       // "leader:term", "follower:term:leader"
  std::vector<std::string> listed;      // Executor::sessions() in OnRegister/OnClose: "register 2: 1,2,"
};

std::string Ids(const std::vector<Session>& sessions) {
  std::string out;
  for (const Session& s : sessions) absl::StrAppend(&out, s.id(), ",");
  return out;
}

class TestStateMachine : public StateMachine, public SessionListener {
 public:
  explicit TestStateMachine(Observed* observed) : observed_(observed) {}

  void Configure(Executor& executor) override {
    executor_ = &executor;
    executor.Register<SetOp>(this, &TestStateMachine::OnSet);
    executor.Register<DropOp>(this, &TestStateMachine::OnDrop);
    executor.Register<GetOp>(this, &TestStateMachine::OnGet);
    executor.Register<ScheduleOp>(this, &TestStateMachine::OnSchedule);
    executor.Register<CancelOp>(this, &TestStateMachine::OnCancel);
    executor.Register<FiredOp>(this, &TestStateMachine::OnFired);
    executor.Register<DescribeOp>(this, &TestStateMachine::OnDescribe);
    executor.Register<ThrowOp>(this, &TestStateMachine::OnThrow);
    executor.Register<EffectOp>(this, &TestStateMachine::OnEffect);
    executor.Register<HoldOp>(this, &TestStateMachine::OnHold);
    executor.Register<CountOp>(this, &TestStateMachine::OnCount);
    executor.Register<NotifyOthersOp>(this, &TestStateMachine::OnNotifyOthers);
    executor.Register<ScheduleFromQuery>(this, &TestStateMachine::OnScheduleFromQuery);
    executor.Register<EffectFromQuery>(this, &TestStateMachine::OnEffectFromQuery);
    executor.Register<PublishFromQuery>(this, &TestStateMachine::OnPublishFromQuery);
    executor.Register<CancelFromQuery>(this, &TestStateMachine::OnCancelFromQuery);
  }

  void OnRegister(const Session& session) override {
    observed_->listed.push_back(absl::StrCat("register ", session.id(), ": ", Ids(executor_->sessions())));
  }
  void OnClose(const Session& session) override {
    observed_->listed.push_back(absl::StrCat("close ", session.id(), ": ", Ids(executor_->sessions())));
  }

  void OnBecomeLeader(Term term) override { observed_->roles.push_back(absl::StrCat("leader:", term)); }
  void OnBecomeFollower(Term term, NodeId leader) override {
    observed_->roles.push_back(absl::StrCat("follower:", term, ":", leader));
  }

  int64_t OnSet(Commit<SetOp> commit) {
    int64_t previous = values_.contains(commit->key) ? values_[commit->key] : 0;
    values_[commit->key] = commit->value;
    if (commit->keep) {
      kept_[commit->key] = std::move(commit);  // move-assignment releases the commit it replaces
    } else {
      kept_.erase(commit->key);
    }
    return previous;
  }

  bool OnDrop(Commit<DropOp> commit) { return kept_.erase(commit->key) > 0; }

  int64_t OnGet(Commit<GetOp> commit) {
    auto it = values_.find(commit->key);
    return it == values_.end() ? 0 : it->second;
  }

  void OnSchedule(Commit<ScheduleOp> commit) { Arm(commit.operation()); }

  bool OnCancel(Commit<CancelOp> commit) {
    auto it = timers_.find(commit->tag);
    if (it == timers_.end()) return false;
    bool was_active = it->second.active();
    it->second.Cancel();
    return was_active;
  }

  std::string OnFired(Commit<FiredOp>) {
    std::string out;
    for (const auto& f : observed_->fired) absl::StrAppend(&out, f, ",");
    return out;
  }

  std::string OnDescribe(Commit<DescribeOp> commit) {
    return absl::StrCat("index=", commit.index(), " time=", commit.time().time_since_epoch().count(),
                        " session=", commit.session().id(), " note=", commit->note,
                        " executor.index=", executor_->index(),
                        " executor.now=", executor_->now().time_since_epoch().count());
  }

  int64_t OnThrow(Commit<ThrowOp> c) {
    if (c->code != 0) throw OperationError(absl::Status(static_cast<absl::StatusCode>(c->code), "refused"));
    throw std::runtime_error("the handler gave up");
  }

  void OnEffect(Commit<EffectOp> commit) {
    auto tag = std::make_unique<std::string>(commit->tag);  // a move-only capture
    executor_->LeaderSideEffect([this, tag = std::move(tag)] { observed_->effects.push_back(*tag); });
  }

  void OnHold(Commit<HoldOp> commit) {
    std::string tag = commit->tag;
    microseconds delay(commit->delay_us);
    timers_[tag] = executor_->Schedule(delay, [this, tag, commit = std::move(commit)]() mutable {
      observed_->fired.push_back(
          absl::StrCat(tag, "@", executor_->index(), "/", executor_->now().time_since_epoch().count()));
      commit.release();
    });
  }

  void OnCount(Commit<CountOp> commit) {
    std::string tag = commit->tag;
    microseconds interval(commit->interval_us);
    timers_[tag] = executor_->Schedule(interval, interval, [this, tag, runs = std::make_unique<int>(0)] {
      observed_->fired.push_back(absl::StrCat(tag, "#", ++*runs));
    });
  }

  std::string OnNotifyOthers(Commit<NotifyOthersOp> commit) {
    std::vector<Session> open = executor_->sessions();
    for (const Session& s : open) {
      if (s.id() != commit.session().id()) s.Publish("test.note", commit->note);
    }
    return Ids(open);
  }

  int64_t OnScheduleFromQuery(Commit<ScheduleFromQuery> commit) {
    if (commit->periodic) {
      executor_->Schedule(microseconds(10), microseconds(10), [] {});
    } else {
      executor_->Schedule(microseconds(10), [] {});
    }
    return 1;
  }

  int64_t OnPublishFromQuery(Commit<PublishFromQuery> commit) {
    if (commit->to == 0) {
      commit.session().Publish("test.note", std::string("from a query"));
      return 1;
    }
    for (const Session& s : executor_->sessions()) {
      if (s.id() == commit->to) s.Publish("test.note", std::string("from a query"));
    }
    return 1;
  }

  int64_t OnCancelFromQuery(Commit<CancelFromQuery> commit) {
    if (auto it = timers_.find(commit->tag); it != timers_.end()) it->second.Cancel();
    return 1;
  }

  int64_t OnEffectFromQuery(Commit<EffectFromQuery>) {
    executor_->LeaderSideEffect([] {});
    return 1;
  }

  std::string Digest() const {
    std::string out;
    for (const auto& [k, v] : values_) absl::StrAppend(&out, k, "=", v, ";");
    absl::StrAppend(&out, "kept:");
    for (const auto& [k, c] : kept_) absl::StrAppend(&out, k, "@", c.index(), ";");
    absl::StrAppend(&out, "timers:");
    for (const auto& [k, t] : timers_) absl::StrAppend(&out, k, t.active() ? "+" : "-", ";");
    return out;
  }

 private:
  void Arm(ScheduleOp op) {
    auto fire = [this, op] {
      observed_->fired.push_back(
          absl::StrCat(op.tag, "@", executor_->index(), "/", executor_->now().time_since_epoch().count()));
      if (!op.cancel_tag.empty()) timers_[op.cancel_tag].Cancel();
      if (!op.then_tag.empty()) {
        ScheduleOp next;
        next.tag = op.then_tag;
        next.delay_us = op.then_delay_us;
        Arm(next);
      }
      if (op.stop_after > 0 && ++firings_[op.tag] >= op.stop_after) timers_[op.tag].Cancel();
    };
    if (op.interval_us > 0) {
      timers_[op.tag] = executor_->Schedule(microseconds(op.delay_us), microseconds(op.interval_us), fire);
    } else {
      timers_[op.tag] = executor_->Schedule(microseconds(op.delay_us), fire);
    }
  }

  Observed* observed_;
  Executor* executor_ = nullptr;
  std::map<std::string, int64_t> values_;
  std::map<std::string, Commit<SetOp>> kept_;
  std::map<std::string, Scheduled> timers_;
  std::map<std::string, int64_t> firings_;
};

// ---- helpers ----

// A command entry carrying `op` (session 0).
template <OperationType Op>
Entry MakeCommandEntry(Index index, const Op& op, Term term = 1, LogTime time = 1'000) {
  return Entry{index, term, time, EntryType::kCommand,
               Bytes(serialization::EncodeCommandEntry(0, 0, codec::EncodeOperation(op)))};
}

// A runner over a fresh TestStateMachine, and a log builder that appends
// entries at consecutive indexes.
class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest() {
    auto sm = std::make_unique<TestStateMachine>(&observed_);
    sm_ = sm.get();
    runner_ = std::make_unique<StateMachineRunner>(std::move(sm), /*id=*/1);
  }

  template <OperationType Op>
  static Entry CommandEntry(Index index, LogTime time, const Op& op, Term term = 1, uint64_t session = 0,
                            uint64_t sequence = 0) {
    return RawCommandEntry(index, time, codec::EncodeOperation(op), term, session, sequence);
  }
  static Entry RawCommandEntry(Index index, LogTime time, std::string operation_bytes, Term term = 1,
                               uint64_t session = 0, uint64_t sequence = 0) {
    return Entry{index, term, time, EntryType::kCommand,
                 Bytes(serialization::EncodeCommandEntry(session, sequence, operation_bytes))};
  }

  // Applies `op` as the next command at log time `time`.
  template <OperationType Op>
  absl::StatusOr<std::string> Apply(LogTime time, const Op& op, Term term = 1, uint64_t session = 0) {
    return runner_->Apply(CommandEntry(runner_->applied() + 1, time, op, term, session));
  }

  // Applies `op` and decodes its result; fails the test on an error.
  template <CommandType Op>
  WireResultOf<Op> Run(LogTime time, const Op& op, Term term = 1) {
    absl::StatusOr<std::string> bytes = Apply(time, op, term);
    EXPECT_TRUE(bytes.ok()) << Op::kName << " at log time " << time << ": " << bytes.status();
    if (!bytes.ok()) return {};
    absl::StatusOr<WireResultOf<Op>> result = codec::DecodeResult<Op>(*bytes);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : WireResultOf<Op>{};
  }

  template <QueryType Op>
  absl::StatusOr<WireResultOf<Op>> Query(const Op& op, uint64_t session = 0) {
    absl::StatusOr<std::string> bytes = runner_->Query(session, codec::EncodeOperation(op));
    if (!bytes.ok()) return bytes.status();
    return codec::DecodeResult<Op>(*bytes);
  }

  // Opens a session with a Register entry at the next index; returns its id.
  uint64_t OpenSession(LogTime time) {
    Index index = runner_->applied() + 1;
    EXPECT_TRUE(runner_
                    ->Apply(Entry{index, 1, time, EntryType::kRegister,
                                  Bytes(serialization::EncodeRegisterEntry({"client", 60'000}))})
                    .ok());
    return index;
  }
  void CloseSession(uint64_t session, LogTime time) {
    EXPECT_TRUE(runner_
                    ->Apply(Entry{runner_->applied() + 1, 1, time, EntryType::kUnregister,
                                  Bytes(serialization::EncodeUnregisterEntry({session, false}))})
                    .ok());
  }
  // Applies `op` as `session`'s next command.
  template <CommandType Op>
  WireResultOf<Op> RunAs(uint64_t session, LogTime time, const Op& op) {
    absl::StatusOr<std::string> bytes =
        runner_->Apply(CommandEntry(runner_->applied() + 1, time, op, /*term=*/1, session, ++sequences_[session]));
    EXPECT_TRUE(bytes.ok()) << Op::kName << " from session " << session << ": " << bytes.status();
    if (!bytes.ok()) return {};
    return *codec::DecodeResult<Op>(*bytes);
  }
  // The "test.note" events stored for `session`, as "index:note".
  std::vector<std::string> NotesFor(uint64_t session) const {
    std::vector<std::string> out;
    for (const EventBatch& batch : runner_->sessions().EventsAfter(session, 0)) {
      for (const PublishedEvent& event : batch.events) {
        EXPECT_EQ(event.name, "test.note");
        out.push_back(absl::StrCat(batch.index, ":", *codec::FromBytes<std::string>(event.payload)));
      }
    }
    return out;
  }

  // An entry that carries no command (Initialize, as a new leader commits).
  void ApplyInitialize(LogTime time, Term term = 1) {
    absl::StatusOr<std::string> r =
        runner_->Apply(Entry{runner_->applied() + 1, term, time, EntryType::kInitialize, Bytes()});
    EXPECT_TRUE(absl::IsAborted(r.status())) << r.status();
  }

  const ReleaseTracker& tracker() const { return runner_->tracker(); }

  Observed observed_;
  TestStateMachine* sm_ = nullptr;
  std::unique_ptr<StateMachineRunner> runner_;
  std::map<uint64_t, uint64_t> sequences_;  // a session's last command sequence
};

bool Contains(const absl::Status& status, std::string_view text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

// ================================================================ Commit

TEST_F(ExecutorTest, CommitCarriesIndexTimeSessionAndOperation) {
  Run(1'000, SetOp{.key = "a", .value = 1});
  // Session 2 is opened by the Register entry at index 2.
  ASSERT_TRUE(runner_
                  ->Apply(Entry{2, 3, 2'000, EntryType::kRegister,
                                Bytes(serialization::EncodeRegisterEntry({"client", 5'000}))})
                  .ok());
  absl::StatusOr<std::string> bytes = runner_->Apply(
      CommandEntry(3, 2'500, DescribeOp{.note = "hello"}, /*term=*/3, /*session=*/2, /*sequence=*/1));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*codec::DecodeResult<DescribeOp>(*bytes),
            "index=3 time=2500 session=2 note=hello executor.index=3 executor.now=2500");
}

TEST_F(ExecutorTest, CommitTimeNeverGoesBackwardsEvenIfAnEntryIsStampedEarlier) {
  // Log time is max(previous, stamp); the applier keeps that promise even if
  // handed an entry with an older stamp.
  Run(5'000, SetOp{.key = "a", .value = 1});
  EXPECT_EQ(Run(4'000, DescribeOp{}), "index=2 time=5000 session=0 note= executor.index=2 executor.now=5000");
}

TEST(CommitTest, IsMoveOnlyAndAMovedFromCommitIsReleased) {
  static_assert(!std::is_copy_constructible_v<Commit<SetOp>>);
  static_assert(!std::is_copy_assignable_v<Commit<SetOp>>);
  static_assert(std::is_nothrow_move_constructible_v<Commit<SetOp>>);
  auto a = Commit<SetOp>::Detached(7, Time(microseconds(99)), Session(3), SetOp{.key = "k", .value = 5});
  Commit<SetOp> b(std::move(a));
  EXPECT_EQ(b.index(), 7u);
  EXPECT_EQ(b->key, "k");
  EXPECT_EQ(b.session().id(), 3u);
  EXPECT_EQ(b.time().time_since_epoch().count(), 99);
  EXPECT_TRUE(a.released());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  Commit<SetOp> empty;
  EXPECT_TRUE(empty.released());
  EXPECT_EQ(empty.index(), 0u);
}

TEST_F(ExecutorTest, CommitNotKeptByTheHandlerIsReleasedWhenItReturns) {
  Run(1'000, SetOp{.key = "a", .value = 1, .keep = false});
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_EQ(tracker().live(), 0u);
}

TEST_F(ExecutorTest, KeptCommitStaysLiveUntilTheHandlerDropsIt) {
  Run(1'000, SetOp{.key = "a", .value = 1, .keep = true});
  Run(1'001, SetOp{.key = "b", .value = 2, .keep = true});
  EXPECT_FALSE(tracker().IsReleased(1));
  EXPECT_FALSE(tracker().IsReleased(2));
  EXPECT_EQ(tracker().live(), 2u);
  EXPECT_EQ(tracker().FirstLive(), 1u);

  EXPECT_TRUE(Run(1'002, DropOp{.key = "a"}));  // destroys the kept Commit
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_FALSE(tracker().IsReleased(2));
  EXPECT_TRUE(tracker().IsReleased(3));  // the Drop itself was not kept
  EXPECT_EQ(tracker().live(), 1u);
  EXPECT_EQ(tracker().FirstLive(), 2u);
}

TEST_F(ExecutorTest, OverwritingAKeptCommitReleasesTheOldOneExactlyOnce) {
  Run(1'000, SetOp{.key = "a", .value = 1, .keep = true});
  Run(1'001, SetOp{.key = "a", .value = 2, .keep = true});  // move-assigned over the first
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_FALSE(tracker().IsReleased(2));
  EXPECT_EQ(tracker().live(), 1u);
  // Releasing again (drop, then destroy the state machine) must not disturb
  // anything else that is live.
  Run(1'002, SetOp{.key = "b", .value = 3, .keep = true});
  EXPECT_TRUE(Run(1'003, DropOp{.key = "a"}));
  EXPECT_FALSE(Run(1'004, DropOp{.key = "a"}));
  EXPECT_TRUE(tracker().IsReleased(2));
  EXPECT_FALSE(tracker().IsReleased(3));
  EXPECT_EQ(tracker().live(), 1u);
}

TEST(CommitReleaseTest, ReleaseAndDestructionEachReleaseOnce) {
  // A state machine that hands its commits to the test, so the test can call
  // release() and destroy them itself.
  struct Holder {
    std::vector<Commit<SetOp>> commits;
  };
  class Keeper : public StateMachine {
   public:
    explicit Keeper(Holder* h) : h_(h) {}
    void Configure(Executor& executor) override {
      executor.Register<SetOp>([this](Commit<SetOp> c) -> int64_t {
        h_->commits.push_back(std::move(c));
        return 0;
      });
    }

   private:
    Holder* h_;
  };
  Holder holder;
  StateMachineRunner runner(std::make_unique<Keeper>(&holder), 1);
  for (Index i = 1; i <= 3; ++i) {
    ASSERT_TRUE(runner.Apply(MakeCommandEntry(i, SetOp{.key = "k"})).ok());
  }
  ASSERT_EQ(holder.commits.size(), 3u);
  EXPECT_EQ(runner.tracker().live(), 3u);

  holder.commits[0].release();
  EXPECT_TRUE(holder.commits[0].released());
  EXPECT_TRUE(runner.tracker().IsReleased(1));
  holder.commits[0].release();  // idempotent
  EXPECT_EQ(runner.tracker().live(), 2u);

  Commit<SetOp> moved = std::move(holder.commits[1]);
  EXPECT_TRUE(holder.commits[1].released());     // the moved-from handle no longer owns it...
  EXPECT_FALSE(runner.tracker().IsReleased(2));  // ...and moving did not release the entry
  { Commit<SetOp> sink = std::move(moved); }      // destruction releases it
  EXPECT_TRUE(runner.tracker().IsReleased(2));
  EXPECT_FALSE(runner.tracker().IsReleased(3));
  EXPECT_EQ(runner.tracker().live(), 1u);

  holder.commits.clear();  // destroying the released and moved-from handles releases only index 3
  EXPECT_EQ(runner.tracker().live(), 0u);
  EXPECT_TRUE(runner.tracker().IsReleased(3));
}

TEST_F(ExecutorTest, FrameworkEntriesAreReleasedAtOnce) {
  ApplyInitialize(1'000);
  runner_->Apply(Entry{2, 1, 1'001, EntryType::kRegister, Bytes()}).IgnoreError();
  runner_->Apply(Entry{3, 1, 1'002, EntryType::kTime, Bytes()}).IgnoreError();
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_TRUE(tracker().IsReleased(2));
  EXPECT_TRUE(tracker().IsReleased(3));
  EXPECT_EQ(tracker().live(), 0u);
  EXPECT_EQ(runner_->applied(), 3u);
  EXPECT_FALSE(tracker().IsReleased(4));  // not applied yet
}

// ================================================================ timers

TEST_F(ExecutorTest, TimersFireInDeadlineOrderWithTiesInCreationOrder) {
  Run(1'000, ScheduleOp{.tag = "late", .delay_us = 300});
  Run(1'000, ScheduleOp{.tag = "tie1", .delay_us = 200});
  Run(1'100, ScheduleOp{.tag = "early", .delay_us = 0});   // deadline 1100
  Run(1'100, ScheduleOp{.tag = "tie2", .delay_us = 100});  // deadline 1200, created after tie1
  // "early" (deadline 1100) fired before the command at index 4 applied.
  EXPECT_EQ(Run(5'000, FiredOp{}), "early@4/1100,tie1@5/1200,tie2@5/1200,late@5/1300,");
}

TEST_F(ExecutorTest, TimerFiresBeforeTheFirstEntryWhoseTimestampReachesItsDeadline) {
  Run(1'000, ScheduleOp{.tag = "t", .delay_us = 500});  // index 1, deadline 1500
  EXPECT_EQ(Run(1'499, FiredOp{}), "");                  // index 2: not yet
  ApplyInitialize(1'499);                                // index 3: still not
  EXPECT_TRUE(observed_.fired.empty());
  // Index 4 is the first entry at or past the deadline: the timer runs first,
  // as part of index 4, at log time = its deadline; then the command sees it.
  EXPECT_EQ(Run(1'500, FiredOp{}), "t@4/1500,");
}

TEST_F(ExecutorTest, TimerFiresAtTheDeadlineEvenWhenTheNextEntryIsMuchLater) {
  Run(1'000, ScheduleOp{.tag = "t", .delay_us = 500});
  ApplyInitialize(9'000);  // a non-command entry also drives time
  ASSERT_EQ(observed_.fired.size(), 1u);
  EXPECT_EQ(observed_.fired[0], "t@2/1500");
  EXPECT_EQ(Run(9'000, DescribeOp{}), "index=3 time=9000 session=0 note= executor.index=3 executor.now=9000");
}

TEST_F(ExecutorTest, PeriodicTimerDeadlinesDoNotDriftWhenEntriesArriveLate) {
  Run(1'000, ScheduleOp{.tag = "p", .delay_us = 100, .interval_us = 100});  // deadlines 1100, 1200, ...
  Run(1'250, FiredOp{});  // index 2: 1100, 1200
  Run(1'420, FiredOp{});  // index 3: 1300, 1400
  Run(1'999, FiredOp{});  // index 4: 1500 .. 1900
  Run(2'000, FiredOp{});  // index 5: 2000 exactly
  std::vector<std::string> expected = {"p@2/1100", "p@2/1200", "p@3/1300", "p@3/1400", "p@4/1500",
                                       "p@4/1600", "p@4/1700", "p@4/1800", "p@4/1900", "p@5/2000"};
  EXPECT_EQ(observed_.fired, expected);
}

TEST_F(ExecutorTest, CancelledTimerNeverFires) {
  Run(1'000, ScheduleOp{.tag = "a", .delay_us = 100});
  Run(1'000, ScheduleOp{.tag = "b", .delay_us = 100});
  EXPECT_TRUE(Run(1'050, CancelOp{.tag = "a"}));
  Run(2'000, FiredOp{});
  EXPECT_EQ(observed_.fired, std::vector<std::string>{"b@4/1100"});
  EXPECT_FALSE(Run(2'001, CancelOp{.tag = "b"})) << "a fired one-shot timer is no longer active";
  EXPECT_EQ(runner_->executor().pending_timers(), 0u);
}

TEST_F(ExecutorTest, CancellingAPeriodicTimerStopsIt) {
  Run(1'000, ScheduleOp{.tag = "p", .delay_us = 100, .interval_us = 100});
  Run(1'250, FiredOp{});
  EXPECT_TRUE(Run(1'250, CancelOp{.tag = "p"}));
  Run(5'000, FiredOp{});
  EXPECT_EQ(observed_.fired, (std::vector<std::string>{"p@2/1100", "p@2/1200"}));
}

TEST_F(ExecutorTest, PeriodicTimerCanCancelItselfFromItsCallback) {
  Run(1'000, ScheduleOp{.tag = "p", .delay_us = 100, .interval_us = 100, .stop_after = 3});
  Run(5'000, FiredOp{});
  EXPECT_EQ(observed_.fired, (std::vector<std::string>{"p@2/1100", "p@2/1200", "p@2/1300"}));
  EXPECT_EQ(runner_->executor().pending_timers(), 0u);
}

TEST_F(ExecutorTest, TimerCanCancelAnotherTimerDueAtTheSameApply) {
  Run(1'000, ScheduleOp{.tag = "victim", .delay_us = 200});
  Run(1'000, ScheduleOp{.tag = "killer", .delay_us = 100, .cancel_tag = "victim"});
  Run(1'000, ScheduleOp{.tag = "tied_victim", .delay_us = 100});
  Run(1'000, ScheduleOp{.tag = "tied_killer", .delay_us = 50, .cancel_tag = "tied_victim"});
  Run(5'000, FiredOp{});  // every deadline passes in this one apply
  EXPECT_EQ(observed_.fired, (std::vector<std::string>{"tied_killer@5/1050", "killer@5/1100"}));
}

TEST_F(ExecutorTest, TimerCanScheduleAnotherTimer) {
  Run(1'000, ScheduleOp{.tag = "first", .delay_us = 100, .then_tag = "second", .then_delay_us = 50});
  // Both due before log time 5000: the second (deadline 1100 + 50) runs in the
  // same apply, at its own deadline.
  Run(5'000, FiredOp{});
  EXPECT_EQ(observed_.fired, (std::vector<std::string>{"first@2/1100", "second@2/1150"}));
  // And a chained timer that is not yet due waits for its own deadline.
  Run(5'000, ScheduleOp{.tag = "a", .delay_us = 10, .then_tag = "b", .then_delay_us = 1'000});
  Run(5'010, FiredOp{});
  EXPECT_EQ(observed_.fired.back(), "a@4/5010");
  Run(6'009, FiredOp{});
  EXPECT_EQ(observed_.fired.back(), "a@4/5010");
  Run(6'010, FiredOp{});
  EXPECT_EQ(observed_.fired.back(), "b@6/6010");
}

TEST_F(ExecutorTest, ATimerMayOwnAMoveOnlyCommitAndReleaseItWhenItFires) {
  // Copycat's TTL pattern (reference/copycat-state-machines.txt, "Handling
  // Time-to-live Commands"): the scheduled callback holds the commit.
  Run(1'000, HoldOp{.tag = "ttl", .delay_us = 500});  // index 1, deadline 1500
  Run(1'499, FiredOp{});                               // index 2: not yet due
  EXPECT_FALSE(tracker().IsReleased(1));
  Run(1'500, FiredOp{});                               // index 3 fires it
  EXPECT_EQ(observed_.fired, std::vector<std::string>{"ttl@3/1500"});
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_EQ(tracker().live(), 0u);
}

TEST_F(ExecutorTest, CancellingATimerDestroysItsCallableAndWhatItOwnsAtOnce) {
  Run(1'000, HoldOp{.tag = "ttl", .delay_us = 500});  // index 1
  Run(1'000, HoldOp{.tag = "other", .delay_us = 500});  // index 2
  EXPECT_EQ(runner_->executor().pending_timers(), 2u);
  EXPECT_TRUE(Run(1'100, CancelOp{.tag = "ttl"}));  // index 3
  // Released by the cancel, not when the deadline would have come.
  EXPECT_TRUE(tracker().IsReleased(1));
  EXPECT_FALSE(tracker().IsReleased(2));
  EXPECT_EQ(runner_->executor().pending_timers(), 1u);
  EXPECT_FALSE(Run(1'200, CancelOp{.tag = "ttl"})) << "cancelled: no longer active";
  Run(5'000, FiredOp{});
  EXPECT_EQ(observed_.fired, std::vector<std::string>{"other@5/1500"});
  EXPECT_EQ(runner_->executor().pending_timers(), 0u);
  EXPECT_EQ(runner_->NextDeadline(), std::nullopt) << "an idle leader has no deadline to wake up for";
}

TEST_F(ExecutorTest, APeriodicTimerRunsTheSameCallableEachTime) {
  Run(1'000, CountOp{.tag = "c", .interval_us = 100});  // its callable owns a unique_ptr counter
  Run(1'350, FiredOp{});
  EXPECT_EQ(observed_.fired, (std::vector<std::string>{"c#1", "c#2", "c#3"}));
  EXPECT_TRUE(Run(1'360, CancelOp{.tag = "c"}));
  Run(2'000, FiredOp{});
  EXPECT_EQ(observed_.fired.size(), 3u);
}

// ================================================================ sessions()

TEST_F(ExecutorTest, SessionsListsTheOpenSessionsInIdOrderAndACommandMayPublishToAnyOfThem) {
  uint64_t a = OpenSession(1'000), b = OpenSession(1'001), c = OpenSession(1'002);
  ASSERT_EQ(std::vector<uint64_t>({a, b, c}), std::vector<uint64_t>({1, 2, 3}));

  // b's command tells the others: their batches are stored at its index.
  EXPECT_EQ(RunAs(b, 1'003, NotifyOthersOp{.note = "from b"}), "1,2,3,");
  Index notified = runner_->applied();
  EXPECT_EQ(NotesFor(a), std::vector<std::string>{absl::StrCat(notified, ":from b")});
  EXPECT_EQ(NotesFor(c), std::vector<std::string>{absl::StrCat(notified, ":from b")});
  EXPECT_TRUE(NotesFor(b).empty());

  // A closed session is no longer listed (nor published to).
  CloseSession(a, 1'004);
  EXPECT_EQ(RunAs(c, 1'005, NotifyOthersOp{.note = "a left"}), "2,3,");
  Index later = runner_->applied();
  EXPECT_EQ(NotesFor(b), std::vector<std::string>{absl::StrCat(later, ":a left")});
  EXPECT_EQ(NotesFor(c), std::vector<std::string>{absl::StrCat(notified, ":from b")});

  // Listed from its Register entry on, and no longer in OnClose.
  EXPECT_EQ(observed_.listed,
            (std::vector<std::string>{"register 1: 1,", "register 2: 1,2,", "register 3: 1,2,3,", "close 1: 2,3,"}));
}

// ================================================================ errors

class ExecutorErrorTest : public ExecutorTest {
 protected:
  void SetUp() override {
    Run(1'000, SetOp{.key = "a", .value = 1, .keep = true});
    Run(1'001, ScheduleOp{.tag = "t", .delay_us = 1'000'000});
    digest_ = sm_->Digest();
    timers_ = runner_->executor().pending_timers();
  }
  // The failed entry was applied (and released), and nothing else changed.
  void ExpectNothingChanged(Index failed_index) {
    EXPECT_EQ(sm_->Digest(), digest_);
    EXPECT_EQ(runner_->applied(), failed_index);
    EXPECT_TRUE(tracker().IsReleased(failed_index));
    EXPECT_EQ(tracker().live(), 1u);
    EXPECT_EQ(runner_->executor().pending_timers(), timers_);
    EXPECT_EQ(*Query(GetOp{.key = "a"}), 1);
  }
  std::string digest_;
  size_t timers_ = 0;
};

TEST_F(ExecutorErrorTest, UnknownOperationIsAClearErrorAndChangesNothing) {
  absl::StatusOr<std::string> r = Apply(2'000, NotRegistered{});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_TRUE(Contains(r.status(), "unknown operation 'test.not_registered'")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "test.set")) << "the error lists the known operations: " << r.status();
  ExpectNothingChanged(3);
}

TEST_F(ExecutorErrorTest, QuerySubmittedAsACommandIsRejected) {
  absl::StatusOr<std::string> r = Apply(2'000, GetOp{.key = "a"});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "operation is a query, not a command: 'test.get'")) << r.status();
  ExpectNothingChanged(3);
}

TEST_F(ExecutorErrorTest, CommandSubmittedAsAQueryIsRejected) {
  absl::StatusOr<std::string> r = runner_->Query(0, codec::EncodeOperation(SetOp{.key = "a", .value = 9}));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "operation is a command, not a query: 'test.set'")) << r.status();
  ExpectNothingChanged(2);
}

TEST_F(ExecutorErrorTest, UnknownQueryIsRejected) {
  absl::StatusOr<std::string> r = runner_->Query(0, codec::EncodeOperation(NotRegistered{}));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "unknown operation 'test.not_registered'")) << r.status();
  ExpectNothingChanged(2);
}

TEST_F(ExecutorErrorTest, UndecodableCommandEntryIsAnErrorAndChangesNothing) {
  Entry garbage{3, 1, 2'000, EntryType::kCommand, Bytes(std::string("\xff\x01not a command entry"))};
  absl::StatusOr<std::string> r = runner_->Apply(garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.status().message().empty());
  ExpectNothingChanged(3);
}

TEST_F(ExecutorErrorTest, UndecodableOperationBytesAreAnErrorAndChangeNothing) {
  absl::StatusOr<std::string> r = runner_->Apply(RawCommandEntry(3, 2'000, std::string("\x00\x01\x02garbage", 10)));
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.status().message().empty());
  ExpectNothingChanged(3);
  // The same for a query.
  absl::StatusOr<std::string> q = runner_->Query(0, "garbage");
  ASSERT_FALSE(q.ok());
  ExpectNothingChanged(3);
}

TEST_F(ExecutorErrorTest, UndecodableArgumentsAreAnErrorNamingTheField) {
  absl::StatusOr<std::string> r = Apply(2'000, SetOpWrongTypes{.key = 5});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "test.set")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "key")) << r.status();
  ExpectNothingChanged(3);
}

TEST_F(ExecutorErrorTest, HandlerThatThrowsIsAnErrorNamingTheOperation) {
  absl::StatusOr<std::string> r = Apply(2'000, ThrowOp{});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInternal(r.status())) << r.status();
  EXPECT_TRUE(Contains(r.status(), "test.throw")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "the handler gave up")) << r.status();
  ExpectNothingChanged(3);
  // The state machine goes on.
  EXPECT_EQ(Run(2'001, SetOp{.key = "a", .value = 2}), 1);
}

TEST_F(ExecutorTest, ADelayBeyondACenturyIsAnErrorNotAnOverflow) {
  auto r = Apply(1'000, ScheduleOp{.tag = "far", .delay_us = std::numeric_limits<int64_t>::max()});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "over 100 years")) << r.status();
  auto periodic = Apply(1'001, ScheduleOp{.tag = "p", .delay_us = 1, .interval_us = std::numeric_limits<int64_t>::max()});
  EXPECT_FALSE(periodic.ok());
}

TEST_F(ExecutorTest, AnOperationErrorReachesTheCallerWithItsCodeExceptTheFrameworksOwn) {
  auto refused = Apply(1'000, ThrowOp{.code = static_cast<int>(absl::StatusCode::kFailedPrecondition)});
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(), "refused");
  // Unavailable would send a client to another server to retry forever.
  auto reserved = Apply(1'001, ThrowOp{.code = static_cast<int>(absl::StatusCode::kUnavailable)});
  EXPECT_TRUE(absl::IsInternal(reserved.status())) << reserved.status();
  EXPECT_TRUE(Contains(reserved.status(), "UNAVAILABLE")) << reserved.status();
  EXPECT_TRUE(Contains(reserved.status(), "refused")) << reserved.status();
}

TEST_F(ExecutorErrorTest, SchedulingFromAQueryIsAnErrorToTheCaller) {
  absl::StatusOr<int64_t> r = Query(ScheduleFromQuery{});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "queries must not change state")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "Executor::Schedule")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "test.query_schedules")) << r.status();
  ExpectNothingChanged(2);
}

TEST_F(ExecutorErrorTest, SchedulingAPeriodicTimerFromAQueryIsAnErrorToTheCaller) {
  absl::StatusOr<int64_t> r = Query(ScheduleFromQuery{.periodic = true});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "queries must not change state")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "Executor::Schedule")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "test.query_schedules")) << r.status();
  ExpectNothingChanged(2);
}

TEST_F(ExecutorErrorTest, CancellingATimerFromAQueryIsAnErrorAndTheTimerStillFires) {
  absl::StatusOr<int64_t> r = Query(CancelFromQuery{.tag = "t"});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "queries must not change state")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "Scheduled::Cancel")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "test.query_cancels")) << r.status();
  ExpectNothingChanged(2);
  Run(1'001'001, FiredOp{});  // the deadline of the timer SetUp scheduled
  EXPECT_EQ(observed_.fired, std::vector<std::string>{"t@3/1001001"});
}

TEST_F(ExecutorTest, PublishingFromAQueryIsAnErrorToTheCallerAndStoresNothing) {
  uint64_t a = OpenSession(1'000), b = OpenSession(1'001);
  const std::string sessions_before = runner_->sessions().Digest();
  const size_t live = tracker().live();
  // To the caller's own session, and to another found through sessions()
  // (which a query may list), with and without a session of its own.
  for (auto [caller, to] : {std::pair<uint64_t, uint64_t>{a, 0}, {a, b}, {0, b}}) {
    absl::StatusOr<int64_t> r = Query(PublishFromQuery{.to = to}, caller);
    ASSERT_FALSE(r.ok()) << "caller " << caller << ", to " << to;
    EXPECT_TRUE(Contains(r.status(), "Session::Publish")) << r.status();
    EXPECT_TRUE(Contains(r.status(), "queries must not change state")) << r.status();
    EXPECT_TRUE(Contains(r.status(), "test.query_publishes")) << r.status();
  }
  EXPECT_EQ(runner_->sessions().Digest(), sessions_before);
  EXPECT_TRUE(NotesFor(a).empty());
  EXPECT_TRUE(NotesFor(b).empty());
  EXPECT_TRUE(runner_->TakePublished().empty());
  EXPECT_EQ(tracker().live(), live);
}

TEST_F(ExecutorErrorTest, LeaderSideEffectFromAQueryIsAnErrorToTheCaller) {
  runner_->SetRole(raft::Role::kLeader, 1, 1);
  absl::StatusOr<int64_t> r = Query(EffectFromQuery{});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "queries must not change state")) << r.status();
  EXPECT_TRUE(Contains(r.status(), "LeaderSideEffect")) << r.status();
  ExpectNothingChanged(2);
  // Nothing was queued for the next command either.
  Run(2'000, SetOp{.key = "b", .value = 1}, /*term=*/1);
  EXPECT_TRUE(observed_.effects.empty());
}

TEST_F(ExecutorTest, AfterAFailedQueryCommandsMayScheduleAgain) {
  ASSERT_FALSE(Query(ScheduleFromQuery{}).ok());
  Run(1'000, ScheduleOp{.tag = "t", .delay_us = 1});
  Run(1'001, FiredOp{});
  EXPECT_EQ(observed_.fired, std::vector<std::string>{"t@2/1001"});
}

// ================================================================ side effects and roles

TEST_F(ExecutorTest, LeaderSideEffectRunsOnlyOnTheLeaderOfTheEntrysTerm) {
  Run(1'000, EffectOp{.tag = "follower-term1"}, /*term=*/1);  // follower: never
  runner_->SetRole(raft::Role::kLeader, 3, 1);
  Run(1'001, EffectOp{.tag = "replayed-term2"}, /*term=*/2);  // an older term's entry: replay
  Run(1'002, EffectOp{.tag = "leader-term3"}, /*term=*/3);
  EXPECT_EQ(observed_.effects, std::vector<std::string>{"leader-term3"});
  runner_->SetRole(raft::Role::kFollower, 4, 2);
  Run(1'003, EffectOp{.tag = "follower-term4"}, /*term=*/4);
  runner_->SetRole(raft::Role::kCandidate, 5, 0);
  Run(1'004, EffectOp{.tag = "candidate-term4"}, /*term=*/4);
  EXPECT_EQ(observed_.effects, std::vector<std::string>{"leader-term3"});
}

TEST_F(ExecutorTest, SideEffectAskedForByATimerRunsOnceAndOnlyWhereItsEntryWasLed) {
  // A timer fired by a non-command entry of the leader's term: its effect runs
  // then, not later with some other command.
  class TimerEffects : public StateMachine {
   public:
    explicit TimerEffects(Observed* o) : o_(o) {}
    void Configure(Executor& executor) override {
      executor_ = &executor;
      executor.Register<ScheduleOp>([this](Commit<ScheduleOp> c) {
        std::string tag = c->tag;
        executor_->Schedule(microseconds(c->delay_us), [this, tag] {
          executor_->LeaderSideEffect([this, tag] { o_->effects.push_back(tag); });
        });
      });
    }

   private:
    Observed* o_;
    Executor* executor_ = nullptr;
  };
  Observed observed;
  StateMachineRunner runner(std::make_unique<TimerEffects>(&observed), 1);
  ASSERT_TRUE(runner.Apply(MakeCommandEntry(1, ScheduleOp{.tag = "as-follower", .delay_us = 10})).ok());
  // Fired by an Initialize as follower: dropped, never run later.
  runner.Apply(Entry{2, 1, 2'000, EntryType::kInitialize, Bytes()}).IgnoreError();
  runner.SetRole(raft::Role::kLeader, 2, 1);
  ASSERT_TRUE(
      runner.Apply(MakeCommandEntry(3, ScheduleOp{.tag = "as-leader", .delay_us = 10}, 2, 2'000)).ok());
  runner.Apply(Entry{4, 2, 3'000, EntryType::kInitialize, Bytes()}).IgnoreError();
  EXPECT_EQ(observed.effects, std::vector<std::string>{"as-leader"});
  ASSERT_TRUE(runner.Apply(MakeCommandEntry(5, ScheduleOp{.tag = "none", .delay_us = 1'000'000}, 2, 3'000)).ok());
  EXPECT_EQ(observed.effects, std::vector<std::string>{"as-leader"});
}

TEST_F(ExecutorTest, RoleHooksAreCalledBySetRole) {
  runner_->SetRole(raft::Role::kLeader, 2, 1);
  runner_->SetRole(raft::Role::kFollower, 3, 2);
  runner_->SetRole(raft::Role::kCandidate, 4, 0);
  EXPECT_EQ(observed_.roles, (std::vector<std::string>{"leader:2", "follower:3:2", "follower:4:0"}));
}

// ================================================================ replay

TEST_F(ExecutorTest, ReplayingTheSameEntriesOnAFreshRunnerGivesTheSameEverything) {
  std::vector<Entry> log;
  auto add = [&](auto op, LogTime time) {
    log.push_back(CommandEntry(log.size() + 1, time, op));
  };
  add(SetOp{.key = "a", .value = 1, .keep = true}, 1'000);
  add(ScheduleOp{.tag = "p", .delay_us = 30, .interval_us = 70}, 1'010);
  add(ScheduleOp{.tag = "o", .delay_us = 200, .cancel_tag = "p"}, 1'020);
  add(SetOp{.key = "a", .value = 2, .keep = true}, 1'100);
  add(ThrowOp{}, 1'150);
  add(FiredOp{}, 1'400);
  add(DropOp{.key = "a"}, 1'500);
  std::vector<std::string> responses[2];
  std::vector<std::string> fired[2];
  std::string digests[2];
  for (int run = 0; run < 2; ++run) {
    Observed observed;
    auto sm = std::make_unique<TestStateMachine>(&observed);
    TestStateMachine* raw = sm.get();
    StateMachineRunner runner(std::move(sm), run + 1);
    for (const Entry& e : log) {
      absl::StatusOr<std::string> r = runner.Apply(e);
      responses[run].push_back(r.ok() ? *r : r.status().ToString());
    }
    fired[run] = observed.fired;
    digests[run] = raw->Digest();
  }
  EXPECT_EQ(responses[0], responses[1]);
  EXPECT_EQ(fired[0], fired[1]);
  EXPECT_EQ(digests[0], digests[1]);
  EXPECT_FALSE(fired[0].empty());
}

}  // namespace
}  // namespace caracal::server

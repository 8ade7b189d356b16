// The lock example (examples/lock) applied through the StateMachineRunner:
// acquiring, queueing, hand-over with "granted" events, rejections, session
// expiry and close, release tracking, and determinism.

#include "examples/lock/lock.h"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "examples/registry.h"
#include "framework/server/state_machine_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::examples::lock {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using server::StateMachineRunner;

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

constexpr LogTime kMs = 1000;

// One runner fed log entries built like the real server builds them. Every
// entry is kept (log()) and everything observable is written to a transcript
// (responses, and every event batch as it appears), so that two harnesses can
// be compared.
class Harness {
 public:
  Harness() : runner_(std::make_unique<LockStateMachine>(), /*id=*/1) {}

  // ---- entries ----
  void Apply(Entry entry) {
    time_ = std::max(time_, entry.timestamp);
    for (const auto& r : runner_.ApplyEntry(entry)) {
      absl::StrAppend(&transcript_, "#", r.index, " ",
                      r.result.ok() ? absl::StrCat("ok ", absl::CHexEscape(std::string(r.result->view()))) : r.result.status().ToString(),
                      "\n");
      responses_[r.index] = r.result;
    }
    for (const auto& [id, s] : runner_.sessions().sessions()) {
      for (const auto& batch : runner_.sessions().EventsAfter(id, seen_events_[id])) {
        absl::StrAppend(&transcript_, "  session ", id, " batch ", batch.index, "<", batch.previous, ":");
        for (const auto& e : batch.events) absl::StrAppend(&transcript_, " ", e.name, "=", absl::CHexEscape(e.payload));
        absl::StrAppend(&transcript_, "\n");
        seen_events_[id] = batch.index;
      }
    }
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
  absl::StatusOr<ResultOf<Op>> Submit(uint64_t session, const Op& op) {
    uint64_t sequence = session == 0 ? 0 : ++sequences_[session];
    Index index = Next();
    Apply(Entry{index, 1, Tick(), EntryType::kCommand,
                Bytes(serialization::EncodeCommandEntry(session, sequence, codec::EncodeOperation(op)))});
    last_command_ = index;
    const absl::StatusOr<std::string>& result = responses_.at(index);
    if (!result.ok()) return result.status();
    return codec::DecodeResult<Op>(*result);
  }
  // Submits `op`, expects `expected` as its result, and returns its index.
  template <typename Op>
  Index Expect(uint64_t session, const Op& op, ResultOf<Op> expected, std::string_view why = "") {
    auto result = Submit(session, op);
    EXPECT_TRUE(result.ok()) << Op::kName << " '" << op.name << "' from session " << session << ": " << result.status();
    if (result.ok()) {
      EXPECT_EQ(*result, expected) << Op::kName << " '" << op.name << "' from session " << session << ": " << why;
    }
    return last_command_;
  }
  void KeepAlive(uint64_t session, Index event_index = 0) {
    Apply(Entry{Next(), 1, Tick(), EntryType::kKeepAlive,
                Bytes(serialization::EncodeKeepAliveEntry({{{session, sequences_[session], event_index}}}))});
  }
  // Unregister{expired = false}: the client closed its session.
  void Close(uint64_t session) { Unregister(session, /*expired=*/false); }
  // Unregister{expired = true}: only takes effect once the session is suspect.
  void Expire(uint64_t session) { Unregister(session, /*expired=*/true); }
  void Unregister(uint64_t session, bool expired) {
    Apply(Entry{Next(), 1, Tick(), EntryType::kUnregister,
                Bytes(serialization::EncodeUnregisterEntry({session, expired}))});
  }

  // ---- observations ----
  HolderInfo HolderOf(const std::string& name) {
    auto result = runner_.Query(0, codec::EncodeOperation(Holder{.name = name}));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return HolderInfo{.session = ~0ull};
    return *codec::DecodeResult<Holder>(*result);
  }
  // The unacknowledged "granted" events of `session`, with the index of the
  // entry that published each.
  std::vector<std::pair<Index, Granted>> GrantedTo(uint64_t session) const {
    std::vector<std::pair<Index, Granted>> out;
    for (const auto& batch : runner_.sessions().EventsAfter(session, 0)) {
      for (const auto& event : batch.events) {
        EXPECT_EQ(event.name, kGrantedEvent);
        auto granted = codec::FromBytes<Granted>(event.payload);
        EXPECT_TRUE(granted.ok()) << granted.status();
        if (granted.ok()) out.emplace_back(batch.index, *granted);
      }
    }
    return out;
  }
  std::vector<uint64_t> OpenSessions() const {
    std::vector<uint64_t> out;
    for (const auto& [id, s] : runner_.sessions().sessions()) out.push_back(id);
    return out;
  }
  const server::SessionState* Find(uint64_t session) const { return runner_.sessions().Find(session); }
  // The "granted" events published by the entry at `index`, by session.
  std::vector<std::pair<uint64_t, Granted>> GrantsAt(Index index) const {
    std::vector<std::pair<uint64_t, Granted>> out;
    for (const auto& [id, s] : runner_.sessions().sessions()) {
      for (const auto& [at, granted] : GrantedTo(id)) {
        if (at == index) out.emplace_back(id, granted);
      }
    }
    return out;
  }
  bool Released(Index index) const { return runner_.tracker().IsReleased(index); }
  // Everything two runners fed the same entries must agree on.
  std::string Observed() {
    std::string out = transcript_;
    absl::StrAppend(&out, "state: ", machine().Digest(), "\nsessions:\n", runner_.sessions().Digest(), "live:");
    for (Index i = 1; i <= runner_.applied(); ++i) {
      if (!Released(i)) absl::StrAppend(&out, " ", i);
    }
    return out;
  }

  LockStateMachine& machine() { return static_cast<LockStateMachine&>(runner_.state_machine()); }
  const std::vector<Entry>& log() const { return log_; }
  Index last_command() const { return last_command_; }

 private:
  StateMachineRunner runner_;
  LogTime time_ = 0;
  std::map<uint64_t, uint64_t> sequences_;
  std::map<uint64_t, Index> seen_events_;
  std::map<Index, absl::StatusOr<std::string>> responses_;
  std::string transcript_;
  std::vector<Entry> log_;
  Index last_command_ = 0;
};

class LockTest : public ::testing::Test {
 protected:
  // Granted{...} for `session`, whose Lock was at `lock_index`, passed at `at`.
  static std::pair<Index, Granted> GrantOf(const std::string& name, uint64_t session, Index lock_index, Index at) {
    return {at, Granted{.name = name, .session = session, .lock_index = lock_index, .granted_at = at}};
  }

  Harness h_;
};

TEST_F(LockTest, LockOnAFreeLockAcquiresIt) {
  uint64_t a = h_.Open();
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = 0, .waiters = 0}));
  h_.Expect(a, Lock{.name = "x"}, true);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 0}));
  EXPECT_TRUE(h_.GrantedTo(a).empty()) << "an immediate acquisition is told by the response, not by an event";
}

TEST_F(LockTest, ABusyLockQueuesCallersWithoutTellingAnyone) {
  uint64_t a = h_.Open(), b = h_.Open(), c = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(b, Lock{.name = "x"}, false);
  h_.Expect(c, Lock{.name = "x"}, false);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 2}));
  h_.Expect(b, Lock{.name = "y"}, true, "locks are independent");
  EXPECT_TRUE(h_.GrantedTo(b).empty());
  EXPECT_TRUE(h_.GrantedTo(c).empty());
}

TEST_F(LockTest, UnlockPassesTheLockToTheFirstWaiterAndTellsOnlyThatSession) {
  uint64_t a = h_.Open(), b = h_.Open(), c = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  Index b_lock = h_.Expect(b, Lock{.name = "x"}, false);
  Index c_lock = h_.Expect(c, Lock{.name = "x"}, false);

  Index first_unlock = h_.Expect(a, Unlock{.name = "x"}, b);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = b, .waiters = 1}));
  EXPECT_THAT(h_.GrantedTo(b), ElementsAre(GrantOf("x", b, b_lock, first_unlock)));
  EXPECT_TRUE(h_.GrantedTo(a).empty());
  EXPECT_TRUE(h_.GrantedTo(c).empty());

  h_.Expect(b, Unlock{.name = "x"}, c);
  EXPECT_THAT(h_.GrantedTo(c), ElementsAre(GrantOf("x", c, c_lock, h_.last_command())));
  h_.Expect(c, Unlock{.name = "x"}, 0u, "nobody waits: the lock is free");
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = 0, .waiters = 0}));
  EXPECT_EQ(h_.GrantedTo(b).size(), 1u) << "still one event each: nothing more was published";
}

TEST_F(LockTest, OnlyTheHolderMayUnlock) {
  uint64_t a = h_.Open(), b = h_.Open(), stranger = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(b, Lock{.name = "x"}, false);

  auto by_waiter = h_.Submit(b, Unlock{.name = "x"});
  ASSERT_FALSE(by_waiter.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(by_waiter.status())) << by_waiter.status();
  EXPECT_THAT(by_waiter.status().message(),
              HasSubstr(absl::StrCat("lock.unlock 'x': session ", b, " does not hold this lock, ",
                                     "so it may not unlock it (it is held by session ", a, ")")));
  auto of_free_lock = h_.Submit(stranger, Unlock{.name = "y"});
  ASSERT_FALSE(of_free_lock.ok());
  EXPECT_THAT(of_free_lock.status().message(), HasSubstr("lock.unlock 'y'"));
  EXPECT_THAT(of_free_lock.status().message(), HasSubstr("(the lock is free)"));

  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 1})) << "a rejected unlock changes nothing";
  EXPECT_TRUE(h_.GrantedTo(b).empty());
}

TEST_F(LockTest, TryLockAcquiresAFreeLockButNeverQueues) {
  uint64_t a = h_.Open(), b = h_.Open(), c = h_.Open();
  h_.Expect(a, TryLock{.name = "x"}, true);
  h_.Expect(b, TryLock{.name = "x"}, false);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 0}));
  Index c_lock = h_.Expect(c, Lock{.name = "x"}, false);

  h_.Expect(a, Unlock{.name = "x"}, c, "a lock taken by TryLock passes on like any other");
  EXPECT_TRUE(h_.GrantedTo(b).empty()) << "a failed TryLock never waits";
  EXPECT_THAT(h_.GrantedTo(c), ElementsAre(GrantOf("x", c, c_lock, h_.last_command())));
  h_.Expect(c, Unlock{.name = "x"}, 0u);
  h_.Expect(b, TryLock{.name = "x"}, true);
}

TEST_F(LockTest, ExpiryOfTheHolderGrantsTheNextWaiterOfEveryLockItHeld) {
  uint64_t a = h_.Open(/*timeout_ms=*/100), b = h_.Open(), c = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(a, Lock{.name = "y"}, true);
  Index b_lock = h_.Expect(b, Lock{.name = "x"}, false);
  Index c_lock = h_.Expect(c, Lock{.name = "y"}, false);
  h_.Expect(a, Lock{.name = "z"}, true);  // nobody waits for z

  h_.Tick(200 * kMs);  // a's keep-alives stopped: it is suspect
  h_.Expire(a);
  Index expiry = h_.Next() - 1;

  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = b, .waiters = 0}));
  EXPECT_EQ(h_.HolderOf("y"), (HolderInfo{.session = c, .waiters = 0}));
  EXPECT_EQ(h_.HolderOf("z"), (HolderInfo{.session = 0, .waiters = 0}));
  EXPECT_THAT(h_.GrantedTo(b), ElementsAre(GrantOf("x", b, b_lock, expiry)));
  EXPECT_THAT(h_.GrantedTo(c), ElementsAre(GrantOf("y", c, c_lock, expiry)));
}

TEST_F(LockTest, AnExpiryVoidedByAKeepAliveKeepsTheLock) {
  uint64_t a = h_.Open(/*timeout_ms=*/100), b = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(b, Lock{.name = "x"}, false);
  h_.Expire(a);  // not suspect yet: void
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 1}));
  EXPECT_TRUE(h_.GrantedTo(b).empty());
}

TEST_F(LockTest, ClosingAWaitingSessionRemovesItFromTheQueue) {
  uint64_t a = h_.Open(), b = h_.Open(), c = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(b, Lock{.name = "x"}, false);
  Index c_lock = h_.Expect(c, Lock{.name = "x"}, false);

  h_.Close(b);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 1}));
  h_.Expect(a, Unlock{.name = "x"}, c, "the closed session is skipped");
  EXPECT_THAT(h_.GrantedTo(c), ElementsAre(GrantOf("x", c, c_lock, h_.last_command())));
}

TEST_F(LockTest, ClosingTheHolderPassesItsLocksOn) {
  uint64_t a = h_.Open(), b = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  Index b_lock = h_.Expect(b, Lock{.name = "x"}, false);
  h_.Close(a);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = b, .waiters = 0}));
  EXPECT_THAT(h_.GrantedTo(b), ElementsAre(GrantOf("x", b, b_lock, h_.Next() - 1)));
}

TEST_F(LockTest, CommandsWithoutASessionAreRejected) {
  for (auto result : {h_.Submit(0, Lock{.name = "x"}), h_.Submit(0, TryLock{.name = "x"})}) {
    ASSERT_FALSE(result.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
    EXPECT_THAT(result.status().message(),
                HasSubstr("locks belong to client sessions, and this command was submitted without one (session 0)"));
  }
  auto unlock = h_.Submit(0, Unlock{.name = "x"});
  ASSERT_FALSE(unlock.ok());
  EXPECT_THAT(unlock.status().message(), HasSubstr("lock.unlock 'x': locks belong to client sessions"));
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = 0, .waiters = 0}));
  EXPECT_EQ(h_.machine().Digest(), "");
}

TEST_F(LockTest, AnEmptyLockNameIsRejected) {
  uint64_t a = h_.Open();
  auto result = h_.Submit(a, Lock{.name = ""});
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("lock.lock: the lock name must not be empty"));
  EXPECT_EQ(h_.machine().Digest(), "");
}

TEST_F(LockTest, LocksAreNotReentrantAndASessionQueuesOnce) {
  uint64_t a = h_.Open(), b = h_.Open();
  h_.Expect(a, Lock{.name = "x"}, true);
  h_.Expect(a, Lock{.name = "x"}, true, "the holder already holds it");
  h_.Expect(a, TryLock{.name = "x"}, true);
  h_.Expect(b, Lock{.name = "x"}, false);
  Index b_lock = h_.last_command();
  h_.Expect(b, Lock{.name = "x"}, false);
  EXPECT_EQ(h_.HolderOf("x"), (HolderInfo{.session = a, .waiters = 1})) << "b keeps its first place, once";

  h_.Expect(a, Unlock{.name = "x"}, b, "one unlock releases");
  EXPECT_THAT(h_.GrantedTo(b), ElementsAre(GrantOf("x", b, b_lock, h_.last_command())));
  h_.Expect(b, Unlock{.name = "x"}, 0u);
}

TEST_F(LockTest, TheCommandBehindAClaimStaysLiveUntilTheClaimEnds) {
  uint64_t a = h_.Open(), b = h_.Open(), c = h_.Open();
  Index a_lock = h_.Expect(a, Lock{.name = "x"}, true);
  Index b_lock = h_.Expect(b, Lock{.name = "x"}, false);
  Index failed_try = h_.Expect(c, TryLock{.name = "x"}, false);
  Index relock = h_.Expect(a, Lock{.name = "x"}, true);
  Index c_lock = h_.Expect(c, Lock{.name = "x"}, false);
  EXPECT_FALSE(h_.Released(a_lock)) << "the holder's Lock";
  EXPECT_FALSE(h_.Released(b_lock)) << "a waiter's Lock";
  EXPECT_TRUE(h_.Released(failed_try)) << "a TryLock that did not acquire holds nothing";
  EXPECT_TRUE(h_.Released(relock)) << "a repeated Lock adds nothing";

  Index unlock = h_.Expect(a, Unlock{.name = "x"}, b);
  EXPECT_TRUE(h_.Released(a_lock)) << "the claim ended";
  EXPECT_FALSE(h_.Released(b_lock)) << "now the holder's Lock";
  EXPECT_FALSE(h_.Released(unlock)) << "it published an event b has not acknowledged";
  h_.KeepAlive(b, /*event_index=*/unlock);
  EXPECT_TRUE(h_.Released(unlock)) << "an Unlock is a tombstone once its events are acknowledged";

  h_.Close(c);
  EXPECT_TRUE(h_.Released(c_lock)) << "a closed session stops waiting";
  h_.Close(b);
  EXPECT_TRUE(h_.Released(b_lock));
  EXPECT_EQ(h_.machine().Digest(), "");
}

TEST_F(LockTest, OperationsDeclareTheirCompactionModes) {
  EXPECT_EQ(Lock{}.compaction(), CompactionMode::kRelease);
  EXPECT_EQ(TryLock{}.compaction(), CompactionMode::kRelease);
  EXPECT_EQ(Unlock{}.compaction(), CompactionMode::kTombstone);
}

// The specification in a few lines: per lock, a FIFO of sessions whose
// front holds it.
class QueueModel {
 public:
  bool Acquire(uint64_t session, const std::string& name, bool wait) {
    std::deque<uint64_t>& q = queues_[name];
    if (q.empty() || q.front() == session) {
      if (q.empty()) q.push_back(session);
      return true;
    }
    if (wait && std::find(q.begin(), q.end(), session) == q.end()) q.push_back(session);
    return false;
  }
  // The new holder (0: free), or nullopt when `session` may not unlock.
  std::optional<uint64_t> Unlock(uint64_t session, const std::string& name) {
    std::deque<uint64_t>& q = queues_[name];
    if (q.empty() || q.front() != session) return std::nullopt;
    q.pop_front();
    return q.empty() ? 0 : q.front();
  }
  // The (lock, new holder) pairs the close grants.
  std::set<std::pair<std::string, uint64_t>> Close(uint64_t session) {
    std::set<std::pair<std::string, uint64_t>> granted;
    for (auto& [name, q] : queues_) {
      bool held = !q.empty() && q.front() == session;
      std::erase(q, session);
      if (held && !q.empty()) granted.emplace(name, q.front());
    }
    return granted;
  }
  HolderInfo Holder(const std::string& name) const {
    auto it = queues_.find(name);
    if (it == queues_.end() || it->second.empty()) return HolderInfo{};
    return HolderInfo{.session = it->second.front(), .waiters = it->second.size() - 1};
  }

 private:
  std::map<std::string, std::deque<uint64_t>> queues_;
};

struct WorkloadStats {
  int grants = 0, rejected_unlocks = 0, expiries = 0, closes = 0;
};

// A seeded random workload over a few sessions and three locks: every
// command (rejected ones too, and some without a session), keep-alives that
// acknowledge events, sessions opened, closed and expired. Checks every
// response, every "granted" event and every holder against QueueModel.
WorkloadStats RunRandomWorkload(Harness& h, uint64_t seed, int steps) {
  std::mt19937_64 rng(seed);
  const std::vector<std::string> names = {"a", "b", "c"};
  QueueModel model;
  WorkloadStats stats;
  auto random_timeout = [&] { return rng() % 2 == 0 ? 50 : 10'000; };  // ms; 50 expires easily
  for (int i = 0; i < 4; ++i) h.Open(random_timeout());
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE(absl::StrCat("seed ", seed, ", step ", step, ", index ", h.Next()));
    const std::vector<uint64_t> open = h.OpenSessions();
    uint64_t s = open.empty() || rng() % 20 == 0 ? 0 : open[rng() % open.size()];
    const std::string& name = names[rng() % names.size()];
    std::set<std::pair<std::string, uint64_t>> expected_grants;
    switch (rng() % 10) {
      case 0: case 1: case 2: case 3: case 4: {
        bool wait = rng() % 4 != 0;
        auto acquired = wait ? h.Submit(s, Lock{.name = name}) : h.Submit(s, TryLock{.name = name});
        if (s == 0) {
          EXPECT_FALSE(acquired.ok());
        } else {
          EXPECT_EQ(acquired.value_or(false), model.Acquire(s, name, wait)) << acquired.status();
        }
        break;
      }
      case 5: case 6: case 7: {
        uint64_t holder = model.Holder(name).session;
        if (holder != 0 && rng() % 4 != 0) s = holder;  // mostly the holder, sometimes anyone
        auto next = h.Submit(s, Unlock{.name = name});
        std::optional<uint64_t> expected = s == 0 ? std::nullopt : model.Unlock(s, name);
        EXPECT_EQ(next.ok(), expected.has_value()) << next.status();
        if (next.ok() && expected) {
          EXPECT_EQ(*next, *expected);
        }
        if (!next.ok()) ++stats.rejected_unlocks;
        if (expected && *expected != 0) expected_grants.emplace(name, *expected);
        break;
      }
      case 8:
        h.KeepAlive(s, /*event_index=*/h.Next() - 1);
        break;
      case 9:
        if (open.size() > 3) {
          h.Tick(30 * kMs);  // short-timeout sessions may turn suspect: an expiry sticks only for them
          bool expired = rng() % 2 == 0;
          h.Unregister(s, expired);
          if (s != 0 && h.Find(s) == nullptr) {
            ++(expired ? stats.expiries : stats.closes);
            expected_grants = model.Close(s);
          }
        } else {
          h.Open(random_timeout());
        }
        break;
    }
    std::set<std::pair<std::string, uint64_t>> grants;
    for (const auto& [session, granted] : h.GrantsAt(h.Next() - 1)) {
      EXPECT_EQ(granted.session, session);
      EXPECT_EQ(granted.granted_at, h.Next() - 1);
      grants.emplace(granted.name, session);
    }
    EXPECT_EQ(grants, expected_grants);
    stats.grants += static_cast<int>(grants.size());
    for (const std::string& n : names) EXPECT_EQ(h.HolderOf(n), model.Holder(n)) << "lock " << n;
    if (::testing::Test::HasFailure()) break;
  }
  return stats;
}

TEST_F(LockTest, RandomWorkloadsMatchAFifoQueuePerLock) {
  WorkloadStats total;
  for (uint64_t seed = 1; seed <= 20 && !HasFailure(); ++seed) {
    Harness h;
    WorkloadStats stats = RunRandomWorkload(h, seed, 300);
    total.grants += stats.grants;
    total.rejected_unlocks += stats.rejected_unlocks;
    total.expiries += stats.expiries;
    total.closes += stats.closes;
  }
  // The workload is worth something only if it reaches every path.
  EXPECT_GT(total.grants, 100);
  EXPECT_GT(total.rejected_unlocks, 20);
  EXPECT_GT(total.expiries, 10);
  EXPECT_GT(total.closes, 10);
}

// A second runner fed the same entries must produce the same responses,
// events, state, session state and live entries.
TEST_F(LockTest, TwoRunnersFedTheSameEntriesAgree) {
  WorkloadStats stats = RunRandomWorkload(h_, /*seed=*/20240611, 400);
  ASSERT_GT(stats.grants, 0);
  Harness replay;
  for (const Entry& e : h_.log()) replay.Apply(e);
  EXPECT_EQ(replay.Observed(), h_.Observed());
}

TEST(LockRegistryTest, CaracalServerCanHostTheLockStateMachine) {
  auto names = StateMachineNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "lock"), names.end());
  StateMachineFactory factory = FindStateMachine("lock");
  ASSERT_TRUE(factory);
  std::unique_ptr<StateMachine> machine = factory();
  EXPECT_NE(dynamic_cast<LockStateMachine*>(machine.get()), nullptr);
  EXPECT_NE(dynamic_cast<SessionListener*>(machine.get()), nullptr);
}

}  // namespace
}  // namespace caracal::examples::lock

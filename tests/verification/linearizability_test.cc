// The history recorder and the linearizability checker: hand-written
// histories with a known answer for each model, the text format, and
// randomized histories -- linearizable by construction (simulated clients
// against one real sequential object), then with one output changed in a way
// no linearization can explain.

#include "tests/verification/linearizability.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/verification/history.h"

namespace caracal::verification {

// gtest prints a CheckResult with its explanation.
void PrintTo(const CheckResult& result, std::ostream* os) {
  *os << VerdictName(result.verdict) << " (" << result.stats.operations << " operations, "
      << result.stats.states_explored << " states)\n"
      << result.explanation;
}

namespace {

using ::testing::HasSubstr;

MATCHER_P(HasVerdict, verdict, absl::StrCat("is ", std::string(VerdictName(verdict)))) {
  *result_listener << "is " << VerdictName(arg.verdict) << "\n" << arg.explanation;
  return arg.verdict == verdict;
}

History Parse(std::string_view text) {
  absl::StatusOr<History> history = History::Parse(text);
  EXPECT_TRUE(history.ok()) << history.status();
  return history.value_or(History());
}

CheckResult Check(const Model& model, const History& history, const CheckOptions& options = {}) {
  absl::StatusOr<CheckResult> result = CheckLinearizability(history, model, options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) {
    CheckResult failed;
    failed.verdict = Verdict::kUnknown;
    failed.explanation = std::string(result.status().message());
    return failed;
  }
  return *result;
}

CheckResult CheckKeyValue(std::string_view text) { return Check(*KeyValueModel(), Parse(text)); }
CheckResult CheckLock(std::string_view text) { return Check(*LockModel(), Parse(text)); }
CheckResult CheckCounter(std::string_view text) { return Check(*CounterModel(), Parse(text)); }

const auto kLinearizable = HasVerdict(Verdict::kLinearizable);
const auto kViolation = HasVerdict(Verdict::kViolation);

// ---------------------------------------------------------------------------
// The key-value model

TEST(KeyValueCheckTest, SequentialOperationsAreLinearizable) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p0 [20, 30] ok get("x") -> "1"
    2 p0 [40, 50] ok cas("x", "1", "2") -> true
    3 p0 [60, 70] ok cas("x", "1", "3") -> false
    4 p0 [80, 90] ok remove("x") -> "2"
    5 p0 [100, 110] ok get("x") -> nil
    6 p0 [120, 130] ok cas("x", nil, "4") -> true
    7 p0 [140, 150] ok get("x") -> "4"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, StaleReadAfterACompletedWriteIsAViolation) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [20, 30] ok put("x", "2") -> "1"
    2 p2 [40, 50] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, ReadConcurrentWithAWriteMaySeeEitherValue) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p0 [20, 60] ok put("x", "2") -> "1"
    2 p1 [30, 40] ok get("x") -> "1"
    3 p2 [35, 50] ok get("x") -> "2"
    4 p1 [70, 80] ok get("x") -> "2"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, ReadsCannotSeeAWriteAndThenNotSeeIt) {
  // Both reads overlap the write, but the second starts after the first saw it.
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p0 [20, 60] ok put("x", "2")
    2 p1 [30, 40] ok get("x") -> "2"
    3 p2 [45, 50] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, EqualTimestampsAreConcurrent) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [10, 20] ok get("x") -> nil
  )");
  EXPECT_THAT(result, kLinearizable);
  result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [11, 20] ok get("x") -> nil
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, LostUpdateThroughCasIsAViolation) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "0") -> nil
    1 p1 [20, 40] ok cas("x", "0", "1") -> true
    2 p2 [25, 45] ok cas("x", "0", "2") -> true
  )");
  EXPECT_THAT(result, kViolation);
  result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "0") -> nil
    1 p1 [20, 40] ok cas("x", "0", "1") -> true
    2 p2 [25, 45] ok cas("x", "0", "2") -> false
    3 p0 [50, 60] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, ReadOfAValueNeverWrittenIsAViolation) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [5, 15] ok get("x") -> "7"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, PutMustReturnThePreviousValue) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p0 [20, 30] ok put("x", "2") -> nil
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, FailedWriteNeverTookEffect) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] fail put("x", "1")
    1 p1 [20, 30] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kViolation);
  result = CheckKeyValue(R"(
    0 p0 [0, 10] fail put("x", "1")
    1 p1 [5, 30] ok get("x") -> nil
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, InfoWriteMayTakeEffectLongAfterItsClientGaveUp) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, inf] info put("x", "1")
    1 p1 [100, 110] ok get("x") -> nil
    2 p1 [200, 210] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, InfoWriteMayNeverTakeEffect) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, inf] info put("x", "1")
    1 p1 [100, 110] ok get("x") -> nil
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, InfoWriteTakesEffectAtMostOnce) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, inf] info put("x", "1")
    1 p1 [10, 20] ok get("x") -> "1"
    2 p1 [30, 40] ok put("x", "2") -> "1"
    3 p1 [50, 60] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, InfoWriteCannotTakeEffectBeforeItsInvocation) {
  CheckResult result = CheckKeyValue(R"(
    0 p1 [0, 10] ok get("x") -> "1"
    1 p0 [20, inf] info put("x", "1")
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, InfoCasIsAppliedOnlyIfItsExpectationHolds) {
  // An info cas that may have happened explains the read of "2" ...
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [20, inf] info cas("x", "1", "2")
    2 p2 [30, 40] ok get("x") -> "2"
  )");
  EXPECT_THAT(result, kLinearizable);
  // ... but not once the value it expects is gone for good.
  result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p0 [15, 18] ok put("x", "3") -> "1"
    2 p1 [20, inf] info cas("x", "1", "2")
    3 p2 [30, 40] ok get("x") -> "2"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(KeyValueCheckTest, InfoOperationsMayTakeEffectBackToBack) {
  // The cas only succeeds right after the info put: neither may be skipped as
  // redundant.
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, inf] info put("x", "1")
    1 p1 [5, inf] info cas("x", "1", "2")
    2 p2 [5, inf] info put("x", "3")
    3 p3 [10, 20] ok get("x") -> "2"
  )");
  EXPECT_THAT(result, kLinearizable);
  // Two info writes, each seen by a read in turn.
  result = CheckKeyValue(R"(
    0 p0 [0, inf] info put("x", "1")
    1 p1 [0, inf] info put("x", "2")
    2 p2 [10, 20] ok get("x") -> "2"
    3 p2 [30, 40] ok get("x") -> "1"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, UnobservedOutputsAreNotChecked) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1")
    1 p1 [20, 30] ok put("x", "2")
    2 p2 [40, 50] ok cas("x", "2", "3")
    3 p2 [60, 70] ok get("x") -> "3"
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(KeyValueCheckTest, KeysAreCheckedIndependentlyAndTheViolatingKeyIsNamed) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [5, 15] ok put("y", "1") -> nil
    2 p0 [20, 30] ok put("y", "2") -> "1"
    3 p1 [40, 50] ok get("x") -> "1"
    4 p2 [60, 70] ok get("y") -> "1"
  )");
  EXPECT_THAT(result, kViolation);
  EXPECT_EQ(result.partition, "y");
  EXPECT_THAT(result.explanation, HasSubstr("partition \"y\""));
}

TEST(KeyValueCheckTest, ExplanationShowsTheStuckOperationAndItsCandidates) {
  CheckResult result = CheckKeyValue(R"(
    0 p0 [0, 10] ok put("x", "1") -> nil
    1 p1 [20, 30] ok put("x", "2") -> "1"
    2 p2 [40, 50] ok get("x") -> "1"
  )");
  ASSERT_THAT(result, kViolation);
  EXPECT_THAT(result.explanation, HasSubstr("places 2 of them"));
  EXPECT_THAT(result.explanation,
              HasSubstr("From state \"2\", operation 2 must take effect before it completes at 50"));
  EXPECT_THAT(result.explanation, HasSubstr("2 p2 [40, 50] ok get(\"x\") -> \"1\"  impossible in state \"2\""));
  // The operations involved are dump lines: they parse back into a history
  // that is still a violation (here, the whole history).
  std::string involved = result.explanation.substr(result.explanation.find("Operations involved:") + 20);
  EXPECT_THAT(CheckKeyValue(involved), kViolation);
}

TEST(KeyValueCheckTest, MalformedOperationsAreErrorsNotViolations) {
  auto model = KeyValueModel();
  for (std::string_view text : {
           R"(0 p0 [0, 10] ok increment("x"))",
           R"(0 p0 [0, 10] ok put("x"))",
           R"(0 p0 [0, 10] ok put(1, "x"))",
           R"(0 p0 [0, 10] ok cas("x", "1", "2") -> "2")",
           R"(0 p0 [0, inf] info get("x") -> nil)",
           R"(0 p0 [10, 0] ok get("x"))",
           "0 p0 [0, 10] ok get(\"x\")\n0 p1 [0, 10] ok get(\"x\")",
       }) {
    absl::StatusOr<CheckResult> result = CheckLinearizability(Parse(text), *model);
    EXPECT_FALSE(result.ok()) << text;
  }
}

// ---------------------------------------------------------------------------
// The lock model

TEST(LockCheckTest, TwoOverlappingAcquiresBothGrantedIsAViolation) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p2 [5, 15] ok acquire("l", 2)
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(LockCheckTest, QueuedAcquireIsOneOperationFromInvocationToGrant) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1) -> true
    1 p2 [5, 100] ok acquire("l", 2)
    2 p1 [40, 50] ok release("l", 1) -> true
    3 p2 [110, 120] ok release("l", 2) -> true
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(LockCheckTest, AcquireCannotBeGrantedBeforeTheHolderReleases) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p2 [5, 30] ok acquire("l", 2)
    2 p1 [40, 50] ok release("l", 1)
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(LockCheckTest, OnlyTheHolderReleases) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p2 [20, 30] ok release("l", 2) -> true
  )");
  EXPECT_THAT(result, kViolation);
  result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p2 [20, 30] ok release("l", 2) -> false
    2 p1 [40, 50] ok release("l", 1) -> true
    3 p1 [60, 70] ok release("l", 1) -> false
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(LockCheckTest, TryLockFailsOnlyWhenSomeoneElseHoldsTheLock) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1) -> false
  )");
  EXPECT_THAT(result, kViolation);
  result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p1 [20, 30] ok acquire("l", 1) -> true
    2 p2 [20, 30] ok acquire("l", 2) -> false
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(LockCheckTest, HolderReacquiresWithoutNestingAndOneReleaseFrees) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p1 [20, 30] ok acquire("l", 1)
    2 p1 [40, 50] ok release("l", 1) -> true
    3 p2 [60, 70] ok acquire("l", 2) -> true
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(LockCheckTest, InfoReleaseMayHaveFreedTheLock) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p1 [20, inf] info release("l", 1)
    2 p2 [30, 40] ok acquire("l", 2)
  )");
  EXPECT_THAT(result, kLinearizable);
  // Without it, the second grant is impossible.
  result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("l", 1)
    1 p2 [30, 40] ok acquire("l", 2)
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(LockCheckTest, InfoAcquireMustBeTakenIntoAccountWhenItExplainsARelease) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, inf] info acquire("l", 1)
    1 p1 [50, 60] ok release("l", 1) -> true
  )");
  EXPECT_THAT(result, kLinearizable);
  // An info acquire granted to 1 excludes 2 until 1 releases.
  result = CheckLock(R"(
    0 p1 [0, inf] info acquire("l", 1)
    1 p1 [50, 60] ok release("l", 1) -> true
    2 p2 [20, 30] ok acquire("l", 2)
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(LockCheckTest, LocksAreIndependent) {
  CheckResult result = CheckLock(R"(
    0 p1 [0, 10] ok acquire("a", 1)
    1 p2 [5, 15] ok acquire("b", 2)
    2 p3 [20, 30] ok acquire("c", 1)
  )");
  EXPECT_THAT(result, kLinearizable);
}

// ---------------------------------------------------------------------------
// The counter model

TEST(CounterCheckTest, AddsReturnRunningTotals) {
  CheckResult result = CheckCounter(R"(
    0 p0 [0, 10] ok add("c", 1) -> 1
    1 p1 [20, 30] ok add("c", 2) -> 3
    2 p0 [40, 50] ok read("c") -> 3
    3 p1 [60, 70] ok add("c", -5) -> -2
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(CounterCheckTest, CounterThatSkipsIsAViolation) {
  CheckResult result = CheckCounter(R"(
    0 p0 [0, 10] ok add("c", 1) -> 1
    1 p1 [20, 30] ok add("c", 1) -> 3
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(CounterCheckTest, ConcurrentAddsMayTakeEffectInEitherOrder) {
  CheckResult result = CheckCounter(R"(
    0 p0 [0, 50] ok add("c", 1) -> 3
    1 p1 [10, 40] ok add("c", 2) -> 2
    2 p2 [5, 60] ok read("c") -> 2
  )");
  EXPECT_THAT(result, kLinearizable);
}

TEST(CounterCheckTest, ReadGoingBackwardsIsAViolation) {
  CheckResult result = CheckCounter(R"(
    0 p0 [0, 50] ok add("c", 1)
    1 p1 [10, 20] ok read("c") -> 1
    2 p2 [30, 40] ok read("c") -> 0
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(CounterCheckTest, InfoAddMayOrMayNotCountButOnlyAsAWhole) {
  CheckResult result = CheckCounter(R"(
    0 p0 [0, inf] info add("c", 5)
    1 p1 [10, 20] ok read("c") -> 0
    2 p1 [30, 40] ok read("c") -> 5
  )");
  EXPECT_THAT(result, kLinearizable);
  result = CheckCounter(R"(
    0 p0 [0, inf] info add("c", 5)
    1 p1 [10, 20] ok read("c") -> 3
  )");
  EXPECT_THAT(result, kViolation);
  result = CheckCounter(R"(
    0 p0 [0, inf] info add("c", 5)
    1 p1 [10, 20] ok read("c") -> 5
    2 p1 [30, 40] ok read("c") -> 10
  )");
  EXPECT_THAT(result, kViolation);
}

// ---------------------------------------------------------------------------
// Histories: the recorder and the text format

TEST(HistoryTest, RecorderStampsOperationsWithItsClock) {
  Timestamp now = 100;
  HistoryRecorder recorder([&] { return now; });
  int64_t put = recorder.Invoke(1, "put", {"x", "1"});
  now = 150;
  int64_t get = recorder.Invoke(2, "get", {"x"});
  now = 200;
  recorder.Ok(put, Value());
  recorder.FailAt(170, get);

  History history = recorder.Snapshot();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history.operations()[0].ToString(), R"(0 p1 [100, 200] ok put("x", "1") -> nil)");
  EXPECT_EQ(history.operations()[1].ToString(), R"(1 p2 [150, 170] fail get("x"))");
}

TEST(HistoryTest, PendingAndTimedOutOperationsAreInfoForever) {
  HistoryRecorder recorder([] { return Timestamp{5}; });
  int64_t timed_out = recorder.Invoke(1, "put", {"x", "1"});
  recorder.Invoke(2, "get", {"x"});  // still pending
  recorder.InfoAt(50, timed_out);

  History history = recorder.Snapshot();
  for (const Operation& op : history.operations()) {
    EXPECT_EQ(op.completion, Completion::kInfo);
    EXPECT_EQ(op.complete, kForever);
    EXPECT_FALSE(op.output.has_value());
  }
}

TEST(HistoryTest, DumpParsesBackToTheSameHistory) {
  HistoryRecorder recorder([] { return Timestamp{0}; });
  recorder.OkAt(10, recorder.InvokeAt(-5, 3, "put", {"quote\"back\\slash\nnew\tline\x01", "v"}), Value());
  recorder.OkAt(20, recorder.InvokeAt(1, 0, "f", {}), Value(true));
  recorder.OkAt(30, recorder.InvokeAt(2, 7, "add", {"c", int64_t{-9223372036854775807}}), Value(-4));
  recorder.OkAt(40, recorder.InvokeAt(3, 1, "cas", {"x", Value(), "y"}));
  recorder.FailAt(50, recorder.InvokeAt(4, 2, "release", {"l", false}));
  recorder.Invoke(9, "get", {""});

  History history = recorder.Snapshot();
  absl::StatusOr<History> parsed = History::Parse(history.ToString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), history.size());
  for (size_t i = 0; i < history.size(); ++i) {
    const Operation& a = history.operations()[i];
    const Operation& b = parsed->operations()[i];
    EXPECT_EQ(a.ToString(), b.ToString());
    EXPECT_EQ(a.args, b.args);
    EXPECT_EQ(a.output, b.output);
    EXPECT_EQ(a.completion, b.completion);
    EXPECT_EQ(a.complete, b.complete);
  }
}

TEST(HistoryTest, ParseErrorsNameTheLineAndWhatWasExpected) {
  absl::StatusOr<History> bad = History::Parse("# a comment\n0 p0 [0, 10] ok get(\"x\")\n1 p0 [0 10] ok get(\"x\")\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("history line 3: expected \",\""));
  EXPECT_FALSE(History::Parse("0 p0 [0, 10] maybe get(\"x\")").ok());
  EXPECT_FALSE(History::Parse("0 p0 [0, 10] ok get(\"x)").ok());
  EXPECT_FALSE(History::Parse("0 p0 [0, 10] ok get(\"x\") -> ").ok());
  EXPECT_FALSE(History::Parse("0 p0 [0, 10] ok get(\"x\") trailing").ok());
}

TEST(HistoryTest, StoredFailingHistoryIsStillAViolation) {
  // A history as a failing run would print it, pasted here to pin the bug:
  // a read served by a deposed leader returns the value before a write that
  // had already completed.
  CheckResult result = CheckKeyValue(R"(
    # caracal history: id process [invoke, complete] status call [-> output]
    0 p0 [1000, 2400] ok put("k1", "a") -> nil
    1 p1 [1200, 1900] ok get("k1") -> nil
    2 p2 [2500, 3100] ok put("k1", "b") -> "a"
    3 p3 [2600, inf] info put("k1", "c")
    4 p1 [3300, 3400] ok get("k1") -> "a"
  )");
  EXPECT_THAT(result, kViolation);
}

TEST(HistoryTest, RealThreadsRecordALinearizableCounterHistory) {
  // Four threads add to and read a mutex-protected counter, recording with the
  // steady clock around each critical section.
  HistoryRecorder recorder;
  std::mutex mu;
  int64_t total = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) {
        bool read = i % 3 == 0;
        int64_t id = read ? recorder.Invoke(t, "read", {"c"}) : recorder.Invoke(t, "add", {"c", t + 1});
        int64_t output;
        {
          std::lock_guard<std::mutex> lock(mu);
          output = read ? total : (total += t + 1);
        }
        recorder.Ok(id, output);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  History history = recorder.Snapshot();
  ASSERT_EQ(history.size(), 1000u);
  EXPECT_THAT(Check(*CounterModel(), history), kLinearizable);
}

// ---------------------------------------------------------------------------
// Randomized histories

// One client call in a simulated run. A blocking call may have to wait before
// it can take effect (an acquire of a held lock).
struct Call {
  std::string function;
  std::vector<Value> args;
  bool blocks = false;
};

// The real object the simulated clients share, applied one call at a time.
class SequentialObject {
 public:
  virtual ~SequentialObject() = default;
  virtual Call Next(std::mt19937_64& rng, int client) = 0;
  // The output, or nullopt when a blocking call cannot take effect yet.
  virtual std::optional<Value> Apply(const Call& call, int client) = 0;
  // The client must keep invoking after the workload's budget (it holds a lock).
  virtual bool Owes(int /*client*/) const { return false; }
};

bool Chance(std::mt19937_64& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
int Pick(std::mt19937_64& rng, int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

class KeyValueObject : public SequentialObject {
 public:
  explicit KeyValueObject(int keys) : keys_(keys) {}

  Call Next(std::mt19937_64& rng, int) override {
    std::string key = absl::StrCat("k", Pick(rng, keys_));
    int r = Pick(rng, 10);
    if (r < 4) return {"get", {key}};
    if (r < 7) return {"put", {key, NewValue()}};
    if (r < 9) {
      // Half the time the current value, so that some cas succeed.
      Value expected = Chance(rng, 0.5) ? Value(Lookup(key)) : Value(absl::StrCat("v", Pick(rng, next_ + 1)));
      return {"cas", {key, expected, NewValue()}};
    }
    return {"remove", {key}};
  }

  std::optional<Value> Apply(const Call& call, int) override {
    const std::string& key = call.args[0].as_string();
    Value before = Lookup(key);
    if (call.function == "put") map_[key] = call.args[1].as_string();
    if (call.function == "remove") map_.erase(key);
    if (call.function == "cas") {
      if (before != call.args[1]) return Value(false);
      map_[key] = call.args[2].as_string();
      return Value(true);
    }
    return before;
  }

 private:
  std::optional<std::string> Lookup(const std::string& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  std::string NewValue() { return absl::StrCat("v", next_++); }  // every written value is unique

  const int keys_;
  int next_ = 0;
  std::map<std::string, std::string> map_;
};

class CounterObject : public SequentialObject {
 public:
  Call Next(std::mt19937_64& rng, int) override {
    std::string name = absl::StrCat("c", Pick(rng, 2));
    if (Chance(rng, 0.4)) return {"read", {name}};
    return {"add", {name, 1 + Pick(rng, 5)}};  // positive: totals only grow
  }
  std::optional<Value> Apply(const Call& call, int) override {
    int64_t& total = totals_[call.args[0].as_string()];
    if (call.function == "add") total += call.args[1].as_int();
    return Value(total);
  }

 private:
  std::map<std::string, int64_t> totals_;
};

// Clients hold at most one lock: a client holding one releases it next;
// otherwise it acquires (blocking or try) or, now and then, releases a lock
// it does not hold.
class LockObject : public SequentialObject {
 public:
  Call Next(std::mt19937_64& rng, int client) override {
    for (const auto& [name, holder] : holders_) {
      if (holder == client) return {"release", {name, client}};
    }
    std::string name = absl::StrCat("l", Pick(rng, 2));
    int r = Pick(rng, 10);
    if (r < 6) return {"acquire", {name, client}, /*blocks=*/true};
    if (r < 9) return {"acquire", {name, client}};
    return {"release", {name, client}};
  }

  std::optional<Value> Apply(const Call& call, int client) override {
    const std::string& name = call.args[0].as_string();
    auto it = holders_.find(name);
    bool free = it == holders_.end();
    if (call.function == "release") {
      if (free || it->second != client) return Value(false);
      holders_.erase(it);
      return Value(true);
    }
    if (!free) return call.blocks ? std::nullopt : std::optional<Value>(Value(false));
    holders_[name] = client;
    return Value(true);
  }

  bool Owes(int client) const override {
    return std::any_of(holders_.begin(), holders_.end(), [&](const auto& h) { return h.second == client; });
  }

 private:
  std::map<std::string, int> holders_;
};

struct Workload {
  int clients = 5;
  int operations = 200;
  // Per tick: how likely an idle client invokes, an invoked call takes effect,
  // and a call that took effect completes. Low rates, long overlaps.
  double invoke = 0.5;
  double apply = 0.3;
  double complete = 0.3;
  double fail = 0.0;          // per tick, before taking effect: rejected
  double info = 0.0;          // per tick: the client gives up (the call may still take effect)
  double unobserved = 0.0;    // an ok call's output is not recorded
  double orphan_drop = 0.02;  // per tick: an info call that has not taken effect never will
};

// Simulated clients against `object`: every call takes effect atomically at
// one tick between its invocation and its completion (or, for an info call,
// at any later tick or never), so the history is linearizable by
// construction. Each client does one thing per tick, so a client's calls are
// strictly ordered in time.
History Simulate(SequentialObject& object, const Workload& w, uint64_t seed) {
  std::mt19937_64 rng(seed);
  HistoryRecorder recorder([] { return Timestamp{0}; });  // every timestamp is explicit
  enum class Phase { kIdle, kInvoked, kApplied };
  struct Client {
    Phase phase = Phase::kIdle;
    Call call;
    int64_t id = 0;
    Value output;
  };
  std::vector<Client> clients(w.clients);
  std::vector<std::pair<Call, int>> orphans;  // info calls that may still take effect
  int invoked = 0;
  auto busy = [&] {
    return !orphans.empty() ||
           std::any_of(clients.begin(), clients.end(), [](const Client& c) { return c.phase != Phase::kIdle; });
  };
  for (Timestamp t = 0; invoked < w.operations || busy(); ++t) {
    for (int c = 0; c < w.clients; ++c) {
      Client& client = clients[c];
      if (client.phase == Phase::kIdle) {
        if ((invoked < w.operations || object.Owes(c)) && Chance(rng, w.invoke)) {
          client.call = object.Next(rng, c);
          client.id = recorder.InvokeAt(t, c, client.call.function, client.call.args);
          client.phase = Phase::kInvoked;
          ++invoked;
        }
      } else if (client.phase == Phase::kInvoked) {
        if (Chance(rng, w.fail)) {
          recorder.FailAt(t, client.id);
          client.phase = Phase::kIdle;
        } else if (Chance(rng, w.info)) {
          recorder.InfoAt(t, client.id);
          orphans.emplace_back(client.call, c);
          client.phase = Phase::kIdle;
        } else if (Chance(rng, w.apply)) {
          if (std::optional<Value> output = object.Apply(client.call, c)) {
            client.output = *output;
            client.phase = Phase::kApplied;
          }
        }
      } else if (Chance(rng, w.info)) {  // it took effect, but the response was lost
        recorder.InfoAt(t, client.id);
        client.phase = Phase::kIdle;
      } else if (Chance(rng, w.complete)) {
        std::optional<Value> output;
        if (!Chance(rng, w.unobserved)) output = client.output;
        recorder.OkAt(t, client.id, output);
        client.phase = Phase::kIdle;
      }
    }
    std::erase_if(orphans, [&](const std::pair<Call, int>& orphan) {
      if (Chance(rng, w.orphan_drop)) return true;
      return Chance(rng, w.apply / 3) && object.Apply(orphan.first, orphan.second).has_value();
    });
  }
  return recorder.Snapshot();
}

// Mutations that no linearization can explain, so the checker must fail.

bool Definitely(const Operation& op) { return op.completion == Completion::kOk; }

// Whether `op` definitely changed the key: an ok put or remove, or a cas that
// answered true.
bool DefinitelyWrote(const Operation& op) {
  if (!Definitely(op)) return false;
  if (op.function == "put" || op.function == "remove") return true;
  return op.function == "cas" && op.output == Value(true);
}

std::optional<Value> Written(const Operation& op) {
  if (op.function == "put") return op.args[1];
  if (op.function == "cas") return op.args[2];
  return std::nullopt;
}

// Replaces the output of one ok get with a value it cannot have read: either
// one written only by an operation W1 that some definite write W2 overwrote
// entirely before the get began (W1 < W2 < get in real time; values are
// unique, so nothing wrote it again), or one written only after the get
// completed. Returns the id of the changed operation.
std::optional<int64_t> MutateKeyValueRead(History& history, std::mt19937_64& rng) {
  std::vector<Operation>& ops = history.mutable_operations();
  std::map<std::string, std::vector<const Operation*>> writers;  // by value
  for (const Operation& op : ops) {
    if (std::optional<Value> v = Written(op)) writers[v->as_string()].push_back(&op);
  }
  std::vector<size_t> order(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t i : order) {
    Operation& get = ops[i];
    if (get.function != "get" || !get.output) continue;
    for (const auto& [value, by] : writers) {
      const Operation& w1 = *by.front();
      if (Value(value) == *get.output || w1.args[0] != get.args[0]) continue;
      bool future = std::all_of(by.begin(), by.end(), [&](const Operation* w) { return w->invoke > get.complete; });
      bool overwritten =
          by.size() == 1 && DefinitelyWrote(w1) && std::any_of(ops.begin(), ops.end(), [&](const Operation& w2) {
            return &w2 != &w1 && w2.args[0] == get.args[0] && DefinitelyWrote(w2) && w1.complete < w2.invoke &&
                   w2.complete < get.invoke;
          });
      if (future || overwritten) {
        get.output = Value(value);
        return get.id;
      }
    }
  }
  return std::nullopt;
}

// Replaces the output of one ok add or read with one more than the largest
// total it could have seen: the sum of every add on that counter invoked
// before it completed (all deltas are positive).
std::optional<int64_t> MutateCounter(History& history, std::mt19937_64& rng) {
  std::vector<Operation>& ops = history.mutable_operations();
  std::vector<size_t> candidates;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].output) candidates.push_back(i);
  }
  if (candidates.empty()) return std::nullopt;
  Operation& target = ops[candidates[Pick(rng, static_cast<int>(candidates.size()))]];
  int64_t most = 0;
  for (const Operation& op : ops) {
    if (op.function == "add" && op.completion != Completion::kFail && op.args[0] == target.args[0] &&
        op.invoke <= target.complete) {
      most += op.args[1].as_int();
    }
  }
  target.output = Value(most + 1);
  return target.id;
}

// Flips the answer of one ok release. A release that answered true came
// after its client's acquire with no other call of that client's in between;
// one that answered false came while its client held nothing: so the client
// held the lock throughout (resp. never) in any linearization.
std::optional<int64_t> MutateLockRelease(History& history, std::mt19937_64& rng) {
  std::vector<Operation>& ops = history.mutable_operations();
  std::vector<size_t> releases;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].function == "release" && ops[i].output) releases.push_back(i);
  }
  if (releases.empty()) return std::nullopt;
  Operation& release = ops[releases[Pick(rng, static_cast<int>(releases.size()))]];
  release.output = Value(!release.output->as_bool());
  return release.id;
}

struct RandomCase {
  std::string name;
  std::function<std::unique_ptr<SequentialObject>()> object;
  std::function<std::unique_ptr<Model>()> model;
  Workload workload;
  std::function<std::optional<int64_t>(History&, std::mt19937_64&)> mutate;
};

std::vector<RandomCase> RandomCases() {
  Workload faulty{.fail = 0.02, .info = 0.01, .unobserved = 0.1};
  Workload lost{.clients = 8, .info = 0.03, .orphan_drop = 1};  // no info call takes effect
  Workload busy{.clients = 8, .operations = 150, .invoke = 0.8, .apply = 0.1, .complete = 0.1};
  Workload clean{};
  return {
      {"key-value, faults", [] { return std::make_unique<KeyValueObject>(3); }, KeyValueModel, faulty,
       MutateKeyValueRead},
      {"key-value, lost calls", [] { return std::make_unique<KeyValueObject>(3); }, KeyValueModel, lost,
       MutateKeyValueRead},
      {"key-value, 8 busy clients", [] { return std::make_unique<KeyValueObject>(2); }, KeyValueModel, busy,
       MutateKeyValueRead},
      {"key-value, one key", [] { return std::make_unique<KeyValueObject>(1); }, KeyValueModel, clean,
       MutateKeyValueRead},
      {"counter, faults", [] { return std::make_unique<CounterObject>(); }, CounterModel, faulty, MutateCounter},
      {"counter, 8 busy clients", [] { return std::make_unique<CounterObject>(); }, CounterModel, busy, MutateCounter},
      // Lock histories record every output and have no info calls: an
      // unobserved or orphaned acquire would read as a grant.
      {"lock", [] { return std::make_unique<LockObject>(); }, LockModel, Workload{.fail = 0.02}, MutateLockRelease},
      {"lock, 8 busy clients", [] { return std::make_unique<LockObject>(); }, LockModel, busy, MutateLockRelease},
  };
}

constexpr int kSeeds = 100;

TEST(RandomHistoryTest, SimulatedRunsAreLinearizable) {
  for (const RandomCase& c : RandomCases()) {
    for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
      History history = Simulate(*c.object(), c.workload, seed);
      CheckResult result = Check(*c.model(), history);
      ASSERT_THAT(result, kLinearizable) << c.name << ", seed " << seed << "\n" << history.ToString();
    }
  }
}

TEST(RandomHistoryTest, OneImpossibleOutputMakesARunAViolation) {
  for (const RandomCase& c : RandomCases()) {
    if (!c.mutate) continue;
    int mutated = 0;
    for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
      History history = Simulate(*c.object(), c.workload, seed);
      std::mt19937_64 rng(seed);
      std::optional<int64_t> changed = c.mutate(history, rng);
      if (!changed) continue;
      ++mutated;
      CheckResult result = Check(*c.model(), history);
      ASSERT_THAT(result, kViolation) << c.name << ", seed " << seed << ": operation " << *changed << " changed\n"
                                      << history.ToString();
    }
    EXPECT_GE(mutated, kSeeds * 9 / 10) << c.name << ": too few runs had an impossible output to plant";
  }
}

// The plain definition, for tiny histories: try every order of the ok
// operations and every subset of the info ones that real time allows.
bool BruteForceLinearizable(StateSpace& space, int state, std::vector<const Operation*>& left) {
  if (std::none_of(left.begin(), left.end(), [](const Operation* op) { return op->completion == Completion::kOk; })) {
    return true;
  }
  for (size_t i = 0; i < left.size(); ++i) {
    const Operation* op = left[i];
    bool preceded = std::any_of(left.begin(), left.end(), [&](const Operation* other) {
      return other->completion == Completion::kOk && other->complete < op->invoke;
    });
    if (preceded) continue;
    std::optional<int> next = space.Step(state, *op);
    if (!next) continue;
    left.erase(left.begin() + static_cast<std::ptrdiff_t>(i));
    bool found = BruteForceLinearizable(space, *next, left);
    left.insert(left.begin() + static_cast<std::ptrdiff_t>(i), op);
    if (found) return true;
  }
  return false;
}

bool BruteForceLinearizable(const Model& model, const History& history) {
  std::map<std::string, std::vector<const Operation*>> partitions;
  for (const Operation& op : history.operations()) {
    if (op.completion != Completion::kFail) partitions[model.Partition(op)].push_back(&op);
  }
  for (auto& [partition, ops] : partitions) {
    if (!BruteForceLinearizable(*model.NewStateSpace(), 0, ops)) return false;
  }
  return true;
}

// Changes one output to something plausible: not always impossible.
void PerturbOneOutput(History& history, std::mt19937_64& rng) {
  std::vector<Operation*> observed;
  for (Operation& op : history.mutable_operations()) {
    if (op.output) observed.push_back(&op);
  }
  if (observed.empty()) return;
  Operation& op = *observed[Pick(rng, static_cast<int>(observed.size()))];
  if (op.output->is_bool()) {
    op.output = Value(!op.output->as_bool());
  } else if (op.output->is_int()) {
    op.output = Value(op.output->as_int() + (Chance(rng, 0.5) ? 1 : -1));
  } else {
    op.output = Chance(rng, 0.3) ? Value() : Value(absl::StrCat("v", Pick(rng, 8)));
  }
}

TEST(RandomHistoryTest, AgreesWithBruteForceOnTinyHistories) {
  Workload tiny{.clients = 4, .operations = 10, .fail = 0.05, .info = 0.15, .unobserved = 0.1};
  struct Kind {
    std::function<std::unique_ptr<SequentialObject>()> object;
    std::unique_ptr<Model> model;
  };
  std::vector<Kind> kinds;
  kinds.push_back({[] { return std::make_unique<KeyValueObject>(1); }, KeyValueModel()});
  kinds.push_back({[] { return std::make_unique<CounterObject>(); }, CounterModel()});
  kinds.push_back({[] { return std::make_unique<LockObject>(); }, LockModel()});
  int violations = 0;
  for (const Kind& kind : kinds) {
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
      History history = Simulate(*kind.object(), tiny, seed);
      std::mt19937_64 rng(seed);
      if (Chance(rng, 0.7)) PerturbOneOutput(history, rng);
      bool expected = BruteForceLinearizable(*kind.model, history);
      CheckResult result = Check(*kind.model, history);
      violations += expected ? 0 : 1;
      ASSERT_THAT(result, HasVerdict(expected ? Verdict::kLinearizable : Verdict::kViolation))
          << kind.model->name() << ", seed " << seed << "\n"
          << history.ToString();
    }
  }
  std::printf("%d of %d tiny histories were violations\n", violations, 3 * 2000);
}

TEST(RandomHistoryTest, ExhaustedBudgetIsUnknownNotAVerdict) {
  KeyValueObject object(1);
  History history = Simulate(object, Workload{.clients = 8, .operations = 300, .apply = 0.1, .complete = 0.1}, 7);
  CheckResult result = Check(*KeyValueModel(), history, CheckOptions{.max_states = 10});
  EXPECT_THAT(result, HasVerdict(Verdict::kUnknown));
  EXPECT_THAT(result.explanation, HasSubstr("budget of 10 states ran out"));
}

TEST(RandomHistoryTest, TwoThousandOperationsFromFiveClientsCheckQuickly) {
  KeyValueObject object(3);
  History history = Simulate(object, Workload{.clients = 5, .operations = 2000}, 42);
  auto start = std::chrono::steady_clock::now();
  CheckResult result = Check(*KeyValueModel(), history);
  auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
  std::printf("checked %lld operations in %lld partitions: %.1f ms, %lld states, %lld backtracks\n",
              static_cast<long long>(result.stats.operations), static_cast<long long>(result.stats.partitions),
              elapsed.count(), static_cast<long long>(result.stats.states_explored),
              static_cast<long long>(result.stats.backtracks));
  EXPECT_THAT(result, kLinearizable);
  EXPECT_EQ(result.stats.operations, 2000);
}

}  // namespace
}  // namespace caracal::verification

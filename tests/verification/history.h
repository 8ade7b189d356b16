#ifndef CARACAL_TESTS_VERIFICATION_HISTORY_H_
#define CARACAL_TESTS_VERIFICATION_HISTORY_H_

// Histories of client operations, as a linearizability checker wants them.
//
// An operation is a call made by one client (a "process"): a function name
// and arguments (the model gives them meaning: put("x", "1"), acquire("l",
// 3), add("c", 5)), the time it was invoked, and how it completed:
//
//   ok    it took effect, exactly once, between invocation and completion;
//         `output` is what it returned (or nothing, when the caller did not
//         observe the result and the checker must not check it);
//   fail  it definitely did not take effect (rejected before it could);
//   info  unknown: it timed out or the connection was lost. It may have taken
//         effect at any time after its invocation -- even long after the
//         client gave up -- or never. Its completion time is kForever.
//
// Time is an int64 on one monotonic clock (nanoseconds of steady_clock by
// default; the simulator passes its simulated time). Operation A precedes B
// in real time only if A.complete < B.invoke: equal timestamps are treated as
// concurrent, which never turns a linearizable history into a violation.
//
// A history dumps to text, one operation per line in id order, and parses
// back, so a failing history can be pasted into a unit test and re-checked:
//
//   # caracal history: id process [invoke, complete] status call [-> output]
//   0 p1 [100, 250] ok put("x", "1") -> nil
//   1 p2 [120, inf] info get("x")
//   2 p0 [130, 140] fail cas("x", "1", "2")
//   3 p0 [150, 160] ok put("y", "2")
//
// Values are nil, true/false, decimal integers or C-escaped double-quoted
// strings. "ok" without "-> value" means the output was not observed. Blank
// lines and lines starting with '#' are ignored.

#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace caracal::verification {

using Timestamp = int64_t;
inline constexpr Timestamp kForever = std::numeric_limits<Timestamp>::max();

// An argument or a result: nil, a boolean, an integer or a string. Cheap to
// compare and hash, so models may use it as (part of) their state.
class Value {
 public:
  Value() = default;  // nil
  Value(bool b) : v_(b) {}
  Value(int i) : v_(int64_t{i}) {}
  Value(int64_t i) : v_(i) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  // nil when absent: what a map lookup returns.
  Value(const std::optional<std::string>& s) {
    if (s) v_ = *s;
  }

  bool is_nil() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  // Only when the value holds that type.
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }

  // nil, true, -42, "a \"quoted\" string"
  std::string ToString() const;

  friend bool operator==(const Value&, const Value&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Value& v) {
    h = H::combine(std::move(h), v.v_.index());
    if (v.is_bool()) return H::combine(std::move(h), v.as_bool());
    if (v.is_int()) return H::combine(std::move(h), v.as_int());
    if (v.is_string()) return H::combine(std::move(h), v.as_string());
    return h;
  }

 private:
  std::variant<std::monostate, bool, int64_t, std::string> v_;
};

enum class Completion { kOk, kFail, kInfo };
std::string_view CompletionName(Completion completion);  // "ok", "fail", "info"

struct Operation {
  int64_t id = 0;       // unique in its history; the recorder numbers from 0
  int64_t process = 0;  // the client that issued it (only a label for reports)
  std::string function;
  std::vector<Value> args;
  Completion completion = Completion::kInfo;
  // What an ok operation returned; nullopt when not observed, and always for
  // fail and info (the checker then accepts any output the model allows).
  std::optional<Value> output;
  Timestamp invoke = 0;
  Timestamp complete = kForever;  // kForever for info

  // The call alone: put("x", "1")
  std::string CallString() const;
  // One line of the dump format: 0 p1 [100, 250] ok put("x", "1") -> nil
  std::string ToString() const;
};

// A finished history: a value, not thread-safe.
class History {
 public:
  History() = default;
  explicit History(std::vector<Operation> operations) : operations_(std::move(operations)) {}

  const std::vector<Operation>& operations() const { return operations_; }
  std::vector<Operation>& mutable_operations() { return operations_; }
  size_t size() const { return operations_.size(); }

  // The text format described at the top of this file; Parse(ToString())
  // returns an equal history.
  std::string ToString() const;
  // Errors name the line and what was expected there.
  static absl::StatusOr<History> Parse(std::string_view text);

 private:
  std::vector<Operation> operations_;
};

// Records operations as clients perform them; every method is thread-safe.
// Each Invoke returns an id that exactly one Ok/Fail/Info must complete later
// (completing an unknown or already-completed id is a programming error and
// asserts). Operations still pending when a snapshot is taken appear in it as
// info: they may yet take effect.
class HistoryRecorder {
 public:
  using Clock = std::function<Timestamp()>;
  // Nanoseconds of std::chrono::steady_clock.
  static Timestamp SteadyNow();

  HistoryRecorder() : HistoryRecorder(&SteadyNow) {}
  explicit HistoryRecorder(Clock clock) : clock_(std::move(clock)) {}

  int64_t Invoke(int64_t process, std::string function, std::vector<Value> args);
  void Ok(int64_t id, std::optional<Value> output = std::nullopt);
  void Fail(int64_t id);
  void Info(int64_t id);

  // The same with an explicit timestamp instead of the clock's.
  int64_t InvokeAt(Timestamp at, int64_t process, std::string function, std::vector<Value> args);
  void OkAt(Timestamp at, int64_t id, std::optional<Value> output = std::nullopt);
  void FailAt(Timestamp at, int64_t id);
  // An info operation's completion is kForever whatever `at` says; `at` only
  // documents when the client gave up and is not kept.
  void InfoAt(Timestamp at, int64_t id);

  History Snapshot() const;
  size_t size() const;

 private:
  void Complete(int64_t id, Completion completion, Timestamp at, std::optional<Value> output);

  const Clock clock_;
  mutable std::mutex mu_;
  std::vector<Operation> operations_;  // guarded by mu_; index == id
  std::vector<bool> completed_;        // guarded by mu_; index == id
};

}  // namespace caracal::verification

#endif  // CARACAL_TESTS_VERIFICATION_HISTORY_H_

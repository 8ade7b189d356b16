#include "tests/verification/history.h"

#include <cassert>
#include <charconv>
#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace caracal::verification {

std::string Value::ToString() const {
  if (is_nil()) return "nil";
  if (is_bool()) return as_bool() ? "true" : "false";
  if (is_int()) return absl::StrCat(as_int());
  return absl::StrCat("\"", absl::CEscape(as_string()), "\"");
}

std::string_view CompletionName(Completion completion) {
  switch (completion) {
    case Completion::kOk:
      return "ok";
    case Completion::kFail:
      return "fail";
    case Completion::kInfo:
      return "info";
  }
  return "?";
}

std::string Operation::CallString() const {
  return absl::StrCat(function, "(",
                      absl::StrJoin(args, ", ", [](std::string* out, const Value& v) { out->append(v.ToString()); }),
                      ")");
}

std::string Operation::ToString() const {
  std::string line = absl::StrCat(id, " p", process, " [", invoke, ", ",
                                  complete == kForever ? std::string("inf") : absl::StrCat(complete), "] ",
                                  std::string(CompletionName(completion)), " ", CallString());
  if (output) absl::StrAppend(&line, " -> ", output->ToString());
  return line;
}

std::string History::ToString() const {
  std::string text = "# caracal history: id process [invoke, complete] status call [-> output]\n";
  for (const Operation& op : operations_) absl::StrAppend(&text, op.ToString(), "\n");
  return text;
}

namespace {

// A cursor over one line of the dump. Each Expect/Parse consumes leading
// spaces first; errors say what was expected and what was found.
class LineParser {
 public:
  LineParser(std::string_view line, int line_number) : rest_(line), line_number_(line_number) {}

  absl::StatusOr<Operation> ParseOperation() {
    Operation op;
    absl::Status s = ParseInt(&op.id, "an operation id");
    if (s.ok()) s = Expect("p");
    if (s.ok()) s = ParseInt(&op.process, "a process number");
    if (s.ok()) s = Expect("[");
    if (s.ok()) s = ParseInt(&op.invoke, "the invoke time");
    if (s.ok()) s = Expect(",");
    if (s.ok()) {
      if (Consume("inf")) {
        op.complete = kForever;
      } else {
        s = ParseInt(&op.complete, "the completion time or inf");
      }
    }
    if (s.ok()) s = Expect("]");
    if (s.ok()) s = ParseCompletion(&op.completion);
    if (s.ok()) s = ParseCall(&op);
    if (s.ok() && Consume("->")) {
      Value output;
      s = ParseValue(&output);
      op.output = std::move(output);
    }
    SkipSpaces();
    if (s.ok() && !rest_.empty()) s = Error("the end of the line");
    if (!s.ok()) return s;
    return op;
  }

 private:
  void SkipSpaces() {
    while (!rest_.empty() && absl::ascii_isspace(static_cast<unsigned char>(rest_.front()))) rest_.remove_prefix(1);
  }

  bool Consume(std::string_view token) {
    SkipSpaces();
    if (rest_.substr(0, token.size()) != token) return false;
    rest_.remove_prefix(token.size());
    return true;
  }

  absl::Status Error(std::string_view expected) const {
    std::string found =
        rest_.empty() ? std::string("the end of the line") : absl::StrCat("\"", std::string(rest_), "\"");
    return absl::InvalidArgumentError(
        absl::StrCat("history line ", line_number_, ": expected ", std::string(expected), ", found ", found));
  }

  absl::Status Expect(std::string_view token) {
    if (Consume(token)) return absl::OkStatus();
    return Error(absl::StrCat("\"", std::string(token), "\""));
  }

  absl::Status ParseInt(int64_t* out, std::string_view what) {
    SkipSpaces();
    auto [end, ec] = std::from_chars(rest_.data(), rest_.data() + rest_.size(), *out);
    if (ec != std::errc() || end == rest_.data()) return Error(what);
    rest_.remove_prefix(end - rest_.data());
    return absl::OkStatus();
  }

  absl::Status ParseCompletion(Completion* out) {
    for (Completion c : {Completion::kOk, Completion::kFail, Completion::kInfo}) {
      if (Consume(CompletionName(c))) {
        *out = c;
        return absl::OkStatus();
      }
    }
    return Error("ok, fail or info");
  }

  absl::Status ParseCall(Operation* op) {
    SkipSpaces();
    size_t n = 0;
    while (n < rest_.size() &&
           (absl::ascii_isalnum(static_cast<unsigned char>(rest_[n])) || rest_[n] == '_' || rest_[n] == '.')) {
      ++n;
    }
    if (n == 0) return Error("a function name");
    op->function = std::string(rest_.substr(0, n));
    rest_.remove_prefix(n);
    if (absl::Status s = Expect("("); !s.ok()) return s;
    if (Consume(")")) return absl::OkStatus();
    while (true) {
      Value v;
      if (absl::Status s = ParseValue(&v); !s.ok()) return s;
      op->args.push_back(std::move(v));
      if (Consume(")")) return absl::OkStatus();
      if (absl::Status s = Expect(","); !s.ok()) return s;
    }
  }

  absl::Status ParseValue(Value* out) {
    SkipSpaces();
    if (Consume("nil")) {
      *out = Value();
    } else if (Consume("true")) {
      *out = Value(true);
    } else if (Consume("false")) {
      *out = Value(false);
    } else if (!rest_.empty() && rest_.front() == '"') {
      return ParseString(out);
    } else {
      int64_t i;
      if (!ParseInt(&i, "a value (nil, true, false, an integer or a quoted string)").ok()) {
        return Error("a value (nil, true, false, an integer or a quoted string)");
      }
      *out = Value(i);
    }
    return absl::OkStatus();
  }

  absl::Status ParseString(Value* out) {
    size_t end = 1;
    while (end < rest_.size() && rest_[end] != '"') end += rest_[end] == '\\' ? 2 : 1;
    if (end >= rest_.size()) return Error("a closing quote");
    std::string unescaped;
    std::string error;
    std::string_view escaped = rest_.substr(1, end - 1);
    if (!absl::CUnescape(absl::string_view(escaped.data(), escaped.size()), &unescaped, &error)) {
      return Error(absl::StrCat("a valid escaped string (", error, ")"));
    }
    *out = Value(std::move(unescaped));
    rest_.remove_prefix(end + 1);
    return absl::OkStatus();
  }

  std::string_view rest_;
  const int line_number_;
};

}  // namespace

absl::StatusOr<History> History::Parse(std::string_view text) {
  std::vector<Operation> operations;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    size_t end = text.find('\n');
    std::string_view trimmed = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    while (!trimmed.empty() && absl::ascii_isspace(static_cast<unsigned char>(trimmed.front())))
      trimmed.remove_prefix(1);
    while (!trimmed.empty() && absl::ascii_isspace(static_cast<unsigned char>(trimmed.back())))
      trimmed.remove_suffix(1);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    absl::StatusOr<Operation> op = LineParser(trimmed, line_number).ParseOperation();
    if (!op.ok()) return op.status();
    operations.push_back(*std::move(op));
  }
  return History(std::move(operations));
}

Timestamp HistoryRecorder::SteadyNow() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t HistoryRecorder::Invoke(int64_t process, std::string function, std::vector<Value> args) {
  return InvokeAt(clock_(), process, std::move(function), std::move(args));
}

void HistoryRecorder::Ok(int64_t id, std::optional<Value> output) { OkAt(clock_(), id, std::move(output)); }
void HistoryRecorder::Fail(int64_t id) { FailAt(clock_(), id); }
void HistoryRecorder::Info(int64_t id) { InfoAt(clock_(), id); }

int64_t HistoryRecorder::InvokeAt(Timestamp at, int64_t process, std::string function, std::vector<Value> args) {
  std::lock_guard<std::mutex> lock(mu_);
  Operation op;
  op.id = static_cast<int64_t>(operations_.size());
  op.process = process;
  op.function = std::move(function);
  op.args = std::move(args);
  op.invoke = at;
  operations_.push_back(std::move(op));
  completed_.push_back(false);
  return operations_.back().id;
}

void HistoryRecorder::OkAt(Timestamp at, int64_t id, std::optional<Value> output) {
  Complete(id, Completion::kOk, at, std::move(output));
}
void HistoryRecorder::FailAt(Timestamp at, int64_t id) { Complete(id, Completion::kFail, at, std::nullopt); }
void HistoryRecorder::InfoAt(Timestamp, int64_t id) { Complete(id, Completion::kInfo, kForever, std::nullopt); }

void HistoryRecorder::Complete(int64_t id, Completion completion, Timestamp at, std::optional<Value> output) {
  std::lock_guard<std::mutex> lock(mu_);
  assert(id >= 0 && id < static_cast<int64_t>(operations_.size()) && "completing an operation never invoked");
  assert(!completed_[id] && "completing an operation twice");
  Operation& op = operations_[id];
  // An explicit completion time before the invocation (a caller mixing
  // clocks) is clamped: that keeps the interval valid and can only widen
  // concurrency, never invent a violation.
  op.complete = std::max(at, op.invoke);
  op.completion = completion;
  op.output = std::move(output);
  completed_[id] = true;
}

History HistoryRecorder::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return History(operations_);  // pending ones are already info until completed
}

size_t HistoryRecorder::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return operations_.size();
}

}  // namespace caracal::verification

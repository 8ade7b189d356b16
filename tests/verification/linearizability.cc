#include "tests/verification/linearizability.h"

#include <algorithm>
#include <cassert>
#include <map>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace caracal::verification {

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kViolation:
      return "violation";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Models

namespace {

absl::Status BadOperation(const Operation& op, std::string_view model, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("operation ", op.ToString(), ": not a ", std::string(model), " operation: ", std::string(why)));
}

// Checks the function is one of `arities` and has that many arguments, the
// first (the partition) a string.
absl::Status CheckShape(const Operation& op, std::string_view model,
                        std::initializer_list<std::pair<std::string_view, size_t>> arities) {
  for (const auto& [function, arity] : arities) {
    if (op.function != function) continue;
    if (op.args.size() != arity) {
      return BadOperation(op, model, absl::StrCat(std::string(function), " takes ", arity, " arguments"));
    }
    if (!op.args[0].is_string()) return BadOperation(op, model, "the first argument must be a string");
    return absl::OkStatus();
  }
  return BadOperation(op, model, "unknown function");
}

bool NilOrString(const Value& v) { return v.is_nil() || v.is_string(); }

class KeyValueSpec {
 public:
  using State = Value;  // nil (absent) or the string

  std::string_view Name() const { return "key-value"; }

  absl::Status Validate(const Operation& op) const {
    if (absl::Status s = CheckShape(op, Name(), {{"get", 1}, {"put", 2}, {"remove", 1}, {"cas", 3}}); !s.ok()) {
      return s;
    }
    if (op.function == "put" && !op.args[1].is_string()) return BadOperation(op, Name(), "the value must be a string");
    if (op.function == "cas" && (!NilOrString(op.args[1]) || !op.args[2].is_string())) {
      return BadOperation(op, Name(), "cas(key, nil or string, string)");
    }
    if (op.output && op.function == "cas" && !op.output->is_bool()) {
      return BadOperation(op, Name(), "cas returns a boolean");
    }
    if (op.output && op.function != "cas" && !NilOrString(*op.output)) {
      return BadOperation(op, Name(), "the output must be nil or a string");
    }
    return absl::OkStatus();
  }

  std::string Partition(const Operation& op) const { return op.args[0].as_string(); }
  State Init() const { return Value(); }

  std::optional<State> Step(const State& state, const Operation& op) const {
    const std::optional<Value>& out = op.output;
    if (op.function == "cas") {
      bool matches = state == op.args[1];
      if (out && out->as_bool() != matches) return std::nullopt;
      return matches ? op.args[2] : state;
    }
    // get, put and remove all return the value before them.
    if (out && *out != state) return std::nullopt;
    if (op.function == "put") return op.args[1];
    if (op.function == "remove") return Value();
    return state;
  }

  std::string Describe(const State& state) const { return state.ToString(); }
};

class LockSpec {
 public:
  using State = Value;  // nil (free) or the holder

  std::string_view Name() const { return "lock"; }

  absl::Status Validate(const Operation& op) const {
    if (absl::Status s = CheckShape(op, Name(), {{"acquire", 2}, {"release", 2}}); !s.ok()) return s;
    if (op.args[1].is_nil()) return BadOperation(op, Name(), "the holder must not be nil");
    if (op.output && !op.output->is_bool()) return BadOperation(op, Name(), "the output must be a boolean");
    return absl::OkStatus();
  }

  std::string Partition(const Operation& op) const { return op.args[0].as_string(); }
  State Init() const { return Value(); }

  std::optional<State> Step(const State& state, const Operation& op) const {
    const Value& holder = op.args[1];
    bool succeeded = !op.output || op.output->as_bool();  // unknown: it took effect, if at all
    if (op.function == "acquire") {
      bool grantable = state.is_nil() || state == holder;
      if (succeeded != grantable) return std::nullopt;
      return succeeded ? holder : state;
    }
    bool held = state == holder;
    if (succeeded != held) return std::nullopt;
    return succeeded ? Value() : state;
  }

  std::string Describe(const State& state) const {
    return state.is_nil() ? "free" : absl::StrCat("held by ", state.ToString());
  }
};

class CounterSpec {
 public:
  using State = int64_t;

  std::string_view Name() const { return "counter"; }

  absl::Status Validate(const Operation& op) const {
    if (absl::Status s = CheckShape(op, Name(), {{"add", 2}, {"read", 1}}); !s.ok()) return s;
    if (op.function == "add" && !op.args[1].is_int()) return BadOperation(op, Name(), "the delta must be an integer");
    if (op.output && !op.output->is_int()) return BadOperation(op, Name(), "the output must be an integer");
    return absl::OkStatus();
  }

  std::string Partition(const Operation& op) const { return op.args[0].as_string(); }
  State Init() const { return 0; }

  std::optional<State> Step(const State& state, const Operation& op) const {
    State next = op.function == "add" ? state + op.args[1].as_int() : state;
    if (op.output && op.output->as_int() != next) return std::nullopt;
    return next;
  }

  std::string Describe(const State& state) const { return absl::StrCat(state); }
};

}  // namespace

std::unique_ptr<Model> KeyValueModel() { return MakeModel(KeyValueSpec()); }
std::unique_ptr<Model> LockModel() { return MakeModel(LockSpec()); }
std::unique_ptr<Model> CounterModel() { return MakeModel(CounterSpec()); }

// ---------------------------------------------------------------------------
// The search

namespace {

std::string Quote(std::string_view s) { return absl::StrCat("\"", absl::CEscape(std::string(s)), "\""); }

// A set of operation indices, with a hash maintained incrementally (XOR of
// a fixed random word per member, Zobrist-style) so that cache lookups do not
// rehash the whole set.
class OpSet {
 public:
  explicit OpSet(size_t n) : words_((n + 63) / 64, 0) {}

  void Flip(int op) {
    words_[op / 64] ^= uint64_t{1} << (op % 64);
    hash_ ^= Mix(static_cast<uint64_t>(op));
  }
  uint64_t hash() const { return hash_; }
  friend bool operator==(const OpSet&, const OpSet&) = default;

 private:
  static uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }

  std::vector<uint64_t> words_;
  uint64_t hash_ = 0;
};

struct CacheEntry {
  OpSet linearized;
  int state;
  friend bool operator==(const CacheEntry&, const CacheEntry&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const CacheEntry& e) {
    return H::combine(std::move(h), e.linearized.hash(), e.state);
  }
};

// Where the search got furthest before it had to backtrack: the explanation
// of a violation.
struct StuckPoint {
  std::vector<int> order;       // operations linearized, in order
  std::vector<int> states;      // the state after each
  int state = 0;                // the state they reach (0: initial)
  int blocking = -1;            // the operation whose return was reached unlinearized
  std::vector<int> candidates;  // operations that could have come next (calls before that return)
};

// Wing & Gong's search with Lowe's cache over one partition.
//
// Invariants:
//   * nodes_[0] is the list head; the list holds, in time order, the call and
//     return of every operation not linearized on the current path;
//   * stack_ holds the current path: the linearized calls, in order, each
//     with the state before it; state_ is the state after the last;
//   * linearized_ is the set of operations on stack_; ok_left_ counts the ok
//     operations not on it.
class Search {
 public:
  enum class Outcome { kLinearizable, kViolation, kBudgetExhausted };

  Search(std::vector<const Operation*> ops, StateSpace& space, int64_t budget)
      : ops_(std::move(ops)), space_(space), budget_(budget), linearized_(ops_.size()) {
    BuildList();
  }

  Outcome Run();

  int64_t states_explored() const { return static_cast<int64_t>(cache_.size()); }
  int64_t backtracks() const { return backtracks_; }
  size_t deepest() const { return stuck_.order.size(); }
  std::string ExplainViolation(std::string_view model, std::string_view partition) const;

 private:
  struct Node {
    int op;
    bool is_call;
    int prev;
    int next;  // -1: end of list
  };
  struct Frame {
    int call;  // node
    int state_before;
  };

  void BuildList();
  void Unlink(int node);
  void Relink(int node);
  std::optional<int> Step(int state, int op);
  bool IsInfo(int op) const { return ops_[op]->completion == Completion::kInfo; }
  // Linearizes the call if it can happen now and leads somewhere unvisited.
  bool TryLinearize(int call);
  // Whether placing `op` next, reaching `next`, is pointless (see the .cc).
  bool IsDominated(int op, int next);
  // Undoes the last linearization; returns its call node.
  int Backtrack();
  void RecordStuck(int return_node);
  std::string Line(int op) const { return ops_[op]->ToString(); }

  const std::vector<const Operation*> ops_;
  StateSpace& space_;
  const int64_t budget_;
  std::vector<Node> nodes_;
  std::vector<int> call_node_, return_node_;  // by operation
  std::vector<Frame> stack_;
  OpSet linearized_;
  int state_ = 0;
  int ok_left_ = 0;
  absl::flat_hash_set<CacheEntry> cache_;
  absl::flat_hash_map<uint64_t, int> steps_;  // (state << 32 | op) -> next state, -1: illegal
  int64_t backtracks_ = 0;
  bool stuck_recorded_ = false;
  StuckPoint stuck_;
};

void Search::BuildList() {
  // Calls before returns at equal times: equal timestamps are concurrent.
  std::vector<std::tuple<Timestamp, bool, int>> events;  // (time, is_return, op)
  for (int i = 0; i < static_cast<int>(ops_.size()); ++i) {
    events.emplace_back(ops_[i]->invoke, false, i);
    events.emplace_back(ops_[i]->complete, true, i);
    if (!IsInfo(i)) ++ok_left_;
  }
  std::sort(events.begin(), events.end());
  nodes_.push_back({-1, false, -1, -1});
  call_node_.resize(ops_.size());
  return_node_.resize(ops_.size());
  for (const auto& [time, is_return, op] : events) {
    int index = static_cast<int>(nodes_.size());
    nodes_.back().next = index;
    nodes_.push_back({op, !is_return, index - 1, -1});
    (is_return ? return_node_ : call_node_)[op] = index;
  }
}

void Search::Unlink(int node) {
  const Node& n = nodes_[node];
  nodes_[n.prev].next = n.next;
  if (n.next != -1) nodes_[n.next].prev = n.prev;
}

void Search::Relink(int node) {
  const Node& n = nodes_[node];
  nodes_[n.prev].next = node;
  if (n.next != -1) nodes_[n.next].prev = node;
}

std::optional<int> Search::Step(int state, int op) {
  uint64_t key = (static_cast<uint64_t>(state) << 32) | static_cast<uint32_t>(op);
  auto [it, inserted] = steps_.try_emplace(key, -1);
  if (inserted) it->second = space_.Step(state, *ops_[op]).value_or(-1);
  if (it->second < 0) return std::nullopt;
  return it->second;
}

Search::Outcome Search::Run() {
  if (ok_left_ == 0) return Outcome::kLinearizable;  // every info operation may be omitted
  int entry = nodes_[0].next;
  while (true) {
    assert(entry != -1 && "an unlinearized call always has its return later in the list");
    const Node& node = nodes_[entry];
    if (node.is_call) {
      if (TryLinearize(entry)) {
        if (ok_left_ == 0) return Outcome::kLinearizable;
        if (static_cast<int64_t>(cache_.size()) > budget_) return Outcome::kBudgetExhausted;
        entry = nodes_[0].next;
      } else {
        entry = node.next;
      }
      continue;
    }
    // The return of an operation that is not linearized: everything that
    // could still come before it has been tried from here.
    RecordStuck(entry);
    if (stack_.empty()) return Outcome::kViolation;
    entry = nodes_[Backtrack()].next;
  }
}

bool Search::TryLinearize(int call) {
  int op = nodes_[call].op;
  std::optional<int> next = Step(state_, op);
  if (!next) return false;
  if (IsDominated(op, *next)) return false;
  linearized_.Flip(op);
  if (!cache_.insert(CacheEntry{linearized_, *next}).second) {
    linearized_.Flip(op);  // seen: that future is already known to fail
    return false;
  }
  stack_.push_back({call, state_});
  state_ = *next;
  Unlink(call);
  Unlink(return_node_[op]);
  if (!IsInfo(op)) --ok_left_;
  return true;
}

// Info operations may be omitted, so a path that places info operations only
// to end where a path with fewer of them ends (same ok operations, same
// state) is dominated: whatever can follow it can follow the shorter one,
// which has more operations left to choose from. The search explores the
// shorter path anyway (it is the current one, or a sibling tried from the
// same window), so it skips the longer. Two cheap cases:
//   * `op` is info and changes nothing (a read, a failing cas): omit `op`;
//   * `op` follows an info operation X and ends where it would have without
//     X (a write overwriting X's effect): omit X.
bool Search::IsDominated(int op, int next) {
  if (IsInfo(op) && next == state_) return true;
  if (stack_.empty()) return false;
  const Frame& last = stack_.back();
  if (!IsInfo(nodes_[last.call].op)) return false;
  std::optional<int> without_last = Step(last.state_before, op);
  return without_last && *without_last == next;
}

int Search::Backtrack() {
  ++backtracks_;
  Frame frame = stack_.back();
  stack_.pop_back();
  int op = nodes_[frame.call].op;
  Relink(return_node_[op]);
  Relink(frame.call);
  linearized_.Flip(op);
  state_ = frame.state_before;
  if (!IsInfo(op)) ++ok_left_;
  return frame.call;
}

void Search::RecordStuck(int return_node) {
  if (stuck_recorded_ && stack_.size() <= stuck_.order.size()) return;
  stuck_recorded_ = true;
  stuck_.order.clear();
  stuck_.states.clear();
  for (size_t i = 0; i < stack_.size(); ++i) {
    stuck_.order.push_back(nodes_[stack_[i].call].op);
    stuck_.states.push_back(i + 1 < stack_.size() ? stack_[i + 1].state_before : state_);
  }
  stuck_.state = state_;
  stuck_.blocking = nodes_[return_node].op;
  stuck_.candidates.clear();
  for (int n = nodes_[0].next; n != return_node; n = nodes_[n].next) {
    if (nodes_[n].is_call) stuck_.candidates.push_back(nodes_[n].op);
  }
}

std::string Search::ExplainViolation(std::string_view model, std::string_view partition) const {
  constexpr size_t kShownSteps = 12;
  const StuckPoint& s = stuck_;
  std::string out = absl::StrCat("not linearizable: ", std::string(model), " model, partition ", Quote(partition), " (",
                                 ops_.size(), " operations)\n");
  absl::StrAppend(&out, "The longest linearization found places ", s.order.size(), " of them",
                  s.order.empty() ? ".\n" : "; its last steps (=> the state after each):\n");
  size_t first = s.order.size() > kShownSteps ? s.order.size() - kShownSteps : 0;
  if (first > 0) absl::StrAppend(&out, "  ... ", first, " earlier\n");
  for (size_t i = first; i < s.order.size(); ++i) {
    absl::StrAppend(&out, "  ", Line(s.order[i]), "  => ", space_.Describe(s.states[i]), "\n");
  }
  const Operation& blocking = *ops_[s.blocking];
  absl::StrAppend(&out, "From state ", space_.Describe(s.state), ", operation ", blocking.id,
                  " must take effect before it completes at ", blocking.complete,
                  ", but no operation that may come next leads to a linearization:\n");
  for (int op : s.candidates) {
    std::optional<int> next = space_.Step(s.state, *ops_[op]);
    absl::StrAppend(&out, "  ", Line(op),
                    next ? absl::StrCat("  possible (=> ", space_.Describe(*next), "), but every continuation fails")
                         : absl::StrCat("  impossible in state ", space_.Describe(s.state)),
                    "\n");
  }
  // The operations involved, as dump lines, for a regression test.
  std::vector<int> involved(s.order.begin() + static_cast<std::ptrdiff_t>(first), s.order.end());
  involved.insert(involved.end(), s.candidates.begin(), s.candidates.end());
  std::sort(involved.begin(), involved.end(), [&](int a, int b) { return ops_[a]->id < ops_[b]->id; });
  absl::StrAppend(&out, "Operations involved:\n");
  for (int op : involved) absl::StrAppend(&out, "  ", Line(op), "\n");
  return out;
}

absl::Status ValidateHistory(const History& history, const Model& model) {
  absl::flat_hash_set<int64_t> ids;
  for (const Operation& op : history.operations()) {
    if (!ids.insert(op.id).second) return absl::InvalidArgumentError(absl::StrCat("duplicate operation id ", op.id));
    if (op.complete < op.invoke) {
      return absl::InvalidArgumentError(absl::StrCat("operation ", op.ToString(), " completes before it is invoked"));
    }
    if (op.output && op.completion != Completion::kOk) {
      return absl::InvalidArgumentError(
          absl::StrCat("operation ", op.ToString(), ": only an ok operation has an output"));
    }
    if (op.completion == Completion::kInfo && op.complete != kForever) {
      return absl::InvalidArgumentError(
          absl::StrCat("operation ", op.ToString(), ": an info operation completes at inf"));
    }
    if (absl::Status s = model.Validate(op); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CheckResult> CheckLinearizability(const History& history, const Model& model,
                                                 const CheckOptions& options) {
  if (absl::Status s = ValidateHistory(history, model); !s.ok()) return s;
  std::map<std::string, std::vector<const Operation*>> partitions;  // ordered: reports are deterministic
  for (const Operation& op : history.operations()) {
    if (op.completion == Completion::kFail) continue;
    partitions[model.Partition(op)].push_back(&op);
  }
  CheckResult result;
  for (auto& [partition, ops] : partitions) {
    CheckStats& stats = result.stats;
    const size_t count = ops.size();
    stats.operations += static_cast<int64_t>(count);
    stats.partitions += 1;
    stats.largest_partition = std::max(stats.largest_partition, static_cast<int64_t>(count));
    std::unique_ptr<StateSpace> space = model.NewStateSpace();
    Search search(std::move(ops), *space, options.max_states - stats.states_explored);
    Search::Outcome outcome = search.Run();
    stats.states_explored += search.states_explored();
    stats.backtracks += search.backtracks();
    if (outcome == Search::Outcome::kLinearizable) continue;
    result.partition = partition;
    if (outcome == Search::Outcome::kViolation) {
      result.verdict = Verdict::kViolation;
      result.explanation = search.ExplainViolation(model.name(), partition);
    } else {
      result.verdict = Verdict::kUnknown;
      result.explanation =
          absl::StrCat("unknown: the search budget of ", options.max_states, " states ran out in partition ",
                       Quote(partition), " of the ", std::string(model.name()), " model (", count,
                       " operations; the deepest linearization so far placed ", search.deepest(), ")");
    }
    return result;
  }
  return result;
}

}  // namespace caracal::verification

#ifndef CARACAL_TESTS_VERIFICATION_LINEARIZABILITY_H_
#define CARACAL_TESTS_VERIFICATION_LINEARIZABILITY_H_

// A linearizability checker: is there a total order of a history's
// operations that (1) respects real time -- if A completed before B was
// invoked, A comes first -- and (2) is a legal run of a sequential model?
//
// The search is Wing & Gong's, with Lowe's memoisation, the algorithm of
// Porcupine and of Knossos' "wgl" checker. Calls and returns are kept in one
// time-ordered list. Walking it from the front, the search tries to
// linearize each call it meets (apply the operation to the model state); a
// legal step removes the call and its return from the list and restarts from
// the front. Meeting a return whose operation is not linearized yet means the
// choices so far are wrong (that operation had to take effect before it
// returned), so the search backtracks. Lowe's addition is a cache of the
// (set of linearized operations, model state) pairs already visited: two
// paths reaching the same pair have the same future, so the second is cut.
// That turns an exponential search into one that is fast on the histories a
// real system produces.
//
// Further:
//   * Models are partitioned (a key, a lock name, a counter name): operations
//     on different partitions never interact, and a history is linearizable
//     iff each partition's sub-history is (linearizability is local, Herlihy
//     & Wing), so partitions are checked one by one -- much cheaper than one
//     search over the product state.
//   * fail operations are dropped: they did not happen.
//   * info operations (and ok operations whose output was not observed) may
//     return anything the model allows; an info operation may be linearized
//     anywhere after its invocation, or never: the search succeeds once every
//     ok operation is linearized. Placing an info operation that changes
//     nothing, or whose effect the next step overwrites, is skipped as
//     dominated by omitting it.
//   * The search is bounded by CheckOptions::max_states; past it the verdict
//     is kUnknown, never a guess.
//
// Cost. Without info operations the search visits roughly one state per
// operation on histories from real systems (2,000 operations from 5 clients:
// about a millisecond). Each info operation stays a candidate from its
// invocation to the end of the history, so many of them on one partition can
// make the search exponential (deciding linearizability is NP-complete; a
// counter with many unknown adds is subset-sum): the budget turns that into
// kUnknown. Keep info operations few -- retry until an answer is definite
// where the system allows it -- and partitions small. Each visited state
// keeps a bitset of its partition's operations: about n/8 bytes for n
// operations, so max_states also bounds memory.
//
// Models are deterministic sequential specifications: the state after an
// operation depends only on the state before it and the operation's input;
// the output only decides whether the step is legal.

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/verification/history.h"

namespace caracal::verification {

// The states of one partition's search, interned as dense ids (0 is the
// initial state), so that the search compares and hashes ints.
class StateSpace {
 public:
  virtual ~StateSpace() = default;
  // The state after `op` from `state`, or nullopt when `op` (with its output,
  // if it has one) cannot happen in `state`.
  virtual std::optional<int> Step(int state, const Operation& op) = 0;
  virtual std::string Describe(int state) const = 0;
};

// What the checker needs from a model. Write a SequentialSpec and wrap it in
// MakeModel rather than implementing this directly. A Model is immutable, so
// concurrent checks may share one; a StateSpace belongs to one check and must
// not outlive its Model.
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string_view name() const = 0;
  // Called once per operation before checking: an operation the model does
  // not understand (unknown function, wrong arguments) is an error, not a
  // violation.
  virtual absl::Status Validate(const Operation& op) const = 0;
  // Operations with different partitions never affect each other.
  virtual std::string Partition(const Operation& op) const = 0;
  virtual std::unique_ptr<StateSpace> NewStateSpace() const = 0;
};

// A typed sequential specification. Step may assume Validate accepted `op`;
// op.output is nullopt when the output is unknown (info, or not observed), and
// then Step applies the operation if the model allows it at all.
template <typename Spec>
concept SequentialSpec = requires(const Spec& spec, const typename Spec::State& state, const Operation& op) {
  { spec.Name() } -> std::convertible_to<std::string_view>;
  { spec.Validate(op) } -> std::same_as<absl::Status>;
  { spec.Partition(op) } -> std::convertible_to<std::string>;
  { spec.Init() } -> std::same_as<typename Spec::State>;
  { spec.Step(state, op) } -> std::same_as<std::optional<typename Spec::State>>;
  { spec.Describe(state) } -> std::convertible_to<std::string>;
  // State must also be copyable, equality-comparable and hashable by absl.
};

namespace internal {

template <SequentialSpec Spec>
class InternedStateSpace final : public StateSpace {
 public:
  using State = typename Spec::State;
  explicit InternedStateSpace(const Spec& spec) : spec_(spec) { Intern(spec_.Init()); }

  std::optional<int> Step(int state, const Operation& op) override {
    std::optional<State> next = spec_.Step(states_[state], op);
    if (!next) return std::nullopt;
    return Intern(*std::move(next));
  }
  std::string Describe(int state) const override { return spec_.Describe(states_[state]); }

 private:
  int Intern(State state) {
    auto [it, inserted] = ids_.try_emplace(state, static_cast<int>(states_.size()));
    if (inserted) states_.push_back(std::move(state));
    return it->second;
  }

  const Spec& spec_;
  std::vector<State> states_;  // by id
  absl::flat_hash_map<State, int> ids_;
};

template <SequentialSpec Spec>
class SpecModel final : public Model {
 public:
  explicit SpecModel(Spec spec) : spec_(std::move(spec)) {}
  std::string_view name() const override { return spec_.Name(); }
  absl::Status Validate(const Operation& op) const override { return spec_.Validate(op); }
  std::string Partition(const Operation& op) const override { return spec_.Partition(op); }
  std::unique_ptr<StateSpace> NewStateSpace() const override {
    return std::make_unique<InternedStateSpace<Spec>>(spec_);
  }

 private:
  const Spec spec_;
};

}  // namespace internal

template <SequentialSpec Spec>
std::unique_ptr<Model> MakeModel(Spec spec = {}) {
  return std::make_unique<internal::SpecModel<Spec>>(std::move(spec));
}

// A map of independent registers, partitioned by key (args[0], a string).
// Every written value is a string; nil is "absent".
//   put(key, value)            -> the previous value (nil or string)
//   get(key)                   -> the value (nil or string)
//   cas(key, expected, value)  -> true if it was `expected` (nil: absent) and
//                                 is now `value`; false, and unchanged, if not
//   remove(key)                -> the previous value (nil or string)
std::unique_ptr<Model> KeyValueModel();

// Exclusive locks, partitioned by name (args[0], a string); a holder is any
// non-nil value (a client or session id). Like examples/lock: not re-entrant,
// but the holder's acquire answers true and changes nothing.
//   acquire(name, holder) -> true (or not observed): holder has it now -- it
//                            was free or already holder's. A blocking acquire
//                            that queued is ONE operation from invocation to
//                            grant. false: a try-lock that found it held by
//                            someone else; nothing changes.
//   release(name, holder) -> true (or not observed): holder had it; it is free
//                            now. false: holder did not have it; unchanged.
// A lock freed by session expiry is not modelled: record such runs without
// expiries, or as a release by the holder.
std::unique_ptr<Model> LockModel();

// Integer counters starting at 0, partitioned by name (args[0], a string).
//   add(name, delta) -> the new total
//   read(name)       -> the total
std::unique_ptr<Model> CounterModel();

struct CheckOptions {
  // The most (linearized set, state) pairs the search may visit, over all
  // partitions; past it the verdict is kUnknown.
  int64_t max_states = 1'000'000;
};

enum class Verdict { kLinearizable, kViolation, kUnknown };
std::string_view VerdictName(Verdict verdict);  // "linearizable", "violation", "unknown"

struct CheckStats {
  int64_t operations = 0;         // checked: every ok and info operation (fail ones are dropped)
  int64_t partitions = 0;         // checked (a violation stops at its partition)
  int64_t largest_partition = 0;  // operations
  int64_t states_explored = 0;    // distinct (linearized set, state) pairs visited
  int64_t backtracks = 0;
};

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  // Empty when linearizable. For a violation: the partition, the longest
  // linearization the search found (its last steps and the states they
  // reached), the operation that could not be placed and why each candidate
  // failed, and those operations as dump lines (History::Parse reads them).
  // For kUnknown: where the budget ran out.
  std::string explanation;
  std::string partition;  // the partition that violated or ran out of budget
  CheckStats stats;

  bool linearizable() const { return verdict == Verdict::kLinearizable; }
};

// Errors (not violations): operations the model rejects, duplicate ids,
// complete < invoke, an output on a fail or info operation.
absl::StatusOr<CheckResult> CheckLinearizability(const History& history, const Model& model,
                                                 const CheckOptions& options = {});

}  // namespace caracal::verification

#endif  // CARACAL_TESTS_VERIFICATION_LINEARIZABILITY_H_

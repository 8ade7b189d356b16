#include "framework/server/state_machine_runner.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "serialization/codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {

StateMachineRunner::StateMachineRunner(std::unique_ptr<StateMachine> state_machine, NodeId id, Index applied)
    : id_(id), applied_(applied), executor_(&tracker_), state_machine_(std::move(state_machine)) {
  state_machine_->Configure(executor_.executor());
}

StateMachineRunner::~StateMachineRunner() {
  // Commits the state machine still holds release into tracker_: destroy the
  // state machine first.
  state_machine_.reset();
}

absl::StatusOr<std::string> StateMachineRunner::Apply(const Entry& entry) {
  assert(entry.index == applied_ + 1);
  applied_ = entry.index;
  absl::StatusOr<std::string> result;
  if (entry.type != EntryType::kCommand) {
    // Sessions (Register, KeepAlive, Unregister) and configuration entries are
    // applied by the framework; the state machine sees only their log time.
    executor_.ApplyEmpty(entry.index, entry.timestamp);
    result = absl::AbortedError(absl::StrCat("no command was applied at index ", entry.index));
  } else if (auto payload = serialization::DecodeCommandEntry(entry.payload.view()); !payload.ok()) {
    executor_.ApplyEmpty(entry.index, entry.timestamp);
    result = payload.status();
  } else {
    result = executor_.ApplyCommand(entry.index, entry.timestamp, payload->session, payload->operation);
  }
  // Whatever the entry, timers fired before it may have asked for side
  // effects: they belong to this entry (run now or never, not with a later one).
  RunSideEffects(entry);
  return result;
}

void StateMachineRunner::RunSideEffects(const Entry& entry) {
  auto effects = executor_.TakeSideEffects();
  if (role_ != raft::Role::kLeader || entry.term != term_) return;
  for (auto& fn : effects) {
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("server {}: leader side effect at index {} threw: {}", id_, entry.index, e.what());
    }
  }
}

void StateMachineRunner::ApplyHole(Index index) {
  assert(index == applied_ + 1);
  applied_ = index;
  tracker_.Applied(index);
}

absl::StatusOr<std::string> StateMachineRunner::Query(uint64_t session, std::string_view operation) {
  return executor_.RunQuery(session, operation);
}

void StateMachineRunner::SetRole(raft::Role role, Term term, NodeId leader) {
  role_ = role;
  term_ = term;
  try {
    if (role == raft::Role::kLeader) {
      state_machine_->OnBecomeLeader(term);
    } else {
      state_machine_->OnBecomeFollower(term, leader);
    }
  } catch (const std::exception& e) {
    spdlog::error("server {}: role hook threw: {}", id_, e.what());
  }
}

}  // namespace caracal::server

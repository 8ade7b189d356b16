#include "framework/server/executor_impl.h"

#include <cassert>
#include <exception>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace caracal {

// ---- Scheduled ----

void Scheduled::Cancel() {
  if (!state_) return;
  if (state_->owner != nullptr) {
    state_->owner->Cancel(*state_);
  } else {
    state_->cancelled = true;  // fired for good already, or its executor is gone
  }
}

bool Scheduled::active() const { return state_ && !state_->cancelled && !state_->done; }

// ---- Executor (public face) ----

void Executor::AddHandler(std::string_view name, bool is_command, Handler handler) {
  impl_->AddHandler(name, is_command, std::move(handler));
}

void Executor::ReleaseAt(void* impl, Index index) {
  static_cast<internal::ExecutorImpl*>(impl)->tracker().Release(index);
}

Scheduled Executor::Schedule(Duration delay, absl::AnyInvocable<void()> fn) {
  return impl_->Schedule(delay.count(), 0, std::move(fn));
}

Scheduled Executor::Schedule(Duration initial, Duration interval, absl::AnyInvocable<void()> fn) {
  if (interval.count() <= 0) throw std::invalid_argument("Executor::Schedule: the interval must be positive");
  return impl_->Schedule(initial.count(), interval.count(), std::move(fn));
}

Time Executor::now() const { return Time(std::chrono::microseconds(impl_->time())); }

Index Executor::index() const { return impl_->index(); }

std::vector<Session> Executor::sessions() const { return impl_->Sessions(); }

void Executor::LeaderSideEffect(absl::AnyInvocable<void()> fn) { impl_->LeaderSideEffect(std::move(fn)); }

void Session::PublishBytes(std::string_view name, std::string payload) const {
  if (sink_ == nullptr || id_ == 0) {
    throw std::logic_error(absl::StrCat("Session::Publish('", std::string(name),
                                        "'): this command was submitted without a session"));
  }
  sink_->Publish(id_, name, std::move(payload));
}

namespace internal {

ExecutorImpl::~ExecutorImpl() {
  // Handles may outlive this executor: make them inert before the callables
  // (and the commits they hold) go.
  for (auto& [key, timer] : timers_) timer.state->owner = nullptr;
}

void ExecutorImpl::Publish(uint64_t session, std::string_view name, std::string payload) {
  CheckMayChangeState("Session::Publish");
  if (!publisher_) throw std::logic_error("Session::Publish: this server does not deliver events");
  publisher_(session, index_, std::string(name), std::move(payload));
}

void ExecutorImpl::AddHandler(std::string_view name, bool is_command, Executor::Handler handler) {
  std::string key(name);
  if (key.empty()) throw std::invalid_argument("Executor::Register: an operation's kName must not be empty");
  if (!handlers_.emplace(key, Registered{is_command, std::move(handler)}).second) {
    throw std::invalid_argument(absl::StrCat("Executor::Register: operation '", key, "' is registered twice"));
  }
}

void ExecutorImpl::CheckMayChangeState(const char* what) const {
  if (in_query_) {
    throw std::logic_error(absl::StrCat(what, " called while serving query '", current_operation_,
                                        "': queries must not change state"));
  }
}

Scheduled ExecutorImpl::Schedule(LogTime delay, LogTime interval, absl::AnyInvocable<void()> fn) {
  CheckMayChangeState("Executor::Schedule");
  if (delay < 0) delay = 0;
  // Far beyond any real use, and far from overflowing log time (now + delay,
  // deadline + interval) whatever a client put into an operation.
  constexpr LogTime kMaxDelay = LogTime{100} * 365 * 24 * 3600 * 1'000'000;  // a century
  if (delay > kMaxDelay || interval > kMaxDelay) {
    throw std::invalid_argument(absl::StrCat("Executor::Schedule: a delay or interval over 100 years (",
                                             std::max(delay, interval), " us)"));
  }
  auto state = std::make_shared<Scheduled::State>();
  state->owner = this;
  state->key = {time_ + delay, timer_sequence_++};
  timers_.emplace(state->key, Timer{interval, std::move(fn), state});
  return Scheduled(state);
}

void ExecutorImpl::Cancel(Scheduled::State& state) {
  CheckMayChangeState("Scheduled::Cancel");
  state.cancelled = true;
  state.owner = nullptr;
  // Not found while it runs (FireTimers took it out): FireTimers drops it
  // when it returns. Otherwise the node, and the callable with everything it
  // captured, is destroyed here, after the queue is consistent again (its
  // destructors may cancel other timers).
  auto node = timers_.extract(state.key);
  assert(node.empty() || node.mapped().state.get() == &state);
}

void ExecutorImpl::LeaderSideEffect(absl::AnyInvocable<void()> fn) {
  CheckMayChangeState("Executor::LeaderSideEffect");
  side_effects_.push_back(std::move(fn));
}

std::vector<absl::AnyInvocable<void()>> ExecutorImpl::TakeSideEffects() { return std::exchange(side_effects_, {}); }

void ExecutorImpl::FireTimers(Index index, LogTime time) {
  index_ = index;
  while (!timers_.empty() && timers_.begin()->first.first <= time) {
    // Out of the queue while it runs (Cancel() on it then only marks it);
    // put back if periodic and still wanted, destroyed otherwise.
    auto node = timers_.extract(timers_.begin());
    LogTime deadline = node.key().first;
    Timer& timer = node.mapped();
    assert(!timer.state->cancelled);  // Cancel() takes it out of the queue
    time_ = std::max(time_, deadline);
    current_operation_ = "timer";
    ++timers_fired_;
    try {
      timer.fn();
    } catch (const std::exception& e) {
      spdlog::error("timer at log time {} (index {}) threw: {}", deadline, index, e.what());
    }
    if (timer.interval > 0 && !timer.state->cancelled) {
      node.key() = {deadline + timer.interval, timer_sequence_++};
      timer.state->key = node.key();
      timers_.insert(std::move(node));
    } else {
      timer.state->done = true;
      timer.state->owner = nullptr;
    }
  }
  time_ = std::max(time_, time);
}

void ExecutorImpl::ApplyEmpty(Index index, LogTime time) {
  FireTimers(index, time);
  tracker_->Applied(index);
}

std::string ExecutorImpl::KnownOperations() const {
  std::vector<std::string> names;
  for (const auto& [name, r] : handlers_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return absl::StrJoin(names, ", ");
}

namespace {

// A handler's OperationError, as its caller sees it.
absl::Status HandlerError(const OperationError& e, std::string_view operation) {
  absl::StatusCode code = e.status().code();
  if (code == absl::StatusCode::kOk) {
    return absl::InternalError(absl::StrCat("handler for '", std::string(operation),
                                            "' threw an OperationError with an OK status"));
  }
  if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kAborted ||
      code == absl::StatusCode::kUnauthenticated) {
    return absl::InternalError(absl::StrCat("handler for '", std::string(operation), "' failed with ",
                                            absl::StatusCodeToString(code),
                                            " (a code reserved for the framework): ", std::string(e.status().message())));
  }
  return e.status();
}

}  // namespace

absl::StatusOr<const ExecutorImpl::Registered*> ExecutorImpl::Lookup(std::string_view name, bool command) const {
  auto it = handlers_.find(absl::string_view(name.data(), name.size()));  // no key copy
  if (it != handlers_.end() && it->second.is_command == command) return &it->second;
  const char* what = it == handlers_.end()     ? "unknown operation '"
                     : command ? "operation is a query, not a command: '"
                               : "operation is a command, not a query: '";
  return absl::InvalidArgumentError(absl::StrCat(what, std::string(name),
                                                 "' (this state machine's operations: ", KnownOperations(), ")"));
}

absl::Status ExecutorImpl::ApplyCommand(Index index, LogTime time, uint64_t session, std::string_view operation,
                                        std::string* result) {
  FireTimers(index, time);
  absl::StatusOr<codec::OperationView> view = codec::ParseOperationInPlace(operation, &command_message_);
  if (!view.ok()) {
    tracker_->Applied(index);
    return view.status();
  }
  absl::StatusOr<const Registered*> handler = Lookup(view->name(), /*command=*/true);
  if (!handler.ok()) {
    tracker_->Applied(index);
    return handler.status();
  }
  current_operation_.assign(view->name());
  tracker_->Hold(index);  // the Commit releases it
  try {
    absl::Status status = (*handler)->handler(
        *view, Executor::HandlerContext{index, Time(std::chrono::microseconds(time_)), Session(session, this), false},
        result);
    if (!status.ok()) tracker_->Release(index);  // arguments did not decode: nothing holds it
    return status;
  } catch (const OperationError& e) {
    return HandlerError(e, current_operation_);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("handler for '", current_operation_, "' threw: ", e.what()));
  }
}

absl::StatusOr<std::string> ExecutorImpl::RunQuery(uint64_t session, std::string_view operation) {
  absl::StatusOr<codec::OperationView> view = codec::ParseOperationInPlace(operation, &query_message_);
  if (!view.ok()) return view.status();
  absl::StatusOr<const Registered*> handler = Lookup(view->name(), /*command=*/false);
  if (!handler.ok()) return handler.status();
  current_operation_.assign(view->name());
  in_query_ = true;
  absl::StatusOr<std::string> result;
  try {
    std::string bytes;
    absl::Status status = (*handler)->handler(
        *view, Executor::HandlerContext{index_, Time(std::chrono::microseconds(time_)), Session(session, this), true},
        &bytes);
    if (status.ok()) {
      result = std::move(bytes);
    } else {
      result = status;
    }
  } catch (const OperationError& e) {
    result = HandlerError(e, current_operation_);
  } catch (const std::exception& e) {
    result = absl::InternalError(absl::StrCat("handler for query '", current_operation_, "' threw: ", e.what()));
  }
  in_query_ = false;
  return result;
}

}  // namespace internal
}  // namespace caracal

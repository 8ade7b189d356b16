#ifndef CARACAL_STATE_MACHINE_H_
#define CARACAL_STATE_MACHINE_H_

// What an application author writes against: StateMachine, Executor,
// Commit<T> and log-time timers.
//
//   class MapStateMachine : public caracal::StateMachine {
//    public:
//     void Configure(caracal::Executor& executor) override {
//       executor.Register<Put>(this, &MapStateMachine::OnPut);
//       executor.Register<Get>(this, &MapStateMachine::OnGet);
//     }
//     std::optional<std::string> OnPut(caracal::Commit<Put> commit);
//     std::optional<std::string> OnGet(caracal::Commit<Get> commit);
//   };
//
// Determinism. Every server applies the same committed commands in the same
// order and must reach the same state. So a state machine reads time only from
// Commit::time() / Executor::now() (log time, stamped by the leader), schedules
// only through Executor::Schedule (fired by log time), and never reads the
// wall clock, random numbers or anything else that differs between servers.
// The hooks marked *non-deterministic* below are the exception: they run on
// one server only and must not change replicated state.
//
// Threading. All of a state machine's methods run on the server's state
// machine thread, one at a time: no locking is needed inside it. A slow
// handler delays later commands and queries, never heartbeats.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "caracal/codec.h"
#include "caracal/operation.h"

namespace caracal {

using Index = uint64_t;
using Term = uint64_t;
using NodeId = uint64_t;
// Log time: microseconds since the Unix epoch, as stamped by the leader. It
// never goes backwards, on any server, across leader changes.
using LogClock = std::chrono::system_clock;
using Time = std::chrono::time_point<LogClock, std::chrono::microseconds>;

namespace internal {
class ExecutorImpl;
// Where Session::Publish goes (implemented by the executor).
class SessionSink {
 public:
  virtual ~SessionSink() = default;
  virtual void Publish(uint64_t session, std::string_view name, std::string payload) = 0;
};
}  // namespace internal

// Throw from a command or query handler to fail the operation with
// `status`: the caller receives that code and message (a handler that throws
// anything else fails it with Internal). A command that throws must not have
// changed state. Unavailable, Aborted and Unauthenticated are the framework's
// (retry elsewhere, retry, session gone): a handler's status with one of
// those codes reaches the caller as Internal, naming the code.
class OperationError : public std::runtime_error {
 public:
  explicit OperationError(absl::Status status)
      : std::runtime_error(std::string(status.message())), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// The client session a command arrived on. Sessions are registered through
// the log (id = the index of their Register entry). A command submitted
// without a session (embedded use) carries session id 0.
class Session {
 public:
  explicit Session(uint64_t id, internal::SessionSink* sink = nullptr) : id_(id), sink_(sink) {}
  uint64_t id() const { return id_; }

  // Publishes `event` to this session's client as `name`, from inside a
  // command (or a timer or session callback). Events belong to the current
  // index and are kept on every server until the client acknowledges them;
  // the client receives each exactly once, in order, after the response to
  // the command that published them. Any open session may be published to
  // (Executor::sessions() lists them), not only the caller's. Publishing to
  // a session that is not open (or to id 0, a command without a session)
  // throws std::logic_error, and so does publishing from a query (see
  // Executor): the caller gets it as an error.
  template <typename E>
  void Publish(std::string_view name, const E& event) const {
    PublishBytes(name, codec::ToBytes(event));
  }
  void PublishBytes(std::string_view name, std::string payload) const;

 private:
  uint64_t id_;
  internal::SessionSink* sink_;
};

// Session lifecycle callbacks, applied at the same index on every server. A
// StateMachine that also derives from SessionListener receives them.
class SessionListener {
 public:
  virtual ~SessionListener() = default;
  virtual void OnRegister(const Session& /*session*/) {}
  // Its client closed it.
  virtual void OnUnregister(const Session& /*session*/) {}
  // It stopped sending keep-alives and the leader expired it.
  virtual void OnExpire(const Session& /*session*/) {}
  // After OnUnregister or OnExpire: the session is gone.
  virtual void OnClose(const Session& /*session*/) {}
};

// A committed command (or a query being served), handed to the registered
// handler. Move-only. For a command it stands for a live log entry: keep it
// while the command contributes to state; call release() (or destroy it) when
// it no longer does, so the compactor may remove the entry. For a query it is
// a view of the state at index() and release() does nothing.
template <typename T>
class Commit {
 public:
  // An empty commit (index 0, already released): a placeholder in containers.
  Commit() = default;
  Commit(Commit&& other) noexcept { MoveFrom(other); }
  Commit& operator=(Commit&& other) noexcept {
    if (this != &other) {
      release();
      MoveFrom(other);
    }
    return *this;
  }
  Commit(const Commit&) = delete;
  Commit& operator=(const Commit&) = delete;
  ~Commit() { release(); }

  Index index() const { return index_; }
  Time time() const { return time_; }
  const Session& session() const { return session_; }
  const T& operation() const { return operation_; }
  T& operation() { return operation_; }
  const T* operator->() const { return &operation_; }

  // This command no longer contributes to state. Idempotent.
  void release() {
    if (releaser_ != nullptr) {
      releaser_(release_target_, index_);
      releaser_ = nullptr;
    }
  }
  bool released() const { return releaser_ == nullptr; }

  // For the framework and tests: a commit not tied to any release tracking.
  static Commit Detached(Index index, Time time, Session session, T operation) {
    return Commit(index, time, session, std::move(operation), nullptr, nullptr);
  }

 private:
  friend class Executor;
  using Releaser = void (*)(void*, Index);
  Commit(Index index, Time time, Session session, T operation, Releaser releaser, void* target)
      : index_(index),
        time_(time),
        session_(session),
        operation_(std::move(operation)),
        releaser_(releaser),
        release_target_(target) {}
  void MoveFrom(Commit& other) {
    index_ = other.index_;
    time_ = other.time_;
    session_ = other.session_;
    operation_ = std::move(other.operation_);
    releaser_ = other.releaser_;
    release_target_ = other.release_target_;
    other.releaser_ = nullptr;
  }

  Index index_ = 0;
  Time time_{};
  Session session_{0};
  T operation_{};
  Releaser releaser_ = nullptr;
  void* release_target_ = nullptr;
};

// A handle on a scheduled callback. Copyable; Cancel() on any copy cancels.
// Cancelling destroys the callback at once, and with it whatever it owns (a
// Commit it held is released then, not at the old deadline).
class Scheduled {
 public:
  Scheduled() = default;
  void Cancel();
  // Scheduled and neither cancelled nor (a one-shot) fired.
  bool active() const;

 private:
  friend class internal::ExecutorImpl;
  struct State;  // defined by the executor
  explicit Scheduled(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// Binds operation types to handlers, schedules deterministic callbacks and
// lists the open sessions. Register in StateMachine::Configure.
//
// What a query may not do. A query runs on one server, outside the log, so
// it must not change state. While one runs, everything that would is
// refused: Session::Publish (to any session), Schedule (either overload),
// Scheduled::Cancel and LeaderSideEffect throw std::logic_error naming the
// call and the query, and the query fails with that error (Internal) having
// published, scheduled, cancelled and queued nothing. Command handlers,
// timer callbacks and SessionListener callbacks may do all of them.
class Executor {
 public:
  using Duration = std::chrono::microseconds;

  // Binds the command or query type Op to `fn`, a member of `sm` taking
  // Commit<Op> and returning Op's result type (or void).
  template <OperationType Op, typename SM, typename R>
  void Register(SM* sm, R (SM::*fn)(Commit<Op>)) {
    static_assert(std::is_same_v<R, ResultOf<Op>>, "the handler must return the operation's result type");
    Register<Op>(std::function<R(Commit<Op>)>([sm, fn](Commit<Op> c) -> R { return (sm->*fn)(std::move(c)); }));
  }

  // Binds Op to any callable taking Commit<Op>.
  template <OperationType Op>
  void Register(std::function<ResultOf<Op>(Commit<Op>)> fn) {
    AddHandler(Op::kName, CommandType<Op>, MakeHandler<Op>(std::move(fn)));
  }

  // Runs `fn` once log time reaches now() + delay: before the first entry whose
  // timestamp reaches the deadline is applied, as part of that entry (same
  // index on every server), in deadline order (ties in creation order).
  // Replaying the log fires it at the same index.
  //
  // `fn` may be move-only and owns what it captures: a one-shot callback is
  // destroyed right after it ran, a cancelled one when Cancel() is called.
  // That makes Copycat's TTL pattern work: the timer, not the map, holds the
  // Put's Commit, so its entry stays live exactly until the key expires or
  // is overwritten:
  //
  //   map_[key].expiry = executor.Schedule(ttl, [this, key, commit = std::move(commit)]() mutable {
  //     map_.erase(key);
  //     commit.release();
  //   });
  //   ...
  //   map_[key].expiry.Cancel();  // an overwrite: destroys the callback, releasing the commit
  Scheduled Schedule(Duration delay, absl::AnyInvocable<void()> fn);
  // Runs `fn` at now() + initial, then every `interval` after the previous
  // deadline (no drift), until cancelled. It is the same callable each time:
  // what it captures (mutable) carries over from one run to the next.
  Scheduled Schedule(Duration initial, Duration interval, absl::AnyInvocable<void()> fn);

  // Log time and index of what is being applied (a command, a timer, a query).
  Time now() const;
  Index index() const;

  // The open sessions, in id order (the order they registered), each able to
  // Publish: a command, timer or session callback can notify sessions other
  // than its caller's (a watch, a lock hand-over) without keeping a registry
  // of its own. Every server lists the same sessions at the same index. A
  // session is listed from its Register entry on (so already in OnRegister)
  // until it is unregistered or expired (so no longer in OnClose).
  std::vector<Session> sessions() const;

  // *Non-deterministic.* Runs `fn` after the current command is applied, and
  // only on the server that was leader when it was committed (the one that
  // appended it, while still leading). For effects outside the replicated
  // state: notifying an external system, metrics. Never runs on followers or
  // during log replay after a restart. `fn` may be move-only.
  void LeaderSideEffect(absl::AnyInvocable<void()> fn);

  // Framework internals below. A handler takes the encoded arguments and
  // writes the encoded result into `result` (a string the framework reuses,
  // so a small result costs no allocation); an error status means the
  // arguments did not decode.
  struct HandlerContext {
    Index index;
    Time time;
    Session session;
    bool query;
  };
  using Handler =
      std::function<absl::Status(const codec::OperationView&, const HandlerContext&, std::string* result)>;
  explicit Executor(internal::ExecutorImpl* impl) : impl_(impl) {}

 private:
  void AddHandler(std::string_view name, bool is_command, Handler handler);
  static void ReleaseAt(void* impl, Index index);

  template <OperationType Op>
  Handler MakeHandler(std::function<ResultOf<Op>(Commit<Op>)> fn) {
    internal::ExecutorImpl* impl = impl_;
    return [fn = std::move(fn), impl](const codec::OperationView& view, const HandlerContext& ctx,
                                      std::string* result) -> absl::Status {
      Op op{};
      if (absl::Status s = view.DecodeArgs<Op>(&op); !s.ok()) return s;
      Commit<Op> commit(ctx.index, ctx.time, ctx.session, std::move(op), ctx.query ? nullptr : &Executor::ReleaseAt,
                        ctx.query ? nullptr : impl);
      if constexpr (std::is_void_v<ResultOf<Op>>) {
        fn(std::move(commit));
        codec::EncodeResult<Op>(std::monostate{}, result);
      } else {
        codec::EncodeResult<Op>(fn(std::move(commit)), result);
      }
      return absl::OkStatus();
    };
  }

  internal::ExecutorImpl* impl_;
};

// The application's replicated state. Subclass it, register operations in
// Configure, and hand a factory to caracal::Server (or EmbeddedCluster).
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  virtual void Configure(Executor& executor) = 0;

  // *Non-deterministic* role hooks: this server became leader (of `term`) or
  // follower. They run on the state machine thread between commands, on this
  // server only. Use them for leader-only work outside the replicated state
  // (e.g. start serving a cache); never change replicated state here.
  virtual void OnBecomeLeader(Term /*term*/) {}
  virtual void OnBecomeFollower(Term /*term*/, NodeId /*leader*/) {}
};

}  // namespace caracal

#endif  // CARACAL_STATE_MACHINE_H_

#ifndef CARACAL_CLIENT_H_
#define CARACAL_CLIENT_H_

// caracal::Client: a session with a Caracal cluster.
//
//   auto client = caracal::Client::Builder()
//                     .WithServers({"127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"})
//                     .WithSessionTimeout(std::chrono::seconds(5))
//                     .Connect();                   // registers a session
//   if (!client.ok()) { ... (*client).status().message() says why ... }
//   auto put = (*client)->Submit(kv::Put{.key = "a", .value = "1"});   // a future
//   (*client)->OnEvent<lock::Granted>("granted", [](lock::Granted g) { ... });
//
// Semantics (DESIGN.md sections 4, 6 and 11; Copycat's promises):
//   * Commands are numbered per session (1, 2, ...) and may be pipelined:
//     many in flight. A command whose server fails is retried, with the same
//     number, on another server; the cluster applies it exactly once and
//     answers a retry from its response cache.
//   * A session's commands enter the log in the order they were submitted
//     (the leader sequences them), so on every server they are applied in
//     that order and each handler sees a strictly increasing commit index.
//   * A query sees the effects of every command its session submitted before
//     it, at every consistency level (the server runs it only once those
//     commands are applied there), without waiting for their responses.
//   * Everything a session submits completes in submission order: a
//     callback (or future) of a command or query runs after those of
//     everything submitted before it. (When the session is lost, its
//     pending commands fail at once; pending queries go on in a new session.)
//   * Events published to this session are delivered exactly once, in
//     index order, across failovers: a response for the command at index i
//     completes after every event published at an index < i, and the events
//     the command itself published are delivered after its response.
//   * The session is kept alive in the background (keep-alives at a third of
//     the timeout). While keep-alives fail the state is SUSPENDED; if the
//     cluster expired the session, RECOVER (default) registers a new one
//     (pending commands fail with Unauthenticated: they may or may not have
//     been applied), CLOSE closes the client.
//
// Connection strategy: a session talks to the leader (commands, keep-alives,
// events, LINEARIZABLE queries) — kLeader, the default, sends SEQUENTIAL
// queries there too; kAny and kFollowers send them over a second connection
// to any server / preferably a follower, spreading read load.
//
// Shared connections: the clients of one ClientRuntime multiplex their
// sessions over one TCP connection per server (requests and responses are
// matched by id, events by session), so many sessions cost a server one
// connection and few syscalls. A connection that fails fails for every
// client on it, and each one then retries as it would on its own; a client
// that gives up on a server for silence (attempt_timeout) closes the shared
// connection to it, so that none of them keeps waiting on a dead one.
// Opt out with WithSharedConnections(false): the client then has
// connections of its own (a client without a runtime has anyway).
//
// Threading: a client runs on one thread, its own or a shared ClientRuntime's.
// Every member function is thread-safe. Callbacks (submit callbacks, event
// handlers, state listeners) run on that thread in delivery order: keep them
// short, never wait on a future of a client inside one, and never close or
// destroy a client of the same runtime from one.
//
// Errors a future or callback can carry: the operation's own error (as its
// handler returned it), Unauthenticated (the session expired before the
// command completed), Cancelled (Close() ran first), DeadlineExceeded
// (queries only: no server answered within the request timeout).

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "caracal/codec.h"
#include "caracal/operation.h"

namespace caracal {

class ClientRuntime;
namespace client {  // internal (framework/client/connection_pool.h)
class ConnectionPool;
std::shared_ptr<ConnectionPool> PoolOf(ClientRuntime& runtime);
}  // namespace client

// The thread a client's networking and callbacks run on. By default every
// Client makes its own; many clients (sessions) in one process can share one
// runtime, and so one thread, instead of a thread each, and one connection
// per server (see "Shared connections" above). A runtime lives as long as
// its last client (or the caller's reference).
class ClientRuntime {
 public:
  static std::shared_ptr<ClientRuntime> Create();
  ~ClientRuntime();
  ClientRuntime(const ClientRuntime&) = delete;
  ClientRuntime& operator=(const ClientRuntime&) = delete;

 private:
  friend class Client;
  friend std::shared_ptr<client::ConnectionPool> client::PoolOf(ClientRuntime& runtime);
  struct Impl;
  ClientRuntime();
  std::unique_ptr<Impl> impl_;
};

enum class ConnectionStrategy { kAny, kLeader, kFollowers };
enum class RecoveryStrategy { kRecover, kClose };
enum class ClientState { kConnected, kSuspended, kClosed };
const char* ClientStateName(ClientState state);

struct ClientOptions {
  std::vector<std::string> servers;  // "host:port" of some members; more are learned
  std::string cluster_id = "caracal";
  std::string client_id;             // for the servers' logs; default: "client-<random>"
  ConnectionStrategy connection_strategy = ConnectionStrategy::kLeader;
  RecoveryStrategy recovery_strategy = RecoveryStrategy::kRecover;
  std::chrono::milliseconds session_timeout{5000};
  std::chrono::milliseconds keep_alive_interval{0};  // 0: session_timeout / 3
  // Connect() gives up when no server registered the session within this.
  std::chrono::milliseconds connect_timeout{10000};
  // A server that answers nothing for this long while requests are pending
  // is left for another (the requests are resent there).
  std::chrono::milliseconds attempt_timeout{2000};
  // Queries fail with DeadlineExceeded after this; commands never time out
  // while the session lives (a later command could not run without them).
  std::chrono::milliseconds query_timeout{10000};
  // Shared with other clients; null: this client runs its own thread.
  std::shared_ptr<ClientRuntime> runtime;
  // Multiplex over the runtime's connections, shared with its other clients
  // (false: open connections of its own).
  bool share_connections = true;
};

class Client {
 public:
  using ResultCallback = std::function<void(absl::StatusOr<std::string>)>;
  using EventHandler = std::function<void(std::string_view payload)>;
  using StateListener = std::function<void(ClientState)>;

  class Builder {
   public:
    Builder& WithServers(std::vector<std::string> servers);
    Builder& WithClusterId(std::string cluster_id);
    Builder& WithClientId(std::string client_id);
    Builder& WithConnectionStrategy(ConnectionStrategy strategy);
    Builder& WithRecoveryStrategy(RecoveryStrategy strategy);
    Builder& WithSessionTimeout(std::chrono::milliseconds timeout);
    Builder& WithKeepAliveInterval(std::chrono::milliseconds interval);
    Builder& WithConnectTimeout(std::chrono::milliseconds timeout);
    Builder& WithAttemptTimeout(std::chrono::milliseconds timeout);
    Builder& WithQueryTimeout(std::chrono::milliseconds timeout);
    Builder& WithRuntime(std::shared_ptr<ClientRuntime> runtime);
    Builder& WithSharedConnections(bool shared);
    // Connects and registers a session (blocks up to the connect timeout).
    absl::StatusOr<std::unique_ptr<Client>> Connect();

   private:
    ClientOptions options_;
  };

  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  // Close()s.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- operations: encoded (codec::EncodeOperation) in, encoded results out ----
  void SubmitCommand(std::string operation, ResultCallback done);
  std::future<absl::StatusOr<std::string>> SubmitCommand(std::string operation);
  void SubmitQuery(std::string operation, Consistency consistency, ResultCallback done);
  std::future<absl::StatusOr<std::string>> SubmitQuery(std::string operation, Consistency consistency);

  // ---- typed ----
  template <OperationType Op>
  std::future<absl::StatusOr<WireResultOf<Op>>> Submit(const Op& op) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<WireResultOf<Op>>>>();
    auto future = promise->get_future();
    Submit(op, [promise](absl::StatusOr<WireResultOf<Op>> r) { promise->set_value(std::move(r)); });
    return future;
  }
  template <QueryType Op>
  std::future<absl::StatusOr<WireResultOf<Op>>> Submit(const Op& op, Consistency consistency) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<WireResultOf<Op>>>>();
    auto future = promise->get_future();
    Submit(op, consistency, [promise](absl::StatusOr<WireResultOf<Op>> r) { promise->set_value(std::move(r)); });
    return future;
  }
  template <OperationType Op>
  void Submit(const Op& op, std::function<void(absl::StatusOr<WireResultOf<Op>>)> done) {
    if constexpr (CommandType<Op>) {
      SubmitCommand(codec::EncodeOperation(op), Decoding<Op>(std::move(done)));
    } else {
      SubmitQuery(codec::EncodeOperation(op), op.consistency(), Decoding<Op>(std::move(done)));
    }
  }
  template <QueryType Op>
  void Submit(const Op& op, Consistency consistency, std::function<void(absl::StatusOr<WireResultOf<Op>>)> done) {
    SubmitQuery(codec::EncodeOperation(op), consistency, Decoding<Op>(std::move(done)));
  }

  // ---- events ----
  // `handler` receives every event named `name` published to this session
  // (replacing an earlier handler for that name). Events with no handler
  // are dropped (still acknowledged). An event that does not decode as E is
  // logged and dropped.
  template <typename E>
  void OnEvent(std::string name, std::function<void(E)> handler) {
    OnEventBytes(std::move(name), [name, handler = std::move(handler)](std::string_view payload) {
      auto event = codec::FromBytes<E>(payload);
      if (!event.ok()) {
        LogUndecodableEvent(name, event.status());
        return;
      }
      handler(*std::move(event));
    });
  }
  void OnEventBytes(std::string name, EventHandler handler);

  // Called on every state change (and not for the initial kConnected).
  void OnStateChange(StateListener listener);
  ClientState state() const;
  // The current session's id (changes when RECOVER opened a new one).
  uint64_t session() const;
  // The highest log index this client has seen (responses, queries).
  uint64_t last_index() const;

  // Unregisters the session (best effort, within the attempt timeout), fails
  // whatever is pending with Cancelled, stops the thread. Idempotent; must not
  // be called from a callback of this client.
  absl::Status Close();

  class Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  static void LogUndecodableEvent(const std::string& name, const absl::Status& status);
  template <OperationType Op>
  static ResultCallback Decoding(std::function<void(absl::StatusOr<WireResultOf<Op>>)> done) {
    return [done = std::move(done)](absl::StatusOr<std::string> bytes) {
      if (!bytes.ok()) {
        done(bytes.status());
        return;
      }
      done(codec::DecodeResult<Op>(*bytes));
    };
  }
  std::shared_ptr<Impl> impl_;
};

}  // namespace caracal

#endif  // CARACAL_CLIENT_H_

#include "caracal/client.h"

#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "framework/client/client_connection.h"
#include "framework/client/connection_pool.h"
#include "framework/common/thread_name.h"
#include "framework/transport/tcp_transport.h"
#include "spdlog/spdlog.h"

namespace caracal {

using serialization::ClientRequestBody;
using serialization::ClientRequestValue;
using serialization::ClientResponseValue;
using serialization::CommandRequest;
using serialization::CommandResult;
using serialization::KeepAliveRequest;
using serialization::PublishEventsValue;
using serialization::QueryRequest;
using serialization::QueryResult;
using serialization::RegisterRequest;
using serialization::RegisterResult;
using serialization::ResetEventsRequest;
using serialization::UnregisterRequest;
using Clock = std::chrono::steady_clock;

namespace {

serialization::Consistency WireConsistency(Consistency c) {
  switch (c) {
    case Consistency::kLinearizable:
      return serialization::Consistency::kLinearizable;
    case Consistency::kLinearizableLease:
      return serialization::Consistency::kLinearizableLease;
    case Consistency::kSequential:
      return serialization::Consistency::kSequential;
  }
  return serialization::Consistency::kLinearizable;
}

}  // namespace

const char* ClientStateName(ClientState state) {
  switch (state) {
    case ClientState::kConnected:
      return "CONNECTED";
    case ClientState::kSuspended:
      return "SUSPENDED";
    case ClientState::kClosed:
      return "CLOSED";
  }
  return "?";
}

// ---- ClientRuntime ----

// The pool is destroyed (empty: every client closed its channels) after the
// thread stopped, before the io_context its connections belong to.
struct ClientRuntime::Impl {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::shared_ptr<client::ConnectionPool> pool = std::make_shared<client::ConnectionPool>(io);
  std::thread thread;
};

ClientRuntime::ClientRuntime() : impl_(std::make_unique<Impl>()) {
  impl_->thread = std::thread([this] {
    SetThreadName("caracal-client");
    impl_->io.run();
  });
}

ClientRuntime::~ClientRuntime() {
  impl_->work.reset();
  impl_->thread.join();
}

std::shared_ptr<ClientRuntime> ClientRuntime::Create() { return std::shared_ptr<ClientRuntime>(new ClientRuntime()); }

std::shared_ptr<client::ConnectionPool> client::PoolOf(ClientRuntime& runtime) { return runtime.impl_->pool; }

// Everything below runs on the client's io thread unless it says otherwise.
//
// Ordering (DESIGN.md section 6) is decided here, in Sequence(): responses
// complete in sequence order; a response waits for the event batches up to
// its event index; a received batch is delivered once no command is
// outstanding or its index is at most that of the last completed response
// (the next command's index is at least that, so nothing may come before it).
class Client::Impl : public std::enable_shared_from_this<Impl> {
 public:
  explicit Impl(ClientOptions options)
      : options_(std::move(options)),
        runtime_(options_.runtime ? options_.runtime : ClientRuntime::Create()),
        io_(runtime_->impl_->io),
        pool_(options_.share_connections ? runtime_->impl_->pool : std::make_shared<client::ConnectionPool>(io_)),
        keep_alive_timer_(io_),
        progress_timer_(io_),
        reconnect_timer_(io_) {
    if (options_.client_id.empty()) {
      std::random_device rd;
      options_.client_id = absl::StrCat("client-", rd() % 1000000);
    }
    if (options_.keep_alive_interval.count() <= 0) options_.keep_alive_interval = options_.session_timeout / 3;
    servers_ = options_.servers;
  }

  ~Impl() { Shutdown(); }

  absl::Status Open() {
    if (options_.servers.empty()) return absl::InvalidArgumentError("no servers given (WithServers)");
    for (const auto& s : options_.servers) {
      if (auto parsed = transport::ParseHostPort(s); !parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("server address '", s, "': ", parsed.status().message()));
      }
    }
    auto registered = std::make_shared<std::promise<absl::Status>>();
    auto future = registered->get_future();
    open_ = true;
    boost::asio::post(io_, [this, registered] {
      on_registered_ = registered;
      ScheduleKeepAlive();
      ScheduleProgressCheck();
      Reconnect(/*move_on=*/false);
    });
    if (future.wait_for(options_.connect_timeout) != std::future_status::ready) {
      std::string why = Post<std::string>([this] {
        on_registered_.reset();
        return last_error_.empty() ? std::string("no answer") : last_error_;
      });
      Shutdown();
      return absl::UnavailableError(absl::StrCat("could not open a session with any of ",
                                                 absl::StrJoin(options_.servers, ", "), " within ",
                                                 options_.connect_timeout.count(), " ms (last error: ", why, ")"));
    }
    absl::Status s = future.get();
    if (!s.ok()) Shutdown();
    return s;
  }

  void SubmitCommand(std::string operation, ResultCallback done) {
    boost::asio::post(io_, [this, operation = std::move(operation), done = std::move(done)]() mutable {
      if (closed_) return done(absl::CancelledError("the client is closed"));
      uint64_t seq = next_sequence_++;
      commands_[seq] = PendingCommand{Bytes(std::move(operation)), std::move(done)};
      order_.push_back(Slot{false, seq});
      if (session_ != 0 && conn_ready_) SendCommand(seq);
    });
  }

  void SubmitQuery(std::string operation, Consistency consistency, ResultCallback done) {
    boost::asio::post(io_, [this, operation = std::move(operation), consistency, done = std::move(done)]() mutable {
      if (closed_) return done(absl::CancelledError("the client is closed"));
      uint64_t id = next_query_++;
      // It must see every command submitted before it (the servers run it
      // once its session applied them) and completes after them.
      queries_[id] = PendingQuery{std::move(operation), consistency, std::move(done),
                                  Clock::now() + options_.query_timeout, next_sequence_ - 1};
      order_.push_back(Slot{true, id});
      if (session_ != 0 && conn_ready_) SendQuery(id);
    });
  }

  void OnEventBytes(std::string name, EventHandler handler) {
    boost::asio::post(io_, [this, name = std::move(name), handler = std::move(handler)]() mutable {
      event_handlers_[std::move(name)] = std::move(handler);
    });
  }

  void OnStateChange(StateListener listener) {
    boost::asio::post(io_, [this, listener = std::move(listener)]() mutable { state_listener_ = std::move(listener); });
  }

  ClientState state() const { return state_.load(); }
  uint64_t session() const { return public_session_.load(); }
  uint64_t last_index() const { return last_index_.load(); }

  absl::Status Close() {
    if (!open_) return absl::OkStatus();
    auto done = std::make_shared<std::promise<absl::Status>>();
    auto future = done->get_future();
    boost::asio::post(io_, [this, done] {
      if (closed_ || session_ == 0 || !conn_ready_) {
        done->set_value(absl::OkStatus());
        return;
      }
      Request(UnregisterRequest{session_}, [done](const ClientResponseValue& r) { done->set_value(r.status); });
    });
    absl::Status s = absl::OkStatus();
    if (future.wait_for(options_.attempt_timeout) != std::future_status::ready) {
      s = absl::DeadlineExceededError("the session was not unregistered in time; the cluster will expire it");
    } else {
      s = future.get();
    }
    Shutdown();
    return s;
  }

 private:
  struct PendingCommand {
    Bytes operation;  // shared by every (re)send
    ResultCallback done;
  };
  struct ReadyResponse {
    absl::StatusOr<std::string> result;
    Index index = 0;
    Index event_index = 0;
    ResultCallback done;
  };
  struct PendingQuery {
    std::string operation;
    Consistency consistency;
    ResultCallback done;
    Clock::time_point deadline;
    uint64_t after_sequence = 0;  // the last command submitted before it
    bool via_reader = false;      // sent on (or waiting for) the read connection
    // Answered (or given up on): completes when its turn in order_ comes.
    std::optional<absl::StatusOr<std::string>> answer;
  };
  // A submission, in submission order: a command (id = its sequence) or a
  // query (id = its key in queries_).
  struct Slot {
    bool query = false;
    uint64_t id = 0;
  };
  using ResponseFn = std::function<void(const ClientResponseValue&)>;

  template <typename R>
  R Post(std::function<R()> fn) {
    std::promise<R> p;
    auto f = p.get_future();
    boost::asio::post(io_, [&] { p.set_value(fn()); });
    return f.get();
  }

  void Shutdown() {
    if (!open_.exchange(false)) return;
    std::promise<void> stopped;
    boost::asio::post(io_, [this, &stopped] {
      FailEverything(absl::CancelledError("the client was closed"));
      closed_ = true;
      SetState(ClientState::kClosed);
      if (conn_) conn_->Close();
      conn_.reset();
      if (reader_) reader_->Close();
      reader_.reset();
      keep_alive_timer_.cancel();
      progress_timer_.cancel();
      reconnect_timer_.cancel();
      // The cancelled timers' handlers are queued now: once this runs, they
      // ran (and did nothing), and nothing of this client is left on the
      // runtime's queue.
      boost::asio::post(io_, [&stopped] { stopped.set_value(); });
    });
    stopped.get_future().wait();
  }

  void SetState(ClientState s) {
    if (state_.exchange(s) == s) return;
    if (state_listener_) state_listener_(s);
  }

  // ---- connections ----

  // Leaves the current server (`abandon`: closing the connection to it for
  // every client sharing it, since it stopped answering).
  void Reconnect(bool move_on, bool abandon = false) {
    if (closed_) return;
    if (conn_ && abandon) {
      conn_->Abandon(absl::UnavailableError(absl::StrCat("a client sharing the connection gave up: ", last_error_)));
    } else if (conn_) {
      conn_->Close();
    }
    conn_.reset();
    conn_ready_ = false;
    handlers_.clear();
    resend_in_flight_ = false;
    keep_alive_in_flight_ = false;
    // The leader when we know where it is; otherwise the next server.
    std::string address;
    if (leader_ != 0 && members_.contains(leader_) && members_[leader_] != current_address_) {
      address = members_[leader_];
    } else {
      if (move_on || current_address_.empty()) next_server_ = (next_server_ + 1) % servers_.size();
      address = servers_[next_server_];
      ++failures_in_a_row_;
    }
    leader_ = 0;
    auto delay = std::chrono::milliseconds(0);
    if (failures_in_a_row_ > servers_.size()) {
      delay = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(25 * (failures_in_a_row_ - servers_.size())),
                                                  std::chrono::milliseconds(500));
    }
    reconnect_timer_.expires_after(delay);
    reconnect_timer_.async_wait([this, address](const boost::system::error_code& ec) {
      if (ec || closed_) return;
      ConnectTo(address);
    });
  }

  void ConnectTo(const std::string& address) {
    current_address_ = address;
    client::ClientConnectionOptions o;
    o.connect_timeout = options_.attempt_timeout;
    conn_ = pool_->NewChannel(options_.cluster_id, o);
    client::Channel* conn = conn_.get();
    conn->SetResponseHandler([this](ClientResponseValue r) { OnResponse(std::move(r)); });
    conn->SetEventsHandler([this](PublishEventsValue e) { OnEvents(std::move(e)); });
    conn->SetClosedHandler([this, conn](absl::Status why) {
      if (conn != conn_.get()) return;
      last_error_ = absl::StrCat(current_address_, ": ", why.message());
      Reconnect(true);
    });
    conn->Connect(address, [this, conn, address](absl::Status s) {
      if (conn != conn_.get()) return;
      if (!s.ok()) {
        last_error_ = absl::StrCat(address, ": ", s.message());
        Reconnect(true);
        return;
      }
      conn_ready_ = true;
      last_receive_ = Clock::now();
      OnConnected();
    });
  }

  void OnConnected() {
    if (session_ == 0) {
      Register();
      return;
    }
    Subscribe();
    for (auto& [seq, c] : commands_) SendCommand(seq);
    for (auto& [id, q] : queries_) SendQuery(id);  // the unanswered ones
    SendKeepAlive();
  }

  void Request(ClientRequestBody body, ResponseFn on_response) {
    if (!conn_ready_) return;
    uint64_t id = next_request_id_++;
    handlers_[id] = std::move(on_response);
    absl::Status s = conn_->Send(ClientRequestValue{id, std::move(body)});
    if (!s.ok()) {
      handlers_.erase(id);
      last_error_ = std::string(s.message());
      Reconnect(true);
    }
  }

  // Unavailable (go elsewhere) and Aborted (retry) are the framework's; the
  // caller handles everything else.
  bool Retryable(const ClientResponseValue& r) {
    if (absl::IsUnavailable(r.status)) {
      last_error_ = absl::StrCat(current_address_, ": ", r.status.message());
      if (!reconnect_posted_) {
        // Once for all the responses of this turn.
        reconnect_posted_ = true;
        boost::asio::post(io_, [this, self = shared_from_this()] {
          reconnect_posted_ = false;
          Reconnect(leader_ == 0);
        });
      }
      return true;
    }
    return absl::IsAborted(r.status);
  }

  void OnResponse(ClientResponseValue r) {
    last_receive_ = Clock::now();
    for (const auto& m : r.members) {
      members_[m.id] = m.address;
      if (std::find(servers_.begin(), servers_.end(), m.address) == servers_.end()) servers_.push_back(m.address);
    }
    leader_ = r.leader;
    auto it = handlers_.find(r.request_id);
    if (it == handlers_.end()) return;
    ResponseFn fn = std::move(it->second);
    handlers_.erase(it);
    fn(r);
  }

  // ---- session ----

  void Register() {
    Request(RegisterRequest{options_.client_id, static_cast<uint64_t>(options_.session_timeout.count())},
            [this](const ClientResponseValue& r) {
              if (Retryable(r)) {
                if (absl::IsAborted(r.status)) Register();
                return;
              }
              if (!r.status.ok()) {
                last_error_ = std::string(r.status.message());
                if (on_registered_) on_registered_->set_value(r.status);
                on_registered_.reset();
                return;
              }
              const auto* result = std::get_if<RegisterResult>(&r.body);
              if (result == nullptr) return;
              session_ = result->session;
              public_session_ = session_;
              failures_in_a_row_ = 0;
              last_keep_alive_ok_ = Clock::now();
              spdlog::debug("client {}: session {} registered", options_.client_id, session_);
              if (on_registered_) on_registered_->set_value(absl::OkStatus());
              on_registered_.reset();
              SetState(ClientState::kConnected);
              OnConnected();
            });
  }

  void Subscribe() {
    resend_in_flight_ = true;
    uint64_t session = session_;
    Request(ResetEventsRequest{session, received_event_index_}, [this, session](const ClientResponseValue& r) {
      resend_in_flight_ = false;
      if (session != session_) return;
      if (absl::IsUnauthenticated(r.status)) return SessionLost();
      Retryable(r);
    });
  }

  void SendKeepAlive() {
    if (session_ == 0 || !conn_ready_ || keep_alive_in_flight_) return;
    keep_alive_in_flight_ = true;
    uint64_t session = session_;
    Request(KeepAliveRequest{session, completed_seq_, delivered_event_index_},
            [this, session](const ClientResponseValue& r) {
              keep_alive_in_flight_ = false;
              if (session != session_) return;
              if (absl::IsUnauthenticated(r.status)) return SessionLost();
              if (Retryable(r) || !r.status.ok()) return;
              last_keep_alive_ok_ = Clock::now();
              failures_in_a_row_ = 0;
              SetState(ClientState::kConnected);
            });
  }

  void ScheduleKeepAlive() {
    keep_alive_timer_.expires_after(options_.keep_alive_interval);
    keep_alive_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || closed_) return;
      if (session_ != 0 && Clock::now() - last_keep_alive_ok_ > options_.keep_alive_interval * 2) {
        SetState(ClientState::kSuspended);
      }
      SendKeepAlive();
      ScheduleKeepAlive();
    });
  }

  // A server that stopped answering (partitioned, or a leader that cannot
  // commit) is left; queries past their deadline fail.
  void ScheduleProgressCheck() {
    progress_timer_.expires_after(options_.attempt_timeout / 4);
    progress_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || closed_) return;
      auto now = Clock::now();
      bool expired = false;
      for (auto& [id, q] : queries_) {
        if (q.answer || now < q.deadline) continue;
        q.answer = absl::DeadlineExceededError(absl::StrCat("no server answered the query within ",
                                                            options_.query_timeout.count(), " ms (last error: ",
                                                            last_error_.empty() ? "none" : last_error_, ")"));
        expired = true;
      }
      if (expired) Sequence();
      if (conn_ready_ && !handlers_.empty() && now - last_receive_ > options_.attempt_timeout) {
        last_error_ = absl::StrCat(current_address_, ": no answer for ", options_.attempt_timeout.count(), " ms");
        Reconnect(true, /*abandon=*/true);
      }
      ScheduleProgressCheck();
    });
  }

  // The cluster no longer knows our session.
  void SessionLost() {
    if (session_ == 0 || closed_) return;
    spdlog::warn("client {}: session {} expired", options_.client_id, session_);
    // What was answered completes (in order); what was not may or may not
    // have been applied: it fails.
    for (auto& [seq, r] : ready_) r.done(std::move(r.result));
    ready_.clear();
    absl::Status lost = absl::UnauthenticatedError(
        absl::StrCat("session ", session_, " expired before the command completed; it may or may not have been applied"));
    for (auto& [seq, c] : commands_) c.done(lost);
    commands_.clear();
    // The queries stay (a new session serves them); the commands they had to
    // follow are gone.
    std::erase_if(order_, [](const Slot& slot) { return !slot.query; });
    for (auto& [id, q] : queries_) q.after_sequence = 0;
    events_.clear();
    session_ = 0;
    next_sequence_ = 1;
    completed_seq_ = 0;
    received_event_index_ = 0;
    delivered_event_index_ = 0;
    last_completed_index_ = 0;
    if (options_.recovery_strategy == RecoveryStrategy::kClose) {
      FailEverything(absl::UnauthenticatedError("the session expired (recovery strategy CLOSE)"));
      closed_ = true;
      SetState(ClientState::kClosed);
      if (conn_) conn_->Close();
      return;
    }
    SetState(ClientState::kSuspended);
    if (conn_ready_) Register();
  }

  void FailEverything(const absl::Status& why) {
    // In submission order, each with what it has.
    for (const Slot& slot : std::exchange(order_, {})) {
      if (slot.query) {
        auto q = queries_.find(slot.id);
        if (q != queries_.end()) q->second.done(q->second.answer ? *std::move(q->second.answer) : why);
      } else if (auto r = ready_.find(slot.id); r != ready_.end()) {
        r->second.done(std::move(r->second.result));
      } else if (auto c = commands_.find(slot.id); c != commands_.end()) {
        c->second.done(why);
      }
    }
    ready_.clear();
    commands_.clear();
    queries_.clear();
    if (on_registered_) on_registered_->set_value(why);
    on_registered_.reset();
  }

  // ---- commands and queries ----

  void SendCommand(uint64_t seq) {
    auto it = commands_.find(seq);
    if (it == commands_.end()) return;
    uint64_t session = session_;
    // The acknowledgement rides along, so the servers drop cached responses
    // as fast as commands arrive instead of once per keep-alive.
    CommandRequest request{session, seq, it->second.operation, completed_seq_};
    Request(std::move(request), [this, seq, session](const ClientResponseValue& r) {
      if (session != session_) return;
      if (absl::IsUnauthenticated(r.status)) return SessionLost();
      if (Retryable(r)) {
        if (absl::IsAborted(r.status)) SendCommand(seq);
        return;
      }
      auto c = commands_.find(seq);
      if (c == commands_.end()) return;  // answered already
      ReadyResponse ready{absl::InternalError("a command response without a result"), 0, 0,
                          std::move(c->second.done)};
      if (!r.status.ok()) {
        ready.result = r.status;
      } else if (const auto* result = std::get_if<CommandResult>(&r.body)) {
        ready.result = std::string(result->result.view());
        ready.index = result->index;
        ready.event_index = result->event_index;
        NoteIndex(result->index);
      }
      commands_.erase(c);
      ready_.emplace(seq, std::move(ready));
      Sequence();
    });
  }

  QueryRequest QueryFor(const PendingQuery& q) const {
    return QueryRequest{session_, q.after_sequence, last_index_.load(), WireConsistency(q.consistency), q.operation};
  }

  void SendQuery(uint64_t id) {
    auto it = queries_.find(id);
    if (it == queries_.end() || it->second.answer) return;
    if (UseReader(it->second)) {
      it->second.via_reader = true;
      if (reader_ready_) {
        SendOnReader(id);
      } else if (!reader_) {
        ConnectReader();  // sends the reader's queries once connected
      }
      return;
    }
    SendQueryOnMain(id);
  }

  void CompleteQuery(uint64_t id, const ClientResponseValue& r) {
    auto it = queries_.find(id);
    if (it == queries_.end() || it->second.answer) return;
    PendingQuery& q = it->second;
    if (!r.status.ok()) {
      q.answer = r.status;
    } else if (const auto* result = std::get_if<QueryResult>(&r.body)) {
      NoteIndex(result->index);
      q.answer = std::string(result->result.view());
    } else {
      q.answer = absl::InternalError("a query response without a result");
    }
    Sequence();
  }

  // ---- the read connection (kAny, kFollowers): SEQUENTIAL queries ----

  bool UseReader(const PendingQuery& q) const {
    return options_.connection_strategy != ConnectionStrategy::kLeader && q.consistency == Consistency::kSequential &&
           Clock::now() >= reader_backoff_until_;
  }

  void ConnectReader() {
    std::vector<std::string> candidates;
    std::string leader_address = members_.contains(leader_) ? members_[leader_] : current_address_;
    for (const auto& a : servers_) {
      if (options_.connection_strategy == ConnectionStrategy::kFollowers && a == leader_address) continue;
      candidates.push_back(a);
    }
    if (candidates.empty()) candidates = servers_;
    std::string address = candidates[reader_next_++ % candidates.size()];
    reader_ = pool_->NewChannel(options_.cluster_id);
    client::Channel* conn = reader_.get();
    conn->SetResponseHandler([this](ClientResponseValue r) {
      auto it = reader_handlers_.find(r.request_id);
      if (it == reader_handlers_.end()) return;
      uint64_t id = it->second;
      reader_handlers_.erase(it);
      if (absl::IsUnavailable(r.status) || absl::IsAborted(r.status)) {
        SendQueryOnMain(id);
        return;
      }
      CompleteQuery(id, r);
    });
    conn->SetClosedHandler([this, conn](absl::Status) {
      if (conn == reader_.get()) ReaderFailed();
    });
    conn->Connect(address, [this, conn](absl::Status st) {
      if (conn != reader_.get()) return;
      if (!st.ok()) return ReaderFailed();
      reader_ready_ = true;
      for (auto& [id, q] : queries_) {
        if (!q.answer && UseReader(q)) SendOnReader(id);
      }
    });
  }

  void SendOnReader(uint64_t id) {
    uint64_t request = next_request_id_++;
    reader_handlers_[request] = id;
    if (!reader_->Send(ClientRequestValue{request, QueryFor(queries_.at(id))}).ok()) ReaderFailed();
  }

  void SendQueryOnMain(uint64_t id) {
    auto it = queries_.find(id);
    if (it == queries_.end() || it->second.answer || !conn_ready_) return;  // OnConnected resends it
    it->second.via_reader = false;
    Request(QueryFor(it->second), [this, id](const ClientResponseValue& r) {
      if (Retryable(r)) {
        if (absl::IsAborted(r.status)) SendQueryOnMain(id);
        return;
      }
      CompleteQuery(id, r);
    });
  }

  // The read server failed: its queries go to the session's server, and
  // another read server is tried after a pause.
  void ReaderFailed() {
    if (reader_) reader_->Close();
    reader_.reset();
    reader_ready_ = false;
    reader_backoff_until_ = Clock::now() + options_.attempt_timeout / 2;
    reader_handlers_.clear();
    for (auto& [id, q] : queries_) {
      if (q.via_reader && !q.answer) SendQueryOnMain(id);
    }
  }

  void NoteIndex(Index index) {
    if (index > last_index_.load()) last_index_ = index;
  }

  // ---- events ----

  void OnEvents(PublishEventsValue batch) {
    last_receive_ = Clock::now();
    if (batch.session != session_ || batch.event_index <= received_event_index_) return;  // old or duplicate
    if (batch.previous_index != received_event_index_) {
      // A gap: a batch was lost. Ask for everything after what we have.
      if (!resend_in_flight_) Subscribe();
      return;
    }
    received_event_index_ = batch.event_index;
    events_.push_back(std::move(batch));
    Sequence();
  }

  void DeliverFrontEvents() {
    PublishEventsValue batch = std::move(events_.front());
    events_.pop_front();
    delivered_event_index_ = batch.event_index;
    for (const auto& e : batch.events) {
      auto h = event_handlers_.find(e.name);
      if (h == event_handlers_.end()) continue;
      try {
        h->second(e.payload);
      } catch (const std::exception& ex) {
        spdlog::error("client {}: handler for event '{}' threw: {}", options_.client_id, e.name, ex.what());
      }
    }
  }

  // Completes what is at the front of order_ once it may (commands and
  // queries in submission order), and delivers the event batches that may
  // go before what is next.
  void Sequence() {
    for (;;) {
      if (!order_.empty() && order_.front().query) {
        auto q = queries_.find(order_.front().id);
        if (q == queries_.end() || q->second.answer) {
          order_.pop_front();
          if (q != queries_.end()) {
            ResultCallback done = std::move(q->second.done);
            absl::StatusOr<std::string> answer = *std::move(q->second.answer);
            queries_.erase(q);
            done(std::move(answer));
          }
          continue;
        }
      }
      auto it = order_.empty() || order_.front().query ? ready_.end() : ready_.find(completed_seq_ + 1);
      if (it != ready_.end()) {
        ReadyResponse& r = it->second;
        if (r.result.ok() && r.event_index > delivered_event_index_) {
          if (!events_.empty() && events_.front().event_index <= r.event_index) {
            DeliverFrontEvents();
            continue;
          }
          // The batches it must follow are still on their way (or were lost).
          if (events_.empty() && received_event_index_ < r.event_index && !resend_in_flight_) Subscribe();
          return;
        }
        ResultCallback done = std::move(r.done);
        absl::StatusOr<std::string> result = std::move(r.result);
        last_completed_index_ = std::max(last_completed_index_, r.index);
        ready_.erase(it);
        ++completed_seq_;
        order_.pop_front();
        done(std::move(result));
        continue;
      }
      bool outstanding = completed_seq_ + 1 < next_sequence_;
      if (!events_.empty() && (!outstanding || events_.front().event_index <= last_completed_index_)) {
        DeliverFrontEvents();
        continue;
      }
      return;
    }
  }

  ClientOptions options_;
  std::shared_ptr<ClientRuntime> runtime_;
  boost::asio::io_context& io_;
  std::shared_ptr<client::ConnectionPool> pool_;  // the runtime's, or this client's own
  std::atomic<bool> open_ = false;
  boost::asio::steady_timer keep_alive_timer_;
  boost::asio::steady_timer progress_timer_;
  boost::asio::steady_timer reconnect_timer_;

  // Where to go.
  std::vector<std::string> servers_;
  std::map<NodeId, std::string> members_;
  NodeId leader_ = 0;
  size_t next_server_ = 0;
  size_t failures_in_a_row_ = 0;
  std::string current_address_;
  std::string last_error_;
  bool reconnect_posted_ = false;

  std::unique_ptr<client::Channel> conn_;
  bool conn_ready_ = false;
  uint64_t next_request_id_ = 1;
  std::map<uint64_t, ResponseFn> handlers_;  // by request id, on conn_
  Clock::time_point last_receive_{};

  // Session.
  uint64_t session_ = 0;
  std::atomic<uint64_t> public_session_ = 0;
  std::shared_ptr<std::promise<absl::Status>> on_registered_;
  bool keep_alive_in_flight_ = false;
  Clock::time_point last_keep_alive_ok_{};
  bool closed_ = false;
  std::atomic<ClientState> state_ = ClientState::kConnected;
  StateListener state_listener_;

  // Commands and queries.
  uint64_t next_sequence_ = 1;
  std::map<uint64_t, PendingCommand> commands_;  // sent, not answered
  std::map<uint64_t, ReadyResponse> ready_;      // answered, not completed
  uint64_t completed_seq_ = 0;
  Index last_completed_index_ = 0;
  uint64_t next_query_ = 1;
  std::map<uint64_t, PendingQuery> queries_;  // submitted, not completed
  std::deque<Slot> order_;  // submitted, not completed: the order they complete in
  std::atomic<uint64_t> last_index_ = 0;

  // The read connection.
  std::unique_ptr<client::Channel> reader_;
  bool reader_ready_ = false;
  std::map<uint64_t, uint64_t> reader_handlers_;  // request id -> query id
  size_t reader_next_ = 0;
  Clock::time_point reader_backoff_until_{};

  // Events.
  std::map<std::string, EventHandler> event_handlers_;
  std::deque<PublishEventsValue> events_;  // received in order, not delivered
  Index received_event_index_ = 0;
  Index delivered_event_index_ = 0;
  bool resend_in_flight_ = false;
};

// ---- Builder ----

Client::Builder& Client::Builder::WithServers(std::vector<std::string> servers) {
  options_.servers = std::move(servers);
  return *this;
}
Client::Builder& Client::Builder::WithClusterId(std::string cluster_id) {
  options_.cluster_id = std::move(cluster_id);
  return *this;
}
Client::Builder& Client::Builder::WithClientId(std::string client_id) {
  options_.client_id = std::move(client_id);
  return *this;
}
Client::Builder& Client::Builder::WithConnectionStrategy(ConnectionStrategy strategy) {
  options_.connection_strategy = strategy;
  return *this;
}
Client::Builder& Client::Builder::WithRecoveryStrategy(RecoveryStrategy strategy) {
  options_.recovery_strategy = strategy;
  return *this;
}
Client::Builder& Client::Builder::WithSessionTimeout(std::chrono::milliseconds timeout) {
  options_.session_timeout = timeout;
  return *this;
}
Client::Builder& Client::Builder::WithKeepAliveInterval(std::chrono::milliseconds interval) {
  options_.keep_alive_interval = interval;
  return *this;
}
Client::Builder& Client::Builder::WithConnectTimeout(std::chrono::milliseconds timeout) {
  options_.connect_timeout = timeout;
  return *this;
}
Client::Builder& Client::Builder::WithAttemptTimeout(std::chrono::milliseconds timeout) {
  options_.attempt_timeout = timeout;
  return *this;
}
Client::Builder& Client::Builder::WithQueryTimeout(std::chrono::milliseconds timeout) {
  options_.query_timeout = timeout;
  return *this;
}
Client::Builder& Client::Builder::WithRuntime(std::shared_ptr<ClientRuntime> runtime) {
  options_.runtime = std::move(runtime);
  return *this;
}
Client::Builder& Client::Builder::WithSharedConnections(bool shared) {
  options_.share_connections = shared;
  return *this;
}
absl::StatusOr<std::unique_ptr<Client>> Client::Builder::Connect() { return Client::Connect(options_); }

// ---- Client ----

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  auto impl = std::make_shared<Impl>(std::move(options));
  if (absl::Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() { (void)impl_->Close(); }

void Client::SubmitCommand(std::string operation, ResultCallback done) {
  impl_->SubmitCommand(std::move(operation), std::move(done));
}
std::future<absl::StatusOr<std::string>> Client::SubmitCommand(std::string operation) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
  auto future = promise->get_future();
  impl_->SubmitCommand(std::move(operation),
                       [promise](absl::StatusOr<std::string> r) { promise->set_value(std::move(r)); });
  return future;
}
void Client::SubmitQuery(std::string operation, Consistency consistency, ResultCallback done) {
  impl_->SubmitQuery(std::move(operation), consistency, std::move(done));
}
std::future<absl::StatusOr<std::string>> Client::SubmitQuery(std::string operation, Consistency consistency) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::string>>>();
  auto future = promise->get_future();
  impl_->SubmitQuery(std::move(operation), consistency,
                     [promise](absl::StatusOr<std::string> r) { promise->set_value(std::move(r)); });
  return future;
}
void Client::OnEventBytes(std::string name, EventHandler handler) {
  impl_->OnEventBytes(std::move(name), std::move(handler));
}
void Client::OnStateChange(StateListener listener) { impl_->OnStateChange(std::move(listener)); }
ClientState Client::state() const { return impl_->state(); }
uint64_t Client::session() const { return impl_->session(); }
uint64_t Client::last_index() const { return impl_->last_index(); }
absl::Status Client::Close() { return impl_->Close(); }
void Client::LogUndecodableEvent(const std::string& name, const absl::Status& status) {
  spdlog::error("client: event '{}' does not decode: {}", name, std::string(status.message()));
}

}  // namespace caracal

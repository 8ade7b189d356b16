#include "framework/client/client_connection.h"

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "framework/transport/tcp_transport.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "spdlog/spdlog.h"

namespace caracal::client {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace internal {
namespace {

// `status` with `prefix` before its message, same code.
absl::Status Prefixed(const std::string& prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

std::string FrameKind(const serialization::FrameValue& frame) {
  static constexpr const char* kNames[] = {"a Hello", "a raft message", "a client request", "a client response",
                                           "an event batch"};
  static_assert(std::size(kNames) == std::variant_size_v<serialization::FrameValue>);
  return kNames[frame.index()];
}

}  // namespace

// Everything a ClientConnection owns. Shared so that pending asynchronous
// operations can keep it alive after the ClientConnection is gone; they check
// the state first and then do nothing.
//
// Invariants: the socket is open only in kConnecting and kConnected. In
// kClosed every handler and the connect completion are released. pending_
// holds the Hello (until the first write) and pending_count_ whole request
// frames; at most one write is in flight and its bytes are in writing_.
class ClientConnectionCore : public std::enable_shared_from_this<ClientConnectionCore> {
 public:
  enum class State { kIdle, kConnecting, kConnected, kClosed };

  ClientConnectionCore(asio::io_context& io, std::string cluster_id, ClientConnectionOptions options)
      : io_(io),
        cluster_id_(std::move(cluster_id)),
        options_(options),
        socket_(io),
        resolver_(io),
        timer_(io),
        buffer_(options.read_buffer_bytes) {}

  void Connect(const std::string& address, ClientConnection::ConnectCallback done,
               std::shared_ptr<std::promise<absl::Status>> promise);
  absl::Status Send(const serialization::ClientRequestValue& request);
  void Close();

  template <typename Handler>
  static std::shared_ptr<const Handler> Hold(Handler handler) {
    return handler ? std::make_shared<const Handler>(std::move(handler)) : nullptr;
  }
  void SetResponseHandler(ClientConnection::ResponseHandler h) {
    if (state_ != State::kClosed) response_handler_ = Hold(std::move(h));
  }
  void SetEventsHandler(ClientConnection::EventsHandler h) {
    if (state_ != State::kClosed) events_handler_ = Hold(std::move(h));
  }
  void SetClosedHandler(ClientConnection::ClosedHandler h) {
    if (state_ != State::kClosed) closed_handler_ = Hold(std::move(h));
  }

  State state() const { return state_; }
  const std::string& address() const { return address_; }

 private:
  void StartConnect(const tcp::endpoint& endpoint);
  void OnConnected(error_code ec);
  // Completes a Connect that did not succeed.
  void FailConnect(absl::Status status);
  // Completes the pending Connect (once).
  void CompleteConnect(absl::Status status);
  void StartWrite();
  void OnWritten(error_code ec, size_t bytes);
  void Read();
  void OnRead(error_code ec, size_t bytes);
  // False if the connection ended while handling it.
  bool HandleFrame(const Bytes& body);
  // An established connection ended: tells the closed handler.
  void Lost(absl::Status reason);
  // Closes the socket and releases queue and handlers; state becomes kClosed.
  void Shutdown();

  asio::io_context& io_;
  const std::string cluster_id_;
  const ClientConnectionOptions options_;
  State state_ = State::kIdle;
  std::string address_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  ClientConnection::ConnectCallback connect_done_;
  std::shared_ptr<std::promise<absl::Status>> connect_promise_;
  std::shared_ptr<const ClientConnection::ResponseHandler> response_handler_;
  std::shared_ptr<const ClientConnection::EventsHandler> events_handler_;
  std::shared_ptr<const ClientConnection::ClosedHandler> closed_handler_;
  std::string pending_;  // encoded frames not yet handed to a write
  size_t pending_count_ = 0;
  std::string writing_;
  bool write_in_flight_ = false;
  std::vector<char> buffer_;  // reused by every read
  serialization::FrameSplitter splitter_;
};

void ClientConnectionCore::Connect(const std::string& address, ClientConnection::ConnectCallback done,
                                   std::shared_ptr<std::promise<absl::Status>> promise) {
  if (state_ != State::kIdle) {
    auto status = absl::FailedPreconditionError(
        absl::StrCat("Connect to ", address, ": this connection was already used (to '", address_,
                     "'); a ClientConnection connects once"));
    if (promise) return promise->set_value(status);
    if (state_ == State::kClosed || !done) return;  // no callback after Close
    asio::post(io_, [self = shared_from_this(), done = std::move(done), status] {
      if (self->state_ != State::kClosed) done(status);
    });
    return;
  }
  address_ = address;
  connect_done_ = std::move(done);
  connect_promise_ = std::move(promise);
  state_ = State::kConnecting;
  auto parsed = transport::ParseHostPort(address);
  if (!parsed.ok()) {
    // Reported from io, never from inside Connect.
    asio::post(io_, [self = shared_from_this(), status = parsed.status()] {
      if (self->state_ == State::kConnecting) self->FailConnect(status);
    });
    return;
  }
  serialization::AppendHelloFrame({0, cluster_id_}, &pending_);
  timer_.expires_after(options_.connect_timeout);
  timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->state_ != State::kConnecting) return;
    self->FailConnect(absl::DeadlineExceededError(absl::StrCat("connect to ", self->address_, " timed out after ",
                                                               self->options_.connect_timeout.count(), " ms")));
  });
  error_code ec;
  auto ip = asio::ip::make_address(parsed->host, ec);
  if (!ec) return StartConnect(tcp::endpoint(ip, parsed->port));
  resolver_.async_resolve(parsed->host, std::to_string(parsed->port),
                          [self = shared_from_this(), host = parsed->host](error_code ec,
                                                                           tcp::resolver::results_type results) {
                            if (self->state_ != State::kConnecting) return;
                            if (ec || results.empty()) {
                              return self->FailConnect(absl::UnavailableError(
                                  absl::StrCat("connect to ", self->address_, ": cannot resolve '", host, "': ",
                                               ec ? ec.message() : std::string("no addresses"))));
                            }
                            self->StartConnect(*results.begin());
                          });
}

void ClientConnectionCore::StartConnect(const tcp::endpoint& endpoint) {
  socket_.async_connect(endpoint, [self = shared_from_this()](error_code ec) { self->OnConnected(ec); });
}

void ClientConnectionCore::OnConnected(error_code ec) {
  if (state_ != State::kConnecting) return;  // timed out or closed meanwhile
  if (ec) {
    const char* what = ec == asio::error::connection_refused ? "connection refused" : nullptr;
    return FailConnect(absl::UnavailableError(
        absl::StrCat("connect to ", address_, ": ", what ? std::string(what) : ec.message())));
  }
  timer_.cancel();
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  state_ = State::kConnected;
  spdlog::debug("client: connected to {}", address_);
  StartWrite();  // the Hello and whatever was sent while connecting
  Read();
  CompleteConnect(absl::OkStatus());
}

void ClientConnectionCore::FailConnect(absl::Status status) {
  spdlog::debug("client: {}", std::string(status.message()));
  auto done = std::move(connect_done_);
  auto promise = std::move(connect_promise_);
  Shutdown();
  if (promise) promise->set_value(status);
  if (done) done(status);
}

void ClientConnectionCore::CompleteConnect(absl::Status status) {
  auto done = std::move(connect_done_);
  connect_done_ = nullptr;
  if (auto promise = std::move(connect_promise_)) promise->set_value(status);
  if (done) done(status);
}

absl::Status ClientConnectionCore::Send(const serialization::ClientRequestValue& request) {
  switch (state_) {
    case State::kIdle:
      return absl::FailedPreconditionError("not connected: call Connect first");
    case State::kClosed:
      return absl::FailedPreconditionError(absl::StrCat("the connection to '", address_, "' is closed"));
    case State::kConnecting:
    case State::kConnected:
      break;
  }
  const size_t before = pending_.size();
  serialization::AppendClientRequestFrame(request, &pending_);
  const size_t frame = pending_.size() - before;
  if (frame > serialization::kMaxFrameBytes + serialization::kFrameHeaderBytes) {
    pending_.resize(before);
    return absl::InvalidArgumentError(absl::StrCat(serialization::ClientRequestKindName(request), " request ",
                                                   request.request_id, " encodes to ", frame, " bytes, over the ",
                                                   serialization::kMaxFrameBytes, "-byte frame limit"));
  }
  const size_t queued = before + writing_.size();
  if (queued > 0 && queued + frame > options_.max_queue_bytes) {
    pending_.resize(before);
    return absl::ResourceExhaustedError(absl::StrCat("send buffer to ", address_, " is full (", queued,
                                                     " bytes queued, limit ", options_.max_queue_bytes,
                                                     "): the server is not reading"));
  }
  ++pending_count_;
  if (state_ == State::kConnected && !write_in_flight_) StartWrite();
  return absl::OkStatus();
}

void ClientConnectionCore::StartWrite() {
  if (pending_.empty()) return;
  writing_.swap(pending_);
  pending_.clear();
  pending_count_ = 0;
  write_in_flight_ = true;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this()](error_code ec, size_t bytes) { self->OnWritten(ec, bytes); });
}

void ClientConnectionCore::OnWritten(error_code ec, size_t /*bytes*/) {
  write_in_flight_ = false;
  if (state_ != State::kConnected) return;
  if (ec) return Lost(absl::UnavailableError(absl::StrCat("write to ", address_, " failed: ", ec.message())));
  writing_.clear();
  if (writing_.capacity() > (4u << 20)) std::string().swap(writing_);  // do not pin a burst's memory
  StartWrite();
}

void ClientConnectionCore::Read() {
  socket_.async_read_some(asio::buffer(buffer_),
                          [self = shared_from_this()](error_code ec, size_t bytes) { self->OnRead(ec, bytes); });
}

void ClientConnectionCore::OnRead(error_code ec, size_t bytes) {
  if (state_ != State::kConnected) return;
  if (ec == asio::error::eof) {
    return Lost(absl::UnavailableError(absl::StrCat("server ", address_, " closed the connection")));
  }
  if (ec == asio::error::connection_reset) {
    return Lost(absl::UnavailableError(absl::StrCat("connection to ", address_, " reset by the server")));
  }
  if (ec) return Lost(absl::UnavailableError(absl::StrCat("connection to ", address_, " failed: ", ec.message())));
  splitter_.Feed(std::string_view(buffer_.data(), bytes));
  while (state_ == State::kConnected) {
    auto body = splitter_.Next();
    if (absl::IsUnavailable(body.status())) break;
    if (!body.ok()) return Lost(Prefixed(absl::StrCat("malformed frame from ", address_, ": "), body.status()));
    if (!HandleFrame(*body)) return;
  }
  if (state_ == State::kConnected) Read();
}

bool ClientConnectionCore::HandleFrame(const Bytes& body) {
  auto frame = serialization::DecodeFrame(body);
  if (!frame.ok()) {
    Lost(Prefixed(absl::StrCat("malformed frame from ", address_, ": "), frame.status()));
    return false;
  }
  if (auto* response = std::get_if<serialization::ClientResponseValue>(&*frame)) {
    if (auto handler = response_handler_) (*handler)(std::move(*response));
  } else if (auto* events = std::get_if<serialization::PublishEventsValue>(&*frame)) {
    if (auto handler = events_handler_) (*handler)(std::move(*events));
  } else {
    Lost(absl::InvalidArgumentError(absl::StrCat("server ", address_, " sent ", FrameKind(*frame),
                                                 "; a server sends a client only responses and event batches")));
    return false;
  }
  return state_ == State::kConnected;
}

void ClientConnectionCore::Lost(absl::Status reason) {
  if (state_ == State::kClosed) return;
  spdlog::info("client: connection to {} ended: {}", address_, std::string(reason.message()));
  auto handler = closed_handler_;
  Shutdown();
  if (handler) (*handler)(std::move(reason));
}

void ClientConnectionCore::Shutdown() {
  state_ = State::kClosed;
  error_code ignored;
  socket_.close(ignored);
  resolver_.cancel();
  timer_.cancel();
  std::string().swap(pending_);
  pending_count_ = 0;
  response_handler_.reset();
  events_handler_.reset();
  closed_handler_.reset();
  connect_done_ = nullptr;
}

void ClientConnectionCore::Close() {
  if (state_ == State::kClosed) return;
  auto promise = std::move(connect_promise_);
  Shutdown();
  if (promise) promise->set_value(absl::CancelledError(absl::StrCat("connect to ", address_, " cancelled by Close")));
}

}  // namespace internal

// ------------------------------------------------------------- ClientConnection

ClientConnection::ClientConnection(boost::asio::io_context& io, std::string cluster_id,
                                   ClientConnectionOptions options)
    : core_(std::make_shared<internal::ClientConnectionCore>(io, std::move(cluster_id), options)) {}

ClientConnection::~ClientConnection() { core_->Close(); }

void ClientConnection::Connect(const std::string& address, ConnectCallback done) {
  core_->Connect(address, std::move(done), nullptr);
}

std::future<absl::Status> ClientConnection::Connect(const std::string& address) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  core_->Connect(address, nullptr, std::move(promise));
  return future;
}

absl::Status ClientConnection::Send(const serialization::ClientRequestValue& request) { return core_->Send(request); }
void ClientConnection::SetResponseHandler(ResponseHandler handler) { core_->SetResponseHandler(std::move(handler)); }
void ClientConnection::SetEventsHandler(EventsHandler handler) { core_->SetEventsHandler(std::move(handler)); }
void ClientConnection::SetClosedHandler(ClosedHandler handler) { core_->SetClosedHandler(std::move(handler)); }
void ClientConnection::Close() { core_->Close(); }
bool ClientConnection::connected() const {
  return core_->state() == internal::ClientConnectionCore::State::kConnected;
}
bool ClientConnection::closed() const { return core_->state() == internal::ClientConnectionCore::State::kClosed; }
const std::string& ClientConnection::address() const { return core_->address(); }

}  // namespace caracal::client

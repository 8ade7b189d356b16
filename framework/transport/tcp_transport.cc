#include "framework/transport/tcp_transport.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "framework/transport/counters.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "spdlog/spdlog.h"

namespace caracal::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

absl::StatusOr<HostPort> ParseHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "' has no port; expected host:port"));
  }
  std::string host = address.substr(0, colon);
  std::string port_text = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("address '", address, "' has no host; expected host:port"));
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535 || port_text.empty() ||
      port_text.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", address, "' has a bad port '", port_text, "'; expected a number in [0, 65535]"));
  }
  return HostPort{std::move(host), static_cast<uint16_t>(port)};
}

namespace internal {
namespace {

std::string Describe(const tcp::socket& socket) {
  error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown address";
  return absl::StrCat(endpoint.address().to_string(), ":", endpoint.port());
}

// The message of a Status, as a std::string (absl::string_view is not
// std::string_view in this build, and fmt knows only the latter).
std::string Reason(const absl::Status& status) { return std::string(status.message()); }

// What a decoded frame is, for logs.
std::string FrameKind(const serialization::FrameValue& frame) {
  if (auto* m = std::get_if<raft::Message>(&frame)) return raft::MessageKindName(*m);
  if (auto* r = std::get_if<serialization::ClientRequestValue>(&frame)) {
    return absl::StrCat("a client ", serialization::ClientRequestKindName(*r), " request");
  }
  static constexpr const char* kNames[] = {"a Hello", "a raft message", "a client request", "a client response",
                                           "an event batch"};
  static_assert(std::size(kNames) == std::variant_size_v<serialization::FrameValue>);
  return kNames[frame.index()];
}

}  // namespace

class OutboundPeer;
class InboundConnection;

// Everything a TcpTransport owns. Shared so that pending asynchronous
// operations can keep it alive after the TcpTransport is gone; they check
// closed() first and then do nothing.
//
// Invariants: after Close(), peers_, inbound_ and clients_ are empty, every
// handler is null and closed_ stays true. inbound_by_node_ maps a node id to
// the one connection in inbound_ that said Hello with that id; clients_ maps
// a client connection id to the connection in inbound_ that was given it.
class TcpTransportCore : public std::enable_shared_from_this<TcpTransportCore> {
 public:
  TcpTransportCore(asio::io_context& io, NodeId self, std::string cluster_id, TcpTransportOptions options)
      : io_(io),
        self_(self),
        cluster_id_(std::move(cluster_id)),
        options_(options),
        accept_retry_timer_(io) {}

  void AddPeers(const absl::flat_hash_map<NodeId, std::string>& peers);
  absl::Status Listen(const std::string& address);
  uint16_t port() const { return port_; }
  void SetPeerAddress(NodeId id, std::string address);
  void Close();
  void Send(raft::Message message);
  void SetHandler(Transport::MessageHandler handler) {
    if (closed_) return;
    handler_ = handler ? std::make_shared<const Transport::MessageHandler>(std::move(handler)) : nullptr;
  }
  void SetClientHandler(TcpTransport::ClientRequestHandler handler) {
    if (closed_) return;
    client_handler_ =
        handler ? std::make_shared<const TcpTransport::ClientRequestHandler>(std::move(handler)) : nullptr;
  }
  void SetClientClosedHandler(TcpTransport::ClientClosedHandler handler) {
    if (closed_) return;
    client_closed_handler_ =
        handler ? std::make_shared<const TcpTransport::ClientClosedHandler>(std::move(handler)) : nullptr;
  }
  absl::Status SendToClient(ClientConnectionId id, const serialization::ClientResponseValue& response);
  absl::Status PushToClient(ClientConnectionId id, const serialization::PublishEventsValue& events);
  void CloseClient(ClientConnectionId id, const std::string& reason);
  size_t client_count() const { return clients_.size(); }

  // For the connections.
  asio::io_context& io() { return io_; }
  NodeId self() const { return self_; }
  const std::string& cluster_id() const { return cluster_id_; }
  const TcpTransportOptions& options() const { return options_; }
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }
  bool closed() const { return closed_; }
  absl::BitGen& rng() { return rng_; }
  void Deliver(raft::Message message);
  // `connection` said Hello as `node`; an older connection of `node` is closed.
  void BindInbound(InboundConnection* connection, NodeId node);
  void ForgetInbound(InboundConnection* connection, NodeId node);
  // `connection` said a client Hello: returns its new id.
  ClientConnectionId BindClient(InboundConnection* connection);
  // Client `id` closed; tells the closed handler (posted) unless we are closed.
  void ForgetClient(ClientConnectionId id, absl::Status reason);
  void DeliverClient(ClientConnectionId id, serialization::ClientRequestValue request);

 private:
  void StartAccept();
  void OnAccept(error_code ec, tcp::socket socket);
  // The open client connection `id`, or null.
  std::shared_ptr<InboundConnection> FindClient(ClientConnectionId id);

  asio::io_context& io_;
  const NodeId self_;
  const std::string cluster_id_;
  const TcpTransportOptions options_;
  Counters counters_;
  absl::BitGen rng_;
  bool closed_ = false;
  // Copied before each call, so a handler may replace itself or Close().
  std::shared_ptr<const Transport::MessageHandler> handler_;
  std::optional<tcp::acceptor> acceptor_;
  asio::steady_timer accept_retry_timer_;
  uint16_t port_ = 0;
  absl::flat_hash_map<NodeId, std::shared_ptr<OutboundPeer>> peers_;
  absl::flat_hash_map<InboundConnection*, std::shared_ptr<InboundConnection>> inbound_;
  absl::flat_hash_map<NodeId, InboundConnection*> inbound_by_node_;
  std::shared_ptr<const TcpTransport::ClientRequestHandler> client_handler_;
  std::shared_ptr<const TcpTransport::ClientClosedHandler> client_closed_handler_;
  // Every connection in inbound_ that said a client Hello, by its id.
  absl::flat_hash_map<ClientConnectionId, InboundConnection*> clients_;
  ClientConnectionId next_client_id_ = 1;
};

// The sending side towards one peer: its queue, its connection (at most one
// at a time) and its back-off.
//
// States: kIdle (no connection; nothing queued, or the address is unknown),
// kConnecting (resolving/connecting conn_), kConnected (conn_ usable; the
// Hello goes out with the first write), kBackoff (waiting on retry_timer_
// before the next attempt; only while frames are queued).
// Invariants: conn_ is non-null exactly in kConnecting and kConnected;
// pending_ holds pending_count_ whole frames; at most one write is in flight
// per connection, and its frames are in conn_->writing.
class OutboundPeer : public std::enable_shared_from_this<OutboundPeer> {
 public:
  OutboundPeer(std::shared_ptr<TcpTransportCore> core, NodeId id)
      : core_(std::move(core)), id_(id), retry_timer_(core_->io()), backoff_(core_->options().initial_backoff) {}

  void Enqueue(const raft::Message& message);
  void SetAddress(std::string address);
  void Close();

 private:
  enum class State { kIdle, kConnecting, kConnected, kBackoff };

  // One connection attempt and, once connected, the connection. Handlers
  // hold it alive; `closed` tells them it was abandoned.
  struct Connection {
    explicit Connection(asio::io_context& io) : socket(io), resolver(io) {}
    tcp::socket socket;
    tcp::resolver resolver;
    bool closed = false;
    bool hello_sent = false;
    bool write_in_flight = false;
    std::string hello;
    std::string writing;
    size_t writing_count = 0;
    char probe = 0;
  };
  using ConnectionPtr = std::shared_ptr<Connection>;

  size_t QueuedBytes() const { return pending_.size() + (conn_ ? conn_->writing.size() : 0); }
  bool Current(const ConnectionPtr& conn) const { return !closed_ && conn == conn_ && !conn->closed; }
  void Connect();
  void StartConnect(const ConnectionPtr& conn, const tcp::endpoint& endpoint);
  void OnConnected(const ConnectionPtr& conn, error_code ec);
  void StartWrite();
  void OnWritten(const ConnectionPtr& conn, error_code ec, size_t bytes);
  void StartProbe();
  void OnProbe(const ConnectionPtr& conn, error_code ec);
  void Fail(const std::string& reason);
  void DropConnection();
  void ScheduleRetry();
  void Drop(size_t messages) { Counters::Add(core_->counters().messages_dropped, messages); }

  const std::shared_ptr<TcpTransportCore> core_;
  const NodeId id_;
  std::optional<HostPort> address_;  // nullopt: not known yet
  std::string address_text_;
  State state_ = State::kIdle;
  bool closed_ = false;
  bool warned_unreachable_ = false;
  ConnectionPtr conn_;
  std::string pending_;  // encoded frames not yet handed to a write
  size_t pending_count_ = 0;
  asio::steady_timer retry_timer_;
  uint64_t retry_generation_ = 0;
  std::chrono::milliseconds backoff_;
  bool was_connected_ = false;  // for logging: the first failure after a connection is news
};

// One accepted connection. It starts in kAwaitingHello; a good Hello from a
// server makes it kServer (raft frames in, nothing out), one with node id 0
// makes it kClient (client requests in; responses and events out through a
// bounded queue). HandleFrame is the one place that dispatches on the kind.
// Invariants: after Close(), closed_ is true, the socket is closed and the
// core no longer lists this connection. Only a kClient connection ever
// queues or writes; pending_ holds pending_count_ whole frames, at most one
// write is in flight and its frames are in writing_.
class InboundConnection : public std::enable_shared_from_this<InboundConnection> {
 public:
  InboundConnection(std::shared_ptr<TcpTransportCore> core, tcp::socket socket)
      : core_(std::move(core)),
        socket_(std::move(socket)),
        remote_(Describe(socket_)),
        hello_timer_(core_->io()),
        splitter_(core_->options().read_buffer_bytes) {}

  void Start();
  // `reason` goes to the client closed handler (client connections only).
  void Close(absl::Status reason);
  // Closes with an error log naming the peer and the reason: a protocol
  // violation (kInvalidArgument), or the decoder's status for a bad frame.
  void Reject(const std::string& reason) { Reject(absl::InvalidArgumentError(reason)); }
  void Reject(absl::Status reason);

  // Queues the frame that `append` appends to a string (client connections).
  template <typename Append>
  absl::Status QueueFrame(Append append, const char* what);

 private:
  enum class Kind { kAwaitingHello, kServer, kClient };

  void Read();
  void OnRead(error_code ec, size_t bytes);
  void HandleFrame(const Bytes& body);
  void HandleHello(const serialization::HelloValue& hello);
  void HandleRaft(raft::Message message);
  void StartWrite();
  void OnWritten(error_code ec, size_t bytes);
  std::string Who() const {
    switch (kind_) {
      case Kind::kServer:
        return absl::StrCat(remote_, " (node ", node_, ")");
      case Kind::kClient:
        return absl::StrCat(remote_, " (client connection ", client_id_, ")");
      case Kind::kAwaitingHello:
        break;
    }
    return remote_;
  }

  const std::shared_ptr<TcpTransportCore> core_;
  tcp::socket socket_;
  const std::string remote_;
  asio::steady_timer hello_timer_;
  serialization::FrameSplitter splitter_;  // the socket reads straight into it
  Kind kind_ = Kind::kAwaitingHello;
  NodeId node_ = 0;
  ClientConnectionId client_id_ = 0;
  bool closed_ = false;
  std::string pending_;  // encoded frames not yet handed to a write
  size_t pending_count_ = 0;
  std::string writing_;  // the frames of the write in flight
  size_t writing_count_ = 0;
  bool write_in_flight_ = false;
};

// ---------------------------------------------------------------- OutboundPeer

void OutboundPeer::Enqueue(const raft::Message& message) {
  if (closed_) return Drop(1);
  const size_t limit = core_->options().max_queue_bytes;
  const size_t queued = QueuedBytes();
  if (queued >= limit) {
    spdlog::debug("node {}: send queue to node {} is full ({} bytes); dropping {}", core_->self(), id_, queued,
                  raft::MessageKindName(message));
    return Drop(1);
  }
  const size_t before = pending_.size();
  serialization::AppendRaftFrame(message, &pending_);
  const size_t frame = pending_.size() - before;
  if (frame > serialization::kMaxFrameBytes + serialization::kFrameHeaderBytes) {
    pending_.resize(before);
    spdlog::error("node {}: {} to node {} encodes to {} bytes, over the {}-byte frame limit; dropped", core_->self(),
                  raft::MessageKindName(message), id_, frame, serialization::kMaxFrameBytes);
    return Drop(1);
  }
  if (queued + frame > limit) {
    pending_.resize(before);
    spdlog::debug("node {}: send queue to node {} is full; dropping {} of {} bytes", core_->self(), id_,
                  raft::MessageKindName(message), frame);
    return Drop(1);
  }
  ++pending_count_;
  switch (state_) {
    case State::kIdle:
      if (address_) Connect();
      break;
    case State::kConnected:
      if (!conn_->write_in_flight) StartWrite();
      break;
    case State::kConnecting:
    case State::kBackoff:
      break;  // the queue goes out once connected
  }
}

void OutboundPeer::SetAddress(std::string address) {
  if (closed_ || (address_ && address == address_text_)) return;
  address_.reset();
  address_text_ = address;
  if (!address.empty()) {
    auto parsed = ParseHostPort(address);
    if (parsed.ok()) {
      address_ = *std::move(parsed);
    } else {
      spdlog::error("node {}: ignoring address of node {}: {}", core_->self(), id_, Reason(parsed.status()));
    }
  }
  DropConnection();
  ++retry_generation_;
  retry_timer_.cancel();
  backoff_ = core_->options().initial_backoff;
  if (address_ && pending_count_ > 0) Connect();
}

void OutboundPeer::Close() {
  if (closed_) return;
  DropConnection();
  closed_ = true;
  ++retry_generation_;
  retry_timer_.cancel();
  Drop(pending_count_);
  pending_count_ = 0;
  std::string().swap(pending_);
}

void OutboundPeer::Connect() {
  state_ = State::kConnecting;
  conn_ = std::make_shared<Connection>(core_->io());
  error_code ec;
  auto ip = asio::ip::make_address(address_->host, ec);
  if (!ec) return StartConnect(conn_, tcp::endpoint(ip, address_->port));
  // A host name: resolve it first (asio runs getaddrinfo on its own thread).
  auto self = shared_from_this();
  auto conn = conn_;
  conn->resolver.async_resolve(
      address_->host, std::to_string(address_->port),
      [self, conn](error_code ec, tcp::resolver::results_type results) {
        if (!self->Current(conn)) return;
        if (ec || results.empty()) {
          Counters::Add(self->core_->counters().connect_failures);
          return self->Fail(absl::StrCat("cannot resolve ", self->address_text_, ": ", ec.message()));
        }
        self->StartConnect(conn, *results.begin());
      });
}

void OutboundPeer::StartConnect(const ConnectionPtr& conn, const tcp::endpoint& endpoint) {
  conn->socket.async_connect(endpoint, [self = shared_from_this(), conn](error_code ec) { self->OnConnected(conn, ec); });
}

void OutboundPeer::OnConnected(const ConnectionPtr& conn, error_code ec) {
  if (!Current(conn)) return;
  if (ec) {
    Counters::Add(core_->counters().connect_failures);
    return Fail(absl::StrCat("cannot connect to ", address_text_, ": ", ec.message()));
  }
  error_code ignored;
  conn->socket.set_option(tcp::no_delay(true), ignored);
  Counters::Add(core_->counters().connects);
  spdlog::debug("node {}: connected to node {} at {}", core_->self(), id_, address_text_);
  state_ = State::kConnected;
  backoff_ = core_->options().initial_backoff;
  was_connected_ = true;
  warned_unreachable_ = false;
  serialization::AppendHelloFrame({core_->self(), core_->cluster_id()}, &conn->hello);
  StartProbe();
  StartWrite();
}

void OutboundPeer::StartWrite() {
  Connection& c = *conn_;
  c.writing.swap(pending_);  // pending_ keeps the old buffer's capacity for reuse
  pending_.clear();
  c.writing_count = pending_count_;
  pending_count_ = 0;
  // The Hello (once), then the frames; an unused slot stays empty. (An array,
  // not a vector: no allocation per write.)
  std::array<asio::const_buffer, 2> buffers;
  size_t count = 0;
  if (!c.hello_sent) buffers[count++] = asio::buffer(c.hello);
  if (!c.writing.empty()) buffers[count++] = asio::buffer(c.writing);
  if (count == 0) return;
  c.write_in_flight = true;
  asio::async_write(c.socket, buffers, [self = shared_from_this(), conn = conn_](error_code ec, size_t bytes) {
    self->OnWritten(conn, ec, bytes);
  });
}

void OutboundPeer::OnWritten(const ConnectionPtr& conn, error_code ec, size_t bytes) {
  conn->write_in_flight = false;
  if (!Current(conn)) return;  // DropConnection already counted its frames as dropped
  Counters::Add(core_->counters().bytes_sent, bytes);
  if (ec) return Fail(absl::StrCat("write to ", address_text_, " failed: ", ec.message()));
  conn->hello_sent = true;
  Counters::Add(core_->counters().messages_sent, conn->writing_count);
  conn->writing_count = 0;
  conn->writing.clear();
  if (conn->writing.capacity() > (4u << 20)) std::string().swap(conn->writing);  // do not pin a burst's memory
  if (pending_count_ > 0) StartWrite();
}

// The peer never sends on this connection; a read completes only when the
// connection ends (or the peer misbehaves), which tells us promptly that the
// peer went away instead of at the next write.
void OutboundPeer::StartProbe() {
  conn_->socket.async_read_some(asio::buffer(&conn_->probe, 1),
                                [self = shared_from_this(), conn = conn_](error_code ec, size_t) {
                                  self->OnProbe(conn, ec);
                                });
}

void OutboundPeer::OnProbe(const ConnectionPtr& conn, error_code ec) {
  if (!Current(conn)) return;
  if (ec == asio::error::eof) return Fail(absl::StrCat("node ", id_, " at ", address_text_, " closed the connection"));
  if (ec) return Fail(absl::StrCat("connection to ", address_text_, " failed: ", ec.message()));
  Fail(absl::StrCat("node ", id_, " at ", address_text_, " sent data on an outbound raft connection"));
}

void OutboundPeer::Fail(const std::string& reason) {
  if (was_connected_) {
    spdlog::warn("node {}: connection to node {} lost: {}", core_->self(), id_, reason);
    was_connected_ = false;
  } else if (!warned_unreachable_) {
    // Once per outage, so an operator sees a peer that never came up.
    spdlog::warn("node {}: cannot reach node {} yet: {} (retrying with backoff)", core_->self(), id_, reason);
    warned_unreachable_ = true;
  } else {
    spdlog::debug("node {}: node {}: {}", core_->self(), id_, reason);
  }
  DropConnection();
  if (pending_count_ > 0) ScheduleRetry();
}

void OutboundPeer::DropConnection() {
  if (conn_) {
    conn_->closed = true;
    error_code ignored;
    conn_->resolver.cancel();
    conn_->socket.close(ignored);
    if (conn_->write_in_flight) Drop(conn_->writing_count);
    conn_.reset();
  }
  state_ = State::kIdle;
}

void OutboundPeer::ScheduleRetry() {
  state_ = State::kBackoff;
  const int64_t max_ms = std::max<int64_t>(1, backoff_.count());
  const auto delay = std::chrono::milliseconds(absl::Uniform<int64_t>(core_->rng(), max_ms / 2, max_ms + 1));
  backoff_ = std::min(backoff_ * 2, core_->options().max_backoff);
  const uint64_t generation = ++retry_generation_;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this(), generation](error_code ec) {
    if (ec || self->closed_ || generation != self->retry_generation_ || self->state_ != State::kBackoff) return;
    if (self->address_) self->Connect();
  });
}

// ----------------------------------------------------------- InboundConnection

void InboundConnection::Start() {
  hello_timer_.expires_after(core_->options().hello_timeout);
  hello_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->closed_ || self->kind_ != Kind::kAwaitingHello) return;
    self->Reject(absl::StrCat("no Hello within ", self->core_->options().hello_timeout.count(), " ms"));
  });
  Read();
}

void InboundConnection::Close(absl::Status reason) {
  if (closed_) return;
  auto self = shared_from_this();  // the core's map may hold the last reference
  closed_ = true;
  error_code ignored;
  socket_.close(ignored);
  hello_timer_.cancel();
  std::string().swap(pending_);
  pending_count_ = 0;
  core_->ForgetInbound(this, kind_ == Kind::kServer ? node_ : 0);
  if (kind_ == Kind::kClient) core_->ForgetClient(client_id_, std::move(reason));
}

void InboundConnection::Reject(absl::Status reason) {
  spdlog::error("node {}: closing connection from {}: {}", core_->self(), Who(), Reason(reason));
  Counters::Add(core_->counters().rejected_connections);
  Close(std::move(reason));
}

template <typename Append>
absl::Status InboundConnection::QueueFrame(Append append, const char* what) {
  if (closed_) return absl::NotFoundError(absl::StrCat("client connection ", client_id_, " is closed"));
  const size_t before = pending_.size();
  append(&pending_);
  const size_t frame = pending_.size() - before;
  if (frame > serialization::kMaxFrameBytes + serialization::kFrameHeaderBytes) {
    pending_.resize(before);
    auto status = absl::InvalidArgumentError(absl::StrCat(what, " for client connection ", client_id_,
                                                          " encodes to ", frame, " bytes, over the ",
                                                          serialization::kMaxFrameBytes, "-byte frame limit"));
    spdlog::error("node {}: {}; not sent", core_->self(), Reason(status));
    return status;
  }
  const size_t queued = before + writing_.size();
  const size_t limit = core_->options().max_client_queue_bytes;
  if (queued > 0 && queued + frame > limit) {
    pending_.resize(before);
    Counters::Add(core_->counters().client_queue_overflows);
    auto status = absl::ResourceExhaustedError(
        absl::StrCat("outbound queue of client connection ", client_id_, " is full (", queued, " bytes queued, ",
                     frame, " more, limit ", limit, "): the client is not reading"));
    spdlog::warn("node {}: closing connection from {}: {}", core_->self(), Who(), Reason(status));
    Close(status);
    return status;
  }
  ++pending_count_;
  if (!write_in_flight_) StartWrite();
  return absl::OkStatus();
}

void InboundConnection::StartWrite() {
  writing_.swap(pending_);  // pending_ keeps the old buffer's capacity for reuse
  pending_.clear();
  writing_count_ = pending_count_;
  pending_count_ = 0;
  write_in_flight_ = true;
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](error_code ec, size_t bytes) {
    self->OnWritten(ec, bytes);
  });
}

void InboundConnection::OnWritten(error_code ec, size_t bytes) {
  write_in_flight_ = false;
  if (closed_ || core_->closed()) return;
  Counters::Add(core_->counters().bytes_sent, bytes);
  if (ec) {
    spdlog::info("node {}: write to {} failed: {}", core_->self(), Who(), ec.message());
    return Close(absl::UnavailableError(absl::StrCat("write to the client failed: ", ec.message())));
  }
  Counters::Add(core_->counters().client_frames_sent, writing_count_);
  writing_count_ = 0;
  writing_.clear();
  if (writing_.capacity() > (4u << 20)) std::string().swap(writing_);  // do not pin a burst's memory
  if (pending_count_ > 0) StartWrite();
}

void InboundConnection::Read() {
  // The splitter is not touched again until the read completes.
  serialization::FrameSplitter::Space space = splitter_.WritableSpace();
  socket_.async_read_some(asio::buffer(space.data, space.size),
                          [self = shared_from_this()](error_code ec, size_t bytes) { self->OnRead(ec, bytes); });
}

void InboundConnection::OnRead(error_code ec, size_t bytes) {
  if (closed_ || core_->closed()) return;
  if (ec) {
    if (ec == asio::error::eof) {
      spdlog::debug("node {}: {} closed its connection", core_->self(), Who());
      return Close(absl::UnavailableError("the client closed the connection"));
    }
    spdlog::info("node {}: connection from {} failed: {}", core_->self(), Who(), ec.message());
    return Close(absl::UnavailableError(absl::StrCat("connection failed: ", ec.message())));
  }
  Counters::Add(core_->counters().bytes_received, bytes);
  splitter_.Commit(bytes);
  while (!closed_) {
    auto body = splitter_.Next();
    if (absl::IsUnavailable(body.status())) break;
    if (!body.ok()) {
      Counters::Add(core_->counters().decode_errors);
      return Reject(body.status());
    }
    HandleFrame(*body);
  }
  if (!closed_) Read();
}

void InboundConnection::HandleFrame(const Bytes& body) {
  auto frame = serialization::DecodeFrame(body);
  if (!frame.ok()) {
    Counters::Add(core_->counters().decode_errors);
    return Reject(frame.status());
  }
  if (auto* hello = std::get_if<serialization::HelloValue>(&*frame)) {
    if (kind_ != Kind::kAwaitingHello) return Reject("a second Hello on one connection");
    return HandleHello(*hello);
  }
  switch (kind_) {
    case Kind::kAwaitingHello:
      return Reject(absl::StrCat("the first frame must be a Hello, got ", FrameKind(*frame)));
    case Kind::kServer:
      if (auto* message = std::get_if<raft::Message>(&*frame)) return HandleRaft(std::move(*message));
      return Reject(absl::StrCat(FrameKind(*frame), " on the raft connection of node ", node_));
    case Kind::kClient:
      if (auto* request = std::get_if<serialization::ClientRequestValue>(&*frame)) {
        return core_->DeliverClient(client_id_, std::move(*request));
      }
      return Reject(absl::StrCat(FrameKind(*frame), " on a client connection; a client sends only requests"));
  }
}

void InboundConnection::HandleHello(const serialization::HelloValue& hello) {
  if (hello.cluster_id != core_->cluster_id()) {
    return Reject(absl::StrCat("Hello from node ", hello.node_id, " names cluster '", hello.cluster_id,
                               "' but this is cluster '", core_->cluster_id(), "'"));
  }
  if (hello.node_id == 0) {
    kind_ = Kind::kClient;
    hello_timer_.cancel();
    client_id_ = core_->BindClient(this);
    spdlog::debug("node {}: client connection {} from {}", core_->self(), client_id_, remote_);
    return;
  }
  if (hello.node_id == core_->self()) {
    return Reject(absl::StrCat("Hello claims this node's own id ", hello.node_id, "; are two servers sharing an id?"));
  }
  kind_ = Kind::kServer;
  node_ = hello.node_id;
  hello_timer_.cancel();
  core_->BindInbound(this, node_);
}

void InboundConnection::HandleRaft(raft::Message message) {
  if (message.from != node_) {
    return Reject(absl::StrCat(raft::MessageKindName(message), " claims to be from node ", message.from,
                               " on the connection of node ", node_));
  }
  if (message.to != core_->self()) {
    return Reject(absl::StrCat(raft::MessageKindName(message), " is addressed to node ", message.to,
                               ", but this is node ", core_->self(), "; check the peer addresses"));
  }
  core_->Deliver(std::move(message));
}

// ------------------------------------------------------------ TcpTransportCore

void TcpTransportCore::AddPeers(const absl::flat_hash_map<NodeId, std::string>& peers) {
  for (const auto& [id, address] : peers) SetPeerAddress(id, address);
}

absl::Status TcpTransportCore::Listen(const std::string& address) {
  if (closed_) return absl::FailedPreconditionError("Listen after Close");
  if (acceptor_) return absl::FailedPreconditionError(absl::StrCat("already listening on port ", port_));
  auto parsed = ParseHostPort(address);
  if (!parsed.ok()) return parsed.status();
  error_code ec;
  tcp::endpoint endpoint;
  auto ip = asio::ip::make_address(parsed->host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(ip, parsed->port);
  } else {
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(parsed->host, std::to_string(parsed->port), ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("listen on ", address, ": cannot resolve '", parsed->host,
                                                     "': ", ec ? ec.message() : std::string("no addresses")));
    }
    endpoint = *results.begin();
  }
  tcp::acceptor acceptor(io_);
  const char* step = "open";
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) step = "bind", acceptor.bind(endpoint, ec);
  if (!ec) step = "listen", acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("listen on ", address, ": ", step, ": ", ec.message()));
  port_ = acceptor.local_endpoint(ec).port();
  acceptor_.emplace(std::move(acceptor));
  spdlog::info("node {}: listening on {}:{}", self_, endpoint.address().to_string(), port_);
  StartAccept();
  return absl::OkStatus();
}

void TcpTransportCore::StartAccept() {
  acceptor_->async_accept([self = shared_from_this()](error_code ec, tcp::socket socket) {
    self->OnAccept(ec, std::move(socket));
  });
}

void TcpTransportCore::OnAccept(error_code ec, tcp::socket socket) {
  if (closed_) return;
  if (ec) {
    // E.g. out of file descriptors: wait a little instead of spinning.
    spdlog::warn("node {}: accept failed: {}; retrying in 100 ms", self_, ec.message());
    accept_retry_timer_.expires_after(std::chrono::milliseconds(100));
    accept_retry_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec && !self->closed_) self->StartAccept();
    });
    return;
  }
  Counters::Add(counters_.accepts);
  if (inbound_.size() >= options_.max_inbound_connections) {
    spdlog::warn("node {}: refusing connection from {}: already {} inbound connections", self_, Describe(socket),
                 inbound_.size());
    Counters::Add(counters_.rejected_connections);
    error_code ignored;
    socket.close(ignored);
  } else {
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto connection = std::make_shared<InboundConnection>(shared_from_this(), std::move(socket));
    inbound_.emplace(connection.get(), connection);
    connection->Start();
  }
  StartAccept();
}

void TcpTransportCore::BindInbound(InboundConnection* connection, NodeId node) {
  auto [it, inserted] = inbound_by_node_.try_emplace(node, connection);
  if (inserted) return;
  InboundConnection* older = it->second;
  it->second = connection;
  spdlog::info("node {}: node {} reconnected; closing its older connection", self_, node);
  older->Close(absl::CancelledError("replaced by a newer connection"));
}

void TcpTransportCore::ForgetInbound(InboundConnection* connection, NodeId node) {
  if (auto it = inbound_by_node_.find(node); it != inbound_by_node_.end() && it->second == connection) {
    inbound_by_node_.erase(it);
  }
  inbound_.erase(connection);
}

ClientConnectionId TcpTransportCore::BindClient(InboundConnection* connection) {
  const ClientConnectionId id = next_client_id_++;
  clients_.emplace(id, connection);
  Counters::Add(counters_.client_accepts);
  return id;
}

void TcpTransportCore::ForgetClient(ClientConnectionId id, absl::Status reason) {
  clients_.erase(id);
  if (closed_) return;
  asio::post(io_, [self = shared_from_this(), id, reason = std::move(reason)]() mutable {
    if (self->closed_) return;
    auto handler = self->client_closed_handler_;
    if (handler) (*handler)(id, std::move(reason));
  });
}

void TcpTransportCore::DeliverClient(ClientConnectionId id, serialization::ClientRequestValue request) {
  auto handler = client_handler_;
  if (!handler) {
    spdlog::debug("node {}: no client handler; dropping a {} request from client connection {}", self_,
                  serialization::ClientRequestKindName(request), id);
    return Counters::Add(counters_.messages_dropped);
  }
  Counters::Add(counters_.client_requests);
  (*handler)(id, std::move(request));
}

std::shared_ptr<InboundConnection> TcpTransportCore::FindClient(ClientConnectionId id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return nullptr;
  return it->second->shared_from_this();  // pinned: queueing may close it
}

absl::Status TcpTransportCore::SendToClient(ClientConnectionId id, const serialization::ClientResponseValue& response) {
  if (closed_) return absl::FailedPreconditionError("the transport is closed");
  auto connection = FindClient(id);
  if (!connection) return absl::NotFoundError(absl::StrCat("no open client connection ", id));
  return connection->QueueFrame(
      [&](std::string* out) { serialization::AppendClientResponseFrame(response, out); }, "a response");
}

absl::Status TcpTransportCore::PushToClient(ClientConnectionId id, const serialization::PublishEventsValue& events) {
  if (closed_) return absl::FailedPreconditionError("the transport is closed");
  auto connection = FindClient(id);
  if (!connection) return absl::NotFoundError(absl::StrCat("no open client connection ", id));
  return connection->QueueFrame([&](std::string* out) { serialization::AppendPublishEventsFrame(events, out); },
                                "an event batch");
}

void TcpTransportCore::CloseClient(ClientConnectionId id, const std::string& reason) {
  auto connection = FindClient(id);
  if (!connection) return;
  spdlog::info("node {}: closing client connection {}: {}", self_, id, reason);
  connection->Close(absl::CancelledError(reason));
}

void TcpTransportCore::SetPeerAddress(NodeId id, std::string address) {
  if (closed_ || id == self_) return;
  auto& peer = peers_[id];
  if (!peer) peer = std::make_shared<OutboundPeer>(shared_from_this(), id);
  peer->SetAddress(std::move(address));
}

void TcpTransportCore::Send(raft::Message message) {
  if (closed_) return Counters::Add(counters_.messages_dropped);
  if (message.to == self_) {
    Counters::Add(counters_.messages_sent);
    asio::post(io_, [self = shared_from_this(), message = std::move(message)]() mutable {
      if (!self->closed_) self->Deliver(std::move(message));
    });
    return;
  }
  auto it = peers_.find(message.to);
  if (it == peers_.end()) {
    spdlog::debug("node {}: no address for node {}; dropping {}", self_, message.to, raft::MessageKindName(message));
    return Counters::Add(counters_.messages_dropped);
  }
  // Hold a reference: Enqueue may fail the connection, and nothing else pins the peer here.
  auto peer = it->second;
  peer->Enqueue(message);
}

void TcpTransportCore::Deliver(raft::Message message) {
  auto handler = handler_;
  if (!handler) return Counters::Add(counters_.messages_dropped);
  Counters::Add(counters_.messages_received);
  (*handler)(std::move(message));
}

void TcpTransportCore::Close() {
  if (closed_) return;
  closed_ = true;
  handler_.reset();
  client_handler_.reset();
  client_closed_handler_.reset();
  error_code ignored;
  if (acceptor_) acceptor_->close(ignored);
  accept_retry_timer_.cancel();
  auto peers = std::move(peers_);
  peers_.clear();
  for (auto& [id, peer] : peers) peer->Close();
  auto inbound = std::move(inbound_);
  inbound_.clear();
  inbound_by_node_.clear();
  clients_.clear();
  for (auto& [raw, connection] : inbound) connection->Close(absl::CancelledError("the transport closed"));
}

}  // namespace internal

// ---------------------------------------------------------------- TcpTransport

TcpTransport::TcpTransport(boost::asio::io_context& io, NodeId self, std::string cluster_id,
                           absl::flat_hash_map<NodeId, std::string> peers, TcpTransportOptions options)
    : core_(std::make_shared<internal::TcpTransportCore>(io, self, std::move(cluster_id), options)) {
  core_->AddPeers(peers);
}

TcpTransport::~TcpTransport() { core_->Close(); }

absl::Status TcpTransport::Listen(const std::string& address) { return core_->Listen(address); }
uint16_t TcpTransport::port() const { return core_->port(); }
void TcpTransport::SetPeerAddress(NodeId id, std::string address) { core_->SetPeerAddress(id, std::move(address)); }
void TcpTransport::Close() { core_->Close(); }
void TcpTransport::Send(raft::Message message) { core_->Send(std::move(message)); }
void TcpTransport::SetHandler(MessageHandler handler) { core_->SetHandler(std::move(handler)); }
TransportStats TcpTransport::Stats() const { return core_->counters().Snapshot(); }
void TcpTransport::SetClientHandler(ClientRequestHandler handler) { core_->SetClientHandler(std::move(handler)); }
void TcpTransport::SetClientClosedHandler(ClientClosedHandler handler) {
  core_->SetClientClosedHandler(std::move(handler));
}
absl::Status TcpTransport::SendToClient(ClientConnectionId id, const serialization::ClientResponseValue& response) {
  return core_->SendToClient(id, response);
}
absl::Status TcpTransport::PushToClient(ClientConnectionId id, const serialization::PublishEventsValue& events) {
  return core_->PushToClient(id, events);
}
void TcpTransport::CloseClient(ClientConnectionId id, const std::string& reason) { core_->CloseClient(id, reason); }
size_t TcpTransport::client_count() const { return core_->client_count(); }
NodeId TcpTransport::self() const { return core_->self(); }

}  // namespace caracal::transport

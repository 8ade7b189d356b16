#ifndef CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_
#define CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_

// TcpTransport: raft messages over TCP, with Boost.Asio.
//
// Wire protocol (serialization/framing.h, serialization/codec.h): a stream of
// frames, each `u32 LE length | u32 magic | Cap'n Proto wire::Frame`.
// A connection is one-directional for raft traffic: node A sends to node B on
// the connection A opened to B; B answers on its own connection to A. The
// opener's first frame is a Hello {node_id, cluster_id}; every later frame is
// a raft message whose `from` is the Hello's node id.
//
// Client connections: a Hello with node id 0 (and our cluster id) makes an
// inbound connection a client connection, known by a ClientConnectionId. It
// is bidirectional: the client sends ClientRequest frames, which go to the
// client handler; responses (SendToClient) and pushed events (PushToClient)
// go back on the same socket, in the order they were handed over. Each client
// connection has a bounded outbound queue (max_client_queue_bytes, counting
// frames being written): a frame that does not fit closes that connection
// (logged, and reported as ResourceExhausted), so a client that does not read
// cannot exhaust the server's memory. (A frame always fits an empty queue.)
// A raft frame on a client connection, a client frame on a peer connection,
// anything but a ClientRequest from a client, or a malformed frame closes
// that one connection (logged) and affects nothing else. When a client
// connection closes for any reason but Close() of the transport, the client
// closed handler is told (posted, after every request already delivered from
// that connection) — once per connection that said its Hello.
//
// Outbound, per peer: connect lazily on the first Send; on a failed connect or
// a broken connection, retry with exponential back-off (initial_backoff
// doubling to max_backoff, each delay jittered into [d/2, d]) while messages
// are queued, else wait for the next Send. Queued frames live in a bounded
// per-peer buffer (max_queue_bytes, counting frames being written too); a
// message that does not fit is dropped and counted. All queued frames go out
// in one async_write. Frames lost with a broken connection are counted as
// dropped; raft retransmits.
//
// Inbound: the first frame must be a Hello carrying our cluster id; a
// malformed frame, a wrong cluster id, a raft message whose `from` differs
// from the Hello's node id or whose `to` is not this node closes that
// connection (logged with the peer and the reason) and nothing else. At most
// max_inbound_connections are open; a connection that sends no Hello within
// hello_timeout is closed. A newer connection from the same node replaces the
// older one (the old one is closed): after a peer restarts, its half-open
// predecessor does not linger.
//
// Threading: single-threaded. Every member function must be called on the
// thread running `io` (or before it runs); every callback runs there. Stats()
// may be called from any thread.
//
// Lifetime: Close() (also run by the destructor) cancels every socket, timer
// and posted delivery; no handler (raft, client request, client closed) is
// called after Close(). Pending
// asynchronous operations keep the internal state alive until `io` runs them
// (they then do nothing) or is destroyed, so destroying a TcpTransport while
// `io` still has its work queued is safe.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "framework/common/types.h"
#include "framework/transport/transport.h"
#include "serialization/client_protocol.h"

namespace caracal::transport {

struct TcpTransportOptions {
  size_t max_queue_bytes = 64u << 20;  // per peer, encoded frames queued or being written
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{1000};
  size_t max_inbound_connections = 1024;  // peers and clients together
  std::chrono::milliseconds hello_timeout{10000};
  // Inbound bytes are read into chunks of this size (bigger for a bigger
  // frame); received frames are slices of them, so a chunk lives as long as
  // anything still holds a frame's entries or operation.
  size_t read_buffer_bytes = 256u << 10;
  size_t max_client_queue_bytes = 16u << 20;  // per client connection, responses and events queued or being written
};

// Names one client connection of one TcpTransport. Never 0; never reused by
// that transport.
using ClientConnectionId = uint64_t;

// "host:port" or "[v6-host]:port" split into its parts. The port must be a
// number in [0, 65535]; the host must not be empty.
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
absl::StatusOr<HostPort> ParseHostPort(const std::string& address);

namespace internal {
class TcpTransportCore;
}  // namespace internal

class TcpTransport final : public Transport {
 public:
  // `peers` maps node ids to "host:port"; an empty address means "not known
  // yet" (messages queue until SetPeerAddress gives one). Messages to ids
  // not in the map are dropped.
  TcpTransport(boost::asio::io_context& io, NodeId self, std::string cluster_id,
               absl::flat_hash_map<NodeId, std::string> peers, TcpTransportOptions options = {});
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // Binds and starts accepting on `address` ("127.0.0.1:0" picks a free
  // port). Resolves the host synchronously. Call at most once.
  absl::Status Listen(const std::string& address);
  // The bound port, 0 before a successful Listen.
  uint16_t port() const;

  // Adds a peer or changes its address. A changed address drops the current
  // connection (its in-flight frames) and reconnects if messages are queued.
  void SetPeerAddress(NodeId id, std::string address);

  // Stops everything: no more accepts, connections closed, queued messages
  // dropped, handler released. Idempotent.
  void Close();

  // ---- client connections ----
  using ClientRequestHandler = std::function<void(ClientConnectionId, serialization::ClientRequestValue)>;
  // `reason` says why: the client closed it or a socket error (kUnavailable),
  // a malformed or unsupported frame (the decoder's status: kDataLoss,
  // kUnimplemented, kFailedPrecondition), a protocol violation
  // (kInvalidArgument), a full outbound queue (kResourceExhausted),
  // CloseClient (kCancelled).
  using ClientClosedHandler = std::function<void(ClientConnectionId, absl::Status reason)>;

  // Receives every request from every client connection, in each
  // connection's order. Requests arriving while none is set are dropped
  // (counted in messages_dropped).
  void SetClientHandler(ClientRequestHandler handler);
  void SetClientClosedHandler(ClientClosedHandler handler);

  // Queue a response / an event batch on a client connection. Never blocks,
  // never calls a handler from inside. Errors: kNotFound (no such connection:
  // it closed, or never was), kResourceExhausted (the queue was full; the
  // connection is now closed), kInvalidArgument (the frame is over
  // kMaxFrameBytes; nothing sent, the connection stays open),
  // kFailedPrecondition (after Close).
  absl::Status SendToClient(ClientConnectionId id, const serialization::ClientResponseValue& response);
  absl::Status PushToClient(ClientConnectionId id, const serialization::PublishEventsValue& events);
  // Closes a client connection (queued frames are dropped); the closed
  // handler is told with kCancelled. Unknown ids are ignored.
  void CloseClient(ClientConnectionId id, const std::string& reason);
  // Client connections that said their Hello and are still open.
  size_t client_count() const;

  void Send(raft::Message message) override;
  void SetHandler(MessageHandler handler) override;
  TransportStats Stats() const override;

  NodeId self() const;

 private:
  std::shared_ptr<internal::TcpTransportCore> core_;
};

}  // namespace caracal::transport

#endif  // CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_

#ifndef CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_
#define CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_

// TcpTransport: raft messages over TCP, with Boost.Asio.
//
// Wire protocol (serialization/framing.h, serialization/codec.h): a stream of
// frames, each `u32 LE length | u32 magic | Cap'n Proto wire::Frame`.
// A connection is one-directional for raft traffic: node A sends to node B on
// the connection A opened to B; B answers on its own connection to A. The
// opener's first frame is a Hello {node_id, cluster_id}; every later frame is
// a raft message whose `from` is the Hello's node id. (A Hello with node id 0
// will announce a client connection; those are refused until the client
// protocol exists — see InboundConnection in tcp_transport.cc.)
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
// and posted delivery; the handler is never called after Close(). Pending
// asynchronous operations keep the internal state alive until `io` runs them
// (they then do nothing) or is destroyed, so destroying a TcpTransport while
// `io` still has its work queued is safe.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "framework/common/types.h"
#include "framework/transport/transport.h"

namespace caracal::transport {

struct TcpTransportOptions {
  size_t max_queue_bytes = 64u << 20;  // per peer, encoded frames queued or being written
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{1000};
  size_t max_inbound_connections = 1024;
  std::chrono::milliseconds hello_timeout{10000};
  size_t read_buffer_bytes = 64u << 10;
};

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

  void Send(raft::Message message) override;
  void SetHandler(MessageHandler handler) override;
  TransportStats Stats() const override;

  NodeId self() const;

 private:
  std::shared_ptr<internal::TcpTransportCore> core_;
};

}  // namespace caracal::transport

#endif  // CARACAL_FRAMEWORK_TRANSPORT_TCP_TRANSPORT_H_

#ifndef CARACAL_FRAMEWORK_CLIENT_CLIENT_CONNECTION_H_
#define CARACAL_FRAMEWORK_CLIENT_CLIENT_CONNECTION_H_

// ClientConnection: one TCP connection from a client process to one server,
// with Boost.Asio. The plumbing under the client library: it carries
// ClientRequests out and ClientResponses and pushed PublishEvents in; it knows
// nothing of sessions, sequencing or retries (the library above decides what
// to send and, when a connection ends, where to go next). The library does
// not use it directly: ConnectionPool (connection_pool.h) shares one among
// the sessions of a ClientRuntime.
//
// Wire protocol (serialization/framing.h, serialization/client_protocol.h):
// a stream of frames `u32 LE length | u32 magic | Cap'n Proto wire::Frame`.
// The first frame out is Hello {node_id 0, cluster_id}; then ClientRequest
// frames. The server sends ClientResponse and PublishEvents frames only;
// anything else, or a malformed frame, ends the connection.
//
// States: kIdle -> (Connect) kConnecting -> kConnected -> kClosed; or
// kConnecting -> kClosed when the connect fails or times out. A
// ClientConnection is used once: no reconnect (make a new one).
//
// Connect resolves (if given a host name) and connects within
// options.connect_timeout, then reports once through its callback: OK, or
// kUnavailable ("connection refused", other socket errors, resolve
// failures), kDeadlineExceeded (timed out), kInvalidArgument (bad address),
// kFailedPrecondition (Connect called a second time; after Close only the
// future form reports it, since no callback runs after Close). The callback
// is never called from inside Connect. Requests sent while connecting queue and
// go out right after the Hello.
//
// Outbound requests live in a bounded buffer (max_queue_bytes, counting what
// is being written): Send refuses a request that does not fit with
// kResourceExhausted and leaves the connection open (a frame always fits an
// empty buffer). Inbound frames are delivered one by one, in arrival order,
// to the response and events handlers.
//
// The closed handler is called once when a connection that was established
// ends for any reason other than Close(): kUnavailable (the server closed the
// connection, reset, other socket errors), kDataLoss (a malformed frame), a
// decoder's status for a frame of an unknown kind or version
// (kUnimplemented, kFailedPrecondition), kInvalidArgument (a frame the server
// must not send). A failed Connect is reported through the connect callback
// only.
//
// Threading: single-threaded. Every member function must be called on the
// thread running `io` (or before it runs); every callback runs there.
//
// Lifetime: Close() (also run by the destructor) closes the socket, drops
// queued requests and cancels the timer; no callback of any kind is called
// after Close() (a pending callback-style Connect is never completed; a
// pending future-style Connect is completed with kCancelled). Pending
// asynchronous operations keep the internal state alive until `io` runs them
// (they then do nothing) or is destroyed, so destroying a ClientConnection
// while `io` still has its work queued is safe.

#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "boost/asio/io_context.hpp"
#include "serialization/client_protocol.h"

namespace caracal::client {

struct ClientConnectionOptions {
  std::chrono::milliseconds connect_timeout{5000};  // resolve + TCP connect
  size_t max_queue_bytes = 16u << 20;               // encoded requests queued or being written
  size_t read_buffer_bytes = 64u << 10;
};

namespace internal {
class ClientConnectionCore;
}  // namespace internal

class ClientConnection {
 public:
  using ConnectCallback = std::function<void(absl::Status)>;
  using ResponseHandler = std::function<void(serialization::ClientResponseValue)>;
  using EventsHandler = std::function<void(serialization::PublishEventsValue)>;
  using ClosedHandler = std::function<void(absl::Status reason)>;

  ClientConnection(boost::asio::io_context& io, std::string cluster_id, ClientConnectionOptions options = {});
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Starts connecting to `address` ("host:port"); `done` reports the outcome.
  void Connect(const std::string& address, ConnectCallback done);
  // The same, completing a future (on `io`'s thread: do not wait on it there).
  std::future<absl::Status> Connect(const std::string& address);

  // Queues `request`. Errors: kFailedPrecondition (never connected, or
  // closed: the message says which), kResourceExhausted (the buffer is full),
  // kInvalidArgument (the request encodes to more than kMaxFrameBytes).
  absl::Status Send(const serialization::ClientRequestValue& request);

  // Handlers may be set or replaced at any time, also from inside a
  // callback; a callback may call Close() or destroy the ClientConnection.
  // Frames arriving while no handler is set for them are dropped.
  void SetResponseHandler(ResponseHandler handler);
  void SetEventsHandler(EventsHandler handler);
  void SetClosedHandler(ClosedHandler handler);

  // Closes the connection and releases every handler. Idempotent.
  void Close();

  bool connected() const;  // kConnected: established and not closed
  bool closed() const;     // kClosed, for whatever reason
  // The server's "host:port" as given to Connect ("" before).
  const std::string& address() const;

 private:
  std::shared_ptr<internal::ClientConnectionCore> core_;
};

}  // namespace caracal::client

#endif  // CARACAL_FRAMEWORK_CLIENT_CLIENT_CONNECTION_H_

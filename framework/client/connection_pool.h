#ifndef CARACAL_FRAMEWORK_CLIENT_CONNECTION_POOL_H_
#define CARACAL_FRAMEWORK_CLIENT_CONNECTION_POOL_H_

// ConnectionPool: the sessions (Clients) of one ClientRuntime multiplex over
// one TCP connection per server, so that a burst of requests from many
// sessions is one write and their responses a few reads, instead of a
// syscall pair per operation per session on the server.
//
// A user of the pool (a Client, for its session connection and its read
// connection) holds Channels. A Channel behaves like a ClientConnection
// (client_connection.h) of its own: Connect once, Send requests, receive
// responses and event batches through handlers, learn through the closed
// handler that the connection ended, Close. Underneath, every channel
// connected to the same (address, cluster id) shares one *physical*
// ClientConnection while that connection lives.
//
// What the server sees is one connection carrying many sessions, which the
// client protocol allows: every request carries a request id that its
// response echoes, requests name their session, and a resetEvents request
// makes *this connection* the event channel of the session it names (a
// PublishEvents frame names its session). So the pool
//   * rewrites each outgoing request id to one unique on the physical
//     connection and maps the response back to (channel, original id): two
//     channels may use the same ids;
//   * routes a PublishEvents frame to the channel that last sent resetEvents
//     for its session on that connection (while attached); drops it otherwise
//     (the session's client resubscribes, from the index it has, whenever it
//     attaches anywhere).
// Frames reach a channel in the order they arrived on the physical
// connection, so a session's responses and events keep their order.
//
// Connect: a channel attaches to the physical connection for (address,
// cluster id) if one is connecting or connected, else to a new one (made
// with the options of the channel that creates it). The callback is never
// called from inside Connect: it runs when the physical connect completes,
// or, for an established connection, from a posted handler. A physical
// connection that fails to connect or ends reports to every channel attached
// (the connect callback of a channel still connecting, the closed handler of
// a connected one, as ClientConnection does) and leaves the pool at once, so
// the next Connect makes a fresh one.
//
// Close detaches the channel: no callback of it runs afterwards, responses
// still owed to it are dropped. The physical connection closes when its last
// channel detaches. Abandon is for a server that stopped answering: it closes
// the physical connection for every channel on it (the others are told, from
// a posted handler, through their closed handler or connect callback with
// kUnavailable), so nobody keeps using a half-dead connection.
//
// Backpressure: Send fails with the physical connection's error, e.g.
// kResourceExhausted when its bounded buffer (max_queue_bytes, shared by
// every channel on it) is full; the request is not queued and nothing
// closes.
//
// Invariants (io thread): every physical connection in the pool is open
// (connecting or connected) and has at least one channel attached; a channel
// is attached to at most one physical connection, and only while it is
// connecting or connected; request and event routes of a physical
// connection name only channels attached to it.
//
// Threading: single-threaded, like ClientConnection: every member function
// of the pool and of its channels runs on the io thread (or before it runs),
// and so does every callback; only the counters may be read from anywhere.
// A Channel keeps its pool alive; a pool must be destroyed with no channel
// attached, on the io thread or once it stopped.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "boost/asio/io_context.hpp"
#include "framework/client/client_connection.h"
#include "serialization/client_protocol.h"

namespace caracal {
class ClientRuntime;
}  // namespace caracal

namespace caracal::client {

class ConnectionPool;

class Channel {
 public:
  using ConnectCallback = ClientConnection::ConnectCallback;
  using ResponseHandler = ClientConnection::ResponseHandler;
  using EventsHandler = ClientConnection::EventsHandler;
  using ClosedHandler = ClientConnection::ClosedHandler;

  ~Channel();  // Close()s
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // As ClientConnection::Connect (kFailedPrecondition the second time).
  void Connect(const std::string& address, ConnectCallback done);
  // As ClientConnection::Send; request_id is this channel's own.
  absl::Status Send(serialization::ClientRequestValue request);
  // May be set or replaced at any time, also from inside a callback; a
  // callback may Close() or destroy the channel.
  void SetResponseHandler(ResponseHandler handler);
  void SetEventsHandler(EventsHandler handler);
  void SetClosedHandler(ClosedHandler handler);
  // Detaches (no callback afterwards). Idempotent.
  void Close();
  // Closes the physical connection under this channel for every channel on
  // it; `reason` is what the others are told. This channel is Close()d.
  void Abandon(absl::Status reason);

  bool connected() const;
  bool closed() const;

 private:
  friend class ConnectionPool;
  Channel(std::shared_ptr<ConnectionPool> pool, uint64_t id) : pool_(std::move(pool)), id_(id) {}
  std::shared_ptr<ConnectionPool> pool_;
  const uint64_t id_;
};

class ConnectionPool : public std::enable_shared_from_this<ConnectionPool> {
 public:
  explicit ConnectionPool(boost::asio::io_context& io);
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // A new, idle channel to a server of cluster `cluster_id`. `options` are
  // used if this channel's Connect has to open a physical connection.
  std::unique_ptr<Channel> NewChannel(std::string cluster_id, ClientConnectionOptions options = {});

  // Counters, readable from any thread (for tests and diagnostics).
  size_t open_connections() const { return open_connections_.load(); }        // connecting or connected
  uint64_t connections_opened() const { return connections_opened_.load(); }  // ever
  size_t attached_channels() const { return attached_channels_.load(); }

 private:
  friend class Channel;
  struct Physical;
  struct ChannelState;
  using Key = std::pair<std::string, std::string>;  // address, cluster id

  void Connect(uint64_t channel, const std::string& address, Channel::ConnectCallback done);
  absl::Status Send(uint64_t channel, serialization::ClientRequestValue request);
  void Close(uint64_t channel);
  void Abandon(uint64_t channel, absl::Status reason);
  ChannelState* Find(uint64_t channel);

  std::shared_ptr<Physical> Open(const Key& key, const ClientConnectionOptions& options);
  void OnPhysicalConnected(const std::shared_ptr<Physical>& p, absl::Status status);
  void OnResponse(const std::shared_ptr<Physical>& p, serialization::ClientResponseValue response);
  void OnEvents(const std::shared_ptr<Physical>& p, serialization::PublishEventsValue events);
  // `p` ended (or failed to connect): it leaves the pool, and every channel
  // attached is detached and told `reason`.
  void Ended(const std::shared_ptr<Physical>& p, const absl::Status& reason);
  // Closes `p` and takes it out of the pool; its channels stay attached
  // (until Ended tells them, or they Close).
  void ClosePhysical(const std::shared_ptr<Physical>& p);
  // Takes `channel` off its physical connection (closing that if it was the
  // last) and forgets it: it is closed.
  void Forget(uint64_t channel);

  boost::asio::io_context& io_;
  uint64_t next_channel_ = 1;
  std::map<uint64_t, std::unique_ptr<ChannelState>> channels_;  // every channel not closed
  std::map<Key, std::shared_ptr<Physical>> connections_;
  std::atomic<size_t> open_connections_ = 0;
  std::atomic<uint64_t> connections_opened_ = 0;
  std::atomic<size_t> attached_channels_ = 0;
};

// The pool of a ClientRuntime (every Client on it that shares connections
// uses it), for tests and diagnostics.
std::shared_ptr<ConnectionPool> PoolOf(ClientRuntime& runtime);

}  // namespace caracal::client

#endif  // CARACAL_FRAMEWORK_CLIENT_CONNECTION_POOL_H_

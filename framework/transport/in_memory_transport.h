#ifndef CARACAL_FRAMEWORK_TRANSPORT_IN_MEMORY_TRANSPORT_H_
#define CARACAL_FRAMEWORK_TRANSPORT_IN_MEMORY_TRANSPORT_H_

// InMemoryNetwork / InMemoryTransport: raft messages between nodes in one
// process, for tests and for an embedded cluster.
//
// Each InMemoryTransport is one node attached to a shared InMemoryNetwork and
// bound to an io_context; a message sent to a node is posted to that node's
// io_context and handed to its handler there, so the receiving node sees
// messages on its own thread exactly as with TcpTransport. Nodes may share
// one io_context (a single-threaded cluster) or each have their own thread.
//
// The network decides reachability at Send time: a message from A to B is
// dropped (and counted by A) when A->B is blocked, A or B is isolated, drop-all
// is on, or B is not attached. A message already posted is delivered even if
// the link is blocked afterwards (it was "on the wire"). Messages to oneself
// are always delivered (posted, never from inside Send).
//
// With round_trip_codec, every message is encoded into a wire frame at Send
// and decoded at delivery, so tests exercise the codec too; bytes are counted
// then. Otherwise the raft::Message value itself is moved across.
//
// Threading: InMemoryNetwork is thread-safe. An InMemoryTransport's Send,
// SetHandler, Stats and Close may be called from any thread (normally its io
// thread); its handler runs only on its io_context. Once Close (or the
// destructor) has returned on the io thread, or while that io_context is not
// running, the handler is never called again; so destroy a transport there.
// Posted deliveries keep the state they need alive, and each transport keeps
// its network alive, so they may be destroyed in any order.

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "framework/common/types.h"
#include "framework/transport/transport.h"

namespace caracal::transport {

struct InMemoryNetworkOptions {
  bool round_trip_codec = false;  // encode/decode every message through serialization/codec.h
};

class InMemoryTransport;

namespace internal {
struct InMemoryEndpoint;
}  // namespace internal

class InMemoryNetwork : public std::enable_shared_from_this<InMemoryNetwork> {
 public:
  static std::shared_ptr<InMemoryNetwork> Create(InMemoryNetworkOptions options = {});

  // Attaches node `id`, whose messages are delivered on `io`. Fails if `id`
  // is 0 or already attached. The transport detaches itself when closed or
  // destroyed; the id may then be attached again (a restarted node).
  absl::StatusOr<std::unique_ptr<InMemoryTransport>> Attach(NodeId id, boost::asio::io_context& io);

  // One-way: messages from `from` to `to` are dropped.
  void Block(NodeId from, NodeId to);
  void Unblock(NodeId from, NodeId to);
  // Both ways between `a` and `b`.
  void Partition(NodeId a, NodeId b);
  // `id` can neither send to nor receive from any other node.
  void Isolate(NodeId id);
  // Every message between different nodes is dropped.
  void SetDropAll(bool drop_all);
  // Undoes every Block, Partition, Isolate and SetDropAll.
  void Heal();
  bool Reachable(NodeId from, NodeId to) const;

  const InMemoryNetworkOptions& options() const { return options_; }

  // Use Create(); public only for std::make_shared.
  explicit InMemoryNetwork(InMemoryNetworkOptions options) : options_(options) {}

 private:
  friend class InMemoryTransport;
  bool ReachableLocked(NodeId from, NodeId to) const;
  // The endpoint `to` if `from` may reach it now, else null.
  std::shared_ptr<internal::InMemoryEndpoint> Route(NodeId from, NodeId to) const;
  void Detach(const internal::InMemoryEndpoint* endpoint);

  const InMemoryNetworkOptions options_;
  mutable std::mutex mu_;
  absl::flat_hash_map<NodeId, std::shared_ptr<internal::InMemoryEndpoint>> endpoints_;  // guarded by mu_
  absl::flat_hash_set<std::pair<NodeId, NodeId>> blocked_;                             // guarded by mu_
  absl::flat_hash_set<NodeId> isolated_;                                               // guarded by mu_
  bool drop_all_ = false;                                                              // guarded by mu_
};

class InMemoryTransport final : public Transport {
 public:
  ~InMemoryTransport() override;
  InMemoryTransport(const InMemoryTransport&) = delete;
  InMemoryTransport& operator=(const InMemoryTransport&) = delete;

  void Send(raft::Message message) override;
  void SetHandler(MessageHandler handler) override;
  TransportStats Stats() const override;

  // Detaches from the network; later sends are dropped, the handler is
  // released and never called again. Idempotent.
  void Close();
  NodeId self() const;

 private:
  friend class InMemoryNetwork;
  InMemoryTransport(std::shared_ptr<InMemoryNetwork> network, std::shared_ptr<internal::InMemoryEndpoint> endpoint);

  const std::shared_ptr<InMemoryNetwork> network_;
  const std::shared_ptr<internal::InMemoryEndpoint> endpoint_;
};

}  // namespace caracal::transport

#endif  // CARACAL_FRAMEWORK_TRANSPORT_IN_MEMORY_TRANSPORT_H_

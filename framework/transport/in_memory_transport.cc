#include "framework/transport/in_memory_transport.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "framework/transport/counters.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "spdlog/spdlog.h"

namespace caracal::transport {

namespace internal {

// One attached node. Shared by its InMemoryTransport, the network's table and
// every delivery posted to it, so a posted delivery never outlives its target.
// Invariant: once closed, handler is null and stays null.
struct InMemoryEndpoint {
  InMemoryEndpoint(NodeId id, boost::asio::io_context& io) : id(id), io(io) {}

  // Runs on `io`.
  void Deliver(raft::Message message) {
    std::shared_ptr<const Transport::MessageHandler> h;
    {
      std::lock_guard lock(mu);
      h = handler;
    }
    if (!h) return Counters::Add(counters.messages_dropped);
    Counters::Add(counters.messages_received);
    (*h)(std::move(message));
  }

  // Runs on `io`: the receiving half of round_trip_codec.
  void DeliverFrame(const std::string& frame) {
    Counters::Add(counters.bytes_received, frame.size());
    serialization::FrameSplitter splitter(frame.size());  // one chunk, exactly the frame
    splitter.Feed(frame);
    auto body = splitter.Next();
    absl::StatusOr<serialization::FrameValue> value = body.ok() ? serialization::DecodeFrame(*body) : body.status();
    if (!value.ok() || !std::holds_alternative<raft::Message>(*value)) {
      Counters::Add(counters.decode_errors);
      spdlog::error("node {}: in-memory frame did not round-trip: {}", id,
                    value.ok() ? std::string("not a raft message") : std::string(value.status().message()));
      return;
    }
    Deliver(std::get<raft::Message>(*std::move(value)));
  }

  const NodeId id;
  boost::asio::io_context& io;
  Counters counters;
  std::mutex mu;
  bool closed = false;                                         // guarded by mu
  std::shared_ptr<const Transport::MessageHandler> handler;    // guarded by mu
};

}  // namespace internal

// ------------------------------------------------------------ InMemoryNetwork

std::shared_ptr<InMemoryNetwork> InMemoryNetwork::Create(InMemoryNetworkOptions options) {
  return std::make_shared<InMemoryNetwork>(options);
}

absl::StatusOr<std::unique_ptr<InMemoryTransport>> InMemoryNetwork::Attach(NodeId id, boost::asio::io_context& io) {
  if (id == 0) return absl::InvalidArgumentError("node id 0 is reserved for clients; servers need an id >= 1");
  auto endpoint = std::make_shared<internal::InMemoryEndpoint>(id, io);
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = endpoints_.try_emplace(id, endpoint);
    if (!inserted) {
      return absl::AlreadyExistsError(
          absl::StrCat("node ", id, " is already attached to this network; close its transport first"));
    }
  }
  return std::unique_ptr<InMemoryTransport>(new InMemoryTransport(shared_from_this(), std::move(endpoint)));
}

void InMemoryNetwork::Block(NodeId from, NodeId to) {
  std::lock_guard lock(mu_);
  blocked_.insert({from, to});
}

void InMemoryNetwork::Unblock(NodeId from, NodeId to) {
  std::lock_guard lock(mu_);
  blocked_.erase({from, to});
}

void InMemoryNetwork::Partition(NodeId a, NodeId b) {
  std::lock_guard lock(mu_);
  blocked_.insert({a, b});
  blocked_.insert({b, a});
}

void InMemoryNetwork::Isolate(NodeId id) {
  std::lock_guard lock(mu_);
  isolated_.insert(id);
}

void InMemoryNetwork::SetDropAll(bool drop_all) {
  std::lock_guard lock(mu_);
  drop_all_ = drop_all;
}

void InMemoryNetwork::Heal() {
  std::lock_guard lock(mu_);
  blocked_.clear();
  isolated_.clear();
  drop_all_ = false;
}

bool InMemoryNetwork::Reachable(NodeId from, NodeId to) const {
  std::lock_guard lock(mu_);
  return ReachableLocked(from, to);
}

bool InMemoryNetwork::ReachableLocked(NodeId from, NodeId to) const {
  if (from == to) return true;
  if (drop_all_ || isolated_.contains(from) || isolated_.contains(to)) return false;
  return !blocked_.contains({from, to});
}

std::shared_ptr<internal::InMemoryEndpoint> InMemoryNetwork::Route(NodeId from, NodeId to) const {
  std::lock_guard lock(mu_);
  if (!ReachableLocked(from, to)) return nullptr;
  auto it = endpoints_.find(to);
  return it == endpoints_.end() ? nullptr : it->second;
}

void InMemoryNetwork::Detach(const internal::InMemoryEndpoint* endpoint) {
  std::lock_guard lock(mu_);
  auto it = endpoints_.find(endpoint->id);
  if (it != endpoints_.end() && it->second.get() == endpoint) endpoints_.erase(it);
}

// ---------------------------------------------------------- InMemoryTransport

InMemoryTransport::InMemoryTransport(std::shared_ptr<InMemoryNetwork> network,
                                     std::shared_ptr<internal::InMemoryEndpoint> endpoint)
    : network_(std::move(network)), endpoint_(std::move(endpoint)) {}

InMemoryTransport::~InMemoryTransport() { Close(); }

NodeId InMemoryTransport::self() const { return endpoint_->id; }

void InMemoryTransport::Close() {
  {
    std::lock_guard lock(endpoint_->mu);
    if (endpoint_->closed) return;
    endpoint_->closed = true;
    endpoint_->handler.reset();
  }
  network_->Detach(endpoint_.get());
}

void InMemoryTransport::SetHandler(MessageHandler handler) {
  std::lock_guard lock(endpoint_->mu);
  if (endpoint_->closed) return;
  endpoint_->handler = handler ? std::make_shared<const MessageHandler>(std::move(handler)) : nullptr;
}

void InMemoryTransport::Send(raft::Message message) {
  auto& counters = endpoint_->counters;
  {
    std::lock_guard lock(endpoint_->mu);
    if (endpoint_->closed) return internal::Counters::Add(counters.messages_dropped);
  }
  auto target = network_->Route(endpoint_->id, message.to);
  if (!target) return internal::Counters::Add(counters.messages_dropped);
  internal::Counters::Add(counters.messages_sent);
  if (network_->options().round_trip_codec) {
    std::string frame;
    serialization::AppendRaftFrame(message, &frame);
    internal::Counters::Add(counters.bytes_sent, frame.size());
    boost::asio::post(target->io, [target, frame = std::move(frame)] { target->DeliverFrame(frame); });
  } else {
    boost::asio::post(target->io, [target, message = std::move(message)]() mutable {
      target->Deliver(std::move(message));
    });
  }
}

TransportStats InMemoryTransport::Stats() const { return endpoint_->counters.Snapshot(); }

}  // namespace caracal::transport

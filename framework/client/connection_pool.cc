#include "framework/client/connection_pool.h"

#include <set>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"

namespace caracal::client {

using serialization::ClientRequestValue;
using serialization::ClientResponseValue;
using serialization::PublishEventsValue;
using serialization::ResetEventsRequest;

namespace {

template <typename Handler>
std::shared_ptr<const Handler> Hold(Handler handler) {
  return handler ? std::make_shared<const Handler>(std::move(handler)) : nullptr;
}

}  // namespace

// One TCP connection, shared by the channels attached to it. `open` while it
// is in the pool; once closed it only waits for its channels to be told.
struct ConnectionPool::Physical {
  Key key;
  std::unique_ptr<ClientConnection> conn;
  bool connected = false;
  bool open = true;
  std::set<uint64_t> channels;  // attached
  uint64_t next_request_id = 1;
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> requests;  // wire id -> (channel, its own id)
  std::unordered_map<uint64_t, uint64_t> subscribers;                   // session -> channel (last resetEvents)
};

// A channel that is not closed: idle (no physical), or attached.
struct ConnectionPool::ChannelState {
  enum class State { kIdle, kConnecting, kConnected };
  std::string cluster_id;
  ClientConnectionOptions options;
  State state = State::kIdle;
  std::shared_ptr<Physical> physical;  // set iff kConnecting or kConnected
  Channel::ConnectCallback connect_done;
  std::shared_ptr<const Channel::ResponseHandler> on_response;
  std::shared_ptr<const Channel::EventsHandler> on_events;
  std::shared_ptr<const Channel::ClosedHandler> on_closed;
};

ConnectionPool::ConnectionPool(boost::asio::io_context& io) : io_(io) {}

ConnectionPool::~ConnectionPool() {
  // Normally empty by now (every channel closed); whatever is left closes
  // without callbacks.
  for (auto& [key, p] : connections_) p->conn->Close();
}

std::unique_ptr<Channel> ConnectionPool::NewChannel(std::string cluster_id, ClientConnectionOptions options) {
  uint64_t id = next_channel_++;
  auto state = std::make_unique<ChannelState>();
  state->cluster_id = std::move(cluster_id);
  state->options = options;
  channels_.emplace(id, std::move(state));
  return std::unique_ptr<Channel>(new Channel(shared_from_this(), id));
}

ConnectionPool::ChannelState* ConnectionPool::Find(uint64_t channel) {
  auto it = channels_.find(channel);
  return it == channels_.end() ? nullptr : it->second.get();
}

void ConnectionPool::Connect(uint64_t id, const std::string& address, Channel::ConnectCallback done) {
  ChannelState* c = Find(id);
  if (c == nullptr || !done) return;  // closed: no callback after Close
  if (c->state != ChannelState::State::kIdle) {
    auto status = absl::FailedPreconditionError(
        absl::StrCat("Connect to ", address, ": this channel was already used; a channel connects once"));
    boost::asio::post(io_, [weak = weak_from_this(), id, done = std::move(done), status] {
      auto self = weak.lock();
      if (self && self->Find(id) != nullptr) done(status);
    });
    return;
  }
  Key key{address, c->cluster_id};
  auto it = connections_.find(key);
  std::shared_ptr<Physical> p = it != connections_.end() ? it->second : Open(key, c->options);
  c->state = ChannelState::State::kConnecting;
  c->physical = p;
  c->connect_done = std::move(done);
  p->channels.insert(id);
  ++attached_channels_;
  if (!p->connected) return;  // OnPhysicalConnected tells it
  boost::asio::post(io_, [weak = weak_from_this(), id, p] {
    auto self = weak.lock();
    if (!self) return;
    ChannelState* c = self->Find(id);
    if (c == nullptr || c->physical != p || c->state != ChannelState::State::kConnecting) return;
    c->state = ChannelState::State::kConnected;
    auto done = std::exchange(c->connect_done, nullptr);
    if (done) done(absl::OkStatus());
  });
}

std::shared_ptr<ConnectionPool::Physical> ConnectionPool::Open(const Key& key, const ClientConnectionOptions& options) {
  auto p = std::make_shared<Physical>();
  p->key = key;
  p->conn = std::make_unique<ClientConnection>(io_, key.second, options);
  // The pool owns `p` and so its connection, which calls nothing once
  // closed or destroyed: `this` outlives every callback.
  std::weak_ptr<Physical> weak = p;
  p->conn->SetResponseHandler([this, weak](ClientResponseValue r) {
    if (auto p = weak.lock()) OnResponse(p, std::move(r));
  });
  p->conn->SetEventsHandler([this, weak](PublishEventsValue e) {
    if (auto p = weak.lock()) OnEvents(p, std::move(e));
  });
  p->conn->SetClosedHandler([this, weak](absl::Status why) {
    if (auto p = weak.lock()) Ended(p, why);
  });
  p->conn->Connect(key.first, [this, weak](absl::Status s) {
    if (auto p = weak.lock()) OnPhysicalConnected(p, std::move(s));
  });
  connections_[key] = p;
  ++open_connections_;
  ++connections_opened_;
  return p;
}

void ConnectionPool::OnPhysicalConnected(const std::shared_ptr<Physical>& p, absl::Status status) {
  auto self = shared_from_this();  // a callback may drop the last channel and, with it, the pool
  if (!status.ok()) return Ended(p, status);
  p->connected = true;
  std::vector<uint64_t> ids(p->channels.begin(), p->channels.end());
  for (uint64_t id : ids) {
    ChannelState* c = Find(id);
    if (c == nullptr || c->physical != p || c->state != ChannelState::State::kConnecting) continue;
    c->state = ChannelState::State::kConnected;
    auto done = std::exchange(c->connect_done, nullptr);
    if (done) done(absl::OkStatus());
    if (!p->open) return;  // a callback abandoned it: Ended tells the rest
  }
}

void ConnectionPool::OnResponse(const std::shared_ptr<Physical>& p, ClientResponseValue response) {
  auto self = shared_from_this();
  auto it = p->requests.find(response.request_id);
  if (it == p->requests.end()) return;  // its channel left
  auto [id, own] = it->second;
  p->requests.erase(it);
  ChannelState* c = Find(id);
  if (c == nullptr || c->physical != p || !c->on_response) return;
  auto handler = c->on_response;
  response.request_id = own;
  (*handler)(std::move(response));
}

void ConnectionPool::OnEvents(const std::shared_ptr<Physical>& p, PublishEventsValue events) {
  auto self = shared_from_this();
  auto it = p->subscribers.find(events.session);
  if (it == p->subscribers.end()) return;
  ChannelState* c = Find(it->second);
  if (c == nullptr || c->physical != p || !c->on_events) return;
  auto handler = c->on_events;
  (*handler)(std::move(events));
}

void ConnectionPool::Ended(const std::shared_ptr<Physical>& p, const absl::Status& reason) {
  auto self = shared_from_this();
  ClosePhysical(p);
  std::vector<uint64_t> ids(p->channels.begin(), p->channels.end());
  for (uint64_t id : ids) {
    ChannelState* c = Find(id);
    if (c == nullptr || c->physical != p) continue;
    bool connecting = c->state == ChannelState::State::kConnecting;
    auto done = std::move(c->connect_done);
    auto closed = c->on_closed;
    Forget(id);  // as a ClientConnection that ended: closed, handlers released
    if (connecting) {
      if (done) done(reason);
    } else if (closed) {
      (*closed)(reason);
    }
  }
}

void ConnectionPool::ClosePhysical(const std::shared_ptr<Physical>& p) {
  if (!p->open) return;
  p->open = false;
  auto it = connections_.find(p->key);
  if (it != connections_.end() && it->second == p) connections_.erase(it);
  --open_connections_;
  p->requests.clear();
  p->subscribers.clear();
  p->conn->Close();
}

void ConnectionPool::Forget(uint64_t id) {
  auto it = channels_.find(id);
  if (it == channels_.end()) return;
  std::unique_ptr<ChannelState> c = std::move(it->second);
  channels_.erase(it);
  std::shared_ptr<Physical> p = std::move(c->physical);
  if (!p) return;
  p->channels.erase(id);
  --attached_channels_;
  std::erase_if(p->requests, [id](const auto& r) { return r.second.first == id; });
  std::erase_if(p->subscribers, [id](const auto& s) { return s.second == id; });
  if (p->channels.empty()) ClosePhysical(p);
}

absl::Status ConnectionPool::Send(uint64_t id, ClientRequestValue request) {
  ChannelState* c = Find(id);
  if (c == nullptr) return absl::FailedPreconditionError("the channel is closed");
  if (c->state == ChannelState::State::kIdle) return absl::FailedPreconditionError("not connected: call Connect first");
  Physical& p = *c->physical;
  uint64_t own = request.request_id;
  uint64_t wire = p.next_request_id++;
  request.request_id = wire;
  if (absl::Status s = p.conn->Send(request); !s.ok()) return s;
  p.requests.emplace(wire, std::make_pair(id, own));
  if (const auto* reset = std::get_if<ResetEventsRequest>(&request.body)) p.subscribers[reset->session] = id;
  return absl::OkStatus();
}

void ConnectionPool::Close(uint64_t id) { Forget(id); }

void ConnectionPool::Abandon(uint64_t id, absl::Status reason) {
  ChannelState* c = Find(id);
  if (c == nullptr) return;
  std::shared_ptr<Physical> p = c->physical;
  Forget(id);
  if (!p || !p->open) return;
  ClosePhysical(p);
  // The others learn it from io, not from inside their neighbour's call.
  boost::asio::post(io_, [weak = weak_from_this(), p, reason = std::move(reason)] {
    if (auto self = weak.lock()) self->Ended(p, reason);
  });
}

// ---------------------------------------------------------------- Channel

Channel::~Channel() { Close(); }

void Channel::Connect(const std::string& address, ConnectCallback done) {
  pool_->Connect(id_, address, std::move(done));
}

absl::Status Channel::Send(ClientRequestValue request) { return pool_->Send(id_, std::move(request)); }

void Channel::SetResponseHandler(ResponseHandler handler) {
  if (auto* c = pool_->Find(id_)) c->on_response = Hold(std::move(handler));
}
void Channel::SetEventsHandler(EventsHandler handler) {
  if (auto* c = pool_->Find(id_)) c->on_events = Hold(std::move(handler));
}
void Channel::SetClosedHandler(ClosedHandler handler) {
  if (auto* c = pool_->Find(id_)) c->on_closed = Hold(std::move(handler));
}

void Channel::Close() { pool_->Close(id_); }
void Channel::Abandon(absl::Status reason) { pool_->Abandon(id_, std::move(reason)); }

bool Channel::connected() const {
  auto* c = pool_->Find(id_);
  return c != nullptr && c->state == ConnectionPool::ChannelState::State::kConnected && c->physical->open &&
         c->physical->connected;
}
bool Channel::closed() const { return pool_->Find(id_) == nullptr; }

}  // namespace caracal::client

#include "tests/testing/tcp_proxy.h"

#include <array>
#include <atomic>
#include <deque>
#include <future>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"

namespace caracal::testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// More than this many bytes waiting for their delay in one direction stops
// reading that direction until they went out (TCP's flow control then
// pushes back on the sender, as a slow link would).
constexpr size_t kMaxQueuedBytes = 8u << 20;
// Block, Unblock and Stop wait this long for the proxy thread at most.
constexpr auto kControlDeadline = std::chrono::seconds(10);

}  // namespace

class ProxyLink;

// Everything on the proxy thread, plus the counters (atomics: read from any
// thread).
struct TcpProxy::Impl {
  Impl(std::string name, uint16_t target) : name(std::move(name)), target(target) {}

  std::string name;
  uint16_t target;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
  std::atomic<bool> stopped = false;

  std::atomic<bool> blocked = false;
  std::atomic<int64_t> delay_ms = 0;
  // Proxy thread only.
  std::optional<BlockMode> block;
  std::unordered_set<std::shared_ptr<ProxyLink>> links;

  std::atomic<uint64_t> accepted = 0, refused = 0, target_unreachable = 0, reset_by_block = 0;
  std::atomic<uint64_t> bytes_forwarded = 0, bytes_dropped = 0;

  void StartAccept();
  void OnAccept(error_code ec, tcp::socket socket);
  void CloseAll(bool reset);
};

// One proxied connection: the accepted socket, the one to the target, and a
// pump each way. Lives while a handler or the proxy's set holds it.
class ProxyLink : public std::enable_shared_from_this<ProxyLink> {
 public:
  ProxyLink(TcpProxy::Impl* proxy, tcp::socket accepted)
      : proxy_(proxy),
        accepted_(std::move(accepted)),
        target_(proxy->io),
        up_(&accepted_, &target_, proxy->io),
        down_(&target_, &accepted_, proxy->io) {}

  // Connects to the target, then forwards; a blackholed link only reads and
  // drops what the accepted side sends.
  void Start(bool blackhole) {
    blackholed_ = blackhole;
    if (blackhole) {
      Read(up_);
      return;
    }
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), proxy_->target);
    target_.async_connect(endpoint, [self = shared_from_this()](error_code ec) {
      if (self->closed_) return;
      if (ec) {
        ++self->proxy_->target_unreachable;
        self->Close(/*reset=*/true);
        return;
      }
      error_code ignored;
      self->target_.set_option(tcp::no_delay(true), ignored);
      self->Read(self->up_);
      self->Read(self->down_);
    });
  }

  void Blackhole() {
    blackholed_ = true;
    for (Pump* p : {&up_, &down_}) {
      if (!p->writing) p->queue.clear(), p->queued_bytes = 0;
    }
  }
  bool blackholed() const { return blackholed_; }

  // Closes both sockets (at most once). `reset`: abortively (RST), as a cut
  // link; otherwise an orderly close passing on the end of a stream.
  void Close(bool reset) {
    if (closed_) return;
    closed_ = true;
    for (tcp::socket* s : {&accepted_, &target_}) {
      error_code ignored;
      if (reset && s->is_open()) s->set_option(asio::socket_base::linger(true, 0), ignored);
      s->close(ignored);
    }
    up_.timer.cancel();
    down_.timer.cancel();
    proxy_->links.erase(shared_from_this());
  }

 private:
  // One direction. Bytes read wait in `queue` until their time, then are
  // written in order, one write in flight at a time.
  struct Pump {
    Pump(tcp::socket* from, tcp::socket* to, asio::io_context& io) : from(from), to(to), timer(io) {}
    tcp::socket* from;
    tcp::socket* to;
    asio::steady_timer timer;
    std::array<char, 64 * 1024> buffer{};
    std::deque<std::pair<Clock::time_point, std::string>> queue;
    size_t queued_bytes = 0;
    bool writing = false;
    bool reading = false;
    bool ended = false;  // `from` ended its stream (or failed)
  };

  void Read(Pump& p) {
    p.reading = true;
    p.from->async_read_some(asio::buffer(p.buffer), [self = shared_from_this(), &p](error_code ec, size_t n) {
      p.reading = false;
      if (self->closed_) return;
      if (ec) {
        p.ended = true;
        if (!p.writing) self->Close(/*reset=*/false);
        return;
      }
      if (self->blackholed_) {
        self->proxy_->bytes_dropped += n;
        self->Read(p);
        return;
      }
      auto due = Clock::now() + std::chrono::milliseconds(self->proxy_->delay_ms.load());
      p.queue.emplace_back(due, std::string(p.buffer.data(), n));
      p.queued_bytes += n;
      if (!p.writing) self->Write(p);
      if (p.queued_bytes < kMaxQueuedBytes) self->Read(p);
    });
  }

  void Write(Pump& p) {
    if (closed_) return;
    if (blackholed_) {
      p.queue.clear();
      p.queued_bytes = 0;
    }
    if (p.queue.empty()) {
      p.writing = false;
      if (p.ended) Close(/*reset=*/false);
      return;
    }
    p.writing = true;
    if (p.queue.front().first > Clock::now()) {
      p.timer.expires_at(p.queue.front().first);
      p.timer.async_wait([self = shared_from_this(), &p](error_code) { self->Write(p); });
      return;
    }
    asio::async_write(*p.to, asio::buffer(p.queue.front().second),
                      [self = shared_from_this(), &p](error_code ec, size_t n) {
                        if (self->closed_) return;
                        if (ec) {
                          self->Close(/*reset=*/true);
                          return;
                        }
                        self->proxy_->bytes_forwarded += n;
                        p.queued_bytes -= p.queue.front().second.size();
                        p.queue.pop_front();
                        // Reading stopped at the limit: resume below it.
                        if (!p.reading && !p.ended && p.queued_bytes < kMaxQueuedBytes) self->Read(p);
                        self->Write(p);
                      });
  }

  TcpProxy::Impl* proxy_;
  tcp::socket accepted_;
  tcp::socket target_;
  Pump up_;    // accepted -> target
  Pump down_;  // target -> accepted
  bool closed_ = false;
  bool blackholed_ = false;
};

void TcpProxy::Impl::StartAccept() {
  acceptor->async_accept([this](error_code ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
}

void TcpProxy::Impl::OnAccept(error_code ec, tcp::socket socket) {
  if (stopped || !acceptor || !acceptor->is_open()) return;
  if (!ec) {
    ++accepted;
    if (block == BlockMode::kReset) {
      ++refused;
      error_code ignored;
      socket.set_option(asio::socket_base::linger(true, 0), ignored);
      socket.close(ignored);
    } else {
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto link = std::make_shared<ProxyLink>(this, std::move(socket));
      links.insert(link);
      link->Start(block == BlockMode::kBlackhole);
    }
  }
  StartAccept();
}

void TcpProxy::Impl::CloseAll(bool reset) {
  auto all = links;  // Close() erases from links
  for (const auto& link : all) link->Close(reset);
}

// ---------------------------------------------------------------- TcpProxy

TcpProxy::TcpProxy(std::string name, uint16_t target_port)
    : name_(std::move(name)), target_port_(target_port), impl_(std::make_shared<Impl>(name_, target_port)) {}

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(uint16_t target_port, std::string name) {
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(std::move(name), target_port));
  Impl& impl = *proxy->impl_;
  error_code ec;
  tcp::acceptor acceptor(impl.io);
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("proxy ", proxy->name_, ": cannot listen on 127.0.0.1:0: ", ec.message()));
  }
  proxy->port_ = acceptor.local_endpoint(ec).port();
  impl.acceptor.emplace(std::move(acceptor));
  impl.StartAccept();
  impl.thread = std::thread([&impl] { impl.io.run(); });
  return proxy;
}

TcpProxy::~TcpProxy() { Stop(); }

std::string TcpProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void TcpProxy::RunOnProxyThread(std::function<void()> fn) const {
  if (impl_->stopped) return;
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  asio::post(impl_->io, [fn = std::move(fn), done] {
    fn();
    done->set_value();
  });
  if (future.wait_for(kControlDeadline) != std::future_status::ready) {
    throw std::runtime_error(absl::StrCat("proxy ", name_, ": its thread did not run a command within ",
                                          std::chrono::seconds(kControlDeadline).count(), " s"));
  }
}

void TcpProxy::Block(BlockMode mode) {
  impl_->blocked = true;
  RunOnProxyThread([impl = impl_.get(), mode] {
    impl->block = mode;
    if (mode == BlockMode::kReset) {
      impl->reset_by_block += impl->links.size();
      impl->CloseAll(/*reset=*/true);
    } else {
      for (const auto& link : impl->links) link->Blackhole();
    }
  });
}

void TcpProxy::Unblock() {
  RunOnProxyThread([impl = impl_.get()] {
    impl->block.reset();
    // A blackholed stream lost bytes: it must not carry data again.
    std::vector<std::shared_ptr<ProxyLink>> holed;
    for (const auto& link : impl->links) {
      if (link->blackholed()) holed.push_back(link);
    }
    impl->reset_by_block += holed.size();
    for (const auto& link : holed) link->Close(/*reset=*/true);
  });
  impl_->blocked = false;
}

bool TcpProxy::blocked() const { return impl_->blocked.load(); }

void TcpProxy::SetDelay(std::chrono::milliseconds delay) { impl_->delay_ms = delay.count(); }

std::chrono::milliseconds TcpProxy::delay() const { return std::chrono::milliseconds(impl_->delay_ms.load()); }

TcpProxy::Counters TcpProxy::counters() const {
  Counters c;
  c.accepted = impl_->accepted;
  c.refused = impl_->refused;
  c.target_unreachable = impl_->target_unreachable;
  c.reset_by_block = impl_->reset_by_block;
  c.bytes_forwarded = impl_->bytes_forwarded;
  c.bytes_dropped = impl_->bytes_dropped;
  if (!impl_->stopped) {
    // The set lives on the proxy thread; ask it.
    std::atomic<uint64_t> open = 0;
    RunOnProxyThread([&] { open = impl_->links.size(); });
    c.open = open;
  }
  return c;
}

void TcpProxy::Stop() {
  if (!impl_ || impl_->stopped) return;
  RunOnProxyThread([impl = impl_.get()] {
    impl->stopped = true;
    error_code ignored;
    if (impl->acceptor) impl->acceptor->close(ignored);
    impl->CloseAll(/*reset=*/false);
    impl->work.reset();
  });
  // Everything is closed: what is left on the queue are cancelled
  // operations, which find their link closed and return.
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  // Handlers never run (and the links they hold) go with the io_context.
}

}  // namespace caracal::testing

// TcpProxy: forwarding, both ways of cutting a link, healing, delays, and a
// target that is down. Against a small echo server; every read has a
// deadline.

#include "tests/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace caracal::testing {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Echoes every byte back, on its own thread.
class EchoServer {
 public:
  EchoServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    Accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~EchoServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    explicit Session(tcp::socket s) : socket(std::move(s)) {}
    void Read() {
      socket.async_read_some(asio::buffer(buffer), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        if (ec) return;
        asio::async_write(self->socket, asio::buffer(self->buffer.data(), n),
                          [self](boost::system::error_code ec, size_t) {
                            if (!ec) self->Read();
                          });
      });
    }
    tcp::socket socket;
    std::array<char, 4096> buffer{};
  };
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (!ec) std::make_shared<Session>(std::move(s))->Read();
      Accept();
    });
  }
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

// A blocking client socket whose reads wait at most a deadline.
class Conn {
 public:
  explicit Conn(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Conn() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& s) { return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size()); }

  enum class Result { kData, kClosed, kTimeout };
  // Reads until `n` bytes came, the peer closed, or `timeout` passed.
  Result Read(size_t n, std::chrono::milliseconds timeout, std::string* out) {
    auto deadline = Clock::now() + timeout;
    while (out->size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Result::kTimeout;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out->size()), 0);
      if (r <= 0) return Result::kClosed;
      out->append(buf, static_cast<size_t>(r));
    }
    return Result::kData;
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Polls `ready` (for counters the proxy thread updates just after the bytes
// moved) until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& ready, std::chrono::milliseconds timeout = 5s) {
  auto deadline = Clock::now() + timeout;
  while (!ready()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::string EchoThrough(uint16_t port, const std::string& message, std::chrono::milliseconds timeout = 5s) {
  Conn c(port);
  if (!c.connected() || !c.Send(message)) return "<not sent>";
  std::string got;
  c.Read(message.size(), timeout, &got);
  return got;
}

TEST(TcpProxyTest, ForwardsBothWays) {
  EchoServer echo;
  auto proxy = TcpProxy::Start(echo.port(), "test");
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  EXPECT_NE((*proxy)->port(), echo.port());
  EXPECT_EQ(EchoThrough((*proxy)->port(), "hello"), "hello");
  std::string big(1 << 20, 'x');
  EXPECT_EQ(EchoThrough((*proxy)->port(), big).size(), big.size());
  EXPECT_EQ((*proxy)->counters().accepted, 2u);
  EXPECT_TRUE(Eventually([&] { return (*proxy)->counters().bytes_forwarded == 2 * (5 + big.size()); }))
      << (*proxy)->counters().bytes_forwarded;
}

TEST(TcpProxyTest, BlockResetsOpenConnectionsAndRefusesNewOnesUntilUnblocked) {
  EchoServer echo;
  auto proxy = TcpProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok());
  Conn open((*proxy)->port());
  ASSERT_TRUE(open.Send("a"));
  std::string got;
  ASSERT_EQ(open.Read(1, 5s, &got), Conn::Result::kData);

  (*proxy)->Block();

  EXPECT_TRUE((*proxy)->blocked());
  got.clear();
  EXPECT_EQ(open.Read(1, 5s, &got), Conn::Result::kClosed);
  {
    Conn refused((*proxy)->port());  // accepted by the kernel, then closed by the proxy
    refused.Send("b");
    got.clear();
    EXPECT_EQ(refused.Read(1, 5s, &got), Conn::Result::kClosed);
  }
  EXPECT_EQ((*proxy)->counters().reset_by_block, 1u);
  EXPECT_EQ((*proxy)->counters().refused, 1u);

  (*proxy)->Unblock();

  EXPECT_EQ(EchoThrough((*proxy)->port(), "healed"), "healed");
}

TEST(TcpProxyTest, BlackholeDropsSilentlyAndUnblockClosesTheHoledConnections) {
  EchoServer echo;
  auto proxy = TcpProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok());
  Conn open((*proxy)->port());
  ASSERT_TRUE(open.Send("a"));
  std::string got;
  ASSERT_EQ(open.Read(1, 5s, &got), Conn::Result::kData);

  (*proxy)->Block(TcpProxy::BlockMode::kBlackhole);

  ASSERT_TRUE(open.Send("lost"));
  got.clear();
  EXPECT_EQ(open.Read(1, 300ms, &got), Conn::Result::kTimeout);  // open, but nothing comes back
  Conn fresh((*proxy)->port());
  ASSERT_TRUE(fresh.Send("lost too"));
  EXPECT_EQ(fresh.Read(1, 300ms, &got), Conn::Result::kTimeout);

  (*proxy)->Unblock();

  EXPECT_EQ(open.Read(1, 5s, &got), Conn::Result::kClosed);
  EXPECT_EQ(fresh.Read(1, 5s, &got), Conn::Result::kClosed);
  EXPECT_TRUE(Eventually([&] { return (*proxy)->counters().bytes_dropped == 4u + 8u; }));
  EXPECT_EQ(EchoThrough((*proxy)->port(), "healed"), "healed");
}

TEST(TcpProxyTest, DelayHoldsEveryByteInEachDirection) {
  EchoServer echo;
  auto proxy = TcpProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok());
  Conn c((*proxy)->port());
  std::string got;
  ASSERT_TRUE(c.Send("warm"));
  ASSERT_EQ(c.Read(4, 5s, &got), Conn::Result::kData);

  (*proxy)->SetDelay(150ms);

  auto start = Clock::now();
  got.clear();
  ASSERT_TRUE(c.Send("slow"));
  ASSERT_EQ(c.Read(4, 5s, &got), Conn::Result::kData);
  auto took = Clock::now() - start;
  EXPECT_GE(took, 300ms);  // 150 ms there, 150 ms back
  EXPECT_LT(took, 3s);
  EXPECT_EQ(got, "slow");
}

TEST(TcpProxyTest, ATargetThatIsDownClosesTheAcceptedConnection) {
  uint16_t nobody = PickFreePort();
  auto proxy = TcpProxy::Start(nobody);
  ASSERT_TRUE(proxy.ok());
  Conn c((*proxy)->port());
  std::string got;
  EXPECT_EQ(c.Read(1, 5s, &got), Conn::Result::kClosed);
  EXPECT_EQ((*proxy)->counters().target_unreachable, 1u);
}

TEST(TcpProxyTest, StopClosesEverythingAndIsIdempotent) {
  EchoServer echo;
  auto proxy = TcpProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok());
  Conn c((*proxy)->port());
  ASSERT_TRUE(c.Send("x"));
  std::string got;
  ASSERT_EQ(c.Read(1, 5s, &got), Conn::Result::kData);
  (*proxy)->Stop();
  got.clear();
  EXPECT_EQ(c.Read(1, 5s, &got), Conn::Result::kClosed);
  (*proxy)->Stop();
}

}  // namespace
}  // namespace caracal::testing

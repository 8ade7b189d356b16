// Sessions that share a ClientRuntime share one TCP connection per server
// (framework/client/connection_pool.h): first the pool's channels on their
// own (request ids, failures, abandoning, backpressure), then whole clients
// against three in-process servers: one connection at the leader, each
// session's responses and events reaching only it and in order, failover of
// everyone on the connection with exactly-once application, Close.

#include <functional>

#include "absl/strings/str_join.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "framework/client/connection_pool.h"
#include "tests/client/client_cluster.h"
#include "tests/testing/tcp_proxy.h"

namespace caracal {
namespace {

using client::Channel;
using client::ConnectionPool;
using serialization::ClientResponseValue;

// Polls `done` until it holds or `timeout` passes (for counters that change
// on other threads: the proxy's, the pool's).
bool Eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

// An io_context on its own thread; Run() executes on it and waits.
class IoThread {
 public:
  IoThread() : thread_([this] { io_.run(); }) {}
  ~IoThread() {
    work_.reset();
    thread_.join();
  }
  template <typename F>
  void Run(F fn) {
    std::promise<void> ran;
    boost::asio::post(io_, [&] {
      fn();
      ran.set_value();
    });
    ASSERT_EQ(ran.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread thread_;
};

// What one channel was told, in order.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<absl::Status> connects;
  std::vector<ClientResponseValue> responses;
  std::vector<absl::Status> closes;
  template <typename T>
  void Add(std::vector<T>& to, T value) {
    std::lock_guard lock(mu);
    to.push_back(std::move(value));
    cv.notify_all();
  }
  template <typename T>
  bool WaitFor(std::vector<T>& what, size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return what.size() >= n; });
  }
  void Attach(Channel& channel) {
    channel.SetResponseHandler([this](ClientResponseValue r) { Add(responses, std::move(r)); });
    channel.SetClosedHandler([this](absl::Status why) { Add(closes, std::move(why)); });
  }
  Channel::ConnectCallback OnConnect() {
    return [this](absl::Status s) { Add(connects, std::move(s)); };
  }
};

// A pool on its own io thread with two channels, a and b.
struct PoolFixture {
  IoThread io;
  std::shared_ptr<ConnectionPool> pool;
  std::unique_ptr<Channel> a, b;
  Inbox a_inbox, b_inbox;

  PoolFixture(client::ClientConnectionOptions options = {}) {
    io.Run([&] {
      pool = std::make_shared<ConnectionPool>(io.io());
      a = pool->NewChannel("caracal", options);
      b = pool->NewChannel("caracal", options);
      a_inbox.Attach(*a);
      b_inbox.Attach(*b);
    });
  }
  ~PoolFixture() {
    io.Run([&] {
      a.reset();
      b.reset();
      pool.reset();
    });
  }
  void ConnectBoth(const std::string& address) {
    io.Run([&] {
      a->Connect(address, a_inbox.OnConnect());
      b->Connect(address, b_inbox.OnConnect());
    });
    ASSERT_TRUE(a_inbox.WaitFor(a_inbox.connects, 1));
    ASSERT_TRUE(b_inbox.WaitFor(b_inbox.connects, 1));
  }
};

TEST(ClientConnectionPoolTest, ChannelsWithEqualRequestIdsGetTheirOwnResponses) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  PoolFixture f;
  f.ConnectBoth(cluster.address(leader));
  EXPECT_TRUE(f.a_inbox.connects[0].ok()) << f.a_inbox.connects[0];
  EXPECT_TRUE(f.b_inbox.connects[0].ok()) << f.b_inbox.connects[0];
  EXPECT_EQ(f.pool->connections_opened(), 1u);
  EXPECT_EQ(f.pool->open_connections(), 1u);

  // The same id, 7, on both channels, for requests the server answers
  // differently.
  f.io.Run([&] {
    EXPECT_TRUE(f.a->Send({7, serialization::RegisterRequest{"pool-test", 3000}}).ok());
    EXPECT_TRUE(f.b->Send({7, serialization::ConnectRequest{"pool-test"}}).ok());
  });
  ASSERT_TRUE(f.a_inbox.WaitFor(f.a_inbox.responses, 1));
  ASSERT_TRUE(f.b_inbox.WaitFor(f.b_inbox.responses, 1));
  f.io.Run([] {});  // anything else already arrived would have been delivered by now
  std::lock_guard la(f.a_inbox.mu);
  std::lock_guard lb(f.b_inbox.mu);
  ASSERT_EQ(f.a_inbox.responses.size(), 1u);
  ASSERT_EQ(f.b_inbox.responses.size(), 1u);
  EXPECT_EQ(f.a_inbox.responses[0].request_id, 7u);
  EXPECT_TRUE(f.a_inbox.responses[0].status.ok()) << f.a_inbox.responses[0].status;
  EXPECT_TRUE(std::holds_alternative<serialization::RegisterResult>(f.a_inbox.responses[0].body));
  EXPECT_EQ(f.b_inbox.responses[0].request_id, 7u);
  EXPECT_TRUE(f.b_inbox.responses[0].status.ok()) << f.b_inbox.responses[0].status;
  EXPECT_TRUE(std::holds_alternative<std::monostate>(f.b_inbox.responses[0].body));
}

TEST(ClientConnectionPoolTest, AFailedConnectReachesEveryWaitingChannelAndLeavesThePool) {
  std::string nobody = absl::StrCat("127.0.0.1:", testing::PickFreePort());
  PoolFixture f;
  f.ConnectBoth(nobody);
  EXPECT_TRUE(absl::IsUnavailable(f.a_inbox.connects[0])) << f.a_inbox.connects[0];
  EXPECT_TRUE(absl::IsUnavailable(f.b_inbox.connects[0])) << f.b_inbox.connects[0];
  EXPECT_EQ(f.pool->connections_opened(), 1u);
  EXPECT_EQ(f.pool->open_connections(), 0u);
  EXPECT_EQ(f.pool->attached_channels(), 0u);
  f.io.Run([&] { EXPECT_TRUE(f.a->closed()); });
}

TEST(ClientConnectionPoolTest, AbandonClosesTheConnectionForEveryChannelAndTheNextConnectOpensAFreshOne) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  PoolFixture f;
  f.ConnectBoth(cluster.address(leader));
  ASSERT_TRUE(f.a_inbox.connects[0].ok());
  ASSERT_TRUE(f.b_inbox.connects[0].ok());

  f.io.Run([&] {
    f.a->Abandon(absl::UnavailableError("silent"));
    EXPECT_EQ(f.pool->open_connections(), 0u);  // gone from the pool at once
  });
  ASSERT_TRUE(f.b_inbox.WaitFor(f.b_inbox.closes, 1));
  EXPECT_TRUE(absl::IsUnavailable(f.b_inbox.closes[0])) << f.b_inbox.closes[0];
  EXPECT_EQ(f.b_inbox.closes[0].message(), "silent");
  EXPECT_TRUE(f.a_inbox.closes.empty());  // no callback after Abandon, as after Close

  Inbox c_inbox;
  std::unique_ptr<Channel> c;
  f.io.Run([&] {
    c = f.pool->NewChannel("caracal");
    c->Connect(cluster.address(leader), c_inbox.OnConnect());
  });
  ASSERT_TRUE(c_inbox.WaitFor(c_inbox.connects, 1));
  EXPECT_TRUE(c_inbox.connects[0].ok()) << c_inbox.connects[0];
  EXPECT_EQ(f.pool->connections_opened(), 2u);
  f.io.Run([&] { c.reset(); });
  EXPECT_EQ(f.pool->open_connections(), 0u);
}

TEST(ClientConnectionPoolTest, AFullBufferFailsOneRequestAndClosesNothing) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  client::ClientConnectionOptions options;
  options.max_queue_bytes = 256;
  PoolFixture f(options);
  f.io.Run([&] {
    f.a->Connect(cluster.address(leader), f.a_inbox.OnConnect());
    f.b->Connect(cluster.address(leader), f.b_inbox.OnConnect());
    // Connecting: the Hello waits in the buffer, so a large request does not fit.
    absl::Status s = f.b->Send({1, serialization::CommandRequest{1, 1, Bytes(std::string(1000, 'x'))}});
    EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  });
  ASSERT_TRUE(f.a_inbox.WaitFor(f.a_inbox.connects, 1));
  ASSERT_TRUE(f.b_inbox.WaitFor(f.b_inbox.connects, 1));
  EXPECT_TRUE(f.a_inbox.connects[0].ok()) << f.a_inbox.connects[0];
  EXPECT_TRUE(f.b_inbox.connects[0].ok()) << f.b_inbox.connects[0];
  f.io.Run([&] {
    EXPECT_TRUE(f.a->Send({1, serialization::ConnectRequest{"a"}}).ok());
    EXPECT_TRUE(f.b->Send({1, serialization::ConnectRequest{"b"}}).ok());
  });
  ASSERT_TRUE(f.a_inbox.WaitFor(f.a_inbox.responses, 1));
  ASSERT_TRUE(f.b_inbox.WaitFor(f.b_inbox.responses, 1));
  EXPECT_EQ(f.pool->connections_opened(), 1u);
  EXPECT_EQ(f.pool->open_connections(), 1u);
  EXPECT_TRUE(f.a_inbox.closes.empty());
  EXPECT_TRUE(f.b_inbox.closes.empty());
}

// ---- whole clients ----

// Per client: what it delivered, in order ("response <total>", "event <total>").
struct ClientJournals {
  explicit ClientJournals(size_t n) : journals(n) {}
  std::vector<Journal> journals;
  std::mutex mu;
  std::vector<std::string> errors;

  // Submits Add{id} with one event; records the response and the event.
  void Submit(Client& client, size_t who, uint64_t id) {
    client.Submit(Add{.amount = 1, .id = id, .events = 1}, [this, who, id](absl::StatusOr<int64_t> r) {
      if (!r.ok()) {
        std::lock_guard lock(mu);
        errors.push_back(absl::StrCat("client ", who, " command ", id, ": ", r.status().ToString()));
      }
      journals[who].Add(r.ok() ? absl::StrCat("response ", *r) : r.status().ToString());
    });
  }
  void Listen(Client& client, size_t who) {
    client.OnEvent<Added>("added", [this, who](Added a) { journals[who].Add(absl::StrCat("event ", a.total)); });
  }
  // Every journal holds `commands` (response T, event T) pairs with T
  // increasing: each command's own event follows its response, and no
  // other session's event (which would carry another total) got in.
  void ExpectEachClientSawOnlyItsOwnInOrder(size_t commands) {
    for (size_t who = 0; who < journals.size(); ++who) {
      ASSERT_TRUE(journals[who].WaitFor(2 * commands)) << "client " << who;
      std::lock_guard lock(journals[who].mu);
      const auto& e = journals[who].entries;
      ASSERT_EQ(e.size(), 2 * commands) << "client " << who << ": " << absl::StrJoin(e, " | ");
      int64_t previous = 0;
      for (size_t i = 0; i < commands; ++i) {
        ASSERT_TRUE(e[2 * i].starts_with("response ")) << "client " << who << ": " << absl::StrJoin(e, " | ");
        int64_t total = std::stoll(e[2 * i].substr(9));
        EXPECT_GT(total, previous) << "client " << who;
        EXPECT_EQ(e[2 * i + 1], absl::StrCat("event ", total)) << "client " << who << ": " << absl::StrJoin(e, " | ");
        previous = total;
      }
    }
  }
};

std::vector<std::unique_ptr<Client>> ConnectClients(size_t n, Client::Builder builder) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < n; ++i) {
    auto c = builder.Connect();
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) clients.push_back(*std::move(c));
  }
  return clients;
}

// A cluster, its leader, a proxy in front of the leader (it counts the
// connections the leader is given) and a runtime whose clients share
// connections.
class ClientSharedConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = cluster_.WaitForLeader();
    ASSERT_NE(leader_, 0u);
    auto proxy = testing::TcpProxy::Start(cluster_.port(leader_), "clients->leader");
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }

  TcpCluster cluster_;
  NodeId leader_ = 0;
  std::unique_ptr<testing::TcpProxy> proxy_;
  std::shared_ptr<ClientRuntime> runtime_ = ClientRuntime::Create();
  std::shared_ptr<client::ConnectionPool> pool_ = client::PoolOf(*runtime_);
};

TEST_F(ClientSharedConnectionTest, ClientsOfOneRuntimeShareOneConnectionAndGetOnlyTheirOwnResponsesAndEvents) {
  // Everything these clients send the leader goes through the proxy.
  constexpr size_t kClients = 16, kCommands = 20;
  ClientJournals journals(kClients);
  auto clients = ConnectClients(kClients, ClientFor(cluster_).WithServers({proxy_->address()}).WithRuntime(runtime_));
  ASSERT_EQ(clients.size(), kClients);
  for (size_t who = 0; who < kClients; ++who) journals.Listen(*clients[who], who);

  for (size_t i = 0; i < kCommands; ++i) {
    for (size_t who = 0; who < kClients; ++who) journals.Submit(*clients[who], who, who * 1000 + i);
  }
  journals.ExpectEachClientSawOnlyItsOwnInOrder(kCommands);
  EXPECT_TRUE(journals.errors.empty()) << journals.errors.front();
  EXPECT_EQ(Get(clients[0]->Submit(Total{})), static_cast<int64_t>(kClients * kCommands));

  EXPECT_EQ(proxy_->counters().accepted, 1u);
  EXPECT_EQ(proxy_->counters().open, 1u);
  EXPECT_EQ(pool_->connections_opened(), 1u);
  EXPECT_EQ(pool_->open_connections(), 1u);
  EXPECT_EQ(pool_->attached_channels(), kClients);

  clients.clear();
  EXPECT_EQ(pool_->open_connections(), 0u);
  EXPECT_TRUE(Eventually([&] { return proxy_->counters().open == 0; }));
}

TEST_F(ClientSharedConnectionTest, ClosingOneClientLeavesTheOthersAndTheLastOneClosesTheConnection) {
  constexpr size_t kClients = 4, kCommands = 30;
  ClientJournals journals(kClients);
  auto clients = ConnectClients(kClients, ClientFor(cluster_).WithServers({proxy_->address()}).WithRuntime(runtime_));
  ASSERT_EQ(clients.size(), kClients);
  for (size_t who = 1; who < kClients; ++who) journals.Listen(*clients[who], who);

  // Client 0 leaves while the others have commands in flight.
  for (size_t i = 0; i < kCommands; ++i) {
    for (size_t who = 1; who < kClients; ++who) journals.Submit(*clients[who], who, who * 1000 + i);
  }
  EXPECT_TRUE(clients[0]->Close().ok());
  EXPECT_EQ(pool_->attached_channels(), kClients - 1);
  for (size_t who = 1; who < kClients; ++who) {
    ASSERT_TRUE(journals.journals[who].WaitFor(2 * kCommands)) << "client " << who;
  }
  EXPECT_TRUE(journals.errors.empty()) << journals.errors.front();
  for (size_t who = 1; who < kClients; ++who) EXPECT_GT(Get(clients[who]->Submit(Total{})), 0);
  EXPECT_EQ(proxy_->counters().accepted, 1u);

  EXPECT_TRUE(clients[1]->Close().ok());
  EXPECT_TRUE(clients[2]->Close().ok());
  EXPECT_EQ(pool_->open_connections(), 1u);
  EXPECT_EQ(proxy_->counters().open, 1u);
  EXPECT_TRUE(clients[3]->Close().ok());
  EXPECT_EQ(pool_->open_connections(), 0u);
  EXPECT_TRUE(Eventually([&] { return proxy_->counters().open == 0; }));
  EXPECT_EQ(proxy_->counters().accepted, 1u);
}

TEST_F(ClientSharedConnectionTest, EveryClientOnTheConnectionMovesToTheNewLeaderAndAppliesEachCommandOnce) {
  // Straight to the servers (not through the proxy): the clients must find
  // the new leader themselves.
  constexpr size_t kClients = 16, kBefore = 30, kAfter = 10;
  ClientJournals journals(kClients);
  auto clients = ConnectClients(kClients, ClientFor(cluster_).WithRuntime(runtime_));
  ASSERT_EQ(clients.size(), kClients);
  EXPECT_EQ(pool_->open_connections(), 1u);  // all at the leader
  for (size_t who = 0; who < kClients; ++who) journals.Listen(*clients[who], who);

  for (size_t i = 0; i < kBefore; ++i) {
    for (size_t who = 0; who < kClients; ++who) journals.Submit(*clients[who], who, who * 1000 + i);
  }
  ASSERT_TRUE(journals.journals[0].WaitFor(4));  // some done, most still in flight
  cluster_.Stop(leader_);
  for (size_t i = kBefore; i < kBefore + kAfter; ++i) {
    for (size_t who = 0; who < kClients; ++who) journals.Submit(*clients[who], who, who * 1000 + i);
  }
  journals.ExpectEachClientSawOnlyItsOwnInOrder(kBefore + kAfter);
  EXPECT_TRUE(journals.errors.empty()) << journals.errors.front();

  // Exactly once: every command applied once, the total is their number.
  std::vector<std::future<absl::StatusOr<uint64_t>>> applications;
  for (size_t who = 0; who < kClients; ++who) {
    for (size_t i = 0; i < kBefore + kAfter; ++i) {
      applications.push_back(clients[who]->Submit(Applications{.id = who * 1000 + i}));
    }
  }
  for (auto& a : applications) EXPECT_EQ(Get(std::move(a)), 1u);
  EXPECT_EQ(Get(clients[0]->Submit(Total{})), static_cast<int64_t>(kClients * (kBefore + kAfter)));
  // And they share one connection again, to the new leader.
  EXPECT_TRUE(Eventually([&] { return pool_->open_connections() == 1; })) << pool_->open_connections();
  EXPECT_EQ(pool_->attached_channels(), kClients);
}

TEST_F(ClientSharedConnectionTest, AClientGivingUpOnASilentServerMovesEveryClientOnTheConnection) {
  // Keep-alives every 10 s: within this test only client 0, which has a
  // command pending, can notice that the server went silent.
  auto clients = ConnectClients(4, ClientFor(cluster_)
                                       .WithServers({proxy_->address()})
                                       .WithSessionTimeout(std::chrono::seconds(30))
                                       .WithRuntime(runtime_));
  ASSERT_EQ(clients.size(), 4u);
  ASSERT_EQ(Get(clients[0]->Submit(Add{.amount = 1, .id = 1})), 1);
  ASSERT_EQ(pool_->connections_opened(), 1u);

  // Packets to and from the leader now vanish on the shared connection.
  proxy_->Block(testing::TcpProxy::BlockMode::kBlackhole);
  auto pending = clients[0]->Submit(Add{.amount = 1, .id = 2});
  // After the attempt timeout client 0 leaves for the leader's own address
  // (learned from the members list), and closes the silent connection for
  // the idle clients too: all of them end up on one fresh connection.
  EXPECT_EQ(Get(std::move(pending)), 2);
  EXPECT_TRUE(Eventually([&] { return pool_->open_connections() == 1 && pool_->attached_channels() == 4; },
                         std::chrono::seconds(3)))
      << pool_->open_connections() << " connections, " << pool_->attached_channels() << " channels";
  EXPECT_EQ(pool_->connections_opened(), 2u);
  for (size_t who = 1; who < clients.size(); ++who) {
    EXPECT_EQ(Get(clients[who]->Submit(Applications{.id = 2})), 1u);
  }
}

TEST_F(ClientSharedConnectionTest, ClientsThatOptOutOpenConnectionsOfTheirOwn) {
  auto clients = ConnectClients(
      3, ClientFor(cluster_).WithServers({proxy_->address()}).WithRuntime(runtime_).WithSharedConnections(false));
  ASSERT_EQ(clients.size(), 3u);
  for (size_t who = 0; who < clients.size(); ++who) {
    EXPECT_EQ(Get(clients[who]->Submit(Add{.amount = 1, .id = who})), static_cast<int64_t>(who + 1));
  }
  EXPECT_EQ(proxy_->counters().accepted, 3u);
  EXPECT_EQ(pool_->connections_opened(), 0u);
}

}  // namespace
}  // namespace caracal

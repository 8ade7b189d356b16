// caracal::Client against three in-process servers talking TCP on
// 127.0.0.1: sessions, pipelined commands completing in order, events
// ordered with responses, failover with exactly-once application, session
// loss and recovery, unreachable clusters, Close().

#include "caracal/client.h"

#include <condition_variable>
#include <map>
#include <mutex>

#include "absl/strings/str_join.h"
#include "boost/asio/post.hpp"
#include "caracal/server.h"
#include "framework/client/client_connection.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/client/client_cluster.h"
#include "tests/testing/process.h"

namespace caracal {
namespace {

TEST(ClientTest, PipelinedCommandsCompleteInOrderAndQueriesSeeThem) {
  TcpCluster cluster;
  Journal journal;  // before the client: callbacks may run until it closes
  auto client = ClientFor(cluster).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_NE((*client)->session(), 0u);
  EXPECT_EQ((*client)->state(), ClientState::kConnected);

  for (int i = 1; i <= 200; ++i) {
    (*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i)}, [&, i](absl::StatusOr<int64_t> r) {
      journal.Add(r.ok() ? absl::StrCat(i, ":", *r) : absl::StrCat(i, ":", r.status().ToString()));
    });
  }
  ASSERT_TRUE(journal.WaitFor(200));
  for (int i = 1; i <= 200; ++i) EXPECT_EQ(journal.entries[i - 1], absl::StrCat(i, ":", i));
  EXPECT_EQ(Get((*client)->Submit(Total{})), 200);
  EXPECT_EQ(Get((*client)->Submit(Total{}, Consistency::kSequential)), 200);
  EXPECT_EQ(Get((*client)->Submit(Total{}, Consistency::kLinearizableLease)), 200);
  EXPECT_GE((*client)->last_index(), 200u);
  EXPECT_TRUE((*client)->Close().ok());
  EXPECT_EQ((*client)->state(), ClientState::kClosed);
}

// Copycat: a session's queries are sequenced after the commands it submitted
// before them, at every consistency level, and everything a session submits
// completes in submission order. Nothing here waits for a response before
// submitting the query that must see it.
void PipelinedQueriesSeeEarlierCommands(ConnectionStrategy strategy) {
  TcpCluster cluster;
  Journal journal;
  auto client = ClientFor(cluster).WithConnectionStrategy(strategy).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  constexpr int kPairs = 150;
  const Consistency levels[] = {Consistency::kLinearizable, Consistency::kLinearizableLease,
                                Consistency::kSequential};
  for (int i = 1; i <= kPairs; ++i) {
    (*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i)}, [&, i](absl::StatusOr<int64_t> r) {
      journal.Add(r.ok() ? absl::StrCat("add ", i, ": ", *r) : r.status().ToString());
    });
    Consistency level = levels[i % 3];
    (*client)->Submit(Total{}, level, [&, i, level](absl::StatusOr<int64_t> r) {
      // It must count every Add submitted before it: i of them, at least.
      journal.Add(!r.ok()          ? r.status().ToString()
                  : *r >= i        ? absl::StrCat("total ", i, ": ok")
                                   : absl::StrCat("total ", i, " at level ", static_cast<int>(level), ": saw ", *r));
    });
  }
  ASSERT_TRUE(journal.WaitFor(2 * kPairs));
  std::vector<std::string> expected;
  for (int i = 1; i <= kPairs; ++i) {
    expected.push_back(absl::StrCat("add ", i, ": ", i));
    expected.push_back(absl::StrCat("total ", i, ": ok"));
  }
  EXPECT_EQ(journal.entries, expected);
}

TEST(ClientTest, PipelinedQueriesSeeTheirSessionsEarlierCommandsAndCompleteInOrder) {
  PipelinedQueriesSeeEarlierCommands(ConnectionStrategy::kLeader);
}

TEST(ClientTest, PipelinedSequentialQueriesOnFollowersSeeTheirSessionsEarlierCommands) {
  PipelinedQueriesSeeEarlierCommands(ConnectionStrategy::kFollowers);
}

TEST(ClientTest, EventsFollowTheirCommandsResponseAndPrecedeTheNext) {
  TcpCluster cluster;
  Journal journal;
  auto client = ClientFor(cluster).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  (*client)->OnEvent<Added>("added", [&](Added a) { journal.Add(absl::StrCat("event ", a.total, "/", a.n)); });
  for (int i = 1; i <= 50; ++i) {
    (*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i), .events = 2},
                      [&](absl::StatusOr<int64_t> r) {
                        journal.Add(r.ok() ? absl::StrCat("response ", *r) : r.status().ToString());
                      });
  }
  ASSERT_TRUE(journal.WaitFor(150));
  std::vector<std::string> expected;
  for (int i = 1; i <= 50; ++i) {
    expected.push_back(absl::StrCat("response ", i));
    expected.push_back(absl::StrCat("event ", i, "/0"));
    expected.push_back(absl::StrCat("event ", i, "/1"));
  }
  EXPECT_EQ(journal.entries, expected);
}

TEST(ClientTest, LeaderFailoverAppliesEveryCommandExactlyOnceAndKeepsEventsInOrder) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  Journal journal;
  std::atomic<int> done = 0;
  std::mutex mu;
  std::vector<std::string> errors;
  auto client = ClientFor(cluster).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  (*client)->OnEvent<Added>("added", [&](Added a) { journal.Add(absl::StrCat("event ", a.total)); });
  auto submit = [&](int from, int to) {
    for (int i = from; i <= to; ++i) {
      (*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i), .events = 1},
                        [&, i](absl::StatusOr<int64_t> r) {
                          journal.Add(r.ok() ? absl::StrCat("response ", *r) : r.status().ToString());
                          if (!r.ok()) {
                            std::lock_guard lock(mu);
                            errors.push_back(absl::StrCat(i, ": ", r.status().ToString()));
                          }
                          ++done;
                        });
    }
  };
  submit(1, 100);
  ASSERT_TRUE(journal.WaitFor(100));  // some done, some in flight
  cluster.Stop(leader);
  submit(101, 300);
  ASSERT_TRUE(journal.WaitFor(600));
  EXPECT_TRUE(errors.empty()) << errors.front();
  // Response i, then its event, for every i: nothing lost, nothing twice.
  std::vector<std::string> expected;
  for (int i = 1; i <= 300; ++i) {
    expected.push_back(absl::StrCat("response ", i));
    expected.push_back(absl::StrCat("event ", i));
  }
  std::lock_guard lock(journal.mu);
  EXPECT_EQ(journal.entries.size(), expected.size());
  for (size_t i = 0; i < std::min(journal.entries.size(), expected.size()); ++i) {
    if (journal.entries[i] != expected[i]) {
      ADD_FAILURE() << "delivery " << i << " is '" << journal.entries[i] << "', expected '" << expected[i]
                    << "'; around it: " << absl::StrJoin(journal.entries.begin() + (i > 4 ? i - 4 : 0),
                                                         journal.entries.begin() + std::min(i + 6, journal.entries.size()), " | ");
      break;
    }
  }
  for (uint64_t id : {1u, 99u, 100u, 101u, 150u, 300u}) {
    EXPECT_EQ(Get((*client)->Submit(Applications{.id = id})), 1u) << "command " << id;
  }
}

TEST(ClientTest, AnExpiredSessionIsRecoveredWithANewOne) {
  TcpCluster cluster;
  Journal states;
  auto client = ClientFor(cluster).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  uint64_t first = (*client)->session();
  (*client)->OnStateChange([&](ClientState s) { states.Add(ClientStateName(s)); });
  ASSERT_EQ(Get((*client)->Submit(Add{.amount = 5, .id = 1})), 5);

  // Somebody else closes our session (as an expiry would): the next
  // keep-alive learns it, and RECOVER registers a new one.
  boost::asio::io_context io;
  client::ClientConnection raw(io, "caracal");
  NodeId leader = cluster.WaitForLeader();
  auto connected = raw.Connect(cluster.address(leader));
  std::promise<absl::Status> unregistered;
  raw.SetResponseHandler([&](serialization::ClientResponseValue r) { unregistered.set_value(r.status); });
  std::thread t([&] { io.run_for(std::chrono::seconds(10)); });
  ASSERT_EQ(connected.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(connected.get().ok());
  boost::asio::post(io, [&] { (void)raw.Send({1, serialization::UnregisterRequest{first}}); });
  auto f = unregistered.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(f.get().ok());
  boost::asio::post(io, [&] {
    raw.Close();
    io.stop();
  });
  t.join();

  ASSERT_TRUE(states.WaitFor(2));
  EXPECT_EQ(states.entries[0], "SUSPENDED");
  EXPECT_EQ(states.entries[1], "CONNECTED");
  EXPECT_NE((*client)->session(), first);
  EXPECT_EQ(Get((*client)->Submit(Add{.amount = 1, .id = 2})), 6);
}

TEST(ClientTest, CloseStrategyClosesTheClientWhenItsSessionIsGone) {
  TcpCluster cluster;
  Journal states;
  auto client = ClientFor(cluster).WithRecoveryStrategy(RecoveryStrategy::kClose).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  (*client)->OnStateChange([&](ClientState s) { states.Add(ClientStateName(s)); });
  // Close the session behind its back, through a second client's connection.
  auto other = ClientFor(cluster).Connect();
  ASSERT_TRUE(other.ok());
  boost::asio::io_context io;
  client::ClientConnection raw(io, "caracal");
  auto connected = raw.Connect(cluster.address(cluster.WaitForLeader()));
  std::promise<void> answered;
  raw.SetResponseHandler([&](serialization::ClientResponseValue) { answered.set_value(); });
  std::thread t([&] { io.run_for(std::chrono::seconds(10)); });
  ASSERT_EQ(connected.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  boost::asio::post(io, [&] { (void)raw.Send({1, serialization::UnregisterRequest{(*client)->session()}}); });
  ASSERT_EQ(answered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  boost::asio::post(io, [&] {
    raw.Close();
    io.stop();
  });
  t.join();
  ASSERT_TRUE(states.WaitFor(1));
  EXPECT_EQ(states.entries.back(), "CLOSED");
  auto r = (*client)->Submit(Add{.amount = 1, .id = 1}).get();
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
  // The other session is unaffected.
  EXPECT_EQ(Get((*other)->Submit(Add{.amount = 2, .id = 2})), 2);
}

TEST(ClientTest, ManySessionsShareOneRuntime) {
  TcpCluster cluster;
  auto runtime = ClientRuntime::Create();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 10; ++i) {
    auto c = ClientFor(cluster).WithRuntime(runtime).Connect();
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(*std::move(c));
  }
  std::vector<std::future<absl::StatusOr<int64_t>>> results;
  for (int round = 0; round < 10; ++round) {
    for (size_t i = 0; i < clients.size(); ++i) {
      results.push_back(clients[i]->Submit(Add{.amount = 1, .id = round * 100 + i}));
    }
  }
  for (auto& r : results) Get(std::move(r));
  EXPECT_EQ(Get(clients[0]->Submit(Total{})), 100);
  // Closing some leaves the others (and the shared thread) working.
  for (size_t i = 0; i < 5; ++i) EXPECT_TRUE(clients[i]->Close().ok());
  EXPECT_EQ(Get(clients[9]->Submit(Add{.amount = 1, .id = 5000})), 101);
  clients.clear();
}

TEST(ClientTest, AnUnreachableClusterFailsConnectWithAClearError) {
  std::string nobody = absl::StrCat("127.0.0.1:", testing::PickFreePort());
  auto client = Client::Builder().WithServers({nobody}).WithConnectTimeout(std::chrono::milliseconds(500)).Connect();
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(absl::IsUnavailable(client.status())) << client.status();
  EXPECT_NE(client.status().message().find(nobody), std::string::npos) << client.status();
  auto bad = Client::Builder().WithServers({"no-port"}).Connect();
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
}

TEST(ClientTest, ApplicationErrorsReachTheCaller) {
  TcpCluster cluster;
  auto client = ClientFor(cluster).Connect();
  ASSERT_TRUE(client.ok());
  // An operation this state machine does not know.
  auto r = (*client)->SubmitCommand(codec::EncodeOperation(Total{})).get();
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  // The session goes on.
  EXPECT_EQ(Get((*client)->Submit(Add{.amount = 3, .id = 1})), 3);
}

TEST(ClientTest, FollowersStrategySendsSequentialReadsToAFollowerAndSurvivesItsLoss) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  auto client = ClientFor(cluster).WithConnectionStrategy(ConnectionStrategy::kFollowers).Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 1; i <= 20; ++i) {
    ASSERT_EQ(Get((*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i)})), i);
    // A follower answers only once it applied what this client saw.
    EXPECT_EQ(Get((*client)->Submit(Total{}, Consistency::kSequential)), i);
  }
  uint64_t follower_reads = 0;
  for (NodeId id = 1; id <= 3; ++id) {
    if (id != leader) follower_reads += cluster.server(id)->Info().queries_served;
  }
  EXPECT_EQ(follower_reads, 20u);
  EXPECT_EQ(cluster.server(leader)->Info().queries_served, 0u);
  // Losing that follower: reads fall back and go on.
  for (NodeId id = 1; id <= 3; ++id) {
    if (id != leader && cluster.server(id)->Info().queries_served > 0) cluster.Stop(id);
  }
  for (int i = 21; i <= 30; ++i) {
    ASSERT_EQ(Get((*client)->Submit(Add{.amount = 1, .id = static_cast<uint64_t>(i)})), i);
    EXPECT_EQ(Get((*client)->Submit(Total{}, Consistency::kSequential)), i);
  }
}

// Registers a session over a raw connection and never keeps it alive.
uint64_t AbandonedSession(const std::string& leader_address, uint64_t timeout_ms) {
  boost::asio::io_context io;
  client::ClientConnection raw(io, "caracal");
  auto connected = raw.Connect(leader_address);
  std::promise<serialization::ClientResponseValue> answer;
  raw.SetResponseHandler([&](serialization::ClientResponseValue r) { answer.set_value(std::move(r)); });
  boost::asio::post(io, [&] { (void)raw.Send({1, serialization::RegisterRequest{"abandoned", timeout_ms}}); });
  auto f = answer.get_future();
  std::thread t([&] { io.run_for(std::chrono::seconds(10)); });
  bool ready = f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  boost::asio::post(io, [&] {
    raw.Close();
    io.stop();
  });
  t.join();
  EXPECT_TRUE(connected.get().ok());
  if (!ready) return 0;
  auto r = f.get();
  EXPECT_TRUE(r.status.ok()) << r.status;
  const auto* result = std::get_if<serialization::RegisterResult>(&r.body);
  return result != nullptr ? result->session : 0;
}

// A raw protocol connection to one server: requests go out as given (no
// client library reordering or retrying), responses are collected by id.
class RawConnection {
 public:
  explicit RawConnection(const std::string& address) : conn_(io_, "caracal") {
    connected_ = conn_.Connect(address);
    conn_.SetResponseHandler([this](serialization::ClientResponseValue r) {
      std::lock_guard lock(mu_);
      responses_[r.request_id] = std::move(r);
      cv_.notify_all();
    });
    thread_ = std::thread([this] { io_.run_for(std::chrono::seconds(60)); });
  }
  ~RawConnection() {
    boost::asio::post(io_, [this] {
      conn_.Close();
      io_.stop();
    });
    thread_.join();
  }
  void Send(uint64_t id, serialization::ClientRequestBody body) {
    boost::asio::post(io_, [this, id, body = std::move(body)]() mutable {
      EXPECT_TRUE(conn_.Send({id, std::move(body)}).ok());
    });
  }
  // Registers a session (request `id`); its id, or 0 if it failed.
  uint64_t Register(uint64_t id) {
    Send(id, serialization::RegisterRequest{"raw", 10'000});
    auto registered = Wait(id);
    const auto* result = std::get_if<serialization::RegisterResult>(&registered.body);
    EXPECT_TRUE(registered.status.ok() && result != nullptr) << registered.status;
    return result != nullptr ? result->session : 0;
  }
  // The response to request `id` (a default one after 20 s without it).
  serialization::ClientResponseValue Wait(uint64_t id) {
    std::unique_lock lock(mu_);
    bool got = cv_.wait_for(lock, std::chrono::seconds(20), [&] { return responses_.contains(id); });
    EXPECT_TRUE(got) << "no response to request " << id;
    return got ? responses_[id] : serialization::ClientResponseValue{};
  }

 private:
  boost::asio::io_context io_;
  client::ClientConnection conn_;
  std::future<absl::Status> connected_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, serialization::ClientResponseValue> responses_;
  std::thread thread_;
};

Bytes AddBytes(int64_t amount, uint64_t id) { return Bytes(codec::EncodeOperation(Add{.amount = amount, .id = id})); }

// DESIGN.md section 4 / Copycat: the leader sequences a session's commands
// before they enter the log. Command 2 arrives first; it waits for command 1,
// and both run at their own, increasing, indexes.
TEST(ClientTest, TheLeaderPutsAnEarlyCommandIntoTheLogAfterItsPredecessor) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  RawConnection raw(cluster.address(leader));
  uint64_t session = raw.Register(/*request_id=*/1);
  ASSERT_NE(session, 0u);
  raw.Send(2, serialization::CommandRequest{session, 2, AddBytes(10, 2), 0});
  raw.Send(3, serialization::CommandRequest{session, 1, AddBytes(1, 1), 0});
  auto second = raw.Wait(2), first = raw.Wait(3);
  ASSERT_TRUE(first.status.ok()) << first.status;
  ASSERT_TRUE(second.status.ok()) << second.status;
  const auto& r1 = std::get<serialization::CommandResult>(first.body);
  const auto& r2 = std::get<serialization::CommandResult>(second.body);
  EXPECT_LT(r1.index, r2.index) << "command 2 must enter the log after command 1";
  EXPECT_EQ(*codec::DecodeResult<Add>(r1.result.view()), 1);
  EXPECT_EQ(*codec::DecodeResult<Add>(r2.result.view()), 11);
}

// A command whose predecessor never reaches the leader is not held forever:
// it is refused, retryably, so the client resends its pending commands.
TEST(ClientTest, AnEarlyCommandWhosePredecessorNeverArrivesIsRefusedInBoundedTime) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  RawConnection raw(cluster.address(leader));
  uint64_t session = raw.Register(/*request_id=*/1);
  ASSERT_NE(session, 0u);
  raw.Send(2, serialization::CommandRequest{session, 5, AddBytes(1, 5), 0});
  auto refused = raw.Wait(2);
  EXPECT_TRUE(absl::IsUnavailable(refused.status)) << refused.status;
  EXPECT_NE(refused.status.message().find("arrived before command 1"), std::string::npos) << refused.status;
  auto applications = cluster.server(leader)->Submit(Applications{.id = 5});
  ASSERT_TRUE(applications.ok()) << applications.status();
  EXPECT_EQ(*applications, 0u) << "it never ran";
}

TEST(ClientTest, AnAbandonedSessionExpiresInAnIdleClusterWhileLiveOnesSurviveALeaderChange) {
  TcpCluster cluster;
  NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 20; ++i) {
    auto c = ClientFor(cluster).WithSessionTimeout(std::chrono::milliseconds(1000)).Connect();
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(*std::move(c));
  }
  std::vector<uint64_t> sessions;
  for (auto& c : clients) sessions.push_back(c->session());
  uint64_t abandoned = AbandonedSession(cluster.address(leader), 1000);
  ASSERT_NE(abandoned, 0u);

  // Nobody writes; the leader goes away; the idle sessions stay alive
  // through the election (the new leader's Initialize entry restarts their
  // clocks) while the abandoned one expires on log time.
  cluster.Stop(leader);
  std::vector<uint64_t> expired;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = clients[0]->Submit(Expired{}).get();
    if (r.ok() && !r->empty()) {
      expired = *r;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(expired, std::vector<uint64_t>{abandoned});
  // Well past the live sessions' timeout: still the same sessions, still usable.
  auto settle = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < settle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // lets log time pass; not synchronisation
  }
  for (size_t i = 0; i < clients.size(); ++i) {
    EXPECT_EQ(clients[i]->session(), sessions[i]);
    EXPECT_EQ(Get(clients[i]->Submit(Add{.amount = 1, .id = 1000 + i})), static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(Get(clients[0]->Submit(Expired{})), std::vector<uint64_t>{abandoned});
}

}  // namespace
}  // namespace caracal

// ClientConnection against a real TcpTransport (and against raw sockets
// playing a broken server or a broken client), all on one io_context on
// 127.0.0.1. Every wait is bounded (RunUntil); nothing sleeps.

#include "framework/client/client_connection.h"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "gtest/gtest.h"
#include "serialization/client_protocol.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "framework/transport/tcp_transport.h"
#include "tests/transport/transport_test_util.h"

namespace caracal::client {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using serialization::ClientRequestValue;
using serialization::ClientResponseValue;
using serialization::PublishEventsValue;
using transport::ClientConnectionId;
using transport::TcpTransport;
using transport::TcpTransportOptions;
using transport::testing::Numbered;
using transport::testing::RunFor;
using transport::testing::RunUntil;
using namespace std::chrono_literals;

constexpr char kCluster[] = "test-cluster";

std::string Loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

uint16_t UnusedPort() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

ClientRequestValue Command(uint64_t id, std::string operation = "op") {
  return {id, serialization::CommandRequest{1, id, Bytes(std::move(operation))}};
}

// The answer the test servers give: echoes the request id, and for a command
// a result naming it.
ClientResponseValue AnswerTo(const ClientRequestValue& request) {
  ClientResponseValue response;
  response.request_id = request.request_id;
  response.leader = 1;
  if (auto* c = std::get_if<serialization::CommandRequest>(&request.body)) {
    response.body = serialization::CommandResult{request.request_id, 0,
                                                   Bytes("result-of-" + std::string(c->operation.view()))};
  } else if (std::holds_alternative<serialization::RegisterRequest>(request.body)) {
    response.body = serialization::RegisterResult{request.request_id, 5000};
  } else if (std::holds_alternative<serialization::QueryRequest>(request.body)) {
    response.status = absl::FailedPreconditionError("not the leader");
    response.members = {{1, "127.0.0.1:1", serialization::MemberType::kActive}};
  }
  return response;
}

// What one client received, in order, and how it ended.
struct ClientLog {
  std::vector<std::variant<ClientResponseValue, PublishEventsValue>> received;
  std::optional<absl::Status> closed;
  size_t responses() const {
    size_t n = 0;
    for (const auto& r : received) n += r.index() == 0;
    return n;
  }
};

// A raw blocking socket playing a client, driven outside the io_context.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void Write(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

 private:
  asio::io_context io_;
  tcp::socket socket_;
};

std::string ClientHello(const std::string& cluster = kCluster) {
  std::string out;
  serialization::AppendHelloFrame({0, cluster}, &out);
  return out;
}

std::string RequestFrame(const ClientRequestValue& request) {
  std::string out;
  serialization::AppendClientRequestFrame(request, &out);
  return out;
}

// A TcpTransport (raft node 1, serving clients) and, on demand, a second raft
// node and clients, all on io_.
class ClientConnectionTest : public ::testing::Test {
 protected:
  TcpTransport& StartServer(NodeId id, TcpTransportOptions options = {}) {
    auto server =
        std::make_unique<TcpTransport>(io_, id, kCluster, absl::flat_hash_map<NodeId, std::string>{}, options);
    auto status = server->Listen("127.0.0.1:0");
    EXPECT_TRUE(status.ok()) << status;
    server->SetHandler([this, id](raft::Message m) { raft_inbox_[id].push_back(std::move(m)); });
    server->SetClientHandler([this, raw = server.get()](ClientConnectionId client, ClientRequestValue request) {
      requests_.push_back({client, request});
      if (answer_) answer_(*raw, client, request);
    });
    server->SetClientClosedHandler(
        [this](ClientConnectionId client, absl::Status reason) { server_saw_closed_[client] = reason; });
    auto& ref = *server;
    servers_[id] = std::move(server);
    return ref;
  }

  // Raft nodes 1 and 2, introduced to each other.
  void StartTwoRaftNodes() {
    StartServer(1);
    StartServer(2);
    servers_[1]->SetPeerAddress(2, Loopback(servers_[2]->port()));
    servers_[2]->SetPeerAddress(1, Loopback(servers_[1]->port()));
  }

  // Answers every request with AnswerTo(request) and, after a command, pushes
  // one event batch for it.
  void AnswerEveryRequest() {
    answer_ = [this](TcpTransport& server, ClientConnectionId client, const ClientRequestValue& request) {
      EXPECT_TRUE(server.SendToClient(client, AnswerTo(request)).ok());
      if (std::holds_alternative<serialization::CommandRequest>(request.body)) {
        PublishEventsValue events{
            1, pushed_index_ + 1, pushed_index_, {{"done", absl::StrCat("payload-", request.request_id)}}};
        ++pushed_index_;
        EXPECT_TRUE(server.PushToClient(client, events).ok());
      }
    };
  }

  // A client of `server` with handlers recording into logs_[n]; connected.
  ClientConnection& Connect(uint16_t port, ClientConnectionOptions options = {}, std::string cluster = kCluster) {
    const size_t n = clients_.size();
    clients_.push_back(std::make_unique<ClientConnection>(io_, std::move(cluster), options));
    logs_.emplace_back();
    auto& client = *clients_.back();
    client.SetResponseHandler([this, n](ClientResponseValue r) { logs_[n].received.emplace_back(std::move(r)); });
    client.SetEventsHandler([this, n](PublishEventsValue e) { logs_[n].received.emplace_back(std::move(e)); });
    client.SetClosedHandler([this, n](absl::Status reason) { logs_[n].closed = reason; });
    std::optional<absl::Status> connected;
    client.Connect(Loopback(port), [&](absl::Status s) { connected = s; });
    EXPECT_TRUE(RunUntil(io_, [&] { return connected.has_value(); }));
    EXPECT_TRUE(connected.has_value() && connected->ok()) << (connected ? *connected : absl::UnknownError("none"));
    return client;
  }

  // Waits until the server knows the client connection of the last request.
  ClientConnectionId LastClientId() { return requests_.empty() ? 0 : requests_.back().first; }

  asio::io_context io_;
  std::map<NodeId, std::unique_ptr<TcpTransport>> servers_;
  std::map<NodeId, std::vector<raft::Message>> raft_inbox_;
  std::vector<std::pair<ClientConnectionId, ClientRequestValue>> requests_;
  std::map<ClientConnectionId, absl::Status> server_saw_closed_;
  std::function<void(TcpTransport&, ClientConnectionId, const ClientRequestValue&)> answer_;
  Index pushed_index_ = 0;
  std::vector<std::unique_ptr<ClientConnection>> clients_;
  std::vector<ClientLog> logs_;
};

// ---- the happy path ----

TEST_F(ClientConnectionTest, ServesRaftPeersAndClientsOnOneTransport) {
  StartTwoRaftNodes();
  AnswerEveryRequest();
  auto& client = Connect(servers_[1]->port());

  std::vector<ClientRequestValue> sent = {
      {1, serialization::ConnectRequest{"client-1"}},
      {2, serialization::RegisterRequest{"client-1", 5000}},
      {3, serialization::KeepAliveRequest{2, 0, 0}},
      {4, serialization::QueryRequest{2, 0, 0, serialization::Consistency::kSequential, "get"}},
      {5, serialization::ResetEventsRequest{2, 0}},
  };
  for (uint64_t id = 6; id < 206; ++id) sent.push_back(Command(id, absl::StrCat("op-", id)));
  sent.push_back({206, serialization::UnregisterRequest{2}});
  uint64_t raft_round = 0;
  for (const auto& request : sent) {
    ASSERT_TRUE(client.Send(request).ok());
    servers_[2]->Send(Numbered(2, 1, ++raft_round));  // raft traffic interleaved with client traffic
    servers_[1]->Send(Numbered(1, 2, raft_round));
  }
  const size_t expected_items = sent.size() + 200;  // a response each, plus an event batch per command
  ASSERT_TRUE(RunUntil(io_, [&] {
    return logs_[0].received.size() >= expected_items && raft_inbox_[1].size() >= sent.size() &&
           raft_inbox_[2].size() >= sent.size();
  }));

  // The server got every request, intact and in order, from one connection.
  ASSERT_EQ(requests_.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(requests_[i].second, sent[i]);
    EXPECT_EQ(requests_[i].first, requests_[0].first);
  }
  // The client got each response, then (for a command) its events, in the order the server sent them.
  size_t at = 0;
  for (const auto& request : sent) {
    ASSERT_LT(at, logs_[0].received.size());
    auto* response = std::get_if<ClientResponseValue>(&logs_[0].received[at++]);
    ASSERT_NE(response, nullptr) << "expected the response to request " << request.request_id;
    EXPECT_EQ(*response, AnswerTo(request));
    if (std::holds_alternative<serialization::CommandRequest>(request.body)) {
      auto* events = std::get_if<PublishEventsValue>(&logs_[0].received[at++]);
      ASSERT_NE(events, nullptr) << "expected the events of request " << request.request_id;
      EXPECT_EQ(events->event_index, events->previous_index + 1);
      EXPECT_EQ(events->events.at(0).payload, absl::StrCat("payload-", request.request_id));
    }
  }
  EXPECT_EQ(at, logs_[0].received.size());
  // Raft traffic in both directions arrived whole and in order.
  for (uint64_t i = 0; i < raft_round; ++i) {
    EXPECT_EQ(transport::testing::RoundOf(raft_inbox_[1][i]), i + 1);
    EXPECT_EQ(transport::testing::RoundOf(raft_inbox_[2][i]), i + 1);
  }
  auto stats = servers_[1]->Stats();
  EXPECT_EQ(stats.client_accepts, 1u);
  EXPECT_EQ(stats.client_requests, sent.size());
  EXPECT_EQ(stats.rejected_connections, 0u);
  EXPECT_FALSE(logs_[0].closed.has_value());
  EXPECT_TRUE(client.connected());
}

TEST_F(ClientConnectionTest, EachClientGetsOnlyItsOwnResponses) {
  auto& server = StartServer(1);
  AnswerEveryRequest();
  auto& a = Connect(server.port());
  auto& b = Connect(server.port());
  for (uint64_t i = 1; i <= 20; ++i) {
    ASSERT_TRUE(a.Send({i, serialization::KeepAliveRequest{1, i, 0}}).ok());
    ASSERT_TRUE(b.Send({1000 + i, serialization::KeepAliveRequest{2, i, 0}}).ok());
  }
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].responses() == 20 && logs_[1].responses() == 20; }));
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(std::get<ClientResponseValue>(logs_[0].received[i]).request_id, i + 1);
    EXPECT_EQ(std::get<ClientResponseValue>(logs_[1].received[i]).request_id, 1001 + i);
  }
  EXPECT_EQ(server.client_count(), 2u);
  RunFor(io_, 20ms);  // nothing more arrives
  EXPECT_EQ(logs_[0].received.size(), 20u);
  EXPECT_EQ(logs_[1].received.size(), 20u);
}

TEST_F(ClientConnectionTest, RequestsSentWhileConnectingGoOutAfterTheHello) {
  auto& server = StartServer(1);
  AnswerEveryRequest();
  ClientConnection client(io_, kCluster);
  std::vector<ClientResponseValue> got;
  client.SetResponseHandler([&](ClientResponseValue r) { got.push_back(std::move(r)); });
  auto connected = client.Connect(Loopback(server.port()));
  ASSERT_TRUE(client.Send(Command(1)).ok());  // before io ran at all
  ASSERT_TRUE(client.Send(Command(2)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return got.size() == 2; }));
  ASSERT_EQ(connected.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(connected.get().ok());
  EXPECT_EQ(got[0].request_id, 1u);
  EXPECT_EQ(got[1].request_id, 2u);
}

TEST_F(ClientConnectionTest, SendBeforeConnectOrAfterCloseIsRefused) {
  auto& server = StartServer(1);
  ClientConnection idle(io_, kCluster);
  EXPECT_TRUE(absl::IsFailedPrecondition(idle.Send(Command(1)))) << idle.Send(Command(1));
  auto& client = Connect(server.port());
  client.Close();
  auto status = client.Send(Command(2));
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_NE(status.message().find("closed"), absl::string_view::npos) << status;
  // A used connection does not connect again.
  auto again = client.Connect(Loopback(server.port()));
  ASSERT_EQ(again.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(absl::IsFailedPrecondition(again.get()));
}

// ---- closing, from either side ----

TEST_F(ClientConnectionTest, ClientClosingIsReportedToTheServer) {
  auto& server = StartServer(1);
  auto& client = Connect(server.port());
  ASSERT_TRUE(client.Send(Command(1)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return requests_.size() == 1; }));
  const ClientConnectionId id = LastClientId();
  EXPECT_EQ(server.client_count(), 1u);
  client.Close();
  ASSERT_TRUE(RunUntil(io_, [&] { return server_saw_closed_.contains(id); }));
  EXPECT_TRUE(absl::IsUnavailable(server_saw_closed_[id])) << server_saw_closed_[id];
  EXPECT_EQ(server.client_count(), 0u);
  EXPECT_TRUE(absl::IsNotFound(server.SendToClient(id, AnswerTo(Command(1)))));
  EXPECT_FALSE(logs_[0].closed.has_value()) << "no callback after Close";
}

TEST_F(ClientConnectionTest, DestroyingTheClientIsReportedToTheServer) {
  auto& server = StartServer(1);
  Connect(server.port());
  ASSERT_TRUE(clients_[0]->Send(Command(1)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return requests_.size() == 1; }));
  clients_[0].reset();
  ASSERT_TRUE(RunUntil(io_, [&] { return server_saw_closed_.contains(LastClientId()); }));
}

TEST_F(ClientConnectionTest, ServerClosingAClientIsReportedToBothSides) {
  auto& server = StartServer(1);
  Connect(server.port());
  ASSERT_TRUE(clients_[0]->Send(Command(1)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return requests_.size() == 1; }));
  server.CloseClient(LastClientId(), "shutting down");
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].closed.has_value() && !server_saw_closed_.empty(); }));
  EXPECT_TRUE(absl::IsUnavailable(*logs_[0].closed)) << *logs_[0].closed;
  EXPECT_NE(logs_[0].closed->message().find("closed the connection"), absl::string_view::npos) << *logs_[0].closed;
  EXPECT_TRUE(absl::IsCancelled(server_saw_closed_[LastClientId()]));
  EXPECT_TRUE(clients_[0]->closed());
}

TEST_F(ClientConnectionTest, ClosingTheTransportTellsClientsButNotTheServerHandlers) {
  auto& server = StartServer(1);
  Connect(server.port());
  ASSERT_TRUE(clients_[0]->Send(Command(1)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return requests_.size() == 1; }));
  server.Close();
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].closed.has_value(); }));
  RunFor(io_, 20ms);
  EXPECT_TRUE(server_saw_closed_.empty());
  EXPECT_TRUE(absl::IsFailedPrecondition(server.SendToClient(LastClientId(), {})));
}

TEST_F(ClientConnectionTest, ClientWithTheWrongClusterIdIsRefused) {
  auto& server = StartServer(1);
  Connect(server.port(), {}, "another-cluster");  // TCP connects; the Hello is refused
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].closed.has_value(); }));
  EXPECT_TRUE(absl::IsUnavailable(*logs_[0].closed)) << *logs_[0].closed;
  EXPECT_EQ(server.Stats().rejected_connections, 1u);
  EXPECT_EQ(server.Stats().client_accepts, 0u);
  RunFor(io_, 20ms);
  EXPECT_TRUE(server_saw_closed_.empty()) << "it never was a client connection";
}

TEST_F(ClientConnectionTest, HandlersDoNotRunAfterClose) {
  auto& server = StartServer(1);
  AnswerEveryRequest();
  ClientConnection client(io_, kCluster);
  int responses = 0;
  bool closed_called = false;
  client.SetResponseHandler([&](ClientResponseValue) {
    ++responses;
    client.Close();
  });
  client.SetClosedHandler([&](absl::Status) { closed_called = true; });
  auto connected = client.Connect(Loopback(server.port()));
  for (uint64_t i = 1; i <= 3; ++i) ASSERT_TRUE(client.Send({i, serialization::KeepAliveRequest{}}).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return responses > 0; }));
  ASSERT_TRUE(RunUntil(io_, [&] { return !server_saw_closed_.empty(); }));
  EXPECT_EQ(responses, 1);
  EXPECT_FALSE(closed_called);
}

// ---- connect failures ----

TEST_F(ClientConnectionTest, ConnectToAClosedPortFailsClearlyWithinTheTimeout) {
  ClientConnection client(io_, kCluster, {.connect_timeout = 3000ms});
  std::optional<absl::Status> result;
  const auto start = std::chrono::steady_clock::now();
  client.Connect(Loopback(UnusedPort()), [&](absl::Status s) { result = s; });
  EXPECT_FALSE(result.has_value()) << "never reported from inside Connect";
  ASSERT_TRUE(RunUntil(io_, [&] { return result.has_value(); }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3000ms);
  EXPECT_TRUE(absl::IsUnavailable(*result)) << *result;
  EXPECT_NE(result->message().find("connection refused"), absl::string_view::npos) << *result;
  EXPECT_TRUE(client.closed());
}

TEST_F(ClientConnectionTest, ConnectThatNobodyAnswersTimesOut) {
  // A listener with a zero backlog that never accepts: once its queue holds a
  // connection, the kernel ignores further SYNs, so a connect hangs.
  tcp::acceptor deaf(io_);
  deaf.open(tcp::v4());
  deaf.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  deaf.listen(0);
  const std::string address = Loopback(deaf.local_endpoint().port());
  std::vector<std::unique_ptr<ClientConnection>> fillers;
  std::vector<std::optional<absl::Status>> results(4);
  for (size_t i = 0; i < results.size(); ++i) {
    fillers.push_back(std::make_unique<ClientConnection>(io_, kCluster, ClientConnectionOptions{.connect_timeout = 300ms}));
    fillers.back()->Connect(address, [&results, i](absl::Status s) { results[i] = s; });
  }
  ASSERT_TRUE(RunUntil(io_, [&] {
    for (const auto& r : results) {
      if (!r) return false;
    }
    return true;
  }));
  size_t timed_out = 0;
  for (const auto& r : results) {
    if (absl::IsDeadlineExceeded(*r)) {
      ++timed_out;
      EXPECT_NE(r->message().find("timed out after 300 ms"), absl::string_view::npos) << *r;
    } else {
      EXPECT_TRUE(r->ok()) << *r;
    }
  }
  EXPECT_GE(timed_out, 1u);
}

TEST_F(ClientConnectionTest, BadAddressIsReportedThroughTheCallback) {
  ClientConnection client(io_, kCluster);
  std::optional<absl::Status> result;
  client.Connect("no-port-here", [&](absl::Status s) { result = s; });
  EXPECT_FALSE(result.has_value());
  ASSERT_TRUE(RunUntil(io_, [&] { return result.has_value(); }));
  EXPECT_TRUE(absl::IsInvalidArgument(*result)) << *result;
}

TEST_F(ClientConnectionTest, CloseWhileConnectingCancelsTheFuture) {
  tcp::acceptor deaf(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ClientConnection client(io_, kCluster);
  auto connected = client.Connect(Loopback(deaf.local_endpoint().port()));
  client.Close();
  ASSERT_EQ(connected.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(absl::IsCancelled(connected.get()));
}

// ---- bounded queues ----

TEST_F(ClientConnectionTest, ClientThatNeverReadsIsClosedAtTheQueueBoundWhileRaftGoesOn) {
  StartServer(1, {.max_client_queue_bytes = 1u << 20});
  StartServer(2);
  servers_[2]->SetPeerAddress(1, Loopback(servers_[1]->port()));
  RawClient lazy(servers_[1]->port());  // never reads
  lazy.Write(ClientHello() + RequestFrame(Command(1)));
  ASSERT_TRUE(RunUntil(io_, [&] { return requests_.size() == 1; }));
  const ClientConnectionId id = LastClientId();

  ClientResponseValue big{1, absl::OkStatus(), 1, {},
                          serialization::CommandResult{1, 0, Bytes(std::string(256u << 10, 'r'))}};
  absl::Status status;
  int sent = 0;
  for (; sent < 1000 && status.ok(); ++sent) {
    status = servers_[1]->SendToClient(id, big);
    io_.poll();  // let writes drain into the socket as far as the kernel takes them
    if (io_.stopped()) io_.restart();
  }
  ASSERT_TRUE(absl::IsResourceExhausted(status)) << status << " after " << sent << " responses";
  EXPECT_NE(status.message().find("not reading"), absl::string_view::npos) << status;
  ASSERT_TRUE(RunUntil(io_, [&] { return server_saw_closed_.contains(id); }));
  EXPECT_TRUE(absl::IsResourceExhausted(server_saw_closed_[id]));
  EXPECT_EQ(servers_[1]->Stats().client_queue_overflows, 1u);
  EXPECT_EQ(servers_[1]->client_count(), 0u);
  EXPECT_TRUE(absl::IsNotFound(servers_[1]->SendToClient(id, big)));
  // Raft traffic to the same server is unaffected.
  for (uint64_t i = 1; i <= 5; ++i) servers_[2]->Send(Numbered(2, 1, i));
  ASSERT_TRUE(RunUntil(io_, [&] { return raft_inbox_[1].size() == 5; }));
}

TEST_F(ClientConnectionTest, SendRefusesWhatDoesNotFitAndKeepsTheConnection) {
  tcp::acceptor deaf(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));  // accepts (kernel), never reads
  ClientConnection client(io_, kCluster, {.max_queue_bytes = 1u << 20});
  auto connected = client.Connect(Loopback(deaf.local_endpoint().port()));
  ASSERT_TRUE(RunUntil(io_, [&] { return connected.wait_for(0s) == std::future_status::ready; }));
  ASSERT_TRUE(connected.get().ok());
  absl::Status status;
  int sent = 0;
  for (; sent < 1000 && status.ok(); ++sent) {
    status = client.Send(Command(sent, std::string(256u << 10, 'x')));
    io_.poll();
    if (io_.stopped()) io_.restart();
  }
  ASSERT_TRUE(absl::IsResourceExhausted(status)) << status << " after " << sent << " requests";
  EXPECT_TRUE(client.connected());
}

// ---- hostile clients: only that connection closes ----

struct HostileClientCase {
  std::string name;
  std::function<std::string()> bytes;  // sent after a client Hello
  absl::StatusCode reason;
  bool decode_error;
};

void PrintTo(const HostileClientCase& c, std::ostream* os) { *os << c.name; }

class HostileClientTest : public ClientConnectionTest, public ::testing::WithParamInterface<HostileClientCase> {};

TEST_P(HostileClientTest, ClosesOnlyThatClient) {
  StartTwoRaftNodes();
  AnswerEveryRequest();
  auto& good = Connect(servers_[1]->port());
  ASSERT_TRUE(good.Send(Command(1)).ok());
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].responses() == 1; }));
  const ClientConnectionId good_id = LastClientId();

  RawClient bad(servers_[1]->port());
  bad.Write(ClientHello() + RequestFrame(Command(7)) + GetParam().bytes());
  ASSERT_TRUE(RunUntil(io_, [&] { return server_saw_closed_.size() == 1; }));
  const auto& [bad_id, reason] = *server_saw_closed_.begin();
  EXPECT_NE(bad_id, good_id);
  EXPECT_EQ(reason.code(), GetParam().reason) << reason;
  EXPECT_EQ(servers_[1]->Stats().rejected_connections, 1u);
  EXPECT_EQ(servers_[1]->Stats().decode_errors, GetParam().decode_error ? 1u : 0u);

  // The good client and raft traffic carry on.
  ASSERT_TRUE(good.Send(Command(2)).ok());
  servers_[2]->Send(Numbered(2, 1, 1));
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].responses() == 2 && raft_inbox_[1].size() == 1; }));
  EXPECT_FALSE(logs_[0].closed.has_value());
  EXPECT_EQ(servers_[1]->client_count(), 1u);
  // The bad connection's good request was delivered before it broke.
  EXPECT_EQ(requests_.size(), 3u);
}

std::string GarbageBody() {
  std::string out(8, '\0');
  const uint32_t length = 16;
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<char>(length >> (8 * i));
    out[4 + i] = static_cast<char>(serialization::kFrameMagic >> (8 * i));
  }
  return out + std::string(16, '\xff');
}

INSTANTIATE_TEST_SUITE_P(
    TcpTransport, HostileClientTest,
    ::testing::Values(
        HostileClientCase{"GarbageCapnp", GarbageBody, absl::StatusCode::kDataLoss, true},
        HostileClientCase{"BadMagic", [] { return std::string(16, 'x'); }, absl::StatusCode::kDataLoss, true},
        HostileClientCase{"RaftFrameOnAClientConnection",
                          [] {
                            std::string out;
                            serialization::AppendRaftFrame(Numbered(3, 1, 1), &out);
                            return out;
                          },
                          absl::StatusCode::kInvalidArgument, false},
        HostileClientCase{"ResponseFromAClient",
                          [] {
                            std::string out;
                            serialization::AppendClientResponseFrame(AnswerTo(Command(1)), &out);
                            return out;
                          },
                          absl::StatusCode::kInvalidArgument, false},
        HostileClientCase{"EventsFromAClient",
                          [] {
                            std::string out;
                            serialization::AppendPublishEventsFrame({1, 2, 1, {}}, &out);
                            return out;
                          },
                          absl::StatusCode::kInvalidArgument, false},
        HostileClientCase{"SecondHello", [] { return ClientHello(); }, absl::StatusCode::kInvalidArgument, false}),
    [](const ::testing::TestParamInfo<HostileClientCase>& info) { return info.param.name; });

// ---- a hostile server: the client closes with the reason ----

struct HostileServerCase {
  std::string name;
  std::function<std::string()> bytes;
  absl::StatusCode reason;
  std::string needle;
};

void PrintTo(const HostileServerCase& c, std::ostream* os) { *os << c.name; }

class HostileServerTest : public ClientConnectionTest, public ::testing::WithParamInterface<HostileServerCase> {};

TEST_P(HostileServerTest, ClientClosesWithAClearReason) {
  tcp::acceptor fake(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket accepted(io_);
  bool accepted_one = false;
  fake.async_accept(accepted, [&](boost::system::error_code ec) { accepted_one = !ec; });
  // A good response first: it is delivered before the bad frame closes the connection.
  std::string bytes;
  serialization::AppendClientResponseFrame(AnswerTo(Command(1)), &bytes);
  bytes += GetParam().bytes();

  Connect(fake.local_endpoint().port());
  ASSERT_TRUE(RunUntil(io_, [&] { return accepted_one; }));
  asio::write(accepted, asio::buffer(bytes));
  ASSERT_TRUE(RunUntil(io_, [&] { return logs_[0].closed.has_value(); }));
  EXPECT_EQ(logs_[0].closed->code(), GetParam().reason) << *logs_[0].closed;
  EXPECT_NE(logs_[0].closed->message().find(GetParam().needle), absl::string_view::npos) << *logs_[0].closed;
  EXPECT_EQ(logs_[0].responses(), 1u);
  EXPECT_TRUE(clients_[0]->closed());
}

INSTANTIATE_TEST_SUITE_P(
    ClientConnection, HostileServerTest,
    ::testing::Values(
        HostileServerCase{"GarbageCapnp", GarbageBody, absl::StatusCode::kDataLoss, "malformed frame from"},
        HostileServerCase{"BadMagic", [] { return std::string(16, 'x'); }, absl::StatusCode::kDataLoss,
                          "bad frame magic"},
        HostileServerCase{"ARequestFromTheServer", [] { return RequestFrame(Command(1)); },
                          absl::StatusCode::kInvalidArgument, "sent a client request"},
        HostileServerCase{"RaftFromTheServer",
                          [] {
                            std::string out;
                            serialization::AppendRaftFrame(Numbered(3, 1, 1), &out);
                            return out;
                          },
                          absl::StatusCode::kInvalidArgument, "sent a raft message"},
        HostileServerCase{"EventBatchWithABadPreviousIndex",
                          [] {
                            std::string out;
                            serialization::AppendPublishEventsFrame({1, 2, 2, {}}, &out);
                            return out;
                          },
                          absl::StatusCode::kDataLoss, "previous index must be lower"}),
    [](const ::testing::TestParamInfo<HostileServerCase>& info) { return info.param.name; });

}  // namespace
}  // namespace caracal::client

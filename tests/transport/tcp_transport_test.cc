#include "framework/transport/tcp_transport.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "capnp/any.h"
#include "capnp/message.h"
#include "capnp/schema.h"
#include "gtest/gtest.h"
#include "serialization/caracal.capnp.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "tests/transport/transport_test_util.h"

namespace caracal::transport {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using testing::Drains;
using testing::EveryKind;
using testing::LargeAppend;
using testing::Numbered;
using testing::RoundOf;
using testing::RunFor;
using testing::RunUntil;
using namespace std::chrono_literals;

constexpr char kCluster[] = "test-cluster";

std::string Loopback(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// A port nothing listens on right now (bound, then released).
uint16_t UnusedPort() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

// Transports on one io_context, each listening on 127.0.0.1:0, each with an
// inbox recording what its handler received.
class TcpTransportTest : public ::testing::Test {
 protected:
  TcpTransport& Start(NodeId id, TcpTransportOptions options = {}, uint16_t port = 0) {
    auto transport =
        std::make_unique<TcpTransport>(io_, id, kCluster, absl::flat_hash_map<NodeId, std::string>{}, options);
    auto status = transport->Listen(Loopback(port));
    EXPECT_TRUE(status.ok()) << status;
    transport->SetHandler([this, id](raft::Message m) { inbox_[id].push_back(std::move(m)); });
    auto& ref = *transport;
    nodes_[id] = std::move(transport);
    return ref;
  }

  // Tells every node every other node's address.
  void Introduce() {
    for (auto& [id, node] : nodes_) {
      for (auto& [other, other_node] : nodes_) {
        if (id != other) node->SetPeerAddress(other, Loopback(other_node->port()));
      }
    }
  }

  std::vector<raft::Message> From(NodeId receiver, NodeId sender) {
    std::vector<raft::Message> out;
    for (const auto& m : inbox_[receiver]) {
      if (m.from == sender) out.push_back(m);
    }
    return out;
  }

  bool WaitFor(NodeId receiver, size_t count) {
    return RunUntil(io_, [&] { return inbox_[receiver].size() >= count; });
  }

  asio::io_context io_;
  std::map<NodeId, std::vector<raft::Message>> inbox_;
  std::map<NodeId, std::unique_ptr<TcpTransport>> nodes_;
};

TEST(ParseHostPortTest, AcceptsHostPortAndBracketedV6) {
  auto a = ParseHostPort("127.0.0.1:5001");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 5001);
  auto b = ParseHostPort("[::1]:0");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = ParseHostPort("localhost:65535");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->host, "localhost");
}

TEST(ParseHostPortTest, RejectsMissingOrBadParts) {
  for (const char* bad : {"127.0.0.1", ":5001", "host:", "host:65536", "host:-1", "host:12ab", ""}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseHostPort(bad).status())) << bad;
  }
}

TEST_F(TcpTransportTest, ListenReportsTheBoundPortAndRefusesASecondListen) {
  auto& a = Start(1);
  EXPECT_NE(a.port(), 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(a.Listen("127.0.0.1:0")));
}

TEST_F(TcpTransportTest, ListenOnAPortInUseIsAnActionableError) {
  auto& a = Start(1);
  TcpTransport b(io_, 2, kCluster, {});
  auto status = b.Listen(Loopback(a.port()));
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find(std::to_string(a.port())), absl::string_view::npos) << status;
}

TEST_F(TcpTransportTest, TwoNodesExchangeEveryMessageKind) {
  auto& a = Start(1);
  auto& b = Start(2);
  Introduce();

  for (auto& m : EveryKind(1, 2)) a.Send(m);
  for (auto& m : EveryKind(2, 1)) b.Send(m);

  ASSERT_TRUE(WaitFor(1, EveryKind(2, 1).size()));
  ASSERT_TRUE(WaitFor(2, EveryKind(1, 2).size()));
  EXPECT_EQ(inbox_[2], EveryKind(1, 2));
  EXPECT_EQ(inbox_[1], EveryKind(2, 1));
  EXPECT_EQ(a.Stats().messages_sent, EveryKind(1, 2).size());
  EXPECT_EQ(b.Stats().messages_received, EveryKind(1, 2).size());
  EXPECT_EQ(a.Stats().connects, 1u);
  EXPECT_EQ(b.Stats().accepts, 1u);
  EXPECT_GT(a.Stats().bytes_sent, 0u);
  EXPECT_EQ(a.Stats().bytes_sent, b.Stats().bytes_received);
}

TEST_F(TcpTransportTest, ThreeNodesExchangeManyEntriesAndMultiMegabytePayloads) {
  Start(1);
  Start(2);
  Start(3);
  Introduce();
  std::map<std::pair<NodeId, NodeId>, std::vector<raft::Message>> sent;
  for (NodeId from : {1, 2, 3}) {
    for (NodeId to : {1, 2, 3}) {
      if (from == to) continue;
      auto& list = sent[{from, to}];
      list = EveryKind(from, to);
      list.push_back(LargeAppend(from, to, 5000, (3u << 20) + from));
      list.push_back(Numbered(from, to, 77));
      for (auto& m : list) nodes_[from]->Send(m);
    }
  }

  for (NodeId to : {1, 2, 3}) ASSERT_TRUE(WaitFor(to, 2 * sent[{to == 1 ? 2 : 1, to}].size())) << to;
  for (auto& [route, list] : sent) EXPECT_EQ(From(route.second, route.first), list) << route.first << "->" << route.second;
}

TEST_F(TcpTransportTest, MessageToSelfIsPostedNotDeliveredInsideSend) {
  auto& a = Start(1);
  a.Send(Numbered(1, 1, 5));
  EXPECT_TRUE(inbox_[1].empty());
  ASSERT_TRUE(WaitFor(1, 1));
  EXPECT_EQ(RoundOf(inbox_[1][0]), 5u);
}

TEST_F(TcpTransportTest, MessageToUnknownPeerIsDroppedAndCounted) {
  auto& a = Start(1);
  a.Send(Numbered(1, 9, 1));
  EXPECT_EQ(a.Stats().messages_dropped, 1u);
}

TEST_F(TcpTransportTest, QueuedMessagesReachAPeerThatStartsLater) {
  const uint16_t port = UnusedPort();
  auto& a = Start(1, {.initial_backoff = 5ms, .max_backoff = 40ms});
  a.SetPeerAddress(2, Loopback(port));
  for (uint64_t i = 0; i < 5; ++i) a.Send(Numbered(1, 2, i));
  // Nobody listens yet: the sender keeps retrying with back-off.
  ASSERT_TRUE(RunUntil(io_, [&] { return a.Stats().connect_failures >= 3; }));

  Start(2, {}, port);

  ASSERT_TRUE(WaitFor(2, 5));
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(RoundOf(inbox_[2][i]), i);
  EXPECT_EQ(a.Stats().connects, 1u);
  EXPECT_EQ(a.Stats().messages_dropped, 0u);
}

TEST_F(TcpTransportTest, MessagesQueueUntilThePeerAddressIsLearned) {
  auto& a = Start(1);
  auto& b = Start(2);
  a.SetPeerAddress(2, "");
  a.Send(Numbered(1, 2, 1));
  RunFor(io_, 20ms);
  EXPECT_TRUE(inbox_[2].empty());
  a.SetPeerAddress(2, Loopback(b.port()));
  ASSERT_TRUE(WaitFor(2, 1));
  EXPECT_EQ(RoundOf(inbox_[2][0]), 1u);
}

TEST_F(TcpTransportTest, MessagesFlowAgainAfterThePeerRestarts) {
  auto& a = Start(1, {.initial_backoff = 5ms, .max_backoff = 40ms});
  Start(2);
  Introduce();
  const uint16_t port = nodes_[2]->port();
  a.Send(Numbered(1, 2, 1));
  ASSERT_TRUE(WaitFor(2, 1));

  nodes_.erase(2);  // the peer goes away ...
  inbox_[2].clear();
  Start(2, {}, port);  // ... and comes back on the same port

  // Messages sent while the old connection still looks alive may be lost;
  // raft retransmits, and so does this loop.
  uint64_t n = 100;
  ASSERT_TRUE(RunUntil(io_, [&] {
    if (inbox_[2].empty()) a.Send(Numbered(1, 2, n++));
    RunFor(io_, 5ms);
    return !inbox_[2].empty();
  }));
  const size_t before = inbox_[2].size();
  a.Send(Numbered(1, 2, 1000));
  a.Send(Numbered(1, 2, 1001));
  ASSERT_TRUE(WaitFor(2, before + 2));
  EXPECT_EQ(RoundOf(inbox_[2][before]), 1000u);
  EXPECT_EQ(RoundOf(inbox_[2][before + 1]), 1001u);
  EXPECT_GE(a.Stats().connects, 2u);
}

TEST_F(TcpTransportTest, FullSendQueueDropsAndCountsTheExcess) {
  auto& a = Start(1, {.max_queue_bytes = 2048});
  auto& b = Start(2);
  a.SetPeerAddress(2, "");  // not reachable yet: everything queues
  constexpr uint64_t kSent = 100;
  auto message = [](uint64_t i) {
    raft::AppendEntries append;
    append.term = 1;
    append.round = i;
    append.entries = {Entry{i + 1, 1, 0, EntryType::kCommand, Bytes(std::string(100, 'x'))}};
    return raft::Message{1, 2, append};
  };
  for (uint64_t i = 0; i < kSent; ++i) a.Send(message(i));
  const uint64_t dropped = a.Stats().messages_dropped;
  std::string frame;
  serialization::AppendRaftFrame(message(0), &frame);
  EXPECT_EQ(kSent - dropped, 2048 / frame.size()) << "the queue holds as many whole frames as fit, no more";

  a.SetPeerAddress(2, Loopback(b.port()));
  ASSERT_TRUE(WaitFor(2, kSent - dropped));
  RunFor(io_, 20ms);
  ASSERT_EQ(inbox_[2].size(), kSent - dropped);
  // The queue kept the oldest messages, in order.
  for (size_t i = 0; i < inbox_[2].size(); ++i) EXPECT_EQ(RoundOf(inbox_[2][i]), i);
}

TEST_F(TcpTransportTest, CloseWithPendingWorkLeavesNothingBehind) {
  auto& a = Start(1, {.initial_backoff = 5ms});
  auto& b = Start(2);
  Introduce();
  a.SetPeerAddress(3, Loopback(UnusedPort()));  // back-off timers pending
  a.Send(Numbered(1, 2, 1));
  b.Send(Numbered(2, 1, 1));
  ASSERT_TRUE(WaitFor(1, 1));
  ASSERT_TRUE(WaitFor(2, 1));
  for (int i = 0; i < 3; ++i) a.Send(Numbered(1, 3, i));
  ASSERT_TRUE(RunUntil(io_, [&] { return a.Stats().connect_failures >= 1; }));
  a.Send(Numbered(1, 1, 9));  // a posted delivery to self

  a.Close();
  EXPECT_EQ(a.Stats().messages_dropped, 3u);  // the three queued for node 3
  a.Send(Numbered(1, 2, 2));
  EXPECT_EQ(a.Stats().messages_dropped, 4u);
  b.Send(Numbered(2, 1, 2));  // b notices a went away; a's handler is gone
  RunFor(io_, 30ms);
  EXPECT_EQ(inbox_[1].size(), 1u);

  b.Close();
  EXPECT_TRUE(Drains(io_)) << "a socket, timer or posted handler outlived Close()";
}

TEST_F(TcpTransportTest, DestroyingATransportWithOperationsInFlightIsSafe) {
  auto& a = Start(1, {.initial_backoff = 5ms});
  Start(2);
  Introduce();
  a.SetPeerAddress(3, Loopback(UnusedPort()));
  a.Send(Numbered(1, 3, 1));
  a.Send(LargeAppend(1, 2, 10, 4u << 20));  // a write in flight
  io_.poll();                // connects complete, the big write starts
  a.Send(Numbered(1, 1, 1));  // a posted delivery, not yet run
  nodes_.clear();  // destroyed with connects, writes, reads and posts pending
  EXPECT_TRUE(Drains(io_));
  EXPECT_TRUE(inbox_[1].empty());
}

TEST_F(TcpTransportTest, HandlerMayCloseTheTransport) {
  auto& a = Start(1);
  auto& b = Start(2);
  Introduce();
  int calls = 0;
  b.SetHandler([&](raft::Message) {
    ++calls;
    b.Close();
  });
  for (int i = 0; i < 3; ++i) a.Send(Numbered(1, 2, i));  // one batch, one read
  ASSERT_TRUE(RunUntil(io_, [&] { return calls > 0; }));
  RunFor(io_, 20ms);
  EXPECT_EQ(calls, 1);
}

// ---- malformed and hostile input on a raw socket ----

// Bytes of a frame whose body is whatever `fill` builds.
template <typename Fill>
std::string CapnpFrame(Fill fill) {
  capnp::MallocMessageBuilder message;
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(wire::FORMAT_VERSION);
  fill(frame);
  std::string out;
  serialization::AppendFrame(message, &out);
  return out;
}

std::string Header(uint32_t length, uint32_t magic) {
  std::string out(8, '\0');
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<char>(length >> (8 * i));
    out[4 + i] = static_cast<char>(magic >> (8 * i));
  }
  return out;
}

std::string HelloFrame(NodeId id, const std::string& cluster = kCluster) {
  std::string out;
  serialization::AppendHelloFrame({id, cluster}, &out);
  return out;
}

std::string RaftFrame(const raft::Message& m) {
  std::string out;
  serialization::AppendRaftFrame(m, &out);
  return out;
}

std::string ClientRequestFrame() {
  std::string out;
  serialization::AppendClientRequestFrame({1, serialization::ConnectRequest{"c"}}, &out);
  return out;
}

// A plain blocking client socket, driven outside the transport's io_context.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    socket_.non_blocking(true);
  }
  void Write(const std::string& bytes) {
    socket_.non_blocking(false);
    asio::write(socket_, asio::buffer(bytes));
    socket_.non_blocking(true);
  }
  // True once the server closed (EOF or reset); never blocks.
  bool ClosedByServer() {
    char buffer[256];
    boost::system::error_code ec;
    socket_.read_some(asio::buffer(buffer), ec);
    return ec && ec != asio::error::would_block && ec != asio::error::try_again;
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
};

struct HostileCase {
  std::string name;
  std::function<std::string()> bytes;
  bool decode_error;  // counted as a malformed frame, not only a protocol violation
};

void PrintTo(const HostileCase& c, std::ostream* os) { *os << c.name; }

class HostileInputTest : public TcpTransportTest, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(HostileInputTest, ClosesThatConnectionAndKeepsServingOthers) {
  auto& server = Start(1);
  auto& good = Start(2);
  Introduce();
  good.Send(Numbered(2, 1, 1));
  ASSERT_TRUE(WaitFor(1, 1));

  RawClient bad(server.port());
  bad.Write(GetParam().bytes());
  ASSERT_TRUE(RunUntil(io_, [&] { return bad.ClosedByServer(); })) << "the hostile connection stayed open";

  EXPECT_EQ(server.Stats().rejected_connections, 1u);
  EXPECT_EQ(server.Stats().decode_errors, GetParam().decode_error ? 1u : 0u);
  // The established connection still works ...
  good.Send(Numbered(2, 1, 2));
  ASSERT_TRUE(WaitFor(1, 2));
  EXPECT_EQ(RoundOf(inbox_[1][1]), 2u);
  // ... and so does a new one.
  RawClient fresh(server.port());
  fresh.Write(HelloFrame(3) + RaftFrame(Numbered(3, 1, 3)));
  ASSERT_TRUE(WaitFor(1, 3));
  EXPECT_EQ(inbox_[1][2].from, 3u);
  EXPECT_FALSE(fresh.ClosedByServer());
  // Nothing from the hostile connection reached the handler.
  EXPECT_EQ(inbox_[1].size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(
    TcpTransport, HostileInputTest,
    ::testing::Values(
        HostileCase{"GarbageBytes", [] { return std::string("GET / HTTP/1.1\r\nHost: caracal\r\n\r\n"); }, true},
        HostileCase{"BadMagic", [] { return Header(8, 0xdeadbeef) + std::string(8, '\0'); }, true},
        HostileCase{"LengthNotWholeWords",
                    [] { return Header(12, serialization::kFrameMagic) + std::string(12, '\0'); }, true},
        HostileCase{"LengthOverTheLimit", [] { return Header(1u << 30, serialization::kFrameMagic); }, true},
        HostileCase{"GoodHeaderGarbageCapnp",
                    [] { return Header(16, serialization::kFrameMagic) + std::string(16, '\xff'); }, true},
        HostileCase{"GarbageAfterAGoodHello",
                    [] { return HelloFrame(3) + Header(16, serialization::kFrameMagic) + std::string(16, '\xff'); },
                    true},
        HostileCase{"FutureVersion",
                    [] {
                      return CapnpFrame([](wire::Frame::Builder f) {
                        f.setVersion(wire::FORMAT_VERSION + 1);
                        f.initHello().setNodeId(3);
                      });
                    },
                    true},
        HostileCase{"UnknownFrameKind",
                    [] {
                      return CapnpFrame([](wire::Frame::Builder f) {
                        f.initHello();
                        // The union discriminant of a kind a newer schema would add.
                        auto offset = capnp::Schema::from<wire::Frame>().getProto().getStruct().getDiscriminantOffset();
                        capnp::AnyStruct::Builder(kj::mv(f)).getDataSection()[offset * 2] = 99;
                      });
                    },
                    true},
        HostileCase{"UnknownRaftMessageKind",
                    [] {
                      return HelloFrame(3) + CapnpFrame([](wire::Frame::Builder f) {
                               auto r = f.initRaft();
                               r.setFrom(3);
                               r.setTo(1);
                               r.initInstallSnapshot().setTerm(1);
                             });
                    },
                    true},
        HostileCase{"WrongClusterId", [] { return HelloFrame(3, "other-cluster"); }, false},
        HostileCase{"RaftBeforeHello", [] { return RaftFrame(Numbered(3, 1, 1)); }, false},
        HostileCase{"FromMismatchesHello", [] { return HelloFrame(3) + RaftFrame(Numbered(4, 1, 1)); }, false},
        HostileCase{"AddressedToAnotherNode", [] { return HelloFrame(3) + RaftFrame(Numbered(3, 7, 1)); }, false},
        HostileCase{"SecondHello", [] { return HelloFrame(3) + HelloFrame(3); }, false},
        HostileCase{"HelloWithOwnId", [] { return HelloFrame(1); }, false},
        HostileCase{"ClientRequestBeforeHello", [] { return ClientRequestFrame(); }, false},
        HostileCase{"ClientRequestOnAPeerConnection", [] { return HelloFrame(3) + ClientRequestFrame(); }, false},
        HostileCase{"ClientResponseOnAPeerConnection",
                    [] {
                      return HelloFrame(3) + CapnpFrame([](wire::Frame::Builder f) {
                               f.initClientResponse().setRequestId(1);
                             });
                    },
                    false},
        HostileCase{"RaftOnAClientConnection", [] { return HelloFrame(0) + RaftFrame(Numbered(3, 1, 1)); }, false},
        HostileCase{"ClientHelloForAnotherCluster", [] { return HelloFrame(0, "other-cluster"); }, false}),
    [](const ::testing::TestParamInfo<HostileCase>& info) { return info.param.name; });

TEST_F(TcpTransportTest, ConnectionWithoutHelloIsClosedAfterTheTimeout) {
  auto& server = Start(1, {.hello_timeout = 30ms});
  RawClient silent(server.port());
  ASSERT_TRUE(RunUntil(io_, [&] { return silent.ClosedByServer(); }));
  EXPECT_EQ(server.Stats().rejected_connections, 1u);
}

TEST_F(TcpTransportTest, InboundConnectionsOverTheCapAreRefused) {
  auto& server = Start(1, {.max_inbound_connections = 1});
  RawClient first(server.port());
  ASSERT_TRUE(RunUntil(io_, [&] { return server.Stats().accepts == 1; }));
  RawClient second(server.port());
  ASSERT_TRUE(RunUntil(io_, [&] { return second.ClosedByServer(); }));
  EXPECT_FALSE(first.ClosedByServer());
  EXPECT_EQ(server.Stats().rejected_connections, 1u);
}

TEST_F(TcpTransportTest, NewerConnectionFromTheSameNodeReplacesTheOlder) {
  auto& server = Start(1);
  RawClient older(server.port());
  older.Write(HelloFrame(3) + RaftFrame(Numbered(3, 1, 0)));
  ASSERT_TRUE(WaitFor(1, 1));
  EXPECT_FALSE(older.ClosedByServer());
  RawClient newer(server.port());
  newer.Write(HelloFrame(3) + RaftFrame(Numbered(3, 1, 1)));
  ASSERT_TRUE(RunUntil(io_, [&] { return older.ClosedByServer(); }));
  ASSERT_TRUE(WaitFor(1, 2));
  EXPECT_FALSE(newer.ClosedByServer());
  EXPECT_EQ(server.Stats().rejected_connections, 0u);
}

}  // namespace
}  // namespace caracal::transport

#include "framework/transport/in_memory_transport.h"

#include <atomic>
#include <future>
#include <map>
#include <thread>
#include <vector>

#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/post.hpp"
#include "gtest/gtest.h"
#include "tests/transport/transport_test_util.h"

namespace caracal::transport {
namespace {

namespace asio = boost::asio;
using testing::EveryKind;
using testing::LargeAppend;
using testing::Numbered;
using testing::RoundOf;
using testing::RunFor;
using testing::RunUntil;
using namespace std::chrono_literals;

// Nodes on one network sharing one io_context, each with an inbox.
class InMemoryTransportTest : public ::testing::Test {
 protected:
  void MakeNetwork(InMemoryNetworkOptions options) { network_ = InMemoryNetwork::Create(options); }

  InMemoryTransport& Add(NodeId id) {
    auto transport = network_->Attach(id, io_);
    EXPECT_TRUE(transport.ok()) << transport.status();
    (*transport)->SetHandler([this, id](raft::Message m) { inbox_[id].push_back(std::move(m)); });
    auto& ref = **transport;
    nodes_[id] = *std::move(transport);
    return ref;
  }

  // Sends a numbered message from -> to and reports whether it arrived.
  bool Delivers(NodeId from, NodeId to) {
    const size_t before = inbox_[to].size();
    nodes_[from]->Send(Numbered(from, to, ++sequence_));
    RunFor(io_, 5ms);
    return inbox_[to].size() == before + 1 && RoundOf(inbox_[to].back()) == sequence_;
  }

  asio::io_context io_;
  std::shared_ptr<InMemoryNetwork> network_ = InMemoryNetwork::Create();
  std::map<NodeId, std::vector<raft::Message>> inbox_;
  std::map<NodeId, std::unique_ptr<InMemoryTransport>> nodes_;
  uint64_t sequence_ = 0;
};

TEST_F(InMemoryTransportTest, DeliversEveryKindOnTheReceiversIoContextNotInsideSend) {
  auto& a = Add(1);
  Add(2);
  for (auto& m : EveryKind(1, 2)) a.Send(m);
  EXPECT_TRUE(inbox_[2].empty());
  ASSERT_TRUE(RunUntil(io_, [&] { return inbox_[2].size() == EveryKind(1, 2).size(); }));
  EXPECT_EQ(inbox_[2], EveryKind(1, 2));
  EXPECT_EQ(a.Stats().messages_sent, EveryKind(1, 2).size());
  EXPECT_EQ(nodes_[2]->Stats().messages_received, EveryKind(1, 2).size());
  EXPECT_EQ(a.Stats().bytes_sent, 0u);  // values, not frames
}

TEST_F(InMemoryTransportTest, RoundTripCodecCarriesEveryKindAndLargeAppends) {
  MakeNetwork({.round_trip_codec = true});
  auto& a = Add(1);
  auto& b = Add(2);
  auto sent = EveryKind(1, 2);
  sent.push_back(LargeAppend(1, 2, 2000, 2u << 20));
  for (auto& m : sent) a.Send(m);
  ASSERT_TRUE(RunUntil(io_, [&] { return inbox_[2].size() == sent.size(); }));
  EXPECT_EQ(inbox_[2], sent);
  EXPECT_GT(a.Stats().bytes_sent, 2u << 20);
  EXPECT_EQ(a.Stats().bytes_sent, b.Stats().bytes_received);
  EXPECT_EQ(b.Stats().decode_errors, 0u);
}

TEST_F(InMemoryTransportTest, MessageToSelfIsPosted) {
  auto& a = Add(1);
  a.Send(Numbered(1, 1, 4));
  EXPECT_TRUE(inbox_[1].empty());
  ASSERT_TRUE(RunUntil(io_, [&] { return inbox_[1].size() == 1; }));
  EXPECT_EQ(RoundOf(inbox_[1][0]), 4u);
}

TEST_F(InMemoryTransportTest, AttachRefusesIdZeroAndDuplicatesUntilTheOldOneCloses) {
  Add(1);
  EXPECT_TRUE(absl::IsInvalidArgument(network_->Attach(0, io_).status()));
  EXPECT_TRUE(absl::IsAlreadyExists(network_->Attach(1, io_).status()));
  nodes_[1]->Close();
  EXPECT_TRUE(network_->Attach(1, io_).ok());
}

TEST_F(InMemoryTransportTest, OneWayBlockDropsOnlyThatDirection) {
  Add(1);
  Add(2);
  network_->Block(1, 2);
  EXPECT_FALSE(Delivers(1, 2));
  EXPECT_TRUE(Delivers(2, 1));
  EXPECT_EQ(nodes_[1]->Stats().messages_dropped, 1u);
  network_->Unblock(1, 2);
  EXPECT_TRUE(Delivers(1, 2));
}

TEST_F(InMemoryTransportTest, PartitionIsSymmetricAndHealRestoresIt) {
  Add(1);
  Add(2);
  Add(3);
  network_->Partition(1, 2);
  EXPECT_FALSE(Delivers(1, 2));
  EXPECT_FALSE(Delivers(2, 1));
  EXPECT_TRUE(Delivers(1, 3));
  EXPECT_TRUE(Delivers(3, 2));
  network_->Heal();
  EXPECT_TRUE(Delivers(1, 2));
  EXPECT_TRUE(Delivers(2, 1));
}

TEST_F(InMemoryTransportTest, IsolateAndDropAllCutNodesOffUntilHealed) {
  Add(1);
  Add(2);
  Add(3);
  network_->Isolate(3);
  EXPECT_FALSE(Delivers(3, 1));
  EXPECT_FALSE(Delivers(2, 3));
  EXPECT_TRUE(Delivers(1, 2));
  EXPECT_TRUE(Delivers(3, 3));  // talking to oneself is not networking
  network_->Heal();
  network_->SetDropAll(true);
  EXPECT_FALSE(Delivers(1, 2));
  EXPECT_FALSE(Delivers(2, 1));
  network_->Heal();
  EXPECT_TRUE(Delivers(2, 3));
}

TEST_F(InMemoryTransportTest, MessagesToUnattachedOrClosedNodesAreDropped) {
  auto& a = Add(1);
  auto& b = Add(2);
  a.Send(Numbered(1, 9, 1));
  EXPECT_EQ(a.Stats().messages_dropped, 1u);
  a.Send(Numbered(1, 2, 2));  // posted before b closes: b drops it on arrival
  b.Close();
  a.Send(Numbered(1, 2, 3));  // b is gone from the network
  b.Send(Numbered(2, 1, 4));  // a closed transport sends nothing
  RunFor(io_, 10ms);
  EXPECT_TRUE(inbox_[2].empty());
  EXPECT_TRUE(inbox_[1].empty());
  EXPECT_EQ(a.Stats().messages_dropped, 2u);
  EXPECT_EQ(b.Stats().messages_dropped, 2u);
}

TEST_F(InMemoryTransportTest, DestroyingTheNetworkHandleAndTransportsWithDeliveriesPendingIsSafe) {
  auto& a = Add(1);
  Add(2);
  a.Send(Numbered(1, 2, 1));
  network_.reset();
  nodes_.clear();
  EXPECT_TRUE(testing::Drains(io_));
  EXPECT_TRUE(inbox_[2].empty());
}

// Two nodes, each on its own thread, play ping-pong.
TEST(InMemoryTransportThreadsTest, PingPongAcrossThreads) {
  constexpr uint64_t kRounds = 2000;
  auto network = InMemoryNetwork::Create({.round_trip_codec = true});
  asio::io_context io1, io2;
  auto guard1 = asio::make_work_guard(io1);
  auto guard2 = asio::make_work_guard(io2);
  auto a = *network->Attach(1, io1);
  auto b = *network->Attach(2, io2);
  std::promise<uint64_t> finished;
  b->SetHandler([&](raft::Message m) { b->Send(Numbered(2, 1, RoundOf(m))); });
  a->SetHandler([&](raft::Message m) {
    const uint64_t round = RoundOf(m);
    if (round + 1 < kRounds) {
      a->Send(Numbered(1, 2, round + 1));
    } else {
      finished.set_value(round + 1);
    }
  });
  std::thread t1([&] { io1.run(); });
  std::thread t2([&] { io2.run(); });
  asio::post(io1, [&] { a->Send(Numbered(1, 2, 0)); });

  auto result = finished.get_future();
  const bool done = result.wait_for(testing::kDeadline) == std::future_status::ready;
  io1.stop();
  io2.stop();
  t1.join();
  t2.join();
  ASSERT_TRUE(done);
  EXPECT_EQ(result.get(), kRounds);
  EXPECT_EQ(a->Stats().messages_received, kRounds);
  EXPECT_EQ(b->Stats().messages_received, kRounds);
}

// Several threads send to one receiver while the network is partitioned and
// healed under them: every message is either delivered or counted as dropped.
TEST(InMemoryTransportThreadsTest, ConcurrentSendsAndPartitionChangesLoseNothingUncounted) {
  constexpr int kSenders = 3;
  constexpr uint64_t kPerSender = 20000;
  auto network = InMemoryNetwork::Create();
  asio::io_context receiver_io;
  auto guard = asio::make_work_guard(receiver_io);
  auto receiver = *network->Attach(1, receiver_io);
  std::atomic<uint64_t> received[kSenders + 2] = {};
  std::atomic<int> markers{0};
  receiver->SetHandler([&](raft::Message m) {
    if (RoundOf(m) == kPerSender) {
      markers.fetch_add(1);
    } else {
      received[m.from].fetch_add(1);
    }
  });
  std::vector<asio::io_context> sender_ios(kSenders);
  std::vector<std::unique_ptr<InMemoryTransport>> senders;
  for (int i = 0; i < kSenders; ++i) senders.push_back(*network->Attach(2 + i, sender_ios[i]));

  std::thread receiver_thread([&] { receiver_io.run(); });
  std::atomic<bool> stop_chaos{false};
  std::thread chaos([&] {
    for (uint64_t i = 0; !stop_chaos.load(); ++i) {
      network->Block(2 + i % kSenders, 1);
      network->Partition(1, 2 + (i + 1) % kSenders);
      network->Heal();
    }
  });
  std::vector<std::thread> sender_threads;
  for (int i = 0; i < kSenders; ++i) {
    sender_threads.emplace_back([&, i] {
      for (uint64_t n = 0; n < kPerSender; ++n) senders[i]->Send(Numbered(2 + i, 1, n));
    });
  }
  for (auto& t : sender_threads) t.join();
  stop_chaos = true;
  chaos.join();
  network->Heal();
  for (int i = 0; i < kSenders; ++i) senders[i]->Send(Numbered(2 + i, 1, kPerSender));  // markers, last in line
  const auto deadline = std::chrono::steady_clock::now() + testing::kDeadline;
  while (markers.load() < kSenders && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  receiver_io.stop();
  receiver_thread.join();

  ASSERT_EQ(markers.load(), kSenders);
  for (int i = 0; i < kSenders; ++i) {
    EXPECT_EQ(received[2 + i].load() + senders[i]->Stats().messages_dropped, kPerSender) << "sender " << 2 + i;
  }
}

}  // namespace
}  // namespace caracal::transport

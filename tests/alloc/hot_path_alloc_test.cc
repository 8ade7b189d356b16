// Heap allocations on the replication and client paths do not grow with the
// number of entries (or frames) handled.
//
// Each test does the same work with 100 and with 1000 entries, after a
// warm-up round (first-time costs: thread-local scratch, spdlog, vectors
// reaching their working capacity), and checks that the second round costs at
// most a few allocations more than the first: a chunk rolling over, a ring or
// index doubling. A single allocation per entry would show up as 900 more.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/io_context.hpp"
#include "framework/common/bytes.h"
#include "framework/raft/log_reader.h"
#include "framework/raft/raft.h"
#include "framework/server/log_adapter.h"
#include "framework/storage/log.h"
#include "framework/transport/tcp_transport.h"
#include "gtest/gtest.h"
#include "serialization/client_protocol.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "tests/alloc/alloc_counter.h"
#include "tests/testing/temp_dir.h"

namespace caracal {
namespace {

using serialization::FrameSplitter;
using testing::AllocationCounter;

constexpr size_t kPayloadBytes = 40;
// Allowed growth from 100 to 1000 entries: chunk rollovers and doublings.
constexpr uint64_t kSlack = 4;

// The allocations of `round(n)` for n = 100 and 1000, after `round(1000)`
// twice as a warm-up. Prints both, for the record.
template <typename Round>
std::pair<uint64_t, uint64_t> Measure(const char* what, Round round) {
  round(1000);
  round(1000);
  uint64_t small = round(100);
  uint64_t big = round(1000);
  std::printf("%s: %llu allocations for 100 entries, %llu for 1000\n", what, static_cast<unsigned long long>(small),
              static_cast<unsigned long long>(big));
  return {small, big};
}

Bytes Payload(Index index) {
  std::string p(kPayloadBytes, 'p');
  std::snprintf(p.data(), p.size(), "entry %llu", static_cast<unsigned long long>(index));
  return Bytes(std::move(p));
}

raft::Message AppendEntriesOf(Index prev, size_t n, Term term = 1) {
  raft::AppendEntries ae;
  ae.term = term;
  ae.prev_log_index = prev;
  ae.prev_log_term = prev == 0 ? 0 : term;
  ae.commit_index = prev;
  for (size_t i = 1; i <= n; ++i) {
    ae.entries.push_back(Entry{prev + i, term, 7, EntryType::kCommand, Payload(prev + i)});
  }
  return raft::Message{1, 2, std::move(ae)};
}

// What the TCP connection does: read up to 64 KiB of `wire` into the
// splitter's space (the memcpy stands for the socket), then take out every
// whole frame.
template <typename OnBody>
void Receive(std::string_view wire, FrameSplitter* splitter, OnBody on_body) {
  while (!wire.empty()) {
    FrameSplitter::Space space = splitter->WritableSpace();
    size_t n = std::min({space.size, wire.size(), size_t{64} << 10});
    std::memcpy(space.data, wire.data(), n);
    splitter->Commit(n);
    wire.remove_prefix(n);
    for (auto body = splitter->Next(); body.ok(); body = splitter->Next()) on_body(*body);
  }
}

// ------------------------------------------------------------ frames

TEST(HotPathAllocTest, SplittingAndDecodingAppendEntriesCostsNothingPerEntry) {
  FrameSplitter splitter;
  Index next = 0;
  auto [small, big] = Measure("split+decode 4 AppendEntries frames", [&](size_t n) {
    std::string wire;
    for (int f = 0; f < 4; ++f, next += n) serialization::AppendRaftFrame(AppendEntriesOf(next, n), &wire);
    AllocationCounter count;
    size_t entries = 0;
    Receive(wire, &splitter, [&](const Bytes& body) {
      auto frame = serialization::DecodeFrame(body);
      ASSERT_TRUE(frame.ok()) << frame.status();
      const auto& ae = std::get<raft::AppendEntries>(std::get<raft::Message>(*frame).body);
      for (const Entry& e : ae.entries) {
        EXPECT_EQ(e.payload.owner(), body.owner()) << "the payload is not a slice of its frame";
        EXPECT_EQ(reinterpret_cast<uintptr_t>(e.payload.data()) % 8, 0u);
      }
      entries += ae.entries.size();
    });
    EXPECT_EQ(entries, 4 * n);
    return count.allocations();
  });
  EXPECT_LE(big, small + kSlack);
}

TEST(HotPathAllocTest, DecodingClientCommandsCostsNothingPerFrame) {
  FrameSplitter splitter;
  auto [small, big] = Measure("split+decode client command frames", [&](size_t n) {
    std::string wire;
    for (size_t i = 0; i < n; ++i) {
      serialization::AppendClientRequestFrame({i, serialization::CommandRequest{5, i, Payload(i), i}}, &wire);
    }
    AllocationCounter count;
    size_t commands = 0;
    Receive(wire, &splitter, [&](const Bytes& body) {
      auto frame = serialization::DecodeFrame(body);
      ASSERT_TRUE(frame.ok()) << frame.status();
      const auto& request = std::get<serialization::ClientRequestValue>(*frame);
      const auto& command = std::get<serialization::CommandRequest>(request.body);
      EXPECT_EQ(command.operation.owner(), body.owner()) << "the operation is not a slice of its frame";
      EXPECT_EQ(command.operation.size(), kPayloadBytes);
      ++commands;
    });
    EXPECT_EQ(commands, n);
    return count.allocations();
  });
  EXPECT_LE(big, small + kSlack);
}

TEST(HotPathAllocTest, EncodingClientResponsesCostsNothingPerFrame) {
  std::string out;
  std::vector<Bytes> results;
  for (size_t i = 0; i < 1000; ++i) results.push_back(Payload(i));
  auto [small, big] = Measure("encode client command responses", [&](size_t n) {
    out.clear();
    AllocationCounter count;
    for (size_t i = 0; i < n; ++i) {
      serialization::ClientResponseValue response{i, absl::OkStatus(), 1, {},
                                                  serialization::CommandResult{i + 1, 0, results[i]}};
      serialization::AppendClientResponseFrame(response, &out);
    }
    return count.allocations();
  });
  EXPECT_LE(big, small + kSlack);
}

// ------------------------------------------------------------ raft + log

using server::LogAdapter;

std::unique_ptr<storage::Log> OpenLog(const testing::TempDir& dir) {
  storage::LogOptions options;
  options.directory = dir.path() / "log";
  auto log = storage::Log::Open(options);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

raft::Config ThreeVoters(NodeId id) {
  raft::Config c;
  c.id = id;
  c.voters = {1, 2, 3};
  return c;
}

// Writes what `ready` asks to `log` and reports it durable.
void Persist(const raft::Ready& ready, storage::Log* log, raft::Raft* raft) {
  if (!ready.write) return;
  absl::Status s = log->Append(ready.write->entries, ready.write->holes);
  EXPECT_TRUE(s.ok()) << s;
  raft->OnPersisted(ready.write->id);
}

TEST(HotPathAllocTest, AFollowerAppendingEntriesCostsNothingPerEntry) {
  testing::TempDir dir;
  auto log = OpenLog(dir);
  ASSERT_NE(log, nullptr);
  LogAdapter reader(log.get());
  raft::Raft follower(ThreeVoters(2), &reader, HardState{1, 0}, 0, 0);
  FrameSplitter splitter;
  std::string response_wire;
  Index next = 0;
  auto [small, big] = Measure("follower: receive AppendEntries, append to the log, answer", [&](size_t n) {
    std::string wire;
    serialization::AppendRaftFrame(AppendEntriesOf(next, n), &wire);
    next += n;
    response_wire.clear();
    AllocationCounter count;
    Receive(wire, &splitter, [&](const Bytes& body) {
      auto frame = serialization::DecodeFrame(body);
      ASSERT_TRUE(frame.ok()) << frame.status();
      follower.Step(std::get<raft::Message>(*frame));
    });
    Persist(follower.TakeReady(), log.get(), &follower);
    raft::Ready r = follower.TakeReady();
    EXPECT_EQ(r.messages.size(), 1u);
    for (const raft::Message& m : r.messages) serialization::AppendRaftFrame(m, &response_wire);
    return count.allocations();
  });
  EXPECT_EQ(log->LastIndex(), next);
  EXPECT_LE(big, small + kSlack);
}

// Elects `raft` (id 1 of three voters) by answering its vote requests.
void Elect(raft::Raft* raft, storage::Log* log) {
  raft::Micros now = 0;
  for (int i = 0; i < 100 && raft->role() != raft::Role::kLeader; ++i) {
    now += 100'000;
    raft->Tick(now, now);
    raft::Ready r = raft->TakeReady();
    Persist(r, log, raft);
    for (const raft::Message& m : r.messages) {
      if (const auto* vote = std::get_if<raft::RequestVote>(&m.body)) {
        raft->Step(raft::Message{m.to, 1, raft::RequestVoteResponse{vote->term, true, vote->pre_vote}});
      }
    }
  }
  ASSERT_EQ(raft->role(), raft::Role::kLeader);
}

// Acknowledges every AppendEntries in `ready` as the followers would.
void Acknowledge(const raft::Ready& ready, raft::Raft* leader) {
  for (const raft::Message& m : ready.messages) {
    if (const auto* ae = std::get_if<raft::AppendEntries>(&m.body)) {
      Index last = ae->prev_log_index + ae->entries.size();
      raft::AppendEntriesResponse r{ae->term, true, last, 0, 0, ae->round, last, 0};
      leader->Step(raft::Message{m.to, 1, r});
    }
  }
}

TEST(HotPathAllocTest, ALeaderProposingAndReplicatingCostsNothingPerEntry) {
  testing::TempDir dir;
  auto log = OpenLog(dir);
  ASSERT_NE(log, nullptr);
  LogAdapter reader(log.get());
  raft::Raft leader(ThreeVoters(1), &reader, HardState{}, 0, 0);
  Elect(&leader, log.get());
  // Bring both followers into replicate state.
  for (int i = 0; i < 3; ++i) {
    raft::Ready r = leader.TakeReady();
    Persist(r, log.get(), &leader);
    Acknowledge(r, &leader);
  }
  std::vector<Bytes> payloads;
  for (size_t i = 0; i < 1000; ++i) payloads.push_back(Payload(i));
  std::string wire[4];  // per follower, as OutboundPeer's queue
  auto [small, big] = Measure("leader: propose, write, encode an AppendEntries per follower", [&](size_t n) {
    for (std::string& w : wire) w.clear();
    AllocationCounter count;
    for (size_t i = 0; i < n; ++i) EXPECT_TRUE(leader.Propose(EntryType::kCommand, payloads[i]).ok());
    raft::Ready r = leader.TakeReady();
    Persist(r, log.get(), &leader);
    size_t sent = 0;
    for (const raft::Message& m : r.messages) {
      if (const auto* ae = std::get_if<raft::AppendEntries>(&m.body)) {
        EXPECT_EQ(ae->entries.size(), n);
        serialization::AppendRaftFrame(m, &wire[m.to]);
        ++sent;
      }
    }
    EXPECT_EQ(sent, 2u);
    uint64_t allocations = count.allocations();
    Acknowledge(r, &leader);
    leader.TakeReady();
    return allocations;
  });
  EXPECT_EQ(leader.commit(), log->LastIndex());
  EXPECT_LE(big, small + kSlack);
}

// ------------------------------------------------------------ TCP

// Both ends on one io thread (the one counted): node 1 encodes and writes
// AppendEntries, node 2 reads them into its chunks, decodes and delivers them.
TEST(HotPathAllocTest, AnAppendEntriesOverTcpCostsNothingPerEntry) {
  boost::asio::io_context io;
  transport::TcpTransport receiver(io, 2, "alloc", {});
  ASSERT_TRUE(receiver.Listen("127.0.0.1:0").ok());
  transport::TcpTransport sender(io, 1, "alloc", {{2, absl::StrCat("127.0.0.1:", receiver.port())}});
  size_t received = 0;
  size_t entries = 0;
  receiver.SetHandler([&](raft::Message m) {
    ++received;
    entries += std::get<raft::AppendEntries>(m.body).entries.size();
  });
  auto run_until = [&](size_t target) {
    for (int i = 0; i < 100000 && received < target; ++i) io.run_one_for(std::chrono::seconds(1));
    ASSERT_EQ(received, target);
  };
  Index next = 0;
  auto [small, big] = Measure("TCP: encode, write, read, split, decode and deliver 4 AppendEntries", [&](size_t n) {
    std::vector<raft::Message> messages;
    for (int f = 0; f < 4; ++f, next += n) messages.push_back(AppendEntriesOf(next, n));
    size_t target = received + messages.size();
    entries = 0;
    AllocationCounter count;
    for (raft::Message& m : messages) sender.Send(std::move(m));
    run_until(target);
    EXPECT_EQ(entries, 4 * n);
    uint64_t allocations = count.allocations();
    messages.clear();
    return allocations;
  });
  // A frame bigger than the 16 KiB scratch segment is encoded in one heap
  // segment of its size: one allocation per frame, not per entry.
  EXPECT_LE(big, small + kSlack + 4);
}

}  // namespace
}  // namespace caracal

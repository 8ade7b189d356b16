#ifndef CARACAL_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_
#define CARACAL_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_

// Helpers shared by the transport tests: bounded waiting on an io_context and
// sample messages.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "framework/raft/message.h"

namespace caracal::transport::testing {

inline constexpr std::chrono::milliseconds kDeadline{10000};

// Runs `io` until `done()` holds; false if `timeout` passed first. Never
// sleeps: each step runs handlers for at most a few milliseconds.
inline bool RunUntil(boost::asio::io_context& io, const std::function<bool()>& done,
                     std::chrono::milliseconds timeout = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (io.stopped()) io.restart();
    io.run_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Runs `io` for `duration` (to show that something does NOT happen).
inline void RunFor(boost::asio::io_context& io, std::chrono::milliseconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_for(std::chrono::milliseconds(2));
  }
}

// True once `io` has no work left at all (every socket, timer and posted
// handler finished), within `timeout`.
inline bool Drains(boost::asio::io_context& io, std::chrono::milliseconds timeout = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
    if (io.stopped()) return true;
  }
  return false;
}

// One message of every kind, from `from` to `to`, each distinguishable.
inline std::vector<raft::Message> EveryKind(NodeId from, NodeId to) {
  raft::AppendEntries append;
  append.term = 7;
  append.prev_log_index = 10;
  append.prev_log_term = 6;
  append.entries = {Entry{11, 7, 1000, EntryType::kCommand, Bytes(std::string("payload"))},
                    Entry{15, 7, 1001, EntryType::kKeepAlive, Bytes()}};
  append.holes = {HoleRun{12, 14, 7}};
  append.commit_index = 9;
  append.round = 33;
  return {
      {from, to, raft::RequestVote{5, 9, 4, false, true}},
      {from, to, raft::RequestVote{6, 9, 4, true, false}},
      {from, to, raft::RequestVoteResponse{5, true, true}},
      {from, to, append},
      {from, to, raft::AppendEntries{8, 3, 2, {}, {}, 3, 34}},  // a heartbeat
      {from, to, raft::AppendEntriesResponse{7, false, 0, 8, 5, 33, 20}},
      {from, to, raft::TimeoutNow{9}},
  };
}

// An AppendEntries with `count` small entries plus one of `big_bytes`.
inline raft::Message LargeAppend(NodeId from, NodeId to, size_t count, size_t big_bytes) {
  raft::AppendEntries append;
  append.term = 3;
  append.prev_log_index = 100;
  append.prev_log_term = 2;
  for (size_t i = 0; i < count; ++i) {
    append.entries.push_back(Entry{101 + i, 3, static_cast<LogTime>(5000 + i), EntryType::kCommand,
                                   Bytes(std::string("entry-") + std::to_string(i))});
  }
  std::string big(big_bytes, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 8));
  append.entries.push_back(Entry{101 + count, 3, 9000, EntryType::kCommand, Bytes(std::move(big))});
  append.commit_index = 100;
  append.round = 1;
  return {from, to, std::move(append)};
}

// A small AppendEntries whose `round` tells messages apart.
inline raft::Message Numbered(NodeId from, NodeId to, uint64_t n) {
  raft::AppendEntries append;
  append.term = 1;
  append.round = n;
  return {from, to, std::move(append)};
}

inline uint64_t RoundOf(const raft::Message& m) { return std::get<raft::AppendEntries>(m.body).round; }

}  // namespace caracal::transport::testing

#endif  // CARACAL_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_

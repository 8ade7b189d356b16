#ifndef CARACAL_FRAMEWORK_RAFT_MESSAGE_H_
#define CARACAL_FRAMEWORK_RAFT_MESSAGE_H_

// The messages raft servers exchange, as plain values. The raft core reads and
// writes these; serialization/codec.h turns them into Cap'n Proto frames for
// the TCP transport, and the simulator passes them around directly.

#include <string>
#include <variant>
#include <vector>

#include "framework/common/types.h"

namespace caracal::raft {

struct RequestVote {
  Term term = 0;
  Index last_log_index = 0;
  Term last_log_term = 0;
  bool pre_vote = false;
  bool leadership_transfer = false;
  friend bool operator==(const RequestVote&, const RequestVote&) = default;
};

struct RequestVoteResponse {
  Term term = 0;
  bool granted = false;
  bool pre_vote = false;
  friend bool operator==(const RequestVoteResponse&, const RequestVoteResponse&) = default;
};

struct AppendEntries {
  Term term = 0;
  Index prev_log_index = 0;
  Term prev_log_term = 0;
  std::vector<Entry> entries;   // ascending index
  std::vector<HoleRun> holes;   // indexes in (prev_log_index, last] not in `entries`
  Index commit_index = 0;
  uint64_t round = 0;
  friend bool operator==(const AppendEntries&, const AppendEntries&) = default;
};

struct AppendEntriesResponse {
  Term term = 0;
  bool success = false;
  Index match_index = 0;
  Index conflict_index = 0;
  Term conflict_term = 0;
  uint64_t round = 0;
  Index last_index = 0;
  Index rejected_index = 0;
  friend bool operator==(const AppendEntriesResponse&, const AppendEntriesResponse&) = default;
};

struct TimeoutNow {
  Term term = 0;
  friend bool operator==(const TimeoutNow&, const TimeoutNow&) = default;
};

using MessageBody = std::variant<RequestVote, RequestVoteResponse, AppendEntries, AppendEntriesResponse, TimeoutNow>;

struct Message {
  NodeId from = 0;
  NodeId to = 0;
  MessageBody body;
  friend bool operator==(const Message&, const Message&) = default;
};

// The term a message carries, whatever its kind.
inline Term MessageTerm(const Message& m) {
  return std::visit([](const auto& b) { return b.term; }, m.body);
}

const char* MessageKindName(const Message& m);

}  // namespace caracal::raft

#endif  // CARACAL_FRAMEWORK_RAFT_MESSAGE_H_

#include "framework/raft/message.h"

namespace caracal::raft {

const char* MessageKindName(const Message& m) {
  struct Namer {
    const char* operator()(const RequestVote& v) const { return v.pre_vote ? "PreVote" : "RequestVote"; }
    const char* operator()(const RequestVoteResponse& v) const {
      return v.pre_vote ? "PreVoteResponse" : "RequestVoteResponse";
    }
    const char* operator()(const AppendEntries&) const { return "AppendEntries"; }
    const char* operator()(const AppendEntriesResponse&) const { return "AppendEntriesResponse"; }
    const char* operator()(const TimeoutNow&) const { return "TimeoutNow"; }
  };
  return std::visit(Namer{}, m.body);
}

}  // namespace caracal::raft

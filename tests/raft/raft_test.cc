// The raft core, one behaviour at a time: directly (a core driven by hand)
// and in small scripted simulations without random faults.

#include "framework/raft/raft.h"

#include <map>

#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/sim/sim.h"

namespace caracal::raft {
namespace {

const bool kQuiet = (spdlog::set_level(spdlog::level::warn), true);

// A log held in memory, for driving one core by hand.
class MemoryLog : public LogReader {
 public:
  Index FirstIndex() const override { return 1; }
  Index LastIndex() const override { return entries_.size(); }
  std::optional<Term> TermAt(Index i) const override {
    if (i == 0) return Term{0};
    if (i > entries_.size()) return std::nullopt;
    return entries_[i - 1].term;
  }
  absl::Status Read(Index from, Index to, size_t, std::vector<Entry>* out, std::vector<HoleRun>*) const override {
    for (Index i = from; i <= to; ++i) out->push_back(entries_[i - 1]);
    return absl::OkStatus();
  }
  void Write(const LogWrite& w) {
    entries_.resize(w.first - 1);
    for (const auto& e : w.entries) entries_.push_back(e);
  }

 private:
  std::vector<Entry> entries_;
};

Config OneVoter() {
  Config c;
  c.id = 1;
  c.voters = {1};
  return c;
}

Config ThreeVoters(NodeId id) {
  Config c;
  c.id = id;
  c.voters = {1, 2, 3};
  return c;
}

template <typename T>
std::vector<std::pair<NodeId, T>> Sent(const Ready& r) {
  std::vector<std::pair<NodeId, T>> out;
  for (const auto& m : r.messages)
    if (const T* b = std::get_if<T>(&m.body)) out.emplace_back(m.to, *b);
  return out;
}

Entry E(Index index, Term term, std::string payload = "") {
  return Entry{index, term, 0, EntryType::kCommand, Bytes(payload)};
}

TEST(RaftTest, FollowerAcknowledgesOnlyDurableEntries) {
  MemoryLog log;
  Raft raft(ThreeVoters(2), &log, HardState{}, 0, 0);
  AppendEntries ae;
  ae.term = 1;
  ae.entries = {E(1, 1, "a"), E(2, 1, "b")};
  raft.Step(Message{1, 2, ae});
  Ready r = raft.TakeReady();
  ASSERT_TRUE(r.write.has_value());
  EXPECT_EQ(r.write->first, 1u);
  EXPECT_EQ(r.write->entries.size(), 2u);
  EXPECT_TRUE(Sent<AppendEntriesResponse>(r).empty()) << "acknowledged before the entries were durable";

  log.Write(*r.write);
  raft.OnPersisted(r.write->id);
  auto acks = Sent<AppendEntriesResponse>(raft.TakeReady());
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_TRUE(acks[0].second.success);
  EXPECT_EQ(acks[0].second.match_index, 2u);
}

TEST(RaftTest, AnOldWritesAcknowledgementDoesNotCoverARewrittenSuffix) {
  // Index 1..3 (term 1) is written, truncated by a term-2 leader, then
  // written again with the same terms by the term-1 leader re-elected in
  // term 3. The first write's fsync must not make the third one's entries
  // look durable: the disk may hold the term-2 entry there.
  Config c = ThreeVoters(2);
  MemoryLog log;
  Raft raft(c, &log, HardState{}, 0, 0);
  AppendEntries a1;
  a1.term = 1;
  a1.entries = {E(1, 1, "a"), E(2, 1, "b"), E(3, 1, "c")};
  raft.Step(Message{1, 2, a1});
  Ready w1 = raft.TakeReady();
  AppendEntries a2;
  a2.term = 2;
  a2.entries = {E(1, 2, "x")};
  raft.Step(Message{3, 2, a2});
  Ready w2 = raft.TakeReady();
  AppendEntries a3;
  a3.term = 3;
  a3.entries = {E(1, 1, "a"), E(2, 1, "b"), E(3, 1, "c")};
  raft.Step(Message{1, 2, a3});
  Ready w3 = raft.TakeReady();
  ASSERT_TRUE(w1.write && w2.write && w3.write);

  raft.OnPersisted(w1.write->id);
  EXPECT_EQ(raft.stable_last(), 0u);
  EXPECT_TRUE(Sent<AppendEntriesResponse>(raft.TakeReady()).empty()) << "acknowledged entries not on disk";
  raft.OnPersisted(w2.write->id);
  EXPECT_EQ(raft.stable_last(), 0u);
  raft.OnPersisted(w3.write->id);
  EXPECT_EQ(raft.stable_last(), 3u);
  auto acks = Sent<AppendEntriesResponse>(raft.TakeReady());
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].second.match_index, 3u);
}

TEST(RaftTest, AFollowerThatLostAcknowledgedEntriesIsRepairedFromWhatItHas) {
  MemoryLog log;
  Config c;
  c.id = 1;
  c.voters = {1, 2, 3};
  Raft raft(c, &log, HardState{}, 0, 0);
  raft.Tick(c.election_timeout_max, 0);  // pre-vote
  for (NodeId v : {2, 3}) raft.Step(Message{v, 1, RequestVoteResponse{1, true, true}});
  for (NodeId v : {2, 3}) raft.Step(Message{v, 1, RequestVoteResponse{1, true, false}});
  ASSERT_EQ(raft.role(), Role::kLeader);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(raft.Propose(EntryType::kCommand, Bytes()).ok());
  Ready r = raft.TakeReady();
  log.Write(*r.write);
  raft.OnPersisted(r.write->id);
  raft.Step(Message{2, 1, AppendEntriesResponse{1, true, 4, 0, 0, 0, 4, 0}});
  // Server 2 comes back with only index 1 and rejects the heartbeat at 4.
  raft.Step(Message{2, 1, AppendEntriesResponse{1, false, 0, 2, 0, 0, 1, 4}});
  auto appends = Sent<AppendEntries>(raft.TakeReady());
  bool resent = false;
  for (const auto& [to, ae] : appends) resent = resent || (to == 2 && ae.prev_log_index == 1 && !ae.entries.empty());
  EXPECT_TRUE(resent) << "the leader kept probing at the lost match index";
  // That probe goes unanswered: the next heartbeat probes again at the same
  // place, bare (a follower that does not answer is not sent the entries
  // again and again).
  raft.Tick(c.election_timeout_max + c.heartbeat_interval, 0);
  bool bare = false;
  for (const auto& [to, ae] : Sent<AppendEntries>(raft.TakeReady())) {
    if (to == 2) {
      EXPECT_EQ(ae.prev_log_index, 1u);
      EXPECT_TRUE(ae.entries.empty());
      bare = true;
    }
  }
  EXPECT_TRUE(bare) << "no probe at the heartbeat";
}

TEST(RaftTest, ConflictingSuffixIsReplacedAndRejectionCarriesAHint) {
  MemoryLog log;
  log.Write(LogWrite{0, 1, {E(1, 1), E(2, 1), E(3, 2), E(4, 2)}, {}});
  Raft raft(ThreeVoters(2), &log, HardState{3, 0}, 0, 0);

  // Leader of term 3 believes index 4 has term 3: rejected, hint = start of our term-2 run.
  AppendEntries probe;
  probe.term = 3;
  probe.prev_log_index = 4;
  probe.prev_log_term = 3;
  raft.Step(Message{1, 2, probe});
  auto rejects = Sent<AppendEntriesResponse>(raft.TakeReady());
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_FALSE(rejects[0].second.success);
  EXPECT_EQ(rejects[0].second.conflict_term, 2u);
  EXPECT_EQ(rejects[0].second.conflict_index, 3u);
  EXPECT_EQ(rejects[0].second.rejected_index, 4u);

  AppendEntries fix;
  fix.term = 3;
  fix.prev_log_index = 2;
  fix.prev_log_term = 1;
  fix.entries = {E(3, 3, "x")};
  raft.Step(Message{1, 2, fix});
  Ready r = raft.TakeReady();
  ASSERT_TRUE(r.write.has_value());
  EXPECT_EQ(r.write->first, 3u) << "the write must replace the conflicting suffix from index 3";
  EXPECT_EQ(raft.last_index(), 3u);
  EXPECT_EQ(raft.TermAt(3), Term{3});
}

TEST(RaftTest, VoteIsGrantedOncePerTermAndRequiresAnUpToDateLog) {
  MemoryLog log;
  log.Write(LogWrite{0, 1, {E(1, 1), E(2, 2)}, {}});
  Config c = ThreeVoters(3);
  c.check_quorum = false;
  Raft raft(c, &log, HardState{2, 0}, 0, 0);

  raft.Step(Message{1, 3, RequestVote{3, 1, 1, false, false}});  // stale log
  auto r1 = Sent<RequestVoteResponse>(raft.TakeReady());
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_FALSE(r1[0].second.granted);

  raft.Step(Message{1, 3, RequestVote{3, 2, 2, false, false}});
  Ready granted = raft.TakeReady();
  ASSERT_TRUE(granted.hard_state.has_value()) << "a vote must be made durable before it is sent";
  EXPECT_EQ(granted.hard_state->voted_for, 1u);
  EXPECT_TRUE(Sent<RequestVoteResponse>(granted)[0].second.granted);

  raft.Step(Message{2, 3, RequestVote{3, 5, 2, false, false}});
  EXPECT_FALSE(Sent<RequestVoteResponse>(raft.TakeReady())[0].second.granted) << "second vote in term 3";
}

TEST(RaftTest, PreVoteDoesNotChangeTheVotersTerm) {
  MemoryLog log;
  Raft raft(ThreeVoters(3), &log, HardState{4, 0}, 0, 0);
  raft.Tick(Config{}.election_timeout_min, 0);  // past the post-start quiet period
  raft.Step(Message{1, 3, RequestVote{5, 0, 0, /*pre_vote=*/true, false}});
  Ready r = raft.TakeReady();
  EXPECT_EQ(raft.term(), 4u);
  EXPECT_FALSE(r.hard_state.has_value());
  auto votes = Sent<RequestVoteResponse>(r);
  ASSERT_EQ(votes.size(), 1u);
  EXPECT_TRUE(votes[0].second.granted);
  EXPECT_TRUE(votes[0].second.pre_vote);
}

TEST(RaftTest, SingleVoterCommitsOnceItsOwnWriteIsDurable) {
  MemoryLog log;
  Config c = OneVoter();
  Raft raft(c, &log, HardState{}, 0, 0);
  raft.Tick(c.election_timeout_max, 1000);
  ASSERT_EQ(raft.role(), Role::kLeader);
  auto index = raft.Propose(EntryType::kCommand, Bytes(std::string("x")));
  ASSERT_TRUE(index.ok());
  Ready r = raft.TakeReady();
  EXPECT_EQ(r.commit, 0u) << "committed before durable";
  log.Write(*r.write);
  raft.OnPersisted(r.write->id);
  EXPECT_EQ(raft.commit(), *index);
}

TEST(RaftTest, ProposeOnAFollowerNamesTheLeader) {
  MemoryLog log;
  Raft raft(ThreeVoters(2), &log, HardState{}, 0, 0);
  AppendEntries hb;
  hb.term = 1;
  raft.Step(Message{3, 2, hb});
  auto index = raft.Propose(EntryType::kCommand, Bytes());
  EXPECT_TRUE(absl::IsFailedPrecondition(index.status()));
  EXPECT_NE(std::string(index.status().message()).find("leader is 3"), std::string::npos) << index.status();
}

TEST(RaftTest, LeaderTimestampsNeverGoBackwards) {
  MemoryLog log;
  Config c = OneVoter();
  Raft raft(c, &log, HardState{}, 0, 0);
  raft.Tick(c.election_timeout_max, 5'000);
  auto a = raft.Propose(EntryType::kCommand, Bytes());
  raft.Tick(c.election_timeout_max + 1, 1'000);  // the wall clock stepped back
  auto b = raft.Propose(EntryType::kCommand, Bytes());
  Ready r = raft.TakeReady();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_GE(r.write->entries.size(), 3u);
  EXPECT_EQ(r.write->entries[1].timestamp, 5'000);
  EXPECT_EQ(r.write->entries[2].timestamp, 5'000);
}

TEST(RaftTest, ARestartedServerRefusesVotesForAnElectionTimeout) {
  // It may have acknowledged a leader just before crashing; that leader's
  // lease must hold as if the acknowledgement had just happened.
  MemoryLog log;
  Raft raft(ThreeVoters(3), &log, HardState{2, 0}, 1'000, 0);
  raft.Step(Message{1, 3, RequestVote{3, 0, 0, false, false}});
  EXPECT_TRUE(Sent<RequestVoteResponse>(raft.TakeReady()).empty());
  EXPECT_EQ(raft.term(), 2u);
  raft.Tick(1'000 + Config{}.election_timeout_min, 0);
  raft.Step(Message{1, 3, RequestVote{3, 0, 0, false, false}});
  auto votes = Sent<RequestVoteResponse>(raft.TakeReady());
  ASSERT_EQ(votes.size(), 1u);
  EXPECT_TRUE(votes[0].second.granted);
}

TEST(RaftTest, SingleVoterConfirmsReadsOnceItsTermHasACommittedEntry) {
  MemoryLog log;
  Config c = OneVoter();
  Raft raft(c, &log, HardState{}, 0, 0);
  raft.Tick(c.election_timeout_max, 1000);
  ASSERT_TRUE(raft.RequestRead(7).ok());
  Ready r = raft.TakeReady();
  EXPECT_TRUE(r.reads.empty()) << "confirmed before the Initialize entry committed";
  log.Write(*r.write);
  raft.OnPersisted(r.write->id);
  Ready after = raft.TakeReady();
  ASSERT_EQ(after.reads.size(), 1u);
  EXPECT_EQ(after.reads[0].id, 7u);
  EXPECT_TRUE(after.reads[0].ok);
  EXPECT_EQ(after.reads[0].index, 1u);
}

TEST(RaftTest, ReadOnAFollowerIsRefusedWithTheLeadersId) {
  MemoryLog log;
  Raft raft(ThreeVoters(2), &log, HardState{}, 0, 0);
  AppendEntries hb;
  hb.term = 1;
  raft.Step(Message{3, 2, hb});
  absl::Status s = raft.RequestRead(1);
  EXPECT_TRUE(absl::IsFailedPrecondition(s));
  EXPECT_NE(std::string(s.message()).find("leader is 3"), std::string::npos);
}

// ---- scripted simulations ----

sim::Options Quiet(int nodes, uint64_t seed = 1) {
  sim::Options o;
  o.seed = seed;
  o.nodes = nodes;
  o.propose_interval = 0;
  return o;
}

TEST(RaftClusterTest, ElectsALeaderAndReplicatesToEveryServer) {
  sim::World world(Quiet(5));
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  ASSERT_TRUE(world.Leader().has_value());
  Index last = 0;
  for (int i = 0; i < 100; ++i) {
    auto index = world.Propose("cmd");
    ASSERT_TRUE(index.ok());
    last = *index;
  }
  ASSERT_TRUE(world.RunFor(500'000).ok());
  for (NodeId id = 1; id <= 5; ++id) EXPECT_EQ(world.Applied(id), last) << "server " << id;
}

TEST(RaftClusterTest, IsolatedLeaderStepsDownAndTheRestElectAnother) {
  sim::World world(Quiet(3));
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  NodeId old = *world.Leader();
  for (NodeId other = 1; other <= 3; ++other) {
    if (other == old) continue;
    world.Block(old, other);
    world.Block(other, old);
  }
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  EXPECT_NE(world.Node(old)->role(), Role::kLeader) << "check-quorum should have stepped it down";
  ASSERT_TRUE(world.Leader().has_value());
  EXPECT_NE(*world.Leader(), old);
}

TEST(RaftClusterTest, IsolatedFollowerDoesNotInflateTermsOrDisruptOnReturn) {
  sim::World world(Quiet(3));
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  NodeId leader = *world.Leader();
  NodeId loner = leader % 3 + 1;
  Term term = world.Node(leader)->term();
  for (NodeId other = 1; other <= 3; ++other) {
    if (other == loner) continue;
    world.Block(loner, other);
    world.Block(other, loner);
  }
  ASSERT_TRUE(world.RunFor(5'000'000).ok());
  EXPECT_EQ(world.Node(loner)->term(), term) << "pre-vote should keep the isolated server's term";
  world.HealAll();
  ASSERT_TRUE(world.RunFor(2'000'000).ok());
  EXPECT_EQ(world.Leader(), leader);
  EXPECT_EQ(world.Node(leader)->term(), term);
}

TEST(RaftClusterTest, DeposedLeaderNeverConfirmsAReadAndLosesItsLease) {
  sim::World world(Quiet(3));
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  NodeId old = *world.Leader();
  ASSERT_TRUE(world.RequestRead().ok());
  ASSERT_TRUE(world.RunFor(100'000).ok());
  EXPECT_TRUE(world.Node(old)->LeaseValid());
  uint64_t confirmed = world.stats().reads_confirmed;
  EXPECT_EQ(confirmed, 1u);

  for (NodeId other = 1; other <= 3; ++other) {
    if (other == old) continue;
    world.Block(old, other);
    world.Block(other, old);
  }
  ASSERT_TRUE(world.RequestRead().ok());  // reaches the old leader, which cannot confirm it
  ASSERT_TRUE(world.RunFor(2'000'000).ok());
  EXPECT_FALSE(world.Node(old)->LeaseValid());
  EXPECT_EQ(world.stats().reads_confirmed, confirmed) << "an isolated leader confirmed a read";
  EXPECT_NE(world.Leader(), old);
}

TEST(RaftClusterTest, CommittedEntriesSurviveCrashOfEveryServer) {
  sim::World world(Quiet(3));
  ASSERT_TRUE(world.RunFor(1'000'000).ok());
  Index last = 0;
  for (int i = 0; i < 20; ++i) last = *world.Propose("x");
  ASSERT_TRUE(world.RunFor(500'000).ok());
  ASSERT_GE(world.Node(*world.Leader())->commit(), last);
  for (NodeId id = 1; id <= 3; ++id) world.Crash(id);
  for (NodeId id = 1; id <= 3; ++id) world.Restart(id);
  ASSERT_TRUE(world.RunFor(2'000'000).ok());  // the checks compare with what was committed
  ASSERT_TRUE(world.Leader().has_value());
  for (NodeId id = 1; id <= 3; ++id) EXPECT_GE(world.Applied(id), last);
}

}  // namespace
}  // namespace caracal::raft

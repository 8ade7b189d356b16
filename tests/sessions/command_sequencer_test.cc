// CommandSequencer: the leader puts a session's commands into the log in
// sequence order (DESIGN.md section 4), so every handler sees strictly
// increasing commit indexes (Copycat: "unique and monotonically increasing").

#include "framework/server/command_sequencer.h"

#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace caracal::server {
namespace {

// What the sequencer holds: the command's sequence (for the assertions).
using Sequencer = CommandSequencer<uint64_t>;

class CommandSequencerTest : public ::testing::Test {
 protected:
  // Offers command `sequence` of `session`; returns what may be proposed.
  std::vector<uint64_t> Offer(uint64_t session, uint64_t sequence, int64_t now = 0) {
    std::vector<uint64_t> propose;
    sequencer_.Offer(
        session, sequence, [&] { return applied_[session]; }, sequence, now, &propose, &refused_);
    return propose;
  }

  std::map<uint64_t, uint64_t> applied_;  // session -> last applied sequence
  std::vector<Sequencer::Refused> refused_;
  Sequencer sequencer_{CommandSequencerOptions{.hold_timeout_us = 1000, .max_held_per_session = 3}};
};

using Seqs = std::vector<uint64_t>;

TEST_F(CommandSequencerTest, CommandsInOrderGoStraightThrough) {
  EXPECT_EQ(Offer(7, 1), Seqs{1});
  EXPECT_EQ(Offer(7, 2), Seqs{2});
  EXPECT_EQ(Offer(7, 3), Seqs{3});
  EXPECT_EQ(sequencer_.held(), 0u);
  EXPECT_TRUE(refused_.empty());
}

TEST_F(CommandSequencerTest, AnEarlyCommandWaitsForItsPredecessorThenFollowsIt) {
  EXPECT_EQ(Offer(7, 3), Seqs{});
  EXPECT_EQ(Offer(7, 2), Seqs{});
  EXPECT_EQ(sequencer_.held(), 2u);
  EXPECT_EQ(sequencer_.HoldingSessions(), Seqs{7});
  EXPECT_EQ(Offer(7, 1), (Seqs{1, 2, 3}));
  EXPECT_EQ(sequencer_.held(), 0u);
  EXPECT_EQ(sequencer_.logged(7), 3u);
}

TEST_F(CommandSequencerTest, TheAppliedSequenceCountsAsLogged) {
  applied_[7] = 4;  // a new leader: commands 1..4 were applied under another
  EXPECT_EQ(Offer(7, 5), Seqs{5});
  EXPECT_EQ(Offer(8, 2), Seqs{}) << "session 8 applied nothing: 1 is missing";
}

TEST_F(CommandSequencerTest, AHeldCommandGoesOnceItsPredecessorApplies) {
  // The predecessor is in the log from an earlier term; it applies later.
  EXPECT_EQ(Offer(7, 2), Seqs{});
  std::vector<uint64_t> propose;
  sequencer_.Applied(7, 1, &propose);
  EXPECT_EQ(propose, Seqs{2});
  EXPECT_EQ(sequencer_.held(), 0u);
}

TEST_F(CommandSequencerTest, AHeldCommandTheAppliedStateCoversIsProposedAsADuplicate) {
  EXPECT_EQ(Offer(7, 3), Seqs{});
  std::vector<uint64_t> propose;
  sequencer_.Applied(7, 3, &propose);  // 3 applied already (a retry's first copy)
  EXPECT_EQ(propose, Seqs{3}) << "proposed again: applying it answers from the cache";
}

TEST_F(CommandSequencerTest, DuplicatesAreProposedAtOnce) {
  EXPECT_EQ(Offer(7, 1), Seqs{1});
  EXPECT_EQ(Offer(7, 2), Seqs{2});
  EXPECT_EQ(Offer(7, 1), Seqs{1});
  EXPECT_EQ(sequencer_.logged(7), 2u);
}

TEST_F(CommandSequencerTest, AHeldCommandIsRefusedAfterTheHoldTimeout) {
  EXPECT_EQ(Offer(7, 2, /*now=*/0), Seqs{});
  sequencer_.Expire(999, &refused_);
  EXPECT_TRUE(refused_.empty());
  sequencer_.Expire(1000, &refused_);
  ASSERT_EQ(refused_.size(), 1u);
  EXPECT_EQ(refused_[0].item, 2u);
  EXPECT_TRUE(absl::IsUnavailable(refused_[0].status)) << refused_[0].status;
  EXPECT_NE(refused_[0].status.message().find("arrived before command 1"), std::string::npos) << refused_[0].status;
  EXPECT_EQ(sequencer_.held(), 0u);
}

TEST_F(CommandSequencerTest, HoldingIsBoundedPerSession) {
  EXPECT_EQ(Offer(7, 3), Seqs{});
  EXPECT_EQ(Offer(7, 4), Seqs{});
  EXPECT_EQ(Offer(7, 5), Seqs{});
  EXPECT_EQ(Offer(7, 6), Seqs{});
  ASSERT_EQ(refused_.size(), 1u);
  EXPECT_EQ(refused_[0].item, 6u);
  EXPECT_TRUE(absl::IsUnavailable(refused_[0].status));
  EXPECT_EQ(sequencer_.held(), 3u);
}

TEST_F(CommandSequencerTest, ALaterCopyOfAHeldCommandReplacesIt) {
  EXPECT_EQ(Offer(7, 3), Seqs{});
  EXPECT_EQ(Offer(7, 3), Seqs{});
  ASSERT_EQ(refused_.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(refused_[0].status));
  EXPECT_EQ(sequencer_.held(), 1u);
}

TEST_F(CommandSequencerTest, ResetForgetsTheTermAndRefusesWhatIsHeld) {
  EXPECT_EQ(Offer(7, 1), Seqs{1});
  EXPECT_EQ(Offer(7, 3), Seqs{});
  sequencer_.Reset(absl::UnavailableError("not the leader"), &refused_);
  ASSERT_EQ(refused_.size(), 1u);
  EXPECT_EQ(refused_[0].item, 3u);
  EXPECT_EQ(sequencer_.logged(7), 0u);
  // Command 1 may have been lost with the term: 2 waits for it again.
  EXPECT_EQ(Offer(7, 2), Seqs{});
}

TEST_F(CommandSequencerTest, PruneForgetsSessionsWhoseCommandsAllApplied) {
  EXPECT_EQ(Offer(7, 1), Seqs{1});
  EXPECT_EQ(Offer(8, 1), Seqs{1});
  EXPECT_EQ(Offer(9, 2), Seqs{});
  applied_[7] = 1;
  sequencer_.Prune([&](uint64_t session) { return applied_[session]; });
  EXPECT_EQ(sequencer_.sessions(), 2u) << "8 has a command in flight, 9 one held";
  EXPECT_EQ(sequencer_.logged(8), 1u);
}

}  // namespace
}  // namespace caracal::server

// The replicated session state, one rule at a time.

#include "framework/server/sessions.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace caracal::server {
namespace {

constexpr LogTime kSecond = 1'000'000;

TEST(SessionTableTest, RegisterOpensASessionNamedByItsIndex) {
  SessionTable t;
  t.Register(7, 100, "client-a", 5 * kSecond);
  ASSERT_NE(t.Find(7), nullptr);
  EXPECT_EQ(t.Find(7)->client_id, "client-a");
  EXPECT_EQ(t.Find(7)->keep_alive, 100);
  EXPECT_EQ(t.Find(8), nullptr);
}

TEST(SessionTableTest, SessionIsSuspectOnlyAfterItsTimeoutPassesInLogTime) {
  SessionTable t;
  t.Register(1, 0, "c", 5 * kSecond);
  EXPECT_TRUE(t.Suspects(5 * kSecond).empty());
  EXPECT_EQ(t.Suspects(5 * kSecond + 1), std::vector<uint64_t>{1});
  EXPECT_EQ(t.NextExpiry(), 5 * kSecond);
  ASSERT_TRUE(t.KeepAlive(1, 2, 4 * kSecond, 0, 0));
  EXPECT_TRUE(t.Suspects(5 * kSecond + 1).empty());
  EXPECT_EQ(t.NextExpiry(), 9 * kSecond);
}

TEST(SessionTableTest, ExpiryIsVoidWhenAKeepAliveWasAppliedFirst) {
  SessionTable t;
  t.Register(1, 0, "c", kSecond);
  // The leader saw it suspect at 2 s and proposed an expiry; a keep-alive got
  // into the log before that entry.
  ASSERT_TRUE(t.KeepAlive(1, 5, 2 * kSecond, 0, 0));
  EXPECT_FALSE(t.Unregister(1, 2 * kSecond + 10, /*expired=*/true).has_value());
  EXPECT_NE(t.Find(1), nullptr);
  // Without keep-alives it does expire.
  EXPECT_TRUE(t.Unregister(1, 4 * kSecond, /*expired=*/true).has_value());
  EXPECT_EQ(t.Find(1), nullptr);
}

TEST(SessionTableTest, ANewLeaderResetsEveryKeepAlive) {
  SessionTable t;
  t.Register(1, 0, "a", kSecond);
  t.Register(2, 0, "b", kSecond);
  t.ResetKeepAlives(10 * kSecond);  // the cluster was leaderless for 10 s
  EXPECT_TRUE(t.Suspects(10 * kSecond + kSecond).empty());
}

TEST(SessionTableTest, CommandsAreClassifiedBySequence) {
  SessionTable t;
  t.Register(1, 0, "c", kSecond);
  EXPECT_EQ(t.Classify(1, 1), SessionTable::Order::kNext);
  EXPECT_EQ(t.Classify(1, 3), SessionTable::Order::kEarly);
  EXPECT_EQ(t.Classify(9, 1), SessionTable::Order::kUnknownSession);
  t.RecordResponse(1, 1, CachedResponse{10, Bytes(std::string("r1")), 0});
  EXPECT_EQ(t.Classify(1, 1), SessionTable::Order::kDuplicate);
  EXPECT_EQ(t.Classify(1, 2), SessionTable::Order::kNext);
}

TEST(SessionTableTest, DuplicatesAreAnsweredFromTheCacheUntilAcknowledged) {
  SessionTable t;
  t.Register(1, 0, "c", kSecond);
  t.RecordResponse(1, 1, CachedResponse{10, Bytes(std::string("r1")), 0});
  t.RecordResponse(1, 2, CachedResponse{11, Bytes(std::string("r2")), 0});
  auto cached = t.CachedFor(1, 2);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached->result, "r2");
  EXPECT_EQ(cached->index, 11u);
  ASSERT_TRUE(t.KeepAlive(1, 20, 1, /*command_sequence=*/1, 0));
  EXPECT_TRUE(absl::IsNotFound(t.CachedFor(1, 1).status()));
  EXPECT_TRUE(t.CachedFor(1, 2).ok());
  // An acknowledgement beyond what was applied trims only what exists.
  ASSERT_TRUE(t.KeepAlive(1, 21, 2, /*command_sequence=*/99, 0));
  EXPECT_EQ(t.Find(1)->acked_sequence, 2u);
}

TEST(SessionTableTest, EventBatchesChainByIndexAndAreTrimmedByAcknowledgement) {
  SessionTable t;
  t.Register(1, 0, "c", kSecond);
  t.Publish(1, 5, PublishedEvent{"a", "x"});
  t.Publish(1, 5, PublishedEvent{"b", "y"});
  t.Publish(1, 9, PublishedEvent{"a", "z"});
  auto all = t.EventsAfter(1, 0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].index, 5u);
  EXPECT_EQ(all[0].previous, 0u);
  EXPECT_EQ(all[0].events.size(), 2u);
  EXPECT_EQ(all[1].index, 9u);
  EXPECT_EQ(all[1].previous, 5u);
  EXPECT_EQ(t.EventsAfter(1, 5).size(), 1u);
  ASSERT_TRUE(t.KeepAlive(1, 10, 1, 0, /*event_index=*/5));
  EXPECT_EQ(t.EventsAfter(1, 0).size(), 1u);
  // A response records the last batch published before its own index: the
  // batch at its index (its own events) comes after it.
  t.RecordResponse(1, 1, CachedResponse{9, Bytes(std::string("r")), 0});
  EXPECT_EQ(t.CachedFor(1, 1)->event_index, 5u);
  t.RecordResponse(1, 2, CachedResponse{12, Bytes(std::string("r")), 0});
  EXPECT_EQ(t.CachedFor(1, 2)->event_index, 9u);
}

TEST(SessionTableTest, DigestCoversTheWholeState) {
  SessionTable a, b;
  for (SessionTable* t : {&a, &b}) {
    t->Register(1, 0, "c", kSecond);
    t->Publish(1, 3, PublishedEvent{"e", "p"});
  }
  EXPECT_EQ(a.Digest(), b.Digest());
  b.RecordResponse(1, 1, CachedResponse{4, Bytes(std::string("r")), 0});
  EXPECT_NE(a.Digest(), b.Digest());
}

}  // namespace
}  // namespace caracal::server

namespace caracal::server {
namespace {

TEST(ResponseCacheTest, TheRingGrowsWrapsAndKeepsSequenceOrder) {
  ResponseCache cache;
  for (uint64_t seq = 1; seq <= 10; ++seq) cache.Put(seq, CachedResponse{seq, Bytes(std::to_string(seq)), 0});
  cache.TrimThrough(7);
  for (uint64_t seq = 11; seq <= 30; ++seq) cache.Put(seq, CachedResponse{seq, Bytes(std::to_string(seq)), 0});
  cache.Put(5, CachedResponse{5, Bytes(std::string("late")), 0});  // at or below the trimmed point: ignored
  EXPECT_EQ(cache.size(), 23u);
  EXPECT_EQ(cache.Find(7), nullptr);
  EXPECT_EQ(cache.Find(5), nullptr);
  cache.Detach();  // results get storage of their own; nothing else changes
  std::vector<uint64_t> order;
  cache.ForEach([&](uint64_t seq, const CachedResponse& r) {
    order.push_back(seq);
    EXPECT_EQ(*r.result, std::to_string(seq));
  });
  ASSERT_EQ(order.size(), 23u);
  EXPECT_EQ(order.front(), 8u);
  EXPECT_EQ(order.back(), 30u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  cache.TrimThrough(30);
  EXPECT_EQ(cache.size(), 0u);
  cache.Put(31, CachedResponse{31, Bytes(std::string("31")), 0});
  ASSERT_NE(cache.Find(31), nullptr);
  EXPECT_EQ(*cache.Find(31)->result, "31");
}

}  // namespace
}  // namespace caracal::server

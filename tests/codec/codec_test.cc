#include "caracal/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "caracal/operation.h"

namespace {

using ::testing::HasSubstr;

// ---- the operations of the header's example ----

struct Put : caracal::Command<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.put";
  std::string key, value;
  std::optional<int64_t> ttl_ms;
  CARACAL_FIELDS(key, value, ttl_ms)
};

struct Get : caracal::Query<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.get";
  std::string key;
  CARACAL_FIELDS(key)
};

struct Remove : caracal::Command<void> {
  static constexpr std::string_view kName = "kv.remove";
  std::string key;
  CARACAL_FIELDS(key)
  caracal::CompactionMode compaction() const { return caracal::CompactionMode::kTombstone; }
};

struct Scan : caracal::Query<std::vector<std::string>> {
  static constexpr std::string_view kName = "kv.scan";
  std::string prefix;
  CARACAL_FIELDS(prefix)
  caracal::Consistency consistency() const { return caracal::Consistency::kSequential; }
};

struct Ping : caracal::Query<void> {  // no fields at all
  static constexpr std::string_view kName = "ping";
};

// ---- structs for round trips ----

enum class Color : uint8_t { kRed = 1, kBlue = 200 };
enum Legacy : int16_t { kLegacyA = -5, kLegacyB = 7 };

struct Item {
  std::string name;
  int32_t count = 0;
  CARACAL_FIELDS(name, count)
  bool operator==(const Item&) const = default;
  bool operator<(const Item& o) const { return std::tie(name, count) < std::tie(o.name, o.count); }
};

struct Order : caracal::Command<Item> {
  static constexpr std::string_view kName = "shop.order";
  uint64_t id = 0;
  std::vector<Item> items;
  std::map<std::string, Item> by_name;
  std::optional<Item> gift;
  Color color = Color::kRed;
  std::chrono::milliseconds timeout{0};
  CARACAL_FIELDS(id, items, by_name, gift, color, timeout)
  bool operator==(const Order& o) const {
    return id == o.id && items == o.items && by_name == o.by_name && gift == o.gift && color == o.color &&
           timeout == o.timeout;
  }
};

struct Tree {
  int32_t value = 0;
  std::vector<Tree> children;
  CARACAL_FIELDS(value, children)
};

Tree Chain(int depth) {
  Tree root{.value = 0};
  Tree* at = &root;
  for (int i = 1; i < depth; ++i) {
    at->children.push_back(Tree{.value = i});
    at = &at->children.back();
  }
  return root;
}

template <typename T>
T RoundTrip(const T& value) {
  std::string bytes = caracal::codec::ToBytes(value);
  absl::StatusOr<T> decoded = caracal::codec::FromBytes<T>(bytes);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? *decoded : T{};
}

template <typename T>
void ExpectRoundTrip(const T& value) {
  EXPECT_EQ(RoundTrip(value), value);
}

// Encodes `value` and decodes it as T, returning the status.
template <typename T, typename U>
absl::Status DecodeAs(const U& value) {
  return caracal::codec::FromBytes<T>(caracal::codec::ToBytes(value)).status();
}

// ---- operation.h ----

TEST(CodecOperationStructTest, DesignatedInitializersBuildOperations) {
  Put p{.key = "a", .value = "1"};
  Put q{.key = "b", .value = "2", .ttl_ms = 30};
  Get g{.key = "a"};
  EXPECT_EQ(p.key, "a");
  EXPECT_EQ(p.value, "1");
  EXPECT_FALSE(p.ttl_ms.has_value());
  EXPECT_EQ(q.ttl_ms, 30);
  EXPECT_EQ(g.key, "a");
}

TEST(CodecOperationStructTest, ConceptsClassifyOperations) {
  static_assert(std::is_aggregate_v<Put> && std::is_aggregate_v<Get>);
  static_assert(caracal::CommandType<Put> && !caracal::QueryType<Put>);
  static_assert(caracal::QueryType<Get> && !caracal::CommandType<Get>);
  static_assert(caracal::OperationType<Put> && caracal::OperationType<Get> && caracal::OperationType<Ping>);
  static_assert(!caracal::OperationType<Item>);  // no kName, no base
  static_assert(!caracal::OperationType<std::string>);
  static_assert(std::same_as<caracal::ResultOf<Put>, std::optional<std::string>>);
  static_assert(std::same_as<caracal::ResultOf<Remove>, void>);
  static_assert(std::same_as<caracal::WireResultOf<Remove>, std::monostate>);
  static_assert(std::same_as<caracal::WireResultOf<Scan>, std::vector<std::string>>);
  SUCCEED();
}

TEST(CodecOperationStructTest, CompactionAndConsistencyHaveOverridableDefaults) {
  EXPECT_EQ(Put{}.compaction(), caracal::CompactionMode::kDefault);
  EXPECT_EQ(Remove{}.compaction(), caracal::CompactionMode::kTombstone);
  EXPECT_EQ(Get{}.consistency(), caracal::Consistency::kLinearizable);
  EXPECT_EQ(Scan{}.consistency(), caracal::Consistency::kSequential);
}

// ---- round trips ----

template <typename T>
void ExpectIntegerLimitsRoundTrip() {
  ExpectRoundTrip<T>(std::numeric_limits<T>::min());
  ExpectRoundTrip<T>(std::numeric_limits<T>::max());
  ExpectRoundTrip<T>(T{0});
}

TEST(CodecTest, RoundTripsEveryIntegerTypeAtItsLimits) {
  ExpectIntegerLimitsRoundTrip<int8_t>();
  ExpectIntegerLimitsRoundTrip<uint8_t>();
  ExpectIntegerLimitsRoundTrip<int16_t>();
  ExpectIntegerLimitsRoundTrip<uint16_t>();
  ExpectIntegerLimitsRoundTrip<int32_t>();
  ExpectIntegerLimitsRoundTrip<uint32_t>();
  ExpectIntegerLimitsRoundTrip<int64_t>();
  ExpectIntegerLimitsRoundTrip<uint64_t>();
  ExpectIntegerLimitsRoundTrip<char>();
  ExpectIntegerLimitsRoundTrip<signed char>();
  ExpectIntegerLimitsRoundTrip<unsigned char>();
  ExpectIntegerLimitsRoundTrip<char16_t>();
  ExpectIntegerLimitsRoundTrip<char32_t>();
  ExpectIntegerLimitsRoundTrip<wchar_t>();
  ExpectIntegerLimitsRoundTrip<long long>();
  ExpectIntegerLimitsRoundTrip<unsigned long>();
  ExpectIntegerLimitsRoundTrip<size_t>();
}

TEST(CodecTest, RoundTripsScalars) {
  ExpectRoundTrip(true);
  ExpectRoundTrip(false);
  ExpectRoundTrip(Color::kBlue);
  ExpectRoundTrip(kLegacyA);
  ExpectRoundTrip(3.25);
  ExpectRoundTrip(-1.5f);
  ExpectRoundTrip(std::numeric_limits<double>::infinity());
  ExpectRoundTrip(std::numeric_limits<double>::lowest());
  EXPECT_TRUE(std::isnan(RoundTrip(std::nan(""))));
  ExpectRoundTrip(std::monostate{});
}

TEST(CodecTest, RoundTripsStringsIncludingBinaryAndNul) {
  ExpectRoundTrip(std::string());
  ExpectRoundTrip(std::string("hello"));
  ExpectRoundTrip(std::string("a\0b\xff\x80", 5));
  ExpectRoundTrip(std::string(100000, 'x'));
  ExpectRoundTrip(std::vector<uint8_t>{0, 1, 255});
  ExpectRoundTrip(std::vector<char>{'a', '\0', 'z'});
  ExpectRoundTrip(std::vector<std::byte>{std::byte{7}, std::byte{0}});
  ExpectRoundTrip(std::vector<uint8_t>{});
}

TEST(CodecTest, RoundTripsDurationsAsCountsOfTheirOwnPeriod) {
  ExpectRoundTrip(std::chrono::milliseconds(1500));
  ExpectRoundTrip(std::chrono::nanoseconds(std::numeric_limits<int64_t>::min()));
  ExpectRoundTrip(std::chrono::duration<double>(0.25));
  // The count travels as is: 1500 ms read as seconds is 1500 s, not 1 s.
  auto as_seconds = caracal::codec::FromBytes<std::chrono::seconds>(
      caracal::codec::ToBytes(std::chrono::milliseconds(1500)));
  ASSERT_TRUE(as_seconds.ok());
  EXPECT_EQ(as_seconds->count(), 1500);
}

TEST(CodecTest, RoundTripsSequences) {
  ExpectRoundTrip(std::vector<int>{});
  ExpectRoundTrip(std::vector<int>{1, -2, 3});
  ExpectRoundTrip(std::vector<bool>{true, false, true});
  ExpectRoundTrip(std::vector<std::string>{"a", "", "c"});
  ExpectRoundTrip(std::vector<std::vector<int16_t>>{{1}, {}, {2, 3}});
  ExpectRoundTrip(std::array<uint16_t, 3>{1, 2, 65535});
}

TEST(CodecTest, RoundTripsOptionals) {
  ExpectRoundTrip(std::optional<int>());
  ExpectRoundTrip(std::optional<int>(0));
  ExpectRoundTrip(std::optional<std::string>(""));
  ExpectRoundTrip(std::optional<std::optional<int>>());
  ExpectRoundTrip(std::optional<std::optional<int>>(std::nullopt));
  ExpectRoundTrip(std::optional<std::optional<int>>(5));
  ExpectRoundTrip(std::optional<std::monostate>(std::monostate{}));
  ExpectRoundTrip(std::vector<std::optional<int>>{1, std::nullopt, 3});
}

TEST(CodecTest, RoundTripsPairsAndTuples) {
  ExpectRoundTrip(std::pair<std::string, int>("a", 1));
  ExpectRoundTrip(std::tuple<>());
  ExpectRoundTrip(std::tuple<int, std::string, std::optional<double>, bool>(1, "x", std::nullopt, true));
}

TEST(CodecTest, RoundTripsMapsAndSets) {
  ExpectRoundTrip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  ExpectRoundTrip(std::map<int, std::vector<std::string>>{});
  ExpectRoundTrip(std::unordered_map<int64_t, std::string>{{1, "x"}, {-7, "y"}});
  ExpectRoundTrip(absl::flat_hash_map<std::string, std::optional<int>>{{"k", 3}, {"n", std::nullopt}});
  ExpectRoundTrip(std::set<std::string>{"x", "y"});
  ExpectRoundTrip(std::unordered_set<int>{4, 5, 6});
  ExpectRoundTrip(absl::flat_hash_set<uint64_t>{1, 2});
  ExpectRoundTrip(std::map<Item, Item>{{Item{"k", 1}, Item{"v", 2}}});
}

TEST(CodecTest, UnorderedContainersEncodeInKeyOrder) {
  std::unordered_map<int, int> a, b;
  for (int i = 0; i < 100; ++i) a[i] = i;
  for (int i = 99; i >= 0; --i) b[i] = i;
  b.rehash(1000);  // a different bucket layout, so a different iteration order
  EXPECT_EQ(caracal::codec::ToBytes(a), caracal::codec::ToBytes(b));
  EXPECT_EQ(caracal::codec::ToBytes(a), caracal::codec::ToBytes(std::map<int, int>(a.begin(), a.end())));
}

TEST(CodecTest, RoundTripsNestedRecords) {
  Order order{.id = 42,
              .items = {{.name = "apple", .count = 3}, {.name = "pear", .count = -1}},
              .by_name = {{"apple", {.name = "apple", .count = 3}}},
              .gift = Item{.name = "card", .count = 1},
              .color = Color::kBlue,
              .timeout = std::chrono::milliseconds(250)};
  ExpectRoundTrip(order);
  ExpectRoundTrip(Order{});
  Tree tree = Chain(10);
  Tree back = RoundTrip(tree);
  int depth = 0;
  for (const Tree* t = &back; !t->children.empty(); t = &t->children[0]) ++depth;
  EXPECT_EQ(depth, 9);
}

TEST(CodecTest, RoundTripsAnOperationWithNoFields) {
  auto view = caracal::codec::ParseOperation(caracal::codec::EncodeOperation(Ping{}));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->name(), "ping");
  EXPECT_TRUE(view->DecodeArgs<Ping>().ok());
}

// ---- errors ----

TEST(CodecTest, IntegerThatDoesNotFitIsAnError) {
  absl::Status s = DecodeAs<uint8_t>(int64_t{300});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("integer 300 does not fit"));
  EXPECT_FALSE(DecodeAs<uint32_t>(int64_t{-1}).ok());
  EXPECT_FALSE(DecodeAs<int64_t>(std::numeric_limits<uint64_t>::max()).ok());
  EXPECT_FALSE(DecodeAs<int8_t>(int64_t{-129}).ok());
  EXPECT_FALSE(DecodeAs<int8_t>(int64_t{128}).ok());
  EXPECT_FALSE(DecodeAs<char16_t>(int64_t{70000}).ok());
  EXPECT_FALSE(DecodeAs<Color>(int64_t{256}).ok());
  EXPECT_FALSE(DecodeAs<std::chrono::duration<int16_t>>(std::chrono::seconds(40000)).ok());
}

TEST(CodecTest, IntegerOfTheOtherSignednessDecodesWhenItFits) {
  auto a = caracal::codec::FromBytes<uint32_t>(caracal::codec::ToBytes(int64_t{7}));
  auto b = caracal::codec::FromBytes<int8_t>(caracal::codec::ToBytes(uint64_t{127}));
  auto c = caracal::codec::FromBytes<int64_t>(caracal::codec::ToBytes(uint8_t{255}));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, 7u);
  EXPECT_EQ(*b, 127);
  EXPECT_EQ(*c, 255);
}

TEST(CodecTest, DoubleTooLargeForAFloatIsAnError) {
  EXPECT_FALSE(DecodeAs<float>(1e300).ok());
  EXPECT_TRUE(DecodeAs<float>(1e30).ok());
  EXPECT_TRUE(DecodeAs<float>(std::numeric_limits<double>::infinity()).ok());
}

// The same kName, with ttl_ms sent as text.
struct PutWithTextTtl : caracal::Command<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.put";
  std::string key, value, ttl_ms;
  CARACAL_FIELDS(key, value, ttl_ms)
};

TEST(CodecTest, WrongKindNamesTheOperationAndTheField) {
  std::string bytes = caracal::codec::EncodeOperation(PutWithTextTtl{.key = "a", .value = "1", .ttl_ms = "soon"});
  auto view = caracal::codec::ParseOperation(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  absl::StatusOr<Put> put = view->DecodeArgs<Put>();
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put.status().message(), "kv.put: field 2 (ttl_ms): expected an integer, got text");
}

struct Bad {
  std::string name;
  int32_t count = 0;
  CARACAL_FIELDS(name, count)
};
struct BadOrder {
  uint64_t id = 0;
  std::vector<Bad> items;
  CARACAL_FIELDS(id, items)
};
struct BadItemOrder {  // each item's "name" is an integer
  uint64_t id = 0;
  std::vector<std::tuple<int, int>> items;
  CARACAL_FIELDS(id, items)
};

TEST(CodecTest, ErrorsNameThePathThroughNestedValues) {
  BadItemOrder bad{.id = 1, .items = {{0, 0}, {5, 6}}};
  absl::Status s = DecodeAs<BadOrder>(bad);
  EXPECT_EQ(s.message(), "value: field 1 (items): element 0: field 0 (name): expected text, got an integer");

  std::map<std::string, std::vector<int>> map{{"a", {1, 2}}, {"b", {3, -4}}};
  s = DecodeAs<std::map<std::string, std::vector<uint8_t>>>(map);
  EXPECT_EQ(s.message(), "value: value of entry 0: expected data, got a list");
  s = DecodeAs<std::map<std::string, std::vector<uint32_t>>>(map);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("value: value of entry 1: element 1: integer -4 does not fit the field's type"));
}

TEST(CodecTest, DuplicateKeysAndWrongAritiesAreErrors) {
  std::vector<std::pair<int, int>> entries{{1, 10}, {1, 11}};
  EXPECT_THAT(std::string(DecodeAs<std::map<int, int>>(entries).message()), HasSubstr("duplicate map key"));
  EXPECT_THAT(std::string(DecodeAs<std::set<int>>(std::vector<int>{3, 3}).message()),
              HasSubstr("duplicate set element"));
  EXPECT_FALSE((DecodeAs<std::pair<int, int>>(std::tuple<int, int, int>(1, 2, 3)).ok()));
  EXPECT_FALSE((DecodeAs<std::tuple<int, int>>(std::tuple<int>(1)).ok()));
  EXPECT_FALSE((DecodeAs<std::array<int, 2>>(std::vector<int>{1, 2, 3}).ok()));
  EXPECT_FALSE((DecodeAs<std::map<int, int>>(std::vector<int>{1}).ok()));
  EXPECT_FALSE(DecodeAs<std::monostate>(1).ok());
  EXPECT_FALSE(DecodeAs<bool>(1).ok());
  EXPECT_FALSE(DecodeAs<std::string>(std::vector<std::string>{}).ok());
}

TEST(CodecTest, NestingDeeperThanTheLimitIsRejected) {
  ASSERT_TRUE(DecodeAs<Tree>(Chain(caracal::codec::kMaxDepth / 2)).ok());
  absl::Status s = DecodeAs<Tree>(Chain(caracal::codec::kMaxDepth + 10));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("nest deeper than 64 levels"));
}

// ---- evolution ----

struct PutV1 : caracal::Command<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.put";
  std::string key, value;
  CARACAL_FIELDS(key, value)
};
struct PutV2 : caracal::Command<std::optional<std::string>> {
  static constexpr std::string_view kName = "kv.put";
  std::string key, value;
  std::optional<int64_t> ttl_ms;
  int32_t priority = 5;
  CARACAL_FIELDS(key, value, ttl_ms, priority)
};

TEST(CodecEvolutionTest, NewerStructDecodesAnOldEncodingWithDefaults) {
  auto view = caracal::codec::ParseOperation(caracal::codec::EncodeOperation(PutV1{.key = "k", .value = "v"}));
  ASSERT_TRUE(view.ok());
  absl::StatusOr<PutV2> v2 = view->DecodeArgs<PutV2>();
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->key, "k");
  EXPECT_EQ(v2->value, "v");
  EXPECT_FALSE(v2->ttl_ms.has_value());
  EXPECT_EQ(v2->priority, 5);
}

TEST(CodecEvolutionTest, OlderStructIgnoresFieldsAddedAtTheEnd) {
  auto view = caracal::codec::ParseOperation(
      caracal::codec::EncodeOperation(PutV2{.key = "k", .value = "v", .ttl_ms = 9, .priority = 1}));
  ASSERT_TRUE(view.ok());
  absl::StatusOr<PutV1> v1 = view->DecodeArgs<PutV1>();
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->key, "k");
  EXPECT_EQ(v1->value, "v");
}

struct CounterV1 {
  int32_t n = 0;
  CARACAL_FIELDS(n)
};
struct CounterV2 {
  std::optional<int64_t> n;
  CARACAL_FIELDS(n)
};

TEST(CodecEvolutionTest, AFieldMayBecomeOptional) {
  auto v2 = caracal::codec::FromBytes<CounterV2>(caracal::codec::ToBytes(CounterV1{.n = 3}));
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->n, 3);
}

// ---- operations ----

TEST(OperationCodecTest, ParseOperationLooksUpTheHandlerByName) {
  std::map<std::string, std::function<absl::StatusOr<std::string>(const caracal::codec::OperationView&)>> handlers;
  handlers[std::string(Put::kName)] = [](const caracal::codec::OperationView& op) -> absl::StatusOr<std::string> {
    auto put = op.DecodeArgs<Put>();
    if (!put.ok()) return put.status();
    return "put " + put->key + "=" + put->value;
  };
  handlers[std::string(Get::kName)] = [](const caracal::codec::OperationView& op) -> absl::StatusOr<std::string> {
    auto get = op.DecodeArgs<Get>();
    if (!get.ok()) return get.status();
    return "get " + get->key;
  };
  auto dispatch = [&](const std::string& bytes) -> absl::StatusOr<std::string> {
    auto op = caracal::codec::ParseOperation(bytes);
    if (!op.ok()) return op.status();
    auto it = handlers.find(std::string(op->name()));
    if (it == handlers.end()) return absl::NotFoundError("unknown operation " + std::string(op->name()));
    return it->second(*op);
  };
  EXPECT_EQ(*dispatch(caracal::codec::EncodeOperation(Put{.key = "a", .value = "1"})), "put a=1");
  EXPECT_EQ(*dispatch(caracal::codec::EncodeOperation(Get{.key = "a"})), "get a");
  EXPECT_EQ(dispatch(caracal::codec::EncodeOperation(Remove{.key = "a"})).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(OperationCodecTest, DecodingArgsAsAnotherOperationIsAnError) {
  auto view = caracal::codec::ParseOperation(caracal::codec::EncodeOperation(Get{.key = "a"}));
  ASSERT_TRUE(view.ok());
  absl::StatusOr<Put> put = view->DecodeArgs<Put>();
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(put.status().message(), "operation \"kv.get\" cannot be decoded as \"kv.put\"");
}

TEST(OperationCodecTest, ViewOwnsItsBytesAndAcceptsUnalignedInput) {
  std::string bytes = caracal::codec::EncodeOperation(Put{.key = "a", .value = "1", .ttl_ms = 7});
  std::string shifted = " " + bytes;
  absl::StatusOr<caracal::codec::OperationView> view = caracal::codec::ParseOperation(
      std::string_view(shifted).substr(1));
  shifted.assign(shifted.size(), '\xff');  // the view must not read the caller's buffer any more
  bytes.clear();
  ASSERT_TRUE(view.ok()) << view.status();
  caracal::codec::OperationView moved = *std::move(view);
  auto put = moved.DecodeArgs<Put>();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->key, "a");
  EXPECT_EQ(put->ttl_ms, 7);
}

TEST(OperationCodecTest, RejectsMessagesThatAreNotOperations) {
  EXPECT_EQ(caracal::codec::ParseOperation("").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(caracal::codec::ParseOperation("1234567").status().code(), absl::StatusCode::kDataLoss);
  std::string good = caracal::codec::EncodeOperation(Get{.key = "a"});
  EXPECT_THAT(std::string(caracal::codec::ParseOperation(good + std::string(8, '\0')).status().message()),
              HasSubstr("trailing bytes"));
  // A wire::Value holding an integer read as an Operation has no name.
  absl::Status not_op = caracal::codec::ParseOperation(caracal::codec::ToBytes(int64_t{5})).status();
  EXPECT_EQ(not_op.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(not_op.message(), "operation has no name");
  // Nor has a message whose root pointer is null (one segment of one zero word).
  std::string null_root("\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0", 16);
  EXPECT_EQ(caracal::codec::ParseOperation(null_root).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OperationCodecTest, VoidResultsTravelAsMonostate) {
  std::string bytes = caracal::codec::EncodeResult<Remove>(std::monostate{});
  EXPECT_TRUE(caracal::codec::DecodeResult<Remove>(bytes).ok());
  absl::Status wrong = caracal::codec::DecodeResult<Remove>(caracal::codec::ToBytes(1)).status();
  EXPECT_EQ(wrong.message(), "result of kv.remove: expected none, got an integer");

  auto previous = caracal::codec::DecodeResult<Put>(caracal::codec::EncodeResult<Put>(std::string("old")));
  ASSERT_TRUE(previous.ok());
  EXPECT_EQ(*previous, "old");
}

TEST(OperationCodecTest, DebugStringRendersArgs) {
  auto view = caracal::codec::ParseOperation(
      caracal::codec::EncodeOperation(Put{.key = "a", .value = "q\"x", .ttl_ms = 5}));
  ASSERT_TRUE(view.ok());
  auto args = view->Args();
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(caracal::codec::DebugString(*args), R"({"a", "q\"x", 5})");
  EXPECT_EQ(caracal::codec::DebugString(*args, 4), R"({"a"...)");
}

// ---- hostile bytes ----

using Mixed = std::tuple<double, bool, std::vector<uint8_t>, std::optional<std::optional<int>>>;

// Valid encodings to mutate: every kind of value appears in one of them.
std::vector<std::string> Seeds() {
  Order order{.id = 42,
              .items = {{.name = "apple", .count = 3}, {.name = "pear", .count = -1}},
              .by_name = {{"apple", {.name = "apple", .count = 3}}},
              .gift = Item{.name = "card", .count = 1},
              .color = Color::kBlue,
              .timeout = std::chrono::milliseconds(250)};
  return {caracal::codec::EncodeOperation(order),
          caracal::codec::EncodeOperation(Put{.key = "a", .value = "1", .ttl_ms = 7}),
          caracal::codec::EncodeOperation(Get{.key = "a"}),
          caracal::codec::ToBytes(Chain(20)),
          caracal::codec::ToBytes(Mixed(1.5, true, {1, 2, 3}, std::optional<int>()))};
}

// Feeds `bytes` to every decoder; they must return (ok or not), never crash or throw.
int DecodeEverything(const std::string& bytes) {
  int ok = 0;
  if (auto op = caracal::codec::ParseOperation(bytes); op.ok()) {
    ok += op->DecodeArgs<Order>().ok();
    ok += op->DecodeArgs<Put>().ok();
    ok += op->DecodeArgs<Get>().ok();
    if (auto args = op->Args(); args.ok()) {
      Tree tree;
      ok += caracal::codec::Decode(*args, &tree).ok();
      (void)caracal::codec::DebugString(*args);
    }
  }
  ok += caracal::codec::FromBytes<Tree>(bytes).ok();
  ok += caracal::codec::FromBytes<Order>(bytes).ok();
  ok += caracal::codec::FromBytes<std::map<std::string, std::vector<int8_t>>>(bytes).ok();
  ok += caracal::codec::FromBytes<Mixed>(bytes).ok();
  caracal::codec::FuzzOperationBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return ok;
}

TEST(CodecHostileBytesTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(20240611);
  int decoded = 0;
  for (int i = 0; i < 3000; ++i) {
    size_t words = rng() % 40;
    std::string bytes(words * 8 + (i % 10 == 0 ? rng() % 8 : 0), '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (i % 2 == 0 && bytes.size() >= 8) {
      // A plausible header (one segment of the right size) gets the reader
      // past the first check, into pointers and lists.
      uint32_t segment_words = static_cast<uint32_t>(bytes.size() / 8 - 1);
      std::memset(bytes.data(), 0, 4);
      std::memcpy(bytes.data() + 4, &segment_words, 4);
    }
    decoded += DecodeEverything(bytes);
  }
  RecordProperty("decoded", decoded);
  std::cout << decoded << " of 3000 random inputs decoded as something\n";
}

// A random but well-formed wire::Value, up to `depth` levels deep.
void RandomValue(std::mt19937_64& rng, int depth, caracal::wire::Value::Builder out) {
  int kind = static_cast<int>(rng() % (depth > 0 ? 9 : 7));
  switch (kind) {
    case 0: out.setNone(); break;
    case 1: out.setBool(rng() % 2); break;
    case 2: out.setInt(static_cast<int64_t>(rng()) >> (rng() % 64)); break;
    case 3: out.setUint(rng() >> (rng() % 64)); break;
    case 4: out.setFloat(static_cast<double>(static_cast<int64_t>(rng())) / 7.0); break;
    case 5: out.setText(std::string(rng() % 4, 'a' + static_cast<char>(rng() % 3))); break;
    case 6: out.initData(rng() % 4); break;
    default: {
      unsigned n = static_cast<unsigned>(rng() % 5);
      auto items = kind == 7 ? out.initList(n) : out.initRecord(n);
      for (unsigned i = 0; i < n; ++i) RandomValue(rng, depth - 1, items[i]);
    }
  }
}

TEST(CodecHostileBytesTest, RandomWellFormedValuesDecodeOrFailWithInvalidArgument) {
  std::mt19937_64 rng(99);
  int decoded = 0;
  for (int i = 0; i < 3000; ++i) {
    capnp::MallocMessageBuilder message;
    auto op = message.initRoot<caracal::wire::Operation>();
    op.setName(i % 2 ? "kv.put" : "shop.order");
    RandomValue(rng, 6, op.initArgs());
    std::string bytes = caracal::codec::internal::MessageToBytes(message);
    auto view = caracal::codec::ParseOperation(bytes);
    ASSERT_TRUE(view.ok()) << view.status();
    // A well-formed message can only be the wrong shape: never DataLoss.
    for (absl::Status s : {view->DecodeArgs<Put>().status(), view->DecodeArgs<Order>().status()}) {
      if (s.ok()) {
        ++decoded;
      } else if (s.code() != absl::StatusCode::kInvalidArgument || s.message().empty()) {
        // NameMismatch also is InvalidArgument; anything else is a bug.
        ADD_FAILURE() << s;
      }
    }
    ASSERT_FALSE(caracal::codec::DebugString(*view->Args()).empty());
    DecodeEverything(bytes);
  }
  EXPECT_GT(decoded, 0);
  std::cout << decoded << " of 3000 random well-formed operations decoded\n";
}

TEST(CodecHostileBytesTest, MutatedValidEncodingsNeverCrash) {
  std::mt19937_64 rng(7);
  int accepted = 0, total = 0;
  for (const std::string& seed : Seeds()) {
    ASSERT_GT(DecodeEverything(seed), 0);
    for (int i = 0; i < 1000; ++i) {
      std::string bytes = seed;
      switch (rng() % 4) {
        case 0:  // flip a few bits
          for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) bytes[rng() % bytes.size()] ^= 1 << (rng() % 8);
          break;
        case 1:  // overwrite a word with random bits
          for (int k = 0; k < 8; ++k) bytes[(rng() % (bytes.size() / 8)) * 8 + k] = static_cast<char>(rng());
          break;
        case 2:  // truncate
          bytes.resize(rng() % bytes.size());
          break;
        default:  // set a random byte to an extreme value
          bytes[rng() % bytes.size()] = (rng() % 2) ? '\xff' : '\x7f';
          break;
      }
      ++total;
      accepted += DecodeEverything(bytes) > 0;
    }
  }
  // Sanity: mutations both got past the parser into the decoders and were
  // caught by them.
  EXPECT_GT(accepted, total / 20);
  EXPECT_LT(accepted, total - total / 20);
  std::cout << accepted << " of " << total << " mutated inputs still decoded as something\n";
}

}  // namespace

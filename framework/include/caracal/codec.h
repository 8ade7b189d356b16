#ifndef CARACAL_CODEC_H_
#define CARACAL_CODEC_H_

// The operation codec: how operation structs (caracal/operation.h), their
// arguments and their results are encoded with Cap'n Proto.
//
//   std::string bytes = caracal::codec::EncodeOperation(Put{.key = "a", .value = "1"});
//
//   // On the server: find the handler by name, then decode.
//   absl::StatusOr<caracal::codec::OperationView> op = caracal::codec::ParseOperation(bytes);
//   if (!op.ok()) return op.status();                   // answer the client, change nothing
//   if (op->name() == Put::kName) {
//     absl::StatusOr<Put> put = op->DecodeArgs<Put>();  // "kv.put: field 2 (ttl_ms): ..."
//     ...
//     std::string reply = caracal::codec::EncodeResult<Put>(previous_value);
//   }
//
// Wire shape (serialization/caracal.capnp): every value is a self-describing
// `wire::Value` (a union of none/bool/int/uint/float/text/data/list/record);
// an operation is `wire::Operation {name = T::kName, args = <record>}`. No
// per-application schema is generated; the C++ type is the schema.
//
// Type mapping (encoder -> Value kind; what the decoder also accepts):
//
//   bool                                  bool
//   integers (any width, char types)      signed -> int, unsigned -> uint; either
//                                         kind is accepted if the value fits the
//                                         target type, otherwise it is an error
//                                         (never a silent truncation)
//   enums                                 their underlying integer, as above (the
//                                         value is not checked against the
//                                         enumerators: declare `enum class` or a
//                                         fixed underlying type)
//   float, double                         float (a double too large for a float is
//                                         an error)
//   std::chrono::duration<Rep, Period>    its count(), in its own Period, as Rep
//   std::string                           text (also accepts data; bytes may be
//                                         arbitrary, including NUL)
//   std::vector<1-byte type>              data (char, signed/unsigned char,
//                                         std::byte, char8_t; also accepts text)
//   std::vector<T>, std::array<T, N>      list (an array needs exactly N elements)
//   std::set, std::unordered_set,         list of the elements; a duplicate
//   absl::flat_hash_set, ...              element is an error
//   std::map, std::unordered_map,         list of records [key, value]; a
//   absl::flat_hash_map, ...              duplicate key is an error
//   std::pair, std::tuple                 record with exactly 2 / N members
//   std::optional<T>                      none when empty, else T's own encoding
//                                         (when T can itself be none -- a nested
//                                         optional or monostate -- a present value
//                                         is wrapped in a one-member record)
//   std::monostate (the result of void)   none
//   struct with CARACAL_FIELDS(...)       record of the listed fields, in order
//   operation struct with no fields       empty record
//
// Unordered containers are encoded in key order when the key type has `<`,
// so equal values encode to equal bytes on every server.
//
// Anything else fails to compile with a static_assert naming the problem. To
// support another type, specialize `caracal::codec::ValueCodec<T>` with the
// same two static functions as the primary template.
//
// Evolution: a record (a CARACAL_FIELDS struct, an operation's args) is
// positional: field i of the struct is member i of the record. A decoder
// reads the members it has fields for and ignores extra trailing members; a
// record with fewer members leaves the missing trailing fields as they were
// (their default values). So *adding a field at the end* of an operation is
// compatible in both directions: old servers ignore it, new servers see the
// default when an old client omits it. Reordering fields, removing one that is
// not last, or changing a field's type between incompatible kinds is not
// compatible. Changing T to std::optional<T>, or between integer types whose
// ranges hold the values in use, is. pair/tuple/array are not records and must
// match exactly. kName must never change.
//
// Hostile input: every decoder takes bytes from the network or the log and
// never throws or crashes. Cap'n Proto errors (bad pointers, limits) become
// DataLoss; a well-formed value that does not fit the C++ type becomes
// InvalidArgument. Both messages name the path to the bad value, e.g.
//   "kv.put: field 2 (ttl_ms): expected an integer, got text".
// Values nest at most kMaxDepth levels deep, and reading a message is bounded
// by Cap'n Proto's traversal limit (a few times its size).

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "caracal/operation.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "kj/exception.h"
#include "serialization/caracal.capnp.h"
#include "serialization/scratch_message.h"

namespace caracal::codec {

// How deep values may nest (a record in a list in a record ... counts one
// level per step). Deeper input is rejected before Cap'n Proto's own limit.
inline constexpr int kMaxDepth = 64;

namespace internal {

// Where the decoder is, for error messages. Kept as a fixed stack of small
// segments so that the success path never allocates; text is only built when
// an error is reported.
class DecodeContext {
 public:
  struct Segment {
    enum class Kind : uint8_t { kField, kElement, kMember, kKey, kMapValue, kPresent };
    Kind kind;
    uint32_t index;
    std::string_view field_names;  // kField only: the CARACAL_FIELDS(...) text
  };

  explicit DecodeContext(std::string_view root) : root_(root) {}

  // Enters a child value; false when that would exceed kMaxDepth.
  bool Push(Segment segment) {
    if (depth_ >= kMaxDepth) return false;
    path_[depth_++] = segment;
    return true;
  }
  void Pop() { --depth_; }

  // "<root>: <path>: expected <expected>, got <kind of in>" (InvalidArgument).
  absl::Status Mismatch(std::string_view expected, wire::Value::Reader got) const {
    return MismatchTag(expected, static_cast<uint16_t>(got.which()));
  }
  absl::Status MismatchTag(std::string_view expected, uint16_t got_tag) const;
  // "<root>: <path>: <detail>" with the given code.
  absl::Status Error(absl::StatusCode code, std::string_view detail) const;
  absl::Status TooDeep() const;
  absl::Status OutOfRange(int64_t value, int64_t min, uint64_t max) const;
  absl::Status OutOfRange(uint64_t value, int64_t min, uint64_t max) const;
  // A kj::Exception escaped Cap'n Proto while reading: DataLoss.
  absl::Status Malformed(const kj::Exception& e) const;
  absl::Status Failed(const std::exception& e) const;

  // Renders the root and the current path ("kv.put: field 2 (ttl_ms)").
  std::string Where() const;

 private:
  std::string_view root_;
  int depth_ = 0;
  std::array<Segment, kMaxDepth> path_{};
};

using Kind = DecodeContext::Segment::Kind;

template <typename T>
inline constexpr bool kAlwaysFalse = false;

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename T>
struct IsVector : std::false_type {};
template <typename T, typename A>
struct IsVector<std::vector<T, A>> : std::true_type {};

template <typename T>
struct IsStdArray : std::false_type {};
template <typename T, size_t N>
struct IsStdArray<std::array<T, N>> : std::true_type {};

template <typename T>
struct IsPair : std::false_type {};
template <typename A, typename B>
struct IsPair<std::pair<A, B>> : std::true_type {};

template <typename T>
struct IsTuple : std::false_type {};
template <typename... Ts>
struct IsTuple<std::tuple<Ts...>> : std::true_type {};

template <typename T>
struct IsDuration : std::false_type {};
template <typename R, typename P>
struct IsDuration<std::chrono::duration<R, P>> : std::true_type {};

template <typename T>
concept ByteLike = std::same_as<T, char> || std::same_as<T, signed char> || std::same_as<T, unsigned char> ||
                   std::same_as<T, std::byte> || std::same_as<T, char8_t>;

template <typename T>
struct IsByteVector : std::false_type {};
template <ByteLike T, typename A>
struct IsByteVector<std::vector<T, A>> : std::true_type {};

template <typename T>
concept Integer = std::is_integral_v<T> && !std::same_as<T, bool>;

template <typename C>
concept MapLike = requires(C& c, typename C::key_type k, typename C::mapped_type v) {
  c.try_emplace(std::move(k), std::move(v)).second;
  c.size();
  c.begin();
  c.end();
};

template <typename C>
concept SetLike = !MapLike<C> && requires(C& c, typename C::key_type k) {
  requires std::same_as<typename C::key_type, typename C::value_type>;
  c.insert(std::move(k)).second;
  c.size();
  c.begin();
  c.end();
};

// An operation with no fields and no CARACAL_FIELDS: encoded as an empty record.
template <typename T>
concept EmptyOperation = !FieldsRecord<T> && std::is_empty_v<T> &&
                         (std::derived_from<T, caracal::internal::CommandTag> ||
                          std::derived_from<T, caracal::internal::QueryTag>);

// Types whose encoding may be `none`: a present optional of them must be wrapped.
template <typename T>
inline constexpr bool kNullable = IsOptional<T>::value || std::same_as<T, std::monostate>;

template <typename T>
constexpr std::string_view RootName() {
  if constexpr (Named<T>) {
    return T::kName;
  } else {
    return "value";
  }
}

// Non-template helpers (operation_codec.cc).
std::string MessageToBytes(capnp::MessageBuilder& message);
void SetText(std::string_view text, wire::Value::Builder out);

// A Cap'n Proto message parsed from untrusted bytes: word-aligned (a private
// copy when needed, or always when `own_copy`), with traversal and nesting
// limits, and no trailing bytes after the message.
class ParsedMessage {
 public:
  static absl::StatusOr<std::unique_ptr<ParsedMessage>> Parse(std::string_view bytes, bool own_copy);
  ParsedMessage() = default;
  ~ParsedMessage() noexcept;  // Cap'n Proto's reader may declare its own as throwing
  ParsedMessage(const ParsedMessage&) = delete;
  ParsedMessage& operator=(const ParsedMessage&) = delete;

  // Parses `bytes` into this object (replacing what it held): they are read
  // in place when 8-byte aligned and `own_copy` is false (then they must
  // outlive every reader taken from it), else copied. Reused, it allocates
  // nothing for aligned bytes.
  absl::Status Reset(std::string_view bytes, bool own_copy);

  // The root read as a wire::Value / wire::Operation; never throws.
  absl::StatusOr<wire::Value::Reader> ValueRoot();
  absl::StatusOr<wire::Operation::Reader> OperationRoot();

 private:
  kj::Array<capnp::word> copy_;
  std::optional<capnp::FlatArrayMessageReader> reader_;  // inline: one allocation less per parse
};

// Replaces `out`'s contents with the flat bytes of `message` (keeps its capacity).
void MessageToBytes(capnp::MessageBuilder& message, std::string* out);


}  // namespace internal

// Encodes and decodes one C++ type. The primary template implements every
// built-in rule listed at the top; specialize it (fully) for other types:
//
//   template <> struct caracal::codec::ValueCodec<MyId> {
//     static void Encode(const MyId& v, wire::Value::Builder out);
//     static absl::Status Decode(wire::Value::Reader in, MyId* out, internal::DecodeContext& ctx);
//   };
//
// Decode leaves `*out` partly written when it fails; the caller discards it.
template <typename T>
struct ValueCodec;

namespace internal {

template <typename T>
void EncodeValue(const T& value, wire::Value::Builder out) {
  ValueCodec<std::remove_cvref_t<T>>::Encode(value, out);
}

template <typename T>
absl::Status DecodeValue(wire::Value::Reader in, T* out, DecodeContext& ctx) {
  return ValueCodec<T>::Decode(in, out, ctx);
}

// Decodes a child value one level down; on success the path is popped again.
// (On failure it is left as it is: the error already carries it, and a
// kj::Exception thrown below finds it intact in DecodeRoot.)
template <typename T>
absl::Status DecodeChild(wire::Value::Reader in, T* out, DecodeContext& ctx, DecodeContext::Segment segment) {
  if (!ctx.Push(segment)) return ctx.TooDeep();
  absl::Status status = DecodeValue(in, out, ctx);
  if (status.ok()) ctx.Pop();
  return status;
}

// ---- integers ----

template <Integer T>
void EncodeInteger(T value, wire::Value::Builder out) {
  if constexpr (std::is_signed_v<T>) {
    out.setInt(static_cast<int64_t>(value));
  } else {
    out.setUint(static_cast<uint64_t>(value));
  }
}

template <Integer T>
absl::Status DecodeInteger(wire::Value::Reader in, T* out, DecodeContext& ctx) {
  constexpr int64_t kMin = static_cast<int64_t>(std::numeric_limits<T>::min());
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<T>::max());
  switch (in.which()) {
    case wire::Value::INT: {
      int64_t v = in.getInt();
      if (v < kMin || (v >= 0 && static_cast<uint64_t>(v) > kMax)) return ctx.OutOfRange(v, kMin, kMax);
      *out = static_cast<T>(v);
      return absl::OkStatus();
    }
    case wire::Value::UINT: {
      uint64_t v = in.getUint();
      if (v > kMax) return ctx.OutOfRange(v, kMin, kMax);
      *out = static_cast<T>(v);
      return absl::OkStatus();
    }
    default:
      return ctx.Mismatch("an integer", in);
  }
}

// ---- floating point ----

template <typename T>
absl::Status DecodeFloat(wire::Value::Reader in, T* out, DecodeContext& ctx) {
  if (in.which() != wire::Value::FLOAT) return ctx.Mismatch("a float", in);
  double v = in.getFloat();
  if constexpr (std::same_as<T, float>) {
    if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
      return ctx.Error(absl::StatusCode::kInvalidArgument, "float value out of range of a 32-bit float");
    }
  }
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

// ---- text and bytes ----

template <typename Bytes>
void EncodeData(const Bytes& bytes, wire::Value::Builder out) {
  auto data = out.initData(static_cast<unsigned>(bytes.size()));
  if (!bytes.empty()) std::memcpy(data.begin(), bytes.data(), bytes.size());
}

// Copies text or data into `out` (a std::string or a vector of a byte type).
template <typename Bytes>
absl::Status DecodeBytes(wire::Value::Reader in, Bytes* out, DecodeContext& ctx, std::string_view expected) {
  const void* src;
  size_t size;
  if (in.which() == wire::Value::TEXT) {
    auto text = in.getText();
    src = text.begin();
    size = text.size();
  } else if (in.which() == wire::Value::DATA) {
    auto data = in.getData();
    src = data.begin();
    size = data.size();
  } else {
    return ctx.Mismatch(expected, in);
  }
  out->resize(size);
  if (size > 0) std::memcpy(out->data(), src, size);
  return absl::OkStatus();
}

// Reads a list or a record member list, checking the kind first.
inline bool IsList(wire::Value::Reader in) { return in.which() == wire::Value::LIST; }
inline bool IsRecord(wire::Value::Reader in) { return in.which() == wire::Value::RECORD; }

// Elements reserved up front at most: a hostile count is bounded by the
// traversal limit, but not small enough to multiply by sizeof(T) blindly.
inline constexpr size_t kMaxReserve = 1024;

// ---- sequences ----

template <typename Range>
void EncodeList(const Range& range, wire::Value::Builder out) {
  auto list = out.initList(static_cast<unsigned>(std::size(range)));
  unsigned i = 0;
  // Explicit element type: std::vector<bool> iterates over proxies.
  for (const auto& element : range) EncodeValue<std::ranges::range_value_t<Range>>(element, list[i++]);
}

template <typename T, typename A>
absl::Status DecodeVector(wire::Value::Reader in, std::vector<T, A>* out, DecodeContext& ctx) {
  if (!IsList(in)) return ctx.Mismatch("a list", in);
  auto list = in.getList();
  out->clear();
  out->reserve(std::min<size_t>(list.size(), kMaxReserve));
  for (unsigned i = 0; i < list.size(); ++i) {
    T element{};
    if (auto s = DecodeChild(list[i], &element, ctx, {Kind::kElement, i, {}}); !s.ok()) return s;
    out->push_back(std::move(element));
  }
  return absl::OkStatus();
}

template <typename T, size_t N>
absl::Status DecodeArray(wire::Value::Reader in, std::array<T, N>* out, DecodeContext& ctx) {
  if (!IsList(in)) return ctx.Mismatch("a list", in);
  auto list = in.getList();
  if (list.size() != N) {
    return ctx.Error(absl::StatusCode::kInvalidArgument,
                     std::string("expected a list of ") + std::to_string(N) + " elements, got " +
                         std::to_string(list.size()));
  }
  for (unsigned i = 0; i < N; ++i) {
    if (auto s = DecodeChild(list[i], &(*out)[i], ctx, {Kind::kElement, i, {}}); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---- sets and maps ----

// Pointers to the container's elements in a deterministic order: key order
// for unordered containers whose key has `<`, else iteration order.
template <typename C, typename KeyOf>
std::vector<const typename C::value_type*> OrderedElements(const C& c, KeyOf key_of) {
  std::vector<const typename C::value_type*> elements;
  elements.reserve(c.size());
  for (const auto& e : c) elements.push_back(&e);
  if constexpr (!requires { typename C::key_compare; } && std::totally_ordered<typename C::key_type>) {
    std::sort(elements.begin(), elements.end(), [&](auto* a, auto* b) { return key_of(*a) < key_of(*b); });
  }
  return elements;
}

template <typename C>
void EncodeSet(const C& set, wire::Value::Builder out) {
  auto elements = OrderedElements(set, [](const auto& e) -> const auto& { return e; });
  auto list = out.initList(static_cast<unsigned>(elements.size()));
  for (unsigned i = 0; i < elements.size(); ++i) EncodeValue(*elements[i], list[i]);
}

template <typename C>
absl::Status DecodeSet(wire::Value::Reader in, C* out, DecodeContext& ctx) {
  if (!IsList(in)) return ctx.Mismatch("a list", in);
  auto list = in.getList();
  out->clear();
  for (unsigned i = 0; i < list.size(); ++i) {
    typename C::key_type element{};
    if (auto s = DecodeChild(list[i], &element, ctx, {Kind::kElement, i, {}}); !s.ok()) return s;
    if (!out->insert(std::move(element)).second) {
      ctx.Push({Kind::kElement, i, {}});
      return ctx.Error(absl::StatusCode::kInvalidArgument, "duplicate set element");
    }
  }
  return absl::OkStatus();
}

template <typename C>
void EncodeMap(const C& map, wire::Value::Builder out) {
  auto elements = OrderedElements(map, [](const auto& e) -> const auto& { return e.first; });
  auto list = out.initList(static_cast<unsigned>(elements.size()));
  for (unsigned i = 0; i < elements.size(); ++i) {
    auto entry = list[i].initRecord(2);
    EncodeValue(elements[i]->first, entry[0]);
    EncodeValue(elements[i]->second, entry[1]);
  }
}

template <typename C>
absl::Status DecodeMap(wire::Value::Reader in, C* out, DecodeContext& ctx) {
  if (!IsList(in)) return ctx.Mismatch("a list of [key, value] records", in);
  auto list = in.getList();
  out->clear();
  for (unsigned i = 0; i < list.size(); ++i) {
    auto entry_value = list[i];
    if (!IsRecord(entry_value) || entry_value.getRecord().size() != 2) {
      if (!ctx.Push({Kind::kElement, i, {}})) return ctx.TooDeep();
      return IsRecord(entry_value) ? ctx.Error(absl::StatusCode::kInvalidArgument, "expected a [key, value] record")
                                   : ctx.Mismatch("a [key, value] record", entry_value);
    }
    auto entry = entry_value.getRecord();
    typename C::key_type key{};
    typename C::mapped_type value{};
    if (auto s = DecodeChild(entry[0], &key, ctx, {Kind::kKey, i, {}}); !s.ok()) return s;
    if (auto s = DecodeChild(entry[1], &value, ctx, {Kind::kMapValue, i, {}}); !s.ok()) return s;
    if (!out->try_emplace(std::move(key), std::move(value)).second) {
      ctx.Push({Kind::kKey, i, {}});
      return ctx.Error(absl::StatusCode::kInvalidArgument, "duplicate map key");
    }
  }
  return absl::OkStatus();
}

// ---- pairs and tuples (exact arity) ----

template <typename Tuple, size_t... I>
void EncodeTupleLike(const Tuple& t, wire::Value::Builder out, std::index_sequence<I...>) {
  [[maybe_unused]] auto record = out.initRecord(sizeof...(I));  // unused for std::tuple<>
  (EncodeValue(std::get<I>(t), record[I]), ...);
}

template <typename Tuple, size_t... I>
absl::Status DecodeTupleLike(wire::Value::Reader in, Tuple* out, DecodeContext& ctx, std::index_sequence<I...>) {
  if (!IsRecord(in)) return ctx.Mismatch("a record", in);
  auto record = in.getRecord();
  if (record.size() != sizeof...(I)) {
    return ctx.Error(absl::StatusCode::kInvalidArgument, std::string("expected a record of ") +
                                                             std::to_string(sizeof...(I)) + " members, got " +
                                                             std::to_string(record.size()));
  }
  absl::Status status;
  [[maybe_unused]] auto member = [&]<size_t J>(std::integral_constant<size_t, J>) {
    status = DecodeChild(record[J], &std::get<J>(*out), ctx, {Kind::kMember, J, {}});
    return status.ok();
  };
  (void)(member(std::integral_constant<size_t, I>()) && ...);  // stops at the first error
  return status;
}

// ---- records (CARACAL_FIELDS) ----

template <typename T, size_t... I>
void EncodeRecord(const T& value, wire::Value::Builder out, std::index_sequence<I...>) {
  [[maybe_unused]] auto fields = value.CaracalFieldRefs();  // unused with no fields
  [[maybe_unused]] auto record = out.initRecord(sizeof...(I));
  (EncodeValue(std::get<I>(fields), record[I]), ...);
}

template <typename T, size_t... I>
absl::Status DecodeRecord(wire::Value::Reader in, T* out, DecodeContext& ctx, std::index_sequence<I...>) {
  if (!IsRecord(in)) return ctx.Mismatch("a record", in);
  [[maybe_unused]] auto record = in.getRecord();  // unused with no fields
  [[maybe_unused]] auto fields = out->CaracalFieldRefs();
  [[maybe_unused]] const size_t present = record.size();  // members beyond the fields we know are ignored
  absl::Status status;
  [[maybe_unused]] auto field = [&]<size_t J>(std::integral_constant<size_t, J>) {
    if (J >= present) return false;  // missing trailing fields keep their values
    status = DecodeChild(record[J], &std::get<J>(fields), ctx, {Kind::kField, J, T::kCaracalFieldNames});
    return status.ok();
  };
  (void)(field(std::integral_constant<size_t, I>()) && ...);  // stops at the first error
  return status;
}

template <typename T>
inline constexpr size_t kFieldCount =
    std::tuple_size_v<decltype(std::declval<const T&>().CaracalFieldRefs())>;

}  // namespace internal

template <typename T>
struct ValueCodec {
  static void Encode(const T& value, wire::Value::Builder out) {
    using namespace internal;  // NOLINT: the helpers above
    if constexpr (std::same_as<T, bool>) {
      out.setBool(value);
    } else if constexpr (Integer<T>) {
      EncodeInteger(value, out);
    } else if constexpr (std::is_enum_v<T>) {
      EncodeInteger(static_cast<std::underlying_type_t<T>>(value), out);
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
      out.setFloat(static_cast<double>(value));
    } else if constexpr (std::same_as<T, std::string>) {
      SetText(value, out);
    } else if constexpr (std::same_as<T, std::monostate>) {
      out.setNone();
    } else if constexpr (IsDuration<T>::value) {
      EncodeValue(value.count(), out);
    } else if constexpr (IsOptional<T>::value) {
      if (!value.has_value()) {
        out.setNone();
      } else if constexpr (kNullable<typename T::value_type>) {
        EncodeValue(*value, out.initRecord(1)[0]);
      } else {
        EncodeValue(*value, out);
      }
    } else if constexpr (IsByteVector<T>::value) {
      EncodeData(value, out);
    } else if constexpr (IsVector<T>::value || IsStdArray<T>::value) {
      EncodeList(value, out);
    } else if constexpr (MapLike<T>) {
      EncodeMap(value, out);
    } else if constexpr (SetLike<T>) {
      EncodeSet(value, out);
    } else if constexpr (IsPair<T>::value || IsTuple<T>::value) {
      EncodeTupleLike(value, out, std::make_index_sequence<std::tuple_size_v<T>>());
    } else if constexpr (FieldsRecord<T>) {
      EncodeRecord(value, out, std::make_index_sequence<kFieldCount<T>>());
    } else if constexpr (EmptyOperation<T>) {
      out.initRecord(0);
    } else {
      StaticAssertUnsupported();
    }
  }

  static absl::Status Decode(wire::Value::Reader in, T* out, internal::DecodeContext& ctx) {
    using namespace internal;  // NOLINT: the helpers above
    if constexpr (std::same_as<T, bool>) {
      if (in.which() != wire::Value::BOOL) return ctx.Mismatch("a bool", in);
      *out = in.getBool();
      return absl::OkStatus();
    } else if constexpr (Integer<T>) {
      return DecodeInteger(in, out, ctx);
    } else if constexpr (std::is_enum_v<T>) {
      std::underlying_type_t<T> raw{};
      if (auto s = DecodeInteger(in, &raw, ctx); !s.ok()) return s;
      *out = static_cast<T>(raw);
      return absl::OkStatus();
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
      return DecodeFloat(in, out, ctx);
    } else if constexpr (std::same_as<T, std::string>) {
      return DecodeBytes(in, out, ctx, "text");
    } else if constexpr (std::same_as<T, std::monostate>) {
      if (in.which() != wire::Value::NONE) return ctx.Mismatch("none", in);
      return absl::OkStatus();
    } else if constexpr (IsDuration<T>::value) {
      typename T::rep count{};
      if (auto s = DecodeValue(in, &count, ctx); !s.ok()) return s;
      *out = T(count);
      return absl::OkStatus();
    } else if constexpr (IsOptional<T>::value) {
      if (in.which() == wire::Value::NONE) {
        out->reset();
        return absl::OkStatus();
      }
      out->emplace();
      if constexpr (kNullable<typename T::value_type>) {
        if (!IsRecord(in) || in.getRecord().size() != 1) return ctx.Mismatch("none or a one-member record", in);
        return DecodeChild(in.getRecord()[0], &**out, ctx, {Kind::kPresent, 0, {}});
      } else {
        return DecodeValue(in, &**out, ctx);
      }
    } else if constexpr (IsByteVector<T>::value) {
      return DecodeBytes(in, out, ctx, "data");
    } else if constexpr (IsVector<T>::value) {
      return DecodeVector(in, out, ctx);
    } else if constexpr (IsStdArray<T>::value) {
      return DecodeArray(in, out, ctx);
    } else if constexpr (MapLike<T>) {
      return DecodeMap(in, out, ctx);
    } else if constexpr (SetLike<T>) {
      return DecodeSet(in, out, ctx);
    } else if constexpr (IsPair<T>::value || IsTuple<T>::value) {
      return DecodeTupleLike(in, out, ctx, std::make_index_sequence<std::tuple_size_v<T>>());
    } else if constexpr (FieldsRecord<T>) {
      return DecodeRecord(in, out, ctx, std::make_index_sequence<kFieldCount<T>>());
    } else if constexpr (EmptyOperation<T>) {
      if (!IsRecord(in)) return ctx.Mismatch("a record", in);
      return absl::OkStatus();
    } else {
      StaticAssertUnsupported();
      return absl::OkStatus();
    }
  }

 private:
  static void StaticAssertUnsupported() {
    if constexpr (std::derived_from<T, caracal::internal::CommandTag> ||
                  std::derived_from<T, caracal::internal::QueryTag>) {
      static_assert(internal::kAlwaysFalse<T>,
                    "caracal::codec: an operation struct must list its fields with CARACAL_FIELDS(...)");
    } else {
      static_assert(internal::kAlwaysFalse<T>,
                    "caracal::codec: unsupported type. Supported: bool, integers, enums, float, double, "
                    "std::string, std::vector, std::array, std::optional, std::pair, std::tuple, maps, sets, "
                    "std::chrono::duration, std::monostate, and structs with CARACAL_FIELDS(...) (add it to "
                    "your struct); for anything else specialize caracal::codec::ValueCodec<T>");
    }
  }
};

namespace internal {

template <typename T>
absl::Status DecodeRoot(wire::Value::Reader in, T* out, DecodeContext& ctx) {
  try {
    return DecodeValue(in, out, ctx);
  } catch (const kj::Exception& e) {
    return ctx.Malformed(e);
  } catch (const std::exception& e) {
    return ctx.Failed(e);
  }
}

template <typename T>
absl::StatusOr<T> FromBytesAs(std::string_view bytes, std::string_view root) {
  static_assert(std::is_default_constructible_v<T>, "caracal::codec: a decoded type must be default-constructible");
  auto message = ParsedMessage::Parse(bytes, /*own_copy=*/false);
  if (!message.ok()) return message.status();
  auto value_root = (*message)->ValueRoot();
  if (!value_root.ok()) return value_root.status();
  T value{};
  DecodeContext ctx(root);
  if (auto s = DecodeRoot(*value_root, &value, ctx); !s.ok()) return s;
  return value;
}

void SetOperationName(std::string_view name, wire::Operation::Builder out);

}  // namespace internal

// Encodes `value` into `out`.
template <typename T>
void Encode(const T& value, wire::Value::Builder out) {
  internal::EncodeValue(value, out);
}

// Decodes `in` into `*out`. Never throws; errors name the path (rooted at
// T::kName if T has one, else "value"). On error `*out` may be partly written.
// Record fields missing from `in` keep the values `*out` already had.
template <typename T>
absl::Status Decode(wire::Value::Reader in, T* out) {
  internal::DecodeContext ctx(internal::RootName<T>());
  return internal::DecodeRoot(in, out, ctx);
}

// `value` as one Cap'n Proto message (flat array, root wire::Value).
template <typename T>
std::string ToBytes(const T& value) {
  serialization::ScratchMessage scratch;
  capnp::MessageBuilder& message = scratch.message();
  Encode(value, message.initRoot<wire::Value>());
  return internal::MessageToBytes(message);
}
// The same into `out` (replacing its contents, keeping its capacity): a
// reused string makes encoding a small value allocation-free.
template <typename T>
void ToBytes(const T& value, std::string* out) {
  serialization::ScratchMessage scratch;
  capnp::MessageBuilder& message = scratch.message();
  Encode(value, message.initRoot<wire::Value>());
  internal::MessageToBytes(message, out);
}

// Decodes bytes produced by ToBytes<T> (or by anyone: they are untrusted).
template <typename T>
absl::StatusOr<T> FromBytes(std::string_view bytes) {
  return internal::FromBytesAs<T>(bytes, internal::RootName<T>());
}

// Fills `out` with {name = T::kName, args = op's fields}.
template <OperationType T>
void EncodeOperation(const T& op, wire::Operation::Builder out) {
  static_assert(!std::string_view(T::kName).empty(), "caracal: an operation's kName must not be empty");
  internal::SetOperationName(T::kName, out);
  Encode(op, out.initArgs());
}

// `op` as one Cap'n Proto message (flat array, root wire::Operation).
template <OperationType T>
std::string EncodeOperation(const T& op) {
  serialization::ScratchMessage scratch;
  capnp::MessageBuilder& message = scratch.message();
  EncodeOperation(op, message.initRoot<wire::Operation>());
  return internal::MessageToBytes(message);
}

// An operation message whose name has been read but whose args are decoded
// only once the caller knows the type (it looks the handler up by name()).
// From ParseOperation it owns a copy of the bytes, so it outlives the buffer
// it was parsed from; from ParseOperationInPlace it borrows the bytes and the
// parser's storage (no allocation, no copy). Move-only. Not for concurrent
// use (Cap'n Proto counts traversal per reader).
class OperationView {
 public:
  OperationView(OperationView&&) noexcept;
  OperationView& operator=(OperationView&&) noexcept;
  ~OperationView();

  // The operation's wire name (T::kName of the sender), never empty.
  std::string_view name() const { return name_; }

  // Decodes the args as T. If T has a kName it must equal name().
  template <typename T>
  absl::Status DecodeArgs(T* out) const {
    if constexpr (Named<T>) {
      if (std::string_view(T::kName) != name_) return NameMismatch(T::kName);
    }
    auto args = Args();
    if (!args.ok()) return args.status();
    internal::DecodeContext ctx(name_);
    return internal::DecodeRoot(*args, out, ctx);
  }
  template <typename T>
  absl::StatusOr<T> DecodeArgs() const {
    T value{};
    if (auto s = DecodeArgs(&value); !s.ok()) return s;
    return value;
  }

  // The raw args (e.g. for logging with DebugString). Never throws.
  absl::StatusOr<wire::Value::Reader> Args() const;

 private:
  friend absl::StatusOr<OperationView> ParseOperation(std::string_view bytes);
  friend absl::StatusOr<OperationView> ParseOperationInPlace(std::string_view bytes,
                                                             internal::ParsedMessage* storage);
  OperationView(std::unique_ptr<internal::ParsedMessage> owned, internal::ParsedMessage* message);
  static absl::StatusOr<OperationView> Read(std::unique_ptr<internal::ParsedMessage> owned,
                                            internal::ParsedMessage* message);
  absl::Status NameMismatch(std::string_view expected) const;

  std::unique_ptr<internal::ParsedMessage> owned_;  // null when borrowing
  internal::ParsedMessage* message_ = nullptr;
  std::string_view name_;  // inside the message's bytes
};

// Parses bytes from EncodeOperation (or from anyone: they are untrusted):
// checks the message and reads the name; DataLoss if the bytes are not such a
// message, InvalidArgument if the name is missing.
absl::StatusOr<OperationView> ParseOperation(std::string_view bytes);
// The same without copying: the view reads `bytes` in place (copied into
// `storage` only when not 8-byte aligned) and parses into `storage`; both must
// outlive the view, and `storage` serves one view at a time. Reusing one
// storage object, parsing allocates nothing.
absl::StatusOr<OperationView> ParseOperationInPlace(std::string_view bytes, internal::ParsedMessage* storage);

// A result of operation T (void results travel as std::monostate).
template <OperationType T>
std::string EncodeResult(const WireResultOf<T>& result) {
  return ToBytes(result);
}
template <OperationType T>
void EncodeResult(const WireResultOf<T>& result, std::string* out) {
  ToBytes(result, out);
}
template <OperationType T>
absl::StatusOr<WireResultOf<T>> DecodeResult(std::string_view bytes) {
  static const std::string root = "result of " + std::string(T::kName);
  return internal::FromBytesAs<WireResultOf<T>>(bytes, root);
}

// A short human-readable rendering of a value (for logs and tools), at most
// about `max_bytes` long. Never throws; malformed parts render as <malformed>.
std::string DebugString(wire::Value::Reader value, size_t max_bytes = 1024);

// Entry point for a libFuzzer harness (`LLVMFuzzerTestOneInput` can just call
// it): parses `data` as an operation and as a value, decodes it into a set of
// representative types and renders it. Must never crash, leak or hang.
int FuzzOperationBytes(const uint8_t* data, size_t size);

}  // namespace caracal::codec

#endif  // CARACAL_CODEC_H_

#ifndef CARACAL_OPERATION_H_
#define CARACAL_OPERATION_H_

// Operations: the plain structs an application submits to a Caracal cluster.
//
//   #include "caracal/operation.h"
//
//   struct Put : caracal::Command<std::optional<std::string>> {
//     static constexpr std::string_view kName = "kv.put";  // stable wire identity
//     std::string key, value;
//     std::optional<int64_t> ttl_ms;
//     CARACAL_FIELDS(key, value, ttl_ms)
//     // Optional: how the log compactor may treat this command.
//     caracal::CompactionMode compaction() const { return caracal::CompactionMode::kRelease; }
//   };
//
//   struct Get : caracal::Query<std::optional<std::string>> {
//     static constexpr std::string_view kName = "kv.get";
//     std::string key;
//     CARACAL_FIELDS(key)
//   };
//
//   client->Submit(Put{.key = "a", .value = "1"});
//
// * A *command* changes state and goes through the log; a *query* only reads.
//   The template argument is the result type; it may be void.
// * `kName` is the operation's identity on the wire and in the log. It must
//   never change once operations of that type were written, and it is never
//   derived from typeid (which differs between compilers and builds).
// * CARACAL_FIELDS lists the fields that travel, in order. The codec
//   (caracal/codec.h) encodes them positionally; adding a field at the end
//   stays compatible in both directions (see codec.h, "Evolution").
// * `compaction()` / `consistency()` have defaults in the base; a struct
//   overrides one by declaring its own member function with the same
//   signature (name hiding, not virtual: operations stay aggregates).
//
// Why the bases are empty tags: an operation must stay an *aggregate* so that
// designated initializers (`Put{.key = "a"}`) work. Command<R> and Query<R>
// hold no data, no constructors and no virtual functions; the codec never
// encodes them (it encodes only what CARACAL_FIELDS lists).
//
// GCC note (GCC bug 96868): GCC's -Wmissing-field-initializers (part of
// -Wextra) warns on every designated initializer that leaves out a member
// without a default member initializer -- including the unnamed base
// (`Put::<anonymous>`), which no initializer can name. Clang does not. Since
// leaving members out is exactly how operations are meant to be built, this
// header turns that one warning off for GCC in the translation units that
// include it (the pragma deliberately has no push/pop: the initializers are in
// the includer's code). Nothing else is disabled.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif

#include <concepts>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>

namespace caracal {

// When the log compactor may remove a committed command (DESIGN.md section 8
// has the full table).
enum class CompactionMode {
  kDefault,     // kSnapshot if the state machine is Snapshottable, else kSequential
  kUnknown,     // the strictest: released, snapshotted and on every server
  kSnapshot,    // once a snapshot covering its index is durable
  kRelease,     // once released (minor compaction)
  kQuorum,      // once released (minor compaction)
  kFull,        // once released and stored on every server
  kSequential,  // released, on every server, earlier entries it may cancel gone
  kTombstone,   // as kSequential (a deletion that cancels earlier entries)
  kExpiring,    // as kSequential (a value that expires)
};

// Where and how a query is served (DESIGN.md section 5).
enum class Consistency {
  kLinearizable,       // leader, after a quorum heartbeat round
  kLinearizableLease,  // leader, while its lease holds
  kSequential,         // any server that applied the client's last seen index
};

namespace internal {
// Non-template roots so that the concepts below can test derivation without
// knowing R.
struct CommandTag {};
struct QueryTag {};
}  // namespace internal

// Base of every command. R is the result type (may be void). Empty on purpose:
// see the header comment.
template <typename R>
struct Command : internal::CommandTag {
  using Result = R;
  // A struct hides this with its own `CompactionMode compaction() const`.
  constexpr CompactionMode compaction() const { return CompactionMode::kDefault; }
};

// Base of every query. R is the result type (may be void).
template <typename R>
struct Query : internal::QueryTag {
  using Result = R;
  // A struct hides this with its own `Consistency consistency() const`.
  constexpr Consistency consistency() const { return Consistency::kLinearizable; }
};

// Lists the fields of a struct that the codec encodes, in wire order. Put it
// inside the struct, after the fields (no semicolon needed after it):
//
//   struct Item { std::string name; int count = 0; CARACAL_FIELDS(name, count) };
//
// It adds only member functions and a static constant (the names, for error
// messages), so the struct stays an aggregate. Works for nested value structs
// too, not only operations.
#define CARACAL_FIELDS(...)                                                       \
  auto CaracalFieldRefs() & { return std::tie(__VA_ARGS__); }                     \
  auto CaracalFieldRefs() const& { return std::tie(__VA_ARGS__); }                \
  [[maybe_unused]] static constexpr std::string_view kCaracalFieldNames = #__VA_ARGS__; \
  using CaracalHasFields = void;

// A struct that declares its fields with CARACAL_FIELDS.
template <typename T>
concept FieldsRecord = requires(const T& c, T& m) {
  typename T::CaracalHasFields;
  { T::kCaracalFieldNames } -> std::convertible_to<std::string_view>;
  c.CaracalFieldRefs();
  m.CaracalFieldRefs();
};

// A type with a stable wire name `static constexpr std::string_view kName`.
template <typename T>
concept Named = requires {
  { T::kName } -> std::convertible_to<std::string_view>;
};

template <typename T>
concept CommandType = Named<T> && std::derived_from<T, internal::CommandTag> &&
                      !std::derived_from<T, internal::QueryTag> &&
                      std::derived_from<T, Command<typename T::Result>>;

template <typename T>
concept QueryType = Named<T> && std::derived_from<T, internal::QueryTag> &&
                    !std::derived_from<T, internal::CommandTag> &&
                    std::derived_from<T, Query<typename T::Result>>;

template <typename T>
concept OperationType = CommandType<T> || QueryType<T>;

// The result type an operation declared (may be void): what its handler returns.
template <OperationType T>
using ResultOf = typename T::Result;

// The result as it travels: void becomes std::monostate (encoded as `none`).
template <OperationType T>
using WireResultOf = std::conditional_t<std::is_void_v<ResultOf<T>>, std::monostate, ResultOf<T>>;

}  // namespace caracal

#endif  // CARACAL_OPERATION_H_

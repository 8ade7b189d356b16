#ifndef CARACAL_TESTS_FUZZ_FUZZ_TYPES_H_
#define CARACAL_TESTS_FUZZ_FUZZ_TYPES_H_

// Value types the operation target decodes and re-encodes, shared with
// make_corpus so that seeds of these exact shapes exist. No floating point:
// == must be exact for the round-trip check.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "caracal/operation.h"

namespace caracal::fuzz {

enum class Shade : uint16_t { kLight = 1, kDark = 2 };

struct Leaf {
  std::string name;
  std::optional<std::optional<bool>> flag;
  std::vector<uint8_t> blob;
  CARACAL_FIELDS(name, flag, blob)
  friend bool operator==(const Leaf&, const Leaf&) = default;
};

struct Nested {
  std::map<std::string, std::vector<std::optional<int32_t>>> table;
  std::vector<Leaf> leaves;
  std::set<uint64_t> ids;
  std::tuple<int8_t, Shade, std::optional<std::string>> triple;
  std::vector<std::vector<std::pair<uint16_t, std::string>>> grid;
  std::optional<Leaf> extra;
  CARACAL_FIELDS(table, leaves, ids, triple, grid, extra)
  friend bool operator==(const Nested&, const Nested&) = default;
};

}  // namespace caracal::fuzz

#endif  // CARACAL_TESTS_FUZZ_FUZZ_TYPES_H_

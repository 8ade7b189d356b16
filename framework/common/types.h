#ifndef CARACAL_FRAMEWORK_COMMON_TYPES_H_
#define CARACAL_FRAMEWORK_COMMON_TYPES_H_

// Vocabulary shared by storage, the raft core, the server and the tools.

#include <cstdint>
#include <ostream>
#include <string>

#include "framework/common/bytes.h"

namespace caracal {

using Index = uint64_t;    // log index; 0 means "none", the first entry is 1
using Term = uint64_t;     // raft term; 0 means "none"
using NodeId = uint64_t;   // server id; 0 means "none"
using LogTime = int64_t;   // log time, microseconds (leader-stamped, never decreases)

// Mirrors wire::EntryType (serialization/caracal.capnp); values must match.
enum class EntryType : uint8_t {
  kInitialize = 0,
  kCommand = 1,
  kRegister = 2,
  kKeepAlive = 3,
  kUnregister = 4,
  kConfiguration = 5,
  kTime = 6,
};
inline constexpr uint8_t kMaxEntryType = 6;

const char* EntryTypeName(EntryType type);

// One log entry as it travels between the raft core, storage and the applier.
struct Entry {
  Index index = 0;
  Term term = 0;
  LogTime timestamp = 0;
  EntryType type = EntryType::kInitialize;
  Bytes payload;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// Indexes [first, last] removed by compaction, all of term `term`.
struct HoleRun {
  Index first = 0;
  Index last = 0;
  Term term = 0;

  friend bool operator==(const HoleRun&, const HoleRun&) = default;
};

// Raft's durable per-server state.
struct HardState {
  Term term = 0;
  NodeId voted_for = 0;

  friend bool operator==(const HardState&, const HardState&) = default;
};

std::ostream& operator<<(std::ostream& os, const Entry& e);
std::ostream& operator<<(std::ostream& os, const HoleRun& h);

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_TYPES_H_

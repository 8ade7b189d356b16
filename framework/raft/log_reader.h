#ifndef CARACAL_FRAMEWORK_RAFT_LOG_READER_H_
#define CARACAL_FRAMEWORK_RAFT_LOG_READER_H_

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "framework/common/types.h"

namespace caracal::raft {

// The read side of the durable log, as the raft core sees it. Production
// adapts storage::Log to it; the simulator implements it over a simulated
// disk. Only indexes the core was told are durable (OnPersisted) are read.
class LogReader {
 public:
  virtual ~LogReader() = default;
  // First index held (entry or hole); LastIndex()+1 when empty.
  virtual Index FirstIndex() const = 0;
  // Last index held, or the base index (last index covered by a snapshot).
  virtual Index LastIndex() const = 0;
  // Term of an entry or hole in [FirstIndex()-1, LastIndex()]; index 0 -> 0.
  virtual std::optional<Term> TermAt(Index index) const = 0;
  // Entries and holes in [from, to], at least one item, stopping once
  // `max_bytes` of payload is collected.
  virtual absl::Status Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                            std::vector<HoleRun>* holes) const = 0;
};

}  // namespace caracal::raft

#endif  // CARACAL_FRAMEWORK_RAFT_LOG_READER_H_

#ifndef CARACAL_TOOLS_LOG_LOG_TOOL_H_
#define CARACAL_TOOLS_LOG_LOG_TOOL_H_

// The commands of caracal-log. Each reads a log directory without changing
// it (the log is opened read-only: a torn tail is reported, not cut), writes
// its report to `out` and problems to `err`, and returns the exit code.

#include <filesystem>
#include <optional>
#include <ostream>

#include "framework/common/types.h"

namespace caracal::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;     // unreadable or corrupt: Log::Open would fail
inline constexpr int kExitTornTail = 2;  // verify: a torn tail that Log::Open would cut

// Segments with their ranges, sizes, entry/hole counts and term runs; the
// prefix base; what is complete on disk; the metadata file if DIR holds one.
int InspectLog(const std::filesystem::path& dir, std::ostream& out, std::ostream& err);

// One line per entry ("index term timestamp type payload-bytes") or hole run
// ("first..last term - hole -") in [from, to] (defaults: the whole log).
int DumpLog(const std::filesystem::path& dir, std::optional<Index> from, std::optional<Index> to, std::ostream& out,
            std::ostream& err);

// Full scan and decode of every record. 0 if clean; 1 with the exact
// "segment FILE: WHAT at offset N" error; 2 if only the open tail is torn.
int VerifyLog(const std::filesystem::path& dir, std::ostream& out, std::ostream& err);

}  // namespace caracal::tools

#endif  // CARACAL_TOOLS_LOG_LOG_TOOL_H_

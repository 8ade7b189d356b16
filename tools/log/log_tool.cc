#include "tools/log/log_tool.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "framework/storage/file.h"
#include "framework/storage/log.h"
#include "framework/storage/metadata.h"

namespace caracal::tools {
namespace {

absl::StatusOr<std::unique_ptr<storage::Log>> OpenReadOnly(const std::filesystem::path& dir) {
  storage::LogOptions options;
  options.directory = dir;
  options.read_only = true;
  return storage::Log::Open(options);
}

std::string TermRuns(const std::vector<storage::TermRun>& runs) {
  std::string out;
  for (const auto& run : runs) {
    if (!out.empty()) out += ' ';
    out += "term " + std::to_string(run.term) + " from " + std::to_string(run.first);
  }
  return out;
}

void PrintMetadata(const std::filesystem::path& dir, std::ostream& out) {
  auto data = storage::ReadWholeFile(dir / storage::kMetadataFileName);
  if (!data.ok()) return;  // no metadata file here: nothing to show
  auto metadata = storage::MetadataStore::Decode(*data);
  if (!metadata.ok()) {
    out << "metadata: CORRUPT: " << metadata.status().message() << "\n";
    return;
  }
  out << "metadata: term " << metadata->hard_state.term << ", voted for " << metadata->hard_state.voted_for
      << ", configuration " << metadata->configuration.size() << " bytes, save #" << metadata->version << "\n";
}

}  // namespace

int InspectLog(const std::filesystem::path& dir, std::ostream& out, std::ostream& err) {
  auto log = OpenReadOnly(dir);
  if (!log.ok()) {
    err << "caracal-log: " << log.status().message() << "\n";
    return kExitError;
  }
  storage::LogStats stats = (*log)->Stats();
  out << "log directory: " << dir.string() << "\n";
  if (stats.base_index == 0) {
    out << "prefix base: none (the log starts at index 1)\n";
  } else {
    out << "prefix base: index " << stats.base_index << ", term " << stats.base_term << " (indexes up to it are "
        << "compacted away)\n";
  }
  out << "epoch: " << stats.epoch << "\n";
  out << "indexes: " << stats.first_index << ".." << stats.last_index << " ("
      << (stats.last_index + 1 - stats.first_index) << "), " << stats.entries << " entries, " << stats.hole_runs
      << " hole runs covering " << stats.hole_indexes << " indexes, " << stats.bytes << " bytes\n";
  if (stats.recovery_note.empty()) {
    out << "durable state: clean; every record on disk is complete, the log ends at index " << stats.last_index
        << "\n";
  } else {
    out << "durable state: the log ends at index " << stats.last_index << "; opening it for writing would cut "
        << stats.recovered_torn_bytes << " bytes: " << stats.recovery_note << "\n";
  }
  auto segments = (*log)->Segments();
  out << "segments: " << segments.size() << "\n";
  for (const auto& s : segments) {
    out << "  " << s.name << (s.open ? "  open  " : "  sealed") << "  indexes " << s.first << ".." << s.last << "  "
        << s.bytes << " bytes  " << s.entries << " entries  " << s.hole_runs << " hole runs (" << s.hole_indexes
        << " indexes)  " << TermRuns(s.term_runs) << "\n";
  }
  PrintMetadata(dir, out);
  return kExitOk;
}

int DumpLog(const std::filesystem::path& dir, std::optional<Index> from, std::optional<Index> to, std::ostream& out,
            std::ostream& err) {
  auto log = OpenReadOnly(dir);
  if (!log.ok()) {
    err << "caracal-log: " << log.status().message() << "\n";
    return kExitError;
  }
  Index first = from.value_or((*log)->FirstIndex());
  Index last = to.value_or((*log)->LastIndex());
  if (first < (*log)->FirstIndex() || last > (*log)->LastIndex() || first > last) {
    if (!from && !to) return kExitOk;  // an empty log: nothing to dump
    err << "caracal-log: range " << first << ".." << last << " is outside the log's indexes "
        << (*log)->FirstIndex() << ".." << (*log)->LastIndex() << "\n";
    return kExitError;
  }
  Index next = first;
  while (next <= last) {
    std::vector<Entry> entries;
    std::vector<HoleRun> holes;
    if (absl::Status s = (*log)->Read(next, last, 4 << 20, &entries, &holes); !s.ok()) {
      err << "caracal-log: " << s.message() << "\n";
      return kExitError;
    }
    size_t i = 0, j = 0;
    while (i < entries.size() || j < holes.size()) {
      if (j == holes.size() || (i < entries.size() && entries[i].index < holes[j].first)) {
        const Entry& e = entries[i++];
        out << e.index << " " << e.term << " " << e.timestamp << " " << EntryTypeName(e.type) << " "
            << e.payload.size() << "\n";
        next = e.index + 1;
      } else {
        const HoleRun& h = holes[j++];
        out << h.first << ".." << h.last << " " << h.term << " - hole -\n";
        next = h.last + 1;
      }
    }
  }
  return kExitOk;
}

int VerifyLog(const std::filesystem::path& dir, std::ostream& out, std::ostream& err) {
  auto log = OpenReadOnly(dir);  // scans every segment: sealed ones strictly
  if (!log.ok()) {
    err << "caracal-log: " << log.status().message() << "\n";
    return kExitError;
  }
  // Read everything back through the normal read path as well.
  Index next = (*log)->FirstIndex();
  const Index last = (*log)->LastIndex();
  while (next <= last) {
    std::vector<Entry> entries;
    std::vector<HoleRun> holes;
    if (absl::Status s = (*log)->Read(next, last, 4 << 20, &entries, &holes); !s.ok()) {
      err << "caracal-log: " << s.message() << "\n";
      return kExitError;
    }
    Index covered = next;
    if (!entries.empty()) covered = std::max(covered, entries.back().index + 1);
    if (!holes.empty()) covered = std::max(covered, holes.back().last + 1);
    next = covered;
  }
  storage::LogStats stats = (*log)->Stats();
  if (!stats.recovery_note.empty()) {
    err << "caracal-log: " << stats.recovery_note << "(a torn tail: Log::Open cuts it; nothing durable is lost)\n";
    return kExitTornTail;
  }
  out << "OK: indexes " << stats.first_index << ".." << stats.last_index << ", " << stats.entries << " entries, "
      << stats.hole_runs << " hole runs, " << stats.segments << " segments\n";
  return kExitOk;
}

}  // namespace caracal::tools

#ifndef CARACAL_FRAMEWORK_STORAGE_SEGMENT_H_
#define CARACAL_FRAMEWORK_STORAGE_SEGMENT_H_

// Internal to storage: the byte formats of the log directory (segment names,
// segment header, the prefix-base file) and the scanner that turns a segment
// file's bytes into an index of its records. log.h documents the formats for
// humans; this file is their single implementation.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "framework/common/types.h"
#include "framework/storage/record_index.h"

namespace caracal::storage {

// ---- segment file names ----
// Sealed: "<first>-<last>.log", open: "open-<first>.log"; 20-digit decimals.
std::string SealedSegmentName(Index first, Index last);
std::string OpenSegmentName(Index first);
struct SegmentName {
  bool open = false;
  Index first = 0;
  Index last = 0;  // sealed only
};
// nullopt if `name` is not a segment name at all (other files are ignored).
std::optional<SegmentName> ParseSegmentName(std::string_view name);

// The largest LogOptions::segment_bytes: a segment is closed once it reaches
// segment_bytes, so a file holds less than segment_bytes plus one record,
// which keeps every record offset within RecordIndex's u32.
inline constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << 31;

// ---- segment header: 48 bytes at offset 0 of every segment ----
inline constexpr size_t kSegmentHeaderBytes = 48;
inline constexpr uint64_t kSegmentMagic = 0x0031474553524143;  // "CARSEG1\0" little-endian
inline constexpr uint32_t kSegmentVersion = 1;
struct SegmentHeader {
  Index first_index = 0;  // index of the segment's first record
  uint64_t epoch = 0;     // Reset() generation; see log.h
};
std::string EncodeSegmentHeader(const SegmentHeader& header);
// Error text (without file name) says what is wrong.
absl::StatusOr<SegmentHeader> DecodeSegmentHeader(std::string_view data);

// ---- prefix-base file: 48 bytes ----
inline constexpr char kBaseFileName[] = "prefix-base";
inline constexpr size_t kBaseFileBytes = 48;
inline constexpr uint64_t kBaseMagic = 0x0031455341424143;  // "CABASE1\0" little-endian
struct PrefixBase {
  Index index = 0;
  Term term = 0;
  uint64_t epoch = 0;
  friend bool operator==(const PrefixBase&, const PrefixBase&) = default;
};
std::string EncodePrefixBase(const PrefixBase& base);
absl::StatusOr<PrefixBase> DecodePrefixBase(std::string_view data);

// ---- what a scan of a segment learns ----
struct TermRun {
  Index first = 0;  // the run covers [first, next run's first - 1] (or the segment's last)
  Term term = 0;
};
struct SegmentScan {
  SegmentHeader header;
  bool header_ok = false;
  RecordIndex records;  // empty (and covering nothing) unless header_ok
  std::vector<TermRun> term_runs;
  Index last = 0;            // last index held; header.first_index - 1 when no record
  uint64_t valid_bytes = 0;  // header + the whole valid records; the file is cut here on recovery
  uint64_t entries = 0;
  uint64_t hole_runs = 0;
  uint64_t hole_indexes = 0;
  uint64_t payload_bytes = 0;
  // For a tolerant scan: what ended the segment before the file's end
  // ("bad checksum at offset 4096"); empty if the whole file was valid.
  std::string torn_reason;
};

// Scans the bytes of segment `name`. `prev_term` is the term of the index
// just before the segment (0 if unknown): terms must not decrease.
// strict (a sealed segment): any problem, including a record that does not
// continue the index sequence or bytes after the last record, is a DataLoss
// error "segment NAME: WHAT at offset N". A file over kMaxSegmentFileBytes
// is a DataLoss error either way. Not strict (an open segment): the
// first problem ends the segment; the scan reports it in torn_reason.
absl::StatusOr<SegmentScan> ScanSegment(std::string_view name, std::string_view data, bool strict, Term prev_term);

// Term of `index` from term runs (index must lie in the segment's range).
Term TermFromRuns(const std::vector<TermRun>& runs, Index index);

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_SEGMENT_H_

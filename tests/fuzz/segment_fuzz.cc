// Fuzz target: a log segment file's bytes (framework/storage/segment.h
// ScanSegment, DecodeSegmentHeader) and the prefix-base file
// (DecodePrefixBase), without touching the disk.
//
// The input is a whole segment file. It is scanned as it is and with its
// header checksum and record checksums repaired (fuzz_util.h), each both as a
// sealed segment (strict) and as an open one (tolerant). Its first 48 bytes,
// checksum repaired, are also decoded as a prefix-base file.
//
// Properties: nothing crashes, leaks or hangs; a tolerant scan fails only
// when a valid record follows the damage (corruption in the middle, which a
// strict scan refuses too); otherwise its records are consecutive, lie
// inside the file, and end where valid_bytes says; a strict scan succeeds
// exactly when the tolerant one found nothing torn, and then agrees with it.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "framework/storage/segment.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

using storage::SegmentScan;

void CheckScan(const SegmentScan& scan, std::string_view data) {
  FUZZ_CHECK(scan.valid_bytes <= data.size());
  if (!scan.header_ok) {
    FUZZ_CHECK(scan.records.empty() && !scan.torn_reason.empty());
    return;
  }
  FUZZ_CHECK(scan.header.first_index != 0);
  Index next = scan.header.first_index;
  uint64_t offset = storage::kSegmentHeaderBytes;
  uint64_t entries = 0;
  uint64_t holes = 0;
  for (const storage::RecordMeta& r : scan.records) {
    FUZZ_CHECK(r.first == next && r.last >= r.first);
    FUZZ_CHECK(r.hole || r.first == r.last);
    FUZZ_CHECK(r.offset == offset);
    offset += r.size;
    next = r.last + 1;
    (r.hole ? holes : entries) += 1;
  }
  FUZZ_CHECK(offset == scan.valid_bytes);
  FUZZ_CHECK(scan.last == next - 1);
  FUZZ_CHECK(entries == scan.entries && holes == scan.hole_runs);
  FUZZ_CHECK(scan.torn_reason.empty() == (scan.valid_bytes == data.size()));
  Term term = 0;
  for (const storage::TermRun& run : scan.term_runs) {
    FUZZ_CHECK(run.term >= term);
    term = run.term;
  }
}

void Scan(std::string_view data, Term prev_term) {
  auto tolerant = storage::ScanSegment("fuzz.log", data, /*strict=*/false, prev_term);
  auto strict = storage::ScanSegment("fuzz.log", data, /*strict=*/true, prev_term);
  if (!tolerant.ok()) {
    FUZZ_CHECK(absl::IsDataLoss(tolerant.status()));
    FUZZ_CHECK(!strict.ok());
    return;
  }
  CheckScan(*tolerant, data);
  FUZZ_CHECK(strict.ok() == tolerant->torn_reason.empty());
  if (strict.ok()) {
    FUZZ_CHECK(strict->last == tolerant->last && strict->valid_bytes == tolerant->valid_bytes);
    FUZZ_CHECK(strict->records.size() == tolerant->records.size());
  } else {
    FUZZ_CHECK(!strict.status().message().empty());
  }
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace caracal::fuzz;
  namespace storage = caracal::storage;
  std::string_view input = AsView(data, size);
  Scan(input, 0);

  std::string repaired(input);
  RepairTrailingChecksum(&repaired, 40);  // the header's XXH3 of bytes [0, 40)
  RepairRecords(&repaired, storage::kSegmentHeaderBytes);
  Scan(repaired, 0);
  Scan(repaired, size % 3);  // a preceding term, as for a segment that is not the first

  if (auto base = storage::DecodePrefixBase(repaired.substr(0, storage::kBaseFileBytes)); base.ok()) {
    auto again = storage::DecodePrefixBase(storage::EncodePrefixBase(*base));
    FUZZ_CHECK(again.ok() && *again == *base);
  }
  return 0;
}

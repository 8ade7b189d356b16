#include "framework/storage/segment.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <variant>

#include "absl/strings/str_cat.h"
#include "framework/common/endian.h"
#include "framework/storage/file.h"
#include "serialization/codec.h"
#include "serialization/framing.h"

namespace caracal::storage {
namespace {

constexpr size_t kDigits = 20;

std::optional<Index> ParseDigits(std::string_view s) {
  if (s.size() != kDigits) return std::nullopt;
  Index v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    Index d = static_cast<Index>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string Digits(Index v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRIu64, v);
  return buf;
}

}  // namespace

std::string SealedSegmentName(Index first, Index last) { return absl::StrCat(Digits(first), "-", Digits(last), ".log"); }
std::string OpenSegmentName(Index first) { return absl::StrCat("open-", Digits(first), ".log"); }

std::optional<SegmentName> ParseSegmentName(std::string_view name) {
  constexpr std::string_view kSuffix = ".log";
  if (name.size() < kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) return std::nullopt;
  std::string_view stem = name.substr(0, name.size() - kSuffix.size());
  SegmentName result;
  if (stem.starts_with("open-")) {
    auto first = ParseDigits(stem.substr(5));
    if (!first) return std::nullopt;
    result.open = true;
    result.first = *first;
    return result;
  }
  if (stem.size() != 2 * kDigits + 1 || stem[kDigits] != '-') return std::nullopt;
  auto first = ParseDigits(stem.substr(0, kDigits));
  auto last = ParseDigits(stem.substr(kDigits + 1));
  if (!first || !last) return std::nullopt;
  result.first = *first;
  result.last = *last;
  return result;
}

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  std::string out(kSegmentHeaderBytes, '\0');
  PutU64(out.data(), kSegmentMagic);
  PutU32(out.data() + 8, kSegmentVersion);
  PutU32(out.data() + 12, kSegmentHeaderBytes);
  PutU64(out.data() + 16, header.first_index);
  PutU64(out.data() + 24, header.epoch);
  // bytes 32..39 reserved, zero
  PutU64(out.data() + 40, serialization::Checksum(std::string_view(out.data(), 40)));
  return out;
}

absl::StatusOr<SegmentHeader> DecodeSegmentHeader(std::string_view data) {
  if (data.size() < kSegmentHeaderBytes) {
    return absl::DataLossError(absl::StrCat("segment header cut short (", data.size(), " of ", kSegmentHeaderBytes,
                                            " bytes) at offset 0"));
  }
  if (GetU64(data.data()) != kSegmentMagic) return absl::DataLossError("bad segment magic at offset 0");
  if (serialization::Checksum(data.substr(0, 40)) != GetU64(data.data() + 40)) {
    return absl::DataLossError("bad segment header checksum at offset 0");
  }
  uint32_t version = GetU32(data.data() + 8);
  if (version != kSegmentVersion || GetU32(data.data() + 12) != kSegmentHeaderBytes) {
    return absl::DataLossError(absl::StrCat("unsupported segment version ", version, " at offset 8"));
  }
  SegmentHeader header{GetU64(data.data() + 16), GetU64(data.data() + 24)};
  if (header.first_index == 0) return absl::DataLossError("segment header names first index 0 at offset 16");
  return header;
}

std::string EncodePrefixBase(const PrefixBase& base) {
  std::string out(kBaseFileBytes, '\0');
  PutU64(out.data(), kBaseMagic);
  PutU32(out.data() + 8, 1);
  PutU64(out.data() + 16, base.index);
  PutU64(out.data() + 24, base.term);
  PutU64(out.data() + 32, base.epoch);
  PutU64(out.data() + 40, serialization::Checksum(std::string_view(out.data(), 40)));
  return out;
}

absl::StatusOr<PrefixBase> DecodePrefixBase(std::string_view data) {
  if (data.size() != kBaseFileBytes) {
    return absl::DataLossError(absl::StrCat("is ", data.size(), " bytes long, expected ", kBaseFileBytes));
  }
  if (GetU64(data.data()) != kBaseMagic || GetU32(data.data() + 8) != 1) {
    return absl::DataLossError("bad magic or version at offset 0");
  }
  if (serialization::Checksum(data.substr(0, 40)) != GetU64(data.data() + 40)) {
    return absl::DataLossError("bad checksum at offset 40");
  }
  PrefixBase base{GetU64(data.data() + 16), GetU64(data.data() + 24), GetU64(data.data() + 32)};
  if ((base.index == 0) != (base.term == 0)) {
    return absl::DataLossError(absl::StrCat("inconsistent base index ", base.index, " term ", base.term));
  }
  return base;
}

Term TermFromRuns(const std::vector<TermRun>& runs, Index index) {
  auto it = std::upper_bound(runs.begin(), runs.end(), index,
                             [](Index i, const TermRun& run) { return i < run.first; });
  return it == runs.begin() ? 0 : std::prev(it)->term;
}

namespace {

// Whether the damage at `bad` sits in the middle of written data: the
// damaged record's length field still reads sensibly and, right after the
// record it announces, a whole checksummed record for a later index starts.
// A torn write leaves nothing valid after the damage; garbage inside a
// value cannot pass for the next record at exactly that place with a later
// index. Damage in the length field itself cannot be told from a torn write
// (the log is cut there, as before). O(1): no search.
std::optional<uint64_t> ValidRecordFollows(std::string_view data, uint64_t bad, Index damaged_index) {
  if (data.size() - bad < serialization::kRecordHeaderBytes) return std::nullopt;
  uint32_t length = GetU32(data.data() + bad);
  if (length == 0 || length % 8 != 0 || length > serialization::kMaxRecordBytes) return std::nullopt;
  uint64_t next = bad + serialization::kRecordHeaderBytes + length;
  if (next >= data.size()) return std::nullopt;
  serialization::RecordView view = serialization::ReadRecord(data.substr(next));
  if (view.kind != serialization::RecordView::Kind::kOk) return std::nullopt;
  auto value = serialization::DecodeLogRecordBody(view.body);
  if (!value.ok()) return std::nullopt;
  Index first = std::holds_alternative<Entry>(*value) ? std::get<Entry>(*value).index : std::get<HoleRun>(*value).first;
  if (first <= damaged_index) return std::nullopt;
  return next;
}

}  // namespace

absl::StatusOr<SegmentScan> ScanSegment(std::string_view name, std::string_view data, bool strict, Term prev_term) {
  SegmentScan scan;
  // Every problem goes through here: fatal in a sealed segment, the end of
  // the log in an open one.
  auto problem = [&](const std::string& what, uint64_t offset) -> absl::StatusOr<SegmentScan> {
    std::string reason = absl::StrCat(what, " at offset ", offset);
    if (strict) return absl::DataLossError(absl::StrCat("segment ", std::string(name), ": ", reason));
    // A torn write leaves garbage only at the very end. A valid record
    // further on means the damage is in the middle of written (and maybe
    // acknowledged) data: refuse rather than cut it off.
    if (std::optional<uint64_t> later = ValidRecordFollows(data, offset, scan.last + 1)) {
      return absl::DataLossError(absl::StrCat(
          "segment ", std::string(name), ": ", reason, ", yet a valid record follows at offset ", *later,
          ": the log is corrupt in the middle, not torn at its end; refusing to drop the entries after it "
          "(inspect with caracal-log verify)"));
    }
    scan.torn_reason = reason;
    return std::move(scan);
  };
  if (data.size() > kMaxSegmentFileBytes) {
    return absl::DataLossError(absl::StrCat("segment ", std::string(name), ": file is ", data.size(),
                                            " bytes, more than a segment can hold (", kMaxSegmentFileBytes, ")"));
  }
  auto header = DecodeSegmentHeader(data);
  if (!header.ok()) {
    if (strict) return absl::DataLossError(absl::StrCat("segment ", std::string(name), ": ", header.status().message()));
    scan.torn_reason = std::string(header.status().message());
    return scan;
  }
  scan.header = *header;
  scan.header_ok = true;
  scan.records = RecordIndex(header->first_index, kSegmentHeaderBytes);
  scan.last = header->first_index - 1;
  scan.valid_bytes = kSegmentHeaderBytes;
  Term term = prev_term;
  uint64_t offset = kSegmentHeaderBytes;
  while (offset < data.size()) {
    serialization::RecordView view = serialization::ReadRecord(data.substr(offset));
    if (view.kind != serialization::RecordView::Kind::kOk) return problem(view.reason, offset);
    auto value = serialization::DecodeLogRecordBody(view.body);
    if (!value.ok()) return problem(std::string(value.status().message()), offset);
    RecordMeta meta;
    Term record_term = 0;
    uint64_t payload = 0;
    if (const Entry* e = std::get_if<Entry>(&*value)) {
      meta.first = meta.last = e->index;
      record_term = e->term;
      payload = e->payload.size();
    } else {
      const HoleRun& h = std::get<HoleRun>(*value);
      meta.first = h.first;
      meta.last = h.last;
      meta.hole = true;
      record_term = h.term;
    }
    if (meta.first != scan.last + 1) {
      return problem(absl::StrCat("record for index ", meta.first, " where index ", scan.last + 1, " was expected"),
                     offset);
    }
    if (record_term < term) {
      return problem(
          absl::StrCat("term ", record_term, " at index ", meta.first, " is lower than the preceding term ", term),
          offset);
    }
    if (scan.term_runs.empty() || scan.term_runs.back().term != record_term) {
      scan.term_runs.push_back({meta.first, record_term});
    }
    term = record_term;
    scan.records.Add(meta.first, meta.last, meta.hole, view.size);
    scan.last = meta.last;
    if (meta.hole) {
      ++scan.hole_runs;
      scan.hole_indexes += meta.last - meta.first + 1;
    } else {
      ++scan.entries;
      scan.payload_bytes += payload;
    }
    offset += view.size;
    scan.valid_bytes = offset;
  }
  return scan;
}

}  // namespace caracal::storage

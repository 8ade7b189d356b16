#include "framework/storage/log.h"

#include <algorithm>
#include <cassert>
#include <system_error>
#include <variant>

#include "absl/strings/str_cat.h"
#include "framework/storage/file.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "spdlog/spdlog.h"

namespace caracal::storage {

// One segment file and the in-memory index of its records.
struct Log::Segment {
  std::string name;  // current file name
  bool open = true;  // named open-<first>.log
  Index first = 0;
  Index last = 0;  // first - 1 while empty
  std::unique_ptr<SegmentFile> file;
  // The published records. records.bytes() is the published size: readers
  // use it (and the records' sizes derived from it), never file->size().
  RecordIndex records;
  std::vector<TermRun> term_runs;
  uint64_t entries = 0;
  uint64_t hole_runs = 0;
  uint64_t hole_indexes = 0;
  bool dirty = false;  // writer only: written since the last Sync

  uint64_t Bytes() const { return records.bytes(); }
  // Position in `records` of the record holding `index` (first <= index <= last).
  size_t RecordOf(Index index) const { return records.RecordOf(index); }
  void Count(const RecordMeta& r, int sign) {
    if (r.hole) {
      hole_runs += sign;
      hole_indexes += sign * static_cast<int64_t>(r.last - r.first + 1);
    } else {
      entries += sign;
    }
  }
};

struct Log::ReadState {
  Index next = 0;
  size_t max_bytes = 0;
  size_t payload = 0;
  bool any = false;
  std::vector<Entry>* entries = nullptr;
  std::vector<HoleRun>* holes = nullptr;
};

namespace {

// A segment holds less than segment_bytes plus one record (Append closes it
// once it reaches segment_bytes): that must fit RecordIndex's u32 offsets.
static_assert(kMaxSegmentBytes + serialization::kRecordHeaderBytes + serialization::kMaxRecordBytes <=
              kMaxSegmentFileBytes);

absl::Status OutOfRangeError(std::string_view what, Index from, Index to, Index first, Index last) {
  return absl::OutOfRangeError(absl::StrCat(std::string(what), " [", from, ", ", to,
                                            "] is outside the log's range [", first, ", ", last, "]"));
}

}  // namespace

Log::Log(const LogOptions& options) : options_(options), disk_(options.level == StorageLevel::kDisk) {}
Log::~Log() = default;

absl::StatusOr<std::unique_ptr<Log>> Log::Open(const LogOptions& options) {
  if (options.segment_bytes < 2 * kSegmentHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("segment_bytes ", options.segment_bytes, " is below the minimum ",
                                                   2 * kSegmentHeaderBytes));
  }
  if (options.segment_bytes > kMaxSegmentBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment_bytes ", options.segment_bytes, " exceeds 2 GiB (", kMaxSegmentBytes, ")"));
  }
  std::unique_ptr<Log> log(new Log(options));
  if (log->disk_) {
    if (options.directory.empty()) return absl::InvalidArgumentError("LogOptions.directory is empty");
    std::error_code ec;
    if (options.read_only) {
      if (!std::filesystem::is_directory(options.directory, ec)) {
        return absl::NotFoundError(absl::StrCat("log directory ", options.directory.string(), " does not exist"));
      }
    } else {
      std::filesystem::create_directories(options.directory, ec);
      if (ec) {
        return absl::InternalError(
            absl::StrCat("cannot create log directory ", options.directory.string(), ": ", ec.message()));
      }
    }
    if (absl::Status s = log->Recover(); !s.ok()) return s;
  }
  log->CheckInvariants();
  return log;
}

std::filesystem::path Log::PathOf(const std::string& name) const { return options_.directory / name; }

absl::Status Log::Recover() {
  const bool ro = options_.read_only;
  struct Candidate {
    SegmentName parsed;
    std::string name;
  };
  std::vector<Candidate> candidates;
  bool have_base = false;
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(options_.directory, ec)) {
    std::string name = item.path().filename().string();
    if (name.ends_with(".tmp")) {
      if (!ro) {
        if (absl::Status s = RemoveFile(item.path()); !s.ok()) return s;
        dir_dirty_ = true;
      }
      continue;
    }
    if (name == kBaseFileName) {
      have_base = true;
      continue;
    }
    if (auto parsed = ParseSegmentName(name)) {
      if (!parsed->open && parsed->last < parsed->first) {
        return absl::DataLossError(absl::StrCat("segment ", name, ": name has last index below first index"));
      }
      candidates.push_back({*parsed, name});
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", options_.directory.string(), ": ", ec.message()));
  if (have_base) {
    auto data = ReadWholeFile(PathOf(kBaseFileName));
    if (!data.ok()) return data.status();
    auto base = DecodePrefixBase(*data);
    if (!base.ok()) {
      return absl::DataLossError(absl::StrCat(kBaseFileName, " in ", options_.directory.string(), ": ",
                                              base.status().message()));
    }
    base_ = *base;
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.parsed.first < b.parsed.first; });
  for (size_t i = 1; i < candidates.size(); ++i) {
    if (candidates[i].parsed.first == candidates[i - 1].parsed.first) {
      return absl::DataLossError(absl::StrCat("segments ", candidates[i - 1].name, " and ", candidates[i].name,
                                              " both start at index ", candidates[i].parsed.first));
    }
  }

  std::vector<std::string> doomed;  // files to delete once recovery succeeded
  std::string torn_at;               // the open segment that ended the log
  Term prev_term = 0;
  for (const Candidate& c : candidates) {
    const bool sealed = !c.parsed.open;
    if (!torn_at.empty()) {
      if (sealed) {
        return absl::DataLossError(absl::StrCat("segment ", c.name, " is sealed but follows ", torn_at,
                                                ", whose tail is torn; refusing to drop sealed data"));
      }
      doomed.push_back(c.name);
      continue;
    }
    if (sealed && c.parsed.last <= base_.index) {  // wholly compacted away
      doomed.push_back(c.name);
      continue;
    }
    // Record offsets are u32 in memory: refuse (before reading it) a file
    // that no Log could have written, rather than wrap.
    std::error_code size_ec;
    uint64_t file_bytes = std::filesystem::file_size(PathOf(c.name), size_ec);
    if (!size_ec && file_bytes > kMaxSegmentFileBytes) {
      return absl::DataLossError(absl::StrCat("segment ", c.name, ": file is ", file_bytes,
                                              " bytes, more than a segment can hold (", kMaxSegmentFileBytes,
                                              "); a log writes segments of at most segment_bytes (<= ",
                                              kMaxSegmentBytes, ") plus one record"));
    }
    auto data = ReadWholeFile(PathOf(c.name));
    if (!data.ok()) return data.status();
    auto header = DecodeSegmentHeader(*data);
    if (header.ok() && header->epoch != base_.epoch) {
      if (header->epoch < base_.epoch) {  // left behind by a Reset
        doomed.push_back(c.name);
        continue;
      }
      return absl::DataLossError(absl::StrCat("segment ", c.name, ": epoch ", header->epoch,
                                              " is newer than the prefix-base epoch ", base_.epoch, " at offset 24"));
    }
    const bool first_kept = segments_.empty();
    auto scan = ScanSegment(c.name, *data, /*strict=*/sealed, first_kept ? 0 : prev_term);
    if (!scan.ok()) return scan.status();
    if (scan->header_ok && scan->header.first_index != c.parsed.first) {
      return absl::DataLossError(absl::StrCat("segment ", c.name, ": header says first index ",
                                              scan->header.first_index, " at offset 16, the name says ",
                                              c.parsed.first));
    }
    if (sealed && scan->last != c.parsed.last) {
      return absl::DataLossError(absl::StrCat("segment ", c.name, ": holds indexes up to ", scan->last,
                                              " but its name says ", c.parsed.last, " (file ends at offset ",
                                              data->size(), ")"));
    }
    // Preallocated space nobody wrote into yet (LogOptions::preallocate):
    // zeros to the end of the file. Cut like a torn tail, but not damage.
    bool unused_tail = !scan->torn_reason.empty() && c.parsed.open && scan->header_ok &&
                       std::all_of(data->begin() + static_cast<std::ptrdiff_t>(scan->valid_bytes), data->end(),
                                   [](char ch) { return ch == 0; });
    if (!scan->torn_reason.empty() && !unused_tail) {
      torn_at = c.name;
      uint64_t cut = data->size() - scan->valid_bytes;
      recovered_torn_bytes_ += cut;
      recovery_note_ += absl::StrCat(c.name, ": torn tail, ", scan->torn_reason, "; cut ", cut,
                                     " bytes, log ends at index ",
                                     std::max(scan->header_ok ? scan->last : c.parsed.first - 1, base_.index), ". ");
    }
    if (scan->records.empty() || scan->last <= base_.index) {
      doomed.push_back(c.name);
      continue;
    }
    if (first_kept) {
      if (c.parsed.first > base_.index + 1) {
        return absl::DataLossError(absl::StrCat("segment ", c.name, " starts at index ", c.parsed.first,
                                                " but the prefix base is ", base_.index, ": indexes ",
                                                base_.index + 1, "..", c.parsed.first - 1, " are missing"));
      }
      Term first_live_term = TermFromRuns(scan->term_runs, base_.index + 1);
      bool base_inside = c.parsed.first <= base_.index && base_.index > 0;
      if ((base_inside && TermFromRuns(scan->term_runs, base_.index) != base_.term) ||
          first_live_term < base_.term) {
        return absl::DataLossError(absl::StrCat("segment ", c.name, ": terms disagree with the prefix base (index ",
                                                base_.index, ", term ", base_.term, ")"));
      }
    } else if (c.parsed.first != segments_.back()->last + 1) {
      return absl::DataLossError(absl::StrCat("segment ", segments_.back()->name, " ends at index ",
                                              segments_.back()->last, " but the next segment ", c.name,
                                              " starts at ", c.parsed.first));
    }
    auto file = OpenPosixFile(PathOf(c.name), /*create=*/false, ro);
    if (!file.ok()) return file.status();
    auto seg = std::make_unique<Segment>();
    seg->name = c.name;
    seg->open = c.parsed.open;
    seg->first = c.parsed.first;
    seg->last = scan->last;
    seg->file = *std::move(file);
    seg->records = std::move(scan->records);
    seg->records.ShrinkToFit();
    assert(seg->Bytes() == scan->valid_bytes);
    seg->term_runs = std::move(scan->term_runs);
    seg->entries = scan->entries;
    seg->hole_runs = scan->hole_runs;
    seg->hole_indexes = scan->hole_indexes;
    if (!scan->torn_reason.empty() && !ro) {
      if (absl::Status s = seg->file->Truncate(scan->valid_bytes); !s.ok()) return s;
      seg->dirty = true;
    }
    prev_term = seg->term_runs.back().term;
    segments_.push_back(std::move(seg));
  }
  if (!recovery_note_.empty()) spdlog::warn("log {}: {}", options_.directory.string(), recovery_note_);
  last_index_ = segments_.empty() ? base_.index : segments_.back()->last;
  durable_index_ = last_index_;
  if (ro) return absl::OkStatus();

  for (const std::string& name : doomed) {
    if (absl::Status s = RemoveFile(PathOf(name)); !s.ok()) return s;
    dir_dirty_ = true;
  }
  // Seal what is complete (fsync first: a sealed name promises durability);
  // fsync the tail so that DurableIndex() == LastIndex() holds.
  for (size_t i = 0; i < segments_.size(); ++i) {
    Segment& seg = *segments_[i];
    bool last = i + 1 == segments_.size();
    if (seg.open) {
      auto n = seg.file->Sync();
      if (!n.ok()) return n.status();
      fsyncs_ += *n;
      seg.dirty = false;
    }
    if (seg.open && !last) {
      std::string sealed = SealedSegmentName(seg.first, seg.last);
      if (absl::Status s = RenameFile(PathOf(seg.name), PathOf(sealed)); !s.ok()) return s;
      seg.name = sealed;
      seg.open = false;
      dir_dirty_ = true;
    }
  }
  if (dir_dirty_) {
    if (absl::Status s = SyncDirectory(options_.directory); !s.ok()) return s;
    ++fsyncs_;
    dir_dirty_ = false;
  }
  if (options_.preallocate && !segments_.empty() && segments_.back()->open) PreallocateTail(*segments_.back());
  return absl::OkStatus();
}

void Log::PreallocateTail(Segment& segment) {
  // Best effort: without it appends are only slower (a full disk, a file
  // size limit or a file system without fallocate say so here first).
  if (absl::Status s = segment.file->Preallocate(options_.segment_bytes); !s.ok()) {
    spdlog::debug("log {}: segment {} not preallocated: {}", options_.directory.string(), segment.name,
                  std::string(s.message()));
  }
}

// ---------------------------------------------------------------- reading

Index Log::FirstIndex() const {
  std::shared_lock lock(mu_);
  return base_.index + 1;
}

Index Log::LastIndex() const {
  std::shared_lock lock(mu_);
  return last_index_;
}

Index Log::DurableIndex() const {
  std::shared_lock lock(mu_);
  return durable_index_;
}

const Log::Segment* Log::FindSegment(Index index) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), index,
                             [](Index i, const std::unique_ptr<Segment>& s) { return i < s->first; });
  if (it == segments_.begin()) return nullptr;
  const Segment* seg = std::prev(it)->get();
  return index <= seg->last ? seg : nullptr;
}

std::optional<Term> Log::TermAtLocked(Index index) const {
  if (index == 0) return Term{0};
  if (index == base_.index) return base_.term;
  if (index < base_.index || index > last_index_) return std::nullopt;
  const Segment* seg = FindSegment(index);
  if (seg == nullptr) return std::nullopt;  // unreachable while the invariants hold
  return TermFromRuns(seg->term_runs, index);
}

std::optional<Term> Log::TermAt(Index index) const {
  std::shared_lock lock(mu_);
  return TermAtLocked(index);
}

absl::StatusOr<std::optional<Entry>> Log::Get(Index index) const {
  std::shared_lock lock(mu_);
  if (index <= base_.index || index > last_index_) {
    return OutOfRangeError("Get of index", index, index, base_.index + 1, last_index_);
  }
  if (!cache_.empty() && index >= cache_.front().index) {
    return std::optional<Entry>(cache_[index - cache_.front().index]);
  }
  const Segment* seg = FindSegment(index);
  if (seg == nullptr) return absl::InternalError(absl::StrCat("no segment holds index ", index));
  const RecordMeta rec = seg->records[seg->RecordOf(index)];
  if (rec.hole) return std::optional<Entry>();
  std::string bytes;
  if (absl::Status s = seg->file->ReadAt(rec.offset, rec.size, &bytes); !s.ok()) return s;
  auto where = [&] { return absl::StrCat("segment ", seg->name, ": record at offset ", rec.offset, ": "); };
  serialization::RecordView view = serialization::ReadRecord(bytes);
  if (view.kind != serialization::RecordView::Kind::kOk) return absl::DataLossError(where() + view.reason);
  auto value = serialization::DecodeLogRecordBody(view.body);
  if (!value.ok()) return absl::DataLossError(where() + std::string(value.status().message()));
  const Entry* entry = std::get_if<Entry>(&*value);
  if (entry == nullptr || entry->index != index) {
    return absl::DataLossError(where() + absl::StrCat("does not hold entry ", index));
  }
  return std::optional<Entry>(*entry);
}

absl::Status Log::Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                       std::vector<HoleRun>* holes) const {
  std::shared_lock lock(mu_);
  if (from > to || from <= base_.index || to > last_index_) {
    return OutOfRangeError("Read of", from, to, base_.index + 1, last_index_);
  }
  if (ReadCached(from, to, max_bytes, entries)) return absl::OkStatus();
  ReadState state{from, max_bytes, 0, false, entries, holes};
  while (state.next <= to) {
    const Segment* seg = FindSegment(state.next);
    if (seg == nullptr) return absl::InternalError(absl::StrCat("no segment holds index ", state.next));
    auto stopped = ReadFromSegment(*seg, to, &state);
    if (!stopped.ok()) return stopped.status();
    if (*stopped) break;
  }
  return absl::OkStatus();
}

namespace {

// What a cached entry costs: its payload, the Entry, the payload's string and
// its shared control block (so that tiny or empty entries are bounded too).
size_t CachedBytes(const Entry& e) { return e.payload.size() + sizeof(Entry) + 64; }

}  // namespace

bool Log::ReadCached(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries) const {
  if (cache_.empty() || from < cache_.front().index) return false;
  size_t payload = 0;
  for (Index i = from; i <= to; ++i) {
    const Entry& e = cache_[i - cache_.front().index];
    if (i > from && payload + e.payload.size() > max_bytes) break;
    payload += e.payload.size();
    entries->push_back(e);
  }
  return true;
}

void Log::CacheAppend(absl::Span<const Entry> entries, bool holes) {
  if (holes || options_.cache_bytes == 0) {
    cache_.clear();
    cache_bytes_ = 0;
    return;
  }
  for (const Entry& e : entries) {
    cache_.push_back(e);
    cache_bytes_ += CachedBytes(e);
  }
  while (cache_.size() > 1 && cache_bytes_ > options_.cache_bytes) {
    cache_bytes_ -= CachedBytes(cache_.front());
    cache_.pop_front();
  }
}

void Log::CacheDropFrom(Index from) {
  while (!cache_.empty() && cache_.back().index >= from) {
    cache_bytes_ -= CachedBytes(cache_.back());
    cache_.pop_back();
  }
  if (!cache_.empty() && cache_.back().index != last_index_) {  // the log now ends in a hole run
    cache_.clear();
    cache_bytes_ = 0;
  }
}

void Log::CacheDropThrough(Index through) {
  while (!cache_.empty() && cache_.front().index <= through) {
    cache_bytes_ -= CachedBytes(cache_.front());
    cache_.pop_front();
  }
}

absl::StatusOr<bool> Log::ReadFromSegment(const Segment& seg, Index to, ReadState* state) const {
  constexpr uint64_t kChunkBytes = 1 << 20;  // read records in chunks of about this size
  size_t i = seg.RecordOf(state->next);
  std::string chunk;
  std::vector<RecordMeta> run;  // the records of one pread
  while (i < seg.records.size() && seg.records[i].first <= to) {
    // One pread for a run of consecutive records.
    run.assign(1, seg.records[i]);
    const uint64_t start = run.front().offset;
    for (size_t j = i + 1; j < seg.records.size(); ++j) {
      RecordMeta next = seg.records[j];
      if (next.first > to || next.offset + next.size - start > kChunkBytes) break;
      run.push_back(next);
    }
    uint64_t end = run.back().offset + run.back().size;
    if (absl::Status s = seg.file->ReadAt(start, end - start, &chunk); !s.ok()) return s;
    i += run.size();
    for (const RecordMeta& rec : run) {
      auto where = [&] { return absl::StrCat("segment ", seg.name, ": record at offset ", rec.offset, ": "); };
      serialization::RecordView view =
          serialization::ReadRecord(std::string_view(chunk).substr(rec.offset - start, rec.size));
      if (view.kind != serialization::RecordView::Kind::kOk) return absl::DataLossError(where() + view.reason);
      auto value = serialization::DecodeLogRecordBody(view.body);
      if (!value.ok()) return absl::DataLossError(where() + std::string(value.status().message()));
      if (Entry* entry = std::get_if<Entry>(&*value)) {
        if (entry->index != rec.first) return absl::DataLossError(where() + "index changed under the reader");
        if (state->any && state->payload + entry->payload.size() > state->max_bytes) return true;
        state->payload += entry->payload.size();
        state->entries->push_back(std::move(*entry));
      } else {
        const HoleRun& h = std::get<HoleRun>(*value);
        state->holes->push_back({std::max(h.first, state->next), std::min(h.last, to), h.term});
      }
      state->any = true;
      state->next = std::min(rec.last, to) + 1;
    }
  }
  return false;
}

LogStats Log::Stats() const {
  std::shared_lock lock(mu_);
  LogStats stats;
  stats.first_index = base_.index + 1;
  stats.last_index = last_index_;
  stats.durable_index = durable_index_;
  stats.base_index = base_.index;
  stats.base_term = base_.term;
  stats.epoch = base_.epoch;
  stats.segments = segments_.size();
  for (const auto& seg : segments_) {
    stats.bytes += seg->Bytes();
    stats.index_bytes += seg->records.HeapBytes();
    stats.entries += seg->entries;
    stats.hole_runs += seg->hole_runs;
    stats.hole_indexes += seg->hole_indexes;
  }
  stats.syncs = syncs_;
  stats.fsyncs = fsyncs_;
  stats.recovered_torn_bytes = recovered_torn_bytes_;
  stats.recovery_note = recovery_note_;
  stats.cached_entries = cache_.size();
  stats.cached_bytes = cache_bytes_;
  return stats;
}

std::vector<SegmentInfo> Log::Segments() const {
  std::shared_lock lock(mu_);
  std::vector<SegmentInfo> out;
  for (const auto& seg : segments_) {
    out.push_back({seg->name, seg->open, seg->first, seg->last, seg->Bytes(), seg->entries, seg->hole_runs,
                   seg->hole_indexes, seg->term_runs, seg->records.HeapBytes()});
  }
  return out;
}

// ---------------------------------------------------------------- writing

absl::Status Log::CheckWritable() const {
  if (options_.read_only) return absl::FailedPreconditionError("the log was opened read-only");
  return broken_;
}

absl::Status Log::ValidateAppend(absl::Span<const Entry> entries, absl::Span<const HoleRun> holes) const {
  Index next = last_index_ + 1;
  Term term = TermAtLocked(last_index_).value_or(0);
  size_t i = 0, j = 0;
  while (i < entries.size() || j < holes.size()) {
    if (i < entries.size() && entries[i].index == next) {
      const Entry& e = entries[i++];
      if (e.term == 0 || e.term < term) {
        return absl::InvalidArgumentError(absl::StrCat("entry ", e.index, " has term ", e.term,
                                                       ", below the preceding term ", term, " (or zero)"));
      }
      if (e.payload.size() > serialization::kMaxRecordBytes - 4096) {
        return absl::InvalidArgumentError(absl::StrCat("entry ", e.index, " payload of ", e.payload.size(),
                                                       " bytes exceeds the record limit"));
      }
      term = e.term;
      ++next;
    } else if (j < holes.size() && holes[j].first == next) {
      const HoleRun& h = holes[j++];
      if (h.last < h.first || h.last == UINT64_MAX || h.term == 0 || h.term < term) {
        return absl::InvalidArgumentError(absl::StrCat("invalid hole run ", h.first, "..", h.last, " term ", h.term,
                                                       " (preceding term ", term, ")"));
      }
      term = h.term;
      next = h.last + 1;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "append must continue at index ", next, " without gap or overlap; next entry is ",
          i < entries.size() ? absl::StrCat("index ", entries[i].index) : std::string("none"),
          ", next hole run ", j < holes.size() ? absl::StrCat("starts at ", holes[j].first) : std::string("none"),
          " (LastIndex is ", last_index_, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Log::Segment>> Log::NewSegment(Index first) {
  auto seg = std::make_unique<Segment>();
  seg->name = OpenSegmentName(first);
  seg->first = first;
  seg->last = first - 1;
  if (disk_) {
    auto file = OpenPosixFile(PathOf(seg->name), /*create=*/true, /*read_only=*/false);
    if (!file.ok()) return file.status();
    seg->file = *std::move(file);
    dir_dirty_ = true;
  } else {
    seg->file = NewMemoryFile();
  }
  if (absl::Status s = seg->file->Append(EncodeSegmentHeader({first, base_.epoch})); !s.ok()) return s;
  if (disk_ && options_.preallocate) PreallocateTail(*seg);
  seg->records = RecordIndex(first, kSegmentHeaderBytes);
  seg->dirty = true;
  return seg;
}

absl::Status Log::Append(absl::Span<const Entry> entries, absl::Span<const HoleRun> holes) {
  std::lock_guard writer(write_mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (absl::Status s = ValidateAppend(entries, holes); !s.ok()) return s;
  if (entries.empty() && holes.empty()) return absl::OkStatus();

  using Batch = AppendBatch;
  std::vector<Batch>& scratch = append_batches_;
  size_t used = 0;  // scratch[0, used) are this call's batches
  // Forgets this call's batches, keeping their buffers' capacity (but not a
  // burst's worth of it).
  auto release = [&] {
    for (size_t k = 0; k < used; ++k) {
      Batch& b = scratch[k];
      b.seg = nullptr;
      b.created.reset();
      b.buffer.clear();
      b.records.clear();
      b.terms.clear();
      if (b.buffer.capacity() > (8u << 20)) std::string().swap(b.buffer);
    }
  };
  auto start_batch = [&](Index first) -> absl::Status {
    if (used == scratch.size()) scratch.emplace_back();
    Batch& b = scratch[used];
    Segment* tail = segments_.empty() ? nullptr : segments_.back().get();
    if (used == 0 && tail != nullptr && tail->open && tail->Bytes() < options_.segment_bytes) {
      b.seg = tail;
    } else {
      if (used == 0 && tail != nullptr && tail->open) {
        // The full tail gives its preallocated space back before it can be sealed.
        if (absl::Status s = tail->file->Truncate(tail->Bytes()); !s.ok()) return s;
        tail->dirty = true;
      }
      auto seg = NewSegment(first);
      if (!seg.ok()) return seg.status();
      b.created = *std::move(seg);
      b.seg = b.created.get();
    }
    b.start = b.seg->Bytes();
    ++used;
    return absl::OkStatus();
  };
  auto add = [&](Index first, Index last, Term term, bool hole, auto&& encode) -> absl::Status {
    if (used == 0 || (scratch[used - 1].start + scratch[used - 1].buffer.size() >= options_.segment_bytes &&
                      (!scratch[used - 1].records.empty() || !scratch[used - 1].seg->records.empty()))) {
      if (absl::Status s = start_batch(first); !s.ok()) return s;
    }
    Batch& b = scratch[used - 1];
    size_t before = b.buffer.size();
    encode(&b.buffer);
    b.records.push_back({first, last, b.start + before, static_cast<uint32_t>(b.buffer.size() - before), hole});
    b.terms.push_back(term);
    return absl::OkStatus();
  };
  absl::Status status;
  size_t i = 0, j = 0;
  Index next = last_index_ + 1;
  while (status.ok() && (i < entries.size() || j < holes.size())) {
    if (i < entries.size() && entries[i].index == next) {
      const Entry& e = entries[i++];
      status = add(e.index, e.index, e.term, false, [&](std::string* out) { serialization::AppendEntryRecord(e, out); });
      ++next;
    } else {
      const HoleRun& h = holes[j++];
      status = add(h.first, h.last, h.term, true, [&](std::string* out) { serialization::AppendHoleRecord(h, out); });
      next = h.last + 1;
    }
  }
  absl::Span<Batch> batches(scratch.data(), used);
  // Write outside the readers' lock: nobody reads these bytes before they are published.
  for (size_t k = 0; status.ok() && k < batches.size(); ++k) {
    status = batches[k].seg->file->Append(batches[k].buffer);
    batches[k].seg->dirty = true;
  }
  // A segment this call filled gives its preallocated space back.
  for (size_t k = 0; status.ok() && k + 1 < batches.size(); ++k) {
    status = batches[k].seg->file->Truncate(batches[k].start + batches[k].buffer.size());
  }
  if (!status.ok()) {
    // Undo: drop the new files, cut the old tail back. If that fails too the
    // files are in an unknown state: refuse further writes.
    for (Batch& b : batches) {
      absl::Status undo = b.created ? (disk_ ? RemoveFile(PathOf(b.created->name)) : absl::OkStatus())
                                    : b.seg->file->Truncate(b.start);
      if (!undo.ok()) broken_ = absl::DataLossError(absl::StrCat("log unusable after a failed append (",
                                                                 status.message(), ") and a failed undo (",
                                                                 undo.message(), ")"));
    }
    release();
    return status;
  }

  std::unique_lock lock(mu_);
  for (Batch& b : batches) {
    Segment& seg = *b.seg;
    for (size_t k = 0; k < b.records.size(); ++k) {
      const RecordMeta& r = b.records[k];
      Term term = b.terms[k];
      if (seg.term_runs.empty() || seg.term_runs.back().term != term) seg.term_runs.push_back({r.first, term});
      assert(r.offset == seg.Bytes());
      seg.records.Add(r.first, r.last, r.hole, r.size);
      seg.Count(r, +1);
      seg.last = r.last;
    }
    assert(seg.Bytes() == b.start + b.buffer.size());
    if (b.created) segments_.push_back(std::move(b.created));
  }
  last_index_ = next - 1;
  CacheAppend(entries, !holes.empty());
  CheckInvariants();
  lock.unlock();
  release();
  return absl::OkStatus();
}

absl::Status Log::DeleteSegment(Segment& segment) {
  if (!disk_) return absl::OkStatus();
  dir_dirty_ = true;
  return RemoveFile(PathOf(segment.name));
}

absl::Status Log::CutSegment(Segment& seg, Index from) {
  if (!seg.open) {  // reopen a sealed segment for writing: it is about to change
    std::string name = OpenSegmentName(seg.first);
    if (disk_) {
      if (absl::Status s = RenameFile(PathOf(seg.name), PathOf(name)); !s.ok()) return s;
      dir_dirty_ = true;
    }
    seg.name = name;
    seg.open = true;
  }
  size_t r = seg.RecordOf(from);
  RecordMeta cut = seg.records[r];
  Term cut_term = TermFromRuns(seg.term_runs, cut.first);
  if (absl::Status s = seg.file->Truncate(cut.offset); !s.ok()) return s;
  for (size_t k = r; k < seg.records.size(); ++k) seg.Count(seg.records[k], -1);
  seg.records.Truncate(r);  // the published size is now cut.offset
  while (!seg.term_runs.empty() && seg.term_runs.back().first >= cut.first) seg.term_runs.pop_back();
  seg.last = cut.first - 1;
  seg.dirty = true;
  if (cut.hole && cut.first < from) {  // keep the part of the hole run below `from`
    HoleRun kept{cut.first, from - 1, cut_term};
    std::string buffer;
    serialization::AppendHoleRecord(kept, &buffer);
    if (absl::Status s = seg.file->Append(buffer); !s.ok()) return s;
    RecordMeta meta{kept.first, kept.last, cut.offset, static_cast<uint32_t>(buffer.size()), true};
    seg.records.Add(meta.first, meta.last, meta.hole, meta.size);
    seg.Count(meta, +1);
    if (seg.term_runs.empty() || seg.term_runs.back().term != cut_term) seg.term_runs.push_back({cut.first, cut_term});
    seg.last = kept.last;
  }
  return absl::OkStatus();
}

void Log::DropDeadSegments() {
  while (!segments_.empty() && segments_.front()->last <= base_.index) {
    if (absl::Status s = DeleteSegment(*segments_.front()); !s.ok()) {
      // Harmless: a dead segment is deleted again by the next Open.
      spdlog::warn("log {}: could not delete compacted segment: {}", options_.directory.string(),
                   std::string(s.message()));
    }
    segments_.erase(segments_.begin());
  }
}

absl::Status Log::TruncateSuffix(Index from) {
  std::lock_guard writer(write_mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (from <= base_.index || from > last_index_ + 1) {
    return absl::OutOfRangeError(absl::StrCat("TruncateSuffix(", from, ") is outside [", base_.index + 1, ", ",
                                              last_index_ + 1, "] (FirstIndex, LastIndex + 1)"));
  }
  if (from == last_index_ + 1) return absl::OkStatus();
  std::unique_lock lock(mu_);
  absl::Status status;
  while (status.ok() && !segments_.empty() && segments_.back()->first >= from) {
    status = DeleteSegment(*segments_.back());
    if (status.ok()) segments_.pop_back();
  }
  if (status.ok() && !segments_.empty() && segments_.back()->last >= from) status = CutSegment(*segments_.back(), from);
  if (!status.ok()) broken_ = status;  // the files may now disagree with the index
  last_index_ = segments_.empty() ? base_.index : std::max(base_.index, segments_.back()->last);
  CacheDropFrom(last_index_ + 1);
  durable_index_ = std::min(durable_index_, last_index_);
  DropDeadSegments();
  CheckInvariants();
  return status;
}

absl::Status Log::WriteBase(const PrefixBase& base) {
  if (!disk_) return absl::OkStatus();
  absl::Status s = WriteFileAtomically(options_.directory, kBaseFileName, EncodePrefixBase(base));
  std::unique_lock lock(mu_);
  fsyncs_ += 2;
  return s;
}

absl::Status Log::RemovePrefix(Index through) {
  std::lock_guard writer(write_mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (through <= base_.index) return absl::OkStatus();
  if (through > last_index_) {
    return absl::OutOfRangeError(absl::StrCat("RemovePrefix(", through, ") is past LastIndex ", last_index_,
                                              "; use Reset to move the log past its end"));
  }
  PrefixBase base{through, *TermAtLocked(through), base_.epoch};
  if (absl::Status s = WriteBase(base); !s.ok()) return s;
  std::unique_lock lock(mu_);
  base_ = base;
  durable_index_ = std::max(durable_index_, through);
  CacheDropThrough(through);
  DropDeadSegments();
  CheckInvariants();
  return absl::OkStatus();
}

absl::Status Log::Reset(Index base_index, Term base_term) {
  std::lock_guard writer(write_mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if ((base_index == 0) != (base_term == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Reset(", base_index, ", ", base_term, "): index 0 goes with term 0 and only with it"));
  }
  PrefixBase base{base_index, base_term, base_.epoch + 1};
  if (absl::Status s = WriteBase(base); !s.ok()) return s;
  std::unique_lock lock(mu_);
  base_ = base;
  // Old segments now carry an older epoch: Open would delete them anyway.
  for (auto& seg : segments_) {
    if (absl::Status s = DeleteSegment(*seg); !s.ok()) {
      spdlog::warn("log {}: could not delete segment after Reset: {}", options_.directory.string(),
                   std::string(s.message()));
    }
  }
  segments_.clear();
  last_index_ = base_index;
  CacheDropFrom(0);
  durable_index_ = base_index;
  CheckInvariants();
  return absl::OkStatus();
}

absl::Status Log::Sync() {
  std::lock_guard writer(write_mu_);
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  const Index target = last_index_;
  uint64_t calls = 0;
  std::vector<std::pair<Segment*, std::string>> renamed;
  absl::Status status;
  for (auto& seg : segments_) {
    if (!seg->dirty || !status.ok()) continue;
    auto n = seg->file->Sync();
    if (!n.ok()) {
      status = n.status();
      break;
    }
    calls += *n;
    seg->dirty = false;
  }
  for (size_t k = 0; status.ok() && k + 1 < segments_.size(); ++k) {
    Segment& seg = *segments_[k];
    if (!seg.open) continue;
    std::string sealed = SealedSegmentName(seg.first, seg.last);
    if (disk_) status = RenameFile(PathOf(seg.name), PathOf(sealed));
    if (status.ok()) renamed.emplace_back(&seg, sealed);
    dir_dirty_ = true;
  }
  if (status.ok() && dir_dirty_ && disk_) {
    status = SyncDirectory(options_.directory);
    ++calls;
  }
  if (status.ok()) dir_dirty_ = false;
  // A failed fsync leaves unknown pages lost: never pretend otherwise.
  if (!status.ok()) broken_ = status;

  std::unique_lock lock(mu_);
  for (auto& [seg, name] : renamed) {
    seg->name = name;
    seg->open = false;
    seg->records.ShrinkToFit();  // sealed: it will not grow again
  }
  fsyncs_ += calls;
  if (!status.ok()) return status;
  if (calls > 0 || durable_index_ != target) ++syncs_;
  durable_index_ = target;
  return absl::OkStatus();
}

void Log::CheckInvariants() const {
#ifndef NDEBUG
  Index expect = 0;
  Term term = 0;
  for (const auto& seg : segments_) {
    assert(expect == 0 || seg->first == expect);
    assert(seg->last >= seg->first);
    assert(seg->records.first() == seg->first && seg->records.last() == seg->last);
    for (const TermRun& run : seg->term_runs) {
      assert(run.term >= term);
      term = run.term;
    }
    expect = seg->last + 1;
  }
  assert(segments_.empty() || segments_.front()->first <= base_.index + 1);
  assert(last_index_ >= base_.index);
  assert(segments_.empty() || segments_.back()->last == last_index_);
  assert(durable_index_ <= last_index_);
  assert(cache_.empty() || (cache_.back().index == last_index_ && cache_.front().index > base_.index &&
                            cache_.back().index - cache_.front().index + 1 == cache_.size()));
#endif
}

}  // namespace caracal::storage

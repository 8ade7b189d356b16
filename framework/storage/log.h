#ifndef CARACAL_FRAMEWORK_STORAGE_LOG_H_
#define CARACAL_FRAMEWORK_STORAGE_LOG_H_

// The replicated log: a sequence of indexes, each an entry or a hole, stored
// in segment files.
//
// ============================== ON-DISK FORMAT ==============================
//
// A log directory holds (every integer little-endian, every name's numbers
// 20-digit zero-padded decimals):
//
//   00000000000000000001-00000000000000004096.log   sealed segment: indexes 1..4096,
//                                                   complete and fsynced
//   open-00000000000000004097.log                   open segment: starts at 4097; its
//                                                   tail may be torn (not yet fsynced)
//   prefix-base                                     48 bytes, optional (see below)
//   *.tmp                                           half-made replacements; deleted on open
//
// Any other file is ignored (and left alone).
//
// Segment file = 48-byte header, then records back to back, no padding:
//
//   header  offset 0   u64  magic 0x0031474553524143 ("CARSEG1\0")
//           offset 8   u32  version (1)
//           offset 12  u32  header size (48)
//           offset 16  u64  first index of the segment (the name says it too)
//           offset 24  u64  epoch: the Reset() generation the segment belongs to
//           offset 32  u64  reserved, 0
//           offset 40  u64  XXH3-64 of bytes [0, 40)
//   record  offset 0   u32  body length L (multiple of 8, <= 64 MiB)
//           offset 4   u32  record format (1)
//           offset 8   u64  XXH3-64 of record bytes [0, 8) followed by the body
//           offset 16  L bytes: a Cap'n Proto flat-array message wire::LogRecord
//                      (serialization/caracal.capnp): either an Entry (index,
//                      term, timestamp, type, payload) or a HoleRun (first,
//                      last, term) standing for indexes [first, last], which
//                      compaction removed, all of that term.
//   (serialization/framing.h and codec.h implement records; segment.h the rest.)
//
// Records of a segment cover consecutive indexes starting at the header's
// first index, with non-decreasing terms; segments follow each other without
// gap or overlap. A sealed segment's name states its exact range, so a reader
// can find an index from a directory listing alone. There is at most one open
// segment in steady state, the last one; right after a rollover, and until the
// next Sync(), the previous (full) segment is still named open-*.log too.
//
// prefix-base (written by RemovePrefix and Reset, absent in a fresh log):
//           offset 0   u64  magic 0x0031455341424143 ("CABASE1\0")
//           offset 8   u32  version (1), offset 12 u32 reserved
//           offset 16  u64  base index B: every index <= B is gone (compacted
//                           into a snapshot); the log holds B+1 onwards
//           offset 24  u64  base term: the term of index B (Raft's log matching
//                           needs it even though the entry is gone)
//           offset 32  u64  epoch: segments whose header epoch is lower were
//                           dropped by a Reset and are deleted on open
//           offset 40  u64  XXH3-64 of bytes [0, 40)
// A segment may start at or below B (RemovePrefix only deletes whole
// segments); indexes <= B in it are dead and never read.
//
// ============================== WRITING AND CRASHES =========================
//
// Append: records are written (one pwrite per segment touched) to the open
//   segment; when it has reached segment_bytes the next record goes to a new
//   file open-<next index>.log (header first). With LogOptions::preallocate a
//   new segment file is allocated to segment_bytes up front (zeros past its
//   records) and cut back to its records when the next segment starts, before
//   it can be sealed. Nothing is durable yet. A crash
//   leaves any prefix of the written bytes, possibly with a torn last record,
//   and possibly zero-filled tails: recovery cuts the open segment at its first
//   bad record.
// Sync: fdatasync every segment written since the last Sync; then rename every
//   open segment except the last to its sealed name (its content is now
//   durable, so a sealed name always means "complete and fsynced"); then fsync
//   the directory if a file was created, renamed or deleted. A crash before the
//   renames leaves two open segments: recovery treats both as open (tolerant)
//   and seals the earlier one itself.
// TruncateSuffix(from): deletes, last first, the segments starting at or after
//   `from`; renames a sealed segment that holds `from` back to open-<first>.log
//   and cuts it (ftruncate) at the record holding `from`. If that record is a
//   hole run starting before `from`, a shorter hole record is appended. A crash
//   in between leaves the log cut at some point at or after from-1 (or at the
//   start of that hole run): always a prefix, never something invented. Made
//   durable by the next Sync.
// RemovePrefix(B): writes prefix-base {B, term of B, same epoch} (temp file,
//   fsync, rename, fsync dir), then deletes the segments lying wholly <= B.
//   A crash after the base is written leaves dead segments: deleted on open.
// Reset(B, T): writes prefix-base {B, T, epoch + 1}; the log is now empty at
//   base B. Then deletes every segment. A crash before the rename keeps the old
//   log; after it, the old segments carry a lower epoch and are deleted on open.
//
// ============================== RECOVERY (Open) =============================
//
// 1. Delete *.tmp. Read prefix-base (absent: base 0, term 0, epoch 0; corrupt:
//    DataLoss naming the file).
// 2. Take the segments in index order. A segment with an older epoch is
//    deleted (a Reset happened). A sealed segment must be perfect: a bad
//    header, record, checksum, length, decoding, index sequence, term order or
//    a range differing from its name is a DataLoss error "segment NAME: WHAT at
//    offset N" and Open fails: fsynced data is never silently dropped. An open
//    segment is read up to its first bad record (torn write); the file is cut
//    there and every later segment is deleted (they were not durable either;
//    a *sealed* segment after a torn one is a DataLoss error instead).
// 3. Segments lying wholly at or below the base are deleted; the rest must
//    continue each other and the base without gap (else DataLoss naming both).
// 4. Remaining open segments but the last are fsynced and sealed; the tail is
//    fsynced, so DurableIndex() == LastIndex() after Open.
//
// To recover a log by hand: keep the sealed segments in order, cut the last
// open segment after its last record whose XXH3 matches, make sure prefix-base
// (if any) names an index inside or just before the first segment.
//
// ============================== THREADS =====================================
//
// One writer thread (Append, TruncateSuffix, RemovePrefix, Reset, Sync; they
// are also serialized by a mutex) and any number of concurrent readers. File
// writes happen outside the lock readers take; the index is published under it
// afterwards. Sync() never holds that lock while it fsyncs.
//
// The MEMORY level runs the same code with byte buffers instead of files, so
// both levels have the same semantics; Sync() then only advances
// DurableIndex().
//
// ============================== IN-MEMORY INDEX =============================
//
// Per segment the log keeps a RecordIndex (record_index.h): each record's
// offset as a u32, plus the few hole records apart, about 4 bytes per entry
// (LogStats::index_bytes). Hence segment_bytes <= 2 GiB: a segment file stays
// below 4 GiB, and Open refuses (DataLoss) a larger one.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "framework/common/ring_buffer.h"
#include "framework/common/types.h"
#include "framework/storage/segment.h"

namespace caracal::storage {

enum class StorageLevel { kMemory, kDisk };

struct LogOptions {
  StorageLevel level = StorageLevel::kDisk;
  std::filesystem::path directory;  // DISK only; created if missing
  size_t segment_bytes = 64 << 20;  // a segment is closed once it reaches this size
  // The most recently appended entries are also kept in memory (payloads
  // shared with the caller, not copied), up to about this many bytes: the
  // state machine thread and the leader's replication read what was just
  // written without a pread and a decode. 0 turns the cache off.
  size_t cache_bytes = 4 << 20;
  // DISK only: a new open segment is allocated to segment_bytes at once
  // (fallocate; the space reads as zeros), so that appends do not change the
  // file's length and each fdatasync writes the data alone, not the inode too.
  // A segment gives the unused space back when the next one starts; recovery
  // treats an all-zero tail as unused space, not as damage.
  bool preallocate = true;
  // DISK only: recover in memory without changing any file (tools). Writes fail.
  bool read_only = false;
};

struct LogStats {
  Index first_index = 0;
  Index last_index = 0;
  Index durable_index = 0;
  Index base_index = 0;
  Term base_term = 0;
  uint64_t epoch = 0;
  size_t segments = 0;
  uint64_t bytes = 0;          // total size of the segment files
  uint64_t entries = 0;        // entry records held (including dead ones below the base)
  uint64_t hole_runs = 0;      // hole records
  uint64_t hole_indexes = 0;   // indexes covered by hole records
  uint64_t syncs = 0;          // Sync() calls that had something to flush
  uint64_t fsyncs = 0;         // fsync/fdatasync system calls, all causes
  uint64_t recovered_torn_bytes = 0;  // bytes cut from torn tails by Open
  std::string recovery_note;          // what Open repaired, empty if nothing
  uint64_t index_bytes = 0;           // heap bytes of the in-memory record indexes (about 4 per record)
  uint64_t cached_entries = 0;        // entries in the tail cache (LogOptions::cache_bytes)
  uint64_t cached_bytes = 0;          // what they cost, payloads and bookkeeping
};

struct SegmentInfo {
  std::string name;  // file name (DISK) or the name it would have
  bool open = false;
  Index first = 0;
  Index last = 0;    // first - 1 if empty
  uint64_t bytes = 0;
  uint64_t entries = 0;
  uint64_t hole_runs = 0;
  uint64_t hole_indexes = 0;
  std::vector<TermRun> term_runs;
  uint64_t index_bytes = 0;  // heap bytes of its in-memory record index
};

// Invariants (checked in debug builds by CheckInvariants):
//  * FirstIndex() == base index + 1; LastIndex() >= base index.
//  * segments_ cover consecutive ranges; the first starts at or below
//    FirstIndex(), the last ends at LastIndex() (when there is any index).
//  * terms never decrease along the log, and the base term is <= them.
//  * DurableIndex() <= LastIndex().
class Log {
 public:
  static absl::StatusOr<std::unique_ptr<Log>> Open(const LogOptions& options);
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // ---- reading (any thread) ----
  Index FirstIndex() const;  // base index + 1 (== LastIndex() + 1 when empty)
  Index LastIndex() const;   // the base index when empty (0 for a fresh log)
  // Term of every index in [FirstIndex() - 1, LastIndex()] (the base index
  // included); nullopt otherwise, except TermAt(0) == 0.
  std::optional<Term> TermAt(Index index) const;
  // The entry, or nullopt for a hole. OutOfRange outside [FirstIndex, LastIndex].
  absl::StatusOr<std::optional<Entry>> Get(Index index) const;
  // Appends to *entries / *holes the items of [from, to] in order (hole runs
  // clipped to the range), covering a contiguous prefix [from, k] of it: it
  // stops before an entry whose payload would take the payload total past
  // max_bytes, but always returns at least one item. OutOfRange unless
  // FirstIndex() <= from <= to <= LastIndex().
  absl::Status Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                    std::vector<HoleRun>* holes) const;
  Index DurableIndex() const;  // highest index known fsynced (or the base)
  LogStats Stats() const;
  std::vector<SegmentInfo> Segments() const;

  // ---- writing (one writer thread) ----
  // Entries and hole runs that together cover exactly LastIndex()+1 .. N,
  // ascending, no gap or overlap; terms >= TermAt(LastIndex()) and never
  // decreasing; entry index/term and hole first/last/term nonzero. On an
  // invalid argument nothing is written.
  absl::Status Append(absl::Span<const Entry> entries, absl::Span<const HoleRun> holes = {});
  // Removes every index >= from. Valid for FirstIndex() <= from <= LastIndex()+1
  // (the latter is a no-op); the compacted prefix cannot be truncated (use Reset).
  absl::Status TruncateSuffix(Index from);
  // Removes every index <= through; TermAt(through) stays known as the base.
  // through <= current base is a no-op; through > LastIndex() is OutOfRange
  // (use Reset). Durable when it returns.
  absl::Status RemovePrefix(Index through);
  // Drops everything; the log continues at base_index + 1 with
  // TermAt(base_index) == base_term. (base_index == 0) iff (base_term == 0).
  // Durable when it returns.
  absl::Status Reset(Index base_index, Term base_term);
  // Makes everything written so far durable: one fdatasync per segment written
  // since the last Sync (usually one), plus a directory fsync if files came or
  // went.
  absl::Status Sync();

 private:
  struct Segment;
  explicit Log(const LogOptions& options);
  absl::Status Recover();
  absl::Status CheckWritable() const;
  absl::Status ValidateAppend(absl::Span<const Entry> entries, absl::Span<const HoleRun> holes) const;
  absl::StatusOr<std::unique_ptr<Segment>> NewSegment(Index first);
  absl::Status WriteBase(const PrefixBase& base);
  absl::Status DeleteSegment(Segment& segment);
  absl::Status CutSegment(Segment& segment, Index from);
  void PreallocateTail(Segment& segment);
  void DropDeadSegments();
  std::filesystem::path PathOf(const std::string& name) const;
  // Under mu_ (shared is enough):
  const Segment* FindSegment(Index index) const;
  std::optional<Term> TermAtLocked(Index index) const;
  struct ReadState;
  // Reads from `segment` the items of [state->next, to]; true once max_bytes stops the read.
  absl::StatusOr<bool> ReadFromSegment(const Segment& segment, Index to, ReadState* state) const;
  void CheckInvariants() const;

  const LogOptions options_;
  const bool disk_;

  std::mutex write_mu_;  // serializes writers

  // What one Append call adds to one segment (the current tail or a new
  // one). Append keeps them in append_batches_ from call to call, so their
  // buffers keep their capacity: appending allocates nothing per entry and,
  // in steady state, nothing per call. Guarded by write_mu_.
  struct AppendBatch {
    Segment* seg = nullptr;
    std::unique_ptr<Segment> created;  // set when the segment is new
    uint64_t start = 0;                // file size before this call
    std::string buffer;
    std::vector<RecordMeta> records;
    std::vector<Term> terms;  // of each record
  };
  std::vector<AppendBatch> append_batches_;
  mutable std::shared_mutex mu_;  // guards everything below against readers
  std::vector<std::unique_ptr<Segment>> segments_;
  PrefixBase base_;
  Index last_index_ = 0;
  Index durable_index_ = 0;
  uint64_t syncs_ = 0;
  uint64_t fsyncs_ = 0;
  uint64_t recovered_torn_bytes_ = 0;
  std::string recovery_note_;

  // The tail cache (LogOptions::cache_bytes): entries with consecutive
  // indexes ending at last_index_, or empty. Appending a hole run empties it;
  // anything that changes or removes an index must drop it from the cache.
  // Reads in [cache_.front().index, last_index_] are served from it.
  // A ring (not a deque, which allocates a block every few entries).
  RingBuffer<Entry> cache_;
  size_t cache_bytes_ = 0;  // CachedBytes() of every cached entry
  void CacheAppend(absl::Span<const Entry> entries, bool holes);
  void CacheDropFrom(Index from);     // indexes >= from
  void CacheDropThrough(Index through);  // indexes <= through
  // Serves Read from the cache when it holds [from, ...]; false if it does not.
  bool ReadCached(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries) const;

  // Writer-thread only (no reader looks at these).
  bool dir_dirty_ = false;  // a file was created/renamed/deleted since the last directory fsync
  absl::Status broken_;     // sticky: a failed write left the files in an unknown state
};

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_LOG_H_

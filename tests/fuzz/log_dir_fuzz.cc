// Fuzz target: opening a log directory whose files hold arbitrary bytes
// (framework/storage/log.h, the whole recovery path of Log::Open on disk).
//
// Input script (fuzz_util.h ByteReader):
//   u8 flags   bit 0: repair the checksums of the segment bytes (fuzz_util.h)
//              bit 1: name the first segment sealed ("<first>-<last>.log"),
//                     else open ("open-<first>.log")
//              bit 2: name the sealed segment one index further than its
//                     records reach (a name/content mismatch)
//              bit 3: split the bytes into two segment files
//              bit 4: write a prefix-base file
//              bit 5: open read-only first (a tool inspecting the directory)
//   if bit 3:  u16 where the second file starts in the bytes
//   if bit 4:  u8 base index, u8 base term, u8 epoch
//   the rest:  the segment bytes; each file is named after the first index
//              its header states (1 if it has none)
// The directory lives on tmpfs (/dev/shm) when there is one.
//
// Properties: Open returns an error or a log that is valid: every index in
// [FirstIndex, LastIndex] has a term and can be read (Get and Read agree),
// terms never decrease; the log accepts an append after its last index; and
// opening the directory again afterwards succeeds with the same indexes and
// content (recovery is idempotent and never invents or loses entries).

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "framework/common/endian.h"
#include "framework/storage/log.h"
#include "framework/storage/segment.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace fs = std::filesystem;

// Reads at most this many indexes of a recovered log (hole runs may cover 2^64).
constexpr Index kMaxIndexesChecked = 512;

const fs::path& Directory() {
  static const fs::path dir = [] {
    std::error_code ec;
    fs::path base = fs::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0 ? fs::path("/dev/shm")
                                                                                         : fs::temp_directory_path();
    fs::path d = base / ("caracal-log-fuzz-" + std::to_string(getpid()));
    spdlog::set_level(spdlog::level::off);  // recovery notes would flood the output
    std::atexit([] { std::error_code e; fs::remove_all(Directory(), e); });
    return d;
  }();
  return dir;
}

void WriteFile(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  FUZZ_CHECK(out.good());
}

Index HeaderFirstIndex(std::string_view data) {
  if (data.size() < 24) return 1;
  return GetU64(data.data() + 16);
}

// The content of every index checked, to compare two opens of one directory.
struct Snapshot {
  Index first = 0;
  Index last = 0;
  std::vector<std::optional<Entry>> items;
  std::vector<Term> terms;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

Snapshot CheckLog(const storage::Log& log) {
  Snapshot snap;
  snap.first = log.FirstIndex();
  snap.last = log.LastIndex();
  FUZZ_CHECK(snap.last + 1 >= snap.first);
  FUZZ_CHECK(log.DurableIndex() <= snap.last);
  if (snap.first > 1) FUZZ_CHECK(log.TermAt(snap.first - 1).has_value());
  if (snap.last < snap.first) return snap;
  Index to = snap.last - snap.first < kMaxIndexesChecked ? snap.last : snap.first + kMaxIndexesChecked - 1;
  Term previous = log.TermAt(snap.first - 1).value_or(0);
  for (Index i = snap.first; i <= to; ++i) {
    std::optional<Term> term = log.TermAt(i);
    FUZZ_CHECK(term.has_value() && *term >= previous && *term > 0);
    previous = *term;
    auto item = log.Get(i);
    FUZZ_CHECK(item.ok());
    if (item->has_value()) FUZZ_CHECK((*item)->index == i && (*item)->term == *term);
    snap.items.push_back(*item);
    snap.terms.push_back(*term);
  }
  std::vector<Entry> entries;
  std::vector<HoleRun> holes;
  FUZZ_CHECK(log.Read(snap.first, to, SIZE_MAX, &entries, &holes).ok());
  size_t e = 0;
  for (Index i = snap.first; i <= to; ++i) {
    const std::optional<Entry>& item = snap.items[i - snap.first];
    if (item.has_value()) {
      FUZZ_CHECK(e < entries.size() && entries[e] == *item);
      ++e;
    }
  }
  FUZZ_CHECK(e == entries.size());
  (void)log.Stats();
  (void)log.Segments();
  return snap;
}

void Run(std::string_view input) {
  ByteReader in(input);
  const uint8_t flags = in.U8();
  const size_t split = (flags & 8) ? in.U16() : 0;
  std::optional<storage::PrefixBase> base;
  if (flags & 16) {
    Index index = in.U8();
    Term term = in.U8();
    uint64_t epoch = in.U8() % 4;
    if ((index == 0) != (term == 0)) index = term = 0;
    base = storage::PrefixBase{index, term, epoch};
  }
  std::string bytes(in.Rest());
  std::vector<std::string> files;
  if ((flags & 8) && split < bytes.size()) {
    files = {bytes.substr(0, split), bytes.substr(split)};
  } else {
    files = {bytes};
  }
  if (flags & 1) {
    for (std::string& f : files) {
      RepairTrailingChecksum(&f, 40);
      RepairRecords(&f, storage::kSegmentHeaderBytes);
    }
  }

  const fs::path& dir = Directory();
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  FUZZ_CHECK(!ec);
  for (size_t i = 0; i < files.size(); ++i) {
    Index first = HeaderFirstIndex(files[i]);
    std::string name = storage::OpenSegmentName(first);
    if (i == 0 && (flags & 2)) {
      auto scan = storage::ScanSegment("fuzz", files[i], /*strict=*/false, 0);
      Index last = scan.ok() && scan->header_ok ? scan->last : first;
      name = storage::SealedSegmentName(first, last + ((flags & 4) ? 1 : 0));
    }
    WriteFile(dir / name, files[i]);
  }
  if (base) WriteFile(dir / storage::kBaseFileName, storage::EncodePrefixBase(*base));

  storage::LogOptions options;
  options.directory = dir;
  options.segment_bytes = 4096;
  if (flags & 32) {
    options.read_only = true;
    if (auto log = storage::Log::Open(options); log.ok()) {
      CheckLog(**log);
      FUZZ_CHECK(!(*log)->Append({Entry{(*log)->LastIndex() + 1, 1, 0, EntryType::kTime, {}}}).ok());
    }
    options.read_only = false;
  }

  Snapshot before;
  {
    auto log = storage::Log::Open(options);
    if (!log.ok()) {
      FUZZ_CHECK(!log.status().message().empty());
      return;
    }
    before = CheckLog(**log);
    FUZZ_CHECK((*log)->DurableIndex() == before.last);
    // The recovered log takes new entries after its last index (unless that
    // index is the very last one there can be).
    if (before.last < UINT64_MAX - 1) {
      Term term = std::max<Term>((*log)->TermAt(before.last).value_or(1), 1);
      Entry next{before.last + 1, term, 0, EntryType::kCommand, Bytes(std::string("fuzz"))};
      FUZZ_CHECK((*log)->Append({next}).ok());
      FUZZ_CHECK((*log)->Sync().ok());
      FUZZ_CHECK((*log)->TruncateSuffix(before.last + 1).ok());
      FUZZ_CHECK((*log)->Sync().ok());
    }
  }
  auto again = storage::Log::Open(options);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(CheckLog(**again) == before);
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  caracal::fuzz::Run(caracal::fuzz::AsView(data, size));
  return 0;
}

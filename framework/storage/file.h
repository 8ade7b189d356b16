#ifndef CARACAL_FRAMEWORK_STORAGE_FILE_H_
#define CARACAL_FRAMEWORK_STORAGE_FILE_H_

// Internal to storage: the few file operations the log and the metadata store
// need, behind one small interface so that the MEMORY storage level runs the
// very same code as the DISK level with an in-memory byte buffer as "file".

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace caracal::storage {

// An append-only byte file with random reads. One writer thread calls
// Append/Truncate/Sync; any number of threads may call ReadAt concurrently
// with it, for byte ranges the writer already finished writing.
class SegmentFile {
 public:
  virtual ~SegmentFile() = default;
  // Appends `data` at the end. On failure the file is cut back to its old size
  // if possible; if even that fails the returned status says so.
  virtual absl::Status Append(std::string_view data) = 0;
  // Reads exactly `n` bytes at `offset` into `out` (resized to n).
  virtual absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const = 0;
  virtual absl::Status Truncate(uint64_t size) = 0;
  // Allocates the file up to `bytes` now (the space past size() reads as
  // zeros) without moving size(): appends into that space leave the file's
  // length alone, so an fdatasync writes the data and not the inode as well
  // (on ext4 that is about a third less time and CPU per sync). Truncate
  // gives the space back. A no-op in memory.
  virtual absl::Status Preallocate(uint64_t bytes) = 0;
  // fdatasync; a no-op in memory. Returns how many fsync calls it made.
  virtual absl::StatusOr<int> Sync() = 0;
  virtual uint64_t size() const = 0;
};

// Opens `path` for reading and (unless read_only) appending. `create` makes a
// new empty file and fails if it exists.
absl::StatusOr<std::unique_ptr<SegmentFile>> OpenPosixFile(const std::filesystem::path& path, bool create,
                                                           bool read_only);
std::unique_ptr<SegmentFile> NewMemoryFile();

// "open(2) of /x/y failed: No such file or directory", as a Status whose code
// follows errno (ENOENT -> NotFound, ENOSPC -> ResourceExhausted, ...).
absl::Status ErrnoStatus(int err, std::string_view what);

// fsync of a directory, so that creates, renames and unlinks in it are durable.
absl::Status SyncDirectory(const std::filesystem::path& dir);

// Replaces dir/name atomically and durably: writes dir/name.tmp, fsyncs it,
// renames it over dir/name, fsyncs dir. A crash at any point leaves either the
// old or the new file under `name` (plus maybe a stale name.tmp).
absl::Status WriteFileAtomically(const std::filesystem::path& dir, const std::string& name, std::string_view data);

// The whole content of `path`; NotFound if it does not exist.
absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path);

absl::Status RenameFile(const std::filesystem::path& from, const std::filesystem::path& to);
absl::Status RemoveFile(const std::filesystem::path& path);

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_FILE_H_

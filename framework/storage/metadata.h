#ifndef CARACAL_FRAMEWORK_STORAGE_METADATA_H_
#define CARACAL_FRAMEWORK_STORAGE_METADATA_H_

// Raft's small durable state: the hard state (current term, vote) and the
// latest configuration (opaque bytes, encoded by the raft layer).
//
// ============================== ON-DISK FORMAT ==============================
//
// One file, DIR/metadata (integers little-endian):
//
//   offset 0    u64  magic 0x0031415441444d43 ("CMDATA1\0")
//   offset 8    u32  version (1)
//   offset 12   u32  reserved, 0
//   offset 16   u64  save counter: 1 for the first Save, +1 for each next
//   offset 24   u32  H: length of the hard state bytes
//   offset 28   u32  C: length of the configuration bytes
//   offset 32   H bytes: wire::HardState, Cap'n Proto flat array
//                        (serialization/codec.h EncodeHardState)
//   then        C bytes: the configuration, as given to Save
//   then        u64  XXH3-64 of every byte before it
//
// Save replaces the file atomically: write DIR/metadata.tmp, fsync it, rename
// it over DIR/metadata, fsync DIR.
//   crash before the rename: the old file is intact; the stale .tmp is
//     deleted by the next Open.
//   crash after the rename: the new file is complete (it was fsynced before
//     the rename); the directory fsync makes the rename itself durable.
// Hence a torn replace never loses both versions, and a single file suffices.
// We deliberately do NOT keep two alternating files that fall back to the older
// one on a bad checksum: silently reverting to an older term or vote lets a
// server vote twice in one term. A corrupt file is a DataLoss error naming the
// file and what is wrong; an operator decides (restore, or wipe the server and
// re-add it to the cluster).
//
// Thread safety: Save and Load may be called from any thread (internally
// serialized).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "framework/common/types.h"

namespace caracal::storage {

struct Metadata {
  HardState hard_state;
  std::string configuration;
  uint64_t version = 0;  // the save counter; 0 = never saved (a fresh server)

  friend bool operator==(const Metadata&, const Metadata&) = default;
};

inline constexpr char kMetadataFileName[] = "metadata";

class MetadataStore {
 public:
  // DISK: `directory` is created if missing; an existing metadata file is
  // read and checked here (corruption fails Open).
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::filesystem::path& directory);
  static std::unique_ptr<MetadataStore> OpenInMemory();

  // Durable when it returns OK. On error the previous metadata stays in force.
  absl::Status Save(const HardState& hard_state, std::string configuration);
  // The last saved metadata (version 0 and defaults if never saved).
  Metadata Load() const;

  // Exposed for tools and tests: the file format.
  static std::string Encode(const Metadata& metadata);
  static absl::StatusOr<Metadata> Decode(std::string_view bytes);

 private:
  MetadataStore(std::filesystem::path directory, bool disk) : directory_(std::move(directory)), disk_(disk) {}

  const std::filesystem::path directory_;
  const bool disk_;
  mutable std::mutex mu_;
  Metadata current_;
};

}  // namespace caracal::storage

#endif  // CARACAL_FRAMEWORK_STORAGE_METADATA_H_

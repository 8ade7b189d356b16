// Fuzz target: the metadata file (framework/storage/metadata.h: the hard
// state and configuration every server keeps in DIR/metadata).
//
// The input is the file. It is decoded as it is and with its length fields
// made to match the file size and its trailing checksum repaired
// (fuzz_util.h), so that mutations reach the hard state decoder behind them;
// the repaired file is also written to a directory that MetadataStore::Open
// then reads.
//
// Properties: nothing crashes, leaks or hangs; a file that decodes
// re-encodes to the same bytes, and Open agrees with Decode.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "framework/common/endian.h"
#include "framework/storage/metadata.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace fs = std::filesystem;

constexpr size_t kFixedBytes = 32;  // metadata.h: the header before the hard state

const fs::path& Directory() {
  static const fs::path dir = [] {
    std::error_code ec;
    fs::path base = fs::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0 ? fs::path("/dev/shm")
                                                                                         : fs::temp_directory_path();
    fs::path d = base / ("caracal-metadata-fuzz-" + std::to_string(getpid()));
    fs::create_directories(d, ec);
    std::atexit([] { std::error_code e; fs::remove_all(Directory(), e); });
    return d;
  }();
  return dir;
}

void Decode(std::string_view bytes) {
  auto metadata = storage::MetadataStore::Decode(bytes);
  if (!metadata.ok()) {
    FUZZ_CHECK(!metadata.status().message().empty());
    return;
  }
  std::string encoded = storage::MetadataStore::Encode(*metadata);
  auto again = storage::MetadataStore::Decode(encoded);
  FUZZ_CHECK(again.ok() && *again == *metadata);
}

// Makes the configuration length fit the file (keeping the hard state
// length if it fits) and repairs the checksum.
std::string Repair(std::string_view input) {
  std::string bytes(input);
  if (bytes.size() < kFixedBytes + 8) return bytes;
  uint64_t room = bytes.size() - kFixedBytes - 8;
  uint32_t hard = GetU32(bytes.data() + 24);
  if (hard > room) hard = static_cast<uint32_t>(room);
  PutU32(bytes.data() + 24, hard);
  PutU32(bytes.data() + 28, static_cast<uint32_t>(room - hard));
  RepairTrailingChecksum(&bytes, bytes.size() - 8);
  return bytes;
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace caracal::fuzz;
  namespace storage = caracal::storage;
  std::string_view input = AsView(data, size);
  Decode(input);
  std::string repaired = Repair(input);
  if (repaired != input) Decode(repaired);

  const fs::path& dir = Directory();
  {
    std::ofstream out(dir / storage::kMetadataFileName, std::ios::binary | std::ios::trunc);
    out.write(repaired.data(), static_cast<std::streamsize>(repaired.size()));
    FUZZ_CHECK(out.good());
  }
  auto store = storage::MetadataStore::Open(dir);
  auto decoded = storage::MetadataStore::Decode(repaired);
  FUZZ_CHECK(store.ok() == decoded.ok());
  if (store.ok()) FUZZ_CHECK((*store)->Load() == *decoded);
  return 0;
}

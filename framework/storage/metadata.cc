#include "framework/storage/metadata.h"

#include <system_error>

#include "absl/strings/str_cat.h"
#include "framework/common/endian.h"
#include "framework/storage/file.h"
#include "serialization/codec.h"
#include "serialization/framing.h"

namespace caracal::storage {
namespace {

constexpr uint64_t kMetadataMagic = 0x0031415441444d43;  // "CMDATA1\0"
constexpr size_t kFixedBytes = 32;
constexpr size_t kMaxConfigurationBytes = 64u << 20;

}  // namespace

std::string MetadataStore::Encode(const Metadata& metadata) {
  std::string hard = serialization::EncodeHardState(metadata.hard_state);
  std::string out(kFixedBytes, '\0');
  PutU64(out.data(), kMetadataMagic);
  PutU32(out.data() + 8, 1);
  PutU64(out.data() + 16, metadata.version);
  PutU32(out.data() + 24, static_cast<uint32_t>(hard.size()));
  PutU32(out.data() + 28, static_cast<uint32_t>(metadata.configuration.size()));
  out += hard;
  out += metadata.configuration;
  char sum[8];
  PutU64(sum, serialization::Checksum(out));
  out.append(sum, 8);
  return out;
}

absl::StatusOr<Metadata> MetadataStore::Decode(std::string_view bytes) {
  if (bytes.size() < kFixedBytes + 8) {
    return absl::DataLossError(absl::StrCat("file is ", bytes.size(), " bytes, shorter than the ", kFixedBytes + 8,
                                            "-byte minimum"));
  }
  if (GetU64(bytes.data()) != kMetadataMagic) return absl::DataLossError("bad magic at offset 0");
  if (GetU32(bytes.data() + 8) != 1) {
    return absl::DataLossError(absl::StrCat("unsupported version ", GetU32(bytes.data() + 8), " at offset 8"));
  }
  uint64_t hard_size = GetU32(bytes.data() + 24);
  uint64_t config_size = GetU32(bytes.data() + 28);
  if (config_size > kMaxConfigurationBytes || kFixedBytes + hard_size + config_size + 8 != bytes.size()) {
    return absl::DataLossError(absl::StrCat("lengths at offset 24 (", hard_size, " + ", config_size,
                                            " bytes) do not match the file size ", bytes.size()));
  }
  size_t sum_at = bytes.size() - 8;
  if (serialization::Checksum(bytes.substr(0, sum_at)) != GetU64(bytes.data() + sum_at)) {
    return absl::DataLossError(absl::StrCat("bad checksum at offset ", sum_at));
  }
  auto hard = serialization::DecodeHardState(bytes.substr(kFixedBytes, hard_size));
  if (!hard.ok()) {
    return absl::DataLossError(absl::StrCat("hard state at offset ", kFixedBytes, ": ", hard.status().message()));
  }
  Metadata m;
  m.hard_state = *hard;
  m.configuration = std::string(bytes.substr(kFixedBytes + hard_size, config_size));
  m.version = GetU64(bytes.data() + 16);
  return m;
}

absl::StatusOr<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::filesystem::path& directory) {
  if (directory.empty()) return absl::InvalidArgumentError("metadata directory is empty");
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create metadata directory ", directory.string(), ": ",
                                            ec.message()));
  }
  std::unique_ptr<MetadataStore> store(new MetadataStore(directory, /*disk=*/true));
  std::filesystem::path tmp = directory / (std::string(kMetadataFileName) + ".tmp");
  if (absl::Status s = RemoveFile(tmp); !s.ok()) return s;  // a Save that crashed before its rename
  auto data = ReadWholeFile(directory / kMetadataFileName);
  if (absl::IsNotFound(data.status())) return store;
  if (!data.ok()) return data.status();
  auto metadata = Decode(*data);
  if (!metadata.ok()) {
    return absl::DataLossError(absl::StrCat((directory / kMetadataFileName).string(), ": ",
                                            metadata.status().message(),
                                            "; the server's term and vote are unknown: restore the file or "
                                            "wipe this server and re-add it to the cluster"));
  }
  store->current_ = *std::move(metadata);
  return store;
}

std::unique_ptr<MetadataStore> MetadataStore::OpenInMemory() {
  return std::unique_ptr<MetadataStore>(new MetadataStore({}, /*disk=*/false));
}

absl::Status MetadataStore::Save(const HardState& hard_state, std::string configuration) {
  if (configuration.size() > kMaxConfigurationBytes) {
    return absl::InvalidArgumentError(absl::StrCat("configuration of ", configuration.size(),
                                                   " bytes exceeds the limit of ", kMaxConfigurationBytes));
  }
  std::lock_guard lock(mu_);
  Metadata next{hard_state, std::move(configuration), current_.version + 1};
  if (disk_) {
    if (absl::Status s = WriteFileAtomically(directory_, kMetadataFileName, Encode(next)); !s.ok()) return s;
  }
  current_ = std::move(next);
  return absl::OkStatus();
}

Metadata MetadataStore::Load() const {
  std::lock_guard lock(mu_);
  return current_;
}

}  // namespace caracal::storage

#include "framework/storage/metadata.h"

#include <filesystem>
#include <fstream>

#include "framework/storage/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace caracal::storage {
namespace {

using ::testing::HasSubstr;

void WriteBytes(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

class MetadataStoreTest : public ::testing::Test {
 protected:
  std::filesystem::path dir() const { return dir_.path() / "meta"; }
  std::unique_ptr<MetadataStore> OpenStore() {
    auto store = MetadataStore::Open(dir());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  caracal::testing::TempDir dir_;
};

TEST_F(MetadataStoreTest, FreshStoreLoadsDefaults) {
  auto store = OpenStore();
  EXPECT_EQ(store->Load(), Metadata{});
  EXPECT_EQ(MetadataStore::OpenInMemory()->Load(), Metadata{});
}

TEST_F(MetadataStoreTest, SavedStateSurvivesReopen) {
  ASSERT_TRUE(OpenStore()->Save({7, 3}, "config-bytes").ok());
  {
    auto store = OpenStore();
    EXPECT_EQ(store->Load(), (Metadata{{7, 3}, "config-bytes", 1}));
    ASSERT_TRUE(store->Save({8, 0}, std::string("\0binary\xff", 8)).ok());
  }
  EXPECT_EQ(OpenStore()->Load(), (Metadata{{8, 0}, std::string("\0binary\xff", 8), 2}));
}

TEST_F(MetadataStoreTest, InMemoryStoreKeepsTheLastSave) {
  auto store = MetadataStore::OpenInMemory();
  ASSERT_TRUE(store->Save({2, 1}, "a").ok());
  ASSERT_TRUE(store->Save({3, 2}, "b").ok());
  EXPECT_EQ(store->Load(), (Metadata{{3, 2}, "b", 2}));
}

TEST_F(MetadataStoreTest, TornReplaceKeepsThePreviousVersion) {
  ASSERT_TRUE(OpenStore()->Save({5, 1}, "old").ok());
  // A Save that crashed before its rename leaves a partial temp file.
  std::string next = MetadataStore::Encode({{6, 2}, "new", 2});
  WriteBytes(dir() / "metadata.tmp", next.substr(0, next.size() / 2));

  auto store = OpenStore();
  EXPECT_EQ(store->Load(), (Metadata{{5, 1}, "old", 1}));
  EXPECT_FALSE(std::filesystem::exists(dir() / "metadata.tmp"));
}

TEST_F(MetadataStoreTest, EveryBitFlipIsACorruptionErrorNamingTheFile) {
  ASSERT_TRUE(OpenStore()->Save({9, 4}, "configuration").ok());
  auto good = ReadWholeFile(dir() / kMetadataFileName);
  ASSERT_TRUE(good.ok());
  for (size_t offset = 0; offset < good->size(); ++offset) {
    std::string bad = *good;
    bad[offset] = static_cast<char>(bad[offset] ^ (1 << (offset % 8)));
    WriteBytes(dir() / kMetadataFileName, bad);

    auto store = MetadataStore::Open(dir());
    ASSERT_FALSE(store.ok()) << "flip at offset " << offset << " went unnoticed";
    EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(store.status().message()), HasSubstr((dir() / "metadata").string()));
  }
}

TEST_F(MetadataStoreTest, TruncatedFileIsACorruptionError) {
  ASSERT_TRUE(OpenStore()->Save({9, 4}, "configuration").ok());
  std::filesystem::resize_file(dir() / kMetadataFileName, 20);

  auto store = MetadataStore::Open(dir());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("shorter than"));
}

}  // namespace
}  // namespace caracal::storage

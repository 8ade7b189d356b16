// The commands behind caracal-log (tools/log/log_tool.h), run in-process.

#include "tools/log/log_tool.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/storage/file.h"
#include "framework/storage/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/storage/log_test_util.h"
#include "tests/testing/temp_dir.h"

namespace caracal::tools {
namespace {

using ::caracal::storage::testing::MakeEntries;
using ::caracal::storage::testing::MakeEntry;
using ::testing::HasSubstr;

class LogToolTest : public ::testing::Test {
 protected:
  // Entries 1..2 (term 1), holes 3..7 (term 1), entries 8..40 (term 2), 100-byte payloads, small segments.
  void SetUp() override {
    storage::LogOptions options;
    options.directory = dir();
    options.segment_bytes = 1024;
    auto log = storage::Log::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Append({MakeEntry(1, 1, 100), MakeEntry(2, 1, 100)}, {{3, 7, 1}}).ok());
    ASSERT_TRUE((*log)->Append(MakeEntries(8, 40, 2, 100)).ok());
    ASSERT_TRUE((*log)->Sync().ok());
    segments_ = (*log)->Segments();
  }
  std::filesystem::path dir() const { return tmp_.path() / "log"; }
  void FlipByte(const std::filesystem::path& path, uint64_t offset) {
    auto data = storage::ReadWholeFile(path);
    ASSERT_TRUE(data.ok());
    (*data)[offset] ^= 0x20;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << *data;
  }
  caracal::testing::TempDir tmp_;
  std::vector<storage::SegmentInfo> segments_;
  std::ostringstream out_, err_;
};

TEST_F(LogToolTest, InspectShowsSegmentsRangesCountsAndTermRuns) {
  ASSERT_EQ(InspectLog(dir(), out_, err_), kExitOk) << err_.str();
  std::string report = out_.str();
  EXPECT_THAT(report, HasSubstr("prefix base: none"));
  EXPECT_THAT(report, HasSubstr("indexes: 1..40 (40), 35 entries, 1 hole runs covering 5 indexes"));
  EXPECT_THAT(report, HasSubstr(segments_.front().name + "  sealed  indexes 1.."));
  EXPECT_THAT(report, HasSubstr(segments_.back().name + "  open"));
  EXPECT_THAT(report, HasSubstr("term 1 from 1 term 2 from 8"));
  EXPECT_THAT(report, HasSubstr("durable state: clean"));
}

TEST_F(LogToolTest, DumpPrintsOneLinePerEntryAndHoleRun) {
  ASSERT_EQ(DumpLog(dir(), 2, 9, out_, err_), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "2 1 2000 command 100\n"
            "3..7 1 - hole -\n"
            "8 2 8000 command 100\n"
            "9 2 9000 command 100\n");
}

TEST_F(LogToolTest, DumpWithoutRangeCoversTheWholeLog) {
  ASSERT_EQ(DumpLog(dir(), std::nullopt, std::nullopt, out_, err_), kExitOk) << err_.str();
  std::string dump = out_.str();
  EXPECT_EQ(std::count(dump.begin(), dump.end(), '\n'), 36);  // 35 entries + 1 hole run
}

TEST_F(LogToolTest, DumpRejectsARangeOutsideTheLog) {
  EXPECT_EQ(DumpLog(dir(), 30, 41, out_, err_), kExitError);
  EXPECT_THAT(err_.str(), HasSubstr("range 30..41 is outside the log's indexes 1..40"));
}

TEST_F(LogToolTest, VerifyPassesACleanLog) {
  EXPECT_EQ(VerifyLog(dir(), out_, err_), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("OK: indexes 1..40"));
}

TEST_F(LogToolTest, VerifyNamesTheFileAndOffsetOfSealedCorruption) {
  FlipByte(dir() / segments_.front().name, storage::kSegmentHeaderBytes + 20);

  EXPECT_EQ(VerifyLog(dir(), out_, err_), kExitError);
  EXPECT_EQ(err_.str(), "caracal-log: segment " + segments_.front().name + ": bad checksum at offset 48\n");
}

TEST_F(LogToolTest, VerifyReportsATornTailWithoutRepairingIt) {
  std::filesystem::path tail = dir() / segments_.back().name;
  auto size = segments_.back().bytes;  // its records (the file may be preallocated past them)
  std::filesystem::resize_file(tail, size - 5);

  EXPECT_EQ(VerifyLog(dir(), out_, err_), kExitTornTail);
  EXPECT_THAT(err_.str(), HasSubstr(segments_.back().name + ": torn tail"));
  EXPECT_EQ(std::filesystem::file_size(tail), size - 5);  // read-only
}

TEST_F(LogToolTest, CommandsFailClearlyOnAMissingDirectory) {
  EXPECT_EQ(InspectLog(tmp_.path() / "nope", out_, err_), kExitError);
  EXPECT_THAT(err_.str(), HasSubstr("does not exist"));
}

}  // namespace
}  // namespace caracal::tools

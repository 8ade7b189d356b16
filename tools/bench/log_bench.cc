// caracal-log-bench: append throughput of the DISK log with one Sync (fsync)
// per batch, as the storage thread does it: 256-byte entries, batches of 1,
// 16 and 256 entries. The log lives in a fresh directory under $TMPDIR (or
// /tmp), removed afterwards.
//
//   build/tools/caracal-log-bench [--benchmark_min_time=2s]

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "benchmark/benchmark.h"
#include "framework/storage/log.h"

namespace caracal::storage {
namespace {

constexpr size_t kEntryBytes = 256;

std::filesystem::path MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/caracal-log-bench-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

void BM_AppendAndSync(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  std::filesystem::path dir = MakeTempDir();
  if (dir.empty()) {
    state.SkipWithError("cannot create a temporary directory");
    return;
  }
  {
    LogOptions options;
    options.directory = dir;
    auto log = Log::Open(options);
    if (!log.ok()) {
      state.SkipWithError(std::string(log.status().message()).c_str());
      return;
    }
    Bytes payload(std::string(kEntryBytes, 'x'));
    std::vector<Entry> entries(batch);
    Index next = 1;
    for (auto _ : state) {
      for (Entry& e : entries) e = Entry{next++, 1, 0, EntryType::kCommand, payload};
      absl::Status s = (*log)->Append(entries);
      if (s.ok()) s = (*log)->Sync();
      if (!s.ok()) {
        state.SkipWithError(std::string(s.message()).c_str());
        break;
      }
    }
    const double appended = static_cast<double>(next - 1);
    state.counters["entries/s"] = benchmark::Counter(appended, benchmark::Counter::kIsRate);
    state.counters["MB/s"] = benchmark::Counter(appended * kEntryBytes / 1e6, benchmark::Counter::kIsRate);
    state.counters["fsyncs/batch"] =
        benchmark::Counter(static_cast<double>((*log)->Stats().fsyncs) / static_cast<double>(state.iterations()));
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}
BENCHMARK(BM_AppendAndSync)->ArgName("batch")->Arg(1)->Arg(16)->Arg(256)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace caracal::storage

BENCHMARK_MAIN();

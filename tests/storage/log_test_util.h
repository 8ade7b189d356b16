#ifndef CARACAL_TESTS_STORAGE_LOG_TEST_UTIL_H_
#define CARACAL_TESTS_STORAGE_LOG_TEST_UTIL_H_

// Builders shared by the storage tests.

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "framework/common/types.h"

namespace caracal::storage::testing {

// An entry whose payload is derived from its index, so a mix-up shows.
inline Entry MakeEntry(Index index, Term term, size_t payload_bytes = 24) {
  std::string payload(payload_bytes, '\0');
  for (size_t i = 0; i < payload_bytes; ++i) payload[i] = static_cast<char>('a' + (index * 7 + i) % 26);
  return Entry{index, term, static_cast<LogTime>(index * 1000), EntryType::kCommand, Bytes(std::move(payload))};
}

inline std::vector<Entry> MakeEntries(Index first, Index last, Term term, size_t payload_bytes = 24) {
  std::vector<Entry> out;
  for (Index i = first; i <= last; ++i) out.push_back(MakeEntry(i, term, payload_bytes));
  return out;
}

// Polls `condition` until it holds or `timeout` passes (a bounded wait, not a
// sleep used as synchronization). Returns whether it held.
template <typename Condition>
bool WaitFor(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace caracal::storage::testing

#endif  // CARACAL_TESTS_STORAGE_LOG_TEST_UTIL_H_

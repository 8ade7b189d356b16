#ifndef CARACAL_TESTS_TESTING_PROCESS_H_
#define CARACAL_TESTS_TESTING_PROCESS_H_

// Child processes for real-process tests: spawn, signal, reap — plus a way to
// wait for files to change (inotify) so that tests wait on events with a
// deadline instead of sleeping.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace caracal::testing {

class Process {
 public:
  // Starts `argv[0]` with `argv`; stdout and stderr go to `output` (appended).
  static absl::StatusOr<Process> Spawn(const std::vector<std::string>& argv, const std::filesystem::path& output);
  Process() = default;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();  // SIGKILLs and reaps a child still running

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signal);
  // Waits up to `timeout` for the child to exit; its exit code (or 128+signal).
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  void KillAndWait();

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Calls `ready` whenever a file in `directory` (not recursive) is written or
// renamed into place, and once at the start; returns true as soon as `ready`
// does, false when `timeout` passes first.
bool WaitForFiles(const std::vector<std::filesystem::path>& directories, std::chrono::milliseconds timeout,
                  const std::function<bool()>& ready);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
// released).
uint16_t PickFreePort();

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_TESTING_PROCESS_H_

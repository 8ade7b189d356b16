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
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace caracal::testing {

class Process {
 public:
  // Starts `argv[0]` with `argv`; stdout and stderr go to `output` (appended).
  static absl::StatusOr<Process> Spawn(const std::vector<std::string>& argv, const std::filesystem::path& output);
  // The same, with stdout and stderr in separate files (appended).
  static absl::StatusOr<Process> Spawn(const std::vector<std::string>& argv, const std::filesystem::path& out,
                                       const std::filesystem::path& err);
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

// How a program run to completion (Run) ended, and what it printed.
struct Completed {
  std::optional<int> exit_code;  // nullopt: it was still running at the deadline (and was SIGKILLed)
  std::string out;               // its stdout
  std::string err;               // its stderr
  std::chrono::milliseconds elapsed{0};
};

// Runs `argv` until it exits or `timeout` passes (then SIGKILLs it), with its
// stdout and stderr captured in fresh files under `directory`.
absl::StatusOr<Completed> RunToExit(const std::vector<std::string>& argv, const std::filesystem::path& directory,
                              std::chrono::milliseconds timeout);

// The whole content of `file` ("" if it cannot be read).
std::string ReadFile(const std::filesystem::path& file);

// Waits up to `timeout` until `file` (written by a child, say) contains
// `text`; true if it does.
bool WaitForText(const std::filesystem::path& file, std::string_view text, std::chrono::milliseconds timeout);

// Calls `ready` whenever a file in `directory` (not recursive) is written to,
// closed after writing or renamed into place, and once at the start; returns true as soon as `ready`
// does, false when `timeout` passes first.
bool WaitForFiles(const std::vector<std::filesystem::path>& directories, std::chrono::milliseconds timeout,
                  const std::function<bool()>& ready);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
// released).
uint16_t PickFreePort();

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_TESTING_PROCESS_H_

#include "tests/testing/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace caracal::testing {

absl::StatusOr<Process> Process::Spawn(const std::vector<std::string>& argv, const std::filesystem::path& output) {
  return Spawn(argv, output, std::filesystem::path());
}

absl::StatusOr<Process> Process::Spawn(const std::vector<std::string>& argv, const std::filesystem::path& out,
                                       const std::filesystem::path& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (err.empty()) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  // Nothing else of ours may leak into the child: a test's sockets (a
  // client's connections, a proxy's listener and links) are rarely opened
  // with close-on-exec, and a child holding a copy keeps a connection the
  // test closed open -- to its peer, a link that silently swallows data.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Process p;
  int rc = posix_spawn(&p.pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", argv[0], ": ", std::strerror(rc)));
  return p;
}

Process::Process(Process&& other) noexcept : pid_(other.pid_), status_(other.status_) { other.pid_ = -1; }

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    KillAndWait();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

Process::~Process() { KillAndWait(); }

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void Process::Signal(int signal) {
  if (running()) ::kill(pid_, signal);
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // A pidfd would let us poll; waitpid with WNOHANG in a loop with a short
  // nap is the portable bounded wait for a child's exit.
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    usleep(2000);
  }
  return status_;
}

void Process::KillAndWait() {
  if (pid_ > 0 && running()) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    status_ = 128 + SIGKILL;
  }
}

absl::StatusOr<Completed> RunToExit(const std::vector<std::string>& argv, const std::filesystem::path& directory,
                              std::chrono::milliseconds timeout) {
  static std::atomic<int> runs{0};
  const std::string name = absl::StrCat("run-", getpid(), "-", ++runs);
  const std::filesystem::path out = directory / (name + ".out"), err = directory / (name + ".err");
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Process> p = Process::Spawn(argv, out, err);
  if (!p.ok()) return p.status();
  Completed done;
  done.exit_code = p->Wait(timeout);
  if (!done.exit_code) p->KillAndWait();
  done.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  done.out = ReadFile(out);
  done.err = ReadFile(err);
  return done;
}

std::string ReadFile(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WaitForText(const std::filesystem::path& file, std::string_view text, std::chrono::milliseconds timeout) {
  return WaitForFiles({file.parent_path()}, timeout,
                      [&] { return ReadFile(file).find(text) != std::string::npos; });
}

bool WaitForFiles(const std::vector<std::filesystem::path>& directories, std::chrono::milliseconds timeout,
                  const std::function<bool()>& ready) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::runtime_error("inotify_init1 failed");
  for (const auto& d : directories) {
    inotify_add_watch(fd, d.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ok = ready();
  while (!ok) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    // Wake on a change, or at least every 100 ms: a process that dies changes
    // no file, and `ready` may be watching for exactly that.
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ok = ready();
  }
  ::close(fd);
  return ok;
}

uint16_t PickFreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(s);
    throw std::runtime_error("bind to 127.0.0.1:0 failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

}  // namespace caracal::testing

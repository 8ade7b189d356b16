// lock_holder: a test helper for the lock example (examples/lock) on real
// caracal-server processes. It opens a session, asks for one lock, and then
// keeps the session alive until SIGINT/SIGTERM (or until it is killed):
//
//   lock_holder HOST:PORT[,HOST:PORT...] LOCK_NAME SESSION_TIMEOUT_MS
//
// stdout, one line each, flushed at once so a test can wait for them:
//   "acquired"  the Lock command took the lock
//   "queued"    the lock is held: this session waits for it
//   "granted"   the "granted" event arrived: the lock passed to this session
// stderr: "session N", and a message for anything that went wrong (exit 1).

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "caracal/client.h"
#include "examples/lock/lock.h"
#include "spdlog/spdlog.h"

namespace {

namespace lock = caracal::examples::lock;

void Say(const char* line) {
  std::printf("%s\n", line);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: lock_holder HOST:PORT[,HOST:PORT...] LOCK_NAME SESSION_TIMEOUT_MS\n");
    return 2;
  }
  std::vector<std::string> servers = absl::StrSplit(argv[1], ',', absl::SkipEmpty());
  const std::string name = argv[2];
  const std::chrono::milliseconds session_timeout(std::atoll(argv[3]));
  spdlog::set_level(spdlog::level::warn);

  // Taken by sigwait below; blocked before the client's thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto client = caracal::Client::Builder()
                    .WithServers(servers)
                    .WithClientId("lock_holder-" + name)
                    .WithSessionTimeout(session_timeout)
                    .WithConnectTimeout(std::chrono::seconds(20))
                    .WithRecoveryStrategy(caracal::RecoveryStrategy::kClose)
                    .Connect();
  if (!client.ok()) {
    std::fprintf(stderr, "lock_holder: cannot connect: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "session %lu\n", static_cast<unsigned long>((*client)->session()));
  (*client)->OnEvent<lock::Granted>(std::string(lock::kGrantedEvent), [name](lock::Granted granted) {
    if (granted.name == name) Say("granted");
  });
  auto acquired = (*client)->Submit(lock::Lock{.name = name});
  if (acquired.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    std::fprintf(stderr, "lock_holder: no answer to Lock '%s' within 20 s\n", name.c_str());
    return 1;
  }
  auto result = acquired.get();
  if (!result.ok()) {
    std::fprintf(stderr, "lock_holder: Lock '%s' failed: %s\n", name.c_str(),
                 std::string(result.status().message()).c_str());
    return 1;
  }
  Say(*result ? "acquired" : "queued");

  int sig = 0;
  sigwait(&signals, &sig);
  (void)(*client)->Close();
  return 0;
}

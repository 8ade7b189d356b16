// caracal-client: the command-line client of the key-value example
// (examples/kv) on a cluster of caracal-server processes.
//
//   caracal-client --servers 127.0.0.1:5001,127.0.0.1:5002 put color blue
//   caracal-client --servers 127.0.0.1:5001 get color --consistency sequential
//   caracal-client --servers 127.0.0.1:5001 watch col --count 3
//
// Each run opens one client session (caracal::Client), runs one subcommand
// and closes the session. Results go to stdout, one per line; problems go to
// stderr as one line starting with "caracal-client: ".
//
// Exit codes (the same for every subcommand; see --help):
//   0  success
//   1  get: the key has no value (stderr: "... not found")
//   2  bad command line (CLI11's message, or a bad --servers address)
//   3  the cluster is unreachable: no session within --timeout-ms
//   4  the request failed: the cluster answered an error, no answer came
//      within --timeout-ms, or (watch) the session was lost

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "caracal/client.h"
#include "examples/kv/kv.h"
#include "framework/transport/tcp_transport.h"
#include "spdlog/spdlog.h"

namespace {

namespace kv = caracal::examples::kv;
using std::chrono::milliseconds;

constexpr int kOk = 0;
constexpr int kNotFound = 1;
constexpr int kUsage = 2;
constexpr int kUnreachable = 3;
constexpr int kFailed = 4;

constexpr const char* kExitCodes =
    "Exit codes: 0 success; 1 get found no value; 2 bad command line; 3 cluster unreachable "
    "(no session within --timeout-ms); 4 the request failed or got no answer within --timeout-ms.";

// A message on stderr, prefixed with the program's name; returns `code`.
int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "caracal-client: %s\n", message.c_str());
  return code;
}

// Prints `text` and a newline on stdout, now (a reader may be waiting for it).
void PrintLine(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// "host:port,host:port" -> {"host:port", ...}, each checked.
absl::StatusOr<std::vector<std::string>> ParseServers(const std::string& text) {
  std::vector<std::string> servers;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::string server(absl::StripAsciiWhitespace(item));
    if (auto hp = caracal::transport::ParseHostPort(server); !hp.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--servers: '", server, "': ", hp.status().message()));
    }
    servers.push_back(std::move(server));
  }
  if (servers.empty()) return absl::InvalidArgumentError("--servers: no server given (HOST:PORT,HOST:PORT,...)");
  return servers;
}

struct Global {
  std::string servers;
  std::string cluster_id = "caracal";
  int timeout_ms = 5000;
  std::string log_level = "error";
};

// The result of an operation, waited for at most `timeout`.
template <typename T>
absl::StatusOr<T> Await(std::future<absl::StatusOr<T>> future, milliseconds timeout) {
  if (future.wait_for(timeout) != std::future_status::ready) {
    return absl::DeadlineExceededError(absl::StrCat("no answer within ", timeout.count(), " ms (--timeout-ms)"));
  }
  return future.get();
}

int RequestFailed(const std::string& what, const absl::Status& status) {
  return Fail(kFailed, absl::StrCat(what, " failed: ", status.message()));
}

int Put(caracal::Client& client, milliseconds timeout, const std::string& key, const std::string& value,
        int64_t ttl_ms) {
  auto previous = Await(client.Submit(kv::Put{.key = key, .value = value, .ttl_ms = ttl_ms}), timeout);
  if (!previous.ok()) return RequestFailed(absl::StrCat("put '", key, "'"), previous.status());
  if (previous->has_value()) PrintLine(**previous);
  return kOk;
}

int Get(caracal::Client& client, milliseconds timeout, const std::string& key, caracal::Consistency consistency) {
  auto value = Await(client.Submit(kv::Get{.key = key}, consistency), timeout);
  if (!value.ok()) return RequestFailed(absl::StrCat("get '", key, "'"), value.status());
  if (!value->has_value()) return Fail(kNotFound, absl::StrCat("get '", key, "': not found"));
  PrintLine(**value);
  return kOk;
}

int Remove(caracal::Client& client, milliseconds timeout, const std::string& key) {
  auto removed = Await(client.Submit(kv::Remove{.key = key}), timeout);
  if (!removed.ok()) return RequestFailed(absl::StrCat("remove '", key, "'"), removed.status());
  if (removed->has_value()) PrintLine(**removed);
  return kOk;
}

int CompareAndSet(caracal::Client& client, milliseconds timeout, const std::string& key,
                  std::optional<std::string> expected, const std::string& value) {
  auto set = Await(client.Submit(kv::CompareAndSet{.key = key, .expected = std::move(expected), .value = value}),
                   timeout);
  if (!set.ok()) return RequestFailed(absl::StrCat("cas '", key, "'"), set.status());
  PrintLine(*set ? "true" : "false");
  return kOk;
}

// Registers a watch of `prefix`, then prints one line per change until
// `count` events arrived (0: no limit) or SIGINT/SIGTERM. The signals are
// blocked in every thread (main() does it before the client starts its
// thread) and taken here with sigwait; the client's thread wakes this one
// with SIGUSR1.
int Watch(caracal::Client& client, milliseconds timeout, const std::string& prefix, uint64_t count) {
  const pthread_t main_thread = pthread_self();
  std::atomic<uint64_t> seen{0};
  std::atomic<bool> lost{false};
  std::atomic<bool> stopping{false};
  client.OnEvent<kv::Changed>(std::string(kv::kChangedEvent), [&](kv::Changed change) {
    if (count != 0 && seen.load() >= count) return;
    PrintLine(change.value ? absl::StrCat(change.key, "=", *change.value, " index=", change.index)
                           : absl::StrCat(change.key, " removed index=", change.index));
    if (++seen == count) pthread_kill(main_thread, SIGUSR1);
  });
  // A RECOVERed session would not have the watch: the client is built with
  // RecoveryStrategy::kClose, so losing the session closes it.
  client.OnStateChange([&](caracal::ClientState state) {
    if (state == caracal::ClientState::kClosed && !stopping.load()) {
      lost = true;
      pthread_kill(main_thread, SIGUSR1);
    }
  });
  auto watched = Await(client.Submit(kv::Watch{.prefix = prefix}), timeout);
  if (!watched.ok()) return RequestFailed(absl::StrCat("watch '", prefix, "'"), watched.status());
  std::fprintf(stderr, "caracal-client: watching keys starting with '%s' (session %lu)\n", prefix.c_str(),
               static_cast<unsigned long>(client.session()));
  std::fflush(stderr);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) break;
    if (sig != SIGUSR1) break;                     // interrupted: a normal end
    if (lost.load() || (count != 0 && seen.load() >= count)) break;
  }
  // The handlers above refer to this frame: no callback may run after it.
  stopping = true;
  (void)client.Close();
  if (lost.load()) {
    return Fail(kFailed, absl::StrCat("watch '", prefix,
                                      "': the session was lost (the cluster expired it); events may have been missed"));
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caracal-client: reads and writes the key-value example (caracal-server --state-machine kv)."};
  app.footer(std::string(kExitCodes) +
             "\nResults go to stdout (put/remove: the previous value, if any; get: the value; cas: true or false; "
             "watch: 'KEY=VALUE index=N' or 'KEY removed index=N' per change). Errors: one line on stderr.");
  Global g;
  app.add_option("--servers", g.servers, "Some cluster members, as HOST:PORT,HOST:PORT,... (more are learned)")
      ->required();
  app.add_option("--cluster-id", g.cluster_id, "The cluster's id (caracal-server --cluster-id)")->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms,
                 "Give up when no server registered a session, or no answer came, within this")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  app.add_option("--log-level", g.log_level, "The client library's log level: trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.require_subcommand(1);

  std::string key, value, prefix;
  int64_t ttl_ms = 0;
  std::string consistency_name = "linearizable";
  std::vector<std::string> cas_args;
  bool cas_absent = false;
  uint64_t count = 0;

  CLI::App* put = app.add_subcommand("put", "Sets KEY to VALUE; prints the previous value (nothing if none)");
  put->add_option("KEY", key, "The key")->required();
  put->add_option("VALUE", value, "The value")->required();
  put->add_option("--ttl-ms", ttl_ms, "Remove the key this long (log time) after the put; 0: never")
      ->check(CLI::NonNegativeNumber);

  CLI::App* get = app.add_subcommand("get", "Prints KEY's value; exit 1 and 'not found' on stderr if it has none");
  get->add_option("KEY", key, "The key")->required();
  get->add_option("--consistency", consistency_name,
                  "linearizable (leader, quorum-confirmed), lease (leader, while its lease holds) or sequential")
      ->check(CLI::IsMember({"linearizable", "lease", "sequential"}))
      ->capture_default_str();

  CLI::App* remove = app.add_subcommand("remove", "Removes KEY; prints the removed value (nothing if none)");
  remove->add_option("KEY", key, "The key")->required();

  CLI::App* cas = app.add_subcommand(
      "cas", "KEY EXPECTED NEW: sets KEY to NEW if its value is EXPECTED (with --absent: KEY NEW, if KEY has no "
             "value); prints true or false");
  cas->add_option("ARGS", cas_args, "KEY EXPECTED NEW, or KEY NEW with --absent")->required();
  cas->add_flag("--absent", cas_absent, "Expect KEY to have no value (then give only KEY NEW)");

  CLI::App* watch = app.add_subcommand(
      "watch", "Watches keys starting with PREFIX: prints one line per change until --count changes or SIGINT/SIGTERM");
  watch->add_option("PREFIX", prefix, "The key prefix (\"\" for every key)")->required();
  watch->add_option("--count", count, "Exit after this many changes (0: run until interrupted)")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints the help or the error
    return code == 0 ? kOk : kUsage;
  }
  std::optional<std::string> cas_expected;
  std::string cas_key, cas_value;
  if (cas->parsed()) {
    const size_t want = cas_absent ? 2 : 3;
    if (cas_args.size() != want) {
      return Fail(kUsage, absl::StrCat("cas: expected ", cas_absent ? "KEY NEW (with --absent)" : "KEY EXPECTED NEW",
                                       ", got ", cas_args.size(), " argument(s); see cas --help"));
    }
    cas_key = cas_args.front();
    cas_value = cas_args.back();
    if (!cas_absent) cas_expected = cas_args[1];
  }
  auto servers = ParseServers(g.servers);
  if (!servers.ok()) return Fail(kUsage, std::string(servers.status().message()));
  spdlog::set_level(spdlog::level::from_str(g.log_level));

  // watch takes these signals with sigwait; block them before the client's
  // thread starts so that it inherits the mask and never receives them.
  if (watch->parsed()) {
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  }

  const milliseconds timeout(g.timeout_ms);
  auto client = caracal::Client::Builder()
                    .WithServers(*servers)
                    .WithClusterId(g.cluster_id)
                    .WithClientId(absl::StrCat("caracal-client-", getpid()))
                    .WithConnectTimeout(timeout)
                    .WithQueryTimeout(timeout)
                    .WithAttemptTimeout(std::min(timeout, milliseconds(2000)))
                    .WithRecoveryStrategy(watch->parsed() ? caracal::RecoveryStrategy::kClose
                                                          : caracal::RecoveryStrategy::kRecover)
                    .Connect();
  if (!client.ok()) {
    return Fail(kUnreachable,
                absl::StrCat("cannot reach the cluster at ", g.servers, ": ", client.status().message()));
  }
  int code = kOk;
  if (put->parsed()) {
    code = Put(**client, timeout, key, value, ttl_ms);
  } else if (get->parsed()) {
    static const std::map<std::string, caracal::Consistency> kConsistency = {
        {"linearizable", caracal::Consistency::kLinearizable},
        {"lease", caracal::Consistency::kLinearizableLease},
        {"sequential", caracal::Consistency::kSequential}};
    code = Get(**client, timeout, key, kConsistency.at(consistency_name));
  } else if (remove->parsed()) {
    code = Remove(**client, timeout, key);
  } else if (cas->parsed()) {
    code = CompareAndSet(**client, timeout, cas_key, cas_expected, cas_value);
  } else if (watch->parsed()) {
    code = Watch(**client, timeout, prefix, count);
  }
  // Closes the session now rather than leaving it to expire on the servers.
  (void)(*client)->Close();
  return code;
}

// caracal-bench: closed-loop load against a Caracal cluster running the
// key-value example, with latency percentiles and the servers' CPU and memory.
//
//   caracal-bench --clients 64 --duration-s 10 --workload put           # starts 3 servers itself
//   caracal-bench --servers 127.0.0.1:5001,... --pids 11,12,13 ...      # an existing cluster
//
// Each client is one session with one operation in flight (closed loop): it
// submits the next operation when the previous one completed. Latency is
// measured from submit to completion, in an HDR-style histogram (log-linear
// buckets, < 1.6 % relative error). CPU is read from /proc/<pid>/stat over
// the measured interval; RSS from /proc/<pid>/status at the end.

#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "caracal/client.h"
#include "examples/kv/kv.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
namespace kv = caracal::examples::kv;

// ---- latency histogram: 64 linear sub-buckets per power of two (ns) ----
class Histogram {
 public:
  static constexpr int kSub = 64;
  void Record(int64_t ns) {
    if (ns < 1) ns = 1;
    ++counts_[Bucket(ns)];
    ++total_;
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
  }
  uint64_t total() const { return total_; }
  // The value at quantile q (0..1), in nanoseconds (bucket midpoint).
  double Quantile(double q) const {
    if (total_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_ - 1)) + 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return Midpoint(i);
    }
    return Midpoint(counts_.size() - 1);
  }

 private:
  static size_t Bucket(int64_t ns) {
    int msb = 63 - __builtin_clzll(static_cast<uint64_t>(ns));
    if (msb < 6) return static_cast<size_t>(ns);  // exact below 64 ns
    int shift = msb - 6;
    size_t sub = static_cast<size_t>((ns >> shift) & (kSub - 1));
    return static_cast<size_t>((msb - 5) * kSub) + sub;
  }
  static double Midpoint(size_t bucket) {
    if (bucket < kSub) return static_cast<double>(bucket);
    int msb = static_cast<int>(bucket / kSub) + 5;
    int shift = msb - 6;
    double low = static_cast<double>((static_cast<uint64_t>(kSub) + bucket % kSub) << shift);
    return low + static_cast<double>(1ull << shift) / 2;
  }
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(64 * 60, 0);
  uint64_t total_ = 0;
};

// ---- server processes ----
struct ProcessStats {
  double cpu_seconds = 0;
  double rss_mb = 0;
};

ProcessStats ReadProcess(pid_t pid) {
  ProcessStats s;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name (which may hold spaces) start after ')'.
    std::vector<std::string> f = absl::StrSplit(line.substr(line.rfind(')') + 2), ' ');
    if (f.size() > 13) {
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;  // utime + stime
    }
  }
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_mb = std::stod(line.substr(6)) / 1024.0;
  }
  return s;
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

uint16_t FreePort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

class Cluster {
 public:
  ~Cluster() { Stop(); }
  absl::Status Start(const std::string& binary, int servers, const std::filesystem::path& dir, bool memory) {
    std::vector<std::string> members;
    for (int i = 1; i <= servers; ++i) {
      addresses_.push_back(absl::StrCat("127.0.0.1:", FreePort()));
      members.push_back(absl::StrCat(i, "=", addresses_.back()));
    }
    std::string member_list = absl::StrJoin(members, ",");
    for (int i = 1; i <= servers; ++i) {
      std::filesystem::path data = dir / std::to_string(i);
      std::filesystem::create_directories(data);
      std::vector<std::string> args = {binary, "--id", std::to_string(i), "--members", member_list,
                                       "--data-dir", data.string(), "--log-level", "warn",
                                       "--storage", memory ? "memory" : "disk"};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      posix_spawn_file_actions_t actions;
      posix_spawn_file_actions_init(&actions);
      std::string log = (data / "server.log").string();
      posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      posix_spawn_file_actions_adddup2(&actions, 1, 2);
      pid_t pid = 0;
      int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
      posix_spawn_file_actions_destroy(&actions);
      if (rc != 0) return absl::InternalError(absl::StrCat("cannot start ", binary, ": ", strerror(rc)));
      pids_.push_back(pid);
    }
    return absl::OkStatus();
  }
  void Stop() {
    for (pid_t p : pids_) kill(p, SIGTERM);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
    pids_.clear();
  }
  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::vector<std::string> addresses_;
  std::vector<pid_t> pids_;
};

// ---- load ----
struct Config {
  std::string workload = "put";  // put | get | mixed
  caracal::Consistency consistency = caracal::Consistency::kLinearizable;
  double read_ratio = 0.5;
  int clients = 1;
  double duration_s = 10;
  double warmup_s = 1;
  uint64_t ops = 0;  // 0: run for duration_s
  uint64_t keys = 10000;
  size_t key_bytes = 16;
  size_t value_bytes = 256;
};

std::string KeyOf(uint64_t k, size_t bytes) {
  std::string s = absl::StrFormat("%0*d", static_cast<int>(bytes), k);
  return s.substr(s.size() - bytes);
}

struct Worker {
  std::unique_ptr<caracal::Client> client;
  std::mt19937_64 rng;
  Histogram histogram;
  uint64_t errors = 0;
  std::string last_error;
  std::mutex mu;  // histogram/errors: written on the client's thread, read at the end
};

class Load {
 public:
  Load(const Config& c, std::vector<std::unique_ptr<Worker>>* workers) : config_(c), workers_(workers) {
    value_ = std::string(c.value_bytes, 'v');
  }
  void Begin() {
    for (auto& w : *workers_) Next(w.get());
  }
  void StartMeasuring() { measuring_ = true; }
  void StopAll() { stopping_ = true; }
  uint64_t completed() const { return completed_.load(); }
  uint64_t in_flight() const { return in_flight_.load(); }

 private:
  void Next(Worker* w) {
    if (stopping_) return;
    ++in_flight_;
    auto start = Clock::now();
    std::string key = KeyOf(w->rng() % config_.keys, config_.key_bytes);
    bool read = config_.workload == "get" ||
                (config_.workload == "mixed" && std::uniform_real_distribution<>(0, 1)(w->rng) < config_.read_ratio);
    auto done = [this, w, start](bool ok, const absl::Status& status) {
      int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
      if (measuring_ && !stopping_) {
        std::lock_guard lock(w->mu);
        if (ok) {
          w->histogram.Record(ns);
          ++completed_;
        } else {
          ++w->errors;
          w->last_error = status.ToString();
        }
      }
      --in_flight_;
      Next(w);
    };
    if (read) {
      w->client->Submit(kv::Get{.key = key}, config_.consistency,
                        [done](absl::StatusOr<std::optional<std::string>> r) { done(r.ok(), r.status()); });
    } else {
      w->client->Submit(kv::Put{.key = key, .value = value_},
                        [done](absl::StatusOr<std::optional<std::string>> r) { done(r.ok(), r.status()); });
    }
  }

  Config config_;
  std::vector<std::unique_ptr<Worker>>* workers_;
  std::string value_;
  std::atomic<bool> measuring_ = false;
  std::atomic<bool> stopping_ = false;
  std::atomic<uint64_t> completed_ = 0;
  std::atomic<uint64_t> in_flight_ = 0;
};

std::string ConsistencyName(caracal::Consistency c) {
  switch (c) {
    case caracal::Consistency::kLinearizable:
      return "linearizable";
    case caracal::Consistency::kLinearizableLease:
      return "lease";
    case caracal::Consistency::kSequential:
      return "sequential";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caracal-bench: closed-loop load on the key-value example, with latency percentiles and server CPU/RSS"};
  Config config;
  std::string servers, pids_text, consistency = "linearizable", strategy = "any", server_binary, data_dir;
  int start_servers = 3;
  int client_threads = 1;
  bool json = false, memory = false;
  app.add_option("--servers", servers, "an existing cluster: host:port,... (default: start --start servers)");
  app.add_option("--pids", pids_text, "with --servers: the server processes' pids, for CPU and RSS");
  app.add_option("--start", start_servers, "servers to start when --servers is not given")->check(CLI::Range(1, 7));
  app.add_option("--server-binary", server_binary, "caracal-server to start (default: next to caracal-bench)");
  app.add_option("--data-dir", data_dir, "where started servers keep their data (default: a fresh /tmp dir)");
  app.add_flag("--memory", memory, "started servers keep their log in memory (no fsync)");
  app.add_option("--clients", config.clients, "concurrent sessions, one operation in flight each")
      ->check(CLI::Range(1, 4096));
  app.add_option("--client-threads", client_threads, "threads the sessions share (ClientRuntime)")
      ->check(CLI::Range(1, 64));
  app.add_option("--duration-s", config.duration_s, "measured seconds")->check(CLI::PositiveNumber);
  app.add_option("--ops", config.ops,
                 "stop after this many measured operations (--duration-s is then only an upper bound, default 1 h)");
  app.add_option("--warmup-s", config.warmup_s, "unmeasured seconds first")->check(CLI::NonNegativeNumber);
  app.add_option("--workload", config.workload, "put | get | mixed")
      ->check(CLI::IsMember({"put", "get", "mixed"}));
  const std::map<std::string, caracal::Consistency> consistencies{
      {"linearizable", caracal::Consistency::kLinearizable},
      {"lease", caracal::Consistency::kLinearizableLease},
      {"sequential", caracal::Consistency::kSequential}};
  app.add_option("--consistency", consistency, "reads: linearizable | lease | sequential")
      ->check(CLI::IsMember(consistencies));
  const std::map<std::string, caracal::ConnectionStrategy> strategies{
      {"any", caracal::ConnectionStrategy::kAny},
      {"leader", caracal::ConnectionStrategy::kLeader},
      {"followers", caracal::ConnectionStrategy::kFollowers}};
  app.add_option("--strategy", strategy,
                 "the clients' connection strategy: any | leader | followers (where SEQUENTIAL reads go; "
                 "everything else goes to the leader)")
      ->check(CLI::IsMember(strategies));
  app.add_option("--read-ratio", config.read_ratio, "mixed: the share of reads")->check(CLI::Range(0.0, 1.0));
  app.add_option("--keys", config.keys, "key space")->check(CLI::PositiveNumber);
  app.add_option("--key-bytes", config.key_bytes, "key size")->check(CLI::Range(1, 1024));
  app.add_option("--value-bytes", config.value_bytes, "value size")->check(CLI::Range(0, 1 << 20));
  app.add_flag("--json", json, "print one JSON object instead of the table");
  CLI11_PARSE(app, argc, argv);
  if (config.ops > 0 && app.count("--duration-s") == 0) config.duration_s = 3600;
  config.consistency = consistencies.at(consistency);
  const caracal::ConnectionStrategy connection_strategy = strategies.at(strategy);
  spdlog::set_level(spdlog::level::warn);

  Cluster cluster;
  std::vector<std::string> addresses;
  std::vector<pid_t> pids;
  std::filesystem::path tmp;
  if (servers.empty()) {
    if (server_binary.empty()) {
      server_binary = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "caracal-server").string();
    }
    if (data_dir.empty()) {
      char pattern[] = "/tmp/caracal-bench.XXXXXX";
      if (mkdtemp(pattern) == nullptr) {
        std::fprintf(stderr, "caracal-bench: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
      }
      tmp = pattern;
      data_dir = tmp.string();
    }
    if (absl::Status s = cluster.Start(server_binary, start_servers, data_dir, memory); !s.ok()) {
      std::fprintf(stderr, "caracal-bench: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    addresses = cluster.addresses();
    pids = cluster.pids();
  } else {
    addresses = absl::StrSplit(servers, ',', absl::SkipEmpty());
    for (absl::string_view p : absl::StrSplit(pids_text, ',', absl::SkipEmpty())) pids.push_back(std::stoi(std::string(p)));
  }

  // Sessions.
  std::vector<std::shared_ptr<caracal::ClientRuntime>> runtimes;
  for (int i = 0; i < client_threads; ++i) runtimes.push_back(caracal::ClientRuntime::Create());
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < config.clients; ++i) {
    auto w = std::make_unique<Worker>();
    w->rng.seed(0x5eed + i);
    // Each client lists the servers from a different one: a read connection
    // goes to the first suitable server listed, so SEQUENTIAL reads spread.
    std::vector<std::string> rotated = addresses;
    std::rotate(rotated.begin(), rotated.begin() + i % rotated.size(), rotated.end());
    auto client = caracal::Client::Builder()
                      .WithServers(rotated)
                      .WithClientId(absl::StrCat("bench-", i))
                      .WithRuntime(runtimes[i % runtimes.size()])
                      .WithConnectionStrategy(connection_strategy)
                      .WithSessionTimeout(std::chrono::seconds(10))
                      .WithConnectTimeout(std::chrono::seconds(20))
                      .Connect();
    if (!client.ok()) {
      std::fprintf(stderr, "caracal-bench: client %d: %s\n", i, std::string(client.status().message()).c_str());
      return 1;
    }
    w->client = *std::move(client);
    workers.push_back(std::move(w));
  }
  // Gets read something: fill the key space first.
  if (config.workload != "put") {
    std::fprintf(stderr, "filling %" PRIu64 " keys...\n", config.keys);
    std::string value(config.value_bytes, 'v');
    std::vector<std::future<absl::StatusOr<std::optional<std::string>>>> pending;
    for (uint64_t k = 0; k < config.keys; ++k) {
      pending.push_back(workers[k % workers.size()]->client->Submit(kv::Put{.key = KeyOf(k, config.key_bytes), .value = value}));
      if (pending.size() >= 256) {
        for (auto& f : pending) (void)f.get();
        pending.clear();
      }
    }
    for (auto& f : pending) (void)f.get();
  }

  Load load(config, &workers);
  load.Begin();
  std::this_thread::sleep_for(std::chrono::duration<double>(config.warmup_s));
  std::vector<ProcessStats> before;
  for (pid_t p : pids) before.push_back(ReadProcess(p));
  double self_before = SelfCpuSeconds();
  auto start = Clock::now();
  load.StartMeasuring();
  auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.duration_s));
  uint64_t last = 0;
  auto next_progress = start + std::chrono::seconds(1);
  while (Clock::now() < end && (config.ops == 0 || load.completed() < config.ops)) {
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(10), end - Clock::now()));
    if (Clock::now() < next_progress) continue;
    next_progress += std::chrono::seconds(1);
    uint64_t now_done = load.completed();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (!json) {
      std::fprintf(stderr, "\r  %5.1f s  %10" PRIu64 " ops  %9.0f ops/s (last second %9" PRIu64 ")", elapsed, now_done,
                   static_cast<double>(now_done) / elapsed, now_done - last);
    }
    last = now_done;
  }
  load.StopAll();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<ProcessStats> after;
  for (pid_t p : pids) after.push_back(ReadProcess(p));
  double load_cpu = SelfCpuSeconds() - self_before;
  if (!json) std::fprintf(stderr, "\n");
  // Let the last operations drain before the clients close.
  auto drain = Clock::now() + std::chrono::seconds(10);
  while (load.in_flight() > 0 && Clock::now() < drain) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  Histogram all;
  uint64_t errors = 0;
  std::string last_error;
  for (auto& w : workers) {
    std::lock_guard lock(w->mu);
    all.Merge(w->histogram);
    errors += w->errors;
    if (!w->last_error.empty()) last_error = w->last_error;
  }
  double ops = static_cast<double>(all.total());
  double cpu_total = 0;
  std::vector<double> cpu, rss;
  for (size_t i = 0; i < pids.size(); ++i) {
    cpu.push_back(after[i].cpu_seconds - before[i].cpu_seconds);
    rss.push_back(after[i].rss_mb);
    cpu_total += cpu.back();
  }
  double us_per_op = ops > 0 ? cpu_total * 1e6 / ops : 0;
  auto ms = [&](double q) { return all.Quantile(q) / 1e6; };
  std::string workload = config.workload == "put" ? "put" : absl::StrCat(config.workload, "/", ConsistencyName(config.consistency));
  if (json) {
    std::printf(
        "{\"workload\":\"%s\",\"clients\":%d,\"seconds\":%.3f,\"ops\":%.0f,\"errors\":%" PRIu64
        ",\"ops_per_s\":%.1f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,"
        "\"server_cpu_s\":[%s],\"cpu_us_per_op\":%.2f,\"server_rss_mb\":[%s],\"key_bytes\":%zu,\"value_bytes\":%zu,"
        "\"load_generator_cpu_s\":%.3f}\n",
        workload.c_str(), config.clients, seconds, ops, errors, ops / seconds, ms(0.5), ms(0.9), ms(0.99), ms(0.999),
        absl::StrJoin(cpu, ",", [](std::string* out, double v) { absl::StrAppend(out, absl::StrFormat("%.3f", v)); }).c_str(),
        us_per_op,
        absl::StrJoin(rss, ",", [](std::string* out, double v) { absl::StrAppend(out, absl::StrFormat("%.1f", v)); }).c_str(),
        config.key_bytes, config.value_bytes, load_cpu);
  } else {
    std::printf("%-22s %7s %10s %10s %8s %8s %8s %8s %20s %10s %20s\n", "workload", "clients", "ops", "ops/s",
                "p50 ms", "p90 ms", "p99 ms", "p999 ms", "server cpu s", "cpu us/op", "server rss MB");
    std::printf("%-22s %7d %10.0f %10.0f %8.3f %8.3f %8.3f %8.3f %20s %10.1f %20s\n", workload.c_str(), config.clients,
                ops, ops / seconds, ms(0.5), ms(0.9), ms(0.99), ms(0.999),
                absl::StrJoin(cpu, "/", [](std::string* o, double v) { absl::StrAppend(o, absl::StrFormat("%.2f", v)); }).c_str(),
                us_per_op,
                absl::StrJoin(rss, "/", [](std::string* o, double v) { absl::StrAppend(o, absl::StrFormat("%.0f", v)); }).c_str());
    std::printf("load generator: %.2f s CPU (%.1f us/op)\n", load_cpu, ops > 0 ? load_cpu * 1e6 / ops : 0);
    if (errors > 0) std::printf("errors: %" PRIu64 " (last: %s)\n", errors, last_error.c_str());
  }
  workers.clear();
  cluster.Stop();
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return errors > 0 && ops == 0 ? 1 : 0;
}

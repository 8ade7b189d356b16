#ifndef CARACAL_TESTS_FAULTS_HARNESS_FAULT_RUN_H_
#define CARACAL_TESTS_FAULTS_HARNESS_FAULT_RUN_H_

// A Jepsen-style run against real caracal-server processes: a ProxiedCluster,
// concurrent clients doing put / linearizable get / compare-and-set on a few
// keys and recording every operation in a HistoryRecorder, and a nemesis
// injecting a seeded schedule of faults (partitions, leader isolation,
// kill -9 and restart, SIGSTOP/SIGCONT of one server or -- for longer than a
// client waits -- of a majority, slow links). At the end every fault is
// healed, a final linearizable read of each key is recorded, and the history
// is checked: linearizable (KeyValueModel), and no acknowledged write lost.
//
//   FaultRun run(options);
//   FaultRunReport report = run.Run();   // Start, nemesis, Heal, Stop, FinalReads, Check
//   EXPECT_TRUE(report.passed()) << report.Summary() << report.check.explanation;
//
// How client outcomes are recorded (history.h: ok / fail / info):
//   * get (linearizable query): ok with the value; any error or timeout is
//     recorded as fail -- a read changes nothing, so dropping it is exact.
//   * put, cas (commands): ok with the result. Every error is info --
//     unknown -- because none proves the command never took effect:
//     Unauthenticated (the session expired: "it may or may not have been
//     applied"), Cancelled (closed while pending, perhaps already sent), and
//     even InvalidArgument, which a server uses for a malformed request but
//     the client also uses for a result that does not decode, after the
//     command was applied. (A fail would be right for a command rejected
//     before it was sent, e.g. submitted to a closed client; the workers never
//     do that.) A command whose result does not arrive within op_timeout is
//     info too. After an info command the worker drops its client (closing
//     the session) and opens a new one, as a new process of the history: an
//     abandoned command may still be applied later, which info allows.
//
// The schedule is a function of the seed and of what the nemesis observes
// (which server leads), so a seed replays the same kinds of faults in the
// same order, not the same interleaving: real processes are not
// deterministic.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "caracal/client.h"
#include "tests/faults_harness/proxied_cluster.h"
#include "tests/verification/history.h"
#include "tests/verification/linearizability.h"

namespace caracal::testing {

struct FaultRunOptions {
  std::filesystem::path binary;     // caracal-server
  std::filesystem::path directory;  // for the servers' data and outputs
  int servers = 3;
  int clients = 5;
  int keys = 3;
  // Workers move to a fresh set of keys this often, so that long runs keep
  // each key's sub-history (the checker's unit of work) small.
  std::chrono::seconds key_epoch{30};
  std::chrono::milliseconds nemesis_duration{25000};
  std::chrono::milliseconds fault_interval{1000};  // jittered by +-30%
  std::chrono::milliseconds op_timeout{5000};
  // A worker pauses up to this long between operations.
  std::chrono::milliseconds think_time{4};
  uint64_t seed = 1;
  int election_timeout_ms = 300;
  int heartbeat_ms = 50;
  // The deliberately broken variant: one more client reads SEQUENTIAL from a
  // follower, through a fresh session that never wrote (so it asks for no
  // index of its own), and those reads are recorded as if linearizable.
  bool stale_follower_reads = false;
  verification::CheckOptions check;
  // Progress lines (faults, phases); null: quiet.
  std::function<void(const std::string&)> log;
};

struct FaultRunReport {
  uint64_t seed = 0;
  int servers = 0;
  verification::History history;
  int64_t ok = 0, info = 0, fail = 0;
  std::map<std::string, int> ops_by_kind;  // "get ok", "put info", ...
  std::map<std::string, int> faults;       // by kind: "partition", "kill", ...
  std::vector<std::string> fault_log;      // "+12.31s kill -9 server 2 (the leader)"
  bool converged = false;                  // a leader known to all after healing
  std::map<std::string, std::optional<std::string>> final_values;
  std::vector<std::string> keys_without_final_read;
  absl::StatusOr<verification::CheckResult> check = verification::CheckResult{};
  std::vector<std::string> lost_writes;  // acknowledged writes the end state contradicts
  TcpProxy::Counters network;
  std::chrono::milliseconds nemesis_wall{0}, wall{0};

  int total_faults() const;
  bool linearizable() const { return check.ok() && check->verdict == verification::Verdict::kLinearizable; }
  bool violation() const { return check.ok() && check->verdict == verification::Verdict::kViolation; }
  bool unknown() const { return check.ok() && check->verdict == verification::Verdict::kUnknown; }
  // Linearizable, nothing lost, converged, every key finally read.
  bool passed() const;
  // Several lines: seed, counts, faults, verdict, timings.
  std::string Summary() const;
};

// Every acknowledged write (ok put, ok cas that answered true) of a key must
// be its final value or be followed by another write of that key that did not
// complete before it was invoked (ok, or info: it may have happened). The
// history must hold a final read of each key (`final_values`). Returns a line
// per write the end state contradicts.
std::vector<std::string> FindLostWrites(const verification::History& history,
                                        const std::map<std::string, std::optional<std::string>>& final_values);

// Waits up to a deadline for one callback result; a result arriving after
// the deadline is ignored. Thread-safe.
template <typename R>
class Awaited {
 public:
  std::function<void(absl::StatusOr<R>)> Callback() {
    return [s = state_](absl::StatusOr<R> r) {
      std::lock_guard lock(s->mu);
      if (s->abandoned || s->result) return;
      s->at = verification::HistoryRecorder::SteadyNow();
      s->result.emplace(std::move(r));
      s->cv.notify_all();
    };
  }
  // The result and when it arrived, or nullopt after `timeout`.
  std::optional<std::pair<absl::StatusOr<R>, verification::Timestamp>> Wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(state_->mu);
    if (!state_->cv.wait_for(lock, timeout, [&] { return state_->result.has_value(); })) {
      state_->abandoned = true;
      return std::nullopt;
    }
    return std::make_pair(*std::move(state_->result), state_->at);
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::StatusOr<R>> result;
    verification::Timestamp at = 0;
    bool abandoned = false;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Operations on the key-value example, each recorded in `recorder` as
// `process` (see the recording rules at the top). They return how the
// operation was recorded.
verification::Completion RecordedGet(Client& client, verification::HistoryRecorder& recorder, int64_t process,
                                     const std::string& key, Consistency consistency, std::chrono::milliseconds timeout,
                                     std::optional<std::string>* value = nullptr);
verification::Completion RecordedPut(Client& client, verification::HistoryRecorder& recorder, int64_t process,
                                     const std::string& key, const std::string& value,
                                     std::chrono::milliseconds timeout);
verification::Completion RecordedCas(Client& client, verification::HistoryRecorder& recorder, int64_t process,
                                     const std::string& key, const std::optional<std::string>& expected,
                                     const std::string& value, std::chrono::milliseconds timeout,
                                     bool* swapped = nullptr);

class FaultRun {
 public:
  explicit FaultRun(FaultRunOptions options);
  ~FaultRun();  // stops whatever still runs

  // The whole run: Start, RunNemesis, HealAndConverge, StopWorkload,
  // FinalReads, Check.
  FaultRunReport Run();

  // ---- the steps, for tests that add their own ----
  // Starts the servers and waits for a leader; false if none in time.
  bool StartCluster();
  void StartWorkload();
  void RunNemesis();  // returns after options.nemesis_duration
  // Heals the network, continues and restarts every server, waits for a
  // leader every server knows. Returns whether one came.
  bool HealAndConverge();
  void StopWorkload();
  // A linearizable read of every key in the history, recorded; retried
  // (each attempt recorded) until one answers or the attempts run out.
  void FinalReads();
  // Checks what was recorded and fills the report.
  FaultRunReport Check();

  ProxiedCluster& cluster() { return *cluster_; }
  verification::HistoryRecorder& recorder() { return recorder_; }
  const FaultRunOptions& options() const { return options_; }
  // A session through the client proxies with the run's client settings.
  absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& name,
                                                  ConnectionStrategy strategy = ConnectionStrategy::kLeader,
                                                  std::vector<std::string> servers = {});
  int64_t NewProcess() { return next_process_++; }
  std::string UniqueValue();
  void Note(const std::string& line);  // a fault_log line, timestamped

 private:
  void Worker(int index);
  void StaleReader();
  void Nemesis();
  void NemesisStep(std::mt19937_64& rng);
  std::vector<std::string> Keys(std::chrono::steady_clock::time_point now) const;
  void CountFault(const std::string& kind);

  const FaultRunOptions options_;
  std::unique_ptr<ProxiedCluster> cluster_;
  verification::HistoryRecorder recorder_;
  std::shared_ptr<ClientRuntime> runtime_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point workload_start_;

  std::atomic<bool> stop_workers_ = false;
  std::atomic<int64_t> next_process_ = 0;
  std::atomic<uint64_t> next_value_ = 0;
  std::vector<std::thread> workers_;
  std::mutex workers_mu_;
  std::condition_variable workers_cv_;
  int workers_running_ = 0;  // guarded by workers_mu_

  // The nemesis' view of what it broke.
  std::set<NodeId> killed_, paused_;
  bool partitioned_ = false, slowed_ = false;
  std::chrono::steady_clock::time_point nemesis_end_;

  std::mutex report_mu_;
  std::map<std::string, int> faults_;   // guarded by report_mu_
  std::vector<std::string> fault_log_;  // guarded by report_mu_
  bool converged_ = false;
  std::map<std::string, std::optional<std::string>> final_values_;
  std::vector<std::string> keys_without_final_read_;
  std::chrono::milliseconds nemesis_wall_{0};
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_FAULTS_HARNESS_FAULT_RUN_H_

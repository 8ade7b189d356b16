#include "tests/faults_harness/fault_run.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "examples/kv/kv.h"

namespace caracal::testing {

namespace kv = caracal::examples::kv;
using verification::Completion;
using verification::History;
using verification::HistoryRecorder;
using verification::Operation;
using verification::Value;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------- recording

namespace {

// A command with no answer in time, or with an error, is info: no error its
// callback can carry proves it did not take effect -- not even
// InvalidArgument, the code of a request a server rejects as malformed: the
// client reports a result that does not decode with the same code, after the
// command was applied. (Unauthenticated says so in its message: "it may or
// may not have been applied"; Cancelled may cut a command already sent.)
template <typename R>
Completion RecordCommand(HistoryRecorder& recorder, int64_t id,
                         std::optional<std::pair<absl::StatusOr<R>, verification::Timestamp>> r,
                         const std::function<Value(const R&)>& output) {
  if (!r || !r->first.ok()) {
    recorder.Info(id);
    return Completion::kInfo;
  }
  recorder.OkAt(r->second, id, output(*r->first));
  return Completion::kOk;
}

}  // namespace

Completion RecordedGet(Client& client, HistoryRecorder& recorder, int64_t process, const std::string& key,
                       Consistency consistency, milliseconds timeout, std::optional<std::string>* value) {
  int64_t id = recorder.Invoke(process, "get", {Value(key)});
  Awaited<std::optional<std::string>> result;
  client.Submit(kv::Get{.key = key}, consistency, result.Callback());
  auto r = result.Wait(timeout);
  // A read changes nothing: one that did not answer is dropped (fail), which
  // is exact, rather than kept as an unknown.
  if (!r || !r->first.ok()) {
    recorder.Fail(id);
    return Completion::kFail;
  }
  recorder.OkAt(r->second, id, Value(*r->first));
  if (value != nullptr) *value = *r->first;
  return Completion::kOk;
}

Completion RecordedPut(Client& client, HistoryRecorder& recorder, int64_t process, const std::string& key,
                       const std::string& value, milliseconds timeout) {
  int64_t id = recorder.Invoke(process, "put", {Value(key), Value(value)});
  Awaited<std::optional<std::string>> result;
  client.Submit(kv::Put{.key = key, .value = value}, result.Callback());
  return RecordCommand<std::optional<std::string>>(recorder, id, result.Wait(timeout),
                                                   [](const std::optional<std::string>& v) { return Value(v); });
}

Completion RecordedCas(Client& client, HistoryRecorder& recorder, int64_t process, const std::string& key,
                       const std::optional<std::string>& expected, const std::string& value, milliseconds timeout,
                       bool* swapped) {
  int64_t id = recorder.Invoke(process, "cas", {Value(key), Value(expected), Value(value)});
  Awaited<bool> result;
  client.Submit(kv::CompareAndSet{.key = key, .expected = expected, .value = value}, result.Callback());
  auto r = result.Wait(timeout);
  if (swapped != nullptr) *swapped = r && r->first.ok() && *r->first;
  return RecordCommand<bool>(recorder, id, std::move(r), [](const bool& b) { return Value(b); });
}

// ---------------------------------------------------------------- lost writes

std::vector<std::string> FindLostWrites(const History& history,
                                        const std::map<std::string, std::optional<std::string>>& final_values) {
  // The value an operation writes if it takes effect (nullopt: it writes
  // nothing, or certainly did not happen).
  auto written = [](const Operation& op) -> std::optional<std::string> {
    if (op.completion == Completion::kFail) return std::nullopt;
    if (op.function == "put") return op.args[1].as_string();
    if (op.function == "cas" && (op.completion == Completion::kInfo || !op.output || op.output->as_bool())) {
      return op.args[2].as_string();
    }
    return std::nullopt;
  };
  std::map<std::string, std::vector<const Operation*>> writes;  // by key
  for (const Operation& op : history.operations()) {
    if (written(op)) writes[op.args[0].as_string()].push_back(&op);
  }
  std::vector<std::string> lost;
  for (const auto& [key, ops] : writes) {
    auto final_value = final_values.find(key);
    if (final_value == final_values.end()) continue;  // reported as a key without a final read
    for (const Operation* w : ops) {
      if (w->completion != Completion::kOk) continue;  // only acknowledged writes must survive
      std::string value = *written(*w);
      if (final_value->second == value) continue;
      bool overwritten = std::any_of(ops.begin(), ops.end(), [&](const Operation* other) {
        // Another value, written by an operation that may come after w: it
        // did not complete before w was invoked.
        return other != w && *written(*other) != value && other->complete >= w->invoke;
      });
      if (!overwritten) {
        lost.push_back(absl::StrCat(w->ToString(), "  -- acknowledged, but the final value of ", key, " is ",
                                    Value(final_value->second).ToString(),
                                    " and no write that could follow it wrote another value"));
      }
    }
  }
  return lost;
}

// ---------------------------------------------------------------- report

int FaultRunReport::total_faults() const {
  int total = 0;
  for (const auto& [kind, n] : faults) {
    if (kind != "heal" && kind != "restart" && kind != "resume") total += n;
  }
  return total;
}

bool FaultRunReport::passed() const {
  return linearizable() && lost_writes.empty() && converged && keys_without_final_read.empty();
}

std::string FaultRunReport::Summary() const {
  std::string s;
  absl::StrAppendFormat(&s, "seed %d | %d servers, %.1f s of nemesis, %.1f s wall\n", seed, servers,
                        nemesis_wall.count() / 1000.0, wall.count() / 1000.0);
  std::vector<std::string> kinds;
  for (const auto& [kind, n] : ops_by_kind) kinds.push_back(absl::StrCat(kind, " ", n));
  absl::StrAppendFormat(&s, "operations: %d recorded, %d checked (ok %d, info %d; fail %d dropped): %s\n",
                        ok + info + fail, ok + info, ok, info, fail, absl::StrJoin(kinds, ", "));
  verification::Timestamp slowest = 0;
  for (const Operation& op : history.operations()) {
    if (op.completion == Completion::kOk) slowest = std::max(slowest, op.complete - op.invoke);
  }
  absl::StrAppendFormat(&s, "slowest ok operation: %d ms\n", slowest / 1'000'000);
  std::vector<std::string> f;
  for (const auto& [kind, n] : faults) f.push_back(absl::StrCat(kind, " ", n));
  absl::StrAppendFormat(&s, "faults: %d injected (%s)\n", total_faults(), absl::StrJoin(f, ", "));
  absl::StrAppendFormat(&s,
                        "network: %d connections accepted, %d refused while cut, %d reset by cuts, %d target "
                        "down, %.1f MB forwarded, %.1f MB dropped\n",
                        network.accepted, network.refused, network.reset_by_block, network.target_unreachable,
                        network.bytes_forwarded / 1e6, network.bytes_dropped / 1e6);
  if (!check.ok()) {
    absl::StrAppend(&s, "check: ERROR ", check.status().ToString(), "\n");
  } else {
    const auto& st = check->stats;
    absl::StrAppendFormat(
        &s, "check: %s%s, %d operations in %d partitions (largest %d), %d states, %d backtracks\n",
        std::string(VerdictName(check->verdict)),
        check->verdict == verification::Verdict::kUnknown ? " (search budget exhausted: NOT a pass)" : "",
        st.operations, st.partitions, st.largest_partition, st.states_explored, st.backtracks);
  }
  absl::StrAppendFormat(&s, "lost acknowledged writes: %d; converged after healing: %s", lost_writes.size(),
                        converged ? "yes" : "NO");
  if (!keys_without_final_read.empty()) {
    absl::StrAppend(&s, "; keys without a final read: ", absl::StrJoin(keys_without_final_read, ", "));
  }
  absl::StrAppend(&s, "\n");
  return s;
}

// ---------------------------------------------------------------- FaultRun

FaultRun::FaultRun(FaultRunOptions options) : options_(std::move(options)), runtime_(ClientRuntime::Create()) {
  ProxiedCluster::Options o;
  o.servers = options_.servers;
  o.binary = options_.binary;
  o.directory = options_.directory;
  o.extra_flags = {"--election-timeout-ms", absl::StrCat(options_.election_timeout_ms),
                   "--heartbeat-ms",        absl::StrCat(options_.heartbeat_ms),
                   "--state-machine",       "kv",
                   "--log-level",           "info"};
  cluster_ = std::make_unique<ProxiedCluster>(o);
  start_ = Clock::now();
  workload_start_ = start_;
}

FaultRun::~FaultRun() {
  if (!workers_.empty()) StopWorkload();
}

void FaultRun::Note(const std::string& line) {
  double at = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string stamped = absl::StrFormat("+%6.2fs %s", at, line);
  {
    std::lock_guard lock(report_mu_);
    fault_log_.push_back(stamped);
  }
  if (options_.log) options_.log(stamped);
}

void FaultRun::CountFault(const std::string& kind) {
  std::lock_guard lock(report_mu_);
  ++faults_[kind];
}

std::string FaultRun::UniqueValue() { return absl::StrCat("v", next_value_++); }

std::vector<std::string> FaultRun::Keys(Clock::time_point now) const {
  int64_t epoch = (now - workload_start_) / std::chrono::duration_cast<Clock::duration>(options_.key_epoch);
  std::vector<std::string> keys;
  for (int i = 0; i < options_.keys; ++i) keys.push_back(absl::StrCat("e", epoch, "-k", i));
  return keys;
}

absl::StatusOr<std::unique_ptr<Client>> FaultRun::Connect(const std::string& name, ConnectionStrategy strategy,
                                                          std::vector<std::string> servers) {
  return Client::Builder()
      .WithServers(servers.empty() ? cluster_->ClientAddresses() : std::move(servers))
      .WithClientId(name)
      .WithConnectionStrategy(strategy)
      .WithSessionTimeout(std::chrono::seconds(3))
      .WithAttemptTimeout(milliseconds(1000))
      .WithConnectTimeout(options_.op_timeout)
      .WithQueryTimeout(options_.op_timeout - milliseconds(1000))
      .WithRuntime(runtime_)
      .Connect();
}

bool FaultRun::StartCluster() {
  cluster_->StartAll();
  bool ok = cluster_->WaitFor(std::chrono::seconds(20), [&] {
    auto leader = cluster_->Leader();
    return leader && leader->commit > 0;
  });
  Note(ok ? absl::StrCat("cluster of ", options_.servers, " up, leader ", cluster_->Leader()->id)
          : "no leader within 20 s of starting");
  return ok;
}

void FaultRun::StartWorkload() {
  workload_start_ = Clock::now();
  int threads = options_.clients + (options_.stale_follower_reads ? 1 : 0);
  {
    std::lock_guard lock(workers_mu_);
    workers_running_ = threads;
  }
  auto run = [this](std::function<void()> body) {
    body();
    std::lock_guard lock(workers_mu_);
    --workers_running_;
    workers_cv_.notify_all();
  };
  for (int i = 0; i < options_.clients; ++i) workers_.emplace_back(run, [this, i] { Worker(i); });
  if (options_.stale_follower_reads) workers_.emplace_back(run, [this] { StaleReader(); });
  Note(absl::StrCat(options_.clients, " clients started",
                    options_.stale_follower_reads ? " (+1 reading SEQUENTIAL from followers, recorded as "
                                                    "linearizable: the broken variant)"
                                                  : ""));
}

void FaultRun::Worker(int index) {
  std::mt19937_64 rng(options_.seed * 7919 + static_cast<uint64_t>(index));
  std::unique_ptr<Client> client;
  int64_t process = 0;
  std::map<std::string, std::optional<std::string>> last_seen;  // this worker's latest view of each key
  int generation = 0;
  while (!stop_workers_) {
    if (!client) {
      auto c = Connect(absl::StrCat("w", index, ".", generation++));
      if (!c.ok()) continue;  // the cluster is unavailable: try again (Connect waited)
      client = *std::move(c);
      process = NewProcess();
    }
    std::vector<std::string> keys = Keys(Clock::now());
    const std::string& key = keys[rng() % keys.size()];
    int roll = static_cast<int>(rng() % 100);
    Completion outcome;
    bool command = roll >= 40;
    if (roll < 40) {
      std::optional<std::string> value;
      outcome = RecordedGet(*client, recorder_, process, key, Consistency::kLinearizable, options_.op_timeout, &value);
      if (outcome == Completion::kOk) last_seen[key] = value;
    } else if (roll < 75) {
      std::string value = UniqueValue();
      outcome = RecordedPut(*client, recorder_, process, key, value, options_.op_timeout);
      if (outcome == Completion::kOk) last_seen[key] = value;
    } else {
      std::string value = UniqueValue();
      bool swapped = false;
      outcome = RecordedCas(*client, recorder_, process, key, last_seen[key], value, options_.op_timeout, &swapped);
      if (swapped) last_seen[key] = value;
    }
    if (command && outcome == Completion::kInfo) {
      // The session may still apply what it was given: retire it, and go on
      // as a new process with a new session.
      (void)client->Close();
      client.reset();
      continue;
    }
    if (options_.think_time.count() > 0) {
      std::this_thread::sleep_for(milliseconds(rng() % (options_.think_time.count() + 1)));  // pacing only
    }
  }
  if (client) (void)client->Close();
}

void FaultRun::StaleReader() {
  std::mt19937_64 rng(options_.seed * 104729 + 1);
  std::unique_ptr<Client> client;
  int64_t process = 0;
  int reads = 0, generation = 0;
  while (!stop_workers_) {
    if (!client || reads >= 10) {
      // A fresh session that never wrote: its queries carry no index of its
      // own, so a follower answers from whatever it has applied.
      if (client) (void)client->Close();
      client.reset();
      auto c = Connect(absl::StrCat("stale.", generation++), ConnectionStrategy::kFollowers);
      if (!c.ok()) continue;
      client = *std::move(c);
      process = NewProcess();
      reads = 0;
    }
    std::vector<std::string> keys = Keys(Clock::now());
    RecordedGet(*client, recorder_, process, keys[rng() % keys.size()], Consistency::kSequential, options_.op_timeout);
    ++reads;
    if (options_.think_time.count() > 0) {
      std::this_thread::sleep_for(milliseconds(rng() % (options_.think_time.count() + 1)));  // pacing only
    }
  }
  if (client) (void)client->Close();
}

void FaultRun::StopWorkload() {
  stop_workers_ = true;
  // Each worker finishes its operation (op_timeout at most), may connect
  // (op_timeout) and closes its session (the attempt timeout).
  auto deadline = 3 * options_.op_timeout + std::chrono::seconds(10);
  std::unique_lock lock(workers_mu_);
  if (!workers_cv_.wait_for(lock, deadline, [&] { return workers_running_ == 0; })) {
    lock.unlock();
    Note(absl::StrCat("BUG: ", workers_running_, " workers still running ", deadline.count(), " ms after stop"));
  } else {
    lock.unlock();
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
  Note("clients stopped");
}

// ---------------------------------------------------------------- nemesis

void FaultRun::RunNemesis() {
  std::mt19937_64 rng(options_.seed);
  auto start = Clock::now();
  auto end = start + options_.nemesis_duration;
  nemesis_end_ = end;
  Note(absl::StrCat("nemesis starts (seed ", options_.seed, ")"));
  for (;;) {
    int64_t interval = options_.fault_interval.count();
    auto pause = milliseconds(interval * 7 / 10 + static_cast<int64_t>(rng() % (interval * 6 / 10 + 1)));
    if (Clock::now() + pause >= end) break;
    std::this_thread::sleep_for(pause);  // the nemesis' pace, not a synchronisation
    NemesisStep(rng);
  }
  std::this_thread::sleep_until(end);
  nemesis_wall_ = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  Note("nemesis ends");
}

void FaultRun::NemesisStep(std::mt19937_64& rng) {
  std::vector<NodeId> ids = cluster_->ids();
  const int n = static_cast<int>(ids.size());
  const int down = static_cast<int>(killed_.size() + paused_.size());
  std::vector<std::pair<std::string, int>> choices;  // kind, weight
  if (!killed_.empty()) choices.push_back({"restart", 4});
  if (!paused_.empty()) choices.push_back({"resume", 4});
  if (partitioned_ || slowed_) choices.push_back({"heal", 4});
  if (down < (n - 1) / 2) {
    choices.push_back({"kill", 2});
    choices.push_back({"pause", 2});
  }
  if (!partitioned_) {
    choices.push_back({"partition", 2});
    choices.push_back({"isolate-leader", 2});
  }
  if (!slowed_) choices.push_back({"slow", 1});
  // Longer than a client waits, so that operations end unknown (info), and
  // sessions may expire when log time jumps over the freeze.
  const milliseconds stall = options_.op_timeout + milliseconds(500 + static_cast<int64_t>(rng() % 1500));
  if (down == 0 && Clock::now() + stall + options_.fault_interval < nemesis_end_) {
    choices.push_back({"stall-majority", 1});
  }
  int total = 0;
  for (const auto& c : choices) total += c.second;
  int roll = static_cast<int>(rng() % total);
  std::string kind;
  for (const auto& c : choices) {
    if (roll < c.second) {
      kind = c.first;
      break;
    }
    roll -= c.second;
  }
  auto pick = [&](const std::vector<NodeId>& from) { return from[rng() % from.size()]; };
  auto up = [&] {
    std::vector<NodeId> v;
    for (NodeId id : ids) {
      if (!killed_.contains(id) && !paused_.contains(id)) v.push_back(id);
    }
    return v;
  };
  auto mode = [&] { return rng() % 2 == 0 ? TcpProxy::BlockMode::kReset : TcpProxy::BlockMode::kBlackhole; };
  auto mode_name = [](TcpProxy::BlockMode m) { return m == TcpProxy::BlockMode::kReset ? "reset" : "blackhole"; };
  // The leader (or a random server when none is known), and whether it was
  // the leader, for faults that prefer to hit it.
  auto leader_or_any = [&](const std::vector<NodeId>& candidates, bool prefer_leader) -> std::pair<NodeId, bool> {
    bool coin = rng() % 2 == 0;
    NodeId any = pick(candidates);
    auto leader = cluster_->Leader();
    if ((prefer_leader || coin) && leader &&
        std::find(candidates.begin(), candidates.end(), leader->id) != candidates.end()) {
      return {leader->id, true};
    }
    return {any, false};
  };

  CountFault(kind);
  if (kind == "restart") {
    NodeId id = pick(std::vector<NodeId>(killed_.begin(), killed_.end()));
    cluster_->Start(id);
    killed_.erase(id);
    Note(absl::StrCat("restart server ", id));
  } else if (kind == "resume") {
    NodeId id = pick(std::vector<NodeId>(paused_.begin(), paused_.end()));
    cluster_->Resume(id);
    paused_.erase(id);
    Note(absl::StrCat("SIGCONT server ", id));
  } else if (kind == "heal") {
    cluster_->Heal();
    partitioned_ = slowed_ = false;
    Note("heal the network");
  } else if (kind == "kill") {
    auto [id, leader] = leader_or_any(up(), false);
    cluster_->Kill(id);
    killed_.insert(id);
    Note(absl::StrCat("kill -9 server ", id, leader ? " (the leader)" : ""));
  } else if (kind == "pause") {
    auto [id, leader] = leader_or_any(up(), false);
    cluster_->Pause(id);
    paused_.insert(id);
    Note(absl::StrCat("SIGSTOP server ", id, leader ? " (the leader)" : ""));
  } else if (kind == "partition") {
    std::vector<NodeId> shuffled = ids;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    int size = 1 + static_cast<int>(rng() % (n / 2));
    std::set<NodeId> side(shuffled.begin(), shuffled.begin() + size);
    TcpProxy::BlockMode m = mode();
    cluster_->Partition(side, m);
    bool clients = rng() % 2 == 0;
    if (clients) {
      for (NodeId id : side) cluster_->ClientLink(id).Block(m);
    }
    partitioned_ = true;
    std::set<NodeId> rest;
    for (NodeId id : ids) {
      if (!side.contains(id)) rest.insert(id);
    }
    Note(absl::StrCat("partition {", absl::StrJoin(side, ","), "} | {", absl::StrJoin(rest, ","), "} (", mode_name(m),
                      clients ? ", clients cut from the first side)" : ")"));
  } else if (kind == "isolate-leader") {
    auto [id, leader] = leader_or_any(ids, true);
    TcpProxy::BlockMode m = mode();
    bool clients = rng() % 2 == 0;
    cluster_->Isolate(id, clients, m);
    partitioned_ = true;
    Note(absl::StrCat("isolate server ", id, leader ? " (the leader)" : " (no leader known)", " (", mode_name(m),
                      clients ? ", clients too)" : ")"));
  } else if (kind == "stall-majority") {
    std::vector<NodeId> shuffled = ids;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    std::vector<NodeId> frozen(shuffled.begin(), shuffled.begin() + (n / 2 + 1));
    for (NodeId id : frozen) cluster_->Pause(id);
    Note(absl::StrCat("SIGSTOP servers ", absl::StrJoin(frozen, ","), " (a majority) for ", stall.count(), " ms"));
    std::this_thread::sleep_for(stall);  // the fault's length, not a synchronisation
    for (NodeId id : frozen) cluster_->Resume(id);
    Note(absl::StrCat("SIGCONT servers ", absl::StrJoin(frozen, ",")));
  } else if (kind == "slow") {
    NodeId id = pick(ids);
    auto delay = milliseconds(10 + static_cast<int64_t>(rng() % 190));
    cluster_->Slow(id, delay);
    slowed_ = true;
    Note(absl::StrCat("slow every link of server ", id, " by ", delay.count(), " ms"));
  }
}

bool FaultRun::HealAndConverge() {
  cluster_->Heal();
  for (NodeId id : paused_) cluster_->Resume(id);
  for (NodeId id : killed_) cluster_->Start(id);
  paused_.clear();
  killed_.clear();
  partitioned_ = slowed_ = false;
  Note("heal everything: network healed, every server continued or restarted");
  auto started = Clock::now();
  converged_ = cluster_->WaitFor(std::chrono::seconds(30), [&] {
    auto leader = cluster_->Leader();
    if (!leader) return false;
    for (NodeId id : cluster_->ids()) {
      auto s = cluster_->Status(id);
      if (!s || s->leader != leader->id || s->term != leader->term) return false;
    }
    return true;
  });
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
  if (converged_) {
    Note(absl::StrCat("converged: leader ", cluster_->Leader()->id, " known to all after ", took.count(), " ms"));
  } else {
    Note("NOT converged: no leader known to every server within 30 s. Servers and links now:");
    for (const std::string& line : cluster_->Describe()) Note("  " + line);
    cluster_->DumpStacks();
    if (const char* hold = std::getenv("CARACAL_FAULT_HOLD_ON_HANG")) {
      // For a live post-mortem (attach, inspect sockets) before teardown.
      Note(absl::StrCat("holding the hung cluster for ", hold, " s (CARACAL_FAULT_HOLD_ON_HANG)"));
      std::this_thread::sleep_for(std::chrono::seconds(std::atoi(hold)));
    }
  }
  return converged_;
}

void FaultRun::FinalReads() {
  std::set<std::string> keys;
  const History so_far = recorder_.Snapshot();
  for (const Operation& op : so_far.operations()) keys.insert(op.args[0].as_string());
  std::unique_ptr<Client> client;
  for (int attempt = 0; attempt < 3 && !client; ++attempt) {
    auto c = Connect("final");
    if (c.ok()) client = *std::move(c);
  }
  int64_t process = NewProcess();
  for (const std::string& key : keys) {
    bool read = false;
    for (int attempt = 0; client && attempt < 10 && !read; ++attempt) {
      std::optional<std::string> value;
      if (RecordedGet(*client, recorder_, process, key, Consistency::kLinearizable, options_.op_timeout, &value) ==
          Completion::kOk) {
        final_values_[key] = value;
        read = true;
      }
    }
    if (!read) keys_without_final_read_.push_back(key);
  }
  if (client) (void)client->Close();
  Note(absl::StrCat("final reads of ", keys.size(), " keys (", keys_without_final_read_.size(), " failed)"));
}

FaultRunReport FaultRun::Check() {
  FaultRunReport report;
  report.seed = options_.seed;
  report.servers = options_.servers;
  report.history = recorder_.Snapshot();
  for (const Operation& op : report.history.operations()) {
    switch (op.completion) {
      case Completion::kOk:
        ++report.ok;
        break;
      case Completion::kInfo:
        ++report.info;
        break;
      case Completion::kFail:
        ++report.fail;
        break;
    }
    ++report.ops_by_kind[absl::StrCat(op.function, " ", std::string(verification::CompletionName(op.completion)))];
  }
  auto model = verification::KeyValueModel();
  report.check = verification::CheckLinearizability(report.history, *model, options_.check);
  report.final_values = final_values_;
  report.keys_without_final_read = keys_without_final_read_;
  report.lost_writes = FindLostWrites(report.history, final_values_);
  report.converged = converged_;
  report.network = cluster_->NetworkCounters();
  report.nemesis_wall = nemesis_wall_;
  report.wall = std::chrono::duration_cast<milliseconds>(Clock::now() - start_);
  {
    std::lock_guard lock(report_mu_);
    report.faults = faults_;
    report.fault_log = fault_log_;
  }
  return report;
}

FaultRunReport FaultRun::Run() {
  if (!StartCluster()) {
    FaultRunReport report = Check();
    report.check = absl::UnavailableError("the cluster never elected a leader:\n" + cluster_->AllOutputs());
    return report;
  }
  StartWorkload();
  RunNemesis();
  HealAndConverge();
  StopWorkload();
  FinalReads();
  return Check();
}

}  // namespace caracal::testing

#include "tests/sim/sim.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "serialization/codec.h"
#include "serialization/framing.h"
#include "serialization/session_codec.h"

namespace caracal::sim {
namespace {

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 29);
}

uint64_t ItemHash(uint64_t prev, const SimDisk::Item& item) {
  uint64_t h = Mix(prev, item.entry.index);
  h = Mix(h, item.entry.term);
  if (item.hole) return Mix(h, 0xdeadull);
  h = Mix(h, static_cast<uint64_t>(item.entry.type));
  h = Mix(h, static_cast<uint64_t>(item.entry.timestamp));
  return Mix(h, serialization::Checksum(item.entry.payload.view()));
}

}  // namespace

Faults Faults::All() {
  Faults f;
  f.drop = 0.05;
  f.duplicate = 0.03;
  f.min_delay = 100;
  f.max_delay = 30'000;
  f.fsync_min = 100;
  f.fsync_max = 10'000;
  f.partitions = true;
  f.crashes = true;
  f.torn_writes = true;
  f.clock_drift = 0.02;
  f.codec = true;
  return f;
}

// ------------------------------------------------------------------ disk

void SimDisk::Apply(std::vector<Item>& log, const raft::LogWrite& write, size_t max_items) {
  log.resize(std::min<size_t>(log.size(), write.first - 1));
  size_t e = 0, h = 0, n = 0;
  Index next = write.first;
  while (n < max_items && (e < write.entries.size() || h < write.holes.size())) {
    Item item;
    if (e < write.entries.size() && write.entries[e].index == next) {
      item.entry = write.entries[e++];
    } else {
      const HoleRun& run = write.holes[h];
      item.entry = Entry{next, run.term, 0, EntryType::kInitialize, Bytes()};
      item.hole = true;
      if (next == run.last) ++h;
    }
    item.prefix_hash = ItemHash(log.empty() ? 0 : log.back().prefix_hash, item);
    log.push_back(std::move(item));
    ++next;
    ++n;
  }
}

void SimDisk::Write(const raft::LogWrite& write) {
  Apply(written_, write, SIZE_MAX);
  pending_.push_back(write);
}

uint64_t SimDisk::Sync(size_t n) {
  uint64_t last = 0;
  for (size_t i = 0; i < n && !pending_.empty(); ++i) {
    Apply(durable_, pending_.front(), SIZE_MAX);
    last = pending_.front().id;
    pending_.pop_front();
  }
  return last;
}

uint64_t SimDisk::DurablePrefixHash(Index index) const {
  if (index == 0 || index > durable_.size()) return 0;
  return durable_[index - 1].prefix_hash;
}

void SimDisk::Crash(std::mt19937_64& rng, bool torn) {
  size_t keep = pending_.empty() ? 0 : rng() % (pending_.size() + 1);
  for (size_t i = 0; i < keep; ++i) {
    Apply(durable_, pending_.front(), SIZE_MAX);
    pending_.pop_front();
  }
  if (torn && !pending_.empty() && rng() % 2 == 0) {
    const auto& w = pending_.front();
    size_t items = w.last() - w.first + 1;
    Apply(durable_, w, rng() % (items + 1));
  }
  pending_.clear();
  written_ = durable_;
}

const SimDisk::Item* SimDisk::At(Index index) const {
  if (index == 0 || index > written_.size()) return nullptr;
  return &written_[index - 1];
}

uint64_t SimDisk::PrefixHash(Index index) const {
  const Item* item = At(index);
  return item ? item->prefix_hash : 0;
}

std::optional<Term> SimDisk::TermAt(Index index) const {
  if (index == 0) return Term{0};
  const Item* item = At(index);
  if (!item) return std::nullopt;
  return item->entry.term;
}

absl::Status SimDisk::Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                           std::vector<HoleRun>* holes) const {
  if (from == 0 || to > written_.size() || from > to) {
    return absl::OutOfRangeError(absl::StrCat("read [", from, ", ", to, "] outside [1, ", written_.size(), "]"));
  }
  size_t bytes = 0;
  for (Index i = from; i <= to; ++i) {
    const Item& item = written_[i - 1];
    if (i > from && bytes >= max_bytes) break;
    if (item.hole) {
      if (!holes->empty() && holes->back().last + 1 == i && holes->back().term == item.entry.term) {
        holes->back().last = i;
      } else {
        holes->push_back(HoleRun{i, i, item.entry.term});
      }
    } else {
      entries->push_back(item.entry);
      bytes += item.entry.payload.size();
    }
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ world

struct World::Server {
  NodeId id = 0;
  SimDisk disk;
  std::unique_ptr<raft::Raft> raft;  // null while crashed
  uint64_t incarnation = 0;
  double drift = 0;
  Micros offset = 0;
  Index applied = 0;
  Index commit_checked = 0;  // committed entries up to here were compared with committed_
  bool sync_in_flight = false;
  raft::Role last_role = raft::Role::kFollower;
  raft::Role last_runner_role = raft::Role::kFollower;
  Term last_term = 0;
  // With Options::state_machine (rebuilt from the log after a crash):
  std::unique_ptr<server::StateMachineRunner> runner;
  std::vector<std::string> responses;                  // index-1 -> response
  std::vector<std::pair<Index, uint64_t>> timer_firings;  // (index, timers fired applying it)
  // With Options::leader_duties, as ClientService keeps them:
  std::map<uint64_t, std::pair<Index, Micros>> expiring;  // session -> (its Unregister's index, when proposed)
  Index time_entry = 0;                                   // the last Time entry proposed
};

namespace {

// A response as compared between servers: the encoded result, or the error.
std::string ResponseText(const absl::StatusOr<Bytes>& r) {
  return r.ok() ? absl::StrCat("ok:", std::string(r->view())) : absl::StrCat("error:", r.status().ToString());
}

// What applying one log item produced.
struct AppliedItem {
  // Compared between servers and with the replay: the response for the
  // item's own index, with its event index.
  std::string response;
  uint64_t fired = 0;  // timers fired applying it
  std::vector<server::StateMachineRunner::Response> responses;
  std::vector<std::pair<uint64_t, Index>> published;
};

AppliedItem ApplyItem(server::StateMachineRunner& runner, const SimDisk::Item& item) {
  uint64_t fired_before = runner.executor().timers_fired();
  AppliedItem out;
  const Entry& entry = item.entry;
  if (item.hole) {
    runner.ApplyHole(entry.index);
    out.response = "hole";
    out.responses.push_back({entry.index, entry.term, absl::AbortedError("compacted"), 0});
  } else {
    out.responses = runner.ApplyEntry(entry);
    out.published = runner.TakePublished();
    absl::StatusOr<Bytes> own = absl::InternalError(absl::StrCat("no response for index ", entry.index));
    std::string others;
    for (const auto& r : out.responses) {
      if (r.index == entry.index) {
        own = r.result;
        if (r.event_index != 0) absl::StrAppend(&others, " events<=", r.event_index);
      } else {
        absl::StrAppend(&others, " [", r.index, "@", r.term, " events<=", r.event_index, "]=", ResponseText(r.result));
      }
    }
    out.response = ResponseText(own) + others;
  }
  out.fired = runner.executor().timers_fired() - fired_before;
  return out;
}

}  // namespace

World::World(Options options) : options_(std::move(options)), rng_(options_.seed) {
  for (int i = 1; i <= options_.nodes; ++i) {
    auto s = std::make_unique<Server>();
    s->id = static_cast<NodeId>(i);
    if (options_.faults.clock_drift > 0) {
      std::uniform_real_distribution<double> d(-options_.faults.clock_drift, options_.faults.clock_drift);
      s->drift = d(rng_);
    }
    s->offset = static_cast<Micros>(rng_() % 1'000'000);
    servers_.push_back(std::move(s));
  }
  for (auto& s : servers_) {
    s->raft = std::make_unique<raft::Raft>(MakeConfig(s->id), &s->disk, s->disk.hard_state, LocalTime(*s),
                                           LocalTime(*s));
    s->runner = MakeRunner(s->id);
    ScheduleTick(*s);
    if (options_.leader_duties && s->runner) ScheduleDuties(*s);
  }
  if (options_.faults.crashes) ScheduleCrash();
  if (options_.faults.partitions) SchedulePartition();
}

World::~World() = default;

raft::Config World::MakeConfig(NodeId id) const {
  raft::Config c;
  c.id = id;
  for (int i = 1; i <= options_.nodes; ++i) c.voters.push_back(static_cast<NodeId>(i));
  c.election_timeout_min = 150'000;
  c.election_timeout_max = 300'000;
  c.heartbeat_interval = 50'000;
  c.max_append_entries = 64;
  c.max_inflight = 4;
  c.seed = options_.seed;
  c.check_quorum = options_.check_quorum;
  if (options_.broken_node == 0 || static_cast<int>(id) == options_.broken_node) c.faults = options_.broken;
  return c;
}

Micros World::LocalTime(const Server& s) const {
  return s.offset + now_ + static_cast<Micros>(static_cast<double>(now_) * s.drift);
}

void World::Schedule(Micros at, std::function<void()> fn) { events_.push(Event{at, seq_++, std::move(fn)}); }

void World::Trace(uint64_t a, uint64_t b) { trace_hash_ = Mix(Mix(trace_hash_, a), b); }

void World::Fail(std::string what) {
  if (!violation_) violation_ = absl::StrCat("at t=", now_, "us: ", what);
}

void World::ScheduleTick(Server& s) {
  uint64_t inc = s.incarnation;
  Schedule(now_ + 5'000, [this, &s, inc] {
    if (!s.raft || s.incarnation != inc) return;
    s.raft->Tick(LocalTime(s), LocalTime(s));
    Process(s);
    ScheduleTick(s);
  });
}

void World::ScheduleSync(Server& s) {
  if (s.sync_in_flight || s.disk.pending_writes() == 0) return;
  s.sync_in_flight = true;
  size_t n = s.disk.pending_writes();
  std::uniform_int_distribution<Micros> d(options_.faults.fsync_min, options_.faults.fsync_max);
  uint64_t inc = s.incarnation;
  Schedule(now_ + d(rng_), [this, &s, inc, n] {
    if (!s.raft || s.incarnation != inc) return;
    s.sync_in_flight = false;
    uint64_t write_id = s.disk.Sync(n);
    Trace(s.id * 1000 + 1, write_id);
    s.raft->OnPersisted(write_id);
    Process(s);
    ScheduleSync(s);
  });
}

void World::SendMessage(raft::Message m) {
  ++stats_.messages_sent;
  const Faults& f = options_.faults;
  if (faults_on_ && blocked_.contains({m.from, m.to})) return;
  std::uniform_real_distribution<double> p(0, 1);
  if (faults_on_ && p(rng_) < f.drop) return;
  int copies = faults_on_ && p(rng_) < f.duplicate ? 2 : 1;
  if (f.codec) {
    std::string frame;
    serialization::AppendRaftFrame(m, &frame);
    auto decoded = serialization::DecodeFrame(std::string_view(frame).substr(serialization::kFrameHeaderBytes));
    if (!decoded.ok() || !std::holds_alternative<raft::Message>(*decoded) ||
        !(std::get<raft::Message>(*decoded) == m)) {
      Fail(absl::StrCat("codec round trip changed a ", raft::MessageKindName(m)));
      return;
    }
  }
  for (int c = 0; c < copies; ++c) {
    std::uniform_int_distribution<Micros> d(f.min_delay, faults_on_ ? f.max_delay : f.min_delay * 4);
    Schedule(now_ + d(rng_), [this, m] {
      Server& to = *servers_[m.to - 1];
      if (!to.raft) return;
      if (faults_on_ && blocked_.contains({m.from, m.to})) return;  // a partition that began in flight
      ++stats_.messages_delivered;
      Trace(m.to * 1000 + 2, m.from * 7 + m.body.index());
      to.raft->Step(m);
      Process(to);
    });
  }
}

void World::Process(Server& s) {
  while (s.raft && s.raft->HasReady()) {
    raft::Ready r = s.raft->TakeReady();
    if (r.hard_state) s.disk.hard_state = *r.hard_state;  // durable before any message goes out
    if (r.write) {
      if (r.write->first <= s.commit_checked) {
        Fail(absl::StrCat("server ", s.id, " overwrites index ", r.write->first, " which it knew committed (",
                          s.commit_checked, ")"));
      }
      if (observer_ != nullptr && s.raft->role() == raft::Role::kLeader) {
        // A leader writes only what it proposes: remember when.
        for (const Entry& e : r.write->entries) {
          if (e.term == s.raft->term()) proposed_at_.emplace(std::make_pair(e.index, e.term), now_);
        }
      }
      s.disk.Write(*r.write);
      ScheduleSync(s);
    }
    for (auto& m : r.messages) SendMessage(std::move(m));
    for (const auto& read : r.reads) {
      CheckRead(s, read);
      auto waiter = read_waiters_.find(read.id);
      if (waiter == read_waiters_.end()) continue;
      std::function<void(const raft::ReadState&)> done = std::move(waiter->second.done);
      read_waiters_.erase(waiter);
      done(read);
    }
  }
  if (!s.raft) return;
  raft::Role role = s.raft->role();
  if (role == raft::Role::kLeader && s.last_role != raft::Role::kLeader) {
    ++stats_.elections_won;
    Trace(s.id * 1000 + 3, s.raft->term());
  }
  s.last_role = role;
  if (s.runner && (role != s.last_runner_role || s.raft->term() != s.last_term)) {
    s.last_runner_role = role;
    s.last_term = s.raft->term();
    s.runner->SetRole(role, s.raft->term(), s.raft->leader());
  }
  ApplyCommitted(s);
}

void World::ApplyCommitted(Server& s) {
  Index commit = s.raft->commit();
  Term term = s.raft->term();
  stats_.max_commit = std::max(stats_.max_commit, commit);
  // Commit durability: what this server believes committed must agree with
  // everything any server ever believed committed.
  Index known = std::min(commit, s.disk.LastIndex());
  for (Index i = s.commit_checked + 1; i <= known; ++i) {
    const SimDisk::Item* item = s.disk.At(i);
    if (i > committed_.size()) {
      committed_.emplace_back(item->entry.term, item->prefix_hash);
    } else if (committed_[i - 1].second != item->prefix_hash) {
      Fail(absl::StrCat("server ", s.id, " holds a different entry at committed index ", i, " (term ",
                        item->entry.term, ", committed term ", committed_[i - 1].first, ")"));
      return;
    }
    s.commit_checked = i;
  }
  if (known > 0) {
    Index& max = committed_by_term_[term];
    max = std::max(max, known);
  }
  Index applicable = std::min(commit, s.raft->stable_last());
  while (s.applied < applicable) {
    Index i = ++s.applied;
    const SimDisk::Item* item = s.disk.At(i);
    if (i > applied_hash_.size()) {
      applied_hash_.push_back(item->prefix_hash);
    } else if (applied_hash_[i - 1] != item->prefix_hash) {
      Fail(absl::StrCat("state machine safety: server ", s.id, " applied a different entry at index ", i));
      return;
    }
    ++stats_.applied_entries;
    if (s.runner) {
      ApplyToStateMachine(s, *item);
      if (violation_) return;
    }
  }
}

std::unique_ptr<server::StateMachineRunner> World::MakeRunner(NodeId id) const {
  if (!options_.state_machine) return nullptr;
  return std::make_unique<server::StateMachineRunner>(options_.state_machine(), id);
}

void World::ApplyToStateMachine(Server& s, const SimDisk::Item& item) {
  Index i = item.entry.index;
  AppliedItem applied = ApplyItem(*s.runner, item);
  std::string& response = applied.response;
  if (applied.fired > 0) s.timer_firings.emplace_back(i, applied.fired);
  // State machine determinism: the same entry gives the same response on
  // every server, and on a server that re-applies it after a crash.
  if (i > responses_.size()) {
    responses_.push_back(response);
  } else if (responses_[i - 1] != response) {
    Fail(absl::StrCat("state machine determinism: server ", s.id, " answered the entry at index ", i, " with '",
                      absl::CEscape(response), "' where another server answered '", absl::CEscape(responses_[i - 1]),
                      "'"));
  }
  s.responses.push_back(std::move(response));
  if (observer_ != nullptr) observer_->OnApplied(s.id, item.entry, applied.responses, applied.published);
}

server::StateMachineRunner* World::Runner(NodeId id) { return servers_[id - 1]->runner.get(); }

absl::Status World::CheckReplay() {
  const Server* longest = nullptr;
  for (const auto& s : servers_) {
    if (s->runner && (longest == nullptr || s->applied > longest->applied)) longest = s.get();
  }
  if (longest == nullptr) return absl::OkStatus();
  // Replays [1, longest->applied] from longest's log on a fresh runner, and at
  // each server's applied index compares the whole state.
  std::unique_ptr<server::StateMachineRunner> fresh = MakeRunner(0);
  std::vector<std::string> responses;
  std::vector<std::pair<Index, uint64_t>> firings;
  auto compare_at = [&](const Server& s) -> absl::Status {
    std::string where = absl::StrCat("replay: server ", s.id, " at index ", s.applied, ": ");
    if (s.responses != responses) {
      for (size_t k = 0; k < std::min(s.responses.size(), responses.size()); ++k) {
        if (s.responses[k] != responses[k]) {
          return absl::InternalError(absl::StrCat(where, "the response at index ", k + 1, " was '",
                                                  absl::CEscape(s.responses[k]), "', a fresh replay gives '",
                                                  absl::CEscape(responses[k]), "'"));
        }
      }
      return absl::InternalError(absl::StrCat(where, "applied ", s.responses.size(), " responses, replay ",
                                              responses.size()));
    }
    if (s.timer_firings != firings) {
      return absl::InternalError(absl::StrCat(where, "fired timers at ", s.timer_firings.size(),
                                              " indexes, a fresh replay at ", firings.size(),
                                              " (or at other indexes)"));
    }
    if (options_.digest) {
      std::string mine = options_.digest(s.runner->state_machine());
      std::string replayed = options_.digest(fresh->state_machine());
      if (mine != replayed) {
        return absl::InternalError(absl::StrCat(where, "state digest '", absl::CEscape(mine),
                                                "' differs from a fresh replay's '", absl::CEscape(replayed), "'"));
      }
    }
    return absl::OkStatus();
  };
  for (Index i = 1; i <= longest->applied; ++i) {
    for (const auto& s : servers_) {
      if (s->runner && s->applied == i - 1 && i > 1) {
        if (absl::Status st = compare_at(*s); !st.ok()) return st;
      }
    }
    const SimDisk::Item* item = longest->disk.At(i);
    if (item == nullptr) return absl::InternalError(absl::StrCat("replay: server ", longest->id, " lacks index ", i));
    AppliedItem applied = ApplyItem(*fresh, *item);
    std::string& response = applied.response;
    uint64_t fired = applied.fired;
    if (fired > 0) firings.emplace_back(i, fired);
    if (!item->hole && item->entry.type == EntryType::kCommand && response.starts_with("ok:")) {
      ++stats_.replayed_commands_ok;
    }
    responses.push_back(std::move(response));
    stats_.replayed_timers_fired += fired;
    ++stats_.replayed_entries;
  }
  for (const auto& s : servers_) {
    if (s->runner && s->applied == longest->applied) {
      if (absl::Status st = compare_at(*s); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

absl::Status World::RequestRead() {
  // Like a client with a stale view, ask any server that believes it leads,
  // whatever its term.
  std::vector<NodeId> leaders;
  for (const auto& sp : servers_)
    if (sp->raft && sp->raft->role() == raft::Role::kLeader) leaders.push_back(sp->id);
  if (leaders.empty()) return absl::UnavailableError("no leader");
  Server& s = *servers_[leaders[rng_() % leaders.size()] - 1];
  uint64_t id = ++read_counter_;
  // Linearizability of the read index: it must cover everything committed
  // anywhere before the request.
  read_floor_[id] = committed_.size();
  absl::Status st = s.raft->RequestRead(id);
  if (st.ok()) {
    ++stats_.reads_requested;
    Process(s);
  }
  return st;
}

absl::Status World::RequestReadAt(NodeId id, std::function<void(const raft::ReadState&)> done) {
  Server& s = *servers_[id - 1];
  if (!s.raft) return absl::UnavailableError(absl::StrCat("server ", id, " is down"));
  uint64_t read = ++read_counter_;
  read_floor_[read] = committed_.size();
  read_waiters_[read] = ReadWaiter{id, std::move(done)};
  absl::Status st = s.raft->RequestRead(read);
  if (!st.ok()) {
    read_floor_.erase(read);
    read_waiters_.erase(read);
    return st;
  }
  ++stats_.reads_requested;
  Trace(id * 1000 + 8, read);
  Process(s);
  return absl::OkStatus();
}

void World::CheckRead(const Server& s, const raft::ReadState& read) {
  auto it = read_floor_.find(read.id);
  if (it == read_floor_.end()) {
    Fail(absl::StrCat("server ", s.id, " completed read ", read.id, " which was never requested"));
    return;
  }
  Index floor = it->second;
  read_floor_.erase(it);
  if (!read.ok) return;
  ++stats_.reads_confirmed;
  if (options_.check_read_index && read.index < floor) {
    Fail(absl::StrCat("read index: server ", s.id, " confirmed read ", read.id, " at index ", read.index,
                      " but index ", floor, " was committed before it was requested"));
  }
}

void World::CheckSafety() {
  for (auto& sp : servers_) {
    // Durability: what the core treats as stable is on the disk, as it sees it.
    Server& d = *sp;
    if (d.raft) {
      Index stable = d.raft->stable_last();
      if (stable > 0 && d.disk.DurablePrefixHash(stable) != d.disk.PrefixHash(stable)) {
        Fail(absl::StrCat("durability: server ", d.id, " treats index ", stable,
                          " as durable but its disk holds something else there"));
        return;
      }
    }
  }
  for (auto& sp : servers_) {
    Server& s = *sp;
    if (!s.raft || s.raft->role() != raft::Role::kLeader) continue;
    Term t = s.raft->term();
    auto [it, inserted] = leader_of_term_.emplace(t, s.id);
    if (!inserted && it->second != s.id) {
      Fail(absl::StrCat("election safety: servers ", it->second, " and ", s.id, " are both leaders of term ", t));
      return;
    }
    // Lease safety: while this leader's lease holds, no newer leader exists.
    if (s.raft->LeaseValid()) {
      for (auto& other : servers_) {
        if (other->raft && other->raft->role() == raft::Role::kLeader && other->raft->term() > t) {
          Fail(absl::StrCat("lease safety: leader ", s.id, " of term ", t, " holds a lease while server ", other->id,
                            " leads term ", other->raft->term()));
          return;
        }
      }
    }
    // Leader completeness: everything committed before this term is in its log.
    Index must_hold = 0;
    for (auto c = committed_by_term_.begin(); c != committed_by_term_.end() && c->first < t; ++c) {
      must_hold = std::max(must_hold, c->second);
    }
    if (must_hold > 0 && s.disk.PrefixHash(must_hold) != committed_[must_hold - 1].second) {
      Fail(absl::StrCat("leader completeness: leader ", s.id, " of term ", t, " lacks committed index ", must_hold));
      return;
    }
  }
  // Log matching, pairwise: at the highest index where both logs hold the same
  // term, the prefixes must be identical (which covers every lower index).
  for (size_t a = 0; a < servers_.size(); ++a) {
    for (size_t b = a + 1; b < servers_.size(); ++b) {
      const SimDisk& da = servers_[a]->disk;
      const SimDisk& db = servers_[b]->disk;
      for (Index i = std::min(da.LastIndex(), db.LastIndex()); i > 0; --i) {
        if (da.TermAt(i) != db.TermAt(i)) continue;
        if (da.PrefixHash(i) != db.PrefixHash(i)) {
          Fail(absl::StrCat("log matching: servers ", a + 1, " and ", b + 1, " agree on the term at index ", i,
                            " but not on the log up to it"));
        }
        break;
      }
    }
  }
}

void World::ScheduleCrash() {
  {
    Schedule(now_ + 200'000 + static_cast<Micros>(rng_() % 1'500'000), [this] {
      if (!faults_on_) return;
      Server& s = *servers_[rng_() % servers_.size()];
      if (s.raft) {
        Crash(s.id);
        NodeId id = s.id;
        Schedule(now_ + 50'000 + static_cast<Micros>(rng_() % 1'000'000), [this, id] { Restart(id); });
      }
      ScheduleCrash();
    });
  }
}

void World::SchedulePartition() {
  {
    Schedule(now_ + 300'000 + static_cast<Micros>(rng_() % 2'000'000), [this] {
      if (!faults_on_) return;
      ++stats_.partitions;
      blocked_.clear();
      int n = options_.nodes;
      switch (rng_() % 4) {
        case 0: {  // symmetric split into two groups
          std::vector<int> side(n);
          for (auto& x : side) x = static_cast<int>(rng_() % 2);
          for (int a = 0; a < n; ++a)
            for (int b = 0; b < n; ++b)
              if (side[a] != side[b]) blocked_.insert({a + 1, b + 1});
          break;
        }
        case 1: {  // isolate one server
          NodeId x = rng_() % n + 1;
          for (int b = 1; b <= n; ++b)
            if (static_cast<NodeId>(b) != x) blocked_.insert({x, b}), blocked_.insert({b, x});
          break;
        }
        case 2: {  // one-way cuts
          int cuts = 1 + static_cast<int>(rng_() % n);
          for (int i = 0; i < cuts; ++i) {
            NodeId a = rng_() % n + 1, b = rng_() % n + 1;
            if (a != b) blocked_.insert({a, b});
          }
          break;
        }
        default:  // healed for a while
          break;
      }
      SchedulePartition();
    });
  }
}

void World::Crash(NodeId id) {
  Server& s = *servers_[id - 1];
  if (!s.raft) return;
  ++stats_.crashes;
  Trace(id * 1000 + 4, now_);
  s.raft.reset();
  ++s.incarnation;
  s.sync_in_flight = false;
  s.disk.Crash(rng_, options_.faults.torn_writes);
  s.applied = 0;  // the state machine is rebuilt from the log
  s.commit_checked = 0;
  s.last_role = raft::Role::kFollower;
  s.last_runner_role = raft::Role::kFollower;
  s.last_term = 0;
  s.runner.reset();
  s.responses.clear();
  s.timer_firings.clear();
  s.expiring.clear();
  s.time_entry = 0;
  std::erase_if(read_waiters_, [id](const auto& kv) { return kv.second.server == id; });
  if (observer_ != nullptr) observer_->OnCrash(id);
}

void World::Restart(NodeId id) {
  Server& s = *servers_[id - 1];
  if (s.raft) return;
  Trace(id * 1000 + 5, now_);
  s.raft = std::make_unique<raft::Raft>(MakeConfig(id), &s.disk, s.disk.hard_state, LocalTime(s), LocalTime(s));
  s.runner = MakeRunner(id);
  ScheduleTick(s);
  if (options_.leader_duties && s.runner) ScheduleDuties(s);
}

void World::Block(NodeId from, NodeId to) { blocked_.insert({from, to}); }
void World::Unblock(NodeId from, NodeId to) { blocked_.erase({from, to}); }

void World::ScheduleDuties(Server& s) {
  uint64_t inc = s.incarnation;
  Schedule(now_ + MakeConfig(s.id).heartbeat_interval, [this, &s, inc] {
    if (!s.raft || s.incarnation != inc) return;
    RunDuties(s);
    ScheduleDuties(s);
  });
}

// ClientService::RunDuties, on the simulated clock: the server's drifting
// clock is its wall clock (what the raft core stamps entries with).
void World::RunDuties(Server& s) {
  if (s.raft->role() != raft::Role::kLeader) {
    s.expiring.clear();
    s.time_entry = 0;
    return;
  }
  Index applied = s.runner->applied();
  Micros election_timeout = MakeConfig(s.id).election_timeout_max;
  std::erase_if(s.expiring, [&](const auto& kv) {
    return kv.second.first <= applied || now_ - kv.second.second > 2 * election_timeout;
  });
  for (uint64_t session : s.runner->SuspectSessions()) {
    if (s.expiring.contains(session)) continue;
    auto index = s.raft->Propose(
        EntryType::kUnregister,
        Bytes(serialization::EncodeUnregisterEntry(serialization::UnregisterEntryValue{session, true})));
    if (!index.ok()) break;
    ++stats_.expiry_proposals;
    Trace(s.id * 1000 + 6, session);
    s.expiring[session] = {*index, now_};
  }
  std::optional<LogTime> deadline = s.runner->NextDeadline();
  if (s.raft->role() == raft::Role::kLeader && deadline && s.time_entry <= applied &&
      LocalTime(s) > *deadline && s.raft->last_index() <= applied) {
    auto index = s.raft->Propose(EntryType::kTime, Bytes(std::string()));
    if (index.ok()) {
      ++stats_.time_entries;
      Trace(s.id * 1000 + 7, *index);
      s.time_entry = *index;
    }
  }
  Process(s);
}

absl::StatusOr<std::pair<Index, Term>> World::ProposeAt(NodeId id, EntryType type, std::string payload) {
  Server& s = *servers_[id - 1];
  if (!s.raft) return absl::UnavailableError(absl::StrCat("server ", id, " is down"));
  auto index = s.raft->Propose(type, Bytes(std::move(payload)));
  if (!index.ok()) return index.status();
  Term term = s.raft->term();
  Process(s);
  return std::make_pair(*index, term);
}

absl::Status World::RunUntil(const std::function<bool()>& done, Micros limit) {
  Micros end = now_ + limit;
  while (!done()) {
    if (events_.empty() || events_.top().time > end) {
      return absl::DeadlineExceededError(absl::StrCat("not done within ", limit / 1000, " ms"));
    }
    if (auto s = Step(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<NodeId> World::Leader() const {
  std::optional<NodeId> best;
  Term best_term = 0;
  for (const auto& s : servers_) {
    if (s->raft && s->raft->role() == raft::Role::kLeader && s->raft->term() >= best_term) {
      best = s->id;
      best_term = s->raft->term();
    }
  }
  return best;
}

absl::StatusOr<Index> World::Propose(std::string payload) {
  std::optional<NodeId> leader = Leader();
  if (!leader) return absl::UnavailableError("no leader");
  Server& s = *servers_[*leader - 1];
  auto index = s.raft->Propose(EntryType::kCommand, Bytes(std::move(payload)));
  if (index.ok()) {
    ++stats_.proposals;
    Process(s);
  }
  return index;
}

const raft::Raft* World::Node(NodeId id) const { return servers_[id - 1]->raft.get(); }
std::optional<Micros> World::ProposedAt(Index index, Term term) const {
  auto it = proposed_at_.find({index, term});
  if (it == proposed_at_.end()) return std::nullopt;
  return it->second;
}

bool World::Up(NodeId id) const { return servers_[id - 1]->raft != nullptr; }
Micros World::Clock(NodeId id) const { return LocalTime(*servers_[id - 1]); }
const SimDisk& World::Disk(NodeId id) const { return servers_[id - 1]->disk; }
Index World::Applied(NodeId id) const { return servers_[id - 1]->applied; }

absl::Status World::Step() {
  Event e = events_.top();
  events_.pop();
  now_ = e.time;
  ++stats_.events;
  e.fn();
  if (!violation_) CheckSafety();
  if (violation_) return absl::InternalError(*violation_);
  return absl::OkStatus();
}

absl::Status World::RunFor(Micros duration) {
  Micros end = now_ + duration;
  Micros next_proposal = now_;
  while (!events_.empty() && events_.top().time <= end) {
    if (options_.propose_interval > 0 && events_.top().time >= next_proposal) {
      now_ = std::max(now_, next_proposal);
      next_proposal = now_ + options_.propose_interval;
      ++proposal_counter_;
      if (options_.make_operation) {
        (void)Propose(serialization::EncodeCommandEntry(0, proposal_counter_, options_.make_operation(rng_)));
      } else {
        (void)Propose(absl::StrCat("op-", proposal_counter_));
      }
      (void)RequestRead();
    }
    if (auto s = Step(); !s.ok()) return s;
  }
  now_ = std::max(now_, end);
  return absl::OkStatus();
}

void World::HealAll() {
  faults_on_ = false;
  blocked_.clear();
  for (auto& s : servers_) {
    if (!s->raft) Restart(s->id);
  }
}

absl::Status World::CheckLiveness() {
  // Within the window, a leader must commit a fresh marker and every server
  // must apply it.
  std::string marker = absl::StrCat("liveness-marker-", options_.seed);
  Micros deadline = now_ + options_.liveness_window;
  std::optional<std::pair<NodeId, Term>> proposed_at;
  Index marker_index = 0;
  while (now_ < deadline) {
    std::optional<NodeId> leader = Leader();
    if (leader && (!proposed_at || proposed_at->first != *leader || proposed_at->second != Node(*leader)->term())) {
      auto index = Propose(marker);
      if (index.ok()) {
        proposed_at = {*leader, Node(*leader)->term()};
        marker_index = *index;
      }
    }
    if (marker_index > 0) {
      bool all = true;
      for (auto& s : servers_) {
        const SimDisk::Item* item = s->disk.At(marker_index);
        all = all && s->raft && s->applied >= marker_index && item && item->entry.payload.view() == marker;
      }
      if (all) return absl::OkStatus();
    }
    if (events_.empty()) break;
    if (auto s = Step(); !s.ok()) return s;
  }
  return absl::DeadlineExceededError(absl::StrCat("liveness: no commit applied on every server within ",
                                                  options_.liveness_window / 1000, " ms after healing (leader ",
                                                  Leader().value_or(0), ")"));
}

absl::Status World::Run() {
  if (auto s = RunFor(options_.duration); !s.ok()) return s;
  HealAll();
  if (auto s = CheckLiveness(); !s.ok()) return s;
  return CheckReplay();
}

Options AllFaultsForSeed(uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eed5eedull);
  Options o;
  o.seed = seed;
  o.nodes = seed % 2 == 0 ? 3 : 5;
  o.duration = 20'000'000;
  o.faults = Faults::All();
  std::uniform_real_distribution<double> p(0, 1);
  o.faults.drop = 0.2 * p(rng);
  o.faults.duplicate = 0.1 * p(rng);
  const Micros delays[] = {5'000, 30'000, 120'000, 500'000};
  o.faults.max_delay = delays[rng() % 4];
  const Micros fsyncs[] = {1'000, 10'000, 60'000};
  o.faults.fsync_max = fsyncs[rng() % 3];
  o.faults.clock_drift = 0.05 * p(rng);
  return o;
}

std::string ReplayCommand(uint64_t seed) {
  return absl::StrCat("CARACAL_SIM_SEED=", seed, " build/tests/raft_sim_test --gtest_filter='RaftSim.Replay'");
}

absl::Status RunSeed(uint64_t seed, const Options& base) {
  Options o = base;
  o.seed = seed;
  World world(o);
  absl::Status s = world.Run();
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("seed ", seed, ": ", s.message(), "\n  replay: ", ReplayCommand(seed)));
}

}  // namespace caracal::sim

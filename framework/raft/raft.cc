#include "framework/raft/raft.h"

#include <algorithm>
#include <cassert>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace caracal::raft {
namespace {

// The highest value that `quorum` of the voters have reached (value_of each
// voter); no allocation for up to 8 voters (it runs on every acknowledgement).
template <typename F>
uint64_t QuorumValue(const std::vector<NodeId>& voters, size_t quorum, F value_of) {
  absl::InlinedVector<uint64_t, 8> values;
  for (NodeId id : voters) values.push_back(value_of(id));
  std::sort(values.begin(), values.end(), std::greater<>());
  return values[quorum - 1];
}

}  // namespace


const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "unknown";
}

Index LogWrite::last() const {
  Index last = first - 1;
  if (!entries.empty()) last = std::max(last, entries.back().index);
  if (!holes.empty()) last = std::max(last, holes.back().last);
  return last;
}

Term LogWrite::last_term() const {
  if (!entries.empty() && (holes.empty() || entries.back().index > holes.back().last)) return entries.back().term;
  return holes.empty() ? 0 : holes.back().term;
}

Raft::Raft(Config config, const LogReader* log, HardState hard_state, Micros now, LogTime wall)
    : config_(std::move(config)),
      log_(log),
      rng_(config_.seed * 0x9E3779B97F4A7C15ull + config_.id),
      term_(hard_state.term),
      voted_for_(hard_state.voted_for),
      now_(now),
      wall_(wall),
      started_(now) {
  stable_last_ = log_->LastIndex();
  commit_ = log_->FirstIndex() - 1;
  // Log time continues from the newest entry (skipping trailing holes).
  for (Index i = stable_last_; i >= log_->FirstIndex() && i > 0 && i + 4096 > stable_last_; --i) {
    std::vector<Entry> entries;
    std::vector<HoleRun> holes;
    if (log_->Read(i, i, 0, &entries, &holes).ok() && !entries.empty()) {
      last_timestamp_ = entries.back().timestamp;
      break;
    }
  }
  for (NodeId id : config_.voters) {
    if (id != config_.id) peers_[id] = Peer{};
  }
  ResetElectionTimer();
}

// ------------------------------------------------------------------ log view

Index Raft::FirstIndex() const { return log_->FirstIndex(); }

Index Raft::LastIndex() const { return unstable_.empty() ? stable_last_ : unstable_.back().entry.index; }

Term Raft::LastTerm() const { return TermAt(LastIndex()).value_or(0); }

std::optional<Term> Raft::TermAt(Index index) const {
  if (index == 0) return Term{0};
  if (!unstable_.empty() && index >= unstable_.front().entry.index) {
    if (index > unstable_.back().entry.index) return std::nullopt;
    return unstable_[index - unstable_.front().entry.index].entry.term;
  }
  if (index > stable_last_) return std::nullopt;
  return log_->TermAt(index);
}

bool Raft::IsUpToDate(Index last_index, Term last_term) const {
  Term my_term = LastTerm();
  return last_term > my_term || (last_term == my_term && last_index >= LastIndex());
}

void Raft::CollectForAppend(Index from, AppendEntries* out) const {
  Index last = LastIndex();
  size_t bytes = 0;
  Index i = from;
  if (i <= stable_last_) {
    Index to = std::min(stable_last_, from + config_.max_append_entries - 1);
    std::vector<Entry> entries;
    std::vector<HoleRun> holes;
    absl::Status s = log_->Read(i, to, config_.max_append_bytes, &entries, &holes);
    if (!s.ok()) {
      spdlog::error("raft {}: reading log [{}, {}] for replication failed: {}", config_.id, i, to,
                    std::string(s.message()));
      if (error_.ok()) error_ = s;
      return;
    }
    for (const auto& e : entries) bytes += e.payload.size();
    Index covered = i - 1;
    if (!entries.empty()) covered = std::max(covered, entries.back().index);
    if (!holes.empty()) covered = std::max(covered, holes.back().last);
    out->entries = std::move(entries);
    out->holes = std::move(holes);
    i = covered + 1;
    if (i <= stable_last_) return;  // the size limit stopped us inside the stable part
  }
  size_t count = out->entries.size();
  if (i <= last && count < config_.max_append_entries) {
    out->entries.reserve(count + std::min<size_t>(last - i + 1, config_.max_append_entries - count));
  }
  while (i <= last && count < config_.max_append_entries && (bytes < config_.max_append_bytes || count == 0)) {
    const Item& item = unstable_[i - unstable_.front().entry.index];
    if (item.hole) {
      if (!out->holes.empty() && out->holes.back().last + 1 == i && out->holes.back().term == item.entry.term) {
        out->holes.back().last = i;
      } else {
        out->holes.push_back(HoleRun{i, i, item.entry.term});
      }
    } else {
      out->entries.push_back(item.entry);
      bytes += item.entry.payload.size();
    }
    ++count;
    ++i;
  }
}

void Raft::AppendItems(std::span<Item> items) {
  assert(!items.empty());
  Index first = items.front().entry.index;
  assert(first >= 1 && first <= LastIndex() + 1);
  if (first <= stable_last_) {
    stable_last_ = first - 1;
    unstable_.clear();
  } else {
    while (!unstable_.empty() && unstable_.back().entry.index >= first) unstable_.pop_back();
  }
  // Merge into the write the driver has not taken yet, or start a new one.
  if (!pending_write_ || first < pending_write_->first) {
    pending_write_ = LogWrite{0, first, {}, {}};
    pending_write_->entries.reserve(std::max(items.size(), write_entries_hint_));
  } else {
    auto& w = *pending_write_;
    while (!w.entries.empty() && w.entries.back().index >= first) w.entries.pop_back();
    while (!w.holes.empty() && w.holes.back().first >= first) w.holes.pop_back();
    if (!w.holes.empty() && w.holes.back().last >= first) w.holes.back().last = first - 1;
  }
  for (auto& item : items) {
    if (item.hole) {
      auto& holes = pending_write_->holes;
      Index i = item.entry.index;
      if (!holes.empty() && holes.back().last + 1 == i && holes.back().term == item.entry.term) {
        holes.back().last = i;
      } else {
        holes.push_back(HoleRun{i, i, item.entry.term});
      }
    } else {
      last_timestamp_ = std::max(last_timestamp_, item.entry.timestamp);
      pending_write_->entries.push_back(item.entry);
    }
    unstable_.push_back(std::move(item));
  }
}

void Raft::OnPersisted(uint64_t write_id) {
  // Writes are applied and synced in order: everything up to write_id is on
  // disk. An index is stable if that write covered it and no later write
  // (still in flight, or not yet handed out) replaces it.
  std::optional<Index> durable_last;
  while (!writes_in_flight_.empty() && writes_in_flight_.front().id <= write_id) {
    durable_last = writes_in_flight_.front().last;
    writes_in_flight_.pop_front();
  }
  if (!durable_last) return;  // an old acknowledgement
  Index index = *durable_last;
  for (size_t k = 0; k < writes_in_flight_.size(); ++k) index = std::min(index, writes_in_flight_[k].first - 1);
  if (pending_write_) index = std::min(index, pending_write_->first - 1);
  index = std::min(index, LastIndex());
  if (index <= stable_last_) return;
  while (!unstable_.empty() && unstable_.front().entry.index <= index) unstable_.pop_front();
  stable_last_ = index;
  if (role_ == Role::kLeader) {
    MaybeAdvanceCommit();
  } else {
    FlushPendingAcks();
  }
}

// ------------------------------------------------------------------ time

void Raft::ResetElectionTimer() {
  std::uniform_int_distribution<Micros> d(config_.election_timeout_min, config_.election_timeout_max - 1);
  election_deadline_ = now_ + d(rng_);
}

void Raft::Tick(Micros now, LogTime wall) {
  now_ = std::max(now_, now);
  wall_ = wall;
  if (role_ == Role::kLeader) {
    if (now_ >= next_heartbeat_) {
      next_heartbeat_ = now_ + config_.heartbeat_interval;
      RetransmitStalled();
      BroadcastHeartbeats();
    }
    if (config_.check_quorum && now_ >= next_quorum_check_) {
      next_quorum_check_ = now_ + config_.election_timeout_min;
      CheckQuorum();
    }
    return;
  }
  if (now_ >= election_deadline_ && IsVoter(config_.id)) {
    Campaign(config_.pre_vote, /*transfer=*/false);
  }
}

// ------------------------------------------------------------------ roles

void Raft::SetTerm(Term term) {
  assert(term > term_);
  term_ = term;
  voted_for_ = 0;
  hard_state_dirty_ = true;
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  if (term > term_) SetTerm(term);
  if (role_ != Role::kFollower || leader_ != leader) {
    spdlog::debug("raft {}: follower in term {} (leader {})", config_.id, term_, leader);
  }
  if (pending_ack_ && (pending_ack_->term != term_ || pending_ack_->leader != leader)) pending_ack_.reset();
  if (role_ == Role::kLeader) FailReads();
  role_ = Role::kFollower;
  leader_ = leader;
  votes_.clear();
  ResetElectionTimer();
}

void Raft::Campaign(bool pre_vote, bool transfer) {
  votes_.clear();
  Term campaign_term = term_ + 1;
  if (pre_vote) {
    role_ = Role::kPreCandidate;
  } else {
    SetTerm(campaign_term);
    voted_for_ = config_.id;
    role_ = Role::kCandidate;
  }
  leader_ = 0;
  pending_ack_.reset();
  ResetElectionTimer();
  votes_[config_.id] = true;
  if (votes_.size() >= Quorum()) {  // a single-voter cluster
    if (pre_vote) {
      Campaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  RequestVote rv{campaign_term, LastIndex(), LastTerm(), pre_vote, transfer};
  for (NodeId id : config_.voters) {
    if (id != config_.id) Send(id, rv);
  }
}

void Raft::BecomeLeader() {
  spdlog::info("raft {}: leader in term {} (last index {})", config_.id, term_, LastIndex());
  role_ = Role::kLeader;
  leader_ = config_.id;
  votes_.clear();
  for (auto& [id, peer] : peers_) {
    peer = Peer{};
    peer.next = LastIndex() + 1;
    peer.recent_active = true;
    peer.last_progress = now_;
  }
  next_heartbeat_ = now_ + config_.heartbeat_interval;
  next_quorum_check_ = now_ + config_.election_timeout_min;
  round_sent_.clear();
  confirmed_round_ = round_;
  lease_start_ = -1;
  term_start_ = LastIndex() + 1;
  // The Initialize entry commits everything of earlier terms (Raft §5.4.2)
  // and tells the server state machine a new leader took over.
  absl::StatusOr<Index> index = Propose(EntryType::kInitialize, Bytes());
  assert(index.ok());
  (void)index;
}

// ------------------------------------------------------------------ inputs

absl::StatusOr<Index> Raft::Propose(EntryType type, Bytes payload) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(absl::StrCat("server ", config_.id, " is not the leader; leader is ",
                                                      leader_ == 0 ? std::string("unknown") : absl::StrCat(leader_)));
  }
  Item item;
  item.entry = Entry{LastIndex() + 1, term_, std::max(last_timestamp_, wall_), type, std::move(payload)};
  Index index = item.entry.index;
  AppendItems(std::span<Item>(&item, 1));
  return index;
}

void Raft::Step(const Message& m) {
  if (m.to != config_.id || m.from == config_.id || !peers_.contains(m.from)) return;
  Term mt = MessageTerm(m);
  if (mt > term_) {
    if (const auto* rv = std::get_if<RequestVote>(&m.body)) {
      if (!rv->leadership_transfer && InLease()) return;  // a leader is alive: ignore the disruption
      if (!rv->pre_vote) BecomeFollower(mt, 0);
    } else if (const auto* vr = std::get_if<RequestVoteResponse>(&m.body); vr && vr->pre_vote && vr->granted) {
      // A granted pre-vote carries the term we would campaign in: no change.
    } else {
      BecomeFollower(mt, std::holds_alternative<AppendEntries>(m.body) ? m.from : 0);
    }
  } else if (mt < term_) {
    // Tell a stale leader or pre-candidate about the newer term so it steps down.
    if (std::holds_alternative<AppendEntries>(m.body)) {
      AppendEntriesResponse r;
      r.term = term_;
      r.last_index = LastIndex();
      Send(m.from, r);
    } else if (const auto* rv = std::get_if<RequestVote>(&m.body); rv && rv->pre_vote) {
      Send(m.from, RequestVoteResponse{term_, false, true});
    }
    return;
  }
  std::visit(
      [&](const auto& body) {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, RequestVote>) HandleRequestVote(m.from, body);
        if constexpr (std::is_same_v<T, RequestVoteResponse>) HandleVoteResponse(m.from, body);
        if constexpr (std::is_same_v<T, AppendEntries>) HandleAppendEntries(m.from, body);
        if constexpr (std::is_same_v<T, AppendEntriesResponse>) HandleAppendResponse(m.from, body);
        if constexpr (std::is_same_v<T, TimeoutNow>) HandleTimeoutNow(m.from, body);
      },
      m.body);
}

bool Raft::InLease() const {
  if (!config_.check_quorum) return false;
  if (role_ == Role::kLeader) return true;  // check-quorum steps it down when the lease is gone
  // Right after a (re)start we may have acknowledged a leader just before
  // crashing: honour that leader's lease as if we had just heard from it.
  if (now_ - started_ < config_.election_timeout_min) return true;
  return leader_ != 0 && now_ - last_heard_from_leader_ < config_.election_timeout_min;
}

void Raft::HandleRequestVote(NodeId from, const RequestVote& m) {
  bool can_vote = voted_for_ == from || (voted_for_ == 0 && leader_ == 0) || (m.pre_vote && m.term > term_);
  bool grant = (can_vote && IsUpToDate(m.last_log_index, m.last_log_term)) || config_.faults.vote_twice_in_a_term;
  if (grant && !m.pre_vote) {
    voted_for_ = from;
    hard_state_dirty_ = true;
    ResetElectionTimer();
  }
  Send(from, RequestVoteResponse{grant && m.pre_vote ? m.term : term_, grant, m.pre_vote});
}

void Raft::HandleVoteResponse(NodeId from, const RequestVoteResponse& m) {
  bool counts = (role_ == Role::kPreCandidate && m.pre_vote) || (role_ == Role::kCandidate && !m.pre_vote);
  if (!counts) return;
  votes_[from] = m.granted;
  size_t granted = 0, rejected = 0;
  for (const auto& [id, g] : votes_) (g ? granted : rejected)++;
  if (granted >= Quorum()) {
    if (role_ == Role::kPreCandidate) {
      Campaign(/*pre_vote=*/false, /*transfer=*/false);
    } else {
      BecomeLeader();
    }
  } else if (rejected >= Quorum()) {
    BecomeFollower(term_, 0);
  }
}

void Raft::HandleTimeoutNow(NodeId from, const TimeoutNow&) {
  // Only our leader may hand over leadership: the request bypasses every
  // voter's lease check, so a stale or foreign one must not be obeyed.
  if (from != leader_ || role_ == Role::kLeader || !IsVoter(config_.id)) return;
  Campaign(/*pre_vote=*/false, /*transfer=*/true);
}

void Raft::HandleAppendEntries(NodeId from, const AppendEntries& m) {
  if (role_ != Role::kFollower || leader_ != from) BecomeFollower(term_, from);
  last_heard_from_leader_ = now_;
  ResetElectionTimer();

  // Lay out entries and holes as one run of items, checking it is contiguous.
  std::vector<Item> items;
  items.reserve(m.entries.size());
  {
    size_t e = 0, h = 0;
    Index next = m.prev_log_index + 1;
    while (e < m.entries.size() || h < m.holes.size()) {
      if (e < m.entries.size() && m.entries[e].index == next) {
        items.push_back(Item{m.entries[e++], false});
        ++next;
      } else if (h < m.holes.size() && m.holes[h].first == next && m.holes[h].last >= next) {
        for (; next <= m.holes[h].last; ++next) items.push_back(Item{Entry{next, m.holes[h].term, 0, {}, {}}, true});
        ++h;
      } else {
        spdlog::error("raft {}: AppendEntries from {} is not contiguous at index {}; ignored", config_.id, from, next);
        return;
      }
    }
  }

  Index prev = m.prev_log_index;
  if (prev < commit_) {
    // Everything up to commit_ is committed, hence identical to the leader's.
    size_t skip = std::min<size_t>(items.size(), commit_ - prev);
    items.erase(items.begin(), items.begin() + skip);
    prev = commit_;
  } else if (TermAt(prev) != m.prev_log_term) {
    AppendEntriesResponse r;
    r.term = term_;
    r.success = false;
    r.rejected_index = m.prev_log_index;
    r.round = m.round;
    r.last_index = LastIndex();
    if (prev > LastIndex()) {
      r.conflict_index = LastIndex() + 1;
    } else {
      Term t = TermAt(prev).value_or(0);
      Index i = prev;
      // Back off over the whole run of term t (bounded: a huge run costs a few round trips).
      Index floor = std::max({commit_ + 1, FirstIndex(), prev > 65536 ? prev - 65536 : Index{1}});
      while (i > floor && TermAt(i - 1) == t) --i;
      r.conflict_index = i;
      r.conflict_term = t;
    }
    Send(from, r);
    return;
  }

  Index last_new = prev + items.size();
  size_t first_new = 0;
  while (first_new < items.size()) {
    const Entry& e = items[first_new].entry;
    if (e.index > LastIndex() || TermAt(e.index) != e.term) break;
    ++first_new;
  }
  if (first_new < items.size()) {
    Index conflict = items[first_new].entry.index;
    if (conflict <= commit_) {
      spdlog::critical("raft {}: leader {} would overwrite committed index {} (commit {})", config_.id, from, conflict,
                       commit_);
      assert(false && "overwrite of a committed entry");
      return;
    }
    AppendItems(std::span<Item>(items).subspan(first_new));
  }
  commit_ = std::max(commit_, std::min(m.commit_index, last_new));

  if (pending_ack_ && (pending_ack_->leader != from || pending_ack_->term != term_)) pending_ack_.reset();
  if (last_new <= stable_last_) {
    // Already durable (a heartbeat, or a retransmission): answer at once, so
    // the round reaches the leader without waiting for an unrelated fsync.
    AppendEntriesResponse r;
    r.term = term_;
    r.success = true;
    r.match_index = last_new;
    r.round = m.round;
    r.last_index = LastIndex();
    Send(from, r);
    return;
  }
  PendingAck ack{from, term_, last_new, m.round};
  if (pending_ack_) {
    ack.index = std::max(ack.index, pending_ack_->index);
    ack.round = std::max(ack.round, pending_ack_->round);
  }
  pending_ack_ = ack;
}

void Raft::FlushPendingAcks() {
  if (!pending_ack_ || pending_ack_->index > stable_last_) return;
  if (pending_ack_->term != term_ || pending_ack_->leader != leader_) {
    pending_ack_.reset();
    return;
  }
  AppendEntriesResponse r;
  r.term = term_;
  r.success = true;
  r.match_index = pending_ack_->index;
  r.round = pending_ack_->round;
  r.last_index = LastIndex();
  Send(pending_ack_->leader, r);
  pending_ack_.reset();
}

void Raft::HandleAppendResponse(NodeId from, const AppendEntriesResponse& m) {
  if (role_ != Role::kLeader) return;
  Peer& peer = peers_[from];
  peer.recent_active = true;
  if (m.round > peer.acked_round) {
    peer.acked_round = m.round;
    MaybeCompleteReads();
  }
  if (m.success) {
    if (m.match_index > peer.match) {
      peer.match = m.match_index;
      peer.last_progress = now_;
    }
    peer.next = std::max(peer.next, peer.match + 1);
    if (peer.progress == Progress::kProbe) {
      peer.progress = Progress::kReplicate;
      peer.inflight.clear();
      peer.probe_sent = false;
      peer.next = peer.match + 1;
      peer.last_progress = now_;
    } else {
      while (!peer.inflight.empty() && peer.inflight.front() <= peer.match) peer.inflight.pop_front();
    }
    MaybeAdvanceCommit();
    return;
  }
  if (m.last_index < peer.match) {
    // It lost entries it had acknowledged as durable (a damaged disk whose
    // tail was cut on recovery). Start again from what it has.
    spdlog::error("raft {}: follower {} lost acknowledged entries: it has {} but acknowledged {}", config_.id, from,
                  m.last_index, peer.match);
    peer.match = m.last_index;
    peer.next = m.last_index + 1;
    peer.progress = Progress::kProbe;
    peer.inflight.clear();
    peer.probe_sent = false;
    return;
  }
  // Rejected: ignore answers to messages we have since moved past.
  if (peer.progress == Progress::kReplicate && m.rejected_index <= peer.match) return;
  if (peer.progress == Progress::kProbe && m.rejected_index + 1 != peer.next) return;
  Index next = m.conflict_index != 0 ? m.conflict_index : m.last_index + 1;
  next = std::min(next, m.last_index + 1);
  next = std::clamp(next, peer.match + 1, LastIndex() + 1);
  peer.next = next;
  peer.progress = Progress::kProbe;
  peer.inflight.clear();
  peer.probe_sent = false;
}

// ------------------------------------------------------------------ leader

void Raft::SendAppend(NodeId to, Peer& peer, bool allow_empty, bool with_entries) {
  Index prev = peer.next - 1;
  std::optional<Term> prev_term = TermAt(prev);
  if (!prev_term) {
    // The entries this follower needs were compacted away; snapshot
    // installation (a later issue) will send it a snapshot instead. Pause
    // the peer until the next heartbeat rather than retrying at once.
    spdlog::warn("raft {}: follower {} needs index {} which is no longer in the log", config_.id, to, peer.next);
    PausePeer(peer);
    return;
  }
  AppendEntries ae;
  ae.term = term_;
  ae.prev_log_index = prev;
  ae.prev_log_term = *prev_term;
  ae.commit_index = commit_;
  ae.round = round_;
  if (with_entries) CollectForAppend(peer.next, &ae);
  bool nothing = ae.entries.empty() && ae.holes.empty();
  if (nothing && with_entries && peer.next <= LastIndex()) {
    // The log could not be read (error_ says why): do not spin on it.
    PausePeer(peer);
    return;
  }
  if (nothing && !allow_empty) return;
  Index last = prev + ae.entries.size();
  for (const auto& h : ae.holes) last += h.last - h.first + 1;
  if (peer.progress == Progress::kReplicate) {
    if (last > prev) {
      if (peer.inflight.empty()) peer.last_progress = now_;  // the stall clock starts now
      peer.inflight.push_back(last);
      peer.next = last + 1;
    }
  } else {
    peer.probe_sent = true;
  }
  Send(to, std::move(ae));
}

void Raft::PausePeer(Peer& peer) {
  peer.progress = Progress::kProbe;
  peer.inflight.clear();
  peer.probe_sent = true;  // BroadcastHeartbeats clears it
}

void Raft::BroadcastAppends() {
  for (auto& [id, peer] : peers_) {
    if (peer.progress == Progress::kProbe) {
      if (!peer.probe_sent) SendAppend(id, peer, /*allow_empty=*/true);
      continue;
    }
    while (peer.inflight.size() < config_.max_inflight && peer.next <= LastIndex()) {
      Index before = peer.next;
      SendAppend(id, peer, /*allow_empty=*/false);
      if (peer.next == before) break;
    }
  }
}

void Raft::BroadcastHeartbeats() {
  ++round_;
  round_sent_[round_] = now_;
  for (auto& [id, peer] : peers_) {
    if (peer.progress == Progress::kProbe) {
      // Retransmit the probe (it or its answer may be lost). If the last one
      // went unanswered, the follower may be down or cut off: send a bare
      // probe rather than up to max_append_bytes of entries every heartbeat.
      bool unanswered = peer.probe_sent;
      peer.probe_sent = false;
      SendAppend(id, peer, /*allow_empty=*/true, /*with_entries=*/!unanswered);
      continue;
    }
    std::optional<Term> match_term = TermAt(peer.match);
    if (!match_term) continue;
    AppendEntries hb;
    hb.term = term_;
    hb.prev_log_index = peer.match;
    hb.prev_log_term = *match_term;
    hb.commit_index = commit_;
    hb.round = round_;
    Send(id, std::move(hb));
  }
}

void Raft::RetransmitStalled() {
  for (auto& [id, peer] : peers_) {
    if (peer.progress == Progress::kReplicate && !peer.inflight.empty() &&
        now_ - peer.last_progress >= 2 * config_.heartbeat_interval) {
      // Messages (or their answers) were lost: start again from what we know it has.
      peer.progress = Progress::kProbe;
      peer.next = peer.match + 1;
      peer.inflight.clear();
      peer.probe_sent = false;
    }
  }
}

bool Raft::MaybeAdvanceCommit() {
  if (config_.faults.commit_without_quorum) {
    Index before = commit_;
    commit_ = std::max(commit_, stable_last_);
    return commit_ > before;
  }
  Index candidate =
      QuorumValue(config_.voters, Quorum(), [&](NodeId id) { return id == config_.id ? stable_last_ : peers_[id].match; });
  if (candidate > commit_ && TermAt(candidate) == term_) {
    commit_ = candidate;
    MaybeCompleteReads();
    return true;
  }
  return false;
}

// ------------------------------------------------------------------ reads

absl::Status Raft::RequestRead(uint64_t id) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(absl::StrCat("server ", config_.id, " is not the leader; leader is ",
                                                      leader_ == 0 ? std::string("unknown") : absl::StrCat(leader_)));
  }
  // Every write acknowledged before now is at or below the true commit index,
  // which is at most max(our commit, the entry before our Initialize).
  Index index = std::max(commit_, term_start_);
  bool round_in_flight = !round_sent_.empty() && round_sent_.rbegin()->first > confirmed_round_;
  pending_reads_.push_back(PendingRead{id, index, round_ + 1});
  if (!round_in_flight) StartReadRound();
  MaybeCompleteReads();
  return absl::OkStatus();
}

void Raft::StartReadRound() { BroadcastHeartbeats(); }

void Raft::MaybeCompleteReads() {
  if (role_ != Role::kLeader) return;
  // The highest round a quorum (ourselves included) has acknowledged.
  uint64_t confirmed =
      config_.faults.read_without_quorum
          ? round_ + 1
          : QuorumValue(config_.voters, Quorum(),
                        [&](NodeId id) { return id == config_.id ? round_ : peers_[id].acked_round; });
  if (confirmed > confirmed_round_) {
    confirmed_round_ = confirmed;
    auto it = round_sent_.find(confirmed);
    if (it != round_sent_.end()) lease_start_ = std::max(lease_start_, it->second);
    round_sent_.erase(round_sent_.begin(), round_sent_.upper_bound(confirmed));
  }
  while (!pending_reads_.empty() && pending_reads_.front().round <= confirmed_round_ &&
         pending_reads_.front().index <= commit_) {
    completed_reads_.push_back(ReadState{pending_reads_.front().id, pending_reads_.front().index, true});
    pending_reads_.pop_front();
  }
  // Reads that arrived after the round in flight was sent need another one.
  bool round_in_flight = !round_sent_.empty() && round_sent_.rbegin()->first > confirmed_round_;
  if (!pending_reads_.empty() && pending_reads_.back().round > round_ && !round_in_flight) StartReadRound();
}

void Raft::FailReads() {
  for (const auto& r : pending_reads_) completed_reads_.push_back(ReadState{r.id, r.index, false});
  pending_reads_.clear();
  round_sent_.clear();
  lease_start_ = -1;
}

std::optional<Index> Raft::LeaseReadIndex() const {
  if (!LeaseValid() || commit_ < term_start_) return std::nullopt;
  return commit_;
}

bool Raft::LeaseValid() const {
  if (role_ != Role::kLeader || !config_.check_quorum || lease_start_ < 0) return false;
  auto lease = static_cast<Micros>(static_cast<double>(config_.election_timeout_min) * (1.0 - config_.max_clock_drift));
  return now_ < lease_start_ + lease;
}

void Raft::CheckQuorum() {
  size_t active = 1;
  for (auto& [id, peer] : peers_) {
    if (IsVoter(id) && peer.recent_active) ++active;
    peer.recent_active = false;
  }
  if (active < Quorum()) {
    spdlog::info("raft {}: lost contact with a quorum in term {}; stepping down", config_.id, term_);
    BecomeFollower(term_, 0);
  }
}

// ------------------------------------------------------------------ output

void Raft::Send(NodeId to, MessageBody body) { outbox_.push_back(Message{config_.id, to, std::move(body)}); }

bool Raft::IsVoter(NodeId id) const {
  return std::find(config_.voters.begin(), config_.voters.end(), id) != config_.voters.end();
}

bool Raft::HasReady() const {
  if (hard_state_dirty_ || pending_write_ || !outbox_.empty() || !completed_reads_.empty()) return true;
  if (!error_.ok()) return false;
  if (role_ != Role::kLeader) return false;
  for (const auto& [id, peer] : peers_) {
    if (peer.progress == Progress::kProbe ? !peer.probe_sent
                                          : peer.inflight.size() < config_.max_inflight && peer.next <= LastIndex()) {
      return true;
    }
  }
  return false;
}

Ready Raft::TakeReady() {
  if (role_ == Role::kLeader) BroadcastAppends();
  Ready r;
  if (hard_state_dirty_) {
    r.hard_state = HardState{term_, voted_for_};
    hard_state_dirty_ = false;
  }
  if (pending_write_) {
    write_entries_hint_ = std::min(std::max(write_entries_hint_, pending_write_->entries.size()),
                                   config_.max_append_entries);
    pending_write_->id = next_write_id_++;
    writes_in_flight_.push_back(WriteInFlight{pending_write_->id, pending_write_->first, pending_write_->last()});
  }
  r.write = std::move(pending_write_);
  pending_write_.reset();
  r.error = error_;
  r.messages = std::move(outbox_);
  outbox_.clear();
  r.reads = std::move(completed_reads_);
  completed_reads_.clear();
  r.commit = commit_;
  r.role = role_;
  r.leader = leader_;
  r.term = term_;
  return r;
}

Status Raft::GetStatus() const {
  return Status{config_.id, role_, term_, leader_, LastIndex(), stable_last_, commit_};
}

}  // namespace caracal::raft

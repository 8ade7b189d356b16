#include "framework/server/apply_loop.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "framework/common/thread_name.h"
#include "serialization/codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr size_t kReadChunkBytes = 4u << 20;
constexpr Index kReadChunkEntries = 4096;
// Routed outcomes are handed on at the end of a batch, or after this many.
constexpr size_t kRoutedBatch = 256;

}  // namespace

ApplyLoop::ApplyLoop(const storage::Log* log, std::unique_ptr<StateMachine> state_machine, NodeId id)
    : log_(log), id_(id), runner_(std::move(state_machine), id, log->FirstIndex() - 1) {}

ApplyLoop::~ApplyLoop() { Stop(); }

void ApplyLoop::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] {
    SetThreadName("caracal-apply");
    Run();
  });
}

void ApplyLoop::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::pair<Index, Waiter>> waiters;
  std::multimap<Index, PendingQuery> queries;
  std::deque<Subscription> subscriptions;
  {
    std::lock_guard lock(mu_);
    waiters_.ForEach([&](Index index, Waiter& w) { waiters.emplace_back(index, std::move(w)); });
    waiters_.Clear();
    queries.swap(queries_);
    subscriptions.swap(subscriptions_);
  }
  for (auto& sub : subscriptions) {
    if (sub.done) sub.done(absl::UnavailableError("server stopped"));
  }
  // The state machine thread is gone: routed_ is this thread's now.
  for (auto& [index, w] : waiters) Deliver(w, Outcome{absl::UnavailableError("server stopped"), index, 0});
  FlushRouted();
  for (auto& [index, q] : queries) q.done(Outcome{absl::UnavailableError("server stopped"), 0, 0});
  // The state machine thread is gone: blocked_ is this thread's now.
  for (auto& q : std::exchange(blocked_, {})) q.done(Outcome{absl::UnavailableError("server stopped"), 0, 0});
}

// ---- WaiterRing ----

ApplyLoop::Waiter* ApplyLoop::WaiterRing::Find(Index index) {
  if (slots_.empty() || index < base_ || index - base_ >= slots_.size()) return nullptr;
  Waiter& w = slots_[index - base_];
  return w.term != 0 ? &w : nullptr;
}

void ApplyLoop::WaiterRing::Put(Index index, Waiter waiter) {
  if (slots_.empty()) base_ = index;
  for (; index < base_; --base_) slots_.push_front(Waiter{});
  while (slots_.size() <= index - base_) slots_.push_back(Waiter{});
  slots_[index - base_] = std::move(waiter);
}

ApplyLoop::Waiter ApplyLoop::WaiterRing::Take(Index index) {
  Waiter* w = Find(index);
  if (w == nullptr) return Waiter{};
  Waiter out = std::move(*w);
  *w = Waiter{};
  while (!slots_.empty() && slots_.front().term == 0) {
    slots_.pop_front();
    ++base_;
  }
  return out;
}

void ApplyLoop::Commit(Index commit) {
  {
    std::lock_guard lock(mu_);
    if (commit <= commit_target_) return;
    commit_target_ = commit;
    commit_times_.emplace_back(commit, NowMicros());
  }
  wake_.notify_one();
}

void ApplyLoop::ExpectResult(Index index, Term term, ResultCallback done) {
  ExpectOutcome(index, term, [done = std::move(done)](Outcome o) { done(ResultString(o.result)); });
}

void ApplyLoop::ExpectOutcome(Index index, Term term, OutcomeCallback done) {
  Expect(index, Waiter{term, std::move(done), Route{}});
}

void ApplyLoop::ExpectRouted(Index index, Term term, Route route) { Expect(index, Waiter{term, nullptr, route}); }

void ApplyLoop::SetRouteSink(RouteSink sink) { route_sink_ = std::move(sink); }

void ApplyLoop::Expect(Index index, Waiter waiter) {
  Waiter failed;
  absl::Status why;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      why = absl::UnavailableError("server stopped");
      failed = std::move(waiter);
    } else if (index <= stats_.applied) {
      // Too late to wait: it would wait forever.
      why = absl::UnavailableError(absl::StrCat("index ", index, " is already applied; its response is gone"));
      failed = std::move(waiter);
    } else if (Waiter* there = waiters_.Find(index)) {
      // A later term proposed at this index: the earlier entry there was
      // replaced (it can no longer be applied); its waiter learns it now.
      why = absl::AbortedError(absl::StrCat("the entry at index ", index, " (term ", there->term,
                                            ") was replaced after a leader change; it was not applied"));
      failed = std::exchange(*there, std::move(waiter));
    } else {
      waiters_.Put(index, std::move(waiter));
      return;
    }
  }
  // Not on the state machine thread: routed_ is not ours.
  if (failed.done) {
    failed.done(Outcome{std::move(why), index, 0});
  } else if (route_sink_) {
    std::vector<RoutedOutcome> one;
    one.push_back(RoutedOutcome{failed.route, Outcome{std::move(why), index, 0}});
    route_sink_(one);
  }
}

void ApplyLoop::Query(uint64_t session, std::string operation, Index min_index, ResultCallback done) {
  QueryOutcome(session, 0, std::move(operation), min_index,
               [done = std::move(done)](Outcome o) { done(ResultString(o.result)); });
}

void ApplyLoop::QueryOutcome(uint64_t session, uint64_t sequence, std::string operation, Index min_index,
                             OutcomeCallback done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      done(Outcome{absl::UnavailableError("server stopped"), 0, 0});
      return;
    }
    queries_.emplace(min_index, PendingQuery{session, sequence, std::move(operation), std::move(done), 0, 0});
  }
  wake_.notify_one();
}

void ApplyLoop::SetQueryWaitTimeout(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  query_wait_us_ = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
}

uint64_t ApplyLoop::AppliedSequence(uint64_t session) const {
  std::lock_guard lock(mu_);
  auto it = applied_sequences_.find(session);
  return it == applied_sequences_.end() ? 0 : it->second;
}

void ApplyLoop::PublishSequences() {
  if (runner_.sequenced().empty()) return;
  {
    std::lock_guard lock(mu_);
    for (uint64_t session : runner_.sequenced()) {
      if (const SessionState* s = runner_.sessions().Find(session)) {
        applied_sequences_[session] = s->last_sequence;
      } else {
        applied_sequences_.erase(session);
      }
    }
  }
  runner_.ClearSequenced();
  if (sequence_listener_) sequence_listener_();
}

void ApplyLoop::SetSequenceListener(std::function<void()> listener) { sequence_listener_ = std::move(listener); }

void ApplyLoop::SetEventSink(EventSink sink) { sink_ = std::move(sink); }

void ApplyLoop::Subscribe(uint64_t session, uint64_t subscriber, Index after,
                          std::function<void(absl::Status)> done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      done(absl::UnavailableError("server stopped"));
      return;
    }
    subscriptions_.push_back(Subscription{session, subscriber, after, std::move(done)});
  }
  wake_.notify_one();
}

void ApplyLoop::Unsubscribe(uint64_t subscriber) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    subscriptions_.push_back(Subscription{0, 0, subscriber, nullptr});
  }
  wake_.notify_one();
}

LeaderDuties ApplyLoop::Duties() const {
  std::lock_guard lock(mu_);
  return duties_;
}

void ApplyLoop::HandleSubscriptions(std::deque<Subscription> subscriptions) {
  for (auto& sub : subscriptions) {
    if (sub.subscriber == 0) {
      uint64_t gone = sub.after;
      std::erase_if(subscribers_, [gone](const auto& kv) { return kv.second == gone; });
      continue;
    }
    if (runner_.sessions().Find(sub.session) == nullptr) {
      subscribers_.erase(sub.session);
      if (sub.session > runner_.applied()) {
        // Its Register entry is not applied here yet: this server lags (or
        // just restarted); that says nothing about the session.
        sub.done(absl::UnavailableError(absl::StrCat("this server has applied up to index ", runner_.applied(),
                                                     " and does not know session ", sub.session, " yet")));
      } else {
        sub.done(SessionNotOpen(sub.session));
      }
      continue;
    }
    subscribers_[sub.session] = sub.subscriber;
    if (sink_) {
      for (const EventBatch& b : runner_.sessions().EventsAfter(sub.session, sub.after)) {
        sink_(sub.subscriber, sub.session, b);
      }
    }
    sub.done(absl::OkStatus());
  }
}

void ApplyLoop::DeliverPublished() {
  std::vector<std::pair<uint64_t, Index>> published = runner_.TakePublished();
  if (published.empty()) return;
  FlushRouted();  // the responses before the events published after them
  for (const auto& [session, index] : published) {
    auto sub = subscribers_.find(session);
    if (sub == subscribers_.end() || !sink_) continue;
    const SessionState* s = runner_.sessions().Find(session);
    if (s == nullptr) continue;
    for (auto b = s->events.rbegin(); b != s->events.rend(); ++b) {
      if (b->index == index) {
        sink_(sub->second, session, *b);
        break;
      }
    }
  }
}

void ApplyLoop::RoleChanged(raft::Role role, Term term, NodeId leader) {
  {
    std::lock_guard lock(mu_);
    role_events_.push_back(RoleEvent{role, term, leader});
  }
  wake_.notify_one();
}

ApplyStats ApplyLoop::Stats() const {
  std::lock_guard lock(mu_);
  ApplyStats s = stats_;
  s.commit_target = commit_target_;
  s.pending_queries = queries_.size() + blocked_count_;
  return s;
}

Index ApplyLoop::applied() const {
  std::lock_guard lock(mu_);
  return stats_.applied;
}

void ApplyLoop::Run() {
  for (;;) {
    Index target;
    std::deque<RoleEvent> roles;
    std::deque<Subscription> subscriptions;
    {
      std::unique_lock lock(mu_);
      auto ready = [&] {
        bool query_ready = !queries_.empty() && queries_.begin()->first <= runner_.applied();
        return stopping_ || commit_target_ > runner_.applied() || query_ready || !role_events_.empty() ||
               !subscriptions_.empty();
      };
      if (blocked_.empty()) {
        wake_.wait(lock, ready);
      } else {
        // Wake up for the first blocked query's deadline too.
        int64_t first = blocked_.front().wait_until;
        for (const auto& q : blocked_) first = std::min(first, q.wait_until);
        wake_.wait_for(lock, std::chrono::microseconds(std::max<int64_t>(0, first - NowMicros()) + 1), ready);
      }
      if (stopping_) return;
      target = commit_target_;
      roles.swap(role_events_);
      subscriptions.swap(subscriptions_);
    }
    for (const auto& r : roles) runner_.SetRole(r.role, r.term, r.leader);
    HandleSubscriptions(std::move(subscriptions));
    if (target > runner_.applied() && !ApplyUpTo(target)) return;
    RunQueries();
  }
}

bool ApplyLoop::ApplyUpTo(Index target) {
  Index before = runner_.applied();
  while (runner_.applied() < target) {
    std::vector<Entry>& entries = read_entries_;
    std::vector<HoleRun>& holes = read_holes_;
    entries.clear();
    holes.clear();
    Index from = runner_.applied() + 1;
    Index to = std::min(target, from + kReadChunkEntries - 1);
    absl::Status s = log_->Read(from, to, kReadChunkBytes, &entries, &holes);
    if (!s.ok()) {
      spdlog::critical("server {}: cannot read committed entries [{}, {}] to apply: {}", id_, from, to,
                       std::string(s.message()));
      FlushRouted();  // what was applied is answered
      PublishSequences();
      return false;
    }
    size_t e = 0, h = 0;
    Index covered = from - 1;
    if (!entries.empty()) covered = std::max(covered, entries.back().index);
    if (!holes.empty()) covered = std::max(covered, holes.back().last);
    for (Index i = from; i <= covered; ++i) {
      if (e < entries.size() && entries[e].index == i) {
        const Entry& entry = entries[e++];
        runner_.ApplyEntry(entry, &responses_);
        {
          std::lock_guard lock(mu_);
          if (entry.type == EntryType::kCommand) ++stats_.commands;
          stats_.applied = i;  // before any response: a caller may read it right after
        }
        for (auto& r : responses_) CompleteWaiter(r.index, r.term, std::move(r.result), r.event_index, r.ran_at);
        if (routed_.size() >= kRoutedBatch) FlushRouted();
        // After the responses: events published at an index follow its response.
        DeliverPublished();
      } else {
        // A compacted (hence released) entry: nothing to apply.
        while (h < holes.size() && holes[h].last < i) ++h;
        runner_.ApplyHole(i);
        CompleteWaiter(i, h < holes.size() ? holes[h].term : 0, absl::AbortedError("compacted"));
      }
    }
    entries.clear();  // drops this chunk's payloads before the next is read
  }
  FlushRouted();
  PublishSequences();
  Index applied = runner_.applied();
  int64_t now = NowMicros();
  std::lock_guard lock(mu_);
  stats_.applied = applied;
  stats_.entries_applied += applied - before;
  ++stats_.batches;
  stats_.timers_fired = runner_.executor().timers_fired();
  stats_.live_commits = runner_.tracker().live();
  duties_.suspects = runner_.SuspectSessions();
  duties_.next_deadline = runner_.NextDeadline();
  duties_.applied = applied;
  while (!commit_times_.empty() && commit_times_.front().first <= applied) {
    double latency = static_cast<double>(now - commit_times_.front().second);
    stats_.apply_latency_max_us = std::max(stats_.apply_latency_max_us, latency);
    stats_.apply_latency_avg_us = stats_.apply_latency_avg_us == 0
                                      ? latency
                                      : 0.9 * stats_.apply_latency_avg_us + 0.1 * latency;
    commit_times_.pop_front();
  }
  return true;
}

void ApplyLoop::CompleteWaiter(Index index, Term term, absl::StatusOr<Bytes> result, Index event_index,
                               Index ran_at) {
  Waiter waiter;
  {
    std::lock_guard lock(mu_);
    // Published before any response at `index` is delivered: whoever has seen
    // a command's result and then asks Info() sees applied >= its index (and
    // may use it as a SEQUENTIAL query's min_index).
    stats_.applied = std::max(stats_.applied, index);
    waiter = waiters_.Take(index);
    if (waiter.term == 0) return;
  }
  if (waiter.term == term) {
    Deliver(waiter, Outcome{std::move(result), ran_at != 0 ? ran_at : index, event_index});
  } else {
    Deliver(waiter, Outcome{absl::AbortedError(absl::StrCat("the entry at index ", index,
                                                            " was replaced after a leader change (term ", waiter.term,
                                                            " -> ", term, "); it was not applied")),
                            index, 0});
  }
}

void ApplyLoop::Deliver(Waiter& waiter, Outcome outcome) {
  if (waiter.done) {
    FlushRouted();  // outcomes leave in apply order, routed or not
    waiter.done(std::move(outcome));
  } else {
    routed_.push_back(RoutedOutcome{waiter.route, std::move(outcome)});
  }
}

void ApplyLoop::FlushRouted() {
  if (routed_.empty()) return;
  if (route_sink_) route_sink_(routed_);
  routed_.clear();
}

void ApplyLoop::RunQueries() {
  int64_t now = NowMicros();
  // Those waiting for their session's commands first: they arrived earlier.
  std::erase_if(blocked_, [&](PendingQuery& q) { return TryQuery(q, now); });
  for (;;) {
    PendingQuery q;
    {
      std::lock_guard lock(mu_);
      // Every query whose state is applied runs, in (index, arrival) order.
      if (queries_.empty() || queries_.begin()->first > runner_.applied()) break;
      q = std::move(queries_.begin()->second);
      queries_.erase(queries_.begin());
      q.since = now;
      q.wait_until = now + query_wait_us_;
    }
    if (!TryQuery(q, now)) blocked_.push_back(std::move(q));
  }
  std::lock_guard lock(mu_);
  blocked_count_ = blocked_.size();
}

bool ApplyLoop::TryQuery(PendingQuery& q, int64_t now) {
  const SessionState* s = q.sequence == 0 ? nullptr : runner_.sessions().Find(q.session);
  bool waiting = q.sequence != 0 && (s != nullptr ? s->last_sequence < q.sequence : q.session > runner_.applied());
  if (!waiting) {
    RunQuery(q);
    return true;
  }
  if (now < q.wait_until) return false;
  q.done(Outcome{absl::UnavailableError(absl::StrCat(
                     "the query waited ", (now - q.since) / 1000, " ms for command ",
                     q.sequence, " of session ", q.session, ", submitted before it, which this server has not applied (",
                     s != nullptr ? absl::StrCat("it applied up to command ", s->last_sequence)
                                  : absl::StrCat("it does not know the session yet; applied index ", runner_.applied()),
                     "): resend the session's pending commands")),
                 0, 0});
  return true;
}

void ApplyLoop::RunQuery(PendingQuery& q) {
  {
    std::lock_guard lock(mu_);
    ++stats_.queries;
  }
  absl::StatusOr<std::string> result = runner_.Query(q.session, q.operation);
  Index event_index = 0;
  if (const SessionState* s = runner_.sessions().Find(q.session)) event_index = s->last_event_index;
  q.done(Outcome{ResultBytes(std::move(result)), runner_.applied(), event_index});
}

}  // namespace caracal::server

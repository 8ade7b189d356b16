#ifndef CARACAL_FRAMEWORK_SERVER_COMMAND_SEQUENCER_H_
#define CARACAL_FRAMEWORK_SERVER_COMMAND_SEQUENCER_H_

// CommandSequencer: the leader puts each session's commands into the log in
// sequence order, before they are proposed (DESIGN.md section 4), so that log
// order is session order and every handler sees strictly increasing commit
// indexes (the Copycat promise: a commit's index is unique and monotonically
// increasing, commands are applied in strict order on every server).
//
// A command (session, s) may be proposed once every earlier command of its
// session is in this leader's log below the new entry. The leader knows that
// of two kinds of command:
//   * the applied ones: s - 1 <= the session's last applied sequence;
//   * the ones it proposed itself in its current term: a leader never loses
//     its own entries while it leads, and when the new entry commits every
//     entry before it commits too.
// Entries of earlier terms that are in the log but not yet applied are not
// counted: a command behind one of them waits until it applies (Applied) or
// until the client resends the predecessor, which is then proposed again and
// answered at apply time from the response cache.
//
// An early arrival (s > logged + 1) is held until its predecessors are logged,
// for at most `hold_timeout` and at most `max_held_per_session` commands per
// session; past either it is refused with Unavailable, which makes a client
// resend everything it has pending, in order. A duplicate (s <= logged) is
// proposed at once: applying it answers from the cache, and it runs once.
// A second copy of a held command replaces the first (refused with Aborted:
// a client only sends a copy once the first one's connection or answer is gone).
//
// Knowledge is per term: Reset() forgets it when leadership is lost or a new
// term begins, and refuses whatever is held.
//
// Invariants: for every session, each held sequence is > logged + 1; held
// items are refused or proposed exactly once. Sans-IO: time is given by the
// caller and it owns no thread; ClientService drives it on the io thread, the
// simulator inline. T is whatever the caller needs to propose and answer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace caracal::server {

struct CommandSequencerOptions {
  int64_t hold_timeout_us = 2'000'000;
  size_t max_held_per_session = 1024;
};

template <typename T>
class CommandSequencer {
 public:
  struct Refused {
    T item;
    absl::Status status;
  };

  explicit CommandSequencer(CommandSequencerOptions options = {}) : options_(options) {}

  // Command `sequence` of `session` arrived at `now`. `applied_sequence()`
  // gives the session's last applied sequence on this server (0 if unknown);
  // it is asked only when this leader's own knowledge does not suffice (the
  // session's first command in this term, or an early one).
  // Appends to *propose what may be proposed now, in order (this command,
  // then held successors it unblocked), and to *refuse what is refused.
  template <typename F>
  void Offer(uint64_t session, uint64_t sequence, F applied_sequence, T item, int64_t now, std::vector<T>* propose,
             std::vector<Refused>* refuse) {
    auto [at, fresh] = sessions_.try_emplace(session);
    State& s = at->second;
    if (fresh || sequence > s.logged + 1) s.logged = std::max<uint64_t>(s.logged, applied_sequence());
    if (sequence <= s.logged + 1) {
      propose->push_back(std::move(item));
      if (sequence == s.logged + 1) {
        s.logged = sequence;
        Drain(s, propose);
      }
      return;
    }
    if (auto it = s.held.find(sequence); it != s.held.end()) {
      refuse->push_back(Refused{std::move(it->second.item),
                                absl::AbortedError(absl::StrCat("command ", sequence, " of session ", session,
                                                                " was replaced by a later copy of it"))});
      it->second = Held{std::move(item), now};
      return;
    }
    if (s.held.size() >= options_.max_held_per_session) {
      refuse->push_back(Refused{std::move(item), NotArrived(session, sequence, s.logged,
                                                            absl::StrCat(s.held.size(), " later commands are waiting"))});
      return;
    }
    s.held.emplace(sequence, Held{std::move(item), now});
    ++held_;
  }

  // The apply loop reports `session`'s last applied sequence: proposes what
  // that unblocks.
  void Applied(uint64_t session, uint64_t applied_sequence, std::vector<T>* propose) {
    auto it = sessions_.find(session);
    if (it == sessions_.end() || applied_sequence <= it->second.logged) return;
    it->second.logged = applied_sequence;
    // A held command the applied state already covers is a duplicate now.
    State& s = it->second;
    while (!s.held.empty() && s.held.begin()->first <= s.logged) {
      propose->push_back(std::move(s.held.begin()->second.item));
      s.held.erase(s.held.begin());
      --held_;
    }
    Drain(s, propose);
  }

  // Refuses what was held since before now - hold_timeout.
  void Expire(int64_t now, std::vector<Refused>* refuse) {
    if (held_ == 0) return;
    // In session order, not hash order: what is refused first must not
    // differ between runs (the simulator replays from its seed).
    for (uint64_t session : HoldingSessions()) {
      State& s = sessions_[session];
      for (auto it = s.held.begin(); it != s.held.end();) {
        if (now - it->second.since < options_.hold_timeout_us) {
          ++it;
          continue;
        }
        refuse->push_back(Refused{std::move(it->second.item),
                                  NotArrived(session, it->first, s.logged,
                                             absl::StrCat("it waited ", (now - it->second.since) / 1000, " ms"))});
        it = s.held.erase(it);
        --held_;
      }
    }
  }

  // Leadership was lost or a new term began: forgets what was logged and
  // refuses everything held with `why`.
  void Reset(const absl::Status& why, std::vector<Refused>* refuse) {
    for (uint64_t session : HoldingSessions()) {
      for (auto& [sequence, h] : sessions_[session].held) refuse->push_back(Refused{std::move(h.item), why});
    }
    sessions_.clear();
    held_ = 0;
  }

  // Forgets sessions that hold nothing and whose last logged command is
  // applied (`applied(session)`: the last applied sequence, 0 if the session
  // is not open): the applied state says as much.
  template <typename F>
  void Prune(F applied) {
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second.held.empty() && it->second.logged <= applied(it->first)) {
        sessions_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  // Sessions that have commands held, in id order.
  std::vector<uint64_t> HoldingSessions() const {
    std::vector<uint64_t> out;
    if (held_ == 0) return out;
    for (const auto& [session, s] : sessions_) {
      if (!s.held.empty()) out.push_back(session);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  size_t held() const { return held_; }
  size_t sessions() const { return sessions_.size(); }
  // The highest sequence of `session` known to be in the log (0: none known).
  uint64_t logged(uint64_t session) const {
    auto it = sessions_.find(session);
    return it == sessions_.end() ? 0 : it->second.logged;
  }

 private:
  struct Held {
    T item;
    int64_t since = 0;
  };
  struct State {
    uint64_t logged = 0;            // every sequence <= this is in the log
    std::map<uint64_t, Held> held;  // by sequence, all > logged + 1
  };

  void Drain(State& s, std::vector<T>* propose) {
    for (auto it = s.held.begin(); it != s.held.end() && it->first == s.logged + 1; it = s.held.erase(it)) {
      propose->push_back(std::move(it->second.item));
      ++s.logged;
      --held_;
    }
  }

  static absl::Status NotArrived(uint64_t session, uint64_t sequence, uint64_t logged, const std::string& detail) {
    return absl::UnavailableError(absl::StrCat("command ", sequence, " of session ", session,
                                               " arrived before command ", logged + 1, " reached this leader (",
                                               detail, "): resend the session's pending commands in order"));
  }

  CommandSequencerOptions options_;
  absl::flat_hash_map<uint64_t, State> sessions_;
  size_t held_ = 0;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_COMMAND_SEQUENCER_H_

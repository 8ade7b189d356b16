#include "framework/server/client_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"

namespace caracal::server {

using namespace serialization;

ClientService::ClientService(boost::asio::io_context& io, ClientServiceOptions options, RaftNode* node,
                             ApplyLoop* apply, transport::TcpTransport* tcp)
    : io_(io),
      options_(std::move(options)),
      node_(node),
      apply_(apply),
      tcp_(tcp),
      alive_(std::make_shared<bool>(true)),
      inbox_(io,
             [this, alive = alive_](RoutedOutcome& routed) {
               if (*alive) OnRoutedOutcome(routed);
             }),
      duty_timer_(io),
      sequencer_(options_.sequencer) {
  if (options_.min_session_timeout_ms == 0) {
    options_.min_session_timeout_ms = 2 * static_cast<uint64_t>(options_.election_timeout.count());
  }
  for (const auto& [id, address] : options_.members) member_list_.push_back(MemberValue{id, address});
}

ClientService::~ClientService() { *alive_ = false; }

void ClientService::Start() {
  if (tcp_ != nullptr) {
    tcp_->SetClientHandler(
        [this](ConnectionId c, ClientRequestValue request) { OnRequest(c, std::move(request)); });
    tcp_->SetClientClosedHandler([this](ConnectionId c, absl::Status) { apply_->Unsubscribe(c); });
    // Runs on the state machine thread: copy the batch and push it from the
    // io thread. Posts keep the apply order, so a connection sees a
    // command's response before the events published at its index.
    apply_->SetRouteSink([this](std::vector<RoutedOutcome>& batch) { inbox_.PostOutcomes(batch); });
    apply_->SetEventSink([this, alive = alive_](uint64_t subscriber, uint64_t session, const EventBatch& batch) {
      PublishEventsValue value{session, batch.index, batch.previous, {}};
      value.events.reserve(batch.events.size());
      for (const auto& e : batch.events) value.events.push_back(EventValue{e.name, e.payload});
      inbox_.Post([this, alive, subscriber, value = std::move(value)] {
        if (!*alive) return;
        absl::Status s = tcp_->PushToClient(subscriber, value);
        if (!s.ok() && !absl::IsNotFound(s)) {
          spdlog::warn("server {}: events for session {} not pushed: {}", options_.id, value.session,
                       std::string(s.message()));
        }
      });
    });
  }
  // A held command's predecessor may apply without any waiter here (it was
  // proposed under an earlier leader): re-check as soon as it does.
  apply_->SetSequenceListener([this, alive = alive_] {
    if (holding_.load(std::memory_order_relaxed)) {
      inbox_.Post([this, alive] {
        if (*alive) ReleaseHeld();
      });
    }
  });
  ScheduleDuties();
}

void ClientService::Stop() {
  *alive_ = false;
  duty_timer_.cancel();
}

bool ClientService::IsLeader() const { return node_->role() == raft::Role::kLeader; }

absl::Status ClientService::NotLeader() const {
  NodeId leader = node_->leader();
  if (leader == 0 || leader == options_.id) {
    return absl::UnavailableError(absl::StrCat("server ", options_.id, " is not the leader and knows no leader"));
  }
  return absl::UnavailableError(absl::StrCat("server ", options_.id, " is not the leader; the leader is ", leader));
}

void ClientService::Respond(ConnectionId connection, uint64_t request_id, absl::Status status,
                            ClientResponseBody body) {
  if (tcp_ == nullptr) return;
  ClientResponseValue response;
  response.request_id = request_id;
  response.status = std::move(status);
  response.leader = node_->leader();
  // The members travel when the client may need somewhere else to go: with
  // errors, and with the answers that open a conversation.
  bool opening = std::holds_alternative<RegisterResult>(body) || std::holds_alternative<std::monostate>(body);
  if (!response.status.ok() || opening) response.members = member_list_;
  if (response.status.ok()) response.body = std::move(body);
  absl::Status s = tcp_->SendToClient(connection, response);
  if (!s.ok() && !absl::IsNotFound(s)) {
    spdlog::warn("server {}: response to request {} not sent: {}", options_.id, request_id,
                 std::string(s.message()));
  }
}

std::function<void(Outcome)> ClientService::OnIo(std::function<void(Outcome)> fn) {
  return [this, alive = alive_, fn = std::move(fn)](Outcome outcome) mutable {
    inbox_.Post([alive, fn = std::move(fn), outcome = std::move(outcome)]() mutable {
      if (*alive) fn(std::move(outcome));
    });
  };
}

void ClientService::ProposeAndWait(EntryType type, std::string payload, std::function<void(Outcome)> done) {
  if (!IsLeader()) {
    done(Outcome{NotLeader(), 0, 0});
    return;
  }
  auto proposed = node_->Propose(type, Bytes(std::move(payload)));
  if (!proposed.ok()) {
    done(Outcome{absl::IsFailedPrecondition(proposed.status()) ? NotLeader() : proposed.status(), 0, 0});
    return;
  }
  apply_->ExpectOutcome(proposed->first, proposed->second, OnIo(std::move(done)));
  FlushSoon();
}

namespace {

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void ClientService::SyncSequencerTerm() {
  Term term = node_->term();
  if (term == sequencer_term_) return;
  sequencer_term_ = term;
  sequencer_.Reset(NotLeader(), &refused_);
}

void ClientService::ProposeCommand(ConnectionId c, uint64_t id, const CommandRequest& command) {
  if (!IsLeader()) return Respond(c, id, NotLeader());
  SyncSequencerTerm();
  uint64_t session = command.session;
  sequencer_.Offer(
      session, command.sequence, [&] { return apply_->AppliedSequence(session); }, SequencedCommand{c, id, command},
      SteadyMicros(), &to_propose_, &refused_);
  ProposeSequenced();
}

void ClientService::AnswerRefused() {
  for (auto& r : refused_) Respond(r.item.connection, r.item.request_id, r.status);
  refused_.clear();
}

void ClientService::ProposeSequenced() {
  AnswerRefused();
  bool failed = false;
  for (SequencedCommand& p : to_propose_) {
    if (failed) {
      Respond(p.connection, p.request_id, NotLeader());
      continue;
    }
    const CommandRequest& command = p.command;
    Bytes entry = EncodeCommandEntry(entries_, command.session, command.sequence, command.operation,
                                     command.acked_sequence);
    auto proposed = node_->Propose(EntryType::kCommand, std::move(entry));
    if (!proposed.ok()) {
      // Not the leader any more: what the sequencer let through after this
      // one must not reach the log either.
      failed = true;
      Respond(p.connection, p.request_id,
              absl::IsFailedPrecondition(proposed.status()) ? NotLeader() : proposed.status());
      continue;
    }
    apply_->ExpectRouted(proposed->first, proposed->second, Route{p.connection, p.request_id});
  }
  bool any = !to_propose_.empty();
  to_propose_.clear();
  if (failed) {
    sequencer_.Reset(NotLeader(), &refused_);
    AnswerRefused();
  }
  holding_.store(sequencer_.held() > 0, std::memory_order_relaxed);
  if (any) FlushSoon();
}

void ClientService::ReleaseHeld() {
  if (!IsLeader() || sequencer_.held() == 0) return;
  SyncSequencerTerm();
  for (uint64_t session : sequencer_.HoldingSessions()) {
    sequencer_.Applied(session, apply_->AppliedSequence(session), &to_propose_);
  }
  ProposeSequenced();
}

void ClientService::SequencerDuties() {
  if (!IsLeader()) {
    sequencer_.Reset(NotLeader(), &refused_);
    sequencer_term_ = 0;
    ProposeSequenced();
    return;
  }
  ReleaseHeld();
  sequencer_.Expire(SteadyMicros(), &refused_);
  // Now and then, forget sessions whose commands all applied.
  if (++duty_runs_ % 32 == 0) sequencer_.Prune([&](uint64_t session) { return apply_->AppliedSequence(session); });
  ProposeSequenced();
}

void ClientService::OnRoutedOutcome(RoutedOutcome& routed) {
  Outcome& o = routed.outcome;
  if (!o.result.ok()) return Respond(routed.route.connection, routed.route.request_id, o.result.status());
  Respond(routed.route.connection, routed.route.request_id, absl::OkStatus(),
          CommandResult{o.index, o.event_index, *std::move(o.result)});
}

void ClientService::FlushSoon() {
  // Everything proposed in this turn of the io loop goes out as one write and
  // one AppendEntries per follower.
  if (flush_posted_) return;
  flush_posted_ = true;
  boost::asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    flush_posted_ = false;
    node_->Flush();
  });
}

void ClientService::OnRequest(ConnectionId c, ClientRequestValue request) {
  uint64_t id = request.request_id;
  std::visit(
      [&](auto& body) {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, ConnectRequest>) {
          Respond(c, id, absl::OkStatus());
        } else if constexpr (std::is_same_v<T, RegisterRequest>) {
          if (body.timeout_ms < options_.min_session_timeout_ms || body.timeout_ms > options_.max_session_timeout_ms) {
            Respond(c, id, absl::InvalidArgumentError(absl::StrCat(
                               "session timeout ", body.timeout_ms, " ms is outside [", options_.min_session_timeout_ms,
                               ", ", options_.max_session_timeout_ms, "] ms")));
            return;
          }
          uint64_t timeout = body.timeout_ms;
          ProposeAndWait(EntryType::kRegister, EncodeRegisterEntry(RegisterEntryValue{body.client_id, timeout}),
                         [this, c, id, timeout](Outcome o) {
                           if (!o.result.ok()) return Respond(c, id, o.result.status());
                           Respond(c, id, absl::OkStatus(), RegisterResult{o.index, timeout});
                         });
        } else if constexpr (std::is_same_v<T, KeepAliveRequest>) {
          if (!IsLeader()) return Respond(c, id, NotLeader());
          keep_alives_.push_back(PendingKeepAlive{c, id, body});
          if (!keep_alive_flush_posted_) {
            keep_alive_flush_posted_ = true;
            boost::asio::post(io_, [this, alive = alive_] {
              if (*alive) FlushKeepAlives();
            });
          }
        } else if constexpr (std::is_same_v<T, UnregisterRequest>) {
          ProposeAndWait(EntryType::kUnregister, EncodeUnregisterEntry(UnregisterEntryValue{body.session, false}),
                         [this, c, id](Outcome o) { Respond(c, id, o.result.status()); });
        } else if constexpr (std::is_same_v<T, CommandRequest>) {
          if (body.session == 0 || body.sequence == 0) {
            return Respond(c, id, absl::InvalidArgumentError("a command needs a session and a sequence number (>= 1)"));
          }
          ProposeCommand(c, id, body);
        } else if constexpr (std::is_same_v<T, QueryRequest>) {
          auto answer = OnIo([this, c, id](Outcome o) {
            if (!o.result.ok()) return Respond(c, id, o.result.status());
            Respond(c, id, absl::OkStatus(), QueryResult{o.index, o.event_index, *std::move(o.result)});
          });
          if (body.consistency == serialization::Consistency::kSequential) {
            apply_->QueryOutcome(body.session, body.sequence, std::move(body.operation), body.index,
                                 std::move(answer));
            return;
          }
          if (!IsLeader()) return Respond(c, id, NotLeader());
          bool lease = body.consistency == serialization::Consistency::kLinearizableLease;
          node_->ReadIndex(lease, [this, alive = alive_, session = body.session, sequence = body.sequence,
                                   min_index = body.index,
                                   operation = std::move(body.operation),
                                   answer = std::move(answer)](absl::StatusOr<Index> index) mutable {
            if (!*alive) return;
            if (!index.ok()) {
              answer(Outcome{absl::UnavailableError(index.status().message()), 0, 0});
              return;
            }
            apply_->QueryOutcome(session, sequence, std::move(operation), std::max(*index, min_index),
                                 std::move(answer));
          });
        } else if constexpr (std::is_same_v<T, ResetEventsRequest>) {
          apply_->Subscribe(body.session, c, body.from_index, [this, alive = alive_, c, id](absl::Status s) {
            inbox_.Post([this, alive, c, id, s = std::move(s)] {
              if (*alive) Respond(c, id, s);
            });
          });
        }
      },
      request.body);
}

void ClientService::FlushKeepAlives() {
  keep_alive_flush_posted_ = false;
  std::vector<PendingKeepAlive> batch = std::exchange(keep_alives_, {});
  if (batch.empty()) return;
  KeepAliveEntryValue entry;
  for (const auto& k : batch) {
    entry.sessions.push_back(
        KeepAliveItemValue{k.request.session, k.request.command_sequence, k.request.event_index});
  }
  ProposeAndWait(EntryType::kKeepAlive, EncodeKeepAliveEntry(entry), [this, batch = std::move(batch)](Outcome o) {
    std::vector<uint64_t> unknown;
    if (o.result.ok()) unknown = DecodeUnknownSessions(o.result->view());
    for (const auto& k : batch) {
      if (!o.result.ok()) {
        Respond(k.connection, k.request_id, o.result.status());
      } else if (std::find(unknown.begin(), unknown.end(), k.request.session) != unknown.end()) {
        Respond(k.connection, k.request_id, SessionNotOpen(k.request.session));
      } else {
        Respond(k.connection, k.request_id, absl::OkStatus());
      }
    }
  });
}

void ClientService::ScheduleDuties() {
  duty_timer_.expires_after(options_.heartbeat_interval);
  duty_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive) return;
    RunDuties();
    ScheduleDuties();
  });
}

void ClientService::RunDuties() {
  SequencerDuties();
  if (!IsLeader()) {
    expiring_.clear();
    time_entry_ = 0;
    return;
  }
  LeaderDuties duties = apply_->Duties();
  auto now = std::chrono::steady_clock::now();
  // Forget proposals that were applied (or are too old: a lost term).
  std::erase_if(expiring_, [&](const auto& kv) {
    return kv.second.first <= duties.applied || now - kv.second.second > 2 * options_.election_timeout;
  });
  for (uint64_t session : duties.suspects) {
    if (expiring_.contains(session)) continue;
    auto proposed =
        node_->Propose(EntryType::kUnregister, Bytes(EncodeUnregisterEntry(UnregisterEntryValue{session, true})));
    if (!proposed.ok()) return;
    expiring_[session] = {proposed->first, now};
    FlushSoon();
    spdlog::info("server {}: session {} stopped keeping alive: proposing its expiry at index {}", options_.id,
                 session, proposed->first);
  }
  if (duties.next_deadline && time_entry_ <= duties.applied) {
    int64_t wall = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    if (wall > *duties.next_deadline && node_->status().raft.last_index <= duties.applied) {
      auto proposed = node_->Propose(EntryType::kTime, Bytes(std::string()));
      if (proposed.ok()) {
        time_entry_ = proposed->first;
        FlushSoon();
      }
    }
  }
}

}  // namespace caracal::server

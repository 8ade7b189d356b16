#include "tests/sim/session_clients.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"

namespace caracal::sim {

using server::EventBatch;
using server::SessionState;
using server::StateMachineRunner;

SessionClients::SessionClients(World* world, ClientOptions options) : world_(world), options_(std::move(options)) {
  if (options_.keep_alive_interval == 0) options_.keep_alive_interval = session_timeout() / 4;
  for (int i = 1; i <= options_.clients; ++i) {
    Client c;
    c.id = i;
    clients_.push_back(std::move(c));
    ClientRecord r;
    r.id = i;
    records_.push_back(std::move(r));
  }
  world_->SetObserver(this);
}

SessionClients::~SessionClients() { world_->SetObserver(nullptr); }

void SessionClients::Start() {
  for (Client& c : clients_) {
    int id = c.id;
    world_->At(world_->now() + static_cast<Micros>(world_->rng()() % std::max<Micros>(1, options_.start_within)),
               [this, id] { StartClient(clients_[id - 1]); });
  }
  if (options_.cut_client_links) ScheduleCut();
  ScheduleServerDuties();
}

void SessionClients::Kill(int client) {
  Client& c = clients_[client - 1];
  if (!c.alive) return;
  c.alive = false;
  records_[client - 1].killed = true;
  records_[client - 1].killed_at = world_->now();
}

Micros SessionClients::Backoff(bool leader_known) {
  // Straight to a leader that was named; slower while nobody knows one.
  return leader_known ? 1'000 + static_cast<Micros>(world_->rng()() % 10'000)
                      : 50'000 + static_cast<Micros>(world_->rng()() % 150'000);
}

NodeId SessionClients::RandomServer() {
  return static_cast<NodeId>(1 + world_->rng()() % static_cast<uint64_t>(world_->options().nodes));
}

bool SessionClients::Retriable(const absl::Status& status) const {
  return absl::IsUnavailable(status) || absl::IsAborted(status);
}

// ------------------------------------------------------------------ network

std::vector<Micros> SessionClients::Delays(int client, NodeId server) {
  const Faults& f = world_->options().faults;
  std::mt19937_64& rng = world_->rng();
  bool faults = world_->faults_on();
  if (faults && cut_.contains({client, server})) return {};
  std::uniform_real_distribution<double> p(0, 1);
  if (faults && p(rng) < f.drop) return {};
  int copies = faults && p(rng) < f.duplicate ? 2 : 1;
  std::vector<Micros> delays;
  for (int i = 0; i < copies; ++i) {
    std::uniform_int_distribution<Micros> d(f.min_delay, faults ? f.max_delay : f.min_delay * 4);
    delays.push_back(d(rng));
  }
  return delays;
}

namespace {

const char* KindName(int kind) {
  static const char* kNames[] = {"register", "keep-alive", "command", "reset-events", "query"};
  return kNames[kind];
}

}  // namespace

void SessionClients::Trace(const Client& c, const std::string& what) const {
  if (options_.trace_client != c.id) return;
  NodeId leader = world_->Leader().value_or(0);
  std::printf("t=%ld client %d (server %lu, leader %lu): %s\n", world_->now(), c.id, c.server, leader, what.c_str());
}

void SessionClients::SendToServer(Client& c, Request request, NodeId server) {
  ++stats_.requests;
  if (server == 0) server = c.server;
  Trace(c, absl::StrCat("send ", KindName(static_cast<int>(request.kind)), " #", request.id, " seq ", request.sequence,
                        " ack ", request.command_sequence, "/", request.event_index, " to server ", server));
  for (Micros delay : Delays(c.id, server)) {
    world_->At(world_->now() + delay, [this, server, request] { OnRequest(server, request); });
  }
}

void SessionClients::SendToClient(int client, NodeId from, std::function<void(Client&)> deliver) {
  for (Micros delay : Delays(client, from)) {
    world_->At(world_->now() + delay, [this, client, deliver] {
      Client& c = clients_[client - 1];
      if (c.alive) deliver(c);
    });
  }
}

void SessionClients::ScheduleCut() {
  world_->At(world_->now() + 200'000 + static_cast<Micros>(world_->rng()() % 1'500'000), [this] {
    if (!world_->faults_on()) return;
    int client = 1 + static_cast<int>(world_->rng()() % clients_.size());
    NodeId server = RandomServer();
    cut_.insert({client, server});
    ++stats_.cuts;
    Micros length = 50'000 + static_cast<Micros>(world_->rng()() % std::max<Micros>(1, options_.max_cut - 50'000));
    Trace(clients_[client - 1], absl::StrCat("cut from server ", server, " for ", length, "us"));
    world_->At(world_->now() + length, [this, client, server] { cut_.erase({client, server}); });
    ScheduleCut();
  });
}

// ------------------------------------------------------------------ servers

namespace {

absl::Status NotLeader(NodeId server, NodeId leader) {
  if (leader == 0 || leader == server) {
    return absl::UnavailableError(absl::StrCat("server ", server, " is not the leader and knows no leader"));
  }
  return absl::UnavailableError(absl::StrCat("server ", server, " is not the leader; the leader is ", leader));
}

}  // namespace

void SessionClients::Answer(NodeId server, const Request& request, absl::Status status, Index index, Index event_index,
                            std::string result) {
  Reply r;
  r.kind = request.kind;
  r.id = request.id;
  r.sequence = request.sequence;
  r.from = server;
  r.status = std::move(status);
  r.leader = world_->Up(server) ? world_->Node(server)->leader() : 0;
  r.index = index;
  r.event_index = event_index;
  r.result = std::move(result);
  SendToClient(request.client, server, [this, r](Client& c) { OnReply(c, r); });
}

void SessionClients::OnRequest(NodeId server, Request request) {
  if (options_.trace_client == request.client) {
    Trace(clients_[request.client - 1],
          absl::StrCat("  server ", server, (world_->Up(server) ? "" : " (down)"), " got ",
                       KindName(static_cast<int>(request.kind)), " #", request.id));
  }
  if (!world_->Up(server)) return;  // a crashed server: the request is lost
  const raft::Raft* node = world_->Node(server);
  bool leader = node->role() == raft::Role::kLeader;
  if (request.kind == Kind::kResetEvents) {
    Subscribe(server, request);
    return;
  }
  if (request.kind == Kind::kQuery) {
    ServeQuery(server, request);
    return;
  }
  if (!leader) {
    Answer(server, request, NotLeader(server, node->leader()));
    return;
  }
  if (request.kind == Kind::kKeepAlive) {
    // Batched with every keep-alive that reaches this leader at the same time.
    keep_alive_batch_[server].push_back(std::move(request));
    if (!keep_alive_flush_posted_[server]) {
      keep_alive_flush_posted_[server] = true;
      world_->At(world_->now(), [this, server] { FlushKeepAlives(server); });
    }
    return;
  }
  if (request.kind == Kind::kCommand) {
    if (options_.skip_sequencer) {
      ProposeSequenced(server, {std::move(request)}, {});
    } else {
      OfferCommand(server, std::move(request));
    }
    return;
  }
  std::string payload = serialization::EncodeRegisterEntry(
      serialization::RegisterEntryValue{absl::StrCat("client-", request.client), options_.session_timeout_ms});
  auto proposed = world_->ProposeAt(server, EntryType::kRegister, std::move(payload));
  if (!proposed.ok()) {
    Answer(server, request, NotLeader(server, node->leader()));
    return;
  }
  // As ApplyLoop::ExpectOutcome: a later waiter at the same index replaces it.
  waiters_[{server, proposed->first}] = Waiter{proposed->second, {std::move(request)}};
}

// ---- commands: the production CommandSequencer, driven as ClientService drives it

SessionClients::SequencerState& SessionClients::Sequencer(NodeId server) {
  return sequencers_.try_emplace(server, options_.sequencer).first->second;
}

// ApplyLoop::AppliedSequence: read straight from the runner (the simulator
// applies on the caller's thread, so there is no published copy to lag).
uint64_t SessionClients::AppliedSequence(NodeId server, uint64_t session) {
  const SessionState* s = world_->Runner(server)->sessions().Find(session);
  return s == nullptr ? 0 : s->last_sequence;
}

// ClientService::SyncSequencerTerm.
void SessionClients::SyncSequencerTerm(NodeId server, Refusals* refused) {
  SequencerState& st = Sequencer(server);
  const raft::Raft* node = world_->Node(server);
  if (node->term() == st.term) return;
  st.term = node->term();
  st.sequencer.Reset(NotLeader(server, node->leader()), refused);
}

// ClientService::ProposeCommand (the caller checked that the server leads).
void SessionClients::OfferCommand(NodeId server, Request request) {
  Refusals refused;
  SyncSequencerTerm(server, &refused);
  SequencerState& st = Sequencer(server);
  std::vector<Request> propose;
  int client = request.client;
  uint64_t id = request.id, session = request.session, sequence = request.sequence;
  st.sequencer.Offer(
      session, sequence, [&] { return AppliedSequence(server, session); }, std::move(request), world_->now(),
      &propose, &refused);
  auto is_it = [&](const Request& r) { return r.client == client && r.id == id; };
  bool held = std::none_of(propose.begin(), propose.end(), is_it) &&
              std::none_of(refused.begin(), refused.end(), [&](const auto& r) { return is_it(r.item); });
  if (held) {
    ++stats_.sequencer_held;
    if (options_.trace_client == client) {
      Trace(clients_[client - 1], absl::StrCat("  server ", server, " holds command ", sequence, " #", id,
                                               " (logged up to ", st.sequencer.logged(session), ")"));
    }
  }
  ProposeSequenced(server, std::move(propose), std::move(refused));
}

// ClientService::ProposeSequenced: refusals first, then the proposals in
// order; once one fails (not the leader any more) the rest must not reach
// the log either, and the sequencer forgets what it knew.
void SessionClients::ProposeSequenced(NodeId server, std::vector<Request> propose, Refusals refused) {
  for (const auto& r : refused) {
    ++stats_.sequencer_refused;
    Answer(server, r.item, r.status);
  }
  bool failed = false;
  for (Request& p : propose) {
    if (failed) {
      Answer(server, p, NotLeader(server, world_->Node(server)->leader()));
      continue;
    }
    auto proposed = world_->ProposeAt(server, EntryType::kCommand,
                                      serialization::EncodeCommandEntry(p.session, p.sequence, p.operation));
    if (!proposed.ok()) {
      failed = true;
      Answer(server, p, NotLeader(server, world_->Node(server)->leader()));
      continue;
    }
    if (options_.trace_client == p.client) {
      Trace(clients_[p.client - 1], absl::StrCat("  server ", server, " proposed command ", p.sequence, " #", p.id,
                                                 " at ", proposed->first, " term ", proposed->second));
    }
    // As ApplyLoop::ExpectRouted: a later waiter at the same index replaces it.
    waiters_[{server, proposed->first}] = Waiter{proposed->second, {std::move(p)}};
  }
  if (failed) {
    Refusals more;
    Sequencer(server).sequencer.Reset(NotLeader(server, world_->Node(server)->leader()), &more);
    for (const auto& r : more) {
      ++stats_.sequencer_refused;
      Answer(server, r.item, r.status);
    }
  }
}

// ClientService::SequencerDuties, on the world's clock.
void SessionClients::SequencerDuties(NodeId server) {
  if (!world_->Up(server) || world_->Runner(server) == nullptr) return;
  SequencerState& st = Sequencer(server);
  Refusals refused;
  std::vector<Request> propose;
  const raft::Raft* node = world_->Node(server);
  if (node->role() != raft::Role::kLeader) {
    st.sequencer.Reset(NotLeader(server, node->leader()), &refused);
    st.term = 0;
  } else {
    SyncSequencerTerm(server, &refused);
    for (uint64_t session : st.sequencer.HoldingSessions()) {
      st.sequencer.Applied(session, AppliedSequence(server, session), &propose);
    }
    st.sequencer.Expire(world_->now(), &refused);
    if (++st.duty_runs % 32 == 0) {
      st.sequencer.Prune([&](uint64_t session) { return AppliedSequence(server, session); });
    }
  }
  ProposeSequenced(server, std::move(propose), std::move(refused));
}

void SessionClients::PostSequencerDuties(NodeId server) {
  if (!duties_posted_.insert(server).second) return;
  world_->At(world_->now(), [this, server] {
    duties_posted_.erase(server);
    SequencerDuties(server);
  });
}

// ClientService runs its duties every heartbeat interval (the simulated
// servers' is 50 ms): the sequencer's, and (ApplyLoop) the query waits.
void SessionClients::ScheduleServerDuties() {
  world_->At(world_->now() + 50'000, [this] {
    for (NodeId id = 1; id <= static_cast<NodeId>(world_->options().nodes); ++id) {
      SequencerDuties(id);
      RunQueries(id);
    }
    ScheduleServerDuties();
  });
}

void SessionClients::FlushKeepAlives(NodeId server) {
  keep_alive_flush_posted_[server] = false;
  std::vector<Request> batch = std::exchange(keep_alive_batch_[server], {});
  if (batch.empty() || !world_->Up(server)) return;
  const raft::Raft* node = world_->Node(server);
  if (node->role() != raft::Role::kLeader) {
    for (const Request& k : batch) Answer(server, k, NotLeader(server, node->leader()));
    return;
  }
  serialization::KeepAliveEntryValue entry;
  for (const Request& k : batch) {
    entry.sessions.push_back(serialization::KeepAliveItemValue{k.session, k.command_sequence, k.event_index});
  }
  auto proposed = world_->ProposeAt(server, EntryType::kKeepAlive, serialization::EncodeKeepAliveEntry(entry));
  if (!proposed.ok()) {
    for (const Request& k : batch) Answer(server, k, NotLeader(server, node->leader()));
    return;
  }
  for (const Request& k : batch) {
    if (options_.trace_client == k.client) {
      Trace(clients_[k.client - 1], absl::StrCat("  server ", server, " proposed keep-alive #", k.id, " at ",
                                                 proposed->first, " term ", proposed->second));
    }
  }
  waiters_[{server, proposed->first}] = Waiter{proposed->second, std::move(batch)};
}

void SessionClients::Subscribe(NodeId server, const Request& request) {
  StateMachineRunner* runner = world_->Runner(server);
  if (runner->sessions().Find(request.session) == nullptr) {
    // Expired -- or this server has not applied the Register yet.
    subscribers_[server].erase(request.session);
    Answer(server, request, server::SessionNotOpen(request.session));
    return;
  }
  // The client moved here: its old connection is closed.
  for (auto& [id, subs] : subscribers_) subs.erase(request.session);
  subscribers_[server][request.session] = request.client;
  for (const EventBatch& b : runner->sessions().EventsAfter(request.session, request.event_index)) {
    Push(server, request.client, request.session, b);
  }
  Answer(server, request, absl::OkStatus());
}

void SessionClients::Push(NodeId server, int client, uint64_t session, const EventBatch& batch) {
  SendToClient(client, server, [this, session, batch](Client& c) { OnBatch(c, session, batch); });
}

// As ClientService answers a query: LINEARIZABLE and LINEARIZABLE_LEASE on
// the leader, at the read index its raft core confirms (a lease read when
// the lease holds), SEQUENTIAL on any server; then, as ApplyLoop, once the
// server applied that index and the session's commands up to the query's
// sequence.
void SessionClients::ServeQuery(NodeId server, const Request& request) {
  if (options_.bug_stale_reads) {
    // The bug: whatever this server has applied, leader or not, with no
    // read index nor the client's index (still after the session's own
    // commands: it is the linearizability check that must catch this).
    WaitForIndex(server, 0, request);
    return;
  }
  if (request.consistency == Consistency::kSequential) {
    WaitForIndex(server, request.min_index, request);
    return;
  }
  const raft::Raft* node = world_->Node(server);
  if (node->role() != raft::Role::kLeader) {
    Answer(server, request, NotLeader(server, node->leader()));
    return;
  }
  if (request.consistency == Consistency::kLinearizableLease) {
    if (std::optional<Index> index = node->LeaseReadIndex()) {
      ++stats_.lease_reads;
      WaitForIndex(server, std::max(*index, request.min_index), request);
      return;
    }
  }
  absl::Status asked = world_->RequestReadAt(server, [this, server, request](const raft::ReadState& read) {
    if (!read.ok) {
      Answer(server, request,
             absl::UnavailableError(absl::StrCat("server ", server, " lost leadership before confirming the read")));
      return;
    }
    WaitForIndex(server, std::max(read.index, request.min_index), request);
  });
  if (!asked.ok()) Answer(server, request, NotLeader(server, world_->Node(server)->leader()));
}

void SessionClients::WaitForIndex(NodeId server, Index index, const Request& request) {
  queries_[server].emplace(index, request);
  RunQueries(server);
}

void SessionClients::RunQueries(NodeId server) {
  StateMachineRunner* runner = world_->Up(server) ? world_->Runner(server) : nullptr;
  if (runner == nullptr) return;
  // Those waiting for their session's commands first: they arrived earlier.
  std::vector<BlockedQuery>& blocked = blocked_queries_[server];
  std::erase_if(blocked, [&](BlockedQuery& q) { return TryQuery(server, q); });
  auto it = queries_.find(server);
  if (it == queries_.end()) return;
  std::multimap<Index, Request>& waiting = it->second;
  Micros wait = options_.query_wait > 0 ? options_.query_wait : options_.request_timeout / 2;
  while (!waiting.empty() && waiting.begin()->first <= runner->applied()) {
    BlockedQuery q{std::move(waiting.begin()->second), world_->now() + wait};
    waiting.erase(waiting.begin());
    if (TryQuery(server, q)) continue;
    ++stats_.queries_waited;
    blocked.push_back(std::move(q));
  }
}

// ApplyLoop::TryQuery.
bool SessionClients::TryQuery(NodeId server, BlockedQuery& q) {
  const Request& r = q.request;
  StateMachineRunner* runner = world_->Runner(server);
  const SessionState* s = r.sequence == 0 ? nullptr : runner->sessions().Find(r.session);
  bool waiting = r.sequence != 0 && (s != nullptr ? s->last_sequence < r.sequence : r.session > runner->applied());
  if (!waiting || options_.bug_query_ignores_sequence) {
    RunQuery(server, r);
    return true;
  }
  if (world_->now() < q.wait_until) return false;
  ++stats_.queries_wait_refused;
  Answer(server, r,
         absl::UnavailableError(absl::StrCat("the query waited for command ", r.sequence, " of session ", r.session,
                                             ", which server ", server, " has not applied (",
                                             s != nullptr ? absl::StrCat("it applied up to command ", s->last_sequence)
                                                          : absl::StrCat("it does not know the session yet"),
                                             "): resend the session's pending commands")));
  return true;
}

void SessionClients::RunQuery(NodeId server, const Request& request) {
  StateMachineRunner* runner = world_->Runner(server);
  absl::StatusOr<std::string> result = runner->Query(request.session, request.operation);
  if (result.ok()) {
    Answer(server, request, absl::OkStatus(), runner->applied(), 0, *std::move(result));
  } else {
    Answer(server, request, result.status());
  }
}

void SessionClients::OnApplied(NodeId server, const Entry& entry,
                               const std::vector<StateMachineRunner::Response>& responses,
                               const std::vector<std::pair<uint64_t, Index>>& published) {
  if (entry.type == EntryType::kUnregister && !first_applied_at_.contains(entry.index)) {
    first_applied_at_[entry.index] = world_->now();
  }
  for (const auto& r : responses) {
    auto it = waiters_.find({server, r.index});
    if (it == waiters_.end()) continue;
    Waiter waiter = std::move(it->second);
    waiters_.erase(it);
    if (waiter.term != r.term) {
      ++stats_.aborted;
      Complete(server, waiter,
               absl::AbortedError(absl::StrCat("the entry at index ", r.index, " was replaced after a leader change")),
               r.index, 0);
    } else {
      Complete(server, waiter, r.result, r.index, r.event_index);
    }
  }
  // After the responses: events published at an index follow its response.
  StateMachineRunner* runner = world_->Runner(server);
  for (const auto& [session, index] : published) {
    auto sub = subscribers_[server].find(session);
    if (sub == subscribers_[server].end()) continue;
    const SessionState* s = runner->sessions().Find(session);
    if (s == nullptr) continue;
    for (auto b = s->events.rbegin(); b != s->events.rend(); ++b) {
      if (b->index == index) {
        Push(server, sub->second, session, *b);
        break;
      }
    }
  }
  RunQueries(server);
  // A held command's predecessor may have applied (ClientService notices at
  // its next duties; sooner here, which is allowed and exercises Applied()).
  if (auto it = sequencers_.find(server); it != sequencers_.end() && it->second.sequencer.held() > 0) {
    PostSequencerDuties(server);
  }
}

void SessionClients::Complete(NodeId server, const Waiter& waiter, const absl::StatusOr<Bytes>& result,
                              Index index, Index event_index) {
  if (waiter.requests.front().kind == Kind::kKeepAlive) {
    std::vector<uint64_t> unknown;
    if (result.ok()) unknown = server::DecodeUnknownSessions(*result);
    for (const Request& k : waiter.requests) {
      if (!result.ok()) {
        Answer(server, k, result.status());
      } else if (std::find(unknown.begin(), unknown.end(), k.session) != unknown.end()) {
        Answer(server, k, server::SessionNotOpen(k.session));
      } else {
        Answer(server, k, absl::OkStatus());
      }
    }
    return;
  }
  const Request& request = waiter.requests.front();
  if (!result.ok()) {
    Answer(server, request, result.status(), index);
  } else {
    Answer(server, request, absl::OkStatus(), index, event_index, std::string(result->view()));
  }
}

void SessionClients::OnCrash(NodeId server) {
  std::erase_if(waiters_, [server](const auto& kv) { return kv.first.first == server; });
  keep_alive_batch_[server].clear();
  subscribers_[server].clear();
  // Its ClientService and ApplyLoop are gone: the sequencer's knowledge and
  // the commands it held, the queries waiting (their clients time out).
  sequencers_.erase(server);
  queries_.erase(server);
  blocked_queries_.erase(server);
}

// ------------------------------------------------------------------ clients

void SessionClients::ArmTimeout(Client& c, std::function<bool(Client&)> still_waiting,
                                std::function<void(Client&)> on_timeout) {
  int id = c.id;
  world_->At(world_->now() + options_.request_timeout, [this, id, still_waiting, on_timeout] {
    Client& c = clients_[id - 1];
    if (c.alive && still_waiting(c)) on_timeout(c);
  });
}

void SessionClients::StartClient(Client& c) {
  if (!c.alive) return;
  c.server = RandomServer();
  SendRegister(c);
  ScheduleKeepAlive(c);
  ScheduleSubmit(c);
}

void SessionClients::SendRegister(Client& c) {
  uint64_t id = c.next_request++;
  c.register_request = id;
  Request r;
  r.kind = Kind::kRegister;
  r.client = c.id;
  r.id = id;
  SendToServer(c, r);
  ArmTimeout(
      c, [id](Client& c) { return c.session == 0 && c.register_request == id; },
      [this](Client& c) {
        SwitchServer(c, 0);
        SendRegister(c);
      });
}

void SessionClients::SendKeepAlive(Client& c) {
  uint64_t id = c.next_request++;
  c.keep_alive_request = id;
  Request r;
  r.kind = Kind::kKeepAlive;
  r.client = c.id;
  r.id = id;
  r.session = c.session;
  r.command_sequence = c.completed;
  r.event_index = c.delivered_events;
  SendToServer(c, r);
  ArmTimeout(
      c, [id](Client& c) { return c.keep_alive_request == id; },
      [this](Client& c) {
        NodeId before = c.server;
        SwitchServer(c, 0);  // resends it if it moved
        if (c.server == before) SendKeepAlive(c);
      });
}

Index SessionClients::ChainEnd(const Client& c) const {
  Index end = c.delivered_events;
  for (auto it = c.batches.find(end); it != c.batches.end(); it = c.batches.find(end)) end = it->second.index;
  return end;
}

void SessionClients::AskResend(Client& c) {
  if (c.session == 0) return;
  uint64_t id = c.next_request++;
  c.reset_request = id;
  ++records_[c.id - 1].resends_asked;
  Request r;
  r.kind = Kind::kResetEvents;
  r.client = c.id;
  r.id = id;
  r.session = c.session;
  r.event_index = ChainEnd(c);
  SendToServer(c, r);
  ArmTimeout(
      c, [id](Client& c) { return c.reset_request == id; }, [](Client& c) { c.reset_request = 0; });
}

void SessionClients::ScheduleKeepAlive(Client& c) {
  int id = c.id;
  Micros jitter = static_cast<Micros>(world_->rng()() % static_cast<uint64_t>(options_.keep_alive_interval / 10 + 1));
  world_->At(world_->now() + options_.keep_alive_interval - jitter, [this, id] {
    Client& c = clients_[id - 1];
    if (!c.alive) return;
    if (c.session != 0) {
      SendKeepAlive(c);
      AskResend(c);  // a push may have been lost on the way
    }
    ScheduleKeepAlive(c);
  });
}

void SessionClients::ScheduleSubmit(Client& c) {
  int id = c.id;
  Micros gap =
      1 + static_cast<Micros>(world_->rng()() % static_cast<uint64_t>(std::max<Micros>(1, options_.command_gap_max)));
  world_->At(world_->now() + gap, [this, id] {
    Client& c = clients_[id - 1];
    if (!c.alive || !submitting_ || !options_.submit_commands) return;
    if (c.session != 0 && options_.make_query && !c.query && c.queued.empty() &&
        std::uniform_real_distribution<double>(0, 1)(world_->rng()) < options_.query_share) {
      StartQuery(c, options_.make_query(world_->rng(), c.id, c.next_query));
    } else if (c.session != 0 && c.outstanding.size() < static_cast<size_t>(options_.window)) {
      uint64_t n = c.next_command++;
      uint64_t sequence = c.next_sequence++;
      std::string operation = options_.make_operation(world_->rng(), c.id, n);
      ClientRecord& rec = records_[c.id - 1];
      rec.operations.push_back(ClientOperation{
          .kind = ClientOperation::Kind::kCommand, .n = n, .operation = operation, .invoked = world_->now()});
      c.outstanding[sequence] = Command{n, std::move(operation), 0, 0, rec.operations.size() - 1};
      ++rec.submitted;
      SendCommand(c, sequence);
    }
    ScheduleSubmit(c);
  });
}

void SessionClients::SendCommand(Client& c, uint64_t sequence) {
  Command& cmd = c.outstanding.at(sequence);
  uint64_t id = c.next_request++;
  cmd.request = id;
  cmd.sent_to = c.server;
  Request r;
  r.kind = Kind::kCommand;
  r.client = c.id;
  r.id = id;
  r.session = c.session;
  r.sequence = sequence;
  r.operation = cmd.operation;
  SendToServer(c, r);
  ArmTimeout(
      c,
      [sequence, id](Client& c) {
        auto it = c.outstanding.find(sequence);
        return it != c.outstanding.end() && it->second.request == id;
      },
      [this, sequence](Client& c) { RetryCommand(c, sequence, 0); });
}

void SessionClients::Resend(Client& c, uint64_t sequence) {
  ++records_[c.id - 1].retries;
  ++stats_.retries;
  if (options_.bug_new_sequence_on_retry) {
    // The bug: the retry is a new command as far as the servers can tell.
    Command cmd = std::move(c.outstanding.at(sequence));
    c.outstanding.erase(sequence);
    c.abandoned.insert(sequence);
    sequence = c.next_sequence++;
    c.outstanding[sequence] = std::move(cmd);
  }
  SendCommand(c, sequence);
}

void SessionClients::ResendLater(Client& c, uint64_t sequence, Micros delay) {
  int id = c.id;
  uint64_t request = c.outstanding.at(sequence).request;
  world_->At(world_->now() + delay, [this, id, sequence, request] {
    Client& c = clients_[id - 1];
    auto it = c.outstanding.find(sequence);
    if (c.alive && it != c.outstanding.end() && it->second.request == request) Resend(c, sequence);
  });
}

void SessionClients::KeepAliveLater(Client& c, Micros delay) {
  int id = c.id;
  uint64_t request = c.keep_alive_request;
  world_->At(world_->now() + delay, [this, id, request] {
    Client& c = clients_[id - 1];
    if (c.alive && c.keep_alive_request == request) SendKeepAlive(c);
  });
}

// After c.server failed a request: the leader a refusal named, else the last
// leader the client heard of (unless that is the server that failed), else
// any other server.
void SessionClients::SwitchServer(Client& c, NodeId hint) {
  NodeId nodes = static_cast<NodeId>(world_->options().nodes);
  if (hint == 0 || hint == c.server || hint > nodes) hint = c.leader != c.server ? c.leader : 0;
  NodeId next = c.server;
  if (hint != 0) {
    next = hint;
  } else if (nodes > 1) {
    next = static_cast<NodeId>(1 + (c.server + world_->rng()() % (nodes - 1)) % nodes);
  }
  if (next == c.server) return;
  Trace(c, absl::StrCat("switch to server ", next));
  c.server = next;
  if (c.session == 0) return;
  // Connected elsewhere: subscribe there, and resend what the old server did
  // not answer (commands with the same sequence numbers).
  AskResend(c);
  Micros delay = Backoff(hint != 0);
  for (const auto& [sequence, cmd] : c.outstanding) {
    if (cmd.sent_to != c.server) ResendLater(c, sequence, delay);
  }
  if (c.keep_alive_request != 0) KeepAliveLater(c, delay);
}

void SessionClients::RetryCommand(Client& c, uint64_t sequence, NodeId hint) {
  auto it = c.outstanding.find(sequence);
  if (it == c.outstanding.end()) return;
  if (it->second.sent_to == c.server) {
    // Its server failed it: move on (which resends it, and the others, there).
    NodeId before = c.server;
    SwitchServer(c, hint);
    if (c.server != before) return;
  }
  // Already moved on (or nowhere else to go): resend here, a little later.
  ResendLater(c, sequence, Backoff(c.leader != 0));
}

void SessionClients::SessionLost(Client& c, const absl::Status& status) {
  ClientRecord& rec = records_[c.id - 1];
  rec.lost = absl::StrCat("t=", world_->now(), "us: told its session ", c.session, " is gone: ", status.ToString());
  c.alive = false;  // a real client would open a new session; this one's history ends here
}

void SessionClients::OnReply(Client& c, const Reply& reply) {
  if (reply.leader != 0) c.leader = reply.leader;
  Trace(c, absl::StrCat("reply ", KindName(static_cast<int>(reply.kind)), " #", reply.id, " seq ", reply.sequence,
                        " from ", reply.from, ": ", reply.status.ToString(), " index ", reply.index, " hint ",
                        reply.leader));
  switch (reply.kind) {
    case Kind::kRegister:
      if (c.session != 0 || reply.id != c.register_request) {
        if (reply.status.ok() && reply.index != c.session) ++stats_.orphan_sessions;
        return;
      }
      if (reply.status.ok()) {
        c.session = reply.index;
        c.seen_index = std::max(c.seen_index, reply.index);
        records_[c.id - 1].session = reply.index;
        AskResend(c);  // subscribe
      } else if (Retriable(reply.status)) {
        SwitchServer(c, reply.leader);
        int id = c.id;
        uint64_t request = reply.id;
        world_->At(world_->now() + Backoff(reply.leader != 0), [this, id, request] {
          Client& c = clients_[id - 1];
          if (c.alive && c.session == 0 && c.register_request == request) SendRegister(c);
        });
      } else {
        records_[c.id - 1].errors.push_back(absl::StrCat("register answered ", reply.status.ToString()));
      }
      return;
    case Kind::kKeepAlive:
      if (absl::IsUnauthenticated(reply.status)) {
        SessionLost(c, reply.status);
      } else if (reply.status.ok()) {
        ++records_[c.id - 1].keep_alives_ok;
        if (reply.id == c.keep_alive_request) c.keep_alive_request = 0;
      } else if (reply.id == c.keep_alive_request) {
        NodeId before = c.server;
        SwitchServer(c, reply.leader);  // resends it if it moved
        if (c.server == before) KeepAliveLater(c, Backoff(false));
      }
      return;
    case Kind::kResetEvents:
      // An error here is no verdict on the session (a lagging server may not
      // know it yet): the keep-alives say whether it is open.
      if (reply.id == c.reset_request) c.reset_request = 0;
      return;
    case Kind::kCommand:
      OnCommandReply(c, reply);
      return;
    case Kind::kQuery:
      OnQueryReply(c, reply);
      return;
  }
}

void SessionClients::OnCommandReply(Client& c, const Reply& reply) {
  auto it = c.outstanding.find(reply.sequence);
  if (it == c.outstanding.end()) return;  // answered already (a retry's answer), or abandoned
  if (reply.status.ok()) {
    c.seen_index = std::max(c.seen_index, reply.index);
    ClientOperation& op = records_[c.id - 1].operations[it->second.record];
    op.outcome = ClientOperation::Outcome::kOk;
    op.completed = world_->now();
    op.result = reply.result;
    c.received[reply.sequence] = Received{it->second.command, reply.index, reply.event_index, reply.result};
    c.outstanding.erase(it);
    Deliver(c);
    return;
  }
  if (absl::IsUnauthenticated(reply.status)) {
    SessionLost(c, reply.status);
    return;
  }
  if (!Retriable(reply.status)) {
    records_[c.id - 1].errors.push_back(
        absl::StrCat("command ", reply.sequence, " answered ", reply.status.ToString()));
  }
  if (reply.id == it->second.request) RetryCommand(c, reply.sequence, reply.leader);
}

// ------------------------------------------------------------------ queries

void SessionClients::SubmitQuery(int client, std::string operation) {
  Client& c = clients_[client - 1];
  if (c.query) {
    c.queued.push_back(std::move(operation));
  } else {
    StartQuery(c, std::move(operation));
  }
}

bool SessionClients::Alive(int client) const {
  const Client& c = clients_[client - 1];
  return c.alive && c.session != 0;
}

// A query goes out while the client's commands may still be in flight: it
// carries the sequence of the last command submitted before it, which the
// server makes it wait for.
void SessionClients::StartQuery(Client& c, std::string operation) {
  Consistency consistency = Consistency::kLinearizable;
  if (options_.mixed_consistency) {
    static constexpr Consistency kLevels[] = {Consistency::kLinearizable, Consistency::kLinearizableLease,
                                              Consistency::kSequential};
    consistency = kLevels[world_->rng()() % 3];
  }
  c.query = QueryState{.n = c.next_query++,
                       .operation = std::move(operation),
                       .consistency = consistency,
                       .sequence = c.next_sequence - 1,
                       .server = QueryServer(c, consistency)};
  SendQuery(c);
}

// LINEARIZABLE (and LEASE): the server the client talks to (a refusal names
// the leader); SEQUENTIAL: that one or, half the time, any server.
NodeId SessionClients::QueryServer(Client& c, Consistency consistency) {
  if (consistency != Consistency::kSequential || world_->rng()() % 2 == 0) return c.server;
  return RandomServer();
}

void SessionClients::SendQuery(Client& c) {
  QueryState& q = *c.query;
  ClientRecord& rec = records_[c.id - 1];
  q.record = rec.operations.size();
  rec.operations.push_back(ClientOperation{.kind = ClientOperation::Kind::kQuery,
                                           .n = q.n,
                                           .operation = q.operation,
                                           .invoked = world_->now(),
                                           .consistency = q.consistency,
                                           .sequence = q.sequence});
  uint64_t id = c.next_request++;
  q.request = id;
  Request r;
  r.kind = Kind::kQuery;
  r.client = c.id;
  r.id = id;
  r.session = c.session;
  r.sequence = q.sequence;
  r.min_index = c.seen_index;
  r.consistency = q.consistency;
  r.operation = q.operation;
  SendToServer(c, r, q.server);
  ArmTimeout(
      c, [id](Client& c) { return c.query && c.query->request == id; },
      [this](Client& c) {
        ++stats_.queries_timed_out;
        RetryQuery(c, ClientOperation::Outcome::kUnknown, 0);
      });
}

// The attempt in flight ended without an answer (`outcome`): a new attempt,
// at the leader a refusal named or else at another server, a little later.
void SessionClients::RetryQuery(Client& c, ClientOperation::Outcome outcome, NodeId hint) {
  QueryState& q = *c.query;
  ClientOperation& op = records_[c.id - 1].operations[q.record];
  op.outcome = outcome;
  op.completed = world_->now();
  q.request = 0;
  NodeId nodes = static_cast<NodeId>(world_->options().nodes);
  if (hint != 0 && hint != q.server && hint <= nodes) {
    q.server = hint;
  } else if (nodes > 1) {
    q.server = static_cast<NodeId>(1 + (q.server + world_->rng()() % (nodes - 1)) % nodes);
  }
  int id = c.id;
  uint64_t n = q.n;
  world_->At(world_->now() + Backoff(hint != 0), [this, id, n] {
    Client& c = clients_[id - 1];
    if (c.alive && c.query && c.query->n == n && c.query->request == 0) SendQuery(c);
  });
}

void SessionClients::OnQueryReply(Client& c, const Reply& reply) {
  if (!c.query || reply.id != c.query->request) return;  // to an attempt given up on
  if (Retriable(reply.status)) {
    ++stats_.queries_refused;
    RetryQuery(c, ClientOperation::Outcome::kRefused, reply.leader);
    if (absl::IsUnavailable(reply.status)) {
      // As the real client on Unavailable: it reconnects and resends every
      // pending command (the query may be waiting for one that was lost).
      Micros delay = Backoff(reply.leader != 0);
      for (const auto& [sequence, cmd] : c.outstanding) ResendLater(c, sequence, delay);
    }
    return;
  }
  ClientOperation& op = records_[c.id - 1].operations[c.query->record];
  op.completed = world_->now();
  if (reply.status.ok()) {
    ++stats_.queries_answered;
    ++stats_.queries_by_level[static_cast<int>(c.query->consistency)];
    c.seen_index = std::max(c.seen_index, reply.index);
    op.outcome = ClientOperation::Outcome::kOk;
    op.result = reply.result;
    op.index = reply.index;
  } else {
    op.outcome = ClientOperation::Outcome::kRefused;
    records_[c.id - 1].errors.push_back(absl::StrCat("query ", c.query->n, " answered ", reply.status.ToString()));
  }
  c.query.reset();
  if (!c.queued.empty()) {
    std::string next = std::move(c.queued.front());
    c.queued.pop_front();
    StartQuery(c, std::move(next));
  }
}

void SessionClients::OnBatch(Client& c, uint64_t session, EventBatch batch) {
  if (session != c.session || batch.index <= c.delivered_events) return;  // not ours, or delivered
  auto it = c.batches.find(batch.previous);
  if (it != c.batches.end()) {
    if (it->second.index != batch.index) {
      records_[c.id - 1].errors.push_back(
          absl::StrCat("batches ", it->second.index, " and ", batch.index, " both follow batch ", batch.previous));
    }
    return;  // a duplicate
  }
  Index index = batch.index;
  c.batches.emplace(batch.previous, std::move(batch));
  if (ChainEnd(c) < index) {
    // A gap before it: ask for everything after the last batch we have.
    ++stats_.gaps;
    if (c.reset_request == 0) AskResend(c);
  }
  Deliver(c);
}

void SessionClients::Deliver(Client& c) {
  ClientRecord& rec = records_[c.id - 1];
  for (;;) {
    while (c.abandoned.contains(c.completed + 1)) ++c.completed;
    uint64_t next = c.completed + 1;
    auto r = c.received.find(next);
    auto b = c.batches.find(c.delivered_events);
    bool deliver_batch = false;
    if (r != c.received.end()) {
      if (c.delivered_events >= r->second.event_index) {
        Delivery d;
        d.kind = Delivery::Kind::kResponse;
        d.at = world_->now();
        d.sequence = next;
        d.command = r->second.command;
        d.index = r->second.index;
        d.event_index = r->second.event_index;
        d.result = std::move(r->second.result);
        rec.delivered.push_back(std::move(d));
        c.received.erase(r);
        c.completed = next;
        ++stats_.responses_delivered;
        continue;
      }
      // The events published before it come first.
      deliver_batch = b != c.batches.end() && b->second.index <= r->second.event_index;
    } else {
      // A command in flight may have run at a batch's index: its response first.
      deliver_batch = next >= c.next_sequence && b != c.batches.end();
    }
    if (!deliver_batch) return;
    Delivery d;
    d.kind = Delivery::Kind::kEvents;
    d.at = world_->now();
    d.index = b->second.index;
    d.previous = b->second.previous;
    d.events = std::move(b->second.events);
    stats_.events_delivered += d.events.size();
    ++stats_.batches_delivered;
    c.delivered_events = d.index;
    rec.delivered.push_back(std::move(d));
    c.batches.erase(b);
  }
}

// ------------------------------------------------------------------ checks

bool SessionClients::Drained() const {
  int nodes = world_->options().nodes;
  Index commit = 0;
  for (NodeId id = 1; id <= static_cast<NodeId>(nodes); ++id) {
    if (!world_->Up(id)) return false;
    commit = std::max(commit, world_->Node(id)->commit());
  }
  for (NodeId id = 1; id <= static_cast<NodeId>(nodes); ++id) {
    if (world_->Applied(id) < commit) return false;
  }
  StateMachineRunner* runner = world_->Runner(1);
  for (const Client& c : clients_) {
    if (!c.alive) continue;
    if (c.session == 0 || !c.outstanding.empty() || !c.received.empty() || c.query || !c.queued.empty()) return false;
    const SessionState* s = runner->sessions().Find(c.session);
    if (s != nullptr && c.delivered_events != s->last_event_index) return false;
  }
  return true;
}

absl::Status SessionClients::Drain(Micros limit) {
  submitting_ = false;
  absl::Status s = world_->RunUntil([this] { return Drained(); }, limit);
  if (absl::IsDeadlineExceeded(s)) {
    std::string detail;
    for (const Client& c : clients_) {
      if (!c.alive) continue;
      absl::StrAppend(&detail, " [client ", c.id, " session ", c.session, ": ", c.outstanding.size(), " unanswered, ",
                      c.received.size(), " undelivered responses, events delivered to ", c.delivered_events, ", ",
                      c.batches.size(), " batches waiting]");
    }
    return absl::DeadlineExceededError(
        absl::StrCat("drain: clients not done ", limit / 1000, " ms after healing:", detail));
  }
  return s;
}

absl::Status SessionClients::Replay() {
  int nodes = world_->options().nodes;
  NodeId longest = 1;
  for (NodeId id = 2; id <= static_cast<NodeId>(nodes); ++id) {
    if (world_->Applied(id) > world_->Applied(longest)) longest = id;
  }
  std::map<uint64_t, int> owner;
  for (const ClientRecord& r : records_) {
    if (r.session != 0) owner[r.session] = r.id;
  }
  replayed_from_ = longest;
  replay_ = world_->NewRunner();
  published_.clear();
  ran_at_.clear();
  expiry_delays_.clear();
  // Evidence that a session was kept alive, as the sim times their entries
  // were proposed: its Register and KeepAlive entries, and every Initialize.
  std::map<uint64_t, Micros> kept_alive;
  Micros initialized = 0;
  for (Index i = 1; i <= world_->Applied(longest); ++i) {
    const SimDisk::Item* item = world_->Disk(longest).At(i);
    if (item == nullptr) return absl::InternalError(absl::StrCat("replay: server ", longest, " lacks index ", i));
    if (item->hole) {
      replay_->ApplyHole(i);
      continue;
    }
    const Entry& entry = item->entry;
    const server::SessionTable& sessions = replay_->sessions();
    std::optional<Micros> proposed = world_->ProposedAt(i, entry.term);
    if (!proposed) return absl::InternalError(absl::StrCat("replay: nobody proposed index ", i, " term ", entry.term));
    if (entry.type == EntryType::kRegister) kept_alive[i] = *proposed;
    if (entry.type == EntryType::kInitialize) initialized = *proposed;
    if (entry.type == EntryType::kKeepAlive) {
      auto k = serialization::DecodeKeepAliveEntry(entry.payload.view());
      if (k.ok()) {
        for (const auto& named : k->sessions) kept_alive[named.session] = *proposed;
      }
    }
    // Before: what the entry may change.
    std::optional<serialization::UnregisterEntryValue> unregister;
    LogTime keep_alive = 0;
    if (entry.type == EntryType::kUnregister) {
      auto u = serialization::DecodeUnregisterEntry(entry.payload.view());
      if (u.ok() && sessions.Find(u->session) != nullptr) {
        unregister = *u;
        keep_alive = sessions.Find(u->session)->keep_alive;
      }
    }
    std::optional<serialization::CommandEntryValue> command;
    server::SessionTable::Order order = server::SessionTable::Order::kUnknownSession;
    if (entry.type == EntryType::kCommand) {
      auto c = serialization::DecodeCommandEntry(entry.payload.view());
      if (c.ok() && c->session != 0) {
        command = *c;
        order = sessions.Classify(c->session, c->sequence);
      }
    }
    replay_->ApplyEntry(entry);
    // After: events, commands run, sessions gone.
    for (const auto& [session, index] : replay_->TakePublished()) {
      const SessionState* s = sessions.Find(session);
      if (!owner.contains(session) || s == nullptr) continue;
      for (const EventBatch& b : s->events) {
        if (b.index == index) published_[session].push_back(b);
      }
    }
    if (command) {
      // Only the next command of its session runs; a duplicate is answered
      // from the cache; an early one (ahead of its predecessor: a leader let
      // it into the log too soon) is refused.
      if (order == server::SessionTable::Order::kDuplicate) ++stats_.duplicates;
      if (order == server::SessionTable::Order::kEarly) ++stats_.early_refused;
      if (order == server::SessionTable::Order::kNext &&
          !ran_at_.emplace(std::make_pair(command->session, command->sequence), i).second) {
        return absl::InternalError(absl::StrCat("exactly once: command ", command->sequence, " of session ",
                                                command->session, " ran at index ",
                                                ran_at_[{command->session, command->sequence}],
                                                " and again at index ", i));
      }
    }
    if (unregister && sessions.Find(unregister->session) == nullptr) {
      uint64_t session = unregister->session;
      if (unregister->expired) ++stats_.expired_sessions;
      auto o = owner.find(session);
      if (o == owner.end()) continue;  // an orphan (a retried Register) or never used
      const ClientRecord& rec = records_[o->second - 1];
      Micros at = first_applied_at_.contains(i) ? first_applied_at_.at(i) : -1;
      std::string what =
          absl::StrCat("session ", session, " of client ", rec.id, " was ", unregister->expired ? "expired" : "closed",
                       " at index ", i, " (log time ", entry.timestamp, ", last keep-alive at ", keep_alive,
                       ", timeout ", session_timeout(), ", first applied at t=", at, "us)");
      if (!rec.killed || at < rec.killed_at) {
        // Proposed this long after the last sign of life in the log: the
        // framework may expire the session only if, on the leader's clock,
        // more than a timeout passed since then (a KeepAlive stamps its
        // session, an Initialize every session).
        Micros silence = *proposed - std::max(kept_alive[session], initialized);
        double drift = world_->options().faults.clock_drift;
        Micros allowed = static_cast<Micros>(static_cast<double>(session_timeout()) / (1.0 + drift)) - kClockSlack;
        absl::StrAppend(&what, ", proposed ", silence, "us after its last keep-alive or leader change");
        if (!options_.excuse_unreachable_expiry || silence <= allowed) {
          return absl::InternalError(absl::StrCat("no expiry of live sessions: ", what, " while its client was alive"));
        }
        // The client's keep-alives did not get through for a whole timeout
        // (loss, cuts, crashes): expiring it was right.
        ++stats_.expired_unreachable;
        records_[o->second - 1].expiry_excused = what;
        continue;
      }
      if (!unregister->expired) return absl::InternalError(absl::StrCat("nobody closed it: ", what));
      expiry_delays_[session] = entry.timestamp - keep_alive;
    }
  }
  return absl::OkStatus();
}

absl::Status SessionClients::CheckReleases() const {
  // What the session layer must keep in the log: open sessions' Register and
  // latest KeepAlive entries, unacknowledged event batches.
  std::set<Index> needed;
  for (const auto& [id, s] : replay_->sessions().sessions()) {
    needed.insert(id);
    if (s.keep_alive_index != 0) needed.insert(s.keep_alive_index);
    for (const EventBatch& b : s.events) needed.insert(b.index);
  }
  const server::ReleaseTracker& tracker = replay_->tracker();
  for (Index i = 1; i <= tracker.applied(); ++i) {
    bool live = !tracker.IsReleased(i);
    if (live == needed.contains(i)) continue;
    std::string what = "?";
    if (const SimDisk::Item* item = world_->Disk(replayed_from_).At(i); item != nullptr && !item->hole) {
      what = EntryTypeName(item->entry.type);
      if (item->entry.type == EntryType::kCommand) {
        if (auto c = serialization::DecodeCommandEntry(item->entry.payload.view()); c.ok()) {
          absl::StrAppend(&what, " (session ", c->session, ", sequence ", c->sequence, ")");
        }
      }
    }
    return absl::InternalError(
        absl::StrCat("release tracking: after replaying ", tracker.applied(), " entries, entry ", i, ", a ", what,
                     live ? " is still held though no session needs it (it can never be compacted)"
                          : " is released though a session still needs it (compaction would lose it)"));
  }
  return absl::OkStatus();
}

absl::Status SessionClients::CheckClient(const ClientRecord& rec) const {
  std::string who = absl::StrCat("client ", rec.id, " (session ", rec.session, ")");
  if (!rec.errors.empty()) return absl::InternalError(absl::StrCat(who, ": ", rec.errors.front()));
  if (rec.session == 0) {
    if (rec.killed) return absl::OkStatus();
    return absl::InternalError(absl::StrCat(who, " never registered"));
  }
  if (!rec.lost.empty() && rec.expiry_excused.empty()) return absl::InternalError(absl::StrCat(who, ": ", rec.lost));
  // Its history ends early if it was killed or its session expired (legitimately).
  bool ended = rec.killed || !rec.expiry_excused.empty();
  if (!ended && replay_->sessions().Find(rec.session) == nullptr) {
    return absl::InternalError(absl::StrCat(who, ": its session is not open at the end of the log"));
  }
  // Events: exactly the batches the log published to the session, in order.
  static const std::vector<EventBatch> kNone;
  auto p = published_.find(rec.session);
  const std::vector<EventBatch>& expected = p == published_.end() ? kNone : p->second;
  size_t batches = 0;
  uint64_t last_sequence = 0;
  uint64_t responses = 0;
  for (size_t k = 0; k < rec.delivered.size(); ++k) {
    const Delivery& d = rec.delivered[k];
    if (d.kind == Delivery::Kind::kEvents) {
      if (batches >= expected.size()) {
        return absl::InternalError(
            absl::StrCat(who, ": delivered event batch ", d.index, " which the log never published to it (or twice)"));
      }
      const EventBatch& e = expected[batches];
      if (d.index != e.index || d.previous != e.previous || d.events != e.events) {
        return absl::InternalError(absl::StrCat(who, ": its event batch #", batches + 1, " was ", d.index, "<",
                                                d.previous, " (", d.events.size(), " events) where the log has ",
                                                e.index, "<", e.previous, " (", e.events.size(), " events)"));
      }
      ++batches;
      continue;
    }
    // A response: in sequence order, after exactly the batches before the
    // index the command ran at, before every later one.
    if (d.sequence <= last_sequence || (!options_.bug_new_sequence_on_retry && d.sequence != last_sequence + 1)) {
      return absl::InternalError(
          absl::StrCat(who, ": delivered the response to command ", d.sequence, " after that to ", last_sequence));
    }
    last_sequence = d.sequence;
    ++responses;
    auto ran = ran_at_.find({rec.session, d.sequence});
    if (ran == ran_at_.end()) {
      return absl::InternalError(
          absl::StrCat(who, ": got a response to command ", d.sequence, " which the log never ran"));
    }
    size_t before = 0;
    while (before < expected.size() && expected[before].index < ran->second) ++before;
    if (batches != before) {
      return absl::InternalError(absl::StrCat(
          who, ": delivered the response to command ", d.sequence, " (run at index ", ran->second, ", event index ",
          d.event_index, ") after ", batches, " event batches; the log has ", before, " before that index"));
    }
    if (batches > 0 && expected[batches - 1].index > d.event_index) {
      return absl::InternalError(absl::StrCat(who, ": the response to command ", d.sequence, " says event index ",
                                              d.event_index, " but batch ", expected[batches - 1].index,
                                              " precedes it"));
    }
  }
  if (!ended && batches != expected.size()) {
    return absl::InternalError(absl::StrCat(who, ": delivered ", batches, " event batches of the ", expected.size(),
                                            " the log published to it (next: index ", expected[batches].index, ")"));
  }
  const Client& c = clients_[rec.id - 1];
  if (!ended && responses + c.abandoned.size() + 1 != c.next_sequence) {
    return absl::InternalError(absl::StrCat(who, ": used ", c.next_sequence - 1, " sequence numbers (",
                                            c.abandoned.size(), " abandoned), delivered ", responses, " responses"));
  }
  return absl::OkStatus();
}

absl::Status SessionClients::CheckHistories() {
  if (absl::Status s = Replay(); !s.ok()) return s;
  if (options_.check_releases) {
    if (absl::Status s = CheckReleases(); !s.ok()) return s;
  }
  for (const ClientRecord& rec : records_) {
    if (absl::Status s = CheckClient(rec); !s.ok()) return s;
    if (absl::Status s = CheckQueries(rec); !s.ok()) return s;
  }
  return absl::OkStatus();
}

namespace {

const char* ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kLinearizable:
      return "LINEARIZABLE";
    case Consistency::kLinearizableLease:
      return "LINEARIZABLE_LEASE";
    case Consistency::kSequential:
      return "SEQUENTIAL";
  }
  return "?";
}

}  // namespace

// A session's query sees its earlier commands (DESIGN.md section 4): every
// command the client submitted before the query that ran at all ran at or
// below the index the query read at, at every consistency level.
absl::Status SessionClients::CheckQueries(const ClientRecord& rec) const {
  for (const ClientOperation& op : rec.operations) {
    if (op.kind != ClientOperation::Kind::kQuery || op.outcome != ClientOperation::Outcome::kOk) continue;
    for (uint64_t sequence = op.sequence; sequence >= 1; --sequence) {
      auto ran = ran_at_.find({rec.session, sequence});
      if (ran == ran_at_.end() || ran->second <= op.index) continue;
      return absl::InternalError(absl::StrCat(
          "query ordering: client ", rec.id, " (session ", rec.session, "): its query ", op.n, " (",
          ConsistencyName(op.consistency), ", invoked at t=", op.invoked, "us after command ", op.sequence,
          ") read the state at index ", op.index, ", but its command ", sequence, ", submitted before it, ran at index ",
          ran->second));
    }
  }
  return absl::OkStatus();
}

}  // namespace caracal::sim

#ifndef CARACAL_FRAMEWORK_SERVER_CLIENT_SERVICE_H_
#define CARACAL_FRAMEWORK_SERVER_CLIENT_SERVICE_H_

// ClientService: a server's side of the client protocol
// (serialization/client_protocol.h), and the leader's session duties.
//
// Requests arrive on client connections of the TcpTransport and are answered
// on the same connection:
//
//   connect      OK, with the leader and the members (any server).
//   register     proposes a Register entry; answers the session id (= its
//                index) once applied. Leader only.
//   keepAlive    batched: every keep-alive that arrives in one turn of the io
//                loop goes into one KeepAlive entry; each is answered once it
//                is applied (Unauthenticated for a session that is not open).
//                Leader only.
//   unregister   proposes an Unregister entry. Leader only.
//   command      proposes a Command entry (session, sequence, operation);
//                answers {index, event index, result} once applied. Leader
//                only. A session's commands enter the log in sequence order
//                (CommandSequencer): one that arrives before its predecessor
//                is held, bounded, until the predecessor arrives or applies.
//   query        LINEARIZABLE / LINEARIZABLE_LEASE: read index on the leader;
//                SEQUENTIAL: any server, once it applied the client's index.
//                Either way it runs only once its session applied every
//                command submitted before it (the request's sequence).
//   resetEvents  makes this connection the session's event channel and
//                resends every stored batch after `from_index`; new batches
//                are then pushed as they are applied (after the response of
//                the command that published them).
//
// Status codes the client library acts on: Unavailable (this server cannot
// serve it — not the leader, no leader, stopping: go elsewhere, the response
// names the leader when known), Aborted (the entry was replaced after a
// leader change: retry), Unauthenticated (the session is not open). Every
// other code is the operation's own outcome.
//
// Leader duties, checked every heartbeat interval while this server leads:
// an Unregister{expired} for each suspect session (once per election
// timeout at most), and a Time entry when the wall clock passed the
// earliest timer or session deadline and nothing is in flight (so an idle
// cluster's log time still moves: DESIGN.md section 4).
//
// Threading: everything runs on the io thread, except the ApplyLoop
// callbacks, which queue their work for it in an IoInbox (one wake-up per
// applied batch, and responses and events stay in apply order).

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "framework/server/apply_loop.h"
#include "framework/server/command_sequencer.h"
#include "framework/server/io_inbox.h"
#include "framework/server/raft_node.h"
#include "framework/transport/tcp_transport.h"
#include "serialization/client_protocol.h"

namespace caracal::server {

struct ClientServiceOptions {
  NodeId id = 0;
  std::map<NodeId, std::string> members;
  std::chrono::milliseconds election_timeout{300};
  std::chrono::milliseconds heartbeat_interval{50};
  uint64_t min_session_timeout_ms = 0;  // 0: 2 x the election timeout
  uint64_t max_session_timeout_ms = 24ull * 3600 * 1000;
  CommandSequencerOptions sequencer;
};

class ClientService {
 public:
  // `tcp` may be null (embedded mode): then only the leader duties run.
  ClientService(boost::asio::io_context& io, ClientServiceOptions options, RaftNode* node, ApplyLoop* apply,
                transport::TcpTransport* tcp);
  ~ClientService();
  ClientService(const ClientService&) = delete;
  ClientService& operator=(const ClientService&) = delete;

  // Installs the handlers and starts the duty timer (io thread, or before it runs).
  void Start();
  // Cancels the timer; later callbacks do nothing (io thread).
  void Stop();

 private:
  using ConnectionId = transport::ClientConnectionId;
  struct SequencedCommand {
    ConnectionId connection;
    uint64_t request_id;
    serialization::CommandRequest command;
  };
  struct PendingKeepAlive {
    ConnectionId connection;
    uint64_t request_id;
    serialization::KeepAliveRequest request;
  };

  void OnRequest(ConnectionId connection, serialization::ClientRequestValue request);
  void Respond(ConnectionId connection, uint64_t request_id, absl::Status status,
               serialization::ClientResponseBody body = std::monostate{});
  // Proposes an entry and calls `done` (io thread) with its outcome.
  void ProposeAndWait(EntryType type, std::string payload, std::function<void(Outcome)> done);
  // A command: encoded into entries_ and answered through a Route (the hot
  // path: no allocation of its own).
  void ProposeCommand(ConnectionId connection, uint64_t request_id, const serialization::CommandRequest& command);
  // Proposes what the sequencer let through and answers what it refused.
  void ProposeSequenced();
  void AnswerRefused();
  // A new term (or leadership lost): the sequencer forgets what it knew.
  void SyncSequencerTerm();
  // Re-checks held commands against what was applied; refuses stale ones.
  void SequencerDuties();
  // Proposes the held commands that what was applied lets go.
  void ReleaseHeld();
  // A routed outcome (a command's) arrived on the io thread.
  void OnRoutedOutcome(RoutedOutcome& routed);
  // Runs `fn` on the io thread later, unless the service stopped.
  std::function<void(Outcome)> OnIo(std::function<void(Outcome)> fn);
  void FlushKeepAlives();
  void FlushSoon();
  void ScheduleDuties();
  void RunDuties();
  bool IsLeader() const;
  absl::Status NotLeader() const;

  boost::asio::io_context& io_;
  ClientServiceOptions options_;
  RaftNode* node_;
  ApplyLoop* apply_;
  transport::TcpTransport* tcp_;
  std::shared_ptr<bool> alive_;
  IoInbox inbox_;  // the state machine thread's responses and events, in apply order
  BytesArena entries_;  // command entries proposed on the io thread
  boost::asio::steady_timer duty_timer_;
  std::vector<PendingKeepAlive> keep_alives_;
  bool keep_alive_flush_posted_ = false;
  bool flush_posted_ = false;
  std::map<uint64_t, std::pair<Index, std::chrono::steady_clock::time_point>> expiring_;  // session -> proposal
  Index time_entry_ = 0;  // the last Time entry proposed (done once applied)
  std::vector<serialization::MemberValue> member_list_;
  CommandSequencer<SequencedCommand> sequencer_;
  Term sequencer_term_ = 0;
  // sequencer_.held() > 0, for the state machine thread: only then does an
  // applied batch wake the io thread to re-check (ReleaseHeld).
  std::atomic<bool> holding_{false};
  uint64_t duty_runs_ = 0;
  std::vector<SequencedCommand> to_propose_;  // reused
  std::vector<CommandSequencer<SequencedCommand>::Refused> refused_;  // reused
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_CLIENT_SERVICE_H_

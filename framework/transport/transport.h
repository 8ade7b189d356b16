#ifndef CARACAL_FRAMEWORK_TRANSPORT_TRANSPORT_H_
#define CARACAL_FRAMEWORK_TRANSPORT_TRANSPORT_H_

// The interface the raft driver uses to exchange raft::Messages with the other
// servers. Two implementations: TcpTransport (production, Boost.Asio sockets)
// and InMemoryTransport (tests and embedded clusters in one process).
//
// Delivery contract (what raft needs and nothing more): best effort, no
// duplicates introduced by the transport itself, and messages from one sender
// to one receiver arrive in the order they were sent *while a connection
// lasts*. A transport may drop any message (peer unreachable, queue full,
// connection broken mid-write, partitioned); raft retransmits, so Send never
// blocks and never reports an error.

#include <cstdint>
#include <functional>

#include "framework/raft/message.h"

namespace caracal::transport {

// Counters since construction. Every field only grows.
struct TransportStats {
  uint64_t messages_sent = 0;       // raft messages handed to the wire (a completed socket write) or posted
  uint64_t messages_received = 0;   // raft messages delivered to the handler
  uint64_t bytes_sent = 0;          // wire bytes written, framing and Hello frames included
  uint64_t bytes_received = 0;      // wire bytes read
  uint64_t messages_dropped = 0;    // full queue, unknown peer, partition, broken connection, no handler, closed
  uint64_t connects = 0;            // outbound connections established
  uint64_t connect_failures = 0;    // outbound resolve/connect attempts that failed
  uint64_t accepts = 0;             // inbound connections accepted
  uint64_t rejected_connections = 0;  // inbound connections closed for a protocol violation or over the cap
  uint64_t decode_errors = 0;       // malformed frames (bad header, bad Cap'n Proto, unknown kind, bad version)
  // Client connections (TcpTransport only). Their rejections and decode
  // errors are counted above too; messages_* count raft messages only.
  uint64_t client_accepts = 0;           // inbound connections that said a client Hello
  uint64_t client_requests = 0;          // client requests delivered to the client handler
  uint64_t client_frames_sent = 0;       // responses and event batches whose write completed
  uint64_t client_queue_overflows = 0;   // client connections closed because their queue was full
};

class Transport {
 public:
  using MessageHandler = std::function<void(raft::Message)>;

  virtual ~Transport() = default;

  // Queues `message` for `message.to`. Fire-and-forget: may drop (and count)
  // the message; never blocks. A message addressed to this node itself is
  // delivered to the handler later (posted), never from inside Send.
  virtual void Send(raft::Message message) = 0;

  // The handler receives every message that arrives, on the transport's
  // thread. Messages arriving while no handler is set are dropped.
  virtual void SetHandler(MessageHandler handler) = 0;

  virtual TransportStats Stats() const = 0;
};

}  // namespace caracal::transport

#endif  // CARACAL_FRAMEWORK_TRANSPORT_TRANSPORT_H_

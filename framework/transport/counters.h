#ifndef CARACAL_FRAMEWORK_TRANSPORT_COUNTERS_H_
#define CARACAL_FRAMEWORK_TRANSPORT_COUNTERS_H_

// Internal: the live counters behind Transport::Stats().

#include <atomic>
#include <cstdint>

#include "framework/transport/transport.h"

namespace caracal::transport::internal {

// Atomic so that Stats() may be read from any thread while the transport's
// own thread (or, for the in-memory transport, a sender's thread) updates
// them. Relaxed: they are statistics, not synchronization.
struct Counters {
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> messages_received{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> messages_dropped{0};
  std::atomic<uint64_t> connects{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> accepts{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> decode_errors{0};
  std::atomic<uint64_t> client_accepts{0};
  std::atomic<uint64_t> client_requests{0};
  std::atomic<uint64_t> client_frames_sent{0};
  std::atomic<uint64_t> client_queue_overflows{0};

  static void Add(std::atomic<uint64_t>& counter, uint64_t n = 1) { counter.fetch_add(n, std::memory_order_relaxed); }

  TransportStats Snapshot() const {
    auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
    TransportStats s;
    s.messages_sent = get(messages_sent);
    s.messages_received = get(messages_received);
    s.bytes_sent = get(bytes_sent);
    s.bytes_received = get(bytes_received);
    s.messages_dropped = get(messages_dropped);
    s.connects = get(connects);
    s.connect_failures = get(connect_failures);
    s.accepts = get(accepts);
    s.rejected_connections = get(rejected_connections);
    s.decode_errors = get(decode_errors);
    s.client_accepts = get(client_accepts);
    s.client_requests = get(client_requests);
    s.client_frames_sent = get(client_frames_sent);
    s.client_queue_overflows = get(client_queue_overflows);
    return s;
  }
};

}  // namespace caracal::transport::internal

#endif  // CARACAL_FRAMEWORK_TRANSPORT_COUNTERS_H_

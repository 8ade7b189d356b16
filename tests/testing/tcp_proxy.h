#ifndef CARACAL_TESTS_TESTING_TCP_PROXY_H_
#define CARACAL_TESTS_TESTING_TCP_PROXY_H_

// A loopback TCP forwarder a test controls: the network between real
// processes, with partitions and delays the test turns on and off.
//
//   auto proxy = TcpProxy::Start(server_port);   // listens on 127.0.0.1:<ephemeral>
//   ... give processes proxy->address() instead of the server's ...
//   proxy->Block();            // the link is cut: connections reset, new ones closed at once
//   proxy->Unblock();          // healed: new connections go through again
//   proxy->SetDelay(50ms);     // every byte arrives 50 ms after it was sent
//
// Each accepted connection gets its own connection to 127.0.0.1:<target>,
// made when it is accepted (a target that is down closes the accepted side:
// to the connecting process it looks like a reset). Bytes are forwarded both
// ways, in order, as they come; a connection ends (both sides closed) when
// either side ends it, once what was read from that side went out.
//
// Two ways to cut a link:
//   kReset     every open connection is closed now and new ones are accepted
//              and closed at once: a peer notices immediately (connection
//              refused / reset). This is what Block() does by default.
//   kBlackhole open connections stay open but whatever arrives on them is
//              read and dropped, in both directions, and new connections are
//              accepted and treated the same: a peer notices only by its own
//              timeouts, as in a real partition where packets vanish.
//              Unblock() closes the blackholed connections (their streams
//              have gaps, so they must never carry data again).
//
// Threading: the proxy runs on its own thread (an io_context). Every public
// member function may be called from any thread; Block, Unblock and Stop
// have taken effect when they return (they wait, with a deadline, for the
// proxy's thread to carry them out).
//
// Invariants (on the proxy thread): every link in the set of links is open;
// while the mode is kReset the set is empty; a blackholed link forwards
// nothing.
//
// The proxy's sockets are not close-on-exec: a child spawned while they are
// open must not inherit them (Process::Spawn closes every descriptor above
// stderr), or the child's copy keeps a link the proxy closed open.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace caracal::testing {

class TcpProxy {
 public:
  enum class BlockMode { kReset, kBlackhole };

  struct Counters {
    uint64_t accepted = 0;            // connections accepted from clients
    uint64_t refused = 0;             // accepted while blocked (kReset) and closed at once
    uint64_t target_unreachable = 0;  // accepted, but the target did not accept
    uint64_t reset_by_block = 0;      // open connections closed by Block(kReset) or by Unblock() after a blackhole
    uint64_t bytes_forwarded = 0;     // both directions
    uint64_t bytes_dropped = 0;       // read while blackholed
    uint64_t open = 0;                // connections open now
  };

  // Listens on 127.0.0.1:0 and forwards to 127.0.0.1:`target_port`. `name`
  // labels the proxy in reports ("1->2").
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(uint16_t target_port, std::string name = "");
  ~TcpProxy();  // Stop()s
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  uint16_t target_port() const { return target_port_; }
  const std::string& name() const { return name_; }

  void Block(BlockMode mode = BlockMode::kReset);
  void Unblock();
  bool blocked() const;
  // Data read from either side is written out `delay` later (0: at once).
  // Applies to what is read from now on.
  void SetDelay(std::chrono::milliseconds delay);
  std::chrono::milliseconds delay() const;
  Counters counters() const;

  // Closes the listening socket and every connection, and joins the thread.
  // Idempotent.
  void Stop();

  struct Impl;

 private:
  TcpProxy(std::string name, uint16_t target_port);
  // Runs `fn` on the proxy thread and waits (up to a deadline) until it ran.
  void RunOnProxyThread(std::function<void()> fn) const;

  const std::string name_;
  const uint16_t target_port_;
  uint16_t port_ = 0;
  std::shared_ptr<Impl> impl_;
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_TESTING_TCP_PROXY_H_

#ifndef CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_
#define CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_

// IoInbox: hands work from other threads (the state machine thread) to an
// io_context's thread in batches: closures, and the routed outcomes of client
// requests (ApplyLoop::ExpectRouted). The first item queued while no drain is
// pending posts one; the drain runs everything queued by then, in queue order.
// So the responses and events of one applied batch cost one post and at most
// one wake-up of the io thread, not one each; and a routed outcome costs no
// allocation (the queues keep their capacity).
//
// Items run on the io thread, in the order they were queued (across drains
// too, closures and outcomes interleaved as queued). Items still queued when
// the io_context stops never run, exactly as with boost::asio::post.

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "framework/server/apply_loop.h"

namespace caracal::server {

class IoInbox {
 public:
  using OutcomeHandler = std::function<void(RoutedOutcome&)>;
  // `on_outcome` receives each routed outcome on the io thread.
  explicit IoInbox(boost::asio::io_context& io, OutcomeHandler on_outcome = nullptr)
      : io_(io), state_(std::make_shared<State>()) {
    state_->on_outcome = std::move(on_outcome);
  }

  // Any thread.
  void Post(std::function<void()> fn) {
    bool first;
    {
      std::lock_guard lock(state_->mu);
      first = state_->queue.empty();
      state_->queue.emplace_back().fn = std::move(fn);
    }
    if (first) Wake();
  }
  // Any thread: moves every outcome of `batch` in (leaves it empty).
  void PostOutcomes(std::vector<RoutedOutcome>& batch) {
    if (batch.empty()) return;
    bool first;
    {
      std::lock_guard lock(state_->mu);
      first = state_->queue.empty();
      for (auto& r : batch) state_->queue.emplace_back().outcome = std::move(r);
    }
    batch.clear();
    if (first) Wake();
  }

 private:
  struct Item {
    std::function<void()> fn;  // empty: `outcome` is a routed outcome
    RoutedOutcome outcome;
  };
  struct State {
    std::mutex mu;
    std::vector<Item> queue;
    std::vector<Item> running;  // io thread only; keeps its capacity
    OutcomeHandler on_outcome;
  };

  void Wake() {
    boost::asio::post(io_, [state = state_] { Drain(*state); });
  }

  static void Drain(State& state) {
    {
      std::lock_guard lock(state.mu);
      state.running.swap(state.queue);
    }
    for (auto& item : state.running) {
      if (item.fn) {
        item.fn();
      } else if (state.on_outcome) {
        state.on_outcome(item.outcome);
      }
    }
    state.running.clear();
  }

  boost::asio::io_context& io_;
  std::shared_ptr<State> state_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_

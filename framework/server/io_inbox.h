#ifndef CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_
#define CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_

// IoInbox: hands closures from other threads (the state machine thread) to
// an io_context's thread in batches. The first closure queued while no drain
// is pending posts one; the drain runs everything queued by then, in queue
// order. So the responses and events of one applied batch cost one post and
// at most one wake-up of the io thread, not one each.
//
// Closures run on the io thread, in the order they were queued (across
// drains too). Closures still queued when the io_context stops never run,
// exactly as with boost::asio::post.

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"

namespace caracal::server {

class IoInbox {
 public:
  explicit IoInbox(boost::asio::io_context& io) : io_(io), state_(std::make_shared<State>()) {}

  // Any thread.
  void Post(std::function<void()> fn) {
    bool first;
    {
      std::lock_guard lock(state_->mu);
      first = state_->queue.empty();
      state_->queue.push_back(std::move(fn));
    }
    if (first) boost::asio::post(io_, [state = state_] { Drain(*state); });
  }

 private:
  struct State {
    std::mutex mu;
    std::vector<std::function<void()>> queue;
    std::vector<std::function<void()>> running;  // io thread only; keeps its capacity
  };

  static void Drain(State& state) {
    {
      std::lock_guard lock(state.mu);
      state.running.swap(state.queue);
    }
    for (auto& fn : state.running) fn();
    state.running.clear();
  }

  boost::asio::io_context& io_;
  std::shared_ptr<State> state_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_IO_INBOX_H_

#ifndef CARACAL_TESTS_CLIENT_CLIENT_CLUSTER_H_
#define CARACAL_TESTS_CLIENT_CLIENT_CLUSTER_H_

// What the client tests share: a state machine that counts and publishes,
// three in-process servers on 127.0.0.1 (TCP), and helpers to wait on
// results and deliveries with deadlines.

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "caracal/client.h"
#include "caracal/server.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/testing/process.h"

namespace caracal {
namespace {

const bool kQuiet = (spdlog::set_level(std::getenv("CARACAL_LOG") ? spdlog::level::debug : spdlog::level::warn), true);

// ---- a state machine that counts and publishes ----

struct Add : Command<int64_t> {  // returns the new total
  static constexpr std::string_view kName = "test.add";
  int64_t amount = 0;
  uint64_t id = 0;  // unique per submission: counts applications
  int events = 0;   // how many "added" events to publish to the caller
  CARACAL_FIELDS(amount, id, events)
};
struct Total : Query<int64_t> {
  static constexpr std::string_view kName = "test.total";
  CARACAL_FIELDS()
};
struct Applications : Query<uint64_t> {  // how often the Add with this id was applied
  static constexpr std::string_view kName = "test.applications";
  uint64_t id = 0;
  CARACAL_FIELDS(id)
};
struct Expired : Query<std::vector<uint64_t>> {  // sessions expired so far, in order
  static constexpr std::string_view kName = "test.expired";
  CARACAL_FIELDS()
};
struct Added {
  int64_t total = 0;
  int n = 0;
  CARACAL_FIELDS(total, n)
};

class CounterStateMachine : public StateMachine, public SessionListener {
 public:
  void Configure(Executor& executor) override {
    executor.Register<Add>(this, &CounterStateMachine::OnAdd);
    executor.Register<Total>(this, &CounterStateMachine::OnTotal);
    executor.Register<Applications>(this, &CounterStateMachine::OnApplications);
    executor.Register<Expired>(this, &CounterStateMachine::OnExpired);
  }
  void OnExpire(const Session& s) override { expired_.push_back(s.id()); }

 private:
  std::vector<uint64_t> OnExpired(Commit<Expired>) { return expired_; }
  std::vector<uint64_t> expired_;
  int64_t OnAdd(Commit<Add> c) {
    total_ += c->amount;
    ++applied_[c->id];
    for (int i = 0; i < c->events; ++i) c.session().Publish("added", Added{total_, i});
    return total_;
  }
  int64_t OnTotal(Commit<Total>) { return total_; }
  uint64_t OnApplications(Commit<Applications> c) {
    auto it = applied_.find(c->id);
    return it == applied_.end() ? 0 : it->second;
  }
  int64_t total_ = 0;
  std::map<uint64_t, uint64_t> applied_;
};

// ---- three servers on 127.0.0.1 ----

class TcpCluster {
 public:
  TcpCluster() {
    for (NodeId id = 1; id <= 3; ++id) members_[id] = absl::StrCat("127.0.0.1:", testing::PickFreePort());
    for (NodeId id = 1; id <= 3; ++id) Start(id);
  }
  ~TcpCluster() {
    for (auto& [id, s] : servers_) {
      if (s) s->Stop();
    }
  }

  void Start(NodeId id) {
    auto server = Server::Builder()
                      .WithId(id)
                      .WithMembers(members_)
                      .InMemory()
                      .WithElectionTimeout(std::chrono::milliseconds(150))
                      .WithHeartbeatInterval(std::chrono::milliseconds(25))
                      .WithStateMachine<CounterStateMachine>()
                      .Build();
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE((*server)->Start().ok());
    servers_[id] = *std::move(server);
  }
  void Stop(NodeId id) {
    servers_[id]->Stop();
    servers_[id].reset();
  }

  // The leader, once one is elected (every wait is bounded).
  NodeId WaitForLeader() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& [id, s] : servers_) {
        if (s && s->Info().role == "leader") return id;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return 0;
  }

  std::vector<std::string> addresses() const {
    std::vector<std::string> out;
    for (const auto& [id, a] : members_) out.push_back(a);
    return out;
  }
  const std::string& address(NodeId id) { return members_[id]; }
  uint16_t port(NodeId id) {
    const std::string& a = members_[id];
    return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
  }
  Server* server(NodeId id) { return servers_[id].get(); }

 private:
  std::map<NodeId, std::string> members_;
  std::map<NodeId, std::unique_ptr<Server>> servers_;
};

Client::Builder ClientFor(const TcpCluster& cluster) {
  return Client::Builder()
      .WithServers(cluster.addresses())
      .WithSessionTimeout(std::chrono::milliseconds(3000))
      .WithAttemptTimeout(std::chrono::milliseconds(1000))
      .WithConnectTimeout(std::chrono::seconds(10));
}

template <typename T>
T Get(std::future<absl::StatusOr<T>> f) {
  EXPECT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto r = f.get();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : T{};
}

// Records what the client delivered, in delivery order.
struct Journal {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> entries;
  void Add(std::string e) {
    std::lock_guard lock(mu);
    entries.push_back(std::move(e));
    cv.notify_all();
  }
  bool WaitFor(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [&] { return entries.size() >= n; });
  }
};

}  // namespace
}  // namespace caracal

#endif  // CARACAL_TESTS_CLIENT_CLIENT_CLUSTER_H_

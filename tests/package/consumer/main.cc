// Builds against the installed package only: one include, one target.
#include <cstdio>

#include "caracal/embedded.h"

struct Put : caracal::Command<std::optional<std::string>> {
  static constexpr std::string_view kName = "consumer.put";
  std::string key, value;
  CARACAL_FIELDS(key, value)
};
struct Get : caracal::Query<std::optional<std::string>> {
  static constexpr std::string_view kName = "consumer.get";
  std::string key;
  CARACAL_FIELDS(key)
};

class Map : public caracal::StateMachine {
 public:
  void Configure(caracal::Executor& executor) override {
    executor.Register<Put>(this, &Map::OnPut);
    executor.Register<Get>(this, &Map::OnGet);
  }
  std::optional<std::string> OnPut(caracal::Commit<Put> c) {
    auto previous = map_.contains(c->key) ? std::optional(map_[c->key]) : std::nullopt;
    map_[c->key] = c->value;
    return previous;
  }
  std::optional<std::string> OnGet(caracal::Commit<Get> c) {
    auto it = map_.find(c->key);
    return it == map_.end() ? std::nullopt : std::optional(it->second);
  }

 private:
  std::map<std::string, std::string> map_;
};

int main() {
  auto cluster = caracal::EmbeddedCluster::Start({.servers = 3, .state_machine = [] { return std::make_unique<Map>(); }});
  if (!cluster.ok()) return 1;
  if (!(*cluster)->Submit(Put{.key = "hello", .value = "world"}).ok()) return 2;
  auto value = (*cluster)->Query(Get{.key = "hello"});
  if (!value.ok() || *value != "world") return 3;
  std::printf("consumer: hello=%s\n", (*value)->c_str());
  return 0;
}

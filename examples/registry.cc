#include "examples/registry.h"

#include "examples/kv/kv.h"
#include "examples/lock/lock.h"

namespace caracal::examples {

StateMachineFactory FindStateMachine(const std::string& name) {
  if (name == "kv") return [] { return std::make_unique<kv::KvStateMachine>(); };
  if (name == "lock") return [] { return std::make_unique<lock::LockStateMachine>(); };
  return {};
}

std::vector<std::string> StateMachineNames() { return {"kv", "lock"}; }

}  // namespace caracal::examples

#include "examples/registry.h"

#include "examples/kv/kv.h"

namespace caracal::examples {

StateMachineFactory FindStateMachine(const std::string& name) {
  if (name == "kv") return [] { return std::make_unique<kv::KvStateMachine>(); };
  return {};
}

std::vector<std::string> StateMachineNames() { return {"kv"}; }

}  // namespace caracal::examples

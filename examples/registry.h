#ifndef CARACAL_EXAMPLES_REGISTRY_H_
#define CARACAL_EXAMPLES_REGISTRY_H_

// The example state machines by name, for caracal-server --state-machine.

#include <string>
#include <vector>

#include "caracal/server.h"

namespace caracal::examples {

// The factory for `name`, or an empty function if there is no such example.
StateMachineFactory FindStateMachine(const std::string& name);
std::vector<std::string> StateMachineNames();

}  // namespace caracal::examples

#endif  // CARACAL_EXAMPLES_REGISTRY_H_

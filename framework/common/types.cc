#include "framework/common/types.h"

namespace caracal {

const char* EntryTypeName(EntryType type) {
  switch (type) {
    case EntryType::kInitialize: return "initialize";
    case EntryType::kCommand: return "command";
    case EntryType::kRegister: return "register";
    case EntryType::kKeepAlive: return "keep-alive";
    case EntryType::kUnregister: return "unregister";
    case EntryType::kConfiguration: return "configuration";
    case EntryType::kTime: return "time";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, const Entry& e) {
  return os << "{index=" << e.index << " term=" << e.term << " time=" << e.timestamp
            << " type=" << EntryTypeName(e.type) << " payload=" << e.payload.size() << "B}";
}

std::ostream& operator<<(std::ostream& os, const HoleRun& h) {
  return os << "{holes " << h.first << ".." << h.last << " term=" << h.term << "}";
}

}  // namespace caracal

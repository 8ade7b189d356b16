// Fuzz target: committed entries with hostile payloads applied by a
// StateMachineRunner (framework/server/state_machine_runner.h) hosting an
// example state machine (examples/kv, or examples/lock).
//
// Input script (fuzz_util.h ByteReader):
//   u8 flags   bit 0: the lock example instead of kv; bit 1: this server leads
//   then steps until the input ends, each:
//     u8 op, u8 dt (log time advances dt * 10 ms), then by op & 7:
//     0 command, raw payload:         chunk
//     1 command entry:                u8 session pick, u8 sequence, chunk = operation bytes
//     2 register, raw payload:        chunk
//     3 register entry:               chunk = client id, u16 timeout in ms
//     4 keep-alive, raw payload:      chunk
//     5 keep-alive entry:             u8 count (mod 4), then per session: u8 pick, u8 sequence, u8 event index
//     6 unregister:                   op bit 3 set: raw chunk; else u8 pick, u8 expired
//     7 by (op >> 3) & 3:             0 a Time entry, 1 an Initialize entry,
//                                     2 a query: u8 pick, chunk = operation bytes,
//                                     3 an index removed by compaction (ApplyHole)
//   A "pick" chooses a session: 0 none, n > 0 the ((n - 1) mod count)-th session
//   registered so far (or n itself while there is none).
// Chunks are a u16 length and that many bytes; everything past the end of the
// input reads as zeros. Log time never goes backwards, as Raft guarantees.
//
// Properties: nothing crashes, leaks or hangs; every entry is answered (an
// early command is refused, never held); and two runners fed the same
// entries give the same responses, publish the same events and end in the
// same state (determinism is what keeps replicas equal).

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caracal/codec.h"
#include "examples/kv/kv.h"
#include "examples/lock/lock.h"
#include "framework/server/state_machine_runner.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace s = serialization;
using server::StateMachineRunner;

constexpr LogTime kStartTime = 1'700'000'000'000'000;  // µs, a plausible wall-clock time
constexpr LogTime kTick = 10'000;                         // 10 ms

const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

// Entries with huge durations (kv.put ttl_ms, Register timeout_ms) once
// overflowed log time; the seeds known-issue-* keep feeding them.

std::string Digest(StateMachine& sm) {
  if (auto* kv = dynamic_cast<examples::kv::KvStateMachine*>(&sm)) return kv->Digest();
  return dynamic_cast<examples::lock::LockStateMachine&>(sm).Digest();
}

bool SameResponses(const std::vector<StateMachineRunner::Response>& a,
                   const std::vector<StateMachineRunner::Response>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].index != b[i].index || a[i].term != b[i].term || a[i].event_index != b[i].event_index ||
        a[i].result.status() != b[i].result.status() ||
        (a[i].result.ok() && *a[i].result != *b[i].result)) {
      return false;
    }
  }
  return true;
}

class Driver {
 public:
  explicit Driver(uint8_t flags) {
    for (auto& runner : runners_) {
      std::unique_ptr<StateMachine> sm;
      if (flags & 1) {
        sm = std::make_unique<examples::lock::LockStateMachine>();
      } else {
        sm = std::make_unique<examples::kv::KvStateMachine>();
      }
      runner = std::make_unique<StateMachineRunner>(std::move(sm), 1);
      if (flags & 2) runner->SetRole(raft::Role::kLeader, 1, 1);
    }
  }

  void Step(ByteReader& in) {
    const uint8_t op = in.U8();
    time_ += in.U8() * kTick;
    switch (op & 7) {
      case 0:
        Apply(EntryType::kCommand, std::string(in.Chunk()));
        break;
      case 1: {
        uint64_t session = Pick(in.U8());
        uint64_t sequence = in.U8();
        Apply(EntryType::kCommand, s::EncodeCommandEntry(session, sequence, in.Chunk()));
        break;
      }
      case 2:
        Apply(EntryType::kRegister, std::string(in.Chunk()));
        break;
      case 3: {
        std::string client(in.Chunk());
        Apply(EntryType::kRegister, s::EncodeRegisterEntry({client, in.U16()}));
        break;
      }
      case 4:
        Apply(EntryType::kKeepAlive, std::string(in.Chunk()));
        break;
      case 5: {
        s::KeepAliveEntryValue batch;
        for (int n = in.U8() % 4; n > 0; --n) {
          uint64_t session = Pick(in.U8());
          uint64_t sequence = in.U8();
          batch.sessions.push_back({session, sequence, in.U8()});
        }
        Apply(EntryType::kKeepAlive, s::EncodeKeepAliveEntry(batch));
        break;
      }
      case 6:
        if (op & 8) {
          Apply(EntryType::kUnregister, std::string(in.Chunk()));
        } else {
          uint64_t session = Pick(in.U8());
          Apply(EntryType::kUnregister, s::EncodeUnregisterEntry({session, (in.U8() & 1) != 0}));
        }
        break;
      default:
        switch ((op >> 3) & 3) {
          case 0: Apply(EntryType::kTime, ""); break;
          case 1: Apply(EntryType::kInitialize, ""); break;
          case 2: {
            uint64_t session = Pick(in.U8());
            Query(session, in.Chunk());
            break;
          }
          default:
            for (auto& runner : runners_) runner->ApplyHole(runner->applied() + 1);
            break;
        }
        break;
    }
  }

  void Finish() {
    FUZZ_CHECK(runners_[0]->applied() == runners_[1]->applied());
    FUZZ_CHECK(Digest(runners_[0]->state_machine()) == Digest(runners_[1]->state_machine()));
    FUZZ_CHECK(runners_[0]->SuspectSessions() == runners_[1]->SuspectSessions());
    FUZZ_CHECK(runners_[0]->NextDeadline() == runners_[1]->NextDeadline());
  }

 private:
  uint64_t Pick(uint8_t b) const {
    if (b == 0) return 0;
    if (sessions_.empty()) return b;
    return sessions_[(b - 1) % sessions_.size()];
  }

  void Apply(EntryType type, std::string payload) {
    const Index index = runners_[0]->applied() + 1;
    Entry entry{index, 1, time_, type, Bytes(std::move(payload))};
    auto first = runners_[0]->ApplyEntry(entry);
    auto second = runners_[1]->ApplyEntry(entry);
    FUZZ_CHECK(SameResponses(first, second));
    FUZZ_CHECK(runners_[0]->TakePublished() == runners_[1]->TakePublished());
    for (const auto& r : first) FUZZ_CHECK(r.index <= index && r.index > 0);
    if (type == EntryType::kRegister && !first.empty() && first[0].result.ok()) sessions_.push_back(index);
  }

  void Query(uint64_t session, std::string_view operation) {
    auto a = runners_[0]->Query(session, operation);
    auto b = runners_[1]->Query(session, operation);
    FUZZ_CHECK(a.status() == b.status() && (!a.ok() || *a == *b));
  }

  std::unique_ptr<StateMachineRunner> runners_[2];
  std::vector<uint64_t> sessions_;
  LogTime time_ = kStartTime;
};

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace caracal::fuzz;
  (void)kQuiet;
  ByteReader in(AsView(data, size));
  Driver driver(in.U8());
  // Each step reads at least two bytes, so this ends; 256 steps bound the
  // work per input (timers and sessions grow with the steps).
  for (int step = 0; step < 256 && !in.empty(); ++step) driver.Step(in);
  driver.Finish();
  return 0;
}

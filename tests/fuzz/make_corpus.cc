// Writes the seed corpus of every fuzz target: small valid inputs covering
// every frame and message kind, log records of every entry type, segments,
// log directories, metadata files, operations of several shapes and entry
// scripts for the state machine runner.
//
//   make_corpus tests/fuzz/corpus      (tools/fuzz --make-corpus does this)
//
// Seeds are named seed-*; the generator replaces every seed-* file of a
// target and leaves the other files (saved crashes, merged inputs) alone.
// Output is deterministic: regenerating changes nothing unless an encoding
// changed.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caracal/codec.h"
#include "examples/kv/kv.h"
#include "examples/lock/lock.h"
#include "framework/storage/metadata.h"
#include "framework/storage/segment.h"
#include "serialization/client_protocol.h"
#include "serialization/codec.h"
#include "serialization/session_codec.h"
#include "tests/fuzz/fuzz_types.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

namespace fs = std::filesystem;
namespace s = serialization;
namespace kv = examples::kv;
namespace lock = examples::lock;

class Corpus {
 public:
  Corpus(fs::path root, std::string target) : dir_(std::move(root) / target) {
    fs::create_directories(dir_);
    for (const auto& item : fs::directory_iterator(dir_)) {
      if (item.path().filename().string().starts_with("seed-")) fs::remove(item.path());
    }
  }
  void Add(const std::string& name, std::string_view bytes) {
    std::ofstream out(dir_ / ("seed-" + name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) {
      std::fprintf(stderr, "cannot write %s\n", (dir_ / name).c_str());
      std::exit(1);
    }
    ++count_;
  }
  ~Corpus() { std::printf("%-22s %d seeds\n", dir_.filename().c_str(), count_); }

 private:
  fs::path dir_;
  int count_ = 0;
};

Entry MakeEntry(Index index, Term term, EntryType type, std::string payload) {
  return Entry{index, term, 1'700'000'000'000'000 + static_cast<LogTime>(index) * 1000, type,
               Bytes(std::move(payload))};
}

std::string PutOp(std::string key, std::string value, int64_t ttl_ms = 0) {
  kv::Put put;
  put.key = std::move(key);
  put.value = std::move(value);
  put.ttl_ms = ttl_ms;
  return codec::EncodeOperation(put);
}

template <typename Op>
std::string KeyOp(std::string key) {
  Op op;
  if constexpr (requires { op.key; }) {
    op.key = std::move(key);
  } else if constexpr (requires { op.prefix; }) {
    op.prefix = std::move(key);
  } else {
    op.name = std::move(key);
  }
  return codec::EncodeOperation(op);
}

// ---------------------------------------------------------------- wire

std::string Request(uint64_t id, s::ClientRequestBody body) {
  std::string out;
  s::AppendClientRequestFrame(s::ClientRequestValue{id, std::move(body)}, &out);
  return out;
}

std::string Raft(raft::MessageBody body) {
  std::string out;
  s::AppendRaftFrame(raft::Message{1, 2, std::move(body)}, &out);
  return out;
}

void Frames(const fs::path& root) {
  Corpus c(root, "frame_fuzz");
  std::string hello;
  s::AppendHelloFrame({3, "cluster-a"}, &hello);
  c.Add("hello", hello);
  std::string client_hello;
  s::AppendHelloFrame({0, ""}, &client_hello);
  c.Add("hello-client", client_hello);

  c.Add("raft-request-vote", Raft(raft::RequestVote{5, 10, 4, true, false}));
  c.Add("raft-request-vote-transfer", Raft(raft::RequestVote{6, 10, 4, false, true}));
  c.Add("raft-vote-response", Raft(raft::RequestVoteResponse{5, true, false}));
  raft::AppendEntries append{7, 3, 6, {}, {}, 2, 9};
  append.entries.push_back(MakeEntry(4, 6, EntryType::kCommand, s::EncodeCommandEntry(1, 1, PutOp("a", "1"))));
  append.entries.push_back(MakeEntry(8, 7, EntryType::kTime, ""));
  append.holes.push_back(HoleRun{5, 7, 6});
  c.Add("raft-append-entries", Raft(append));
  c.Add("raft-heartbeat", Raft(raft::AppendEntries{7, 8, 7, {}, {}, 8, 10}));
  c.Add("raft-append-response", Raft(raft::AppendEntriesResponse{7, false, 3, 4, 6, 9, 8, 5}));
  c.Add("raft-timeout-now", Raft(raft::TimeoutNow{8}));

  c.Add("request-connect", Request(1, s::ConnectRequest{"client-1"}));
  c.Add("request-register", Request(2, s::RegisterRequest{"client-1", 5000}));
  c.Add("request-keep-alive", Request(3, s::KeepAliveRequest{17, 4, 20}));
  c.Add("request-unregister", Request(4, s::UnregisterRequest{17}));
  c.Add("request-command", Request(5, s::CommandRequest{17, 5, Bytes(PutOp("key", "value"))}));
  c.Add("request-query", Request(6, s::QueryRequest{17, 5, 30, s::Consistency::kSequential, KeyOp<kv::Get>("key")}));
  c.Add("request-reset-events", Request(7, s::ResetEventsRequest{17, 12}));

  auto response = [](s::ClientResponseValue r) {
    std::string out;
    s::AppendClientResponseFrame(r, &out);
    return out;
  };
  std::vector<s::MemberValue> members = {{1, "127.0.0.1:5001", s::MemberType::kActive},
                                         {2, "127.0.0.1:5002", s::MemberType::kPassive}};
  c.Add("response-error", response({8, absl::UnavailableError("not the leader"), 2, members, std::monostate()}));
  c.Add("response-register", response({9, absl::OkStatus(), 1, members, s::RegisterResult{40, 5000}}));
  c.Add("response-command",
        response({10, absl::OkStatus(), 1, {}, s::CommandResult{41, 39, Bytes(codec::EncodeResult<kv::Put>("old"))}}));
  c.Add("response-query", response({11, absl::OkStatus(), 1, {}, s::QueryResult{41, 0, Bytes(codec::ToBytes(true))}}));

  s::PublishEventsValue events{17, 44, 39, {}};
  events.events.push_back({std::string(kv::kChangedEvent), codec::ToBytes(kv::Changed{"a", "2", 44})});
  events.events.push_back({std::string(kv::kChangedEvent), codec::ToBytes(kv::Changed{"b", std::nullopt, 44})});
  std::string publish;
  s::AppendPublishEventsFrame(events, &publish);
  c.Add("publish-events", publish);

  c.Add("stream-client", client_hello + Request(2, s::RegisterRequest{"c", 5000}) +
                             Request(5, s::CommandRequest{17, 1, Bytes(PutOp("k", "v"))}));
  c.Add("stream-peer", hello + Raft(append) + Raft(raft::TimeoutNow{8}));
}

// ---------------------------------------------------------------- disk

std::string EntryRecord(const Entry& e) {
  std::string out;
  s::AppendEntryRecord(e, &out);
  return out;
}

std::string HoleRecord(const HoleRun& h) {
  std::string out;
  s::AppendHoleRecord(h, &out);
  return out;
}

std::string Records(Index first, Index count, Term term) {
  std::string out;
  for (Index i = first; i < first + count; ++i) {
    out += EntryRecord(MakeEntry(i, term, EntryType::kCommand,
                                 s::EncodeCommandEntry(1, i, PutOp("key-" + std::to_string(i), "v"))));
  }
  return out;
}

void LogRecords(const fs::path& root) {
  Corpus c(root, "record_fuzz");
  c.Add("entry-initialize", EntryRecord(MakeEntry(1, 1, EntryType::kInitialize, "")));
  c.Add("entry-command", EntryRecord(MakeEntry(2, 1, EntryType::kCommand, s::EncodeCommandEntry(3, 1, PutOp("a", "1")))));
  c.Add("entry-register", EntryRecord(MakeEntry(3, 1, EntryType::kRegister, s::EncodeRegisterEntry({"client", 5000}))));
  c.Add("entry-keep-alive",
        EntryRecord(MakeEntry(4, 2, EntryType::kKeepAlive, s::EncodeKeepAliveEntry({{{3, 1, 0}, {9, 2, 4}}}))));
  c.Add("entry-unregister", EntryRecord(MakeEntry(5, 2, EntryType::kUnregister, s::EncodeUnregisterEntry({3, true}))));
  c.Add("entry-configuration", EntryRecord(MakeEntry(6, 2, EntryType::kConfiguration, "members")));
  c.Add("entry-time", EntryRecord(MakeEntry(7, 3, EntryType::kTime, "")));
  c.Add("holes", HoleRecord(HoleRun{8, 20, 3}));
  c.Add("records", Records(21, 3, 3) + HoleRecord(HoleRun{24, 30, 4}) + Records(31, 1, 4));
  c.Add("hard-state", s::EncodeHardState(HardState{12, 3}));
  c.Add("hard-state-no-vote", s::EncodeHardState(HardState{1, 0}));
}

void EntryPayloads(const fs::path& root) {
  Corpus c(root, "entry_fuzz");
  c.Add("register", s::EncodeRegisterEntry({"client-7f3a", 5000}));
  c.Add("register-empty", s::EncodeRegisterEntry({"", 0}));
  c.Add("keep-alive-empty", s::EncodeKeepAliveEntry({}));
  c.Add("keep-alive-one", s::EncodeKeepAliveEntry({{{3, 7, 12}}}));
  c.Add("keep-alive-three", s::EncodeKeepAliveEntry({{{3, 7, 12}, {9, 0, 0}, {11, 2, 40}}}));
  c.Add("unregister", s::EncodeUnregisterEntry({3, false}));
  c.Add("unregister-expired", s::EncodeUnregisterEntry({9, true}));
  c.Add("command-put", s::EncodeCommandEntry(3, 1, PutOp("a", "1", 500)));
  c.Add("command-remove", s::EncodeCommandEntry(3, 2, KeyOp<kv::Remove>("a")));
  c.Add("command-no-session", s::EncodeCommandEntry(0, 0, KeyOp<lock::Lock>("l")));
}

std::string Segment(Index first, std::string_view records, uint64_t epoch = 0) {
  return storage::EncodeSegmentHeader({first, epoch}) + std::string(records);
}

void Segments(const fs::path& root) {
  Corpus c(root, "segment_fuzz");
  c.Add("empty", Segment(1, ""));
  c.Add("entries", Segment(1, Records(1, 3, 1)));
  c.Add("entries-and-holes", Segment(10, Records(10, 2, 2) + HoleRecord({12, 15, 2}) + Records(16, 2, 3)));
  std::string torn = Segment(1, Records(1, 3, 1));
  torn.resize(torn.size() - 20);
  c.Add("torn-tail", torn);
  c.Add("zero-tail", Segment(1, Records(1, 2, 1)) + std::string(64, '\0'));
  c.Add("prefix-base", storage::EncodePrefixBase({40, 3, 1}));
}

// A log_dir_fuzz script: flags, optional split and base, then the bytes.
std::string LogDir(uint8_t flags, std::string_view bytes, uint16_t split = 0,
                   storage::PrefixBase base = {}) {
  ByteWriter w;
  w.U8(flags);
  if (flags & 8) w.U16(split);
  if (flags & 16) w.U8(static_cast<uint8_t>(base.index)).U8(static_cast<uint8_t>(base.term)).U8(static_cast<uint8_t>(base.epoch));
  w.Bytes(bytes);
  return w.str();
}

void LogDirectories(const fs::path& root) {
  Corpus c(root, "log_dir_fuzz");
  std::string three = Segment(1, Records(1, 3, 1));
  c.Add("open", LogDir(0, three));
  c.Add("sealed", LogDir(2, three));
  c.Add("sealed-misnamed", LogDir(2 | 4, three));
  c.Add("read-only", LogDir(32, three));
  std::string torn = three;
  torn.resize(torn.size() - 9);
  c.Add("torn", LogDir(0, torn));
  std::string first = Segment(1, Records(1, 2, 1));
  std::string second = Segment(3, Records(3, 2, 2) + HoleRecord({5, 9, 2}));
  c.Add("two-segments", LogDir(2 | 8, first + second, static_cast<uint16_t>(first.size())));
  c.Add("two-open-segments", LogDir(8, first + second, static_cast<uint16_t>(first.size())));
  c.Add("prefix-base", LogDir(16, three, 0, {2, 1, 0}));
  c.Add("prefix-base-newer-epoch", LogDir(16, Segment(1, Records(1, 3, 1), 0), 0, {0, 0, 1}));
  c.Add("holes", LogDir(0, Segment(1, Records(1, 1, 1) + HoleRecord({2, 6, 1}) + Records(7, 1, 2))));
}

void MetadataFiles(const fs::path& root) {
  Corpus c(root, "metadata_fuzz");
  c.Add("fresh", storage::MetadataStore::Encode({HardState{0, 0}, "", 1}));
  c.Add("voted", storage::MetadataStore::Encode({HardState{7, 2}, "", 5}));
  c.Add("configuration", storage::MetadataStore::Encode({HardState{9, 1}, "1=127.0.0.1:5001,2=127.0.0.1:5002", 12}));
}

// ---------------------------------------------------------------- operations

void Operations(const fs::path& root) {
  Corpus c(root, "operation_fuzz");
  c.Add("kv-put", PutOp("key", "value"));
  c.Add("kv-put-ttl", PutOp("key", std::string("bin\0ary", 7), 1500));
  c.Add("kv-get", KeyOp<kv::Get>("key"));
  c.Add("kv-remove", KeyOp<kv::Remove>("key"));
  kv::CompareAndSet cas;
  cas.key = "k";
  cas.expected = "old";
  cas.value = "new";
  c.Add("kv-cas", codec::EncodeOperation(cas));
  cas.expected.reset();
  c.Add("kv-cas-absent", codec::EncodeOperation(cas));
  c.Add("kv-size", codec::EncodeOperation(kv::Size{}));
  c.Add("kv-watch", KeyOp<kv::Watch>("pre"));
  c.Add("lock-lock", KeyOp<lock::Lock>("mutex"));
  c.Add("lock-unlock", KeyOp<lock::Unlock>("mutex"));
  c.Add("lock-holder", KeyOp<lock::Holder>("mutex"));
  c.Add("result-put-some", codec::EncodeResult<kv::Put>(std::optional<std::string>("previous")));
  c.Add("result-put-none", codec::EncodeResult<kv::Put>(std::nullopt));
  c.Add("result-bool", codec::EncodeResult<kv::CompareAndSet>(true));
  c.Add("result-uint", codec::EncodeResult<kv::Size>(uint64_t{42}));
  c.Add("event-changed", codec::ToBytes(kv::Changed{"key", "value", 17}));
  c.Add("event-granted", codec::ToBytes(lock::Granted{"mutex", 9, 12, 20}));
  c.Add("holder-info", codec::ToBytes(lock::HolderInfo{9, 2}));

  Nested nested;
  nested.table["a"] = {1, std::nullopt, -3};
  nested.table["b"] = {};
  nested.leaves.push_back(Leaf{"leaf", std::optional<std::optional<bool>>(std::nullopt), {1, 2, 3}});
  nested.leaves.push_back(Leaf{"", true, {}});
  nested.ids = {1, 5, 1u << 31};
  nested.triple = {-4, Shade::kDark, "t"};
  nested.grid = {{{1, "x"}, {2, "y"}}, {}};
  nested.extra = Leaf{"extra", false, {9}};
  c.Add("nested", codec::ToBytes(nested));
  c.Add("map-of-optional-lists",
        codec::ToBytes(std::map<std::string, std::optional<std::vector<int64_t>>>{{"x", std::vector<int64_t>{1, -2}},
                                                                                  {"y", std::nullopt}}));
  c.Add("tuple", codec::ToBytes(std::tuple<uint64_t, std::vector<bool>, std::monostate>{7, {true, false}, {}}));
  c.Add("map-int8", codec::ToBytes(std::map<int8_t, std::optional<std::string>>{{-1, "m"}, {3, std::nullopt}}));
  // A chain of nested lists, like the recursive type FuzzOperationBytes decodes.
  std::vector<std::vector<std::vector<std::vector<int32_t>>>> deep = {{{{1, 2}}, {}}, {}};
  c.Add("deep-lists", codec::ToBytes(deep));
}

// ---------------------------------------------------------------- state machine scripts

// Builds a state_machine_fuzz script (the format is in state_machine_fuzz.cc).
class Script {
 public:
  explicit Script(uint8_t flags) { w_.U8(flags); }
  Script& CommandRaw(std::string_view payload, uint8_t dt = 1) { return Op(0, dt).Chunk(payload); }
  Script& Command(uint8_t pick, uint8_t sequence, std::string_view operation, uint8_t dt = 1) {
    Op(1, dt);
    w_.U8(pick).U8(sequence);
    return Chunk(operation);
  }
  Script& Register(std::string_view client, uint16_t timeout_ms, uint8_t dt = 1) {
    Op(3, dt).Chunk(client);
    w_.U16(timeout_ms);
    return *this;
  }
  Script& RegisterRaw(std::string_view payload) { return Op(2, 1).Chunk(payload); }
  Script& KeepAlive(uint8_t pick, uint8_t sequence, uint8_t event_index, uint8_t dt = 1) {
    Op(5, dt);
    w_.U8(1).U8(pick).U8(sequence).U8(event_index);
    return *this;
  }
  Script& KeepAliveRaw(std::string_view payload) { return Op(4, 1).Chunk(payload); }
  Script& Unregister(uint8_t pick, bool expired, uint8_t dt = 1) {
    Op(6, dt);
    w_.U8(pick).U8(expired ? 1 : 0);
    return *this;
  }
  Script& UnregisterRaw(std::string_view payload) { return Op(6 | 8, 1).Chunk(payload); }
  Script& Time(uint8_t dt) { return Op(7, dt); }
  Script& Initialize() { return Op(7 | (1 << 3), 1); }
  Script& Query(uint8_t pick, std::string_view operation) {
    Op(7 | (2 << 3), 0);
    w_.U8(pick);
    return Chunk(operation);
  }
  Script& Hole() { return Op(7 | (3 << 3), 1); }
  const std::string& str() const { return w_.str(); }

 private:
  Script& Op(uint8_t op, uint8_t dt) {
    w_.U8(op).U8(dt);
    return *this;
  }
  Script& Chunk(std::string_view b) {
    w_.Chunk(b);
    return *this;
  }
  ByteWriter w_;
};

void StateMachineScripts(const fs::path& root) {
  Corpus c(root, "state_machine_fuzz");
  // Picks: 1 = the first registered session, 2 = the second (when there are two).
  c.Add("kv-session", Script(0)
                          .Initialize()
                          .Register("client-a", 5000)
                          .Command(1, 1, PutOp("a", "1"))
                          .Command(1, 2, KeyOp<kv::Remove>("a"))
                          .Query(1, KeyOp<kv::Get>("a"))
                          .KeepAlive(1, 2, 0)
                          .Unregister(1, false)
                          .str());
  c.Add("kv-ttl-expiry", Script(2)
                             .Initialize()
                             .Command(0, 0, PutOp("t", "v", 100))
                             .Time(50)
                             .Query(0, codec::EncodeOperation(kv::Size{}))
                             .str());
  kv::CompareAndSet cas;
  cas.key = "c";
  cas.value = "1";
  c.Add("kv-watch", Script(0)
                        .Register("watcher", 3000)
                        .Register("writer", 3000)
                        .Command(1, 1, KeyOp<kv::Watch>(""))
                        .Command(2, 1, codec::EncodeOperation(cas))
                        .Command(2, 2, PutOp("c", "2"))
                        .KeepAlive(1, 1, 3)
                        .Time(255)
                        .Time(255)
                        .str());
  c.Add("kv-sequencing", Script(0)
                             .Register("client", 5000)
                             .Command(1, 2, PutOp("x", "2"))  // early: refused
                             .Command(1, 1, PutOp("x", "1"))  // runs
                             .Command(1, 1, PutOp("x", "1"))  // a retry: from the cache
                             .Hole()
                             .CommandRaw(s::EncodeCommandEntry(99, 1, PutOp("y", "1")))  // unknown session
                             .str());
  c.Add("kv-raw-payloads", Script(0)
                               .RegisterRaw(s::EncodeRegisterEntry({"raw", 4000}))
                               .CommandRaw(s::EncodeCommandEntry(1, 1, PutOp("r", "1")))  // session 1: the register above
                               .KeepAliveRaw(s::EncodeKeepAliveEntry({{{1, 1, 0}}}))
                               .UnregisterRaw(s::EncodeUnregisterEntry({1, true}))
                               .CommandRaw("not a message")
                               .str());
  // Inputs that hit the known issues state_machine_fuzz.cc steps around.
  c.Add("known-issue-put-huge-ttl",
        Script(0).Command(0, 0, PutOp("t", "v", int64_t{1} << 60)).Time(1).str());
  c.Add("known-issue-register-huge-timeout",
        Script(0).RegisterRaw(s::EncodeRegisterEntry({"c", uint64_t{1} << 62})).Time(255).str());
  c.Add("lock-hand-over", Script(1)
                              .Register("holder", 2000)
                              .Register("waiter", 2000)
                              .Command(1, 1, KeyOp<lock::Lock>("m"))
                              .Command(2, 1, KeyOp<lock::Lock>("m"))
                              .Query(2, KeyOp<lock::Holder>("m"))
                              .Command(1, 2, KeyOp<lock::Unlock>("m"))
                              .Unregister(2, true)
                              .str());
  c.Add("lock-expiry", Script(1 | 2)
                           .Register("holder", 1000)
                           .Register("waiter", 60000)
                           .Command(1, 1, KeyOp<lock::TryLock>("m"))
                           .Command(2, 1, KeyOp<lock::Lock>("m"))
                           .Time(200)
                           .Unregister(1, true)
                           .str());
}

}  // namespace
}  // namespace caracal::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR   (e.g. tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  std::filesystem::path root(argv[1]);
  using namespace caracal::fuzz;
  Frames(root);
  LogRecords(root);
  EntryPayloads(root);
  Segments(root);
  LogDirectories(root);
  MetadataFiles(root);
  Operations(root);
  StateMachineScripts(root);
  return 0;
}

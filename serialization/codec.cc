#include "serialization/codec.h"

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "kj/exception.h"
#include "serialization/framing.h"
#include "serialization/scratch_message.h"

namespace caracal::serialization {
namespace {

kj::ArrayPtr<const kj::byte> AsBytes(const Bytes& b) {
  return kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(b.data()), b.size());
}

void HoleToWire(const HoleRun& h, wire::HoleRun::Builder out) {
  out.setFirst(h.first);
  out.setLast(h.last);
  out.setTerm(h.term);
}

absl::StatusOr<HoleRun> HoleFromWire(wire::HoleRun::Reader in) {
  HoleRun h{in.getFirst(), in.getLast(), in.getTerm()};
  if (h.first == 0 || h.last < h.first || h.term == 0) {
    return absl::DataLossError(absl::StrCat("invalid hole run ", h.first, "..", h.last, " term ", h.term));
  }
  return h;
}

void EntriesToWire(const std::vector<Entry>& entries, capnp::List<wire::Entry>::Builder out) {
  for (size_t i = 0; i < entries.size(); ++i) ToWire(entries[i], out[i]);
}

absl::Status EntriesFromWire(capnp::List<wire::Entry>::Reader in, std::vector<Entry>* out, const Bytes* source) {
  out->reserve(in.size());
  for (auto e : in) {
    auto entry = FromWire(e, source);
    if (!entry.ok()) return entry.status();
    out->push_back(*std::move(entry));
  }
  return absl::OkStatus();
}

}  // namespace

void ToWire(const Entry& entry, wire::Entry::Builder out) {
  out.setIndex(entry.index);
  out.setTerm(entry.term);
  out.setTimestamp(entry.timestamp);
  out.setType(static_cast<wire::EntryType>(entry.type));
  out.setPayload(AsBytes(entry.payload));
}

absl::StatusOr<Entry> FromWire(wire::Entry::Reader in, const Bytes* source) {
  Entry e;
  e.index = in.getIndex();
  e.term = in.getTerm();
  e.timestamp = in.getTimestamp();
  uint16_t type = static_cast<uint16_t>(in.getType());
  if (type > kMaxEntryType) return absl::DataLossError(absl::StrCat("unknown entry type ", type, " at index ", e.index));
  if (e.index == 0 || e.term == 0) {
    return absl::DataLossError(absl::StrCat("invalid entry: index ", e.index, " term ", e.term));
  }
  e.type = static_cast<EntryType>(type);
  e.payload = BytesFromData(in.getPayload(), source);
  return e;
}

void AppendEntryRecord(const Entry& entry, std::string* out) {
  ScratchMessage scratch(entry.payload.size());
  capnp::MessageBuilder& message = scratch.message();
  ToWire(entry, message.initRoot<wire::LogRecord>().initEntry());
  AppendRecord(message, out);
}

void AppendHoleRecord(const HoleRun& holes, std::string* out) {
  ScratchMessage scratch(0);
  capnp::MessageBuilder& message = scratch.message();
  HoleToWire(holes, message.initRoot<wire::LogRecord>().initHoles());
  AppendRecord(message, out);
}

absl::StatusOr<LogRecordValue> DecodeLogRecordBody(std::string_view body) {
  return ReadMessage<wire::LogRecord, LogRecordValue>(body, "log record", [&](wire::LogRecord::Reader root) -> absl::StatusOr<LogRecordValue> {
    switch (root.which()) {
      case wire::LogRecord::ENTRY: {
        auto e = FromWire(root.getEntry());
        if (!e.ok()) return e.status();
        return LogRecordValue(*std::move(e));
      }
      case wire::LogRecord::HOLES: {
        auto h = HoleFromWire(root.getHoles());
        if (!h.ok()) return h.status();
        return LogRecordValue(*h);
      }
    }
    return absl::DataLossError("log record of unknown kind");
  });
}

std::string EncodeHardState(const HardState& state) {
  ScratchMessage scratch(0);
  capnp::MessageBuilder& message = scratch.message();
  auto root = message.initRoot<wire::HardState>();
  root.setTerm(state.term);
  root.setVotedFor(state.voted_for);
  return MessageBytes(message);
}

absl::StatusOr<HardState> DecodeHardState(std::string_view bytes) {
  return ReadMessage<wire::HardState, HardState>(bytes, "hard state", [&](wire::HardState::Reader root) -> absl::StatusOr<HardState> {
    return HardState{root.getTerm(), root.getVotedFor()};
  });
}

namespace {

void BuildCommandEntry(capnp::MessageBuilder& message, uint64_t session, uint64_t sequence, std::string_view operation,
                       uint64_t acked_sequence) {
  auto root = message.initRoot<wire::CommandEntry>();
  root.setSession(session);
  root.setSequence(sequence);
  root.setAckedSequence(acked_sequence);
  root.setOperation(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(operation.data()), operation.size()));
}

}  // namespace

std::string EncodeCommandEntry(uint64_t session, uint64_t sequence, std::string_view operation,
                               uint64_t acked_sequence) {
  ScratchMessage scratch(operation.size());
  BuildCommandEntry(scratch.message(), session, sequence, operation, acked_sequence);
  return MessageBytes(scratch.message());
}

Bytes EncodeCommandEntry(BytesArena& arena, uint64_t session, uint64_t sequence, std::string_view operation,
                         uint64_t acked_sequence) {
  ScratchMessage scratch(operation.size());
  capnp::MessageBuilder& message = scratch.message();
  BuildCommandEntry(message, session, sequence, operation, acked_sequence);
  size_t bytes = FlatSize(message);
  BytesArena::Reservation r = arena.Reserve(bytes);
  WriteFlat(message, r.data(), bytes);
  return arena.Finish(r, bytes);
}

absl::StatusOr<CommandEntryView> ReadCommandEntry(std::string_view payload, MessageReader* reader) {
  if (absl::Status s = reader->Parse(payload); !s.ok()) return s;
  try {
    auto root = reader->Root<wire::CommandEntry>();
    auto op = root.getOperation();
    return CommandEntryView{root.getSession(), root.getSequence(),
                            std::string_view(reinterpret_cast<const char*>(op.begin()), op.size()),
                            root.getAckedSequence()};
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed command entry: ", e.getDescription().cStr()));
  }
}

absl::StatusOr<CommandEntryValue> DecodeCommandEntry(std::string_view payload) {
  return ReadMessage<wire::CommandEntry, CommandEntryValue>(payload, "command entry", [&](wire::CommandEntry::Reader root) -> absl::StatusOr<CommandEntryValue> {
    auto op = root.getOperation();
    return CommandEntryValue{root.getSession(), root.getSequence(),
                             std::string(reinterpret_cast<const char*>(op.begin()), op.size()),
                             root.getAckedSequence()};
  });
}

void AppendRaftFrame(const raft::Message& m, std::string* out) {
  size_t payload = 0;
  if (const auto* append = std::get_if<raft::AppendEntries>(&m.body)) {
    for (const Entry& e : append->entries) payload += e.payload.size() + 48;  // + the entry struct and list pointer
    payload += append->holes.size() * 24;
  }
  ScratchMessage scratch(payload);
  capnp::MessageBuilder& message = scratch.message();
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(wire::FORMAT_VERSION);
  auto r = frame.initRaft();
  r.setFrom(m.from);
  r.setTo(m.to);
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, raft::RequestVote>) {
          auto o = r.initRequestVote();
          o.setTerm(b.term);
          o.setLastLogIndex(b.last_log_index);
          o.setLastLogTerm(b.last_log_term);
          o.setPreVote(b.pre_vote);
          o.setLeadershipTransfer(b.leadership_transfer);
        } else if constexpr (std::is_same_v<T, raft::RequestVoteResponse>) {
          auto o = r.initRequestVoteResponse();
          o.setTerm(b.term);
          o.setGranted(b.granted);
          o.setPreVote(b.pre_vote);
        } else if constexpr (std::is_same_v<T, raft::AppendEntries>) {
          auto o = r.initAppendEntries();
          o.setTerm(b.term);
          o.setPrevLogIndex(b.prev_log_index);
          o.setPrevLogTerm(b.prev_log_term);
          EntriesToWire(b.entries, o.initEntries(b.entries.size()));
          auto holes = o.initHoles(b.holes.size());
          for (size_t i = 0; i < b.holes.size(); ++i) HoleToWire(b.holes[i], holes[i]);
          o.setCommitIndex(b.commit_index);
          o.setRound(b.round);
        } else if constexpr (std::is_same_v<T, raft::AppendEntriesResponse>) {
          auto o = r.initAppendEntriesResponse();
          o.setTerm(b.term);
          o.setSuccess(b.success);
          o.setMatchIndex(b.match_index);
          o.setConflictIndex(b.conflict_index);
          o.setConflictTerm(b.conflict_term);
          o.setRound(b.round);
          o.setLastIndex(b.last_index);
          o.setRejectedIndex(b.rejected_index);
        } else if constexpr (std::is_same_v<T, raft::TimeoutNow>) {
          r.initTimeoutNow().setTerm(b.term);
        }
      },
      m.body);
  AppendFrame(message, out);
}

void AppendHelloFrame(const HelloValue& hello, std::string* out) {
  ScratchMessage scratch(0);
  capnp::MessageBuilder& message = scratch.message();
  auto frame = message.initRoot<wire::Frame>();
  frame.setVersion(wire::FORMAT_VERSION);
  auto h = frame.initHello();
  h.setNodeId(hello.node_id);
  h.setClusterId(hello.cluster_id);
  AppendFrame(message, out);
}

namespace {

absl::StatusOr<raft::Message> DecodeRaft(wire::RaftMessage::Reader r, const Bytes* source) {
  raft::Message m;
  m.from = r.getFrom();
  m.to = r.getTo();
  switch (r.which()) {
    case wire::RaftMessage::REQUEST_VOTE: {
      auto i = r.getRequestVote();
      m.body = raft::RequestVote{i.getTerm(), i.getLastLogIndex(), i.getLastLogTerm(), i.getPreVote(),
                                 i.getLeadershipTransfer()};
      break;
    }
    case wire::RaftMessage::REQUEST_VOTE_RESPONSE: {
      auto i = r.getRequestVoteResponse();
      m.body = raft::RequestVoteResponse{i.getTerm(), i.getGranted(), i.getPreVote()};
      break;
    }
    case wire::RaftMessage::APPEND_ENTRIES: {
      auto i = r.getAppendEntries();
      raft::AppendEntries a;
      a.term = i.getTerm();
      a.prev_log_index = i.getPrevLogIndex();
      a.prev_log_term = i.getPrevLogTerm();
      if (auto s = EntriesFromWire(i.getEntries(), &a.entries, source); !s.ok()) return s;
      a.holes.reserve(i.getHoles().size());
      for (auto h : i.getHoles()) {
        auto hole = HoleFromWire(h);
        if (!hole.ok()) return hole.status();
        a.holes.push_back(*hole);
      }
      a.commit_index = i.getCommitIndex();
      a.round = i.getRound();
      m.body = std::move(a);
      break;
    }
    case wire::RaftMessage::APPEND_ENTRIES_RESPONSE: {
      auto i = r.getAppendEntriesResponse();
      m.body = raft::AppendEntriesResponse{i.getTerm(),          i.getSuccess(), i.getMatchIndex(),
                                           i.getConflictIndex(), i.getConflictTerm(), i.getRound(),
                                           i.getLastIndex(),     i.getRejectedIndex()};
      break;
    }
    case wire::RaftMessage::TIMEOUT_NOW:
      m.body = raft::TimeoutNow{r.getTimeoutNow().getTerm()};
      break;
    default:
      return absl::UnimplementedError(absl::StrCat("unsupported raft message kind ", static_cast<int>(r.which())));
  }
  return m;
}

absl::StatusOr<FrameValue> DecodeFrameFrom(std::string_view body, const Bytes* source) {
  return ReadMessage<wire::Frame, FrameValue>(body, "frame", [&](wire::Frame::Reader frame) -> absl::StatusOr<FrameValue> {
    if (frame.getVersion() != wire::FORMAT_VERSION) {
      return absl::FailedPreconditionError(
          absl::StrCat("frame format version ", frame.getVersion(), " is not supported (this build speaks ",
                       wire::FORMAT_VERSION, ")"));
    }
    switch (frame.which()) {
      case wire::Frame::HELLO: {
        auto h = frame.getHello();
        return FrameValue(HelloValue{h.getNodeId(), std::string(h.getClusterId().cStr())});
      }
      case wire::Frame::RAFT: {
        auto m = DecodeRaft(frame.getRaft(), source);
        if (!m.ok()) return m.status();
        return FrameValue(*std::move(m));
      }
      case wire::Frame::CLIENT_REQUEST: {
        auto r = FromWire(frame.getClientRequest(), source);
        if (!r.ok()) return r.status();
        return FrameValue(*std::move(r));
      }
      case wire::Frame::CLIENT_RESPONSE: {
        auto r = FromWire(frame.getClientResponse(), source);
        if (!r.ok()) return r.status();
        return FrameValue(*std::move(r));
      }
      case wire::Frame::PUBLISH_EVENTS: {
        auto p = FromWire(frame.getPublishEvents());
        if (!p.ok()) return p.status();
        return FrameValue(*std::move(p));
      }
      default:
        return absl::UnimplementedError(absl::StrCat("unsupported frame kind ", static_cast<int>(frame.which())));
    }
  });
}

}  // namespace

absl::StatusOr<FrameValue> DecodeFrame(std::string_view body) { return DecodeFrameFrom(body, nullptr); }

absl::StatusOr<FrameValue> DecodeFrame(const Bytes& body) { return DecodeFrameFrom(body.view(), &body); }

}  // namespace caracal::serialization

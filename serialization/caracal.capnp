# Caracal's persistent and wire formats.
#
# Versioning: every frame carries `Frame.version`; readers reject a frame whose
# major version they do not know. Within a version, fields are only ever added
# (Cap'n Proto's evolution rules: new fields get new ordinals, nothing is
# renumbered or retyped), so an older reader ignores what it does not know.
@0xe92430bbddae1088;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("caracal::wire");

const formatVersion :UInt16 = 1;

# ---------------------------------------------------------------- log entries

enum EntryType {
  initialize @0;     # no-op a new leader commits at the start of its term
  command @1;        # a client command (payload: Command)
  register @2;       # opens a client session; the session id is this entry's index
  keepAlive @3;      # batched keep-alives of many sessions
  unregister @4;     # closes (or, when `expired`, expires) a session
  configuration @5;  # a cluster membership (payload: Configuration)
  time @6;           # advances log time in an idle cluster
}

# One log entry. `timestamp` is log time in microseconds, stamped by the leader
# as max(previous entry's timestamp, leader clock): it never goes backwards.
struct Entry {
  index @0 :UInt64;
  term @1 :UInt64;
  timestamp @2 :Int64;
  type @3 :EntryType;
  payload @4 :Data;
}

# A run of indexes [first, last] that compaction removed, all of one term. The
# term stays known so Raft's log-matching check works across holes.
struct HoleRun {
  first @0 :UInt64;
  last @1 :UInt64;
  term @2 :UInt64;
}

# What one on-disk log record holds.
struct LogRecord {
  union {
    entry @0 :Entry;
    holes @1 :HoleRun;
  }
}

# ------------------------------------------------------------- configuration

enum MemberType {
  active @0;    # votes and replicates
  passive @1;   # replicates, does not vote
  reserve @2;   # keeps the configuration only (standby)
  inactive @3;
}

struct Member {
  id @0 :UInt64;
  address @1 :Text;   # host:port of its Raft/client endpoint
  type @2 :MemberType;
}

struct Configuration {
  members @0 :List(Member);
}

# Raft's durable hard state (the metadata file).
struct HardState {
  term @0 :UInt64;
  votedFor @1 :UInt64;   # 0 = none
}

# ---------------------------------------------------------------- raft messages

struct RequestVote {
  term @0 :UInt64;
  lastLogIndex @1 :UInt64;
  lastLogTerm @2 :UInt64;
  preVote @3 :Bool;
  leadershipTransfer @4 :Bool;   # set when answering TimeoutNow: bypasses leader stickiness
}

struct RequestVoteResponse {
  term @0 :UInt64;
  granted @1 :Bool;
  preVote @2 :Bool;
}

struct AppendEntries {
  term @0 :UInt64;
  prevLogIndex @1 :UInt64;
  prevLogTerm @2 :UInt64;
  entries @3 :List(Entry);     # present entries, ascending index
  holes @4 :List(HoleRun);     # indexes in (prevLogIndex, last] absent from `entries`
  commitIndex @5 :UInt64;
  round @6 :UInt64;            # leader's heartbeat round, echoed back (read index)
}

struct AppendEntriesResponse {
  term @0 :UInt64;
  success @1 :Bool;
  matchIndex @2 :UInt64;       # on success: highest index known to match and be durable
  conflictIndex @3 :UInt64;    # on failure: where the leader should retry from
  conflictTerm @4 :UInt64;     # on failure: term at conflictIndex (0 if none)
  round @5 :UInt64;
  lastIndex @6 :UInt64;        # follower's last log index (for fast back-off)
  rejectedIndex @7 :UInt64;    # on failure: the prevLogIndex that did not match
}

struct TimeoutNow {
  term @0 :UInt64;
}

struct InstallSnapshot {
  term @0 :UInt64;
  index @1 :UInt64;            # last index covered by the snapshot
  snapshotTerm @2 :UInt64;
  offset @3 :UInt64;           # byte offset of this chunk (resumable transfer)
  data @4 :Data;
  done @5 :Bool;
  configuration @6 :Configuration;
}

struct InstallSnapshotResponse {
  term @0 :UInt64;
  index @1 :UInt64;
  nextOffset @2 :UInt64;
  done @3 :Bool;
}

struct RaftMessage {
  from @0 :UInt64;
  to @1 :UInt64;
  union {
    requestVote @2 :RequestVote;
    requestVoteResponse @3 :RequestVoteResponse;
    appendEntries @4 :AppendEntries;
    appendEntriesResponse @5 :AppendEntriesResponse;
    timeoutNow @6 :TimeoutNow;
    installSnapshot @7 :InstallSnapshot;
    installSnapshotResponse @8 :InstallSnapshotResponse;
  }
}

# ---------------------------------------------------------------- client protocol
# A client opens one TCP connection to one server, says Hello with node id 0,
# then sends ClientRequests and receives ClientResponses (matched by
# requestId, possibly out of order) and, unasked, PublishEvents for its
# session. Sessions, sequencing and events: DESIGN.md sections 4, 6 and 11.

enum Consistency {
  linearizable @0;
  linearizableLease @1;
  sequential @2;
}

struct ConnectRequest {
  clientId @0 :Text;
}

struct RegisterRequest {
  clientId @0 :Text;
  timeoutMs @1 :UInt64;      # the session expires this long (log time) after its last keep-alive
}

struct KeepAliveRequest {
  session @0 :UInt64;
  commandSequence @1 :UInt64;  # highest sequence whose response the client received
  eventIndex @2 :UInt64;       # highest event batch index the client received
}

struct UnregisterRequest {
  session @0 :UInt64;
}

struct CommandRequest {
  session @0 :UInt64;
  sequence @1 :UInt64;         # 1, 2, ... per session; a retry reuses its number
  operation @2 :Data;          # an Operation message (framework/include/caracal/codec.h)
  ackedSequence @3 :UInt64;    # the client has every response up to here (as keepAlive's commandSequence)
}

struct QueryRequest {
  session @0 :UInt64;
  sequence @1 :UInt64;         # the last command sequence the client submitted
  index @2 :UInt64;            # the highest index the client has seen (SEQUENTIAL waits for it)
  consistency @3 :Consistency;
  operation @4 :Data;
}

struct ResetEventsRequest {
  session @0 :UInt64;
  fromIndex @1 :UInt64;        # resend every batch after this index
}

struct ClientRequest {
  requestId @0 :UInt64;
  union {
    connect @1 :ConnectRequest;
    register @2 :RegisterRequest;
    keepAlive @3 :KeepAliveRequest;
    unregister @4 :UnregisterRequest;
    command @5 :CommandRequest;
    query @6 :QueryRequest;
    resetEvents @7 :ResetEventsRequest;
  }
}

struct ResponseStatus {
  code @0 :UInt16;             # absl::StatusCode (0 = OK)
  message @1 :Text;
}

struct ClientResponse {
  requestId @0 :UInt64;
  status @1 :ResponseStatus;
  leader @2 :UInt64;           # the server's view of the leader (0: unknown)
  members @3 :List(Member);    # where else the client may go
  union {
    none @4 :Void;             # connect, keepAlive, unregister, resetEvents, errors
    register @5 :RegisterResult;
    command @6 :OperationResult;
    query @7 :OperationResult;
  }
}

struct RegisterResult {
  session @0 :UInt64;
  timeoutMs @1 :UInt64;
}

struct OperationResult {
  index @0 :UInt64;            # the command's index, or the index a query read at
  eventIndex @1 :UInt64;       # the session's last event batch index at or before `index`
  result @2 :Data;             # the encoded result (codec::EncodeResult)
}

struct Event {
  name @0 :Text;
  payload @1 :Data;            # a codec Value message
}

# Server -> client, unasked: the events published to a session at one index.
struct PublishEvents {
  session @0 :UInt64;
  eventIndex @1 :UInt64;       # the index of the command that published them
  previousIndex @2 :UInt64;    # the session's previous batch (0 if none): a gap means a resend is due
  events @3 :List(Event);
}

# ---------------------------------------------------------------- frames
# On the wire every message is one Frame; see framing.h for the byte layout.

struct Hello {
  nodeId @0 :UInt64;           # 0 for a client
  clusterId @1 :Text;
}

struct Frame {
  version @0 :UInt16 = 1;
  union {
    hello @1 :Hello;
    raft @2 :RaftMessage;
    clientRequest @3 :ClientRequest;
    clientResponse @4 :ClientResponse;
    publishEvents @5 :PublishEvents;
  }
}

# ---------------------------------------------------------------- operations
# How application operations (framework/include/caracal/operation.h) and their
# results travel. The encoding is self-describing rather than one generated
# struct per operation type, so an application registers an operation with a
# C++ struct and CARACAL_FIELDS(...) and never writes a schema. The mapping of
# C++ types onto Value is in framework/include/caracal/codec.h:
#
#   bool                             -> bool
#   signed integer, enum or duration
#   count of a signed type           -> int    (a decoder takes `int` or `uint`
#   ... of an unsigned type          -> uint    when the value fits, else errors)
#   float, double (or such a count)  -> float
#   std::string                      -> text   (a decoder also takes `data`)
#   vector of a 1-byte type          -> data   (a decoder also takes `text`)
#   std::monostate (a void result),
#   an empty std::optional           -> none   (a present one: its value's encoding)
#   vector, array, set               -> list of the elements
#   map                              -> list of `record [key, value]`
#   pair, tuple                      -> record of the members
#   struct with CARACAL_FIELDS, and
#   an operation's args              -> record of the fields in declaration order
#
# Evolution: a record is positional. A reader takes the fields it knows from
# the front and ignores any extra ones; fields missing from the end keep their
# default values. So adding a field at the end of an operation struct is
# compatible in both directions; reordering, removing from the middle or
# changing a field's type is not.

struct Value {
  union {
    none @0 :Void;
    bool @1 :Bool;
    int @2 :Int64;
    uint @3 :UInt64;
    float @4 :Float64;
    text @5 :Text;
    data @6 :Data;
    list @7 :List(Value);
    record @8 :List(Value);
  }
}

# One operation as a client submits it and as it is stored in a command entry
# (or carried by a query request): `name` is the operation's stable wire
# identity (its C++ kName), `args` its fields as a record.
struct Operation {
  name @0 :Text;
  args @1 :Value;
}

# ---------------------------------------------------------------- entry payloads

# The payload of a `command` log entry. `operation` holds the bytes of one
# Operation message exactly as the client encoded it (the server parses it
# when applying; a payload that does not parse is answered with an error and
# changes no state).
struct CommandEntry {
  session @0 :UInt64;    # 0: submitted without a session (embedded use)
  sequence @1 :UInt64;   # the session's command sequence number (1, 2, ...)
  operation @2 :Data;
  ackedSequence @3 :UInt64;  # the client had every response up to here: the cached ones may go
}

# The payload of a `register` entry: opens a session whose id is the entry's index.
struct RegisterEntry {
  clientId @0 :Text;
  timeoutMs @1 :UInt64;
}

# The payload of a `keepAlive` entry: the keep-alives of many sessions, batched.
struct KeepAliveEntry {
  sessions @0 :List(KeepAliveItem);
}

struct KeepAliveItem {
  session @0 :UInt64;
  commandSequence @1 :UInt64;  # responses up to here may be dropped from the cache
  eventIndex @2 :UInt64;       # event batches up to here may be dropped
}

# The payload of an `unregister` entry: closes a session (or expires it).
struct UnregisterEntry {
  session @0 :UInt64;
  expired @1 :Bool;            # committed by a leader for a session whose keep-alives stopped
}

// The non-template half of caracal/codec.h: parsing untrusted messages,
// error messages with field paths, OperationView, DebugString and the fuzz
// entry point.

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "caracal/codec.h"
#include "caracal/operation.h"
#include "serialization/framing.h"

namespace caracal::codec {
namespace internal {
namespace {

std::string Str(std::string_view s) { return std::string(s); }

// The i-th name of a CARACAL_FIELDS(a, b, c) list ("" if there is none).
std::string_view FieldName(std::string_view names, size_t index) {
  for (size_t i = 0;; ++i) {
    size_t comma = names.find(',');
    std::string_view name = names.substr(0, comma);
    auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t'; };
    while (!name.empty() && space(name.front())) name.remove_prefix(1);
    while (!name.empty() && space(name.back())) name.remove_suffix(1);
    if (i == index) return name;
    if (comma == std::string_view::npos) return {};
    names.remove_prefix(comma + 1);
  }
}

std::string_view KindName(uint16_t tag) {
  switch (tag) {
    case wire::Value::NONE: return "none";
    case wire::Value::BOOL: return "a bool";
    case wire::Value::INT: return "an integer";
    case wire::Value::UINT: return "an unsigned integer";
    case wire::Value::FLOAT: return "a float";
    case wire::Value::TEXT: return "text";
    case wire::Value::DATA: return "data";
    case wire::Value::LIST: return "a list";
    case wire::Value::RECORD: return "a record";
    default: return {};
  }
}

// The nesting Cap'n Proto itself allows: every Value level costs it about
// two pointer hops, and an Operation adds one. Ours (kMaxDepth) trips first.
constexpr int kCapnpNestingLimit = 2 * kMaxDepth + 8;

}  // namespace

std::string DecodeContext::Where() const {
  std::string out = Str(root_);
  for (int i = 0; i < depth_; ++i) {
    const Segment& s = path_[i];
    switch (s.kind) {
      case Segment::Kind::kField: {
        absl::StrAppend(&out, ": field ", s.index);
        std::string_view name = FieldName(s.field_names, s.index);
        if (!name.empty()) absl::StrAppend(&out, " (", Str(name), ")");
        break;
      }
      case Segment::Kind::kElement: absl::StrAppend(&out, ": element ", s.index); break;
      case Segment::Kind::kMember: absl::StrAppend(&out, ": member ", s.index); break;
      case Segment::Kind::kKey: absl::StrAppend(&out, ": key of entry ", s.index); break;
      case Segment::Kind::kMapValue: absl::StrAppend(&out, ": value of entry ", s.index); break;
      case Segment::Kind::kPresent: absl::StrAppend(&out, ": optional value"); break;
    }
  }
  return out;
}

absl::Status DecodeContext::Error(absl::StatusCode code, std::string_view detail) const {
  return absl::Status(code, absl::StrCat(Where(), ": ", Str(detail)));
}

absl::Status DecodeContext::MismatchTag(std::string_view expected, uint16_t got_tag) const {
  std::string_view got = KindName(got_tag);
  std::string got_text = got.empty() ? absl::StrCat("an unknown kind of value (tag ", got_tag, ")") : Str(got);
  return Error(absl::StatusCode::kInvalidArgument, absl::StrCat("expected ", Str(expected), ", got ", got_text));
}

absl::Status DecodeContext::TooDeep() const {
  return Error(absl::StatusCode::kInvalidArgument, absl::StrCat("values nest deeper than ", kMaxDepth, " levels"));
}

absl::Status DecodeContext::OutOfRange(int64_t value, int64_t min, uint64_t max) const {
  return Error(absl::StatusCode::kInvalidArgument,
               absl::StrCat("integer ", value, " does not fit the field's type (range ", min, "..", max, ")"));
}

absl::Status DecodeContext::OutOfRange(uint64_t value, int64_t min, uint64_t max) const {
  return Error(absl::StatusCode::kInvalidArgument,
               absl::StrCat("integer ", value, " does not fit the field's type (range ", min, "..", max, ")"));
}

absl::Status DecodeContext::Malformed(const kj::Exception& e) const {
  return Error(absl::StatusCode::kDataLoss, absl::StrCat("malformed Cap'n Proto value: ", e.getDescription().cStr()));
}

absl::Status DecodeContext::Failed(const std::exception& e) const {
  return Error(absl::StatusCode::kInvalidArgument, absl::StrCat("cannot decode: ", e.what()));
}

std::string MessageToBytes(capnp::MessageBuilder& message) { return serialization::MessageBytes(message); }

void MessageToBytes(capnp::MessageBuilder& message, std::string* out) {
  out->clear();
  serialization::AppendMessage(message, out);
}

void SetText(std::string_view text, wire::Value::Builder out) {
  auto t = out.initText(static_cast<unsigned>(text.size()));
  if (!text.empty()) std::memcpy(t.begin(), text.data(), text.size());
}

void SetOperationName(std::string_view name, wire::Operation::Builder out) {
  auto t = out.initName(static_cast<unsigned>(name.size()));
  std::memcpy(t.begin(), name.data(), name.size());
}

// ---- ParsedMessage ----

ParsedMessage::~ParsedMessage() noexcept = default;

absl::StatusOr<std::unique_ptr<ParsedMessage>> ParsedMessage::Parse(std::string_view bytes, bool own_copy) {
  auto parsed = std::make_unique<ParsedMessage>();
  if (absl::Status s = parsed->Reset(bytes, own_copy); !s.ok()) return s;
  return parsed;
}

absl::Status ParsedMessage::Reset(std::string_view bytes, bool own_copy) {
  reader_.reset();
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return absl::DataLossError(absl::StrCat("malformed Cap'n Proto message: ", bytes.size(),
                                            " bytes are not a whole number of 8-byte words"));
  }
  const size_t words = bytes.size() / sizeof(capnp::word);
  kj::ArrayPtr<const capnp::word> array;
  if (!own_copy && reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) {
    array = kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(bytes.data()), words);
  } else {
    if (copy_.size() < words) copy_ = kj::heapArray<capnp::word>(words);
    std::memcpy(copy_.begin(), bytes.data(), bytes.size());
    array = kj::ArrayPtr<const capnp::word>(copy_.begin(), words);
  }
  capnp::ReaderOptions options;
  // Bounds the work a message can cause (shared subtrees, zero-sized list
  // elements) to a few passes over its size; an OperationView may decode its
  // args a few times.
  options.traversalLimitInWords = words * 8 + 1024;
  options.nestingLimit = kCapnpNestingLimit;
  try {
    reader_.emplace(array, options);
    const capnp::word* end = reader_->getEnd();
    if (end != array.end()) {
      reader_.reset();
      return absl::DataLossError(absl::StrCat("malformed Cap'n Proto message: ",
                                              (array.end() - end) * sizeof(capnp::word),
                                              " trailing bytes after the message"));
    }
  } catch (const kj::Exception& e) {
    reader_.reset();
    return absl::DataLossError(absl::StrCat("malformed Cap'n Proto message: ", e.getDescription().cStr()));
  }
  return absl::OkStatus();
}

absl::StatusOr<wire::Value::Reader> ParsedMessage::ValueRoot() {
  try {
    return reader_->getRoot<wire::Value>();
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed Cap'n Proto value: ", e.getDescription().cStr()));
  }
}

absl::StatusOr<wire::Operation::Reader> ParsedMessage::OperationRoot() {
  try {
    return reader_->getRoot<wire::Operation>();
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed operation: ", e.getDescription().cStr()));
  }
}

}  // namespace internal

// ---- OperationView ----

OperationView::OperationView(std::unique_ptr<internal::ParsedMessage> owned, internal::ParsedMessage* message)
    : owned_(std::move(owned)), message_(message) {}
OperationView::OperationView(OperationView&&) noexcept = default;
OperationView& OperationView::operator=(OperationView&&) noexcept = default;
OperationView::~OperationView() = default;

absl::StatusOr<wire::Value::Reader> OperationView::Args() const {
  auto root = message_->OperationRoot();
  if (!root.ok()) return root.status();
  try {
    return root->getArgs();
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat(std::string(name_), ": malformed args: ", e.getDescription().cStr()));
  }
}

absl::Status OperationView::NameMismatch(std::string_view expected) const {
  return absl::InvalidArgumentError(
      absl::StrCat("operation \"", std::string(name_), "\" cannot be decoded as \"", std::string(expected), "\""));
}

absl::StatusOr<OperationView> OperationView::Read(std::unique_ptr<internal::ParsedMessage> owned,
                                                  internal::ParsedMessage* message) {
  auto root = message->OperationRoot();
  if (!root.ok()) return root.status();
  std::string_view name;
  try {
    auto text = root->getName();
    name = std::string_view(text.begin(), text.size());
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrCat("malformed operation name: ", e.getDescription().cStr()));
  }
  if (name.empty()) return absl::InvalidArgumentError("operation has no name");
  OperationView view(std::move(owned), message);
  view.name_ = name;  // inside the message's words, which do not move with the view
  return view;
}

absl::StatusOr<OperationView> ParseOperation(std::string_view bytes) {
  auto message = internal::ParsedMessage::Parse(bytes, /*own_copy=*/true);
  if (!message.ok()) return message.status();
  internal::ParsedMessage* raw = message->get();
  return OperationView::Read(*std::move(message), raw);
}

absl::StatusOr<OperationView> ParseOperationInPlace(std::string_view bytes, internal::ParsedMessage* storage) {
  if (absl::Status s = storage->Reset(bytes, /*own_copy=*/false); !s.ok()) return s;
  return OperationView::Read(nullptr, storage);
}

// ---- DebugString ----

namespace {

class DebugWriter {
 public:
  explicit DebugWriter(size_t max_bytes) : max_bytes_(max_bytes) {}

  void Write(wire::Value::Reader v, int depth) {
    if (Full()) return;
    if (depth > kMaxDepth) {
      out_ += "<too deep>";
      return;
    }
    switch (v.which()) {
      case wire::Value::NONE: out_ += "none"; break;
      case wire::Value::BOOL: out_ += v.getBool() ? "true" : "false"; break;
      case wire::Value::INT: absl::StrAppend(&out_, v.getInt()); break;
      case wire::Value::UINT: absl::StrAppend(&out_, v.getUint(), "u"); break;
      case wire::Value::FLOAT: absl::StrAppend(&out_, v.getFloat()); break;
      case wire::Value::TEXT: Quoted(std::string_view(v.getText().begin(), v.getText().size())); break;
      case wire::Value::DATA: absl::StrAppend(&out_, "<", v.getData().size(), " bytes>"); break;
      case wire::Value::LIST: Items(v.getList(), "[", "]", depth); break;
      case wire::Value::RECORD: Items(v.getRecord(), "{", "}", depth); break;
      default: absl::StrAppend(&out_, "<unknown kind ", static_cast<int>(v.which()), ">"); break;
    }
  }

  std::string Take() {
    if (Full()) {
      out_.resize(max_bytes_);
      out_ += "...";
    }
    return std::move(out_);
  }
  std::string& out() { return out_; }

 private:
  bool Full() const { return out_.size() >= max_bytes_; }

  void Quoted(std::string_view text) {
    out_ += '"';
    for (char c : text.substr(0, max_bytes_)) {
      if (c == '"' || c == '\\') out_ += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        out_ += '?';
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }

  void Items(capnp::List<wire::Value>::Reader items, const char* open, const char* close, int depth) {
    out_ += open;
    for (unsigned i = 0; i < items.size() && !Full(); ++i) {
      if (i > 0) out_ += ", ";
      Write(items[i], depth + 1);
    }
    out_ += close;
  }

  size_t max_bytes_;
  std::string out_;
};

}  // namespace

std::string DebugString(wire::Value::Reader value, size_t max_bytes) {
  DebugWriter writer(max_bytes);
  try {
    writer.Write(value, 0);
  } catch (const kj::Exception& e) {
    writer.out() += "<malformed>";
  }
  return writer.Take();
}

// ---- fuzz entry point ----

namespace {

enum class FuzzColor : int8_t { kRed, kGreen };

struct FuzzInner {
  std::string name;
  std::vector<uint8_t> blob;
  std::optional<std::optional<int32_t>> maybe;
  CARACAL_FIELDS(name, blob, maybe)
};

struct FuzzOp : Command<std::monostate> {
  static constexpr std::string_view kName = "fuzz.op";
  bool flag = false;
  uint8_t small = 0;
  int64_t big = 0;
  FuzzColor color = FuzzColor::kRed;
  double ratio = 0;
  float ratio32 = 0;
  std::chrono::milliseconds ttl{0};
  std::vector<FuzzInner> items;
  std::map<std::string, std::vector<int16_t>> index;
  absl::flat_hash_map<uint32_t, FuzzInner> by_id;
  std::set<int64_t> ids;
  std::pair<std::string, bool> pair;
  std::tuple<int, std::string, std::optional<double>> tuple;
  std::array<uint16_t, 3> triple{};
  CARACAL_FIELDS(flag, small, big, color, ratio, ratio32, ttl, items, index, by_id, ids, pair, tuple, triple)
};

// A recursive type: hostile input may nest it as deep as it likes.
struct FuzzTree {
  int32_t value = 0;
  std::vector<FuzzTree> children;
  CARACAL_FIELDS(value, children)
};

}  // namespace

int FuzzOperationBytes(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto op = ParseOperation(bytes); op.ok()) {
    (void)op->DecodeArgs<FuzzOp>();  // checks the name first
    if (auto args = op->Args(); args.ok()) {
      (void)DebugString(*args);
      FuzzOp fuzz_op;  // whatever the name: exercise every decoder
      (void)Decode(*args, &fuzz_op);
      FuzzTree tree;
      (void)Decode(*args, &tree);
    }
  }
  (void)FromBytes<FuzzTree>(bytes);
  (void)FromBytes<std::map<int8_t, std::optional<std::string>>>(bytes);
  (void)FromBytes<std::tuple<uint64_t, std::vector<bool>, std::monostate>>(bytes);
  return 0;
}

}  // namespace caracal::codec

// Fuzz target: log records as they lie on disk (serialization/framing.h
// ReadRecord, codec.h DecodeLogRecordBody) and the hard state of the
// metadata file (DecodeHardState).
//
// The input is read as back-to-back records, once as it is and once with the
// record checksums repaired (fuzz_util.h: random bytes never match an XXH3,
// and the decoders sit behind it). The bytes after the first record header
// are also decoded directly as a record body, and the whole input as a hard
// state.
//
// Properties: nothing crashes, leaks or hangs; ReadRecord's verdict is
// consistent (an Ok record lies inside the input, is 16 + body bytes long and
// is word aligned in size); a decoded entry or hole run re-encodes to a
// record that reads back equal.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "serialization/codec.h"
#include "serialization/framing.h"
#include "tests/fuzz/fuzz_util.h"

namespace caracal::fuzz {
namespace {

using serialization::RecordView;

void CheckRoundTrip(const serialization::LogRecordValue& value) {
  std::string record;
  if (const Entry* e = std::get_if<Entry>(&value)) {
    serialization::AppendEntryRecord(*e, &record);
  } else {
    serialization::AppendHoleRecord(std::get<HoleRun>(value), &record);
  }
  RecordView view = serialization::ReadRecord(record);
  FUZZ_CHECK(view.kind == RecordView::Kind::kOk);
  FUZZ_CHECK(view.size == record.size());
  auto again = serialization::DecodeLogRecordBody(view.body);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(*again == value);
}

void DecodeBody(std::string_view body) {
  auto value = serialization::DecodeLogRecordBody(body);
  if (value.ok()) CheckRoundTrip(*value);
}

void ReadRecords(std::string_view data) {
  size_t offset = 0;
  while (offset < data.size()) {
    RecordView view = serialization::ReadRecord(data.substr(offset));
    if (view.kind != RecordView::Kind::kOk) {
      FUZZ_CHECK(!view.reason.empty());
      return;
    }
    FUZZ_CHECK(view.size == serialization::kRecordHeaderBytes + view.body.size());
    FUZZ_CHECK(view.size <= data.size() - offset);
    FUZZ_CHECK(view.body.size() % 8 == 0 && !view.body.empty());
    DecodeBody(view.body);
    offset += view.size;
  }
}

}  // namespace
}  // namespace caracal::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace caracal::fuzz;
  std::string_view input = AsView(data, size);
  ReadRecords(input);
  std::string repaired(input);
  RepairRecords(&repaired, 0);
  if (repaired != input) ReadRecords(repaired);
  if (input.size() > caracal::serialization::kRecordHeaderBytes) {
    DecodeBody(input.substr(caracal::serialization::kRecordHeaderBytes));
  }
  if (auto hard = caracal::serialization::DecodeHardState(input); hard.ok()) {
    auto again = caracal::serialization::DecodeHardState(caracal::serialization::EncodeHardState(*hard));
    FUZZ_CHECK(again.ok() && *again == *hard);
  }
  return 0;
}

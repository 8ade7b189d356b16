#ifndef CARACAL_FRAMEWORK_COMMON_BYTES_H_
#define CARACAL_FRAMEWORK_COMMON_BYTES_H_

#include <memory>
#include <string>
#include <string_view>

namespace caracal {

// An immutable, reference-counted byte string. Entries are handed from the
// raft core to storage, to several followers' messages and to the applier;
// sharing the payload means none of them copies it.
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::string data) : data_(std::make_shared<const std::string>(std::move(data))) {}
  explicit Bytes(std::string_view data) : Bytes(std::string(data)) {}

  std::string_view view() const { return data_ ? std::string_view(*data_) : std::string_view(); }
  const char* data() const { return view().data(); }
  size_t size() const { return data_ ? data_->size() : 0; }
  bool empty() const { return size() == 0; }

  friend bool operator==(const Bytes& a, const Bytes& b) { return a.view() == b.view(); }

 private:
  std::shared_ptr<const std::string> data_;
};

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_BYTES_H_

#ifndef CARACAL_FRAMEWORK_SERVER_LOG_ADAPTER_H_
#define CARACAL_FRAMEWORK_SERVER_LOG_ADAPTER_H_

// The raft core reads the durable log (storage::Log) through this.

#include <optional>
#include <vector>

#include "framework/raft/log_reader.h"
#include "framework/storage/log.h"

namespace caracal::server {

class LogAdapter : public raft::LogReader {
 public:
  explicit LogAdapter(const storage::Log* log) : log_(log) {}
  Index FirstIndex() const override { return log_->FirstIndex(); }
  Index LastIndex() const override { return log_->LastIndex(); }
  std::optional<Term> TermAt(Index index) const override { return log_->TermAt(index); }
  absl::Status Read(Index from, Index to, size_t max_bytes, std::vector<Entry>* entries,
                    std::vector<HoleRun>* holes) const override {
    return log_->Read(from, to, max_bytes, entries, holes);
  }

 private:
  const storage::Log* log_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_LOG_ADAPTER_H_

#ifndef CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_
#define CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_

// Which applied log entries still contribute to state. An entry is *live*
// from the moment it is applied until its Commit is released (by the user, by
// destroying the Commit, or by the framework for its own entries). The
// compactor asks IsReleased() for every index up to the applied index.
//
// Invariant: every index in live_ is <= applied_. State machine thread only.

#include <cstddef>

#include "absl/container/btree_set.h"
#include "framework/common/types.h"

namespace caracal::server {

class ReleaseTracker {
 public:
  // Entry `index` was applied and is held (live) until Release(index).
  void Hold(Index index);
  // Entry `index` was applied and released at once (framework entries,
  // failed commands, commits the handler did not keep).
  void Applied(Index index);
  void Release(Index index);

  bool IsReleased(Index index) const { return index <= applied_ && !live_.contains(index); }
  Index applied() const { return applied_; }
  size_t live() const { return live_.size(); }
  // The lowest live index, or applied()+1 when nothing is live.
  Index FirstLive() const { return live_.empty() ? applied_ + 1 : *live_.begin(); }

 private:
  Index applied_ = 0;
  absl::btree_set<Index> live_;
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_

#ifndef CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_
#define CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_

// Which applied log entries still contribute to state. An entry is *live*
// while anything holds it: its Commit (until released by the user, by being
// destroyed, or by the framework for its own entries), a session it opened,
// the latest keep-alive of a session, or events it published that the client has not acknowledged. Holds are
// counted; the compactor asks IsReleased() for indexes up to applied().
//
// Invariant: every index in live_ is <= applied_ and has a count > 0. State
// machine thread only.

#include <cstddef>

#include "absl/container/btree_map.h"
#include "framework/common/types.h"

namespace caracal::server {

class ReleaseTracker {
 public:
  // One more hold on entry `index` (applied now or before); Release drops one.
  void Hold(Index index);
  // Entry `index` was applied and released at once (framework entries,
  // failed commands, commits the handler did not keep).
  void Applied(Index index);
  void Release(Index index);

  bool IsReleased(Index index) const { return index <= applied_ && !live_.contains(index); }
  Index applied() const { return applied_; }
  size_t live() const { return live_.size(); }
  // The lowest live index, or applied()+1 when nothing is live.
  Index FirstLive() const { return live_.empty() ? applied_ + 1 : live_.begin()->first; }

 private:
  Index applied_ = 0;
  absl::btree_map<Index, int> live_;  // index -> holds
};

}  // namespace caracal::server

#endif  // CARACAL_FRAMEWORK_SERVER_RELEASE_TRACKER_H_

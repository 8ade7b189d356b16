#include "framework/server/release_tracker.h"

#include <algorithm>

namespace caracal::server {

void ReleaseTracker::Hold(Index index) {
  applied_ = std::max(applied_, index);
  ++live_[index];
}

void ReleaseTracker::Applied(Index index) { applied_ = std::max(applied_, index); }

void ReleaseTracker::Release(Index index) {
  auto it = live_.find(index);
  if (it != live_.end() && --it->second == 0) live_.erase(it);
}

}  // namespace caracal::server

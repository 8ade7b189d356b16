#include "framework/server/release_tracker.h"

#include <algorithm>

namespace caracal::server {

void ReleaseTracker::Hold(Index index) {
  applied_ = std::max(applied_, index);
  live_.insert(index);
}

void ReleaseTracker::Applied(Index index) { applied_ = std::max(applied_, index); }

void ReleaseTracker::Release(Index index) { live_.erase(index); }

}  // namespace caracal::server

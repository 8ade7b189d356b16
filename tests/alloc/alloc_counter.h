#ifndef CARACAL_TESTS_ALLOC_ALLOC_COUNTER_H_
#define CARACAL_TESTS_ALLOC_ALLOC_COUNTER_H_

// Counts heap allocations (every operator new, and malloc through it) made by
// the calling thread. The alloc_test binary replaces the global operator new
// to keep the count; nothing else links this.
//
//   AllocationCounter count;
//   DoWork();
//   EXPECT_EQ(count.allocations(), 0);

#include <cstdint>

namespace caracal::testing {

// Allocations by this thread since the program started.
uint64_t ThreadAllocations();

class AllocationCounter {
 public:
  AllocationCounter() : start_(ThreadAllocations()) {}
  uint64_t allocations() const { return ThreadAllocations() - start_; }
  void Reset() { start_ = ThreadAllocations(); }

 private:
  uint64_t start_;
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_ALLOC_ALLOC_COUNTER_H_

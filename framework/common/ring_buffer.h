#ifndef CARACAL_FRAMEWORK_COMMON_RING_BUFFER_H_
#define CARACAL_FRAMEWORK_COMMON_RING_BUFFER_H_

// RingBuffer: a double-ended queue in one array that keeps its capacity.
//
// std::deque allocates a block for every few elements pushed and frees it as
// they are popped, so a queue that entries stream through (the raft core's
// unstable log, storage's tail cache) costs an allocation every handful of
// entries forever. A RingBuffer allocates only when it grows past its
// largest size so far (doubling), and then never again in steady state.
//
// Invariants: slots_.size() is 0 or a power of two; the elements are
// slots_[(head_ + i) & mask] for i in [0, size_); every other slot holds a
// default-constructed T (popped elements are reset, releasing what they own).

#include <cassert>
#include <cstddef>
#include <utility>
#include <vector>

namespace caracal {

template <typename T>
class RingBuffer {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return slots_.size(); }

  T& operator[](size_t i) {
    assert(i < size_);
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }
  const T& operator[](size_t i) const {
    assert(i < size_);
    return slots_[(head_ + i) & (slots_.size() - 1)];
  }
  T& front() { return (*this)[0]; }
  const T& front() const { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }
  const T& back() const { return (*this)[size_ - 1]; }

  void push_back(T value) {
    if (size_ == slots_.size()) Grow();
    slots_[(head_ + size_) & (slots_.size() - 1)] = std::move(value);
    ++size_;
  }
  void push_front(T value) {
    if (size_ == slots_.size()) Grow();
    head_ = (head_ + slots_.size() - 1) & (slots_.size() - 1);
    slots_[head_] = std::move(value);
    ++size_;
  }
  void pop_front() {
    assert(size_ > 0);
    slots_[head_] = T();
    head_ = (head_ + 1) & (slots_.size() - 1);
    --size_;
  }
  void pop_back() {
    assert(size_ > 0);
    back() = T();
    --size_;
  }
  // Keeps the capacity.
  void clear() {
    while (size_ > 0) pop_back();
    head_ = 0;
  }
  // Room for `n` elements without another allocation.
  void reserve(size_t n) {
    while (slots_.size() < n) Grow();
  }

 private:
  void Grow() {
    std::vector<T> bigger(slots_.empty() ? 16 : slots_.size() * 2);
    for (size_t i = 0; i < size_; ++i) bigger[i] = std::move((*this)[i]);
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_RING_BUFFER_H_

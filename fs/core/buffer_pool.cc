#include "meshfs/core/buffer_pool.h"

#include <utility>

namespace meshfs {

BufferPool::BufferPool(size_t max_buffers, size_t min_bytes)
    : max_buffers_(max_buffers), min_bytes_(min_bytes) {}

std::string BufferPool::Take(size_t n) {
  std::string s;
  if (n >= min_bytes_) {  // a small one would let a large buffer go
    std::lock_guard<std::mutex> lock(mu_);
    // Only a buffer with room for `n` (growing one would copy it into a
    // new allocation). The first already that long: resize() then only
    // moves the end marker; otherwise the longest, with the least to fill.
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].capacity() < n) continue;
      if (free_[i].size() >= n) {
        best = i;
        break;
      }
      if (best == free_.size() || free_[i].size() > free_[best].size()) best = i;
    }
    if (best < free_.size()) s = RemoveLocked(best);
  }
  s.resize(n);
  return s;
}

std::string BufferPool::TakeEmpty(size_t n) {
  std::string s;
  if (n >= min_bytes_) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].capacity() >= n) {
        s = RemoveLocked(i);
        break;
      }
    }
  }
  s.clear();
  s.reserve(n);
  return s;
}

std::string BufferPool::RemoveLocked(size_t i) {
  std::string s = std::move(free_[i]);
  free_[i] = std::move(free_.back());
  free_.pop_back();
  return s;
}

void BufferPool::Give(std::string&& s) {
  if (s.size() < min_bytes_) return;
  std::string mine = std::move(s);
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.size() < max_buffers_) free_.push_back(std::move(mine));
}

std::shared_ptr<const std::string> BufferPool::Share(std::string&& s) {
  return std::shared_ptr<const std::string>(new std::string(std::move(s)),
                                            [this](const std::string* p) {
                                              auto* mine = const_cast<std::string*>(p);
                                              Give(std::move(*mine));
                                              delete mine;
                                            });
}

size_t BufferPool::kept() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size();
}

BufferPool& BufferPool::Slices() {
  static BufferPool* pool = new BufferPool(16, 64 << 10);
  return *pool;
}

}  // namespace meshfs

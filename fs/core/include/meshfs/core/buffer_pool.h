// Slice-sized byte buffers handed from one use to the next.
//
// A read of a cached slice needs two buffers of up to the slice size: the
// blob from the cache database and the plaintext decrypted from it. A new
// std::string of that size is zero-filled by resize() before SQLite or the
// cipher overwrites every byte, and its memory is new to the process, so
// the kernel faults in and clears each page first: 9 % of the CPU samples
// of a warm read of 1 GiB (docs/architecture.md, "Read path: slice
// buffers"). The pool keeps the buffers of slices that were let go and
// gives them to the next reads at their old size, so neither happens again.
// The write path shares it: a written slice's plaintext, the encoded blob
// and the blob an upload sent go back to it, and a peer's reply body is
// appended into one of its buffers.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace meshfs {

class BufferPool {
 public:
  // Keeps at most `max_buffers` buffers, each of at least `min_bytes`.
  BufferPool(size_t max_buffers, size_t min_bytes);

  // A string of exactly `n` bytes whose contents are unspecified (a reused
  // buffer still holds what it held): the caller overwrites all of them.
  // Under min_bytes it is a new one (it would not be kept afterwards).
  std::string Take(size_t n);

  // An empty string with room for `n` bytes (for appending), in a kept
  // buffer if one is large enough.
  std::string TakeEmpty(size_t n);

  // Keeps `s`'s storage for a later Take, unless the pool is full or `s` is
  // smaller than min_bytes.
  void Give(std::string&& s);

  // `s` shared; when the last owner lets go, its storage goes back to the
  // pool. The pool must outlive every pointer it shares.
  std::shared_ptr<const std::string> Share(std::string&& s);

  size_t kept() const;

  // The process's pool for slice buffers (16 of at least 64 KiB); never
  // destroyed, so pointers it shared may outlive main().
  static BufferPool& Slices();

 private:
  const size_t max_buffers_;
  const size_t min_bytes_;
  mutable std::mutex mu_;
  // Takes free_[i] out (the last buffer fills its place). REQUIRES: mu_.
  std::string RemoveLocked(size_t i);

  std::vector<std::string> free_;
};

}  // namespace meshfs

// A file kept beside a database on the same disk and given back when the
// disk is full, so that the writes that make room (recording uploads,
// deleting files) can still commit. Used by the block cache and the
// metadata store. Not thread-safe: the owner serialises calls.
#pragma once

#include <cstdint>
#include <filesystem>

namespace meshfs {

class DiskReserve final {
 public:
  DiskReserve(std::filesystem::path path, uint64_t bytes) : path_(std::move(path)), bytes_(bytes) {}
  DiskReserve(const DiskReserve&) = delete;
  DiskReserve& operator=(const DiskReserve&) = delete;

  // Makes the file unless it is there at full size, when at least
  // `min_free` bytes are free on its disk besides. Best effort: on a full
  // disk it stays absent (and a partial file is removed).
  void Ensure(uint64_t min_free = 0);
  // Deletes the file; true if there was one to give back.
  bool Release();
  bool present() const { return present_; }

 private:
  const std::filesystem::path path_;
  const uint64_t bytes_;
  bool present_ = false;
};

}  // namespace meshfs

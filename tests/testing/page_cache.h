// How much of a file is in the page cache, for tests of code that drops
// pages it no longer needs (POSIX_FADV_DONTNEED).
#pragma once

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace meshfs::testing {

struct Residency {
  size_t cached = 0;  // pages in the page cache
  size_t pages = 0;   // pages of the file
};

// Pages of the file at `path` in the page cache (mincore of a mapping);
// {0, 0} if it cannot be opened or mapped, or is empty.
inline Residency ResidentPages(const std::string& path) {
  Residency r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return r;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  void* map = size > 0 ? ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0)
                       : MAP_FAILED;
  ::close(fd);
  if (map == MAP_FAILED) return r;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((static_cast<size_t>(size) + page - 1) / page);
  if (::mincore(map, static_cast<size_t>(size), resident.data()) == 0) {
    r.pages = resident.size();
    for (unsigned char c : resident) r.cached += c & 1;
  }
  ::munmap(map, static_cast<size_t>(size));
  return r;
}

// Whether `dir` is on tmpfs, where the page cache is the storage and
// dropping pages does nothing.
inline bool OnTmpfs(const std::string& dir) {
  struct statfs info;
  return ::statfs(dir.c_str(), &info) == 0 && info.f_type == TMPFS_MAGIC;
}

}  // namespace meshfs::testing

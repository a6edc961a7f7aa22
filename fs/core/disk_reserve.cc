#include "meshfs/core/disk_reserve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace meshfs {

void DiskReserve::Ensure(uint64_t min_free) {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= bytes_;
  if (!ok) {
    struct statvfs vfs;
    const bool room = min_free == 0 || (::fstatvfs(fd, &vfs) == 0 &&
                                        static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize >=
                                            min_free);
    ok = room && ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_)) == 0 && ::fsync(fd) == 0;
  }
  ::close(fd);
  if (!ok) (void)::unlink(path_.c_str());
  present_ = ok;
}

bool DiskReserve::Release() {
  present_ = false;
  return ::unlink(path_.c_str()) == 0;
}

}  // namespace meshfs

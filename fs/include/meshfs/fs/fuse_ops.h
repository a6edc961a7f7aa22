// FuseServer: binds a Filesystem to a libfuse low-level session (FUSE 3.14).
//
// Each request handler translates its arguments, calls exactly one
// Filesystem method, and sends exactly one fuse_reply_*; no lock is held
// across a reply (the Filesystem takes and releases its own). Lookup counts:
// every entry reply (lookup, create, mknod, mkdir, symlink, link, each
// readdirplus entry except . and ..) raises the inode's count in the
// Filesystem, forget/forget_multi lower it. Exceptions never leave a handler:
// one that escapes becomes EIO.
//
// Session: multi-threaded loop, kernel writeback cache, 1 MiB writes,
// readdirplus, POSIX ACLs kept as xattrs (the kernel enforces them;
// default_permissions is always on), nanosecond timestamps.
//
// Thread-safety: Loop() runs on one thread (it spawns the workers); Exit()
// may be called from any thread or a signal-free context at any time.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "meshfs/core/status.h"
#include "meshfs/fs/filesystem.h"

struct fuse_session;

namespace meshfs::fs {

struct FuseSettings {
  // Kernel cache of names (also failed lookups) and attributes. Long by
  // default (mount options): the mount is the only writer of its metadata.
  double entry_timeout_s = 1.0;
  double attr_timeout_s = 1.0;
  bool writeback_cache = false;
  bool read_only = false;
  unsigned max_write = 1u << 20;
  unsigned max_threads = 16;
  // Hand the rest of a slice decoded for a short read to the kernel's page
  // cache (FUSE notify_store), so random reads cost one decode per slice.
  bool push_pages = true;
  // The mount's read-ahead (KiB; 0: the kernel's 128 KiB). A sequential
  // reader then has several 1 MiB requests in flight.
  unsigned readahead_kb = 4096;
  // Called once when the kernel ends the session (unmount), on a worker thread.
  std::function<void()> on_destroy;
};

class FuseServer final {
 public:
  // `fuse_options`: options for libfuse, e.g. {"fsname=/vol", "subtype=meshfs",
  // "default_permissions", "allow_other", "ro"}. InvalidArgument if libfuse
  // rejects one.
  static Result<std::unique_ptr<FuseServer>> Create(Filesystem* fs, FuseSettings settings,
                                                    const std::vector<std::string>& fuse_options);
  ~FuseServer();  // destroys the session (after Loop returned)
  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Mounts on `mountpoint` (an existing directory). IOError with libfuse's reason.
  Status Mount(const std::string& mountpoint);
  // Serves requests until the file system is unmounted or Exit() is called.
  Status Loop();
  // Makes Loop() return soon (requests in progress finish first).
  void Exit();
  // Detaches the mount (lazily) if it is still attached. After Loop().
  void Unmount();

  // Queues `p` for the kernel's page cache of inode `ino`; the pusher
  // thread stores it if the file has not changed since it was read
  // (Filesystem::PushPages). Never blocks: dropped when 32 MiB are queued.
  // A FUSE worker must never store itself: the kernel may hold a page lock
  // until a worker answers a read.
  void QueuePush(uint64_t ino, PagePush p);

  // Raises the kernel's read-ahead for this mount to settings().readahead_kb
  // (once; must come after the kernel took the INIT reply).
  void SetReadahead();

  Filesystem* fs() const { return fs_; }
  const FuseSettings& settings() const { return settings_; }
  // Whether the kernel opens and releases directories by itself (it said so
  // at INIT): opendir then answers ENOSYS once, and the kernel sends no
  // opendir/releasedir after that.
  bool kernel_opens_dirs() const { return kernel_opens_dirs_.load(std::memory_order_relaxed); }
  void set_kernel_opens_dirs(bool v) { kernel_opens_dirs_.store(v, std::memory_order_relaxed); }

 private:
  FuseServer(Filesystem* fs, FuseSettings settings) : fs_(fs), settings_(std::move(settings)) {}

  Filesystem* const fs_;
  const FuseSettings settings_;
  fuse_session* se_ = nullptr;
  bool mounted_ = false;
  std::string mountpoint_;  // absolute, once mounted
  void PusherLoop();
  void StorePages(uint64_t ino, const PagePush& p);
  std::mutex push_mu_;  // guards the queue below
  std::condition_variable push_cv_;
  std::deque<std::pair<uint64_t, PagePush>> push_queue_;
  uint64_t push_queued_bytes_ = 0;
  bool push_stop_ = false;
  std::thread pusher_;
  std::once_flag readahead_once_;
  std::atomic<bool> in_loop_{false};
  std::atomic<bool> kernel_opens_dirs_{false};
  pthread_t loop_thread_{};
};

}  // namespace meshfs::fs

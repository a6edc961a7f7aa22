// Mount options of `meshfs mount -o OPT[,OPT...]` (and mount.meshfs / fstab):
// the meshfs ones, and the standard ones passed through to libfuse.
// Documented in docs/mount.md and `meshfs mount --help`.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/status.h"

namespace meshfs::fs {

inline constexpr double kDefaultCacheTimeoutS = 3600;

struct MountOptions {
  bool read_only = false;                  // ro
  bool allow_other = false;                // allow_other (default_permissions is always on)
  uint64_t cache_size = 2ull << 30;        // cache_size=SIZE: local block cache bound
  bool durability_network = true;          // durability=network|local
  uint64_t dirty_max = 64ull << 20;        // dirty_max=SIZE: dirty bytes per open file
  uint64_t memory_cache = 64ull << 20;     // memory_cache=SIZE: plaintext slice LRU
  uint64_t readahead = 4ull << 20;         // readahead=SIZE: the kernel's read-ahead
  // The mount is the only writer of its volume's metadata and every change
  // goes through the kernel, which updates or invalidates what it caches:
  // the kernel may keep attributes and names (also negative ones) long.
  double attr_timeout_s = kDefaultCacheTimeoutS;   // attr_timeout=SECONDS
  double entry_timeout_s = kDefaultCacheTimeoutS;  // entry_timeout=SECONDS
  bool writeback_cache = false;                    // writeback_cache / no_writeback_cache
  // Options for libfuse (allow_other, ro, default_permissions, and the
  // standard ones given by the user: nosuid, nodev, noexec, noatime, ...).
  std::vector<std::string> fuse_options;
};

// Parses `-o` items (each may itself hold commas). Unknown options are
// InvalidArgument naming them; fstab-only options (_netdev, noauto, nofail,
// user, users, auto, defaults, x-*, comment=*) are accepted and ignored.
Result<MountOptions> ParseMountOptions(const std::vector<std::string>& items);

// "64M", "2G", "4096", "1.5GiB" -> bytes. InvalidArgument otherwise.
Result<uint64_t> ParseSize(std::string_view text);

// The option list for `meshfs mount --help`.
std::string MountOptionsHelp();

}  // namespace meshfs::fs

#include "meshfs/fs/mount_options.h"

#include <cmath>
#include <cstdlib>
#include <set>

namespace meshfs::fs {
namespace {

// Standard mount options libfuse understands and that make sense here.
const std::set<std::string_view> kPassThrough = {
    "rw",      "nosuid", "suid",     "nodev", "dev",     "noexec", "exec",     "atime",
    "noatime", "relatime", "norelatime", "strictatime", "sync", "async",
    "dirsync", "auto_unmount"};

const std::set<std::string_view> kIgnored = {"_netdev", "noauto", "auto",  "nofail",
                                             "user",    "users",  "nouser", "defaults", "owner",
                                             "group",   "loop"};

Result<double> ParseSeconds(std::string_view key, std::string_view v) {
  std::string s(v);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(d >= 0) || d > 86400) {
    return Status::InvalidArgument("mount option " + std::string(key) + "=" + s +
                                   ": expected seconds between 0 and 86400");
  }
  return d;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || !(v >= 0)) {
    return Status::InvalidArgument("'" + s + "' is not a size (e.g. 512M, 2G)");
  }
  std::string unit(end);
  if (unit.size() > 1 && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  double mult = 1;
  if (unit.empty()) mult = 1;
  else if (unit == "k" || unit == "K") mult = 1024.0;
  else if (unit == "m" || unit == "M") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else return Status::InvalidArgument("'" + s + "' is not a size (units: K, M, G, T)");
  double bytes = v * mult;
  if (bytes > 9.2e18) return Status::InvalidArgument("'" + s + "' is too large");
  return static_cast<uint64_t>(std::llround(bytes));
}

Result<MountOptions> ParseMountOptions(const std::vector<std::string>& items) {
  MountOptions o;
  std::vector<std::string> opts;
  for (const auto& item : items) {
    size_t start = 0;
    while (start <= item.size()) {
      size_t comma = item.find(',', start);
      if (comma == std::string::npos) comma = item.size();
      if (comma > start) opts.push_back(item.substr(start, comma - start));
      start = comma + 1;
    }
  }
  for (const auto& opt : opts) {
    const size_t eq = opt.find('=');
    const std::string key = opt.substr(0, eq);
    const std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
    const bool has_val = eq != std::string::npos;
    auto need_val = [&]() -> Status {
      if (!has_val || val.empty()) {
        return Status::InvalidArgument("mount option " + key + " needs a value (" + key + "=...)");
      }
      return Status::OK();
    };
    if (key == "ro" && !has_val) {
      o.read_only = true;
    } else if (key == "rw" && !has_val) {
      o.read_only = false;
    } else if (key == "allow_other" && !has_val) {
      o.allow_other = true;
    } else if (key == "default_permissions" && !has_val) {
      // always on
    } else if (key == "cache_size") {
      MESHFS_RETURN_IF_ERROR(need_val());
      auto v = ParseSize(val);
      if (!v.ok()) return v.status().WithContext("mount option cache_size");
      if (*v < (16ull << 20)) {
        return Status::InvalidArgument("mount option cache_size: at least 16M");
      }
      o.cache_size = *v;
    } else if (key == "dirty_max") {
      MESHFS_RETURN_IF_ERROR(need_val());
      auto v = ParseSize(val);
      if (!v.ok()) return v.status().WithContext("mount option dirty_max");
      if (*v < (1ull << 20)) return Status::InvalidArgument("mount option dirty_max: at least 1M");
      o.dirty_max = *v;
    } else if (key == "memory_cache") {
      MESHFS_RETURN_IF_ERROR(need_val());
      auto v = ParseSize(val);
      if (!v.ok()) return v.status().WithContext("mount option memory_cache");
      o.memory_cache = *v;
    } else if (key == "readahead") {
      MESHFS_RETURN_IF_ERROR(need_val());
      auto v = ParseSize(val);
      if (!v.ok()) return v.status().WithContext("mount option readahead");
      if (*v > (1ull << 30)) return Status::InvalidArgument("mount option readahead: at most 1G");
      o.readahead = *v;
    } else if (key == "durability") {
      if (val == "network") o.durability_network = true;
      else if (val == "local") o.durability_network = false;
      else return Status::InvalidArgument("mount option durability=" + val + ": use local or network");
    } else if (key == "attr_timeout") {
      MESHFS_RETURN_IF_ERROR(need_val());
      MESHFS_ASSIGN_OR_RETURN(o.attr_timeout_s, ParseSeconds(key, val));
    } else if (key == "entry_timeout") {
      MESHFS_RETURN_IF_ERROR(need_val());
      MESHFS_ASSIGN_OR_RETURN(o.entry_timeout_s, ParseSeconds(key, val));
    } else if (key == "writeback_cache" && !has_val) {
      o.writeback_cache = true;
    } else if (key == "no_writeback_cache" && !has_val) {
      o.writeback_cache = false;
    } else if (!has_val && kPassThrough.count(key)) {
      if (key != "rw") o.fuse_options.push_back(key);
    } else if (kIgnored.count(key) || key.rfind("x-", 0) == 0 || key == "comment") {
      // fstab/mount(8) bookkeeping: not for us.
    } else if (key == "fsname" || key == "subtype") {
      return Status::InvalidArgument("mount option " + key + " is set by meshfs itself");
    } else {
      return Status::InvalidArgument("unknown mount option '" + opt +
                                     "' (see 'meshfs mount --help')");
    }
  }
  if (o.read_only) o.fuse_options.push_back("ro");
  if (o.allow_other) o.fuse_options.push_back("allow_other");
  o.fuse_options.push_back("default_permissions");
  return o;
}

std::string MountOptionsHelp() {
  return R"(Mount options (-o OPT[,OPT...]):
  ro                  read-only mount
  allow_other         let other users access the mount (needs user_allow_other
                      in /etc/fuse.conf, or root); permissions are always
                      checked by the kernel (default_permissions)
  cache_size=SIZE     bound of the local block cache (default 2G)
  durability=MODE     what fsync waits for: 'network' (default) until the data
                      is on at least one peer, 'local' until it is on local disk
                      (cache + upload queue); uploads to all replicas continue
                      in the background either way
  dirty_max=SIZE      unwritten data kept in memory, per open file and in
                      total (default 64M)
  memory_cache=SIZE   in-memory cache of decrypted slices (default 64M)
  readahead=SIZE      the kernel's read-ahead for sequential reads (default 4M;
                      0 keeps the kernel's 128K; needs root)
  attr_timeout=S, entry_timeout=S
                      how long the kernel caches attributes/names, also
                      failed lookups (default 3600; the mount is the only
                      writer of its metadata, so the cache cannot go stale)
  writeback_cache     let the kernel buffer writes (off by default: faster only
                      for programs making many write(2)s under 4K; see
                      docs/mount.md)
  no_writeback_cache  the default
  nosuid, nodev, noexec, noatime, relatime, sync, dirsync, auto_unmount, ...
                      standard options, passed to FUSE
  _netdev, noauto, nofail, user, x-systemd.*, ...
                      fstab options, accepted and ignored
)";
}

}  // namespace meshfs::fs

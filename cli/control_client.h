// Finding a volume's mount daemon from the command line: resolving a
// VOLUME|MOUNTPOINT argument and connecting to VOLUME/control.sock.
//
// A MOUNTPOINT is recognised through /proc/self/mountinfo: the mount daemon
// sets the FUSE fsname (the mount source) to the absolute VOLUME path. A
// VOLUME is a directory with config.toml (a bare name resolves under
// $XDG_CONFIG_HOME/meshfs/); while mounted it holds mount.json =
// {"mountpoint": "/abs/path", "pid": N}.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/status.h"
#include "meshfs/fs/control.h"
#include "meshfs/fs/mount_table.h"

namespace meshfs::cli {

using fs::MountEntry;
using fs::ParseMountInfo;
using fs::ReadMountTable;

// What a VOLUME|MOUNTPOINT argument names.
struct VolumeTarget {
  std::filesystem::path volume_dir;  // absolute, holds config.toml
  std::filesystem::path mountpoint;  // absolute; empty when not known
  int64_t pid = 0;                   // from mount.json; 0 when unknown
  bool kernel_mounted = false;       // a FUSE mount of this volume is in the mount table
};

// Resolves `arg`. NotFound with a message saying what was looked for when it
// is neither a volume directory nor a meshfs mountpoint.
Result<VolumeTarget> ResolveTarget(std::string_view arg);

// Connects to the daemon serving `target`. NotFound / Unavailable when no
// daemon answers (not mounted, or the daemon is gone).
Result<std::unique_ptr<fs::ControlClient>> ConnectDaemon(const VolumeTarget& target);

// "0 B", "512 B", "3.4 MiB", "1.2 GiB".
std::string HumanBytes(uint64_t bytes);

}  // namespace meshfs::cli

// The kernel's mount table: the lines of /proc/self/mountinfo that the
// command line (finding a volume's mount) and the mount daemon (finding its
// own device for the read-ahead knob) need.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace meshfs::fs {

// One line of /proc/self/mountinfo, with the octal escapes (\040 ...) decoded.
struct MountEntry {
  std::string mountpoint;
  std::string fstype;  // e.g. "fuse.meshfs"
  std::string source;  // for meshfs: the absolute VOLUME path
  std::string device;  // "MAJ:MIN" of the mounted file system
};

// Parses the text of a mountinfo file; malformed lines are skipped.
std::vector<MountEntry> ParseMountInfo(std::string_view text);
// The current mount table (empty if /proc/self/mountinfo is unreadable).
std::vector<MountEntry> ReadMountTable();

}  // namespace meshfs::fs

// Resolving VOLUME|MOUNTPOINT and connecting to the mount daemon.
#include "control_client.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <system_error>

#include "meshfs/fs/volume.h"

namespace meshfs::cli {

namespace {

// Absolute and lexically normal, without a trailing '/' (never stats: a
// mountpoint whose daemon died would fail with ENOTCONN).
std::filesystem::path Normal(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(p, ec);
  if (ec) abs = p;
  abs = abs.lexically_normal();
  std::string s = abs.native();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool IsFuse(const MountEntry& e) { return e.fstype == "fuse" || e.fstype.rfind("fuse.", 0) == 0; }

void ReadMountJson(VolumeTarget& t) {
  std::ifstream in(t.volume_dir / "mount.json");
  if (!in) return;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return;
  if (t.mountpoint.empty()) {
    if (auto m = j.find("mountpoint"); m != j.end() && m->is_string()) {
      t.mountpoint = Normal(m->get<std::string>());
    }
  }
  if (auto p = j.find("pid"); p != j.end() && p->is_number_integer()) t.pid = p->get<int64_t>();
}

}  // namespace

Result<VolumeTarget> ResolveTarget(std::string_view arg) {
  if (arg.empty()) return Status::InvalidArgument("empty VOLUME|MOUNTPOINT");
  const std::vector<MountEntry> table = ReadMountTable();
  VolumeTarget t;

  // A mountpoint first: the kernel's table is the truth about what is mounted.
  const std::filesystem::path as_path = Normal(std::string(arg));
  // The kernel lists the real path; resolve symlinks in the parent only (the
  // mountpoint itself may answer ENOTCONN when its daemon died).
  std::error_code ec;
  std::filesystem::path real_path = as_path;
  if (as_path.has_parent_path()) {
    auto parent = std::filesystem::canonical(as_path.parent_path(), ec);
    if (!ec) real_path = parent / as_path.filename();
  }
  for (const MountEntry& e : table) {
    if (!IsFuse(e) || (e.mountpoint != as_path.native() && e.mountpoint != real_path.native())) {
      continue;
    }
    if (e.source.empty() || e.source[0] != '/') {
      return Status::NotFound(std::string(arg) + " is a FUSE mount of '" + e.source +
                              "', not of a meshfs volume directory");
    }
    t.volume_dir = e.source;
    t.mountpoint = e.mountpoint;
    t.kernel_mounted = true;
    ReadMountJson(t);
    return t;
  }

  // Otherwise a volume directory (or a bare volume name).
  t.volume_dir = Normal(fs::ResolveVolumeDir(arg));
  if (!std::filesystem::is_regular_file(t.volume_dir / "config.toml", ec) &&
      std::filesystem::is_regular_file(std::filesystem::path(arg) / "config.toml", ec)) {
    // A bare name that is not under $XDG_CONFIG_HOME/meshfs but is a volume
    // directory here: what the user meant.
    t.volume_dir = Normal(std::string(arg));
  }
  if (!std::filesystem::is_regular_file(t.volume_dir / "config.toml", ec)) {
    return Status::NotFound(std::string(arg) + " is neither a meshfs volume (no config.toml in " +
                            t.volume_dir.native() + ") nor a mounted meshfs mountpoint");
  }
  ReadMountJson(t);
  for (const MountEntry& e : table) {
    if (!IsFuse(e)) continue;
    if (Normal(e.source) == t.volume_dir ||
        (!t.mountpoint.empty() && e.mountpoint == t.mountpoint.native())) {
      t.kernel_mounted = true;
      t.mountpoint = e.mountpoint;
      break;
    }
  }
  return t;
}

Result<std::unique_ptr<fs::ControlClient>> ConnectDaemon(const VolumeTarget& target) {
  return fs::ControlClient::Connect(target.volume_dir / "control.sock");
}

std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[unit]);
  return buf;
}

}  // namespace meshfs::cli

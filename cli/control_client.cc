// Resolving VOLUME|MOUNTPOINT and connecting to the mount daemon.
#include "control_client.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "meshfs/fs/volume.h"

namespace meshfs::cli {

namespace {

// Decodes the \ooo escapes the kernel uses for space, tab, newline, backslash.
std::string Unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3' &&
        field[i + 2] >= '0' && field[i + 2] <= '7' && field[i + 3] >= '0' && field[i + 3] <= '7') {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

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

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountEntry> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    std::vector<std::string_view> f = SplitSpaces(line);
    size_t dash = 0;
    for (size_t i = 6; i < f.size(); ++i) {
      if (f[i] == "-") {
        dash = i;
        break;
      }
    }
    if (f.size() < 7 || dash == 0 || dash + 2 >= f.size()) continue;
    out.push_back(MountEntry{Unescape(f[4]), Unescape(f[dash + 1]), Unescape(f[dash + 2])});
  }
  return out;
}

std::vector<MountEntry> ReadMountTable() {
  std::ifstream in("/proc/self/mountinfo");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseMountInfo(text);
}

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

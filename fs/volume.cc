// A local volume directory: config.toml and the key file. The config format
// is in docs/format.md ("config.toml").
#include "meshfs/fs/volume.h"

#include <fcntl.h>
#include <pwd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <system_error>

#include "meshfs/core/hex.h"

namespace meshfs::fs {
namespace {

namespace stdfs = std::filesystem;

constexpr int kConfigFormatVersion = 1;
constexpr int kMaxReplicas = 16;
constexpr size_t kMaxKeyFileSize = 4096;
constexpr const char* kExportFormat = "meshfs-volume-export";
constexpr int kExportFormatVersion = 1;

Status BadConfig(const std::string& why) { return Status::InvalidArgument("config.toml: " + why); }

// HOST:PORT with a DNS name, IPv4 address, or [IPv6] host and port 1..65535.
bool ValidPeer(std::string_view p) {
  const size_t colon = p.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == p.size()) return false;
  const std::string_view host = p.substr(0, colon), port = p.substr(colon + 1);
  if (port.size() > 5) return false;
  unsigned long v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned long>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) return false;
    for (char c : host.substr(1, host.size() - 2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    return true;
  }
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      return false;
    }
  }
  return true;
}

std::string TomlString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kDigits[] = "0123456789abcdef";
      out += "\\u00";
      out += kDigits[u >> 4];
      out += kDigits[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Writes `bytes` to `path` atomically with `mode`: a temp file in the same
// directory, fsync, rename, fsync of the directory. Never follows or
// replaces anything when `exclusive` and `path` exists.
Status WriteFileAtomic(const stdfs::path& path, std::string_view bytes, mode_t mode,
                       bool exclusive) {
  const stdfs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return Status::FromErrno("create " + tmp.string(), errno);
  Status st;
  if (::fchmod(fd, mode) != 0) st = Status::FromErrno("chmod " + tmp.string(), errno);
  size_t done = 0;
  while (st.ok() && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      st = Status::FromErrno("write " + tmp.string(), errno);
    else
      done += static_cast<size_t>(n);
  }
  if (st.ok() && ::fsync(fd) != 0) st = Status::FromErrno("fsync " + tmp.string(), errno);
  ::close(fd);
  if (st.ok()) {
    if (exclusive) {
      // link(2) fails with EEXIST instead of replacing.
      if (::link(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        struct stat existing;
        if (err == EEXIST) {
          st = Status::AlreadyExists(path.string() + " already exists");
        } else if ((err == EPERM || err == EOPNOTSUPP) && ::lstat(path.c_str(), &existing) != 0 &&
                   errno == ENOENT) {
          // No hard links on this filesystem: check, then rename.
          if (::rename(tmp.c_str(), path.c_str()) != 0) {
            st = Status::FromErrno("rename to " + path.string(), errno);
          }
        } else {
          st = Status::FromErrno("create " + path.string(), err);
        }
      }
      ::unlink(tmp.c_str());
    } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
      st = Status::FromErrno("rename to " + path.string(), errno);
    }
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  const stdfs::path parent = path.has_parent_path() ? path.parent_path() : stdfs::path(".");
  const int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::OK();
}

}  // namespace

Result<uint32_t> ParseSliceSize(std::string_view text) {
  const std::string shown(text);
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    v = v * 10 + static_cast<uint64_t>(text[i] - '0');
    if (v > (uint64_t{1} << 40)) break;
    ++i;
  }
  if (i == 0) {
    return Status::InvalidArgument("slice size '" + shown +
                                   "' is not a size (examples: 1M, 64K, 1048576)");
  }
  std::string suffix;
  for (char c : text.substr(i))
    suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix == "K" || suffix == "KB" || suffix == "KIB") {
    v *= 1024;
  } else if (suffix == "M" || suffix == "MB" || suffix == "MIB") {
    v *= 1024 * 1024;
  } else if (!suffix.empty() && suffix != "B") {
    return Status::InvalidArgument("slice size '" + shown +
                                   "' has an unknown unit (use K or M, e.g. 64K, 1M)");
  }
  if (v < kMinSliceSize || v > kMaxSliceSize) {
    return Status::InvalidArgument("slice size '" + shown + "' is outside 64K..16M");
  }
  return static_cast<uint32_t>(v);
}

namespace {

// Reads the fields shared by config.toml and the export file into `c`.
Status ReadConfigFields(const toml::table& t, VolumeConfig& c) {
  const auto id = t["volume_id"].value<std::string>();
  if (!id) return Status::InvalidArgument("volume_id is missing");
  if (id->size() != 64 || !HexDecode(*id).ok()) {
    return Status::InvalidArgument("volume_id must be 64 lowercase hex digits");
  }
  c.volume_id = *id;
  const toml::array* peers = t["peers"].as_array();
  if (peers == nullptr)
    return Status::InvalidArgument("peers is missing (a list of \"HOST:PORT\")");
  for (const auto& p : *peers) {
    const auto s = p.value<std::string>();
    if (!s) return Status::InvalidArgument("peers must be a list of \"HOST:PORT\" strings");
    if (!ValidPeer(*s)) return Status::InvalidArgument("peer '" + *s + "' is not HOST:PORT");
    c.peers.push_back(*s);
  }
  if (c.peers.empty()) return Status::InvalidArgument("peers is empty");
  const auto replicas = t["replicas"].value<int64_t>();
  if (!replicas) return Status::InvalidArgument("replicas is missing");
  if (*replicas < 1 || *replicas > kMaxReplicas) {
    return Status::InvalidArgument("replicas must be 1.." + std::to_string(kMaxReplicas));
  }
  c.replicas = static_cast<int>(*replicas);
  const auto slice = t["slice_size"].value<int64_t>();
  if (!slice) return Status::InvalidArgument("slice_size is missing");
  if (*slice < kMinSliceSize || *slice > kMaxSliceSize) {
    return Status::InvalidArgument("slice_size must be 65536..16777216 bytes");
  }
  c.slice_size = static_cast<uint32_t>(*slice);
  const auto kind = t["key_kind"].value<std::string>();
  if (!kind) return Status::InvalidArgument("key_kind is missing");
  if (*kind == "wrapped") {
    c.key_wrapped = true;
  } else if (*kind == "raw") {
    c.key_wrapped = false;
  } else {
    return Status::InvalidArgument("key_kind must be \"wrapped\" or \"raw\"");
  }
  return Status::OK();
}

Result<toml::table> ParseToml(std::string_view text) {
  try {
    return toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "not valid TOML at line " << e.source().begin.line << ": " << e.description();
    return Status::InvalidArgument(msg.str());
  }
}

}  // namespace

Status VolumeConfig::Validate() const {
  if (format_version != kConfigFormatVersion) {
    return Status::InvalidArgument("format version " + std::to_string(format_version) +
                                   " is not supported (this meshfs reads version " +
                                   std::to_string(kConfigFormatVersion) + ")");
  }
  if (volume_id.size() != 64 || !HexDecode(volume_id).ok()) {
    return Status::InvalidArgument("volume_id must be 64 lowercase hex digits");
  }
  if (peers.empty()) return Status::InvalidArgument("peers is empty");
  for (const auto& p : peers) {
    if (!ValidPeer(p)) return Status::InvalidArgument("peer '" + p + "' is not HOST:PORT");
  }
  if (replicas < 1 || replicas > kMaxReplicas) {
    return Status::InvalidArgument("replicas must be 1.." + std::to_string(kMaxReplicas));
  }
  if (slice_size < kMinSliceSize || slice_size > kMaxSliceSize) {
    return Status::InvalidArgument("slice_size must be 65536..16777216 bytes");
  }
  if (!key_file.empty()) {
    if (key_file[0] != '/') return Status::InvalidArgument("key_file must be an absolute path");
    if (key_wrapped) return Status::InvalidArgument("key_file is only for key_kind = \"raw\"");
  }
  return Status::OK();
}

Result<VolumeConfig> VolumeConfig::Parse(std::string_view toml_text) {
  auto t = ParseToml(toml_text);
  if (!t.ok()) return t.status().WithContext("config.toml");
  VolumeConfig c;
  const auto version = (*t)["format_version"].value<int64_t>();
  if (!version) return BadConfig("format_version is missing");
  if (*version != kConfigFormatVersion) {
    return BadConfig("format version " + std::to_string(*version) +
                     " is not supported (this meshfs reads version " +
                     std::to_string(kConfigFormatVersion) + ")");
  }
  Status st = ReadConfigFields(*t, c);
  if (st.ok()) {
    if (auto kf = (*t)["key_file"].value<std::string>()) c.key_file = *kf;
    st = c.Validate();
  }
  if (!st.ok()) return st.WithContext("config.toml");
  return c;
}

std::string VolumeConfig::ToToml() const {
  std::string out;
  out += "# meshfs volume configuration (see docs/format.md). Written by meshfs init.\n";
  out += "format_version = " + std::to_string(format_version) + "\n";
  out += "volume_id = " + TomlString(volume_id) + "\n";
  out += "peers = [";
  for (size_t i = 0; i < peers.size(); ++i) out += (i ? ", " : "") + TomlString(peers[i]);
  out += "]\n";
  out += "replicas = " + std::to_string(replicas) + "\n";
  out += "slice_size = " + std::to_string(slice_size) + "\n";
  out += std::string("key_kind = ") + (key_wrapped ? "\"wrapped\"" : "\"raw\"") + "\n";
  if (!key_file.empty()) out += "key_file = " + TomlString(key_file) + "\n";
  return out;
}

Result<VolumeExport> VolumeExport::Parse(std::string_view toml_text) {
  auto t = ParseToml(toml_text);
  if (!t.ok()) return t.status().WithContext("export file");
  const auto format = (*t)["format"].value<std::string>();
  if (!format || *format != kExportFormat) {
    return Status::InvalidArgument(
        "export file: not a meshfs volume export (made by meshfs key export)");
  }
  const auto version = (*t)["format_version"].value<int64_t>();
  if (!version || *version != kExportFormatVersion) {
    return Status::InvalidArgument("export file: unknown format version " +
                                   (version ? std::to_string(*version) : std::string("(missing)")) +
                                   " (this meshfs reads version 1)");
  }
  VolumeExport e;
  Status st = ReadConfigFields(*t, e.config);
  if (st.ok()) st = e.config.Validate();
  if (!st.ok()) return st.WithContext("export file");
  const auto key = (*t)["key"].value<std::string>();
  if (!key) return Status::InvalidArgument("export file: key is missing");
  auto bytes = HexDecode(*key);
  if (!bytes.ok()) return Status::InvalidArgument("export file: key is not lowercase hex");
  auto wrapped = KeyFileIsWrapped(*bytes);
  if (!wrapped.ok()) return Status::InvalidArgument("export file: " + wrapped.status().message());
  if (*wrapped != e.config.key_wrapped) {
    return Status::InvalidArgument("export file: key_kind does not match the key");
  }
  e.key_file_bytes = std::move(*bytes);
  return e;
}

std::string VolumeExport::ToToml() const {
  VolumeConfig c = config;
  c.key_file.clear();
  std::string out;
  out += "# meshfs volume export: the key and configuration of one volume.\n";
  out += "# Recreate the volume elsewhere with: meshfs init VOLUME --import THIS_FILE\n";
  out += c.key_wrapped ? "# The key is wrapped under the volume's passphrase: keep both safe.\n"
                       : "# The key is NOT wrapped: anyone with this file can read the volume.\n";
  out += std::string("format = \"") + kExportFormat + "\"\n";
  out += "format_version = " + std::to_string(kExportFormatVersion) + "\n";
  // The config fields, as in config.toml (minus its own header and version).
  const std::string body = c.ToToml();
  const size_t start = body.find("volume_id");
  out += body.substr(start);
  out += "key = \"" + HexEncode(key_file_bytes) + "\"\n";
  return out;
}

stdfs::path ResolveVolumeDir(std::string_view name_or_path) {
  if (name_or_path.find('/') != std::string_view::npos || name_or_path.empty() ||
      name_or_path.front() == '.') {
    return stdfs::path(name_or_path);
  }
  stdfs::path base;
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg != nullptr && xdg[0] == '/') {
    base = xdg;
  } else {
    const char* home = std::getenv("HOME");
    if (home == nullptr || home[0] == '\0') {
      const struct passwd* pw = ::getpwuid(::getuid());
      home = pw != nullptr ? pw->pw_dir : "/";
    }
    base = stdfs::path(home) / ".config";
  }
  return base / "meshfs" / stdfs::path(name_or_path);
}

Result<Volume> Volume::Open(const stdfs::path& dir) {
  const stdfs::path cfg = dir / "config.toml";
  const int fd = ::open(cfg.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Status::NotFound(
          dir.string() + " is not a meshfs volume (no config.toml); create it with meshfs init");
    }
    return Status::FromErrno("open " + cfg.string(), errno);
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1 << 20)) break;
  }
  const int err = errno;
  ::close(fd);
  if (n < 0) return Status::FromErrno("read " + cfg.string(), err);
  auto config = VolumeConfig::Parse(text);
  if (!config.ok()) {
    // A damaged config is an operational failure, not a usage error.
    return Status::Corruption(cfg.string() + ": " + config.status().message().substr(13));
  }
  Volume v;
  v.dir_ = dir;
  v.config_ = std::move(*config);
  return v;
}

Result<Volume> Volume::Create(const stdfs::path& dir, const VolumeConfig& config,
                              std::string_view key_file_bytes) {
  std::error_code ec;
  if (stdfs::exists(dir / "config.toml", ec)) {
    return Status::AlreadyExists(dir.string() +
                                 " is already a meshfs volume; init never overwrites one");
  }
  bool made_dir = false;
  if (stdfs::exists(dir, ec)) {
    if (!stdfs::is_directory(dir, ec)) {
      return Status::AlreadyExists(dir.string() + " exists and is not a directory");
    }
    if (!stdfs::is_empty(dir, ec)) {
      return Status::AlreadyExists(dir.string() + " exists and is not empty");
    }
  } else {
    if (dir.has_parent_path()) {
      stdfs::create_directories(dir.parent_path(), ec);
      if (ec) return Status::IOError("create " + dir.parent_path().string() + ": " + ec.message());
    }
    if (::mkdir(dir.c_str(), 0700) != 0) return Status::FromErrno("create " + dir.string(), errno);
    made_dir = true;
  }
  if (::chmod(dir.c_str(), 0700) != 0) return Status::FromErrno("chmod " + dir.string(), errno);

  Volume v;
  v.dir_ = dir;
  v.config_ = config;
  const stdfs::path key = v.key_path();
  bool wrote_key = false;
  Status st;
  if (!config.key_file.empty() && stdfs::exists(key, ec)) {
    // An existing key file is used as is when it holds exactly this key.
    auto existing = v.ReadKeyFile();
    if (!existing.ok()) {
      st = existing.status();
    } else if (*existing != key_file_bytes) {
      st = Status::AlreadyExists(key.string() + " already exists and holds another key");
    }
  } else {
    st = WriteFileAtomic(key, key_file_bytes, 0600, /*exclusive=*/true);
    wrote_key = st.ok();
  }
  if (st.ok()) st = WriteFileAtomic(dir / "config.toml", config.ToToml(), 0600, true);
  if (!st.ok()) {
    if (wrote_key) ::unlink(key.c_str());
    if (made_dir) ::rmdir(dir.c_str());
    return st;
  }
  return v;
}

Status Volume::ReplaceKeyFile(std::string_view key_file_bytes) const {
  return WriteFileAtomic(key_path(), key_file_bytes, 0600, /*exclusive=*/false);
}

Result<std::string> Volume::ReadKeyFile() const {
  const stdfs::path path = key_path();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound("key file " + path.string() + " is missing");
    if (err == EACCES) return Status::PermissionDenied("cannot read key file " + path.string());
    return Status::FromErrno("open key file " + path.string(), err);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::FromErrno("stat " + path.string(), err);
  }
  std::string bytes;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 && bytes.size() <= kMaxKeyFileSize) {
    bytes.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  if (n < 0) return Status::FromErrno("read " + path.string(), err);
  auto wrapped = KeyFileIsWrapped(bytes);
  const bool raw = wrapped.ok() ? !*wrapped : !config_.key_wrapped;
  if (raw && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return Status::PermissionDenied("key file " + path.string() +
                                    " holds an unwrapped key and is mode " + mode +
                                    "; run: chmod 600 " + path.string());
  }
  return bytes;
}

Result<VolumeKeys> Volume::Unlock(std::string_view passphrase) const {
  MESHFS_ASSIGN_OR_RETURN(std::string bytes, ReadKeyFile());
  auto master = OpenKeyFile(bytes, passphrase);
  sodium_memzero(bytes.data(), bytes.size());
  if (!master.ok()) return master.status().WithContext(key_path().string());
  VolumeKeys keys = VolumeKeys::Derive(*master);
  if (keys.VolumeIdHex() != config_.volume_id) {
    return Status::Corruption("the key in " + key_path().string() + " belongs to another volume (" +
                              keys.VolumeIdHex().substr(0, 16) + "…), not to " + dir_.string());
  }
  return keys;
}

}  // namespace meshfs::fs

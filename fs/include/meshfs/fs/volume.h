// A local VOLUME directory: config.toml, the key file, and local state
// (metadata.db, cache.db, control socket). A bare name resolves under
// $XDG_CONFIG_HOME/meshfs/ (default ~/.config/meshfs/).
//
// Thread-safety: value types; Volume methods touch only the filesystem.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "meshfs/core/status.h"
#include "meshfs/fs/keys.h"

namespace meshfs::fs {

struct VolumeConfig {
  std::string volume_id;           // hex Ed25519 public key
  std::vector<std::string> peers;  // HOST:PORT
  int replicas = 3;
  uint32_t slice_size = kDefaultSliceSize;
  bool key_wrapped = true;  // false: key file is unwrapped
  std::string key_file;     // absolute path of an unwrapped key file
                            // kept outside the volume (--key-file); empty: VOLUME/key
  int format_version = 1;

  // Validates every field (format version, volume id, peers, replicas 1..16,
  // slice size 64 KiB..16 MiB). InvalidArgument naming the field otherwise.
  static Result<VolumeConfig> Parse(std::string_view toml_text);
  std::string ToToml() const;
  // The checks of Parse on an in-memory config: InvalidArgument naming the
  // field ("peer 'x' is not HOST:PORT", "replicas must be 1..16", ...).
  Status Validate() const;
};

// `meshfs key export` output: a TOML document holding the volume's config
// (volume id, peers, replicas, slice size) and its key file (hex), wrapped
// under the volume's passphrase, or raw when the volume uses --key-file.
// See docs/format.md ("Export file").
struct VolumeExport {
  VolumeConfig config;         // key_file is never exported
  std::string key_file_bytes;  // a key file as WrapMasterKey/EncodeRawKeyFile make

  // InvalidArgument naming what is wrong (not an export, unknown version,
  // bad field, damaged key).
  static Result<VolumeExport> Parse(std::string_view toml_text);
  std::string ToToml() const;
};

// "1M", "64K", "16M", "1MiB", "65536": a slice size in bytes, which must be
// within kMinSliceSize..kMaxSliceSize. InvalidArgument otherwise.
Result<uint32_t> ParseSliceSize(std::string_view text);

// "NAME" -> $XDG_CONFIG_HOME/meshfs/NAME; anything with a '/' or starting
// with '.' is a path and is returned as is.
std::filesystem::path ResolveVolumeDir(std::string_view name_or_path);

class Volume final {
 public:
  // Loads config.toml from `dir`. NotFound if `dir` is not a volume.
  static Result<Volume> Open(const std::filesystem::path& dir);

  // Makes a new volume directory (mode 0700) with config.toml and the key
  // file (mode 0600): `key_file_bytes` is written to config.key_file when
  // set, else to dir/key. AlreadyExists if `dir` already holds a volume (or
  // the outside key file exists); nothing is overwritten. On failure, what
  // was created is removed.
  static Result<Volume> Create(const std::filesystem::path& dir, const VolumeConfig& config,
                               std::string_view key_file_bytes);

  // Replaces the key file atomically (temp file, fsync, rename), mode 0600.
  Status ReplaceKeyFile(std::string_view key_file_bytes) const;
  // Reads the key file. For an unwrapped key, refuses (PermissionDenied) a
  // file readable or writable by group or others.
  Result<std::string> ReadKeyFile() const;

  const std::filesystem::path& dir() const { return dir_; }
  const VolumeConfig& config() const { return config_; }
  std::filesystem::path config_path() const { return dir_ / "config.toml"; }
  std::filesystem::path key_path() const {
    return config_.key_file.empty() ? dir_ / "key" : std::filesystem::path(config_.key_file);
  }
  std::filesystem::path metadata_db_path() const { return dir_ / "metadata.db"; }
  std::filesystem::path cache_db_path() const { return dir_ / "cache.db"; }
  std::filesystem::path control_socket_path() const { return dir_ / "control.sock"; }

  // Reads the key file and derives the keys; `passphrase` is used only when
  // the key is wrapped. Errors as OpenKeyFile and ReadKeyFile; Corruption if
  // the key is not this volume's (its volume id differs from the config's).
  Result<VolumeKeys> Unlock(std::string_view passphrase) const;

 private:
  std::filesystem::path dir_;
  VolumeConfig config_;
};

}  // namespace meshfs::fs

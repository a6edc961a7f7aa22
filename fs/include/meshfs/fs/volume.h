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
  std::string volume_id;             // hex Ed25519 public key
  std::vector<std::string> peers;    // HOST:PORT
  int replicas = 3;
  uint32_t slice_size = kDefaultSliceSize;
  bool key_wrapped = true;           // false: key file is unwrapped
  int format_version = 1;

  static Result<VolumeConfig> Parse(std::string_view toml_text);
  std::string ToToml() const;
};

// "NAME" -> $XDG_CONFIG_HOME/meshfs/NAME; anything with a '/' or starting
// with '.' is a path and is returned as is.
std::filesystem::path ResolveVolumeDir(std::string_view name_or_path);

class Volume final {
 public:
  // Loads config.toml from `dir`. NotFound if `dir` is not a volume.
  static Result<Volume> Open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const VolumeConfig& config() const { return config_; }
  std::filesystem::path config_path() const { return dir_ / "config.toml"; }
  std::filesystem::path key_path() const { return dir_ / "key"; }
  std::filesystem::path metadata_db_path() const { return dir_ / "metadata.db"; }
  std::filesystem::path cache_db_path() const { return dir_ / "cache.db"; }
  std::filesystem::path control_socket_path() const { return dir_ / "control.sock"; }

  // Reads the key file and derives the keys; `passphrase` is used only when
  // the key is wrapped. Errors as OpenKeyFile.
  Result<VolumeKeys> Unlock(std::string_view passphrase) const;

 private:
  std::filesystem::path dir_;
  VolumeConfig config_;
};

}  // namespace meshfs::fs

// Fuzz target: the config.toml and export-file parsers. Whatever parses
// must write back (ToToml) to text that parses to the same values.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "meshfs/fs/volume.h"

namespace {

bool Same(const meshfs::fs::VolumeConfig& a, const meshfs::fs::VolumeConfig& b) {
  return a.volume_id == b.volume_id && a.peers == b.peers && a.replicas == b.replicas &&
         a.slice_size == b.slice_size && a.key_wrapped == b.key_wrapped &&
         a.key_file == b.key_file && a.format_version == b.format_version;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = meshfs::fs::VolumeConfig::Parse(text);
  if (config.ok()) {
    if (!config->Validate().ok()) std::abort();
    auto again = meshfs::fs::VolumeConfig::Parse(config->ToToml());
    if (!again.ok() || !Same(*config, *again)) std::abort();
  }
  auto exp = meshfs::fs::VolumeExport::Parse(text);
  if (exp.ok()) {
    auto again = meshfs::fs::VolumeExport::Parse(exp->ToToml());
    if (!again.ok() || !Same(exp->config, again->config) ||
        again->key_file_bytes != exp->key_file_bytes) {
      std::abort();
    }
  }
  return 0;
}

// Fuzz target: root records as PUT /v1/roots/{volume} receives them. Parse
// must reject anything but 149 bytes with the right magic and version, and
// Verify must never accept a record it cannot check.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "meshfs/core/init.h"
#include "meshfs/core/root_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshfs::InitCrypto();
  const std::string_view enc(reinterpret_cast<const char*>(data), size);
  auto rec = meshfs::RootRecord::Parse(enc);
  const meshfs::Status verified = meshfs::RootRecord::Verify(enc);
  if (!rec.ok()) {
    if (verified.ok()) std::abort();
    return 0;
  }
  if (size != meshfs::RootRecord::kEncodedSize) std::abort();
  if (std::memcmp(data, "MFSR", 4) != 0 || data[4] != meshfs::RootRecord::kVersion) std::abort();
  auto pv = meshfs::RootRecord::ParseVerified(enc, rec->VolumeHex());
  if (pv.ok() != verified.ok()) std::abort();
  // Another volume's id never matches.
  std::string other = rec->VolumeHex();
  other[0] = other[0] == '0' ? '1' : '0';
  if (meshfs::RootRecord::ParseVerified(enc, other).ok()) std::abort();
  return 0;
}

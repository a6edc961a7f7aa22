// Fuzz target: the key file parser. The first input byte picks a mode:
//   0  the bytes as they are (almost always stopped by the checksum);
//   1  the bytes with their last 16 replaced by a valid checksum, so the
//      parser's later checks (kind, length, reserved bytes, KDF limits) and,
//      for files that pass them, the unwrap itself see arbitrary input.
// Argon2id runs only for files recording libsodium's MIN cost, to keep each
// run fast. A raw key file that opens must re-encode to the same bytes.
#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "meshfs/core/init.h"
#include "meshfs/fs/keys.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool init = [] {
    meshfs::InitCrypto();
    return true;
  }();
  (void)init;
  if (size == 0) {
    if (meshfs::fs::OpenKeyFile("", "pw").ok()) std::abort();
    return 0;
  }
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 1 && file.size() >= 16) {
    crypto_generichash(reinterpret_cast<unsigned char*>(file.data() + file.size() - 16), 16,
                       reinterpret_cast<const unsigned char*>(file.data()), file.size() - 16,
                       nullptr, 0);
  }
  auto info = meshfs::fs::InspectKeyFile(file);
  auto wrapped = meshfs::fs::KeyFileIsWrapped(file);
  if (info.ok() != wrapped.ok()) std::abort();
  if (!info.ok()) {
    if (!info.status().Is(meshfs::Code::kCorruption)) std::abort();
    if (meshfs::fs::OpenKeyFile(file, "pw").ok()) std::abort();
    return 0;
  }
  if (info->wrapped && (info->opslimit != crypto_pwhash_OPSLIMIT_MIN ||
                        info->memlimit != crypto_pwhash_MEMLIMIT_MIN)) {
    return 0;  // valid but slow to unwrap
  }
  auto key = meshfs::fs::OpenKeyFile(file, "pw");
  if (!info->wrapped) {
    if (!key.ok() || meshfs::fs::EncodeRawKeyFile(*key) != file) std::abort();
  } else if (!key.ok() && !key.status().Is(meshfs::Code::kPermissionDenied)) {
    std::abort();
  }
  return 0;
}

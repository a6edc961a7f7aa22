// Volume keys: the master key, its subkeys, and the key file that stores it.
//
// The master key is 32 random bytes made by `meshfs init`. Subkeys come from
// crypto_kdf_derive_from_key: content encryption, nonce/dedup PRF, metadata
// encryption, and the Ed25519 signing seed (the volume id is the public key).
// The key file holds the master key wrapped (XChaCha20-Poly1305 under
// Argon2id(passphrase, salt)) or unwrapped (for --key-file). Its format is in
// docs/format.md.
//
// Thread-safety: value types; secret bytes are wiped on destruction.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"
#include "meshfs/fs/codec.h"

namespace meshfs::fs {

struct MasterKey {
  std::array<uint8_t, 32> bytes{};
  static MasterKey Random();
  ~MasterKey();
};

struct VolumeKeys {
  SliceKeys slice;
  std::array<uint8_t, 32> metadata_key{};
  std::array<uint8_t, 64> signing_secret{};  // Ed25519 secret key (seed || pk)
  std::array<uint8_t, 32> volume_id{};       // Ed25519 public key

  static VolumeKeys Derive(const MasterKey& master);
  std::string VolumeIdHex() const;
  ~VolumeKeys();
};

// Key file (wrapped). `opslimit`/`memlimit` default to libsodium's
// INTERACTIVE limits; tests may pass MIN to be fast.
Result<std::string> WrapMasterKey(const MasterKey& key, std::string_view passphrase,
                                  uint64_t opslimit = 0, size_t memlimit = 0);
// Key file (unwrapped, for unattended use).
std::string EncodeRawKeyFile(const MasterKey& key);

// Parses either kind. PermissionDenied "wrong passphrase" when the wrapped key
// does not authenticate; Corruption "key file is damaged: ..." when the file
// is not a well-formed key file. `passphrase` is ignored for raw key files.
Result<MasterKey> OpenKeyFile(std::string_view file_bytes, std::string_view passphrase);
// True iff the key file needs a passphrase (is wrapped). Corruption if damaged.
Result<bool> KeyFileIsWrapped(std::string_view file_bytes);

// What a key file says about itself, without running the KDF.
struct KeyFileInfo {
  bool wrapped = false;
  uint64_t opslimit = 0;  // Argon2id cost recorded in a wrapped file, else 0
  uint64_t memlimit = 0;
};
// Checks magic, version, kind, length, checksum and (wrapped) KDF limits.
// Corruption "key file is damaged: ..." otherwise.
Result<KeyFileInfo> InspectKeyFile(std::string_view file_bytes);

}  // namespace meshfs::fs

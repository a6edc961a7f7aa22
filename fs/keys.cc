// Volume keys and key files. The byte layouts are in docs/format.md
// ("Key file").
#include "meshfs/fs/keys.h"

#include <sodium.h>

#include <cstring>

#include "meshfs/core/hex.h"

namespace meshfs::fs {
namespace {

// crypto_kdf context and subkey ids. Never change them: they define the keys.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "meshfs01";
constexpr uint64_t kSubkeyContent = 1;
constexpr uint64_t kSubkeyPrf = 2;
constexpr uint64_t kSubkeyMetadata = 3;
constexpr uint64_t kSubkeySigningSeed = 4;

// Common prefix: magic "MFSK", version, kind, two reserved zero bytes.
constexpr unsigned char kMagic[4] = {'M', 'F', 'S', 'K'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kKindWrapped = 1;
constexpr uint8_t kKindRaw = 2;
constexpr size_t kPrefixSize = 8;
constexpr size_t kChecksumSize = 16;  // unkeyed BLAKE2b-128 of everything before it
constexpr uint8_t kAlgArgon2id13 = 1;

// Wrapped: prefix(8) alg(1) reserved(7) opslimit(8 LE) memlimit(8 LE)
//          salt(16) nonce(24) ciphertext(32) tag(16) checksum(16) = 136
constexpr size_t kSaltOffset = kPrefixSize + 8 + 16;
constexpr size_t kNonceOffset = kSaltOffset + crypto_pwhash_SALTBYTES;
constexpr size_t kCipherOffset = kNonceOffset + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kWrappedSize =
    kCipherOffset + 32 + crypto_aead_xchacha20poly1305_ietf_ABYTES + kChecksumSize;
// Raw: prefix(8) key(32) checksum(16) = 56
constexpr size_t kRawSize = kPrefixSize + 32 + kChecksumSize;

// Bounds on the recorded KDF cost, so a forged file cannot make unlocking
// take hours or all memory.
constexpr uint64_t kMaxOpslimit = 64;
constexpr uint64_t kMaxMemlimit = uint64_t{4} << 30;

void StoreLe64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t LoadLe64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void Checksum(const unsigned char* data, size_t n, unsigned char* out) {
  crypto_generichash(out, kChecksumSize, data, n, nullptr, 0);
}

Status Damaged(const std::string& why) { return Status::Corruption("key file is damaged: " + why); }

}  // namespace

MasterKey MasterKey::Random() {
  MasterKey k;
  randombytes_buf(k.bytes.data(), k.bytes.size());
  return k;
}

MasterKey::~MasterKey() { sodium_memzero(bytes.data(), bytes.size()); }

VolumeKeys VolumeKeys::Derive(const MasterKey& master) {
  VolumeKeys k;
  crypto_kdf_derive_from_key(k.slice.content_key.data(), 32, kSubkeyContent, kKdfContext,
                             master.bytes.data());
  crypto_kdf_derive_from_key(k.slice.prf_key.data(), 32, kSubkeyPrf, kKdfContext,
                             master.bytes.data());
  crypto_kdf_derive_from_key(k.metadata_key.data(), 32, kSubkeyMetadata, kKdfContext,
                             master.bytes.data());
  unsigned char seed[crypto_sign_SEEDBYTES];
  crypto_kdf_derive_from_key(seed, sizeof(seed), kSubkeySigningSeed, kKdfContext,
                             master.bytes.data());
  crypto_sign_seed_keypair(k.volume_id.data(), k.signing_secret.data(), seed);
  sodium_memzero(seed, sizeof(seed));
  return k;
}

std::string VolumeKeys::VolumeIdHex() const {
  return HexEncode(
      std::string_view(reinterpret_cast<const char*>(volume_id.data()), volume_id.size()));
}

VolumeKeys::~VolumeKeys() {
  sodium_memzero(&slice, sizeof(slice));
  sodium_memzero(metadata_key.data(), metadata_key.size());
  sodium_memzero(signing_secret.data(), signing_secret.size());
}

Result<std::string> WrapMasterKey(const MasterKey& key, std::string_view passphrase,
                                  uint64_t opslimit, size_t memlimit) {
  if (opslimit == 0) opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
  if (memlimit == 0) memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (opslimit < crypto_pwhash_OPSLIMIT_MIN || opslimit > kMaxOpslimit ||
      memlimit < crypto_pwhash_MEMLIMIT_MIN || memlimit > kMaxMemlimit) {
    return Status::InvalidArgument("Argon2id limits out of range");
  }
  std::string out(kWrappedSize, '\0');
  auto* b = reinterpret_cast<unsigned char*>(out.data());
  std::memcpy(b, kMagic, sizeof(kMagic));
  b[4] = kVersion;
  b[5] = kKindWrapped;
  b[kPrefixSize] = kAlgArgon2id13;
  StoreLe64(b + kPrefixSize + 8, opslimit);
  StoreLe64(b + kPrefixSize + 16, memlimit);
  randombytes_buf(b + kSaltOffset, crypto_pwhash_SALTBYTES);
  randombytes_buf(b + kNonceOffset, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned char kek[32];
  if (crypto_pwhash(kek, sizeof(kek), passphrase.data(), passphrase.size(), b + kSaltOffset,
                    opslimit, memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Status::NoSpace("not enough memory for Argon2id (" + std::to_string(memlimit >> 20) +
                           " MiB)");
  }
  // The AEAD covers the parameters too (as associated data).
  crypto_aead_xchacha20poly1305_ietf_encrypt(b + kCipherOffset, nullptr, key.bytes.data(), 32, b,
                                             kCipherOffset, nullptr, b + kNonceOffset, kek);
  sodium_memzero(kek, sizeof(kek));
  Checksum(b, kWrappedSize - kChecksumSize, b + kWrappedSize - kChecksumSize);
  return out;
}

std::string EncodeRawKeyFile(const MasterKey& key) {
  std::string out(kRawSize, '\0');
  auto* b = reinterpret_cast<unsigned char*>(out.data());
  std::memcpy(b, kMagic, sizeof(kMagic));
  b[4] = kVersion;
  b[5] = kKindRaw;
  std::memcpy(b + kPrefixSize, key.bytes.data(), 32);
  Checksum(b, kRawSize - kChecksumSize, b + kRawSize - kChecksumSize);
  return out;
}

Result<KeyFileInfo> InspectKeyFile(std::string_view file_bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(file_bytes.data());
  const size_t n = file_bytes.size();
  if (n < kPrefixSize) return Damaged("too short (" + std::to_string(n) + " bytes)");
  if (std::memcmp(b, kMagic, sizeof(kMagic)) != 0) return Damaged("not a meshfs key file");
  if (b[4] != kVersion) {
    return Damaged("unknown format version " + std::to_string(b[4]) + " (this meshfs reads 1)");
  }
  if (b[5] != kKindWrapped && b[5] != kKindRaw) {
    return Damaged("unknown key kind " + std::to_string(b[5]));
  }
  const bool wrapped = b[5] == kKindWrapped;
  const size_t want = wrapped ? kWrappedSize : kRawSize;
  if (n != want) {
    return Damaged("wrong length (" + std::to_string(n) + " bytes, expected " +
                   std::to_string(want) + ")");
  }
  unsigned char sum[kChecksumSize];
  Checksum(b, n - kChecksumSize, sum);
  if (sodium_memcmp(sum, b + n - kChecksumSize, kChecksumSize) != 0) {
    return Damaged("checksum mismatch");
  }
  if (b[6] != 0 || b[7] != 0) return Damaged("reserved bytes are not zero");
  KeyFileInfo info;
  info.wrapped = wrapped;
  if (wrapped) {
    if (b[kPrefixSize] != kAlgArgon2id13) {
      return Damaged("unknown key derivation algorithm " + std::to_string(b[kPrefixSize]));
    }
    for (size_t i = kPrefixSize + 1; i < kPrefixSize + 8; ++i) {
      if (b[i] != 0) return Damaged("reserved bytes are not zero");
    }
    info.opslimit = LoadLe64(b + kPrefixSize + 8);
    info.memlimit = LoadLe64(b + kPrefixSize + 16);
    if (info.opslimit < crypto_pwhash_OPSLIMIT_MIN || info.opslimit > kMaxOpslimit ||
        info.memlimit < crypto_pwhash_MEMLIMIT_MIN || info.memlimit > kMaxMemlimit) {
      return Damaged("Argon2id limits out of range");
    }
  }
  return info;
}

Result<bool> KeyFileIsWrapped(std::string_view file_bytes) {
  MESHFS_ASSIGN_OR_RETURN(KeyFileInfo info, InspectKeyFile(file_bytes));
  return info.wrapped;
}

Result<MasterKey> OpenKeyFile(std::string_view file_bytes, std::string_view passphrase) {
  MESHFS_ASSIGN_OR_RETURN(KeyFileInfo info, InspectKeyFile(file_bytes));
  const auto* b = reinterpret_cast<const unsigned char*>(file_bytes.data());
  MasterKey key;
  if (!info.wrapped) {
    std::memcpy(key.bytes.data(), b + kPrefixSize, 32);
    return key;
  }
  unsigned char kek[32];
  if (crypto_pwhash(kek, sizeof(kek), passphrase.data(), passphrase.size(), b + kSaltOffset,
                    info.opslimit, static_cast<size_t>(info.memlimit),
                    crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Status::NoSpace("not enough memory for Argon2id (" +
                           std::to_string(info.memlimit >> 20) + " MiB)");
  }
  const int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      key.bytes.data(), nullptr, nullptr, b + kCipherOffset,
      32 + crypto_aead_xchacha20poly1305_ietf_ABYTES, b, kCipherOffset, b + kNonceOffset, kek);
  sodium_memzero(kek, sizeof(kek));
  // The checksum passed, so the file is intact: a failing tag means the
  // passphrase is not the one it was wrapped with.
  if (rc != 0) return Status::PermissionDenied("wrong passphrase");
  return key;
}

}  // namespace meshfs::fs

// Root record encoding, signing and verification (see root_record.h).
#include "meshfs/core/root_record.h"

#include <sodium.h>

#include <cstring>

#include "meshfs/core/hex.h"

namespace meshfs {
namespace {

void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetU64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

std::string SignedPart(const RootRecord& r) {
  std::string out;
  out.reserve(RootRecord::kEncodedSize);
  out.append(RootRecord::kMagic, 4);
  out.push_back(static_cast<char>(RootRecord::kVersion));
  out.append(reinterpret_cast<const char*>(r.volume_id.data()), r.volume_id.size());
  PutU64(out, r.sequence);
  out.append(r.root.Raw());
  PutU64(out, static_cast<uint64_t>(r.time_micros));
  return out;
}

}  // namespace

std::string RootRecord::VolumeHex() const {
  return HexEncode(
      std::string_view(reinterpret_cast<const char*>(volume_id.data()), volume_id.size()));
}

Result<std::string> RootRecord::Sign(std::string_view secret_key) const {
  if (secret_key.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument("root record: signing key must be 64 bytes");
  }
  // libsodium's secret key is seed || public key.
  if (std::memcmp(secret_key.data() + 32, volume_id.data(), kVolumeIdSize) != 0) {
    return Status::InvalidArgument("root record: signing key does not belong to the volume id");
  }
  std::string out = SignedPart(*this);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(out.data()), out.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  out.append(reinterpret_cast<const char*>(sig), sizeof(sig));
  return out;
}

Result<RootRecord> RootRecord::Parse(std::string_view encoded) {
  if (encoded.size() != kEncodedSize) {
    return Status::InvalidArgument("root record: expected " + std::to_string(kEncodedSize) +
                                   " bytes, got " + std::to_string(encoded.size()));
  }
  if (std::memcmp(encoded.data(), kMagic, 4) != 0) {
    return Status::InvalidArgument("root record: bad magic (not a meshfs root record)");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(encoded.data());
  if (p[4] != kVersion) {
    return Status::InvalidArgument("root record: unsupported version " + std::to_string(p[4]));
  }
  RootRecord r;
  size_t off = 5;
  std::memcpy(r.volume_id.data(), p + off, kVolumeIdSize);
  off += kVolumeIdSize;
  r.sequence = GetU64(p + off);
  off += 8;
  MESHFS_ASSIGN_OR_RETURN(r.root, SliceId::FromBytes(encoded.substr(off, SliceId::kSize)));
  off += SliceId::kSize;
  r.time_micros = static_cast<int64_t>(GetU64(p + off));
  off += 8;
  std::memcpy(r.signature.data(), p + off, kSignatureSize);
  return r;
}

Status RootRecord::Verify(std::string_view encoded) {
  MESHFS_ASSIGN_OR_RETURN(RootRecord r, Parse(encoded));
  const auto* p = reinterpret_cast<const unsigned char*>(encoded.data());
  if (crypto_sign_verify_detached(r.signature.data(), p, kSignedSize, r.volume_id.data()) != 0) {
    return Status::PermissionDenied("root record: bad signature for volume " + r.VolumeHex());
  }
  return Status::OK();
}

Result<RootRecord> RootRecord::ParseVerified(std::string_view encoded,
                                             std::string_view expected_volume_hex) {
  MESHFS_ASSIGN_OR_RETURN(RootRecord r, Parse(encoded));
  if (r.VolumeHex() != expected_volume_hex) {
    return Status::PermissionDenied("root record is for another volume (" + r.VolumeHex() + ")");
  }
  MESHFS_RETURN_IF_ERROR(Verify(encoded));
  return r;
}

}  // namespace meshfs

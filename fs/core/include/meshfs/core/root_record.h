// RootRecord: the signed pointer to a volume's newest snapshot, stored on
// peers under PUT/GET /v1/roots/{volume} (docs/protocol.md, docs/format.md).
//
// Wire encoding (149 bytes, big-endian integers):
//   magic "MFSR" (4) | version 1 (1) | volume id = Ed25519 public key (32) |
//   sequence (u64) | root address (32) | time, microseconds since the epoch
//   (i64) | Ed25519 signature over all preceding 85 bytes (64)
// A peer accepts a record only if the signature verifies against the volume
// id named in the URL and its sequence is higher than every kept record.
//
// Thread-safety: value type and pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

namespace meshfs {

struct RootRecord {
  static constexpr char kMagic[4] = {'M', 'F', 'S', 'R'};
  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kVolumeIdSize = 32;  // Ed25519 public key
  static constexpr size_t kSignatureSize = 64;
  static constexpr size_t kSignedSize = 4 + 1 + 32 + 8 + 32 + 8;        // 85
  static constexpr size_t kEncodedSize = kSignedSize + kSignatureSize;  // 149

  std::array<uint8_t, kVolumeIdSize> volume_id{};  // raw public key
  uint64_t sequence = 0;
  SliceId root;
  int64_t time_micros = 0;
  std::array<uint8_t, kSignatureSize> signature{};  // filled by Parse

  // Lowercase hex of volume_id (the {volume} in URLs).
  std::string VolumeHex() const;

  // Encodes and signs with `secret_key` (libsodium Ed25519 secret key, 64
  // bytes: seed || public key). volume_id must be that key's public half;
  // InvalidArgument otherwise.
  Result<std::string> Sign(std::string_view secret_key) const;

  // Decodes `encoded` (exactly kEncodedSize bytes, right magic and version);
  // does NOT check the signature. InvalidArgument on anything else.
  static Result<RootRecord> Parse(std::string_view encoded);

  // Checks the Ed25519 signature of `encoded` against the volume id inside
  // it. PermissionDenied on a bad signature, InvalidArgument if malformed.
  static Status Verify(std::string_view encoded);

  // Parse + Verify + the volume id must equal `expected_volume_hex`
  // (PermissionDenied "record is for another volume" otherwise).
  static Result<RootRecord> ParseVerified(std::string_view encoded,
                                          std::string_view expected_volume_hex);
};

}  // namespace meshfs

// SignedRequest: a peer-protocol request authorised by a volume's Ed25519
// key, used for DELETE /v1/slices/{addr} (drop the volume's reference).
//
// Carried in four headers (docs/protocol.md):
//   X-Meshfs-Owner: volume id, 64 hex        X-Meshfs-Timestamp: unix seconds
//   X-Meshfs-Nonce: 32 hex (16 random bytes)  X-Meshfs-Signature: 128 hex
// The signature covers the canonical message
//   "meshfs-request-v1\n" METHOD "\n" TARGET "\n" OWNER "\n" TIMESTAMP "\n" NONCE
// where TARGET is the slice address (hex). A peer rejects timestamps more
// than kMaxSkewSeconds away from its clock and nonces it has already seen
// for that volume within the window (replay).
//
// Thread-safety: value type and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"

namespace meshfs {

struct SignedRequest {
  static constexpr int64_t kMaxSkewSeconds = 300;
  static constexpr std::string_view kOwnerHeader = "X-Meshfs-Owner";
  static constexpr std::string_view kTimestampHeader = "X-Meshfs-Timestamp";
  static constexpr std::string_view kNonceHeader = "X-Meshfs-Nonce";
  static constexpr std::string_view kSignatureHeader = "X-Meshfs-Signature";

  std::string method;     // "DELETE"
  std::string target;     // slice address, 64 hex
  std::string owner;      // volume id, 64 hex
  int64_t timestamp = 0;  // unix seconds
  std::string nonce;      // 32 hex
  std::string signature;  // 128 hex

  // The bytes that are signed.
  std::string Message() const;

  // Builds and signs a request with a fresh random nonce. `secret_key`: the
  // 64-byte libsodium Ed25519 secret key of the volume (owner = its public
  // half). InvalidArgument on a bad key or target.
  static Result<SignedRequest> Sign(std::string_view method, std::string_view target,
                                    std::string_view secret_key, int64_t now_seconds);

  // The four headers to send.
  std::map<std::string, std::string> Headers() const;

  // Reads the four headers (`headers` keyed by lowercase name) of a request
  // for METHOD TARGET. InvalidArgument if any is missing or malformed.
  static Result<SignedRequest> FromHeaders(std::string_view method, std::string_view target,
                                           const std::map<std::string, std::string>& headers);

  // Checks freshness (|now - timestamp| <= kMaxSkewSeconds, else
  // PermissionDenied "stale") and the signature against `owner`
  // (PermissionDenied). Replay (nonce reuse) is the peer's to check.
  Status Verify(int64_t now_seconds) const;
};

}  // namespace meshfs

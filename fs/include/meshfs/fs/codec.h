// The slice codec: plaintext slice <-> (address, blob). See docs/format.md.
//
// Encode: compress with zstd when it pays (a cheap probe first, so
// incompressible data costs no full zstd attempt), nonce = keyed BLAKE2b(PRF
// key, header || bytes to encrypt) truncated to 24 bytes, blob = header ||
// nonce || XChaCha20-Poly1305(content key, nonce, data, ad = header),
// address = BLAKE2b-256(blob). Deterministic: equal plaintext in one volume
// gives an equal address (dedup); other volumes' keys give other addresses.
//
// Decode verifies the address before anything else, then the header, then the
// AEAD tag, then decompresses (bounded by the slice size). Every failure is a
// clear Status, never a crash and never unauthenticated bytes.
//
// Thread-safety: a SliceCodec is immutable after construction; Encode and
// Decode may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

namespace meshfs::fs {

inline constexpr uint32_t kMinSliceSize = 64 * 1024;
inline constexpr uint32_t kMaxSliceSize = 16 * 1024 * 1024;
inline constexpr uint32_t kDefaultSliceSize = 1024 * 1024;

struct SliceKeys {
  std::array<uint8_t, 32> content_key;  // XChaCha20-Poly1305 key
  std::array<uint8_t, 32> prf_key;      // keyed BLAKE2b for nonces
};

struct EncodedSlice {
  SliceId id;
  std::string blob;
};

class SliceCodec final {
 public:
  // `max_plaintext`: the volume's slice size; Encode rejects larger input and
  // Decode refuses to decompress beyond it.
  SliceCodec(const SliceKeys& keys, uint32_t max_plaintext = kMaxSliceSize);
  ~SliceCodec();
  SliceCodec(const SliceCodec&) = delete;
  SliceCodec& operator=(const SliceCodec&) = delete;

  // REQUIRES: plaintext.size() <= max_plaintext (else InvalidArgument).
  Result<EncodedSlice> Encode(std::string_view plaintext) const;

  // Corruption when the blob does not hash to `id`, has a bad magic or
  // version, is truncated, fails authentication (tampered, or another
  // volume's key) or decompresses to garbage. `address_verified`: the
  // caller already checked the address (a SliceStore's Get does), so
  // Decode skips that hash; every other check stays (the AEAD tag alone
  // still refuses any changed byte).
  Result<std::string> Decode(const SliceId& id, std::string_view blob,
                             bool address_verified = false) const;

 private:
  SliceKeys keys_;
  uint32_t max_plaintext_;
};

}  // namespace meshfs::fs

// Internal: the constants and building blocks of the slice blob format
// (docs/format.md, "Slice blob"), shared by the codec, its tests, fuzz
// targets and benchmark. Not part of meshfs_fs's public interface.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshfs::fs::codec_format {

inline constexpr unsigned char kMagic[4] = {'M', 'F', 'S', 'S'};
inline constexpr uint8_t kVersion = 1;
inline constexpr uint8_t kFlagZstd = 0x01;
inline constexpr size_t kHeaderSize = 12;  // magic, version, flags, reserved[2], size (u32 LE)
inline constexpr size_t kNonceSize = 24;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kOverhead = kHeaderSize + kNonceSize + kTagSize;
// zstd level of the full compression pass (the probe uses level 1).
inline constexpr int kZstdLevel = 3;

// Writes the 12-byte header.
void WriteHeader(unsigned char* header, uint8_t flags, uint32_t plaintext_size);

// nonce = first 24 bytes of BLAKE2b-256 keyed with `prf_key` (32 bytes) over
// header (kHeaderSize bytes) || data.
void ComputeNonce(const uint8_t* prf_key, const unsigned char* header, const unsigned char* data,
                  size_t size, unsigned char* nonce);

}  // namespace meshfs::fs::codec_format

// XChaCha20-Poly1305 (IETF), byte for byte what libsodium's
// crypto_aead_xchacha20poly1305_ietf_* produce and accept, for the slice
// codec's bulk data. The subkey comes from libsodium's HChaCha20; the
// ChaCha20-Poly1305 pass runs in OpenSSL's libcrypto, whose vectorised code
// (AVX2/AVX-512) is 2-3 times faster than libsodium's on the CPUs meshfs runs
// on (bench/codec_bench: BM_Aead*). tests/unit/codec_test.cc checks both
// directions against libsodium.
//
// Thread-safety: the functions are thread-safe (one cipher context per
// thread).
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshfs::fs::xchacha {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kNonceSize = 24;
inline constexpr size_t kTagSize = 16;

// Encrypts `n` bytes of `in` to `out` (which may equal `in`) and writes the
// tag to out + n. `ad` is authenticated, not encrypted. Returns false only
// if libcrypto fails (it does not for valid sizes); then `out` is garbage.
[[nodiscard]] bool Encrypt(unsigned char* out, const unsigned char* in, size_t n,
                           const unsigned char* ad, size_t ad_size, const unsigned char* nonce,
                           const unsigned char* key);

// Decrypts `n` bytes of ciphertext followed by its tag (n + kTagSize bytes
// at `in`) into `out` (n bytes). Returns false if the tag does not verify;
// `out` then holds unauthenticated bytes that the caller must discard.
[[nodiscard]] bool Decrypt(unsigned char* out, const unsigned char* in, size_t n,
                           const unsigned char* ad, size_t ad_size, const unsigned char* nonce,
                           const unsigned char* key);

}  // namespace meshfs::fs::xchacha

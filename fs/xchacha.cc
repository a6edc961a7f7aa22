#include "xchacha.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <climits>
#include <cstring>
#include <memory>

namespace meshfs::fs::xchacha {
namespace {

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct CipherDeleter {
  void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
};

const EVP_CIPHER* Cipher() {
  static const std::unique_ptr<EVP_CIPHER, CipherDeleter> cipher(
      EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr));
  return cipher.get();
}

EVP_CIPHER_CTX* ThreadCtx() {
  thread_local std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter> ctx(EVP_CIPHER_CTX_new());
  return ctx.get();
}

// The ChaCha20-Poly1305 key and 96-bit nonce of an XChaCha20 nonce:
// HChaCha20(key, nonce[0..16]) and 0^4 || nonce[16..24].
struct Derived {
  unsigned char key[kKeySize];
  unsigned char nonce[12];
  Derived(const unsigned char* xnonce, const unsigned char* xkey) {
    crypto_core_hchacha20(key, xnonce, xkey, nullptr);
    std::memset(nonce, 0, 4);
    std::memcpy(nonce + 4, xnonce + 16, 8);
  }
  ~Derived() { sodium_memzero(key, sizeof(key)); }
  Derived(const Derived&) = delete;
  Derived& operator=(const Derived&) = delete;
};

// Key, nonce and associated data in, then the data through, in either
// direction (`enc` 1 encrypts, 0 decrypts). EVP_CipherUpdate takes int
// lengths: slices are at most 16 MiB, but stay correct for anything.
bool Pass(EVP_CIPHER_CTX* ctx, int enc, unsigned char* out, const unsigned char* in, size_t n,
          const unsigned char* ad, size_t ad_size, const unsigned char* nonce,
          const unsigned char* key) {
  const EVP_CIPHER* cipher = Cipher();
  if (ctx == nullptr || cipher == nullptr || ad_size > INT_MAX) return false;
  Derived d(nonce, key);
  if (EVP_CipherInit_ex2(ctx, cipher, d.key, d.nonce, enc, nullptr) != 1) return false;
  int len = 0;
  if (ad_size > 0 && EVP_CipherUpdate(ctx, nullptr, &len, ad, static_cast<int>(ad_size)) != 1) {
    return false;
  }
  constexpr size_t kChunk = size_t{1} << 30;
  while (n > 0) {
    const size_t step = n < kChunk ? n : kChunk;
    if (EVP_CipherUpdate(ctx, out, &len, in, static_cast<int>(step)) != 1 ||
        static_cast<size_t>(len) != step) {
      return false;
    }
    in += step;
    out += step;
    n -= step;
  }
  return true;
}

}  // namespace

bool Encrypt(unsigned char* out, const unsigned char* in, size_t n, const unsigned char* ad,
             size_t ad_size, const unsigned char* nonce, const unsigned char* key) {
  EVP_CIPHER_CTX* ctx = ThreadCtx();
  int len = 0;
  return Pass(ctx, 1, out, in, n, ad, ad_size, nonce, key) &&
         EVP_CipherFinal_ex(ctx, out + n, &len) == 1 && len == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize), out + n) ==
             1;
}

bool Decrypt(unsigned char* out, const unsigned char* in, size_t n, const unsigned char* ad,
             size_t ad_size, const unsigned char* nonce, const unsigned char* key) {
  EVP_CIPHER_CTX* ctx = ThreadCtx();
  unsigned char tag[kTagSize];
  std::memcpy(tag, in + n, kTagSize);  // `out` may overlap `in`
  int len = 0;
  return Pass(ctx, 0, out, in, n, ad, ad_size, nonce, key) &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize), tag) == 1 &&
         EVP_CipherFinal_ex(ctx, out + n, &len) == 1;
}

}  // namespace meshfs::fs::xchacha

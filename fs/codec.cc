// The slice codec. The byte layout is in docs/format.md ("Slice blob").
#include "meshfs/fs/codec.h"

#include <sodium.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "codec_format.h"
#include "meshfs/core/buffer_pool.h"
#include "xchacha.h"

namespace meshfs::fs {
namespace {

using codec_format::kHeaderSize;
using codec_format::kNonceSize;
using codec_format::kOverhead;
using codec_format::kTagSize;

// Inputs smaller than this are never compressed: the frame overhead eats the gain.
constexpr size_t kMinCompressSize = 64;
// Below this size the probe is skipped and zstd is tried on the whole input.
constexpr size_t kProbeThreshold = 64 * 1024;
// The probe: kProbeSamples samples of kProbeSampleSize bytes spread over the input.
constexpr size_t kProbeSamples = 4;
constexpr size_t kProbeSampleSize = 8 * 1024;

// zstd contexts, shared by every thread, the most recently used first. A
// context keeps its tables between uses; one per thread (16 FUSE workers)
// meant that the worker storing the next small file almost always found its
// context's tables out of the CPU caches: compressing the 4,410 files of
// /usr/include over 4 KiB took 172-186 us per file that way and 96-102 us
// with the same context each time (zstd level 3, one machine). A serial
// writer (rsync, cp) now reuses one context.
template <typename Ctx, Ctx* (*Create)(), size_t (*Free)(Ctx*)>
class CtxPool {
 public:
  ~CtxPool() {
    for (Ctx* c : free_) Free(c);
  }
  class Lease {
   public:
    explicit Lease(CtxPool* pool) : pool_(pool), ctx_(pool->Take()) {}
    ~Lease() { pool_->Give(ctx_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Ctx* get() const { return ctx_; }

   private:
    CtxPool* pool_;
    Ctx* ctx_;
  };

 private:
  // As many as may compress at once (FUSE workers and slice encoders), so
  // that a burst of parallel writes does not create and free contexts.
  static constexpr size_t kMaxIdle = 24;
  Ctx* Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        Ctx* c = free_.back();
        free_.pop_back();
        return c;
      }
    }
    return Create();
  }
  void Give(Ctx* c) {
    if (c == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (free_.size() < kMaxIdle) {
        free_.push_back(c);
        return;
      }
    }
    Free(c);
  }
  std::mutex mu_;
  std::vector<Ctx*> free_;
};

using CCtxPool = CtxPool<ZSTD_CCtx, ZSTD_createCCtx, ZSTD_freeCCtx>;
using DCtxPool = CtxPool<ZSTD_DCtx, ZSTD_createDCtx, ZSTD_freeDCtx>;

CCtxPool& CompressContexts() {
  static CCtxPool* pool = new CCtxPool;  // never destroyed: encoders may run at exit
  return *pool;
}
DCtxPool& DecompressContexts() {
  static DCtxPool* pool = new DCtxPool;
  return *pool;
}

// "slice 3fa2c1d0…": how errors name a slice.
std::string SliceName(const SliceId& id) { return "slice " + id.ToHex().substr(0, 12) + "\u2026"; }

// A cheap compressibility probe: compress a few samples at the fastest
// level. Data that does not shrink there (random, already compressed,
// encrypted) is stored raw without a full zstd pass. Costs ~3% of a 1 MiB
// slice's bytes at zstd's fastest level.
bool LooksCompressible(std::string_view data) {
  if (data.size() < kMinCompressSize) return false;
  if (data.size() < kProbeThreshold) return true;  // a full attempt is cheap enough
  CCtxPool::Lease cctx(&CompressContexts());
  if (cctx.get() == nullptr) return true;  // out of memory: let the real attempt decide
  unsigned char out[ZSTD_COMPRESSBOUND(kProbeSampleSize)];
  size_t in_total = 0, out_total = 0;
  const size_t stride = (data.size() - kProbeSampleSize) / (kProbeSamples - 1);
  for (size_t i = 0; i < kProbeSamples; ++i) {
    const char* sample = data.data() + i * stride;
    const size_t n = ZSTD_compressCCtx(cctx.get(), out, sizeof(out), sample, kProbeSampleSize, 1);
    if (ZSTD_isError(n)) return true;  // let the real attempt decide
    in_total += kProbeSampleSize;
    out_total += n;
  }
  // Worth a full pass if the samples shrink by at least 1/16.
  return out_total < in_total - in_total / 16;
}

void StoreLe32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::string HexByte(uint8_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return {kDigits[v >> 4], kDigits[v & 15]};
}

uint32_t LoadLe32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

namespace codec_format {

void WriteHeader(unsigned char* header, uint8_t flags, uint32_t plaintext_size) {
  std::memcpy(header, kMagic, sizeof(kMagic));
  header[4] = kVersion;
  header[5] = flags;
  header[6] = 0;
  header[7] = 0;
  StoreLe32(header + 8, plaintext_size);
}

void ComputeNonce(const uint8_t* prf_key, const unsigned char* header, const unsigned char* data,
                  size_t size, unsigned char* nonce) {
  unsigned char full[crypto_generichash_BYTES];
  crypto_generichash_state st;
  crypto_generichash_init(&st, prf_key, 32, sizeof(full));
  crypto_generichash_update(&st, header, kHeaderSize);
  crypto_generichash_update(&st, data, size);
  crypto_generichash_final(&st, full, sizeof(full));
  std::memcpy(nonce, full, kNonceSize);
  sodium_memzero(&st, sizeof(st));
}

}  // namespace codec_format

SliceCodec::SliceCodec(const SliceKeys& keys, uint32_t max_plaintext)
    : keys_(keys), max_plaintext_(max_plaintext) {}

SliceCodec::~SliceCodec() { sodium_memzero(&keys_, sizeof(keys_)); }

Result<EncodedSlice> SliceCodec::Encode(std::string_view plaintext) const {
  if (plaintext.size() > max_plaintext_) {
    return Status::InvalidArgument("slice of " + std::to_string(plaintext.size()) +
                                   " bytes is larger than the slice size (" +
                                   std::to_string(max_plaintext_) + " bytes)");
  }
  const size_t n = plaintext.size();
  EncodedSlice out;
  std::string& blob = out.blob;
  // One buffer, written in place: header, nonce, then the data (compressed
  // straight into place, or encrypted from the caller's buffer) and its tag.
  blob = BufferPool::Slices().Take(kOverhead + n);  // every byte kept is written below
  auto* b = reinterpret_cast<unsigned char*>(blob.data());
  unsigned char* header = b;
  unsigned char* nonce = b + kHeaderSize;
  unsigned char* data = b + kHeaderSize + kNonceSize;

  const auto* src = reinterpret_cast<const unsigned char*>(plaintext.data());
  size_t data_size = n;
  uint8_t flags = 0;
  if (LooksCompressible(plaintext)) {
    // Must save at least 1/32 of the input to be worth a decompression on read.
    const size_t limit = n - n / 32 - 1;
    CCtxPool::Lease cctx(&CompressContexts());
    const size_t c = cctx.get() == nullptr  // out of memory: stored raw
                         ? 0
                         : ZSTD_compressCCtx(cctx.get(), data, limit, plaintext.data(), n,
                                             codec_format::kZstdLevel);
    if (!ZSTD_isError(c) && c > 0 && c <= limit) {
      data_size = c;
      flags = codec_format::kFlagZstd;
      src = data;  // encrypt in place
    }
  }
  codec_format::WriteHeader(header, flags, static_cast<uint32_t>(n));
  codec_format::ComputeNonce(keys_.prf_key.data(), header, src, data_size, nonce);
  if (!xchacha::Encrypt(data, src, data_size, header, kHeaderSize, nonce,
                        keys_.content_key.data())) {
    return Status::IOError("encrypting a slice failed in libcrypto");
  }
  blob.resize(kHeaderSize + kNonceSize + data_size + kTagSize);
  out.id = SliceId::ForBlob(blob);
  return out;
}

Result<std::string> SliceCodec::Decode(const SliceId& id, std::string_view blob,
                                       bool address_verified) const {
  if (!address_verified && !id.Matches(blob)) {
    return Status::Corruption(SliceName(id) +
                              ": does not match its address (damaged in storage or transit)");
  }
  if (blob.size() < kOverhead) {
    return Status::Corruption(SliceName(id) + ": truncated (" + std::to_string(blob.size()) +
                              " bytes; a slice has at least " + std::to_string(kOverhead) + ")");
  }
  const auto* b = reinterpret_cast<const unsigned char*>(blob.data());
  if (std::memcmp(b, codec_format::kMagic, sizeof(codec_format::kMagic)) != 0) {
    return Status::Corruption(SliceName(id) + ": not a meshfs slice (bad magic)");
  }
  if (b[4] != codec_format::kVersion) {
    return Status::Corruption(SliceName(id) + ": unknown format version " + std::to_string(b[4]) +
                              " (this meshfs reads version " +
                              std::to_string(codec_format::kVersion) + ")");
  }
  const uint8_t flags = b[5];
  if ((flags & ~codec_format::kFlagZstd) != 0) {
    return Status::Corruption(SliceName(id) + ": unknown flags 0x" + HexByte(flags));
  }
  if (b[6] != 0 || b[7] != 0) {
    return Status::Corruption(SliceName(id) + ": reserved header bytes are not zero");
  }
  const uint32_t plain_size = LoadLe32(b + 8);
  if (plain_size > max_plaintext_) {
    return Status::Corruption(SliceName(id) + ": declares " + std::to_string(plain_size) +
                              " bytes, more than the slice size (" +
                              std::to_string(max_plaintext_) + ")");
  }
  const bool compressed = (flags & codec_format::kFlagZstd) != 0;
  const size_t data_size = blob.size() - kOverhead;
  if (compressed ? (data_size == 0 || data_size >= plain_size) : data_size != plain_size) {
    return Status::Corruption(SliceName(id) + ": length " + std::to_string(data_size) +
                              " does not fit the declared size " + std::to_string(plain_size));
  }
  const unsigned char* nonce = b + kHeaderSize;
  const unsigned char* cipher = b + kHeaderSize + kNonceSize;
  const Status auth_failed = Status::Corruption(
      SliceName(id) + ": authentication failed (tampered, or encrypted with another volume's key)");

  std::string out;
  if (!compressed) {
    out = BufferPool::Slices().Take(plain_size);
    if (!xchacha::Decrypt(reinterpret_cast<unsigned char*>(out.data()), cipher, data_size, b,
                          kHeaderSize, nonce, keys_.content_key.data())) {
      return auth_failed;  // `out`, unauthenticated, is dropped
    }
    return out;
  }
  std::unique_ptr<unsigned char[]> packed(new unsigned char[data_size]);
  if (!xchacha::Decrypt(packed.get(), cipher, data_size, b, kHeaderSize, nonce,
                        keys_.content_key.data())) {
    return auth_failed;
  }
  out = BufferPool::Slices().Take(plain_size);
  // Bounded by the declared size, itself bounded by the slice size: a frame
  // that would expand further fails here instead of allocating.
  DCtxPool::Lease dctx(&DecompressContexts());
  if (dctx.get() == nullptr) return Status::IOError("out of memory for a zstd context");
  const size_t got =
      ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), packed.get(), data_size);
  if (ZSTD_isError(got)) {
    return Status::Corruption(SliceName(id) + ": does not decompress (" + ZSTD_getErrorName(got) +
                              ")");
  }
  if (got != plain_size) {
    return Status::Corruption(SliceName(id) + ": decompresses to " + std::to_string(got) +
                              " bytes, not the declared " + std::to_string(plain_size));
  }
  return out;
}

}  // namespace meshfs::fs

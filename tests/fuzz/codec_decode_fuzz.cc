// Fuzz target: the slice codec's decoder (and its encoder, as a round trip).
// The first input byte picks a mode; the rest is the data:
//   0  decode(address of data, data): gets past the address check, so the
//      header, length and AEAD checks see arbitrary bytes;
//   1  decode(a fixed wrong address, data): must always fail;
//   2  seal: data = flags(1) || declared size (4, LE) || payload, sealed with
//      the fixed key so the AEAD accepts it; exercises the decompression
//      bounds (zstd bombs, short frames, garbage frames);
//   3  encode(data) then decode: must give data back.
// Keys are fixed: those of tests/data/codec_vectors.txt, so its blobs are
// valid seeds.
#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fs/codec_format.h"
#include "meshfs/core/init.h"
#include "meshfs/fs/codec.h"

namespace {

using meshfs::SliceId;
using meshfs::fs::SliceCodec;
using meshfs::fs::SliceKeys;
namespace cf = meshfs::fs::codec_format;

constexpr uint32_t kMax = 256 * 1024;

SliceKeys FixedKeys() {
  SliceKeys k;
  for (size_t i = 0; i < 32; ++i) {
    k.content_key[i] = static_cast<uint8_t>(9 + i);
    k.prf_key[i] = static_cast<uint8_t>(9 * 7 + 3 * i + 1);
  }
  return k;
}

const SliceCodec& Codec() {
  static const SliceCodec* codec = [] {
    meshfs::InitCrypto();
    return new SliceCodec(FixedKeys(), kMax);
  }();
  return *codec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const SliceCodec& codec = Codec();
  if (size == 0) {
    if (codec.Decode(SliceId::ForBlob(""), "").ok()) std::abort();
    return 0;
  }
  const uint8_t mode = data[0] % 4;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0: {
      auto r = codec.Decode(SliceId::ForBlob(in), in);
      if (r.ok() && r->size() > kMax) std::abort();
      break;
    }
    case 1: {
      std::array<uint8_t, 32> b;
      b.fill(0xab);
      if (codec.Decode(SliceId(b), in).ok()) std::abort();
      break;
    }
    case 2: {
      if (in.size() < 5) break;
      const uint8_t flags = static_cast<uint8_t>(in[0]);
      uint32_t declared;
      std::memcpy(&declared, in.data() + 1, 4);
      const std::string_view payload = in.substr(5);
      std::string blob(cf::kOverhead + payload.size(), '\0');
      auto* b = reinterpret_cast<unsigned char*>(blob.data());
      cf::WriteHeader(b, flags, declared);
      const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
      const SliceKeys k = FixedKeys();
      cf::ComputeNonce(k.prf_key.data(), b, p, payload.size(), b + cf::kHeaderSize);
      crypto_aead_xchacha20poly1305_ietf_encrypt(b + cf::kHeaderSize + cf::kNonceSize, nullptr, p,
                                                 payload.size(), b, cf::kHeaderSize, nullptr,
                                                 b + cf::kHeaderSize, k.content_key.data());
      auto r = codec.Decode(SliceId::ForBlob(blob), blob);
      if (r.ok() && r->size() != declared) std::abort();
      break;
    }
    case 3: {
      const std::string_view plain = in.substr(0, kMax);
      auto enc = codec.Encode(plain);
      if (!enc.ok()) std::abort();
      auto dec = codec.Decode(enc->id, enc->blob);
      if (!dec.ok() || *dec != plain) std::abort();
      break;
    }
  }
  return 0;
}

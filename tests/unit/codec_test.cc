// The slice codec: round trips, determinism, tamper and truncation
// detection, size bounds, and known-answer vectors (tests/data).
#include "meshfs/fs/codec.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <zstd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fs/codec_format.h"
#include "fs/xchacha.h"
#include "meshfs/core/hex.h"

namespace meshfs::fs {
namespace {

namespace cf = codec_format;

SliceKeys KeysFromSeed(uint8_t seed) {
  SliceKeys k;
  for (size_t i = 0; i < 32; ++i) {
    k.content_key[i] = static_cast<uint8_t>(seed + i);
    k.prf_key[i] = static_cast<uint8_t>(seed * 7 + 3 * i + 1);
  }
  return k;
}

std::string RandomBytes(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string TextLike(size_t n) {
  static const char* kWords[] = {"the ",   "slice ", "peer ",  "volume ",  "mount ",
                                 "hash\n", "key ",   "store ", "replica ", "cache "};
  std::mt19937 rng(42);
  std::string s;
  while (s.size() < n) s += kWords[rng() % 10];
  s.resize(n);
  return s;
}

uint8_t Flags(const std::string& blob) { return static_cast<uint8_t>(blob[5]); }

// Builds a blob the way the format says, from arbitrary header fields and
// payload: lets tests make well-authenticated blobs the encoder never makes.
std::string Seal(const SliceKeys& k, uint8_t version, uint8_t flags, uint32_t declared,
                 const std::string& payload) {
  std::string blob(cf::kOverhead + payload.size(), '\0');
  auto* b = reinterpret_cast<unsigned char*>(blob.data());
  cf::WriteHeader(b, flags, declared);
  b[4] = version;
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  cf::ComputeNonce(k.prf_key.data(), b, p, payload.size(), b + cf::kHeaderSize);
  unsigned long long clen;
  crypto_aead_xchacha20poly1305_ietf_encrypt(b + cf::kHeaderSize + cf::kNonceSize, &clen, p,
                                             payload.size(), b, cf::kHeaderSize, nullptr,
                                             b + cf::kHeaderSize, k.content_key.data());
  return blob;
}

TEST(Codec, RoundTripsAtManySizes) {
  SliceCodec codec(KeysFromSeed(1), kDefaultSliceSize);
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{63}, size_t{64}, size_t{1000},
                   size_t{4097}, size_t{65535}, size_t{65536}, size_t{65537}, size_t{333333},
                   size_t{kDefaultSliceSize - 1}, size_t{kDefaultSliceSize}}) {
    for (const std::string& data : {RandomBytes(n, static_cast<uint32_t>(n)), TextLike(n)}) {
      auto enc = codec.Encode(data);
      ASSERT_TRUE(enc.ok()) << n << ": " << enc.status().ToString();
      EXPECT_EQ(enc->id, SliceId::ForBlob(enc->blob));
      auto dec = codec.Decode(enc->id, enc->blob);
      ASSERT_TRUE(dec.ok()) << n << ": " << dec.status().ToString();
      EXPECT_EQ(*dec, data) << n;
    }
  }
}

TEST(Codec, CompressesOnlyWhenItPays) {
  SliceCodec codec(KeysFromSeed(1), kDefaultSliceSize);
  const std::string text = TextLike(kDefaultSliceSize);
  auto t = codec.Encode(text);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Flags(t->blob), cf::kFlagZstd);
  EXPECT_LT(t->blob.size(), text.size() / 3);

  const std::string random = RandomBytes(kDefaultSliceSize);
  auto r = codec.Encode(random);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Flags(r->blob), 0);
  EXPECT_EQ(r->blob.size(), random.size() + cf::kOverhead);

  // Small and zero-filled inputs.
  auto z = codec.Encode(std::string(100000, '\0'));
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(Flags(z->blob), cf::kFlagZstd);
  EXPECT_LT(z->blob.size(), 200u);
  auto one = codec.Encode("x");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(Flags(one->blob), 0);
  EXPECT_EQ(one->blob.size(), 1 + cf::kOverhead);
}

TEST(Codec, DeterministicInAVolumeDistinctAcrossVolumes) {
  SliceCodec a(KeysFromSeed(1)), a2(KeysFromSeed(1)), b(KeysFromSeed(2));
  for (const std::string& data : {TextLike(70000), RandomBytes(70000), std::string()}) {
    auto x = a.Encode(data), y = a2.Encode(data), z = b.Encode(data);
    ASSERT_TRUE(x.ok() && y.ok() && z.ok());
    EXPECT_EQ(x->id, y->id);
    EXPECT_EQ(x->blob, y->blob);
    EXPECT_NE(x->id, z->id);
    // Different plaintexts give different nonces and addresses.
    auto w = a.Encode(data + "!");
    ASSERT_TRUE(w.ok());
    EXPECT_NE(w->id, x->id);
    EXPECT_NE(w->blob.substr(cf::kHeaderSize, cf::kNonceSize),
              x->blob.substr(cf::kHeaderSize, cf::kNonceSize));
  }
}

TEST(Codec, WrongKeyIsAnAuthenticationError) {
  SliceCodec a(KeysFromSeed(1)), b(KeysFromSeed(2));
  for (const std::string& data : {TextLike(5000), RandomBytes(5000)}) {
    auto enc = a.Encode(data);
    ASSERT_TRUE(enc.ok());
    auto dec = b.Decode(enc->id, enc->blob);
    ASSERT_FALSE(dec.ok());
    EXPECT_EQ(dec.status().code(), Code::kCorruption);
    EXPECT_NE(dec.status().message().find("authentication failed"), std::string::npos)
        << dec.status().message();
    EXPECT_NE(dec.status().message().find("another volume's key"), std::string::npos);
  }
  // Same PRF key, another content key: still refused.
  SliceKeys mixed = KeysFromSeed(1);
  mixed.content_key = KeysFromSeed(3).content_key;
  SliceCodec c(mixed);
  auto enc = a.Encode("hello");
  ASSERT_TRUE(enc.ok());
  EXPECT_FALSE(c.Decode(enc->id, enc->blob).ok());
}

// Every single-bit flip is caught: by the address check when the address is
// the original, and by the header checks or the AEAD tag when an attacker
// also supplies the tampered blob's own address.
TEST(Codec, EveryFlippedBitIsAClearError) {
  SliceCodec codec(KeysFromSeed(1));
  for (const std::string& data : {std::string("hello, slice"), TextLike(300)}) {
    auto enc = codec.Encode(data);
    ASSERT_TRUE(enc.ok());
    for (size_t bit = 0; bit < enc->blob.size() * 8; ++bit) {
      std::string bad = enc->blob;
      bad[bit / 8] = static_cast<char>(bad[bit / 8] ^ (1 << (bit % 8)));
      auto r1 = codec.Decode(enc->id, bad);
      ASSERT_FALSE(r1.ok()) << bit;
      EXPECT_EQ(r1.status().code(), Code::kCorruption);
      EXPECT_NE(r1.status().message().find("does not match its address"), std::string::npos);
      auto r2 = codec.Decode(SliceId::ForBlob(bad), bad);
      ASSERT_FALSE(r2.ok()) << "bit " << bit << " decoded to plaintext";
      EXPECT_EQ(r2.status().code(), Code::kCorruption);
      EXPECT_EQ(r2.status().message().rfind("slice ", 0), 0u) << r2.status().message();
    }
  }
}

TEST(Codec, EveryTruncationIsAClearError) {
  SliceCodec codec(KeysFromSeed(1));
  for (const std::string& data : {std::string(), std::string("0123456789"), TextLike(3000)}) {
    auto enc = codec.Encode(data);
    ASSERT_TRUE(enc.ok());
    for (size_t len = 0; len < enc->blob.size(); ++len) {
      const std::string cut = enc->blob.substr(0, len);
      EXPECT_FALSE(codec.Decode(enc->id, cut).ok()) << len;
      auto r = codec.Decode(SliceId::ForBlob(cut), cut);
      ASSERT_FALSE(r.ok()) << len;
      EXPECT_EQ(r.status().code(), Code::kCorruption);
    }
    // Appended bytes too.
    const std::string longer = enc->blob + "x";
    EXPECT_FALSE(codec.Decode(SliceId::ForBlob(longer), longer).ok());
  }
}

TEST(Codec, HeaderErrorsNameWhatIsWrong) {
  const SliceKeys k = KeysFromSeed(1);
  SliceCodec codec(k, kDefaultSliceSize);
  auto msg = [&](const std::string& blob) {
    auto r = codec.Decode(SliceId::ForBlob(blob), blob);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(msg(Seal(k, 7, 0, 3, "abc")).find("unknown format version 7"), std::string::npos);
  EXPECT_NE(msg(Seal(k, 1, 0x80, 3, "abc")).find("unknown flags 0x80"), std::string::npos);
  EXPECT_NE(msg(Seal(k, 1, 0, 4, "abc")).find("does not fit the declared size"), std::string::npos);
  std::string bad_magic = Seal(k, 1, 0, 3, "abc");
  bad_magic[0] = 'X';
  EXPECT_NE(msg(bad_magic).find("bad magic"), std::string::npos);
  EXPECT_NE(msg("short").find("truncated"), std::string::npos);
  // A well-sealed blob of the right shape decodes: the helper is faithful.
  auto ok = codec.Decode(SliceId::ForBlob(Seal(k, 1, 0, 3, "abc")), Seal(k, 1, 0, 3, "abc"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, "abc");
}

TEST(Codec, MaxPlaintextEnforcedBothWays) {
  const SliceKeys k = KeysFromSeed(1);
  SliceCodec small(k, kMinSliceSize), big(k, kMaxSliceSize);
  const std::string data = RandomBytes(kMinSliceSize + 1);
  auto r = small.Encode(data);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(small.Encode(data.substr(1)).ok());
  // Written by a volume with bigger slices: refused, not decompressed.
  auto enc = big.Encode(TextLike(kMinSliceSize * 2));
  ASSERT_TRUE(enc.ok());
  auto d = small.Decode(enc->id, enc->blob);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("more than the slice size"), std::string::npos);
  EXPECT_TRUE(big.Decode(enc->id, enc->blob).ok());
}

// A small, authentic blob whose zstd frame expands far beyond what its header
// declares (and beyond the slice size) must fail without expanding it.
TEST(Codec, ZstdBombIsRefused) {
  const SliceKeys k = KeysFromSeed(1);
  SliceCodec codec(k, kMinSliceSize);
  const std::string zeros(64 * 1024 * 1024, '\0');
  std::string frame(ZSTD_compressBound(zeros.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), zeros.data(), zeros.size(), 19));
  ASSERT_LT(frame.size(), 10000u);
  // Declares a legal size but the frame is 64 MiB.
  const std::string bomb = Seal(k, 1, cf::kFlagZstd, kMinSliceSize, frame);
  auto r = codec.Decode(SliceId::ForBlob(bomb), bomb);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("does not decompress"), std::string::npos)
      << r.status().message();
  // Declares more than the slice size: refused before decryption.
  const std::string bomb2 = Seal(k, 1, cf::kFlagZstd, 64 * 1024 * 1024, frame);
  auto r2 = codec.Decode(SliceId::ForBlob(bomb2), bomb2);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("more than the slice size"), std::string::npos);
  // A frame that decompresses short of the declared size.
  std::string small_frame(1000, '\0');
  small_frame.resize(ZSTD_compress(small_frame.data(), small_frame.size(), zeros.data(), 500, 3));
  const std::string shortish = Seal(k, 1, cf::kFlagZstd, 600, small_frame);
  auto r3 = codec.Decode(SliceId::ForBlob(shortish), shortish);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("not the declared 600"), std::string::npos)
      << r3.status().message();
  // Garbage that authenticates but is not a zstd frame.
  const std::string junk = Seal(k, 1, cf::kFlagZstd, 600, std::string(100, 'j'));
  auto r4 = codec.Decode(SliceId::ForBlob(junk), junk);
  ASSERT_FALSE(r4.ok());
  EXPECT_NE(r4.status().message().find("does not decompress"), std::string::npos);
}

TEST(Codec, ConcurrentUse) {
  SliceCodec codec(KeysFromSeed(5));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        // Text above and below the probe threshold (the contexts pass
        // between threads, probes and full passes) and random data.
        const std::string data = (i % 3 == 0)   ? TextLike(70000 + t * 10 + i)
                                 : (i % 3 == 1) ? TextLike(5000 + t * 10 + i)
                                                : RandomBytes(70000, t * 100 + i);
        auto enc = codec.Encode(data);
        if (!enc.ok()) {
          ++failures;
          continue;
        }
        auto dec = codec.Decode(enc->id, enc->blob);
        if (!dec.ok() || *dec != data) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// Known-answer vectors: fixed keys and plaintexts -> exact address and blob.
// A change of format (or of the compressor's output) fails here; update the
// vectors only with a new format version. Regenerate with
// MESHFS_WRITE_VECTORS=1 (see tests/data/README.md).
std::string VectorsPath() {
  const char* src = std::getenv("MESHFS_SOURCE_DIR");
  return std::string(src ? src : ".") + "/tests/data/codec_vectors.txt";
}

struct Vector {
  std::string name;
  std::string plaintext;
};

std::vector<Vector> VectorInputs() {
  return {
      {"empty", ""},
      {"one-byte", "a"},
      {"short-raw", "meshfs known-answer vector"},
      {"random-300", RandomBytes(300, 7)},  // std::mt19937 is fully specified
      {"compressed-text", TextLike(2000)},
      {"compressed-zeros", std::string(5000, '\0')},
  };
}

TEST(Codec, KnownAnswerVectors) {
  const SliceKeys k = KeysFromSeed(9);
  SliceCodec codec(k, kDefaultSliceSize);
  const auto inputs = VectorInputs();
  if (std::getenv("MESHFS_WRITE_VECTORS") != nullptr) {
    std::ofstream out(VectorsPath());
    out << "# meshfs slice codec known-answer vectors, format version 1.\n"
        << "# content_key = bytes 09 0a 0b ... 28; prf_key = bytes 40 43 46 ... (64+3i mod 256)\n"
        << "# name plaintext_hex flags address_hex blob_hex\n";
    for (const auto& v : inputs) {
      auto enc = codec.Encode(v.plaintext);
      ASSERT_TRUE(enc.ok());
      out << v.name << " " << (v.plaintext.empty() ? "-" : HexEncode(v.plaintext)) << " "
          << int(Flags(enc->blob)) << " " << enc->id.ToHex() << " " << HexEncode(enc->blob) << "\n";
    }
  }
  std::ifstream in(VectorsPath());
  ASSERT_TRUE(in.good()) << "missing " << VectorsPath();
  std::string line;
  size_t checked = 0;
  bool saw_raw = false, saw_zstd = false;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, plain_hex, addr_hex, blob_hex;
    int flags;
    ls >> name >> plain_hex >> flags >> addr_hex >> blob_hex;
    auto plain = plain_hex == "-" ? Result<std::string>(std::string()) : HexDecode(plain_hex);
    auto blob = HexDecode(blob_hex);
    ASSERT_TRUE(plain.ok() && blob.ok()) << name;
    auto enc = codec.Encode(*plain);
    ASSERT_TRUE(enc.ok()) << name;
    EXPECT_EQ(enc->id.ToHex(), addr_hex) << name << ": the slice format changed";
    EXPECT_EQ(HexEncode(enc->blob), blob_hex) << name << ": the slice format changed";
    EXPECT_EQ(Flags(*blob), flags) << name;
    auto id = SliceId::FromHex(addr_hex);
    ASSERT_TRUE(id.ok());
    auto dec = codec.Decode(*id, *blob);
    ASSERT_TRUE(dec.ok()) << name << ": " << dec.status().ToString();
    EXPECT_EQ(*dec, *plain) << name;
    (flags ? saw_zstd : saw_raw) = true;
    ++checked;
  }
  EXPECT_EQ(checked, inputs.size());
  EXPECT_TRUE(saw_raw && saw_zstd);
}

// fs/xchacha (libcrypto's ChaCha20-Poly1305 under libsodium's HChaCha20) is
// libsodium's XChaCha20-Poly1305-IETF byte for byte, both ways, in place or
// not, and refuses every tampered byte.
TEST(XChaCha, MatchesLibsodiumBothWaysAndRejectsTampering) {
  std::mt19937 rng(42);
  auto random = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  };
  auto u = [](std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); };
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 63u, 64u, 65u, 1000u, 65536u, (1u << 20) + 3}) {
    SCOPED_TRACE(n);
    std::string key = random(32), nonce = random(24), ad = random(n % 3 == 0 ? 0 : 12);
    std::string plain = random(n);
    std::string ours(n + xchacha::kTagSize, '\0');
    ASSERT_TRUE(xchacha::Encrypt(u(ours), u(plain), n, u(ad), ad.size(), u(nonce), u(key)));
    std::string theirs(n + crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(u(theirs), &clen, u(plain), n, u(ad), ad.size(),
                                               nullptr, u(nonce), u(key));
    ASSERT_EQ(clen, theirs.size());
    ASSERT_EQ(HexEncode(ours), HexEncode(theirs));

    // In place gives the same bytes.
    std::string inplace = plain + std::string(xchacha::kTagSize, '\0');
    ASSERT_TRUE(
        xchacha::Encrypt(u(inplace), u(inplace), n, u(ad), ad.size(), u(nonce), u(key)));
    EXPECT_EQ(inplace, ours);

    std::string back(n, '\0');
    ASSERT_TRUE(xchacha::Decrypt(u(back), u(theirs), n, u(ad), ad.size(), u(nonce), u(key)));
    EXPECT_EQ(back, plain);
    ASSERT_TRUE(xchacha::Decrypt(u(inplace), u(inplace), n, u(ad), ad.size(), u(nonce), u(key)));
    EXPECT_EQ(inplace.substr(0, n), plain);

    // A flipped bit anywhere in ciphertext, tag, ad, nonce or key fails.
    const size_t positions[] = {0, n / 2, n + xchacha::kTagSize - 1};
    for (size_t pos : positions) {
      if (pos >= ours.size()) continue;
      std::string bad = ours;
      bad[pos] ^= 0x01;
      EXPECT_FALSE(xchacha::Decrypt(u(back), u(bad), n, u(ad), ad.size(), u(nonce), u(key)));
    }
    if (!ad.empty()) {
      std::string bad_ad = ad;
      bad_ad[3] ^= 0x80;
      EXPECT_FALSE(
          xchacha::Decrypt(u(back), u(ours), n, u(bad_ad), ad.size(), u(nonce), u(key)));
    }
    std::string bad_nonce = nonce;
    bad_nonce[20] ^= 0x04;  // the part that is not in the subkey
    EXPECT_FALSE(
        xchacha::Decrypt(u(back), u(ours), n, u(ad), ad.size(), u(bad_nonce), u(key)));
    bad_nonce = nonce;
    bad_nonce[2] ^= 0x04;  // the part that is
    EXPECT_FALSE(
        xchacha::Decrypt(u(back), u(ours), n, u(ad), ad.size(), u(bad_nonce), u(key)));
    std::string bad_key = key;
    bad_key[31] ^= 0x10;
    EXPECT_FALSE(
        xchacha::Decrypt(u(back), u(ours), n, u(ad), ad.size(), u(nonce), u(bad_key)));
  }
}

}  // namespace
}  // namespace meshfs::fs

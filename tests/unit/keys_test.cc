// Volume keys: derivation, wrapped and raw key files, wrong passphrase and
// damaged files.
#include "meshfs/fs/keys.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <set>
#include <string>

#include "meshfs/core/hex.h"

namespace meshfs::fs {
namespace {

// Fast Argon2id for tests; the cost is recorded in the file.
constexpr uint64_t kOps = crypto_pwhash_OPSLIMIT_MIN;
constexpr size_t kMem = crypto_pwhash_MEMLIMIT_MIN;

MasterKey FixedKey(uint8_t seed) {
  MasterKey k;
  for (size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<uint8_t>(seed + i);
  return k;
}

TEST(Keys, RandomKeysDiffer) {
  MasterKey a = MasterKey::Random(), b = MasterKey::Random();
  EXPECT_NE(a.bytes, b.bytes);
}

TEST(Keys, DeriveIsDeterministicAndSubkeysAreDistinct) {
  const VolumeKeys a = VolumeKeys::Derive(FixedKey(1));
  const VolumeKeys b = VolumeKeys::Derive(FixedKey(1));
  const VolumeKeys c = VolumeKeys::Derive(FixedKey(2));
  EXPECT_EQ(a.slice.content_key, b.slice.content_key);
  EXPECT_EQ(a.volume_id, b.volume_id);
  EXPECT_NE(a.volume_id, c.volume_id);
  EXPECT_NE(a.slice.content_key, c.slice.content_key);
  std::set<std::array<uint8_t, 32>> distinct{a.slice.content_key, a.slice.prf_key, a.metadata_key,
                                             a.volume_id};
  EXPECT_EQ(distinct.size(), 4u);
  EXPECT_EQ(a.VolumeIdHex().size(), 64u);
  // The signing key signs, and the volume id verifies.
  const std::string msg = "root record";
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                       a.signing_secret.data());
  EXPECT_EQ(crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(msg.data()),
                                        msg.size(), a.volume_id.data()),
            0);
  EXPECT_NE(crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(msg.data()),
                                        msg.size(), c.volume_id.data()),
            0);
}

// Pins the derivation (context "meshfs01", subkey ids 1..4): a change would
// orphan every existing volume.
TEST(Keys, DerivationKnownAnswer) {
  const VolumeKeys k = VolumeKeys::Derive(FixedKey(0));
  auto hex = [](const auto& a) {
    return HexEncode(std::string_view(reinterpret_cast<const char*>(a.data()), a.size()));
  };
  EXPECT_EQ(k.VolumeIdHex(), "24e74af043cb0f54614e7aac78bcc2d920a5f926d7e1c2341452dfa725919ede");
  EXPECT_EQ(hex(k.slice.content_key),
            "21609c6e91427957c5634aab5e6a82013d6e6e865c26c1c18309392fa0282f4b");
  EXPECT_EQ(hex(k.slice.prf_key),
            "049f4073d2c8c5eee811eca9833bf7d250bf812268817a825537868dbf2108e8");
  EXPECT_EQ(hex(k.metadata_key),
            "22fb58badd748c6727a7a95ebf1827e8cbee09ae19f3e02e723b136e6cb3be1d");
}

TEST(Keys, WrapUnwrapRoundTrip) {
  const MasterKey key = FixedKey(3);
  auto file = WrapMasterKey(key, "hunter2", kOps, kMem);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto wrapped = KeyFileIsWrapped(*file);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_TRUE(*wrapped);
  auto info = InspectKeyFile(*file);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->opslimit, kOps);
  EXPECT_EQ(info->memlimit, kMem);
  auto opened = OpenKeyFile(*file, "hunter2");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->bytes, key.bytes);
  // The key does not appear in the file.
  EXPECT_EQ(file->find(std::string(reinterpret_cast<const char*>(key.bytes.data()), 32)),
            std::string::npos);
  // Two wraps of one key differ (fresh salt and nonce).
  auto again = WrapMasterKey(key, "hunter2", kOps, kMem);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *file);
}

TEST(Keys, WrongPassphraseIsPermissionDenied) {
  auto file = WrapMasterKey(FixedKey(3), "hunter2", kOps, kMem);
  ASSERT_TRUE(file.ok());
  for (const char* wrong : {"hunter3", "", "hunter2 ", "Hunter2"}) {
    auto r = OpenKeyFile(*file, wrong);
    ASSERT_FALSE(r.ok()) << wrong;
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
    EXPECT_EQ(r.status().message(), "wrong passphrase");
  }
}

TEST(Keys, EveryDamagedByteIsDetected) {
  auto file = WrapMasterKey(FixedKey(3), "pw", kOps, kMem);
  ASSERT_TRUE(file.ok());
  const std::string wrapped_file = *file;
  const std::string raw = EncodeRawKeyFile(FixedKey(3));
  for (const std::string* f : {&wrapped_file, &raw}) {
    for (size_t i = 0; i < f->size(); ++i) {
      for (int bit : {0, 7}) {
        std::string bad = *f;
        bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
        auto r = OpenKeyFile(bad, "pw");
        ASSERT_FALSE(r.ok()) << "byte " << i << " bit " << bit;
        EXPECT_TRUE(r.status().Is(Code::kCorruption) || r.status().Is(Code::kPermissionDenied));
        // With the checksum, damage is always reported as damage.
        EXPECT_EQ(r.status().message().rfind("key file is damaged: ", 0), 0u)
            << r.status().message();
      }
    }
    for (size_t len = 0; len < f->size(); ++len) {
      auto r = OpenKeyFile(f->substr(0, len), "pw");
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Code::kCorruption);
    }
    EXPECT_FALSE(OpenKeyFile(*f + "x", "pw").ok());
  }
  auto r = OpenKeyFile("this is not a key file at all, just some text\n", "pw");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "key file is damaged: not a meshfs key file");
}

TEST(Keys, RawKeyFile) {
  const MasterKey key = FixedKey(5);
  const std::string f = EncodeRawKeyFile(key);
  auto wrapped = KeyFileIsWrapped(f);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_FALSE(*wrapped);
  auto opened = OpenKeyFile(f, "ignored");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->bytes, key.bytes);
}

TEST(Keys, DefaultCostIsInteractive) {
  auto file = WrapMasterKey(FixedKey(3), "pw");
  ASSERT_TRUE(file.ok());
  auto info = InspectKeyFile(*file);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);
  EXPECT_EQ(info->memlimit, crypto_pwhash_MEMLIMIT_INTERACTIVE);
  EXPECT_TRUE(OpenKeyFile(*file, "pw").ok());
  EXPECT_FALSE(WrapMasterKey(FixedKey(3), "pw", 1000, kMem).ok());
}

}  // namespace
}  // namespace meshfs::fs

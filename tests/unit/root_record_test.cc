#include "meshfs/core/root_record.h"

#include <gtest/gtest.h>
#include <sodium.h>

namespace meshfs {
namespace {

struct Key {
  std::string pk, sk;
  Key() {
    pk.resize(crypto_sign_PUBLICKEYBYTES);
    sk.resize(crypto_sign_SECRETKEYBYTES);
    crypto_sign_keypair(reinterpret_cast<unsigned char*>(pk.data()),
                        reinterpret_cast<unsigned char*>(sk.data()));
  }
  RootRecord Record(uint64_t seq) const {
    RootRecord r;
    std::memcpy(r.volume_id.data(), pk.data(), pk.size());
    r.sequence = seq;
    r.root = SliceId::ForBlob("root " + std::to_string(seq));
    r.time_micros = 1'700'000'000'000'000 + static_cast<int64_t>(seq);
    return r;
  }
};

TEST(RootRecord, SignParseVerifyRoundTrip) {
  Key k;
  auto enc = k.Record(42).Sign(k.sk);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  EXPECT_EQ(enc->size(), RootRecord::kEncodedSize);
  EXPECT_EQ(enc->substr(0, 4), "MFSR");
  auto r = RootRecord::ParseVerified(*enc, k.Record(1).VolumeHex());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sequence, 42u);
  EXPECT_EQ(r->root, SliceId::ForBlob("root 42"));
  EXPECT_EQ(r->time_micros, 1'700'000'000'000'042);
}

TEST(RootRecord, EveryFlippedByteIsRejected) {
  Key k;
  const std::string enc = *k.Record(7).Sign(k.sk);
  for (size_t i = 0; i < enc.size(); ++i) {
    std::string bad = enc;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    auto r = RootRecord::ParseVerified(bad, k.Record(7).VolumeHex());
    EXPECT_FALSE(r.ok()) << "flip at byte " << i << " accepted";
  }
}

TEST(RootRecord, WrongVolumeAndWrongKey) {
  Key a, b;
  const std::string enc = *a.Record(1).Sign(a.sk);
  auto r = RootRecord::ParseVerified(enc, b.Record(1).VolumeHex());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(Code::kPermissionDenied));
  // Signing a's record with b's key is refused.
  EXPECT_FALSE(a.Record(1).Sign(b.sk).ok());
  EXPECT_FALSE(a.Record(1).Sign("short").ok());
}

TEST(RootRecord, MalformedInputs) {
  Key k;
  const std::string enc = *k.Record(1).Sign(k.sk);
  EXPECT_TRUE(RootRecord::Parse("").status().Is(Code::kInvalidArgument));
  EXPECT_TRUE(RootRecord::Parse(enc.substr(0, 100)).status().Is(Code::kInvalidArgument));
  EXPECT_TRUE(RootRecord::Parse(enc + "x").status().Is(Code::kInvalidArgument));
  std::string v2 = enc;
  v2[4] = 2;
  auto r = RootRecord::Parse(v2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("version"), std::string::npos);
  std::string magic = enc;
  magic[0] = 'X';
  EXPECT_NE(RootRecord::Parse(magic).status().message().find("magic"), std::string::npos);
}

}  // namespace
}  // namespace meshfs

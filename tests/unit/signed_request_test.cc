#include "meshfs/core/signed_request.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include "meshfs/core/hex.h"

namespace meshfs {
namespace {

std::string NewKey() {
  std::string pk(crypto_sign_PUBLICKEYBYTES, '\0'), sk(crypto_sign_SECRETKEYBYTES, '\0');
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(pk.data()),
                      reinterpret_cast<unsigned char*>(sk.data()));
  return sk;
}

std::map<std::string, std::string> Lowered(const std::map<std::string, std::string>& h) {
  std::map<std::string, std::string> out;
  for (const auto& [key, v] : h) {
    std::string k = key;
    for (char& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out[k] = v;
  }
  return out;
}

const std::string kAddr(64, 'a');

TEST(SignedRequest, RoundTripThroughHeaders) {
  const std::string sk = NewKey();
  auto req = SignedRequest::Sign("DELETE", kAddr, sk, 1000);
  ASSERT_TRUE(req.ok()) << req.status().ToString();
  EXPECT_EQ(req->owner, HexEncode(sk.substr(32)));
  auto parsed = SignedRequest::FromHeaders("DELETE", kAddr, Lowered(req->Headers()));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->Verify(1000).ok());
  EXPECT_TRUE(parsed->Verify(1000 + SignedRequest::kMaxSkewSeconds).ok());
}

TEST(SignedRequest, NoncesDiffer) {
  const std::string sk = NewKey();
  EXPECT_NE(SignedRequest::Sign("DELETE", kAddr, sk, 1)->nonce,
            SignedRequest::Sign("DELETE", kAddr, sk, 1)->nonce);
}

TEST(SignedRequest, StaleOrFutureTimestampRejected) {
  const std::string sk = NewKey();
  auto req = *SignedRequest::Sign("DELETE", kAddr, sk, 1000);
  auto st = req.Verify(1000 + SignedRequest::kMaxSkewSeconds + 1);
  EXPECT_TRUE(st.Is(Code::kPermissionDenied));
  EXPECT_NE(st.message().find("stale"), std::string::npos);
  EXPECT_TRUE(req.Verify(1000 - SignedRequest::kMaxSkewSeconds - 1).Is(Code::kPermissionDenied));
}

TEST(SignedRequest, SignatureBindsEveryField) {
  const std::string sk = NewKey();
  const auto req = *SignedRequest::Sign("DELETE", kAddr, sk, 1000);
  auto other_target = req;
  other_target.target = std::string(64, 'b');
  EXPECT_TRUE(other_target.Verify(1000).Is(Code::kPermissionDenied));
  auto other_method = req;
  other_method.method = "PUT";
  EXPECT_TRUE(other_method.Verify(1000).Is(Code::kPermissionDenied));
  auto other_nonce = req;
  other_nonce.nonce = std::string(32, '0');
  EXPECT_TRUE(other_nonce.Verify(1000).Is(Code::kPermissionDenied));
  auto other_owner = req;
  other_owner.owner = HexEncode(NewKey().substr(32));
  EXPECT_TRUE(other_owner.Verify(1000).Is(Code::kPermissionDenied));
  auto other_time = req;
  other_time.timestamp = 1001;
  EXPECT_TRUE(other_time.Verify(1000).Is(Code::kPermissionDenied));
}

TEST(SignedRequest, MalformedHeaders) {
  const std::string sk = NewKey();
  const auto good = Lowered(SignedRequest::Sign("DELETE", kAddr, sk, 5)->Headers());
  EXPECT_TRUE(SignedRequest::FromHeaders("DELETE", kAddr, {}).status().Is(Code::kInvalidArgument));
  for (const char* name :
       {"x-meshfs-owner", "x-meshfs-timestamp", "x-meshfs-nonce", "x-meshfs-signature"}) {
    auto missing = good;
    missing.erase(name);
    EXPECT_FALSE(SignedRequest::FromHeaders("DELETE", kAddr, missing).ok()) << name;
    for (const char* value : {"", "zz", "-5", "12x", "AAAA"}) {
      auto bad = good;
      bad[name] = value;
      EXPECT_FALSE(SignedRequest::FromHeaders("DELETE", kAddr, bad).ok()) << name << "=" << value;
    }
  }
  EXPECT_FALSE(SignedRequest::Sign("DELETE", "../etc", sk, 1).ok());
  EXPECT_FALSE(SignedRequest::Sign("DELETE", kAddr, "short", 1).ok());
}

}  // namespace
}  // namespace meshfs

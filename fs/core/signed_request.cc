// Signed peer requests (see signed_request.h).
#include "meshfs/core/signed_request.h"

#include <sodium.h>

#include <charconv>
#include <cstring>

#include "meshfs/core/hex.h"

namespace meshfs {
namespace {

constexpr size_t kNonceBytes = 16;

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

const std::string* Find(const std::map<std::string, std::string>& headers, std::string_view name) {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? nullptr : &it->second;
}

}  // namespace

std::string SignedRequest::Message() const {
  return "meshfs-request-v1\n" + method + "\n" + target + "\n" + owner + "\n" +
         std::to_string(timestamp) + "\n" + nonce;
}

Result<SignedRequest> SignedRequest::Sign(std::string_view method, std::string_view target,
                                          std::string_view secret_key, int64_t now_seconds) {
  if (secret_key.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument("signed request: signing key must be 64 bytes");
  }
  if (!IsLowerHex(target, 64)) {
    return Status::InvalidArgument("signed request: target must be a slice address");
  }
  SignedRequest r;
  r.method = std::string(method);
  r.target = std::string(target);
  r.owner = HexEncode(secret_key.substr(32, 32));
  r.timestamp = now_seconds;
  unsigned char nonce[kNonceBytes];
  randombytes_buf(nonce, sizeof(nonce));
  r.nonce = HexEncode(std::string_view(reinterpret_cast<const char*>(nonce), sizeof(nonce)));
  const std::string msg = r.Message();
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  r.signature = HexEncode(std::string_view(reinterpret_cast<const char*>(sig), sizeof(sig)));
  return r;
}

std::map<std::string, std::string> SignedRequest::Headers() const {
  return {{std::string(kOwnerHeader), owner},
          {std::string(kTimestampHeader), std::to_string(timestamp)},
          {std::string(kNonceHeader), nonce},
          {std::string(kSignatureHeader), signature}};
}

Result<SignedRequest> SignedRequest::FromHeaders(
    std::string_view method, std::string_view target,
    const std::map<std::string, std::string>& headers) {
  const std::string* owner = Find(headers, kOwnerHeader);
  const std::string* ts = Find(headers, kTimestampHeader);
  const std::string* nonce = Find(headers, kNonceHeader);
  const std::string* sig = Find(headers, kSignatureHeader);
  if (owner == nullptr || ts == nullptr || nonce == nullptr || sig == nullptr) {
    return Status::InvalidArgument(
        "signed request: needs X-Meshfs-Owner, X-Meshfs-Timestamp, X-Meshfs-Nonce and "
        "X-Meshfs-Signature headers");
  }
  if (!IsLowerHex(*owner, 64)) {
    return Status::InvalidArgument("signed request: X-Meshfs-Owner must be 64 lowercase hex");
  }
  if (!IsLowerHex(*nonce, 2 * kNonceBytes)) {
    return Status::InvalidArgument("signed request: X-Meshfs-Nonce must be 32 lowercase hex");
  }
  if (!IsLowerHex(*sig, 2 * crypto_sign_BYTES)) {
    return Status::InvalidArgument("signed request: X-Meshfs-Signature must be 128 lowercase hex");
  }
  int64_t t = 0;
  const auto [end, ec] = std::from_chars(ts->data(), ts->data() + ts->size(), t);
  if (ts->empty() || ts->size() > 19 || ec != std::errc() || end != ts->data() + ts->size() ||
      t < 0) {
    return Status::InvalidArgument("signed request: X-Meshfs-Timestamp must be unix seconds");
  }
  SignedRequest r;
  r.method = std::string(method);
  r.target = std::string(target);
  r.owner = *owner;
  r.timestamp = t;
  r.nonce = *nonce;
  r.signature = *sig;
  return r;
}

Status SignedRequest::Verify(int64_t now_seconds) const {
  const int64_t skew = now_seconds > timestamp ? now_seconds - timestamp : timestamp - now_seconds;
  if (skew > kMaxSkewSeconds) {
    return Status::PermissionDenied("signed request: stale timestamp (" + std::to_string(skew) +
                                    " s from the peer's clock; max " +
                                    std::to_string(kMaxSkewSeconds) + ")");
  }
  auto pk = HexDecode(owner);
  auto sig = HexDecode(signature);
  if (!pk.ok() || pk->size() != crypto_sign_PUBLICKEYBYTES || !sig.ok() ||
      sig->size() != crypto_sign_BYTES) {
    return Status::InvalidArgument("signed request: malformed owner or signature");
  }
  const std::string msg = Message();
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig->data()),
                                  reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                  reinterpret_cast<const unsigned char*>(pk->data())) != 0) {
    return Status::PermissionDenied("signed request: bad signature for volume " + owner);
  }
  return Status::OK();
}

}  // namespace meshfs

// Fuzz target: the headers of a signed DELETE /v1/slices/{addr}. The input
// is split at newlines into owner, timestamp, nonce and signature values;
// FromHeaders must reject malformed values, and Verify must never accept a
// forged signature.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/init.h"
#include "meshfs/core/signed_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshfs::InitCrypto();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t start = 0;
  while (parts.size() < 5) {
    const size_t nl = text.find('\n', start);
    parts.emplace_back(text.substr(start, nl == std::string_view::npos ? text.npos : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  parts.resize(5);
  std::map<std::string, std::string> headers;
  const char* names[] = {"x-meshfs-owner", "x-meshfs-timestamp", "x-meshfs-nonce",
                         "x-meshfs-signature"};
  for (int i = 0; i < 4; ++i) {
    if (!parts[static_cast<size_t>(i)].empty()) headers[names[i]] = parts[static_cast<size_t>(i)];
  }
  const std::string target = parts[4].empty() ? std::string(64, 'a') : parts[4];
  auto req = meshfs::SignedRequest::FromHeaders("DELETE", target, headers);
  if (!req.ok()) return 0;
  if (req->owner.size() != 64 || req->nonce.size() != 32 || req->signature.size() != 128 ||
      req->timestamp < 0) {
    std::abort();
  }
  // Freshness is checked against the request's own time, so only the
  // signature decides; a fuzzer cannot forge Ed25519.
  (void)req->Verify(req->timestamp);
  return 0;
}

// Fuzz target: slice addresses as they arrive in URLs (/v1/slices/{addr})
// and in POST /v1/slices/has lists. Whatever FromHex accepts must be exactly
// 64 lowercase hex digits and round-trip; nothing else may be accepted.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "meshfs/core/slice_id.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto id = meshfs::SliceId::FromHex(text);
  if (!id.ok()) return 0;
  if (text.size() != meshfs::SliceId::kHexSize) std::abort();
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) std::abort();
  }
  if (id->ToHex() != text) std::abort();
  return 0;
}

#include "meshfs/core/slice_id.h"

#include <sodium.h>

#include "meshfs/core/hex.h"

namespace meshfs {

SliceId SliceId::ForBlob(std::string_view blob) {
  std::array<uint8_t, kSize> out;
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(blob.data()),
                     blob.size(), nullptr, 0);
  return SliceId(out);
}

Result<SliceId> SliceId::FromHex(std::string_view hex) {
  if (hex.size() != kHexSize) {
    return Status::InvalidArgument("slice address must be 64 lowercase hex digits");
  }
  auto raw = HexDecode(hex);
  if (!raw.ok()) return Status::InvalidArgument("slice address must be 64 lowercase hex digits");
  return FromBytes(*raw);
}

Result<SliceId> SliceId::FromBytes(std::string_view raw) {
  if (raw.size() != kSize) return Status::InvalidArgument("slice address must be 32 bytes");
  std::array<uint8_t, kSize> b;
  std::memcpy(b.data(), raw.data(), kSize);
  return SliceId(b);
}

std::string SliceId::ToHex() const { return HexEncode(Raw()); }

bool SliceId::Matches(std::string_view blob) const {
  const SliceId actual = ForBlob(blob);
  return sodium_memcmp(actual.bytes_.data(), bytes_.data(), kSize) == 0;
}

}  // namespace meshfs

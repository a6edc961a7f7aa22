// SliceId: the address of a stored blob, BLAKE2b-256 of its bytes.
//
// Anyone can verify a blob against its address without a key. The text form
// is exactly 64 lowercase hex digits; FromHex accepts nothing else, so an
// address taken from a URL or a file name is safe to use as a path component.
//
// Thread-safety: a value type.
#pragma once

#include <array>
#include <compare>
#include <cstring>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"

namespace meshfs {

class SliceId {
 public:
  static constexpr size_t kSize = 32;
  static constexpr size_t kHexSize = 64;

  SliceId() { bytes_.fill(0); }
  explicit SliceId(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // The address of `blob`: BLAKE2b-256, unkeyed.
  static SliceId ForBlob(std::string_view blob);
  // Parses 64 lowercase hex digits; anything else is InvalidArgument.
  static Result<SliceId> FromHex(std::string_view hex);
  // Builds from 32 raw bytes; InvalidArgument on another length.
  static Result<SliceId> FromBytes(std::string_view raw);

  std::string ToHex() const;
  std::string_view Raw() const {
    return std::string_view(reinterpret_cast<const char*>(bytes_.data()), kSize);
  }
  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }

  // True iff ForBlob(blob) == *this, compared in constant time.
  bool Matches(std::string_view blob) const;

  auto operator<=>(const SliceId&) const = default;
  bool operator==(const SliceId&) const = default;

 private:
  std::array<uint8_t, kSize> bytes_;
};

}  // namespace meshfs

template <>
struct std::hash<meshfs::SliceId> {
  size_t operator()(const meshfs::SliceId& id) const noexcept {
    size_t h;
    static_assert(sizeof(h) <= meshfs::SliceId::kSize);
    std::memcpy(&h, id.bytes().data(), sizeof(h));
    return h;
  }
};

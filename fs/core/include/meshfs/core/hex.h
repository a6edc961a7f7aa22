// Lowercase hex encoding of bytes. Thread-safe (pure functions).
#pragma once

#include <string>
#include <string_view>

#include "meshfs/core/status.h"

namespace meshfs {

std::string HexEncode(std::string_view bytes);
// Accepts lowercase hex of even length only.
Result<std::string> HexDecode(std::string_view hex);

}  // namespace meshfs

// Fuzz target: the X-Meshfs-Forward header (and --join lists): a
// comma-separated list of HOST:PORT / [V6]:PORT. Accepted entries must
// print and re-parse to the same address, with a port in 1..65535.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "meshfs/net/peer_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto list = meshfs::net::PeerAddress::ParseList(text);
  if (!list.ok()) return 0;
  for (const auto& a : *list) {
    if (a.port == 0 || a.host.empty()) std::abort();
    for (char c : a.host) {
      if (c == ',' || c == '/' || c == '\r' || c == '\n' || c == ' ' || c == '\0') std::abort();
    }
    auto again = meshfs::net::PeerAddress::Parse(a.ToString());
    if (!again.ok() || !(*again == a)) std::abort();
  }
  return 0;
}

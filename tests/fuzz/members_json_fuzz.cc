// Fuzz target: GET /v1/members bodies (what a mount reads from any peer) and
// the coordinate JSON inside them. A table that parses must round-trip; a
// coordinate that parses must be usable by Vivaldi without producing a
// non-finite coordinate.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "meshfs/net/members.h"
#include "meshfs/net/vivaldi.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto members = meshfs::net::ParseMembers(body);
  if (members.ok()) {
    auto again = meshfs::net::ParseMembers(meshfs::net::EncodeMembers(*members));
    if (!again.ok() || again->size() != members->size()) std::abort();
    meshfs::net::Vivaldi vivaldi;
    double rtt = 1;
    for (const auto& m : *members) {
      if (!m.coord.IsSane()) std::abort();
      rtt = std::fmod(rtt * 7.3 + static_cast<double>(m.heartbeat % 1000), 500) + 0.01;
      (void)vivaldi.Update(m.coord, rtt, m.id);
      if (!vivaldi.coordinate().IsSane()) std::abort();
    }
  }
  // The same bytes as a lone coordinate object (the /v1/ping "coord").
  if (size <= meshfs::net::kMaxBodyBytes) {
    auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) {
      auto c = meshfs::net::Coordinate::FromJson(j);
      if (c.ok()) {
        meshfs::net::Vivaldi vivaldi;
        double rtt = 0;
        if (size >= sizeof(double)) std::memcpy(&rtt, data, sizeof(double));
        const bool accepted = vivaldi.Update(*c, rtt).ok();
        if (accepted && !(std::isfinite(rtt) && rtt > 0)) std::abort();
        if (!vivaldi.coordinate().IsSane()) std::abort();
      }
    }
  }
  return 0;
}

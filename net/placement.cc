#include "meshfs/net/placement.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace meshfs::net {

std::string HostOf(std::string_view addr) {
  if (!addr.empty() && addr.front() == '[') {
    const size_t close = addr.find(']');
    if (close != std::string_view::npos) return std::string(addr.substr(1, close - 1));
  }
  const size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos) return std::string(addr);
  return std::string(addr.substr(0, colon));
}

double RendezvousScore(const SliceId& id, std::string_view node_id, double weight) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 8);
  crypto_generichash_update(&st, id.bytes().data(), SliceId::kSize);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(node_id.data()),
                            node_id.size());
  unsigned char h[8];
  crypto_generichash_final(&st, h, sizeof(h));
  uint64_t x = 0;
  for (unsigned char b : h) x = x << 8 | b;
  // 53 significant bits, centred in their interval: u is never 0 or 1.
  const double u = (static_cast<double>(x >> 11) + 0.5) / 9007199254740992.0;
  return -weight / std::log(u);
}

std::vector<size_t> PlacementOrder(const SliceId& id,
                                   const std::vector<PlacementCandidate>& candidates) {
  // Unknown capacities count as the mean of the known ones (or 1).
  double known_sum = 0;
  size_t known = 0;
  for (const auto& c : candidates) {
    if (c.capacity_bytes > 0) {
      known_sum += static_cast<double>(c.capacity_bytes);
      known++;
    }
  }
  const double fallback = known ? known_sum / static_cast<double>(known) : 1.0;
  std::vector<std::pair<double, size_t>> scored;
  scored.reserve(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    const double w = c.capacity_bytes > 0 ? static_cast<double>(c.capacity_bytes) : fallback;
    scored.emplace_back(RendezvousScore(id, c.id, w), i);
  }
  std::sort(scored.begin(), scored.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first > b.first;
    return candidates[a.second].id < candidates[b.second].id;  // total order on ties
  });
  std::vector<size_t> first, rest;
  std::set<std::string> hosts;
  for (auto& [score, i] : scored) {
    if (hosts.insert(HostOf(candidates[i].addr)).second) {
      first.push_back(i);
    } else {
      rest.push_back(i);
    }
  }
  first.insert(first.end(), rest.begin(), rest.end());
  return first;
}

}  // namespace meshfs::net

// Placement: where the R copies of a slice go. Capacity-weighted rendezvous
// hashing (highest random weight) of (slice address, node id): every client
// that sees the same members computes the same order, a joining or leaving
// node moves only the slices it wins or held, and a node with twice the
// capacity wins about twice as often.
//
//   u     = (BLAKE2b-64(address || node id) + 0.5) / 2^64, in (0, 1)
//   score = -weight / ln(u)           (weight = capacity; unknown -> mean)
//
// The order then spreads copies over distinct hosts (host = address without
// the port): walking the rendezvous order, nodes on a host not yet used come
// first, the rest follow in rendezvous order. On a one-machine cluster every
// host is the same, so this falls back to distinct node ids.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/slice_id.h"

namespace meshfs::net {

struct PlacementCandidate {
  std::string id;               // node id (stable across restarts)
  std::string addr;             // "HOST:PORT"
  uint64_t capacity_bytes = 0;  // 0 = unknown
};

// The host part of "HOST:PORT" / "[V6]:PORT".
std::string HostOf(std::string_view addr);

// The rendezvous score of one node for one slice (higher wins).
double RendezvousScore(const SliceId& id, std::string_view node_id, double weight);

// Indexes into `candidates`, best first, host-spread as described above.
// Deterministic; every candidate appears exactly once. Duplicated node ids
// are kept (the caller deduplicates members).
std::vector<size_t> PlacementOrder(const SliceId& id,
                                   const std::vector<PlacementCandidate>& candidates);

}  // namespace meshfs::net

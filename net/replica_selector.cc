#include "meshfs/net/replica_selector.h"

#include <algorithm>
#include <cmath>

namespace meshfs::net {

ReplicaSelector::ReplicaSelector(Options options, Clock* clock)
    : options_(options), clock_(clock) {}

double ReplicaSelector::ReputationLocked(const Peer& p, int64_t now) const {
  const double dt_s = std::max<double>(0, static_cast<double>(now - p.reputation_at) / 1e6);
  const double deficit =
      (1 - p.reputation) * std::exp2(-dt_s / std::max(1e-3, options_.recovery_half_life_s));
  return std::clamp(1 - deficit, options_.min_reputation, 1.0);
}

void ReplicaSelector::PenaliseLocked(Peer& p, double factor) {
  const int64_t now = clock_->MonotonicMicros();
  p.reputation = std::max(options_.min_reputation, ReputationLocked(p, now) * factor);
  p.reputation_at = now;
}

void ReplicaSelector::RecordRtt(const std::string& peer, double rtt_ms, bool ok) {
  if (!ok) {
    RecordFailure(peer);
    return;
  }
  if (!std::isfinite(rtt_ms) || rtt_ms <= 0 || rtt_ms > kMaxRttMs) return;
  Coordinate remote;
  bool has_coord = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    Peer& p = peers_[peer];
    p.rtt_ms = p.rtt_ms < 0 ? rtt_ms
                            : options_.rtt_alpha * rtt_ms + (1 - options_.rtt_alpha) * p.rtt_ms;
    has_coord = p.has_coord;
    remote = p.coord;
  }
  if (has_coord) (void)self_.Update(remote, rtt_ms, peer);
}

void ReplicaSelector::RecordTransfer(const std::string& peer, uint64_t bytes, double ms) {
  std::lock_guard<std::mutex> l(mu_);
  Peer& p = peers_[peer];
  p.successes++;
  if (ms > 0 && bytes >= 64 * 1024) {  // small transfers measure latency, not bandwidth
    const double bps = static_cast<double>(bytes) * 1000.0 / ms;
    p.throughput_bps = p.throughput_bps <= 0 ? bps : 0.3 * bps + 0.7 * p.throughput_bps;
  }
}

void ReplicaSelector::RecordFailure(const std::string& peer) {
  std::lock_guard<std::mutex> l(mu_);
  Peer& p = peers_[peer];
  p.failures++;
  PenaliseLocked(p, options_.failure_penalty);
}

void ReplicaSelector::RecordCorrupt(const std::string& peer) {
  std::lock_guard<std::mutex> l(mu_);
  Peer& p = peers_[peer];
  p.corrupt++;
  PenaliseLocked(p, options_.corrupt_penalty);
}

void ReplicaSelector::SetPeerCoordinate(const std::string& peer, const Coordinate& coord) {
  if (!coord.IsSane()) return;
  std::lock_guard<std::mutex> l(mu_);
  Peer& p = peers_[peer];
  p.coord = coord;
  p.has_coord = true;
}

PeerScore ReplicaSelector::ScoreLocked(const std::string& name) const {
  PeerScore s;
  auto it = peers_.find(name);
  if (it != peers_.end()) {
    const Peer& p = it->second;
    s.rtt_ms = p.rtt_ms;
    if (p.has_coord) s.predicted_rtt_ms = Vivaldi::PredictRtt(self_.coordinate(), p.coord);
    s.throughput_bps = p.throughput_bps;
    s.reputation = ReputationLocked(p, clock_->MonotonicMicros());
    s.successes = p.successes;
    s.failures = p.failures;
    s.corrupt = p.corrupt;
  }
  s.expected_rtt_ms = s.rtt_ms >= 0             ? s.rtt_ms
                      : s.predicted_rtt_ms >= 0 ? s.predicted_rtt_ms
                                                : options_.default_rtt_ms;
  const double transfer_ms =
      s.throughput_bps > 0 ? options_.typical_blob_bytes * 1000.0 / s.throughput_bps : 0;
  s.cost = (s.expected_rtt_ms + transfer_ms) / s.reputation;
  return s;
}

PeerScore ReplicaSelector::Score(const std::string& peer) const {
  std::lock_guard<std::mutex> l(mu_);
  return ScoreLocked(peer);
}

double ReplicaSelector::ExpectedRttMs(const std::string& peer) const {
  return Score(peer).expected_rtt_ms;
}

std::vector<std::string> ReplicaSelector::Order(const std::vector<std::string>& peers) const {
  std::vector<std::pair<double, size_t>> costs;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < peers.size(); ++i) costs.emplace_back(ScoreLocked(peers[i]).cost, i);
  }
  std::stable_sort(costs.begin(), costs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  out.reserve(peers.size());
  for (auto& [c, i] : costs) out.push_back(peers[i]);
  return out;
}

}  // namespace meshfs::net

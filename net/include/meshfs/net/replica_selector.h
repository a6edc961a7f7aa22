// ReplicaSelector: which holder of a slice to read from first.
//
// Each peer (keyed by "HOST:PORT") has an expected cost
//   cost = (expected RTT + time to move a 1 MiB slice at its throughput) / reputation
// where the expected RTT is the EWMA of measured RTTs when there are any,
// else the RTT predicted by Vivaldi coordinates (the client keeps its own
// coordinate, fed with the RTTs it measures against peers whose coordinates
// it learnt from /v1/members), else a default. Reputation is in (0, 1]: a
// failure multiplies it by failure_penalty, a blob that fails verification by
// corrupt_penalty, and it recovers towards 1 with a half-life, so a peer that
// had a bad minute is tried again later.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "meshfs/core/clock.h"
#include "meshfs/net/vivaldi.h"

namespace meshfs::net {

struct PeerScore {
  double rtt_ms = -1;            // EWMA of measured RTTs; -1 = never measured
  double predicted_rtt_ms = -1;  // from coordinates; -1 = unknown
  double expected_rtt_ms = 0;    // what ordering uses
  double throughput_bps = 0;     // EWMA of bytes/second of transfers; 0 = unknown
  double reputation = 1;         // (0, 1], recovered to now
  uint64_t successes = 0, failures = 0, corrupt = 0;
  double cost = 0;               // lower is better
};

class ReplicaSelector final {
 public:
  struct Options {
    double rtt_alpha = 0.3;            // EWMA weight of a new RTT sample
    double default_rtt_ms = 100;       // nothing known about a peer
    double failure_penalty = 0.5;      // reputation *= this on a failure
    double corrupt_penalty = 0.05;     // reputation *= this on a bad blob
    double min_reputation = 0.001;
    double recovery_half_life_s = 60;  // (1 - reputation) halves every this long
    double typical_blob_bytes = 1 << 20;
  };
  explicit ReplicaSelector(Options options, Clock* clock = Clock::Real());
  ReplicaSelector() : ReplicaSelector(Options{}) {}
  ReplicaSelector(const ReplicaSelector&) = delete;
  ReplicaSelector& operator=(const ReplicaSelector&) = delete;

  // A completed request: its RTT feeds the EWMA and, if the peer's coordinate
  // is known, the client's own Vivaldi coordinate. `ok` false = a failure.
  void RecordRtt(const std::string& peer, double rtt_ms, bool ok);
  // A slice of `bytes` fetched in `ms` (throughput) — a success.
  void RecordTransfer(const std::string& peer, uint64_t bytes, double ms);
  // The peer failed (refused, timed out, 5xx).
  void RecordFailure(const std::string& peer);
  // The peer served bytes that do not hash to the address.
  void RecordCorrupt(const std::string& peer);
  // The peer's coordinate (from /v1/members or /v1/ping).
  void SetPeerCoordinate(const std::string& peer, const Coordinate& coord);

  // `peers` reordered cheapest first (stable for equal costs).
  std::vector<std::string> Order(const std::vector<std::string>& peers) const;
  // What is known about `peer` now.
  PeerScore Score(const std::string& peer) const;
  // Measured RTT if known, else predicted, else the default.
  double ExpectedRttMs(const std::string& peer) const;
  // The client's own coordinate.
  Coordinate SelfCoordinate() const { return self_.coordinate(); }

 private:
  struct Peer {
    double rtt_ms = -1;
    double throughput_bps = 0;
    double reputation = 1;          // as of reputation_at
    int64_t reputation_at = 0;      // monotonic micros
    bool has_coord = false;
    Coordinate coord;
    uint64_t successes = 0, failures = 0, corrupt = 0;
  };
  double ReputationLocked(const Peer& p, int64_t now) const;
  void PenaliseLocked(Peer& p, double factor);
  PeerScore ScoreLocked(const std::string& name) const;

  const Options options_;
  Clock* const clock_;
  Vivaldi self_;
  mutable std::mutex mu_;
  std::map<std::string, Peer> peers_;  // guarded by mu_
};

}  // namespace meshfs::net

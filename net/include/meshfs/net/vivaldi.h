// Vivaldi network coordinates with a height vector (Dabek, Cox, Kaashoek,
// Morris: "Vivaldi: A Decentralized Network Coordinate System", SIGCOMM 2004).
//
// A coordinate is a point in 2-D Euclidean space plus a height (milliseconds)
// that models the access link: the predicted round-trip time between two
// nodes is ||xi - xj|| + hi + hj. Each node moves its own coordinate after
// every RTT sample it measures against a remote node whose coordinate it
// knows, with the adaptive timestep of the paper (c_c = 0.25, c_e = 0.25) and
// a per-node error estimate. Samples and remote coordinates are checked:
// NaN, infinite, negative, huge RTTs and absurd remote coordinates are
// rejected with InvalidArgument and leave the coordinate untouched.
//
// Used by the storage peer (fed by gossip exchanges and pings) and by the
// mount (which keeps its own coordinate and predicts RTTs to peers).
//
// Thread-safety: Coordinate is a value. Vivaldi is thread-safe (an internal
// mutex); PredictRtt is a pure function.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"

namespace meshfs::net {

struct Coordinate {
  static constexpr int kDims = 2;
  std::array<double, kDims> vec{};  // milliseconds
  double height = 0;                // milliseconds, >= 0
  double error = 1.5;               // relative error estimate, (0, kMaxError]

  // {"vec":[x,y],"height":h,"error":e}
  nlohmann::json ToJson() const;
  // Strict: an object with exactly-typed finite numbers within the bounds
  // below; anything else is InvalidArgument.
  static Result<Coordinate> FromJson(const nlohmann::json& j);
  // True when every component is finite and within the bounds below.
  bool IsSane() const;

  bool operator==(const Coordinate&) const = default;
};

// Bounds that reject absurd input (units: milliseconds).
inline constexpr double kMaxCoordinateMs = 1e5;  // |vec[i]| and height
inline constexpr double kMaxRttMs = 60'000;      // larger samples are rejected
inline constexpr double kMaxError = 1.5;         // error estimates are clamped to this
inline constexpr double kMinHeightMs = 0.01;     // heights never fall below this

class Vivaldi final {
 public:
  struct Options {
    double cc = 0.25;   // timestep constant for position
    double ce = 0.25;   // weight of a new sample in the error estimate
    uint64_t seed = 1;  // for the random direction when two coordinates coincide
  };
  Vivaldi() : Vivaldi(Options{}) {}
  explicit Vivaldi(Options options);
  Vivaldi(const Vivaldi&) = delete;
  Vivaldi& operator=(const Vivaldi&) = delete;

  // One sample: the measured round trip `rtt_ms` to a node whose coordinate
  // is `remote`. InvalidArgument (and no change) when rtt_ms is not finite,
  // <= 0 or > kMaxRttMs, or `remote` is not sane.
  Status Update(const Coordinate& remote, double rtt_ms);
  // The same, but the sample first passes a per-peer moving median of the
  // last kFilterSamples samples (the latency filter of Ledlie, Gardner,
  // Seltzer: "Network Coordinates in the Wild", NSDI 2007), so one-off
  // spikes (a queue, a retransmission) do not jolt the coordinate. `peer`
  // names the remote (id or address); at most kMaxFilterPeers are tracked.
  Status Update(const Coordinate& remote, double rtt_ms, std::string_view peer);
  static constexpr size_t kFilterSamples = 5;
  static constexpr size_t kMaxFilterPeers = 4096;

  // The current coordinate (a copy).
  Coordinate coordinate() const;
  // Replaces the coordinate (e.g. to restore a saved one); InvalidArgument
  // when not sane.
  Status Reset(const Coordinate& c);

  // ||a.vec - b.vec|| + a.height + b.height, in milliseconds.
  static double PredictRtt(const Coordinate& a, const Coordinate& b);

 private:
  Status UpdateLocked(const Coordinate& remote, double rtt_ms);  // REQUIRES: mu_ held

  const Options options_;
  mutable std::mutex mu_;
  Coordinate coord_;                                                // guarded by mu_
  uint64_t rng_state_;                                              // guarded by mu_
  std::map<std::string, std::deque<double>, std::less<>> filters_;  // guarded by mu_
};

}  // namespace meshfs::net

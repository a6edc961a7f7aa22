// Vivaldi with a height vector and the adaptive timestep (Dabek et al.,
// SIGCOMM 2004, sections 3 and 5.4).
//
// In the height model a coordinate is [x, h]; the difference of two is
// [xi - xj, hi + hj] and its norm is ||xi - xj|| + hi + hj, which is also the
// predicted RTT. One sample of rtt moves node i by
//   delta * (rtt - dist) * u,   u = [xi - xj, hi + hj] / dist,
// with delta = c_c * w and w = e_i / (e_i + e_j) (confident remotes pull
// harder), and updates e_i to the w-weighted moving average of the sample's
// relative error |dist - rtt| / rtt.
#include "meshfs/net/vivaldi.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace meshfs::net {
namespace {

constexpr double kMinError = 1e-3;
constexpr double kMaxRemoteError = 1e3;  // larger is absurd, not just uncertain
constexpr double kCoincide = 1e-6;       // below this two positions are "the same point"

bool Finite(double v) { return std::isfinite(v); }

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

nlohmann::json Coordinate::ToJson() const {
  nlohmann::json v = nlohmann::json::array();
  for (double x : vec) v.push_back(x);
  return nlohmann::json{{"vec", std::move(v)}, {"height", height}, {"error", error}};
}

bool Coordinate::IsSane() const {
  for (double x : vec) {
    if (!Finite(x) || std::fabs(x) > kMaxCoordinateMs) return false;
  }
  if (!Finite(height) || height < 0 || height > kMaxCoordinateMs) return false;
  if (!Finite(error) || error < 0 || error > kMaxRemoteError) return false;
  return true;
}

Result<Coordinate> Coordinate::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return Status::InvalidArgument("coordinate: not a JSON object");
  const auto vec = j.find("vec");
  const auto height = j.find("height");
  const auto error = j.find("error");
  if (vec == j.end() || height == j.end() || error == j.end()) {
    return Status::InvalidArgument("coordinate: needs vec, height and error");
  }
  if (!vec->is_array() || vec->size() != kDims) {
    return Status::InvalidArgument("coordinate: vec must be a list of " + std::to_string(kDims) +
                                   " numbers");
  }
  Coordinate c;
  for (int i = 0; i < kDims; ++i) {
    const auto& x = (*vec)[i];
    if (!x.is_number()) return Status::InvalidArgument("coordinate: vec must hold numbers");
    c.vec[i] = x.get<double>();
  }
  if (!height->is_number() || !error->is_number()) {
    return Status::InvalidArgument("coordinate: height and error must be numbers");
  }
  c.height = height->get<double>();
  c.error = error->get<double>();
  if (!c.IsSane()) {
    return Status::InvalidArgument("coordinate: component out of range or not finite");
  }
  return c;
}

Vivaldi::Vivaldi(Options options) : options_(options), rng_state_(options.seed) {
  coord_.height = kMinHeightMs;
  coord_.error = kMaxError;
}

double Vivaldi::PredictRtt(const Coordinate& a, const Coordinate& b) {
  double sum = 0;
  for (int i = 0; i < Coordinate::kDims; ++i) {
    const double d = a.vec[i] - b.vec[i];
    sum += d * d;
  }
  return std::sqrt(sum) + a.height + b.height;
}

Coordinate Vivaldi::coordinate() const {
  std::lock_guard<std::mutex> lock(mu_);
  return coord_;
}

Status Vivaldi::Reset(const Coordinate& c) {
  if (!c.IsSane()) return Status::InvalidArgument("vivaldi: coordinate out of range");
  std::lock_guard<std::mutex> lock(mu_);
  coord_ = c;
  coord_.height = std::max(coord_.height, kMinHeightMs);
  coord_.error = std::clamp(coord_.error, kMinError, kMaxError);
  return Status::OK();
}

Status Vivaldi::Update(const Coordinate& remote, double rtt_ms) {
  if (!Finite(rtt_ms) || rtt_ms <= 0 || rtt_ms > kMaxRttMs) {
    return Status::InvalidArgument("vivaldi: RTT sample out of range: " + std::to_string(rtt_ms));
  }
  if (!remote.IsSane()) return Status::InvalidArgument("vivaldi: remote coordinate out of range");
  std::lock_guard<std::mutex> lock(mu_);
  return UpdateLocked(remote, rtt_ms);
}

Status Vivaldi::Update(const Coordinate& remote, double rtt_ms, std::string_view peer) {
  if (!Finite(rtt_ms) || rtt_ms <= 0 || rtt_ms > kMaxRttMs) {
    return Status::InvalidArgument("vivaldi: RTT sample out of range: " + std::to_string(rtt_ms));
  }
  if (!remote.IsSane()) return Status::InvalidArgument("vivaldi: remote coordinate out of range");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = filters_.find(peer);
  if (it == filters_.end()) {
    if (filters_.size() >= kMaxFilterPeers) filters_.erase(filters_.begin());
    it = filters_.emplace(std::string(peer), std::deque<double>{}).first;
  }
  std::deque<double>& window = it->second;
  window.push_back(rtt_ms);
  if (window.size() > kFilterSamples) window.pop_front();
  std::vector<double> sorted(window.begin(), window.end());
  std::sort(sorted.begin(), sorted.end());
  return UpdateLocked(remote, sorted[sorted.size() / 2]);
}

Status Vivaldi::UpdateLocked(const Coordinate& remote, double rtt_ms) {
  Coordinate c = coord_;
  const double remote_height = std::max(remote.height, kMinHeightMs);
  const double remote_error = std::clamp(remote.error, kMinError, kMaxError);

  std::array<double, Coordinate::kDims> diff{};
  double mag = 0;
  for (int i = 0; i < Coordinate::kDims; ++i) {
    diff[i] = c.vec[i] - remote.vec[i];
    mag += diff[i] * diff[i];
  }
  mag = std::sqrt(mag);
  if (mag < kCoincide) {
    // Same point: push apart in a random direction (the paper's rule).
    double norm = 0;
    while (norm < 1e-9) {
      norm = 0;
      for (int i = 0; i < Coordinate::kDims; ++i) {
        diff[i] = static_cast<double>(SplitMix64(rng_state_) >> 11) * 0x1.0p-53 - 0.5;
        norm += diff[i] * diff[i];
      }
      norm = std::sqrt(norm);
    }
    for (double& d : diff) d /= norm;
    mag = 1;
  }
  const double dist = PredictRtt(c, remote) + (remote_height - remote.height);

  // Adaptive timestep: weight by relative confidence, then move.
  const double w = c.error / (c.error + remote_error);
  const double sample_error = std::fabs(dist - rtt_ms) / rtt_ms;
  c.error = sample_error * options_.ce * w + c.error * (1 - options_.ce * w);
  c.error = std::clamp(c.error, kMinError, kMaxError);
  const double delta = options_.cc * w;
  const double force = delta * (rtt_ms - dist);
  const double norm = mag + c.height + remote_height;  // ||[diff, hi + hj]||
  for (int i = 0; i < Coordinate::kDims; ++i) {
    c.vec[i] = std::clamp(c.vec[i] + force * diff[i] / norm, -kMaxCoordinateMs, kMaxCoordinateMs);
  }
  c.height = std::clamp(c.height + force * (c.height + remote_height) / norm, kMinHeightMs,
                        kMaxCoordinateMs);
  if (!c.IsSane()) return Status::InvalidArgument("vivaldi: update diverged; sample ignored");
  coord_ = c;
  return Status::OK();
}

}  // namespace meshfs::net

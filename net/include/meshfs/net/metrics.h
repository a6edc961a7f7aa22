// Metrics: the storage peer's counters, rendered as Prometheus text
// (GET /metrics). Names start with meshfs_ (docs/protocol.md lists them).
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace meshfs::net {

class Metrics final {
 public:
  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

  // Values read at render time.
  struct Gauges {
    uint64_t slices = 0;
    uint64_t used_bytes = 0;
    uint64_t capacity_bytes = 0;
    std::map<std::string, int> members;  // state -> count
  };

  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One served request: `type` is a short route name (e.g. "slice_put"),
  // `status` the HTTP status, bytes of request and response bodies, and the
  // time from its first byte to its response.
  void ObserveRequest(std::string_view type, int status, uint64_t bytes_in, uint64_t bytes_out,
                      double seconds);
  // One slice forwarded downstream (pipeline replication), ok or not.
  void ObserveForward(bool ok);

  std::string Render(const Gauges& gauges) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  uint64_t slice_puts_ = 0;
  uint64_t slice_gets_ = 0;
  uint64_t forwards_ok_ = 0;
  uint64_t forwards_failed_ = 0;
  std::array<uint64_t, kLatencyBuckets.size()> buckets_{};
  uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
};

}  // namespace meshfs::net

// Prometheus text rendering of the peer's metrics (see metrics.h).
#include "meshfs/net/metrics.h"

#include <cstdio>

namespace meshfs::net {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

void Metrics::ObserveRequest(std::string_view type, int status, uint64_t bytes_in,
                             uint64_t bytes_out, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_[{std::string(type), status}]++;
  bytes_in_ += bytes_in;
  bytes_out_ += bytes_out;
  const bool ok = status >= 200 && status < 300;
  if (ok && type == "slice_put") ++slice_puts_;
  if (ok && type == "slice_get") ++slice_gets_;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (seconds <= kLatencyBuckets[i]) ++buckets_[i];
  }
  ++latency_count_;
  latency_sum_ += seconds;
}

void Metrics::ObserveForward(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  ++(ok ? forwards_ok_ : forwards_failed_);
}

std::string Metrics::Render(const Gauges& g) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string o;
  o += "# HELP meshfs_requests_total Requests served, by type and HTTP status.\n";
  o += "# TYPE meshfs_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    o += "meshfs_requests_total{type=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
         "\"} " + std::to_string(n) + "\n";
  }
  o += "# HELP meshfs_received_bytes_total Request body bytes received.\n";
  o += "# TYPE meshfs_received_bytes_total counter\n";
  o += "meshfs_received_bytes_total " + std::to_string(bytes_in_) + "\n";
  o += "# HELP meshfs_sent_bytes_total Response body bytes sent.\n";
  o += "# TYPE meshfs_sent_bytes_total counter\n";
  o += "meshfs_sent_bytes_total " + std::to_string(bytes_out_) + "\n";
  o += "# HELP meshfs_slice_puts_total Slices accepted by PUT (new or already stored).\n";
  o += "# TYPE meshfs_slice_puts_total counter\n";
  o += "meshfs_slice_puts_total " + std::to_string(slice_puts_) + "\n";
  o += "# HELP meshfs_slice_gets_total Slices served by GET.\n";
  o += "# TYPE meshfs_slice_gets_total counter\n";
  o += "meshfs_slice_gets_total " + std::to_string(slice_gets_) + "\n";
  o += "# HELP meshfs_forwards_total Slices passed on to the next peer (pipeline replication).\n";
  o += "# TYPE meshfs_forwards_total counter\n";
  o += "meshfs_forwards_total{result=\"ok\"} " + std::to_string(forwards_ok_) + "\n";
  o += "meshfs_forwards_total{result=\"failed\"} " + std::to_string(forwards_failed_) + "\n";
  o += "# HELP meshfs_slices_stored Slices stored on this peer.\n";
  o += "# TYPE meshfs_slices_stored gauge\n";
  o += "meshfs_slices_stored " + std::to_string(g.slices) + "\n";
  o += "# HELP meshfs_used_bytes Bytes of stored slices.\n";
  o += "# TYPE meshfs_used_bytes gauge\n";
  o += "meshfs_used_bytes " + std::to_string(g.used_bytes) + "\n";
  o += "# HELP meshfs_capacity_bytes Bytes this peer lends.\n";
  o += "# TYPE meshfs_capacity_bytes gauge\n";
  o += "meshfs_capacity_bytes " + std::to_string(g.capacity_bytes) + "\n";
  o += "# HELP meshfs_members Members in this peer's membership table, by state.\n";
  o += "# TYPE meshfs_members gauge\n";
  for (const char* state : {"alive", "suspect", "dead"}) {
    auto it = g.members.find(state);
    o += std::string("meshfs_members{state=\"") + state + "\"} " +
         std::to_string(it == g.members.end() ? 0 : it->second) + "\n";
  }
  o += "# HELP meshfs_request_duration_seconds Time to serve a request.\n";
  o += "# TYPE meshfs_request_duration_seconds histogram\n";
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    o += "meshfs_request_duration_seconds_bucket{le=\"" + Num(kLatencyBuckets[i]) + "\"} " +
         std::to_string(buckets_[i]) + "\n";
  }
  o += "meshfs_request_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(latency_count_) +
       "\n";
  o += "meshfs_request_duration_seconds_sum " + Num(latency_sum_) + "\n";
  o += "meshfs_request_duration_seconds_count " + std::to_string(latency_count_) + "\n";
  return o;
}

}  // namespace meshfs::net

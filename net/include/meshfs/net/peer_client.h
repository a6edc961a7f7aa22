// PeerClient: the one HTTP client for the peer protocol (docs/protocol.md),
// used by the node (forwarding, gossip) and by the mount (slices, roots).
//
// Built on one libcurl multi handle driven by a background thread: connection
// reuse (keep-alive), many transfers in flight, a timeout on every request.
// Errors name the peer and what failed, e.g.
//   Unavailable "peer 127.0.0.1:7001: connection refused (PUT slice 3fa2…)".
// Every completed request reports its round-trip time to the RTT observer, if
// set, which feeds Vivaldi coordinates and replica selection.
//
// Thread-safety: all methods may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

namespace meshfs::net {

struct PeerAddress {
  std::string host;  // IPv4 literal, hostname, or IPv6 literal without brackets
  uint16_t port = 0;

  // "HOST:PORT" or "[V6]:PORT"; InvalidArgument otherwise.
  static Result<PeerAddress> Parse(std::string_view text);
  // Comma-separated list of the above.
  static Result<std::vector<PeerAddress>> ParseList(std::string_view text);
  std::string ToString() const;
  auto operator<=>(const PeerAddress&) const = default;
};

struct HttpRequest {
  PeerAddress peer;
  std::string method = "GET";  // GET, HEAD, PUT, POST, DELETE
  std::string path;            // e.g. "/v1/slices/<hex>"
  std::string body;
  std::map<std::string, std::string> headers;
  int timeout_ms = 30000;      // whole transfer
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased
  double rtt_ms = 0;                           // total time of the transfer
};

struct PutSliceReply {
  std::vector<std::string> stored_on;  // "HOST:PORT" of every peer that stored it
  std::vector<std::string> failed;     // "HOST:PORT: reason" of every peer that did not
};

class PeerClient final {
 public:
  struct Options {
    int connect_timeout_ms = 2000;
    int default_timeout_ms = 30000;
    int max_connections_per_host = 8;
  };
  explicit PeerClient(Options options);
  PeerClient() : PeerClient(Options{}) {}
  ~PeerClient();  // cancels transfers still in flight (they complete with Aborted)
  PeerClient(const PeerClient&) = delete;
  PeerClient& operator=(const PeerClient&) = delete;

  // Starts a request; the future yields the response (any HTTP status) or a
  // transport error (Unavailable / TimedOut) naming the peer.
  std::future<Result<HttpResponse>> Send(HttpRequest request);
  // Send() and wait.
  Result<HttpResponse> Call(HttpRequest request);

  // Typed helpers for the slice API. HTTP errors map to Status: 404 NotFound,
  // 400 Corruption/InvalidArgument, 413 TooLarge, 507 NoSpace, 5xx Unavailable.
  // `owner`: hex volume id that takes a reference. `forward`: pipeline
  // replication, the peers after `peer` that the blob is passed on to.
  Result<PutSliceReply> PutSlice(const PeerAddress& peer, const SliceId& id, std::string_view blob,
                                 std::string_view owner,
                                 const std::vector<PeerAddress>& forward = {});
  // Verifies the blob against `id`: a blob that does not match is Corruption.
  Result<std::string> GetSlice(const PeerAddress& peer, const SliceId& id);
  // Batch presence test; result[i] answers ids[i].
  Result<std::vector<bool>> HasSlices(const PeerAddress& peer, const std::vector<SliceId>& ids);

  // Called after every completed request: (peer, rtt_ms, ok).
  using RttObserver = std::function<void(const PeerAddress&, double, bool)>;
  void SetRttObserver(RttObserver observer);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshfs::net

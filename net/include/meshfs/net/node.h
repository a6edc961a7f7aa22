// Node: the storage peer (`meshfs node`). Serves the peer protocol
// (docs/protocol.md) over HTTP/1.1 from a DiskStore, forwards slices down a
// replication pipeline with a PeerClient, runs gossip membership and a
// Vivaldi coordinate (GossipAgent), and counts everything for /metrics.
//
// Thread-safety: requests are served concurrently from the server's
// threads; Start and Shutdown are called from one controlling thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "meshfs/core/clock.h"
#include "meshfs/core/status.h"
#include "meshfs/net/disk_store.h"
#include "meshfs/net/gossip.h"
#include "meshfs/net/peer_client.h"

namespace meshfs::net {

struct NodeOptions {
  std::string data_dir;
  PeerAddress listen;             // port 0: pick a free port (tests)
  std::vector<PeerAddress> join;  // gossip seeds
  // The address other peers and clients reach this node at (gossip,
  // /v1/info, "stored_on"). Empty host: the listen address (with the real
  // port); port 0: the real listening port.
  PeerAddress advertise;
  uint64_t capacity_bytes = 0;  // 0: the data file system's free space
  uint64_t max_blob_bytes = DiskStore::kDefaultMaxBlobBytes;
  GossipOptions gossip;
  std::string version = "0";                 // reported by /v1/info
  size_t max_forward = 16;                   // longest X-Meshfs-Forward list accepted
  uint64_t max_buffered_bytes = 1ull << 30;  // request bodies held at once (else 503)
  Clock* clock = nullptr;                    // nullptr: Clock::Real()
};

class Node final {
 public:
  // Opens the store, binds the listening address and starts serving and
  // gossiping. Errors name what failed (data directory, address in use...).
  static Result<std::unique_ptr<Node>> Start(NodeOptions options);
  ~Node();  // Shutdown(0) if still running
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& id() const;
  // "HOST:PORT" this node serves on (with the real port).
  const std::string& addr() const { return addr_; }
  uint16_t port() const;

  // Stops accepting connections, lets requests in flight finish (at most
  // `drain_ms`), stops gossip and closes every connection. Idempotent.
  void Shutdown(int drain_ms);

  class Impl;

 private:
  Node() = default;
  std::unique_ptr<Impl> impl_;
  std::string addr_;
};

}  // namespace meshfs::net

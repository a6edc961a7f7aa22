// PeerStore: a plain replicating SliceStore over the configured peers, used by
// `meshfs mount` as the remote store under the CachingStore until the
// network-aware ReplicatingStore (net/) is wired in.
//
// Placement: the R configured peers ranked first by rendezvous hashing of
// (slice address, peer address). Put sends the blob to the first with
// pipeline forwarding to the others, then retries any that did not store it
// directly, and asks further peers down the ranking when one is down; it
// succeeds once R distinct peers (or every configured peer, if fewer) hold
// it, else returns Unavailable naming the failures. Get tries the ranking in
// order (each reply verified against the address by PeerClient).
//
// Thread-safety: safe for concurrent use (PeerClient is).
#pragma once

#include <string>
#include <vector>

#include "meshfs/core/replica_reporter.h"
#include "meshfs/core/slice_store.h"
#include "meshfs/net/peer_client.h"

namespace meshfs::cli {

class PeerStore final : public SliceStore, public ReplicaReporter {
 public:
  PeerStore(net::PeerClient* client, std::vector<net::PeerAddress> peers, int replicas,
            std::string owner_hex);

  Status Put(const SliceId& id, std::string_view blob) override;
  Result<std::string> Get(const SliceId& id) override;
  Result<bool> Contains(const SliceId& id) override;
  Status Remove(const SliceId& id) override;
  Status Flush() override { return Status::OK(); }

  // ReplicaReporter: Put, and how many distinct peers hold the blob after it.
  Status PutCounted(const SliceId& id, std::string_view blob, int* copies) override;
  int Replicas() const override { return static_cast<int>(replicas_); }

  const std::vector<net::PeerAddress>& peers() const { return peers_; }

 private:
  std::vector<net::PeerAddress> Ranked(const SliceId& id) const;

  net::PeerClient* const client_;
  const std::vector<net::PeerAddress> peers_;
  const size_t replicas_;
  const std::string owner_;
};

}  // namespace meshfs::cli

// ReplicatingStore: the SliceStore over the storage peers. Puts each blob on
// R distinct live peers chosen by capacity-weighted rendezvous placement
// (placement.h), by pipeline replication (one PUT to the first peer with the
// others in X-Meshfs-Forward, so the blob crosses the client's uplink once),
// then fills any missing copies from the next peers in rendezvous order.
// Reads from the holders ordered by ReplicaSelector (RTT, Vivaldi,
// reputation), hedging to the next holder when the first is late; a blob
// that fails verification costs the peer reputation and the read moves on.
//
// Membership: learnt from GET /v1/members of any reachable seed (then of any
// known member), refreshed by a background thread; the configured seeds are
// the fallback when no table could be fetched. Holders: optionally recorded
// in a small SQLite index (which peers took which slice), so reads go to the
// right peers even after membership changes.
//
// Installs the PeerClient's RTT observer (feeding the selector).
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "meshfs/core/clock.h"
#include "meshfs/core/replica_reporter.h"
#include "meshfs/core/slice_store.h"
#include "meshfs/net/peer_client.h"
#include "meshfs/net/replica_selector.h"

namespace meshfs::net {

struct ReplicatingOptions {
  std::vector<PeerAddress> seeds;  // the volume's configured peers
  int replicas = 3;                // R
  std::string owner;               // volume id (64 hex), sent with every PUT
  // The volume's 64-byte Ed25519 secret key, to sign DELETE. Empty: Remove
  // only forgets the holders (references are then dropped by `meshfs gc`).
  std::string signing_key;
  int hedge_delay_ms = 0;           // 0: max(2 x expected RTT of the first holder, 50 ms)
  int get_timeout_ms = 10'000;      // per GET request
  int members_refresh_ms = 5'000;   // 0: no background refresh
  std::filesystem::path holders_db; // empty: no holders index
};

// One peer as seen by this client, for `meshfs peers` and `meshfs status`.
struct PeerStatus {
  std::string id;     // node id ("" when only configured, never seen)
  std::string addr;   // "HOST:PORT"
  std::string state;  // alive, suspect, dead (gossip), or "configured"
  bool reachable = false;  // answered this client recently
  double rtt_ms = -1;            // measured EWMA, -1 unknown
  double predicted_rtt_ms = -1;  // from coordinates, -1 unknown
  double reputation = 1;
  uint64_t capacity_bytes = 0, free_bytes = 0;
  uint64_t failures = 0, corrupt = 0;
};

class ReplicatingStore final : public SliceStore, public ReplicaReporter {
 public:
  // `client` must outlive the store. Fetches the members once (failure to
  // reach any seed is not an error: the store starts with the seeds).
  static Result<std::unique_ptr<ReplicatingStore>> Open(ReplicatingOptions options,
                                                        PeerClient* client,
                                                        Clock* clock = Clock::Real());
  ~ReplicatingStore() override;
  ReplicatingStore(const ReplicatingStore&) = delete;
  ReplicatingStore& operator=(const ReplicatingStore&) = delete;

  // OK once on R distinct peers; Unavailable (with the count) otherwise.
  // The blob is not hashed here: every peer checks it against `id` before
  // storing or forwarding it, and the first refusal (HTTP 400) ends the Put
  // with Corruption (docs/architecture.md, "One hash per trust boundary").
  Status Put(const SliceId& id, std::string_view blob) override;
  // Hedged, verified read; NotFound only when every peer asked says 404.
  Result<std::string> Get(const SliceId& id) override;
  Result<bool> Contains(const SliceId& id) override;
  // Signed DELETE to the holders (when a signing key is set); NotFound is OK.
  Status Remove(const SliceId& id) override;
  Status Flush() override { return Status::OK(); }  // Put is synchronous

  // ReplicaReporter.
  Status PutCounted(const SliceId& id, std::string_view blob, int* copies) override;
  int Replicas() const override;

  // How many live peers hold `id` now (asks them; for check/repair).
  Result<int> CopiesOf(const SliceId& id);
  // The holders recorded for `id` ("HOST:PORT"), empty without an index.
  std::vector<std::string> RecordedHolders(const SliceId& id);
  // Fetches the membership table now.
  Status RefreshMembers();
  std::vector<PeerStatus> Peers() const;
  ReplicaSelector& selector();

 private:
  ReplicatingStore();
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshfs::net

// Gossip-style membership and failure detection (van Renesse, Minsky,
// Hayden: "A Gossip-Style Failure Detection Service", Middleware 1998), with
// Vivaldi coordinates riding on the exchanges.
//
// Every member has a heartbeat counter that it raises once per interval, and
// an incarnation number that it raises on every restart (so a restarted
// node's low heartbeat is still news). Every interval a node exchanges its
// table with `fanout` random live members (push-pull: it POSTs its table to
// /v1/gossip and merges the table that comes back). A merge keeps the newer
// (incarnation, heartbeat) of each member and records the local time of that
// progress. A member without progress for fail_ms is suspect (and no longer
// gossiped as alive); after cleanup_ms it is removed and remembered as a
// tombstone, so stale gossip cannot bring it back: only news newer than the
// tombstone re-adds it.
//
// Membership is the core logic: no threads, no network, time from a Clock.
// GossipAgent wraps it with an exchange thread, a transport (PeerClient by
// default) and a Vivaldi coordinate.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "meshfs/core/clock.h"
#include "meshfs/core/status.h"
#include "meshfs/net/members.h"
#include "meshfs/net/peer_client.h"
#include "meshfs/net/vivaldi.h"

namespace meshfs::net {

struct GossipOptions {
  int interval_ms = 1000;  // one exchange round per interval
  int fanout = 2;          // live members contacted per round
  int fail_ms = 5000;      // no progress for this long: suspect
  int cleanup_ms = 30000;  // no progress for this long: removed (tombstone)
  // Added: RNG seed for target choice (0: from std::random_device).
  uint64_t seed = 0;
};

struct SelfInfo {
  std::string id;
  std::string addr;  // "HOST:PORT" others reach this node at
  uint64_t capacity_bytes;
  uint64_t free_bytes;
  // Added: generation of this process; 0 means "wall-clock microseconds at
  // construction", which grows across restarts of a node with the same id.
  uint64_t incarnation = 0;
};

// The membership table. Not thread-safe: the owner serializes calls
// (GossipAgent holds a mutex).
class Membership final {
 public:
  // REQUIRES: clock outlives this; self.id and self.addr valid
  // (ValidMemberId / ValidMemberAddr). Options are clamped to sane values
  // (interval >= 1 ms, fanout >= 1, fail_ms >= interval,
  // cleanup_ms > fail_ms).
  Membership(SelfInfo self, GossipOptions options, Clock* clock);
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  const GossipOptions& options() const { return options_; }
  const std::string& self_id() const { return self_.id; }
  uint64_t incarnation() const { return self_.incarnation; }
  uint64_t heartbeat() const { return self_.heartbeat; }

  // One interval passed: raises the own heartbeat and applies timeouts
  // (removes members silent for cleanup_ms, keeping tombstones).
  void Tick();
  void UpdateCapacity(uint64_t capacity_bytes, uint64_t free_bytes);
  void SetCoordinate(const Coordinate& coord);

  // Merges received entries (from a parsed, validated message). Entries that
  // are not alive in the sender's view carry no evidence and are skipped;
  // news about this node with a higher incarnation (another process with our
  // id, or a clock that went backwards) makes this node take a higher
  // incarnation. Returns how many entries made progress.
  int Merge(const std::vector<Member>& remote);

  // The entries to gossip: this node and every member alive in its view.
  std::vector<Member> GossipView() const;
  // The table for GET /v1/members: this node, alive and suspect members,
  // with states and age_ms.
  std::vector<Member> Members() const;
  // Other members currently alive (gossip targets).
  std::vector<Member> LiveOthers() const;
  // Members worth an occasional probe: suspects and tombstones (by address),
  // so a restarted node that has no seeds to contact is found again.
  std::vector<Member> ProbeCandidates() const;
  // A member (this node included) by id, with its current state; nullopt if
  // unknown or removed.
  std::optional<Member> Find(std::string_view id) const;
  // "alive", "suspect" (table entries) and "dead" (remembered tombstones).
  std::map<std::string, int> Counts() const;
  // Human-readable lines for what changed since the last call ("member X at
  // A joined", "... suspect", "... removed", "... restarted"), for the log.
  std::vector<std::string> TakeEvents();

 private:
  struct Tombstone {
    std::string addr;
    uint64_t incarnation;
    uint64_t heartbeat;
    int64_t removed_micros;
  };
  int64_t Now() const;
  MemberState StateOf(const Member& m, int64_t now) const;
  void Expire(int64_t now);
  void Event(const Member& m, std::string_view what);

  GossipOptions options_;
  Clock* const clock_;
  Member self_;
  std::map<std::string, Member, std::less<>> members_;  // others, by id
  std::map<std::string, Tombstone, std::less<>> tombstones_;
  std::vector<std::string> events_;
};

// How GossipAgent reaches other nodes: one request/response exchange.
// Thread-safety: Exchange is called from the agent's exchange thread; several
// exchanges may be in flight at once.
class GossipTransport {
 public:
  struct Reply {
    std::string body;
    double rtt_ms = 0;
  };
  virtual ~GossipTransport() = default;
  // Starts sending `body` to POST /v1/gossip at `addr` ("HOST:PORT"); the
  // future yields the body of a 200 reply, or an error naming the peer.
  virtual std::future<Result<Reply>> Exchange(const std::string& addr, std::string body,
                                              int timeout_ms) = 0;
};

// Membership + Vivaldi + a background exchange thread. Thread-safe: every
// public method may be called from any thread (HandleGossip from the HTTP
// server's threads while the exchange thread runs).
class GossipAgent final {
 public:
  // REQUIRES: client and clock outlive this agent.
  GossipAgent(SelfInfo self, GossipOptions options, PeerClient* client, Clock* clock);
  // Added: the same over any transport (tests use an in-memory one).
  // REQUIRES: transport and clock outlive this agent.
  GossipAgent(SelfInfo self, GossipOptions options, GossipTransport* transport, Clock* clock);
  ~GossipAgent();  // Stop()
  GossipAgent(const GossipAgent&) = delete;
  GossipAgent& operator=(const GossipAgent&) = delete;

  // Starts the background exchange thread; `seeds` are contacted every round
  // until the first successful exchange (and again whenever no other member
  // is alive). Calling Start twice is a no-op.
  void Start(const std::vector<PeerAddress>& seeds);
  // Stops and joins the thread. Idempotent.
  void Stop();
  // Added: sets the seeds without starting the thread (for RunOnce callers);
  // this node's own address is left out.
  void SetSeeds(const std::vector<PeerAddress>& seeds);

  // One exchange round (what the thread does every interval): heartbeat,
  // timeouts, exchanges with fanout live members (+ seeds, + one probe).
  // Returns the number of successful exchanges. For tests and for Start's
  // thread; do not call while the thread runs.
  int RunOnce();

  void UpdateCapacity(uint64_t capacity_bytes, uint64_t free_bytes);
  // POST /v1/gossip: merges the message and returns this node's message.
  // Messages (requests and replies) never exceed kMaxBodyBytes: a table
  // too large for one is sent as this node plus a random sample of members.
  // InvalidArgument on garbage (oversized, malformed, wrong magic/version);
  // the table is then untouched. Never throws.
  Result<std::string> HandleGossip(std::string_view request_body);
  // GET /v1/members body (see EncodeMembers).
  std::string MembersJson() const;
  // This node's coordinate, {"vec":[x,y],"height":h,"error":e}.
  nlohmann::json CoordinateJson() const;
  // state -> count: "alive", "suspect", "dead" (for /metrics).
  std::map<std::string, int> MemberCounts() const;

  // Added: feeds one RTT sample (e.g. from a ping) to this node's Vivaldi
  // coordinate, through the per-peer latency filter when `peer` (id or
  // address) is given; InvalidArgument for bad samples.
  Status ObserveRtt(const Coordinate& remote, double rtt_ms, std::string_view peer = {});
  Coordinate coordinate() const;
  // Added: a copy of the table (Members()) for callers that want structs.
  std::vector<Member> Members() const;
  const std::string& self_id() const { return self_id_; }
  uint64_t incarnation() const;

 private:
  class PeerClientTransport;
  std::string EncodeSelfMessage();  // REQUIRES: mu_ held
  void Loop();

  const std::string self_id_;
  const std::string self_addr_;
  std::unique_ptr<GossipTransport> owned_transport_;
  GossipTransport* transport_;
  Clock* const clock_;
  Vivaldi vivaldi_;

  mutable std::mutex mu_;
  Membership membership_;           // guarded by mu_
  std::mt19937_64 rng_;             // guarded by mu_
  std::vector<std::string> seeds_;  // guarded by mu_
  bool joined_ = false;             // guarded by mu_

  std::mutex thread_mu_;             // serializes Start/Stop
  std::condition_variable stop_cv_;  // with mu_
  bool stopping_ = false;            // guarded by mu_
  std::thread thread_;
};

}  // namespace meshfs::net

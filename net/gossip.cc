// Gossip membership (Membership) and the node's exchange loop (GossipAgent).
#include "meshfs/net/gossip.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <set>

#include "meshfs/core/log.h"
#include "meshfs/core/thread_name.h"

namespace meshfs::net {
namespace {

constexpr std::string_view kComponent = "gossip";
// Tombstones are forgotten this many cleanup periods after removal; by then
// every node has dropped the member too, so no stale gossip about it remains.
constexpr int64_t kTombstoneCleanups = 10;

int64_t MsToMicros(int ms) { return static_cast<int64_t>(ms) * 1000; }

GossipOptions Clamp(GossipOptions o) {
  o.interval_ms = std::max(o.interval_ms, 1);
  o.fanout = std::clamp(o.fanout, 1, 64);
  o.fail_ms = std::max(o.fail_ms, o.interval_ms);
  o.cleanup_ms = std::max(o.cleanup_ms, o.fail_ms + o.interval_ms);
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------
// Membership

Membership::Membership(SelfInfo self, GossipOptions options, Clock* clock)
    : options_(Clamp(options)), clock_(clock) {
  self_.id = std::move(self.id);
  self_.addr = std::move(self.addr);
  self_.capacity_bytes = self.capacity_bytes;
  self_.free_bytes = self.free_bytes;
  self_.incarnation = self.incarnation;
  if (self_.incarnation == 0) {
    self_.incarnation = static_cast<uint64_t>(std::max<int64_t>(clock_->NowMicros(), 1));
  }
  self_.heartbeat = 0;
  self_.state = MemberState::kAlive;
  self_.last_progress_micros = Now();
}

int64_t Membership::Now() const { return clock_->MonotonicMicros(); }

MemberState Membership::StateOf(const Member& m, int64_t now) const {
  const int64_t age = now - m.last_progress_micros;
  if (age >= MsToMicros(options_.cleanup_ms)) return MemberState::kDead;
  if (age >= MsToMicros(options_.fail_ms)) return MemberState::kSuspect;
  return MemberState::kAlive;
}

void Membership::Event(const Member& m, std::string_view what) {
  if (events_.size() >= 1000) return;  // nobody drains: do not grow without bound
  events_.push_back("member " + m.id + " at " + m.addr + " " + std::string(what));
}

std::vector<std::string> Membership::TakeEvents() {
  std::vector<std::string> out;
  out.swap(events_);
  return out;
}

void Membership::Tick() {
  const int64_t now = Now();
  ++self_.heartbeat;
  self_.last_progress_micros = now;
  Expire(now);
}

void Membership::Expire(int64_t now) {
  for (auto it = members_.begin(); it != members_.end();) {
    Member& m = it->second;
    const MemberState state = StateOf(m, now);
    if (state == MemberState::kDead) {
      Event(m, "removed (no heartbeat for " +
                   std::to_string((now - m.last_progress_micros) / 1000) + " ms)");
      tombstones_[m.id] = Tombstone{m.addr, m.incarnation, m.heartbeat, now};
      it = members_.erase(it);
      continue;
    }
    if (state == MemberState::kSuspect && m.state != MemberState::kSuspect) {
      Event(m, "suspect (no heartbeat for " +
                   std::to_string((now - m.last_progress_micros) / 1000) + " ms)");
    }
    m.state = state;
    ++it;
  }
  const int64_t keep = kTombstoneCleanups * MsToMicros(options_.cleanup_ms);
  for (auto it = tombstones_.begin(); it != tombstones_.end();) {
    if (now - it->second.removed_micros >= keep) {
      it = tombstones_.erase(it);
    } else {
      ++it;
    }
  }
  while (tombstones_.size() > kMaxMembers) {
    auto oldest = tombstones_.begin();
    for (auto it = tombstones_.begin(); it != tombstones_.end(); ++it) {
      if (it->second.removed_micros < oldest->second.removed_micros) oldest = it;
    }
    tombstones_.erase(oldest);
  }
}

void Membership::UpdateCapacity(uint64_t capacity_bytes, uint64_t free_bytes) {
  self_.capacity_bytes = capacity_bytes;
  self_.free_bytes = free_bytes;
}

void Membership::SetCoordinate(const Coordinate& coord) {
  if (coord.IsSane()) self_.coord = coord;
}

int Membership::Merge(const std::vector<Member>& remote) {
  const int64_t now = Now();
  int progressed = 0;
  for (const Member& r : remote) {
    if (r.state != MemberState::kAlive) continue;
    if (!ValidMemberId(r.id) || !ValidMemberAddr(r.addr) || !r.coord.IsSane()) continue;
    if (r.id == self_.id) {
      if (r.incarnation > self_.incarnation &&
          r.incarnation < std::numeric_limits<uint64_t>::max()) {
        // Someone gossips a later generation of this node (an old process
        // still running, or our clock went backwards): outrank it.
        self_.incarnation = r.incarnation + 1;
        self_.heartbeat = 0;
        Event(self_, "(this node) took incarnation " + std::to_string(self_.incarnation) +
                         " above gossiped " + std::to_string(r.incarnation));
      }
      continue;
    }
    if (auto tomb = tombstones_.find(r.id); tomb != tombstones_.end()) {
      const Tombstone& t = tomb->second;
      const bool newer = r.incarnation != t.incarnation ? r.incarnation > t.incarnation
                                                        : r.heartbeat > t.heartbeat;
      if (!newer) continue;  // stale gossip about a removed member
      tombstones_.erase(tomb);
    }
    auto it = members_.find(r.id);
    if (it == members_.end()) {
      if (members_.size() + 1 >= kMaxMembers) continue;
      Member m = r;
      m.state = MemberState::kAlive;
      m.age_ms = -1;
      m.last_progress_micros = now;
      Event(m, "joined (incarnation " + std::to_string(m.incarnation) + ")");
      members_.emplace(m.id, std::move(m));
      ++progressed;
      continue;
    }
    Member& m = it->second;
    if (!r.NewerThan(m)) continue;
    if (r.incarnation > m.incarnation) {
      Event(r, "restarted (incarnation " + std::to_string(r.incarnation) + ")");
    } else if (m.state == MemberState::kSuspect) {
      Event(m, "alive again");
    }
    m.addr = r.addr;
    m.incarnation = r.incarnation;
    m.heartbeat = r.heartbeat;
    m.coord = r.coord;
    m.capacity_bytes = r.capacity_bytes;
    m.free_bytes = r.free_bytes;
    m.state = MemberState::kAlive;
    m.last_progress_micros = now;
    ++progressed;
  }
  return progressed;
}

std::vector<Member> Membership::GossipView() const {
  const int64_t now = Now();
  std::vector<Member> out;
  out.push_back(self_);
  for (const auto& [id, m] : members_) {
    if (StateOf(m, now) == MemberState::kAlive) {
      out.push_back(m);
      out.back().state = MemberState::kAlive;
      out.back().age_ms = -1;
    }
  }
  return out;
}

std::vector<Member> Membership::Members() const {
  const int64_t now = Now();
  std::vector<Member> out;
  out.push_back(self_);
  out.back().age_ms = 0;
  for (const auto& [id, m] : members_) {
    const MemberState state = StateOf(m, now);
    if (state == MemberState::kDead) continue;
    out.push_back(m);
    out.back().state = state;
    out.back().age_ms = (now - m.last_progress_micros) / 1000;
  }
  return out;
}

std::vector<Member> Membership::LiveOthers() const {
  const int64_t now = Now();
  std::vector<Member> out;
  for (const auto& [id, m] : members_) {
    if (StateOf(m, now) == MemberState::kAlive) out.push_back(m);
  }
  return out;
}

std::vector<Member> Membership::ProbeCandidates() const {
  const int64_t now = Now();
  std::vector<Member> out;
  for (const auto& [id, m] : members_) {
    if (StateOf(m, now) != MemberState::kAlive) {
      out.push_back(m);
      out.back().state = MemberState::kSuspect;
    }
  }
  for (const auto& [id, t] : tombstones_) {
    Member m;
    m.id = id;
    m.addr = t.addr;
    m.incarnation = t.incarnation;
    m.heartbeat = t.heartbeat;
    m.state = MemberState::kDead;
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<Member> Membership::Find(std::string_view id) const {
  if (id == self_.id) return self_;
  const auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  const int64_t now = Now();
  Member m = it->second;
  m.state = StateOf(m, now);
  if (m.state == MemberState::kDead) return std::nullopt;
  m.age_ms = (now - m.last_progress_micros) / 1000;
  return m;
}

std::map<std::string, int> Membership::Counts() const {
  std::map<std::string, int> out{{"alive", 1}, {"suspect", 0}, {"dead", 0}};
  const int64_t now = Now();
  for (const auto& [id, m] : members_) ++out[std::string(StateName(StateOf(m, now)))];
  out["dead"] += static_cast<int>(tombstones_.size());
  return out;
}

// ---------------------------------------------------------------------------
// GossipAgent

class GossipAgent::PeerClientTransport final : public GossipTransport {
 public:
  explicit PeerClientTransport(PeerClient* client) : client_(client) {}

  std::future<Result<Reply>> Exchange(const std::string& addr, std::string body,
                                      int timeout_ms) override {
    auto peer = PeerAddress::Parse(addr);
    if (!peer.ok()) return Ready(peer.status());
    HttpRequest request;
    request.peer = *peer;
    request.method = "POST";
    request.path = "/v1/gossip";
    request.body = std::move(body);
    request.headers["Content-Type"] = "application/json";
    request.timeout_ms = timeout_ms;
    // The response is checked on the agent's thread when it collects the
    // future: wrap the PeerClient future so no extra thread is needed.
    auto inner = std::make_shared<std::future<Result<HttpResponse>>>(client_->Send(request));
    return std::async(std::launch::deferred, [inner, addr]() -> Result<Reply> {
      Result<HttpResponse> r = inner->get();
      if (!r.ok()) return r.status();
      if (r->status != 200) {
        std::string reason = r->body.substr(0, 120);
        for (char& c : reason) {
          if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
            c = ' ';
          }
        }
        return Status::Unavailable("peer " + addr + ": gossip answered HTTP " +
                                   std::to_string(r->status) + ": " + reason);
      }
      return Reply{std::move(r->body), r->rtt_ms};
    });
  }

 private:
  static std::future<Result<Reply>> Ready(Status s) {
    std::promise<Result<Reply>> p;
    p.set_value(std::move(s));
    return p.get_future();
  }
  PeerClient* const client_;
};

GossipAgent::GossipAgent(SelfInfo self, GossipOptions options, PeerClient* client, Clock* clock)
    : GossipAgent(std::move(self), options, static_cast<GossipTransport*>(nullptr), clock) {
  owned_transport_ = std::make_unique<PeerClientTransport>(client);
  transport_ = owned_transport_.get();
}

GossipAgent::GossipAgent(SelfInfo self, GossipOptions options, GossipTransport* transport,
                         Clock* clock)
    : self_id_(self.id),
      self_addr_(self.addr),
      transport_(transport),
      clock_(clock),
      vivaldi_(Vivaldi::Options{.seed = options.seed ? options.seed : std::random_device{}()}),
      membership_(std::move(self), options, clock),
      rng_(options.seed ? options.seed : std::random_device{}()) {}

GossipAgent::~GossipAgent() { Stop(); }

void GossipAgent::SetSeeds(const std::vector<PeerAddress>& seeds) {
  std::lock_guard<std::mutex> lock(mu_);
  seeds_.clear();
  for (const auto& s : seeds) {
    std::string addr = s.ToString();
    if (addr != self_addr_ && std::find(seeds_.begin(), seeds_.end(), addr) == seeds_.end()) {
      seeds_.push_back(std::move(addr));
    }
  }
}

void GossipAgent::Start(const std::vector<PeerAddress>& seeds) {
  std::lock_guard<std::mutex> start_lock(thread_mu_);
  if (thread_.joinable()) return;
  SetSeeds(seeds);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void GossipAgent::Stop() {
  std::lock_guard<std::mutex> start_lock(thread_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GossipAgent::Loop() {
  NameThisThread("gossip");
  const auto interval = std::chrono::milliseconds(membership_.options().interval_ms);
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    RunOnce();
    next += interval;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // overran: start the next round at once
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_cv_.wait_until(lock, next, [this] { return stopping_; })) return;
  }
}

std::string GossipAgent::EncodeSelfMessage() {
  membership_.SetCoordinate(vivaldi_.coordinate());
  GossipMessage msg{self_id_, membership_.GossipView()};
  std::string body = EncodeGossip(msg);
  if (body.size() <= kMaxBodyBytes) return body;
  // A table too large for one message (thousands of members): send this
  // node and a random sample of the others that fits; other rounds carry
  // other samples, so every heartbeat still spreads.
  std::shuffle(msg.members.begin() + 1, msg.members.end(), rng_);
  while (body.size() > kMaxBodyBytes && msg.members.size() > 1) {
    const size_t keep =
        std::max<size_t>(1, msg.members.size() * kMaxBodyBytes / body.size() * 9 / 10);
    msg.members.resize(std::min(keep, msg.members.size() - 1));
    body = EncodeGossip(msg);
  }
  return body;
}

int GossipAgent::RunOnce() {
  struct Target {
    std::string addr;
    bool seed;
    std::future<Result<GossipTransport::Reply>> reply;
  };
  std::vector<Target> targets;
  std::string body;
  int timeout_ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    membership_.Tick();
    const GossipOptions& o = membership_.options();
    timeout_ms = std::clamp(o.interval_ms, 500, 5000);
    std::set<std::string> chosen;
    std::vector<Member> live = membership_.LiveOthers();
    std::shuffle(live.begin(), live.end(), rng_);
    for (const Member& m : live) {
      if (static_cast<int>(targets.size()) >= o.fanout) break;
      if (chosen.insert(m.addr).second) targets.push_back({m.addr, false, {}});
    }
    if (!joined_ || live.empty()) {
      for (const std::string& s : seeds_) {
        if (chosen.insert(s).second) targets.push_back({s, true, {}});
      }
    }
    // One probe of a suspect or removed member: finds a restarted node that
    // has no seeds of its own to contact.
    std::vector<Member> probes = membership_.ProbeCandidates();
    if (!probes.empty()) {
      const Member& p = probes[std::uniform_int_distribution<size_t>(0, probes.size() - 1)(rng_)];
      if (p.addr != self_addr_ && chosen.insert(p.addr).second) {
        targets.push_back({p.addr, false, {}});
      }
    }
    body = EncodeSelfMessage();
    for (const std::string& e : membership_.TakeEvents()) LogInfo(kComponent, e);
  }

  for (Target& t : targets) t.reply = transport_->Exchange(t.addr, body, timeout_ms);

  int ok = 0;
  for (Target& t : targets) {
    Result<GossipTransport::Reply> reply = t.reply.get();
    if (!reply.ok()) {
      LogDebug(kComponent, "exchange with " + t.addr + " failed: " + reply.status().ToString());
      continue;
    }
    Result<GossipMessage> msg = ParseGossip(reply->body);
    if (!msg.ok()) {
      LogWarn(kComponent, "bad gossip reply from " + t.addr + ": " + msg.status().message());
      continue;
    }
    for (const Member& m : msg->members) {
      if (m.id == msg->sender) {
        // Feeds Vivaldi; a bad sample is simply not used.
        (void)vivaldi_.Update(m.coord, reply->rtt_ms, msg->sender);
        break;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    membership_.Merge(msg->members);
    if (!joined_) LogInfo(kComponent, "joined the network through " + t.addr);
    joined_ = true;
    ++ok;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    membership_.SetCoordinate(vivaldi_.coordinate());
    for (const std::string& e : membership_.TakeEvents()) LogInfo(kComponent, e);
  }
  return ok;
}

void GossipAgent::UpdateCapacity(uint64_t capacity_bytes, uint64_t free_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  membership_.UpdateCapacity(capacity_bytes, free_bytes);
}

Result<std::string> GossipAgent::HandleGossip(std::string_view request_body) {
  try {
    Result<GossipMessage> msg = ParseGossip(request_body);
    if (!msg.ok()) return msg.status();
    std::lock_guard<std::mutex> lock(mu_);
    membership_.Merge(msg->members);
    for (const std::string& e : membership_.TakeEvents()) LogInfo(kComponent, e);
    return EncodeSelfMessage();
  } catch (const std::exception& e) {
    return Status::Aborted(std::string("gossip: internal error: ") + e.what());
  } catch (...) {
    return Status::Aborted("gossip: internal error");
  }
}

std::vector<Member> GossipAgent::Members() const {
  const Coordinate coord = vivaldi_.coordinate();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Member> out = membership_.Members();
  out.front().coord = coord;  // this node's entry, freshest coordinate
  return out;
}

std::string GossipAgent::MembersJson() const { return EncodeMembers(Members()); }

nlohmann::json GossipAgent::CoordinateJson() const { return vivaldi_.coordinate().ToJson(); }

std::map<std::string, int> GossipAgent::MemberCounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return membership_.Counts();
}

Status GossipAgent::ObserveRtt(const Coordinate& remote, double rtt_ms, std::string_view peer) {
  if (peer.empty()) return vivaldi_.Update(remote, rtt_ms);
  return vivaldi_.Update(remote, rtt_ms, peer);
}

Coordinate GossipAgent::coordinate() const { return vivaldi_.coordinate(); }

uint64_t GossipAgent::incarnation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return membership_.incarnation();
}

}  // namespace meshfs::net

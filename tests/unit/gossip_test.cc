// Gossip membership with a fake clock: failure detection timing, tombstones,
// restarts, convergence of many agents over an in-memory transport, garbage
// input, and coordinates learned from the exchanges.
#include "meshfs/net/gossip.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "meshfs/core/log.h"

namespace meshfs::net {
namespace {

constexpr int64_t kMs = 1000;  // FakeClock counts microseconds

GossipOptions Opts() {
  GossipOptions o;
  o.interval_ms = 1000;
  o.fanout = 2;
  o.fail_ms = 5000;
  o.cleanup_ms = 30000;
  o.seed = 99;
  return o;
}

SelfInfo Self(const std::string& id, int port, uint64_t incarnation = 0) {
  return SelfInfo{id, "127.0.0.1:" + std::to_string(port), 1000, 500, incarnation};
}

bool HasEvent(Membership& m, const std::string& needle) {
  for (const std::string& e : m.TakeEvents()) {
    if (e.find(needle) != std::string::npos) return true;
  }
  return false;
}

// Push-pull between two tables, as one gossip exchange does.
void Exchange(Membership& a, Membership& b) {
  std::vector<Member> from_a = a.GossipView();
  b.Merge(from_a);
  a.Merge(b.GossipView());
}

// ---------------------------------------------------------------------------
// Membership (no threads, no network)

TEST(Membership, StartsWithItselfAlive) {
  FakeClock clock;
  Membership m(Self("a", 7001), Opts(), &clock);
  EXPECT_EQ(m.incarnation(), static_cast<uint64_t>(clock.NowMicros()));
  EXPECT_EQ(m.heartbeat(), 0u);
  m.Tick();
  m.Tick();
  EXPECT_EQ(m.heartbeat(), 2u);
  const auto members = m.Members();
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].id, "a");
  EXPECT_EQ(members[0].state, MemberState::kAlive);
  EXPECT_EQ(members[0].capacity_bytes, 1000u);
  EXPECT_EQ(m.Counts(), (std::map<std::string, int>{{"alive", 1}, {"suspect", 0}, {"dead", 0}}));
  EXPECT_TRUE(m.LiveOthers().empty());
}

TEST(Membership, OptionsAreClamped) {
  FakeClock clock;
  GossipOptions o;
  o.interval_ms = 0;
  o.fanout = -3;
  o.fail_ms = 0;
  o.cleanup_ms = 0;
  Membership m(Self("a", 7001), o, &clock);
  EXPECT_GE(m.options().interval_ms, 1);
  EXPECT_GE(m.options().fanout, 1);
  EXPECT_GE(m.options().fail_ms, m.options().interval_ms);
  EXPECT_GT(m.options().cleanup_ms, m.options().fail_ms);
}

TEST(Membership, SuspectAfterFailRemovedAfterCleanupNotBefore) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  Membership b(Self("b", 7002), Opts(), &clock);
  b.Tick();
  Exchange(a, b);
  ASSERT_TRUE(a.Find("b").has_value());
  EXPECT_TRUE(HasEvent(a, "member b at 127.0.0.1:7002 joined"));
  // b falls silent now. a keeps ticking every second.
  clock.Advance(4999 * kMs);
  a.Tick();
  EXPECT_EQ(a.Find("b")->state, MemberState::kAlive);
  EXPECT_EQ(a.LiveOthers().size(), 1u);
  clock.Advance(1 * kMs);  // exactly fail_ms without progress
  a.Tick();
  auto seen = a.Find("b");
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->state, MemberState::kSuspect);
  EXPECT_EQ(seen->age_ms, 5000);
  EXPECT_TRUE(HasEvent(a, "member b at 127.0.0.1:7002 suspect"));
  // Suspects are listed, but not gossiped as alive and not gossip targets.
  EXPECT_TRUE(a.LiveOthers().empty());
  for (const Member& m : a.GossipView()) EXPECT_NE(m.id, "b");
  ASSERT_EQ(a.Members().size(), 2u);
  EXPECT_EQ(a.Members()[1].state, MemberState::kSuspect);
  EXPECT_EQ(a.Counts()["suspect"], 1);
  ASSERT_EQ(a.ProbeCandidates().size(), 1u);
  EXPECT_EQ(a.ProbeCandidates()[0].addr, "127.0.0.1:7002");
  // Still listed one millisecond before cleanup_ms.
  clock.Advance(24999 * kMs);
  a.Tick();
  ASSERT_TRUE(a.Find("b").has_value());
  EXPECT_EQ(a.Find("b")->state, MemberState::kSuspect);
  clock.Advance(1 * kMs);
  // Even before the next Tick, a reader no longer sees it.
  EXPECT_FALSE(a.Find("b").has_value());
  EXPECT_EQ(a.Members().size(), 1u);
  a.Tick();
  EXPECT_FALSE(a.Find("b").has_value());
  EXPECT_TRUE(HasEvent(a, "member b at 127.0.0.1:7002 removed"));
  EXPECT_EQ(a.Counts(), (std::map<std::string, int>{{"alive", 1}, {"suspect", 0}, {"dead", 1}}));
  // The tombstone keeps its address for probes.
  ASSERT_EQ(a.ProbeCandidates().size(), 1u);
  EXPECT_EQ(a.ProbeCandidates()[0].state, MemberState::kDead);
}

TEST(Membership, SuspectComesBackWithProgress) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  Membership b(Self("b", 7002), Opts(), &clock);
  Exchange(a, b);
  clock.Advance(6000 * kMs);
  a.Tick();
  ASSERT_EQ(a.Find("b")->state, MemberState::kSuspect);
  // Same heartbeat again is not progress.
  a.Merge(b.GossipView());
  EXPECT_EQ(a.Find("b")->state, MemberState::kSuspect);
  b.Tick();
  EXPECT_EQ(a.Merge(b.GossipView()), 1);
  EXPECT_EQ(a.Find("b")->state, MemberState::kAlive);
  EXPECT_EQ(a.Find("b")->age_ms, 0);
  EXPECT_TRUE(HasEvent(a, "alive again"));
}

TEST(Membership, StaleGossipDoesNotResurrectRemovedMember) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  Membership b(Self("b", 7002), Opts(), &clock);
  Membership c(Self("c", 7003), Opts(), &clock);
  b.Tick();
  Exchange(a, b);
  Exchange(c, a);  // c learns b through a
  ASSERT_TRUE(c.Find("b").has_value());
  const std::vector<Member> stale = c.GossipView();  // still lists b, old heartbeat
  clock.Advance(31000 * kMs);
  a.Tick();
  ASSERT_FALSE(a.Find("b").has_value());
  // c's table from before (b with its last heartbeat) must not bring b back.
  EXPECT_EQ(a.Merge(stale), 0);
  EXPECT_FALSE(a.Find("b").has_value());
  // Real news from b does.
  b.Tick();
  EXPECT_EQ(a.Merge(b.GossipView()), 1);
  ASSERT_TRUE(a.Find("b").has_value());
  EXPECT_EQ(a.Find("b")->state, MemberState::kAlive);
  // b's tombstone is gone; c's (also silent) remains.
  const auto probes = a.ProbeCandidates();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].id, "c");
}

TEST(Membership, RestartWithNewIncarnationIsAccepted) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  auto b = std::make_unique<Membership>(Self("b", 7002, 100), Opts(), &clock);
  for (int i = 0; i < 50; ++i) b->Tick();
  Exchange(a, *b);
  ASSERT_EQ(a.Find("b")->heartbeat, 50u);
  // An old process image replaying a low heartbeat of the same incarnation:
  // ignored.
  Member replay = *a.Find("b");
  replay.heartbeat = 3;
  EXPECT_EQ(a.Merge({replay}), 0);
  EXPECT_EQ(a.Find("b")->heartbeat, 50u);
  // b restarts: heartbeat from zero, higher incarnation.
  b = std::make_unique<Membership>(Self("b", 7002, 101), Opts(), &clock);
  b->Tick();
  EXPECT_EQ(a.Merge(b->GossipView()), 1);
  EXPECT_EQ(a.Find("b")->incarnation, 101u);
  EXPECT_EQ(a.Find("b")->heartbeat, 1u);
  EXPECT_TRUE(HasEvent(a, "restarted"));
}

TEST(Membership, RestartAfterRemovalRejoins) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  {
    Membership b(Self("b", 7002), Opts(), &clock);
    for (int i = 0; i < 10; ++i) b.Tick();
    Exchange(a, b);
  }
  clock.Advance(40000 * kMs);
  a.Tick();
  ASSERT_FALSE(a.Find("b").has_value());
  // Default incarnation: wall clock at start, later than the first run's.
  Membership b2(Self("b", 7002), Opts(), &clock);
  Exchange(b2, a);
  ASSERT_TRUE(a.Find("b").has_value());
  EXPECT_EQ(a.Find("b")->heartbeat, 0u);
  EXPECT_EQ(a.Find("b")->incarnation, b2.incarnation());
}

TEST(Membership, OutranksGossipAboutItselfFromALaterIncarnation) {
  FakeClock clock;
  Membership a(Self("a", 7001, 500), Opts(), &clock);
  Member ghost = a.GossipView()[0];
  ghost.incarnation = 900;
  ghost.heartbeat = 77;
  a.Merge({ghost});
  EXPECT_GT(a.incarnation(), 900u);
  EXPECT_EQ(a.Find("a")->state, MemberState::kAlive);
}

TEST(Membership, SkipsEntriesWithoutEvidence) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  Membership b(Self("b", 7002), Opts(), &clock);
  Member suspect = b.GossipView()[0];
  suspect.state = MemberState::kSuspect;
  Member dead = suspect;
  dead.state = MemberState::kDead;
  Member bad_id = b.GossipView()[0];
  bad_id.id = "x/y";
  Member bad_coord = b.GossipView()[0];
  bad_coord.id = "c";
  bad_coord.coord.height = std::nan("");
  EXPECT_EQ(a.Merge({suspect, dead, bad_id, bad_coord}), 0);
  EXPECT_EQ(a.Members().size(), 1u);
}

TEST(Membership, CapacityAndCoordinateRideOnHeartbeats) {
  FakeClock clock;
  Membership a(Self("a", 7001), Opts(), &clock);
  Membership b(Self("b", 7002), Opts(), &clock);
  Exchange(a, b);
  b.UpdateCapacity(4000, 123);
  Coordinate c;
  c.vec = {3, 4};
  c.height = 1;
  c.error = 0.2;
  b.SetCoordinate(c);
  b.Tick();
  Exchange(a, b);
  EXPECT_EQ(a.Find("b")->capacity_bytes, 4000u);
  EXPECT_EQ(a.Find("b")->free_bytes, 123u);
  EXPECT_EQ(a.Find("b")->coord, c);
}

// ---------------------------------------------------------------------------
// GossipAgent over an in-memory network

class Network {
 public:
  // RTT in ms between two addresses (default: 1 ms).
  std::function<double(const std::string&, const std::string&)> rtt =
      [](const std::string&, const std::string&) { return 1.0; };

  void Attach(const std::string& addr, GossipAgent* agent) {
    std::lock_guard<std::mutex> lock(mu_);
    agents_[addr] = agent;
  }
  void Detach(const std::string& addr) {
    std::lock_guard<std::mutex> lock(mu_);
    agents_.erase(addr);
  }
  int delivered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return delivered_;
  }

  Result<GossipTransport::Reply> Deliver(const std::string& from, const std::string& to,
                                         const std::string& body) {
    GossipAgent* agent = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = agents_.find(to);
      if (it == agents_.end()) return Status::Unavailable("peer " + to + ": connection refused");
      agent = it->second;
      ++delivered_;
    }
    Result<std::string> reply = agent->HandleGossip(body);
    if (!reply.ok()) return Status::Unavailable("peer " + to + ": HTTP 400");
    return GossipTransport::Reply{std::move(reply).value(), rtt(from, to)};
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, GossipAgent*> agents_;
  int delivered_ = 0;
};

class MemTransport final : public GossipTransport {
 public:
  MemTransport(Network* net, std::string self) : net_(net), self_(std::move(self)) {}
  std::future<Result<Reply>> Exchange(const std::string& addr, std::string body,
                                      int /*timeout_ms*/) override {
    std::promise<Result<Reply>> p;
    p.set_value(net_->Deliver(self_, addr, body));
    return p.get_future();
  }

 private:
  Network* const net_;
  const std::string self_;
};

// N agents "node-i" at 127.0.0.1:(9000+i); all but the first join the first.
class Cluster {
 public:
  Cluster(int n, GossipOptions options, Clock* clock) : options_(options), clock_(clock) {
    SetLogLevel(LogLevel::kWarn);  // membership events are info lines; keep output readable
    for (int i = 0; i < n; ++i) Start(i, i == 0 ? std::vector<int>{} : std::vector<int>{0});
  }

  static std::string Addr(int i) { return "127.0.0.1:" + std::to_string(9000 + i); }
  static std::string Id(int i) { return "node-" + std::to_string(i); }

  // (Re)starts agent i with the given seeds; its incarnation comes from the
  // clock, as a real restart's does.
  void Start(int i, const std::vector<int>& seeds) {
    if (static_cast<int>(agents_.size()) <= i) {
      agents_.resize(i + 1);
      transports_.resize(i + 1);
      down_.resize(i + 1, false);
    }
    net.Detach(Addr(i));
    agents_[i].reset();
    transports_[i] = std::make_unique<MemTransport>(&net, Addr(i));
    GossipOptions o = options_;
    o.seed = options_.seed + static_cast<uint64_t>(i) * 7919 + restarts_++;
    agents_[i] =
        std::make_unique<GossipAgent>(Self(Id(i), 9000 + i), o, transports_[i].get(), clock_);
    std::vector<PeerAddress> seed_addrs;
    for (int s : seeds) seed_addrs.push_back(*PeerAddress::Parse(Addr(s)));
    agents_[i]->SetSeeds(seed_addrs);
    down_[i] = false;
    net.Attach(Addr(i), agents_[i].get());
  }

  void Kill(int i) {
    down_[i] = true;
    net.Detach(Addr(i));
  }

  // One round: every live agent runs one exchange round, then a second passes.
  void Round() {
    for (size_t i = 0; i < agents_.size(); ++i) {
      if (!down_[i]) agents_[i]->RunOnce();
    }
  }

  GossipAgent& agent(int i) { return *agents_[i]; }
  int size() const { return static_cast<int>(agents_.size()); }
  bool down(int i) const { return down_[i]; }

  // The state agent `viewer` has for agent `subject`, "" when not listed.
  std::string StateOf(int viewer, int subject) {
    for (const Member& m : agents_[viewer]->Members()) {
      if (m.id == Id(subject)) return std::string(StateName(m.state));
    }
    return "";
  }

  // True when every live agent lists exactly the live agents, all alive.
  bool Converged() {
    for (int v = 0; v < size(); ++v) {
      if (down_[v]) continue;
      const auto members = agents_[v]->Members();
      int alive = 0;
      for (const Member& m : members) alive += m.state == MemberState::kAlive;
      int live = 0;
      for (int s = 0; s < size(); ++s) live += !down_[s];
      if (alive != live || static_cast<int>(members.size()) != live) return false;
    }
    return true;
  }

  Network net;

 private:
  GossipOptions options_;
  Clock* clock_;
  std::vector<std::unique_ptr<MemTransport>> transports_;
  std::vector<std::unique_ptr<GossipAgent>> agents_;
  std::vector<bool> down_;
  uint64_t restarts_ = 0;
};

// Runs rounds (advancing the clock by one interval each) until `done` or
// `max_rounds`; returns the number of rounds run.
template <typename Pred>
int RunUntil(Cluster& c, FakeClock& clock, int max_rounds, Pred done) {
  for (int r = 1; r <= max_rounds; ++r) {
    c.Round();
    clock.Advance(1000 * kMs);
    if (done()) return r;
  }
  return max_rounds + 1;
}

TEST(GossipAgent, SixteenAgentsConverge) {
  FakeClock clock;
  Cluster c(16, Opts(), &clock);
  const int rounds = RunUntil(c, clock, 30, [&] { return c.Converged(); });
  std::printf("16 agents joined through one seed: converged after %d rounds\n", rounds);
  EXPECT_LE(rounds, 10);
  // Stays converged, and nobody is ever suspected while all are up.
  for (int r = 0; r < 8; ++r) {
    c.Round();
    clock.Advance(1000 * kMs);
    ASSERT_TRUE(c.Converged()) << "round " << r;
  }
  const auto counts = c.agent(5).MemberCounts();
  EXPECT_EQ(counts.at("alive"), 16);
  EXPECT_EQ(counts.at("suspect"), 0);
  EXPECT_EQ(counts.at("dead"), 0);
  // The table is the documented JSON list.
  auto parsed = ParseMembers(c.agent(3).MembersJson());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->size(), 16u);
  EXPECT_EQ((*parsed)[0].id, "node-3");
  for (const Member& m : *parsed) EXPECT_GE(m.age_ms, 0);
}

TEST(GossipAgent, DetectsFailureRemovesAndRejoins) {
  FakeClock clock;
  Cluster c(8, Opts(), &clock);
  ASSERT_LE(RunUntil(c, clock, 30, [&] { return c.Converged(); }), 30);
  for (int r = 0; r < 3; ++r) {
    c.Round();
    clock.Advance(1000 * kMs);
  }
  const int victim = 5;
  c.Kill(victim);
  // Seconds after the kill at which each survivor first lists the victim as
  // suspect, and first does not list it at all.
  std::map<int, int> suspect_at;
  std::map<int, int> removed_at;
  for (int second = 1; second <= 40; ++second) {
    c.Round();
    clock.Advance(1000 * kMs);
    for (int v = 0; v < c.size(); ++v) {
      if (v == victim) continue;
      const std::string state = c.StateOf(v, victim);
      if (state == "suspect" && !suspect_at.count(v)) suspect_at[v] = second;
      if (state.empty() && !removed_at.count(v)) removed_at[v] = second;
      // Nobody else is ever suspected.
      for (int o = 0; o < c.size(); ++o) {
        if (o != victim) {
          ASSERT_EQ(c.StateOf(v, o), "alive") << v << " sees " << o;
        }
      }
    }
  }
  ASSERT_EQ(suspect_at.size(), 7u);
  ASSERT_EQ(removed_at.size(), 7u);
  for (const auto& [v, s] : suspect_at) {
    // fail_ms = 5 s; the last heartbeat a survivor heard is at most a couple
    // of rounds older than the kill.
    EXPECT_GE(s, 3) << "node " << v << " suspected too early";
    EXPECT_LE(s, 6) << "node " << v << " suspected too late";
    EXPECT_GE(removed_at[v], 28) << "node " << v << " removed too early";
    EXPECT_LE(removed_at[v], 31) << "node " << v << " removed too late";
  }
  EXPECT_EQ(c.agent(0).MemberCounts().at("dead"), 1);

  // Restart with the same id, joining through node 0: everyone sees it again,
  // with its new incarnation, although its heartbeat starts from zero.
  c.Start(victim, {0});
  const int rounds = RunUntil(c, clock, 20, [&] { return c.Converged(); });
  EXPECT_LE(rounds, 8);
  for (int v = 0; v < c.size(); ++v) {
    bool found = false;
    for (const Member& m : c.agent(v).Members()) {
      if (m.id == Cluster::Id(victim)) {
        found = true;
        EXPECT_EQ(m.incarnation, c.agent(victim).incarnation());
      }
    }
    EXPECT_TRUE(found) << v;
  }
  EXPECT_EQ(c.agent(0).MemberCounts().at("dead"), 0);
}

TEST(GossipAgent, RestartedNodeWithoutSeedsIsFoundAgain) {
  FakeClock clock;
  Cluster c(6, Opts(), &clock);
  ASSERT_LE(RunUntil(c, clock, 30, [&] { return c.Converged(); }), 30);
  // The seed itself dies and is removed everywhere...
  c.Kill(0);
  RunUntil(c, clock, 40, [] { return false; });
  ASSERT_EQ(c.StateOf(1, 0), "");
  // ...and comes back with no --join: the others' probes of removed members
  // find it.
  c.Start(0, {});
  const int rounds = RunUntil(c, clock, 20, [&] { return c.Converged(); });
  std::printf("seedless restart found again after %d rounds\n", rounds);
  EXPECT_LE(rounds, 10);
}

TEST(GossipAgent, GarbageIsRejectedAndTableUntouched) {
  FakeClock clock;
  Cluster c(4, Opts(), &clock);
  ASSERT_LE(RunUntil(c, clock, 30, [&] { return c.Converged(); }), 30);
  // A message captured now, replayed later.
  Result<std::string> captured =
      c.agent(1).HandleGossip(EncodeGossip(GossipMessage{"node-2", {c.agent(2).Members()[0]}}));
  ASSERT_TRUE(captured.ok());
  const std::string old_message =
      EncodeGossip(GossipMessage{"node-2", {c.agent(2).Members()[0], c.agent(3).Members()[0]}});
  RunUntil(c, clock, 5, [] { return false; });

  GossipAgent& a = c.agent(0);
  const std::string before = a.MembersJson();
  const uint64_t inc = a.incarnation();
  std::vector<std::string> garbage = {
      "",
      "not json",
      "{}",
      "[]",
      "null",
      R"({"magic":"meshfs-gossip","version":1})",
      R"({"magic":"meshfs-gossip","version":9,"sender":"x","members":[]})",
      R"({"magic":"other","version":1,"sender":"node-1","members":[]})",
      R"({"magic":"meshfs-gossip","version":1,"sender":"node-1","members":[{"id":"node-1"}]})",
      R"({"magic":"meshfs-gossip","version":1,"sender":"node-1","members":"all"})",
      std::string(100000, '['),
      std::string(kMaxBodyBytes + 1, ' '),
  };
  // A well-formed message with one poisoned entry is refused as a whole.
  nlohmann::json poisoned = nlohmann::json::parse(old_message);
  poisoned["members"][1]["coord"]["vec"][0] = 1e300;
  garbage.push_back(poisoned.dump());
  for (const std::string& g : garbage) {
    Result<std::string> r = a.HandleGossip(g);
    ASSERT_FALSE(r.ok()) << g.substr(0, 80);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << g.substr(0, 80);
    EXPECT_EQ(a.MembersJson(), before) << g.substr(0, 80);
  }
  // Replayed gossip is well-formed but old: accepted, and changes nothing.
  Result<std::string> replay = a.HandleGossip(old_message);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_EQ(a.MembersJson(), before);
  EXPECT_EQ(a.incarnation(), inc);
  // The answer to a valid message is this node's table.
  auto answer = ParseGossip(*replay);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->sender, "node-0");
  EXPECT_EQ(answer->members.size(), 4u);
}

TEST(GossipAgent, HugeTableIsSampledToFitOneMessage) {
  SetLogLevel(LogLevel::kWarn);
  FakeClock clock;
  GossipAgent a(Self("node-a", 7000), Opts(), static_cast<GossipTransport*>(nullptr), &clock);
  // 4000 members with long ids and addresses: over 2 MiB as one table.
  const size_t n = 4000;
  for (size_t start = 0; start < n; start += 1000) {
    GossipMessage msg;
    for (size_t i = start; i < start + 1000; ++i) {
      Member m;
      m.id = "member-" + std::to_string(i) + "-" + std::string(100, 'x');
      m.addr = "host-" + std::to_string(i) + "." + std::string(150, 'h') + ".example:7000";
      m.incarnation = 1;
      m.heartbeat = 1;
      msg.members.push_back(std::move(m));
    }
    msg.sender = msg.members[0].id;
    const std::string body = EncodeGossip(msg);
    ASSERT_LE(body.size(), kMaxBodyBytes);
    ASSERT_TRUE(a.HandleGossip(body).ok());
  }
  EXPECT_EQ(a.MemberCounts().at("alive"), static_cast<int>(n + 1));
  // The reply to a small message is the table, sampled to fit.
  GossipMessage hello{"node-b", {}};
  Member b;
  b.id = "node-b";
  b.addr = "127.0.0.1:7001";
  hello.members.push_back(b);
  Result<std::string> reply = a.HandleGossip(EncodeGossip(hello));
  ASSERT_TRUE(reply.ok());
  EXPECT_LE(reply->size(), kMaxBodyBytes);
  auto parsed = ParseGossip(*reply);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->members[0].id, "node-a");
  EXPECT_GT(parsed->members.size(), n / 4);
  EXPECT_LT(parsed->members.size(), n);
}

TEST(GossipAgent, CapacityUpdatesSpread) {
  FakeClock clock;
  Cluster c(5, Opts(), &clock);
  ASSERT_LE(RunUntil(c, clock, 30, [&] { return c.Converged(); }), 30);
  c.agent(4).UpdateCapacity(1 << 30, 12345);
  const int rounds = RunUntil(c, clock, 10, [&] {
    for (const Member& m : c.agent(0).Members()) {
      if (m.id == "node-4") return m.free_bytes == 12345u && m.capacity_bytes == (1u << 30);
    }
    return false;
  });
  EXPECT_LE(rounds, 5);
}

TEST(GossipAgent, CoordinatesLearnedFromExchanges) {
  // 8 agents in four clusters; the RTT of every exchange is the true RTT.
  FakeClock clock;
  GossipOptions o = Opts();
  o.fanout = 3;
  Cluster c(8, o, &clock);
  auto true_rtt = [](int i, int j) {
    const double cx[4] = {0, 80, 0, 90};
    const double cy[4] = {0, 0, 60, 70};
    const double xi = cx[i % 4] + (i / 4) * 2, yi = cy[i % 4] + (i / 4);
    const double xj = cx[j % 4] + (j / 4) * 2, yj = cy[j % 4] + (j / 4);
    return std::hypot(xi - xj, yi - yj) + 1 + 0.25 * (i % 3) + 0.25 * (j % 3);
  };
  auto index = [](const std::string& addr) {
    return std::stoi(addr.substr(addr.rfind(':') + 1)) - 9000;
  };
  c.net.rtt = [&](const std::string& a, const std::string& b) {
    return true_rtt(index(a), index(b));
  };
  RunUntil(c, clock, 60, [] { return false; });
  ASSERT_TRUE(c.Converged());
  // Predictions from the coordinates each agent advertises in its table.
  const auto table = c.agent(0).Members();
  ASSERT_EQ(table.size(), 8u);
  std::vector<double> errors;
  for (const Member& a : table) {
    for (const Member& b : table) {
      if (a.id >= b.id) continue;
      const int i = std::stoi(a.id.substr(5)), j = std::stoi(b.id.substr(5));
      errors.push_back(std::fabs(Vivaldi::PredictRtt(a.coord, b.coord) - true_rtt(i, j)) /
                       true_rtt(i, j));
    }
  }
  std::sort(errors.begin(), errors.end());
  const double median = errors[errors.size() / 2];
  std::printf("coordinates from gossip RTTs, 8 agents, 60 rounds: median error %.3f\n", median);
  EXPECT_LT(median, 0.25);
  // The JSON form served in /v1/ping and /v1/info.
  const nlohmann::json coord = c.agent(0).CoordinateJson();
  EXPECT_TRUE(Coordinate::FromJson(coord).ok()) << coord.dump();
  EXPECT_LT(coord["error"].get<double>(), 0.5);
}

TEST(GossipAgent, BackgroundThreadConvergesAndStops) {
  // Real time: four agents with a 20 ms interval.
  GossipOptions o;
  o.interval_ms = 20;
  o.fanout = 2;
  o.fail_ms = 3000;
  o.cleanup_ms = 6000;
  SetLogLevel(LogLevel::kWarn);
  Network net;
  std::vector<std::unique_ptr<MemTransport>> transports;
  std::vector<std::unique_ptr<GossipAgent>> agents;
  for (int i = 0; i < 4; ++i) {
    transports.push_back(std::make_unique<MemTransport>(&net, Cluster::Addr(i)));
    agents.push_back(std::make_unique<GossipAgent>(Self(Cluster::Id(i), 9000 + i), o,
                                                   transports.back().get(), Clock::Real()));
    net.Attach(Cluster::Addr(i), agents.back().get());
  }
  const std::vector<PeerAddress> seeds{*PeerAddress::Parse(Cluster::Addr(0))};
  for (auto& a : agents) a->Start(seeds);
  agents[1]->Start(seeds);  // a second Start is a no-op
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool converged = false;
  while (!converged && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    converged = true;
    for (auto& a : agents) converged = converged && a->MemberCounts().at("alive") == 4;
  }
  EXPECT_TRUE(converged);
  for (auto& a : agents) a->Stop();
  const int delivered = net.delivered();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(net.delivered(), delivered) << "exchanges after Stop()";
  for (auto& a : agents) a->Stop();  // idempotent
}

}  // namespace
}  // namespace meshfs::net

// Vivaldi coordinates: the update rule on synthetic latency spaces, height
// vectors, noise, and rejection of bad samples.
#include "meshfs/net/vivaldi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace meshfs::net {
namespace {

// A synthetic network: true positions in a plane plus an access-link delay
// per node, so the true RTT is ||pi - pj|| + ai + aj (milliseconds).
struct Space {
  std::vector<std::array<double, 2>> pos;
  std::vector<double> access;

  size_t size() const { return pos.size(); }
  double Rtt(size_t i, size_t j) const {
    return std::hypot(pos[i][0] - pos[j][0], pos[i][1] - pos[j][1]) + access[i] + access[j];
  }
};

// Four clusters (think: four cities) 40-120 ms apart, nodes spread 5 ms
// around each center, access links 0.5-5 ms.
Space FourClusters(int per_cluster, std::mt19937_64& rng) {
  const std::array<std::array<double, 2>, 4> centers{{{0, 0}, {80, 0}, {0, 60}, {90, 70}}};
  std::normal_distribution<double> spread(0, 5);
  std::uniform_real_distribution<double> link(0.5, 5);
  Space s;
  for (const auto& c : centers) {
    for (int i = 0; i < per_cluster; ++i) {
      s.pos.push_back({c[0] + spread(rng), c[1] + spread(rng)});
      s.access.push_back(link(rng));
    }
  }
  return s;
}

using Nodes = std::vector<std::unique_ptr<Vivaldi>>;

Nodes MakeNodes(size_t n) {
  Nodes nodes;
  for (size_t i = 0; i < n; ++i) {
    nodes.push_back(std::make_unique<Vivaldi>(Vivaldi::Options{.seed = 1000 + i}));
  }
  return nodes;
}

// One round: every node samples the RTT to a few random others (as gossip
// exchanges with fanout 3 would), each sample scaled by `noise(rng)`.
template <typename Noise>
void Round(const Space& s, Nodes& nodes, std::mt19937_64& rng, Noise noise, bool filter = false) {
  std::uniform_int_distribution<size_t> pick(0, s.size() - 1);
  for (size_t i = 0; i < s.size(); ++i) {
    for (int k = 0; k < 3; ++k) {
      size_t j = pick(rng);
      if (j == i) continue;
      const double rtt = s.Rtt(i, j) * noise(rng);
      if (filter) {
        ASSERT_TRUE(nodes[i]->Update(nodes[j]->coordinate(), rtt, std::to_string(j)).ok());
      } else {
        ASSERT_TRUE(nodes[i]->Update(nodes[j]->coordinate(), rtt).ok());
      }
    }
  }
}

void Rounds(int count, const Space& s, Nodes& nodes, std::mt19937_64& rng) {
  for (int r = 0; r < count; ++r) Round(s, nodes, rng, [](std::mt19937_64&) { return 1.0; });
}

// Median over all pairs of |predicted - true| / true.
double MedianRelativeError(const Space& s, const Nodes& nodes) {
  std::vector<double> errors;
  for (size_t i = 0; i < s.size(); ++i) {
    for (size_t j = i + 1; j < s.size(); ++j) {
      const double predicted = Vivaldi::PredictRtt(nodes[i]->coordinate(), nodes[j]->coordinate());
      errors.push_back(std::fabs(predicted - s.Rtt(i, j)) / s.Rtt(i, j));
    }
  }
  std::nth_element(errors.begin(), errors.begin() + errors.size() / 2, errors.end());
  return errors[errors.size() / 2];
}

TEST(Vivaldi, PredictRttIsDistancePlusHeights) {
  Coordinate a;
  a.vec = {0, 0};
  a.height = 1;
  Coordinate b;
  b.vec = {3, 4};
  b.height = 2.5;
  EXPECT_DOUBLE_EQ(Vivaldi::PredictRtt(a, b), 5 + 1 + 2.5);
  EXPECT_DOUBLE_EQ(Vivaldi::PredictRtt(b, a), Vivaldi::PredictRtt(a, b));
  EXPECT_DOUBLE_EQ(Vivaldi::PredictRtt(a, a), 2);
}

TEST(Vivaldi, StartsAtOriginWithMaxError) {
  Vivaldi v;
  const Coordinate c = v.coordinate();
  EXPECT_EQ(c.vec[0], 0);
  EXPECT_EQ(c.vec[1], 0);
  EXPECT_DOUBLE_EQ(c.height, kMinHeightMs);
  EXPECT_DOUBLE_EQ(c.error, kMaxError);
}

TEST(Vivaldi, JsonRoundTripAndForm) {
  Coordinate c;
  c.vec = {12.5, -3};
  c.height = 0.25;
  c.error = 0.4;
  const nlohmann::json j = c.ToJson();
  EXPECT_EQ(j.dump(), R"({"error":0.4,"height":0.25,"vec":[12.5,-3.0]})");
  auto back = Coordinate::FromJson(j);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, c);
  // Integers are numbers too.
  EXPECT_TRUE(
      Coordinate::FromJson(nlohmann::json::parse(R"({"vec":[1,2],"height":0,"error":1})")).ok());
  for (const char* bad :
       {R"([])", R"({"vec":[1,2],"height":0})", R"({"vec":[1],"height":0,"error":1})",
        R"({"vec":[1,"2"],"height":0,"error":1})", R"({"vec":{},"height":0,"error":1})",
        R"({"vec":[1,2],"height":-1,"error":1})", R"({"vec":[1,2],"height":0,"error":-1})",
        R"({"vec":[1e9,2],"height":0,"error":1})", R"({"vec":[1,2],"height":1e9,"error":1})",
        R"({"vec":[1,2],"height":null,"error":1})", R"({"vec":[1,2],"height":true,"error":1})"}) {
    EXPECT_FALSE(Coordinate::FromJson(nlohmann::json::parse(bad)).ok()) << bad;
  }
}

TEST(Vivaldi, RejectsBadSamplesWithoutMoving) {
  Vivaldi v;
  Coordinate remote;
  remote.vec = {10, 10};
  remote.error = 0.5;
  ASSERT_TRUE(v.Update(remote, 20).ok());
  const Coordinate before = v.coordinate();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double rtt : {nan, inf, -inf, 0.0, -5.0, kMaxRttMs * 2, 1e300}) {
    Status s = v.Update(remote, rtt);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << rtt;
  }
  Coordinate absurd = remote;
  absurd.vec[0] = nan;
  EXPECT_FALSE(v.Update(absurd, 10).ok());
  absurd = remote;
  absurd.vec[1] = 1e12;
  EXPECT_FALSE(v.Update(absurd, 10).ok());
  absurd = remote;
  absurd.height = -3;
  EXPECT_FALSE(v.Update(absurd, 10).ok());
  absurd = remote;
  absurd.height = inf;
  EXPECT_FALSE(v.Update(absurd, 10).ok());
  absurd = remote;
  absurd.error = nan;
  EXPECT_FALSE(v.Update(absurd, 10).ok());
  EXPECT_EQ(v.coordinate(), before);
  EXPECT_FALSE(v.Reset(absurd).ok());
  EXPECT_EQ(v.coordinate(), before);
}

TEST(Vivaldi, TwoNodesLearnTheirDistance) {
  Vivaldi a(Vivaldi::Options{.seed = 1});
  Vivaldi b(Vivaldi::Options{.seed = 2});
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a.Update(b.coordinate(), 30).ok());
    ASSERT_TRUE(b.Update(a.coordinate(), 30).ok());
  }
  EXPECT_NEAR(Vivaldi::PredictRtt(a.coordinate(), b.coordinate()), 30, 1.5);
  // Confidence grows as predictions match.
  EXPECT_LT(a.coordinate().error, 0.1);
  EXPECT_LT(b.coordinate().error, 0.1);
}

TEST(Vivaldi, CoincidingNodesAreSeparated) {
  // Both at the origin: the update must pick a direction rather than stay put.
  Vivaldi a(Vivaldi::Options{.seed = 7});
  Vivaldi b(Vivaldi::Options{.seed = 8});
  ASSERT_TRUE(a.Update(b.coordinate(), 50).ok());
  const Coordinate c = a.coordinate();
  EXPECT_GT(std::hypot(c.vec[0], c.vec[1]) + c.height, 1.0);
  EXPECT_TRUE(c.IsSane());
}

TEST(Vivaldi, FourClustersConverge) {
  std::mt19937_64 rng(42);
  const Space s = FourClusters(8, rng);
  Nodes nodes = MakeNodes(s.size());
  const double initial = MedianRelativeError(s, nodes);
  Rounds(200, s, nodes, rng);
  const double median = MedianRelativeError(s, nodes);
  RecordProperty("median_relative_error", std::to_string(median));
  std::printf("4 clusters x 8 nodes, 200 rounds: median relative error %.4f (start %.3f)\n", median,
              initial);
  EXPECT_GT(initial, 0.5);
  EXPECT_LT(median, 0.1);
  // Nodes of one cluster sit near each other, clusters apart.
  EXPECT_LT(Vivaldi::PredictRtt(nodes[0]->coordinate(), nodes[1]->coordinate()), 30);
  EXPECT_GT(Vivaldi::PredictRtt(nodes[0]->coordinate(), nodes[8]->coordinate()), 60);
}

TEST(Vivaldi, HeightAbsorbsAccessLinkDelay) {
  // 16 nodes on a grid with 1 ms links, and one node in the middle behind a
  // 40 ms access link: no point of the plane is 40+ ms from every grid node
  // while near its center, so only the height can explain it.
  Space s;
  for (int x = 0; x < 4; ++x) {
    for (int y = 0; y < 4; ++y) {
      s.pos.push_back({x * 20.0, y * 20.0});
      s.access.push_back(1);
    }
  }
  s.pos.push_back({30, 30});
  s.access.push_back(40);
  Nodes nodes = MakeNodes(s.size());
  std::mt19937_64 rng(3);
  Rounds(300, s, nodes, rng);
  const Coordinate slow = nodes.back()->coordinate();
  double max_other = 0;
  for (size_t i = 0; i + 1 < nodes.size(); ++i) {
    max_other = std::max(max_other, nodes[i]->coordinate().height);
  }
  std::printf("height of the 40 ms node %.2f ms, highest other %.2f ms\n", slow.height, max_other);
  EXPECT_GT(slow.height, 25);
  EXPECT_LT(max_other, 10);
  EXPECT_LT(MedianRelativeError(s, nodes), 0.1);
}

struct NoisyResult {
  std::vector<double> medians;  // median relative error after each block of 50 rounds
  double median_change;         // median relative change of pair predictions over 200 rounds
};

// Four clusters with +-20% jitter on every sample and 5% of samples 3x
// spikes (a queue, a retransmission): 200 rounds to settle, then 200 more.
NoisyResult RunNoisy(bool filter) {
  std::mt19937_64 rng(11);
  const Space s = FourClusters(8, rng);
  Nodes nodes = MakeNodes(s.size());
  auto noise = [](std::mt19937_64& r) {
    std::uniform_real_distribution<double> u(0, 1);
    double f = 0.8 + 0.4 * u(r);
    if (u(r) < 0.05) f *= 3;
    return f;
  };
  for (int r = 0; r < 200; ++r) Round(s, nodes, rng, noise, filter);
  std::vector<Coordinate> before;
  for (const auto& n : nodes) before.push_back(n->coordinate());
  NoisyResult out;
  for (int block = 0; block < 4; ++block) {
    for (int r = 0; r < 50; ++r) Round(s, nodes, rng, noise, filter);
    out.medians.push_back(MedianRelativeError(s, nodes));
  }
  // Predictions ignore the free translation and rotation of the whole
  // system, so their change measures how much nodes really move.
  std::vector<double> changes;
  for (size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_TRUE(nodes[i]->coordinate().IsSane());
    for (size_t j = i + 1; j < nodes.size(); ++j) {
      const double now = Vivaldi::PredictRtt(nodes[i]->coordinate(), nodes[j]->coordinate());
      const double then = Vivaldi::PredictRtt(before[i], before[j]);
      changes.push_back(std::fabs(now - then) / s.Rtt(i, j));
    }
  }
  std::sort(changes.begin(), changes.end());
  out.median_change = changes[changes.size() / 2];
  std::printf("noisy, %s: median errors %.3f %.3f %.3f %.3f, median prediction change %.3f\n",
              filter ? "median filter" : "raw samples", out.medians[0], out.medians[1],
              out.medians[2], out.medians[3], out.median_change);
  return out;
}

TEST(Vivaldi, StableUnderNoisyRtts) {
  const NoisyResult raw = RunNoisy(false);
  for (double m : raw.medians) EXPECT_LT(m, 0.25);
  EXPECT_LT(raw.median_change, 0.3);
}

TEST(Vivaldi, LatencyFilterDampsSpikes) {
  const NoisyResult raw = RunNoisy(false);
  const NoisyResult filtered = RunNoisy(true);
  for (double m : filtered.medians) EXPECT_LT(m, 0.15);
  EXPECT_LT(filtered.median_change, 0.1);
  EXPECT_LT(filtered.median_change, raw.median_change);
}

TEST(Vivaldi, LatencyFilterIgnoresOneSpike) {
  Vivaldi v(Vivaldi::Options{.seed = 5});
  Coordinate remote;
  remote.vec = {0, 0};
  remote.error = 0.05;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(v.Update(remote, 20, "peer-a").ok());
  const double settled = Vivaldi::PredictRtt(v.coordinate(), remote);
  EXPECT_NEAR(settled, 20, 1);
  ASSERT_TRUE(v.Update(remote, 2000, "peer-a").ok());  // one spike
  EXPECT_NEAR(Vivaldi::PredictRtt(v.coordinate(), remote), settled, 1);
  // Bad samples are refused before they reach the filter.
  EXPECT_FALSE(v.Update(remote, std::nan(""), "peer-a").ok());
  EXPECT_FALSE(v.Update(remote, -1, "peer-a").ok());
}

}  // namespace
}  // namespace meshfs::net

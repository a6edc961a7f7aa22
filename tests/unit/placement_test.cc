// Placement: determinism, host spread, capacity-proportional distribution,
// minimal movement when a node joins or leaves.
#include "meshfs/net/placement.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace meshfs::net {
namespace {

SliceId Nth(int i) {
  std::string s = "slice-";
  s += std::to_string(i);
  return SliceId::ForBlob(s);
}

// Concatenation without operator+ chains (gcc 12 -Wrestrict false positives).
std::string Cat(std::string a, const std::string& b, const std::string& c = "") {
  a += b;
  a += c;
  return a;
}

std::vector<PlacementCandidate> Nodes(int n, const std::string& host = "127.0.0.1") {
  std::vector<PlacementCandidate> c;
  for (int i = 0; i < n; ++i) {
    c.push_back({Cat("node-", std::to_string(i)), Cat(host, ":", std::to_string(7000 + i)), 0});
  }
  return c;
}

std::vector<std::string> TopIds(const SliceId& id, const std::vector<PlacementCandidate>& c,
                                size_t r) {
  std::vector<std::string> out;
  for (size_t i : PlacementOrder(id, c)) {
    if (out.size() == r) break;
    out.push_back(c[i].id);
  }
  return out;
}

TEST(Placement, HostOf) {
  EXPECT_EQ(HostOf("10.0.0.1:7000"), "10.0.0.1");
  EXPECT_EQ(HostOf("[::1]:7000"), "::1");
  EXPECT_EQ(HostOf("example.org:1"), "example.org");
}

TEST(Placement, DeterministicPermutationIndependentOfInputOrder) {
  auto c = Nodes(7);
  auto reversed = c;
  std::reverse(reversed.begin(), reversed.end());
  for (int i = 0; i < 50; ++i) {
    auto order = PlacementOrder(Nth(i), c);
    ASSERT_EQ(order.size(), c.size());
    EXPECT_EQ(std::set<size_t>(order.begin(), order.end()).size(), c.size());
    EXPECT_EQ(order, PlacementOrder(Nth(i), c));
    EXPECT_EQ(TopIds(Nth(i), c, 7), TopIds(Nth(i), reversed, 7));
  }
  // Different slices get different orders.
  std::set<std::vector<std::string>> distinct;
  for (int i = 0; i < 50; ++i) distinct.insert(TopIds(Nth(i), c, 3));
  EXPECT_GT(distinct.size(), 20u);
}

TEST(Placement, SpreadsOverDistinctHostsFirst) {
  // Host A has 4 nodes, B and C one each: the first three copies go to three
  // hosts for every slice.
  std::vector<PlacementCandidate> c = {
      {"a1", "10.0.0.1:1", 0}, {"a2", "10.0.0.1:2", 0}, {"a3", "10.0.0.1:3", 0},
      {"a4", "10.0.0.1:4", 0}, {"b", "10.0.0.2:1", 0},  {"c", "10.0.0.3:1", 0}};
  for (int i = 0; i < 200; ++i) {
    auto order = PlacementOrder(Nth(i), c);
    std::set<std::string> hosts;
    for (size_t k = 0; k < 3; ++k) hosts.insert(HostOf(c[order[k]].addr));
    EXPECT_EQ(hosts.size(), 3u) << "slice " << i;
  }
}

TEST(Placement, OneHostFallsBackToDistinctNodes) {
  auto c = Nodes(5);
  for (int i = 0; i < 100; ++i) {
    auto top = TopIds(Nth(i), c, 3);
    EXPECT_EQ(std::set<std::string>(top.begin(), top.end()).size(), 3u);
  }
}

TEST(Placement, FirstChoiceProportionalToCapacity) {
  // Capacities 1:2:3:4 -> first-choice shares 10/20/30/40 %.
  std::vector<PlacementCandidate> c;
  for (int i = 0; i < 4; ++i) {
    c.push_back({Cat("n", std::to_string(i)), Cat("h", std::to_string(i), ":1"),
                 static_cast<uint64_t>(i + 1) << 30});
  }
  constexpr int kSlices = 20000;
  std::map<size_t, int> wins;
  for (int i = 0; i < kSlices; ++i) wins[PlacementOrder(Nth(i), c)[0]]++;
  for (size_t k = 0; k < 4; ++k) {
    const double share = static_cast<double>(wins[k]) / kSlices;
    const double want = static_cast<double>(k + 1) / 10.0;
    EXPECT_NEAR(share, want, 0.02) << "node " << k;
  }
}

TEST(Placement, UnknownCapacityCountsAsTheMean) {
  std::vector<PlacementCandidate> c = {
      {"a", "h1:1", 1ull << 30}, {"b", "h2:1", 3ull << 30}, {"c", "h3:1", 0}};
  constexpr int kSlices = 12000;
  int c_wins = 0;
  for (int i = 0; i < kSlices; ++i) c_wins += PlacementOrder(Nth(i), c)[0] == 2;
  EXPECT_NEAR(static_cast<double>(c_wins) / kSlices, 2.0 / 6.0, 0.03);
}

TEST(Placement, MinimalMovementWhenANodeJoinsOrLeaves) {
  auto before = Nodes(10);
  auto after = before;
  after.push_back({"node-new", "127.0.0.1:7999", 0});
  constexpr int kSlices = 5000;
  int moved_first = 0;
  for (int i = 0; i < kSlices; ++i) {
    const auto b = TopIds(Nth(i), before, 1)[0];
    const auto a = TopIds(Nth(i), after, 1)[0];
    if (a != b) {
      moved_first++;
      EXPECT_EQ(a, "node-new");  // only slices won by the newcomer move
    }
  }
  // Expect about 1/11 of first choices to move.
  EXPECT_NEAR(static_cast<double>(moved_first) / kSlices, 1.0 / 11, 0.02);

  // A node leaves: only the replica sets that contained it change, and only
  // by replacing it.
  auto gone = before;
  gone.erase(gone.begin() + 3);
  for (int i = 0; i < 2000; ++i) {
    const auto b = TopIds(Nth(i), before, 3);
    const auto a = TopIds(Nth(i), gone, 3);
    const bool had = std::find(b.begin(), b.end(), "node-3") != b.end();
    if (!had) {
      EXPECT_EQ(a, b);
    } else {
      int kept = 0;
      for (auto& x : b) kept += std::find(a.begin(), a.end(), x) != a.end();
      EXPECT_EQ(kept, 2);
    }
  }
}

}  // namespace
}  // namespace meshfs::net

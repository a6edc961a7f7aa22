// ReplicaSelector: measured RTT beats prediction beats default; reputation
// drops on failures and bad blobs and recovers with time.
#include "meshfs/net/replica_selector.h"

#include <gtest/gtest.h>

namespace meshfs::net {
namespace {

TEST(ReplicaSelector, OrdersByMeasuredRtt) {
  FakeClock clock;
  ReplicaSelector sel({}, &clock);
  sel.RecordRtt("a:1", 40, true);
  sel.RecordRtt("b:1", 5, true);
  sel.RecordRtt("c:1", 20, true);
  EXPECT_EQ(sel.Order({"a:1", "b:1", "c:1"}), (std::vector<std::string>{"b:1", "c:1", "a:1"}));
  // EWMA: one fast sample does not flip a slow peer entirely.
  sel.RecordRtt("a:1", 1, true);
  EXPECT_GT(sel.Score("a:1").rtt_ms, 20);
  EXPECT_LT(sel.Score("a:1").rtt_ms, 40);
}

TEST(ReplicaSelector, UsesVivaldiPredictionWhenNothingMeasured) {
  FakeClock clock;
  ReplicaSelector sel({}, &clock);
  Coordinate near, far;
  near.vec = {1, 0};
  near.height = 1;
  far.vec = {300, 0};
  far.height = 1;
  sel.SetPeerCoordinate("near:1", near);
  sel.SetPeerCoordinate("far:1", far);
  EXPECT_EQ(sel.Order({"far:1", "unknown:1", "near:1"}),
            (std::vector<std::string>{"near:1", "unknown:1", "far:1"}));
  EXPECT_GT(sel.Score("near:1").predicted_rtt_ms, 0);
  EXPECT_LT(sel.Score("near:1").predicted_rtt_ms, sel.Score("far:1").predicted_rtt_ms);
  EXPECT_EQ(sel.ExpectedRttMs("unknown:1"), 100);
  // Measurements against a peer with a coordinate move the client's own
  // coordinate (Vivaldi) away from the origin.
  const Coordinate before = sel.SelfCoordinate();
  for (int i = 0; i < 10; ++i) sel.RecordRtt("far:1", 10, true);
  EXPECT_NE(sel.SelfCoordinate(), before);
}

TEST(ReplicaSelector, CorruptBlobCostsMoreThanAFailureAndBothRecover) {
  FakeClock clock;
  ReplicaSelector::Options o;
  o.recovery_half_life_s = 10;
  ReplicaSelector sel(o, &clock);
  for (auto p : {"a:1", "b:1", "c:1"}) sel.RecordRtt(p, 10, true);
  sel.RecordFailure("a:1");
  sel.RecordCorrupt("b:1");
  EXPECT_NEAR(sel.Score("a:1").reputation, 0.5, 1e-9);
  EXPECT_NEAR(sel.Score("b:1").reputation, 0.05, 1e-9);
  EXPECT_EQ(sel.Score("b:1").corrupt, 1u);
  EXPECT_EQ(sel.Order({"b:1", "a:1", "c:1"}), (std::vector<std::string>{"c:1", "a:1", "b:1"}));
  // A much faster but corrupt peer still loses to an honest slower one.
  sel.RecordRtt("b:1", 1, true);
  sel.RecordRtt("b:1", 1, true);
  EXPECT_EQ(sel.Order({"b:1", "c:1"})[0], "c:1");
  // Recovery: after one half-life the deficit halves; after many, ~1.
  clock.Advance(10'000'000);
  EXPECT_NEAR(sel.Score("a:1").reputation, 0.75, 1e-6);
  clock.Advance(200'000'000);
  EXPECT_GT(sel.Score("b:1").reputation, 0.99);
  // A failed request reported through RecordRtt also counts.
  sel.RecordRtt("c:1", 0, false);
  EXPECT_EQ(sel.Score("c:1").failures, 1u);
}

TEST(ReplicaSelector, ThroughputBreaksTiesBetweenEqualRtts) {
  FakeClock clock;
  ReplicaSelector sel({}, &clock);
  sel.RecordRtt("slow:1", 10, true);
  sel.RecordRtt("fast:1", 10, true);
  sel.RecordTransfer("slow:1", 1 << 20, 1000);  // 1 MiB/s
  sel.RecordTransfer("fast:1", 1 << 20, 10);    // 100 MiB/s
  EXPECT_EQ(sel.Order({"slow:1", "fast:1"})[0], "fast:1");
  EXPECT_GT(sel.Score("fast:1").throughput_bps, sel.Score("slow:1").throughput_bps);
}

TEST(ReplicaSelector, IgnoresAbsurdSamples) {
  ReplicaSelector sel;
  sel.RecordRtt("a:1", -5, true);
  sel.RecordRtt("a:1", 1e12, true);
  EXPECT_EQ(sel.Score("a:1").rtt_ms, -1);
  Coordinate bad;
  bad.vec = {1e300, 0};
  sel.SetPeerCoordinate("a:1", bad);
  EXPECT_EQ(sel.Score("a:1").predicted_rtt_ms, -1);
}

}  // namespace
}  // namespace meshfs::net

#include <gtest/gtest.h>

#include "testing/memory_store.h"

namespace meshfs::testing {
namespace {

TEST(MemoryStore, RejectsMismatchedAddressAndRoundTrips) {
  MemoryStore store;
  const SliceId id = SliceId::ForBlob("blob");
  EXPECT_EQ(store.Put(id, "other").code(), Code::kCorruption);
  EXPECT_FALSE(*store.Contains(id));
  ASSERT_TRUE(store.Put(id, "blob").ok());
  EXPECT_EQ(*store.Get(id), "blob");
  FaultyStore faulty(&store);
  faulty.FailWith(Code::kUnavailable);
  EXPECT_EQ(faulty.Get(id).status().code(), Code::kUnavailable);
  faulty.FailWith(Code::kOk);
  EXPECT_EQ(*faulty.Get(id), "blob");
}

}  // namespace
}  // namespace meshfs::testing

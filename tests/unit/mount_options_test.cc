// Mount option parsing: defaults (long kernel cache timeouts: the mount is
// the only writer of its metadata), overrides, and clear errors.
#include "meshfs/fs/mount_options.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace meshfs::fs {
namespace {

TEST(MountOptions, KernelCachesNamesAndAttributesForAnHourByDefault) {
  auto o = ParseMountOptions({});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->attr_timeout_s, 3600.0);
  EXPECT_EQ(o->entry_timeout_s, 3600.0);
  EXPECT_FALSE(o->writeback_cache);
  EXPECT_NE(std::find(o->fuse_options.begin(), o->fuse_options.end(), "default_permissions"),
            o->fuse_options.end());
}

// The kernel's write-back cache is off unless asked for (docs/mount.md says
// why); either word can be given, the last one wins.
TEST(MountOptions, WritebackCacheIsOptIn) {
  auto on = ParseMountOptions({"writeback_cache"});
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->writeback_cache);
  auto off = ParseMountOptions({"writeback_cache,no_writeback_cache"});
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->writeback_cache);
}

TEST(MountOptions, TimeoutsCanBeSetAndAreBounded) {
  auto o = ParseMountOptions({"attr_timeout=0.5,entry_timeout=0", "ro"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->attr_timeout_s, 0.5);
  EXPECT_EQ(o->entry_timeout_s, 0.0);
  EXPECT_TRUE(o->read_only);
  for (const char* bad : {"attr_timeout=-1", "entry_timeout=86401", "attr_timeout=x",
                          "entry_timeout="}) {
    auto r = ParseMountOptions({bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.status().Is(Code::kInvalidArgument)) << bad;
    EXPECT_NE(r.status().message().find("timeout"), std::string::npos) << r.status().ToString();
  }
}

}  // namespace
}  // namespace meshfs::fs

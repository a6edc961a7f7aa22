// POSIX ACL xattrs: the mode an access ACL implies, and inheritance from a
// default ACL, against what Linux's posix_acl_create does.
#include "meshfs/fs/posix_acl.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

namespace meshfs::fs {
namespace {

struct E {
  uint16_t tag, perm;
  uint32_t id;
};
constexpr uint16_t kUserObj = 1, kUser = 2, kGroupObj = 4, kGroup = 8, kMask = 0x10,
                   kOther = 0x20;
constexpr uint32_t kUndefined = 0xffffffff;

std::string Acl(std::initializer_list<E> entries, uint32_t version = 2) {
  std::string s;
  auto put = [&](uint32_t x, int n) {
    for (int k = 0; k < n; ++k) s.push_back(static_cast<char>((x >> (8 * k)) & 0xff));
  };
  put(version, 4);
  for (const E& e : entries) {
    put(e.tag, 2);
    put(e.perm, 2);
    put(e.id, 4);
  }
  return s;
}

TEST(PosixAcl, ModeOfAnAccessAcl) {
  EXPECT_EQ(AclMode(Acl({{kUserObj, 7, kUndefined}, {kGroupObj, 5, kUndefined},
                         {kOther, 4, kUndefined}})),
            0754u);
  // With a mask, the group bits are the mask's.
  EXPECT_EQ(AclMode(Acl({{kUserObj, 6, kUndefined}, {kUser, 7, 1234}, {kGroupObj, 4, kUndefined},
                         {kMask, 6, kUndefined}, {kOther, 0, kUndefined}})),
            0660u);
}

TEST(PosixAcl, MalformedAclsAreRefused) {
  EXPECT_FALSE(AclMode(""));
  EXPECT_FALSE(AclMode(std::string(7, '\0')));
  EXPECT_FALSE(AclMode(Acl({{kUserObj, 7, kUndefined}, {kGroupObj, 5, kUndefined},
                            {kOther, 4, kUndefined}},
                           1)));  // wrong version
  EXPECT_FALSE(AclMode(Acl({{kUserObj, 7, kUndefined}, {kOther, 4, kUndefined}})));  // no group
  EXPECT_FALSE(AclMode(Acl({{kUserObj, 7, kUndefined}, {kUser, 7, 5}, {kGroupObj, 5, kUndefined},
                            {kOther, 4, kUndefined}})));  // named entry without a mask
  EXPECT_FALSE(AclMode(Acl({{kUserObj, 9, kUndefined}, {kGroupObj, 5, kUndefined},
                            {kOther, 4, kUndefined}})));  // perm beyond rwx
  EXPECT_FALSE(AclMode(Acl({{kUserObj, 7, kUndefined}, {0x40, 5, kUndefined},
                            {kGroupObj, 5, kUndefined}, {kOther, 4, kUndefined}})));  // tag
  EXPECT_FALSE(InheritAcl("garbage", 0644, false));
}

// setfacl -d -m u:1234:rwx,g::r-x,o::--- DIR, then open(O_CREAT, 0666) in it:
// getfacl shows user::rw-, user:1234:rwx #effective:rw-, group::r-x
// #effective:r--, mask::rw-, other::---, and the mode is 0660.
TEST(PosixAcl, AFileInheritsTheDefaultAclCutToItsMode) {
  const std::string def =
      Acl({{kUserObj, 7, kUndefined}, {kUser, 7, 1234}, {kGroupObj, 5, kUndefined},
           {kMask, 7, kUndefined}, {kOther, 0, kUndefined}});
  auto got = InheritAcl(def, 0666, /*is_dir=*/false);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->mode, 0660u);
  ASSERT_TRUE(got->access);
  EXPECT_EQ(*got->access,
            Acl({{kUserObj, 6, kUndefined}, {kUser, 7, 1234}, {kGroupObj, 5, kUndefined},
                 {kMask, 6, kUndefined}, {kOther, 0, kUndefined}}));
  EXPECT_EQ(AclMode(*got->access), 0660u);
  EXPECT_FALSE(got->default_acl);  // files have no default ACL
}

TEST(PosixAcl, ADirectoryAlsoInheritsTheDefaultAcl) {
  const std::string def =
      Acl({{kUserObj, 7, kUndefined}, {kGroup, 5, 42}, {kGroupObj, 7, kUndefined},
           {kMask, 7, kUndefined}, {kOther, 5, kUndefined}});
  auto got = InheritAcl(def, 0750, /*is_dir=*/true);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->mode, 0750u);
  ASSERT_TRUE(got->default_acl);
  EXPECT_EQ(*got->default_acl, def);
  ASSERT_TRUE(got->access);
  EXPECT_EQ(AclMode(*got->access), 0750u);
}

// A default ACL of only the three base entries gives a mode, no access ACL,
// and ignores the umask: 0666 with default u::rw,g::rw,o::r gives 0664.
TEST(PosixAcl, ABaseOnlyDefaultAclGivesJustAMode) {
  const std::string def =
      Acl({{kUserObj, 6, kUndefined}, {kGroupObj, 6, kUndefined}, {kOther, 4, kUndefined}});
  auto got = InheritAcl(def, 0666, false);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->mode, 0664u);
  EXPECT_FALSE(got->access);
  auto narrow = InheritAcl(def, 0600, false);  // the creator's mode still limits it
  ASSERT_TRUE(narrow);
  EXPECT_EQ(narrow->mode, 0600u);
}

}  // namespace
}  // namespace meshfs::fs

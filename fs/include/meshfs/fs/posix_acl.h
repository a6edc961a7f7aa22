// POSIX ACLs in their Linux xattr form (system.posix_acl_access and
// system.posix_acl_default: a little-endian u32 version 2, then entries of
// {u16 tag, u16 perm, u32 id}), as far as the mount needs to understand them:
// the mode an access ACL implies, and what a new file or directory inherits
// from its parent's default ACL. The kernel's FUSE client leaves both to the
// filesystem. Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meshfs::fs {

inline constexpr std::string_view kAclAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kAclDefaultXattr = "system.posix_acl_default";

// The permission bits (0777) an access ACL implies: owner from USER_OBJ,
// group from MASK (or GROUP_OBJ without one), other from OTHER. nullopt if
// `acl` is not a well-formed ACL.
std::optional<uint32_t> AclMode(std::string_view acl);

// What a new inode gets in a directory with a default ACL.
struct InheritedAcl {
  uint32_t mode = 0;                   // permission bits (0777), umask not applied
  std::optional<std::string> access;   // the access ACL, unless the mode says it all
  std::optional<std::string> default_acl;  // directories inherit the default ACL
};

// Applies a parent's default ACL to a new inode created with permission
// bits `mode` (what the caller asked for, before any umask), as Linux's
// posix_acl_create does: the ACL's owner, group-or-mask and other entries
// are cut to `mode`, and `mode` to them. nullopt if `parent_default` is not
// a well-formed ACL (the caller then falls back to the umask).
std::optional<InheritedAcl> InheritAcl(std::string_view parent_default, uint32_t mode,
                                       bool is_dir);

}  // namespace meshfs::fs

#include "meshfs/fs/posix_acl.h"

#include <vector>

namespace meshfs::fs {
namespace {

constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08,
                   kMask = 0x10, kOther = 0x20;
constexpr uint32_t kVersion = 2;

struct Entry {
  uint16_t tag;
  uint16_t perm;
  uint32_t id;
};

uint32_t Le(std::string_view v, size_t i, int bytes) {
  uint32_t x = 0;
  for (int k = bytes - 1; k >= 0; --k) x = (x << 8) | static_cast<uint8_t>(v[i + k]);
  return x;
}

void PutLe(std::string* out, uint32_t x, int bytes) {
  for (int k = 0; k < bytes; ++k) out->push_back(static_cast<char>((x >> (8 * k)) & 0xff));
}

// Well-formed: version 2, each of USER_OBJ, GROUP_OBJ and OTHER once, MASK at
// most once and required with named entries, known tags only.
std::optional<std::vector<Entry>> Parse(std::string_view v) {
  if (v.size() < 4 || (v.size() - 4) % 8 != 0 || Le(v, 0, 4) != kVersion) return std::nullopt;
  std::vector<Entry> out;
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  for (size_t i = 4; i < v.size(); i += 8) {
    Entry e{static_cast<uint16_t>(Le(v, i, 2)), static_cast<uint16_t>(Le(v, i + 2, 2)),
            Le(v, i + 4, 4)};
    if (e.perm & ~7u) return std::nullopt;
    switch (e.tag) {
      case kUserObj: ++user_obj; break;
      case kGroupObj: ++group_obj; break;
      case kOther: ++other; break;
      case kMask: ++mask; break;
      case kUser:
      case kGroup: ++named; break;
      default: return std::nullopt;
    }
    out.push_back(e);
  }
  if (user_obj != 1 || group_obj != 1 || other != 1 || mask > 1) return std::nullopt;
  if (named > 0 && mask == 0) return std::nullopt;
  return out;
}

std::string Serialize(const std::vector<Entry>& entries) {
  std::string out;
  out.reserve(4 + 8 * entries.size());
  PutLe(&out, kVersion, 4);
  for (const Entry& e : entries) {
    PutLe(&out, e.tag, 2);
    PutLe(&out, e.perm, 2);
    PutLe(&out, e.id, 4);
  }
  return out;
}

}  // namespace

std::optional<uint32_t> AclMode(std::string_view acl) {
  auto entries = Parse(acl);
  if (!entries) return std::nullopt;
  uint32_t user = 0, group = 0, other = 0;
  std::optional<uint32_t> mask;
  for (const Entry& e : *entries) {
    if (e.tag == kUserObj) user = e.perm;
    else if (e.tag == kGroupObj) group = e.perm;
    else if (e.tag == kMask) mask = e.perm;
    else if (e.tag == kOther) other = e.perm;
  }
  return (user << 6) | ((mask ? *mask : group) << 3) | other;
}

std::optional<InheritedAcl> InheritAcl(std::string_view parent_default, uint32_t mode,
                                       bool is_dir) {
  auto entries = Parse(parent_default);
  if (!entries) return std::nullopt;
  InheritedAcl out;
  if (is_dir) out.default_acl = std::string(parent_default);
  // posix_acl_create_masq: each of owner, group-or-mask and other keeps only
  // what both the ACL entry and `mode` allow.
  uint32_t m = mode & 0777;
  bool equivalent = true;
  Entry* group_obj = nullptr;
  Entry* mask = nullptr;
  for (Entry& e : *entries) {
    switch (e.tag) {
      case kUserObj:
        e.perm &= (m >> 6) & 7;
        m = (m & ~0700u) | (e.perm << 6);
        break;
      case kOther:
        e.perm &= m & 7;
        m = (m & ~07u) | e.perm;
        break;
      case kGroupObj: group_obj = &e; break;
      case kMask:
        mask = &e;
        equivalent = false;
        break;
      default: equivalent = false; break;  // named user or group
    }
  }
  Entry* g = mask != nullptr ? mask : group_obj;
  g->perm &= (m >> 3) & 7;
  m = (m & ~070u) | (g->perm << 3);
  out.mode = m;
  if (!equivalent) out.access = Serialize(*entries);
  return out;
}

}  // namespace meshfs::fs

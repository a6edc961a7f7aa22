// Fuzz target: POSIX ACL xattr values (from the kernel's setxattr and the
// metadata database). AclMode and InheritAcl must refuse or accept any bytes
// without crashing; what InheritAcl accepts must itself parse, imply the mode
// it returns, and never grant more than the requested mode.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "meshfs/fs/posix_acl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t mode = (static_cast<uint32_t>(data[0]) << 8 | data[1]) & 0777;
  const std::string_view acl(reinterpret_cast<const char*>(data + 2), size - 2);
  const auto m = meshfs::fs::AclMode(acl);
  for (bool is_dir : {false, true}) {
    const auto got = meshfs::fs::InheritAcl(acl, mode, is_dir);
    if (got.has_value() != m.has_value()) std::abort();  // one parser for both
    if (!got) continue;
    if ((got->mode & ~mode) != 0) std::abort();
    if (got->access && meshfs::fs::AclMode(*got->access) != got->mode) std::abort();
    if (is_dir != got->default_acl.has_value()) std::abort();
  }
  return 0;
}

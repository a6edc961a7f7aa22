#include "meshfs/core/init.h"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace meshfs {

void InitCrypto() {
  if (sodium_init() < 0) {
    std::fputs("meshfs: libsodium failed to initialise\n", stderr);
    std::abort();
  }
}

}  // namespace meshfs

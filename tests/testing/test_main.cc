// main() of every unit-test binary.
#include <gtest/gtest.h>

#include "meshfs/core/init.h"

int main(int argc, char** argv) {
  meshfs::InitCrypto();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

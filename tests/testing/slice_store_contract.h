// The SliceStore contract: a typed GoogleTest suite every SliceStore
// implementation passes (after cryfs' BlockStore2Test).
//
// Usage: define a "maker" type with a default constructor that builds the
// store under test, `SliceStore* store()`, and `std::string skip_reason()`
// (empty to run), then
//   using Makers = ::testing::Types<MyMaker>;
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, SliceStoreContract, Makers);
// The maker is destroyed after each test (stopping processes, removing files).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "meshfs/core/slice_store.h"

namespace meshfs::testing {

// Deterministic pseudo-random bytes.
inline std::string RandomBlob(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

template <typename Maker>
class SliceStoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    maker_ = std::make_unique<Maker>();
    const std::string why = maker_->skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
  void TearDown() override { maker_.reset(); }
  SliceStore& store() { return *maker_->store(); }

  std::unique_ptr<Maker> maker_;
};

TYPED_TEST_SUITE_P(SliceStoreContract);

TYPED_TEST_P(SliceStoreContract, PutThenGetReturnsTheBlob) {
  const std::string blob = RandomBlob(4096, 1);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  auto got = this->store().Get(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob);
}

TYPED_TEST_P(SliceStoreContract, MissingIsNotFoundAndNotContained) {
  const SliceId id = SliceId::ForBlob(RandomBlob(100, 2));
  auto got = this->store().Get(id);
  EXPECT_EQ(got.status().code(), Code::kNotFound) << got.status().ToString();
  auto has = this->store().Contains(id);
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_FALSE(*has);
}

TYPED_TEST_P(SliceStoreContract, ContainsAfterPut) {
  const std::string blob = RandomBlob(777, 3);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  auto has = this->store().Contains(id);
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_TRUE(*has);
}

TYPED_TEST_P(SliceStoreContract, PutIsIdempotent) {
  const std::string blob = RandomBlob(5000, 4);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  EXPECT_EQ(*this->store().Get(id), blob);
}

TYPED_TEST_P(SliceStoreContract, MismatchedAddressIsCorruptionAndStoresNothing) {
  const std::string blob = RandomBlob(300, 5);
  const SliceId id = SliceId::ForBlob(blob);
  Status s = this->store().Put(id, RandomBlob(300, 6));
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  auto has = this->store().Contains(id);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TYPED_TEST_P(SliceStoreContract, LargeBlobRoundTrips) {
  const std::string blob = RandomBlob((1 << 20) + 17, 7);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  auto got = this->store().Get(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == blob);
}

TYPED_TEST_P(SliceStoreContract, RemoveIsOkForPresentAndAbsent) {
  const std::string blob = RandomBlob(64, 8);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(this->store().Put(id, blob).ok());
  EXPECT_TRUE(this->store().Remove(id).ok());
  EXPECT_TRUE(this->store().Remove(SliceId::ForBlob("never stored")).ok());
}

TYPED_TEST_P(SliceStoreContract, FlushAfterPutsSucceeds) {
  for (uint32_t i = 0; i < 5; ++i) {
    const std::string blob = RandomBlob(1000 + i, 100 + i);
    ASSERT_TRUE(this->store().Put(SliceId::ForBlob(blob), blob).ok());
  }
  Status s = this->store().Flush();
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TYPED_TEST_P(SliceStoreContract, ConcurrentPutsAndGets) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 12;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string blob = RandomBlob(2000 + i * 10, 1000 + t * 100 + i);
        const SliceId id = SliceId::ForBlob(blob);
        if (!this->store().Put(id, blob).ok()) failures++;
        auto got = this->store().Get(id);
        if (!got.ok() || *got != blob) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

REGISTER_TYPED_TEST_SUITE_P(SliceStoreContract, PutThenGetReturnsTheBlob,
                            MissingIsNotFoundAndNotContained, ContainsAfterPut, PutIsIdempotent,
                            MismatchedAddressIsCorruptionAndStoresNothing, LargeBlobRoundTrips,
                            RemoveIsOkForPresentAndAbsent, FlushAfterPutsSucceeds,
                            ConcurrentPutsAndGets);

}  // namespace meshfs::testing

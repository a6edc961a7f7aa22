#include "meshfs/net/disk_store.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "testing/page_cache.h"

namespace meshfs::net {
namespace {

namespace fs = std::filesystem;

class DiskStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshfs-disk-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<DiskStore> Open(uint64_t capacity = 0, uint64_t max_blob = 0) {
    DiskStore::Options o;
    o.dir = dir_;
    o.capacity_bytes = capacity;
    if (max_blob != 0) o.max_blob_bytes = max_blob;
    auto s = DiskStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Files of unfinished uploads (".tmp.*") in the fan-out directories.
  int TempFiles() const {
    int n = 0;
    if (!fs::exists(dir_ + "/slices")) return 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/slices")) {
      if (e.path().filename().string().rfind(".tmp.", 0) == 0) ++n;
    }
    return n;
  }

  static std::string Blob(size_t n, char seed) {
    std::string b(n, seed);
    for (size_t i = 0; i < n; i += 97) b[i] = static_cast<char>(i * 31 + seed);
    return b;
  }

  std::string dir_;
  const std::string owner_a_ = std::string(64, 'a');
  const std::string owner_b_ = std::string(64, 'b');
};

TEST_F(DiskStoreTest, PutGetContainsAndFanOut) {
  auto s = Open();
  const std::string blob = Blob(1000, 'x');
  const SliceId id = SliceId::ForBlob(blob);
  auto r = s->Put(id, blob, owner_a_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r);
  EXPECT_TRUE(s->Contains(id));
  EXPECT_EQ(*s->Get(id), blob);
  const std::string hex = id.ToHex();
  EXPECT_TRUE(fs::exists(dir_ + "/slices/" + hex.substr(0, 2) + "/" + hex));
  auto again = s->Put(id, blob, owner_a_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  EXPECT_EQ(s->stats().slices, 1u);
  EXPECT_EQ(s->stats().used_bytes, 1000u);
  EXPECT_TRUE(s->Get(SliceId::ForBlob("other")).status().Is(Code::kNotFound));
}

TEST_F(DiskStoreTest, WrongHashTooLargeBadOwnerStoreNothing) {
  auto s = Open(0, 4096);
  const std::string blob = Blob(100, 'y');
  const SliceId wrong = SliceId::ForBlob("not this");
  EXPECT_TRUE(s->Put(wrong, blob, "").status().Is(Code::kCorruption));
  const std::string big = Blob(5000, 'z');
  EXPECT_TRUE(s->Put(SliceId::ForBlob(big), big, "").status().Is(Code::kTooLarge));
  EXPECT_TRUE(s->Put(SliceId::ForBlob(blob), blob, "../etc").status().Is(Code::kInvalidArgument));
  EXPECT_EQ(s->stats().slices, 0u);
  EXPECT_TRUE(fs::is_empty(dir_ + "/tmp"));
  EXPECT_EQ(TempFiles(), 0);
}

// A stored blob is on disk and out of the page cache: Put drops the pages
// it wrote once they are synced.
TEST_F(DiskStoreTest, StoredBlobLeavesThePageCache) {
  if (testing::OnTmpfs(dir_)) GTEST_SKIP() << dir_ << " is tmpfs: its pages are the storage";
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string blob = Blob(1 << 20, 'p');
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(*store->Put(id, blob, owner_a_));

  const testing::Residency r = testing::ResidentPages(store->BlobPath(id));
  ASSERT_EQ(r.pages, blob.size() / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_LT(r.cached, r.pages / 8) << r.cached << " of " << r.pages << " pages cached";
  // Still all there.
  auto got = store->Get(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == blob);
}

TEST_F(DiskStoreTest, CapacityIsEnforced) {
  auto s = Open(2500);
  const std::string a = Blob(1000, 'a'), b = Blob(1000, 'b'), c = Blob(1000, 'c');
  ASSERT_TRUE(s->Put(SliceId::ForBlob(a), a, "").ok());
  ASSERT_TRUE(s->Put(SliceId::ForBlob(b), b, "").ok());
  auto r = s->Put(SliceId::ForBlob(c), c, "");
  EXPECT_TRUE(r.status().Is(Code::kNoSpace)) << r.status().ToString();
  EXPECT_TRUE(s->Put(SliceId::ForBlob(a), a, "").ok());  // already stored: fine
  EXPECT_EQ(s->stats().used_bytes, 2000u);
}

TEST_F(DiskStoreTest, ReopenRebuildsCountersAndRemovesTempFiles) {
  {
    auto s = Open();
    for (char c = 'a'; c < 'f'; ++c) {
      const std::string b = Blob(100 + c, c);
      ASSERT_TRUE(s->Put(SliceId::ForBlob(b), b, owner_a_).ok());
    }
  }
  std::ofstream(dir_ + "/tmp/" + std::string(64, '0') + ".1.1") << "partial";
  fs::create_directories(dir_ + "/slices/00");
  // An upload cut short by a crash (they are written beside their final name).
  std::ofstream(dir_ + "/slices/00/.tmp." + std::string(64, '0') + ".1.2") << "partial";
  std::ofstream(dir_ + "/slices/00/stray") << "junk";
  ASSERT_TRUE(fs::exists(dir_ + "/slices/00/stray"));
  const std::string id_before = [&] {
    std::ifstream f(dir_ + "/node_id");
    std::string s;
    f >> s;
    return s;
  }();
  auto s = Open();
  EXPECT_EQ(s->stats().slices, 5u);
  uint64_t expect = 0;
  for (char c = 'a'; c < 'f'; ++c) expect += 100 + c;
  EXPECT_EQ(s->stats().used_bytes, expect);
  EXPECT_TRUE(fs::is_empty(dir_ + "/tmp"));
  EXPECT_FALSE(fs::exists(dir_ + "/slices/00/.tmp." + std::string(64, '0') + ".1.2"));
  EXPECT_EQ(TempFiles(), 0);
  EXPECT_EQ(s->node_id(), id_before);
  EXPECT_EQ(s->node_id().size(), 32u);
}

TEST_F(DiskStoreTest, ConcurrentPutsOfOneAddress) {
  auto s = Open();
  const std::string blob = Blob(200'000, 'q');
  const SliceId id = SliceId::ForBlob(blob);
  std::vector<std::thread> threads;
  std::atomic<int> fresh{0}, failed{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto r = s->Put(id, blob, std::string(64, static_cast<char>('0' + i)));
      if (!r.ok())
        failed++;
      else if (*r)
        fresh++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(fresh.load(), 1);
  EXPECT_EQ(s->stats().slices, 1u);
  EXPECT_EQ(s->stats().used_bytes, blob.size());
  EXPECT_EQ(*s->Get(id), blob);
  // All eight owners hold a reference: the blob survives seven removals.
  for (int i = 0; i < 7; ++i) {
    auto r = s->RemoveRef(id, std::string(64, static_cast<char>('0' + i)));
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r);
  }
  EXPECT_TRUE(*s->RemoveRef(id, std::string(64, '7')));
  EXPECT_FALSE(s->Contains(id));
}

TEST_F(DiskStoreTest, ReferencesAndRemoval) {
  auto s = Open();
  const std::string blob = Blob(300, 'r');
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(s->Put(id, blob, owner_a_).ok());
  ASSERT_TRUE(s->Put(id, blob, owner_b_).ok());
  EXPECT_TRUE(s->RemoveRef(id, std::string(64, 'c')).status().Is(Code::kNotFound));
  EXPECT_FALSE(*s->RemoveRef(id, owner_a_));
  EXPECT_TRUE(s->RemoveRef(id, owner_a_).status().Is(Code::kNotFound));
  EXPECT_TRUE(s->Contains(id));
  EXPECT_TRUE(*s->RemoveRef(id, owner_b_));
  EXPECT_FALSE(s->Contains(id));
  EXPECT_EQ(s->stats().used_bytes, 0u);
  EXPECT_TRUE(s->Get(id).status().Is(Code::kNotFound));
}

TEST_F(DiskStoreTest, NoncesAreSingleUseAndPersist) {
  {
    auto s = Open();
    EXPECT_TRUE(s->UseNonce(owner_a_, "n1", 1000, 1000, 600).ok());
    EXPECT_TRUE(s->UseNonce(owner_a_, "n1", 1000, 1000, 600).Is(Code::kPermissionDenied));
    EXPECT_TRUE(s->UseNonce(owner_b_, "n1", 1000, 1000, 600).ok());
  }
  auto s = Open();
  EXPECT_TRUE(s->UseNonce(owner_a_, "n1", 1000, 1001, 600).Is(Code::kPermissionDenied));
  // Forgotten once out of the window.
  EXPECT_TRUE(s->UseNonce(owner_a_, "n1", 1000, 1000 + 601 + 600, 600).ok());
}

TEST_F(DiskStoreTest, RootsHigherSequenceOnlyAndKeep16) {
  auto s = Open();
  const std::string vol(64, 'e');
  EXPECT_TRUE(s->Roots(vol)->empty());
  ASSERT_TRUE(s->PutRoot(vol, 3, "r3").ok());
  EXPECT_TRUE(s->PutRoot(vol, 3, "r3b").Is(Code::kAlreadyExists));
  EXPECT_TRUE(s->PutRoot(vol, 2, "r2").Is(Code::kAlreadyExists));
  for (uint64_t i = 4; i < 30; ++i) {
    std::string rec = std::to_string(i);
    rec.insert(rec.begin(), 'r');
    ASSERT_TRUE(s->PutRoot(vol, i, rec).ok());
  }
  auto roots = s->Roots(vol);
  ASSERT_TRUE(roots.ok());
  ASSERT_EQ(roots->size(), DiskStore::kRootsKept);
  EXPECT_EQ(roots->front(), "r29");
  EXPECT_EQ(roots->back(), "r14");
  EXPECT_TRUE(s->Roots(std::string(64, 'f'))->empty());
  EXPECT_TRUE(s->PutRoot(vol, UINT64_MAX, "x").Is(Code::kInvalidArgument));
}

}  // namespace
}  // namespace meshfs::net

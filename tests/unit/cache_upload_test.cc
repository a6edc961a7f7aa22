// CachingStore upload side: what marking a blob uploaded costs the cache
// database. Marking must not rewrite the blob (a 1 MiB row copied again to
// the WAL and, at checkpoint, to the database, for every upload).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "meshfs/cache/caching_store.h"
#include "testing/memory_store.h"
#include "testing/sqlite_pragma.h"
#include "testing/temp_dir.h"

namespace meshfs::cache {
namespace {

using meshfs::testing::IntPragma;
using meshfs::testing::MemoryStore;
using meshfs::testing::TempDir;

std::string RandomBlob(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// page_count and freelist_count of the database at `path`, read through a
// connection of its own (sees what the store committed).
struct PageCounts {
  int64_t pages = -1;
  int64_t free = -1;
};

PageCounts ReadPageCounts(const std::filesystem::path& path) {
  return {IntPragma(path, "page_count"), IntPragma(path, "freelist_count")};
}

TEST(CacheUpload, MarkingUploadedDoesNotRewriteTheBlob) {
  TempDir dir("meshfs-cache-upload");
  MemoryStore remote;
  CacheOptions o;
  o.db_path = dir.path() / "cache.db";
  o.max_bytes = 64 << 20;
  o.upload_threads = 2;
  o.writer_idle_ms = 60'000;  // uploads wait for WaitUploaded
  auto cache = CachingStore::Open(o, &remote);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();

  constexpr int kBlobs = 4;
  constexpr size_t kSize = 1 << 20;
  std::vector<SliceId> ids;
  for (int i = 0; i < kBlobs; ++i) {
    const std::string blob = RandomBlob(kSize, 100 + static_cast<uint32_t>(i));
    ids.push_back(SliceId::ForBlob(blob));
    ASSERT_TRUE((*cache)->Put(ids.back(), blob).ok());
  }
  ASSERT_EQ((*cache)->Stats().pending_slices, static_cast<uint64_t>(kBlobs));
  const PageCounts before = ReadPageCounts(o.db_path);
  ASSERT_GT(before.pages, 0);

  ASSERT_TRUE((*cache)->WaitUploaded(10'000).ok());
  EXPECT_EQ((*cache)->Stats().pending_slices, 0u);
  for (const auto& id : ids) {
    auto on_remote = remote.Contains(id);
    EXPECT_TRUE(on_remote.ok() && *on_remote);
  }

  // A rewritten 1 MiB row (32 KiB pages) allocates 32 new pages and frees
  // the old ones; an in-place mark touches the row's first page only.
  const PageCounts after = ReadPageCounts(o.db_path);
  EXPECT_LT(after.pages - before.pages, 16) << "the database grew while marking uploads";
  EXPECT_LT(after.free, 16) << "marking uploads freed the blobs' old pages";

  // The marks are real: after a reopen nothing is queued again.
  cache->reset();
  auto reopened = CachingStore::Open(o, &remote);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->Stats().pending_slices, 0u);
  for (const auto& id : ids) EXPECT_TRUE((*reopened)->Get(id).ok());
}

}  // namespace
}  // namespace meshfs::cache

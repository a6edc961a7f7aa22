// FileData against a recording backend: write-back policy (full slices at
// once, dirty bound, zeros as holes), inline small files, truncation,
// SEEK_DATA/SEEK_HOLE, and store failures that keep the buffered data.
#include "meshfs/fs/file_data.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace meshfs::fs {
namespace {

constexpr uint32_t kSlice = 64 * 1024;

class RecordingBackend final : public FileDataBackend {
 public:
  Result<std::string> LoadSlice(const SliceId& id) override {
    ++loads;
    auto it = blobs.find(id);
    if (it == blobs.end()) return Status::NotFound("no slice");
    return it->second;
  }
  Result<SliceId> StoreSlice(std::string_view plaintext) override {
    if (fail) return Status::Unavailable("injected");
    ++stores;
    SliceId id = SliceId::ForBlob(plaintext);
    blobs[id] = std::string(plaintext);
    return id;
  }
  Status CommitFile(uint64_t, const FileCommit& c) override {
    commits.push_back(c);
    return Status::OK();
  }
  void Prefetch(const std::vector<SliceId>& ids) override { prefetched += ids.size(); }
  void AccountDirty(int64_t d) override { dirty += d; }
  int64_t NowNs() override { return 42; }

  std::map<SliceId, std::string> blobs;
  std::vector<FileCommit> commits;
  int loads = 0, stores = 0;
  size_t prefetched = 0;
  int64_t dirty = 0;
  bool fail = false;
};

std::string Bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() | 1);
  return s;
}

std::string ReadAll(FileData& f) {
  std::string out;
  EXPECT_TRUE(f.Read(0, f.size(), &out).ok());
  return out;
}

TEST(FileData, FullSlicesAreWrittenBackWhileStreaming) {
  RecordingBackend b;
  FileData f(2, kSlice, 0, std::string(), {}, &b, 64 * kSlice);
  std::string data = Bytes(3 * kSlice + 10, 1);
  for (size_t off = 0; off < data.size(); off += 4096) {
    ASSERT_TRUE(f.Write(off, std::string_view(data).substr(off, 4096)).ok());
  }
  EXPECT_EQ(b.stores, 3) << "three complete slices go out before any flush";
  EXPECT_EQ(f.dirty_bytes(), 10u);
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.stores, 4);
  EXPECT_EQ(f.dirty_bytes(), 0u);
  EXPECT_EQ(b.dirty, 0);
  ASSERT_FALSE(b.commits.empty());
  const FileCommit& c = b.commits.back();
  EXPECT_EQ(c.size, data.size());
  EXPECT_EQ(c.put.size(), 4u);
  EXPECT_TRUE(c.set_inline);
  EXPECT_FALSE(c.inline_data.has_value()) << "a big file is not inline";
  EXPECT_TRUE(ReadAll(f) == data);
}

TEST(FileData, DirtyBoundWritesBackOldestFirst) {
  RecordingBackend b;
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 2 * kSlice);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(f.Write(uint64_t(i) * kSlice + 100, Bytes(kSlice / 2, i)).ok());
  }
  EXPECT_LE(f.dirty_bytes(), 2u * kSlice);
  EXPECT_GE(b.stores, 3);
  std::string out;
  ASSERT_TRUE(f.Read(100, kSlice / 2, &out).ok());
  EXPECT_TRUE(out == Bytes(kSlice / 2, 0));
}

TEST(FileData, ZeroSlicesBecomeHoles) {
  RecordingBackend b;
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice);
  ASSERT_TRUE(f.Write(0, std::string(3 * kSlice, '\0')).ok());
  ASSERT_TRUE(f.Write(3 * kSlice, "end").ok());
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.stores, 1) << "only the slice with data is stored";
  EXPECT_EQ(f.allocated(), 3u);
  EXPECT_EQ(ReadAll(f), std::string(3 * kSlice, '\0') + "end");
  EXPECT_EQ(f.Seek(0, true), std::optional<uint64_t>(3 * kSlice));
  EXPECT_EQ(f.Seek(0, false), std::optional<uint64_t>(0));
  EXPECT_EQ(f.Seek(3 * kSlice + 3, true), std::nullopt);
}

TEST(FileData, SmallFilesStayInline) {
  RecordingBackend b;
  FileData f(2, kSlice, 5, std::string("hello"), {}, &b, 64 * kSlice);
  ASSERT_TRUE(f.Write(5, ", world").ok());
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.stores, 0);
  ASSERT_EQ(b.commits.size(), 1u);
  EXPECT_TRUE(b.commits[0].set_inline);
  EXPECT_EQ(b.commits[0].inline_data, std::optional<std::string>("hello, world"));
  // Growing past the inline limit moves everything to a slice.
  ASSERT_TRUE(f.Write(kInlineMax, "x").ok());
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.stores, 1);
  EXPECT_FALSE(b.commits.back().inline_data.has_value());
  std::string expect = "hello, world" + std::string(kInlineMax - 12, '\0') + "x";
  EXPECT_EQ(ReadAll(f), expect);
  // A flush with nothing new commits nothing.
  size_t n = b.commits.size();
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.commits.size(), n);
}

TEST(FileData, TruncateCutsAndLoadsPartialSlice) {
  RecordingBackend b;
  std::string data = Bytes(2 * kSlice, 5);
  FileData writer(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice);
  ASSERT_TRUE(writer.Write(0, data).ok());
  ASSERT_TRUE(writer.Flush(false).ok());
  std::vector<ExtentRecord> extents = b.commits.back().put;
  ASSERT_EQ(extents.size(), 2u);

  FileData f(2, kSlice, data.size(), std::nullopt, extents, &b, 64 * kSlice);
  ASSERT_TRUE(f.Truncate(kSlice + 7).ok());
  ASSERT_TRUE(f.Truncate(2 * kSlice).ok());
  ASSERT_TRUE(f.Flush(false).ok());
  const FileCommit& c = b.commits.back();
  EXPECT_FALSE(c.delete_from.has_value());  // no whole slice was dropped
  ASSERT_EQ(c.put.size(), 1u);
  EXPECT_EQ(c.put[0].idx, 1u);
  EXPECT_EQ(c.put[0].len, 7u);  // the cut slice, re-stored short
  EXPECT_EQ(c.size, 2 * kSlice);
  std::string grown = data.substr(0, kSlice + 7) + std::string(kSlice - 7, '\0');
  EXPECT_TRUE(ReadAll(f) == grown);
  ASSERT_TRUE(f.Truncate(10).ok());
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.commits.back().delete_from, std::optional<uint64_t>(1));
  EXPECT_TRUE(ReadAll(f) == data.substr(0, 10));
}

TEST(FileData, StoreFailureKeepsDataForTheNextFlush) {
  RecordingBackend b;
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice);
  std::string data = Bytes(kSlice + 1, 9);
  b.fail = true;
  EXPECT_FALSE(f.Write(0, data).ok());
  EXPECT_FALSE(f.Flush(false).ok());
  EXPECT_TRUE(ReadAll(f) == data) << "nothing buffered is lost";
  b.fail = false;
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_EQ(b.stores, 2);
  EXPECT_TRUE(ReadAll(f) == data);
}

TEST(FileData, SequentialReadsPrefetchAhead) {
  RecordingBackend b;
  std::string data = Bytes(8 * kSlice, 3);
  FileData w(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice);
  ASSERT_TRUE(w.Write(0, data).ok());
  ASSERT_TRUE(w.Flush(false).ok());
  FileData f(2, kSlice, data.size(), std::nullopt, b.commits.back().put, &b, 64 * kSlice);
  std::string out;
  ASSERT_TRUE(f.Read(0, kSlice, &out).ok());
  ASSERT_TRUE(f.Read(kSlice, kSlice, &out).ok());
  EXPECT_GE(b.prefetched, 4u);
}

TEST(SliceCache, EvictsLeastRecentlyUsed) {
  SliceCache c(10);
  SliceId a = SliceId::ForBlob("a"), b = SliceId::ForBlob("b"), d = SliceId::ForBlob("d");
  c.Put(a, "aaaa");
  c.Put(b, "bbbb");
  EXPECT_TRUE(c.Get(a).has_value());  // a is now the most recent
  c.Put(d, "dddd");                   // 12 bytes > 10: b goes
  EXPECT_FALSE(c.Get(b).has_value());
  EXPECT_EQ(c.Get(a), std::optional<std::string>("aaaa"));
  EXPECT_EQ(c.bytes(), 8u);
  EXPECT_EQ(c.hits(), 2u);
  EXPECT_EQ(c.misses(), 1u);
}

}  // namespace
}  // namespace meshfs::fs

// FileData against a recording backend: write-back policy (full slices at
// once, dirty bound, zeros as holes), inline small files, truncation,
// SEEK_DATA/SEEK_HOLE, and store failures that keep the buffered data; and
// asynchronous write-back on a WriteBackPool against a real (memory) store:
// reads of in-flight slices, write order of rewritten slices, waiting
// flush/truncate/discard, and store errors reported by the next write/flush.
#include "meshfs/fs/file_data.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "testing/memory_store.h"

namespace meshfs::fs {
namespace {

constexpr uint32_t kSlice = 64 * 1024;

class RecordingBackend final : public FileDataBackend {
 public:
  Result<SliceBytes> LoadSlice(const SliceId& id) override {
    ++loads;
    auto it = blobs.find(id);
    if (it == blobs.end()) return Status::NotFound("no slice");
    return std::make_shared<const std::string>(it->second);
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

// Reads inside one stored slice are views of the loaded slice (no copy);
// reads across slices, of dirty data or past a short slice are assembled;
// the rest of a slice decoded for a short read is offered page-aligned.
TEST(FileData, ReadsInsideOneSliceAreViewsOfIt) {
  RecordingBackend b;
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice);
  const std::string data = Bytes(2 * kSlice + 10000, 7);
  ASSERT_TRUE(f.Write(0, data).ok());
  ASSERT_TRUE(f.Flush(false).ok());

  ReadBuffer r;
  std::vector<std::pair<uint64_t, std::string>> rest;
  ASSERT_TRUE(f.Read(kSlice + 5000, 8192, &r, &rest).ok());
  ASSERT_NE(r.shared, nullptr);
  EXPECT_TRUE(r.owned.empty());
  EXPECT_TRUE(r.view == std::string_view(data).substr(kSlice + 5000, 8192));
  EXPECT_GE(r.view.data(), r.shared->data());
  ASSERT_EQ(rest.size(), 2u);  // after the read, then before it
  EXPECT_EQ(rest[0].first, kSlice + 16384u);
  EXPECT_TRUE(rest[0].second == data.substr(kSlice + 16384, kSlice - 16384));
  EXPECT_EQ(rest[1].first, uint64_t{kSlice});
  EXPECT_TRUE(rest[1].second == data.substr(kSlice, 4096));

  ASSERT_TRUE(f.Read(kSlice - 100, 300, &r).ok());  // across two slices
  EXPECT_EQ(r.shared, nullptr);
  EXPECT_TRUE(r.view == std::string_view(data).substr(kSlice - 100, 300));

  // A slice shorter than the read (the file grew past it): zeros after it.
  ASSERT_TRUE(f.Truncate(2 * kSlice + 30000).ok());
  ASSERT_TRUE(f.Read(2 * kSlice + 5000, 20000, &r).ok());
  EXPECT_EQ(r.shared, nullptr);
  EXPECT_TRUE(r.view == data.substr(2 * kSlice + 5000, 5000) + std::string(15000, '\0'));

  // Dirty data is never a view of the stored slice.
  ASSERT_TRUE(f.Write(10, "new").ok());
  ASSERT_TRUE(f.Read(0, 20, &r).ok());
  EXPECT_EQ(r.shared, nullptr);
  EXPECT_TRUE(r.view == data.substr(0, 10) + "new" + data.substr(13, 7));
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

// A thread-safe backend over MemoryStore (+ FaultyStore) whose Put can be
// held back by a test, for write-backs running on pool threads.
class StoreBackend final : public FileDataBackend {
 public:
  StoreBackend() : faulty(&memory) {}
  Result<SliceBytes> LoadSlice(const SliceId& id) override {
    MESHFS_ASSIGN_OR_RETURN(std::string bytes, faulty.Get(id));
    return std::make_shared<const std::string>(std::move(bytes));
  }
  Result<SliceId> StoreSlice(std::string_view plaintext) override {
    {
      std::unique_lock<std::mutex> lock(mu);
      ++started;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return !held || hold(plaintext) == false; });
    }
    SliceId id = SliceId::ForBlob(plaintext);
    Status st = faulty.Put(id, plaintext);
    std::lock_guard<std::mutex> lock(mu);
    ++finished;
    cv.notify_all();
    if (!st.ok()) return st;
    return id;
  }
  Status CommitFile(uint64_t, const FileCommit& c) override {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : c.put) extents[e.idx] = e;
    for (uint64_t idx : c.remove) extents.erase(idx);
    if (c.delete_from) extents.erase(extents.lower_bound(*c.delete_from), extents.end());
    size = c.size;
    ++commits;
    return Status::OK();
  }
  void Prefetch(const std::vector<SliceId>&) override {}
  void AccountDirty(int64_t d) override { dirty += d; }
  int64_t NowNs() override { return 42; }

  // Holds back every Put for which `pred` is true, until Release().
  void Hold(std::function<bool(std::string_view)> pred) {
    std::lock_guard<std::mutex> lock(mu);
    held = true;
    hold = std::move(pred);
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    held = false;
    cv.notify_all();
  }
  // Waits (bounded) until at least n Puts started / finished.
  bool WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return started >= n; });
  }
  bool WaitFinished(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return finished >= n; });
  }
  std::vector<ExtentRecord> Extents() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<ExtentRecord> v;
    for (const auto& [idx, e] : extents) v.push_back(e);
    return v;
  }

  testing::MemoryStore memory;
  testing::FaultyStore faulty;
  std::mutex mu;
  std::condition_variable cv;
  bool held = false;
  std::function<bool(std::string_view)> hold;
  int started = 0, finished = 0, commits = 0;
  std::map<uint64_t, ExtentRecord> extents;
  uint64_t size = 0;
  std::atomic<int64_t> dirty{0};
};

TEST(FileDataAsync, StreamsThroughThePoolAndReadsBackFromTheStore) {
  StoreBackend b;
  WriteBackPool pool(2, 3);
  std::string data = Bytes(12 * kSlice + 123, 21);
  {
    FileData f(2, kSlice, 0, std::nullopt, {}, &b, 4 * kSlice, &pool);
    for (size_t off = 0; off < data.size(); off += 8192) {
      ASSERT_TRUE(f.Write(off, std::string_view(data).substr(off, 8192)).ok());
    }
    EXPECT_TRUE(ReadAll(f) == data) << "in flight or stored, reads see every byte";
    ASSERT_TRUE(f.Flush(false).ok());
    EXPECT_EQ(f.dirty_bytes(), 0u);
    EXPECT_TRUE(ReadAll(f) == data);
  }
  EXPECT_EQ(b.dirty.load(), 0);
  EXPECT_EQ(b.size, data.size());
  EXPECT_EQ(b.memory.size(), 13u);
  FileData g(2, kSlice, b.size, std::nullopt, b.Extents(), &b, 4 * kSlice, &pool);
  EXPECT_TRUE(ReadAll(g) == data) << "the committed extents hold the data";
}

TEST(FileDataAsync, ReadsAndPartialWritesSeeSlicesInFlight) {
  StoreBackend b;
  WriteBackPool pool(2, 8);
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
  std::string data = Bytes(2 * kSlice, 4);
  b.Hold([](std::string_view) { return true; });
  ASSERT_TRUE(f.Write(0, data).ok()) << "the write does not wait for the store";
  ASSERT_TRUE(b.WaitStarted(2));
  EXPECT_EQ(f.dirty_bytes(), 0u);
  EXPECT_TRUE(ReadAll(f) == data);
  EXPECT_EQ(f.allocated(), 2u * kSlice);
  // A partial write of an in-flight slice starts from its in-flight bytes.
  ASSERT_TRUE(f.Write(kSlice + 10, "xyz").ok());
  data.replace(kSlice + 10, 3, "xyz");
  EXPECT_TRUE(ReadAll(f) == data);
  b.Release();
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_TRUE(ReadAll(f) == data);
  FileData g(2, kSlice, b.size, std::nullopt, b.Extents(), &b, 64 * kSlice, &pool);
  EXPECT_TRUE(ReadAll(g) == data);
}

TEST(FileDataAsync, AnOlderWriteBackFinishingLastDoesNotWin) {
  StoreBackend b;
  WriteBackPool pool(2, 8);
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
  const std::string v1 = Bytes(kSlice, 1), v2 = Bytes(kSlice, 2);
  b.Hold([&](std::string_view p) { return p == v1; });  // v1's Put lags behind
  ASSERT_TRUE(f.Write(0, v1).ok());
  ASSERT_TRUE(b.WaitStarted(1));
  ASSERT_TRUE(f.Write(0, v2).ok());
  ASSERT_TRUE(b.WaitFinished(1)) << "v2 is stored while v1 is still held";
  EXPECT_TRUE(ReadAll(f) == v2);
  ASSERT_TRUE(f.Commit().ok());
  b.Release();
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_TRUE(ReadAll(f) == v2);
  auto ext = b.Extents();
  ASSERT_EQ(ext.size(), 1u);
  EXPECT_EQ(ext[0].slice, SliceId::ForBlob(v2));
}

TEST(FileDataAsync, FlushAndTruncateWaitForWriteBacks) {
  StoreBackend b;
  WriteBackPool pool(2, 8);
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
  std::string data = Bytes(3 * kSlice, 8);
  b.Hold([](std::string_view) { return true; });
  ASSERT_TRUE(f.Write(0, data).ok());
  std::atomic<bool> flushed{false};
  std::thread t([&] {
    EXPECT_TRUE(f.Flush(false).ok());
    flushed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(flushed.load()) << "flush returned before its slices were stored";
  EXPECT_EQ(b.commits, 0);
  b.Release();
  t.join();
  EXPECT_TRUE(flushed.load());
  EXPECT_EQ(b.Extents().size(), 3u);

  // Truncate while rewritten slices are in flight: the cut applies to them.
  b.Hold([](std::string_view) { return true; });
  std::string v2 = Bytes(3 * kSlice, 9);
  ASSERT_TRUE(f.Write(0, v2).ok());
  std::thread r([&] { b.Release(); });
  ASSERT_TRUE(f.Truncate(kSlice + 5).ok());
  r.join();
  ASSERT_TRUE(f.Flush(false).ok());
  EXPECT_TRUE(ReadAll(f) == v2.substr(0, kSlice + 5));
  FileData g(2, kSlice, b.size, std::nullopt, b.Extents(), &b, 64 * kSlice, &pool);
  EXPECT_TRUE(ReadAll(g) == v2.substr(0, kSlice + 5));
}

TEST(FileDataAsync, DiscardWaitsAndDropsInFlightWork) {
  StoreBackend b;
  WriteBackPool pool(1, 2);
  {
    FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
    ASSERT_TRUE(f.Write(0, Bytes(4 * kSlice + 1, 3)).ok());
    f.Discard();
    EXPECT_EQ(f.dirty_bytes(), 0u);
    EXPECT_EQ(b.finished, 4) << "discard returned with write-backs still running";
  }
  EXPECT_EQ(b.dirty.load(), 0);
  EXPECT_EQ(b.commits, 0);
}

TEST(FileDataAsync, StoreErrorSurfacesOnTheNextWriteAndKeepsData) {
  StoreBackend b;
  WriteBackPool pool(2, 8);
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
  std::string data = Bytes(kSlice, 6);
  b.faulty.FailWith(Code::kNoSpace);
  ASSERT_TRUE(f.Write(0, data).ok());  // the failure comes later
  ASSERT_TRUE(b.WaitFinished(1));
  // The failed job may still be handing over its result: poll with no-op writes.
  Status st;
  for (int i = 0; i < 500 && (st = f.Write(kSlice, "")).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(st.code(), Code::kNoSpace);
  EXPECT_TRUE(f.Write(kSlice, "").ok()) << "an error is reported once";
  EXPECT_EQ(f.dirty_bytes(), uint64_t(kSlice)) << "the failed slice is dirty again";
  EXPECT_TRUE(ReadAll(f) == data);
  b.faulty.FailWith(Code::kOk);
  ASSERT_TRUE(f.Flush(false).ok());
  FileData g(2, kSlice, b.size, std::nullopt, b.Extents(), &b, 64 * kSlice, &pool);
  EXPECT_TRUE(ReadAll(g) == data);
}

TEST(FileDataAsync, StoreErrorSurfacesOnFlushAndNothingIsCommitted) {
  StoreBackend b;
  WriteBackPool pool(2, 8);
  FileData f(2, kSlice, 0, std::nullopt, {}, &b, 64 * kSlice, &pool);
  std::string data = Bytes(3 * kSlice + 7, 7);
  b.faulty.FailWith(Code::kIOError);
  ASSERT_TRUE(f.Write(0, data).ok());
  Status st = f.Flush(true);
  EXPECT_EQ(st.code(), Code::kIOError);
  EXPECT_EQ(b.commits, 0);
  EXPECT_TRUE(ReadAll(f) == data) << "nothing buffered is lost";
  EXPECT_EQ(f.Flush(false).code(), Code::kIOError) << "the store still fails";
  b.faulty.FailWith(Code::kOk);
  ASSERT_TRUE(f.Flush(true).ok());
  EXPECT_EQ(b.size, data.size());
  FileData g(2, kSlice, b.size, std::nullopt, b.Extents(), &b, 64 * kSlice, &pool);
  EXPECT_TRUE(ReadAll(g) == data);
}

TEST(FileDataAsync, ConcurrentWritersShareTheBoundedPool) {
  StoreBackend b;
  WriteBackPool pool(2, 2);
  constexpr int kFiles = 3;
  std::vector<std::string> want;
  std::vector<std::unique_ptr<FileData>> files;
  for (int i = 0; i < kFiles; ++i) {
    want.push_back(Bytes(10 * kSlice + 99, 100 + i));
    files.push_back(std::make_unique<FileData>(10 + i, kSlice, 0, std::nullopt,
                                               std::vector<ExtentRecord>{}, &b, 2 * kSlice, &pool));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kFiles; ++i) {
    threads.emplace_back([&, i] {
      const std::string& d = want[i];
      for (size_t off = 0; off < d.size(); off += 4096) {
        EXPECT_TRUE(files[i]->Write(off, std::string_view(d).substr(off, 4096)).ok());
        if (off % (3 * kSlice) == 0) {
          std::string out;
          EXPECT_TRUE(files[i]->Read(0, off, &out).ok());
          EXPECT_TRUE(out == d.substr(0, off));
        }
      }
      EXPECT_TRUE(files[i]->Flush(false).ok());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kFiles; ++i) EXPECT_TRUE(ReadAll(*files[i]) == want[i]);
  files.clear();
  EXPECT_EQ(b.dirty.load(), 0);
}

TEST(SliceCache, EvictsLeastRecentlyUsed) {
  SliceCache c(10);
  SliceId a = SliceId::ForBlob("a"), b = SliceId::ForBlob("b"), d = SliceId::ForBlob("d");
  auto bytes = [](const char* s) { return std::make_shared<const std::string>(s); };
  c.Put(a, bytes("aaaa"));
  c.Put(b, bytes("bbbb"));
  EXPECT_NE(c.Get(a), nullptr);  // a is now the most recent
  c.Put(d, bytes("dddd"));       // 12 bytes > 10: b goes
  EXPECT_EQ(c.Get(b), nullptr);
  ASSERT_NE(c.Get(a), nullptr);
  EXPECT_EQ(*c.Get(a), "aaaa");
  EXPECT_EQ(c.bytes(), 8u);
  EXPECT_EQ(c.hits(), 3u);
  EXPECT_EQ(c.misses(), 1u);
}

}  // namespace
}  // namespace meshfs::fs

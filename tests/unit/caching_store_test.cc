// CachingStore: the SliceStore contract, durability across reopen, the
// upload queue under remote failures, eviction, back-pressure, a full disk,
// damaged cached blobs, durability=network.
#include "meshfs/cache/caching_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "meshfs/core/replica_reporter.h"
#include "testing/memory_store.h"
#include "testing/slice_store_contract.h"
#include "testing/sqlite_pragma.h"
#include "testing/temp_dir.h"

namespace meshfs::cache {
namespace {

namespace fs = std::filesystem;
using meshfs::testing::FaultyStore;
using meshfs::testing::IntPragma;
using meshfs::testing::MemoryStore;
using meshfs::testing::RandomBlob;
using meshfs::testing::TempDir;

CacheOptions SmallOptions(const fs::path& dir) {
  CacheOptions o;
  o.db_path = dir / "cache.db";
  o.max_bytes = 64 << 20;
  o.upload_threads = 2;
  o.backpressure_timeout_ms = 300;
  o.retry_initial_ms = 10;
  o.retry_max_ms = 100;
  o.network_flush_timeout_ms = 500;
  return o;
}

// ---- the contract: MemoryStore and CachingStore over MemoryStore ----

struct MemoryMaker {
  SliceStore* store() { return &mem; }
  std::string skip_reason() { return ""; }
  MemoryStore mem;
};

struct CachingMaker {
  CachingMaker() {
    auto s = CachingStore::Open(SmallOptions(dir.path()), &mem);
    if (s.ok()) cache = std::move(*s);
    else error = s.status().ToString();
  }
  SliceStore* store() { return cache.get(); }
  std::string skip_reason() {
    EXPECT_EQ(error, "");  // an Open failure is a failure, not a skip
    return error;
  }
  TempDir dir;
  MemoryStore mem;
  std::string error;
  std::unique_ptr<CachingStore> cache;
};

using Makers = ::testing::Types<MemoryMaker, CachingMaker>;

}  // namespace
}  // namespace meshfs::cache

namespace meshfs::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Stores, SliceStoreContract, meshfs::cache::Makers);
}  // namespace meshfs::testing

namespace meshfs::cache {
namespace {

// ---- CachingStore specifics ----

class CachingStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<CachingStore> OpenCache(const CacheOptions& o, SliceStore* remote,
                                          Clock* clock = Clock::Real()) {
    auto s = CachingStore::Open(o, remote, clock);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  TempDir dir_;
  MemoryStore mem_;
  FaultyStore faulty_{&mem_};
};

TEST_F(CachingStoreTest, PutIsLocalFirstThenUploadedInBackground) {
  faulty_.FailWith(Code::kUnavailable);
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  const std::string blob = RandomBlob(10000, 1);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->Put(id, blob).ok());  // peers down: still acknowledged locally
  EXPECT_EQ(*cache->Get(id), blob);
  CacheStats st = cache->Stats();
  EXPECT_EQ(st.pending_slices, 1u);
  EXPECT_EQ(st.pending_bytes, blob.size());
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(mem_.size(), 0u);
  EXPECT_EQ(cache->WaitUploaded(100).code(), Code::kTimedOut);
  faulty_.FailWith(Code::kOk);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(*mem_.Get(id), blob);
  st = cache->Stats();
  EXPECT_EQ(st.pending_slices, 0u);
  EXPECT_EQ(st.cached_slices, 1u);
  EXPECT_GE(st.upload_errors, 1u);
  EXPECT_EQ(st.uploaded_slices, 1u);
  EXPECT_EQ(st.last_upload_error, "");
}

// Uploads wait while the mount writes (durability=local), start once it
// pauses, and do not wait past the byte bound or when someone waits for them.
TEST_F(CachingStoreTest, UploadsYieldToABusyWriterWithinBounds) {
  CacheOptions o = SmallOptions(dir_.path());
  o.writer_idle_ms = 400;
  o.yield_bytes = 50000;
  auto cache = OpenCache(o, &mem_);
  auto put = [&](uint32_t seed) {
    const std::string b = RandomBlob(20000, seed);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(b), b).ok());
  };
  put(1);
  put(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(mem_.size(), 0u) << "uploaded while the writer was busy";
  put(3);  // 60000 queued bytes > 50000: no more waiting
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(mem_.size(), 3u);

  // Below the bound, a pause of the writer starts the uploads by itself.
  put(4);
  const auto start = std::chrono::steady_clock::now();
  while (mem_.size() < 4 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(mem_.size(), 4u);
  EXPECT_GE(took, std::chrono::milliseconds(300)) << "did not wait for the writer to pause";

  // WaitUploaded (sync, unmount) does not wait for a pause.
  put(5);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  EXPECT_EQ(mem_.size(), 5u);
}

// The filesystem's activity hint (operations that store no blob: small
// files, renames, chmods) keeps uploads waiting like Puts do, but not past
// writer_max_defer_ms for the oldest queued slice.
TEST_F(CachingStoreTest, WriteActivityDefersUploadsForABoundedTime) {
  CacheOptions o = SmallOptions(dir_.path());
  o.writer_idle_ms = 400;
  o.writer_max_defer_ms = 60'000;
  const std::string b1 = RandomBlob(20000, 71), b2 = RandomBlob(20000, 72);
  {
    auto cache = OpenCache(o, &mem_);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(b1), b1).ok());
    for (int i = 0; i < 12; ++i) {  // 1.2 s of activity, no Put
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      cache->NoteWriteActivity();
    }
    EXPECT_EQ(mem_.size(), 0u) << "uploaded while the filesystem was busy";
    const auto start = std::chrono::steady_clock::now();
    while (mem_.size() < 1 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(mem_.size(), 1u) << "not uploaded once the activity stopped";
  }
  o.writer_max_defer_ms = 500;
  auto cache = OpenCache(o, &mem_);
  ASSERT_TRUE(cache->Put(SliceId::ForBlob(b2), b2).ok());
  const auto start = std::chrono::steady_clock::now();
  while (mem_.size() < 2 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    cache->NoteWriteActivity();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(mem_.size(), 2u) << "activity held the upload back past writer_max_defer_ms";
}

TEST_F(CachingStoreTest, QueuedUploadsSurviveReopenAndResume) {
  faulty_.FailWith(Code::kUnavailable);
  std::vector<std::string> blobs;
  {
    auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
    for (uint32_t i = 0; i < 20; ++i) {
      blobs.push_back(RandomBlob(3000 + i, 50 + i));
      ASSERT_TRUE(cache->Put(SliceId::ForBlob(blobs.back()), blobs.back()).ok());
    }
  }  // closed with everything still queued
  {
    auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
    EXPECT_EQ(cache->Stats().pending_slices, 20u);
    for (auto& b : blobs) EXPECT_EQ(*cache->Get(SliceId::ForBlob(b)), b);
  }
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  faulty_.FailWith(Code::kOk);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(mem_.size(), blobs.size());
  for (auto& b : blobs) EXPECT_EQ(*mem_.Get(SliceId::ForBlob(b)), b);
}

TEST_F(CachingStoreTest, KillNineKeepsAcknowledgedBlobs) {
  // A child process puts blobs and dies with _exit (no destructors, no
  // checkpoint): what Put acknowledged is in the database.
  const CacheOptions o = SmallOptions(dir_.path());
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    MemoryStore child_mem;
    FaultyStore child_remote(&child_mem);
    child_remote.FailWith(Code::kUnavailable);
    auto cache = CachingStore::Open(o, &child_remote);
    if (!cache.ok()) _exit(3);
    for (uint32_t i = 0; i < 10; ++i) {
      const std::string b = RandomBlob(5000, 900 + i);
      if (!(*cache)->Put(SliceId::ForBlob(b), b).ok()) _exit(4);
      char c = 1;
      if (write(pipefd[1], &c, 1) != 1) _exit(5);
    }
    pause();
    _exit(0);
  }
  close(pipefd[1]);
  int acked = 0;
  char c;
  while (acked < 10 && read(pipefd[0], &c, 1) == 1) acked++;
  kill(pid, SIGKILL);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  close(pipefd[0]);
  ASSERT_EQ(acked, 10);
  auto cache = OpenCache(o, &mem_);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  for (uint32_t i = 0; i < 10; ++i) {
    const std::string b = RandomBlob(5000, 900 + i);
    EXPECT_EQ(*mem_.Get(SliceId::ForBlob(b)), b);
  }
}

TEST_F(CachingStoreTest, RemoteFailuresAreRetriedWithoutLoss) {
  faulty_.FailWith(Code::kUnavailable);
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  std::vector<std::string> blobs;
  for (uint32_t i = 0; i < 30; ++i) {
    blobs.push_back(RandomBlob(1000, 200 + i));
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(blobs.back()), blobs.back()).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  CacheStats st = cache->Stats();
  EXPECT_EQ(st.pending_slices, 30u);
  EXPECT_GT(st.upload_errors, 30u);  // retried, not given up
  EXPECT_NE(st.last_upload_error.find("injected"), std::string::npos);
  faulty_.FailWith(Code::kOk);
  int progress_calls = 0;
  ASSERT_TRUE(cache->WaitUploaded(5000, [&](const CacheStats&) { progress_calls++; }).ok());
  EXPECT_EQ(mem_.size(), 30u);
}

TEST_F(CachingStoreTest, EvictionNeverDropsPendingAndBackPressureEndsInNoSpace) {
  faulty_.FailWith(Code::kUnavailable);
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 10 * 4096;
  auto cache = OpenCache(o, &faulty_);
  std::vector<std::string> blobs;
  for (uint32_t i = 0; i < 10; ++i) {
    blobs.push_back(RandomBlob(4096, 300 + i));
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(blobs.back()), blobs.back()).ok());
  }
  const std::string extra = RandomBlob(4096, 399);
  const auto start = std::chrono::steady_clock::now();
  Status s = cache->Put(SliceId::ForBlob(extra), extra);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("not yet uploaded"), std::string::npos);
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  // Nothing acknowledged was dropped.
  for (auto& b : blobs) EXPECT_EQ(*cache->Get(SliceId::ForBlob(b)), b);
  EXPECT_EQ(cache->Stats().pending_slices, 10u);

  // Peers come back: uploads drain, the put goes through, and uploaded blobs
  // are evicted to stay under the bound.
  faulty_.FailWith(Code::kOk);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  ASSERT_TRUE(cache->Put(SliceId::ForBlob(extra), extra).ok());
  CacheStats st = cache->Stats();
  EXPECT_LE(st.cached_bytes, o.max_bytes);
  EXPECT_EQ(st.cached_slices, 10u);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(mem_.size(), 11u);
}

TEST_F(CachingStoreTest, BackPressureReleasesWhenUploadsDrain) {
  faulty_.FailWith(Code::kUnavailable);
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 4 * 4096;
  o.backpressure_timeout_ms = 10'000;
  auto cache = OpenCache(o, &faulty_);
  for (uint32_t i = 0; i < 4; ++i) {
    const std::string b = RandomBlob(4096, 400 + i);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(b), b).ok());
  }
  std::thread healer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    faulty_.FailWith(Code::kOk);
  });
  const std::string b = RandomBlob(4096, 499);
  const auto start = std::chrono::steady_clock::now();
  Status s = cache->Put(SliceId::ForBlob(b), b);
  const auto waited = std::chrono::steady_clock::now() - start;
  healer.join();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::milliseconds(5000));
}

TEST_F(CachingStoreTest, LruEvictsTheLeastRecentlyRead) {
  FakeClock clock;
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 3 * 1000;
  auto cache = OpenCache(o, &faulty_, &clock);
  std::vector<std::string> b;
  for (uint32_t i = 0; i < 3; ++i) {
    b.push_back(RandomBlob(1000, 500 + i));
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(b[i]), b[i]).ok());
    clock.Advance(1000);
  }
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  clock.Advance(1000);
  ASSERT_TRUE(cache->Get(SliceId::ForBlob(b[0])).ok());  // b[0] is now the most recent
  b.push_back(RandomBlob(1000, 503));
  ASSERT_TRUE(cache->Put(SliceId::ForBlob(b[3]), b[3]).ok());
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  // Offline: only what is cached is readable.
  faulty_.FailWith(Code::kUnavailable);
  EXPECT_TRUE(cache->Get(SliceId::ForBlob(b[0])).ok());
  EXPECT_EQ(cache->Get(SliceId::ForBlob(b[1])).status().code(), Code::kUnavailable);
  EXPECT_TRUE(cache->Get(SliceId::ForBlob(b[2])).ok());
  EXPECT_TRUE(cache->Get(SliceId::ForBlob(b[3])).ok());
  EXPECT_EQ(cache->Stats().cached_slices, 3u);
}

// Bytes this thread has read through read(2)-like calls, page cache hits
// included (/proc/thread-self/io).
uint64_t ThreadReadBytes() {
  std::ifstream io("/proc/thread-self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return 0;
}

// A full cache makes room for each new slice without reading the slices it
// evicts (a DELETE in the insert's transaction, or with secure_delete on,
// read every page of the evicted blob), and frees a little ahead, in whole
// slices, so that one eviction commit serves several inserts.
TEST_F(CachingStoreTest, EvictionReadsNoEvictedBlobAndFreesAhead) {
  CacheOptions o = SmallOptions(dir_.path());
  constexpr size_t kBlob = 1 << 20;
  o.max_bytes = 32 * kBlob;  // a 16th: 2 slices of room ahead
  auto cache = OpenCache(o, &faulty_);
  uint32_t seed = 700;
  auto put = [&] {
    const std::string b = RandomBlob(kBlob, seed++);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(b), b).ok());
  };
  for (int i = 0; i < 32; ++i) put();
  ASSERT_TRUE(cache->WaitUploaded(10000).ok());
  EXPECT_EQ(cache->Stats().cached_slices, 32u);

  put();  // evicts 1 slice it needs room for and 2 ahead
  EXPECT_EQ(cache->Stats().cached_slices, 30u);
  put();
  put();
  EXPECT_EQ(cache->Stats().cached_slices, 32u);
  ASSERT_TRUE(cache->WaitUploaded(10000).ok());

  const uint64_t before = ThreadReadBytes();
  for (int i = 0; i < 24; ++i) put();  // 8 evictions of 3 slices
  const uint64_t read = ThreadReadBytes() - before;
  EXPECT_LT(read, 24 * kBlob / 8) << "bytes read by 24 inserts into a full cache";
  EXPECT_EQ(cache->Stats().cached_slices, 32u);
}

TEST_F(CachingStoreTest, MissFetchesVerifiesAndCaches) {
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  const std::string blob = RandomBlob(2048, 600);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(mem_.Put(id, blob).ok());
  EXPECT_EQ(*cache->Get(id), blob);
  EXPECT_EQ(cache->Stats().misses, 1u);
  faulty_.FailWith(Code::kUnavailable);
  EXPECT_EQ(*cache->Get(id), blob);  // now served locally (being cached, or cached)
  EXPECT_EQ(cache->Stats().hits, 1u);
  EXPECT_EQ(cache->Stats().pending_slices, 0u);
  // The fetched blob reaches the database off the reader's path.
  for (int i = 0; i < 500 && cache->Stats().cached_slices < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(cache->Stats().cached_slices, 1u);
  EXPECT_EQ(*cache->Get(id), blob);
  EXPECT_EQ(cache->Stats().hits, 2u);

  // A remote that serves damaged bytes: Corruption, nothing cached.
  faulty_.FailWith(Code::kOk);
  const std::string other = RandomBlob(2048, 601);
  const SliceId other_id = SliceId::ForBlob(other);
  mem_.Tamper(other_id, "garbage");
  EXPECT_EQ(cache->Get(other_id).status().code(), Code::kCorruption);
  EXPECT_EQ(cache->Stats().cached_slices, 1u);
}

void TamperRow(const fs::path& db_path, const SliceId& id) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);  // the store's own threads may be writing
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "UPDATE blob_data SET data = x'deadbeef' "
                               "WHERE rowid = (SELECT rowid FROM blobs WHERE id = ?1)",
                               -1, &s, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
  EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// Runs `sql` on the database at `path` (SQLite's own shell would do the same).
void ExecSql(const fs::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::string SqlHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "x'";
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out + "'";
}

// A new cache database uses 32 KiB pages: a 1 MiB blob is 32 overflow
// pages, and reading it back 32 `pread`s.
TEST_F(CachingStoreTest, NewDatabaseUsesLargePages) {
  const CacheOptions o = SmallOptions(dir_.path());
  auto cache = OpenCache(o, &mem_);
  const std::string blob = RandomBlob(1 << 20, 740);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->Put(id, blob).ok());
  EXPECT_EQ(*cache->Get(id), blob);
  cache.reset();
  EXPECT_EQ(IntPragma(o.db_path, "page_size"), 32768);
}

// A cache database of format 1 (the bytes in the blobs row) is upgraded at
// open: the queued blob is kept and still uploads, the uploaded one is
// dropped (the peers have it), and the file says format 2.
TEST_F(CachingStoreTest, UpgradesFormat1KeepingTheQueue) {
  const CacheOptions o = SmallOptions(dir_.path());
  const std::string queued = RandomBlob(40000, 730), uploaded = RandomBlob(30000, 731);
  const SliceId queued_id = SliceId::ForBlob(queued), uploaded_id = SliceId::ForBlob(uploaded);
  ExecSql(o.db_path,
          "PRAGMA page_size = 16384; PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;"
          "CREATE TABLE blobs(rowid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
          " size INTEGER NOT NULL, state INTEGER NOT NULL, last_access INTEGER NOT NULL,"
          " seq INTEGER NOT NULL, copies INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL);"
          "CREATE INDEX blobs_lru ON blobs(state, last_access);"
          "INSERT INTO blobs VALUES(7, " +
              SqlHex(queued_id.Raw()) + ", 40000, 0, 1, 5, 0, " + SqlHex(queued) +
              ");"
              "INSERT INTO blobs VALUES(8, " +
              SqlHex(uploaded_id.Raw()) + ", 30000, 1, 2, 6, 3, " + SqlHex(uploaded) +
              ");"
              "PRAGMA application_id = 1297303107; PRAGMA user_version = 1;");

  faulty_.FailWith(Code::kUnavailable);  // the queue resumes at open: keep it queued
  auto cache = OpenCache(o, &faulty_);
  EXPECT_EQ(IntPragma(o.db_path, "user_version"), 2);
  EXPECT_EQ(IntPragma(o.db_path, "page_size"), 16384);  // an existing file keeps its pages
  const CacheStats st = cache->Stats();
  EXPECT_EQ(st.cached_slices, 1u);
  EXPECT_EQ(st.pending_slices, 1u);
  EXPECT_EQ(st.pending_bytes, 40000u);
  faulty_.FailWith(Code::kOk);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(*mem_.Get(queued_id), queued);
  EXPECT_EQ(*cache->Get(queued_id), queued);
  EXPECT_FALSE(*cache->Contains(uploaded_id));

  // Reopened: format 2 is taken as it is, nothing queued again.
  cache.reset();
  cache = OpenCache(o, &faulty_);
  EXPECT_EQ(cache->Stats().pending_slices, 0u);
  EXPECT_EQ(*cache->Get(queued_id), queued);
}

// A cache database from a newer meshfs is refused with its version, not
// changed.
TEST_F(CachingStoreTest, RefusesANewerFormat) {
  const CacheOptions o = SmallOptions(dir_.path());
  { auto cache = OpenCache(o, &faulty_); }
  ExecSql(o.db_path, "PRAGMA user_version = 3");
  auto cache = CachingStore::Open(o, &faulty_);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), Code::kNotSupported);
  EXPECT_NE(cache.status().message().find("version 3"), std::string::npos)
      << cache.status().ToString();
  EXPECT_EQ(IntPragma(o.db_path, "user_version"), 3);
}

TEST_F(CachingStoreTest, DamagedCachedBlobIsDetectedAndRefetched) {
  const CacheOptions o = SmallOptions(dir_.path());
  auto cache = OpenCache(o, &faulty_);
  const std::string blob = RandomBlob(3000, 700);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->Put(id, blob).ok());
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  TamperRow(o.db_path, id);
  auto got = cache->Get(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob);
  EXPECT_EQ(cache->Stats().corrupt_cached, 1u);
  // The good copy replaced the damaged one.
  faulty_.FailWith(Code::kUnavailable);
  EXPECT_EQ(*cache->Get(id), blob);

  // Damaged and not on the peers: a clear Corruption, never the bad bytes.
  const std::string lonely = RandomBlob(3000, 701);
  const SliceId lonely_id = SliceId::ForBlob(lonely);
  ASSERT_TRUE(cache->Put(lonely_id, lonely).ok());
  TamperRow(o.db_path, lonely_id);
  auto bad = cache->Get(lonely_id);
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("damaged"), std::string::npos);
}

// GetToDecrypt hands a cached copy back unhashed (the caller's AEAD check
// decides) and says so; ReplaceDamaged swaps a copy that failed that check
// for the peers' copy, or keeps it and says Corruption when they have none.
TEST_F(CachingStoreTest, GetToDecryptLeavesCachedCopiesToTheCallersCheck) {
  const CacheOptions o = SmallOptions(dir_.path());
  auto cache = OpenCache(o, &faulty_);
  const std::string blob = RandomBlob(3000, 720);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->Put(id, blob).ok());
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  bool checked = true;
  EXPECT_EQ(**cache->GetToDecrypt(id, &checked), blob);
  EXPECT_FALSE(checked);

  TamperRow(o.db_path, id);
  auto raw = cache->GetToDecrypt(id, &checked);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(**raw, "\xde\xad\xbe\xef");
  EXPECT_FALSE(checked);
  EXPECT_EQ(cache->Stats().corrupt_cached, 0u);
  EXPECT_EQ(**cache->ReplaceDamaged(id), blob);
  EXPECT_EQ(cache->Stats().corrupt_cached, 1u);
  // The peers' copy is what the cache holds now, even with the peers gone.
  faulty_.FailWith(Code::kUnavailable);
  EXPECT_EQ(**cache->GetToDecrypt(id, &checked), blob);
  faulty_.FailWith(Code::kOk);

  // Not cached: fetched and checked by the remote store.
  const std::string remote_only = RandomBlob(3000, 721);
  const SliceId remote_id = SliceId::ForBlob(remote_only);
  ASSERT_TRUE(mem_.Put(remote_id, remote_only).ok());
  checked = false;
  EXPECT_EQ(**cache->GetToDecrypt(remote_id, &checked), remote_only);
  EXPECT_TRUE(checked);

  // Damaged and not on the peers: Corruption, and the row stays for a later
  // attempt (a peer may come back with the good copy).
  const std::string lonely = RandomBlob(3000, 722);
  const SliceId lonely_id = SliceId::ForBlob(lonely);
  ASSERT_TRUE(cache->Put(lonely_id, lonely).ok());
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  TamperRow(o.db_path, lonely_id);
  faulty_.FailWith(Code::kUnavailable);
  auto bad = cache->ReplaceDamaged(lonely_id);
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("damaged"), std::string::npos);
  EXPECT_TRUE(*cache->Contains(lonely_id));
  faulty_.FailWith(Code::kOk);
  EXPECT_EQ(**cache->ReplaceDamaged(lonely_id), lonely);
}

// PutTrusted (a blob the codec just made) skips the address check on the way
// in; reads still check what the cache holds, so a mismatched blob can never
// come back out.
TEST_F(CachingStoreTest, PutTrustedSkipsTheCheckButReadsStillVerify) {
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  const std::string blob = RandomBlob(5000, 710);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->PutTrusted(id, blob).ok());
  EXPECT_EQ(*cache->Get(id), blob);
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  EXPECT_EQ(*mem_.Get(id), blob);

  const std::string other = RandomBlob(5000, 711);
  const SliceId wrong = SliceId::ForBlob(RandomBlob(5000, 712));
  EXPECT_EQ(cache->Put(wrong, other).code(), Code::kCorruption);
  ASSERT_TRUE(cache->PutTrusted(wrong, other).ok());
  auto got = cache->Get(wrong);
  EXPECT_EQ(got.status().code(), Code::kCorruption) << got.status().ToString();
}

// Checkpoints run beside the writer: the WAL is reused instead of growing
// with everything written, and every blob is in the database after reopen.
// Under a steady stream of Puts the WAL is copied into the database once it
// reaches the busy bound, and starts over.
TEST_F(CachingStoreTest, SustainedPutsCheckpointAtTheBusyBound) {
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 512 << 20;
  o.wal_busy_bytes = 32 << 20;
  o.checkpoint_quiet_ms = 60'000;  // only the bound can start a checkpoint
  std::vector<SliceId> ids;
  {
    auto cache = OpenCache(o, &mem_);
    for (int i = 0; i < 120; ++i) {
      const std::string blob = RandomBlob(1 << 20, 900 + i);
      ids.push_back(SliceId::ForBlob(blob));
      ASSERT_TRUE(cache->PutTrusted(ids.back(), blob).ok());
    }
    const auto wal = fs::file_size(o.db_path.string() + "-wal");
    EXPECT_LT(wal, 90u << 20) << "the WAL holds everything written: no checkpoint ran";
    ASSERT_TRUE(cache->WaitUploaded(30000).ok());
  }
  auto cache = OpenCache(o, &faulty_);
  faulty_.FailWith(Code::kUnavailable);  // every read must come from the cache
  for (int i = 0; i < 120; i += 37) {
    auto got = cache->Get(ids[i]);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, RandomBlob(1 << 20, 900 + i));
  }
}

// A burst of Puts below the busy bound is not copied into the database
// while it lasts (the copy would compete with it), and is once it pauses.
TEST_F(CachingStoreTest, CheckpointWaitsForPutsToPause) {
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 512 << 20;  // busy bound: the cache size
  o.checkpoint_quiet_ms = 1500;
  const fs::path wal = o.db_path.string() + "-wal";
  auto cache = OpenCache(o, &mem_);
  std::vector<std::string> blobs;
  for (int i = 0; i < 48; ++i) blobs.push_back(RandomBlob(1 << 20, 300 + i));
  for (const std::string& b : blobs) ASSERT_TRUE(cache->PutTrusted(SliceId::ForBlob(b), b).ok());
  EXPECT_GE(fs::file_size(wal), 48u << 20);
  EXPECT_LT(fs::file_size(o.db_path), 8u << 20) << "checkpointed during the burst";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (fs::file_size(o.db_path) < (48u << 20) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(fs::file_size(o.db_path), 48u << 20) << "not checkpointed after the burst";
  for (const std::string& b : blobs) {
    auto got = cache->Get(SliceId::ForBlob(b));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, b);
  }
}

// A remote whose Puts wait until Open(): uploads that are on their way
// and neither finish nor fail.
class GatedStore final : public SliceStore {
 public:
  explicit GatedStore(SliceStore* base) : base_(base) {}
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Opens the gate when it goes out of scope: declared after the cache,
  // so that a failed assertion cannot leave its uploaders blocked while
  // it shuts down.
  struct OpenAtExit {
    GatedStore* g;
    ~OpenAtExit() { g->Open(); }
  };
  Status Put(const SliceId& id, std::string_view blob) override {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return open_; });
    l.unlock();
    return base_->Put(id, blob);
  }
  Result<std::string> Get(const SliceId& id) override { return base_->Get(id); }
  Result<bool> Contains(const SliceId& id) override { return base_->Contains(id); }
  Status Remove(const SliceId& id) override { return base_->Remove(id); }
  Status Flush() override { return base_->Flush(); }

 private:
  SliceStore* base_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// While blobs are on their way to the peers, the copy of the WAL waits for
// them (the uploads read their blobs from the WAL, beside it) and runs once
// they are up; not for uploads that fail (peers down), and not longer than
// checkpoint_upload_hold_ms after the last blob stored.
TEST_F(CachingStoreTest, CheckpointWaitsForUploadsOnTheirWayForABoundedTime) {
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 512 << 20;
  o.checkpoint_quiet_ms = 200;
  o.writer_idle_ms = 0;  // uploads start at once
  const fs::path wal = o.db_path.string() + "-wal";
  std::vector<std::string> blobs;
  for (int i = 0; i < 40; ++i) blobs.push_back(RandomBlob(1 << 20, 3100 + i));
  auto copied = [&] { return fs::file_size(o.db_path) >= (40u << 20); };
  auto wait_for_copy = [&](int seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!copied() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return copied();
  };
  auto fresh = [&] {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(o.db_path.string() + suffix);
  };
  {
    o.checkpoint_upload_hold_ms = 60'000;
    GatedStore gated(&mem_);
    auto cache = OpenCache(o, &gated);
    GatedStore::OpenAtExit open_at_exit{&gated};
    for (const std::string& b : blobs) ASSERT_TRUE(cache->PutTrusted(SliceId::ForBlob(b), b).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // 7 quiet periods
    EXPECT_GE(fs::file_size(wal), 40u << 20);
    EXPECT_FALSE(copied()) << "copied while the uploads were on their way";
    gated.Open();
    ASSERT_TRUE(cache->WaitUploaded(30000).ok());
    EXPECT_TRUE(wait_for_copy(20)) << "not copied once the uploads were done";
  }
  fresh();
  {
    auto cache = OpenCache(o, &faulty_);
    faulty_.FailWith(Code::kUnavailable);
    for (const std::string& b : blobs) ASSERT_TRUE(cache->PutTrusted(SliceId::ForBlob(b), b).ok());
    EXPECT_TRUE(wait_for_copy(20)) << "held by uploads that fail";
    EXPECT_GT(cache->Stats().pending_slices, 0u);
    faulty_.FailWith(Code::kOk);
  }
  fresh();
  {
    o.checkpoint_upload_hold_ms = 1000;
    GatedStore gated(&mem_);
    auto cache = OpenCache(o, &gated);
    GatedStore::OpenAtExit open_at_exit{&gated};
    for (const std::string& b : blobs) ASSERT_TRUE(cache->PutTrusted(SliceId::ForBlob(b), b).ok());
    EXPECT_TRUE(wait_for_copy(20)) << "held longer than checkpoint_upload_hold_ms";
    EXPECT_GT(cache->Stats().pending_slices, 0u);
    gated.Open();
    ASSERT_TRUE(cache->WaitUploaded(30000).ok());
  }
}

// With the default bounds a write of more than half the cache runs
// undisturbed: the uploads keep waiting for the writer up to three quarters
// of the cache, and the WAL is copied during a burst only at the cache size
// (at half of it, a 1 GiB write into the default 2 GiB cache had both
// start just before its closing fsync).
TEST_F(CachingStoreTest, DefaultBoundsLetAWriteOfHalfTheCacheRunUndisturbed) {
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 64 << 20;
  o.writer_idle_ms = 5000;         // only a bound can start the uploads
  o.checkpoint_quiet_ms = 60'000;  // only a bound can start a checkpoint
  ASSERT_EQ(o.yield_bytes, 0u);
  ASSERT_EQ(o.wal_busy_bytes, 0u);
  auto cache = OpenCache(o, &mem_);
  std::vector<std::string> blobs;
  for (int i = 0; i < 40; ++i) blobs.push_back(RandomBlob(1 << 20, 2000 + i));
  for (const std::string& b : blobs) ASSERT_TRUE(cache->Put(SliceId::ForBlob(b), b).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(mem_.size(), 0u) << "uploads started while 40 of 64 MiB were queued";
  EXPECT_LT(fs::file_size(o.db_path), 8u << 20) << "checkpointed during the burst";
  ASSERT_TRUE(cache->WaitUploaded(30000).ok());
  EXPECT_EQ(mem_.size(), blobs.size());
}

// Puts, reads, uploads and checkpoints (bulk beside the writer, catch-up
// with it held) all at once: every read gets the right bytes, nothing
// deadlocks, and everything is there after reopen.
TEST_F(CachingStoreTest, ReadsDuringSustainedPutsAndCheckpointsSeeTheRightBytes) {
  CacheOptions o = SmallOptions(dir_.path());
  o.max_bytes = 512 << 20;
  o.wal_busy_bytes = 24 << 20;  // several checkpoints while the Puts go on
  const std::string base = RandomBlob(1 << 20, 4242);
  auto blob_n = [&](int n) {
    std::string b = base;
    std::memcpy(b.data(), &n, sizeof(n));  // distinct blobs, cheaply
    return b;
  };
  constexpr int kBlobs = 96;
  std::vector<SliceId> ids;
  for (int i = 0; i < kBlobs; ++i) ids.push_back(SliceId::ForBlob(blob_n(i)));
  {
    auto cache = OpenCache(o, &mem_);
    std::atomic<int> written{0};
    std::atomic<int> bad_reads{0}, reads{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        uint32_t x = 7u + static_cast<uint32_t>(r);
        while (!done.load()) {
          const int have = written.load();
          if (have == 0) continue;
          x = x * 1103515245u + 12345u;
          const int i = static_cast<int>(x % static_cast<uint32_t>(have));
          auto got = cache->Get(ids[i]);
          reads.fetch_add(1);
          if (!got.ok() || *got != blob_n(i)) bad_reads.fetch_add(1);
        }
      });
    }
    for (int i = 0; i < kBlobs; ++i) {
      ASSERT_TRUE(cache->PutTrusted(ids[i], blob_n(i)).ok()) << i;
      written.store(i + 1);
    }
    done.store(true);
    for (auto& t : readers) t.join();
    EXPECT_EQ(bad_reads.load(), 0) << "of " << reads.load() << " reads";
    EXPECT_GT(reads.load(), 0);
    ASSERT_TRUE(cache->WaitUploaded(30000).ok());
  }
  auto cache = OpenCache(o, &faulty_);
  faulty_.FailWith(Code::kUnavailable);  // from the cache or not at all
  for (int i = 0; i < kBlobs; ++i) {
    auto got = cache->Get(ids[i]);
    ASSERT_TRUE(got.ok()) << i << ": " << got.status().ToString();
    ASSERT_TRUE(*got == blob_n(i)) << i;
  }
}

TEST_F(CachingStoreTest, RemoveDropsLocalCopyAndForwards) {
  auto cache = OpenCache(SmallOptions(dir_.path()), &faulty_);
  const std::string blob = RandomBlob(1500, 800);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cache->Put(id, blob).ok());
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());
  ASSERT_TRUE(cache->Remove(id).ok());
  EXPECT_FALSE(*mem_.Contains(id));
  EXPECT_FALSE(*cache->Contains(id));
  EXPECT_EQ(cache->Stats().cached_slices, 0u);
}

TEST_F(CachingStoreTest, ClearUploadedKeepsPending) {
  const CacheOptions o = SmallOptions(dir_.path());
  const std::string up = RandomBlob(4000, 900), queued = RandomBlob(4000, 901);
  {
    auto cache = OpenCache(o, &faulty_);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(up), up).ok());
    ASSERT_TRUE(cache->WaitUploaded(5000).ok());
    faulty_.FailWith(Code::kUnavailable);
    ASSERT_TRUE(cache->Put(SliceId::ForBlob(queued), queued).ok());
    ASSERT_TRUE(cache->ClearUploaded().ok());
    CacheStats st = cache->Stats();
    EXPECT_EQ(st.cached_slices, 1u);
    EXPECT_EQ(st.pending_slices, 1u);
    EXPECT_EQ(cache->Get(SliceId::ForBlob(up)).status().code(), Code::kUnavailable);
    EXPECT_EQ(*cache->Get(SliceId::ForBlob(queued)), queued);
  }
  // Offline variant on a closed database, then reopen.
  faulty_.FailWith(Code::kOk);
  ASSERT_TRUE(mem_.Put(SliceId::ForBlob(up), up).ok());
  {
    auto cache = OpenCache(o, &mem_);
    ASSERT_TRUE(cache->Get(SliceId::ForBlob(up)).ok());  // cached again as uploaded
    ASSERT_TRUE(cache->WaitUploaded(5000).ok());
    for (int i = 0; i < 500 && cache->Stats().cached_slices < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the filler caches it
    }
    EXPECT_EQ(cache->Stats().cached_slices, 2u);
  }
  ASSERT_TRUE(ClearUploadedOffline(o.db_path).ok());
  auto cache = OpenCache(o, &mem_);
  EXPECT_EQ(cache->Stats().cached_slices, 0u);
  EXPECT_EQ(ClearUploadedOffline(dir_.path() / "missing.db").code(), Code::kNotFound);
}

TEST_F(CachingStoreTest, ForeignFileIsRefusedAndLeftAlone) {
  const fs::path p = dir_.path() / "cache.db";
  const std::string notes = "this is not a database, it is someone's notes\n";
  {
    std::ofstream f(p);
    f << notes;
  }
  CacheOptions o = SmallOptions(dir_.path());
  auto s = CachingStore::Open(o, &mem_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kCorruption) << s.status().ToString();
  EXPECT_NE(s.status().message().find("cache.db"), std::string::npos);
  EXPECT_EQ(fs::file_size(p), notes.size());

  // A valid SQLite database of another program.
  const fs::path other = dir_.path() / "other.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  o.db_path = other;
  auto s2 = CachingStore::Open(o, &mem_);
  ASSERT_FALSE(s2.ok());
  EXPECT_EQ(s2.status().code(), Code::kInvalidArgument);
  EXPECT_NE(s2.status().message().find("not a meshfs cache"), std::string::npos);
}

// A remote that reports copies: it holds `copies_per_put` of the wanted 3.
class CountingStore final : public SliceStore, public ReplicaReporter {
 public:
  explicit CountingStore(SliceStore* base) : base_(base) {}
  Status Put(const SliceId& id, std::string_view blob) override {
    int c;
    return PutCounted(id, blob, &c);
  }
  Status PutCounted(const SliceId& id, std::string_view blob, int* copies) override {
    MESHFS_RETURN_IF_ERROR(base_->Put(id, blob));
    *copies = copies_per_put.load();
    if (*copies < 3) return Status::Unavailable("only " + std::to_string(*copies) + " copies");
    return Status::OK();
  }
  int Replicas() const override { return 3; }
  Result<std::string> Get(const SliceId& id) override { return base_->Get(id); }
  Result<bool> Contains(const SliceId& id) override { return base_->Contains(id); }
  Status Remove(const SliceId& id) override { return base_->Remove(id); }
  Status Flush() override { return Status::OK(); }
  std::atomic<int> copies_per_put{1};

 private:
  SliceStore* base_;
};

TEST_F(CachingStoreTest, NetworkDurabilityFlushWaitsForMinimumCopies) {
  CountingStore counting(&mem_);
  CacheOptions o = SmallOptions(dir_.path());
  o.durability = Durability::kNetwork;
  o.min_network_copies = 2;
  auto cache = OpenCache(o, &counting);
  const std::string blob = RandomBlob(1000, 1000);
  ASSERT_TRUE(cache->Put(SliceId::ForBlob(blob), blob).ok());
  Status s = cache->Flush();  // only 1 of the 2 required copies
  EXPECT_EQ(s.code(), Code::kTimedOut) << s.ToString();
  EXPECT_NE(s.message().find("2 peers"), std::string::npos);
  counting.copies_per_put = 2;  // enough for Flush, still short of R: stays pending
  ASSERT_TRUE(cache->Flush().ok());
  EXPECT_EQ(cache->Stats().pending_slices, 1u);
  counting.copies_per_put = 3;
  ASSERT_TRUE(cache->WaitUploaded(5000).ok());

  // Local durability: Flush returns at once even with peers down.
  faulty_.FailWith(Code::kUnavailable);
  TempDir other;
  CacheOptions lo = SmallOptions(other.path());
  auto local = OpenCache(lo, &faulty_);
  ASSERT_TRUE(local->Put(SliceId::ForBlob(blob), blob).ok());
  EXPECT_TRUE(local->Flush().ok());
}

// Full disk: the cache database on a 3 MiB tmpfs. Needs root (mount).
TEST_F(CachingStoreTest, FullDiskGivesNoSpaceAndKeepsWhatWasAcknowledged) {
  const fs::path mnt = dir_.path() / "tiny";
  fs::create_directories(mnt);
  if (geteuid() != 0 || mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=3m") != 0) {
    GTEST_SKIP() << "needs root to mount a tiny tmpfs";
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  faulty_.FailWith(Code::kUnavailable);
  CacheOptions o = SmallOptions(mnt);
  std::vector<std::string> acked;
  Status last;
  {
    auto cache = OpenCache(o, &faulty_);
    ASSERT_NE(cache, nullptr);
    for (uint32_t i = 0; i < 200; ++i) {
      std::string b = RandomBlob(64 << 10, 2000 + i);
      last = cache->Put(SliceId::ForBlob(b), b);
      if (!last.ok()) break;
      acked.push_back(std::move(b));
    }
    EXPECT_EQ(last.code(), Code::kNoSpace) << last.ToString();
    EXPECT_NE(last.message().find("disk full"), std::string::npos);
    EXPECT_GT(acked.size(), 5u);
    for (auto& b : acked) {
      auto got = cache->Get(SliceId::ForBlob(b));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_TRUE(*got == b);
    }
    EXPECT_EQ(cache->Stats().pending_slices, acked.size());
  }
  // Reopened: everything acknowledged is still queued and then uploaded.
  faulty_.FailWith(Code::kOk);
  auto cache = OpenCache(o, &faulty_);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->Stats().cached_slices, acked.size());  // uploads start at once
  ASSERT_TRUE(cache->WaitUploaded(10000).ok());
  for (auto& b : acked) EXPECT_TRUE(*mem_.Get(SliceId::ForBlob(b)) == b);
}

}  // namespace
}  // namespace meshfs::cache

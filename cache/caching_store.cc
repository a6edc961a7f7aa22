// CachingStore implementation. Layout of the cache database (docs/architecture.md,
// "Client data path"):
//
//   PRAGMA application_id = 0x4d534643 ("MSFC"), user_version = 2
//   blobs(rowid, id BLOB UNIQUE (32 bytes), size, state 0=pending 1=uploaded,
//         last_access (µs since epoch), seq (Put order), copies)
//   index blobs_lru(state, last_access)
//   blob_data(rowid = blobs.rowid, data BLOB), emptied by a trigger when
//   its blobs row is deleted
//
// Blobs live inside SQLite, their bytes in a table of their own: SQLite
// rewrites a whole row to change one column, so with the data in the same
// row (format 1) marking one uploaded 1 MiB blob or recording a read of it
// read and compared all 64 of its overflow pages (1.2-1.8 ms of CPU each;
// 0.002 ms now). The pending rows are the upload queue.
//
// Concurrency: one writer connection guarded by write_mu_; a pool of read
// connections (WAL readers never block the writer); in-memory state
// (counters, pending map, ready queue, touches) guarded by mu_. Lock order:
// write_mu_ before mu_. No lock is held across a call to the remote store.
//
// Checkpoints (copying the WAL into the database, with the fsyncs that
// needs) run on their own thread and connection: done by the writer, as
// SQLite does by default, they held write_mu_ for tens of milliseconds every
// 16 MiB and stalled every Put behind them. A checkpoint writes every byte a
// second time (WAL, then database) and costs about as much CPU as storing
// it, so while blobs stream in (a large write, a cold read filling the
// cache) or leave for the peers, the checkpointer waits: it copies the WAL
// once no blob has been stored or uploaded for checkpoint_quiet_ms and no
// upload is on its way (queued and not failing; for at most
// checkpoint_upload_hold_ms after the last blob stored), or at
// once when the WAL reaches busy_wal_bytes_ (by default the cache bound,
// at most 4 GiB) or a quarter of the disk's free space. (With half the
// cache bound, a 1 GiB write into the default 2 GiB cache was checkpointed
// just before its closing fsync: 4.2-4.5 s instead of 2.9-4.1 s.) It copies
// the bulk beside the writer, then the last few MiB with write_mu_ held (a
// short stall) so that the WAL can start over. At twice that bound (the
// smaller of the two) the writer checkpoints itself, so a checkpointer that
// falls behind cannot let the WAL grow without bound or fill the disk. A
// commit that fails for a full disk wakes the checkpointer too. Meanwhile
// the same thread starts the writeback of each new 16 MiB of queued blobs
// in the WAL (sync_file_range), so that the fsync that makes them durable
// finds little left to write.
#include "meshfs/cache/caching_store.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "meshfs/core/buffer_pool.h"
#include "meshfs/core/disk_reserve.h"
#include "meshfs/core/log.h"
#include "meshfs/core/replica_reporter.h"
#include "meshfs/core/thread_name.h"
#include "sqlite_db.h"

namespace meshfs::cache {
namespace {

constexpr int32_t kApplicationId = 0x4d534643;  // "MSFC"
constexpr int kSchemaVersion = 2;
constexpr int kPending = 0;
constexpr int kUploaded = 1;
constexpr size_t kMaxIdleReaders = 8;
constexpr size_t kTouchBatch = 1024;
// The WAL is copied into the database once blobs stop arriving when it holds
// this much, at once when it holds busy_wal_bytes_.
constexpr int64_t kCheckpointBytes = 32 << 20;
constexpr int64_t kMaxBusyWalBytes = int64_t{4} << 30;
constexpr int64_t kCatchUpBytes = 8 << 20;
// The writer looks at the disk's free space again every this many bytes of WAL.
constexpr int64_t kBoundRecheckBytes = 1 << 20;
// A commit that grows the WAL by this much stores a blob (not a mark).
constexpr int64_t kBlobCommitBytes = 128 << 10;
// Writeback of the WAL is started every this many new bytes.
constexpr int64_t kWalFlushStepBytes = 16 << 20;
// Blobs just queued are handed to the upload workers in memory up to this
// many bytes, so that an upload does not read back what was just written.
constexpr uint64_t kHandoffMaxBytes = 32ull << 20;
// Blobs fetched from the peers wait for the cache filler up to this many bytes.
constexpr uint64_t kFillMaxBytes = 16ull << 20;
constexpr const char* kComponent = "cache";
// A file of this size beside the database is given back when the disk is
// full, so that uploads can still be recorded and the queue can drain.
constexpr uint64_t kReserveBytes = 512 << 10;
// What an eviction frees beyond the room an insert needs (MakeRoomLocked).
constexpr uint64_t kEvictAheadBytes = 16 << 20;

using SteadyClock = std::chrono::steady_clock;

const char* const kSchema = R"sql(
CREATE TABLE IF NOT EXISTS blobs(
  rowid INTEGER PRIMARY KEY,
  id BLOB NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  state INTEGER NOT NULL,
  last_access INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  copies INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS blobs_lru ON blobs(state, last_access);
CREATE TABLE IF NOT EXISTS blob_data(
  rowid INTEGER PRIMARY KEY,
  data BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS blobs_drop_data AFTER DELETE ON blobs BEGIN
  DELETE FROM blob_data WHERE rowid = old.rowid;
END;
)sql";

// Format 1 kept the bytes in the blobs row. The upgrade keeps the queued
// blobs (not on the peers yet) and drops the uploaded ones, which the
// cache fetches again when they are read: copying them would cost a pass
// over the whole cache at mount.
const char* const kUpgradeFrom1 = R"sql(
ALTER TABLE blobs RENAME TO blobs_v1;
DROP INDEX IF EXISTS blobs_lru;
)sql";
const char* const kUpgradeFrom1Copy = R"sql(
INSERT INTO blobs(rowid, id, size, state, last_access, seq, copies)
  SELECT rowid, id, size, state, last_access, seq, copies FROM blobs_v1 WHERE state = 0;
INSERT INTO blob_data(rowid, data) SELECT rowid, data FROM blobs_v1 WHERE state = 0;
DROP TABLE blobs_v1;
PRAGMA user_version = 2;
)sql";

const char* const kSqlSelectRow = "SELECT rowid, size FROM blobs WHERE id = ?1";
const char* const kSqlExists = "SELECT state FROM blobs WHERE id = ?1";
const char* const kSqlInsert =
    "INSERT INTO blobs(id, size, state, last_access, seq, copies) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO NOTHING";
const char* const kSqlInsertData = "INSERT INTO blob_data(rowid, data) VALUES(?1, ?2)";
// `copies` matters for pending rows only.
const char* const kSqlMarkUploaded = "UPDATE blobs SET state = 1 WHERE id = ?1 AND state = 0";
const char* const kSqlSetCopies = "UPDATE blobs SET copies = ?2 WHERE id = ?1";
const char* const kSqlTouch = "UPDATE blobs SET last_access = ?2 WHERE id = ?1";
const char* const kSqlLruVictims =
    "SELECT id, size FROM blobs WHERE state = 1 ORDER BY last_access LIMIT 64";
const char* const kSqlDeleteUploaded = "DELETE FROM blobs WHERE id = ?1 AND state = 1";
const char* const kSqlDeleteAny = "DELETE FROM blobs WHERE id = ?1 RETURNING size, state";
const char* const kSqlBegin = "BEGIN IMMEDIATE";
const char* const kSqlCommit = "COMMIT";
const char* const kSqlSyncFull = "PRAGMA synchronous = FULL";
const char* const kSqlSyncNormal = "PRAGMA synchronous = NORMAL";

Status StepDone(SqliteDb& db, sqlite3_stmt* s, std::string_view what) {
  const int rc = sqlite3_step(s);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db.Error(rc, what);
  return Status::OK();
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

// Format 1 -> 2, in one transaction: a crash leaves format 1 as it was.
Status UpgradeFrom1(SqliteDb& db, const std::filesystem::path& path) {
  MESHFS_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status s = db.Exec(kUpgradeFrom1);
  if (s.ok()) s = db.Exec(kSchema);
  if (s.ok()) s = db.Exec(kUpgradeFrom1Copy);
  if (s.ok()) s = db.Exec("COMMIT");
  if (!s.ok()) {
    db.RollbackIfOpen();
    return Status(s.code(), "upgrading " + path.string() + " to cache format 2: " + s.message());
  }
  LogInfo(kComponent, "upgraded " + path.string() +
                          " to cache format 2 (queued slices kept, uploaded ones dropped)");
  return Status::OK();
}

// Opens the database, checks magic and version, creates the schema (or
// upgrades format 1).
Result<std::unique_ptr<SqliteDb>> OpenCacheDb(const std::filesystem::path& path, bool create) {
  MESHFS_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path, create));
  auto int_query = [&](const char* sql) -> Result<int64_t> {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, db->Prepare(sql));
    StmtReset reset(s);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return db->Error(rc, "reading header");
    return sqlite3_column_int64(s, 0);
  };
  MESHFS_ASSIGN_OR_RETURN(int64_t app_id, int_query("PRAGMA application_id"));
  MESHFS_ASSIGN_OR_RETURN(int64_t version, int_query("PRAGMA user_version"));
  MESHFS_ASSIGN_OR_RETURN(int64_t tables, int_query("SELECT count(*) FROM sqlite_master"));
  if (app_id == 0 && version == 0 && tables == 0) {
    // A new database: page size and vacuum mode must be set before any table.
    // Large pages: a 1 MiB blob is 32 overflow pages (256 at SQLite's default
    // 4 KiB), each one WAL frame, one `pread`, one checkpoint copy; larger
    // pages cost small blobs more (docs/architecture.md, "Page size").
    MESHFS_RETURN_IF_ERROR(db->Exec("PRAGMA page_size = 32768; PRAGMA auto_vacuum = INCREMENTAL"));
    MESHFS_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode = WAL"));
    MESHFS_RETURN_IF_ERROR(db->Exec("BEGIN IMMEDIATE"));
    Status s = db->Exec(kSchema);
    if (s.ok()) s = db->Exec("PRAGMA application_id = 1297303107; PRAGMA user_version = 2");
    if (s.ok()) s = db->Exec("COMMIT");
    if (!s.ok()) {
      db->RollbackIfOpen();
      return s;
    }
  } else if (app_id != kApplicationId) {
    return Status::InvalidArgument(path.string() + " is not a meshfs cache database");
  } else if (version > kSchemaVersion || version < 1) {
    return Status::NotSupported(path.string() + " has cache format version " +
                                std::to_string(version) + "; this meshfs reads version " +
                                std::to_string(kSchemaVersion));
  } else {
    MESHFS_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode = WAL"));
    if (version == 1) MESHFS_RETURN_IF_ERROR(UpgradeFrom1(*db, path));
  }
  // A small page cache per connection: blobs are read once and decoded
  // slices are cached above this store; the b-tree pages fit. No zeroing of
  // freed pages (Debian's SQLite defaults to secure_delete): the blobs are
  // ciphertext, and zeroing made every eviction read and rewrite the
  // evicted blob's pages.
  MESHFS_RETURN_IF_ERROR(
      db->Exec("PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 67108864;"
               "PRAGMA cache_size = -2048; PRAGMA secure_delete = OFF"));
  return db;
}

struct PendingEntry {
  uint64_t seq = 0;
  int64_t queued_ms = 0;  // steady clock; 0 for what a restart found queued
  uint64_t size = 0;
  int copies = 0;
  int attempts = 0;
  int64_t next_try_ms = 0;
  bool in_flight = false;
};

uint64_t BlobSize(const std::string& b) { return b.size(); }
uint64_t BlobSize(const std::shared_ptr<const std::string>& b) { return b->size(); }

// Blobs by address with the sum of their sizes, which callers bound. Not
// thread-safe (the owner's mu_).
template <typename Blob>
class SizedBlobMap {
 public:
  uint64_t bytes() const { return bytes_; }
  const Blob* Find(const SliceId& id) const {
    auto it = map_.find(id);
    return it == map_.end() ? nullptr : &it->second;
  }
  // False (and `blob` not taken) if `id` is there already.
  bool Insert(const SliceId& id, Blob&& blob) {
    const uint64_t n = BlobSize(blob);
    if (!map_.emplace(id, std::move(blob)).second) return false;
    bytes_ += n;
    return true;
  }
  std::optional<Blob> Take(const SliceId& id) {
    auto it = map_.find(id);
    if (it == map_.end()) return std::nullopt;
    std::optional<Blob> out(std::move(it->second));
    bytes_ -= BlobSize(*out);
    map_.erase(it);
    return out;
  }
  void Clear() {
    map_.clear();
    bytes_ = 0;
  }

 private:
  std::unordered_map<SliceId, Blob> map_;
  uint64_t bytes_ = 0;
};

}  // namespace

class CachingStore::Impl {
 public:
  Impl(const CacheOptions& options, SliceStore* remote, Clock* clock)
      : options_(options),
        remote_(remote),
        reporter_(dynamic_cast<ReplicaReporter*>(remote)),
        clock_(clock) {}

  ~Impl() { Stop(); }

  Status Init() {
    MESHFS_ASSIGN_OR_RETURN(writer_, OpenCacheDb(options_.db_path, /*create=*/true));
    MESHFS_ASSIGN_OR_RETURN(checkpointer_db_, OpenCacheDb(options_.db_path, /*create=*/false));
    {
      MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * ps, writer_->Prepare("PRAGMA page_size"));
      StmtReset reset(ps);
      if (sqlite3_step(ps) != SQLITE_ROW) return writer_->Error(SQLITE_ERROR, "reading page size");
      page_size_ = sqlite3_column_int64(ps, 0);
    }
    busy_wal_bytes_ =
        options_.wal_busy_bytes != 0
            ? static_cast<int64_t>(options_.wal_busy_bytes)
            : std::clamp(static_cast<int64_t>(options_.max_bytes), kCheckpointBytes,
                         kMaxBusyWalBytes);
    // Replaces SQLite's auto-checkpoint (which is itself a WAL hook).
    sqlite3_wal_hook(writer_->handle(), &Impl::WalHook, this);
    reserve_.Ensure();
    // Rebuild counters and the upload queue from the database.
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s,
                            writer_->Prepare("SELECT id, size, state, seq, copies FROM blobs"));
    StmtReset reset(s);
    int rc;
    std::vector<std::pair<uint64_t, SliceId>> queue;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const void* raw = sqlite3_column_blob(s, 0);
      const int raw_len = sqlite3_column_bytes(s, 0);
      const uint64_t size = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
      const int state = sqlite3_column_int(s, 2);
      const uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(s, 3));
      seq_ = std::max(seq_, seq);
      auto id = SliceId::FromBytes(std::string_view(static_cast<const char*>(raw),
                                                    raw ? static_cast<size_t>(raw_len) : 0));
      if (!id.ok()) {
        LogWarn(kComponent, "ignoring a cache row with a malformed address");
        continue;
      }
      cached_bytes_ += size;
      cached_slices_++;
      if (state != kUploaded) {
        PendingEntry e;
        e.seq = seq;
        e.size = size;
        e.copies = sqlite3_column_int(s, 4);
        pending_.emplace(*id, e);
        pending_bytes_ += size;
        queue.emplace_back(seq, *id);
      }
    }
    if (rc != SQLITE_DONE) return writer_->Error(rc, "loading the upload queue");
    std::sort(queue.begin(), queue.end());
    for (auto& [seq, id] : queue) ready_.push_back(id);
    if (!queue.empty()) {
      LogInfo(kComponent, "resuming " + std::to_string(queue.size()) + " queued uploads (" +
                              std::to_string(pending_bytes_) + " bytes)");
    }
    const int threads = std::max(1, options_.upload_threads);
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
    housekeeper_ = std::thread([this] { HousekeeperLoop(); });
    filler_ = std::thread([this] { FillerLoop(); });
    checkpointer_ = std::thread([this] { CheckpointerLoop(); });
    return Status::OK();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    work_cv_.notify_all();
    space_cv_.notify_all();
    done_cv_.notify_all();
    housekeeper_cv_.notify_all();
    fill_cv_.notify_all();
    checkpoint_cv_.notify_all();
    for (auto& t : workers_) t.join();
    if (housekeeper_.joinable()) housekeeper_.join();
    if (filler_.joinable()) filler_.join();
    if (checkpointer_.joinable()) checkpointer_.join();
    checkpointer_db_.reset();
    std::lock_guard<std::mutex> w(write_mu_);
    if (writer_) (void)FlushTouchesLocked();
  }

  // ---- SliceStore ----

  // `owned`: a trusted blob's buffer (PutTrusted), not checked, and handed
  // to the uploaders instead of a copy. Null: check `blob` against `id`.
  Status Put(const SliceId& id, std::string_view blob, std::string* owned) {
    if (owned == nullptr && !id.Matches(blob)) {
      return Status::Corruption("refusing to cache slice " + id.ToHex() +
                                ": the blob does not match its address");
    }
    // Fast path: already cached (dedup).
    {
      auto exists = LocalState(id);
      if (!exists.ok()) return exists.status();
      if (*exists >= 0) {
        Touch(id);
        return Status::OK();
      }
    }
    const uint64_t size = blob.size();
    uint64_t seq;
    {
      // Back-pressure: pending bytes (plus reservations) stay under the bound.
      std::unique_lock<std::mutex> l(mu_);
      const auto deadline =
          SteadyClock::now() + std::chrono::milliseconds(options_.backpressure_timeout_ms);
      while (!stopping_ && pending_bytes_ + reserved_bytes_ > 0 &&
             pending_bytes_ + reserved_bytes_ + size > options_.max_bytes) {
        if (space_cv_.wait_until(l, deadline) == std::cv_status::timeout &&
            pending_bytes_ + reserved_bytes_ + size > options_.max_bytes) {
          return Status::NoSpace(
              "cache full of data not yet uploaded (" + std::to_string(pending_bytes_) +
              " bytes pending, bound " + std::to_string(options_.max_bytes) +
              "); peers unreachable or too slow: check `meshfs status`, raise cache_size");
        }
      }
      if (stopping_) return Status::Aborted("cache is shutting down");
      reserved_bytes_ += size;
      seq = ++seq_;
      NoteWriteActivity();
    }
    Status s = InsertDurable(id, blob, seq, owned);
    {
      std::lock_guard<std::mutex> l(mu_);
      reserved_bytes_ -= size;
    }
    space_cv_.notify_all();
    return s;
  }

  // `check_local`: hash a cached copy before returning it, and fetch a good
  // one if it fails. Without it (GetToDecrypt) the caller authenticates the
  // copy and calls ReplaceDamaged if it fails; `*checked` says which it got.
  Result<SharedBlob> Get(const SliceId& id, bool check_local, bool* checked) {
    *checked = true;
    bool damaged = false;
    {
      // Fetched a moment ago and not yet written to the database.
      SharedBlob filling;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (const auto* f = fill_.Find(id)) filling = *f;
      }
      if (filling) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return filling;
      }
    }
    {
      auto local = ReadLocal(id);
      if (!local.ok()) return local.status();
      if (local->has_value()) {
        std::string& blob = **local;
        if (!check_local || id.Matches(blob)) {
          *checked = check_local;
          hits_.fetch_add(1, std::memory_order_relaxed);
          Touch(id);
          return BufferPool::Slices().Share(std::move(blob));
        }
        damaged = true;
        NoteDamaged(id, "hash mismatch");
      }
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Fetch(id, damaged);
  }

  Result<SharedBlob> ReplaceDamaged(const SliceId& id) {
    NoteDamaged(id, "authentication failed");
    return Fetch(id, /*damaged=*/true);
  }

  void NoteDamaged(const SliceId& id, std::string_view how) {
    corrupt_cached_.fetch_add(1, std::memory_order_relaxed);
    LogError(kComponent, "cached copy of slice " + id.ToHex() + " is damaged (" + std::string(how) +
                             "); fetching it from the peers");
  }

  // From the peers; `damaged`: the cached copy is bad, replaced by the
  // peers' copy if they have one.
  Result<SharedBlob> Fetch(const SliceId& id, bool damaged) {
    Result<std::string> remote = remote_->Get(id);
    if (!remote.ok()) {
      if (damaged) {
        return Status::Corruption("cached copy of slice " + id.ToHex() +
                                  " is damaged and no good copy is reachable: " +
                                  remote.status().ToString());
      }
      return remote.status();
    }
    // The remote store verified the bytes (SliceStore::Get never returns
    // any that fail their address).
    if (damaged) {
      Status s = DropLocal(id);
      if (!s.ok()) LogWarn(kComponent, "cannot drop damaged cached slice: " + s.ToString());
    }
    auto blob = BufferPool::Slices().Share(std::move(*remote));
    QueueFill(id, blob);
    return blob;
  }

  Result<bool> Contains(const SliceId& id) {
    MESHFS_ASSIGN_OR_RETURN(int state, LocalState(id));
    if (state >= 0) return true;
    return remote_->Contains(id);
  }

  Status Remove(const SliceId& id) {
    MESHFS_RETURN_IF_ERROR(DropLocal(id));
    Status s = remote_->Remove(id);
    if (s.Is(Code::kNotFound)) return Status::OK();
    return s;
  }

  Status Flush() {
    // Puts commit with synchronous=NORMAL: they survive a crash of the
    // process at once, and a power loss from here on.
    MESHFS_RETURN_IF_ERROR(SyncWal());
    if (options_.durability == Durability::kLocal) return Status::OK();
    std::unique_lock<std::mutex> l(mu_);
    const uint64_t target = seq_;
    const auto deadline =
        SteadyClock::now() + std::chrono::milliseconds(options_.network_flush_timeout_ms);
    auto short_of_copies = [&]() -> uint64_t {
      uint64_t n = 0;
      for (auto& [id, e] : pending_) {
        if (e.seq <= target && e.copies < options_.min_network_copies) n++;
      }
      return n;
    };
    while (uint64_t n = short_of_copies()) {
      if (stopping_) return Status::Aborted("cache is shutting down");
      if (done_cv_.wait_until(l, deadline) == std::cv_status::timeout && short_of_copies() > 0) {
        return Status::TimedOut(std::to_string(n) + " slices are not yet on " +
                                std::to_string(options_.min_network_copies) +
                                " peers (last upload error: " +
                                (last_upload_error_.empty() ? "none" : last_upload_error_) + ")");
      }
    }
    return Status::OK();
  }

  Status WaitUploaded(int64_t timeout_ms, const std::function<void(const CacheStats&)>& progress) {
    const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
    auto next_progress = SteadyClock::now() + std::chrono::seconds(1);
    std::unique_lock<std::mutex> l(mu_);
    ++upload_waiters_;  // uploads stop yielding to the writer
    work_cv_.notify_all();
    struct Leave {
      int& n;
      ~Leave() { --n; }
    } leave{upload_waiters_};
    while (!pending_.empty() || reserved_bytes_ > 0) {
      if (stopping_) return Status::Aborted("cache is shutting down");
      const auto now = SteadyClock::now();
      if (now >= deadline) {
        return Status::TimedOut(std::to_string(pending_.size()) + " slices (" +
                                std::to_string(pending_bytes_) +
                                " bytes) still waiting for upload; last error: " +
                                (last_upload_error_.empty() ? "none" : last_upload_error_));
      }
      if (progress && now >= next_progress) {
        CacheStats st = StatsLocked();
        l.unlock();
        progress(st);
        l.lock();
        next_progress = SteadyClock::now() + std::chrono::seconds(1);
        continue;
      }
      done_cv_.wait_until(l, std::min(deadline, progress ? next_progress : deadline));
    }
    return Status::OK();
  }

  CacheStats Stats() const {
    std::lock_guard<std::mutex> l(mu_);
    return StatsLocked();
  }

  Status ClearUploaded() {
    std::lock_guard<std::mutex> w(write_mu_);
    MESHFS_RETURN_IF_ERROR(FlushTouchesLocked());
    Status s = writer_->Exec("DELETE FROM blobs WHERE state = 1");
    if (!s.ok()) return s;
    {
      std::lock_guard<std::mutex> l(mu_);
      cached_bytes_ = pending_bytes_;
      cached_slices_ = pending_.size();
      fill_.Clear();
      fill_order_.clear();
    }
    (void)writer_->Exec("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE)");
    return Status::OK();
  }

  void NoteWriteActivity() { last_activity_ms_.store(NowMs(), std::memory_order_relaxed); }

 private:
  // ---- local database helpers ----

  class ReaderLease {
   public:
    ReaderLease(Impl* impl, std::unique_ptr<SqliteDb> db) : impl_(impl), db_(std::move(db)) {}
    ~ReaderLease() {
      if (db_) impl_->ReleaseReader(std::move(db_));
    }
    ReaderLease(const ReaderLease&) = delete;
    ReaderLease& operator=(const ReaderLease&) = delete;
    SqliteDb* operator->() { return db_.get(); }
    SqliteDb& operator*() { return *db_; }

   private:
    Impl* impl_;
    std::unique_ptr<SqliteDb> db_;
  };

  Result<std::unique_ptr<SqliteDb>> AcquireReader() {
    {
      std::lock_guard<std::mutex> l(pool_mu_);
      if (!readers_.empty()) {
        auto db = std::move(readers_.back());
        readers_.pop_back();
        return db;
      }
    }
    return OpenCacheDb(options_.db_path, /*create=*/false);
  }

  void ReleaseReader(std::unique_ptr<SqliteDb> db) {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (readers_.size() < kMaxIdleReaders) readers_.push_back(std::move(db));
  }

  // -1 when absent, else the state.
  Result<int> LocalState(const SliceId& id) {
    MESHFS_ASSIGN_OR_RETURN(auto db, AcquireReader());
    ReaderLease lease(this, std::move(db));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, lease->Prepare(kSqlExists));
    StmtReset reset(s);
    sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return sqlite3_column_int(s, 0);
    if (rc == SQLITE_DONE) return -1;
    return lease->Error(rc, "looking up a slice");
  }

  // Reads a cached blob straight into the returned string (incremental blob
  // I/O: SQLite reads the overflow pages into it, without assembling a
  // copy of its own first).
  Result<std::optional<std::string>> ReadLocal(const SliceId& id) {
    MESHFS_ASSIGN_OR_RETURN(auto db, AcquireReader());
    ReaderLease lease(this, std::move(db));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, lease->Prepare(kSqlSelectRow));
    MESHFS_RETURN_IF_ERROR(lease->Exec("BEGIN"));  // the row stays put until COMMIT
    struct EndRead {
      SqliteDb& db;
      ~EndRead() { (void)db.Exec("COMMIT"); }
    } end{*lease};
    int64_t rowid, size;
    {
      StmtReset reset(s);
      sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
      const int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) return std::optional<std::string>();
      if (rc != SQLITE_ROW) return lease->Error(rc, "reading a slice");
      rowid = sqlite3_column_int64(s, 0);
      size = sqlite3_column_int64(s, 1);
    }
    std::optional<std::string> out(std::in_place);
    if (size <= 0) return out;
    sqlite3_blob* h = nullptr;
    int rc = sqlite3_blob_open(lease->handle(), "main", "blob_data", "data", rowid, 0, &h);
    if (rc == SQLITE_OK) {
      // The bytes as stored: a damaged row may disagree with `size`, which
      // the caller's check then reports.
      *out = BufferPool::Slices().Take(static_cast<size_t>(sqlite3_blob_bytes(h)));
      rc = sqlite3_blob_read(h, out->data(), static_cast<int>(out->size()), 0);
    } else if (rc == SQLITE_ERROR) {
      rc = SQLITE_OK;  // no bytes for the row at all: damaged the same way
    }
    sqlite3_blob_close(h);
    if (rc != SQLITE_OK) return lease->Error(rc, "reading a slice");
    return out;
  }

  void Touch(const SliceId& id) {
    const int64_t now = clock_->NowMicros();
    bool flush = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      touches_[id] = now;
      flush = touches_.size() >= kTouchBatch;
    }
    if (flush) housekeeper_cv_.notify_one();
  }

  // REQUIRES: write_mu_ held, no transaction open (opens its own) or inside
  // one when `in_txn`.
  Status FlushTouchesLocked(bool in_txn = false) {
    std::unordered_map<SliceId, int64_t> batch;
    {
      std::lock_guard<std::mutex> l(mu_);
      batch.swap(touches_);
    }
    if (batch.empty()) return Status::OK();
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * touch, writer_->Prepare(kSqlTouch));
    if (!in_txn) {
      MESHFS_RETURN_IF_ERROR(SetSync(false));
      MESHFS_RETURN_IF_ERROR(ExecStmt(kSqlBegin));
    }
    for (auto& [id, t] : batch) {
      StmtReset reset(touch);
      sqlite3_bind_blob(touch, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
      sqlite3_bind_int64(touch, 2, t);
      Status s = StepDone(*writer_, touch, "recording access times");
      if (!s.ok()) {
        if (!in_txn) writer_->RollbackIfOpen();
        return s;
      }
    }
    if (!in_txn) {
      Status s = ExecStmt(kSqlCommit);
      if (!s.ok()) {
        writer_->RollbackIfOpen();
        return s;
      }
    }
    return Status::OK();
  }

  Status ExecStmt(const char* sql) {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, writer_->Prepare(sql));
    StmtReset reset(s);
    return StepDone(*writer_, s, sql);
  }

  // REQUIRES: write_mu_ held, outside a transaction.
  Status SetSync(bool full) {
    if (sync_full_ == full) return Status::OK();
    MESHFS_RETURN_IF_ERROR(ExecStmt(full ? kSqlSyncFull : kSqlSyncNormal));
    sync_full_ = full;
    return Status::OK();
  }

  // Evicts uploaded blobs, least recently used first, until `need` more
  // bytes fit under the bound beside the `cached` ones, then, while the room
  // left stays within `ahead`, more of them. REQUIRES: write_mu_ held,
  // inside a transaction. Returns the bytes and slices it freed through the
  // out parameters.
  Status EvictLocked(uint64_t cached, uint64_t need, uint64_t ahead, uint64_t* freed_bytes,
                     uint64_t* freed_slices) {
    *freed_bytes = 0;
    *freed_slices = 0;
    const uint64_t max = options_.max_bytes;
    // Whether the next victim, of `size` bytes, goes.
    auto evict = [&](uint64_t size) {
      const uint64_t used = cached - *freed_bytes + need;
      return used > max || max - used + size <= ahead;
    };
    MESHFS_RETURN_IF_ERROR(FlushTouchesLocked(/*in_txn=*/true));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * victims, writer_->Prepare(kSqlLruVictims));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * del, writer_->Prepare(kSqlDeleteUploaded));
    for (bool more = true; more;) {
      std::vector<std::pair<SliceId, uint64_t>> batch;
      {
        StmtReset reset(victims);
        int rc;
        while ((rc = sqlite3_step(victims)) == SQLITE_ROW) {
          auto id = SliceId::FromBytes(
              std::string_view(static_cast<const char*>(sqlite3_column_blob(victims, 0)),
                               static_cast<size_t>(sqlite3_column_bytes(victims, 0))));
          if (id.ok()) batch.emplace_back(*id, sqlite3_column_int64(victims, 1));
        }
        if (rc != SQLITE_DONE) return writer_->Error(rc, "choosing slices to evict");
      }
      if (batch.empty()) break;  // only pending blobs left: they are never evicted
      for (auto& [id, size] : batch) {
        if (!evict(size)) {
          more = false;
          break;
        }
        StmtReset reset(del);
        sqlite3_bind_blob(del, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
        MESHFS_RETURN_IF_ERROR(StepDone(*writer_, del, "evicting a slice"));
        if (sqlite3_changes(writer_->handle()) > 0) {
          *freed_bytes += size;
          *freed_slices += 1;
        }
      }
    }
    return Status::OK();
  }

  // Commits the writer's transaction if `s` (the work in it) is OK, else
  // rolls it back; a full disk wakes the checkpointer.
  // REQUIRES: write_mu_ held, inside a transaction.
  Status CommitOrRollbackLocked(Status s) {
    if (s.ok()) s = ExecStmt(kSqlCommit);
    if (!s.ok()) {
      writer_->RollbackIfOpen();
      PokeCheckpointerIfFull(s);
    }
    return s;
  }

  // Makes room for `need` more bytes in a transaction of its own, committed
  // without a sync. Not in the insert's transaction: pages freed and used
  // again in one transaction are read back first (SQLite keeps what they
  // held until the commit), so every eviction read the evicted blob from
  // disk. On its own, with auto_vacuum's pointer map and secure_delete off,
  // it reads none of the blob's overflow pages. It frees up to
  // kEvictAheadBytes (or a 16th of the bound) more than needed, in whole
  // slices, so that its commit serves several inserts.
  // REQUIRES: write_mu_ held, no transaction open.
  Status MakeRoomLocked(uint64_t need) {
    uint64_t cached;
    {
      std::lock_guard<std::mutex> l(mu_);
      cached = cached_bytes_;
    }
    if (cached + need <= options_.max_bytes) return Status::OK();
    MESHFS_RETURN_IF_ERROR(SetSync(false));
    MESHFS_RETURN_IF_ERROR(ExecStmt(kSqlBegin));
    uint64_t freed_bytes = 0, freed_slices = 0;
    const uint64_t ahead = std::min(kEvictAheadBytes, options_.max_bytes / 16);
    MESHFS_RETURN_IF_ERROR(
        CommitOrRollbackLocked(EvictLocked(cached, need, ahead, &freed_bytes, &freed_slices)));
    std::lock_guard<std::mutex> l(mu_);
    cached_bytes_ -= freed_bytes;
    cached_slices_ -= freed_slices;
    return Status::OK();
  }

  // Inserts a row in one transaction (after making room). `durable`: commit
  // with synchronous=FULL. Returns whether a row was inserted.
  Result<bool> InsertRow(const SliceId& id, std::string_view blob, int state, uint64_t seq,
                         int copies, bool durable) {
    MESHFS_RETURN_IF_ERROR(MakeRoomLocked(blob.size()));
    MESHFS_RETURN_IF_ERROR(SetSync(durable));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * ins, writer_->Prepare(kSqlInsert));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * ins_data, writer_->Prepare(kSqlInsertData));
    MESHFS_RETURN_IF_ERROR(ExecStmt(kSqlBegin));
    Status s;
    bool inserted = false;
    {
      StmtReset reset(ins);
      sqlite3_bind_blob(ins, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 2, static_cast<int64_t>(blob.size()));
      sqlite3_bind_int(ins, 3, state);
      sqlite3_bind_int64(ins, 4, clock_->NowMicros());
      sqlite3_bind_int64(ins, 5, static_cast<int64_t>(seq));
      sqlite3_bind_int(ins, 6, copies);
      s = StepDone(*writer_, ins, "storing a slice");
      inserted = s.ok() && sqlite3_changes(writer_->handle()) > 0;
    }
    if (inserted) {
      // The row is made with zeros and the bytes written into its pages
      // with incremental blob I/O: an INSERT of the bytes themselves first
      // builds the whole record in a buffer of the blob's size (a 1 MiB
      // allocation and copy per slice, the allocation fresh memory each
      // time: 9 % of the slice encoders' samples were page faults under it).
      const int64_t rowid = sqlite3_last_insert_rowid(writer_->handle());
      StmtReset reset(ins_data);
      sqlite3_bind_int64(ins_data, 1, rowid);
      sqlite3_bind_zeroblob64(ins_data, 2, blob.size());
      s = StepDone(*writer_, ins_data, "storing a slice");
      if (s.ok() && !blob.empty()) s = WriteBlobData(rowid, blob);
    }
    MESHFS_RETURN_IF_ERROR(CommitOrRollbackLocked(s));
    std::lock_guard<std::mutex> l(mu_);
    if (inserted) {
      cached_bytes_ += blob.size();
      cached_slices_ += 1;
    }
    return inserted;
  }

  // Writes `blob` over the zeros of blob_data row `rowid` (made with
  // zeroblob of the same size). REQUIRES: write_mu_ held, inside the
  // writer's transaction.
  Status WriteBlobData(int64_t rowid, std::string_view blob) {
    sqlite3_blob* h = nullptr;
    int rc = sqlite3_blob_open(writer_->handle(), "main", "blob_data", "data", rowid, 1, &h);
    if (rc == SQLITE_OK) rc = sqlite3_blob_write(h, blob.data(), static_cast<int>(blob.size()), 0);
    const int rc_close = sqlite3_blob_close(h);
    if (rc == SQLITE_OK) rc = rc_close;
    return rc == SQLITE_OK ? Status::OK() : writer_->Error(rc, "storing a slice");
  }

  // The database's write-ahead log, beside it.
  std::string WalPath() const { return options_.db_path.string() + "-wal"; }

  // Makes every committed transaction durable against power loss. In WAL
  // mode committed transactions live in the -wal file until a checkpoint
  // (which syncs the database file itself), so one fdatasync of the WAL
  // covers them all.
  Status SyncWal() {
    const std::string wal = WalPath();
    const int fd = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status::OK();
      return Status::FromErrno("opening " + wal, errno);
    }
    const int rc = ::fdatasync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno("syncing " + wal, err);
    return Status::OK();
  }

  // Commits a pending blob. The commit reaches the OS before Put returns, so
  // it survives kill -9; Flush() (fsync) makes it survive power loss.
  // `owned` (may be null): `blob`'s own buffer, moved to the uploaders.
  Status InsertDurable(const SliceId& id, std::string_view blob, uint64_t seq,
                       std::string* owned) {
    std::lock_guard<std::mutex> w(write_mu_);
    MESHFS_ASSIGN_OR_RETURN(bool inserted,
                            InsertRow(id, blob, kPending, seq, /*copies=*/0, /*durable=*/false));
    if (inserted) {
      // The uploaders get the trusted buffer itself, or a copy made outside
      // mu_ (readers and workers take it). Only this function adds to
      // handoff_, under write_mu_ (which also keeps DropLocal out), so the
      // room checked here is still there below. `blob` is not read after
      // the move.
      bool handoff;
      {
        std::lock_guard<std::mutex> l(mu_);
        handoff = handoff_.bytes() + blob.size() <= kHandoffMaxBytes;
      }
      std::string copy;
      if (handoff) copy = owned != nullptr ? std::move(*owned) : std::string(blob);
      const uint64_t size = blob.size();
      queued_since_writeback_.fetch_add(static_cast<int64_t>(size), std::memory_order_relaxed);
      std::lock_guard<std::mutex> l(mu_);
      PendingEntry e;
      e.seq = seq;
      e.queued_ms = NowMs();
      e.size = size;
      pending_.emplace(id, e);
      pending_bytes_ += size;
      if (handoff) handoff_.Insert(id, std::move(copy));
      ready_.push_back(id);
    }
    work_cv_.notify_one();
    return Status::OK();
  }

  // Hands a blob fetched from the remote store to the filler thread, which
  // caches it off the reader's path. Best effort: dropped when the filler
  // is kFillMaxBytes behind.
  void QueueFill(const SliceId& id, SharedBlob blob) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (fill_.bytes() + blob->size() > kFillMaxBytes) return;
      if (!fill_.Insert(id, std::move(blob))) return;
      fill_order_.push_back(id);
    }
    fill_cv_.notify_one();
  }

  void FillerLoop() {
    NameThisThread("cache-filler");
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      fill_cv_.wait(l, [&] { return stopping_ || !fill_order_.empty(); });
      if (fill_order_.empty()) return;  // stopping, and what was fetched is cached
      const SliceId id = fill_order_.front();
      fill_order_.pop_front();
      const auto* f = fill_.Find(id);
      if (f == nullptr) continue;  // dropped meanwhile
      // Readers keep finding it in fill_ until it is in the database.
      std::shared_ptr<const std::string> blob = *f;
      l.unlock();
      InsertUploaded(id, *blob);
      l.lock();
      if (const auto* g = fill_.Find(id); g != nullptr && *g == blob) (void)fill_.Take(id);
    }
  }

  // Caches a blob fetched from the remote store. Best effort: failures
  // (disk full, cache full of pending data) only mean it is not cached.
  void InsertUploaded(const SliceId& id, std::string_view blob) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (pending_bytes_ + reserved_bytes_ + blob.size() > options_.max_bytes) return;
    }
    std::lock_guard<std::mutex> w(write_mu_);
    auto r = InsertRow(id, blob, kUploaded, 0, 0, /*durable=*/false);
    if (!r.ok()) LogDebug(kComponent, "not caching slice: " + r.status().ToString());
  }

  Status DropLocal(const SliceId& id) {
    {
      std::lock_guard<std::mutex> l(mu_);
      (void)fill_.Take(id);
    }
    std::lock_guard<std::mutex> w(write_mu_);
    MESHFS_RETURN_IF_ERROR(SetSync(true));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * del, writer_->Prepare(kSqlDeleteAny));
    StmtReset reset(del);
    sqlite3_bind_blob(del, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
    const int rc = sqlite3_step(del);
    if (rc == SQLITE_ROW) {
      const uint64_t size = sqlite3_column_int64(del, 0);
      const int state = sqlite3_column_int(del, 1);
      const int rc2 = sqlite3_step(del);
      if (rc2 != SQLITE_DONE) return writer_->Error(rc2, "removing a slice");
      std::lock_guard<std::mutex> l(mu_);
      cached_bytes_ -= size;
      cached_slices_ -= 1;
      if (state != kUploaded) {
        auto it = pending_.find(id);
        if (it != pending_.end()) {
          pending_bytes_ -= it->second.size;
          pending_.erase(it);
        }
        (void)handoff_.Take(id);
      }
      touches_.erase(id);
    } else if (rc != SQLITE_DONE) {
      return writer_->Error(rc, "removing a slice");
    }
    space_cv_.notify_all();
    done_cv_.notify_all();
    return Status::OK();
  }

  // ---- upload workers ----

  void WorkerLoop() {
    NameThisThread("uploader");
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      // Move retries whose time has come to the ready queue.
      const int64_t now = NowMs();
      int64_t next_wake = now + 1000;
      for (auto it = delayed_.begin(); it != delayed_.end();) {
        if (it->first <= now) {
          ready_.push_back(it->second);
          it = delayed_.erase(it);
        } else {
          next_wake = std::min(next_wake, it->first);
          break;
        }
      }
      if (ready_.empty()) {
        work_cv_.wait_for(l, std::chrono::milliseconds(std::max<int64_t>(1, next_wake - now)));
        continue;
      }
      if (const int64_t wait = YieldToWriterMsLocked(now); wait > 0) {
        work_cv_.wait_for(l, std::chrono::milliseconds(wait));
        continue;
      }
      const SliceId id = ready_.front();
      ready_.pop_front();
      auto it = pending_.find(id);
      if (it == pending_.end() || it->second.in_flight) continue;  // removed or taken
      it->second.in_flight = true;
      l.unlock();
      UploadOne(id);
      l.lock();
    }
  }

  // The blob of a queued slice: from the handoff if it is there, else from
  // the database (nullopt: removed meanwhile).
  Result<std::optional<std::string>> QueuedBlob(const SliceId& id) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (std::optional<std::string> blob = handoff_.Take(id)) return blob;
    }
    return ReadLocal(id);
  }

  // How long an upload worker should wait because the mount is writing
  // (0: upload now). REQUIRES: mu_ held.
  int64_t YieldToWriterMsLocked(int64_t now) const {
    if (options_.durability != Durability::kLocal || options_.writer_idle_ms <= 0) return 0;
    if (upload_waiters_ > 0 || stopping_) return 0;
    const uint64_t limit =
        options_.yield_bytes ? options_.yield_bytes : options_.max_bytes / 4 * 3;
    if (pending_bytes_ > limit) return 0;
    if (!ready_.empty()) {
      auto it = pending_.find(ready_.front());
      if (it != pending_.end() && now - it->second.queued_ms >= options_.writer_max_defer_ms) {
        return 0;
      }
    }
    const int64_t idle_at =
        last_activity_ms_.load(std::memory_order_relaxed) + options_.writer_idle_ms;
    return idle_at > now ? idle_at - now : 0;
  }

  void UploadOne(const SliceId& id) {
    Status status;
    int copies = 0;
    auto local = QueuedBlob(id);
    if (!local.ok()) {
      status = local.status();
    } else if (!local->has_value()) {
      // Removed while queued.
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(id);
      if (it != pending_.end()) {
        pending_bytes_ -= it->second.size;
        pending_.erase(it);
      }
      done_cv_.notify_all();
      space_cv_.notify_all();
      return;
    } else if (reporter_ != nullptr) {
      // PutCounted refuses a blob that does not match its address (the
      // peers hash it): no need to hash it here.
      status = reporter_->PutCounted(id, **local, &copies);
      if (status.Is(Code::kCorruption)) status = DamagedQueued(id);
    } else if (!id.Matches(**local)) {
      status = DamagedQueued(id);
    } else {
      status = remote_->Put(id, **local);
      copies = status.ok() ? std::max(1, options_.min_network_copies) : 0;
    }
    // Sent or refused: its buffer serves the next read or encode.
    if (local.ok() && local->has_value()) BufferPool::Slices().Give(std::move(**local));

    if (status.ok()) {
      Status s;
      {
        std::lock_guard<std::mutex> w(write_mu_);
        s = MarkUploadedLocked(id);
        if (s.Is(Code::kNoSpace)) {
          // Disk full: give back the reserve so the queue can drain.
          if (reserve_.Release()) {
            LogWarn(kComponent, "cache disk full: released the reserve so uploads can be recorded");
          }
          s = MarkUploadedLocked(id);
        }
      }
      if (s.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        last_upload_failed_ = false;
        auto it = pending_.find(id);
        if (it != pending_.end()) {
          pending_bytes_ -= it->second.size;
          pending_.erase(it);
        }
        uploaded_++;
        if (pending_.empty()) last_upload_error_.clear();
        done_cv_.notify_all();
        space_cv_.notify_all();
        return;
      }
      status = s;  // could not record it: upload again later (idempotent)
    }

    if (copies > 0) {
      std::lock_guard<std::mutex> w(write_mu_);
      auto set = writer_->Prepare(kSqlSetCopies);
      if (set.ok() && SetSync(false).ok()) {
        StmtReset reset(*set);
        sqlite3_bind_blob(*set, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
        sqlite3_bind_int(*set, 2, copies);
        (void)StepDone(*writer_, *set, "recording copies");
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    upload_errors_++;
    last_upload_failed_ = true;
    last_upload_error_ = status.ToString();
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    PendingEntry& e = it->second;
    e.in_flight = false;
    e.copies = std::max(e.copies, copies);
    e.attempts++;
    const int shift = std::min(e.attempts - 1, 20);
    const int64_t delay =
        std::min(options_.retry_max_ms, options_.retry_initial_ms * (int64_t{1} << shift));
    e.next_try_ms = NowMs() + delay;
    delayed_.emplace(e.next_try_ms, id);
    if (e.attempts == 1 || e.attempts % 10 == 0) {
      LogWarn(kComponent, "upload of slice " + id.ToHex().substr(0, 12) + " failed (attempt " +
                              std::to_string(e.attempts) + ", retry in " + std::to_string(delay) +
                              " ms): " + status.ToString());
    }
    done_cv_.notify_all();
    work_cv_.notify_one();
  }

  Status DamagedQueued(const SliceId& id) {
    corrupt_cached_.fetch_add(1, std::memory_order_relaxed);
    return Status::Corruption("queued slice " + id.ToHex() +
                              " is damaged in the local cache and cannot be uploaded");
  }

  Status MarkUploadedLocked(const SliceId& id) {
    last_upload_ms_.store(NowMs(), std::memory_order_relaxed);
    MESHFS_RETURN_IF_ERROR(SetSync(false));
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * mark, writer_->Prepare(kSqlMarkUploaded));
    StmtReset reset(mark);
    sqlite3_bind_blob(mark, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
    Status st = StepDone(*writer_, mark, "marking a slice uploaded");
    PokeCheckpointerIfFull(st);
    return st;
  }

  // A commit found the disk full: the checkpointer copies the WAL into the
  // database now, so that a later commit can start the WAL over instead of
  // growing it. Normally the WAL hook wakes the checkpointer, but it runs
  // only after a commit that succeeded: with every commit failing nothing
  // woke it, and after space came back (less than the WAL still needed to
  // grow) the upload queue could stay stuck on "disk full" for good.
  // REQUIRES: mu_ not held (write_mu_ may be).
  void PokeCheckpointerIfFull(const Status& st) {
    if (!st.Is(Code::kNoSpace)) return;
    checkpointer_poked_.store(true);
    std::lock_guard<std::mutex> l(mu_);
    checkpoint_cv_.notify_one();
  }

  // Called by SQLite on the writer's thread (write_mu_ held) after each
  // commit, with the number of frames in the WAL.
  static int WalHook(void* arg, sqlite3* db, const char* name, int frames) {
    auto* self = static_cast<Impl*>(arg);
    const int64_t bytes = static_cast<int64_t>(frames) * self->page_size_;
    const int64_t before = self->wal_bytes_.exchange(bytes, std::memory_order_relaxed);
    if (bytes - before >= kBlobCommitBytes || bytes < before) {
      self->last_blob_commit_ms_.store(NowMs(), std::memory_order_relaxed);
    }
    // The bound follows the disk's free space (BusyWalBound), looked up
    // again every kBoundRecheckBytes of growth: with the cache bound alone,
    // a small disk let the WAL fill it while the checkpointer fell behind,
    // and a WAL that no longer fits into the database cannot be copied (the
    // queue then stayed stuck on "disk full" after space came back).
    if (bytes < self->bound_checked_at_ || bytes - self->bound_checked_at_ >= kBoundRecheckBytes) {
      self->hook_bound_ = self->BusyWalBound();
      self->bound_checked_at_ = bytes;
    }
    if (bytes >= 2 * self->hook_bound_) {
      // Busy (the checkpointer is at work) is fine: the WAL shrinks soon.
      (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if ((bytes >= std::min(kCheckpointBytes, self->busy_wal_bytes_) ||
                bytes - self->wal_flushed_bytes_.load(std::memory_order_relaxed) >=
                    kWalFlushStepBytes) &&
               !self->checkpointer_poked_.exchange(true)) {
      std::lock_guard<std::mutex> l(self->mu_);
      self->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  // Starts the writeback of what the WAL gained since the last call, so
  // that the fsync making it durable (Flush) has little left to write. Only
  // when that is mostly queued blobs, which an fsync may wait for: blobs
  // cached after a read are safe on the peers, nothing waits for them, and
  // writing them back early cost a cold read a sixth of the client's CPU.
  void StartWalWriteback(int64_t wal_bytes) {
    int64_t flushed = wal_flushed_bytes_.load(std::memory_order_relaxed);
    if (wal_bytes < flushed) flushed = 0;  // the WAL started over
    if (wal_bytes - flushed < kWalFlushStepBytes) {
      wal_flushed_bytes_.store(flushed, std::memory_order_relaxed);
      return;
    }
    if (queued_since_writeback_.exchange(0, std::memory_order_relaxed) <
        (wal_bytes - flushed) / 2) {
      wal_flushed_bytes_.store(wal_bytes, std::memory_order_relaxed);
      return;
    }
    if (wal_fd_ < 0) {
      wal_fd_ = ::open(WalPath().c_str(), O_RDONLY | O_CLOEXEC);
      if (wal_fd_ < 0) return;
    }
    // Frames follow a 32-byte header; a frame is a 24-byte header and a page.
    const off_t from = flushed == 0 ? 0 : 32 + flushed / page_size_ * (page_size_ + 24);
    (void)::sync_file_range(wal_fd_, from, 0, SYNC_FILE_RANGE_WRITE);
    wal_flushed_bytes_.store(wal_bytes, std::memory_order_relaxed);
  }

  // Copies the WAL into the database: the bulk beside the writer, then, if
  // what was committed meanwhile is little, the rest with the writer held so
  // that every frame is in the database and the next commit starts the WAL
  // over. Under a steady stream of Puts a passive checkpoint never catches
  // up; otherwise the next pass continues. Returns whether every frame was
  // copied.
  bool Checkpoint() {
    int log = 0, done = 0;
    auto pass = [&] {
      return sqlite3_wal_checkpoint_v2(checkpointer_db_->handle(), nullptr,
                                       SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    };
    int rc = pass();
    if (rc == SQLITE_OK && static_cast<int64_t>(log - done) * page_size_ <= kCatchUpBytes) {
      std::lock_guard<std::mutex> w(write_mu_);
      rc = pass();
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      LogWarn(kComponent,
              std::string("checkpoint of the cache database failed: ") + sqlite3_errstr(rc));
    }
    return rc == SQLITE_OK && log == done;
  }

  // The WAL size at which the checkpointer copies it even while blobs
  // stream in: busy_wal_bytes_, or a quarter of the disk's free space if
  // that is less. A checkpoint needs room for the pages it copies while the
  // WAL still holds them; a WAL allowed to fill a small disk could never be
  // copied, and every commit after it would fail with a full disk.
  int64_t BusyWalBound() const {
    struct statvfs vfs;
    const std::string dir = options_.db_path.parent_path().empty()
                                ? std::string(".")
                                : options_.db_path.parent_path().string();
    if (::statvfs(dir.c_str(), &vfs) != 0) return busy_wal_bytes_;
    const int64_t free_bytes =
        static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    return std::min(busy_wal_bytes_, free_bytes / 4);
  }

  void CheckpointerLoop() {
    NameThisThread("cache-checkpnt");
    int64_t copied = -1;  // WAL size at the last complete checkpoint
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      // While a checkpoint waits for blobs to stop arriving, look again
      // soon; otherwise the WAL hook wakes this thread every 16 MiB.
      const int64_t seen = wal_bytes_.load(std::memory_order_relaxed);
      const bool waiting =
          seen >= std::min(kCheckpointBytes, busy_wal_bytes_) && seen != copied;
      const auto poked = [&] { return stopping_ || checkpointer_poked_.load(); };
      if (waiting) {
        checkpoint_cv_.wait_for(
            l, std::chrono::milliseconds(std::max<int64_t>(options_.checkpoint_quiet_ms / 3, 1)),
            poked);
      } else {
        checkpoint_cv_.wait(l, poked);
      }
      if (stopping_) break;
      // Uploads on their way (not failing: peers that are down would hold
      // the copy for nothing).
      const bool uploading = !pending_.empty() && !last_upload_failed_;
      l.unlock();
      checkpointer_poked_.store(false);
      const int64_t wal = wal_bytes_.load(std::memory_order_relaxed);
      const int64_t last_busy = std::max(last_blob_commit_ms_.load(std::memory_order_relaxed),
                                         last_upload_ms_.load(std::memory_order_relaxed));
      const int64_t now = NowMs();
      const bool quiet =
          now - last_busy >= options_.checkpoint_quiet_ms &&
          (!uploading || now - last_blob_commit_ms_.load(std::memory_order_relaxed) >=
                             options_.checkpoint_upload_hold_ms);
      if (wal != copied && (wal >= BusyWalBound() || (wal >= kCheckpointBytes && quiet))) {
        copied = Checkpoint() ? wal : -1;
      } else {
        StartWalWriteback(wal);
      }
      l.lock();
    }
    if (wal_fd_ >= 0) ::close(wal_fd_);
    wal_fd_ = -1;
  }

  void HousekeeperLoop() {
    NameThisThread("cache-keeper");
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      housekeeper_cv_.wait_for(l, std::chrono::seconds(1));
      if (stopping_) break;
      const bool touched = !touches_.empty();
      l.unlock();
      {
        std::lock_guard<std::mutex> w(write_mu_);
        if (touched) {
          Status s = FlushTouchesLocked();
          if (!s.ok()) LogDebug(kComponent, "access times not recorded: " + s.ToString());
        }
        if (!reserve_.present()) reserve_.Ensure();
      }
      l.lock();
    }
  }

  CacheStats StatsLocked() const {
    CacheStats st;
    st.cached_bytes = cached_bytes_;
    st.cached_slices = cached_slices_;
    st.pending_slices = pending_.size();
    st.pending_bytes = pending_bytes_;
    st.hits = hits_.load();
    st.misses = misses_.load();
    st.upload_errors = upload_errors_;
    st.last_upload_error = last_upload_error_;
    st.uploaded_slices = uploaded_;
    st.corrupt_cached = corrupt_cached_.load();
    return st;
  }

  const CacheOptions options_;
  SliceStore* const remote_;
  ReplicaReporter* const reporter_;
  Clock* const clock_;

  std::mutex write_mu_;  // the writer connection
  std::unique_ptr<SqliteDb> writer_;
  bool sync_full_ = true;  // GUARDED_BY(write_mu_)
  DiskReserve reserve_{options_.db_path.string() + ".reserve", kReserveBytes};  // write_mu_

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<SqliteDb>> readers_;

  mutable std::mutex mu_;  // everything below
  std::condition_variable work_cv_, space_cv_, done_cv_, housekeeper_cv_;
  bool stopping_ = false;
  uint64_t seq_ = 0;
  uint64_t cached_bytes_ = 0, cached_slices_ = 0;
  uint64_t pending_bytes_ = 0, reserved_bytes_ = 0;
  std::unordered_map<SliceId, PendingEntry> pending_;
  std::deque<SliceId> ready_;
  std::multimap<int64_t, SliceId> delayed_;
  std::unordered_map<SliceId, int64_t> touches_;
  // Blobs fetched from the remote, waiting for the filler thread.
  std::condition_variable fill_cv_;
  SizedBlobMap<SharedBlob> fill_;
  std::deque<SliceId> fill_order_;
  // Steady clock, of the last Put or NoteWriteActivity; atomic, not mu_.
  std::atomic<int64_t> last_activity_ms_{0};
  int upload_waiters_ = 0;   // callers in WaitUploaded
  SizedBlobMap<std::string> handoff_;  // queued blobs, in memory
  uint64_t upload_errors_ = 0, uploaded_ = 0;
  bool last_upload_failed_ = false;  // since the last upload that succeeded
  std::string last_upload_error_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, corrupt_cached_{0};

  std::vector<std::thread> workers_;
  std::thread housekeeper_;
  std::thread filler_;

  int64_t page_size_ = 4096;  // of the database, set by Init
  std::unique_ptr<SqliteDb> checkpointer_db_;  // only the checkpointer thread uses it
  int64_t busy_wal_bytes_ = kMaxBusyWalBytes;    // set by Init
  // WalHook's view of BusyWalBound() and the WAL size it was taken at
  // (writer thread only).
  int64_t hook_bound_ = kMaxBusyWalBytes;
  int64_t bound_checked_at_ = 0;
  std::atomic<int64_t> wal_bytes_{0};            // at the last commit
  std::atomic<int64_t> last_blob_commit_ms_{0};  // steady clock
  std::atomic<int64_t> last_upload_ms_{0};       // steady clock
  std::atomic<int64_t> wal_flushed_bytes_{0};    // writeback started up to here
  std::atomic<int64_t> queued_since_writeback_{0};  // bytes of queued blobs
  int wal_fd_ = -1;                              // the checkpointer's, for writeback
  std::atomic<bool> checkpointer_poked_{false};
  std::condition_variable checkpoint_cv_;  // with mu_
  std::thread checkpointer_;
};

CachingStore::CachingStore() = default;
CachingStore::~CachingStore() = default;

Result<std::unique_ptr<CachingStore>> CachingStore::Open(const CacheOptions& options,
                                                         SliceStore* remote, Clock* clock) {
  if (remote == nullptr) return Status::InvalidArgument("cache needs a remote store");
  if (options.max_bytes == 0) return Status::InvalidArgument("cache_size must be positive");
  std::unique_ptr<CachingStore> store(new CachingStore());
  store->impl_ = std::make_unique<Impl>(options, remote, clock);
  MESHFS_RETURN_IF_ERROR(store->impl_->Init().WithContext("opening the block cache"));
  return store;
}

Status CachingStore::Put(const SliceId& id, std::string_view blob) {
  return impl_->Put(id, blob, nullptr);
}
Status CachingStore::PutTrusted(const SliceId& id, std::string blob) {
  const std::string_view view = blob;
  return impl_->Put(id, view, &blob);
}
Result<std::string> CachingStore::Get(const SliceId& id) {
  bool checked;
  MESHFS_ASSIGN_OR_RETURN(SharedBlob blob, impl_->Get(id, /*check_local=*/true, &checked));
  return std::string(*blob);
}
Result<SharedBlob> CachingStore::GetToDecrypt(const SliceId& id, bool* address_checked) {
  return impl_->Get(id, /*check_local=*/false, address_checked);
}
Result<SharedBlob> CachingStore::ReplaceDamaged(const SliceId& id) {
  return impl_->ReplaceDamaged(id);
}
Result<bool> CachingStore::Contains(const SliceId& id) { return impl_->Contains(id); }
Status CachingStore::Remove(const SliceId& id) { return impl_->Remove(id); }
Status CachingStore::Flush() { return impl_->Flush(); }
void CachingStore::NoteWriteActivity() { impl_->NoteWriteActivity(); }
Status CachingStore::WaitUploaded(int64_t timeout_ms,
                                  const std::function<void(const CacheStats&)>& progress) {
  return impl_->WaitUploaded(timeout_ms, progress);
}
CacheStats CachingStore::Stats() const { return impl_->Stats(); }
Status CachingStore::ClearUploaded() { return impl_->ClearUploaded(); }

Status ClearUploadedOffline(const std::filesystem::path& db_path) {
  MESHFS_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, OpenCacheDb(db_path, /*create=*/false));
  MESHFS_RETURN_IF_ERROR(db->Exec("DELETE FROM blobs WHERE state = 1"));
  return db->Exec("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE)");
}

}  // namespace meshfs::cache

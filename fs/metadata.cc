#include "meshfs/fs/metadata.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>

#include "meshfs/core/disk_reserve.h"
#include "meshfs/core/log.h"

namespace meshfs::fs {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS inodes(
  ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  nlink INTEGER NOT NULL, size INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, btime_ns INTEGER NOT NULL,
  rdev INTEGER NOT NULL, gen INTEGER NOT NULL, inline BLOB, target BLOB);
CREATE TABLE IF NOT EXISTS dentries(parent INTEGER NOT NULL, name BLOB NOT NULL,
  ino INTEGER NOT NULL, cookie INTEGER NOT NULL, type INTEGER NOT NULL,
  PRIMARY KEY(parent, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dentries_by_cookie ON dentries(parent, cookie, ino, type);
CREATE INDEX IF NOT EXISTS dentries_dirs ON dentries(ino) WHERE type = 4;
CREATE TABLE IF NOT EXISTS xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
  PRIMARY KEY(ino, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS extents(ino INTEGER NOT NULL, idx INTEGER NOT NULL,
  slice BLOB NOT NULL, len INTEGER NOT NULL, PRIMARY KEY(ino, idx)) WITHOUT ROWID;
)sql";

// Schema 1 -> 2: the entries become a WITHOUT ROWID table clustered on
// (parent, name) with their readdir cookie (the old rowid) and file type
// (mode >> 12), listed through one covering index; the parent of a directory
// through a partial index of directories only. A new file writes two b-trees
// of entries instead of four.
constexpr const char* kUpgradeTo2 = R"sql(
CREATE TABLE dentries_v2(parent INTEGER NOT NULL, name BLOB NOT NULL,
  ino INTEGER NOT NULL, cookie INTEGER NOT NULL, type INTEGER NOT NULL,
  PRIMARY KEY(parent, name)) WITHOUT ROWID;
INSERT INTO dentries_v2(parent, name, ino, cookie, type)
  SELECT d.parent, d.name, d.ino, d.rowid, coalesce(i.mode >> 12, 8)
  FROM dentries d LEFT JOIN inodes i ON i.ino = d.ino;
DROP TABLE dentries;
ALTER TABLE dentries_v2 RENAME TO dentries;
CREATE INDEX dentries_by_cookie ON dentries(parent, cookie, ino, type);
CREATE INDEX dentries_dirs ON dentries(ino) WHERE type = 4;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
)sql";

// A read-only store cannot upgrade a schema-1 database: a temporary view of
// the same shape stands in for the entries table (temp objects shadow main's).
constexpr const char* kViewOf1 = R"sql(
CREATE TEMP VIEW dentries AS
  SELECT d.parent AS parent, d.name AS name, d.ino AS ino, d.rowid AS cookie,
         coalesce(i.mode >> 12, 8) AS type
  FROM main.dentries d LEFT JOIN main.inodes i ON i.ino = d.ino;
)sql";

int64_t ToI64(uint64_t v) { return static_cast<int64_t>(v); }

// ---------------------------------------------------------------- WAL writes
//
// SQLite appends a commit to the WAL as two writes per page (a 24-byte frame
// header, then the page): a created file's commit was a dozen pwrite calls.
// The "meshfs-wal" VFS passes every file through to the default VFS except
// the WAL, whose contiguous appends it gathers and hands to the default VFS
// as one write when the commit's last frame (its header carries the database
// size after the commit) is complete: a commit is one pwrite call. (When that
// header is not an append to what SQLite wrote since the WAL header - SQLite
// rewriting frame checksums after a spill, or an end not known yet - it is
// written out at once, and its page, if one follows, right after.) Before a
// read, sync, truncate, size query or close of the WAL, and before a write
// that does not extend the gathered bytes, they are
// written first: SQLite sees the file exactly as if each write had gone
// through. Nothing is held back past the end of a commit, so what a commit
// wrote is in the kernel when it returns (the durability promise of
// docs/mount.md); a crash in the middle of one loses only that uncommitted
// transaction, as before.

struct GatherFile {
  sqlite3_file base;       // pMethods = kGatherMethods
  sqlite3_file* real;      // the default VFS's file, allocated right after
  std::string* buf;        // gathered bytes (heap: sqlite3_file is plain memory)
  sqlite3_int64 buf_off;   // file offset of buf[0]
  bool commit_frame;       // the last write was a commit frame's header: write the next at once
  // End of what SQLite wrote since it last wrote the WAL header (0: unknown).
  sqlite3_int64 end;
};

constexpr size_t kGatherMax = 1u << 20;  // write out earlier in a huge transaction
// The unix VFS writes at most 128 KiB - 1 per call (it masks larger sizes).
constexpr size_t kWriteChunk = 124u << 10;

sqlite3_vfs* DefaultVfs() {
  static sqlite3_vfs* vfs = sqlite3_vfs_find(nullptr);
  return vfs;
}

GatherFile* Gather(sqlite3_file* f) { return reinterpret_cast<GatherFile*>(f); }

int WriteGathered(GatherFile* g) {
  int rc = SQLITE_OK;
  for (size_t at = 0; at < g->buf->size() && rc == SQLITE_OK; at += kWriteChunk) {
    const size_t n = std::min(kWriteChunk, g->buf->size() - at);
    rc = g->real->pMethods->xWrite(g->real, g->buf->data() + at, static_cast<int>(n),
                                   g->buf_off + static_cast<sqlite3_int64>(at));
  }
  g->buf->clear();
  return rc;
}

int GatherClose(sqlite3_file* f) {
  GatherFile* g = Gather(f);
  int rc = WriteGathered(g);
  int rc2 = g->real->pMethods->xClose(g->real);
  delete g->buf;
  g->buf = nullptr;
  return rc != SQLITE_OK ? rc : rc2;
}

int GatherRead(sqlite3_file* f, void* out, int n, sqlite3_int64 off) {
  GatherFile* g = Gather(f);
  if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xRead(g->real, out, n, off);
}

int GatherWrite(sqlite3_file* f, const void* data, int n, sqlite3_int64 off) {
  GatherFile* g = Gather(f);
  if (!g->buf->empty() && off != g->buf_off + static_cast<sqlite3_int64>(g->buf->size())) {
    if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  }
  if (g->buf->empty()) g->buf_off = off;
  g->buf->append(static_cast<const char*>(data), static_cast<size_t>(n));
  const bool appends = g->end != 0 && off == g->end;
  if (off == 0 && n == 32) g->end = 32;  // the WAL header: SQLite (re)starts the log
  else if (g->end != 0) g->end = std::max(g->end, off + n);
  const auto* b = static_cast<const unsigned char*>(data);
  if (n == 24 && off >= 32 && (b[4] | b[5] | b[6] | b[7]) != 0) {
    // The header of a commit's last frame (bytes 4..7: the database size
    // after the commit, zero in every other frame). Appended: its page comes
    // next, and both go out with it. Otherwise (SQLite rewriting checksums
    // of frame headers after the commit, with no page following) written out
    // at once, and a page that follows it right after.
    g->commit_frame = true;
    return appends ? SQLITE_OK : WriteGathered(g);
  }
  if (g->commit_frame || g->buf->size() >= kGatherMax) {
    g->commit_frame = false;
    return WriteGathered(g);
  }
  return SQLITE_OK;
}

int GatherTruncate(sqlite3_file* f, sqlite3_int64 size) {
  GatherFile* g = Gather(f);
  g->end = 0;  // unknown until the next WAL header
  if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xTruncate(g->real, size);
}

int GatherSync(sqlite3_file* f, int flags) {
  GatherFile* g = Gather(f);
  if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xSync(g->real, flags);
}

int GatherFileSize(sqlite3_file* f, sqlite3_int64* size) {
  GatherFile* g = Gather(f);
  if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xFileSize(g->real, size);
}

int GatherLock(sqlite3_file* f, int l) { return Gather(f)->real->pMethods->xLock(Gather(f)->real, l); }
int GatherUnlock(sqlite3_file* f, int l) {
  return Gather(f)->real->pMethods->xUnlock(Gather(f)->real, l);
}
int GatherCheckReserved(sqlite3_file* f, int* out) {
  return Gather(f)->real->pMethods->xCheckReservedLock(Gather(f)->real, out);
}
int GatherFileControl(sqlite3_file* f, int op, void* arg) {
  GatherFile* g = Gather(f);
  if (int rc = WriteGathered(g); rc != SQLITE_OK) return rc;
  return g->real->pMethods->xFileControl(g->real, op, arg);
}
int GatherSectorSize(sqlite3_file* f) {
  return Gather(f)->real->pMethods->xSectorSize(Gather(f)->real);
}
int GatherDeviceCharacteristics(sqlite3_file* f) {
  return Gather(f)->real->pMethods->xDeviceCharacteristics(Gather(f)->real);
}
int GatherShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Gather(f)->real->pMethods->xShmMap(Gather(f)->real, region, size, extend, out);
}
int GatherShmLock(sqlite3_file* f, int off, int n, int flags) {
  return Gather(f)->real->pMethods->xShmLock(Gather(f)->real, off, n, flags);
}
void GatherShmBarrier(sqlite3_file* f) { Gather(f)->real->pMethods->xShmBarrier(Gather(f)->real); }
int GatherShmUnmap(sqlite3_file* f, int del) {
  return Gather(f)->real->pMethods->xShmUnmap(Gather(f)->real, del);
}

// Version 2 (shared memory, unused by an exclusive-mode WAL but forwarded);
// no memory mapping (version 3) for the WAL.
const sqlite3_io_methods kGatherMethods = {
    2,
    GatherClose,
    GatherRead,
    GatherWrite,
    GatherTruncate,
    GatherSync,
    GatherFileSize,
    GatherLock,
    GatherUnlock,
    GatherCheckReserved,
    GatherFileControl,
    GatherSectorSize,
    GatherDeviceCharacteristics,
    GatherShmMap,
    GatherShmLock,
    GatherShmBarrier,
    GatherShmUnmap,
    nullptr,
    nullptr,
};

int GatherOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  sqlite3_vfs* real_vfs = DefaultVfs();
  if (!(flags & SQLITE_OPEN_WAL)) return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
  GatherFile* g = Gather(f);
  std::memset(g, 0, sizeof(*g));
  g->real = reinterpret_cast<sqlite3_file*>(g + 1);
  int rc = real_vfs->xOpen(real_vfs, name, g->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;  // pMethods stays null: SQLite will not close it
  if (g->real->pMethods->iVersion < 2) {  // cannot happen with the unix VFS
    g->real->pMethods->xClose(g->real);
    return SQLITE_CANTOPEN;
  }
  g->buf = new std::string();
  g->base.pMethods = &kGatherMethods;
  return SQLITE_OK;
}

// The default VFS with GatherOpen; registered once (not as the default).
const char* GatherVfsName() {
  static sqlite3_vfs vfs;
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite3_vfs* real = DefaultVfs();
    vfs = *real;
    vfs.zName = "meshfs-wal";
    vfs.szOsFile = static_cast<int>(sizeof(GatherFile)) + real->szOsFile;
    vfs.pNext = nullptr;  // pAppData stays the default VFS's (its other methods use it)
    vfs.xOpen = GatherOpen;
    sqlite3_vfs_register(&vfs, 0);
  });
  return vfs.zName;
}

void BindBlob(sqlite3_stmt* st, int i, std::string_view v) {
  // A zero-length blob must still be a blob, not NULL.
  sqlite3_bind_blob(st, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}

std::string ColumnBlob(sqlite3_stmt* st, int i) {
  const void* p = sqlite3_column_blob(st, i);
  int n = sqlite3_column_bytes(st, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

InodeRecord ReadInode(sqlite3_stmt* st) {
  InodeRecord r;
  r.ino = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  r.mode = static_cast<uint32_t>(sqlite3_column_int64(st, 1));
  r.uid = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
  r.gid = static_cast<uint32_t>(sqlite3_column_int64(st, 3));
  r.nlink = static_cast<uint64_t>(sqlite3_column_int64(st, 4));
  r.size = static_cast<uint64_t>(sqlite3_column_int64(st, 5));
  r.atime_ns = sqlite3_column_int64(st, 6);
  r.mtime_ns = sqlite3_column_int64(st, 7);
  r.ctime_ns = sqlite3_column_int64(st, 8);
  r.btime_ns = sqlite3_column_int64(st, 9);
  r.rdev = static_cast<uint64_t>(sqlite3_column_int64(st, 10));
  r.gen = static_cast<uint64_t>(sqlite3_column_int64(st, 11));
  if (sqlite3_column_count(st) > 12) r.alloc = static_cast<uint64_t>(sqlite3_column_int64(st, 12));
  return r;
}

// Binds parameters 1..11 in the column order shared by InsertInode and
// UpdateInode: mode, uid, gid, nlink, size, atime, mtime, ctime, btime, rdev, gen.
void BindInodeAttributes(sqlite3_stmt* st, const InodeRecord& r) {
  sqlite3_bind_int64(st, 1, r.mode);
  sqlite3_bind_int64(st, 2, r.uid);
  sqlite3_bind_int64(st, 3, r.gid);
  sqlite3_bind_int64(st, 4, ToI64(r.nlink));
  sqlite3_bind_int64(st, 5, ToI64(r.size));
  sqlite3_bind_int64(st, 6, r.atime_ns);
  sqlite3_bind_int64(st, 7, r.mtime_ns);
  sqlite3_bind_int64(st, 8, r.ctime_ns);
  sqlite3_bind_int64(st, 9, r.btime_ns);
  sqlite3_bind_int64(st, 10, ToI64(r.rdev));
  sqlite3_bind_int64(st, 11, ToI64(r.gen));
}

}  // namespace

Result<std::unique_ptr<MetadataStore>> MetadataStore::Open(const Options& options) {
  sqlite3* db = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, GatherVfsName());
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::IOError("cannot open metadata database " + options.path.string() + ": " + msg);
  }
  std::unique_ptr<MetadataStore> store(new MetadataStore(db));
  Status st = store->Init(options);
  if (!st.ok()) return st.WithContext(options.path.string());
  if (!options.read_only && options.path != ":memory:" && !options.path.empty()) {
    store->reserve_ =
        std::make_unique<DiskReserve>(options.path.string() + ".reserve", kReserveBytes);
    store->EnsureReserve();
  }
  return store;
}

MetadataStore::~MetadataStore() {
  (void)CommitPending();  // closing would roll deferred work back
  for (auto& [sql, st] : stmts_) sqlite3_finalize(st);
  sqlite3_close(db_);
}

Status MetadataStore::Error(std::string_view what) const {
  int code = sqlite3_errcode(db_);
  std::string msg = "metadata " + std::string(what) + ": " + sqlite3_errmsg(db_);
  if (code == SQLITE_FULL) return Status::NoSpace(msg);
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return Status::Corruption(msg);
  if (code == SQLITE_READONLY) return Status::PermissionDenied(msg);
  return Status::IOError(msg);
}

Status MetadataStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    Status st = Error(sql);
    return Status(st.code(), "metadata: " + msg);
  }
  return Status::OK();
}

Status MetadataStore::Run(const char* sql) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep(sql));
  int rc = sqlite3_step(st);
  Status out = rc == SQLITE_DONE ? Status::OK() : Error(sql);
  sqlite3_reset(st);
  return out;
}

Result<sqlite3_stmt*> MetadataStore::Prep(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) {
    sqlite3_reset(it->second);
    sqlite3_clear_bindings(it->second);
    return it->second;
  }
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) {
    return Error("prepare");
  }
  stmts_.emplace(sql, st);
  return st;
}

Status MetadataStore::Init(const Options& options) {
  sqlite3_busy_timeout(db_, 10'000);
  if (!options.read_only) {
    // The mount daemon is the only user of its metadata: hold the database
    // lock for the whole session (no file-lock calls per statement, and a
    // second process cannot write behind our back).
    MESHFS_RETURN_IF_ERROR(Exec("PRAGMA locking_mode=EXCLUSIVE"));
    MESHFS_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  }
  MESHFS_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
  MESHFS_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=OFF"));
  MESHFS_RETURN_IF_ERROR(Exec("PRAGMA cache_size=-16000"));
  if (!options.read_only) {
    // Copy the WAL into the database every 8192 pages (32 MiB) instead of
    // SQLite's 1000: each copy costs two fsyncs in the middle of some
    // operation, and the pages that every commit touches (the parent
    // directory, the last leaf of each table) are copied once per checkpoint.
    MESHFS_RETURN_IF_ERROR(Exec("PRAGMA wal_autocheckpoint=8192"));
    MESHFS_RETURN_IF_ERROR(Exec("PRAGMA journal_size_limit=67108864"));
  }

  // Is this a new database?
  bool has_meta = false;
  {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                            Prep("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) has_meta = true;
    else if (rc != SQLITE_DONE) return Status::Corruption("metadata database " + options.path.string() + " is not a SQLite database: " + sqlite3_errmsg(db_));
    sqlite3_reset(st);
  }
  if (!has_meta) {
    if (options.read_only) return Status::NotFound("metadata database is empty (read-only mount of a never-mounted volume)");
    if (options.slice_size == 0) return Status::InvalidArgument("new metadata database needs a slice size");
    MESHFS_RETURN_IF_ERROR(Begin());
    Status st = Exec(kSchema);
    if (st.ok()) {
      auto put = [&](const char* key, std::string_view value) -> Status {
        MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, Prep("INSERT INTO meta(key, value) VALUES(?, ?)"));
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        BindBlob(s, 2, value);
        if (sqlite3_step(s) != SQLITE_DONE) return Error("init meta");
        return Status::OK();
      };
      st = put("schema_version", std::to_string(kMetadataSchemaVersion));
      if (st.ok()) st = put("slice_size", std::to_string(options.slice_size));
      if (st.ok()) st = put("volume_id", options.volume_id);
      if (st.ok()) {
        InodeRecord root;
        root.mode = S_IFDIR | 0755;
        root.uid = options.root_uid;
        root.gid = options.root_gid;
        root.nlink = 2;
        root.atime_ns = root.mtime_ns = root.ctime_ns = root.btime_ns = options.now_ns;
        root.gen = 1;
        auto ino = InsertInode(root);
        if (!ino.ok()) st = ino.status();
        else if (*ino != kRootIno) st = Status::Corruption("root inode is not 1");
      }
    }
    if (!st.ok()) {
      Rollback();
      return st;
    }
    MESHFS_RETURN_IF_ERROR(Commit(true));
  }

  auto get = [&](const char* key) -> Result<std::string> {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * s, Prep("SELECT value FROM meta WHERE key = ?"));
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return Status::Corruption(std::string("metadata database lacks meta.") + key);
    std::string v = ColumnBlob(s, 0);
    if (v.empty() && sqlite3_column_type(s, 0) == SQLITE_TEXT) {
      v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_reset(s);
    return v;
  };
  MESHFS_ASSIGN_OR_RETURN(std::string version, get("schema_version"));
  MESHFS_ASSIGN_OR_RETURN(std::string slice, get("slice_size"));
  MESHFS_ASSIGN_OR_RETURN(volume_id_, get("volume_id"));
  int v = std::atoi(version.c_str());
  if (v < 1 || v > kMetadataSchemaVersion) {
    return Status::Corruption("metadata schema version " + version +
                              " is not supported by this meshfs (supports " +
                              std::to_string(kMetadataSchemaVersion) + ")");
  }
  if (v == 1) {
    if (options.read_only) {
      MESHFS_RETURN_IF_ERROR(Exec(kViewOf1));
    } else {
      MESHFS_RETURN_IF_ERROR(Begin());
      Status st = Exec(kUpgradeTo2);
      if (!st.ok()) {
        Rollback();
        return st.WithContext("upgrading the metadata schema to version 2");
      }
      MESHFS_RETURN_IF_ERROR(Commit(true));
    }
  }
  slice_size_ = static_cast<uint32_t>(std::strtoul(slice.c_str(), nullptr, 10));
  if (slice_size_ == 0) return Status::Corruption("metadata slice size is invalid: " + slice);
  if (options.slice_size != 0 && options.slice_size != slice_size_) {
    return Status::InvalidArgument("metadata slice size " + slice + " differs from the volume's " +
                                   std::to_string(options.slice_size));
  }
  if (!options.volume_id.empty() && options.volume_id != volume_id_) {
    return Status::InvalidArgument("metadata database belongs to another volume (" + volume_id_ +
                                   ")");
  }
  return Status::OK();
}

Status MetadataStore::Begin() {
  if (pending_) {
    MESHFS_RETURN_IF_ERROR(Run("SAVEPOINT op"));
    nested_ = true;
  } else {
    MESHFS_RETURN_IF_ERROR(Run("BEGIN IMMEDIATE"));
  }
  in_op_ = true;
  return Status::OK();
}

Status MetadataStore::Commit(bool durable) {
  Status st;
  if (nested_) st = Run("RELEASE op");
  if (st.ok()) st = Run("COMMIT");
  in_op_ = nested_ = false;
  if (!st.ok()) {
    Rollback();
    return st;
  }
  pending_ = false;
  if (reserve_ && !reserve_->present() && std::chrono::steady_clock::now() >= next_reserve_try_) {
    EnsureReserve();
  }
  // The safety level cannot change inside a transaction: a durable commit is
  // an ordinary one followed by a synchronous write that syncs the WAL.
  if (durable) st = Sync();
  return st;
}

void MetadataStore::EnsureReserve() {
  next_reserve_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  reserve_->Ensure(kReserveRoom);
}

bool MetadataStore::ReleaseReserve() {
  if (!reserve_) return false;
  const bool had = reserve_->Release();
  if (had) LogWarn("metadata", "disk full: gave back the metadata reserve so a removal can commit");
  next_reserve_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  return had;
}

Status MetadataStore::CommitLater() {
  Status st;
  if (nested_) st = Run("RELEASE op");
  in_op_ = nested_ = false;
  if (!st.ok()) {
    Rollback();
    return st;
  }
  pending_ = true;
  return Status::OK();
}

void MetadataStore::Rollback() {
  inode_cache_.clear();  // it may hold rows this rollback undoes
  ino_reserved_ = 0;     // and a move of the inode high-water mark
  if (nested_) {
    // Undo this operation only; the deferred work before it is kept.
    nested_ = in_op_ = false;
    if (Run("ROLLBACK TO op").ok() && Run("RELEASE op").ok()) {
      (void)CommitPending();
      return;
    }
  }
  if (sqlite3_get_autocommit(db_) == 0) (void)Run("ROLLBACK");
  in_op_ = nested_ = pending_ = false;
}

Status MetadataStore::CommitPending() {
  if (!pending_ || in_op_) return Status::OK();
  Status st = Run("COMMIT");
  if (!st.ok()) {
    inode_cache_.clear();
    if (sqlite3_get_autocommit(db_) == 0) (void)Run("ROLLBACK");
  }
  pending_ = false;
  return st;
}

Status MetadataStore::Sync() {
  MESHFS_RETURN_IF_ERROR(CommitPending());
  MESHFS_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
  Status st = Exec("INSERT OR REPLACE INTO meta(key, value) VALUES('last_sync', strftime('%s','now'))");
  (void)Exec("PRAGMA synchronous=NORMAL");
  return st;
}

#define STEP_DONE(st, what) \
  if (sqlite3_step(st) != SQLITE_DONE) return Error(what)

void MetadataStore::CacheInode(const InodeRecord& r) {
  if (inode_cache_.size() >= kInodeCacheMax) inode_cache_.clear();
  inode_cache_[r.ino] = r;
}

Result<InodeRecord> MetadataStore::GetInode(uint64_t ino) {
  if (auto it = inode_cache_.find(ino); it != inode_cache_.end()) return it->second;
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("SELECT ino, mode, uid, gid, nlink, size, atime_ns, mtime_ns, ctime_ns, btime_ns, rdev, "
           "gen, coalesce(length(inline), 0) + (SELECT coalesce(sum(len), 0) FROM extents e WHERE "
           "e.ino = inodes.ino) FROM inodes WHERE ino = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    InodeRecord r = ReadInode(st);
    sqlite3_reset(st);
    CacheInode(r);
    return r;
  }
  if (rc == SQLITE_DONE) return Status::NotFound("inode " + std::to_string(ino));
  return Error("get inode");
}

Result<uint64_t> MetadataStore::NextIno() {
  if (ino_reserved_ == 0) {
    // After the open or a rollback: the larger of the recorded mark and the
    // inodes there are (a database older than the mark has none recorded).
    MESHFS_ASSIGN_OR_RETURN(
        sqlite3_stmt * st,
        Prep("SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
             "'ino_reserved'), 0), coalesce((SELECT max(ino) FROM inodes), 0) + 1)"));
    if (sqlite3_step(st) != SQLITE_ROW) return Error("read the inode high-water mark");
    const auto mark = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    next_ino_ = std::max(next_ino_, mark);
    ino_reserved_ = mark;
  }
  if (next_ino_ >= ino_reserved_) {
    // Recorded in the transaction of the insert: an inode below the mark
    // is never committed without it.
    const uint64_t mark = next_ino_ + kInoReserveStep;
    MESHFS_ASSIGN_OR_RETURN(
        sqlite3_stmt * st,
        Prep("INSERT OR REPLACE INTO meta(key, value) VALUES('ino_reserved', ?)"));
    sqlite3_bind_int64(st, 1, ToI64(mark));
    STEP_DONE(st, "record the inode high-water mark");
    ino_reserved_ = mark;
  }
  return next_ino_++;
}

Result<uint64_t> MetadataStore::InsertInode(const InodeRecord& r, std::string_view target) {
  MESHFS_ASSIGN_OR_RETURN(const uint64_t ino, NextIno());
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("INSERT INTO inodes(mode, uid, gid, nlink, size, atime_ns, mtime_ns, ctime_ns, "
           "btime_ns, rdev, gen, inline, target, ino) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  BindInodeAttributes(st, r);
  if (S_ISREG(r.mode)) BindBlob(st, 12, "");  // a new regular file is inline (empty)
  if (S_ISLNK(r.mode)) BindBlob(st, 13, target);
  sqlite3_bind_int64(st, 14, ToI64(ino));
  STEP_DONE(st, "insert inode");
  InodeRecord cached = r;
  cached.ino = ino;
  cached.alloc = 0;  // no inline bytes, no extents yet
  CacheInode(cached);
  return cached.ino;
}

Status MetadataStore::UpdateInode(const InodeRecord& r) {
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("UPDATE inodes SET mode=?, uid=?, gid=?, nlink=?, size=?, atime_ns=?, mtime_ns=?, "
           "ctime_ns=?, btime_ns=?, rdev=?, gen=? WHERE ino=?"));
  BindInodeAttributes(st, r);
  sqlite3_bind_int64(st, 12, ToI64(r.ino));
  STEP_DONE(st, "update inode");
  if (auto it = inode_cache_.find(r.ino); it != inode_cache_.end()) {
    const uint64_t alloc = it->second.alloc;  // the blobs did not change
    it->second = r;
    it->second.alloc = alloc;
  }
  return Status::OK();
}

Status MetadataStore::DeleteInode(uint64_t ino) {
  inode_cache_.erase(ino);
  for (const char* sql : {"DELETE FROM inodes WHERE ino = ?", "DELETE FROM xattrs WHERE ino = ?",
                          "DELETE FROM extents WHERE ino = ?"}) {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep(sql));
    sqlite3_bind_int64(st, 1, ToI64(ino));
    STEP_DONE(st, "delete inode");
  }
  return Status::OK();
}

Result<std::optional<std::string>> MetadataStore::GetInline(uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep("SELECT inline FROM inodes WHERE ino = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return Status::NotFound("inode " + std::to_string(ino));
  if (rc != SQLITE_ROW) return Error("get inline");
  std::optional<std::string> out;
  if (sqlite3_column_type(st, 0) != SQLITE_NULL) out = ColumnBlob(st, 0);
  sqlite3_reset(st);
  return out;
}

Status MetadataStore::SetInline(uint64_t ino, std::optional<std::string_view> data) {
  inode_cache_.erase(ino);  // alloc changes
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep("UPDATE inodes SET inline = ? WHERE ino = ?"));
  if (data) BindBlob(st, 1, *data);
  sqlite3_bind_int64(st, 2, ToI64(ino));
  STEP_DONE(st, "set inline");
  return Status::OK();
}

Result<std::string> MetadataStore::GetTarget(uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep("SELECT target FROM inodes WHERE ino = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return Status::NotFound("inode " + std::to_string(ino));
  if (rc != SQLITE_ROW) return Error("get target");
  std::string out = ColumnBlob(st, 0);
  sqlite3_reset(st);
  return out;
}

Result<std::vector<uint64_t>> MetadataStore::ListOrphans() {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep("SELECT ino FROM inodes WHERE nlink = 0"));
  std::vector<uint64_t> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    out.push_back(static_cast<uint64_t>(sqlite3_column_int64(st, 0)));
  }
  if (rc != SQLITE_DONE) return Error("list orphans");
  return out;
}

Result<std::pair<uint64_t, uint64_t>> MetadataStore::Totals() {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT count(*), coalesce(sum(size), 0) FROM inodes"));
  if (sqlite3_step(st) != SQLITE_ROW) return Error("totals");
  std::pair<uint64_t, uint64_t> out{static_cast<uint64_t>(sqlite3_column_int64(st, 0)),
                                    static_cast<uint64_t>(sqlite3_column_int64(st, 1))};
  sqlite3_reset(st);
  return out;
}

Result<uint64_t> MetadataStore::Lookup(uint64_t parent, std::string_view name) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT ino FROM dentries WHERE parent = ? AND name = ?"));
  sqlite3_bind_int64(st, 1, ToI64(parent));
  BindBlob(st, 2, name);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return Status::NotFound("no such entry");
  if (rc != SQLITE_ROW) return Error("lookup");
  uint64_t ino = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_reset(st);
  return ino;
}

Status MetadataStore::StepEntryChange(sqlite3_stmt* st, std::string_view what) {
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT) {
    sqlite3_reset(st);
    return Status::AlreadyExists("entry exists");
  }
  if (rc != SQLITE_DONE) return Error(what);
  return Status::OK();
}

Status MetadataStore::InsertDentry(uint64_t parent, std::string_view name, uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(uint64_t cookie, NextCookie(parent));
  MESHFS_ASSIGN_OR_RETURN(InodeRecord r, GetInode(ino));  // from the inode cache, usually
  const uint32_t type = r.mode >> 12;
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("INSERT INTO dentries(parent, name, ino, cookie, type) VALUES(?, ?, ?, ?, ?)"));
  sqlite3_bind_int64(st, 1, ToI64(parent));
  BindBlob(st, 2, name);
  sqlite3_bind_int64(st, 3, ToI64(ino));
  sqlite3_bind_int64(st, 4, ToI64(cookie));
  sqlite3_bind_int64(st, 5, type);
  return StepEntryChange(st, "insert entry");
}

Status MetadataStore::DeleteDentry(uint64_t parent, std::string_view name) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("DELETE FROM dentries WHERE parent = ? AND name = ?"));
  sqlite3_bind_int64(st, 1, ToI64(parent));
  BindBlob(st, 2, name);
  STEP_DONE(st, "delete entry");
  return Status::OK();
}

Status MetadataStore::RepointDentry(uint64_t parent, std::string_view name, uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(InodeRecord r, GetInode(ino));
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("UPDATE dentries SET ino = ?, type = ? WHERE parent = ? AND name = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  sqlite3_bind_int64(st, 2, r.mode >> 12);
  sqlite3_bind_int64(st, 3, ToI64(parent));
  BindBlob(st, 4, name);
  STEP_DONE(st, "repoint entry");
  return Status::OK();
}

Status MetadataStore::MoveDentry(uint64_t parent, std::string_view name, uint64_t new_parent,
                                 std::string_view new_name) {
  // Within a directory the entry keeps its cookie; in another one it gets
  // the next cookie there (cookies are unique per directory).
  uint64_t cookie = 0;
  if (new_parent != parent) {
    MESHFS_ASSIGN_OR_RETURN(cookie, NextCookie(new_parent));
  }
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("UPDATE dentries SET parent = ?, name = ?, cookie = CASE WHEN ?3 = 0 THEN cookie ELSE ?3 END "
           "WHERE parent = ?4 AND name = ?5"));
  sqlite3_bind_int64(st, 1, ToI64(new_parent));
  BindBlob(st, 2, new_name);
  sqlite3_bind_int64(st, 3, ToI64(cookie));
  sqlite3_bind_int64(st, 4, ToI64(parent));
  BindBlob(st, 5, name);
  MESHFS_RETURN_IF_ERROR(StepEntryChange(st, "move entry"));
  if (sqlite3_changes(db_) == 0) return Status::NotFound("no such entry");
  return Status::OK();
}

Result<uint64_t> MetadataStore::NextCookie(uint64_t dir) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT max(cookie) FROM dentries WHERE parent = ?"));
  sqlite3_bind_int64(st, 1, ToI64(dir));
  if (sqlite3_step(st) != SQLITE_ROW) return Error("next cookie");
  uint64_t last = static_cast<uint64_t>(sqlite3_column_int64(st, 0));  // NULL: 0
  sqlite3_reset(st);
  return last + 1;
}

Result<bool> MetadataStore::DirIsEmpty(uint64_t dir) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT 1 FROM dentries WHERE parent = ? LIMIT 1"));
  sqlite3_bind_int64(st, 1, ToI64(dir));
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("dir empty");
  sqlite3_reset(st);
  return rc == SQLITE_DONE;
}

Result<uint64_t> MetadataStore::ParentOf(uint64_t dir) {
  if (dir == kRootIno) return kRootIno;
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT parent FROM dentries WHERE ino = ? AND type = 4 LIMIT 1"));
  sqlite3_bind_int64(st, 1, ToI64(dir));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return Status::NotFound("directory has no parent");
  if (rc != SQLITE_ROW) return Error("parent");
  uint64_t p = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_reset(st);
  return p;
}

Status MetadataStore::ListDir(uint64_t dir, uint64_t after,
                              const std::function<bool(const DirEntryRecord&)>& fn) {
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("SELECT cookie, name, ino, type FROM dentries WHERE parent = ? AND cookie > ? "
           "ORDER BY cookie"));
  sqlite3_bind_int64(st, 1, ToI64(dir));
  sqlite3_bind_int64(st, 2, ToI64(after));
  int rc;
  DirEntryRecord e;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    e.cookie = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    e.name = ColumnBlob(st, 1);
    e.ino = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
    e.mode = static_cast<uint32_t>(sqlite3_column_int64(st, 3)) << 12;
    if (!fn(e)) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("list dir");
  sqlite3_reset(st);
  return Status::OK();
}

Result<std::string> MetadataStore::GetXattr(uint64_t ino, std::string_view name) {
  if (!xattr_names_loaded_ && !xattr_names_too_many_) {
    MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st, Prep("SELECT DISTINCT name FROM xattrs"));
    std::unordered_set<std::string> names;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && names.size() <= kXattrNamesMax) {
      names.insert(ColumnBlob(st, 0));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("xattr names");
    sqlite3_reset(st);
    if (names.size() <= kXattrNamesMax) {
      xattr_names_ = std::move(names);
      xattr_names_loaded_ = true;
    } else {
      xattr_names_too_many_ = true;
    }
  }
  if (xattr_names_loaded_ && !xattr_names_.count(std::string(name))) {
    return Status::NotFound("no such attribute");
  }
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT value FROM xattrs WHERE ino = ? AND name = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  BindBlob(st, 2, name);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return Status::NotFound("no such attribute");
  if (rc != SQLITE_ROW) return Error("get xattr");
  std::string v = ColumnBlob(st, 0);
  sqlite3_reset(st);
  return v;
}

Result<bool> MetadataStore::HasXattr(uint64_t ino, std::string_view name) {
  auto r = GetXattr(ino, name);
  if (r.ok()) return true;
  if (r.status().Is(Code::kNotFound)) return false;
  return r.status();
}

Status MetadataStore::SetXattr(uint64_t ino, std::string_view name, std::string_view value) {
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st, Prep("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES(?, ?, ?)"));
  if (xattr_names_loaded_) {
    if (xattr_names_.size() < kXattrNamesMax) {
      xattr_names_.emplace(name);
    } else {
      xattr_names_loaded_ = false;  // too many: always ask the database
      xattr_names_too_many_ = true;
      xattr_names_.clear();
    }
  }
  sqlite3_bind_int64(st, 1, ToI64(ino));
  BindBlob(st, 2, name);
  BindBlob(st, 3, value);
  STEP_DONE(st, "set xattr");
  return Status::OK();
}

Status MetadataStore::RemoveXattr(uint64_t ino, std::string_view name) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("DELETE FROM xattrs WHERE ino = ? AND name = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  BindBlob(st, 2, name);
  STEP_DONE(st, "remove xattr");
  if (sqlite3_changes(db_) == 0) return Status::NotFound("no such attribute");
  return Status::OK();
}

Result<std::vector<std::string>> MetadataStore::ListXattrs(uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("SELECT name FROM xattrs WHERE ino = ? ORDER BY name"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  std::vector<std::string> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) out.push_back(ColumnBlob(st, 0));
  if (rc != SQLITE_DONE) return Error("list xattrs");
  return out;
}

Result<std::vector<ExtentRecord>> MetadataStore::ListExtents(uint64_t ino) {
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st, Prep("SELECT idx, slice, len FROM extents WHERE ino = ? ORDER BY idx"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  std::vector<ExtentRecord> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ExtentRecord e;
    e.idx = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    auto id = SliceId::FromBytes(ColumnBlob(st, 1));
    if (!id.ok()) {
      sqlite3_reset(st);
      return Status::Corruption("metadata: extent of inode " + std::to_string(ino) +
                                " has a bad slice address");
    }
    e.slice = *id;
    e.len = static_cast<uint32_t>(sqlite3_column_int64(st, 2));
    out.push_back(e);
  }
  if (rc != SQLITE_DONE) return Error("list extents");
  return out;
}

Status MetadataStore::PutExtent(uint64_t ino, const ExtentRecord& e) {
  inode_cache_.erase(ino);  // alloc changes
  MESHFS_ASSIGN_OR_RETURN(
      sqlite3_stmt * st,
      Prep("INSERT OR REPLACE INTO extents(ino, idx, slice, len) VALUES(?, ?, ?, ?)"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  sqlite3_bind_int64(st, 2, ToI64(e.idx));
  BindBlob(st, 3, e.slice.Raw());
  sqlite3_bind_int64(st, 4, e.len);
  STEP_DONE(st, "put extent");
  return Status::OK();
}

Status MetadataStore::DeleteExtent(uint64_t ino, uint64_t idx) {
  inode_cache_.erase(ino);  // alloc changes
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("DELETE FROM extents WHERE ino = ? AND idx = ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  sqlite3_bind_int64(st, 2, ToI64(idx));
  STEP_DONE(st, "delete extent");
  return Status::OK();
}

Status MetadataStore::DeleteExtentsFrom(uint64_t ino, uint64_t from) {
  inode_cache_.erase(ino);  // alloc changes
  MESHFS_ASSIGN_OR_RETURN(sqlite3_stmt * st,
                          Prep("DELETE FROM extents WHERE ino = ? AND idx >= ?"));
  sqlite3_bind_int64(st, 1, ToI64(ino));
  sqlite3_bind_int64(st, 2, ToI64(from));
  STEP_DONE(st, "delete extents");
  return Status::OK();
}

}  // namespace meshfs::fs

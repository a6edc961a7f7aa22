// MetadataStore: the working metadata of a mounted volume, one SQLite
// database (VOLUME/metadata.db, WAL). Schema and durability in docs/mount.md.
//
// Tables: inodes (attributes, inline data of small files, symlink targets),
// dentries (parent, name) -> ino, xattrs, extents (ino, slice index) ->
// (slice address, plaintext length), meta (schema version, slice size,
// volume id). Inode numbers are the rowids of `inodes`, so they are stable
// across remounts; the root directory is ino 1.
//
// Every statement is prepared once and cached. Inode rows are also kept in a
// bounded write-through cache (this process is the only writer of the
// database): most operations read the same few inodes (the parent directory,
// the file just created) several times, and a cached read costs no SQL. A
// rollback drops the whole cache. GetXattr knows the attribute names that
// exist anywhere in the volume and answers a name that does not exist (the
// kernel asks for security.capability at every write, ls -l for
// security.selinux and the ACLs of every file) without a query. Ordinary
// commits use
// synchronous=NORMAL (durable against a process crash, not a power loss);
// Commit(durable = true) makes everything committed so far durable against
// power loss too (used by fsync).
//
// Thread-safety: NOT thread-safe. The owner (fs::Filesystem) serializes every
// call with one mutex; a transaction spans several calls under that mutex.
#pragma once

#include <cstdint>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "meshfs/core/disk_reserve.h"
#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace meshfs::fs {

inline constexpr uint64_t kRootIno = 1;
inline constexpr int kMetadataSchemaVersion = 2;

// One row of `inodes` without its blobs.
struct InodeRecord {
  uint64_t ino = 0;
  uint32_t mode = 0;  // type and permission bits, as st_mode
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t nlink = 0;
  uint64_t size = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t btime_ns = 0;
  uint64_t rdev = 0;
  uint64_t gen = 0;
  // Filled by GetInode only: stored bytes (inline data + extent lengths).
  uint64_t alloc = 0;
};

// One row of `extents`: slice `idx` of a file (bytes idx*slice_size ...).
struct ExtentRecord {
  uint64_t idx = 0;
  SliceId slice;
  uint32_t len = 0;  // plaintext bytes stored in the slice
};

struct DirEntryRecord {
  uint64_t cookie = 0;  // stable position for readdir continuation (> 0)
  std::string name;
  uint64_t ino = 0;
  uint32_t mode = 0;  // the file type bits (S_IFMT) only
};

class MetadataStore final {
 public:
  struct Options {
    std::filesystem::path path;
    // Used when the database is created; an existing database keeps its own
    // (InvalidArgument if it disagrees with a non-zero value here).
    uint32_t slice_size = 0;
    std::string volume_id;  // checked like slice_size when non-empty
    bool read_only = false;
    // Owner of the root directory when the database is created.
    uint32_t root_uid = 0;
    uint32_t root_gid = 0;
    int64_t now_ns = 0;
  };

  // Opens or creates the database and its schema. Corruption if the file is
  // not a meshfs metadata database or has a newer schema version.
  static Result<std::unique_ptr<MetadataStore>> Open(const Options& options);
  ~MetadataStore();
  MetadataStore(const MetadataStore&) = delete;
  MetadataStore& operator=(const MetadataStore&) = delete;

  uint32_t slice_size() const { return slice_size_; }
  const std::string& volume_id() const { return volume_id_; }

  // Transactions (BEGIN IMMEDIATE ... COMMIT). One operation at a time
  // (REQUIRES: no Begin without its Commit/CommitLater/Rollback).
  //
  // Deferred commits: CommitLater() ends an operation but leaves its
  // transaction open, so that the next operation's changes go to disk in the
  // same commit (a created file and its first contents, say). While such
  // work is pending, Begin() opens a savepoint inside the transaction;
  // Commit() then commits the pending work together with the new operation;
  // Rollback() undoes only the new operation and commits the pending work.
  Status Begin();
  // `durable`: also sync the WAL, so every commit so far survives power loss.
  Status Commit(bool durable = false);
  // Ends the operation without committing (see above).
  Status CommitLater();
  void Rollback();
  // Commits deferred work, if any.
  Status CommitPending();
  bool has_pending() const { return pending_; }
  // Makes every earlier commit durable (fsync of the WAL) without a change.
  // Commits deferred work first.
  Status Sync();

  // A full disk. Beside the database lies `<db>.reserve` (kReserveBytes,
  // made at Open when there is room). Deleting a file must work on a full
  // disk, as on any local file system, but every commit needs a little room
  // for its WAL frames: a removal that fails with NoSpace gives the reserve
  // back and is tried once more. Returns whether a reserve was given back.
  // A later commit makes it again once kReserveRoom bytes are free.
  bool ReleaseReserve();
  bool has_reserve() const { return reserve_ && reserve_->present(); }
  static constexpr uint64_t kReserveBytes = 1 << 20;
  static constexpr uint64_t kReserveRoom = 8ull << 20;

  // Inodes. GetInode: NotFound if absent.
  Result<InodeRecord> GetInode(uint64_t ino);
  // Inserts with a fresh inode number (record.ino is ignored); returns it.
  Result<uint64_t> InsertInode(const InodeRecord& record, std::string_view target = {});
  // Writes every attribute of `record` (not the blobs).
  Status UpdateInode(const InodeRecord& record);
  // Deletes the inode with its xattrs and extents.
  Status DeleteInode(uint64_t ino);
  // Inline data of a small file; nullopt when the file is not inline.
  Result<std::optional<std::string>> GetInline(uint64_t ino);
  Status SetInline(uint64_t ino, std::optional<std::string_view> data);
  Result<std::string> GetTarget(uint64_t ino);
  // Inodes with nlink 0 (orphans of a process that died).
  Result<std::vector<uint64_t>> ListOrphans();
  // Number of inodes and the sum of file sizes (for statfs).
  Result<std::pair<uint64_t, uint64_t>> Totals();

  // Directory entries. Lookup: NotFound if absent.
  Result<uint64_t> Lookup(uint64_t parent, std::string_view name);
  Status InsertDentry(uint64_t parent, std::string_view name, uint64_t ino);
  Status DeleteDentry(uint64_t parent, std::string_view name);
  // Points an existing entry at another inode (keeps its cookie).
  Status RepointDentry(uint64_t parent, std::string_view name, uint64_t ino);
  // Gives an existing entry another parent and name (one row updated, not a
  // delete and an insert). Within a directory the entry keeps its cookie,
  // hence its place in a listing; in another one it is listed last.
  // AlreadyExists if the new name is taken; NotFound if there is no such
  // entry.
  Status MoveDentry(uint64_t parent, std::string_view name, uint64_t new_parent,
                    std::string_view new_name);
  Result<bool> DirIsEmpty(uint64_t dir);
  // The directory holding directory `dir` (root: itself). NotFound if none.
  Result<uint64_t> ParentOf(uint64_t dir);
  // Entries of `dir` with cookie > `after`, in cookie order, until `fn`
  // returns false.
  Status ListDir(uint64_t dir, uint64_t after,
                 const std::function<bool(const DirEntryRecord&)>& fn);

  // Extended attributes. GetXattr: NotFound if absent.
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Result<bool> HasXattr(uint64_t ino, std::string_view name);
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value);
  // NotFound if absent.
  Status RemoveXattr(uint64_t ino, std::string_view name);
  Result<std::vector<std::string>> ListXattrs(uint64_t ino);

  // Extents, in idx order.
  Result<std::vector<ExtentRecord>> ListExtents(uint64_t ino);
  Status PutExtent(uint64_t ino, const ExtentRecord& extent);
  Status DeleteExtent(uint64_t ino, uint64_t idx);
  // Deletes the extents with idx >= `from`.
  Status DeleteExtentsFrom(uint64_t ino, uint64_t from);

 private:
  explicit MetadataStore(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  // Runs a statement without results through the statement cache
  // (transaction control: BEGIN, COMMIT, SAVEPOINT, ...).
  Status Run(const char* sql);
  // Returns the cached prepared statement for `sql` (reset, bindings cleared).
  Result<sqlite3_stmt*> Prep(const char* sql);
  Status Error(std::string_view what) const;
  // Steps an insert or update of an entry: AlreadyExists when the name is
  // taken (the unique key of dentries).
  Status StepEntryChange(sqlite3_stmt* st, std::string_view what);
  Status Init(const Options& options);
  // Makes the reserve file if there is room; best effort.
  void EnsureReserve();
  // The cookie for a new entry of `dir`: one more than its largest.
  Result<uint64_t> NextCookie(uint64_t dir);
  // The number for a new inode: never one a file had before, even a deleted
  // one (the kernel may still hold that number, with its cached pages).
  Result<uint64_t> NextIno();

  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;
  uint32_t slice_size_ = 0;
  std::string volume_id_;
  bool in_op_ = false;     // between Begin and Commit/CommitLater/Rollback
  bool nested_ = false;    // the operation runs in a savepoint of a pending transaction
  bool pending_ = false;   // a transaction with deferred work is open
  std::unique_ptr<DiskReserve> reserve_;  // null: none (read-only, in memory)
  std::chrono::steady_clock::time_point next_reserve_try_{};
  // Inode numbers: the next one to hand out (0: not loaded yet), and the
  // high-water mark meta.ino_reserved the database records - every number
  // below it may have been used. It moves up by kInoReserveStep at a time,
  // so a create rarely writes it; 0 after a rollback (reload and move on).
  static constexpr uint64_t kInoReserveStep = 4096;
  uint64_t next_ino_ = 0;
  uint64_t ino_reserved_ = 0;

  // Inode rows as GetInode returns them (alloc included), by ino. Cleared
  // when full and on every rollback.
  static constexpr size_t kInodeCacheMax = 32768;
  std::unordered_map<uint64_t, InodeRecord> inode_cache_;
  void CacheInode(const InodeRecord& r);
  // Every xattr name stored in the volume (a superset: names are added, never
  // removed), loaded at the first GetXattr; not used when there are more than
  // kXattrNamesMax distinct names.
  static constexpr size_t kXattrNamesMax = 4096;
  bool xattr_names_loaded_ = false;
  bool xattr_names_too_many_ = false;
  std::unordered_set<std::string> xattr_names_;
};

}  // namespace meshfs::fs

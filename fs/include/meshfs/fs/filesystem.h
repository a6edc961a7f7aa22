// Filesystem: POSIX semantics of a meshfs volume, independent of the kernel.
//
// The FUSE glue (fuse_ops.h) translates each request into one call here; the
// unit tests call it directly with an in-memory store. It owns the metadata
// (MetadataStore, one transaction per mutating operation), the table of
// in-memory inodes (lookup counts, open handles, FileData of open files), the
// plaintext slice cache and a small readahead pool. It reaches the blobs only
// through the SliceStore interface and the SliceCodec.
//
// Errors: every operation returns 0 or the positive errno a program expects
// (ENOENT, EEXIST, ENOTEMPTY, EXDEV, ...); store and metadata failures are
// mapped with fs::ToErrno (EIO, ENOSPC, ...). Permission bits are checked by
// the kernel (the mount always uses default_permissions); this layer applies
// the rules the kernel leaves to the filesystem (setgid inheritance, clearing
// setuid/setgid on chown and on write).
//
// Thread-safety: all methods are safe to call concurrently. Internally: one
// mutex serializes metadata transactions; each open file has its own mutex
// (FileData) that is taken before the metadata mutex; the inode table has a
// leaf mutex. No lock is held while the store is accessed except the file's
// own (for read-modify-write of a partial slice).
#pragma once

#include <sys/stat.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "meshfs/core/clock.h"
#include "meshfs/core/slice_store.h"
#include "meshfs/fs/codec.h"
#include "meshfs/fs/file_data.h"
#include "meshfs/fs/metadata.h"

namespace meshfs::fs {

// Attributes as the kernel wants them.
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t nlink = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units actually stored
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t btime_ns = 0;
  uint64_t rdev = 0;
  uint64_t gen = 0;
};

// Who asks (from the FUSE request context).
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Applied to the permission bits of new inodes unless the parent has a
  // default ACL (which replaces it).
  uint32_t umask = 0;
  bool is_root() const { return uid == 0; }
};

// setattr: which fields to change.
struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits (type bits ignored)
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  // Times: a value in ns, or kTimeNow.
  std::optional<int64_t> atime_ns;
  std::optional<int64_t> mtime_ns;
  std::optional<int64_t> ctime_ns;
  std::optional<uint64_t> fh;  // the open handle, for ftruncate
  static constexpr int64_t kTimeNow = INT64_MIN;
};

struct StatFsInfo {
  uint64_t block_size = 4096;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t avail_bytes = 0;
  uint64_t files = 0;
  uint64_t files_free = 0;
  uint32_t name_max = 255;
};

struct FsStats {
  uint64_t dirty_bytes = 0;
  uint64_t open_files = 0;
  uint64_t cache_bytes = 0;
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  uint64_t pushed_bytes = 0;  // handed to the kernel's page cache (PushPages)
};

inline constexpr size_t kNameMax = 255;
inline constexpr size_t kPathMax = 4096;
inline constexpr size_t kXattrNameMax = 255;
inline constexpr size_t kXattrSizeMax = 64 * 1024;

// readdir callback: one entry; `next` is the offset to resume after it.
// Returns false when the caller's buffer is full (the entry is not taken and,
// for readdirplus, its lookup count is not raised).
using DirFiller = std::function<bool(std::string_view name, const Attr& attr, uint64_t next)>;

// Contents of a regular file at `off`, read at data generation `generation`
// (see Filesystem::Read / PushPages).
struct PagePush {
  uint64_t off = 0;
  std::string data;
  uint64_t generation = 0;
};

class Filesystem final : private FileDataBackend {
 public:
  struct Options {
    std::filesystem::path metadata_path;
    uint32_t slice_size = kDefaultSliceSize;
    std::string volume_id;
    const SliceCodec* codec = nullptr;  // must outlive the Filesystem
    SliceStore* store = nullptr;        // must outlive the Filesystem
    bool read_only = false;
    uint64_t cache_bytes = 64ull << 20;   // plaintext slice LRU
    // Dirty bytes per open file, and for all open files together, before
    // the oldest are written back.
    uint64_t dirty_max = 64ull << 20;
    int readahead_threads = 16;  // fetchers of read-ahead slices (file_data.cc)
    // Free space of the backing peers; nullopt: use the local disk of the
    // metadata file.
    std::function<std::optional<StatFsInfo>()> statfs;
    Clock* clock = Clock::Real();
    // Owner of the root directory when the metadata is created.
    uint32_t root_uid = 0;
    uint32_t root_gid = 0;
  };

  // Opens or creates the metadata and cleans orphans (unlinked inodes that a
  // dead process still had open).
  static Result<std::unique_ptr<Filesystem>> Open(const Options& options);
  ~Filesystem() override;  // Flushes what it can; stops the readahead pool.
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // --- names. Each success that returns an Attr for an entry raises that
  // inode's lookup count by one (FUSE's rule); Forget lowers it.
  int Lookup(uint64_t parent, std::string_view name, Attr* out);
  void Forget(uint64_t ino, uint64_t n);
  int GetAttr(uint64_t ino, Attr* out);
  int SetAttr(const Caller& c, uint64_t ino, const SetAttrRequest& req, Attr* out);
  // Regular files, fifos, sockets, device nodes (S_IFMT bits of `mode`).
  int Mknod(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
            Attr* out);
  int Mkdir(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode, Attr* out);
  int Symlink(const Caller& c, uint64_t parent, std::string_view name, std::string_view target,
              Attr* out);
  int Readlink(uint64_t ino, std::string* target);
  int Link(uint64_t ino, uint64_t new_parent, std::string_view new_name, Attr* out);
  // Removals work on a full disk: one that fails with ENOSPC gives back the
  // metadata store's reserve and is tried once more.
  int Unlink(uint64_t parent, std::string_view name);
  int Rmdir(uint64_t parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE (others EINVAL).
  int Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
             std::string_view new_name, unsigned flags);

  // --- files. `flags` as open(2) (O_TRUNC, O_APPEND honoured; O_EXCL for Create).
  int Create(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode, int flags,
             Attr* out, uint64_t* fh);
  int Open(const Caller& c, uint64_t ino, int flags, uint64_t* fh);
  // With `push`: the rest of each slice decoded for a short read, which the
  // caller may hand to the kernel's page cache with PushPages() so that the
  // next reads of that slice need no request (random reads of a large file).
  int Read(uint64_t ino, uint64_t fh, uint64_t off, uint64_t len, std::string* out,
           std::vector<PagePush>* push = nullptr);
  // The same without a copy when the range lies in one slice (out->view).
  int Read(uint64_t ino, uint64_t fh, uint64_t off, uint64_t len, ReadBuffer* out,
           std::vector<PagePush>* push = nullptr);
  // Runs `store` (which puts `p` into the kernel's page cache) unless the
  // file may have changed since `p` was read: opened for writing, truncated.
  // Opening for writing (or truncating) first stops new pushes of the file,
  // then waits for a `store` in progress, so the kernel never gets old
  // contents over pages a writer has dirtied. Never call it on a FUSE
  // worker: the kernel may hold a page lock until a worker answers a read.
  void PushPages(uint64_t ino, const PagePush& p, const std::function<void()>& store);
  // Writes all of `data` (O_APPEND handles write at end of file); sets
  // *written. Clears setuid/setgid when a non-root caller writes.
  int Write(const Caller& c, uint64_t ino, uint64_t fh, uint64_t off, std::string_view data,
            size_t* written);
  int Flush(uint64_t ino, uint64_t fh);
  int Fsync(uint64_t ino, uint64_t fh, bool datasync);
  int Release(uint64_t ino, uint64_t fh);
  // mode 0 only (EOPNOTSUPP otherwise): allocates (zero-fills) the range.
  int Fallocate(uint64_t ino, uint64_t fh, int mode, uint64_t off, uint64_t len);
  // whence SEEK_DATA / SEEK_HOLE (others EINVAL). ENXIO past the data.
  int Lseek(uint64_t ino, uint64_t fh, uint64_t off, int whence, uint64_t* out);

  // --- directories. Offsets: 0 start; entries "." and ".." come first.
  int OpenDir(uint64_t ino);
  // `plus`: raise lookup counts for the entries taken (not . and ..).
  int ReadDir(uint64_t ino, uint64_t off, bool plus, const DirFiller& fill);
  int FsyncDir(uint64_t ino);

  // --- extended attributes. flags: XATTR_CREATE / XATTR_REPLACE.
  int SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  // `size` 0: size query (*out gets the value anyway); ERANGE if too small.
  int GetXattr(uint64_t ino, std::string_view name, size_t size, std::string* out);
  int ListXattr(uint64_t ino, size_t size, std::string* out);
  int RemoveXattr(uint64_t ino, std::string_view name);

  int StatFs(StatFsInfo* out);

  // Writes back all dirty data of every open file and commits the metadata.
  // `durable`: then also Flush() the store and sync the metadata (fsync).
  Status FlushAll(bool durable);
  // Makes every metadata commit so far durable (WAL fsync).
  Status SyncMetadata();
  FsStats Stats();
  // Drops the plaintext cache (e.g. after `meshfs cache clear`).
  void ClearCache() { cache_.Clear(); }

  uint32_t slice_size() const { return slice_size_; }
  uint64_t lookup_count(uint64_t ino);

 private:
  struct Node {
    uint64_t nlookup = 0;
    int nopen = 0;
    int writers = 0;        // open handles that may write
    uint64_t data_gen = 0;  // changes whenever the contents may change
    // Reads skip the relatime check until then (0: check); writes reset it.
    int64_t atime_checked_until_ns = 0;
    std::shared_ptr<FileData> data;
  };
  struct Handle {
    uint64_t ino = 0;
    int flags = 0;
    bool privs_checked = false;  // setuid/setgid cleared on its first write
  };

  explicit Filesystem(const Options& options);

  // FileDataBackend.
  Result<SliceBytes> LoadSlice(const SliceId& id) override;
  Result<SliceId> StoreSlice(std::string_view plaintext) override;
  Status CommitFile(uint64_t ino, const FileCommit& commit) override;
  void Prefetch(const std::vector<SliceId>& ids) override;
  void AccountDirty(int64_t delta) override { dirty_total_.fetch_add(delta); }
  int64_t NowNs() override { return clock_->NowMicros() * 1000; }

  // REQUIRES: meta_mu_ held.
  int AttrLocked(uint64_t ino, Attr* out);
  // Whether `ino` was created by a transaction that is still not committed.
  bool PendingCreateLocked(uint64_t ino);
  // The buffered data of a file an operation deleted, discarded when this
  // goes out of scope. Declared before the metadata lock's guard: the file's
  // lock comes first in the lock order.
  struct DeletedData {
    std::shared_ptr<FileData> data;
    ~DeletedData();
  };
  int UnlinkOnce(uint64_t parent, std::string_view name);
  bool ReleaseReserve();
  int RmdirOnce(uint64_t parent, std::string_view name);
  // `defer_commit`: leave the transaction open (MetadataStore::CommitLater).
  // `known_absent`: the caller found no entry `name` under this lock.
  int NewNodeLocked(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode,
                    uint64_t rdev, std::string_view target, Attr* out, bool defer_commit = false,
                    bool known_absent = false);
  // `*deleted`: the inode is gone once the transaction commits.
  int DropLinkLocked(uint64_t ino, const InodeRecord& rec, bool* deleted);
  // Takes the buffered data of `ino`, deleted by a committed transaction
  // (without the file in the table a write-back retry would try to commit to
  // the inode number, and the dirty bytes would stay counted).
  std::shared_ptr<FileData> TakeDataOfDeleted(uint64_t ino);
  int TouchDirLocked(uint64_t dir, int64_t now);
  // Overlays open-file state (size, times, blocks) onto `a`.
  void Overlay(Attr* a);
  void AddLookup(uint64_t ino);
  std::shared_ptr<FileData> DataOf(uint64_t ino);
  // FileData of `ino` for an operation without an open handle (truncate).
  Result<std::shared_ptr<FileData>> LoadData(uint64_t ino);
  // The contents of `node` are about to change: pages read before must not
  // reach the kernel any more. REQUIRES: table_mu_ held.
  void ContentsChangingLocked(Node& node);
  // Deletes the inode if it is an orphan nobody has open.
  void MaybeReap(uint64_t ino);
  int Err(const Status& s, std::string_view what);
  void ReadaheadLoop();

  const Options options_;
  Clock* const clock_;
  const SliceCodec* const codec_;
  SliceStore* const store_;
  uint32_t slice_size_ = 0;
  SliceCache cache_;
  std::atomic<int64_t> dirty_total_{0};
  std::atomic<uint64_t> pushed_bytes_{0};
  // Write-back of full slices off the FUSE threads. Declared before nodes_:
  // every FileData (which waits for its jobs) goes before the pool.
  WriteBackPool writeback_{2, 4};

  std::mutex meta_mu_;  // guards meta_ (and every transaction)
  std::unique_ptr<MetadataStore> meta_;
  // Files created since the last commit (meaningful while meta_ has pending
  // work; cleared lazily).
  std::unordered_set<uint64_t> uncommitted_creates_;

  // Pushes of pages to the kernel in progress, by inode (guarded by
  // table_mu_). A change of contents first makes new pushes impossible
  // (writers > 0), then waits on push_cv_ for these to finish.
  std::unordered_map<uint64_t, int> pushing_;
  std::condition_variable push_cv_;
  // Counts a writer of `ino` (an open for writing, a truncate): stops new
  // pushes of its pages, bumps its data generation, waits for running
  // pushes. False, and nothing counted, after 10 s (a push stuck).
  // REQUIRES: `lock` holds table_mu_.
  bool AddWriterLocked(std::unique_lock<std::mutex>& lock, uint64_t ino);
  std::mutex table_mu_;  // leaf lock: guards nodes_, handles_, next_fh_, next_gen_
  uint64_t next_gen_ = 0;
  std::unordered_map<uint64_t, Node> nodes_;
  std::unordered_map<uint64_t, Handle> handles_;
  uint64_t next_fh_ = 1;

  std::mutex load_mu_;  // guards loading_
  std::unordered_map<SliceId, std::shared_future<Result<SliceBytes>>> loading_;

  std::mutex ra_mu_;  // guards ra_queue_, ra_inflight_, ra_stop_
  std::condition_variable ra_cv_;
  std::deque<SliceId> ra_queue_;
  std::unordered_set<SliceId> ra_inflight_;
  bool ra_stop_ = false;
  std::vector<std::thread> ra_threads_;
};

}  // namespace meshfs::fs

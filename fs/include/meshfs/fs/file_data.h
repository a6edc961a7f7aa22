// FileData: the contents of one regular file while it is open (shared by all
// handles of the inode), and SliceCache, the in-memory plaintext slice LRU.
//
// A file is a list of fixed-size slices (the volume's slice size, the last one
// short); slice i holds bytes [i*S, (i+1)*S). A slice with no extent is a
// hole and reads as zeros. Files of at most kInlineMax bytes are stored inline
// in their inode record instead (no slice at all).
//
// Writes go to dirty plaintext buffers, one per slice. A buffer is written
// back (encoded by the backend and Put to the store) when the write that
// completes it ends on the slice boundary, when the file's dirty bytes exceed
// the bound, and on Flush. Metadata (extents, size, times, inline data) is
// committed by the backend in one transaction per Flush/Commit.
//
// With a WriteBackPool, write-back is asynchronous: the buffer moves to an
// in-flight table (reads and read-modify-writes of that slice use it), a pool
// thread encodes and stores it, and the file records the new extent the next
// time it takes its mutex. Each write-back of a slice carries a generation;
// only the newest one of a slice sets its extent, so extent updates keep the
// write order. Flush, Truncate and Discard wait for the file's write-backs
// first. A failed write-back puts its data back into the dirty buffers (unless
// newer data replaced it) and its error is returned, once, by the next Write,
// Truncate or Flush of the file.
//
// Thread-safety: every FileData method takes the file's mutex, which
// serializes read-modify-write of partial slices. Read fetches stored slices
// without holding it. Pool threads never take it (they only take done_mu_).
// Lock order: FileData::mu_, then FileData::done_mu_, then any lock the
// backend takes. WriteBackPool and SliceCache are thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"
#include "meshfs/fs/metadata.h"

namespace meshfs::fs {

inline constexpr uint64_t kInlineMax = 4096;

// What FileData asks the metadata to record in one transaction.
struct FileCommit {
  uint64_t size = 0;
  bool times = false;  // mtime/ctime below are new
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  std::vector<ExtentRecord> put;           // extents to insert or replace
  std::optional<uint64_t> delete_from;     // drop extents with idx >= this first
  std::vector<uint64_t> remove;            // extents to drop (the slice became empty)
  bool set_inline = false;                 // write `inline_data` (nullopt = NULL)
  std::optional<std::string> inline_data;
  bool durable = false;                    // fsync: sync the metadata too
};

// The services FileData needs (implemented by fs::Filesystem).
// Decoded slice contents, shared between the plaintext cache and readers.
using SliceBytes = std::shared_ptr<const std::string>;

// The bytes of a read: `view`, into `shared` (a slice's bytes, no copy) or
// into `owned` (assembled). Valid while the ReadBuffer lives.
struct ReadBuffer {
  std::string owned;
  SliceBytes shared;
  std::string_view view;

  // The bytes as a string of their own (moved out of `owned` when the view
  // is all of it, copied from the slice otherwise).
  std::string Take() && { return shared ? std::string(view) : std::move(owned); }
};

class FileDataBackend {
 public:
  virtual ~FileDataBackend() = default;
  // The plaintext of a stored slice (cache, then store + decode).
  virtual Result<SliceBytes> LoadSlice(const SliceId& id) = 0;
  // Encodes and stores `plaintext`; returns its address.
  virtual Result<SliceId> StoreSlice(std::string_view plaintext) = 0;
  virtual Status CommitFile(uint64_t ino, const FileCommit& commit) = 0;
  // Hint: these slices will probably be read soon.
  virtual void Prefetch(const std::vector<SliceId>& ids) = 0;
  // Called with the change of the file's dirty bytes (for the mount total).
  virtual void AccountDirty(int64_t delta) = 0;
  virtual int64_t NowNs() = 0;
};

// A fixed set of threads running write-back jobs, shared by all files of a
// mount. At most `max_queued` jobs are queued or running at once (Submit
// blocks beyond), which bounds the memory held by in-flight slices.
// Thread-safe. The destructor runs the jobs still queued, then joins.
class WriteBackPool final {
 public:
  WriteBackPool(int threads, size_t max_queued);
  ~WriteBackPool();
  WriteBackPool(const WriteBackPool&) = delete;
  WriteBackPool& operator=(const WriteBackPool&) = delete;

  // Queues `job`, waiting while the pool is full. `job` must not take any
  // FileData::mu_ (a caller may hold one while it waits here).
  void Submit(std::function<void()> job);

 private:
  void Loop();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;  // a job was queued, or a slot was freed, or stop
  std::deque<std::function<void()>> jobs_;
  size_t busy_ = 0;  // queued + running
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class FileData final {
 public:
  // `inline_data`: the inode's inline blob (nullopt: the file uses extents).
  // `pool`: where write-backs run (nullptr: synchronously in the caller); it
  // must outlive this FileData.
  FileData(uint64_t ino, uint32_t slice_size, uint64_t size, std::optional<std::string> inline_data,
           const std::vector<ExtentRecord>& extents, FileDataBackend* backend,
           uint64_t dirty_max, WriteBackPool* pool = nullptr);
  // Un-flushed dirty data is dropped (callers Flush first); waits for the
  // file's in-flight write-backs.
  ~FileData();
  FileData(const FileData&) = delete;
  FileData& operator=(const FileData&) = delete;

  // Reads up to `len` bytes at `off` (fewer at end of file) into `out`.
  // With `rest`: for each stored slice loaded for this read that the read
  // does not cover whole, the page-aligned parts of it the read left out
  // (offset in the file, bytes), cut at the end of the file.
  Status Read(uint64_t off, uint64_t len, std::string* out,
              std::vector<std::pair<uint64_t, std::string>>* rest = nullptr);
  // The same, without copying when the range lies in one stored or
  // in-flight slice: out->view then points into out->shared.
  Status Read(uint64_t off, uint64_t len, ReadBuffer* out,
              std::vector<std::pair<uint64_t, std::string>>* rest = nullptr);
  // Writes `data` at `off` (at the end of the file when `append`), growing
  // the file as needed. Sets *at to the offset written, if given.
  Status Write(uint64_t off, std::string_view data, bool append = false, uint64_t* at = nullptr);
  // Sets the size (shrinking drops data beyond it; growing makes a hole).
  Status Truncate(uint64_t size);
  // Writes back every dirty slice and commits the metadata.
  Status Flush(bool durable);
  // Commits size/times/extents already written back, without writing back
  // (write-backs still in flight are committed by a later Commit/Flush).
  Status Commit();
  // Drops all dirty state (the file was deleted), after waiting for the
  // file's in-flight write-backs; their results and errors are dropped.
  void Discard();

  // Overrides of the stored attributes while open.
  uint64_t size();
  // Stored (non-hole) bytes, for st_blocks.
  uint64_t allocated();
  // mtime/ctime set by writes not yet committed (0 when none).
  std::pair<int64_t, int64_t> pending_times();
  // Explicit times from utimensat replace pending write times.
  void ClearPendingTimes();
  // Sets the pending mtime/ctime (committed by the next Flush/Commit).
  void SetPendingTimes(int64_t mtime_ns, int64_t ctime_ns);
  uint64_t dirty_bytes();
  // Next offset >= off inside data (SEEK_DATA) or a hole (SEEK_HOLE);
  // nullopt: ENXIO.
  std::optional<uint64_t> Seek(uint64_t off, bool data);

 private:
  struct Dirty {
    std::string data;  // slice bytes from its start; beyond data.size() are zeros
    uint64_t seq = 0;  // write order, for writing back the oldest first
  };
  // A write-back handed to the pool and not yet applied.
  struct InFlight {
    std::shared_ptr<const std::string> data;
    uint64_t gen = 0;  // newest write-back of the slice
    uint64_t seq = 0;
  };
  // A finished write-back, waiting for the file's mutex to be applied.
  struct Done {
    uint64_t idx = 0;
    uint64_t gen = 0;
    Status status;  // not OK: the store failed and `id` is unset
    SliceId id;
  };
  // REQUIRES: mu_ held. The dirty buffer of slice `idx`, loading its stored
  // bytes first when `need_base`.
  Result<Dirty*> DirtyFor(uint64_t idx, bool need_base);
  // REQUIRES: mu_ held. Stores slice idx's dirty buffer (asynchronously with
  // a pool) and drops the buffer.
  // `here`: encode and store in this thread even with a pool (a flush of a
  // single slice, which waits for it anyway).
  Status WriteBackLocked(uint64_t idx, bool here = false);
  // REQUIRES: mu_ held. Applies finished write-backs.
  void ReapLocked();
  // REQUIRES: mu_ held. Waits until no write-back of this file is in flight,
  // applies them, and returns (and clears) the first error not yet reported.
  Status WaitIdleLocked();
  // REQUIRES: mu_ held. Returns and clears the pending write-back error.
  Status TakeErrorLocked();
  Status CommitLocked(bool durable);
  // Moves inline content into a dirty slice 0 (the file outgrew kInlineMax).
  Status LeaveInlineLocked();
  bool HasContent(uint64_t idx) const;
  void AddDirty(int64_t delta);
  uint64_t SliceLen(uint64_t idx) const;  // bytes of slice idx below size_

  const uint64_t ino_;
  const uint64_t slice_size_;
  FileDataBackend* const backend_;
  const uint64_t dirty_max_;
  const uint64_t readahead_slices_;  // how far sequential reads fetch ahead
  WriteBackPool* const pool_;

  std::mutex mu_;
  uint64_t size_;
  std::optional<std::string> inline_;  // inline mode: slice 0's stored bytes
  std::map<uint64_t, ExtentRecord> extents_;
  std::map<uint64_t, Dirty> dirty_;
  uint64_t dirty_bytes_ = 0;
  uint64_t seq_ = 0;
  std::set<uint64_t> uncommitted_;       // extents_ entries changed since the last commit
  std::optional<uint64_t> delete_from_;  // truncation not yet committed
  bool meta_dirty_ = false;              // size/times/inline changed since the last commit
  bool times_dirty_ = false;
  uint64_t last_read_end_ = UINT64_MAX;   // sequential read detection
  bool inline_dirty_ = false;
  int64_t mtime_ns_ = 0;
  int64_t ctime_ns_ = 0;
  std::map<uint64_t, InFlight> inflight_;  // newest write-back of each slice
  uint64_t gen_ = 0;
  Status error_;  // first write-back failure not yet reported

  std::mutex done_mu_;  // guards the members below (shared with pool threads)
  std::condition_variable done_cv_;  // pending_ fell
  std::vector<Done> done_;
  size_t pending_ = 0;  // jobs submitted and not yet in done_
};

// An LRU of decoded slices keyed by address, bounded in bytes.
class SliceCache final {
 public:
  explicit SliceCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  SliceCache(const SliceCache&) = delete;
  SliceCache& operator=(const SliceCache&) = delete;

  // The cached bytes, shared (no copy), or null.
  SliceBytes Get(const SliceId& id);
  void Put(const SliceId& id, SliceBytes plaintext);
  void Clear();
  uint64_t bytes();
  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }

 private:
  using Entry = std::pair<SliceId, SliceBytes>;
  const uint64_t max_bytes_;
  std::mutex mu_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<SliceId, std::list<Entry>::iterator> index_;
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace meshfs::fs

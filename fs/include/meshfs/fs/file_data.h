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
// Thread-safety: every FileData method takes the file's mutex, which
// serializes read-modify-write of partial slices. Read fetches stored slices
// without holding it. Lock order: FileData::mu_ before any lock the backend
// takes. SliceCache is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
class FileDataBackend {
 public:
  virtual ~FileDataBackend() = default;
  // The plaintext of a stored slice (cache, then store + decode).
  virtual Result<std::string> LoadSlice(const SliceId& id) = 0;
  // Encodes and stores `plaintext`; returns its address.
  virtual Result<SliceId> StoreSlice(std::string_view plaintext) = 0;
  virtual Status CommitFile(uint64_t ino, const FileCommit& commit) = 0;
  // Hint: these slices will probably be read soon.
  virtual void Prefetch(const std::vector<SliceId>& ids) = 0;
  // Called with the change of the file's dirty bytes (for the mount total).
  virtual void AccountDirty(int64_t delta) = 0;
  virtual int64_t NowNs() = 0;
};

class FileData final {
 public:
  // `inline_data`: the inode's inline blob (nullopt: the file uses extents).
  FileData(uint64_t ino, uint32_t slice_size, uint64_t size, std::optional<std::string> inline_data,
           const std::vector<ExtentRecord>& extents, FileDataBackend* backend,
           uint64_t dirty_max);
  ~FileData();  // un-flushed dirty data is dropped (callers Flush first)
  FileData(const FileData&) = delete;
  FileData& operator=(const FileData&) = delete;

  // Reads up to `len` bytes at `off` (fewer at end of file) into `out`.
  Status Read(uint64_t off, uint64_t len, std::string* out);
  // Writes `data` at `off` (at the end of the file when `append`), growing
  // the file as needed. Sets *at to the offset written, if given.
  Status Write(uint64_t off, std::string_view data, bool append = false, uint64_t* at = nullptr);
  // Sets the size (shrinking drops data beyond it; growing makes a hole).
  Status Truncate(uint64_t size);
  // Writes back every dirty slice and commits the metadata.
  Status Flush(bool durable);
  // Commits size/times/extents already written back, without writing back.
  Status Commit();
  // Drops all dirty state (the file was deleted).
  void Discard();

  // Overrides of the stored attributes while open.
  uint64_t size();
  // Stored (non-hole) bytes, for st_blocks.
  uint64_t allocated();
  // mtime/ctime set by writes not yet committed (0 when none).
  std::pair<int64_t, int64_t> pending_times();
  // Explicit times from utimensat replace pending write times.
  void ClearPendingTimes();
  uint64_t dirty_bytes();
  // Next offset >= off inside data (SEEK_DATA) or a hole (SEEK_HOLE);
  // nullopt: ENXIO.
  std::optional<uint64_t> Seek(uint64_t off, bool data);

 private:
  struct Dirty {
    std::string data;  // slice bytes from its start; beyond data.size() are zeros
    uint64_t seq = 0;  // write order, for writing back the oldest first
  };
  // REQUIRES: mu_ held. The dirty buffer of slice `idx`, loading its stored
  // bytes first when `need_base`.
  Result<Dirty*> DirtyFor(uint64_t idx, bool need_base);
  Status WriteBackLocked(uint64_t idx);
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
};

// An LRU of decoded slices keyed by address, bounded in bytes.
class SliceCache final {
 public:
  explicit SliceCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  SliceCache(const SliceCache&) = delete;
  SliceCache& operator=(const SliceCache&) = delete;

  std::optional<std::string> Get(const SliceId& id);
  void Put(const SliceId& id, std::string plaintext);
  void Clear();
  uint64_t bytes();
  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }

 private:
  using Entry = std::pair<SliceId, std::string>;
  const uint64_t max_bytes_;
  std::mutex mu_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<SliceId, std::list<Entry>::iterator> index_;
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace meshfs::fs

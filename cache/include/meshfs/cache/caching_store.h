// CachingStore: the local SQLite block cache and the durable upload queue,
// as a SliceStore decorator over the remote (replicating) store.
//
// Put: the blob is committed to the cache database (WAL) marked "pending" and
// queued for upload; the commit survives a crash of the process as soon as Put
// returns, and a power loss once Flush() has returned (it syncs the WAL);
// background workers push it to the remote store and mark it "uploaded" once
// the remote store accepts it (on R peers). Get: cache first (hit), else the
// remote store, and the result is cached as "uploaded". A pending blob is
// never evicted. Eviction is LRU down to the size bound; when the cache is
// full of pending blobs, Put waits (back-pressure) and fails with NoSpace
// after a bounded wait, and immediately with NoSpace if the disk itself is
// full. A restarted CachingStore resumes the queued uploads.
//
// Thread-safety: all methods are safe to call concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "meshfs/core/clock.h"
#include "meshfs/core/slice_store.h"

namespace meshfs::cache {

enum class Durability {
  kLocal,    // Flush() returns once blobs are durable in the local cache
  kNetwork,  // Flush() returns once blobs are on min_network_copies peers
};

struct CacheOptions {
  std::filesystem::path db_path;
  uint64_t max_bytes = 2ull << 30;         // cache bound (default 2 GiB)
  Durability durability = Durability::kLocal;
  int min_network_copies = 1;              // for kNetwork
  int upload_threads = 8;
  int64_t backpressure_timeout_ms = 60'000;
  // Upload retry backoff: doubles from retry_initial_ms up to retry_max_ms.
  int64_t retry_initial_ms = 200;
  int64_t retry_max_ms = 30'000;
  // kNetwork: Flush() gives up with TimedOut after this long (peers offline).
  int64_t network_flush_timeout_ms = 120'000;
  // kLocal only: while the mount is writing (a Put or NoteWriteActivity in
  // the last writer_idle_ms), uploads wait for it to pause, until more than
  // yield_bytes are queued (0: three quarters of max_bytes), the oldest
  // queued slice has waited writer_max_defer_ms, or WaitUploaded is called,
  // so a burst of writes runs at local speed and is replicated right after.
  // 0 ms: uploads never wait.
  int64_t writer_idle_ms = 300;
  uint64_t yield_bytes = 0;
  int64_t writer_max_defer_ms = 30'000;
  // Copying the WAL into the database waits until no blob has been stored
  // or uploaded for checkpoint_quiet_ms, or until the WAL holds
  // wal_busy_bytes (0: max_bytes, between 32 MiB and 4 GiB) or a quarter of
  // the free disk. The WAL is on disk beside the database, so the cache can
  // briefly use that much more than max_bytes.
  int64_t checkpoint_quiet_ms = 300;
  uint64_t wal_busy_bytes = 0;
  // While blobs are on their way to the peers (queued, and the last upload
  // did not fail), the quiet copy also waits for the queue to empty, but
  // not longer than this after the last blob stored. The uploads that
  // follow a large write read their blobs from the WAL, and a copy running
  // beside them competed for the same cores. 0: no wait.
  int64_t checkpoint_upload_hold_ms = 60'000;
};

struct CacheStats {
  uint64_t cached_bytes = 0;
  uint64_t cached_slices = 0;
  uint64_t pending_slices = 0;   // not yet on R peers
  uint64_t pending_bytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t upload_errors = 0;
  std::string last_upload_error;  // empty when uploads are healthy
  uint64_t uploaded_slices = 0;   // uploads completed since Open
  uint64_t corrupt_cached = 0;    // cached copies that failed verification
};

class CachingStore final : public SliceStore {
 public:
  // Opens (creating if needed) the cache database and starts the upload
  // workers. `remote` must outlive the store.
  static Result<std::unique_ptr<CachingStore>> Open(const CacheOptions& options,
                                                    SliceStore* remote,
                                                    Clock* clock = Clock::Real());
  ~CachingStore() override;  // stops workers; queued uploads stay queued on disk

  Status Put(const SliceId& id, std::string_view blob) override;
  Status PutTrusted(const SliceId& id, std::string blob) override;
  Result<std::string> Get(const SliceId& id) override;
  // A cached copy comes back unhashed (`*address_checked` false): every row's
  // address was checked when it was stored (Put, a peer's reply) or computed
  // from its bytes (PutTrusted).
  Result<SharedBlob> GetToDecrypt(const SliceId& id, bool* address_checked) override;
  Result<SharedBlob> ReplaceDamaged(const SliceId& id) override;
  Result<bool> Contains(const SliceId& id) override;
  Status Remove(const SliceId& id) override;
  Status Flush() override;  // per options.durability
  void NoteWriteActivity() override;

  // Waits until no upload is pending, or `timeout_ms` passes (TimedOut, with
  // the count still pending). `progress`, if set, is called about once a second.
  Status WaitUploaded(int64_t timeout_ms,
                      const std::function<void(const CacheStats&)>& progress = {});
  CacheStats Stats() const;
  // Drops every cached blob that is already uploaded.
  Status ClearUploaded();

  CachingStore(const CachingStore&) = delete;
  CachingStore& operator=(const CachingStore&) = delete;

 private:
  CachingStore();
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// `meshfs cache clear` on a volume that is not mounted.
Status ClearUploadedOffline(const std::filesystem::path& db_path);

}  // namespace meshfs::cache

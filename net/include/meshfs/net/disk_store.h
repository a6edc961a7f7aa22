// DiskStore: the storage peer's slice store on local disk, with owner
// references, signed-request nonces and root records in an SQLite index.
//
// Layout under DIR (docs/protocol.md "On-disk layout"):
//   slices/XY/<64 hex>   one file per blob, fanned out by the first byte
//                        (XY made on first use)
//   tmp/                 blobs being written (emptied at start)
//   index.db             SQLite: refs(addr, owner), nonces, roots
//   node_id              this node's id (random, made at first start)
// A blob becomes visible only by rename(2) of a complete, fsynced temp file
// whose BLAKE2b-256 was checked against its address, so a crash never leaves
// a partial blob under a valid address. Usage counters are rebuilt from the
// files at Open.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <bitset>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

struct sqlite3;

namespace meshfs::net {

class DiskStore final {
 public:
  static constexpr uint64_t kDefaultMaxBlobBytes = (16u << 20) + 4096;  // 16 MiB slice + overhead
  static constexpr size_t kRootsKept = 16;

  struct Options {
    std::string dir;
    uint64_t capacity_bytes = 0;  // 0: what the file system has free at Open + what is stored
    uint64_t max_blob_bytes = kDefaultMaxBlobBytes;
  };
  struct Stats {
    uint64_t slices = 0;
    uint64_t used_bytes = 0;
    uint64_t capacity_bytes = 0;
  };
  struct BlobFile {
    int fd = -1;  // caller closes
    uint64_t size = 0;
  };

  // Opens (creating) DIR, removes leftover temp files, rebuilds counters.
  static Result<std::unique_ptr<DiskStore>> Open(Options options);
  ~DiskStore();
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  // This node's persistent id (32 hex).
  const std::string& node_id() const { return node_id_; }

  // Stores `blob` under `id` and records `owner` (64 hex volume id, or empty
  // for none) as holding a reference. Returns true if the blob was new.
  // TooLarge over max_blob_bytes; Corruption if BLAKE2b-256(blob) != id
  // (nothing stored); NoSpace if it does not fit; InvalidArgument for a bad
  // owner. Idempotent; concurrent Puts of one id are safe.
  // `address_verified`: the caller has just checked id.Matches(blob) (the
  // node does, before forwarding), so the hash is not computed again;
  // Corruption is then never returned.
  Result<bool> Put(const SliceId& id, std::string_view blob, std::string_view owner,
                   bool address_verified = false);
  // NotFound if absent.
  Result<std::string> Get(const SliceId& id);
  Result<BlobFile> OpenBlob(const SliceId& id);
  bool Contains(const SliceId& id) const;
  // Where the blob `id` is (or would be) stored: DIR/slices/XY/<hex>.
  std::string BlobPath(const SliceId& id) const;

  // Drops `owner`'s reference to `id`; removes the blob when no reference
  // is left. Returns true if the blob was removed. NotFound if `owner` held
  // no reference.
  Result<bool> RemoveRef(const SliceId& id, std::string_view owner);

  // Records a signed request's nonce; PermissionDenied "replayed" if `owner`
  // used it before (within the kept window). Old nonces (timestamp before
  // now - keep_seconds) are forgotten.
  Status UseNonce(std::string_view owner, std::string_view nonce, int64_t timestamp,
                  int64_t now_seconds, int64_t keep_seconds);

  // Root records (already verified by the caller): AlreadyExists if
  // `sequence` is not higher than the newest kept; keeps the newest 16.
  Status PutRoot(std::string_view volume_hex, uint64_t sequence, std::string_view encoded);
  // Newest first; empty if none.
  Result<std::vector<std::string>> Roots(std::string_view volume_hex);

  Stats stats() const;

 private:
  explicit DiskStore(Options options);
  Status Init();
  Status Exec(const char* sql);                              // REQUIRES: mu_ held (or during Init)
  Status AddRef(const SliceId& id, std::string_view owner);  // REQUIRES: mu_ held

  Options options_;
  std::string node_id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  sqlite3* db_ = nullptr;                        // GUARDED_BY(mu_)
  std::unordered_map<SliceId, uint64_t> sizes_;  // GUARDED_BY(mu_)
  std::set<SliceId> writing_;                    // GUARDED_BY(mu_)
  uint64_t used_ = 0;                            // GUARDED_BY(mu_)
  uint64_t reserved_ = 0;                        // GUARDED_BY(mu_)
  uint64_t tmp_counter_ = 0;                     // GUARDED_BY(mu_)
  std::bitset<256> fanout_made_;                 // GUARDED_BY(mu_)
};

}  // namespace meshfs::net

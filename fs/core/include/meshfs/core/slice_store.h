// SliceStore: the one interface between the filesystem and where blobs live.
//
// A blob is an encoded slice (see docs/format.md); its SliceId is the
// BLAKE2b-256 of its bytes. Implementations are decorators keyed by address:
// verify -> SQLite cache (cache/) -> replicate/select (net/) -> HTTP (net/),
// plus test doubles (in-memory, fault-injecting) in tests/.
// fs/ uses only this interface and never names a concrete store.
//
// Thread-safety: every implementation is safe for concurrent use.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

namespace meshfs {

using SharedBlob = std::shared_ptr<const std::string>;

class SliceStore {
 public:
  virtual ~SliceStore() = default;

  // Stores `blob` under `id`. Idempotent: storing an existing id is OK.
  // REQUIRES: id == SliceId::ForBlob(blob). Stores that receive bytes from
  // outside the process check it and return Corruption when it fails.
  // Returns NoSpace when full, Unavailable when the backing peers are gone.
  virtual Status Put(const SliceId& id, std::string_view blob) = 0;

  // Put of a blob whose `id` the caller computed from these very bytes in
  // this process (the codec's Encode): a store may skip its own address
  // check, which costs a BLAKE2b pass over the blob, and keep the buffer
  // instead of copying it. Bytes that came from disk or the network always
  // go through Put.
  virtual Status PutTrusted(const SliceId& id, std::string blob) { return Put(id, blob); }

  // Returns the blob stored under `id`: NotFound if absent anywhere this
  // store can reach; Corruption if every copy found fails verification;
  // Unavailable if it may exist but cannot be reached now.
  virtual Result<std::string> Get(const SliceId& id) = 0;

  // Get for a caller that authenticates the bytes itself (the codec's Decode:
  // the AEAD tag fails on any changed byte). A store may return a copy from
  // its own disk without hashing it again (its address was checked when it
  // was stored there) and then sets `*address_checked` to false; a caller
  // whose authentication of such a copy fails calls ReplaceDamaged.
  // The blob is shared, not copied, with the store's own users of it (a
  // cache filling itself with what it fetched).
  virtual Result<SharedBlob> GetToDecrypt(const SliceId& id, bool* address_checked) {
    *address_checked = true;
    return Share(Get(id));
  }

  // The unchecked copy GetToDecrypt returned failed its authentication: drop
  // it and return a checked copy from elsewhere, or Corruption saying that
  // the local copy is damaged and no good one is reachable.
  virtual Result<SharedBlob> ReplaceDamaged(const SliceId& id) { return Share(Get(id)); }

  // True iff this store holds `id` (without fetching it).
  virtual Result<bool> Contains(const SliceId& id) = 0;

  // Drops this volume's reference to `id`; NotFound is not an error.
  virtual Status Remove(const SliceId& id) = 0;

  // Blocks until every Put so far is as durable as this store promises
  // (for a replicating store: on its full replica count).
  virtual Status Flush() = 0;

  // A hint from the filesystem above that it is busy changing things (a
  // write, create, rename, chmod... whether or not it stores a blob): a
  // store with background work of its own may put it off for a moment.
  // Cheap enough to call on every such operation. Default: ignored.
  virtual void NoteWriteActivity() {}

 protected:
  static Result<SharedBlob> Share(Result<std::string> blob) {
    if (!blob.ok()) return blob.status();
    return std::make_shared<const std::string>(std::move(*blob));
  }
};

}  // namespace meshfs

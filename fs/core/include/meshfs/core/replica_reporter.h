// ReplicaReporter: an optional capability of a SliceStore that keeps copies
// of each blob on several peers (net::ReplicatingStore). A caller that cares
// how many copies a Put made (the cache's durability=network mode) asks for
// it with dynamic_cast<ReplicaReporter*>(store); other stores simply do not
// implement it.
//
// Thread-safety: implementations are safe for concurrent use.
#pragma once

#include <string_view>

#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"

namespace meshfs {

class ReplicaReporter {
 public:
  virtual ~ReplicaReporter() = default;

  // Same contract as SliceStore::Put (OK only when the blob is on the full
  // replica count), and sets *copies to the number of distinct peers known to
  // hold the blob afterwards, also when the Put fails part-way. Corruption,
  // no copy made, when the blob does not hash to `id` (callers rely on this
  // instead of hashing it again; net::ReplicatingStore leaves the check to
  // the peers, which hash every PUT body before storing it).
  // REQUIRES: copies != nullptr.
  virtual Status PutCounted(const SliceId& id, std::string_view blob, int* copies) = 0;

  // The full replica count a successful Put reaches (R).
  virtual int Replicas() const = 0;
};

}  // namespace meshfs

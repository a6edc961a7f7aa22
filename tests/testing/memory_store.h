// MemoryStore: an in-memory SliceStore for tests. Thread-safe.
// FaultyStore: wraps another store and injects failures on demand.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "meshfs/core/slice_store.h"

namespace meshfs::testing {

class MemoryStore final : public SliceStore {
 public:
  Status Put(const SliceId& id, std::string_view blob) override;
  Result<std::string> Get(const SliceId& id) override;
  Result<bool> Contains(const SliceId& id) override;
  Status Remove(const SliceId& id) override;
  Status Flush() override { return Status::OK(); }

  size_t size() const;
  // Overwrites the stored bytes of `id` without re-addressing (to simulate damage).
  void Tamper(const SliceId& id, std::string bytes);

 private:
  mutable std::mutex mu_;
  std::map<SliceId, std::string> blobs_;
};

class FaultyStore final : public SliceStore {
 public:
  explicit FaultyStore(SliceStore* base) : base_(base) {}
  // While set, every call fails with this code (kOk: pass through).
  void FailWith(Code code) { fail_.store(code); }

  Status Put(const SliceId& id, std::string_view blob) override;
  Result<std::string> Get(const SliceId& id) override;
  Result<bool> Contains(const SliceId& id) override;
  Status Remove(const SliceId& id) override;
  Status Flush() override;

 private:
  Status Injected() const;
  SliceStore* base_;
  std::atomic<Code> fail_{Code::kOk};
};

}  // namespace meshfs::testing

#include "testing/memory_store.h"

namespace meshfs::testing {

Status MemoryStore::Put(const SliceId& id, std::string_view blob) {
  if (!id.Matches(blob)) return Status::Corruption("blob does not match its address");
  std::lock_guard<std::mutex> l(mu_);
  blobs_.emplace(id, std::string(blob));
  return Status::OK();
}

Result<std::string> MemoryStore::Get(const SliceId& id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = blobs_.find(id);
  if (it == blobs_.end()) return Status::NotFound("slice " + id.ToHex());
  // Like every real store, never hands out bytes that fail their address.
  if (!id.Matches(it->second)) return Status::Corruption("slice " + id.ToHex() + " is damaged");
  return it->second;
}

Result<bool> MemoryStore::Contains(const SliceId& id) {
  std::lock_guard<std::mutex> l(mu_);
  return blobs_.count(id) != 0;
}

Status MemoryStore::Remove(const SliceId& id) {
  std::lock_guard<std::mutex> l(mu_);
  blobs_.erase(id);
  return Status::OK();
}

size_t MemoryStore::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return blobs_.size();
}

void MemoryStore::Tamper(const SliceId& id, std::string bytes) {
  std::lock_guard<std::mutex> l(mu_);
  blobs_[id] = std::move(bytes);
}

Status FaultyStore::Injected() const {
  const Code c = fail_.load();
  if (c == Code::kOk) return Status::OK();
  return Status(c, "injected fault");
}

Status FaultyStore::Put(const SliceId& id, std::string_view blob) {
  MESHFS_RETURN_IF_ERROR(Injected());
  return base_->Put(id, blob);
}

Result<std::string> FaultyStore::Get(const SliceId& id) {
  if (Status s = Injected(); !s.ok()) return s;
  return base_->Get(id);
}

Result<bool> FaultyStore::Contains(const SliceId& id) {
  if (Status s = Injected(); !s.ok()) return s;
  return base_->Contains(id);
}

Status FaultyStore::Remove(const SliceId& id) {
  MESHFS_RETURN_IF_ERROR(Injected());
  return base_->Remove(id);
}

Status FaultyStore::Flush() {
  MESHFS_RETURN_IF_ERROR(Injected());
  return base_->Flush();
}

}  // namespace meshfs::testing

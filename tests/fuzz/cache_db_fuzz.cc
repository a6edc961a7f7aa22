// Fuzz target: the block cache opening a damaged or foreign database file.
// The input becomes cache.db; CachingStore::Open must fail with a clear
// Status or work (Stats, Get, Put, Remove, ClearUploaded), never crash, and
// ClearUploadedOffline likewise.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "meshfs/cache/caching_store.h"
#include "meshfs/core/init.h"

namespace {

// A remote that is always offline: uploads stay queued.
class OfflineStore final : public meshfs::SliceStore {
 public:
  meshfs::Status Put(const meshfs::SliceId&, std::string_view) override {
    return meshfs::Status::Unavailable("offline");
  }
  meshfs::Result<std::string> Get(const meshfs::SliceId&) override {
    return meshfs::Status::Unavailable("offline");
  }
  meshfs::Result<bool> Contains(const meshfs::SliceId&) override {
    return meshfs::Status::Unavailable("offline");
  }
  meshfs::Status Remove(const meshfs::SliceId&) override { return meshfs::Status::OK(); }
  meshfs::Status Flush() override { return meshfs::Status::OK(); }
};

// A private directory for the process, removed at exit.
struct WorkDirHolder {
  WorkDirHolder() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "meshfs-cache-fuzz-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~WorkDirHolder() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path path;
};

std::filesystem::path WorkDir() {
  static WorkDirHolder holder;
  return holder.path;
}

void Clean(const std::filesystem::path& db) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal", ".reserve"}) {
    std::filesystem::remove(db.string() + suffix, ec);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshfs::InitCrypto();
  const std::filesystem::path db = WorkDir() / "cache.db";
  Clean(db);
  {
    std::ofstream f(db, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  OfflineStore remote;
  meshfs::cache::CacheOptions o;
  o.db_path = db;
  o.max_bytes = 1 << 20;
  o.upload_threads = 1;
  o.backpressure_timeout_ms = 0;
  {
    auto store = meshfs::cache::CachingStore::Open(o, &remote);
    if (store.ok()) {
      (void)(*store)->Stats();
      const std::string blob = "fuzz blob";
      const auto id = meshfs::SliceId::ForBlob(blob);
      (void)(*store)->Put(id, blob);
      (void)(*store)->Get(id);
      (void)(*store)->Get(meshfs::SliceId::ForBlob("absent"));
      bool checked = false;
      (void)(*store)->GetToDecrypt(id, &checked);
      (void)(*store)->ReplaceDamaged(id);
      (void)(*store)->Remove(id);
      (void)(*store)->ClearUploaded();
    }
  }
  Clean(db);
  {
    std::ofstream f(db, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  (void)meshfs::cache::ClearUploadedOffline(db);
  Clean(db);
  return 0;
}

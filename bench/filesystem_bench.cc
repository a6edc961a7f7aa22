// The filesystem layer without the kernel: what the daemon spends per small
// file created (create + write 4 KiB + flush + release: metadata
// transactions, inline data) and per MiB written through slices (cut,
// encode, store). Storage is an in-memory map, so this is meshfs' own cost.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "meshfs/core/init.h"
#include "meshfs/fs/filesystem.h"

namespace {

using namespace meshfs;

class MapStore final : public SliceStore {
 public:
  Status Put(const SliceId& id, std::string_view blob) override {
    std::lock_guard<std::mutex> l(mu_);
    blobs_[id] = std::string(blob);
    return Status::OK();
  }
  Result<std::string> Get(const SliceId& id) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blobs_.find(id);
    if (it == blobs_.end()) return Status::NotFound("absent");
    return it->second;
  }
  Result<bool> Contains(const SliceId& id) override {
    std::lock_guard<std::mutex> l(mu_);
    return blobs_.count(id) > 0;
  }
  Status Remove(const SliceId&) override { return Status::OK(); }
  Status Flush() override { return Status::OK(); }

 private:
  std::mutex mu_;
  std::map<SliceId, std::string> blobs_;
};

struct Env {
  Env() {
    InitCrypto();
    char tmpl[] = "/tmp/meshfs-fs-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    fs::SliceKeys k{};
    k.content_key[0] = 1;
    codec = std::make_unique<fs::SliceCodec>(k, fs::kDefaultSliceSize);
    fs::Filesystem::Options o;
    o.metadata_path = dir / "metadata.db";
    o.codec = codec.get();
    o.store = &store;
    filesystem = std::move(*fs::Filesystem::Open(o));
  }
  ~Env() {
    filesystem.reset();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  MapStore store;
  std::unique_ptr<fs::SliceCodec> codec;
  std::unique_ptr<fs::Filesystem> filesystem;
};

void BM_CreateSmallFile(benchmark::State& state) {
  Env env;
  const fs::Caller c{1000, 1000};
  const std::string data(4096, 'x');
  fs::Attr dir;
  env.filesystem->Mkdir(c, fs::kRootIno, "d", 0755, &dir);
  uint64_t i = 0;
  for (auto _ : state) {
    fs::Attr a;
    uint64_t fh;
    size_t n;
    std::string name = "f";
    name += std::to_string(i++);
    if (env.filesystem->Create(c, dir.ino, name, 0644, O_CREAT | O_WRONLY, &a, &fh) != 0 ||
        env.filesystem->Write(c, a.ino, fh, 0, data, &n) != 0 ||
        env.filesystem->Flush(a.ino, fh) != 0 || env.filesystem->Release(a.ino, fh) != 0) {
      state.SkipWithError("create failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CreateSmallFile)->Unit(benchmark::kMicrosecond);

// What the kernel sends (writeback cache, default_permissions) for
// open(O_CREAT|O_EXCL) + write 4 KiB + close: GETATTR of the directory,
// LOOKUP (miss), CREATE, GETXATTR security.capability, WRITE, SETATTR
// mtime/ctime, FLUSH, RELEASE.
void BM_CreateSmallFileKernelSequence(benchmark::State& state) {
  Env env;
  const fs::Caller c{1000, 1000};
  const std::string data(4096, 'x');
  fs::Attr dir;
  env.filesystem->Mkdir(c, fs::kRootIno, "d", 0755, &dir);
  uint64_t i = 0;
  for (auto _ : state) {
    fs::Attr a, da;
    uint64_t fh;
    size_t n;
    std::string v;
    std::string name = "f";
    name += std::to_string(i++);
    fs::SetAttrRequest times;
    times.mtime_ns = times.ctime_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i);
    if (env.filesystem->GetAttr(dir.ino, &da) != 0 ||
        env.filesystem->Lookup(dir.ino, name, &a) != ENOENT ||
        env.filesystem->Create(c, dir.ino, name, 0644, O_CREAT | O_EXCL | O_WRONLY, &a, &fh) != 0 ||
        env.filesystem->GetXattr(a.ino, "security.capability", 0, &v) != ENODATA ||
        env.filesystem->Write(c, a.ino, fh, 0, data, &n) != 0 ||
        env.filesystem->SetAttr(c, a.ino, times, &a) != 0 ||
        env.filesystem->Flush(a.ino, fh) != 0 || env.filesystem->Release(a.ino, fh) != 0) {
      state.SkipWithError("create failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CreateSmallFileKernelSequence)->Unit(benchmark::kMicrosecond);

// rsync -a per file, as root (strace of rsync 3.2 + the kernel's requests):
// LOOKUP (miss) of the name; GETATTR of the directory, LOOKUP (miss) and
// CREATE of the temporary name; fchmod 0600 on it (SETATTR); write + close
// (GETXATTR, WRITE, SETATTR mtime/ctime, FLUSH, RELEASE); GETATTR of the
// directory and the file; utimensat (SETATTR); open + fchmod 0644 + close
// (OPEN, SETATTR, FLUSH, RELEASE); LOOKUP (miss) and RENAME over the final
// name; the kernel's ctime refresh after the rename (SETATTR).
void BM_RsyncFileKernelSequence(benchmark::State& state) {
  Env env;
  const fs::Caller c{0, 0};
  const std::string data(2000, 'x');
  fs::Attr dir;
  env.filesystem->Mkdir(c, fs::kRootIno, "d", 0755, &dir);
  uint64_t i = 0;
  for (auto _ : state) {
    fs::Attr a, da;
    uint64_t fh, fh2;
    size_t n;
    std::string v;
    std::string name = "f";
    name += std::to_string(i++);
    std::string tmp = ".";
    tmp += name;
    tmp += ".Xa1b2c";
    fs::SetAttrRequest mode600, times, utimes, mode644, refresh;
    mode600.mode = 0600;
    times.mtime_ns = times.ctime_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i);
    utimes.atime_ns = utimes.mtime_ns = 1'600'000'000'000'000'000;
    mode644.mode = 0644;
    refresh.mtime_ns = utimes.mtime_ns;
    refresh.ctime_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i);
    if (env.filesystem->Lookup(dir.ino, name, &a) != ENOENT ||
        env.filesystem->GetAttr(dir.ino, &da) != 0 ||
        env.filesystem->Lookup(dir.ino, tmp, &a) != ENOENT ||
        env.filesystem->Create(c, dir.ino, tmp, 0600, O_CREAT | O_EXCL | O_RDWR, &a, &fh) != 0 ||
        env.filesystem->SetAttr(c, a.ino, mode600, &a) != 0 ||
        env.filesystem->GetXattr(a.ino, "security.capability", 0, &v) != ENODATA ||
        env.filesystem->Write(c, a.ino, fh, 0, data, &n) != 0 ||
        env.filesystem->SetAttr(c, a.ino, times, &a) != 0 ||
        env.filesystem->Flush(a.ino, fh) != 0 || env.filesystem->Release(a.ino, fh) != 0 ||
        env.filesystem->GetAttr(dir.ino, &da) != 0 || env.filesystem->GetAttr(a.ino, &a) != 0 ||
        env.filesystem->SetAttr(c, a.ino, utimes, &a) != 0 ||
        env.filesystem->Open(c, a.ino, O_RDONLY, &fh2) != 0 ||
        env.filesystem->SetAttr(c, a.ino, mode644, &a) != 0 ||
        env.filesystem->Flush(a.ino, fh2) != 0 || env.filesystem->Release(a.ino, fh2) != 0 ||
        env.filesystem->Lookup(dir.ino, name, &da) != ENOENT ||
        env.filesystem->Rename(dir.ino, tmp, dir.ino, name, 0) != 0 ||
        env.filesystem->SetAttr(c, a.ino, refresh, &a) != 0) {
      state.SkipWithError("rsync sequence failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RsyncFileKernelSequence)->Unit(benchmark::kMicrosecond);

void BM_SequentialWrite(benchmark::State& state) {
  Env env;
  const fs::Caller c{0, 0};
  std::string chunk(1 << 20, '\0');
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 2654435761u >> 13);
  fs::Attr a;
  uint64_t fh;
  env.filesystem->Create(c, fs::kRootIno, "big", 0644, O_CREAT | O_WRONLY, &a, &fh);
  uint64_t off = 0;
  for (auto _ : state) {
    chunk[0] = static_cast<char>(off >> 20);  // distinct slices: no dedup
    size_t n;
    if (env.filesystem->Write(c, a.ino, fh, off, chunk, &n) != 0) {
      state.SkipWithError("write failed");
      break;
    }
    off += chunk.size();
  }
  (void)env.filesystem->Release(a.ino, fh);
  state.SetBytesProcessed(static_cast<int64_t>(off));
}
BENCHMARK(BM_SequentialWrite)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

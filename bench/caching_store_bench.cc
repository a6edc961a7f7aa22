// CachingStore micro-benchmarks: durable Put (synchronous commit, upload to an
// in-process remote) and cached Get of 4 KiB and 1 MiB blobs.
// Run: build/<dir>/bench/caching_store_bench [--benchmark_filter=...]
// The database goes to $MESHFS_BENCH_DIR (default /tmp): put it on the disk
// you want to measure.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>

#include "meshfs/cache/caching_store.h"
#include "meshfs/core/init.h"

namespace {

namespace fs = std::filesystem;

// Accepts every Put (remembers nothing but the ids).
class SinkStore final : public meshfs::SliceStore {
 public:
  meshfs::Status Put(const meshfs::SliceId& id, std::string_view) override {
    std::lock_guard<std::mutex> l(mu_);
    ids_.insert(id);
    return meshfs::Status::OK();
  }
  meshfs::Result<std::string> Get(const meshfs::SliceId&) override {
    return meshfs::Status::NotFound("sink");
  }
  meshfs::Result<bool> Contains(const meshfs::SliceId& id) override {
    std::lock_guard<std::mutex> l(mu_);
    return ids_.count(id) != 0;
  }
  meshfs::Status Remove(const meshfs::SliceId&) override { return meshfs::Status::OK(); }
  meshfs::Status Flush() override { return meshfs::Status::OK(); }

 private:
  std::mutex mu_;
  std::set<meshfs::SliceId> ids_;
};

struct Env {
  Env() {
    meshfs::InitCrypto();
    const char* base = std::getenv("MESHFS_BENCH_DIR");
    std::string tmpl = (fs::path(base ? base : "/tmp") / "meshfs-cache-bench-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    meshfs::cache::CacheOptions o;
    o.db_path = dir / "cache.db";
    o.max_bytes = 8ull << 30;
    auto s = meshfs::cache::CachingStore::Open(o, &sink);
    if (!s.ok()) std::abort();
    cache = std::move(*s);
  }
  ~Env() {
    cache.reset();
    fs::remove_all(dir);
  }
  fs::path dir;
  SinkStore sink;
  std::unique_ptr<meshfs::cache::CachingStore> cache;
};

std::string Blob(size_t size, uint64_t n) {
  std::string s(size, '\0');
  std::mt19937_64 rng(n);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

void BM_PutDurable(benchmark::State& state) {
  Env env;
  const size_t size = static_cast<size_t>(state.range(0));
  uint64_t n = 0;
  std::vector<std::pair<meshfs::SliceId, std::string>> blobs;
  for (int i = 0; i < 64; ++i) {
    std::string b = Blob(size, n++);
    blobs.emplace_back(meshfs::SliceId::ForBlob(b), std::move(b));
  }
  size_t i = 0;
  for (auto _ : state) {
    if (i == blobs.size()) {
      state.PauseTiming();
      blobs.clear();
      for (int k = 0; k < 64; ++k) {
        std::string b = Blob(size, n++);
        blobs.emplace_back(meshfs::SliceId::ForBlob(b), std::move(b));
      }
      i = 0;
      state.ResumeTiming();
    }
    if (!env.cache->Put(blobs[i].first, blobs[i].second).ok()) state.SkipWithError("put failed");
    ++i;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
  (void)env.cache->WaitUploaded(60'000);
}
BENCHMARK(BM_PutDurable)->Arg(4096)->Arg(1 << 20)->UseRealTime();

void BM_GetHit(benchmark::State& state) {
  Env env;
  const size_t size = static_cast<size_t>(state.range(0));
  std::vector<meshfs::SliceId> ids;
  for (uint64_t k = 0; k < 64; ++k) {
    std::string b = Blob(size, 1000 + k);
    ids.push_back(meshfs::SliceId::ForBlob(b));
    if (!env.cache->Put(ids.back(), b).ok()) std::abort();
  }
  size_t i = 0;
  for (auto _ : state) {
    auto r = env.cache->Get(ids[i++ % ids.size()]);
    if (!r.ok()) state.SkipWithError("get failed");
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}
BENCHMARK(BM_GetHit)->Arg(4096)->Arg(1 << 20)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();

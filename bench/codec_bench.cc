// Slice codec benchmark: encode/decode of 1 MiB slices (random and
// text-like), and on the same buffers the raw rates of the primitives the
// codec is made of: keyed BLAKE2b (nonce PRF), unkeyed BLAKE2b-256
// (address), XChaCha20-Poly1305 (seal), zstd at the codec's level.
//
// After the runs it prints the rate bound of incompressible encode, set by
// its three necessary passes over the data:
//   bound = 1 / (1/prf + 1/aead + 1/hash)
// and encode/random's ratio to it (goal: >= 85%; the rest is the
// compressibility probe, buffer allocation and header work).
//
//   build/<dir>/bench/codec_bench [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>
#include <sodium.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "fs/codec_format.h"
#include "fs/xchacha.h"
#include "meshfs/core/init.h"
#include "meshfs/fs/codec.h"

namespace {

using meshfs::fs::SliceCodec;
using meshfs::fs::SliceKeys;

constexpr size_t kSlice = 1024 * 1024;

SliceKeys Keys() {
  SliceKeys k;
  for (size_t i = 0; i < 32; ++i) {
    k.content_key[i] = static_cast<uint8_t>(i);
    k.prf_key[i] = static_cast<uint8_t>(100 + i);
  }
  return k;
}

const std::string& Random() {
  static const std::string s = [] {
    std::string r(kSlice, '\0');
    std::mt19937_64 rng(7);
    for (size_t i = 0; i + 8 <= r.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(&r[i], &v, 8);
    }
    return r;
  }();
  return s;
}

// Source-code-like text: words, identifiers, numbers, newlines.
const std::string& Text() {
  static const std::string s = [] {
    static const char* kWords[] = {"int ",   "return ", "slice",   "_id", " = ",    "peer",
                                   "(",      ");\n",    "  ",      "if ", "{\n",    "}\n",
                                   "volume", "->",      "Status ", "0x",  "const ", "std::string ",
                                   "// ",    "the ",    "cache",   ", "};
    std::mt19937 rng(11);
    std::string r;
    while (r.size() < kSlice) {
      r += kWords[rng() % 22];
      if (rng() % 7 == 0) r += std::to_string(rng() % 100000);
    }
    r.resize(kSlice);
    return r;
  }();
  return s;
}

const std::string& Data(int which) { return which == 0 ? Random() : Text(); }

void BM_Encode(benchmark::State& state, int which) {
  SliceCodec codec(Keys(), kSlice);
  const std::string& d = Data(which);
  size_t blob = 0;
  for (auto _ : state) {
    auto e = codec.Encode(d);
    blob = e->blob.size();
    benchmark::DoNotOptimize(e);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
  state.counters["stored_ratio"] = static_cast<double>(blob) / static_cast<double>(d.size());
}
BENCHMARK_CAPTURE(BM_Encode, random, 0);
BENCHMARK_CAPTURE(BM_Encode, text, 1);

void BM_Decode(benchmark::State& state, int which) {
  SliceCodec codec(Keys(), kSlice);
  const std::string& d = Data(which);
  auto e = codec.Encode(d);
  for (auto _ : state) {
    auto p = codec.Decode(e->id, e->blob);
    benchmark::DoNotOptimize(p);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK_CAPTURE(BM_Decode, random, 0);
BENCHMARK_CAPTURE(BM_Decode, text, 1);

// The nonce PRF: keyed BLAKE2b over the bytes to encrypt.
void BM_Blake2bKeyed(benchmark::State& state) {
  const std::string& d = Random();
  const SliceKeys k = Keys();
  unsigned char out[32];
  for (auto _ : state) {
    crypto_generichash(out, sizeof(out), reinterpret_cast<const unsigned char*>(d.data()), d.size(),
                       k.prf_key.data(), 32);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK(BM_Blake2bKeyed);

// The address: unkeyed BLAKE2b-256 over the blob.
void BM_Blake2b256(benchmark::State& state) {
  const std::string& d = Random();
  unsigned char out[32];
  for (auto _ : state) {
    crypto_generichash(out, sizeof(out), reinterpret_cast<const unsigned char*>(d.data()), d.size(),
                       nullptr, 0);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK(BM_Blake2b256);

// fs/xchacha (what the codec uses), and libsodium's XChaCha20-Poly1305 for
// comparison: the same bytes.
void BM_XChaCha20Poly1305Encrypt(benchmark::State& state, bool sodium) {
  const std::string& d = Random();
  const SliceKeys k = Keys();
  std::string out(d.size() + 16, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  const auto* in = reinterpret_cast<const unsigned char*>(d.data());
  unsigned char nonce[24] = {1};
  unsigned char ad[12] = {2};
  for (auto _ : state) {
    if (sodium) {
      crypto_aead_xchacha20poly1305_ietf_encrypt(o, nullptr, in, d.size(), ad, sizeof(ad),
                                                 nullptr, nonce, k.content_key.data());
    } else if (!meshfs::fs::xchacha::Encrypt(o, in, d.size(), ad, sizeof(ad), nonce,
                                             k.content_key.data())) {
      state.SkipWithError("encrypt failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK_CAPTURE(BM_XChaCha20Poly1305Encrypt, libcrypto, false);
BENCHMARK_CAPTURE(BM_XChaCha20Poly1305Encrypt, libsodium, true);

void BM_ZstdCompress(benchmark::State& state, int which) {
  const std::string& d = Data(which);
  std::string out(ZSTD_compressBound(d.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  size_t n = 0;
  for (auto _ : state) {
    n = ZSTD_compressCCtx(cctx, out.data(), out.size(), d.data(), d.size(),
                          meshfs::fs::codec_format::kZstdLevel);
    benchmark::DoNotOptimize(n);
  }
  ZSTD_freeCCtx(cctx);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
  state.counters["ratio"] = static_cast<double>(n) / static_cast<double>(d.size());
}
BENCHMARK_CAPTURE(BM_ZstdCompress, random, 0);
BENCHMARK_CAPTURE(BM_ZstdCompress, text, 1);

void BM_ZstdDecompress(benchmark::State& state) {
  const std::string& d = Text();
  std::string packed(ZSTD_compressBound(d.size()), '\0');
  packed.resize(ZSTD_compress(packed.data(), packed.size(), d.data(), d.size(),
                              meshfs::fs::codec_format::kZstdLevel));
  std::string out(d.size(), '\0');
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  for (auto _ : state) {
    size_t n = ZSTD_decompressDCtx(dctx, out.data(), out.size(), packed.data(), packed.size());
    benchmark::DoNotOptimize(n);
  }
  ZSTD_freeDCtx(dctx);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK(BM_ZstdDecompress);

// Remembers each benchmark's bytes/s (the median when repeated) to compute
// the rate bound after the runs.
class RateReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) rates_[r.run_name.str()] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  double Rate(const std::string& name) const {
    auto it = rates_.find(name);
    return it == rates_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  meshfs::InitCrypto();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RateReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  const double prf = reporter.Rate("BM_Blake2bKeyed");
  const double aead = reporter.Rate("BM_XChaCha20Poly1305Encrypt/libcrypto");
  const double hash = reporter.Rate("BM_Blake2b256");
  const double enc = reporter.Rate("BM_Encode/random");
  if (prf > 0 && aead > 0 && hash > 0 && enc > 0) {
    const double bound = 1.0 / (1.0 / prf + 1.0 / aead + 1.0 / hash);
    const double mib = 1024.0 * 1024.0;
    std::printf(
        "\nrate bound, incompressible encode = 1/(1/prf + 1/aead + 1/hash)\n"
        "  prf (keyed BLAKE2b)        %8.1f MiB/s\n"
        "  aead (XChaCha20-Poly1305)  %8.1f MiB/s\n"
        "  hash (BLAKE2b-256)         %8.1f MiB/s\n"
        "  bound                      %8.1f MiB/s\n"
        "  encode, random 1 MiB       %8.1f MiB/s = %.1f%% of the bound (goal >= 85%%)\n",
        prf / mib, aead / mib, hash / mib, bound / mib, enc / mib, 100.0 * enc / bound);
  }
  return 0;
}

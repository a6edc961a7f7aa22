// Clock: the seam for time, so that timeouts, gossip and cache policies can
// be tested with a fake clock. Clock::Real() is thread-safe; FakeClock is
// safe for concurrent reads while a test advances it.
#pragma once

#include <atomic>
#include <cstdint>

namespace meshfs {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, microseconds since the Unix epoch.
  virtual int64_t NowMicros() const = 0;
  // Monotonic time in microseconds from an arbitrary origin.
  virtual int64_t MonotonicMicros() const = 0;

  // The process-wide real clock. Never null, never deleted.
  static Clock* Real();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_micros = 1'700'000'000'000'000) : now_(start_micros) {}
  int64_t NowMicros() const override { return now_.load(); }
  int64_t MonotonicMicros() const override { return now_.load(); }
  void Advance(int64_t micros) { now_.fetch_add(micros); }
  void Set(int64_t micros) { now_.store(micros); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace meshfs

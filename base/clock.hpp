#pragma once
// Time is a parameter: decisions take `now` from the caller. Live code reads a Clock,
// replay passes capture timestamps, tests use ManualClock.
#include <chrono>
#include <cstdint>

namespace sbc::base {

// Nanoseconds on a monotonic time line (steady clock in live code, capture time in replay).
using Nanos = std::int64_t;
constexpr Nanos kNanosPerSecond = 1'000'000'000;
constexpr Nanos kNanosPerMilli = 1'000'000;
constexpr Nanos seconds(double s) {
    return static_cast<Nanos>(s * 1e9);
}
constexpr Nanos millis(std::int64_t ms) {
    return ms * kNanosPerMilli;
}

// Wall-clock time as Unix epoch nanoseconds (for business hours, logs, bans shown to humans).
using UnixNanos = std::int64_t;

class Clock {
  public:
    virtual ~Clock() = default;
    virtual Nanos monotonic() const = 0;
    virtual UnixNanos wall() const = 0;
};

class SystemClock final : public Clock {
  public:
    Nanos monotonic() const override;
    UnixNanos wall() const override;
};

// A clock that moves only when told to: deterministic tests and replay.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(Nanos mono = 0, UnixNanos wall = 0) : mono_(mono), wall_(wall) {}
    Nanos monotonic() const override { return mono_; }
    UnixNanos wall() const override { return wall_; }
    void advance(Nanos d) {
        mono_ += d;
        wall_ += d;
    }
    void set(Nanos mono, UnixNanos wall) {
        mono_ = mono;
        wall_ = wall;
    }

  private:
    Nanos mono_;
    UnixNanos wall_;
};

}  // namespace sbc::base

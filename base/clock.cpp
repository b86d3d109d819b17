#include "base/clock.hpp"

namespace sbc::base {

Nanos SystemClock::monotonic() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

UnixNanos SystemClock::wall() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace sbc::base

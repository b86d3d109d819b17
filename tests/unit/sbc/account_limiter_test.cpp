#include <catch2/catch.hpp>

#include <string>

#include "sbc/account_limiter.hpp"

using sbc::AccountLimiter;
using sbc::policy::RateLimit;
using sbc::policy::TrafficClass;

namespace {
constexpr sbc::base::Nanos kSec = sbc::base::kNanosPerSecond;
RateLimit limit(double rate, double burst) {
    return RateLimit{true, rate, burst};
}
}  // namespace

TEST_CASE("per-account bucket: burst, then the rate", "[sbc][account_limiter]") {
    AccountLimiter l(1024, 42);
    const auto lim = limit(2, 6);
    int admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += l.admit("1001", TrafficClass::sip_invite, lim, 0);
    CHECK(admitted == 6);  // the burst, nothing more at the same instant
    // One second later: two more tokens.
    admitted = 0;
    for (int i = 0; i < 20; ++i) admitted += l.admit("1001", TrafficClass::sip_invite, lim, kSec);
    CHECK(admitted == 2);
    // Another account and another class of the same account have their own buckets.
    CHECK(l.admit("1002", TrafficClass::sip_invite, lim, kSec));
    CHECK(l.admit("1001", TrafficClass::sip_register, lim, kSec));
    // No limit configured: everything passes and nothing is stored.
    const auto used = l.used();
    for (int i = 0; i < 100; ++i) CHECK(l.admit("1001", TrafficClass::sip_other, RateLimit{}, 0));
    CHECK(l.used() == used);
}

TEST_CASE("per-account bucket follows a changed limit at once", "[sbc][account_limiter]") {
    AccountLimiter l(64, 1);
    for (int i = 0; i < 3; ++i) CHECK(l.admit("a", TrafficClass::sip_other, limit(1, 3), 0));
    CHECK_FALSE(l.admit("a", TrafficClass::sip_other, limit(1, 3), 0));
    // A reload to 100/s: after 50 ms, 5 tokens.
    int admitted = 0;
    for (int i = 0; i < 20; ++i)
        admitted += l.admit("a", TrafficClass::sip_other, limit(100, 100), kSec / 20);
    CHECK(admitted == 5);
}

TEST_CASE("per-account table: fixed memory under a flood of invented accounts",
          "[sbc][account_limiter]") {
    AccountLimiter l(256, 7);
    const auto capacity = l.capacity();
    const auto bytes = l.memory_bytes();
    CHECK(capacity == 256);
    const auto lim = limit(1, 2);
    // A real account at its limit.
    CHECK(l.admit("victim", TrafficClass::sip_invite, lim, 0));
    CHECK(l.admit("victim", TrafficClass::sip_invite, lim, 0));
    CHECK_FALSE(l.admit("victim", TrafficClass::sip_invite, lim, 0));
    // 100k one-shot accounts: the table does not grow.
    for (int i = 0; i < 100000; ++i)
        CHECK(l.admit("x" + std::to_string(i), TrafficClass::sip_invite, lim, 1000 + i));
    CHECK(l.capacity() == capacity);
    CHECK(l.memory_bytes() == bytes);
    CHECK(l.used() <= capacity);
    CHECK(l.evicted_idle() + l.evicted_active() >= 100000 - capacity);
}

TEST_CASE("per-account table evicts full buckets before depleted ones", "[sbc][account_limiter]") {
    // One set of 8 ways: every key lands in it.
    AccountLimiter l(8, 3);
    REQUIRE(l.capacity() == 8);
    const auto lim = limit(1, 1);
    // 7 idle accounts (their buckets refill to full within a second) and one depleted one.
    for (int i = 0; i < 7; ++i)
        CHECK(l.admit("idle" + std::to_string(i), TrafficClass::sip_invite, lim, 0));
    const sbc::base::Nanos t = 10 * kSec;
    CHECK(l.admit("heavy", TrafficClass::sip_invite, lim, t));
    CHECK_FALSE(l.admit("heavy", TrafficClass::sip_invite, lim, t));
    // 7 newcomers take the idle (full) ways: the depleted bucket of "heavy" stays.
    for (int i = 0; i < 7; ++i)
        CHECK(l.admit("new" + std::to_string(i), TrafficClass::sip_invite, lim, t));
    CHECK(l.evicted_idle() == 7);
    CHECK(l.evicted_active() == 0);
    CHECK_FALSE(l.admit("heavy", TrafficClass::sip_invite, lim, t));
}

#include <catch2/catch.hpp>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using sbc::base::IpAddress;
using sbc::base::millis;
using sbc::base::seconds;

namespace {
PipelineConfig limits_for(TrafficClass c, RateLimit src, RateLimit pfx = {}, RateLimit fresh = {}) {
    PipelineConfig cfg;
    cfg.limits[static_cast<std::size_t>(c)] = ClassLimits{src, pfx, fresh};
    cfg.ban_policy.violations_to_ban = 1000000;
    return cfg;
}
IpAddress v4(std::uint32_t x) {
    return IpAddress::v4(x);
}
}  // namespace

TEST_CASE("Per-source token bucket admits the burst, then the rate") {
    auto cfg = limits_for(TrafficClass::sip_register, {10, 5});
    RateLimiter rl(1024, cfg);
    const auto src = v4(0xC6336407);
    int admitted = 0;
    for (int i = 0; i < 20; ++i)
        admitted += rl.admit(src, TrafficClass::sip_register, 0) == RateLimiter::Verdict::admit;
    CHECK(admitted == 5);
    // 10/s: after 1 s, 10 more tokens but the bucket holds 5.
    admitted = 0;
    for (int i = 0; i < 20; ++i)
        admitted +=
            rl.admit(src, TrafficClass::sip_register, seconds(1)) == RateLimiter::Verdict::admit;
    CHECK(admitted == 5);
    // 100 ms later: one token.
    admitted = 0;
    for (int i = 0; i < 3; ++i)
        admitted += rl.admit(src, TrafficClass::sip_register, seconds(1) + millis(100)) ==
                    RateLimiter::Verdict::admit;
    CHECK(admitted == 1);
    // Another source and another class have their own buckets.
    CHECK(rl.admit(v4(0xC6336408), TrafficClass::sip_register, seconds(1)) ==
          RateLimiter::Verdict::admit);
    CHECK(rl.admit(src, TrafficClass::sip_invite, seconds(1)) == RateLimiter::Verdict::admit);
}

TEST_CASE("Per-prefix bucket limits many sources of one /24") {
    auto cfg = limits_for(TrafficClass::sip_invite, {100, 100}, {10, 10});
    RateLimiter rl(1024, cfg);
    int admitted = 0;
    for (std::uint32_t i = 1; i <= 50; ++i)
        admitted += rl.admit(v4(0x0A000100 + i), TrafficClass::sip_invite, 0) ==
                    RateLimiter::Verdict::admit;
    CHECK(admitted == 10);
    CHECK(rl.admit(v4(0x0A000200), TrafficClass::sip_invite, 0) == RateLimiter::Verdict::admit);
}

TEST_CASE("Sustained excess asks for a ban once per window") {
    auto cfg = limits_for(TrafficClass::sip_register, {1, 1});
    cfg.ban_policy.violations_to_ban = 10;
    cfg.ban_policy.window = seconds(10);
    RateLimiter rl(1024, cfg);
    const auto src = v4(0x01020304);
    int bans = 0, denies = 0;
    for (int i = 0; i < 30; ++i) {
        auto v = rl.admit(src, TrafficClass::sip_register, millis(i));
        bans += v == RateLimiter::Verdict::deny_ban;
        denies += v != RateLimiter::Verdict::admit;
    }
    CHECK(denies == 29);
    CHECK(bans == 1);
}

TEST_CASE("A spoofed flood neither grows memory nor evicts established sources") {
    auto cfg = limits_for(TrafficClass::sip_register, {5, 10}, {}, {1000, 1000});
    cfg.establish_after = seconds(1);
    cfg.idle_evict_after = seconds(300);
    RateLimiter rl(4096, cfg);
    const std::size_t mem = rl.memory_bytes();
    // 1000 well-behaved sources register twice, 2 s apart: established.
    std::vector<IpAddress> good;
    for (std::uint32_t i = 0; i < 1000; ++i) good.push_back(v4(0x0A000000 + i * 7));
    std::size_t tracked = 0;
    for (auto& g : good) rl.admit(g, TrafficClass::sip_register, 0);
    for (auto& g : good) rl.admit(g, TrafficClass::sip_register, seconds(2));
    for (auto& g : good) tracked += rl.is_established(g, TrafficClass::sip_register);
    // The table has room: with 8 ways a set overflows only rarely.
    REQUIRE(tracked >= 990);
    // 2M spoofed one-packet sources over 10 s.
    sbc::base::Nanos t = seconds(3);
    std::uint64_t x = 88172645463325252ULL;
    std::uint64_t flood_admitted = 0;
    for (int i = 0; i < 2'000'000; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 5000;
        flood_admitted += rl.admit(v4(static_cast<std::uint32_t>(x)), TrafficClass::sip_register,
                                   t) == RateLimiter::Verdict::admit;
    }
    CHECK(rl.memory_bytes() == mem);
    CHECK(rl.size() <= rl.capacity());
    // The flood got only the shared new-source budget: 1000 burst + 1000/s over 10 s.
    CHECK(flood_admitted <= 1000 + 1000 * 11);
    std::size_t still = 0;
    for (auto& g : good) still += rl.is_established(g, TrafficClass::sip_register);
    CHECK(still == tracked);
    // Established sources are still admitted during the flood (their own buckets).
    std::size_t ok = 0;
    for (auto& g : good)
        ok += rl.admit(g, TrafficClass::sip_register, t) == RateLimiter::Verdict::admit;
    CHECK(ok == good.size());
}

TEST_CASE("Idle established sources can be evicted, active ones cannot") {
    auto cfg = limits_for(TrafficClass::sip_other, {5, 10});
    cfg.establish_after = seconds(1);
    cfg.idle_evict_after = seconds(60);
    RateLimiter rl(8, cfg);  // one set of 8 ways
    std::vector<IpAddress> good;
    for (std::uint32_t i = 0; i < 8; ++i) good.push_back(v4(0x0B000000 + i));
    // Establish in waves (2 probation ways at a time).
    for (int wave = 0; wave < 4; ++wave) {
        for (int k = 0; k < 2; ++k)
            rl.admit(good[wave * 2 + k], TrafficClass::sip_other, seconds(wave * 10));
        for (int k = 0; k < 2; ++k)
            rl.admit(good[wave * 2 + k], TrafficClass::sip_other, seconds(wave * 10 + 2));
    }
    for (auto& g : good) REQUIRE(rl.is_established(g, TrafficClass::sip_other));
    // Full of active established entries: a newcomer is untracked.
    const auto before = rl.untracked();
    rl.admit(v4(0x0C000001), TrafficClass::sip_other, seconds(40));
    CHECK(rl.untracked() == before + 1);
    for (auto& g : good) CHECK(rl.is_established(g, TrafficClass::sip_other));
    // Once the first wave has been silent for the idle time, it can be replaced.
    rl.admit(v4(0x0C000002), TrafficClass::sip_other, seconds(2) + seconds(61));
    CHECK_FALSE(rl.is_established(good[0], TrafficClass::sip_other));
    CHECK(rl.is_established(good[7], TrafficClass::sip_other));
}

TEST_CASE("Limits change on reload and state survives") {
    auto cfg = limits_for(TrafficClass::sip_register, {1, 1});
    RateLimiter rl(64, cfg);
    const auto src = v4(0x05060708);
    CHECK(rl.admit(src, TrafficClass::sip_register, 0) == RateLimiter::Verdict::admit);
    CHECK(rl.admit(src, TrafficClass::sip_register, 0) == RateLimiter::Verdict::deny);
    rl.apply_config(limits_for(TrafficClass::sip_register, {1000, 1000}));
    CHECK(rl.size() >= 1);
    CHECK(rl.admit(src, TrafficClass::sip_register, millis(10)) == RateLimiter::Verdict::admit);
}

TEST_CASE("A source signaling vouched for skips the new-source budget a flood exhausted") {
    // Per source 10/s burst 5; new sources share 1/s burst 1.
    auto cfg = limits_for(TrafficClass::sip_invite, {10, 5}, {}, {1, 1});
    RateLimiter rl(1024, cfg);
    // The flood takes the shared budget.
    CHECK(rl.admit(v4(0x0A000001), TrafficClass::sip_invite, 0) == RateLimiter::Verdict::admit);
    CHECK(rl.admit(v4(0x0A000002), TrafficClass::sip_invite, 0) == RateLimiter::Verdict::deny);
    // A new source gets nothing; the same source vouched for is admitted, and counts as
    // established from then on, its own bucket still applying.
    const auto caller = v4(0xC6336407);
    CHECK(rl.admit(caller, TrafficClass::sip_invite, 0) == RateLimiter::Verdict::deny);
    CHECK(rl.admit(caller, TrafficClass::sip_invite, 0, true) == RateLimiter::Verdict::admit);
    CHECK(rl.is_established(caller, TrafficClass::sip_invite));
    // Its own bucket (burst 5) paid for both attempts: 3 tokens are left.
    int admitted = 0;
    for (int i = 0; i < 10; ++i)
        admitted +=
            rl.admit(caller, TrafficClass::sip_invite, 0, true) == RateLimiter::Verdict::admit;
    CHECK(admitted == 3);
}

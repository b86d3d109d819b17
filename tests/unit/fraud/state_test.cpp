#include <catch2/catch.hpp>
#include <random>
#include <unordered_map>

#include "fraud/state.hpp"

using namespace sbc::fraud::detail;
using sbc::base::kNanosPerSecond;

TEST_CASE("window counter slides instead of resetting at a boundary", "[fraud][window]") {
    const sbc::base::Nanos window = 70 * kNanosPerSecond;
    const sbc::base::Nanos width = window / (WindowCounter::kBuckets - 1);  // 10 s
    WindowCounter w;
    // 9 events just before a bucket boundary and the window's end...
    for (int i = 0; i < 9; ++i) w.add(69 * kNanosPerSecond, width);
    CHECK(w.value(69 * kNanosPerSecond, width) == Approx(9));
    // ...are still counted just after it: a fixed window would say 0 here.
    CHECK(w.value(71 * kNanosPerSecond, width) == Approx(9));
    CHECK(w.value(130 * kNanosPerSecond, width) == Approx(9));
    // The oldest bucket fades out linearly over one bucket width, then is gone.
    CHECK(w.value(135 * kNanosPerSecond, width) == Approx(4.5));
    CHECK(w.value(140 * kNanosPerSecond, width) == Approx(0));
    CHECK(w.value(10'000 * kNanosPerSecond, width) == Approx(0));
}

TEST_CASE("window counter never counts more than the events of the last window",
          "[fraud][window]") {
    const sbc::base::Nanos width = 10 * kNanosPerSecond;  // window 70 s
    WindowCounter w;
    std::mt19937 rng(7);
    std::vector<sbc::base::Nanos> times;
    sbc::base::Nanos t = 0;
    for (int i = 0; i < 2000; ++i) {
        t += static_cast<sbc::base::Nanos>(rng() % 3000) * 1'000'000;  // 0..3 s apart
        w.add(t, width);
        times.push_back(t);
        int exact_70 = 0, exact_80 = 0;
        for (auto x : times) {
            if (t - x < 70 * kNanosPerSecond) ++exact_70;
            if (t - x < 80 * kNanosPerSecond) ++exact_80;
        }
        double v = w.value(t, width);
        // Between the events of the last window minus one bucket and of the last window plus
        // one bucket: never the 2x a fixed window allows.
        REQUIRE(v <= exact_80 + 1e-9);
        REQUIRE(v + 1e-9 >= exact_70 - (exact_80 - exact_70) - 1);
    }
}

TEST_CASE("window counter saturates instead of wrapping", "[fraud][window]") {
    WindowCounter w;
    for (int i = 0; i < 70000; ++i) w.add(0, kNanosPerSecond);
    CHECK(w.value(0, kNanosPerSecond) == Approx(65535));
}

TEST_CASE("distinct set counts within the window and saturates at capacity", "[fraud][distinct]") {
    std::uint64_t e[8] = {};  // 4 + 8 * 4 bytes
    for (std::uint32_t h = 1; h <= 5; ++h) distinct_add(e, 8, h, 100, 60);
    distinct_add(e, 8, 3, 101, 60);  // a repeat is not a new value
    CHECK(distinct_count(e, 8, 101, 60) == 5);
    CHECK(distinct_count(e, 8, 165, 60) == 0);  // all older than the window
    for (std::uint32_t h = 100; h < 200; ++h) distinct_add(e, 8, h, 200, 60);
    CHECK(distinct_count(e, 8, 200, 60) == 8);
    distinct_add(e, 8, 0, 200, 60);  // hash 0 is remapped, not treated as empty
    CHECK(distinct_count(e, 8, 200, 60) == 8);
}

TEST_CASE("distinct set ages survive 16-bit wraps of its time units", "[fraud][distinct]") {
    std::uint64_t e[8] = {};
    const std::uint32_t window = 60;  // 1 s units
    distinct_add(e, 8, 1, 1000, window);
    distinct_add(e, 8, 2, 1030, window);
    CHECK(distinct_count(e, 8, 1030, window) == 2);
    // 65536 s later the 16-bit units have wrapped: an old entry must not look fresh.
    CHECK(distinct_count(e, 8, 1030 + 65536, window) == 0);
    distinct_add(e, 8, 3, 1030 + 65536, window);
    CHECK(distinct_count(e, 8, 1030 + 65536, window) == 1);
    // Insertions keep coming while one value stays old: it expires, never wraps back.
    std::uint64_t f[8] = {};
    distinct_add(f, 8, 7, 0, window);
    for (std::uint32_t t = 10; t < 200000; t += 10) distinct_add(f, 8, 9, t, window);
    CHECK(distinct_count(f, 8, 199990, window) == 1);
    // Long windows use coarser units.
    std::uint64_t g[8] = {};
    distinct_add(g, 8, 1, 0, 86400);
    distinct_add(g, 8, 2, 86000, 86400);
    CHECK(distinct_count(g, 8, 86000, 86400) == 2);
    CHECK(distinct_count(g, 8, 86400 + 100, 86400) == 1);
}

TEST_CASE("slot table insert/find/erase agrees with a map", "[fraud][table]") {
    SlotTable t(1000, 16);
    std::unordered_map<std::uint64_t, std::uint64_t> ref;
    std::mt19937_64 rng(42);
    for (int i = 0; i < 200000; ++i) {
        std::uint64_t k = (rng() % 3000) | 1;
        std::int64_t at = t.find(k);
        REQUIRE((at >= 0) == (ref.count(k) == 1));
        if (at >= 0) {
            REQUIRE(*static_cast<std::uint64_t*>(t.slot(at)) == ref[k]);
            if (rng() % 2) {
                t.erase(static_cast<std::size_t>(at));
                ref.erase(k);
            }
        } else if (!t.full()) {
            std::size_t s = t.insert(k);
            *static_cast<std::uint64_t*>(t.slot(s)) = k * 3;
            ref[k] = k * 3;
        }
        REQUIRE(t.size() == ref.size());
        REQUIRE(t.size() <= 1000);
    }
}

TEST_CASE("distinct_add returns what distinct_count reads after it", "[fraud][distinct]") {
    std::mt19937 rng(7);
    alignas(8) std::uint8_t set[DistinctSet::bytes(16)] = {};
    std::uint32_t now = 1000;
    for (int i = 0; i < 20000; ++i) {
        now += rng() % 3 == 0 ? rng() % 40 : 0;  // sometimes past the window, sometimes idle
        if (rng() % 500 == 0) now += 5000;
        auto h = static_cast<std::uint32_t>(rng() % 40) + 1;
        std::uint32_t n = distinct_add(set, 16, h, now, 60);
        REQUIRE(n == distinct_count(set, 16, now, 60));
    }
}

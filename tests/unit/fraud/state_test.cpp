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

namespace {

// A distinct set as a slot holds it: the summary (hot) advanced with the slot's epoch, and
// its entries (cold).
struct TestSet {
    DistinctSummary sum{};
    std::vector<DistinctEntry> entries;
    std::uint32_t lines;
    std::uint32_t epoch = 0;
    explicit TestSet(std::uint32_t needed)
        : entries(distinct_lines(needed) * kEntriesPerLine), lines(distinct_lines(needed)) {}
    void at(std::uint32_t e) {
        if (e > epoch) ring_advance(sum.n, epoch, e), epoch = e;
    }
    void add(std::uint32_t h, std::uint32_t e) {
        at(e);
        distinct_insert(sum, entries.data(), lines, h, epoch);
    }
    // Values last seen in the newest 7 sub-buckets plus those of the oldest (into = 0).
    double count(std::uint32_t e) {
        at(e);
        return ring_value(sum.n, epoch, 0.0);
    }
};

std::uint32_t spread(std::uint32_t v) {
    return v * 2654435761u;
}

}  // namespace

TEST_CASE("distinct set counts the values of the window and forgets older ones",
          "[fraud][distinct]") {
    TestSet s(8);
    for (std::uint32_t v = 1; v <= 5; ++v) s.add(spread(v), 10);
    s.add(spread(3), 11);  // a repeat is not a new value...
    CHECK(s.count(11) == 5);
    s.add(spread(3), 16);  // ...and moves it to its newest sub-bucket
    CHECK(s.count(17) == 5);
    CHECK(s.count(18) == 1);  // the others were last seen 8 sub-buckets ago
    CHECK(s.count(24) == 0);
    s.add(spread(9), 24);
    CHECK(s.count(24) == 1);
}

TEST_CASE("distinct set agrees with an exact model while no line overflows", "[fraud][distinct]") {
    std::mt19937 rng(7);
    TestSet s(41);
    REQUIRE(s.lines == 6);                                  // twice what 41 values need: 96 entries
    std::unordered_map<std::uint32_t, std::uint32_t> last;  // value -> epoch last seen
    std::uint32_t e = 0;
    for (int i = 0; i < 20000; ++i) {
        if (rng() % 4 == 0) e += rng() % 3;
        if (rng() % 500 == 0) e += 20;  // idle past the window
        std::uint32_t v = rng() % 40 + 1;
        s.add(spread(v), e);
        last[v] = e;
        std::uint32_t exact = 0;
        for (auto [value, seen] : last)
            if (e - seen < kRingBuckets) ++exact;
        REQUIRE(s.count(e) == exact);
    }
}

TEST_CASE("distinct set saturates at a full line instead of growing", "[fraud][distinct]") {
    TestSet s(16);
    REQUIRE(s.lines == 1);
    for (std::uint32_t v = 1; v <= 100; ++v) s.add(spread(v), 5);
    CHECK(s.count(5) == kEntriesPerLine);
    s.add(0, 5);  // a zero hash is a value like another (its fingerprint is remapped)
    CHECK(s.count(5) == kEntriesPerLine);
}

TEST_CASE("distinct set entries cannot alias across 16-bit epoch wraps", "[fraud][distinct]") {
    TestSet s(8);
    s.add(spread(7), 3);
    CHECK(s.count(3) == 1);
    // 65536 sub-buckets later the entry's 16-bit epoch equals the current one again: the set
    // has been empty since, so the entry was cleared and 7 counts as a new value.
    s.add(spread(7), 3 + 65536);
    CHECK(s.count(3 + 65536) == 1);
    s.add(spread(8), 3 + 65536);
    CHECK(s.count(3 + 65536) == 2);
    // An active set whose values keep expiring never reads an expired entry as live.
    TestSet t(8);
    t.add(spread(1), 0);
    for (std::uint32_t e = 1; e < 200000; e += 3) t.add(spread(2), e);
    CHECK(t.count(199999) == 1);
}

TEST_CASE("8-bit rings saturate instead of wrapping and slide like 16-bit ones",
          "[fraud][window]") {
    std::uint8_t n[kRingBuckets] = {};
    std::uint16_t w[kRingBuckets] = {};
    for (int i = 0; i < 300; ++i) ring_add(n, 3), ring_add(w, 3);
    CHECK(ring_value(n, 3, 0.5) == 255);
    CHECK(ring_value(w, 3, 0.5) == 300);
    for (int i = 0; i < 100; ++i) ring_add(n, 5), ring_add(w, 5);
    ring_advance(n, 5, 10), ring_advance(w, 5, 10);
    CHECK(ring_value(n, 10, 0.25) == Approx(100 + 255 * 0.75));
    CHECK(ring_value(w, 10, 0.25) == Approx(100 + 300 * 0.75));
    ring_advance(n, 10, 11), ring_advance(w, 10, 11);
    CHECK(ring_value(n, 11, 0.0) == 100);
    ring_advance(n, 11, 40);
    CHECK(ring_value(n, 40, 0.0) == 0);
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

TEST_CASE("set table insert/find/erase agrees with a map; keys never move", "[fraud][table]") {
    SetTable t(1000, 64, 128);
    std::unordered_map<std::uint64_t, std::int64_t> at_of;  // key -> its bucket when inserted
    std::mt19937_64 rng(42);
    std::size_t refused = 0;
    for (int i = 0; i < 200000; ++i) {
        std::uint64_t k = (rng() % 3000) | 1;
        std::int64_t at = t.find(k);
        REQUIRE((at >= 0) == (at_of.count(k) == 1));
        if (at >= 0) {
            // Erasing other keys never moved this one, nor its hot slot or cold area.
            REQUIRE(at == at_of[k]);
            REQUIRE(*static_cast<std::uint64_t*>(t.slot(at)) == k * 3);
            REQUIRE(*static_cast<std::uint64_t*>(t.cold(at)) == k * 5);
            if (rng() % 2) {
                t.erase(static_cast<std::size_t>(at));
                at_of.erase(k);
            }
        } else if (t.room(k)) {
            std::size_t s = t.insert(k);
            REQUIRE(t.hash_at(s) == k);
            *static_cast<std::uint64_t*>(t.slot(s)) = k * 3;
            *static_cast<std::uint64_t*>(t.cold(s)) = k * 5;
            at_of[k] = static_cast<std::int64_t>(s);
        } else {
            ++refused;
        }
        REQUIRE(t.size() == at_of.size());
        REQUIRE(t.size() <= 1000);
    }
    CHECK(refused > 0);  // the table was driven to its capacity
}

TEST_CASE("set table: a key whose first set is full takes its second set", "[fraud][table]") {
    SetTable t(100000, 64);
    // Keys that share a first set: found by filling until one lands outside the first set.
    const std::uint64_t k0 = 12345;
    const std::size_t first = static_cast<std::size_t>(t.insert(k0)) / SetTable::kWays;
    std::vector<std::uint64_t> same;
    std::mt19937_64 rng(7);
    SetTable probe(100000, 64);  // empty: a key inserted there lands in its first set
    for (int n = 0; n < 100000000 && same.size() < 3 * SetTable::kWays; ++n) {
        std::uint64_t k = rng() | 1;
        const std::size_t at = probe.insert(k);
        probe.erase(at);
        if (at / SetTable::kWays == first) same.push_back(k);
    }
    REQUIRE(same.size() == 3 * SetTable::kWays);
    std::size_t in_first = 1, elsewhere = 0;
    for (auto k : same) {
        if (!t.room(k)) break;
        auto s = t.insert(k);
        (s / SetTable::kWays == first ? in_first : elsewhere)++;
        REQUIRE(t.find(k) == static_cast<std::int64_t>(s));
    }
    CHECK(in_first == SetTable::kWays);
    CHECK(elsewhere > 0);
    // Every key is still found, wherever it went.
    CHECK(t.find(k0) >= 0);
    for (std::size_t i = 0; i < in_first - 1 + elsewhere; ++i) CHECK(t.find(same[i]) >= 0);
}

TEST_CASE("distinct set: its summary and the one entry an insertion reports are enough to undo it",
          "[fraud][distinct]") {
    // Two sets fed the same values; on `undone` every insertion is made and then put back from
    // the summary and the entry it reported (as the engine does for a blocked attempt), on
    // `skipped` the same insertion is never made. From then on they must count alike: lines
    // full of live values (replacement of the oldest), repeats, and sets left empty for a
    // window (lines cleared again on first use) included.
    std::mt19937 rng(7);
    TestSet undone(20), skipped(20);
    std::uint32_t e = 100;
    int put_back = 0;
    for (int step = 0; step < 20000; ++step) {
        if (rng() % 8 == 0) e += 1 + (rng() % 64 == 0 ? 9 : 0);  // now and then a whole window
        const std::uint32_t h = spread(1 + rng() % 48);
        const bool undo = rng() % 3 == 0;
        undone.at(e);
        skipped.at(e);
        if (undo) {
            const DistinctSummary before = undone.sum;
            DistinctEntry* at = nullptr;
            DistinctEntry old{};
            int reported = 0;
            distinct_insert(undone.sum, undone.entries.data(), undone.lines, h, e,
                            [&](DistinctEntry& x) {
                                at = &x;
                                old = x;
                                ++reported;
                            });
            REQUIRE(reported <= 1);
            undone.sum = before;
            if (at) *at = old;
            ++put_back;
        } else {
            undone.add(h, e);
            skipped.add(h, e);
        }
        REQUIRE(undone.count(e) == skipped.count(e));
        REQUIRE(undone.sum.last_fp == skipped.sum.last_fp);
    }
    CHECK(put_back > 5000);
    CHECK(skipped.count(e) > 16);  // the sets held more than one line's worth
}

TEST_CASE("covering prefix hash equals the hash of the covering prefix", "[fraud][keys]") {
    std::mt19937_64 rng(7);
    for (int n = 0; n < 200; ++n) {
        std::uint8_t b[16];
        for (auto& x : b) x = static_cast<std::uint8_t>(rng());
        const auto v6 = sbc::base::IpAddress::v6(b);
        const auto v4 = sbc::base::IpAddress::v4(static_cast<std::uint32_t>(rng()));
        for (unsigned len = 0; len <= 140; ++len) {
            const auto l = static_cast<std::uint8_t>(len);
            for (const auto& a : {v4, v6}) {
                const auto want = sbc::base::covering_prefix(a, l, l);
                const auto got = covering_prefix_hash(a, l, l);
                INFO(a.to_string() << "/" << len);
                REQUIRE(got.address_hash == want.address().hash());
                REQUIRE(got.length == want.length());
            }
        }
    }
    // Distinct /24s of one address family hash apart; the address's host bits do not count.
    const auto a = sbc::base::IpAddress::v4(0x0a000105), b = sbc::base::IpAddress::v4(0x0a0001fe),
               c = sbc::base::IpAddress::v4(0x0a000205);
    CHECK(covering_prefix_hash(a, 24, 64).address_hash ==
          covering_prefix_hash(b, 24, 64).address_hash);
    CHECK(covering_prefix_hash(a, 24, 64).address_hash !=
          covering_prefix_hash(c, 24, 64).address_hash);
}

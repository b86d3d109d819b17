#pragma once
// Internal to fraud/: the fixed-size per-key state components and the flat hash table that
// holds them. Nothing here allocates after construction.
#include <emmintrin.h>
#include <sys/mman.h>
#include <cstdint>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.hpp"

namespace sbc::fraud::detail {

using base::mix64;

// Eight bytes at a time, each word folded in with a multiply, then a finalizer: good enough
// spread for table keys, and no byte loop for the short strings hashed per event (account,
// Call-ID, dialed number, User-Agent).
// base::covering_prefix(a, v4_len, v6_len) as the hash of its address and its length, without
// building the prefix: the address masked as two 64-bit words rather than byte by byte.
struct PrefixHash {
    std::uint64_t address_hash;
    std::uint8_t length;
};
inline PrefixHash covering_prefix_hash(const base::IpAddress& a, std::uint8_t v4_len,
                                       std::uint8_t v6_len) {
    const bool v4 = a.is_v4();
    const unsigned max = v4 ? 32 : 128;
    const unsigned len = std::min<unsigned>(v4 ? v4_len : v6_len, max);
    const unsigned mapped = v4 ? len + 96 : len;  // IPv4 sits in the last 32 bits
    // The first `bits` bits of a word as stored (network order).
    auto keep = [](unsigned bits) -> std::uint64_t {
        if (bits == 0) return 0;
        const std::uint64_t m = bits >= 64 ? ~std::uint64_t{0} : ~std::uint64_t{0} << (64 - bits);
        if constexpr (std::endian::native == std::endian::little) return __builtin_bswap64(m);
        return m;
    };
    std::uint64_t w[2];
    std::memcpy(w, a.bytes().data(), 16);
    w[0] &= keep(std::min(mapped, 64u));
    w[1] &= keep(mapped > 64 ? mapped - 64 : 0);
    std::uint8_t b[16];
    std::memcpy(b, w, 16);
    return {base::IpAddress::v6(b).hash(), static_cast<std::uint8_t>(len)};
}

inline std::uint64_t hash_string(std::string_view s, std::uint64_t seed) {
    std::uint64_t h = base::kFnv1a64Offset ^ seed ^ (s.size() * base::kGoldenGamma);
    const char* p = s.data();
    std::size_t n = s.size();
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    if (n) {
        // The last n bytes as a little-endian word, read without a byte loop: overlapping
        // loads (the bytes they share are the same), or the word ending at the string's end
        // shifted down when the string is at least 8 bytes long.
        std::uint64_t w;
        if (s.size() >= 8) {
            std::memcpy(&w, p + n - 8, 8);
            w >>= 8 * (8 - n);
        } else if (n >= 4) {
            std::uint32_t lo, hi;
            std::memcpy(&lo, p, 4);
            std::memcpy(&hi, p + n - 4, 4);
            w = lo | std::uint64_t{hi} << (8 * (n - 4));
        } else {
            auto byte = [&](std::size_t i) {
                return std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
            };
            w = byte(0) | byte(n / 2) | byte(n - 1);
        }
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
    }
    return mix64(h);
}

inline std::uint32_t to_seconds(base::Nanos now) {
    return static_cast<std::uint32_t>(now / base::kNanosPerSecond);
}

// Sliding windows are rings of kRingBuckets sub-buckets of window/(kRingBuckets-1) each. A
// key's rings of one width all share one epoch: the sub-bucket of the key's newest event
// (KeyHeader::last_seen), so a ring is only its buckets (8 or 16 bytes) and a key's whole
// window state fits a cache line or three. Every event that touches a key first advances all
// of its rings to the event's epoch (ring_advance), then counts.
//
// The estimate sums the full recent buckets plus the oldest one weighted by how much of it is
// still inside the window, so the count never resets at a boundary (a fixed window would let
// twice the limit through across one). Error is at most one sub-bucket's worth of events.
constexpr std::uint32_t kRingBuckets = 8;

inline std::uint32_t epoch_of(base::Nanos now, base::Nanos width) {
    return static_cast<std::uint32_t>((now < 0 ? 0 : now) / width);
}
// How far `now` is into its sub-bucket, [0, 1).
inline double fraction_of(base::Nanos now, base::Nanos width) {
    return static_cast<double>((now < 0 ? 0 : now) % width) / static_cast<double>(width);
}

// The buckets a ring skips when its epoch moves from `from` to `to` (the sub-buckets from+1
// .. to, modulo kRingBuckets), as masks of the bits to keep: a ring of 8-bit buckets is one
// 64-bit word and a ring of 16-bit buckets two, so clearing the skipped buckets is an AND per
// word instead of a loop with a modulo per bucket. One mask serves every ring of a width.
inline std::uint64_t ring_keep8(std::uint32_t from, std::uint32_t to) {
    if (to <= from) return ~std::uint64_t{0};
    std::uint32_t n = to - from;
    if (n >= kRingBuckets) return 0;
    std::uint64_t run = (std::uint64_t{1} << (8 * n)) - 1;
    unsigned shift = 8 * ((from + 1) % kRingBuckets);
    return ~((run << shift) | (shift ? run >> (64 - shift) : 0));
}
inline unsigned __int128 ring_keep16(std::uint32_t from, std::uint32_t to) {
    using U = unsigned __int128;
    if (to <= from) return ~U{0};
    std::uint32_t n = to - from;
    if (n >= kRingBuckets) return 0;
    U run = (U{1} << (16 * n)) - 1;
    unsigned shift = 16 * ((from + 1) % kRingBuckets);
    return ~((run << shift) | (shift ? run >> (128 - shift) : 0));
}
inline void ring_keep(std::uint8_t* b, std::uint64_t keep) {
    std::uint64_t x;
    std::memcpy(&x, b, 8);
    x &= keep;
    std::memcpy(b, &x, 8);
}
inline void ring_keep(std::uint16_t* b, unsigned __int128 keep) {
    unsigned __int128 x;
    std::memcpy(&x, b, 16);
    x &= keep;
    std::memcpy(b, &x, 16);
}

// Clears the buckets a ring skips when its epoch moves from `from` to `to`.
inline void ring_advance(std::uint8_t* b, std::uint32_t from, std::uint32_t to) {
    ring_keep(b, ring_keep8(from, to));
}
inline void ring_advance(std::uint16_t* b, std::uint32_t from, std::uint32_t to) {
    ring_keep(b, ring_keep16(from, to));
}

template <class T>
void ring_add(T* b, std::uint32_t e) {
    T& x = b[e % kRingBuckets];
    if (x != static_cast<T>(~T{0})) ++x;  // saturate, never wrap
}

// Sum of a ring's buckets, all lanes of its words added at once (SWAR): 8-bit lanes summed in
// pairs into 16-bit lanes, then the four folded by one multiply into the top lane (at most
// 8 * 255, no carry out); 16-bit lanes summed into 32-bit lanes, then the two added.
inline std::uint32_t ring_sum(const std::uint8_t* b) {
    std::uint64_t x;
    std::memcpy(&x, b, 8);
    constexpr std::uint64_t kLow = 0x00ff00ff00ff00ffULL;
    std::uint64_t pairs = (x & kLow) + ((x >> 8) & kLow);
    return static_cast<std::uint32_t>((pairs * 0x0001000100010001ULL) >> 48);
}
inline std::uint32_t ring_sum(const std::uint16_t* b) {
    std::uint64_t x[2];
    std::memcpy(x, b, 16);
    constexpr std::uint64_t kLow = 0x0000ffff0000ffffULL;
    std::uint64_t quads =
        (x[0] & kLow) + ((x[0] >> 16) & kLow) + (x[1] & kLow) + ((x[1] >> 16) & kLow);
    return static_cast<std::uint32_t>(quads) + static_cast<std::uint32_t>(quads >> 32);
}

// Buckets of epochs before the ring's first event are zero (slots start zeroed), so the
// unsigned wrap of e - i for small e reads zeros. The oldest bucket, e - (kRingBuckets - 1),
// is e + 1 modulo kRingBuckets.
template <class T>
double ring_value(const T* b, std::uint32_t e, double into) {
    std::uint32_t oldest = b[(e + 1) % kRingBuckets];
    std::uint32_t recent = ring_sum(b) - oldest;
    return recent + oldest * (1.0 - into);
}

// A ring of 16-bit buckets with its own epoch: the reference the shared-epoch rings are
// tested against, and the shape of one counter in isolation.
struct WindowCounter {
    static constexpr std::uint32_t kBuckets = kRingBuckets;
    std::uint32_t epoch = 0;
    std::uint16_t buckets[kBuckets] = {};
    void add(base::Nanos now, base::Nanos width) {
        std::uint32_t e = epoch_of(now, width);
        if (e > epoch) ring_advance(buckets, epoch, e), epoch = e;
        ring_add(buckets, std::max(e, epoch));
    }
    double value(base::Nanos now, base::Nanos width) const {
        std::uint32_t e = epoch_of(now, width);
        if (e < epoch) e = epoch;
        if (e - epoch >= kBuckets) return 0;
        std::uint16_t b[kBuckets];
        std::memcpy(b, buckets, sizeof(b));
        ring_advance(b, epoch, e);
        return ring_value(b, e, fraction_of(now, width));
    }
};

inline std::uint32_t age_of(std::uint32_t now_s, std::uint32_t seen_s) {
    return now_s > seen_s ? now_s - seen_s : 0;  // a late event is not older than the newest
}

// A distinct-count set in two parts. In the hot slot, a DistinctSummary: a ring of 8-bit
// buckets (same width and epoch as the key's counters) counting the set's values by the
// sub-bucket they were last seen in, so the distinct count is read like a counter without
// touching the entries; and the last value inserted, so a value repeated within a sub-bucket
// (the same destination country, the same source country) costs nothing more. In the key's
// cold area, the entries: 4 bytes each (16-bit fingerprint, low 16 bits of the sub-bucket
// epoch last seen), 16 to a cache line. A value hashes to one line and is looked up and
// inserted there only, so an insertion touches one cache line; an entry last seen 8 or more
// sub-buckets ago is free. A line full of live values replaces its oldest (the count then
// misses one value), so sets of more than 16 entries get twice the entries the largest
// threshold needs: the count reaches any threshold unless one line draws more than 16 of the
// first threshold+1 values.
struct DistinctSummary {
    std::uint8_t n[kRingBuckets];  // values by sub-bucket last seen
    std::uint16_t last_fp;         // last value inserted (0 = none) ...
    std::uint16_t last_t;          // ... and its epoch (low 16 bits)
    std::uint16_t clean;           // bit per line: cleared since the set was last empty
    std::uint16_t pad;
};
static_assert(sizeof(DistinctSummary) == 16);

struct DistinctEntry {
    std::uint16_t fp;  // 0 = empty
    std::uint16_t t;
};
constexpr std::uint32_t kEntriesPerLine = 64 / sizeof(DistinctEntry);

// Cache lines of entries for a set that must count up to `needed` values.
constexpr std::uint32_t distinct_lines(std::uint32_t needed) {
    return needed <= kEntriesPerLine
               ? 1
               : std::min<std::uint32_t>(15, (2 * needed + kEntriesPerLine - 1) / kEntriesPerLine);
}

// Values can be small (country codes): spread them over both halves (fingerprint, line).
inline std::uint32_t distinct_mix(std::uint32_t h) {
    return static_cast<std::uint32_t>(mix64(h));
}
inline std::uint16_t distinct_fingerprint(std::uint32_t h) {
    auto fp = static_cast<std::uint16_t>(h >> 16);
    return fp == 0 ? 1 : fp;
}
inline std::uint32_t distinct_line_of(std::uint32_t h, std::uint32_t lines) {
    return static_cast<std::uint32_t>((std::uint64_t{h & 0xffff} * lines) >> 16);
}

// Counts value `h` (non-zero) seen at epoch `e` (the summary's ring is already advanced to
// e). `entries` holds lines * 16 entries. `before_entry(DistinctEntry&)` is called with the one
// entry the insertion writes, before it is written: with the summary as it was, that entry is
// all a caller must keep to put the set back (a line cleared on first use is marked so in the
// summary's `clean` bits only; restoring the summary makes it uncleared again).
template <class BeforeEntry>
inline void distinct_insert(DistinctSummary& s, DistinctEntry* entries, std::uint32_t lines,
                            std::uint32_t h, std::uint32_t e, BeforeEntry&& before_entry) {
    h = distinct_mix(h);
    std::uint16_t fp = distinct_fingerprint(h);
    auto now16 = static_cast<std::uint16_t>(e);
    std::uint32_t live = ring_sum(s.n);
    if (live && s.last_fp == fp && s.last_t == now16) return;  // counted in this sub-bucket
    // Entries left from an earlier life of the set (or of an evicted key that had this slot)
    // must not be read: once the set is empty (nothing seen for 8 sub-buckets, or a new key),
    // each line is cleared before its first use, so no old epoch can alias a current one.
    if (live == 0) s.clean = 0;
    std::uint32_t li = distinct_line_of(h, lines);
    DistinctEntry* line = entries + li * kEntriesPerLine;
    if (!(s.clean >> li & 1)) {
        std::memset(line, 0, 64);
        s.clean = static_cast<std::uint16_t>(s.clean | (1u << li));
    }
    // The line's 16 entries compared at once (SSE2, 4 entries per register): which are live
    // (fingerprint set, seen within the ring) and which of those hold `fp`.
    std::uint32_t live_mask = 0, match_mask = 0;
    {
        const __m128i fpv = _mm_set1_epi32(fp);
        const __m128i nowv = _mm_set1_epi32(static_cast<std::int32_t>(std::uint32_t{now16} << 16));
        const __m128i lo16 = _mm_set1_epi32(0xffff);
        const __m128i zero = _mm_setzero_si128();
        const __m128i stale = _mm_set1_epi32(static_cast<std::int32_t>(0xfff8u << 16));
        for (int q = 0; q < 4; ++q) {
            __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(line) + q);
            __m128i f = _mm_and_si128(v, lo16);  // fp in the low half of each entry
            // (now16 - t) in the high half; live when it is below kRingBuckets (8).
            __m128i age = _mm_sub_epi32(nowv, _mm_andnot_si128(lo16, v));
            __m128i young = _mm_cmpeq_epi32(_mm_and_si128(age, stale), zero);
            __m128i live = _mm_andnot_si128(_mm_cmpeq_epi32(f, zero), young);
            __m128i match = _mm_and_si128(live, _mm_cmpeq_epi32(f, fpv));
            live_mask |= static_cast<std::uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(live)))
                         << (4 * q);
            match_mask |= static_cast<std::uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(match)))
                          << (4 * q);
        }
    }
    auto forget = [&s](std::uint16_t t) {
        if (s.n[t % kRingBuckets]) --s.n[t % kRingBuckets];
    };
    int slot;
    if (match_mask) {
        // Seen before: it moves to the current sub-bucket.
        DistinctEntry& x = line[__builtin_ctz(match_mask)];
        if (x.t != now16) {
            before_entry(x);
            forget(x.t);
            ring_add(s.n, e);
            x.t = now16;
        }
        s.last_fp = fp;
        s.last_t = now16;
        return;
    }
    if (std::uint32_t free_mask = ~live_mask & 0xffffu) {
        slot = __builtin_ctz(free_mask);
    } else {
        // A full line (all 16 live, none `fp`): the least recently seen value leaves the set.
        slot = 0;
        std::uint16_t oldest_age = 0;
        for (std::uint32_t i = 0; i < kEntriesPerLine; ++i) {
            auto age = static_cast<std::uint16_t>(now16 - line[i].t);
            if (age >= oldest_age) {
                oldest_age = age;
                slot = static_cast<int>(i);
            }
        }
        forget(line[slot].t);
    }
    before_entry(line[slot]);
    line[slot] = {fp, now16};
    ring_add(s.n, e);
    s.last_fp = fp;
    s.last_t = now16;
}

inline void distinct_insert(DistinctSummary& s, DistinctEntry* entries, std::uint32_t lines,
                            std::uint32_t h, std::uint32_t e) {
    distinct_insert(s, entries, lines, h, e, [](DistinctEntry&) {});
}

// The cold line an insertion of `h` will touch (to prefetch it).
inline std::uint32_t distinct_line_offset(std::uint32_t h, std::uint32_t lines) {
    return distinct_line_of(distinct_mix(h), lines) * 64;
}

// Run of consecutive dialed numbers differing by small steps (sequential range dialing).
struct SequentialRun {
    std::uint64_t last_number = 0;
    std::uint32_t last_s = 0;
    std::uint8_t last_len = 0;
    std::uint8_t pad = 0;
    std::uint16_t run = 0;
};
static_assert(sizeof(SequentialRun) == 16);

// Common header of every hot slot.
struct KeyHeader {
    base::Nanos last_seen = 0;           // newest event: the epoch of every ring in the slot
    std::uint32_t evidence_until_s = 0;  // a rule fired on this key: kept through floods
    std::int32_t concurrent = 0;
    std::uint32_t last_seen_s() const { return to_seconds(last_seen); }
};
static_assert(sizeof(KeyHeader) == 16);

// A zeroed array of 64-bit words. Tables of hundreds of MiB are read at random: with 4 KiB
// pages nearly every access is also a TLB miss (two-level walks under virtualization), so
// large arrays are 2 MiB aligned and advised to transparent huge pages before first touch.
class HugeArray {
  public:
    HugeArray() = default;
    HugeArray(const HugeArray&) = delete;
    HugeArray& operator=(const HugeArray&) = delete;
    ~HugeArray() { release(); }

    // Anonymous memory comes zeroed from the kernel and is only backed once touched, so a
    // large configured cap costs nothing until keys arrive.
    void assign(std::size_t n, std::uint64_t zero) {
        (void)zero;
        release();
        constexpr std::size_t kHuge = 2u << 20;
        std::size_t bytes = std::max<std::size_t>(n * 8, 64);
        map_bytes_ = bytes >= kHuge ? ((bytes + kHuge - 1) & ~(kHuge - 1)) + kHuge : bytes;
        void* m =
            mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) throw std::bad_alloc();  // start-up only
        map_ = m;
        auto addr = reinterpret_cast<std::uintptr_t>(m);
        if (bytes >= kHuge) {
            addr = (addr + kHuge - 1) & ~(kHuge - 1);
            madvise(reinterpret_cast<void*>(addr), (bytes + kHuge - 1) & ~(kHuge - 1),
                    MADV_HUGEPAGE);
        }
        p_ = reinterpret_cast<std::uint64_t*>(addr);
        n_ = n;
    }
    // Backs every page now (the node's footprint is then known at start, not reached by the
    // first few thousand keys touching pages at random): the kernel populates the range in
    // one call where it can (Linux 5.14), else each page takes one write of the zero it holds.
    // Returns the bytes committed.
    std::size_t commit() {
        if (!p_ || n_ == 0) return 0;
        const std::size_t bytes = n_ * 8;
        constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE, Linux 5.14 uapi
        if (madvise(p_, bytes, kPopulateWrite) == 0) return bytes;
        auto* b = reinterpret_cast<volatile char*>(p_);
        for (std::size_t off = 0; off < bytes; off += 4096) b[off] = b[off];
        return bytes;
    }
    std::uint64_t& operator[](std::size_t i) { return p_[i]; }
    const std::uint64_t& operator[](std::size_t i) const { return p_[i]; }
    std::size_t size() const { return n_; }
    void swap(HugeArray& o) noexcept {
        std::swap(map_, o.map_);
        std::swap(map_bytes_, o.map_bytes_);
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
    }

  private:
    void release() {
        if (map_) munmap(map_, map_bytes_);
        map_ = nullptr;
        p_ = nullptr;
        n_ = 0;
    }
    void* map_ = nullptr;
    std::size_t map_bytes_ = 0;
    std::uint64_t* p_ = nullptr;
    std::size_t n_ = 0;
};

// Open addressing with linear probing, at most `capacity` entries at a load of 3/4 (the
// bucket count is not rounded to a power of two: a key's home is the high part of hash *
// buckets), backward-shift deletion (no tombstones, so probes stay short forever). Three
// parallel arrays: the 64-bit hashes (0 = empty bucket; a lookup reads 8 per cache line), the
// hot slots (a multiple of 64 bytes, line aligned: what every event of the key reads) and the
// cold areas (what only some events touch, e.g. the entries of distinct sets).
class SlotTable {
  public:
    SlotTable() = default;
    SlotTable(std::size_t capacity, std::size_t slot_bytes, std::size_t cold_bytes = 0) {
        init(capacity, slot_bytes, cold_bytes);
    }

    // `sparse`: twice as many buckets as entries, for tables whose entries linger until a
    // sweep passes (the call table's ended calls): the swept part of the table is then empty
    // and the part ahead of the sweep dense, and linear probing needs the slack there.
    void init(std::size_t capacity, std::size_t slot_bytes, std::size_t cold_bytes = 0,
              bool sparse = false) {
        capacity_ = capacity;
        slot_words_ = (slot_bytes + 7) / 8;
        cold_words_ = (cold_bytes + 7) / 8;
        buckets_ = std::max<std::size_t>(16, sparse ? capacity * 2 : (capacity * 4 + 2) / 3 + 1);
        hashes_.assign(buckets_, 0);
        data_.assign(buckets_ * slot_words_, 0);
        if (cold_words_) cold_.assign(buckets_ * cold_words_, 0);
        size_ = 0;
    }

    // Hands the whole table over (a reconfigured engine keeps its predecessor's keys): the
    // arrays change owners, nothing is copied.
    void swap(SlotTable& o) noexcept {
        hashes_.swap(o.hashes_);
        data_.swap(o.data_);
        cold_.swap(o.cold_);
        std::swap(slot_words_, o.slot_words_);
        std::swap(cold_words_, o.cold_words_);
        std::swap(buckets_, o.buckets_);
        std::swap(size_, o.size_);
        std::swap(capacity_, o.capacity_);
    }

    // Backs every page of the three arrays (see HugeArray::commit); returns the bytes.
    std::size_t commit() { return hashes_.commit() + data_.commit() + cold_.commit(); }

    static std::uint64_t fix(std::uint64_t h) { return h == 0 ? 1 : h; }
    // The high bits pick the bucket: multiplied first, so that hashes whose entropy sits in
    // their low bits (an IPv4 address's hash) still spread.
    std::size_t home(std::uint64_t h) const {
        h *= base::kGoldenGamma;
        return static_cast<std::size_t>((static_cast<unsigned __int128>(h) * buckets_) >> 64);
    }
    std::size_t next(std::size_t i) const { return i + 1 == buckets_ ? 0 : i + 1; }
    // (a + n) within the table, n < buckets.
    std::size_t advance(std::size_t a, std::size_t n) const {
        a += n;
        return a >= buckets_ ? a - buckets_ : a;
    }

    // Starts loading the home bucket of `h` (and its slot) before the lookup needs it: an
    // event touches several tables, and overlapping their cache misses is most of the cost.
    void prefetch(std::uint64_t h) const {
        std::size_t i = home(fix(h));
        __builtin_prefetch(&hashes_[i]);
        prefetch_slot(i);
    }
    // A sweep's next buckets: its hash and the first line of its slot.
    void prefetch_at(std::size_t i) const {
        i = i >= buckets_ ? i - buckets_ : i;
        __builtin_prefetch(&hashes_[i]);
        __builtin_prefetch(&data_[i * slot_words_]);
    }
    void prefetch_bucket(std::uint64_t h) const { __builtin_prefetch(&hashes_[home(fix(h))]); }
    void prefetch_slot(std::size_t i) const {
        const char* p = reinterpret_cast<const char*>(&data_[i * slot_words_]);
        for (std::size_t off = 0; off < slot_words_ * 8; off += 64) __builtin_prefetch(p + off);
    }
    void prefetch_cold(std::size_t i, std::size_t offset) const {
        __builtin_prefetch(reinterpret_cast<const char*>(&cold_[i * cold_words_]) + offset);
    }

    std::int64_t find(std::uint64_t h) const {
        h = fix(h);
        for (std::size_t i = home(h);; i = next(i)) {
            std::uint64_t x = hashes_[i];
            if (x == h) return static_cast<std::int64_t>(i);
            if (x == 0) return -1;
        }
    }
    // find(h), first trying bucket `hint` (< 0: none): exact, since a hash is in at most one
    // bucket.
    std::int64_t find_hinted(std::uint64_t h, std::int64_t hint) const {
        if (hint >= 0 && hashes_[static_cast<std::size_t>(hint)] == fix(h)) return hint;
        return find(h);
    }
    // Caller checks full() first and that h is absent. The hot slot is zeroed; the cold area
    // is left as it is (its users tell stale entries apart, see distinct_insert).
    std::size_t insert(std::uint64_t h) {
        h = fix(h);
        std::size_t i = home(h);
        while (hashes_[i] != 0) i = next(i);
        hashes_[i] = h;
        std::memset(slot(i), 0, slot_words_ * 8);
        ++size_;
        return i;
    }
    void erase(std::size_t i) {
        std::size_t j = i;
        for (;;) {
            j = next(j);
            if (hashes_[j] == 0) break;
            std::size_t h = home(hashes_[j]);
            // Leave j where it is if its home lies cyclically in (i, j].
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (stays) continue;
            hashes_[i] = hashes_[j];
            std::memcpy(slot(i), slot(j), slot_words_ * 8);
            if (cold_words_) std::memcpy(cold(i), cold(j), cold_words_ * 8);
            i = j;
        }
        hashes_[i] = 0;
        --size_;
    }

    void* slot(std::size_t i) { return &data_[i * slot_words_]; }
    const void* slot(std::size_t i) const { return &data_[i * slot_words_]; }
    void* cold(std::size_t i) { return &cold_[i * cold_words_]; }
    const void* cold(std::size_t i) const { return &cold_[i * cold_words_]; }
    std::size_t slot_bytes() const { return slot_words_ * 8; }
    std::uint64_t hash_at(std::size_t i) const { return hashes_[i]; }
    std::size_t buckets() const { return buckets_; }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return capacity_; }
    bool full() const { return size_ >= capacity_; }
    std::size_t bytes() const { return (hashes_.size() + data_.size() + cold_.size()) * 8; }

  private:
    HugeArray hashes_;
    HugeArray data_;
    HugeArray cold_;
    std::size_t slot_words_ = 1;
    std::size_t cold_words_ = 0;
    std::size_t buckets_ = 16;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

// The key tables: set-associative. A key's hash picks one set of kWays buckets, whose 64-bit
// hashes (0 = free way) are one cache line of a dense array: a lookup reads that line and
// nothing else, and the hash lines of a whole table are few enough pages and bytes to stay
// near the core. The hot slots (whole cache lines each) and cold areas are parallel arrays
// indexed by bucket. A key never moves once inserted: erasing is clearing its way. Bucket i is way
// i % kWays of set i / kWays, so code that walks buckets (sweeps, eviction sampling) walks the sets
// in order. A key goes to its first set, or to a second one (other bits of its hash) when the first
// is full: nearly every key is found with one hash line, and the table fills to its capacity before
// keys are refused for want of a way. When both sets are full, one of the first set's keys must
// make room (SetTable::room).
class SetTable {
  public:
    static constexpr std::size_t kWays = 8;

    SetTable() = default;
    SetTable(std::size_t capacity, std::size_t slot_bytes, std::size_t cold_bytes = 0) {
        init(capacity, slot_bytes, cold_bytes);
    }

    // As many buckets as a SlotTable at a load of 3/4 (rounded up to whole sets): a set
    // fills before the table does only when it draws more than its share of keys.
    void init(std::size_t capacity, std::size_t slot_bytes, std::size_t cold_bytes = 0) {
        capacity_ = capacity;
        slot_bytes_ = (slot_bytes + 63) & ~std::size_t{63};
        cold_bytes_ = (cold_bytes + 63) & ~std::size_t{63};
        sets_ = std::max<std::size_t>(2, ((capacity * 4 + 2) / 3 + kWays) / kWays);
        tags_.assign(sets_ * kWays, 0);
        data_.assign(sets_ * kWays * slot_bytes_ / 8, 0);
        if (cold_bytes_) cold_.assign(sets_ * kWays * cold_bytes_ / 8, 0);
        size_ = 0;
    }

    void swap(SetTable& o) noexcept {
        tags_.swap(o.tags_);
        data_.swap(o.data_);
        cold_.swap(o.cold_);
        std::swap(slot_bytes_, o.slot_bytes_);
        std::swap(cold_bytes_, o.cold_bytes_);
        std::swap(sets_, o.sets_);
        std::swap(size_, o.size_);
        std::swap(capacity_, o.capacity_);
    }

    std::size_t commit() { return tags_.commit() + data_.commit() + cold_.commit(); }

    static std::uint64_t fix(std::uint64_t h) { return SlotTable::fix(h); }

    void prefetch(std::uint64_t h) const { __builtin_prefetch(tags(set_of(fix(h)))); }
    void prefetch_bucket(std::uint64_t h) const { prefetch(h); }
    // A walk's next bucket: its set's hash line and the first line of its slot.
    void prefetch_at(std::size_t i) const {
        i %= buckets();
        __builtin_prefetch(tags(i / kWays));
        __builtin_prefetch(slot(i));
    }
    void prefetch_slot(std::size_t i) const {
        const char* p = static_cast<const char*>(slot(i));
        for (std::size_t off = 0; off < slot_bytes_; off += 64) __builtin_prefetch(p + off);
    }
    void prefetch_cold(std::size_t i, std::size_t offset) const {
        __builtin_prefetch(static_cast<const char*>(cold(i)) + offset);
    }

    std::int64_t find(std::uint64_t h) const {
        h = fix(h);
        const std::size_t a = set_of(h);
        std::int64_t i = find_in(a, h);
        return i >= 0 ? i : find_in(alternate(a, h), h);
    }
    std::int64_t find_hinted(std::uint64_t h, std::int64_t hint) const {
        if (hint >= 0 && hash_at(static_cast<std::size_t>(hint)) == fix(h)) return hint;
        return find(h);
    }
    // Whether `h` can be inserted without an erase first: the table is not full and one of
    // the two sets of `h` has a free way.
    bool room(std::uint64_t h) const {
        if (full()) return false;
        h = fix(h);
        const std::size_t a = set_of(h);
        return free_way(a) < kWays || free_way(alternate(a, h)) < kWays;
    }
    // The set whose ways judge a newcomer when neither of its sets has a free way: its first.
    std::size_t victim_set(std::uint64_t h) const { return set_of(fix(h)); }
    // Caller checks room(h) first and that h is absent. The hot slot is zeroed; the cold area
    // is left as it is (its users tell stale entries apart, see distinct_insert).
    std::size_t insert(std::uint64_t h) {
        h = fix(h);
        std::size_t s = set_of(h);
        std::size_t w = free_way(s);
        if (w == kWays) {
            s = alternate(s, h);
            w = free_way(s);
        }
        tags(s)[w] = h;
        const std::size_t i = s * kWays + w;
        std::memset(slot(i), 0, slot_bytes_);
        ++size_;
        return i;
    }
    void erase(std::size_t i) {
        tags(i / kWays)[i % kWays] = 0;
        --size_;
    }

    void* slot(std::size_t i) { return reinterpret_cast<char*>(&data_[0]) + i * slot_bytes_; }
    const void* slot(std::size_t i) const {
        return reinterpret_cast<const char*>(&data_[0]) + i * slot_bytes_;
    }
    void* cold(std::size_t i) { return reinterpret_cast<char*>(&cold_[0]) + i * cold_bytes_; }
    const void* cold(std::size_t i) const {
        return reinterpret_cast<const char*>(&cold_[0]) + i * cold_bytes_;
    }
    std::size_t slot_bytes() const { return slot_bytes_; }
    std::uint64_t hash_at(std::size_t i) const { return tags(i / kWays)[i % kWays]; }
    std::size_t buckets() const { return sets_ * kWays; }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return capacity_; }
    bool full() const { return size_ >= capacity_; }
    std::size_t bytes() const { return (tags_.size() + data_.size() + cold_.size()) * 8; }

  private:
    std::size_t set_of(std::uint64_t h) const {
        h *= base::kGoldenGamma;
        return static_cast<std::size_t>((static_cast<unsigned __int128>(h) * sets_) >> 64);
    }
    // The second set a key may take when its first is full, from other bits of its hash.
    std::size_t alternate(std::size_t a, std::uint64_t h) const {
        std::uint64_t x = (h ^ (h >> 31)) * 0xd6e8feb86659fd93ULL;
        auto b = static_cast<std::size_t>((static_cast<unsigned __int128>(x) * sets_) >> 64);
        return b != a ? b : (a + 1 == sets_ ? 0 : a + 1);
    }
    std::int64_t find_in(std::size_t s, std::uint64_t h) const {
        const std::uint64_t* t = tags(s);
        for (std::size_t w = 0; w < kWays; ++w)
            if (t[w] == h) return static_cast<std::int64_t>(s * kWays + w);
        return -1;
    }
    std::size_t free_way(std::size_t s) const {
        const std::uint64_t* t = tags(s);
        std::size_t w = 0;
        while (w < kWays && t[w] != 0) ++w;
        return w;
    }
    std::uint64_t* tags(std::size_t s) { return &tags_[s * kWays]; }
    const std::uint64_t* tags(std::size_t s) const { return &tags_[s * kWays]; }

    HugeArray tags_;  // a cache line per set
    HugeArray data_;
    HugeArray cold_;
    std::size_t slot_bytes_ = 64;
    std::size_t cold_bytes_ = 0;
    std::size_t sets_ = 2;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

}  // namespace sbc::fraud::detail

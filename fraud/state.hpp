#pragma once
// Internal to fraud/: the fixed-size per-key state components and the flat hash table that
// holds them. Nothing here allocates after construction.
#include <sys/mman.h>
#include <cstdint>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include "base/base.hpp"

namespace sbc::fraud::detail {

inline std::uint64_t mix64(std::uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

// FNV-1a then a finalizer: good enough spread for table keys, cheap for short strings.
inline std::uint64_t hash_string(std::string_view s, std::uint64_t seed) {
    std::uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

inline std::uint32_t to_seconds(base::Nanos now) {
    return static_cast<std::uint32_t>(now / base::kNanosPerSecond);
}

// A sliding-window counter: kBuckets sub-buckets of window/(kBuckets-1) each, in a ring. The
// estimate sums the full recent buckets plus the oldest one weighted by how much of it is
// still inside the window, so the count never resets at a boundary (a fixed window would let
// twice the limit through across one). Error is at most one sub-bucket's worth of events.
struct WindowCounter {
    static constexpr std::uint32_t kBuckets = 8;
    std::uint32_t epoch = 0;  // index of the newest bucket (now / bucket width)
    std::uint16_t buckets[kBuckets] = {};

    static std::uint32_t epoch_of(base::Nanos now, base::Nanos width) {
        return static_cast<std::uint32_t>((now < 0 ? 0 : now) / width);
    }

    void add(base::Nanos now, base::Nanos width) { add_at(epoch_of(now, width)); }
    double value(base::Nanos now, base::Nanos width) const {
        return value_at(epoch_of(now, width), fraction(now, width));
    }
    // How far `now` is into its bucket, [0, 1).
    static double fraction(base::Nanos now, base::Nanos width) {
        return static_cast<double>((now < 0 ? 0 : now) % width) / static_cast<double>(width);
    }

    // The same with the epoch and fraction computed once per event for every counter of a
    // width (a 64-bit division per counter would cost more than the counting).
    void add_at(std::uint32_t e) {
        if (e > epoch) {
            std::uint32_t gap = e - epoch;
            if (gap >= kBuckets) {
                std::memset(buckets, 0, sizeof(buckets));
            } else {
                for (std::uint32_t x = epoch + 1; x <= e; ++x) buckets[x % kBuckets] = 0;
            }
            epoch = e;
        } else if (e < epoch) {
            e = epoch;  // a late event counts in the newest bucket
        }
        std::uint16_t& b = buckets[e % kBuckets];
        if (b != 0xffff) ++b;  // saturate, never wrap
    }

    double value_at(std::uint32_t e, double into) const {
        if (e < epoch) e = epoch;
        if (e - epoch >= kBuckets) return 0;
        double sum = 0;
        // Full buckets e-(kBuckets-2) .. e; buckets newer than `epoch` are logically empty.
        for (std::uint32_t i = 0; i + 1 < kBuckets; ++i) {
            if (i > e) break;
            std::uint32_t x = e - i;
            if (x <= epoch && epoch - x < kBuckets) sum += buckets[x % kBuckets];
        }
        if (e >= kBuckets - 1) {
            std::uint32_t oldest = e - (kBuckets - 1);
            if (oldest <= epoch && epoch - oldest < kBuckets) {
                sum += buckets[oldest % kBuckets] * (1.0 - into);
            }
        }
        return sum;
    }
};
static_assert(sizeof(WindowCounter) == 20);

// A small exact distinct-count set: a 32-bit header (time unit of the last insertion) and
// `capacity` 4-byte entries (16-bit fingerprint, 16-bit time unit). Entries older than the
// window are free; when full, the least recently seen is replaced, so the count saturates at
// the capacity, which is sized above the largest threshold that reads it. Time units are
// window/4096 (at least 1 s); 16-bit ages cannot wrap: every insertion clears the entries it
// finds expired, and a set idle for 8 windows is cleared whole. Two values sharing a 16-bit
// fingerprint count once (an undercount of about capacity/65536 per value).
inline std::uint32_t age_of(std::uint32_t now_s, std::uint32_t seen_s) {
    return now_s > seen_s ? now_s - seen_s : 0;  // a late event is not older than the newest
}

struct DistinctWindow {
    std::uint32_t unit_s;        // seconds per time unit
    std::uint32_t window_units;  // window in units, <= 4096
    explicit DistinctWindow(std::uint32_t window_s)
        : unit_s(std::max<std::uint32_t>(1, (window_s + 4095) / 4096)),
          window_units(std::max<std::uint32_t>(1, (window_s + unit_s - 1) / unit_s)) {}
};

struct DistinctSet {
    std::uint32_t last_unit;
    struct Entry {
        std::uint16_t fp;  // 0 = empty
        std::uint16_t t;
    } e[1];  // `capacity` entries follow the header

    static constexpr std::size_t bytes(std::uint32_t capacity) { return 4 + 4 * capacity; }

    static std::uint16_t fingerprint(std::uint32_t h) {
        auto fp = static_cast<std::uint16_t>((h >> 16) ^ h);
        return fp == 0 ? 1 : fp;
    }
};

// Returns the count after the insertion: what distinct_count would read next, without a
// second pass over the entries.
inline std::uint32_t distinct_add(void* set, std::uint32_t cap, std::uint32_t h,
                                  std::uint32_t now_s, std::uint32_t window_s) {
    DistinctWindow w(window_s);
    auto* hdr = static_cast<std::uint32_t*>(set);
    auto* e = reinterpret_cast<DistinctSet::Entry*>(hdr + 1);
    std::uint32_t now = now_s / w.unit_s;
    if (now < *hdr) now = *hdr;
    if (now - *hdr >= 8 * w.window_units) std::memset(e, 0, 4 * cap);
    *hdr = now;
    auto now16 = static_cast<std::uint16_t>(now);
    std::uint16_t fp = DistinctSet::fingerprint(h);
    std::int64_t free_i = -1;
    std::uint32_t oldest_i = 0;
    std::uint16_t oldest_age = 0;
    std::uint32_t live = 0;  // unexpired entries other than this value's
    bool found = false;
    for (std::uint32_t i = 0; i < cap; ++i) {
        if (e[i].fp == 0) {
            if (free_i < 0) free_i = i;
            continue;
        }
        auto age = static_cast<std::uint16_t>(now16 - e[i].t);
        if (e[i].fp == fp) {
            e[i].t = now16;
            found = true;
        } else if (age >= w.window_units) {
            e[i].fp = 0;  // expired: freed now, so no age is ever read past a wrap
            if (free_i < 0) free_i = i;
        } else {
            ++live;
            if (age >= oldest_age) {
                oldest_age = age;
                oldest_i = i;
            }
        }
    }
    if (found) return live + 1;
    std::uint32_t v = free_i >= 0 ? static_cast<std::uint32_t>(free_i) : oldest_i;
    e[v].fp = fp;
    e[v].t = now16;
    return free_i >= 0 ? live + 1 : live;  // full: the oldest live entry was replaced
}

inline std::uint32_t distinct_count(const void* set, std::uint32_t cap, std::uint32_t now_s,
                                    std::uint32_t window_s) {
    DistinctWindow w(window_s);
    auto* hdr = static_cast<const std::uint32_t*>(set);
    auto* e = reinterpret_cast<const DistinctSet::Entry*>(hdr + 1);
    std::uint32_t now = now_s / w.unit_s;
    if (now < *hdr) now = *hdr;
    if (now - *hdr >= 8 * w.window_units) return 0;
    auto now16 = static_cast<std::uint16_t>(now);
    std::uint32_t n = 0;
    for (std::uint32_t i = 0; i < cap; ++i)
        if (e[i].fp != 0 && static_cast<std::uint16_t>(now16 - e[i].t) < w.window_units) ++n;
    return n;
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

// Common header of every key slot.
struct KeyHeader {
    std::uint32_t last_seen_s = 0;
    std::uint32_t evidence_until_s = 0;  // a rule fired on this key: kept through floods
    std::int32_t concurrent = 0;
    std::uint32_t flags = 0;
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
    std::uint64_t& operator[](std::size_t i) { return p_[i]; }
    const std::uint64_t& operator[](std::size_t i) const { return p_[i]; }
    std::size_t size() const { return n_; }

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

// Open addressing with linear probing over a power-of-two array, at most `capacity` entries
// (load <= 3/4), backward-shift deletion (no tombstones, so probes stay short forever). Slots
// are runtime-sized byte blocks; hash 0 marks an empty bucket.
class SlotTable {
  public:
    SlotTable() = default;
    SlotTable(std::size_t capacity, std::size_t slot_bytes) { init(capacity, slot_bytes); }

    void init(std::size_t capacity, std::size_t slot_bytes) {
        capacity_ = capacity;
        slot_words_ = (slot_bytes + 7) / 8;
        std::size_t buckets = 16;
        while (buckets * 3 < capacity * 4 + 4) buckets <<= 1;
        mask_ = buckets - 1;
        hashes_.assign(buckets, 0);
        data_.assign(buckets * slot_words_, 0);
        size_ = 0;
    }

    static std::uint64_t fix(std::uint64_t h) { return h == 0 ? 1 : h; }

    // Starts loading the home bucket of `h` (and its slot) before the lookup needs it: an
    // event touches several tables, and overlapping their cache misses is most of the cost.
    // Most keys sit in their home bucket (load <= 3/4), so the whole home slot is fetched:
    // the memory system then serves the lines of several tables in parallel.
    void prefetch(std::uint64_t h) const {
        std::size_t i = fix(h) & mask_;
        __builtin_prefetch(&hashes_[i]);
        prefetch_slot(i);
    }
    void prefetch_bucket(std::uint64_t h) const { __builtin_prefetch(&hashes_[fix(h) & mask_]); }
    void prefetch_slot(std::size_t i) const {
        const char* p = reinterpret_cast<const char*>(&data_[i * slot_words_]);
        for (std::size_t off = 0; off < slot_words_ * 8; off += 64) __builtin_prefetch(p + off);
    }

    std::int64_t find(std::uint64_t h) const {
        h = fix(h);
        for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
            std::uint64_t x = hashes_[i];
            if (x == h) return static_cast<std::int64_t>(i);
            if (x == 0) return -1;
        }
    }
    // Caller checks full() first and that h is absent.
    std::size_t insert(std::uint64_t h) {
        h = fix(h);
        std::size_t i = h & mask_;
        while (hashes_[i] != 0) i = (i + 1) & mask_;
        hashes_[i] = h;
        std::memset(slot(i), 0, slot_words_ * 8);
        ++size_;
        return i;
    }
    void erase(std::size_t i) {
        std::size_t j = i;
        for (;;) {
            j = (j + 1) & mask_;
            if (hashes_[j] == 0) break;
            std::size_t home = hashes_[j] & mask_;
            // Leave j where it is if its home lies cyclically in (i, j].
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (stays) continue;
            hashes_[i] = hashes_[j];
            std::memcpy(slot(i), slot(j), slot_words_ * 8);
            i = j;
        }
        hashes_[i] = 0;
        --size_;
    }

    void* slot(std::size_t i) { return &data_[i * slot_words_]; }
    const void* slot(std::size_t i) const { return &data_[i * slot_words_]; }
    std::uint64_t hash_at(std::size_t i) const { return hashes_[i]; }
    std::size_t buckets() const { return mask_ + 1; }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return capacity_; }
    bool full() const { return size_ >= capacity_; }
    std::size_t bytes() const { return hashes_.size() * 8 + data_.size() * 8; }

  private:
    HugeArray hashes_;
    HugeArray data_;
    std::size_t slot_words_ = 1;
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

}  // namespace sbc::fraud::detail

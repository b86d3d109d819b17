#pragma once
// dataplane/: the ban table.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "dataplane/types.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// Ban table: fixed capacity, checked first for every packet.
// ---------------------------------------------------------------------------------------
enum class BanOrigin : std::uint8_t { rate_limit, signaling, fraud, control };
std::string_view name(BanOrigin o);

struct BanInfo {
    base::Prefix prefix;
    base::Nanos expires = 0;  // on the pipeline's monotonic time line
    std::uint32_t offenses = 0;
    BanOrigin origin = BanOrigin::control;
    std::uint64_t hits = 0;  // packets dropped by this ban
};

class BanTable {
  public:
    explicit BanTable(std::uint32_t capacity);
    // Adds or extends a ban on an address (full-length prefix) or a prefix. duration 0: use the
    // escalation ladder of `policy` from the remembered offense count. Fails only when the table
    // is full of bans that expire later than this one would.
    base::Result<void> ban(const base::Prefix& p, base::Nanos duration, BanOrigin origin,
                           base::Nanos now);
    base::Result<void> ban_escalating(const base::IpAddress& a, const BanPolicy& policy,
                                      BanOrigin origin, base::Nanos now);
    // The same for a prefix (a /24 a distributed attack came from): its own offense count and
    // the same ladder.
    base::Result<void> ban_escalating(const base::Prefix& p, const BanPolicy& policy,
                                      BanOrigin origin, base::Nanos now);
    bool unban(const base::Prefix& p);
    // Hot path: whether `a` (or a banned prefix covering it) is banned at `now`.
    bool is_banned(const base::IpAddress& a, base::Nanos now);
    // The relay fast path's ban check for an IPv4 source (its four bytes as loaded from the
    // packet): false means certainly not banned; true means "maybe", and the caller then does
    // the full is_banned() lookup (the fast path hands such packets to the generic pipeline).
    // With no bans at all this is one compare; otherwise two bit tests in 8 KiB bitmaps: one
    // bit per hashed /32 ban and one per /16 covering a ban of /16 to /31. IPv4 bans shorter
    // than /16 (rare) make every IPv4 source "maybe". Removals leave stale bits (false
    // positives only) until a rebuild.
    bool may_be_banned_v4(std::uint32_t addr_word) const {
        if (live_ == 0) return false;
        if (v4_unfiltered_ != 0) return true;
        const std::uint32_t h = exact_bit(addr_word), p = addr_word & 0xffffu;
        return ((v4_exact_[h >> 6] >> (h & 63)) | (v4_by16_[p >> 6] >> (p & 63))) & 1u;
    }
    // Hints the cache about the set a full-length ban on `a` would live in (the pipeline calls it
    // for a burst's sources before deciding them, so the misses overlap).
    void prefetch(const base::IpAddress& a) const {
        if (live_ == 0) return;
        const std::uint64_t h = hash_of(base::Prefix(a, a.is_v4() ? 32 : 128));
        __builtin_prefetch(&hashes_[(h & set_mask_) * kWays]);
    }
    std::vector<BanInfo> active(base::Nanos now) const;
    std::size_t capacity() const { return slots_.size(); }
    std::size_t memory_bytes() const { return slots_.size() * sizeof(Slot); }

    static constexpr unsigned kWays = 8;

  private:
    struct Slot {
        BanInfo info;
        std::uint64_t hash = 0;  // 0 = empty
        base::Nanos remember_until = 0;
    };
    Slot* find(const base::Prefix& p, std::uint64_t h);
    std::uint64_t hash_of(const base::Prefix& p) const;
    void set_hash(const Slot* s, std::uint64_t h) {
        const auto i = static_cast<std::size_t>(s - slots_.data());
        hashes_[i] = h;
    }
    std::vector<Slot> slots_;
    // Slot::hash again, a set's eight in one cache line: a lookup that misses (the common case,
    // most packets come from sources that are not banned) reads one line instead of the eight
    // slots' worth of records.
    std::vector<std::uint64_t> hashes_;
    std::uint32_t set_mask_ = 0;
    void count_len(unsigned mapped_len, int delta);
    std::array<std::uint32_t, 129> active_by_len_{};  // mapped prefix length -> entries
    std::array<std::uint64_t, 3> len_bits_{};         // lengths with entries, for the lookup
    std::uint32_t live_ = 0;
    // may_be_banned_v4's filter.
    static std::uint32_t exact_bit(std::uint32_t addr_word) {
        return (addr_word * 0x9E3779B1u) >> 16;
    }
    void filter_add(const base::Prefix& p);
    void filter_removed(const base::Prefix& p);
    std::array<std::uint64_t, 1024> v4_exact_{}, v4_by16_{};
    std::uint32_t v4_unfiltered_ = 0;  // live IPv4 entries shorter than /16
    std::uint32_t filter_stale_ = 0;   // entries removed since the last rebuild
};

}  // namespace sbc::dataplane

#include "fraud/lookup.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>

namespace sbc::fraud::detail {

UaGlob::UaGlob(std::string_view pattern) : pattern_(pattern), glob_(pattern) {}

bool UaGlob::matches(std::string_view lowered_text) const {
    // "*" or "" would match every UA: never a signature.
    return !glob_.empty() && glob_.matches_lowered(lowered_text);
}

namespace {

std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}
std::int64_t be64(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return static_cast<std::int64_t>(v);
}

}  // namespace

base::Result<TimeZone> TimeZone::load(const std::string& dir, const std::string& name) {
    TimeZone tz;
    if (name.empty() || name == "UTC" || name == "Etc/UTC") return tz;
    if (name.find("..") != std::string::npos || name.front() == '/')
        return base::make_error("invalid time zone name '" + name + "'");
    std::ifstream in(dir + "/" + name, std::ios::binary);
    if (!in)
        return base::make_error("unknown time zone '" + name + "' (no " + dir + "/" + name + ")");
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), {});
    return parse(bytes, name);
}

base::Result<TimeZone> TimeZone::parse(std::span<const unsigned char> b, const std::string& name) {
    TimeZone tz;
    auto bad = [&] { return base::make_error("time zone '" + name + "': not a TZif file"); };
    // RFC 8536 §3.1: 44-byte header, then the version 1 data block, then (version >= 2) a
    // second header and a block with 64-bit transition times, which is the one we read.
    if (b.size() < 44 || b[0] != 'T' || b[1] != 'Z' || b[2] != 'i' || b[3] != 'f') return bad();
    auto counts = [&](std::size_t at, std::uint32_t c[6]) {
        for (int i = 0; i < 6; ++i) c[i] = be32(&b[at + 20 + 4 * i]);
    };
    std::uint32_t c[6];  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
    counts(0, c);
    std::size_t v1 =
        std::size_t{c[3]} * 5 + std::size_t{c[4]} * 6 + c[5] + std::size_t{c[2]} * 8 + c[1] + c[0];
    std::size_t at = 44;
    int time_size = 4;
    if (b[4] >= '2') {
        at = 44 + v1;
        if (b.size() < at + 44) return bad();
        counts(at, c);
        at += 44;
        time_size = 8;
    }
    std::size_t timecnt = c[3], typecnt = c[4];
    if (typecnt == 0) return bad();
    std::size_t need = timecnt * time_size + timecnt + typecnt * 6;
    if (b.size() < at + need) return bad();
    const unsigned char* times = &b[at];
    const unsigned char* idx = times + timecnt * time_size;
    const unsigned char* types = idx + timecnt;
    auto type_offset = [&](std::size_t t) {
        return static_cast<std::int32_t>(be32(types + 6 * t));
    };
    tz.initial_offset_ = type_offset(0);  // RFC 8536 §3.2: type 0 applies before the first
    for (std::size_t i = 0; i < timecnt; ++i) {
        std::int64_t t =
            time_size == 8 ? be64(times + 8 * i) : static_cast<std::int32_t>(be32(times + 4 * i));
        if (idx[i] >= typecnt) return bad();
        tz.transitions_.push_back(t);
        tz.offsets_.push_back(type_offset(idx[i]));
    }
    return tz;
}

std::int32_t TimeZone::offset_at(std::int64_t s) const {
    // Past the last transition the last offset holds (Debian ships "fat" TZif files with
    // transitions listed to 2037, so the POSIX footer rule is not needed before then).
    auto it = std::upper_bound(transitions_.begin(), transitions_.end(), s);
    if (it == transitions_.begin()) return initial_offset_;
    return offsets_[static_cast<std::size_t>(it - transitions_.begin() - 1)];
}

void WeekMap::add(const BusinessHours& h) {
    for (int d = 0; d < 7; ++d) {
        if (!(h.days & (1u << d))) continue;
        int end = std::min<int>(h.end_minute, 1440);
        for (int m = h.start_minute; m < end; ++m) bits_[d * 1440 + m] = true;
    }
    set_ = true;
}

}  // namespace sbc::fraud::detail

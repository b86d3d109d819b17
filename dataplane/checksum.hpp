#pragma once
// Internet checksum helpers (RFC 1071) and the incremental update of RFC 1624.
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sbc::dataplane {

// Unaligned loads and stores of header fields. ld*/st* keep network byte order (one's
// complement sums do not depend on it, RFC 1071 §2(B)); rd16 reads a big-endian field.
inline std::uint16_t rd16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t ld32(const std::uint8_t* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline std::uint64_t ld64(const void* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
inline std::uint16_t ld16(const std::uint8_t* p) {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline void st16(std::uint8_t* p, std::uint16_t v) {
    std::memcpy(p, &v, 2);
}
inline void st32(std::uint8_t* p, std::uint32_t v) {
    std::memcpy(p, &v, 4);
}

// Adds the 16-bit big-endian words of [p, p+len) to a 32-bit accumulator (odd tail padded).
inline std::uint32_t checksum_add(std::uint32_t sum, const std::uint8_t* p, std::size_t len) {
    std::uint64_t s = sum;
    while (len >= 8) {
        s += (std::uint32_t{p[0]} << 8 | p[1]) + (std::uint32_t{p[2]} << 8 | p[3]) +
             (std::uint32_t{p[4]} << 8 | p[5]) + (std::uint32_t{p[6]} << 8 | p[7]);
        p += 8;
        len -= 8;
    }
    while (len >= 2) {
        s += std::uint32_t{p[0]} << 8 | p[1];
        p += 2;
        len -= 2;
    }
    if (len) s += std::uint32_t{p[0]} << 8;
    while (s >> 32) s = (s & 0xffffffffu) + (s >> 32);
    return static_cast<std::uint32_t>(s);
}

// Folds the accumulator to 16 bits (not complemented): 0xffff for a valid packet.
inline std::uint16_t checksum_fold(std::uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') over the changed bytes (even length).
inline std::uint16_t checksum_update(std::uint16_t hc, const std::uint8_t* old_bytes,
                                     const std::uint8_t* new_bytes, std::size_t len) {
    std::uint32_t sum = static_cast<std::uint16_t>(~hc);
    for (std::size_t i = 0; i + 1 < len; i += 2) {
        const std::uint16_t o = static_cast<std::uint16_t>(old_bytes[i] << 8 | old_bytes[i + 1]);
        const std::uint16_t n = static_cast<std::uint16_t>(new_bytes[i] << 8 | new_bytes[i + 1]);
        sum += static_cast<std::uint16_t>(~o);
        sum += n;
    }
    return static_cast<std::uint16_t>(~checksum_fold(sum));
}

}  // namespace sbc::dataplane

#pragma once
// Hash building blocks shared by the tables of every module. The values they produce are part
// of behaviour: FNV-1a output appears on the wire (stateless To tags, Via branches) and in the
// policy fingerprint, so none of these may change.
#include <cstdint>
#include <string_view>

namespace sbc::base {

// 2^64 / golden ratio: spreads small integers (a class, a length) over all 64 bits.
inline constexpr std::uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ULL;

// The 64-bit finalizer of MurmurHash3 (fmix64): every input bit affects every output bit.
constexpr std::uint64_t mix64(std::uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

// FNV-1a, 64-bit. kFnv1a64Offset is the reference offset basis; kFnv1a64Seed is the start
// value the SBC has always used (that basis with its last decimal digit lost). Tags, branches
// and policy fingerprints derive from the seed, so it stays: any start value gives a sound
// FNV-1a, and changing it would change every value already seen by peers and operators.
inline constexpr std::uint64_t kFnv1a64Offset = 14695981039346656037ULL;
inline constexpr std::uint64_t kFnv1a64Seed = 1469598103934665603ULL;
inline constexpr std::uint64_t kFnv1a64Prime = 1099511628211ULL;

// Folds `bytes` into `h`; chain calls to hash several strings.
constexpr std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t h = kFnv1a64Seed) {
    for (char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= kFnv1a64Prime;
    }
    return h;
}

}  // namespace sbc::base

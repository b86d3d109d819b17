#include "base/hash.hpp"

#include <catch2/catch.hpp>

using namespace sbc::base;

TEST_CASE("fnv1a64 from the reference offset gives the FNV reference values") {
    CHECK(fnv1a64("", kFnv1a64Offset) == 0xcbf29ce484222325ULL);
    CHECK(fnv1a64("a", kFnv1a64Offset) == 0xaf63dc4c8601ec8cULL);
    CHECK(fnv1a64("foobar", kFnv1a64Offset) == 0x85944171f73967e8ULL);
}

TEST_CASE("fnv1a64 starts from the SBC's historical seed and chains") {
    // Stateless tags, Via branches and policy fingerprints were computed from this seed.
    STATIC_REQUIRE(kFnv1a64Seed == 1469598103934665603ULL);
    CHECK(fnv1a64("") == kFnv1a64Seed);
    CHECK(fnv1a64("abc") == 0xe16801510db89efdULL);
    CHECK(fnv1a64("c", fnv1a64("ab")) == fnv1a64("abc"));
    CHECK(fnv1a64("abd") != fnv1a64("abc"));
    // Bytes above 0x7f are folded as unsigned.
    CHECK(fnv1a64("\xff") == ((kFnv1a64Seed ^ 0xffULL) * kFnv1a64Prime));
}

TEST_CASE("mix64 is the MurmurHash3 finalizer") {
    CHECK(mix64(0) == 0);
    CHECK(mix64(1) == 0xb456bcfc34c2cb2cULL);
    CHECK(mix64(kGoldenGamma) == 0x9ca066f1a4ab2eeaULL);
    // Neighbouring inputs land far apart: about half of the bits differ.
    const auto diff = __builtin_popcountll(mix64(41) ^ mix64(42));
    CHECK(diff > 16);
    CHECK(diff < 48);
}

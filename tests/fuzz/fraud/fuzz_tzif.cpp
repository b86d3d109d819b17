// The TZif reader must reject or accept any bytes without reading out of bounds.
#include <cstddef>
#include <cstdint>

#include "fraud/lookup.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto tz = sbc::fraud::detail::TimeZone::parse({data, size}, "fuzz");
    if (tz.ok()) {
        (void)tz->offset_at(0);
        (void)tz->offset_at(1'795'737'600);
        (void)tz->offset_at(-(std::int64_t{1} << 40));
    }
    return 0;
}

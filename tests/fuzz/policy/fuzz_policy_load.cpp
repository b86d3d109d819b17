// Fuzzes the policy loader from a TOML string (includes and list files disabled), then checks
// that an accepted policy renders (`sbc policy show`) into TOML that loads back to the same
// effective policy, and that its lookups run.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    sbc::policy::LoadOptions options;
    options.allow_includes = false;
    options.allow_file_lists = false;
    auto loaded = sbc::policy::load_policy_from_string(text, "fuzz.toml", options);
    if (!loaded.ok()) {
        if (loaded.errors.empty()) std::abort();  // a refusal must say why
        return 0;
    }
    const auto& p = *loaded.value;
    std::string shown = sbc::policy::render_policy(p);
    auto again = sbc::policy::load_policy_from_string(shown, "shown.toml", options);
    if (!again.ok()) std::abort();  // `show` printed something the loader refuses
    if (again.value->prefixes.prefix_count() != p.prefixes.prefix_count()) std::abort();
    if (again.value->fraud.rules.size() != p.fraud.rules.size()) std::abort();
    for (std::string_view number : {"882123456", "33612345678", "1", "", "0044"}) {
        auto m = p.prefixes.lpm(number);
        if (m.length > number.size()) std::abort();
    }
    (void)p.classify_source(*sbc::base::IpAddress::parse("203.0.113.9"));
    (void)p.scanners.match("friendly-scanner");
    (void)p.group_of("1001");
    return 0;
}

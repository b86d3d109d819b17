// Fuzzes the policy loader from a TOML string (includes and list files disabled), then checks
// that an accepted policy renders (`sbc policy show`) into TOML that loads back to the same
// effective policy, and that its lookups run.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

namespace {
std::string without_comments(const std::string& text) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string_view line(text.data() + start, end - start);
        start = end + 1;
        if (line.starts_with("#")) continue;
        if (auto c = line.find("  # "); c != std::string_view::npos) line = line.substr(0, c);
        out.append(line);
        out.push_back('\n');
    }
    return out;
}
}  // namespace

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
    // The same effective policy: identical renderings apart from comments (sources, lines).
    if (without_comments(sbc::policy::render_policy(*again.value)) != without_comments(shown))
        std::abort();
    for (std::string_view number : {"882123456", "33612345678", "1", "", "0044"}) {
        auto m = p.prefixes.lpm(number);
        if (m.length > number.size()) std::abort();
    }
    (void)p.classify_source(*sbc::base::IpAddress::parse("203.0.113.9"));
    (void)p.scanners.match("friendly-scanner");
    (void)p.group_of("1001");
    return 0;
}

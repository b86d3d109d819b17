#pragma once
// Text helpers every module needs: ASCII case folding and '*' globs. ASCII only, on purpose:
// SIP tokens, header names and User-Agent signatures are compared byte-wise, never by locale.
#include <string>
#include <string_view>
#include <vector>

namespace sbc::base {

constexpr char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

std::string to_lower(std::string_view s);

constexpr bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i])) return false;
    return true;
}

// Whole-string globs with '*' (any run, including none) as the only wildcard.
bool glob_match(std::string_view pattern, std::string_view text);   // case-sensitive
bool iglob_match(std::string_view pattern, std::string_view text);  // ASCII case-insensitive

// A '*' glob matched anywhere in a text ('*' at both ends implied), ASCII case-insensitive:
// its literal runs, lower-cased, must occur in order without overlapping.
class SubstringGlob {
  public:
    SubstringGlob() = default;
    explicit SubstringGlob(std::string_view pattern);
    // No literal run ("", "*", "**"): matches every text.
    bool empty() const { return pieces_.empty(); }
    bool matches(std::string_view text) const { return matches_lowered(to_lower(text)); }
    // For callers that lower a text once and try it against many globs.
    bool matches_lowered(std::string_view lowered_text) const;

  private:
    std::vector<std::string> pieces_;
};

}  // namespace sbc::base

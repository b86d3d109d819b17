#include "base/text.hpp"

namespace sbc::base {

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = to_lower(c);
    return out;
}

namespace {
// Iterative, backtracking only to the last '*': linear in practice, no recursion.
template <class Equal>
bool whole_glob(std::string_view pat, std::string_view text, Equal eq) {
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pat.size() && pat[p] == '*') {
            star = p++;
            mark = t;
        } else if (p < pat.size() && eq(pat[p], text[t])) {
            ++p;
            ++t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
}
}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
    return whole_glob(pattern, text, [](char a, char b) { return a == b; });
}

bool iglob_match(std::string_view pattern, std::string_view text) {
    return whole_glob(pattern, text, [](char a, char b) { return to_lower(a) == to_lower(b); });
}

SubstringGlob::SubstringGlob(std::string_view pattern) {
    std::size_t start = 0;
    while (start <= pattern.size()) {
        std::size_t star = pattern.find('*', start);
        if (star == std::string_view::npos) star = pattern.size();
        if (star > start) pieces_.push_back(to_lower(pattern.substr(start, star - start)));
        start = star + 1;
    }
}

bool SubstringGlob::matches_lowered(std::string_view text) const {
    // Leftmost placement of each piece in order is optimal when both ends are open.
    std::size_t at = 0;
    for (const auto& piece : pieces_) {
        const std::size_t found = text.find(piece, at);
        if (found == std::string_view::npos) return false;
        at = found + piece.size();
    }
    return true;
}

}  // namespace sbc::base

// Compiled lookup structures of a policy: destination prefix trie, CIDR sets, globs.
#include <algorithm>
#include <cctype>

#include "policy/policy.hpp"

namespace sbc::policy {

// ---------------------------------------------------------------------------------------------
// PrefixTable

namespace {
constexpr std::uint32_t kStride = 11;  // 10 children + match
inline unsigned digit_of(char c) {
    return static_cast<unsigned char>(c) - unsigned{'0'};
}
}  // namespace

PrefixTable PrefixTable::build(std::vector<Entry> entries) {
    PrefixTable t;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry& a, const Entry& b) { return a.digits < b.digits; });
    t.nodes_.assign(kStride, 0);  // root
    std::size_t nodes = 1;
    for (std::size_t i = 0; i < entries.size();) {
        const std::string& digits = entries[i].digits;
        std::size_t j = i;
        MatchEntry m;
        m.first_list = static_cast<std::uint32_t>(t.list_ids_.size());
        m.category = entries[i].category;
        m.length = static_cast<std::uint8_t>(std::min<std::size_t>(digits.size(), 255));
        for (; j < entries.size() && entries[j].digits == digits; ++j) {
            if (std::find(t.list_ids_.begin() + m.first_list, t.list_ids_.end(), entries[j].list) ==
                t.list_ids_.end())
                t.list_ids_.push_back(entries[j].list);
        }
        m.list_count = static_cast<std::uint16_t>(t.list_ids_.size() - m.first_list);
        i = j;
        bool valid = !digits.empty() && std::all_of(digits.begin(), digits.end(),
                                                    [](char c) { return c >= '0' && c <= '9'; });
        if (!valid) {
            t.list_ids_.resize(m.first_list);
            continue;
        }
        t.matches_.push_back(m);
        std::uint32_t n = 0;
        for (char c : digits) {
            std::uint32_t& child = t.nodes_[n * kStride + digit_of(c)];
            if (child == 0) {
                child = static_cast<std::uint32_t>(nodes++);
                t.nodes_.resize(nodes * kStride, 0);
            }
            n = t.nodes_[n * kStride + digit_of(c)];
        }
        t.nodes_[n * kStride + 10] = static_cast<std::uint32_t>(t.matches_.size());
    }
    t.node_count_ = nodes;
    // Resolve the first kDirectDigits digits once: the slot keeps the best match of length
    // <= kDirectDigits and the node to continue from.
    t.direct_.assign(kDirectSize, DirectSlot{});
    for (std::uint32_t idx = 0; idx < kDirectSize; ++idx) {
        const unsigned d[3] = {idx / 100, (idx / 10) % 10, idx % 10};
        std::uint32_t n = 0, best = 0;
        for (int level = 0; level < kDirectDigits && (level == 0 || n != 0); ++level) {
            n = t.nodes_[n * kStride + d[level]];
            if (n && t.nodes_[n * kStride + 10]) best = t.nodes_[n * kStride + 10];
        }
        t.direct_[idx] = DirectSlot{n, best};
    }
    return t;
}

PrefixMatch PrefixTable::make_match(std::uint32_t m) const noexcept {
    if (m == 0) return {};
    const MatchEntry& e = matches_[m - 1];
    return PrefixMatch{
        e.length, e.category,
        std::span<const std::uint32_t>(list_ids_.data() + e.first_list, e.list_count)};
}

PrefixMatch PrefixTable::lpm(std::string_view digits) const noexcept {
    if (matches_.empty()) return {};
    const std::uint32_t* nodes = nodes_.data();
    std::uint32_t best = 0, n = 0;
    std::size_t i = 0;
    if (digits.size() >= kDirectDigits) {
        const unsigned a = digit_of(digits[0]), b = digit_of(digits[1]), c = digit_of(digits[2]);
        if ((a | b | c) <= 9) {
            const DirectSlot& slot = direct_[a * 100 + b * 10 + c];
            best = slot.match;
            n = slot.node;
            if (n == 0) return make_match(best);
            i = kDirectDigits;
        }
    }
    for (; i < digits.size(); ++i) {
        const unsigned d = digit_of(digits[i]);
        if (d > 9) break;
        n = nodes[n * kStride + d];
        if (n == 0) break;
        if (const std::uint32_t m = nodes[n * kStride + 10]) best = m;
    }
    return make_match(best);
}

std::size_t PrefixTable::all_matches(std::string_view digits,
                                     std::span<PrefixMatch> out) const noexcept {
    if (matches_.empty()) return 0;
    std::size_t count = 0;
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < digits.size() && count < out.size(); ++i) {
        const unsigned d = digit_of(digits[i]);
        if (d > 9) break;
        n = nodes_[n * kStride + d];
        if (n == 0) break;
        if (const std::uint32_t m = nodes_[n * kStride + 10]) out[count++] = make_match(m);
    }
    return count;
}

std::size_t PrefixTable::memory_bytes() const {
    return nodes_.capacity() * sizeof(std::uint32_t) + direct_.capacity() * sizeof(DirectSlot) +
           matches_.capacity() * sizeof(MatchEntry) + list_ids_.capacity() * sizeof(std::uint32_t);
}

// ---------------------------------------------------------------------------------------------
// CidrSet

void CidrSet::add(const base::Prefix& p, std::uint32_t tag) {
    entries_.push_back({p, tag});
}

void CidrSet::finalize() {
    by_masked_.clear();
    v4_lengths_.clear();
    v6_lengths_.clear();
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
        const auto& p = entries_[i].prefix;
        by_masked_.emplace(Key{p.address(), p.length()}, i);  // first entry wins
        auto& lengths = p.is_v4() ? v4_lengths_ : v6_lengths_;
        if (std::find(lengths.begin(), lengths.end(), p.length()) == lengths.end())
            lengths.push_back(p.length());
    }
    std::sort(v4_lengths_.rbegin(), v4_lengths_.rend());
    std::sort(v6_lengths_.rbegin(), v6_lengths_.rend());
}

std::optional<CidrSet::Match> CidrSet::longest(const base::IpAddress& a) const {
    const auto& lengths = a.is_v4() ? v4_lengths_ : v6_lengths_;
    for (std::uint8_t len : lengths) {
        base::Prefix p(a, len);
        auto it = by_masked_.find(Key{p.address(), len});
        if (it != by_masked_.end()) return entries_[it->second];
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Globs

namespace {
std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}
}  // namespace

Glob::Glob(std::string_view pattern) : pattern_(pattern) {
    std::string lowered = lower(pattern);
    std::size_t start = 0;
    while (start <= lowered.size()) {
        std::size_t star = lowered.find('*', start);
        if (star == std::string::npos) star = lowered.size();
        if (star > start) pieces_.push_back(lowered.substr(start, star - start));
        start = star + 1;
    }
}

bool Glob::matches(std::string_view text) const {
    // Leftmost placement of each literal piece in order is optimal when both ends are open.
    std::string hay = lower(text);
    std::size_t at = 0;
    for (const auto& piece : pieces_) {
        std::size_t found = hay.find(piece, at);
        if (found == std::string::npos) return false;
        at = found + piece.size();
    }
    return true;
}

ExactGlob::ExactGlob(std::string_view pattern) : pattern_(pattern) {}

bool ExactGlob::matches(std::string_view text) const {
    // Iterative wildcard match with one backtrack point: linear in practice, no recursion.
    std::size_t p = 0, t = 0, star = std::string::npos, mark = 0;
    const std::string_view pat = pattern_;
    while (t < text.size()) {
        if (p < pat.size() && pat[p] != '*' && pat[p] == text[t]) {
            ++p;
            ++t;
        } else if (p < pat.size() && pat[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
}

const Glob* ScannerSignatures::match(std::string_view user_agent) const {
    for (const auto& g : user_agents)
        if (g.matches(user_agent)) return &g;
    return nullptr;
}

}  // namespace sbc::policy

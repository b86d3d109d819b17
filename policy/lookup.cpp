// Compiled lookup structures of a policy: destination prefix trie, CIDR sets, globs.
#include <algorithm>

#include "policy/policy.hpp"

namespace sbc::policy {

// ---------------------------------------------------------------------------------------------
// PrefixTable

PrefixTable PrefixTable::build(std::vector<Entry> entries) {
    PrefixTable t;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry& a, const Entry& b) { return a.digits < b.digits; });
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
        const bool valid =
            !digits.empty() && digits.size() <= 255 &&
            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!valid) {
            t.list_ids_.resize(m.first_list);
            continue;
        }
        t.matches_.push_back(m);
        t.trie_.add(digits, t.matches_.size(), false);
    }
    t.trie_.shrink_to_fit();
    return t;
}

PrefixMatch PrefixTable::make_match(std::uint64_t m) const noexcept {
    if (m == 0) return {};
    const MatchEntry& e = matches_[m - 1];
    return PrefixMatch{
        e.length, e.category,
        std::span<const std::uint32_t>(list_ids_.data() + e.first_list, e.list_count)};
}

PrefixMatch PrefixTable::lpm(std::string_view digits) const noexcept {
    return make_match(trie_.walk(digits).deepest);
}

void PrefixTable::lpm_batch(std::span<const std::string_view> numbers,
                            std::span<PrefixMatch> out) const noexcept {
    const std::size_t count = std::min(numbers.size(), out.size());
    for (std::size_t i = 0; i < count; ++i) out[i] = lpm(numbers[i]);
}

std::size_t PrefixTable::all_matches(std::string_view digits,
                                     std::span<PrefixMatch> out) const noexcept {
    std::size_t count = 0;
    trie_.for_each_prefix(digits, [&](std::size_t, std::uint64_t m) {
        if (count == out.size()) return false;
        out[count++] = make_match(m);
        return true;
    });
    return count;
}

std::size_t PrefixTable::memory_bytes() const {
    return trie_.bytes() + matches_.capacity() * sizeof(MatchEntry) +
           list_ids_.capacity() * sizeof(std::uint32_t);
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

Glob::Glob(std::string_view pattern) : pattern_(pattern), glob_(pattern) {}

bool Glob::matches(std::string_view text) const {
    return glob_.matches(text);
}

ExactGlob::ExactGlob(std::string_view pattern) : pattern_(pattern) {}

bool ExactGlob::matches(std::string_view text) const {
    return base::glob_match(pattern_, text);
}

const Glob* ScannerSignatures::match(std::string_view user_agent) const {
    for (const auto& g : user_agents)
        if (g.matches(user_agent)) return &g;
    return nullptr;
}

}  // namespace sbc::policy

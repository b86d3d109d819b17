// Compiled lookup structures of a policy: destination prefix trie, CIDR sets, globs.
#include <algorithm>

#include "policy/policy.hpp"

namespace sbc::policy {

// ---------------------------------------------------------------------------------------------
// PrefixTable

namespace {
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
        bool valid =
            !digits.empty() && digits.size() <= 255 &&
            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!valid) {
            t.list_ids_.resize(m.first_list);
            continue;
        }
        t.matches_.push_back(m);
        std::uint32_t n = 0;
        for (char c : digits) {
            const std::size_t slot = std::size_t{n} * kStride + digit_of(c);
            if (t.nodes_[slot] == 0) {
                t.nodes_[slot] = static_cast<std::uint32_t>(nodes++);
                t.nodes_.resize(nodes * kStride, 0);
            }
            n = t.nodes_[slot];
        }
        t.nodes_[std::size_t{n} * kStride + kMatchSlot] =
            static_cast<std::uint32_t>(t.matches_.size());
    }
    t.node_count_ = nodes;
    t.nodes_.shrink_to_fit();
    // Push each match down to the nodes below it that have none of their own. A child is always
    // created after its parent, so one pass in id order sees parents first.
    for (std::size_t n = 0; n < nodes; ++n) {
        const std::uint32_t m = t.nodes_[n * kStride + kMatchSlot];
        for (unsigned d = 0; d < 10; ++d) {
            const std::uint32_t c = t.nodes_[n * kStride + d];
            if (c && t.nodes_[std::size_t{c} * kStride + kMatchSlot] == 0)
                t.nodes_[std::size_t{c} * kStride + kMatchSlot] = m;
        }
    }
    // Resolve the first direct_digits_ digits once, by a walk over the top of the trie: a
    // missing child fills its whole range of slots with the best match so far.
    t.direct_digits_ = t.matches_.size() >= kLargeTable ? 6 : 4;
    const std::uint32_t direct_size = t.direct_digits_ == 6 ? 1'000'000 : 10'000;
    t.direct_.assign(direct_size, 0);
    struct Frame {
        std::uint32_t node, depth, index;
    };
    std::vector<Frame> stack{{0, 0, 0}};
    while (!stack.empty()) {
        const Frame f = stack.back();
        stack.pop_back();
        const std::uint32_t* nd = t.nodes_.data() + std::size_t{f.node} * kStride;
        std::uint32_t span = 1;  // slots covered by one child at depth f.depth + 1
        for (std::uint32_t k = f.depth + 1; k < t.direct_digits_; ++k) span *= 10;
        for (std::uint32_t d = 0; d < 10; ++d) {
            const std::uint32_t idx = f.index * 10 + d;
            const std::uint32_t c = nd[d];
            if (c == 0) {
                std::fill_n(t.direct_.begin() + std::size_t{idx} * span, span,
                            kMatchOnly | nd[kMatchSlot]);
            } else if (f.depth + 1 == t.direct_digits_) {
                t.direct_[idx] = c;
            } else {
                stack.push_back({c, f.depth + 1, idx});
            }
        }
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

namespace {
// Index of the first `k` digits in the direct table, or -1 if they are not all digits.
inline std::int64_t direct_index(std::string_view s, std::uint32_t k) {
    if (s.size() < k) return -1;
    std::uint32_t idx = 0;
    bool bad = false;
    for (std::uint32_t i = 0; i < k; ++i) {
        const unsigned d = digit_of(s[i]);
        bad |= d > 9;
        idx = idx * 10 + d;
    }
    return bad ? -1 : static_cast<std::int64_t>(idx);
}
}  // namespace

PrefixMatch PrefixTable::lpm(std::string_view digits) const noexcept {
    if (matches_.empty()) return {};
    const std::uint32_t* nodes = nodes_.data();
    std::uint32_t n = 0;
    std::size_t i = 0;
    if (const auto idx = direct_index(digits, direct_digits_); idx >= 0) {
        const std::uint32_t slot = direct_[static_cast<std::size_t>(idx)];
        if (slot & kMatchOnly) return make_match(slot & ~kMatchOnly);
        n = slot;
        i = direct_digits_;
    }
    for (; i < digits.size(); ++i) {
        const unsigned d = digit_of(digits[i]);
        if (d > 9) break;
        const std::uint32_t c = nodes[std::size_t{n} * kStride + d];
        if (c == 0) break;
        n = c;
    }
    return make_match(nodes[std::size_t{n} * kStride + kMatchSlot]);
}

void PrefixTable::lpm_batch(std::span<const std::string_view> numbers,
                            std::span<PrefixMatch> out) const noexcept {
    const std::size_t count = std::min(numbers.size(), out.size());
    if (matches_.empty()) {
        for (std::size_t i = 0; i < count; ++i) out[i] = {};
        return;
    }
    constexpr std::size_t kLanes = 16;
    const std::uint32_t* nodes = nodes_.data();
    for (std::size_t base = 0; base < count; base += kLanes) {
        const std::size_t lanes = std::min(kLanes, count - base);
        std::uint32_t node[kLanes], result[kLanes], pos[kLanes];
        std::uint8_t active[kLanes];
        std::int64_t first[kLanes];
        std::size_t n_active = 0;
        // The direct table is large (4 MB with 6 digits): fetch every lane's slot first.
        for (std::size_t l = 0; l < lanes; ++l) {
            first[l] = direct_index(numbers[base + l], direct_digits_);
            if (first[l] >= 0) __builtin_prefetch(&direct_[static_cast<std::size_t>(first[l])]);
        }
        for (std::size_t l = 0; l < lanes; ++l) {
            node[l] = 0;  // root
            pos[l] = 0;
            result[l] = 0;
            if (first[l] >= 0) {
                const std::uint32_t slot = direct_[static_cast<std::size_t>(first[l])];
                if (slot & kMatchOnly) {
                    result[l] = slot & ~kMatchOnly;
                    continue;
                }
                node[l] = slot;
                pos[l] = direct_digits_;
            }
            __builtin_prefetch(nodes + std::size_t{node[l]} * kStride);
            active[n_active++] = static_cast<std::uint8_t>(l);
        }
        // Each round advances every live walk by one (prefetched) node and prefetches the next.
        while (n_active) {
            std::size_t kept = 0;
            for (std::size_t k = 0; k < n_active; ++k) {
                const std::size_t l = active[k];
                const std::uint32_t* nd = nodes + std::size_t{node[l]} * kStride;
                const std::string_view s = numbers[base + l];
                const unsigned d = pos[l] < s.size() ? digit_of(s[pos[l]]) : 10u;
                const std::uint32_t child = d <= 9 ? nd[d] : 0;
                if (child == 0) {
                    result[l] = nd[kMatchSlot];
                    continue;
                }
                node[l] = child;
                pos[l]++;
                __builtin_prefetch(nodes + std::size_t{child} * kStride);
                active[kept++] = static_cast<std::uint8_t>(l);
            }
            n_active = kept;
        }
        for (std::size_t l = 0; l < lanes; ++l) out[base + l] = make_match(result[l]);
    }
}

std::size_t PrefixTable::all_matches(std::string_view digits,
                                     std::span<PrefixMatch> out) const noexcept {
    if (matches_.empty()) return 0;
    std::size_t count = 0;
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < digits.size() && count < out.size(); ++i) {
        const unsigned d = digit_of(digits[i]);
        if (d > 9) break;
        const std::uint32_t c = nodes_[std::size_t{n} * kStride + d];
        if (c == 0) break;
        // A node has a prefix of its own when its (pushed) match differs from its parent's.
        const std::uint32_t m = nodes_[std::size_t{c} * kStride + kMatchSlot];
        if (m != 0 && m != nodes_[std::size_t{n} * kStride + kMatchSlot])
            out[count++] = make_match(m);
        n = c;
    }
    return count;
}

std::size_t PrefixTable::memory_bytes() const {
    return nodes_.capacity() * sizeof(std::uint32_t) + direct_.capacity() * sizeof(std::uint32_t) +
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

#pragma once
// A trie over decimal digits for prefix lookups on E.164 numbers: the fraud engine's prefix
// lists and calling codes, the policy's prefix table and numbering. One node is one cache
// line (ten 32-bit child indexes and a 64-bit value) in one flat array, so a walk reads one
// line per digit and nothing else. Each node carries a value that callers use as a bitmask
// (OR along the path: the lists a number is on) or as a 1-based index (the deepest one: the
// longest prefix); 0 means "no prefix ends here".
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace sbc::base {

class DigitTrie {
  public:
    DigitTrie() : nodes_(1) {}

    // Sets (or ORs into, with `or_bits`) the value of the node at `digits`. Characters other
    // than digits are skipped ("+44 20" is 4420); no digits at all: nothing is added (an
    // empty prefix would match every number). Build time only.
    void add(std::string_view digits, std::uint64_t value, bool or_bits) {
        std::uint32_t n = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') continue;
            const unsigned d = static_cast<unsigned>(c - '0');
            if (nodes_[n].child[d] == 0) {
                nodes_[n].child[d] = static_cast<std::uint32_t>(nodes_.size());
                nodes_.emplace_back();
            }
            n = nodes_[n].child[d];
        }
        if (n == 0) return;
        nodes_[n].value = or_bits ? (nodes_[n].value | value) : value;
    }

    struct Walk {
        std::uint64_t mask = 0;        // OR of the values of every prefix of the number
        std::uint64_t deepest = 0;     // value of the longest prefix
        std::uint8_t deepest_len = 0;  // its length in digits (0 = no prefix matched)
    };
    // The prefixes of `digits` in the trie. The walk ends at the first character that is not
    // a digit, or where the trie does.
    Walk walk(std::string_view digits) const noexcept {
        Walk w;
        std::uint32_t n = 0;
        std::uint8_t depth = 0;
        const Node* nodes = nodes_.data();
        for (char c : digits) {
            const unsigned d = static_cast<unsigned char>(c) - unsigned{'0'};
            if (d > 9) break;
            const std::uint32_t next = nodes[n].child[d];
            if (next == 0) break;
            n = next;
            ++depth;
            if (const std::uint64_t v = nodes[n].value; v != 0) {
                w.mask |= v;
                w.deepest = v;
                w.deepest_len = depth;
            }
        }
        return w;
    }

    // Calls f(length, value) for every prefix of `digits` in the trie, shortest first, until
    // f returns false.
    template <class F>
    void for_each_prefix(std::string_view digits, F&& f) const {
        std::uint32_t n = 0;
        std::size_t depth = 0;
        for (char c : digits) {
            const unsigned d = static_cast<unsigned char>(c) - unsigned{'0'};
            if (d > 9) break;
            const std::uint32_t next = nodes_[n].child[d];
            if (next == 0) break;
            n = next;
            ++depth;
            if (nodes_[n].value != 0 && !f(depth, nodes_[n].value)) return;
        }
    }

    std::size_t node_count() const { return nodes_.size(); }
    std::size_t bytes() const { return nodes_.capacity() * sizeof(Node); }
    // Gives back what the build reserved beyond the nodes.
    void shrink_to_fit() { nodes_.shrink_to_fit(); }

  private:
    struct alignas(64) Node {
        std::uint32_t child[10] = {};  // 0 = none (the root is nobody's child)
        std::uint64_t value = 0;
    };
    static_assert(sizeof(Node) == 64);
    std::vector<Node> nodes_;
};

}  // namespace sbc::base

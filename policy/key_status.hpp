#pragma once
// Internal to policy/: the notices for keys that are accepted but not enforced yet.
#include <vector>

#include "policy/toml_reader.hpp"

namespace sbc::policy::detail {

// Walks every key of `doc` (read from ctx.files[file]) and appends a notice for each key the
// running daemon does not enforce (or enforces for other values only), at the key's position.
// A key with no entry in `table` gets a notice too: nothing is silently ignored.
void collect_key_notices(const Context& ctx, std::uint32_t file, const toml::table& doc,
                         std::span<const KeyStatus> table, std::vector<Diagnostic>& out);

// Drops the notices at a position that also has an error, and sorts the rest by file (in
// `ctx.files` order), line and column.
void finish_notices(const Context& ctx, std::vector<Diagnostic>& notices);

}  // namespace sbc::policy::detail

#pragma once
// Internal to policy/: typed reading of toml++ tables with source positions, shared by the
// policy loader and the node-config loader. Every problem becomes a Diagnostic; reading goes
// on after an error so that all errors are reported at once.
#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"

namespace sbc::policy::detail {

struct Pos {
    std::uint32_t file = 0;  // index in Context::files
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

template <class T>
struct Located {
    T value;
    Pos pos;
};

struct Context {
    std::vector<std::string> files;
    std::vector<Diagnostic> errors;
    // Scalar keys set so far ("fraud.block_threshold") and where: a second setting in another
    // file is a conflict, not a silent override.
    std::map<std::string, Pos, std::less<>> scalar_keys;
    // Where keys live ("block_threshold" -> "fraud"), to point at the right table when a key
    // is written in the wrong one.
    std::map<std::string_view, std::string_view> key_homes;

    std::uint32_t add_file(const std::string& name);
    void error(Pos p, std::string message);
    std::string where(Pos p) const;  // "file:line:column"
};

std::string_view type_name(const toml::node& n);
// Closest candidate within a small edit distance, or "" (for "did you mean").
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates);
// Parses "30s", "15m", "1h", "2d", "250ms"; false on anything else.
bool parse_duration(std::string_view text, base::Nanos& out);
std::string format_duration(base::Nanos d);

class Table {
  public:
    Table(Context& ctx, std::uint32_t file, const toml::table& t, std::string path)
        : ctx_(ctx), file_(file), t_(t), path_(std::move(path)) {}

    Context& ctx() const { return ctx_; }
    std::uint32_t file() const { return file_; }
    const toml::table& raw() const { return t_; }
    const std::string& path() const { return path_; }
    Pos pos() const { return pos_of(t_); }
    Pos pos_of(const toml::node& n) const;
    Pos key_pos(std::string_view key) const;
    std::string key_path(std::string_view key) const;
    // The key path in single quotes, as error messages show it. Built by appending: GCC 12 at -O3
    // reports a false -Wrestrict overlap for `"'" + key_path(key)` (literal + temporary).
    std::string quoted_path(std::string_view key) const;
    void error(Pos p, std::string message) const { ctx_.error(p, std::move(message)); }

    // Reports every key not in `known`, with a did-you-mean.
    void only_keys(std::span<const std::string_view> known) const;
    // For settings that may be given once over all files: false (and an error) when the same
    // key path was already set elsewhere.
    bool claim(std::string_view key) const;

    bool has(std::string_view key) const { return t_.get(key) != nullptr; }
    const toml::node* get(std::string_view key) const { return t_.get(key); }
    bool string(std::string_view key, std::string& out, Pos* where = nullptr) const;
    bool integer(std::string_view key, std::int64_t& out, std::int64_t lo, std::int64_t hi) const;
    bool number(std::string_view key, double& out, double lo, double hi) const;
    bool boolean(std::string_view key, bool& out) const;
    bool duration(std::string_view key, base::Nanos& out, base::Nanos lo, base::Nanos hi) const;
    bool strings(std::string_view key, std::vector<Located<std::string>>& out) const;
    // One of `names`; out is the index.
    bool choice(std::string_view key, std::span<const std::string_view> names, std::size_t& out,
                Pos* where = nullptr) const;
    // A sub-table (or nullptr, with an error when the key holds something else).
    const toml::table* table(std::string_view key) const;
    // An array of tables ([[x]]), each element checked to be a table.
    std::vector<const toml::table*> tables(std::string_view key) const;

  private:
    Context& ctx_;
    std::uint32_t file_;
    const toml::table& t_;
    std::string path_;
};

// Reads and parses a TOML file or string; syntax errors go to ctx. nullopt on failure.
std::optional<toml::table> parse_toml(Context& ctx, std::uint32_t file, std::string_view text);
bool read_file(const std::string& path, std::string& out);
std::string dirname_of(const std::string& path);
std::string join_path(const std::string& dir, const std::string& rel);

}  // namespace sbc::policy::detail

#include "policy/toml_reader.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sbc::policy::detail {

std::uint32_t Context::add_file(const std::string& name) {
    files.push_back(name);
    return static_cast<std::uint32_t>(files.size() - 1);
}

void Context::error(Pos p, std::string message) {
    Diagnostic d;
    d.file = p.file < files.size() ? files[p.file] : std::string("<input>");
    d.line = p.line;
    d.column = p.column;
    d.message = std::move(message);
    errors.push_back(std::move(d));
}

std::string Context::where(Pos p) const {
    std::string f = p.file < files.size() ? files[p.file] : std::string("<input>");
    return f + ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
}

std::string_view type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        default:
            return "nothing";
    }
}

namespace {
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string join_names(std::span<const std::string_view> names) {
    std::string out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i) out += ", ";
        out += names[i];
    }
    return out;
}
}  // namespace

std::string_view closest(std::string_view word, std::span<const std::string_view> candidates) {
    if (word.size() > 64) return {};
    std::string_view best;
    // Allow about one typo per three characters, and never replace most of the word.
    std::size_t best_d = std::max<std::size_t>(1, word.size() / 3) + 1;
    for (auto c : candidates) {
        std::size_t d = edit_distance(word, c);
        if (d < best_d && d < word.size()) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

bool parse_duration(std::string_view text, base::Nanos& out) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || p == text.data() || n < 0) return false;
    std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
    std::int64_t mult = 0;
    if (unit == "ms")
        mult = base::kNanosPerMilli;
    else if (unit == "s")
        mult = base::kNanosPerSecond;
    else if (unit == "m")
        mult = 60 * base::kNanosPerSecond;
    else if (unit == "h")
        mult = 3600 * base::kNanosPerSecond;
    else if (unit == "d")
        mult = 86400 * base::kNanosPerSecond;
    else
        return false;
    // Bound to 10 years so arithmetic on durations never overflows.
    if (n > 3650LL * 86400 * 1000 * base::kNanosPerMilli / mult) return false;
    out = n * mult;
    return true;
}

std::string format_duration(base::Nanos d) {
    struct Unit {
        base::Nanos size;
        const char* name;
    };
    static constexpr Unit kUnits[] = {{86400 * base::kNanosPerSecond, "d"},
                                      {3600 * base::kNanosPerSecond, "h"},
                                      {60 * base::kNanosPerSecond, "m"},
                                      {base::kNanosPerSecond, "s"},
                                      {base::kNanosPerMilli, "ms"}};
    if (d == 0) return "0s";
    for (const auto& u : kUnits)
        if (d % u.size == 0) return std::to_string(d / u.size) + u.name;
    return std::to_string(d / base::kNanosPerMilli) + "ms";
}

Pos Table::pos_of(const toml::node& n) const {
    const auto& s = n.source();
    return Pos{file_, s.begin.line, s.begin.column};
}

Pos Table::key_pos(std::string_view key) const {
    for (auto&& [k, v] : t_) {
        if (k.str() == key) {
            const auto& s = k.source();
            if (s.begin.line) return Pos{file_, s.begin.line, s.begin.column};
            return pos_of(v);
        }
    }
    return pos();
}

std::string Table::key_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

std::string Table::quoted_path(std::string_view key) const {
    std::string q;
    q.reserve(path_.size() + key.size() + 3);
    q += '\'';
    if (!path_.empty()) {
        q += path_;
        q += '.';
    }
    q += key;
    q += '\'';
    return q;
}

void Table::only_keys(std::span<const std::string_view> known) const {
    for (auto&& [k, v] : t_) {
        std::string_view name = k.str();
        if (std::find(known.begin(), known.end(), name) != known.end()) continue;
        const auto& s = k.source();
        Pos p = s.begin.line ? Pos{file_, s.begin.line, s.begin.column} : pos_of(v);
        std::string msg = "unknown key '" + key_path(name) + "'";
        auto home = ctx_.key_homes.find(name);
        if (auto guess = closest(name, known); !guess.empty())
            msg += "; did you mean '" + std::string(guess) + "'?";
        else if (home != ctx_.key_homes.end() && home->second != path_)
            msg += "; it belongs in [" + std::string(home->second) + "]";
        else
            msg += "; expected one of: " + join_names(known);
        error(p, std::move(msg));
    }
}

bool Table::claim(std::string_view key) const {
    std::string path = key_path(key);
    Pos here = key_pos(key);
    auto [it, inserted] = ctx_.scalar_keys.emplace(path, here);
    if (inserted) return true;
    error(here, "'" + path + "' is already set at " + ctx_.where(it->second) +
                    "; a setting may be given only once across all policy files");
    return false;
}

bool Table::string(std::string_view key, std::string& out, Pos* where) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    if (where) *where = pos_of(*n);
    if (auto s = n->as_string()) {
        out = s->get();
        return true;
    }
    error(pos_of(*n), quoted_path(key) + " must be a string, not " + std::string(type_name(*n)));
    return false;
}

bool Table::integer(std::string_view key, std::int64_t& out, std::int64_t lo,
                    std::int64_t hi) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    auto v = n->as_integer();
    if (!v) {
        error(pos_of(*n),
              quoted_path(key) + " must be an integer, not " + std::string(type_name(*n)));
        return false;
    }
    if (v->get() < lo || v->get() > hi) {
        error(pos_of(*n), quoted_path(key) + " = " + std::to_string(v->get()) +
                              " is out of range [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
        return false;
    }
    out = v->get();
    return true;
}

bool Table::number(std::string_view key, double& out, double lo, double hi) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    double d = 0;
    if (auto i = n->as_integer()) {
        d = static_cast<double>(i->get());
    } else if (auto f = n->as_floating_point()) {
        d = f->get();
    } else {
        error(pos_of(*n),
              quoted_path(key) + " must be a number, not " + std::string(type_name(*n)));
        return false;
    }
    if (!std::isfinite(d) || d < lo || d > hi) {
        std::ostringstream os;
        os << "'" << key_path(key) << "' = " << d << " is out of range [" << lo << ", " << hi
           << "]";
        error(pos_of(*n), os.str());
        return false;
    }
    out = d;
    return true;
}

bool Table::boolean(std::string_view key, bool& out) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    if (auto b = n->as_boolean()) {
        out = b->get();
        return true;
    }
    error(pos_of(*n),
          quoted_path(key) + " must be true or false, not " + std::string(type_name(*n)));
    return false;
}

bool Table::duration(std::string_view key, base::Nanos& out, base::Nanos lo, base::Nanos hi) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    auto s = n->as_string();
    base::Nanos d = 0;
    if (!s || !parse_duration(s->get(), d)) {
        error(pos_of(*n), quoted_path(key) +
                              " must be a duration string such as \"30s\", \"15m\", \"1h\", "
                              "\"2d\" (or \"500ms\")");
        return false;
    }
    if (d < lo || d > hi) {
        error(pos_of(*n), quoted_path(key) + " = \"" + std::string(s->get()) +
                              "\" is out of range [" + format_duration(lo) + ", " +
                              format_duration(hi) + "]");
        return false;
    }
    out = d;
    return true;
}

bool Table::strings(std::string_view key, std::vector<Located<std::string>>& out) const {
    const toml::node* n = t_.get(key);
    if (!n) return false;
    auto arr = n->as_array();
    if (!arr) {
        error(pos_of(*n),
              quoted_path(key) + " must be an array of strings, not " + std::string(type_name(*n)));
        return false;
    }
    bool ok = true;
    for (const auto& el : *arr) {
        if (auto s = el.as_string()) {
            out.push_back({s->get(), pos_of(el)});
        } else {
            error(pos_of(el),
                  quoted_path(key) + " must hold strings, not " + std::string(type_name(el)));
            ok = false;
        }
    }
    return ok;
}

bool Table::choice(std::string_view key, std::span<const std::string_view> names, std::size_t& out,
                   Pos* where) const {
    std::string value;
    Pos p;
    if (!string(key, value, &p)) return false;
    if (where) *where = p;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == value) {
            out = i;
            return true;
        }
    }
    // With a likely typo, the suggestion says more than the full list of values.
    std::string msg = quoted_path(key) + " = \"" + value + "\" ";
    if (auto guess = closest(value, names); !guess.empty())
        msg += "is not a known value; did you mean \"" + std::string(guess) + "\"?";
    else
        msg += "is not one of: " + join_names(names);
    error(p, std::move(msg));
    return false;
}

const toml::table* Table::table(std::string_view key) const {
    const toml::node* n = t_.get(key);
    if (!n) return nullptr;
    if (auto t = n->as_table()) return t;
    error(pos_of(*n), quoted_path(key) + " must be a table, not " + std::string(type_name(*n)));
    return nullptr;
}

std::vector<const toml::table*> Table::tables(std::string_view key) const {
    std::vector<const toml::table*> out;
    const toml::node* n = t_.get(key);
    if (!n) return out;
    auto arr = n->as_array();
    if (!arr) {
        error(pos_of(*n), quoted_path(key) + " must be an array of tables ([[" + key_path(key) +
                              "]]), not " + std::string(type_name(*n)));
        return out;
    }
    for (const auto& el : *arr) {
        if (auto t = el.as_table())
            out.push_back(t);
        else
            error(pos_of(el),
                  quoted_path(key) + " must hold tables, not " + std::string(type_name(el)));
    }
    return out;
}

std::optional<toml::table> parse_toml(Context& ctx, std::uint32_t file, std::string_view text) {
    try {
        return toml::parse(text, ctx.files[file]);
    } catch (const toml::parse_error& e) {
        const auto& s = e.source();
        ctx.error(Pos{file, s.begin.line, s.begin.column},
                  "TOML syntax: " + std::string(e.description()));
    }
    return std::nullopt;
}

bool read_file(const std::string& path, std::string& out) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return false;  // directories, devices
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return false;
    out = ss.str();
    return true;
}

std::string dirname_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string join_path(const std::string& dir, const std::string& rel) {
    if (!rel.empty() && rel.front() == '/') return rel;
    if (dir.empty() || dir == ".") return rel;
    return dir + "/" + rel;
}

}  // namespace sbc::policy::detail

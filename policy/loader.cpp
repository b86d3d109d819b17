// Policy loader: TOML files (with includes) -> raw typed values with positions -> semantic
// checks over the whole policy -> compiled snapshot.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "policy/key_status.hpp"
#include "policy/toml_reader.hpp"

namespace sbc::policy {

using detail::Context;
using detail::Located;
using detail::Pos;
using detail::Table;

namespace {

constexpr std::size_t kMaxIncludeDepth = 16;
constexpr std::size_t kMaxE164Digits = 15;  // ITU-T E.164 §6.1
constexpr std::size_t kMaxOwnNetworks = 64;

constexpr std::string_view kTopKeys[] = {
    "include",  "policy",    "access",       "rate_limits",    "bans", "scanners",
    "topology", "numbering", "prefix_lists", "account_groups", "fraud"};

template <class Enum, std::size_t N>
std::span<const std::string_view> names_of(const std::array<std::string_view, N>& a) {
    return std::span<const std::string_view>(a.data(), a.size());
}

constexpr const auto& kModeNames = base::kFraudModeNames;
constexpr const auto& kTimeNames = base::kFraudTimeScopeNames;
constexpr std::string_view kDenyActionNames[] = {"block", "ban"};
constexpr std::string_view kCompareOpSpellings[] = {">", ">=", "<", "<=", "=="};

// Positions the semantic checks need, next to the typed values being built.
struct RawPrefixList {
    Pos pos;  // of the [[prefix_lists]] table
    Pos name_pos;
    std::vector<Pos> prefix_pos;  // parallel to PrefixList::prefixes
};
struct RawGroup {
    Pos pos;
    Pos name_pos;
    Pos tenant_pos;
    std::vector<Pos> account_pos;
};
struct RawRule {
    Pos pos;
    Pos id_pos;
    std::vector<Pos> tenant_pos, group_pos, list_pos;
    Pos dest_pos;
    Pos threshold_pos;
    bool has_lists = false;
};
struct RawDeny {
    Pos pos;
    Pos id_pos;
    Pos dest_pos;
    Pos callers_pos;
};
struct RawCidr {
    base::Prefix prefix;
    Pos pos;
    std::uint32_t tag;
};

// What the sections declare that others refer to, collected by the whole-policy checks.
struct Declared {
    std::unordered_map<std::string_view, std::size_t> lists;   // prefix list name -> index
    std::unordered_map<std::string_view, std::size_t> groups;  // account group name -> index
    std::set<std::string_view> tenants;                        // named by account groups
    std::unordered_map<std::string_view, Pos> rule_ids;        // rules and deny rules
};

struct Loader {
    Context ctx;
    LoadOptions options;
    std::shared_ptr<Policy> p = std::make_shared<Policy>();
    std::vector<RawPrefixList> raw_lists;
    std::vector<RawGroup> raw_groups;
    std::vector<RawRule> raw_rules;
    std::vector<RawDeny> raw_deny;
    std::vector<RawCidr> allow, deny, trusted, internal;
    std::vector<RawCidr> own;  // [fraud] own_networks
    bool own_given = false;
    std::vector<Located<std::string>> scanner_patterns;
    std::vector<Diagnostic> notices;  // keys accepted but not enforced yet
    Pos fraud_pos{};
    std::vector<Pos> callback_list_pos;
    bool block_set = false;
    Pos thresholds_pos{};
    Pos bans_pos{};
    std::vector<std::string> include_stack;  // canonical paths being loaded
    std::set<std::string> loaded;            // canonical paths loaded so far
    std::uint64_t hash = base::kFnv1a64Seed;

    void hash_bytes(std::string_view bytes) {
        hash = base::fnv1a64("\xff", base::fnv1a64(bytes, hash));  // 0xff: file separator
    }

    // ---- documents
    void load_path(const std::string& path, const Pos* included_from);
    void load_text(std::uint32_t file, std::string_view text, const std::string& dir);
    void read_document(Table& top, const std::string& dir);

    // ---- sections
    void read_policy(const Table& t);
    void read_access(const Table& t);
    void read_cidrs(const Table& t, std::string_view key, std::vector<RawCidr>& out,
                    std::vector<base::Prefix>* keep, std::uint32_t tag);
    void read_rate_limits(const Table& t);
    void read_bans(const Table& t);
    void read_scanners(const Table& t);
    void read_topology(const Table& t);
    void read_numbering(const Table& t);
    void read_prefix_list(const Table& t, const std::string& dir);
    void read_prefix_file(const std::string& path, Pos where, PrefixList& list, RawPrefixList& raw);
    bool check_prefix(std::string_view digits, Pos where, std::string_view list_name);
    void read_group(const Table& t);
    void read_fraud(const Table& t);
    void read_rule(const Table& t);
    void read_deny(const Table& t);
    bool check_country(const Located<std::string>& c, std::string_view what);

    // ---- whole-policy checks (one per section) and compilation
    void check_and_link();
    void check_prefix_lists(Declared& names);
    void check_account_groups(Declared& names);
    void check_fraud_thresholds();
    void check_bans();
    void link_rules(Declared& names);
    void link_deny_rules(Declared& names);
    void check_access();
    void check_rule_id(Declared& names, const std::string& id, Pos pos);
    std::int32_t resolve_list(const Declared& names, const std::string& n, Pos pos,
                              std::string_view what);
    void compile();
};

std::string canonical(const std::string& path) {
    std::error_code ec;
    auto c = std::filesystem::weakly_canonical(path, ec);
    return ec ? path : c.string();
}

void Loader::load_path(const std::string& path, const Pos* included_from) {
    std::string canon = canonical(path);
    if (std::find(include_stack.begin(), include_stack.end(), canon) != include_stack.end()) {
        ctx.error(*included_from, "include cycle: '" + path + "' is already being loaded");
        return;
    }
    if (loaded.count(canon)) {
        // A shared file (scanner signatures, a big list) included from several policies is
        // read once; naming the same file twice on the command line is a mistake.
        if (included_from) return;
        ctx.error(Pos{ctx.add_file(path), 0, 0}, "'" + path + "' is given twice");
        return;
    }
    if (include_stack.size() >= kMaxIncludeDepth) {
        ctx.error(*included_from,
                  "includes nested deeper than " + std::to_string(kMaxIncludeDepth) + " levels");
        return;
    }
    std::string text;
    if (!detail::read_file(path, text)) {
        if (included_from)
            ctx.error(*included_from, "cannot read included file '" + path + "'");
        else
            ctx.error(Pos{ctx.add_file(path), 0, 0}, "cannot read file");
        return;
    }
    loaded.insert(canon);
    include_stack.push_back(canon);
    std::uint32_t file = ctx.add_file(path);
    p->source_files.push_back(path);
    load_text(file, text, detail::dirname_of(path));
    include_stack.pop_back();
}

void Loader::load_text(std::uint32_t file, std::string_view text, const std::string& dir) {
    hash_bytes(text);
    auto doc = detail::parse_toml(ctx, file, text);
    if (!doc) return;
    detail::collect_key_notices(ctx, file, *doc, policy_key_status(), notices);
    Table top(ctx, file, *doc, "");
    read_document(top, dir);
}

void Loader::read_document(Table& top, const std::string& dir) {
    top.only_keys(kTopKeys);
    if (auto t = top.table("policy")) read_policy(Table(ctx, top.file(), *t, "policy"));
    if (auto t = top.table("access")) read_access(Table(ctx, top.file(), *t, "access"));
    if (auto t = top.table("rate_limits"))
        read_rate_limits(Table(ctx, top.file(), *t, "rate_limits"));
    if (auto t = top.table("bans")) read_bans(Table(ctx, top.file(), *t, "bans"));
    if (auto t = top.table("scanners")) read_scanners(Table(ctx, top.file(), *t, "scanners"));
    if (auto t = top.table("topology")) read_topology(Table(ctx, top.file(), *t, "topology"));
    if (auto t = top.table("numbering")) read_numbering(Table(ctx, top.file(), *t, "numbering"));
    std::size_t i = 0;
    for (auto t : top.tables("prefix_lists"))
        read_prefix_list(Table(ctx, top.file(), *t, "prefix_lists[" + std::to_string(i++) + "]"),
                         dir);
    i = 0;
    for (auto t : top.tables("account_groups"))
        read_group(Table(ctx, top.file(), *t, "account_groups[" + std::to_string(i++) + "]"));
    if (auto t = top.table("fraud")) read_fraud(Table(ctx, top.file(), *t, "fraud"));

    std::vector<Located<std::string>> includes;
    top.strings("include", includes);
    for (const auto& inc : includes) {
        if (!options.allow_includes) {
            ctx.error(inc.pos, "include is disabled here");
            continue;
        }
        if (inc.value.empty()) {
            ctx.error(inc.pos, "include path is empty");
            continue;
        }
        load_path(detail::join_path(dir, inc.value), &inc.pos);
    }
}

void Loader::read_policy(const Table& t) {
    static constexpr std::string_view kKeys[] = {"name"};
    t.only_keys(kKeys);
    if (t.has("name") && t.claim("name")) t.string("name", p->name);
}

void Loader::read_cidrs(const Table& t, std::string_view key, std::vector<RawCidr>& out,
                        std::vector<base::Prefix>* keep, std::uint32_t tag) {
    std::vector<Located<std::string>> items;
    t.strings(key, items);
    for (const auto& s : items) {
        auto prefix = base::Prefix::parse(s.value);
        if (!prefix) {
            t.error(s.pos, "'" + s.value + "' is not an IPv4/IPv6 address or CIDR prefix");
            continue;
        }
        // A prefix written with host bits ("10.0.0.1/8") usually hides a typo.
        auto addr = base::IpAddress::parse(s.value.substr(0, s.value.find('/')));
        if (addr && *addr != prefix->address()) {
            t.error(s.pos, "'" + s.value + "' has host bits set; did you mean '" +
                               prefix->to_string() + "'?");
            continue;
        }
        out.push_back({*prefix, s.pos, keep ? static_cast<std::uint32_t>(keep->size()) : tag});
        if (keep) keep->push_back(*prefix);
    }
}

void Loader::read_access(const Table& t) {
    static constexpr std::string_view kKeys[] = {"default", "allow", "deny", "trusted", "internal"};
    t.only_keys(kKeys);
    static constexpr std::string_view kDefaults[] = {"allow", "deny"};
    std::size_t d = 0;
    if (t.has("default") && t.claim("default") && t.choice("default", kDefaults, d))
        p->access.default_allow = d == 0;
    read_cidrs(t, "allow", allow, &p->access.allow_cidrs, 0);
    read_cidrs(t, "deny", deny, &p->access.deny_cidrs, 0);
    read_cidrs(t, "internal", internal, &p->access.internal_cidrs, 0);
    std::size_t i = 0;
    for (auto tt : t.tables("trusted")) {
        Table tr(ctx, t.file(), *tt, "access.trusted[" + std::to_string(i++) + "]");
        static constexpr std::string_view kTrustedKeys[] = {"name", "cidrs"};
        tr.only_keys(kTrustedKeys);
        TrustedTrunk trunk;
        if (!tr.string("name", trunk.name)) {
            if (!tr.has("name")) tr.error(tr.pos(), "trusted trunk needs a 'name'");
        }
        for (const auto& other : p->access.trusted_trunks)
            if (!trunk.name.empty() && other.name == trunk.name)
                tr.error(tr.key_pos("name"), "duplicate trusted trunk name '" + trunk.name + "'");
        auto tag = static_cast<std::uint32_t>(p->access.trusted_trunks.size());
        std::size_t before = trusted.size();
        read_cidrs(tr, "cidrs", trusted, nullptr, tag);
        for (std::size_t k = before; k < trusted.size(); ++k)
            trunk.cidrs.push_back(trusted[k].prefix);
        if (!tr.has("cidrs")) tr.error(tr.pos(), "trusted trunk needs 'cidrs'");
        p->access.trusted_trunks.push_back(std::move(trunk));
    }
}

void Loader::read_rate_limits(const Table& t) {
    static constexpr std::string_view kKeys[] = {
        "source_prefix_v4", "source_prefix_v6", "register", "invite", "other",
        "tcp_connect",      "media_unallocated"};
    t.only_keys(kKeys);
    std::int64_t v = 0;
    if (t.has("source_prefix_v4") && t.claim("source_prefix_v4") &&
        t.integer("source_prefix_v4", v, 8, 32))
        p->rate_limits.source_prefix_v4 = static_cast<std::uint8_t>(v);
    if (t.has("source_prefix_v6") && t.claim("source_prefix_v6") &&
        t.integer("source_prefix_v6", v, 16, 128))
        p->rate_limits.source_prefix_v6 = static_cast<std::uint8_t>(v);
    for (std::size_t c = 0; c < kTrafficClassCount; ++c) {
        auto cls = static_cast<TrafficClass>(c);
        auto ct = t.table(toml_name(cls));
        if (!ct) continue;
        Table ctab(ctx, t.file(), *ct, t.key_path(toml_name(cls)));
        static constexpr std::string_view kKeyNames[] = {"per_source", "per_prefix", "per_account"};
        ctab.only_keys(kKeyNames);
        for (std::size_t k = 0; k < kLimitKeyCount; ++k) {
            auto lk = static_cast<LimitKey>(k);
            auto lt = ctab.table(toml_name(lk));
            if (!lt) continue;
            Table ltab(ctx, t.file(), *lt, ctab.key_path(toml_name(lk)));
            if (!ctab.claim(toml_name(lk))) continue;
            if (lk == LimitKey::account &&
                (cls == TrafficClass::tcp_connect || cls == TrafficClass::media_unallocated)) {
                ctab.error(ctab.key_pos(toml_name(lk)),
                           ctab.quoted_path(toml_name(lk)) +
                               ": there is no account at this level (only SIP requests "
                               "carry one); use per_source or per_prefix");
                continue;
            }
            static constexpr std::string_view kLimitKeys[] = {"rate", "burst"};
            ltab.only_keys(kLimitKeys);
            RateLimit rl;
            rl.enabled = true;
            bool ok = ltab.number("rate", rl.rate, 0.001, 1e9);
            if (!ltab.has("rate")) ltab.error(ltab.pos(), "'" + ltab.path() + "' needs 'rate'");
            rl.burst = std::max(1.0, rl.rate);
            if (ltab.has("burst")) ok = ltab.number("burst", rl.burst, 1, 1e9) && ok;
            if (ok) p->rate_limits.limits[c][k] = rl;
        }
    }
}

void Loader::read_bans(const Table& t) {
    static constexpr std::string_view kKeys[] = {"base",       "factor",           "max",
                                                 "violations", "violation_window", "history"};
    t.only_keys(kKeys);
    constexpr base::Nanos s = base::kNanosPerSecond;
    auto& b = p->bans;
    bans_pos = t.pos();
    if (t.has("base") && t.claim("base")) t.duration("base", b.base, s, 365 * 86400 * s);
    if (t.has("factor") && t.claim("factor")) t.number("factor", b.factor, 1, 100);
    if (t.has("max") && t.claim("max")) t.duration("max", b.max, s, 365 * 86400 * s);
    std::int64_t v = 0;
    if (t.has("violations") && t.claim("violations") && t.integer("violations", v, 1, 1000000))
        b.violations = static_cast<std::uint32_t>(v);
    if (t.has("violation_window") && t.claim("violation_window"))
        t.duration("violation_window", b.violation_window, s / 10, 86400 * s);
    if (t.has("history") && t.claim("history"))
        t.duration("history", b.history, 60 * s, 365 * 86400 * s);
}

void Loader::read_scanners(const Table& t) {
    static constexpr std::string_view kKeys[] = {"user_agents", "action", "empty_user_agent"};
    t.only_keys(kKeys);
    std::size_t a = 0;
    if (t.has("action") && t.claim("action") && t.choice("action", kDenyActionNames, a))
        p->scanners.action = static_cast<DenyAction>(a);
    if (t.has("empty_user_agent") && t.claim("empty_user_agent"))
        t.boolean("empty_user_agent", p->scanners.empty_user_agent_is_scanner);
    std::vector<Located<std::string>> items;
    t.strings("user_agents", items);
    for (auto& s : items) {
        if (s.value.find_first_not_of('*') == std::string::npos) {
            t.error(s.pos, "scanner pattern '" + s.value + "' would match every User-Agent");
            continue;
        }
        bool dup = false;
        for (const auto& prev : scanner_patterns) {
            if (prev.value == s.value) {
                t.error(s.pos, "duplicate scanner pattern '" + s.value + "' (first at " +
                                   ctx.where(prev.pos) + ")");
                dup = true;
            }
        }
        if (!dup) scanner_patterns.push_back(s);
    }
}

bool valid_header_name(std::string_view h) {
    // RFC 3261 §25.1 token characters, plus '*' for our wildcard.
    if (h.empty()) return false;
    for (char c : h)
        if (!(std::isalnum(static_cast<unsigned char>(c)) ||
              std::string_view("-.!%*_+`'~").find(c) != std::string_view::npos))
            return false;
    return true;
}

void Loader::read_topology(const Table& t) {
    static constexpr std::string_view kKeys[] = {
        "hide_topology", "replace_call_id", "strip_headers", "reason_phrases", "server_header"};
    t.only_keys(kKeys);
    auto& topo = p->topology;
    if (t.has("hide_topology") && t.claim("hide_topology"))
        t.boolean("hide_topology", topo.hide_topology);
    if (t.has("replace_call_id") && t.claim("replace_call_id"))
        t.boolean("replace_call_id", topo.replace_call_id);
    if (t.has("server_header") && t.claim("server_header")) {
        Pos where;
        if (t.string("server_header", topo.server_header, &where) &&
            topo.server_header.find_first_of("\r\n") != std::string::npos)
            t.error(where, "'topology.server_header' must not contain CR or LF");
    }
    std::vector<Located<std::string>> headers;
    t.strings("strip_headers", headers);
    // Stripping these breaks SIP itself (RFC 3261 §8.1.1: mandatory request headers).
    static constexpr std::string_view kEssential[] = {"via",     "from",           "to",
                                                      "call-id", "cseq",           "max-forwards",
                                                      "contact", "content-length", "content-type"};
    for (auto& h : headers) {
        if (!valid_header_name(h.value)) {
            t.error(h.pos, "'" + h.value + "' is not a SIP header name");
            continue;
        }
        const std::string lower = base::to_lower(h.value);
        if (std::find(std::begin(kEssential), std::end(kEssential), lower) !=
            std::end(kEssential)) {
            t.error(h.pos,
                    "header '" + h.value + "' cannot be stripped: SIP needs it (RFC 3261 §8.1.1)");
            continue;
        }
        topo.strip_headers.push_back(h.value);
    }
    if (auto rp = t.table("reason_phrases")) {
        Table rt(ctx, t.file(), *rp, "topology.reason_phrases");
        for (auto&& [k, v] : *rp) {
            std::string_view code_text = k.str();
            int code = 0;
            auto [ptr, ec] =
                std::from_chars(code_text.data(), code_text.data() + code_text.size(), code);
            Pos kp = rt.pos_of(v);
            if (ec != std::errc{} || ptr != code_text.data() + code_text.size() || code < 100 ||
                code > 699) {
                rt.error(kp, "reason phrase key '" + std::string(code_text) +
                                 "' must be a SIP status code 100-699 (RFC 3261 §21)");
                continue;
            }
            auto s = v.as_string();
            if (!s) {
                rt.error(kp, "reason phrase for " + std::string(code_text) + " must be a string");
                continue;
            }
            if (s->get().find_first_of("\r\n") != std::string::npos) {
                rt.error(kp, "reason phrase must not contain CR or LF");
                continue;
            }
            if (!rt.claim(code_text)) continue;
            topo.reason_phrases[static_cast<std::uint16_t>(code)] = s->get();
        }
    }
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void Loader::read_numbering(const Table& t) {
    static constexpr std::string_view kKeys[] = {"default_country_code", "national_prefix",
                                                 "international_prefix", "home_country",
                                                 "extensions"};
    t.only_keys(kKeys);
    auto& n = p->numbering;
    Pos where;
    Pos code_pos = t.pos();
    bool code_ok = false;
    if (t.has("default_country_code") && t.claim("default_country_code") &&
        t.string("default_country_code", n.default_country_code, &where)) {
        code_pos = where;
        // "" is the default: national numbers are then left unnormalized.
        code_ok = !n.default_country_code.empty() && all_digits(n.default_country_code) &&
                  is_country_calling_code(n.default_country_code);
        if (!n.default_country_code.empty() && !code_ok)
            t.error(where, "'numbering.default_country_code' = \"" + n.default_country_code +
                               "\" is not an E.164 country calling code (digits, e.g. \"33\")");
    }
    if (t.has("national_prefix") && t.claim("national_prefix") &&
        t.string("national_prefix", n.national_prefix, &where) && !n.national_prefix.empty() &&
        !all_digits(n.national_prefix))
        t.error(where, "'numbering.national_prefix' must be digits (or empty)");
    if (t.has("international_prefix") && t.claim("international_prefix") &&
        t.string("international_prefix", n.international_prefix, &where) &&
        !n.international_prefix.empty() && !all_digits(n.international_prefix))
        t.error(where, "'numbering.international_prefix' must be digits (or empty)");

    Located<std::string> home;
    if (t.has("home_country") && t.claim("home_country") &&
        t.string("home_country", home.value, &home.pos) && check_country(home, "home_country")) {
        // The home country must be one the default calling code reaches ("US" under "1").
        bool under_code = code_ok;
        for (auto code : calling_codes_of(home.value))
            under_code = under_code && code.starts_with(n.default_country_code);
        if (!code_ok)
            t.error(home.pos, "'numbering.home_country' needs 'numbering.default_country_code'");
        else if (!under_code)
            t.error(home.pos, "'numbering.home_country' = \"" + home.value +
                                  "\" is not reached by default_country_code \"" +
                                  n.default_country_code + "\"");
        else
            n.home_country = home.value;
    } else if (code_ok) {
        n.home_country = home_country_of(n.default_country_code);
        // Under a shared code, "international" would otherwise mean "another calling code":
        // a US node would see every Caribbean NANP number as a domestic call.
        if (n.home_country.empty())
            t.error(code_pos, "'numbering.default_country_code' = \"" + n.default_country_code +
                                  "\" is shared by several countries: set "
                                  "'numbering.home_country' (e.g. \"US\" or \"CA\" under \"1\")");
    }

    std::vector<Located<std::string>> extensions;
    t.strings("extensions", extensions);
    for (auto& e : extensions) {
        if (auto why = Numbering::check_extension_pattern(e.value); !why.empty()) {
            t.error(e.pos, "extension pattern '" + e.value + "': " + why);
            continue;
        }
        // A pattern that could be the start of an international call would hide real
        // international attempts from every rule.
        if (!n.international_prefix.empty() && e.value.size() > n.international_prefix.size()) {
            bool can_be_international = true;
            for (std::size_t i = 0; i < n.international_prefix.size(); ++i) {
                const char pc = e.value[i], d = n.international_prefix[i];
                can_be_international =
                    can_be_international &&
                    (pc == d || pc == 'X' || (pc == 'Z' && d != '0') || (pc == 'N' && d >= '2'));
            }
            if (can_be_international) {
                t.error(e.pos, "extension pattern '" + e.value +
                                   "' matches numbers that start with the international prefix '" +
                                   n.international_prefix + "'");
                continue;
            }
        }
        n.extensions.push_back(std::move(e.value));
    }
}

bool Loader::check_prefix(std::string_view digits, Pos where, std::string_view list_name) {
    if (!all_digits(digits)) {
        std::string msg = "prefix '" + std::string(digits) + "' in list '" +
                          std::string(list_name) + "' must be E.164 digits";
        if (!digits.empty() && digits.front() == '+') msg += " without '+'";
        ctx.error(where, msg);
        return false;
    }
    if (digits.size() > kMaxE164Digits) {
        ctx.error(where, "prefix '" + std::string(digits) + "' is longer than 15 digits (E.164)");
        return false;
    }
    return true;
}

bool Loader::check_country(const Located<std::string>& c, std::string_view what) {
    if (c.value.size() == 2 && !calling_codes_of(c.value).empty()) return true;
    std::string msg = std::string(what) + " '" + c.value + "' is not an ISO 3166-1 alpha-2 code";
    std::string upper = c.value;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (upper != c.value && !calling_codes_of(upper).empty())
        msg += "; did you mean '" + upper + "'?";
    ctx.error(c.pos, msg);
    return false;
}

void Loader::read_prefix_list(const Table& t, const std::string& dir) {
    static constexpr std::string_view kKeys[] = {"name", "category", "prefixes", "file",
                                                 "countries"};
    t.only_keys(kKeys);
    PrefixList list;
    RawPrefixList raw;
    raw.pos = t.pos();
    list.file = ctx.files[t.file()];
    list.line = raw.pos.line;
    list.column = raw.pos.column;
    if (!t.string("name", list.name, &raw.name_pos) && !t.has("name"))
        t.error(t.pos(), "prefix list needs a 'name'");
    raw.name_pos = t.has("name") ? t.key_pos("name") : t.pos();
    std::size_t cat = 0;
    if (t.choice("category", names_of<PrefixCategory>(kPrefixCategoryNames), cat))
        list.category = static_cast<PrefixCategory>(cat);
    else if (!t.has("category"))
        t.error(t.pos(), "prefix list '" + list.name +
                             "' needs a 'category' (one of irsf, "
                             "premium, high_risk, domestic, emergency, custom)");
    std::vector<Located<std::string>> prefixes;
    t.strings("prefixes", prefixes);
    for (auto& pf : prefixes) {
        if (!check_prefix(pf.value, pf.pos, list.name)) continue;
        list.prefixes.push_back(std::move(pf.value));
        raw.prefix_pos.push_back(pf.pos);
    }
    std::string file;
    Pos file_pos;
    if (t.string("file", file, &file_pos)) {
        if (!options.allow_file_lists)
            t.error(file_pos, "prefix list files are disabled here");
        else
            read_prefix_file(detail::join_path(dir, file), file_pos, list, raw);
    }
    std::vector<Located<std::string>> countries;
    t.strings("countries", countries);
    for (auto& c : countries) {
        if (!check_country(c, "country")) continue;
        list.countries.push_back(c.value);
        for (auto code : calling_codes_of(c.value)) {
            list.prefixes.emplace_back(code);
            raw.prefix_pos.push_back(c.pos);
        }
    }
    if (list.prefixes.empty() && prefixes.empty() && countries.empty() && file.empty())
        t.error(t.pos(),
                "prefix list '" + list.name + "' has no 'prefixes', 'file' or 'countries'");
    p->prefix_lists.push_back(std::move(list));
    raw_lists.push_back(std::move(raw));
}

void Loader::read_prefix_file(const std::string& path, Pos where, PrefixList& list,
                              RawPrefixList& raw) {
    std::string text;
    if (!detail::read_file(path, text)) {
        ctx.error(where, "cannot read prefix file '" + path + "'");
        return;
    }
    hash_bytes(text);
    std::uint32_t file = ctx.add_file(path);
    p->source_files.push_back(path);
    std::size_t line_no = 0, start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        ++line_no;
        std::string_view line(text.data() + start, end - start);
        start = end + 1;
        if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        std::size_t b = line.find_first_not_of(" \t\r");
        if (b == std::string_view::npos) continue;
        std::size_t e = line.find_last_not_of(" \t\r");
        std::string_view digits = line.substr(b, e - b + 1);
        Pos pos{file, static_cast<std::uint32_t>(line_no), static_cast<std::uint32_t>(b + 1)};
        if (!check_prefix(digits, pos, list.name)) continue;
        list.prefixes.emplace_back(digits);
        raw.prefix_pos.push_back(pos);
    }
}

// "Mon-Fri 08:00-19:00", "Sat 09:00-12:00", "Mon,Wed,Fri 08:00-12:00"
bool parse_business_hours(std::string_view text, BusinessHours& out, std::string& why) {
    const auto& kDays = base::kWeekdayNames;
    auto space = text.find(' ');
    if (space == std::string_view::npos) {
        why = "expected \"<days> HH:MM-HH:MM\"";
        return false;
    }
    std::string_view days = text.substr(0, space), hours = text.substr(space + 1);
    auto day_index = [&](std::string_view d) -> int {
        for (int i = 0; i < 7; ++i)
            if (kDays[i] == d) return i;
        return -1;
    };
    out.days = 0;
    std::size_t pos = 0;
    while (pos <= days.size()) {
        auto comma = days.find(',', pos);
        if (comma == std::string_view::npos) comma = days.size();
        std::string_view item = days.substr(pos, comma - pos);
        pos = comma + 1;
        auto dash = item.find('-');
        int a = day_index(item.substr(0, dash));
        int b = dash == std::string_view::npos ? a : day_index(item.substr(dash + 1));
        if (a < 0 || b < 0) {
            why = "unknown day in '" + std::string(item) + "' (use Mon Tue Wed Thu Fri Sat Sun)";
            return false;
        }
        for (int d = a;; d = (d + 1) % 7) {
            out.days |= static_cast<std::uint8_t>(1u << d);
            if (d == b) break;
        }
    }
    auto parse_hm = [](std::string_view s, int& minutes) {
        if (s.size() != 5 || s[2] != ':') return false;
        if (!all_digits(s.substr(0, 2)) || !all_digits(s.substr(3, 2))) return false;
        int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
        if (h > 24 || m > 59 || (h == 24 && m != 0)) return false;
        minutes = h * 60 + m;
        return true;
    };
    auto dash = hours.find('-');
    int start = 0, end = 0;
    if (dash == std::string_view::npos || !parse_hm(hours.substr(0, dash), start) ||
        !parse_hm(hours.substr(dash + 1), end)) {
        why = "expected hours as HH:MM-HH:MM";
        return false;
    }
    if (end <= start) {
        why = "the window ends before it starts; split windows that cross midnight";
        return false;
    }
    out.start_minute = static_cast<std::uint16_t>(start);
    out.end_minute = static_cast<std::uint16_t>(end);
    return true;
}

bool valid_timezone(const std::string& tz) {
    if (tz == "UTC") return true;
    if (tz.empty() || tz.front() == '/' || tz.find("..") != std::string::npos) return false;
    std::error_code ec;
    if (!std::filesystem::is_directory("/usr/share/zoneinfo", ec)) return true;  // cannot check
    return std::filesystem::is_regular_file("/usr/share/zoneinfo/" + tz, ec);
}

void Loader::read_group(const Table& t) {
    static constexpr std::string_view kKeys[] = {
        "name",     "accounts",       "account_patterns",         "tenant",
        "timezone", "business_hours", "allowed_source_countries", "allowed_destination_countries"};
    t.only_keys(kKeys);
    AccountGroup g;
    RawGroup raw;
    raw.pos = t.pos();
    g.file = ctx.files[t.file()];
    g.line = raw.pos.line;
    g.column = raw.pos.column;
    if (!t.string("name", g.name) && !t.has("name"))
        t.error(t.pos(), "account group needs a 'name'");
    raw.name_pos = t.has("name") ? t.key_pos("name") : t.pos();
    std::vector<Located<std::string>> accounts, patterns, hours, src, dst;
    t.strings("accounts", accounts);
    for (auto& a : accounts) {
        if (a.value.empty()) {
            t.error(a.pos, "empty account name");
            continue;
        }
        g.accounts.push_back(a.value);
        raw.account_pos.push_back(a.pos);
    }
    t.strings("account_patterns", patterns);
    for (auto& a : patterns) {
        if (a.value.empty()) {
            t.error(a.pos, "empty account pattern");
            continue;
        }
        g.account_patterns.emplace_back(a.value);
    }
    t.string("tenant", g.tenant, &raw.tenant_pos);
    Pos tz_pos;
    if (t.string("timezone", g.timezone, &tz_pos) && !valid_timezone(g.timezone))
        t.error(tz_pos,
                "unknown timezone '" + g.timezone + "' (an IANA name such as Europe/Paris)");
    t.strings("business_hours", hours);
    for (auto& h : hours) {
        BusinessHours bh;
        std::string why;
        if (parse_business_hours(h.value, bh, why))
            g.business_hours.push_back(bh);
        else
            t.error(h.pos, "business hours '" + h.value + "': " + why);
    }
    t.strings("allowed_source_countries", src);
    for (auto& c : src)
        if (check_country(c, "source country")) g.allowed_source_countries.push_back(c.value);
    t.strings("allowed_destination_countries", dst);
    for (auto& c : dst)
        if (check_country(c, "destination country"))
            g.allowed_destination_countries.push_back(c.value);
    if (g.accounts.empty() && g.account_patterns.empty() && accounts.empty() && patterns.empty())
        t.error(t.pos(), "account group '" + g.name + "' has no 'accounts' or 'account_patterns'");
    p->account_groups.push_back(std::move(g));
    raw_groups.push_back(std::move(raw));
}

void Loader::read_fraud(const Table& t) {
    static constexpr std::string_view kKeys[] = {"mode",
                                                 "score_cap",
                                                 "flag_threshold",
                                                 "block_threshold",
                                                 "ban_threshold",
                                                 "ban_duration",
                                                 "max_tracked_keys",
                                                 "idle_key_expiry",
                                                 "short_call_seconds",
                                                 "end_calls_on_ban",
                                                 "callback_lists",
                                                 "callback_expiry",
                                                 "callback_capacity",
                                                 "own_networks",
                                                 "rules",
                                                 "deny"};
    t.only_keys(kKeys);
    auto& f = p->fraud;
    fraud_pos = t.pos();
    constexpr base::Nanos s = base::kNanosPerSecond;
    std::size_t m = 0;
    if (t.has("mode") && t.claim("mode") && t.choice("mode", kModeNames, m))
        f.mode = static_cast<Mode>(m);
    if (t.has("score_cap") && t.claim("score_cap")) t.number("score_cap", f.score_cap, 1, 1e6);
    if (t.has("flag_threshold") && t.claim("flag_threshold"))
        t.number("flag_threshold", f.flag_threshold, 0, 1e6);
    if (t.has("block_threshold") && t.claim("block_threshold"))
        t.number("block_threshold", f.block_threshold, 0, 1e6);
    if (t.has("ban_threshold") && t.claim("ban_threshold"))
        t.number("ban_threshold", f.ban_threshold, 0, 1e6);
    if (t.has("flag_threshold") || t.has("block_threshold") || t.has("ban_threshold") ||
        t.has("score_cap"))
        thresholds_pos = t.pos();
    if (t.has("ban_duration") && t.claim("ban_duration"))
        t.duration("ban_duration", f.ban_duration, s, 365 * 86400 * s);
    std::int64_t v = 0;
    if (t.has("max_tracked_keys") && t.claim("max_tracked_keys") &&
        t.integer("max_tracked_keys", v, 1000, 1'000'000'000))
        f.max_tracked_keys = static_cast<std::uint64_t>(v);
    if (t.has("idle_key_expiry") && t.claim("idle_key_expiry"))
        t.duration("idle_key_expiry", f.idle_key_expiry, s, 30 * 86400 * s);
    if (t.has("short_call_seconds") && t.claim("short_call_seconds") &&
        t.integer("short_call_seconds", v, 1, 3600))
        f.short_call_seconds = static_cast<std::uint32_t>(v);
    if (t.has("end_calls_on_ban") && t.claim("end_calls_on_ban"))
        t.boolean("end_calls_on_ban", f.end_calls_on_ban);
    if (t.has("callback_expiry") && t.claim("callback_expiry"))
        t.duration("callback_expiry", f.callback_expiry, s, 365 * 86400 * s);
    if (t.has("callback_capacity") && t.claim("callback_capacity") &&
        t.integer("callback_capacity", v, 64, 1 << 24))
        f.callback_capacity = static_cast<std::uint32_t>(v);
    if (t.has("callback_lists") && t.claim("callback_lists")) {
        std::vector<Located<std::string>> items;
        t.strings("callback_lists", items);
        for (auto& x : items) {
            f.callback_lists.push_back(x.value);
            callback_list_pos.push_back(x.pos);
        }
    }
    if (t.has("own_networks") && t.claim("own_networks")) {
        own_given = true;
        read_cidrs(t, "own_networks", own, &f.own_networks, 0);
        // The engine checks each event's address against every entry.
        if (own.size() > kMaxOwnNetworks)
            t.error(own[kMaxOwnNetworks].pos, "at most " + std::to_string(kMaxOwnNetworks) +
                                                  " 'fraud.own_networks' (use wider prefixes)");
    }
    std::size_t i = 0;
    for (auto r : t.tables("rules"))
        read_rule(Table(ctx, t.file(), *r, "fraud.rules[" + std::to_string(i++) + "]"));
    i = 0;
    for (auto d : t.tables("deny"))
        read_deny(Table(ctx, t.file(), *d, "fraud.deny[" + std::to_string(i++) + "]"));
}

bool is_ratio(Feature f) {
    return f == Feature::short_call_ratio || f == Feature::failed_call_ratio;
}
bool is_binary(Feature f) {
    return f == Feature::scanner_user_agent || f == Feature::off_hours ||
           f == Feature::source_country_not_allowed;
}
bool takes_lists(Feature f) {
    return f == Feature::attempts || f == Feature::high_risk_attempts ||
           f == Feature::premium_attempts || f == Feature::distinct_destinations;
}

void Loader::read_rule(const Table& t) {
    static constexpr std::string_view kKeys[] = {
        "id",     "description", "feature", "key",   "window",       "op",           "threshold",
        "weight", "mode",        "scope",   "lists", "min_attempts", "count_blocked"};
    t.only_keys(kKeys);
    FraudRule r;
    RawRule raw;
    raw.pos = t.pos();
    r.file = ctx.files[t.file()];
    r.line = raw.pos.line;
    r.column = raw.pos.column;
    if (!t.string("id", r.id) && !t.has("id")) t.error(t.pos(), "fraud rule needs an 'id'");
    raw.id_pos = t.has("id") ? t.key_pos("id") : t.pos();
    t.string("description", r.description);
    std::size_t c = 0;
    if (t.choice("feature", names_of<Feature>(kFeatureNames), c))
        r.feature = static_cast<Feature>(c);
    else if (!t.has("feature"))
        t.error(t.pos(), "fraud rule '" + r.id + "' needs a 'feature'");
    if (t.choice("key", names_of<RuleKey>(kRuleKeyNames), c))
        r.key = static_cast<RuleKey>(c);
    else if (!t.has("key"))
        t.error(t.pos(), "fraud rule '" + r.id + "' needs a 'key'");
    constexpr base::Nanos s = base::kNanosPerSecond;
    t.duration("window", r.window, s, 30 * 86400 * s);
    if (t.choice("op", kCompareOpSpellings, c)) r.op = static_cast<CompareOp>(c);
    if (!t.has("threshold"))
        t.error(t.pos(), "fraud rule '" + r.id + "' needs a 'threshold'");
    else if (t.number("threshold", r.threshold, -1e12, 1e12)) {
        raw.threshold_pos = t.pos_of(*t.get("threshold"));
        if (is_ratio(r.feature) && (r.threshold < 0 || r.threshold > 1))
            t.error(raw.threshold_pos, t.quoted_path("threshold") + ": " +
                                           std::string(name(r.feature)) +
                                           " is a ratio; the threshold must be within [0, 1]");
        if (is_binary(r.feature) && (r.threshold < 0 || r.threshold > 1))
            t.error(raw.threshold_pos, t.quoted_path("threshold") + ": " +
                                           std::string(name(r.feature)) +
                                           " is 0 or 1; the threshold must be within [0, 1]");
    }
    if (!t.has("weight"))
        t.error(t.pos(), "fraud rule '" + r.id + "' needs a 'weight'");
    else
        t.number("weight", r.weight, -1e6, 1e6);
    if (t.choice("mode", kModeNames, c)) r.mode = static_cast<Mode>(c);
    std::int64_t v = 0;
    if (t.integer("min_attempts", v, 0, 1'000'000)) r.min_attempts = static_cast<std::uint32_t>(v);
    t.boolean("count_blocked", r.count_blocked);
    std::vector<Located<std::string>> lists;
    if (t.strings("lists", lists) && !lists.empty()) {
        raw.has_lists = true;
        if (!takes_lists(r.feature))
            t.error(t.key_pos("lists"),
                    "'lists' applies only to destination features "
                    "(attempts, high_risk_attempts, premium_attempts, "
                    "distinct_destinations), not " +
                        std::string(name(r.feature)));
        for (auto& l : lists) {
            r.lists.push_back(l.value);
            raw.list_pos.push_back(l.pos);
        }
    }
    if (auto sc = t.table("scope")) {
        Table st(ctx, t.file(), *sc, t.key_path("scope"));
        static constexpr std::string_view kScopeKeys[] = {"tenants", "account_groups",
                                                          "destinations", "time", "directions"};
        st.only_keys(kScopeKeys);
        std::vector<Located<std::string>> items;
        st.strings("tenants", items);
        for (auto& x : items) {
            r.scope.tenants.push_back(x.value);
            raw.tenant_pos.push_back(x.pos);
        }
        items.clear();
        st.strings("account_groups", items);
        for (auto& x : items) {
            r.scope.account_groups.push_back(x.value);
            raw.group_pos.push_back(x.pos);
        }
        st.string("destinations", r.scope.destinations, &raw.dest_pos);
        if (st.choice("time", kTimeNames, c)) r.scope.time = static_cast<TimeScope>(c);
        items.clear();
        st.strings("directions", items);
        for (auto& x : items) {
            if (!base::scope_direction(x.value))
                ctx.error(x.pos, "unknown call direction '" + x.value +
                                     "': expected inbound, outbound or internal");
            else
                r.scope.directions.push_back(x.value);
        }
    }
    p->fraud.rules.push_back(std::move(r));
    raw_rules.push_back(std::move(raw));
}

void Loader::read_deny(const Table& t) {
    static constexpr std::string_view kKeys[] = {
        "id",      "destinations",     "countries", "source_countries",
        "callers", "caller_countries", "action"};
    t.only_keys(kKeys);
    FraudDeny d;
    RawDeny raw;
    raw.pos = t.pos();
    d.file = ctx.files[t.file()];
    d.line = raw.pos.line;
    d.column = raw.pos.column;
    if (!t.string("id", d.id) && !t.has("id")) t.error(t.pos(), "fraud deny rule needs an 'id'");
    raw.id_pos = t.has("id") ? t.key_pos("id") : t.pos();
    t.string("destinations", d.destinations, &raw.dest_pos);
    std::vector<Located<std::string>> items;
    t.strings("countries", items);
    for (auto& c : items)
        if (check_country(c, "destination country")) d.countries.push_back(c.value);
    bool any_countries = !items.empty();
    items.clear();
    t.strings("source_countries", items);
    for (auto& c : items)
        if (check_country(c, "source country")) d.source_countries.push_back(c.value);
    any_countries = any_countries || !items.empty();
    items.clear();
    t.strings("caller_countries", items);
    for (auto& c : items)
        if (check_country(c, "caller country")) d.caller_countries.push_back(c.value);
    any_countries = any_countries || !items.empty();
    t.string("callers", d.callers, &raw.callers_pos);
    std::size_t a = 0;
    if (t.choice("action", kDenyActionNames, a)) d.action = static_cast<DenyAction>(a);
    if (d.destinations.empty() && d.callers.empty() && !any_countries)
        t.error(t.pos(), "fraud deny rule '" + d.id +
                             "' matches nothing: give 'destinations', 'countries', "
                             "'source_countries', 'callers' or 'caller_countries'");
    p->fraud.deny.push_back(std::move(d));
    raw_deny.push_back(std::move(raw));
}

std::vector<std::string_view> list_names(const Policy& p) {
    std::vector<std::string_view> out;
    for (const auto& l : p.prefix_lists) out.push_back(l.name);
    return out;
}

// The whole-policy checks, section by section, in this order (errors are reported in reading
// order anyway). The names later sections refer to are collected first.
void Loader::check_and_link() {
    Declared names;
    check_prefix_lists(names);
    check_account_groups(names);
    check_fraud_thresholds();
    check_bans();
    link_rules(names);
    link_deny_rules(names);
    check_access();
}

// [[prefix_lists]]: unique names; a prefix twice in one list is a typo; the same prefix in
// lists of different categories is contradictory (longest-prefix match would have to pick one
// category), while the same category in several lists is fine.
void Loader::check_prefix_lists(Declared& names) {
    for (std::size_t i = 0; i < p->prefix_lists.size(); ++i) {
        const auto& l = p->prefix_lists[i];
        if (l.name.empty()) continue;
        auto [it, inserted] = names.lists.emplace(l.name, i);
        if (!inserted)
            ctx.error(raw_lists[i].name_pos, "duplicate prefix list name '" + l.name +
                                                 "' (first declared at " +
                                                 ctx.where(raw_lists[it->second].name_pos) + ")");
    }
    struct Seen {
        std::uint32_t list;
        std::uint32_t index;
    };
    std::unordered_map<std::string_view, Seen> seen;
    seen.reserve(1024);
    for (std::uint32_t i = 0; i < p->prefix_lists.size(); ++i) {
        const auto& l = p->prefix_lists[i];
        for (std::uint32_t j = 0; j < l.prefixes.size(); ++j) {
            auto [it, inserted] = seen.emplace(l.prefixes[j], Seen{i, j});
            if (inserted) continue;
            const auto& first = p->prefix_lists[it->second.list];
            Pos here = raw_lists[i].prefix_pos[j];
            Pos there = raw_lists[it->second.list].prefix_pos[it->second.index];
            if (it->second.list == i)
                ctx.error(here, "prefix '" + l.prefixes[j] + "' appears twice in list '" + l.name +
                                    "' (first at " + ctx.where(there) + ")");
            else if (first.category != l.category)
                ctx.error(here, "prefix '" + l.prefixes[j] + "' is in list '" + l.name + "' (" +
                                    std::string(name(l.category)) + ") and in list '" + first.name +
                                    "' (" + std::string(name(first.category)) + ") at " +
                                    ctx.where(there) + ": a prefix may not have two categories");
        }
    }
}

// [[account_groups]]: unique names, an account in one group only (its business hours and
// countries must be unambiguous).
void Loader::check_account_groups(Declared& names) {
    std::unordered_map<std::string_view, Pos> account_seen;
    for (std::size_t i = 0; i < p->account_groups.size(); ++i) {
        const auto& g = p->account_groups[i];
        if (!g.tenant.empty()) names.tenants.insert(g.tenant);
        if (!g.name.empty()) {
            auto [it, inserted] = names.groups.emplace(g.name, i);
            if (!inserted)
                ctx.error(raw_groups[i].name_pos,
                          "duplicate account group name '" + g.name + "' (first declared at " +
                              ctx.where(raw_groups[it->second].name_pos) + ")");
        }
        for (std::size_t j = 0; j < g.accounts.size(); ++j) {
            auto [it, inserted] = account_seen.emplace(g.accounts[j], raw_groups[i].account_pos[j]);
            if (!inserted)
                ctx.error(raw_groups[i].account_pos[j], "account '" + g.accounts[j] +
                                                            "' is already in a group at " +
                                                            ctx.where(it->second));
        }
    }
}

// [fraud]: thresholds must be ordered and reachable.
void Loader::check_fraud_thresholds() {
    const auto& f = p->fraud;
    if (!(f.flag_threshold <= f.block_threshold && f.block_threshold <= f.ban_threshold))
        ctx.error(thresholds_pos,
                  "fraud thresholds must satisfy flag_threshold <= "
                  "block_threshold <= ban_threshold");
    if (f.ban_threshold > f.score_cap || f.block_threshold > f.score_cap ||
        f.flag_threshold > f.score_cap)
        ctx.error(thresholds_pos, "a fraud threshold above score_cap can never be reached");
}

// [bans]: the escalation ends no shorter than it starts.
void Loader::check_bans() {
    if (p->bans.max < p->bans.base) ctx.error(bans_pos, "'bans.max' is shorter than 'bans.base'");
}

// Rule ids are unique across [[fraud.rules]] and [[fraud.deny]]: verdicts cite them.
void Loader::check_rule_id(Declared& names, const std::string& id, Pos pos) {
    if (id.empty()) return;
    auto [it, inserted] = names.rule_ids.emplace(id, pos);
    if (!inserted)
        ctx.error(pos, "duplicate rule id '" + id + "' (first at " + ctx.where(it->second) + ")");
}

// The index of prefix list `n`, or -1 with an error (and the closest name) at `pos`.
std::int32_t Loader::resolve_list(const Declared& names, const std::string& n, Pos pos,
                                  std::string_view what) {
    auto it = names.lists.find(n);
    if (it != names.lists.end()) return static_cast<std::int32_t>(it->second);
    std::string msg = std::string(what) + " names prefix list '" + n + "', which does not exist";
    if (auto g = detail::closest(n, list_names(*p)); !g.empty())
        msg += "; did you mean '" + std::string(g) + "'?";
    ctx.error(pos, msg);
    return -1;
}

// [[fraud.rules]]: unique ids, every scope reference (tenant, account group, destination
// list) and list resolves; high_risk_attempts and premium_attempts without lists count every
// list of their categories.
void Loader::link_rules(Declared& names) {
    std::vector<std::string_view> group_names;
    for (const auto& g : p->account_groups) group_names.push_back(g.name);
    std::vector<std::string_view> tenant_names(names.tenants.begin(), names.tenants.end());
    auto& f = p->fraud;
    for (std::size_t i = 0; i < f.rules.size(); ++i) {
        auto& r = f.rules[i];
        const auto& raw = raw_rules[i];
        check_rule_id(names, r.id, raw.id_pos);
        for (std::size_t j = 0; j < r.scope.tenants.size(); ++j) {
            if (names.tenants.count(r.scope.tenants[j])) continue;
            std::string msg = "rule '" + r.id + "' scope names tenant '" + r.scope.tenants[j] +
                              "', which no account group has";
            if (auto g = detail::closest(r.scope.tenants[j], tenant_names); !g.empty())
                msg += "; did you mean '" + std::string(g) + "'?";
            ctx.error(raw.tenant_pos[j], msg);
        }
        for (std::size_t j = 0; j < r.scope.account_groups.size(); ++j) {
            if (names.groups.count(r.scope.account_groups[j])) continue;
            std::string msg = "rule '" + r.id + "' scope names account group '" +
                              r.scope.account_groups[j] + "', which does not exist";
            if (auto g = detail::closest(r.scope.account_groups[j], group_names); !g.empty())
                msg += "; did you mean '" + std::string(g) + "'?";
            ctx.error(raw.group_pos[j], msg);
        }
        if (!r.scope.destinations.empty())
            r.scope.destinations_list = resolve_list(names, r.scope.destinations, raw.dest_pos,
                                                     "rule '" + r.id + "' scope");
        for (std::size_t j = 0; j < r.lists.size(); ++j) {
            auto idx = resolve_list(names, r.lists[j], raw.list_pos[j], "rule '" + r.id + "'");
            if (idx >= 0) r.list_indexes.push_back(static_cast<std::uint32_t>(idx));
        }
        if (!raw.has_lists &&
            (r.feature == Feature::high_risk_attempts || r.feature == Feature::premium_attempts)) {
            // Default: every list of the feature's categories.
            for (std::uint32_t k = 0; k < p->prefix_lists.size(); ++k) {
                auto c = p->prefix_lists[k].category;
                bool counts = r.feature == Feature::premium_attempts
                                  ? c == PrefixCategory::premium
                                  : (c == PrefixCategory::irsf || c == PrefixCategory::premium ||
                                     c == PrefixCategory::high_risk);
                if (counts) {
                    r.list_indexes.push_back(k);
                    r.lists.push_back(p->prefix_lists[k].name);
                }
            }
        }
    }
}

// [[fraud.deny]]: unique ids (shared with the rules), the destination list resolves.
void Loader::link_deny_rules(Declared& names) {
    auto& f = p->fraud;
    for (std::size_t i = 0; i < f.deny.size(); ++i) {
        auto& d = f.deny[i];
        check_rule_id(names, d.id, raw_deny[i].id_pos);
        if (!d.destinations.empty())
            d.destinations_list = resolve_list(names, d.destinations, raw_deny[i].dest_pos,
                                               "deny rule '" + d.id + "'");
        if (!d.callers.empty())
            d.callers_list = resolve_list(names, d.callers, raw_deny[i].callers_pos,
                                          "deny rule '" + d.id + "' callers");
    }
    for (std::size_t i = 0; i < f.callback_lists.size(); ++i)
        resolve_list(names, f.callback_lists[i], callback_list_pos[i], "fraud callback_lists");
}

// [access]: the same CIDR in allow and deny is contradictory; an allow or trusted entry inside
// a deny entry would never apply (deny wins); an entry twice in one list is a typo.
void Loader::check_access() {
    auto check_against_deny = [&](const std::vector<RawCidr>& list, std::string_view what) {
        for (const auto& a : list) {
            for (const auto& d : deny) {
                if (a.prefix == d.prefix) {
                    // Appended in order: GCC 12 at -O3 reports a false -Wrestrict overlap for
                    // `"'" + a.prefix.to_string()` (literal + temporary).
                    std::string msg = "'";
                    msg += a.prefix.to_string();
                    msg += "' is both ";
                    msg += what;
                    msg += " and denied (at ";
                    msg += ctx.where(d.pos);
                    msg += ')';
                    ctx.error(a.pos, std::move(msg));
                } else if (d.prefix.contains(a.prefix)) {
                    ctx.error(a.pos, std::string(what) + " '" + a.prefix.to_string() +
                                         "' lies inside denied '" + d.prefix.to_string() +
                                         "' (at " + ctx.where(d.pos) +
                                         ") and would never apply: deny wins");
                }
            }
        }
    };
    check_against_deny(allow, "allowed");
    check_against_deny(trusted, "trusted");
    auto check_dups = [&](const std::vector<RawCidr>& list, std::string_view what) {
        std::map<base::Prefix, Pos> s;
        for (const auto& a : list) {
            auto [it, inserted] = s.emplace(a.prefix, a.pos);
            if (!inserted)
                ctx.error(a.pos, std::string(what) + " '" + a.prefix.to_string() +
                                     "' is listed twice (first at " + ctx.where(it->second) + ")");
        }
    };
    check_dups(allow, "allowed");
    check_dups(deny, "denied");
    check_dups(trusted, "trusted");
    check_dups(internal, "internal");

    // The company's own networks are defined once, by [access] internal; [fraud] own_networks
    // names those of them the fraud engine keys by account (shared office NATs), and is
    // derived from [access] internal when absent. Either overlapping a trusted trunk is a
    // contradiction: a trunk carries other parties' calls and is judged by its address and
    // calling numbers, the company's own users by account.
    auto check_against_trusted = [&](const std::vector<RawCidr>& list, std::string_view what) {
        for (const auto& a : list)
            for (const auto& tr : trusted)
                if (a.prefix.contains(tr.prefix) || tr.prefix.contains(a.prefix)) {
                    std::string msg(what);
                    msg += " '";
                    msg += a.prefix.to_string();
                    msg += "' overlaps trusted trunk '";
                    msg += p->access.trusted_trunks[tr.tag].name;
                    msg += "' ";
                    msg += tr.prefix.to_string();
                    msg += " (at ";
                    msg += ctx.where(tr.pos);
                    msg +=
                        "): a trusted trunk carries other parties' calls and is scored by address "
                        "and calling number, the company's own networks by account; an address "
                        "cannot be both";
                    ctx.error(a.pos, std::move(msg));
                }
    };
    check_against_trusted(internal, "access.internal");
    check_against_trusted(own, "fraud.own_networks");
    if (!own_given && !internal.empty()) {
        if (internal.size() > kMaxOwnNetworks)
            ctx.error(internal[kMaxOwnNetworks].pos,
                      "at most " + std::to_string(kMaxOwnNetworks) +
                          " 'access.internal' networks when 'fraud.own_networks' is derived from "
                          "them (use wider prefixes, or set 'fraud.own_networks')");
        else
            for (const auto& n : internal) p->fraud.own_networks.push_back(n.prefix);
    }
}

void Loader::compile() {
    for (const auto& s : scanner_patterns) p->scanners.user_agents.emplace_back(s.value);
    for (const auto& a : allow) p->access.allow.add(a.prefix, a.tag);
    for (const auto& d : deny) p->access.deny.add(d.prefix, d.tag);
    for (const auto& t : trusted) p->access.trusted.add(t.prefix, t.tag);
    p->access.allow.finalize();
    p->access.deny.finalize();
    p->access.trusted.finalize();
    for (const auto& n : internal) p->access.internal.add(n.prefix, n.tag);
    // Own networks are the company's: internal for the call direction too.
    for (const auto& n : own) p->access.internal.add(n.prefix, 0);
    p->access.internal.finalize();
    std::size_t total = 0;
    for (const auto& l : p->prefix_lists) total += l.prefixes.size();
    std::vector<PrefixTable::Entry> entries;
    entries.reserve(total);
    for (std::uint32_t i = 0; i < p->prefix_lists.size(); ++i)
        for (const auto& d : p->prefix_lists[i].prefixes)
            entries.push_back({d, i, p->prefix_lists[i].category});
    p->prefixes = PrefixTable::build(std::move(entries));
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    p->hash = hex;
    p->version = options.version;
}

void set_key_homes(Context& ctx) {
    static constexpr std::pair<std::string_view, std::string_view> kHomes[] = {
        {"mode", "fraud"},
        {"score_cap", "fraud"},
        {"flag_threshold", "fraud"},
        {"block_threshold", "fraud"},
        {"ban_threshold", "fraud"},
        {"ban_duration", "fraud"},
        {"max_tracked_keys", "fraud"},
        {"idle_key_expiry", "fraud"},
        {"short_call_seconds", "fraud"},
        {"end_calls_on_ban", "fraud"},
        {"own_networks", "fraud"},
        {"factor", "bans"},
        {"violations", "bans"},
        {"violation_window", "bans"},
        {"user_agents", "scanners"},
        {"strip_headers", "topology"},
        {"replace_call_id", "topology"},
        {"hide_topology", "topology"},
        {"reason_phrases", "topology"},
        {"default_country_code", "numbering"},
        {"national_prefix", "numbering"},
        {"international_prefix", "numbering"},
        {"home_country", "numbering"},
        {"extensions", "numbering"},
        {"source_prefix_v4", "rate_limits"},
        {"source_prefix_v6", "rate_limits"},
        {"allow", "access"},
        {"deny", "access"},
        {"trusted", "access"},
        {"business_hours", "account_groups"},
        {"timezone", "account_groups"},
        {"prefixes", "prefix_lists"},
    };
    for (const auto& [key, home] : kHomes) ctx.key_homes.emplace(key, home);
}

Loaded<Policy> finish(Loader& l) {
    Loaded<Policy> out;
    l.check_and_link();  // even after other errors: report everything at once
    detail::finish_notices(l.ctx, l.notices);
    out.notices = l.notices;
    if (!l.ctx.errors.empty()) {
        // Report in reading order: file by file, then line and column.
        std::map<std::string, std::size_t> order;
        for (std::size_t i = 0; i < l.ctx.files.size(); ++i) order.emplace(l.ctx.files[i], i);
        std::stable_sort(l.ctx.errors.begin(), l.ctx.errors.end(),
                         [&](const Diagnostic& a, const Diagnostic& b) {
                             return std::tuple(order[a.file], a.line, a.column) <
                                    std::tuple(order[b.file], b.line, b.column);
                         });
        out.errors = std::move(l.ctx.errors);
        return out;
    }
    l.compile();
    l.p->notices = std::move(l.notices);
    out.value = std::move(l.p);
    return out;
}

}  // namespace

Loaded<Policy> load_policy(const std::vector<std::string>& files, const LoadOptions& options) {
    Loader l;
    set_key_homes(l.ctx);
    l.options = options;
    if (files.empty()) {
        l.ctx.error(Pos{l.ctx.add_file("<none>"), 0, 0}, "no policy file given");
    }
    for (const auto& f : files) l.load_path(f, nullptr);
    return finish(l);
}

Loaded<Policy> load_policy_from_string(std::string_view toml, const std::string& name,
                                       const LoadOptions& options) {
    Loader l;
    set_key_homes(l.ctx);
    l.options = options;
    std::uint32_t file = l.ctx.add_file(name);
    l.p->source_files.push_back(name);
    l.load_text(file, toml, detail::dirname_of(name));
    return finish(l);
}

}  // namespace sbc::policy

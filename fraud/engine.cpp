// The fraud scoring engine: per-key state in fixed tables, rules over sliding windows,
// verdicts with their reasons.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "fraud/fraud.hpp"
#include "fraud/lookup.hpp"
#include "fraud/state.hpp"

namespace sbc::fraud {

using namespace detail;

bool compare(Op op, double value, double threshold) {
    switch (op) {
        case Op::gt:
            return value > threshold;
        case Op::ge:
            return value >= threshold;
        case Op::lt:
            return value < threshold;
        case Op::le:
            return value <= threshold;
        case Op::eq:
            return value == threshold;
        case Op::count_:
            break;
    }
    return false;
}

namespace {

constexpr std::uint64_t kSalt[kKeyKindCount] = {0x51a7e1, 0x9f0c33, 0x3ac0417, 0x7e4a47, 0xd35f1c};
// Dialed numbers and request targets (INVITE/OPTIONS callee, REGISTER user) hash with one seed:
// a user swept by several methods is one value of the request-target set, and an all-digit
// callee's destination hash is its target hash.
constexpr std::uint64_t kTargetSeed = 11;
// RFC 3261 §17.1.1.2: a client transaction lives 64*T1 = 32 s; an ended call is remembered
// that long so a late retransmitted INVITE is still recognised as a duplicate.
constexpr base::Nanos kTombstone = 32 * base::kNanosPerSecond;
constexpr std::size_t kEvictionSample = 8;
constexpr std::size_t kEvictionScan = 64;
// Ended calls wait kTombstone and then for the sweep to pass: at most this much longer.
constexpr base::Nanos kCallSweepPeriod = 64 * base::kNanosPerSecond;
constexpr base::Nanos kBanSweepPeriod = 60 * base::kNanosPerSecond;
constexpr std::size_t kSweepMaxPerEvent = 64;
constexpr std::size_t kSweepRun = 32;

enum class CompType : std::uint8_t { counter, distinct, sequential };
enum class CountEvent : std::uint8_t {
    attempt,
    international,
    list_hit,
    answered,
    short_answered,
    ended,
    failed,
    auth_failure,
    short_ring,
};
enum class DistinctValue : std::uint8_t {
    destination,
    destination_country,
    failed_username,
    request_target,
    source_country,
};
enum class EventKind : std::uint8_t { invite, request, auth, reg, end };
constexpr std::size_t kEventKinds = 5;

std::uint16_t country_code16(std::string_view iso) {
    if (iso.size() != 2) return 0;
    return static_cast<std::uint16_t>((std::toupper(static_cast<unsigned char>(iso[0])) << 8) |
                                      std::toupper(static_cast<unsigned char>(iso[1])));
}

void put_country(std::array<char, 3>& out, std::uint16_t c) {
    if (c == 0) return;
    out[0] = static_cast<char>(c >> 8);
    out[1] = static_cast<char>(c & 0xff);
    out[2] = 0;
}

struct CompiledScope {
    std::vector<std::uint64_t> tenants;  // tenant hashes; empty = any
    std::vector<std::uint8_t> groups;    // by group index; empty = any
    std::uint64_t dest_mask = 0;         // 0 = any destination
    TimeScope time = TimeScope::any;
};

struct Component {
    CompType type = CompType::counter;
    std::uint8_t what = 0;  // CountEvent or DistinctValue
    base::Nanos window = 0;
    base::Nanos width = 1;  // sub-bucket width of a counter
    std::uint16_t width_idx = 0;
    std::uint16_t scope_idx = 0;  // into Impl::scopes; 0 = no scope
    std::uint32_t window_s = 1;
    std::uint32_t capacity = 0;  // distinct sets: values the count must reach
    std::uint32_t lines = 0;     // distinct sets: cache lines of entries in the cold area
    std::uint32_t offset = 0;    // in the hot slot (a distinct set's summary)
    std::uint32_t cold_offset = 0;
    bool narrow = false;       // counter in 8-bit buckets
    bool ratio = false;        // read by a ratio rule
    double max_threshold = 0;  // largest threshold of the rules reading it
    std::uint64_t list_mask = 0;
    CompiledScope filter;
    std::string signature;
};

// What `update` needs of a component, packed (the component itself carries its compile-time
// signature and scope): one per component an event kind can count in.
struct UpdateOp {
    CompType type = CompType::counter;
    std::uint8_t what = 0;
    bool narrow = false;
    std::uint16_t width_idx = 0;
    std::uint16_t scope_idx = 0;
    std::uint32_t offset = 0;
    std::uint32_t cold_offset = 0;
    std::uint32_t lines = 0;
    std::uint32_t window_s = 1;
    std::uint64_t list_mask = 0;
};

// A ring in a hot slot, advanced with the slot's epoch.
struct RingRef {
    std::uint32_t offset = 0;
    std::uint16_t width_idx = 0;
    bool narrow = false;
};

struct KindTable {
    bool used = false;
    std::vector<Component> comps;
    std::vector<RingRef> rings;
    std::vector<std::uint16_t> widths;  // widths of the rings (indexes into Impl::widths)
    // The rings of each of those widths (same order), by bucket size: the offsets a move of
    // that width's epoch clears.
    struct WidthRings {
        std::vector<std::uint32_t> narrow, wide;
    };
    std::vector<WidthRings> width_rings;
    std::size_t slot_bytes = sizeof(KeyHeader);  // hot
    std::size_t cold_bytes = 0;
    std::vector<std::size_t> distinct_comps;  // their cold lines are prefetched ahead
    // By event kind: the components an event of that kind can count in (a call end never
    // counts an attempt, an INVITE never an auth failure), so `update` skips the others.
    std::vector<UpdateOp> by_event[kEventKinds];
    SlotTable table;
    std::size_t cursor = 0;
};

// Where a rule's value comes from, decided at compile time.
enum class ValueSource : std::uint8_t {
    component,
    ratio,
    concurrent,
    scanner,
    off_hours,
    src_not_allowed
};

// What a rule reads. Rules that read the same value (same source, key, components, scope: a
// ladder of thresholds and weights) are evaluated together: the value once, then each rule's
// comparison.
struct RuleValue {
    ValueSource source = ValueSource::component;
    std::uint8_t key_index = 0;
    double min_den = 1;  // ratio rules: samples needed
    std::uint16_t scope_idx = 0;
    int comp_a = -1;            // feature value (numerator of a ratio)
    int comp_b = -1;            // denominator of a ratio
    bool call_feature = false;  // evaluated on INVITE attempts only
    bool operator==(const RuleValue&) const = default;
};

struct CompiledRule : RuleValue {
    const Rule* rule = nullptr;
    Op op = Op::ge;
    double threshold = 0;
    CompiledScope scope;
    bool observe = false;
};

// Where a component's value is read in a hot slot: copied out of the key kind's component at
// compile time, so a ladder reads its value without going through the component list.
struct Probe {
    CompType type = CompType::counter;
    bool narrow = false;  // counter in 8-bit buckets (distinct summaries always are)
    std::uint16_t width_idx = 0;
    std::uint32_t offset = 0;
    std::uint32_t window_s = 1;
};

struct Ladder : RuleValue {
    std::vector<std::uint16_t> rules;
    Probe a, b;  // comp_a, comp_b
    // When every rule of the ladder fires on a value above its threshold (>, >=), a value
    // below the smallest threshold fires none: one compare instead of the ladder walk.
    double fire_floor = -std::numeric_limits<double>::infinity();
};

struct CompiledDeny {
    const DenyRule* rule = nullptr;
    std::uint64_t dest_mask = 0;
    std::vector<std::uint16_t> countries;
    std::vector<std::uint16_t> source_countries;
};

struct Group {
    TimeZone tz;
    WeekMap hours;
    std::vector<std::uint16_t> allowed_src;
    std::vector<std::uint16_t> allowed_dst;
    std::uint64_t tenant_hash = 0;
    std::string_view tenant;
    std::string deny_id;  // reason id for a destination country outside allowed_dst
};

struct CallEntry {
    // First: what the sweep reads, in the entry's first cache line.
    base::Nanos start;
    base::Nanos answer;  // 0 = not answered
    base::Nanos ended;   // 0 = in progress; else tombstone since
    std::uint64_t key_hash[kKeyKindCount];
    std::uint64_t tenant_hash;
    std::uint64_t dest_mask;
    std::int16_t group;
    std::uint8_t keys;  // bit per KeyKind present
    std::uint8_t counted;
    std::uint8_t action;
    std::uint8_t off_hours;
    std::uint8_t pad[2];
};

struct BanEntry {
    base::Nanos until;
};

constexpr std::size_t kMaxWidths = 64;
constexpr std::size_t kMaxScopes = 64;

struct Ctx {
    EventKind kind = EventKind::invite;
    std::uint64_t scope_bits = 1;  // bit i: Impl::scopes[i] matches this event
    std::uint32_t epoch[kMaxWidths];
    base::Nanos epoch_start[kMaxWidths];
    double into[kMaxWidths];
    base::Nanos now = 0;
    std::uint32_t now_s = 0;
    std::uint64_t key_hash[kKeyKindCount] = {};
    bool has_key[kKeyKindCount] = {};
    std::int64_t slot[kKeyKindCount] = {-1, -1, -1, -1, -1};
    std::uint64_t tenant_hash = 0;
    int group = -1;
    char digits[32] = {};
    std::size_t ndigits = 0;
    std::uint32_t dest_hash = 0;  // of the digits, once per event
    std::uint64_t dest_mask = 0;
    std::uint16_t dest_country = 0;
    bool international = false;
    std::uint16_t src_country = 0;
    bool off_hours = false;
    bool src_not_allowed = false;
    bool scanner = false;
    std::uint32_t target_hash = 0;    // request sweep target
    std::uint32_t username_hash = 0;  // failed username
    bool auth_failed = false;
    // end events
    bool answered = false;
    bool short_answered = false;
    bool failed = false;
    bool short_ring = false;
    std::string_view digits_view() const { return {digits, ndigits}; }
};

// What an attempt's strings and addresses hash to, computed once (ahead of the attempt in a
// burst, to prefetch its state) and used by its evaluation.
struct AttemptKeys {
    bool invite = true;
    std::uint64_t call_hash = 0;     // 0 = no Call-ID to count
    std::uint64_t key_hash[3] = {};  // source_ip, source_prefix, account
    std::uint64_t addr_hash = 0;     // the ban table's key
    bool has_key[3] = {};
    char digits[32];
    std::uint8_t ndigits = 0;
    std::uint32_t dest_hash = 0;    // of the digits
    std::uint32_t target_hash = 0;  // of the callee as sent (request sweeps)
    std::uint16_t src_country = 0;  // from the event (GeoIP is looked up later, if needed)
    std::uint16_t dest_country = 0;
    std::uint8_t code_len = 0;  // digits of the destination's calling code (0 = none)
    // Where the pipeline last found each key: a hint, trusted only while that bucket still
    // holds the key's hash (attempts scored in between may have moved it).
    mutable std::int64_t hint[3] = {-1, -1, -1};
};

struct StrHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

bool is_call_feature(Feature f) {
    switch (f) {
        case Feature::auth_failures:
        case Feature::distinct_usernames:
        case Feature::scanner_user_agent:
        case Feature::request_sweep:
        case Feature::source_country_not_allowed:
        case Feature::country_change:
            return false;
        default:
            return true;
    }
}

bool is_event_feature(Feature f) {
    return f == Feature::scanner_user_agent || f == Feature::off_hours ||
           f == Feature::source_country_not_allowed;
}

std::string format_window(base::Nanos w) {
    return std::to_string(w / base::kNanosPerSecond);
}

// Whether an event of kind `k` can count in a component of this type and value: the event
// kinds each case of `update` accepts.
bool counts_on(CompType type, std::uint8_t what, EventKind k) {
    switch (type) {
        case CompType::sequential:
            return k == EventKind::invite;
        case CompType::counter:
            switch (static_cast<CountEvent>(what)) {
                case CountEvent::attempt:
                case CountEvent::international:
                case CountEvent::list_hit:
                    return k == EventKind::invite;
                case CountEvent::answered:
                case CountEvent::short_answered:
                case CountEvent::ended:
                case CountEvent::failed:
                case CountEvent::short_ring:
                    return k == EventKind::end;
                case CountEvent::auth_failure:
                    return k == EventKind::auth;
            }
            return true;
        case CompType::distinct:
            switch (static_cast<DistinctValue>(what)) {
                case DistinctValue::destination:
                case DistinctValue::destination_country:
                    return k == EventKind::invite;
                case DistinctValue::failed_username:
                    return k == EventKind::auth || k == EventKind::reg;
                case DistinctValue::request_target:
                    return k == EventKind::invite || k == EventKind::request || k == EventKind::reg;
                case DistinctValue::source_country:
                    return k != EventKind::end;
            }
            return true;
    }
    return true;
}

}  // namespace

struct Engine::Impl {
    EngineConfig cfg;
    std::vector<std::string> list_names;
    DigitTrie lists;      // bit per prefix list
    DigitTrie countries;  // value = index+1 into country_iso
    std::vector<std::uint16_t> country_iso;
    std::vector<std::string> country_code_str;
    std::string home_code;
    std::vector<Group> groups;
    std::unordered_map<std::string, int, StrHash, std::equal_to<>> exact_accounts;
    std::vector<std::pair<std::string, int>> account_patterns;
    std::vector<UaGlob> scanner_globs;
    std::array<KindTable, kKeyKindCount> kinds;
    std::vector<CompiledRule> rules;
    std::vector<Ladder> ladders;
    std::vector<std::uint16_t> rule_ladder;     // rule -> its ladder
    std::vector<std::uint16_t> invite_ladders;  // the ladders an INVITE evaluates
    std::vector<std::uint16_t> other_ladders;   // and every other event
    // The ladders that read one counter in 8-bit buckets (most of them), packed, evaluated
    // in their own loop without the generic dispatch; the lists above then hold the others.
    struct CounterLadder {
        std::uint16_t ladder = 0;
        std::uint8_t key_index = 0;
        std::uint16_t scope_idx = 0;
        std::uint16_t width_idx = 0;
        std::uint32_t offset = 0;
        double fire_floor = 0;
    };
    std::vector<CounterLadder> invite_counters, other_counters;
    std::vector<double> ladder_value;  // per event: the value each ladder read
    std::vector<std::uint16_t> fired;  // per event: rules that fired (capacity reserved)
    std::vector<CompiledDeny> denies;
    std::vector<base::Nanos> widths;
    base::Nanos span[kMaxWidths] = {};  // (kRingBuckets - 1) sub-buckets of each width
    std::vector<CompiledScope> scopes;  // distinct scopes; [0] matches everything
    std::vector<std::string> scope_sigs;
    bool need_source_country = false;
    SlotTable calls;
    std::size_t calls_cursor = 0;
    SlotTable bans;
    std::size_t bans_cursor = 0;
    struct SweepPace {
        double debt = 0;  // buckets owed to the sweep
    };
    SweepPace key_pace[kKeyKindCount], call_pace, ban_pace;
    base::Nanos sweep_last = 0;
    std::uint32_t idle_s = 1;
    base::CounterSet<Counter> counters;
    std::function<void(std::string_view)> sink;

    // `with_tables` false: every check, but the key, call and ban tables stay unallocated.
    base::Result<void> compile(bool with_tables = true);
    // What compile() was reading when it failed.
    ConfigError::Subject compiling = ConfigError::Subject::engine;
    std::size_t compiling_index = 0;
    void at(ConfigError::Subject s, std::size_t i = 0) {
        compiling = s;
        compiling_index = i;
    }
    bool same_state_layout(const Impl& running) const;
    void take_state(Impl& running);
    base::Result<std::uint64_t> list_bit(const std::string& name) const;
    base::Result<CompiledScope> compile_scope(const Scope& s) const;
    int add_component(KindTable& kt, Component c);

    KeyHeader* header(KeyKind k, Ctx& c) {
        auto& kt = kinds[static_cast<std::size_t>(k)];
        if (c.slot[static_cast<std::size_t>(k)] < 0) return nullptr;
        return static_cast<KeyHeader*>(kt.table.slot(c.slot[static_cast<std::size_t>(k)]));
    }
    std::int64_t find_or_create(KeyKind k, std::uint64_t h, base::Nanos now,
                                std::int64_t hint = -1);
    void advance(const KindTable& kt, std::uint8_t* slot, const Ctx& c) const;
    std::uint32_t slot_epoch(const std::uint8_t* slot, std::uint16_t w, const Ctx& c) const;
    void resolve_keys(Ctx& c, const Source& src, std::string_view account, std::string_view tenant,
                      bool create, const AttemptKeys* pre = nullptr);
    void resolve_destination(Ctx& c, const AttemptKeys& k);
    void attempt_keys(const CallAttempt& a, AttemptKeys& k) const;
    std::uint64_t load_buckets(const AttemptKeys& k) const;
    template <bool kTouch>
    std::uint64_t state_lines(const AttemptKeys& k) const;
    void attempt(const CallAttempt& a, const AttemptKeys& k, Verdict& out);
    bool scanner_ua(std::string_view ua);
    void resolve_scanner(Ctx& c, std::string_view ua);
    // User-Agents repeat (a fleet of phones sends the same few strings): the glob verdict of
    // each is remembered by its 64-bit hash in a small direct-mapped cache.
    struct UaMemo {
        std::uint64_t hash = 0;  // 0 = empty
        bool scanner = false;
    };
    std::array<UaMemo, 64> ua_memo{};
    char last_ua[64];
    std::size_t last_ua_len = ~std::size_t{0};  // none yet
    bool last_ua_scanner = false;
    bool scanner_ua_memo(std::string_view ua);
    void resolve_source(Ctx& c, const Source& src, Verdict& out);
    void resolve_time(Ctx& c, base::UnixNanos wall);
    bool scope_match(const CompiledScope& s, const Ctx& c) const;
    void prepare(Ctx& c);
    struct EpochCache {
        std::uint32_t epoch = 0;
        base::Nanos start = 0;
    };
    EpochCache epoch_cache[kMaxWidths];
    base::Result<std::uint16_t> scope_index(const CompiledScope& s);
    base::Result<std::uint16_t> width_index(base::Nanos w);
    void update(Ctx& c);
    void evaluate(Ctx& c, Verdict& out);
    void finish(Ctx& c, const Source& src, Verdict& out);
    void release(CallEntry& e, Ctx* end_ctx);
    bool source_banned(const base::IpAddress& a, base::Nanos now, base::Nanos* until) const;
    void ban(const base::IpAddress& a, base::Nanos until, base::Nanos now);
    void sweep(base::Nanos now, std::size_t budget);
    void housekeep(base::Nanos now);
    void sweep_some(base::Nanos now, const std::size_t (&key_budget)[kKeyKindCount],
                    std::size_t call_budget, std::size_t ban_budget);
    CallEntry* call(std::int64_t i) { return static_cast<CallEntry*>(calls.slot(i)); }
    std::int64_t insert_call(std::uint64_t h, base::Nanos now);
    std::uint64_t key_hash_of(KeyKind k, std::string_view value) const;
};

// ---------------------------------------------------------------------------------------------
// Compilation

base::Result<std::uint64_t> Engine::Impl::list_bit(const std::string& name) const {
    for (std::size_t i = 0; i < list_names.size(); ++i)
        if (list_names[i] == name) return std::uint64_t{1} << i;
    return base::make_error("unknown prefix list '" + name + "'");
}

base::Result<CompiledScope> Engine::Impl::compile_scope(const Scope& s) const {
    CompiledScope cs;
    for (const auto& t : s.tenants) cs.tenants.push_back(hash_string(t, kSalt[3]));
    if (!s.account_groups.empty()) {
        cs.groups.assign(cfg.account_groups.size(), 0);
        for (const auto& name : s.account_groups) {
            bool found = false;
            for (std::size_t i = 0; i < cfg.account_groups.size(); ++i)
                if (cfg.account_groups[i].name == name) cs.groups[i] = 1, found = true;
            if (!found) return base::make_error("unknown account group '" + name + "'");
        }
    }
    if (!s.destinations.empty()) {
        auto bit = list_bit(s.destinations);
        if (!bit) return bit.error();
        cs.dest_mask = *bit;
    }
    cs.time = s.time;
    return cs;
}

std::string scope_signature(const CompiledScope& s) {
    std::string sig;
    for (auto t : s.tenants) sig += std::to_string(t) + ",";
    sig += "/";
    for (auto g : s.groups) sig += g ? '1' : '0';
    sig += "/" + std::to_string(s.dest_mask) + "/" + std::to_string(static_cast<int>(s.time));
    return sig;
}

base::Result<std::uint16_t> Engine::Impl::scope_index(const CompiledScope& s) {
    if (scopes.empty()) {
        scopes.push_back(CompiledScope{});
        scope_sigs.push_back(scope_signature(CompiledScope{}));
    }
    auto sig = scope_signature(s);
    for (std::size_t i = 0; i < scope_sigs.size(); ++i)
        if (scope_sigs[i] == sig) return static_cast<std::uint16_t>(i);
    if (scopes.size() >= kMaxScopes)
        return base::make_error("at most 64 distinct rule scopes are supported");
    scopes.push_back(s);
    scope_sigs.push_back(sig);
    return static_cast<std::uint16_t>(scopes.size() - 1);
}

base::Result<std::uint16_t> Engine::Impl::width_index(base::Nanos w) {
    for (std::size_t i = 0; i < widths.size(); ++i)
        if (widths[i] == w) return static_cast<std::uint16_t>(i);
    if (widths.size() >= kMaxWidths)
        return base::make_error("at most 64 distinct rule windows are supported");
    span[widths.size()] = w * (kRingBuckets - 1);
    widths.push_back(w);
    return static_cast<std::uint16_t>(widths.size() - 1);
}

int Engine::Impl::add_component(KindTable& kt, Component c) {
    c.signature = std::to_string(static_cast<int>(c.type)) + "/" + std::to_string(c.what) + "/" +
                  format_window(c.window) + "/" + std::to_string(c.list_mask) + "/";
    for (auto t : c.filter.tenants) c.signature += std::to_string(t) + ",";
    c.signature += "/";
    for (auto g : c.filter.groups) c.signature += g ? '1' : '0';
    c.signature += "/" + std::to_string(c.filter.dest_mask) + "/" +
                   std::to_string(static_cast<int>(c.filter.time));
    for (std::size_t i = 0; i < kt.comps.size(); ++i) {
        if (kt.comps[i].signature == c.signature) {
            kt.comps[i].capacity = std::max(kt.comps[i].capacity, c.capacity);
            kt.comps[i].max_threshold = std::max(kt.comps[i].max_threshold, c.max_threshold);
            kt.comps[i].ratio = kt.comps[i].ratio || c.ratio;
            return static_cast<int>(i);
        }
    }
    kt.comps.push_back(std::move(c));
    return static_cast<int>(kt.comps.size() - 1);
}

base::Result<void> Engine::Impl::compile(bool with_tables) {
    using S = ConfigError::Subject;
    at(S::engine);
    if (cfg.max_tracked_keys == 0) return base::make_error("max_tracked_keys must be > 0");
    if (cfg.prefix_lists.size() > 64) {
        at(S::prefix_list, 64);
        return base::make_error("at most 64 prefix lists are supported by the fraud engine");
    }
    idle_s = std::max<std::uint32_t>(1, to_seconds(cfg.idle_key_expiry));

    for (std::size_t i = 0; i < cfg.prefix_lists.size(); ++i) {
        list_names.push_back(cfg.prefix_lists[i].name);
        for (const auto& p : cfg.prefix_lists[i].prefixes)
            lists.add(p, std::uint64_t{1} << i, true);
    }
    for (const auto& cc : cfg.country_codes) {
        country_iso.push_back(country_code16(cc.iso));
        country_code_str.push_back(cc.code);
        countries.add(cc.code, country_iso.size(), false);
    }
    home_code = cfg.home_country_code;

    for (std::size_t gi = 0; gi < cfg.account_groups.size(); ++gi) {
        const auto& g = cfg.account_groups[gi];
        at(S::account_group, gi);
        Group cg;
        auto tz = TimeZone::load(cfg.zoneinfo_dir, g.timezone.empty() ? "UTC" : g.timezone);
        if (!tz) return base::make_error("account group '" + g.name + "': " + tz.error().message);
        cg.tz = std::move(*tz);
        for (const auto& h : g.business_hours) cg.hours.add(h);
        for (const auto& c : g.allowed_source_countries)
            cg.allowed_src.push_back(country_code16(c));
        for (const auto& c : g.allowed_destination_countries)
            cg.allowed_dst.push_back(country_code16(c));
        if (!g.allowed_source_countries.empty()) need_source_country = true;
        cg.tenant = g.tenant;
        if (!g.tenant.empty()) cg.tenant_hash = hash_string(g.tenant, kSalt[3]);
        cg.deny_id = "group:" + g.name + ":allowed_destination_countries";
        groups.push_back(std::move(cg));
        for (const auto& a : g.accounts) exact_accounts.emplace(a, static_cast<int>(gi));
        for (const auto& p : g.account_patterns)
            account_patterns.emplace_back(p, static_cast<int>(gi));
    }
    at(S::engine);
    for (const auto& ua : cfg.scanner_user_agents) scanner_globs.emplace_back(ua);

    std::vector<std::string> ids;
    for (const auto& r : cfg.rules) {
        at(S::rule, static_cast<std::size_t>(&r - cfg.rules.data()));
        auto err = [&](const std::string& m) {
            return base::make_error("rule '" + r.id + "': " + m);
        };
        if (r.id.empty()) return base::make_error("a fraud rule has no id");
        if (std::find(ids.begin(), ids.end(), r.id) != ids.end()) return err("duplicate rule id");
        ids.push_back(r.id);
        CompiledRule cr;
        cr.rule = &r;
        cr.observe = r.mode == Mode::observe;
        cr.call_feature = is_call_feature(r.feature);
        auto scope = compile_scope(r.scope);
        if (!scope) return err(scope.error().message);
        cr.scope = std::move(*scope);
        auto si = scope_index(cr.scope);
        if (!si) return err(si.error().message);
        cr.scope_idx = *si;
        bool windowed = !is_event_feature(r.feature) && r.feature != Feature::concurrent_calls;
        if (windowed && r.window < base::kNanosPerSecond) return err("window must be >= 1s");
        auto& kt = kinds[static_cast<std::size_t>(r.key)];
        kt.used = true;
        Component c;
        c.window = r.window;
        c.width = std::max<base::Nanos>(1, r.window / (kRingBuckets - 1));
        c.max_threshold = r.threshold;
        c.ratio = r.feature == Feature::short_call_ratio || r.feature == Feature::failed_call_ratio;
        c.window_s = std::max<std::uint32_t>(1, to_seconds(r.window));
        c.filter = cr.scope;
        c.scope_idx = cr.scope_idx;
        auto wi = width_index(c.width);
        if (!wi) return err(wi.error().message);
        c.width_idx = *wi;
        auto counter = [&](CountEvent e, std::uint64_t mask = 0) {
            Component x = c;
            x.type = CompType::counter;
            x.what = static_cast<std::uint8_t>(e);
            x.list_mask = mask;
            return add_component(kt, x);
        };
        auto distinct = [&](DistinctValue v, std::uint64_t mask = 0) -> base::Result<int> {
            if (r.threshold > 127)
                return err("distinct-count thresholds above 127 are not supported");
            Component x = c;
            x.type = CompType::distinct;
            x.what = static_cast<std::uint8_t>(v);
            x.list_mask = mask;
            x.capacity = std::clamp<std::uint32_t>(
                static_cast<std::uint32_t>(std::max(0.0, std::floor(r.threshold))) + 1, 4, 128);
            return add_component(kt, x);
        };
        auto lists_mask = [&](std::initializer_list<Category> cats) -> base::Result<std::uint64_t> {
            std::uint64_t m = 0;
            if (!r.lists.empty()) {
                for (const auto& n : r.lists) {
                    auto b = list_bit(n);
                    if (!b) return b.error();
                    m |= *b;
                }
            } else {
                for (std::size_t i = 0; i < cfg.prefix_lists.size(); ++i)
                    for (auto cat : cats)
                        if (cfg.prefix_lists[i].category == cat) m |= std::uint64_t{1} << i;
            }
            return m;
        };
        // `lists` restricts what a destination feature counts to attempts whose destination
        // is on one of them; other features have no destination to restrict.
        const bool takes_lists =
            r.feature == Feature::attempts || r.feature == Feature::high_risk_attempts ||
            r.feature == Feature::premium_attempts || r.feature == Feature::distinct_destinations;
        if (!r.lists.empty() && !takes_lists)
            return err(
                "lists apply only to attempts, high_risk_attempts, premium_attempts and "
                "distinct_destinations");
        switch (r.feature) {
            case Feature::attempts:
                if (r.lists.empty()) {
                    cr.comp_a = counter(CountEvent::attempt);
                } else {
                    // INVITEs to the lists: the count high_risk_attempts keeps for the same
                    // lists (the two rules share it).
                    auto m = lists_mask({});
                    if (!m) return err(m.error().message);
                    cr.comp_a = counter(CountEvent::list_hit, *m);
                }
                break;
            case Feature::international_attempts:
                cr.comp_a = counter(CountEvent::international);
                break;
            case Feature::high_risk_attempts:
            case Feature::premium_attempts: {
                auto m = r.feature == Feature::premium_attempts
                             ? lists_mask({Category::premium})
                             : lists_mask({Category::irsf, Category::premium, Category::high_risk});
                if (!m) return err(m.error().message);
                cr.comp_a = counter(CountEvent::list_hit, *m);
                break;
            }
            case Feature::distinct_destinations:
            case Feature::distinct_destination_countries:
            case Feature::distinct_usernames:
            case Feature::request_sweep:
            case Feature::country_change: {
                DistinctValue v =
                    r.feature == Feature::distinct_destinations ? DistinctValue::destination
                    : r.feature == Feature::distinct_destination_countries
                        ? DistinctValue::destination_country
                    : r.feature == Feature::distinct_usernames ? DistinctValue::failed_username
                    : r.feature == Feature::request_sweep      ? DistinctValue::request_target
                                                               : DistinctValue::source_country;
                std::uint64_t mask = 0;
                if (v == DistinctValue::destination && !r.lists.empty()) {
                    auto m = lists_mask({});
                    if (!m) return err(m.error().message);
                    mask = *m;
                }
                auto i = distinct(v, mask);
                if (!i) return i.error();
                cr.comp_a = *i;
                if (v == DistinctValue::source_country) need_source_country = true;
                break;
            }
            case Feature::sequential_dialing: {
                Component x = c;
                x.type = CompType::sequential;
                cr.comp_a = add_component(kt, x);
                break;
            }
            case Feature::short_call_ratio:
                cr.comp_a = counter(CountEvent::short_answered);
                cr.comp_b = counter(CountEvent::answered);
                break;
            case Feature::failed_call_ratio:
                cr.comp_a = counter(CountEvent::failed);
                cr.comp_b = counter(CountEvent::ended);
                break;
            case Feature::auth_failures:
                cr.comp_a = counter(CountEvent::auth_failure);
                break;
            case Feature::short_rings:
                cr.comp_a = counter(CountEvent::short_ring);
                break;
            case Feature::source_country_not_allowed:
                need_source_country = true;
                break;
            case Feature::concurrent_calls:
            case Feature::scanner_user_agent:
            case Feature::off_hours:
            case Feature::count_:
                break;
        }
        cr.key_index = static_cast<std::uint8_t>(r.key);
        cr.op = r.op;
        cr.threshold = r.threshold;
        cr.min_den = std::max<double>(1, r.min_attempts);
        switch (r.feature) {
            case Feature::scanner_user_agent:
                cr.source = ValueSource::scanner;
                break;
            case Feature::off_hours:
                cr.source = ValueSource::off_hours;
                break;
            case Feature::source_country_not_allowed:
                cr.source = ValueSource::src_not_allowed;
                break;
            case Feature::concurrent_calls:
                cr.source = ValueSource::concurrent;
                break;
            case Feature::short_call_ratio:
            case Feature::failed_call_ratio:
                cr.source = ValueSource::ratio;
                break;
            default:
                cr.source = ValueSource::component;
                break;
        }
        rules.push_back(std::move(cr));
    }
    at(S::engine);
    if (rules.size() > 0xffff) return base::make_error("at most 65535 fraud rules are supported");
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto& cr = rules[i];
        const RuleValue& value = cr;
        const auto same = std::find_if(ladders.begin(), ladders.end(), [&](const Ladder& l) {
            return static_cast<const RuleValue&>(l) == value;
        });
        const auto li = static_cast<std::size_t>(same - ladders.begin());
        if (same == ladders.end()) {
            Ladder l;
            static_cast<RuleValue&>(l) = value;
            ladders.push_back(std::move(l));
        }
        ladders[li].rules.push_back(static_cast<std::uint16_t>(i));
        rule_ladder.push_back(static_cast<std::uint16_t>(li));
    }
    for (std::size_t li = 0; li < ladders.size(); ++li) {
        invite_ladders.push_back(static_cast<std::uint16_t>(li));
        if (!ladders[li].call_feature) other_ladders.push_back(static_cast<std::uint16_t>(li));
    }
    ladder_value.assign(ladders.size(), 0);
    fired.reserve(rules.size());
    for (const auto& d : cfg.deny) {
        at(S::deny_rule, static_cast<std::size_t>(&d - cfg.deny.data()));
        if (d.id.empty()) return base::make_error("a fraud deny rule has no id");
        if (std::find(ids.begin(), ids.end(), d.id) != ids.end())
            return base::make_error("deny rule '" + d.id + "': duplicate id");
        ids.push_back(d.id);
        CompiledDeny cd;
        cd.rule = &d;
        if (!d.destinations.empty()) {
            auto b = list_bit(d.destinations);
            if (!b) return base::make_error("deny rule '" + d.id + "': " + b.error().message);
            cd.dest_mask = *b;
        }
        for (const auto& c : d.countries) cd.countries.push_back(country_code16(c));
        for (const auto& c : d.source_countries) cd.source_countries.push_back(country_code16(c));
        if (!cd.source_countries.empty()) need_source_country = true;
        denies.push_back(std::move(cd));
    }
    at(S::engine);

    // Lay out the slots and size the tables. The key budget is split between the key kinds
    // that rules read, so a flood of one kind cannot take another kind's room: addresses and
    // accounts (attacker-fed, unbounded) get 3 shares, source prefixes 2, tenants and
    // destination prefixes (bounded by configuration and numbering plans) 1.
    constexpr std::size_t kShares[kKeyKindCount] = {3, 2, 3, 1, 1};
    std::size_t shares = 0;
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) shares += kinds[ki].used ? kShares[ki] : 0;
    //
    // The hot slot holds what every event of the key reads: the header, sequential runs,
    // counters (8-bit buckets when no rule reading them is a ratio or has a threshold above
    // 254: a sub-bucket then saturates only after its rules have fired) and the summaries of
    // distinct sets, largest alignment first, rounded up to whole cache lines. The entries of
    // distinct sets go to the cold area.
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        auto& kt = kinds[ki];
        if (!kt.used) continue;
        std::size_t off = sizeof(KeyHeader);
        std::size_t cold = 0;
        for (auto& c : kt.comps) {
            if (c.type == CompType::counter) c.narrow = !c.ratio && c.max_threshold < 255;
            if (c.type == CompType::distinct) c.lines = distinct_lines(c.capacity);
        }
        auto place = [&](auto pred, std::size_t bytes) {
            for (auto& c : kt.comps) {
                if (!pred(c)) continue;
                c.offset = static_cast<std::uint32_t>(off);
                off += bytes;
                if (c.type == CompType::counter || c.type == CompType::distinct)
                    kt.rings.push_back(
                        {c.type == CompType::distinct
                             ? static_cast<std::uint32_t>(c.offset + offsetof(DistinctSummary, n))
                             : c.offset,
                         c.width_idx, c.narrow || c.type == CompType::distinct});
                if (c.type == CompType::distinct) {
                    c.cold_offset = static_cast<std::uint32_t>(cold);
                    cold += std::size_t{c.lines} * 64;
                }
            }
        };
        place([](const Component& c) { return c.type == CompType::sequential; },
              sizeof(SequentialRun));
        place([](const Component& c) { return c.type == CompType::counter && !c.narrow; },
              kRingBuckets * 2);
        place([](const Component& c) { return c.type == CompType::distinct; },
              sizeof(DistinctSummary));
        place([](const Component& c) { return c.type == CompType::counter && c.narrow; },
              kRingBuckets);
        for (const auto& r : kt.rings)
            if (std::find(kt.widths.begin(), kt.widths.end(), r.width_idx) == kt.widths.end())
                kt.widths.push_back(r.width_idx);
        kt.width_rings.resize(kt.widths.size());
        for (const auto& r : kt.rings) {
            auto wi = static_cast<std::size_t>(
                std::find(kt.widths.begin(), kt.widths.end(), r.width_idx) - kt.widths.begin());
            (r.narrow ? kt.width_rings[wi].narrow : kt.width_rings[wi].wide).push_back(r.offset);
        }
        for (std::size_t i = 0; i < kt.comps.size(); ++i)
            if (kt.comps[i].type == CompType::distinct) kt.distinct_comps.push_back(i);
        for (std::size_t k = 0; k < kEventKinds; ++k)
            for (std::size_t i = 0; i < kt.comps.size(); ++i)
                if (counts_on(kt.comps[i].type, kt.comps[i].what, static_cast<EventKind>(k))) {
                    const Component& x = kt.comps[i];
                    kt.by_event[k].push_back({x.type, x.what, x.narrow, x.width_idx, x.scope_idx,
                                              x.offset, x.cold_offset, x.lines, x.window_s,
                                              x.list_mask});
                }
        kt.slot_bytes = (off + 63) & ~std::size_t{63};
        kt.cold_bytes = cold;
        std::size_t cap = std::max<std::size_t>(64, cfg.max_tracked_keys * kShares[ki] / shares);
        if (with_tables) kt.table.init(cap, kt.slot_bytes, kt.cold_bytes);
    }
    for (auto& l : ladders) {
        const auto& kt = kinds[l.key_index];
        auto probe = [&](int ci) {
            Probe p;
            if (ci < 0) return p;
            const Component& comp = kt.comps[static_cast<std::size_t>(ci)];
            p.type = comp.type;
            p.narrow = comp.narrow || comp.type == CompType::distinct;
            p.width_idx = comp.width_idx;
            p.offset = comp.type == CompType::distinct
                           ? static_cast<std::uint32_t>(comp.offset + offsetof(DistinctSummary, n))
                           : comp.offset;
            p.window_s = comp.window_s;
            return p;
        };
        l.a = probe(l.comp_a);
        l.b = probe(l.comp_b);
        bool rising = true;
        double floor = std::numeric_limits<double>::infinity();
        for (auto ri : l.rules) {
            const auto& cr = rules[ri];
            rising = rising && (cr.op == Op::ge || cr.op == Op::gt);
            floor = std::min(floor, cr.threshold);
        }
        if (rising && !l.rules.empty()) l.fire_floor = floor;
    }
    invite_ladders.clear();
    other_ladders.clear();
    for (std::size_t li = 0; li < ladders.size(); ++li) {
        const Ladder& l = ladders[li];
        const auto i = static_cast<std::uint16_t>(li);
        if (l.source == ValueSource::component && l.a.type != CompType::sequential && l.a.narrow) {
            CounterLadder cl{i, l.key_index, l.scope_idx, l.a.width_idx, l.a.offset, l.fire_floor};
            invite_counters.push_back(cl);
            if (!l.call_feature) other_counters.push_back(cl);
        } else {
            invite_ladders.push_back(i);
            if (!l.call_feature) other_ladders.push_back(i);
        }
    }
    if (with_tables) {
        calls.init(std::max<std::uint64_t>(64, cfg.max_tracked_calls), sizeof(CallEntry), 0, true);
        bans.init(std::max<std::uint32_t>(64, cfg.ban_capacity), sizeof(BanEntry), 0, true);
    }
    return {};
}

// Whether the state the running engine holds means the same under this compiled
// configuration, so that it can be carried over as it is. Keys must hash alike (source
// prefix lengths) into tables of the same sizes; each key kind must hold the same components
// at the same places of its slots, each counting the same events (the signature: type, value,
// window, lists and scope counted in) in buckets of the same size; what makes an event count
// must be defined alike (short calls and rings, sequential steps, the home country); and the
// calls in progress hold prefix lists and account groups by position, so both keep their
// names and order. Thresholds, weights, modes, score thresholds, ban duration, deny rules and
// the contents of lists, groups and country codes are read when events are scored: they may
// change.
bool Engine::Impl::same_state_layout(const Impl& running) const {
    const EngineConfig& o = running.cfg;
    if (cfg.source_prefix_v4 != o.source_prefix_v4 || cfg.source_prefix_v6 != o.source_prefix_v6 ||
        cfg.short_call_seconds != o.short_call_seconds ||
        cfg.short_ring_seconds != o.short_ring_seconds ||
        cfg.sequential_max_step != o.sequential_max_step ||
        cfg.home_country_code != o.home_country_code)
        return false;
    if (list_names != running.list_names) return false;
    if (cfg.account_groups.size() != o.account_groups.size()) return false;
    for (std::size_t i = 0; i < cfg.account_groups.size(); ++i)
        if (cfg.account_groups[i].name != o.account_groups[i].name) return false;
    if (calls.capacity() != running.calls.capacity() || bans.capacity() != running.bans.capacity())
        return false;
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        const KindTable& a = kinds[ki];
        const KindTable& b = running.kinds[ki];
        if (a.used != b.used) return false;
        if (!a.used) continue;
        if (a.slot_bytes != b.slot_bytes || a.cold_bytes != b.cold_bytes ||
            a.table.capacity() != b.table.capacity() || a.comps.size() != b.comps.size())
            return false;
        for (std::size_t i = 0; i < a.comps.size(); ++i) {
            const Component& x = a.comps[i];
            const Component& y = b.comps[i];
            if (x.signature != y.signature || x.width != y.width || x.narrow != y.narrow ||
                x.offset != y.offset || x.cold_offset != y.cold_offset || x.lines != y.lines)
                return false;
        }
    }
    return true;
}

// Takes over the running engine's state (tables, sweep positions, counters, event sink);
// `running` is left with this engine's empty tables and is discarded by the caller.
void Engine::Impl::take_state(Impl& running) {
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!kinds[ki].used) continue;
        kinds[ki].table.swap(running.kinds[ki].table);
        kinds[ki].cursor = running.kinds[ki].cursor;
        key_pace[ki] = running.key_pace[ki];
    }
    calls.swap(running.calls);
    calls_cursor = running.calls_cursor;
    bans.swap(running.bans);
    bans_cursor = running.bans_cursor;
    call_pace = running.call_pace;
    ban_pace = running.ban_pace;
    sweep_last = running.sweep_last;
    counters = running.counters;
    sink = std::move(running.sink);
}

// ---------------------------------------------------------------------------------------------
// Keys

std::uint64_t Engine::Impl::key_hash_of(KeyKind k, std::string_view v) const {
    auto ki = static_cast<std::size_t>(k);
    switch (k) {
        case KeyKind::source_ip: {
            auto a = base::IpAddress::parse(v);
            return a ? mix64(a->hash() ^ kSalt[ki]) : 0;
        }
        case KeyKind::source_prefix: {
            auto p = base::Prefix::parse(v);
            return p ? mix64(p->address().hash() ^ (std::uint64_t{p->length()} << 8) ^ kSalt[ki])
                     : 0;
        }
        default:
            return hash_string(v, kSalt[ki]);
    }
}

std::int64_t Engine::Impl::find_or_create(KeyKind k, std::uint64_t h, base::Nanos now,
                                          std::int64_t hint) {
    std::uint32_t now_s = to_seconds(now);
    auto& kt = kinds[static_cast<std::size_t>(k)];
    auto& t = kt.table;
    std::int64_t i = t.find_hinted(h, hint);
    if (i >= 0) return i;
    if (t.full()) {
        // Eviction: sample a few occupied buckets from a position picked by the new key's
        // hash. Idle keys go first; then the least recently seen key that carries no
        // evidence (no rule fired on it lately, no call in progress). Keys with evidence are
        // never evicted by newcomers: if every candidate has some, the new key is not tracked.
        std::size_t pos = t.home(mix64(h));
        std::int64_t victim = -1;
        std::uint32_t victim_seen = 0xffffffffu;
        bool idle = false;
        std::size_t seen = 0;
        for (std::size_t n = 0; n < kEvictionScan && seen < kEvictionSample; ++n) {
            std::size_t b = (pos + n) % t.buckets();
            if (t.hash_at(b) == 0) continue;
            ++seen;
            auto* hdr = static_cast<const KeyHeader*>(t.slot(b));
            if (hdr->concurrent > 0 || hdr->evidence_until_s > now_s) continue;
            if (age_of(now_s, hdr->last_seen_s()) >= idle_s) {
                victim = static_cast<std::int64_t>(b);
                idle = true;
                break;
            }
            if (hdr->last_seen_s() < victim_seen) {
                victim_seen = hdr->last_seen_s();
                victim = static_cast<std::int64_t>(b);
            }
        }
        if (victim < 0) {
            counters.add(Counter::keys_untracked);
            return -1;
        }
        t.erase(static_cast<std::size_t>(victim));
        counters.add(idle ? Counter::keys_expired : Counter::keys_evicted);
    }
    std::size_t j = t.insert(h);
    auto* hdr = static_cast<KeyHeader*>(t.slot(j));
    hdr->last_seen = now;
    counters.add(Counter::keys_created);
    return static_cast<std::int64_t>(j);
}

void Engine::Impl::resolve_keys(Ctx& c, const Source& src, std::string_view account,
                                std::string_view tenant, bool create, const AttemptKeys* pre) {
    // Account group: the first group (in configuration order) that contains the account.
    c.group = -1;
    if (!account.empty()) {
        int g = -1;
        if (!exact_accounts.empty()) {
            auto it = exact_accounts.find(account);
            if (it != exact_accounts.end()) g = it->second;
        }
        for (const auto& [pattern, gi] : account_patterns) {
            if (g >= 0 && gi >= g) break;
            if (base::glob_match(pattern, account)) {
                g = gi;
                break;
            }
        }
        c.group = g;
    }
    if (tenant.empty() && c.group >= 0) tenant = groups[static_cast<std::size_t>(c.group)].tenant;
    c.tenant_hash = tenant.empty() ? 0 : hash_string(tenant, kSalt[3]);

    auto set = [&](KeyKind k, std::uint64_t h) {
        auto ki = static_cast<std::size_t>(k);
        c.key_hash[ki] = h;
        c.has_key[ki] = true;
        if (kinds[ki].used && !pre) kinds[ki].table.prefetch(h);
    };
    if (pre) {
        for (std::size_t ki = 0; ki < 3; ++ki)
            if (pre->has_key[ki]) set(static_cast<KeyKind>(ki), pre->key_hash[ki]);
    } else {
        if (!src.addr.is_unspecified()) {
            set(KeyKind::source_ip, mix64(src.addr.hash() ^ kSalt[0]));
            auto p = base::covering_prefix(src.addr, cfg.source_prefix_v4, cfg.source_prefix_v6);
            set(KeyKind::source_prefix,
                mix64(p.address().hash() ^ (std::uint64_t{p.length()} << 8) ^ kSalt[1]));
        }
        if (!account.empty()) set(KeyKind::account, hash_string(account, kSalt[2]));
    }
    if (!tenant.empty()) set(KeyKind::tenant, c.tenant_hash);
    if (!create) return;
    // Second pass, once the buckets are on their way into the cache.
    for (std::size_t ki = 0; ki < static_cast<std::size_t>(KeyKind::destination_prefix); ++ki)
        if (c.has_key[ki] && kinds[ki].used) {
            if (pre) {
                c.slot[ki] = find_or_create(static_cast<KeyKind>(ki), c.key_hash[ki], c.now,
                                            ki < 3 ? pre->hint[ki] : -1);
                continue;  // its lines were read by the pipeline
            }
            c.slot[ki] = find_or_create(static_cast<KeyKind>(ki), c.key_hash[ki], c.now);
            if (c.slot[ki] >= 0)
                kinds[ki].table.prefetch_slot(static_cast<std::size_t>(c.slot[ki]));
        }
}

void Engine::Impl::attempt_keys(const CallAttempt& a, AttemptKeys& k) const {
    k.invite = a.method.empty() || a.method == "INVITE";
    k.call_hash = k.invite && !a.call_id.empty() ? hash_string(a.call_id, 0xca11) : 0;
    if (!a.source.addr.is_unspecified()) {
        k.addr_hash = a.source.addr.hash();
        k.key_hash[0] = mix64(k.addr_hash ^ kSalt[0]);
        auto p = base::covering_prefix(a.source.addr, cfg.source_prefix_v4, cfg.source_prefix_v6);
        k.key_hash[1] = mix64(p.address().hash() ^ (std::uint64_t{p.length()} << 8) ^ kSalt[1]);
        k.has_key[0] = k.has_key[1] = true;
    }
    if (!a.account.empty()) {
        k.key_hash[2] = hash_string(a.account, kSalt[2]);
        k.has_key[2] = true;
    }
    k.ndigits = 0;
    if (k.invite) {
        for (char ch : a.callee) {
            if (ch >= '0' && ch <= '9') {
                if (k.ndigits < sizeof(k.digits)) k.digits[k.ndigits++] = ch;
            } else if (ch == '+' || ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')') {
                continue;  // visual separators
            } else {
                break;  // "@host", ";params": end of the number
            }
        }
        if (k.ndigits) {
            k.dest_hash =
                static_cast<std::uint32_t>(hash_string({k.digits, k.ndigits}, kTargetSeed));
            auto cw = countries.walk({k.digits, k.ndigits});
            k.dest_country = cw.deepest ? country_iso[cw.deepest - 1] : 0;
            k.code_len = cw.deepest ? cw.deepest_len : 0;
        }
    }
    // A callee that is all digits (the usual case) is its own digit string: one hash serves
    // both the destination and the request-target sets.
    if (!a.callee.empty())
        k.target_hash = k.invite && k.ndigits == a.callee.size()
                            ? k.dest_hash
                            : static_cast<std::uint32_t>(hash_string(a.callee, kTargetSeed));
    k.src_country = country_code16(a.source.country);
}

// Reads the hash buckets of an attempt's keys, its call and its source's ban entry (and the
// probe beyond them): the first step of the burst pipeline, see on_attempts.
std::uint64_t Engine::Impl::load_buckets(const AttemptKeys& k) const {
    std::uint64_t acc = 0;
    for (std::size_t ki = 0; ki < 3; ++ki)
        if (k.has_key[ki] && kinds[ki].used)
            acc += static_cast<std::uint64_t>(kinds[ki].table.find(k.key_hash[ki]));
    if (k.call_hash) acc += static_cast<std::uint64_t>(calls.find(k.call_hash));
    if (bans.size() && k.addr_hash) acc += static_cast<std::uint64_t>(bans.find(k.addr_hash));
    return acc;
}

// The lines an attempt reads beyond its hash buckets: its keys' hot slots and the cold lines
// its distinct-set insertions will touch. The burst pipeline prefetches them; just
// before the attempt is scored they are all read once more, independently of each other: on
// this VM the first access to each of these random lines costs far more than its transfer
// even when the line was prefetched (see docs/fraud.md, "Speed"), and independent loads issued
// together overlap those costs where the scoring code, reaching them one after the other,
// would pay them in turn.
template <bool kTouch>
std::uint64_t Engine::Impl::state_lines(const AttemptKeys& k) const {
    std::uint64_t acc = 0;
    auto line = [&](const void* p) {
        if constexpr (kTouch)
            acc += *static_cast<const volatile std::uint8_t*>(p);
        else
            __builtin_prefetch(p);
    };
    for (std::size_t ki = 0; ki < 3; ++ki) {
        if (!k.has_key[ki] || !kinds[ki].used) continue;
        const auto& kt = kinds[ki];
        std::int64_t at = kt.table.find_hinted(k.key_hash[ki], k.hint[ki]);
        k.hint[ki] = at;
        if (at < 0) continue;
        auto i = static_cast<std::size_t>(at);
        const auto* slot = static_cast<const std::uint8_t*>(kt.table.slot(i));
        for (std::size_t off = 0; off < kt.slot_bytes; off += 64) line(slot + off);
        if (kt.distinct_comps.empty()) continue;
        const auto* cold = static_cast<const std::uint8_t*>(kt.table.cold(i));
        for (auto ci : kt.distinct_comps) {
            const auto& comp = kt.comps[ci];
            std::uint32_t h = 0;
            switch (static_cast<DistinctValue>(comp.what)) {
                case DistinctValue::destination:
                    // A set restricted to lists may not take it (the lists are matched when
                    // the attempt is scored): one line read for nothing, never a wrong count.
                    h = k.invite && k.ndigits ? k.dest_hash : 0;
                    break;
                case DistinctValue::destination_country:
                    h = k.invite ? k.dest_country : 0;
                    break;
                case DistinctValue::request_target:
                    h = k.target_hash;
                    break;
                case DistinctValue::source_country:
                    h = k.src_country;
                    break;
                case DistinctValue::failed_username:
                    break;
            }
            if (h) line(cold + comp.cold_offset + distinct_line_offset(h, comp.lines));
        }
    }
    if constexpr (!kTouch) {
        // The call entry: every line of it (88 bytes may straddle three lines), found from
        // its hash bucket, which load_buckets has brought in.
        if (k.call_hash) {
            std::size_t home = calls.home(SlotTable::fix(k.call_hash));
            acc += calls.find(k.call_hash) >= 0;
            const auto* e = static_cast<const std::uint8_t*>(calls.slot(home));
            line(e);
            line(e + 64);
            line(e + sizeof(CallEntry) - 1);
        }
    }
    if constexpr (kTouch) {
        if (k.call_hash) {
            // The call entry is looked up, then written where its hash lands.
            acc += calls.find(k.call_hash) >= 0;
            const auto* e = static_cast<const std::uint8_t*>(
                calls.slot(calls.home(SlotTable::fix(k.call_hash))));
            line(e);
            line(e + 64);
            line(e + sizeof(CallEntry) - 1);
        }
        if (bans.size() && k.addr_hash) acc += bans.find(k.addr_hash) >= 0;
    }
    return acc;
}

bool Engine::Impl::scanner_ua(std::string_view ua) {
    // The same User-Agent as the previous event (a fleet sends one string): compared, not
    // hashed.
    if (ua.size() == last_ua_len && std::memcmp(ua.data(), last_ua, ua.size()) == 0)
        return last_ua_scanner;
    bool scanner = scanner_ua_memo(ua);
    if (ua.size() <= sizeof(last_ua)) {
        std::memcpy(last_ua, ua.data(), ua.size());
        last_ua_len = ua.size();
        last_ua_scanner = scanner;
    }
    return scanner;
}

// scanner_user_agent, for every event that is scored (attempts, other requests, authentication
// results, registrations): a signature is proof whatever the request.
void Engine::Impl::resolve_scanner(Ctx& c, std::string_view ua) {
    if (ua.empty())
        c.scanner = cfg.empty_user_agent_is_scanner;
    else if (!scanner_globs.empty())
        c.scanner = scanner_ua(ua);
}

bool Engine::Impl::scanner_ua_memo(std::string_view ua) {
    std::uint64_t h = SlotTable::fix(hash_string(ua, 0x5ca7));
    UaMemo& memo = ua_memo[h % ua_memo.size()];
    if (memo.hash == h) return memo.scanner;
    char buf[256];
    std::size_t n = std::min(ua.size(), sizeof(buf));
    for (std::size_t i = 0; i < n; ++i) buf[i] = base::to_lower(ua[i]);
    bool scanner = false;
    for (const auto& g : scanner_globs)
        if (g.matches({buf, n})) scanner = true;
    memo = {h, scanner};
    return scanner;
}

void Engine::Impl::resolve_destination(Ctx& c, const AttemptKeys& k) {
    c.ndigits = k.ndigits;
    if (c.ndigits == 0) return;
    std::memcpy(c.digits, k.digits, c.ndigits);
    auto d = c.digits_view();
    c.dest_hash = k.dest_hash;
    auto lw = lists.walk(d);
    c.dest_mask = lw.mask;
    std::size_t code_len = k.code_len;
    c.dest_country = k.dest_country;
    if (!home_code.empty()) {
        c.international = code_len ? d.substr(0, code_len) != home_code : !d.starts_with(home_code);
    }
    // Destination key: the longest matching list prefix, else the calling code, else 3 digits.
    std::size_t klen = lw.deepest_len ? lw.deepest_len
                       : code_len     ? code_len
                                      : std::min<std::size_t>(3, d.size());
    auto ki = static_cast<std::size_t>(KeyKind::destination_prefix);
    c.key_hash[ki] = hash_string(d.substr(0, klen), kSalt[ki]);
    c.has_key[ki] = true;
    if (kinds[ki].used)
        c.slot[ki] = find_or_create(KeyKind::destination_prefix, c.key_hash[ki], c.now);
}

void Engine::Impl::resolve_source(Ctx& c, const Source& src, Verdict& out) {
    if (!src.country.empty()) {
        c.src_country = country_code16(src.country);
    } else if (need_source_country && cfg.geoip) {
        c.src_country = country_code16(cfg.geoip->country(src.addr));
    }
    put_country(out.source_country, c.src_country);
    if (c.group >= 0) {
        const auto& g = groups[static_cast<std::size_t>(c.group)];
        if (!g.allowed_src.empty()) {
            // An unknown source country is not proof of anything: only a known, unlisted one.
            c.src_not_allowed =
                c.src_country != 0 && std::find(g.allowed_src.begin(), g.allowed_src.end(),
                                                c.src_country) == g.allowed_src.end();
        }
    }
}

void Engine::Impl::resolve_time(Ctx& c, base::UnixNanos wall) {
    if (c.group < 0) return;
    const auto& g = groups[static_cast<std::size_t>(c.group)];
    if (!g.hours.any()) return;
    std::int64_t s = wall / base::kNanosPerSecond;
    std::int64_t local = s + g.tz.offset_at(s);
    std::int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
    int weekday = static_cast<int>(((days % 7) + 7 + 3) % 7);  // 1970-01-01 was a Thursday
    int minute = static_cast<int>((local - days * 86400) / 60);
    c.off_hours = !g.hours.contains(weekday, minute);
}

bool Engine::Impl::scope_match(const CompiledScope& s, const Ctx& c) const {
    if (!s.tenants.empty() &&
        std::find(s.tenants.begin(), s.tenants.end(), c.tenant_hash) == s.tenants.end())
        return false;
    if (!s.groups.empty() && (c.group < 0 || !s.groups[static_cast<std::size_t>(c.group)]))
        return false;
    if (s.dest_mask && !(c.dest_mask & s.dest_mask)) return false;
    if (s.time == TimeScope::business_hours && c.off_hours) return false;
    if (s.time == TimeScope::off_hours && !c.off_hours) return false;
    return true;
}

// Once per event: which scopes match, and where `now` falls for every window width.
void Engine::Impl::prepare(Ctx& c) {
    c.scope_bits = 1;
    for (std::size_t i = 1; i < scopes.size(); ++i)
        if (scope_match(scopes[i], c)) c.scope_bits |= std::uint64_t{1} << i;
    // Events come in time order: the sub-bucket of the previous event (or the next one) is
    // found without the two 64-bit divisions per width.
    for (std::size_t i = 0; i < widths.size(); ++i) {
        base::Nanos w = widths[i];
        auto& cache = epoch_cache[i];
        if (c.now >= cache.start + w && c.now < cache.start + 2 * w) {
            ++cache.epoch;
            cache.start += w;
        } else if (c.now < cache.start || c.now >= cache.start + w) {
            cache.epoch = epoch_of(c.now, w);
            cache.start = static_cast<base::Nanos>(cache.epoch) * w;
        }
        c.epoch[i] = cache.epoch;
        c.epoch_start[i] = cache.start;
        c.into[i] = static_cast<double>(std::max<base::Nanos>(0, c.now - cache.start)) /
                    static_cast<double>(w);
    }
}

// ---------------------------------------------------------------------------------------------
// State updates and rule evaluation

// Moves every ring of a slot to the event's epoch (the slot's epoch for a width is that of
// its newest event), clearing the sub-buckets skipped since.
void Engine::Impl::advance(const KindTable& kt, std::uint8_t* slot, const Ctx& c) const {
    auto* hdr = reinterpret_cast<KeyHeader*>(slot);
    base::Nanos last = hdr->last_seen;
    if (c.now <= last) return;  // the rings are at this epoch already (or a later one)
    for (std::size_t wi = 0; wi < kt.widths.size(); ++wi) {
        const auto w = kt.widths[wi];
        base::Nanos start = c.epoch_start[w];
        if (last >= start) continue;  // same sub-bucket
        const auto& rings = kt.width_rings[wi];
        if (last < start - span[w]) {
            // Older than the whole ring (a key idle for a window): every bucket goes.
            for (auto off : rings.narrow) std::memset(slot + off, 0, kRingBuckets);
            for (auto off : rings.wide) std::memset(slot + off, 0, 2 * kRingBuckets);
            continue;
        }
        // The sub-bucket of `last`, counting back from the event's (no division).
        base::Nanos width = widths[w];
        std::uint32_t e = c.epoch[w] - 1;
        for (start -= width; last < start && c.epoch[w] - e < kRingBuckets; start -= width) --e;
        if (!rings.narrow.empty()) {
            const std::uint64_t keep = ring_keep8(e, c.epoch[w]);
            for (auto off : rings.narrow) ring_keep(slot + off, keep);
        }
        if (!rings.wide.empty()) {
            const unsigned __int128 keep = ring_keep16(e, c.epoch[w]);
            for (auto off : rings.wide)
                ring_keep(reinterpret_cast<std::uint16_t*>(slot + off), keep);
        }
    }
    hdr->last_seen = c.now;
}

// The epoch the slot's rings of width `w` are at (after advance): the event's, or a later
// one for an event that arrives late.
std::uint32_t Engine::Impl::slot_epoch(const std::uint8_t* slot, std::uint16_t w,
                                       const Ctx& c) const {
    base::Nanos last = reinterpret_cast<const KeyHeader*>(slot)->last_seen;
    return c.now >= last ? c.epoch[w] : epoch_of(last, widths[w]);
}

void Engine::Impl::update(Ctx& c) {
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (c.slot[ki] < 0) continue;
        auto& kt = kinds[ki];
        auto* base_ptr = static_cast<std::uint8_t*>(kt.table.slot(c.slot[ki]));
        advance(kt, base_ptr, c);
        for (const UpdateOp& comp : kt.by_event[static_cast<std::size_t>(c.kind)]) {
            if (!(c.scope_bits >> comp.scope_idx & 1)) continue;
            void* p = base_ptr + comp.offset;
            switch (comp.type) {
                case CompType::counter: {
                    bool hit = false;
                    switch (static_cast<CountEvent>(comp.what)) {
                        case CountEvent::attempt:
                            hit = c.kind == EventKind::invite;
                            break;
                        case CountEvent::international:
                            hit = c.kind == EventKind::invite && c.international;
                            break;
                        case CountEvent::list_hit:
                            hit = c.kind == EventKind::invite && (c.dest_mask & comp.list_mask);
                            break;
                        case CountEvent::answered:
                            hit = c.kind == EventKind::end && c.answered;
                            break;
                        case CountEvent::short_answered:
                            hit = c.kind == EventKind::end && c.short_answered;
                            break;
                        case CountEvent::ended:
                            hit = c.kind == EventKind::end;
                            break;
                        case CountEvent::failed:
                            hit = c.kind == EventKind::end && c.failed;
                            break;
                        case CountEvent::auth_failure:
                            hit = c.kind == EventKind::auth && c.auth_failed;
                            break;
                        case CountEvent::short_ring:
                            hit = c.kind == EventKind::end && c.short_ring;
                            break;
                    }
                    if (!hit) break;
                    std::uint32_t e = slot_epoch(base_ptr, comp.width_idx, c);
                    if (comp.narrow)
                        ring_add(static_cast<std::uint8_t*>(p), e);
                    else
                        ring_add(static_cast<std::uint16_t*>(p), e);
                    break;
                }
                case CompType::distinct: {
                    std::uint32_t h = 0;
                    switch (static_cast<DistinctValue>(comp.what)) {
                        case DistinctValue::destination:
                            if (c.kind == EventKind::invite && c.ndigits &&
                                (!comp.list_mask || (c.dest_mask & comp.list_mask)))
                                h = c.dest_hash;
                            break;
                        case DistinctValue::destination_country:
                            if (c.kind == EventKind::invite) h = c.dest_country;
                            break;
                        case DistinctValue::failed_username:
                            h = c.username_hash;
                            break;
                        case DistinctValue::request_target:
                            h = c.target_hash;
                            break;
                        case DistinctValue::source_country:
                            if (c.kind != EventKind::end) h = c.src_country;
                            break;
                    }
                    if (h) {
                        auto* cold = static_cast<std::uint8_t*>(kt.table.cold(c.slot[ki]));
                        distinct_insert(*static_cast<DistinctSummary*>(p),
                                        reinterpret_cast<DistinctEntry*>(cold + comp.cold_offset),
                                        comp.lines, h, slot_epoch(base_ptr, comp.width_idx, c));
                    }
                    break;
                }
                case CompType::sequential: {
                    if (c.kind != EventKind::invite || c.ndigits == 0) break;
                    auto* run = static_cast<SequentialRun*>(p);
                    auto d = c.digits_view();
                    if (d.size() > 18) d = d.substr(d.size() - 18);
                    std::uint64_t n = 0;
                    for (char ch : d) n = n * 10 + static_cast<std::uint64_t>(ch - '0');
                    std::uint64_t diff =
                        n > run->last_number ? n - run->last_number : run->last_number - n;
                    bool fresh = run->run != 0 && age_of(c.now_s, run->last_s) < comp.window_s;
                    if (fresh && run->last_len == d.size() && diff >= 1 &&
                        diff <= cfg.sequential_max_step) {
                        if (run->run != 0xffff) ++run->run;
                    } else if (!(fresh && diff == 0)) {
                        run->run =
                            1;  // a redial of the same number neither extends nor breaks a run
                    }
                    run->last_number = n;
                    run->last_len = static_cast<std::uint8_t>(d.size());
                    run->last_s = c.now_s;
                    break;
                }
            }
        }
    }
}

void Engine::Impl::evaluate(Ctx& c, Verdict& out) {
    bool policy_observe = cfg.mode == Mode::observe;
    Action hard = Action::allow;
    auto push = [&](const Reason& r) {
        if (out.reason_count < Verdict::kMaxReasons)
            out.reasons[out.reason_count++] = r;
        else
            ++out.reasons_dropped;
    };
    // Hard rules: block (or ban) outright, whatever the score.
    for (const auto& d : denies) {
        bool hit = false;
        if (c.kind == EventKind::invite) {
            if (d.dest_mask && (c.dest_mask & d.dest_mask)) hit = true;
            if (c.dest_country && std::find(d.countries.begin(), d.countries.end(),
                                            c.dest_country) != d.countries.end())
                hit = true;
        }
        if (c.src_country && std::find(d.source_countries.begin(), d.source_countries.end(),
                                       c.src_country) != d.source_countries.end())
            hit = true;
        if (!hit) continue;
        Reason r;
        r.rule_id = d.rule->id;
        r.feature = Feature::count_;
        r.key = KeyKind::count_;
        r.value = 1;
        r.threshold = 1;
        r.hard = true;
        r.ban = d.rule->ban;
        r.observe = policy_observe;
        push(r);
        hard = std::max(hard, d.rule->ban ? Action::ban : Action::block);
    }
    if (c.kind == EventKind::invite && c.group >= 0 && c.ndigits) {
        // An allow-list: a destination of unknown country (international networks 882/883,
        // satellite 881) is not on it.
        const auto& g = groups[static_cast<std::size_t>(c.group)];
        if (!g.allowed_dst.empty() && std::find(g.allowed_dst.begin(), g.allowed_dst.end(),
                                                c.dest_country) == g.allowed_dst.end()) {
            Reason r;
            r.rule_id = g.deny_id;
            r.feature = Feature::count_;
            r.key = KeyKind::account;
            r.value = 1;
            r.threshold = 1;
            r.hard = true;
            r.observe = policy_observe;
            push(r);
            hard = std::max(hard, Action::block);
        }
    }

    double score = 0, shadow = 0;
    const std::uint8_t* slots[kKeyKindCount];
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        slots[ki] = c.slot[ki] >= 0
                        ? static_cast<const std::uint8_t*>(kinds[ki].table.slot(c.slot[ki]))
                        : nullptr;
    // A component's value, from the ladder's copy of where it sits in the slot.
    auto component = [&](const std::uint8_t* slot, const Probe& p) __attribute__((always_inline))
                         ->double {
        if (p.type == CompType::sequential) {
            auto* run = reinterpret_cast<const SequentialRun*>(slot + p.offset);
            return age_of(c.now_s, run->last_s) < p.window_s ? run->run : 0;
        }
        std::uint32_t e = slot_epoch(slot, p.width_idx, c);
        double into = c.into[p.width_idx];
        if (p.narrow) return ring_value(slot + p.offset, e, into);
        return ring_value(reinterpret_cast<const std::uint16_t*>(slot + p.offset), e, into);
    };
    const bool invite = c.kind == EventKind::invite;
    fired.clear();
    auto fire = [&](std::uint16_t li, double value) {
        ladder_value[li] = value;
        for (auto ri : ladders[li].rules) {
            const CompiledRule& cr = rules[ri];
            bool hit;
            switch (cr.op) {
                case Op::gt:
                    hit = value > cr.threshold;
                    break;
                case Op::ge:
                    hit = value >= cr.threshold;
                    break;
                case Op::lt:
                    hit = value < cr.threshold;
                    break;
                case Op::le:
                    hit = value <= cr.threshold;
                    break;
                default:
                    hit = value == cr.threshold;
                    break;
            }
            if (hit) fired.push_back(ri);
        }
    };
    for (const auto& l : invite ? invite_counters : other_counters) {
        if (!(c.scope_bits >> l.scope_idx & 1)) continue;
        const std::uint8_t* slot = slots[l.key_index];
        if (!slot) continue;
        double value =
            ring_value(slot + l.offset, slot_epoch(slot, l.width_idx, c), c.into[l.width_idx]);
        if (value < l.fire_floor) continue;
        fire(l.ladder, value);
    }
    for (auto li : invite ? invite_ladders : other_ladders) {
        const Ladder& l = ladders[li];
        if (!(c.scope_bits >> l.scope_idx & 1)) continue;
        const std::size_t ki = l.key_index;
        const std::uint8_t* slot = slots[ki];
        double value;
        switch (l.source) {
            case ValueSource::scanner:
                value = c.scanner ? 1 : 0;
                break;
            case ValueSource::off_hours:
                value = c.off_hours ? 1 : 0;
                break;
            case ValueSource::src_not_allowed:
                value = c.src_not_allowed ? 1 : 0;
                break;
            case ValueSource::concurrent:
                if (!slot) continue;  // key absent or untracked
                value = reinterpret_cast<const KeyHeader*>(slot)->concurrent + 1;  // this call
                break;
            case ValueSource::ratio: {
                if (!slot) continue;
                double den = component(slot, l.b);
                if (den < l.min_den) continue;
                value = component(slot, l.a) / den;
                break;
            }
            default:
                if (!slot) continue;
                value = component(slot, l.a);
                break;
        }
        if (value < l.fire_floor) continue;
        fire(li, value);
    }
    // Reasons in rule order, as the policy lists them.
    std::sort(fired.begin(), fired.end());
    for (auto ri : fired) {
        const CompiledRule& cr = rules[ri];
        const Rule& r = *cr.rule;
        const std::size_t ki = cr.key_index;
        Reason reason;
        reason.rule_id = r.id;
        reason.feature = r.feature;
        reason.key = r.key;
        reason.value = ladder_value[rule_ladder[ri]];
        reason.op = r.op;
        reason.threshold = r.threshold;
        reason.weight = r.weight;
        reason.observe = cr.observe || policy_observe;
        push(reason);
        shadow += r.weight;
        if (!cr.observe) score += r.weight;
        if (slots[ki]) {
            // Evidence: this key now survives floods of new keys until it goes idle.
            auto* hdr = static_cast<KeyHeader*>(kinds[ki].table.slot(c.slot[ki]));
            hdr->evidence_until_s = c.now_s + idle_s;
        }
    }
    score = std::min(score, cfg.score_cap);
    shadow = std::min(shadow, cfg.score_cap);
    auto by_score = [&](double s) {
        if (s >= cfg.ban_threshold) return Action::ban;
        if (s >= cfg.block_threshold) return Action::block;
        if (s >= cfg.flag_threshold) return Action::flag;
        return Action::allow;
    };
    out.score = score;
    out.shadow_score = shadow;
    out.shadow_action = std::max(by_score(shadow), hard);
    out.action = policy_observe ? Action::allow : std::max(by_score(score), hard);
}

void Engine::Impl::finish(Ctx& c, const Source& src, Verdict& out) {
    if (out.action == Action::ban && !src.addr.is_unspecified()) {
        out.ban_until = c.now + cfg.ban_duration;
        ban(src.addr, out.ban_until, c.now);
        auto* hdr = header(KeyKind::source_ip, c);
        if (hdr) hdr->evidence_until_s = c.now_s + idle_s;
    }
    switch (out.action) {
        case Action::allow:
            counters.add(Counter::verdict_allow);
            break;
        case Action::flag:
            counters.add(Counter::verdict_flag);
            break;
        case Action::block:
            counters.add(Counter::verdict_block);
            break;
        case Action::ban:
            counters.add(Counter::verdict_ban);
            break;
        case Action::count_:
            break;
    }
    if (out.shadow_action != Action::allow && out.action == Action::allow)
        counters.add(Counter::shadow_non_allow);
}

bool Engine::Impl::source_banned(const base::IpAddress& a, base::Nanos now,
                                 base::Nanos* until) const {
    if (bans.size() == 0) return false;
    std::int64_t i = bans.find(a.hash());
    if (i < 0) return false;
    auto* b = static_cast<const BanEntry*>(bans.slot(static_cast<std::size_t>(i)));
    if (b->until <= now) return false;
    if (until) *until = b->until;
    return true;
}

void Engine::Impl::ban(const base::IpAddress& a, base::Nanos until, base::Nanos now) {
    std::uint64_t h = a.hash();
    std::int64_t i = bans.find(h);
    if (i < 0) {
        if (bans.full()) {
            // Full: drop an expired ban, else the one that would end soonest.
            std::size_t pos = bans.home(mix64(h));
            std::int64_t victim = -1;
            base::Nanos soonest = 0;
            for (std::size_t n = 0, seen = 0; n < kEvictionScan && seen < kEvictionSample; ++n) {
                std::size_t b = (pos + n) % bans.buckets();
                if (bans.hash_at(b) == 0) continue;
                ++seen;
                auto u = static_cast<const BanEntry*>(bans.slot(b))->until;
                if (victim < 0 || u < soonest) victim = static_cast<std::int64_t>(b), soonest = u;
            }
            if (victim >= 0) bans.erase(static_cast<std::size_t>(victim));
            if (soonest > now) counters.add(Counter::bans_evicted);
        }
        i = static_cast<std::int64_t>(bans.insert(h));
    }
    auto* b = static_cast<BanEntry*>(bans.slot(static_cast<std::size_t>(i)));
    b->until = std::max(b->until, until);
    counters.add(Counter::bans_issued);
}

std::int64_t Engine::Impl::insert_call(std::uint64_t h, base::Nanos now) {
    if (calls.full()) {
        // Prefer an ended call (tombstone); else the oldest call, whose counters are released
        // so that no concurrent counter is left stuck.
        std::size_t pos = calls.home(mix64(h));
        std::int64_t victim = -1;
        base::Nanos oldest = 0;
        bool tomb = false;
        for (std::size_t n = 0, seen = 0; n < kEvictionScan && seen < kEvictionSample; ++n) {
            std::size_t b = (pos + n) % calls.buckets();
            if (calls.hash_at(b) == 0) continue;
            ++seen;
            auto* e = call(static_cast<std::int64_t>(b));
            if (e->ended) {
                victim = static_cast<std::int64_t>(b);
                tomb = true;
                break;
            }
            if (victim < 0 || e->start < oldest)
                victim = static_cast<std::int64_t>(b), oldest = e->start;
        }
        if (victim < 0) return -1;
        if (!tomb) {
            release(*call(victim), nullptr);
            counters.add(Counter::calls_evicted);
        }
        calls.erase(static_cast<std::size_t>(victim));
    }
    (void)now;
    counters.add(Counter::calls_tracked);
    return static_cast<std::int64_t>(calls.insert(h));
}

// Ends a call's hold on the concurrent counters (exactly once: `counted` is cleared) and,
// given an end context, counts its outcome on each key.
void Engine::Impl::release(CallEntry& e, Ctx* end_ctx) {
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!(e.keys & (1u << ki)) || !kinds[ki].used) continue;
        std::int64_t i = kinds[ki].table.find(e.key_hash[ki]);
        if (end_ctx) end_ctx->slot[ki] = i;
        if (i < 0 || !e.counted) continue;
        auto* hdr = static_cast<KeyHeader*>(kinds[ki].table.slot(i));
        if (hdr->concurrent > 0)
            --hdr->concurrent;
        else
            counters.add(Counter::concurrent_underflow);
    }
    e.counted = 0;
}

void Engine::Impl::sweep(base::Nanos now, std::size_t budget) {
    std::size_t keys[kKeyKindCount];
    std::fill(std::begin(keys), std::end(keys), budget);
    sweep_some(now, keys, budget, budget);
}

// The per-event share of the sweep, paced by time rather than by events: each table is
// walked whole once per period (idle keys within idle_key_expiry/4, ended calls within
// kCallSweepPeriod, bans within kBanSweepPeriod) whatever the event rate, so a busy engine
// does not spend a cache miss per table and per event on keys that cannot have expired yet.
void Engine::Impl::housekeep(base::Nanos now) {
    base::Nanos dt = now - sweep_last;
    if (dt <= 0) return;
    sweep_last = now;
    auto share = [&](SweepPace& p, std::size_t buckets, base::Nanos period) -> std::size_t {
        p.debt += static_cast<double>(buckets) * static_cast<double>(std::min(dt, period)) /
                  static_cast<double>(period);
        // In runs of kSweepRun buckets: neighbouring buckets share their pages and lines, so
        // a run pays one first access where single buckets would each pay one.
        if (p.debt < static_cast<double>(kSweepRun)) return 0;
        auto n = std::min<std::size_t>(static_cast<std::size_t>(p.debt), kSweepMaxPerEvent);
        p.debt -= static_cast<double>(n);
        return n;
    };
    base::Nanos key_period = std::max<base::Nanos>(base::kNanosPerSecond, cfg.idle_key_expiry / 4);
    std::size_t keys[kKeyKindCount] = {};
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (kinds[ki].used) keys[ki] = share(key_pace[ki], kinds[ki].table.buckets(), key_period);
    std::size_t nc = share(call_pace, calls.buckets(), kCallSweepPeriod);
    std::size_t nb = bans.size() ? share(ban_pace, bans.buckets(), kBanSweepPeriod) : 0;
    sweep_some(now, keys, nc, nb);
}

void Engine::Impl::sweep_some(base::Nanos now, const std::size_t (&key_budget)[kKeyKindCount],
                              std::size_t call_budget, std::size_t ban_budget) {
    std::uint32_t now_s = to_seconds(now);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        auto& kt = kinds[ki];
        if (!kt.used) continue;
        auto& t = kt.table;
        for (std::size_t n = 0; n < key_budget[ki] && t.size() > 0; ++n) {
            if (kt.cursor >= t.buckets()) kt.cursor = 0;
            std::size_t b = kt.cursor;
            t.prefetch_at(b + 4);
            if (t.hash_at(b) != 0) {
                auto* hdr = static_cast<const KeyHeader*>(t.slot(b));
                if (hdr->concurrent <= 0 && age_of(now_s, hdr->last_seen_s()) >= idle_s) {
                    t.erase(b);  // the next entry may shift into b: look at b again
                    counters.add(Counter::keys_expired);
                    continue;
                }
            }
            ++kt.cursor;
        }
    }
    if (call_budget && calls.size() > 0) {
        // The run's buckets and the first line of their entries (where `ended` and `start`
        // are), read by independent loads before the walk: the walk's own reads, one after
        // the other, each paid a miss (prefetches ahead of it did not bring them in).
        std::uint64_t acc = 0;
        std::size_t b = calls_cursor >= calls.buckets() ? 0 : calls_cursor;
        for (std::size_t n = 0; n < call_budget; ++n, b = calls.next(b))
            acc += calls.hash_at(b) + call(static_cast<std::int64_t>(b))->ended;
        asm volatile("" ::"r"(acc));
    }
    for (std::size_t n = 0; n < call_budget && calls.size() > 0; ++n) {
        if (calls_cursor >= calls.buckets()) calls_cursor = 0;
        std::size_t b = calls_cursor;
        if (calls.hash_at(b) != 0) {
            auto* e = call(static_cast<std::int64_t>(b));
            if (e->ended && now - e->ended >= kTombstone) {
                calls.erase(b);
                continue;
            }
            if (!e->ended && now - e->start >= cfg.max_call_duration) {
                release(*e, nullptr);
                counters.add(Counter::calls_expired);
                calls.erase(b);
                continue;
            }
        }
        ++calls_cursor;
    }
    for (std::size_t n = 0; n < ban_budget && bans.size() > 0; ++n) {
        if (bans_cursor >= bans.buckets()) bans_cursor = 0;
        std::size_t b = bans_cursor;
        if (bans.hash_at(b) != 0 && static_cast<const BanEntry*>(bans.slot(b))->until <= now) {
            bans.erase(b);
            continue;
        }
        ++bans_cursor;
    }
}

// ---------------------------------------------------------------------------------------------
// Public API

Engine::~Engine() = default;

base::Result<std::unique_ptr<Engine>> Engine::create(EngineConfig config) {
    std::unique_ptr<Engine> e(new Engine());
    e->impl_ = std::make_unique<Impl>();
    e->impl_->cfg = std::move(config);
    auto r = e->impl_->compile();
    if (!r) return r.error();
    return e;
}

base::Result<bool> Engine::reconfigure(EngineConfig config) {
    // Compiled aside: an invalid configuration or another layout leaves the engine untouched.
    auto next = std::make_unique<Impl>();
    next->cfg = std::move(config);
    auto r = next->compile();
    if (!r) return r.error();
    if (!next->same_state_layout(*impl_)) return false;
    next->take_state(*impl_);
    impl_ = std::move(next);
    return true;
}

bool Engine::hand_over_state(Engine& next) noexcept {
    if (!next.impl_->same_state_layout(*impl_)) return false;
    next.impl_->take_state(*impl_);
    return true;
}

std::optional<ConfigError> validate(const EngineConfig& config) {
    // The configuration is copied: compile() keeps pointers into its own.
    Engine::Impl probe;
    probe.cfg = config;
    auto r = probe.compile(false);
    if (r) return std::nullopt;
    return ConfigError{probe.compiling, probe.compiling_index, r.error().message};
}

void Engine::on_attempt(const CallAttempt& a, Verdict& out) {
    AttemptKeys k;
    impl_->attempt_keys(a, k);
    impl_->attempt(a, k, out);
}

void Engine::Impl::attempt(const CallAttempt& a, const AttemptKeys& k, Verdict& out) {
    auto& m = *this;
    out.reset();
    bool invite = k.invite;
    m.counters.add(invite ? Counter::attempts : Counter::requests);
    if (m.source_banned(a.source.addr, a.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    std::uint64_t call_hash = k.call_hash;
    if (call_hash) {
        // Count each Call-ID once: retransmissions and forked INVITEs repeat the verdict.
        std::int64_t i = m.calls.find(call_hash);
        if (i >= 0) {
            out.action = out.shadow_action = static_cast<Action>(m.call(i)->action);
            out.duplicate = true;
            m.counters.add(Counter::duplicate_attempts);
            return;
        }
    }
    Ctx c;
    c.kind = invite ? EventKind::invite : EventKind::request;
    c.now = a.now;
    c.now_s = to_seconds(a.now);
    m.resolve_keys(c, a.source, a.account, a.tenant, true, &k);
    if (invite) {
        m.resolve_destination(c, k);
        put_country(out.destination_country, c.dest_country);
    }
    m.resolve_source(c, a.source, out);
    m.resolve_time(c, a.wall);
    m.resolve_scanner(c, a.user_agent);
    c.target_hash = k.target_hash;
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, a.source, out);

    if (call_hash) {
        std::int64_t i = m.insert_call(call_hash, a.now);
        if (i >= 0) {
            auto* e = m.call(i);
            for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
                e->key_hash[ki] = c.key_hash[ki];
                if (c.has_key[ki]) e->keys |= static_cast<std::uint8_t>(1u << ki);
            }
            e->tenant_hash = c.tenant_hash;
            e->dest_mask = c.dest_mask;
            e->start = a.now;
            e->group = static_cast<std::int16_t>(c.group);
            e->action = static_cast<std::uint8_t>(out.action);
            e->off_hours = c.off_hours;
            if (out.action == Action::allow || out.action == Action::flag) {
                e->counted = 1;
                for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
                    if (c.slot[ki] < 0) continue;
                    ++static_cast<KeyHeader*>(m.kinds[ki].table.slot(c.slot[ki]))->concurrent;
                }
            } else {
                e->ended = a.now;  // rejected here: no answer or end will follow
            }
        }
    }
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, a));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(a.now);
}

namespace {
// Reads the first and last byte of each string an attempt's keys are hashed from, so that the
// burst's strings (wherever the caller keeps them) are brought in by independent loads issued
// together rather than one miss at a time in the middle of the hashing.
std::uint64_t string_lines(const CallAttempt& a) {
    std::uint64_t acc = 0;
    auto touch = [&](std::string_view s) {
        if (s.empty()) return;
        acc += static_cast<const volatile char*>(s.data())[0];
        acc += static_cast<const volatile char*>(s.data())[s.size() - 1];
    };
    touch(a.call_id);
    touch(a.account);
    touch(a.callee);
    touch(a.tenant);
    touch(a.user_agent);
    return acc;
}
}  // namespace

void Engine::on_attempts(std::span<const CallAttempt> in, std::span<Verdict> out) {
    // In chunks of kBatch attempts: first hash every attempt's strings and keys, then read the
    // hash buckets of all of them (its keys', its call's and its source's ban bucket) in one
    // tight loop of independent loads; then, kStateAhead attempts ahead, find the keys (their
    // buckets are in) and prefetch their hot slots, the cold lines the attempt's distinct-set
    // insertions will touch and its call entry; read those lines together just before the
    // attempt is scored. On the reference VM a software prefetch of a hash bucket does not
    // bring it in (the lookup 10-20 attempts later still paid a full miss, ~780 cycles), and a
    // load of it between the scoring of two attempts stalls as long; loads issued back to back,
    // with nothing else in between, overlap (~330 cycles per attempt for its 5 buckets). The
    // slot prefetches issued once the buckets are in do arrive in time.
    constexpr std::size_t kBatch = 32;
    constexpr std::size_t kStateAhead = 10;
    auto& m = *impl_;
    std::array<AttemptKeys, kBatch> keys;
    std::size_t n = std::min(in.size(), out.size());
    for (std::size_t base = 0; base < n; base += kBatch) {
        std::size_t len = std::min(kBatch, n - base);
        std::uint64_t acc = 0;
        for (std::size_t j = 0; j < len; ++j) acc += string_lines(in[base + j]);
        asm volatile("" ::"r"(acc));
        for (std::size_t j = 0; j < len; ++j) {
            keys[j] = AttemptKeys{};
            m.attempt_keys(in[base + j], keys[j]);
        }
        for (std::size_t j = 0; j < len; ++j) acc += m.load_buckets(keys[j]);
        asm volatile("" ::"r"(acc));
        for (std::size_t j = 0; j < std::min(len, kStateAhead); ++j) m.state_lines<false>(keys[j]);
        for (std::size_t j = 0; j < len; ++j) {
            if (j + kStateAhead < len) m.state_lines<false>(keys[j + kStateAhead]);
            std::uint64_t touched = m.state_lines<true>(keys[j]);
            asm volatile("" ::"r"(touched));
            m.attempt(in[base + j], keys[j], out[base + j]);
        }
    }
}

void Engine::on_answer(const CallAnswered& a) {
    auto& m = *impl_;
    std::int64_t i = m.calls.find(hash_string(a.call_id, 0xca11));
    if (i < 0) {
        m.counters.add(Counter::end_unknown_call);
        return;
    }
    auto* e = m.call(i);
    if (!e->ended && !e->answer)
        e->answer = std::max<base::Nanos>(a.now, 1);  // forks: first 200 wins
}

void Engine::on_end(const CallEnded& ev) {
    auto& m = *impl_;
    std::int64_t i = m.calls.find(hash_string(ev.call_id, 0xca11));
    if (i < 0) {
        m.counters.add(Counter::end_unknown_call);
        return;
    }
    auto* e = m.call(i);
    if (e->ended) return;  // already ended (BYE retransmission, CANCEL then 487, ...)
    Ctx c;
    c.kind = EventKind::end;
    c.now = ev.now;
    c.now_s = to_seconds(ev.now);
    c.tenant_hash = e->tenant_hash;
    c.group = e->group;
    c.dest_mask = e->dest_mask;
    c.off_hours = e->off_hours;
    bool counted = e->counted;
    m.release(*e, &c);
    e->ended = std::max<base::Nanos>(ev.now, 1);
    if (!counted) return;
    bool ok = ev.status >= 200 && ev.status < 300;
    c.answered = e->answer != 0 && ok;
    if (c.answered)
        c.short_answered = ev.now - e->answer < static_cast<base::Nanos>(m.cfg.short_call_seconds) *
                                                    base::kNanosPerSecond;
    if (!c.answered) {
        // RFC 3261 §9.1: 487 is the answer to a CANCEL; a caller giving up is not a failure.
        // A short ring (Wangiri) is a caller cancelling within seconds, not a busy callee.
        c.failed = ev.status >= 300 && ev.status != 487;
        c.short_ring = ev.status == 487 &&
                       ev.now - e->start < static_cast<base::Nanos>(m.cfg.short_ring_seconds) *
                                               base::kNanosPerSecond;
    }
    m.prepare(c);
    m.update(c);
    m.housekeep(ev.now);
}

void Engine::on_auth(const AuthResult& a, Verdict& out) {
    auto& m = *impl_;
    out.reset();
    m.counters.add(Counter::auth_events);
    if (m.source_banned(a.source.addr, a.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    Ctx c;
    c.kind = EventKind::auth;
    c.now = a.now;
    c.now_s = to_seconds(a.now);
    m.resolve_keys(c, a.source, a.username, a.tenant, true);
    m.resolve_source(c, a.source, out);
    m.resolve_scanner(c, a.user_agent);
    c.auth_failed = !a.success;
    if (!a.success && !a.username.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(a.username, 17));
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, a.source, out);
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, a));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(a.now);
}

void Engine::on_register(const Registration& r, Verdict& out) {
    auto& m = *impl_;
    out.reset();
    m.counters.add(Counter::register_events);
    if (m.source_banned(r.source.addr, r.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    Ctx c;
    c.kind = EventKind::reg;
    c.now = r.now;
    c.now_s = to_seconds(r.now);
    m.resolve_keys(c, r.source, r.user, r.tenant, true);
    m.resolve_source(c, r.source, out);
    if (!r.user.empty())
        c.target_hash = static_cast<std::uint32_t>(hash_string(r.user, kTargetSeed));
    // 403/404 to a REGISTER: wrong credentials or no such user (enumeration).
    if ((r.status == 403 || r.status == 404) && !r.user.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(r.user, 17));
    m.resolve_scanner(c, r.user_agent);
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, r.source, out);
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, r));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(r.now);
}

bool Engine::is_banned(const base::IpAddress& a, base::Nanos now) const {
    return impl_->source_banned(a, now, nullptr);
}

void Engine::expire(base::Nanos now, std::size_t budget) {
    impl_->sweep(now, budget);
}

void Engine::set_event_sink(std::function<void(std::string_view)> sink) {
    impl_->sink = std::move(sink);
}

const base::CounterSet<Counter>& Engine::counters() const {
    return impl_->counters;
}

std::size_t Engine::tracked_keys() const {
    std::size_t n = 0;
    for (const auto& kt : impl_->kinds) n += kt.used ? kt.table.size() : 0;
    return n;
}
std::size_t Engine::tracked_keys(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.table.size() : 0;
}
std::size_t Engine::key_capacity(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.table.capacity() : 0;
}
std::size_t Engine::slot_bytes(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.slot_bytes + kt.cold_bytes : 0;
}
std::size_t Engine::hot_slot_bytes(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.slot_bytes : 0;
}
std::size_t Engine::tracked_calls() const {
    return impl_->calls.size();
}

std::size_t Engine::active_bans(base::Nanos now) const {
    std::size_t n = 0;
    const auto& b = impl_->bans;
    for (std::size_t i = 0; i < b.buckets(); ++i)
        if (b.hash_at(i) != 0 && static_cast<const BanEntry*>(b.slot(i))->until > now) ++n;
    return n;
}

std::size_t Engine::table_bytes() const {
    std::size_t n = impl_->calls.bytes() + impl_->bans.bytes();
    for (const auto& kt : impl_->kinds) n += kt.used ? kt.table.bytes() : 0;
    return n;
}

std::int64_t Engine::concurrent_calls(KeyKind k, std::string_view value) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    if (!kt.used) return 0;
    std::int64_t i = kt.table.find(impl_->key_hash_of(k, value));
    if (i < 0) return 0;
    return static_cast<const KeyHeader*>(kt.table.slot(static_cast<std::size_t>(i)))->concurrent;
}

const EngineConfig& Engine::config() const {
    return impl_->cfg;
}

}  // namespace sbc::fraud

#pragma once
// Internal to fraud/: the engine's parts, one per lifetime.
//   Plan     compiled from an EngineConfig (plan.cpp), immutable afterwards. Its StateLayout is
//            the part that gives the state its meaning: a reload keeps the state exactly when
//            the old and new layouts are equal.
//   State    the key, call and ban tables, their sweep positions and the counters: everything
//            a reload with an equal layout hands from the old engine to the new one.
//   Scratch  per-event working memory and memo caches: neither compiled nor handed over.
// The code over them is cut by concern: keys.cpp (key lookup, creation and eviction, and the
// event's context), windows.cpp (scopes, epochs, ring advance and counting), evaluate.cpp
// (rules and verdicts), tables.cpp (call and ban tables, sweeps), pipeline.cpp (the burst
// pipeline) and engine.cpp (the public API).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "fraud/fraud.hpp"
#include "fraud/lookup.hpp"
#include "fraud/state.hpp"

namespace sbc::fraud {
namespace detail {

constexpr std::uint64_t kSalt[kKeyKindCount] = {0x51a7e1, 0x9f0c33, 0x3ac0417, 0x7e4a47,
                                                0xd35f1c, 0xca11e7, 0xca1157,  0xde71ce};
// A ban of a source prefix is keyed apart from an address ban (its key hash, not the address
// hash); caller bans are keyed by the caller keys' hashes.
constexpr std::size_t kCaller = static_cast<std::size_t>(KeyKind::caller);
constexpr std::size_t kCallerPrefix = static_cast<std::size_t>(KeyKind::caller_prefix);
constexpr std::size_t kDevice = static_cast<std::size_t>(KeyKind::device);
constexpr std::size_t kSourcePrefix = static_cast<std::size_t>(KeyKind::source_prefix);
constexpr std::size_t kSourceIp = static_cast<std::size_t>(KeyKind::source_ip);
// Dialed numbers and request targets (INVITE/OPTIONS callee, REGISTER user) hash with one seed:
// a user swept by several methods is one value of the request-target set, and an all-digit
// callee's destination hash is its target hash.
constexpr std::uint64_t kTargetSeed = 11;
// RFC 3261 §17.1.1.2: a client transaction lives 64*T1 = 32 s; an ended call is remembered
// that long so a late retransmitted INVITE is still recognised as a duplicate.
constexpr base::Nanos kTombstone = 32 * base::kNanosPerSecond;
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

inline std::uint16_t country_code16(std::string_view iso) {
    if (iso.size() != 2) return 0;
    return static_cast<std::uint16_t>((std::toupper(static_cast<unsigned char>(iso[0])) << 8) |
                                      std::toupper(static_cast<unsigned char>(iso[1])));
}

inline void put_country(std::array<char, 3>& out, std::uint16_t c) {
    if (c == 0) return;
    out[0] = static_cast<char>(c >> 8);
    out[1] = static_cast<char>(c & 0xff);
    out[2] = 0;
}

struct CompiledScope {
    std::uint8_t directions = 0;         // bit per Direction; 0 = any
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
    std::uint16_t scope_idx = 0;  // into Plan::scopes; 0 = no scope
    std::uint32_t window_s = 1;
    std::uint32_t capacity = 0;  // distinct sets: values the count must reach
    std::uint32_t lines = 0;     // distinct sets: cache lines of entries in the cold area
    std::uint32_t offset = 0;    // in the hot slot (a distinct set's summary)
    std::uint32_t cold_offset = 0;
    bool narrow = false;         // counter in 8-bit buckets
    bool ratio = false;          // read by a ratio rule
    double max_threshold = 0;    // largest threshold of the rules reading it
    bool count_blocked = false;  // blocked attempts count here whatever blocked them
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
    bool count_blocked = false;
};

// A ring in a hot slot, advanced with the slot's epoch.
struct RingRef {
    std::uint32_t offset = 0;
    std::uint16_t width_idx = 0;
    bool narrow = false;
};

// How one key kind's hot slots and cold areas are laid out, and which components each event
// kind updates: part of the compiled plan.
struct KindPlan {
    bool used = false;
    std::vector<Component> comps;
    std::vector<RingRef> rings;
    std::vector<std::uint16_t> widths;  // widths of the rings (indexes into Plan::widths)
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
};

// One key kind's table and the position of its sweep: part of the state.
struct KeyTable {
    SetTable table;
    std::size_t cursor = 0;
};

// Where a rule's value comes from, decided at compile time.
enum class ValueSource : std::uint8_t {
    component,
    ratio,
    concurrent,
    scanner,
    off_hours,
    src_not_allowed,
    callback,
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
    std::uint64_t caller_mask = 0;
    std::vector<std::uint16_t> caller_countries;
};

struct Group {
    TimeZone tz;
    WeekMap hours;
    std::vector<std::uint16_t> allowed_src;
    std::vector<std::uint16_t> allowed_dst;
    std::uint64_t tenant_hash = 0;
    std::string_view tenant;
    std::string deny_id;  // reason id for a destination country outside allowed_dst
    // Business hours of the last wall-clock second looked up (events come in time order:
    // thousands share a second, so the zone's transitions and the calendar are worked out
    // once per second, not once per event).
    std::int64_t hours_second = std::numeric_limits<std::int64_t>::min();
    bool hours_off = false;
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
    std::uint8_t direction;
    std::uint8_t callback_candidate;  // inbound from a flagged range: learn it if it rings once
};

// A number learned from an inbound short ring, keyed by its caller-key hash. `until` 0: a
// call from it is ringing (a candidate, not yet a reason to stop anything).
struct CallbackEntry {
    base::Nanos until;
    char digits[22];
    std::uint8_t len;
    std::uint8_t pad;
};

struct BanEntry {
    base::Nanos until;
    // What the banned source was doing (the event that got it banned): the fast path's drop
    // counts of the ban are counted as events of this kind (Engine::on_banned_drops).
    std::uint8_t kind;
    bool auth_failed;
};

constexpr std::size_t kMaxWidths = 64;
constexpr std::size_t kMaxScopes = 64;

struct Ctx {
    EventKind kind = EventKind::invite;
    std::uint64_t scope_bits = 1;  // bit i: Plan::scopes[i] matches this event
    std::uint32_t epoch[kMaxWidths];
    base::Nanos epoch_start[kMaxWidths];
    double into[kMaxWidths];
    base::Nanos now = 0;
    std::uint32_t now_s = 0;
    std::uint64_t key_hash[kKeyKindCount] = {};
    bool has_key[kKeyKindCount] = {};
    std::int64_t slot[kKeyKindCount] = {-1, -1, -1, -1, -1, -1, -1, -1};
    std::uint64_t tenant_hash = 0;
    int group = -1;
    char digits[32] = {};
    std::size_t ndigits = 0;
    std::uint32_t dest_hash = 0;  // of the digits, once per event
    std::uint64_t dest_mask = 0;
    std::uint16_t dest_country = 0;
    bool international = false;
    bool extension = false;  // the callee is an internal extension
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
    Direction direction = Direction::unknown;
    std::uint64_t caller_mask = 0;  // lists the calling number is on
    std::uint16_t caller_country = 0;
    bool callback = false;  // the dialed number is on the callback list
    std::string_view digits_view() const { return {digits, ndigits}; }
};

// What an attempt's strings and addresses hash to, computed once (ahead of the attempt in a
// burst, to prefetch its state) and used by its evaluation.
struct AttemptKeys {
    bool invite = true;
    std::uint64_t call_hash = 0;  // 0 = no Call-ID to count
    // source_ip, source_prefix, account (prefetched by the pipeline), then caller,
    // caller_prefix and device (tenant and destination_prefix are resolved later).
    std::uint64_t key_hash[kKeyKindCount] = {};
    std::uint64_t addr_hash = 0;  // the ban table's key
    bool has_key[kKeyKindCount] = {};
    char caller[22];
    std::uint8_t ncaller = 0;
    std::uint64_t caller_mask = 0;
    std::uint16_t caller_country = 0;
    char digits[32];
    std::uint8_t ndigits = 0;
    std::uint32_t dest_hash = 0;    // of the digits
    std::uint32_t target_hash = 0;  // of the callee as sent (request sweeps)
    std::uint16_t src_country = 0;  // from the event (GeoIP is looked up later, if needed)
    std::uint16_t dest_country = 0;
    std::uint8_t code_len = 0;  // digits of the destination's calling code (0 = none)
    bool extension = false;     // the callee is an internal extension
    // Where the pipeline last found each key: a hint, trusted only while that bucket still
    // holds the key's hash (attempts scored in between may have moved it).
    mutable std::int64_t hint[kKeyKindCount] = {-1, -1, -1, -1, -1, -1, -1, -1};
};

// The digits of a number as dialed or presented ("+", spaces, dashes, dots and brackets
// ignored; "@host" or ";params" end it), at most `cap` of them into `out`.
std::size_t number_digits(std::string_view number, char* out, std::size_t cap);
std::uint32_t distinct_value(const Component& comp, const AttemptKeys& k);
// A device: the account seen from one source address and port with one User-Agent.
std::uint64_t device_hash(std::uint64_t account_hash, const Source& src, std::string_view ua);

struct StrHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The ladders that read one counter in 8-bit buckets (most of them), packed, evaluated in
// their own loop without the generic dispatch.
struct CounterLadder {
    std::uint16_t ladder = 0;
    std::uint8_t key_index = 0;
    std::uint16_t scope_idx = 0;
    std::uint16_t width_idx = 0;
    std::uint32_t offset = 0;
    double fire_floor = 0;
};

// Where one component sits in a key's slot and what it counts: two engines' state means the
// same only if every component agrees on all of it.
struct ComponentPlace {
    std::string signature;  // type, value, window, lists and scope counted in
    base::Nanos width = 1;  // of its sub-buckets
    bool narrow = false;
    std::uint32_t offset = 0;
    std::uint32_t cold_offset = 0;
    std::uint32_t lines = 0;
    bool operator==(const ComponentPlace&) const = default;
};

struct KindLayout {
    bool used = false;
    std::size_t slot_bytes = 0;
    std::size_t cold_bytes = 0;
    std::size_t capacity = 0;
    std::vector<ComponentPlace> comps;
    bool operator==(const KindLayout&) const = default;
};

// Everything that decides what the state tables hold and where, collected by compile(). Keys
// must hash alike (source prefix lengths) into tables of the same sizes; each key kind must
// hold the same components at the same places of its slots, each counting the same events in
// buckets of the same size; what makes an event count must be defined alike (short calls and
// rings, sequential steps, the home country); and the calls in progress hold prefix lists and
// account groups by position, so both keep their names and order. Thresholds, weights, modes,
// score thresholds, ban duration, deny rules and the contents of lists, groups and country
// codes are not here: they are read when events are scored, and may change on a reload.
struct StateLayout {
    std::uint8_t source_prefix_v4 = 0;
    std::uint8_t source_prefix_v6 = 0;
    std::uint32_t short_call_seconds = 0;
    std::uint32_t short_ring_seconds = 0;
    std::uint32_t sequential_max_step = 0;
    std::string home_country_code;
    std::vector<std::string> list_names;
    std::vector<std::string> group_names;
    std::size_t call_capacity = 0;
    std::size_t ban_capacity = 0;
    std::size_t callback_capacity = 0;
    std::array<KindLayout, kKeyKindCount> kinds;
    bool operator==(const StateLayout&) const = default;
};

// The compiled plan: what compile() builds from the configuration. Nothing writes it once
// compile() has returned.
struct Plan {
    EngineConfig cfg;
    StateLayout layout;
    std::vector<std::string> list_names;
    DigitTrie lists;      // bit per prefix list
    DigitTrie countries;  // value = index+1 into country_iso
    std::vector<std::uint16_t> country_iso;
    std::vector<std::string> country_code_str;
    std::string home_code;
    std::uint16_t home_country = 0;
    std::vector<Group> groups;
    std::unordered_map<std::string, int, StrHash, std::equal_to<>> exact_accounts;
    std::vector<std::pair<std::string, int>> account_patterns;
    std::vector<UaGlob> scanner_globs;
    std::array<KindPlan, kKeyKindCount> kinds;
    std::vector<CompiledRule> rules;
    std::vector<Ladder> ladders;
    std::vector<std::uint16_t> rule_ladder;     // rule -> its ladder
    std::vector<std::uint16_t> invite_ladders;  // the ladders an INVITE evaluates
    std::vector<std::uint16_t> other_ladders;   // and every other event
    // The counter ladders, apart from the lists above (which then hold the others).
    std::vector<CounterLadder> invite_counters, other_counters;
    std::vector<CompiledDeny> denies;
    std::vector<base::Nanos> widths;
    base::Nanos span[kMaxWidths] = {};  // (kRingBuckets - 1) sub-buckets of each width
    std::vector<CompiledScope> scopes;  // distinct scopes; [0] matches everything
    std::vector<std::string> scope_sigs;
    bool need_source_country = false;
    bool own_network(const base::IpAddress& a) const {
        for (const auto& p : cfg.own_networks)
            if (p.contains(a)) return true;
        return false;
    }
    std::uint32_t idle_s = 1;
    std::uint64_t callback_mask = 0;  // lists whose short-ringing callers are learned
    bool any_count_blocked = false;   // some component keeps blocked attempts
};

// The state: what a reload with an equal layout carries over (see Engine::Impl::take_state).
struct State {
    std::array<KeyTable, kKeyKindCount> key_tables;
    SlotTable calls;
    std::size_t calls_cursor = 0;
    SlotTable bans;
    std::size_t bans_cursor = 0;
    SlotTable callbacks;
    struct SweepPace {
        double debt = 0;  // buckets owed to the sweep
    };
    SweepPace key_pace[kKeyKindCount], call_pace, ban_pace;
    base::Nanos sweep_last = 0;
    // The authentication failures counted toward owner-side keys (account, tenant), each with
    // the source it came from, so that they can be taken back from those keys once the source
    // is blocked by a rule on the source or banned (docs/fraud.md, "Blocked attempts"). A ring:
    // the oldest credit is overwritten (then it stays counted).
    struct AuthCredit {
        std::uint64_t source_ip = 0;      // key hash of the source address
        std::uint64_t source_prefix = 0;  // and of its prefix
        std::uint64_t key_hash = 0;       // the key counted in (0 = taken back already)
        std::uint32_t epoch = 0;          // the sub-bucket counted in
        std::uint32_t offset = 0;         // the counter's place in the hot slot
        std::uint16_t width_idx = 0;
        std::uint8_t key = 0;
        bool narrow = false;
    };
    static constexpr std::size_t kAuthCredits = 4096;
    std::vector<AuthCredit> auth_credits;  // kAuthCredits once the first is written
    std::size_t auth_credit_next = 0;
    std::size_t auth_credits_live = 0;  // upper bound: 0 = nothing to take back
    base::CounterSet<Counter> counters;
    std::function<void(std::string_view)> sink;
};

// Per-event working memory and caches of pure functions of the plan: rebuilt, never handed
// over.
struct Scratch {
    std::vector<double> ladder_value;  // per event: the value each ladder read
    std::vector<std::uint16_t> fired;  // per event: rules that fired (capacity reserved)
    // Per attempt: what counting it changed in each key, to be put back when the attempt is
    // blocked and the key did not block it (Rule::count_blocked). Only the bytes a count
    // writes are kept: a counter's one bucket, a distinct set's summary and the one entry its
    // insertion writes, a sequential run. Capacity is reserved by compile(): at most one
    // record per counter or sequential run and two per distinct set of the event's keys.
    struct Undo {
        std::uint8_t* at;
        std::uint8_t key;
        std::uint8_t len;  // 1, 2, 4 or 16
        alignas(8) std::uint8_t bytes[16];
    };
    std::vector<Undo> undo;
    bool keep_undo = false;
    std::size_t credit_mark = 0;  // auth_credit_next before the event's update
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
    // Events come in time order: each width's current sub-bucket, so that the next event's is
    // found without a division.
    struct EpochCache {
        std::uint32_t epoch = 0;
        base::Nanos start = 0;
    };
    EpochCache epoch_cache[kMaxWidths];
};

}  // namespace detail

using namespace detail;

struct Engine::Impl : Plan, State, Scratch {
    // ---- plan.cpp
    // `with_tables` false: every check, but the key, call and ban tables stay unallocated.
    base::Result<void> compile(bool with_tables = true);
    // What compile() was reading when it failed.
    ConfigError::Subject compiling = ConfigError::Subject::engine;
    std::size_t compiling_index = 0;
    void at(ConfigError::Subject s, std::size_t i = 0) {
        compiling = s;
        compiling_index = i;
    }
    base::Result<std::uint64_t> list_bit(const std::string& name) const;
    base::Result<CompiledScope> compile_scope(const Scope& s) const;
    base::Result<std::uint16_t> scope_index(const CompiledScope& s);
    base::Result<std::uint16_t> width_index(base::Nanos w);
    int add_component(KindPlan& kt, Component c);
    bool same_state_layout(const Impl& running) const { return layout == running.layout; }
    void take_state(Impl& running);

    // ---- keys.cpp
    std::uint64_t key_hash_of(KeyKind k, std::string_view value) const;
    std::int64_t find_or_create(KeyKind k, std::uint64_t h, base::Nanos now,
                                std::int64_t hint = -1);
    KeyHeader* header(KeyKind k, Ctx& c) {
        auto ki = static_cast<std::size_t>(k);
        if (c.slot[ki] < 0) return nullptr;
        return static_cast<KeyHeader*>(key_tables[ki].table.slot(c.slot[ki]));
    }
    // `only`: bit per key kind created (a banned source's event counts toward its prefix).
    void resolve_keys(Ctx& c, const Source& src, std::string_view account, std::string_view tenant,
                      bool create, const AttemptKeys* pre = nullptr, std::string_view ua = {},
                      std::uint32_t only = ~0u);
    void resolve_caller(Ctx& c, const AttemptKeys& k);
    void count_banned(Ctx& c, const Source& src);
    std::uint8_t note_callback_candidate(const AttemptKeys& k, base::Nanos now);
    void rollback_blocked(const Verdict& out);
    // Authentication results and registrations: when a rule on the source (address, prefix,
    // device) blocked the event or the source was banned, the event and every earlier
    // authentication failure of that source leave the owner-side keys (account, tenant).
    void rollback_auth(const Ctx& c, const Verdict& out);
    void retract_source_credits(std::uint64_t source_ip, std::uint64_t source_prefix);
    void credit_auth_failure(const Ctx& c, std::size_t ki, const UpdateOp& comp,
                             std::uint32_t epoch);
    void resolve_destination(Ctx& c, const AttemptKeys& k);
    void resolve_source(Ctx& c, const Source& src, Verdict& out);
    void resolve_time(Ctx& c, base::UnixNanos wall);
    void resolve_scanner(Ctx& c, std::string_view ua);
    bool scanner_ua(std::string_view ua);
    bool scanner_ua_memo(std::string_view ua);

    // ---- windows.cpp
    bool scope_match(const CompiledScope& s, const Ctx& c) const;
    void prepare(Ctx& c);
    void advance(const KindPlan& kt, std::uint8_t* slot, const Ctx& c) const;
    std::uint32_t slot_epoch(const std::uint8_t* slot, std::uint16_t w, const Ctx& c) const {
        base::Nanos last = reinterpret_cast<const KeyHeader*>(slot)->last_seen;
        return c.now >= last ? c.epoch[w] : epoch_of(last, widths[w]);
    }
    void update(Ctx& c);

    // ---- evaluate.cpp
    void evaluate(Ctx& c, Verdict& out);
    void finish(Ctx& c, const Source& src, Verdict& out, bool trusted = false);

    // ---- tables.cpp
    bool source_banned(const base::IpAddress& a, base::Nanos now, base::Nanos* until) const;
    void ban(const base::IpAddress& a, base::Nanos until, base::Nanos now,
             EventKind kind = EventKind::invite, bool auth_failed = false);
    void ban_hash(std::uint64_t h, base::Nanos until, base::Nanos now,
                  EventKind kind = EventKind::invite, bool auth_failed = false);
    bool hash_banned(std::uint64_t h, base::Nanos now, base::Nanos* until) const;
    void learn_callback(const CallEntry& e, base::Nanos now);
    CallEntry* call(std::int64_t i) { return static_cast<CallEntry*>(calls.slot(i)); }
    std::int64_t insert_call(std::uint64_t h, base::Nanos now);
    void release(CallEntry& e, Ctx* end_ctx);
    void sweep(base::Nanos now, std::size_t budget);
    void housekeep(base::Nanos now);
    void sweep_some(base::Nanos now, const std::size_t (&key_budget)[kKeyKindCount],
                    std::size_t call_budget, std::size_t ban_budget);

    // ---- pipeline.cpp
    void attempt_keys(const CallAttempt& a, AttemptKeys& k) const;
    std::uint64_t load_buckets(const AttemptKeys& k) const;
    template <bool kTouch>
    std::uint64_t state_lines(const AttemptKeys& k) const;
    // state_lines<false> then <true> for one attempt (on_attempt): each line's address is
    // worked out once, prefetched, and read once all are requested.
    std::uint64_t fetch_state(const AttemptKeys& k) const;
    static constexpr std::size_t kMaxFetchLines = 64;  // past it, prefetched only
    // The walk the three share: line(p) for every line of the keys' hot slots and of the cold
    // lines their distinct sets will touch (and, when sample_evictions, the eviction candidates
    // of a key about to be created in a full table are prefetched); returns the call entry's
    // lookup result and calls line() for each of its lines.
    template <class Line>
    std::uint64_t for_each_state_line(const AttemptKeys& k, bool sample_evictions,
                                      Line&& line) const;

    // ---- engine.cpp
    void attempt(const CallAttempt& a, const AttemptKeys& k, Verdict& out);
};

}  // namespace sbc::fraud

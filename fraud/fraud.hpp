#pragma once
// fraud/: the toll-fraud scoring engine. Plain events in (call attempts, answers, ends,
// authentication results, registrations), verdicts out; no SIP types, no clock inside.
//
// Every event carries `now` (monotonic, windows and bans) and `wall` (Unix time, business
// hours). State is kept per key (source address, source prefix, account, tenant, destination
// prefix) in fixed-capacity tables sized from EngineConfig::max_tracked_keys; see docs/fraud.md
// for the feature definitions, the window arithmetic and the eviction policy.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "base/fraud_vocabulary.hpp"

namespace sbc::fraud {

// ---------------------------------------------------------------------------------------------
// Vocabulary (names are the policy language's spelling; see the contract in docs/fraud.md)

// Features, key kinds, operators, list categories, modes, time scopes and directions are the
// rule language's words, declared once in base/fraud_vocabulary.hpp for the policy and the
// engine; here they take the engine's names.
using Feature = base::FraudFeature;
using KeyKind = base::FraudKey;
using Op = base::FraudOp;
using Category = base::FraudCategory;
using Mode = base::FraudMode;
using TimeScope = base::FraudTimeScope;
using Direction = base::FraudDirection;
using base::compare;
using base::description;
using base::name;
inline constexpr std::size_t kFeatureCount = base::kFraudFeatureCount;
inline constexpr std::size_t kKeyKindCount = base::kFraudKeyCount;
inline constexpr std::size_t kOpCount = base::kFraudOpCount;
inline constexpr std::size_t kCategoryCount = base::kFraudCategoryCount;
inline constexpr std::size_t kDirectionCount = base::kFraudDirectionCount;
inline constexpr const auto& kFeatureNames = base::kFraudFeatureNames;
inline constexpr const auto& kFeatureDescriptions = base::kFraudFeatureDescriptions;
inline constexpr const auto& kKeyKindNames = base::kFraudKeyNames;
inline constexpr const auto& kKeyKindDescriptions = base::kFraudKeyDescriptions;
inline constexpr const auto& kOpNames = base::kFraudOpNames;
inline constexpr const auto& kCategoryNames = base::kFraudCategoryNames;
inline constexpr const auto& kDirectionNames = base::kFraudDirectionNames;

// What a ban verdict banned.
#define SBC_FRAUD_BAN_TARGETS(X)                                       \
    X(none, "nothing was banned")                                      \
    X(source_address, "the source address")                            \
    X(source_prefix, "the source prefix (a source_prefix rule fired)") \
    X(caller, "the calling number (traffic of a trusted trunk)")       \
    X(caller_prefix, "the calling-number prefix (a caller_prefix rule, trusted trunk)")
SBC_DECLARE_COUNTER_LIST(BanTarget, SBC_FRAUD_BAN_TARGETS)

#define SBC_FRAUD_ACTIONS(X)                          \
    X(allow, "no rule reached a threshold")           \
    X(flag, "score >= flag_threshold")                \
    X(block, "score >= block_threshold or deny rule") \
    X(ban, "score >= ban_threshold or deny rule with ban: source banned")
SBC_DECLARE_COUNTER_LIST(Action, SBC_FRAUD_ACTIONS)

// Engine counters (metric labels).
#define SBC_FRAUD_COUNTERS(X)                                                                 \
    X(attempts, "call attempts evaluated")                                                    \
    X(requests, "non-INVITE requests evaluated (OPTIONS, ...)")                               \
    X(auth_events, "authentication results evaluated")                                        \
    X(register_events, "registrations evaluated")                                             \
    X(duplicate_attempts, "attempts with a Call-ID already counted (retransmission, fork)")   \
    X(verdict_allow, "verdicts: allow")                                                       \
    X(verdict_flag, "verdicts: flag")                                                         \
    X(verdict_block, "verdicts: block")                                                       \
    X(verdict_ban, "verdicts: ban (a ban was issued)")                                        \
    X(shadow_non_allow, "verdicts whose observe-mode result was not allow")                   \
    X(banned_source_drops, "events from a source under a ban")                                \
    X(keys_created, "keys created")                                                           \
    X(keys_expired, "keys freed after idle_key_expiry")                                       \
    X(keys_evicted, "idle keys without evidence evicted for a new key")                       \
    X(keys_untracked, "new keys not tracked: every candidate victim carried evidence")        \
    X(calls_tracked, "calls entered in the call table")                                       \
    X(calls_evicted, "calls evicted from a full call table (counters released)")              \
    X(calls_expired, "calls expired after max_call_duration (counters released)")             \
    X(end_unknown_call, "answer/end events for a Call-ID not in the table")                   \
    X(concurrent_underflow, "decrements of a zero concurrent counter refused")                \
    X(bans_issued, "bans issued")                                                             \
    X(bans_evicted, "bans evicted from a full ban table (soonest to expire)")                 \
    X(banned_caller_drops, "attempts from a calling number (or its prefix) under a ban")      \
    X(banned_source_counted, "events of banned sources counted toward their source prefix")   \
    X(banned_drops_counted, "fast-path drops of banned sources counted toward their prefix")  \
    X(blocked_not_counted, "blocked attempts not counted toward the keys that did not block") \
    X(source_failures_retracted,                                                              \
      "blocked or banned sources whose auth failures left owner-side keys")                   \
    X(callbacks_learned, "numbers learned from inbound short rings of flagged ranges")        \
    X(events_emitted, "JSON event lines emitted")
SBC_DECLARE_COUNTER_LIST(Counter, SBC_FRAUD_COUNTERS)

// What kind of request an attempt is (the adapter in sbc/ maps protocol methods onto these).
#define SBC_FRAUD_REQUEST_KINDS(X)                                 \
    X(call, "a call attempt: every call feature")                  \
    X(probe, "a reachability probe (sweeps, scanners)")            \
    X(registration, "a registration request (sweeps, scanners)")   \
    X(message, "an instant message")                               \
    X(subscription, "a subscription, notification or publication") \
    X(other, "any other request")
SBC_DECLARE_COUNTER_LIST(RequestKind, SBC_FRAUD_REQUEST_KINDS)

// How a call or a registration ended, in the engine's terms (the adapter maps final
// responses onto these).
#define SBC_FRAUD_OUTCOMES(X)                                     \
    X(answered, "answered (a call) or accepted (a registration)") \
    X(busy, "the callee was busy")                                \
    X(rejected, "refused by the far side or the network")         \
    X(not_found, "no such user or number")                        \
    X(cancelled, "the caller gave up before an answer")           \
    X(timeout, "no final answer in time")                         \
    X(failed, "failed in the network (server error, no route)")   \
    X(auth_challenge, "credentials were asked for and not given") \
    X(auth_failure, "the credentials given were refused")
SBC_DECLARE_COUNTER_LIST(Outcome, SBC_FRAUD_OUTCOMES)

// ---------------------------------------------------------------------------------------------
// Configuration (the engine's own structs; sbc/fraud_wiring maps the policy onto them)

struct PrefixList {
    std::string name;
    Category category = Category::custom;
    std::vector<std::string> prefixes;  // E.164 digits, countries already expanded
};

struct CountryCode {
    std::string code;  // E.164 country calling code ("44", NANP areas "1876")
    std::string iso;   // ISO 3166-1 alpha-2
};

struct BusinessHours {
    std::uint8_t days = 0;           // bit 0 = Monday ... bit 6 = Sunday
    std::uint16_t start_minute = 0;  // local minutes since midnight
    std::uint16_t end_minute = 0;    // exclusive, <= 1440
};

struct AccountGroup {
    std::string name;
    std::vector<std::string> accounts;          // exact
    std::vector<std::string> account_patterns;  // whole-string globs, '*' only
    std::string tenant;
    std::string timezone = "UTC";                            // IANA name, read from zoneinfo_dir
    std::vector<BusinessHours> business_hours;               // empty = always business hours
    std::vector<std::string> allowed_source_countries;       // empty = any
    std::vector<std::string> allowed_destination_countries;  // empty = any
};

struct Scope {
    std::vector<std::string> tenants;
    std::vector<std::string> account_groups;
    std::string destinations;  // prefix list name, "" = any
    TimeScope time = TimeScope::any;
    std::vector<Direction> directions;  // empty = any (an unknown direction matches none)
};

struct Rule {
    std::string id;
    std::string description;
    Feature feature = Feature::attempts;
    KeyKind key = KeyKind::account;
    base::Nanos window = 600 * base::kNanosPerSecond;
    Op op = Op::ge;
    double threshold = 0;
    double weight = 0;
    Mode mode = Mode::enforce;
    Scope scope;
    std::vector<std::string> lists;  // destination features: lists counted (default by category)
    std::uint32_t min_attempts = 0;  // ratio features: samples needed before the rule can fire
    // false (default): an attempt that is blocked counts only toward the keys whose rules
    // blocked it, so that an attacker's refused attempts do not fill the windows an account's
    // owner is judged by; true: it counts in this rule's windows whatever blocked it.
    bool count_blocked = false;
};

struct DenyRule {
    std::string id;
    std::string destinations;                   // prefix list name, "" = none
    std::vector<std::string> countries;         // destination countries
    std::vector<std::string> source_countries;  // source (GeoIP) countries
    bool ban = false;                           // action: block (false) or ban
    std::string callers;                        // prefix list of calling numbers, "" = none
    std::vector<std::string> caller_countries;  // countries of the calling number
};

class GeoIp;

struct EngineConfig {
    Mode mode = Mode::enforce;  // observe: the whole policy runs in shadow mode
    double score_cap = 100;
    double flag_threshold = 30;
    double block_threshold = 60;
    double ban_threshold = 90;
    base::Nanos ban_duration = 3600 * base::kNanosPerSecond;
    std::uint64_t max_tracked_keys = 1'000'000;  // all key kinds together
    base::Nanos idle_key_expiry = 2 * 3600 * base::kNanosPerSecond;
    std::uint32_t short_call_seconds = 10;
    std::uint32_t short_ring_seconds = 5;        // Wangiri: unanswered and ended this fast
    std::uint64_t max_tracked_calls = 1u << 18;  // call table (dedup, concurrency)
    base::Nanos max_call_duration = 4 * 3600 * base::kNanosPerSecond;  // then released
    std::uint32_t ban_capacity = 1u << 16;
    std::uint8_t source_prefix_v4 = 24;
    std::uint8_t source_prefix_v6 = 64;
    std::uint32_t sequential_max_step = 9;  // consecutive numbers within this step are a run
    std::string home_country_code;          // international = another calling code ...
    std::string home_country;  // ... or, when set (ISO alpha-2), another country: under a
                               // shared code (NANP "1") the area code says which country
    std::vector<CountryCode> country_codes;  // calling code -> country (longest match)
    // The company's own networks (office NATs shared by many users): their events are keyed
    // by account (and tenant, destination), never by source address or prefix, and a ban
    // verdict on them blocks the request instead of banning the shared address.
    std::vector<base::Prefix> own_networks;
    std::vector<PrefixList> prefix_lists;
    std::vector<AccountGroup> account_groups;
    std::vector<std::string> scanner_user_agents;  // case-insensitive globs, matched anywhere
    bool empty_user_agent_is_scanner = false;
    std::vector<Rule> rules;
    std::vector<DenyRule> deny;
    // Callbacks: the calling numbers of inbound short rings from flagged ranges (on these
    // lists; empty = every irsf, premium and high_risk list), remembered this long, at most
    // this many (oldest expiry evicted first).
    std::vector<std::string> callback_lists;
    base::Nanos callback_expiry = 7 * 24 * 3600 * base::kNanosPerSecond;
    std::uint32_t callback_capacity = 1u << 14;
    std::string zoneinfo_dir = "/usr/share/zoneinfo";
    std::shared_ptr<const GeoIp> geoip;  // optional: source country when events carry none
};

// Why the engine refuses a configuration, and which part of it, so that a caller can point at
// where that part was written.
struct ConfigError {
    enum class Subject : std::uint8_t { engine, rule, deny_rule, prefix_list, account_group };
    Subject subject = Subject::engine;
    std::size_t index = 0;  // in EngineConfig::rules, deny, prefix_lists or account_groups
    std::string message;    // the same text Engine::create reports
};

// Every check Engine::create makes (its own compilation, so they cannot drift apart), without
// allocating the state tables: nullopt when create would accept the configuration.
std::optional<ConfigError> validate(const EngineConfig& config);

// ---------------------------------------------------------------------------------------------
// Events. String views must stay valid for the duration of the call only.

struct Source {
    base::IpAddress addr;
    std::uint16_t port = 0;
    std::string_view transport;  // "udp", "tcp", "tls" (reported only)
    std::string_view country;    // ISO alpha-2; "" = look up in GeoIP if configured
};

struct CallAttempt {
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
    std::string_view call_id;  // counted once: retransmissions and forks are duplicates
    Source source;
    std::string_view account;       // authenticated user, else From user
    std::string_view tenant;        // "" = the tenant of the account's group
    std::string_view caller;        // calling number, E.164 digits (From/P-Asserted-Identity user)
    std::string_view callee;        // E.164 digits ("+" and separators are ignored)
    bool callee_extension = false;  // an internal extension: of no country, not international
    std::string_view user_agent;
    RequestKind request = RequestKind::call;  // other kinds feed sweeps, not call counts
    Direction direction = Direction::unknown;
    // From a trusted trunk ([access.trusted]): never banned by address; a ban lands on the
    // calling number (or its prefix) instead.
    bool trusted = false;
};

struct CallAnswered {
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
    std::string_view call_id;
};

struct CallEnded {
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
    std::string_view call_id;
    // answered: the call was answered (then hung up); cancelled: not a failure (the caller
    // gave up), a short ring when quick; anything else unanswered: a failed call.
    Outcome outcome = Outcome::answered;
};

struct AuthResult {
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
    Source source;
    std::string_view username;
    std::string_view tenant;
    std::string_view user_agent;
    bool success = false;
    bool trusted = false;                      // never banned by address
    Direction direction = Direction::unknown;  // of the request authenticated (as attempts)
};

struct Registration {
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
    Source source;
    std::string_view user;  // the AOR user being registered
    std::string_view tenant;
    std::string_view user_agent;
    Outcome outcome = Outcome::answered;       // auth_failure, not_found: a failed username
    bool trusted = false;                      // never banned by address
    Direction direction = Direction::unknown;  // derived as for attempts
};

// ---------------------------------------------------------------------------------------------
// Verdicts

struct Reason {
    std::string_view rule_id;  // points into the engine's configuration
    Feature feature = Feature::attempts;
    KeyKind key = KeyKind::account;
    double value = 0;
    Op op = Op::ge;
    double threshold = 0;
    double weight = 0;
    bool observe = false;  // the rule (or the policy) is in observe mode
    bool hard = false;     // a deny rule (score ignored)
    bool ban = false;      // hard rule with action ban
};

struct Verdict {
    static constexpr std::size_t kMaxReasons = 24;
    Action action = Action::allow;           // what to do
    Action shadow_action = Action::allow;    // what would be done with every rule enforced
    double score = 0;                        // enforced rules only, capped
    double shadow_score = 0;                 // every rule, capped
    bool duplicate = false;                  // Call-ID already seen: action repeated, not counted
    bool banned_source = false;              // the source (or its prefix) was already under a ban
    bool banned_caller = false;              // the calling number (or its prefix) was
    BanTarget ban_target = BanTarget::none;  // what this verdict banned (action ban)
    std::uint8_t ban_prefix_length = 0;      // ban_target source_prefix: its length
    base::Nanos ban_until = 0;               // monotonic time a ban issued/in force ends
    std::array<char, 3> source_country{};    // resolved (event or GeoIP), "" = unknown
    std::array<char, 3> destination_country{};  // from the callee's calling code
    std::array<char, 3> caller_country{};       // from the caller's calling code
    std::uint8_t reason_count = 0;
    std::uint16_t reasons_dropped = 0;  // more reasons fired than kMaxReasons
    std::array<Reason, kMaxReasons> reasons{};

    // Everything but the reasons past reason_count (which are not read): a verdict is reset
    // once per event, and the whole array is 1.5 KiB.
    void reset() {
        action = shadow_action = Action::allow;
        score = shadow_score = 0;
        duplicate = banned_source = banned_caller = false;
        ban_target = BanTarget::none;
        ban_prefix_length = 0;
        ban_until = 0;
        source_country = {};
        destination_country = {};
        caller_country = {};
        reason_count = 0;
        reasons_dropped = 0;
    }
};

// The JSON event line for a verdict (one line, no trailing newline). `event` is "attempt",
// "auth" or "register"; subject fields come from the event.
std::string to_json(const Verdict& v, const CallAttempt& a);
std::string to_json(const Verdict& v, const AuthResult& a);
std::string to_json(const Verdict& v, const Registration& r);

// ---------------------------------------------------------------------------------------------
// GeoIP (libmaxminddb): IP -> ISO country

class GeoIp {
  public:
    static base::Result<std::shared_ptr<const GeoIp>> open(const std::string& path);
    ~GeoIp();
    GeoIp(const GeoIp&) = delete;
    GeoIp& operator=(const GeoIp&) = delete;
    // ISO alpha-2 country of the address, "" when unknown. Thread-safe.
    std::string country(const base::IpAddress& a) const;

  private:
    GeoIp() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// The engine. Single-threaded: one engine per worker (or one behind the caller's lock).

class Engine {
  public:
    static base::Result<std::unique_ptr<Engine>> create(EngineConfig config);
    // Applies a new configuration to the running engine without losing what it has gathered:
    // when the per-key state keeps its layout and meaning (the same key kinds, features,
    // windows, scopes counted in, table sizes; see docs/fraud.md, "Reloads"), the new rules,
    // thresholds, weights, modes, score thresholds, ban duration, deny rules and lists take
    // over and every key, window, call in progress and ban stays: true. Otherwise nothing
    // changes: false (build a new engine instead), or the error of an invalid configuration.
    // Reasons of earlier verdicts point into the previous configuration: read them before.
    base::Result<bool> reconfigure(EngineConfig config);
    // reconfigure() in two steps, for a caller that creates the next engine where it may take
    // its time (another thread, the tables allocated there) and installs it where this one
    // runs: when `next` keeps this engine's state layout, its state (keys, windows, calls in
    // progress, bans, counters, event sink) moves to `next` and this engine is left empty:
    // true. Otherwise nothing changes: false. Cannot fail.
    bool hand_over_state(Engine& next) noexcept;
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Whether hand_over_state(*this) from `running` would succeed (the same state layout):
    // then this engine's own tables will never hold a key. Reads configuration only.
    bool takes_state_of(const Engine& running) const noexcept;
    // Backs every page of the state tables now, so that the memory the engine will use is
    // resident from the start and not reached, page by page, as keys arrive at random (the
    // first few thousand sources touch nearly every page of tables sized for a million keys).
    // Costs table_bytes() of resident memory at once; call it off the packet path. Returns the
    // bytes committed.
    std::size_t commit_tables();

    void on_attempt(const CallAttempt& a, Verdict& out);
    // A burst of attempts (out.size() >= in.size()): the same verdicts as one by one, with the
    // state of the next attempts prefetched while the current one is scored, so the cache
    // misses of several events overlap (per-key state is far larger than the caches).
    void on_attempts(std::span<const CallAttempt> in, std::span<Verdict> out);
    void on_answer(const CallAnswered& a);
    void on_end(const CallEnded& e);
    void on_auth(const AuthResult& a, Verdict& out);
    void on_register(const Registration& r, Verdict& out);

    // The fast path's question: is this source (or its source prefix) under a ban? (cheap, no
    // state change)
    bool is_banned(const base::IpAddress& a, base::Nanos now) const;
    // `sbc run`'s fast path drops a banned source's packets before they reach the engine; it
    // reports them here in batches: the ban as the dataplane holds it (an address, or a source
    // prefix of the engine's length) and the packets it dropped since the last report. Each
    // counts toward the source prefix's windows as one event of the kind that got the source
    // banned (at most 4096 a report), so a prefix rule does not re-arm while the attack goes
    // on. A ban the engine did not issue counts nothing. Returns the events counted.
    std::uint64_t on_banned_drops(const base::Prefix& banned, std::uint64_t dropped,
                                  base::Nanos now);
    // Is this calling number (or its prefix) under a ban?
    bool is_caller_banned(std::string_view caller, base::Nanos now) const;

    // The callback list: numbers learned from inbound short rings of flagged ranges, with
    // the monotonic time each stops being a reason to stop a call back.
    struct LearnedNumber {
        std::string number;
        base::Nanos until = 0;
    };
    std::vector<LearnedNumber> learned_callbacks(base::Nanos now) const;

    // Frees up to `budget` idle keys and expired calls/bans (also done a little per event).
    void expire(base::Nanos now, std::size_t budget);

    // Each flag/block/ban (and shadow non-allow) verdict as one JSON line.
    void set_event_sink(std::function<void(std::string_view)> sink);

    const base::CounterSet<Counter>& counters() const;
    std::size_t tracked_keys() const;
    std::size_t tracked_keys(KeyKind k) const;
    std::size_t key_capacity(KeyKind k) const;
    std::size_t tracked_calls() const;
    std::size_t active_bans(base::Nanos now) const;
    std::size_t table_bytes() const;              // fixed at creation
    std::size_t slot_bytes(KeyKind k) const;      // per-key state of a kind (0 = kind not tracked)
    std::size_t hot_slot_bytes(KeyKind k) const;  // the part every event of the key reads
    // Current concurrent-call counter of a key (tests, `sbc policy test`).
    std::int64_t concurrent_calls(KeyKind k, std::string_view key_value) const;
    const EngineConfig& config() const;

  private:
    friend std::optional<ConfigError> validate(const EngineConfig& config);
    Engine() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sbc::fraud

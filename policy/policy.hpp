#pragma once
// The public header of policy/: TOML files -> validated, immutable policy snapshot.
//
// Two layers of validation: TOML is read into raw typed values that remember their source
// position, then semantic checks run over the whole configuration (references, overlaps,
// ranges). Only when both pass is the policy compiled into lookup structures (digit trie for
// destination prefixes, CIDR sets, compiled globs) and published as a `Policy` snapshot.
//
// Consumers never hold a snapshot across decisions: they call `PolicyStore::current()` per
// decision (a lock-free atomic load), so a reload takes effect on the next decision while
// counters, bans and learned state (which live outside the snapshot) survive it.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.hpp"
#include "base/digit_trie.hpp"
#include "base/fraud_vocabulary.hpp"

namespace sbc::policy {

// ---------------------------------------------------------------------------------------------
// Diagnostics

struct Diagnostic {
    std::string file;
    std::uint32_t line = 0;  // 1-based; 0 when the error is about a whole file
    std::uint32_t column = 0;
    std::string message;
    std::string to_string() const;  // "file:line:column: message"
};

// A loaded value or every error found (never just the first). `notices` are warnings that
// leave the value valid: keys present in the file that are accepted but not enforced yet.
template <class T>
struct Loaded {
    std::shared_ptr<const T> value;
    std::vector<Diagnostic> errors;
    std::vector<Diagnostic> notices;
    bool ok() const { return value != nullptr; }
};

// ---------------------------------------------------------------------------------------------
// Where each configuration key takes effect in `sbc run`, in one list per file kind
// (policy/key_status.cpp). A key is written as its dotted path, an array of tables as `name[]`
// ("fraud.rules[].weight"), `*` stands for any one segment ("rate_limits.*.per_account").
// A key the running daemon does not act on yet gives a notice at its file:line:column when it
// is present; the test over docs/policy.md keeps this list and the documentation in step.

struct KeyStatus {
    std::string_view key;
    bool enforced = false;
    std::string_view where;  // enforced: where it takes effect; otherwise what it waits for
    // Non-empty: enforced only for these values (comma-separated); other values get a notice.
    std::string_view enforced_values = {};
};
std::span<const KeyStatus> policy_key_status();
std::span<const KeyStatus> node_key_status();
// The entry whose pattern is `path` ("listeners[].transport"), or nullptr.
const KeyStatus* find_key_status(std::span<const KeyStatus> table, std::string_view path);

// ---------------------------------------------------------------------------------------------
// Enumerations of the policy language. The X-macro lists give the enum, the TOML spelling
// (`name(e)`) and a description. The fraud rule language's words (features, rule keys,
// operators, list categories, modes, time scopes, call directions, weekdays) are declared once
// in base/fraud_vocabulary.hpp, shared with the fraud engine, and take the policy's names here.

using PrefixCategory = base::FraudCategory;
inline constexpr std::size_t kPrefixCategoryCount = base::kFraudCategoryCount;
inline constexpr const auto& kPrefixCategoryNames = base::kFraudCategoryNames;
inline constexpr const auto& kPrefixCategoryDescriptions = base::kFraudCategoryDescriptions;

// Rate-limit traffic classes of the dataplane. TOML names: register, invite, other,
// tcp_connect, media_unallocated.
#define SBC_POLICY_TRAFFIC_CLASSES(X)                            \
    X(sip_register, "SIP REGISTER requests")                     \
    X(sip_invite, "SIP INVITE requests")                         \
    X(sip_other, "Other SIP requests (OPTIONS, SUBSCRIBE, ...)") \
    X(tcp_connect, "TCP/TLS connection attempts")                \
    X(media_unallocated, "Packets to media ports with no session")
SBC_DECLARE_COUNTER_LIST(TrafficClass, SBC_POLICY_TRAFFIC_CLASSES)
// TOML spelling of a traffic class ("register", "invite", "other", ...).
std::string_view toml_name(TrafficClass c);

// Rate-limit keys. TOML names: per_source, per_prefix, per_account.
#define SBC_POLICY_LIMIT_KEYS(X)                                          \
    X(source_address, "per source address")                               \
    X(source_prefix, "per source prefix (/24 IPv4, /64 IPv6 by default)") \
    X(account, "per account (signaling only)")
SBC_DECLARE_COUNTER_LIST(LimitKey, SBC_POLICY_LIMIT_KEYS)
std::string_view toml_name(LimitKey k);

using Feature = base::FraudFeature;
inline constexpr std::size_t kFeatureCount = base::kFraudFeatureCount;
inline constexpr const auto& kFeatureNames = base::kFraudFeatureNames;
inline constexpr const auto& kFeatureDescriptions = base::kFraudFeatureDescriptions;

using RuleKey = base::FraudKey;
inline constexpr std::size_t kRuleKeyCount = base::kFraudKeyCount;
inline constexpr const auto& kRuleKeyNames = base::kFraudKeyNames;
inline constexpr const auto& kRuleKeyDescriptions = base::kFraudKeyDescriptions;

// The TOML spelling of an operator is its description (">=", ...).
using CompareOp = base::FraudOp;
inline constexpr std::size_t kCompareOpCount = base::kFraudOpCount;
inline constexpr const auto& kCompareOpNames = base::kFraudOpNames;
inline constexpr const auto& kCompareOpDescriptions = base::kFraudOpDescriptions;

using Mode = base::FraudMode;
using TimeScope = base::FraudTimeScope;
using base::compare;
using base::description;
using base::name;
enum class DenyAction : std::uint8_t { block, ban };
std::string_view name(DenyAction a);

// ---------------------------------------------------------------------------------------------
// Countries and E.164 numbering

struct CountryCallingCode {
    std::string_view iso;   // ISO 3166-1 alpha-2, upper case
    std::string_view code;  // E.164 country calling code digits (NANP areas: "1876", ...)
};
// Every known country with its calling code(s); a country may appear more than once.
std::span<const CountryCallingCode> country_calling_codes();
// A country calling code ("33", "1" for the whole NANP, "1876"...).
bool is_country_calling_code(std::string_view code);
// The one country whose calling code this is ("33" -> "FR"); "" when the code is shared
// ("1": the NANP, "590": GP/BL/MF) or unknown.
std::string home_country_of(std::string_view calling_code);
// Calling codes of an ISO alpha-2 country (upper case); empty if unknown.
std::vector<std::string_view> calling_codes_of(std::string_view iso);
// Country of an E.164 number (digits only) by longest calling-code match; "" if none.
std::string_view destination_country(std::string_view e164_digits);

struct Numbering {
    std::string default_country_code;  // empty: national numbers cannot be normalized
    std::string national_prefix = "0";
    std::string international_prefix = "00";
    // ISO alpha-2 country of this node's users: calls to another country are international.
    // From `numbering.home_country`, else the one country of default_country_code.
    std::string home_country;
    // Internal extensions (`numbering.extensions`): patterns of digits and X (any digit),
    // Z (1-9), N (2-9), each matching numbers of exactly its length ("2XXX"). A dialed number
    // that matches is an extension: kept as dialed, of no country, never international.
    std::vector<std::string> extensions;
    static constexpr std::size_t kMaxExtensionDigits = 15;
    // "" or why `pattern` is not an extension pattern.
    static std::string check_extension_pattern(std::string_view pattern);
    bool is_extension(std::string_view dialed) const;
    // "+44 20..." / "0044..." -> "4420..."; "0612345678" -> "33612345678" (with cc 33).
    // Visual separators (space - . ( )) are dropped. Returns "" when the input is not a number.
    std::string normalize(std::string_view dialed) const;
};

// ---------------------------------------------------------------------------------------------
// Compiled lookup structures

// Longest-prefix match over E.164 digits, on the digit trie the fraud engine uses
// (base::DigitTrie: one cache line per node), each prefix's node holding its match.
struct PrefixMatch {
    std::uint8_t length = 0;  // digits matched; 0 = no match
    PrefixCategory category = PrefixCategory::custom;
    std::span<const std::uint32_t> lists;  // indexes into Policy::prefix_lists
    bool matched() const { return length != 0; }
};

class PrefixTable {
  public:
    struct Entry {
        std::string digits;
        std::uint32_t list = 0;
        PrefixCategory category = PrefixCategory::custom;
    };
    // Entries may repeat a prefix (several lists); the category of a prefix is that of its
    // first entry (the validator rejects a prefix in lists of different categories). Entries
    // that are not all digits (or longer than 255) are left out.
    static PrefixTable build(std::vector<Entry> entries);

    // The longest prefix of `digits` present in the table. Non-digits end the walk.
    PrefixMatch lpm(std::string_view digits) const noexcept;
    // lpm() of each number in turn.
    void lpm_batch(std::span<const std::string_view> numbers,
                   std::span<PrefixMatch> out) const noexcept;
    // Every prefix of `digits` present in the table, shortest first; returns how many were
    // written to `out` (at most out.size()).
    std::size_t all_matches(std::string_view digits, std::span<PrefixMatch> out) const noexcept;

    std::size_t prefix_count() const { return matches_.size(); }
    std::size_t node_count() const { return trie_.node_count(); }
    std::size_t memory_bytes() const;

  private:
    struct MatchEntry {
        std::uint32_t first_list = 0;
        std::uint16_t list_count = 0;
        std::uint8_t length = 0;
        PrefixCategory category = PrefixCategory::custom;
    };
    PrefixMatch make_match(std::uint64_t m) const noexcept;
    base::DigitTrie trie_;  // value: 1-based index into matches_
    std::vector<MatchEntry> matches_;
    std::vector<std::uint32_t> list_ids_;
};

// A set of IPv4/IPv6 prefixes with longest-prefix match (one hash probe per distinct length).
class CidrSet {
  public:
    void add(const base::Prefix& p, std::uint32_t tag);  // before finalize()
    void finalize();
    struct Match {
        base::Prefix prefix;
        std::uint32_t tag = 0;
    };
    std::optional<Match> longest(const base::IpAddress& a) const;
    bool contains(const base::IpAddress& a) const { return longest(a).has_value(); }
    const std::vector<Match>& entries() const { return entries_; }
    bool empty() const { return entries_.empty(); }

  private:
    struct Key {
        base::IpAddress addr;  // masked to len
        std::uint8_t len = 0;  // in the family's own bits
        bool operator==(const Key&) const = default;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept { return k.addr.hash() ^ k.len; }
    };
    std::vector<Match> entries_;
    std::vector<std::uint8_t> v4_lengths_;  // distinct lengths, longest first
    std::vector<std::uint8_t> v6_lengths_;
    std::unordered_map<Key, std::uint32_t, KeyHash> by_masked_;  // -> index in entries_
};

// Case-insensitive glob with '*' only, matched anywhere in the text ("*" at both ends implied).
class Glob {
  public:
    Glob() = default;
    explicit Glob(std::string_view pattern);
    bool matches(std::string_view text) const;
    const std::string& pattern() const { return pattern_; }

  private:
    std::string pattern_;
    base::SubstringGlob glob_;
};

// A glob over whole strings (account patterns "10*"), case-sensitive, '*' only.
class ExactGlob {
  public:
    ExactGlob() = default;
    explicit ExactGlob(std::string_view pattern);
    bool matches(std::string_view text) const;
    const std::string& pattern() const { return pattern_; }

  private:
    std::string pattern_;
};

// ---------------------------------------------------------------------------------------------
// The policy snapshot

enum class SourceVerdict : std::uint8_t {
    denied,         // in the deny list (wins over everything)
    trusted,        // trusted trunk: bypasses rate limits and fraud scoring
    allowed,        // in the allow list
    default_allow,  // in no list, default = "allow"
    default_deny,   // in no list, default = "deny"
};
std::string_view name(SourceVerdict v);

struct TrustedTrunk {
    std::string name;
    std::vector<base::Prefix> cidrs;
};

struct AccessLists {
    bool default_allow = true;
    CidrSet allow;     // tag: index in allow_cidrs
    CidrSet deny;      // tag: index in deny_cidrs
    CidrSet trusted;   // tag: index in trusted_trunks
    CidrSet internal;  // the company's own networks (call direction)
    std::vector<base::Prefix> allow_cidrs;
    std::vector<base::Prefix> internal_cidrs;
    std::vector<base::Prefix> deny_cidrs;
    std::vector<TrustedTrunk> trusted_trunks;
};

struct RateLimit {
    bool enabled = false;
    double rate = 0;   // tokens per second
    double burst = 0;  // bucket depth
};

struct RateLimits {
    // [traffic class][key kind]
    std::array<std::array<RateLimit, kLimitKeyCount>, kTrafficClassCount> limits{};
    std::uint8_t source_prefix_v4 = 24;
    std::uint8_t source_prefix_v6 = 64;
    const RateLimit& get(TrafficClass c, LimitKey k) const {
        return limits[static_cast<std::size_t>(c)][static_cast<std::size_t>(k)];
    }
};

// First ban lasts `base`; each re-ban of the same source multiplies by `factor` up to `max`.
// A ban is triggered after `violations` rate-limit excesses within `violation_window`.
struct BanEscalation {
    base::Nanos base = 5 * 60 * base::kNanosPerSecond;
    double factor = 2.0;
    base::Nanos max = 24 * 3600 * base::kNanosPerSecond;
    std::uint32_t violations = 5;
    base::Nanos violation_window = 60 * base::kNanosPerSecond;
    // How long a source's ban history is remembered for escalation.
    base::Nanos history = 24 * 3600 * base::kNanosPerSecond;
    base::Nanos duration_for(std::uint32_t previous_bans) const;
};

struct ScannerSignatures {
    std::vector<Glob> user_agents;
    DenyAction action = DenyAction::ban;  // what the dataplane does on a match
    bool empty_user_agent_is_scanner = false;
    // The first matching signature, or nullptr.
    const Glob* match(std::string_view user_agent) const;
};

struct TopologyOptions {
    bool hide_topology = true;    // rewrite Via/Contact/Record-Route of the internal side
    bool replace_call_id = true;  // external Call-ID differs from the internal one
    std::vector<std::string> strip_headers;  // header names (case-insensitive), '*' allowed
    std::map<std::uint16_t, std::string> reason_phrases;  // status -> phrase sent outside
    std::string server_header;  // replaces Server/User-Agent towards the outside; "" = strip
};

struct BusinessHours {
    std::uint8_t days = 0;           // bit 0 = Monday ... bit 6 = Sunday
    std::uint16_t start_minute = 0;  // minutes since local midnight
    std::uint16_t end_minute = 0;    // exclusive; > start_minute
};

struct AccountGroup {
    std::string name;
    std::vector<std::string> accounts;
    std::vector<ExactGlob> account_patterns;
    std::string tenant;
    std::string timezone = "UTC";
    std::vector<BusinessHours> business_hours;               // empty = always business hours
    std::vector<std::string> allowed_source_countries;       // empty = any
    std::vector<std::string> allowed_destination_countries;  // empty = any
    std::string file;  // where the group was declared (for diagnostics after loading)
    std::uint32_t line = 0;
    std::uint32_t column = 0;
    bool has_account(std::string_view account) const;
    // `local_weekday` 0 = Monday, `local_minute` since midnight in the group's timezone.
    bool in_business_hours(int local_weekday, int local_minute) const;
};

struct PrefixList {
    std::string name;
    PrefixCategory category = PrefixCategory::custom;
    std::vector<std::string> prefixes;   // normalized digits, countries expanded
    std::vector<std::string> countries;  // ISO codes as written
    std::string file;                    // policy file that declared it
    std::uint32_t line = 0;              // of its [[prefix_lists]] table
    std::uint32_t column = 0;
};

struct FraudScope {
    std::vector<std::string> tenants;
    std::vector<std::string> account_groups;
    std::string destinations;             // prefix list name; "" = any
    std::int32_t destinations_list = -1;  // index in Policy::prefix_lists
    TimeScope time = TimeScope::any;
    std::vector<std::string> directions;  // base::scope_direction names; empty = any
};

struct FraudRule {
    std::string id;
    std::string description;
    Feature feature = Feature::attempts;
    RuleKey key = RuleKey::account;
    base::Nanos window = 10 * 60 * base::kNanosPerSecond;
    CompareOp op = CompareOp::ge;
    double threshold = 0;
    double weight = 0;
    Mode mode = Mode::enforce;
    FraudScope scope;
    std::vector<std::string> lists;           // for destination features; empty = by category
    std::vector<std::uint32_t> list_indexes;  // resolved `lists`
    std::uint32_t min_attempts = 0;
    bool count_blocked = false;  // blocked attempts count here whatever blocked them
    std::string file;            // where the rule was declared (for explanations and diagnostics)
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

struct FraudDeny {
    std::string id;
    std::string destinations;  // prefix list name; "" = none
    std::int32_t destinations_list = -1;
    std::vector<std::string> countries;         // destination countries
    std::vector<std::string> source_countries;  // GeoIP countries of the source
    std::string callers;                        // prefix list of calling numbers; "" = none
    std::int32_t callers_list = -1;
    std::vector<std::string> caller_countries;  // countries of the calling number
    DenyAction action = DenyAction::block;
    std::string file;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

struct FraudSettings {
    Mode mode = Mode::enforce;
    double score_cap = 100;
    double flag_threshold = 30;
    double block_threshold = 60;
    double ban_threshold = 90;
    base::Nanos ban_duration = 3600 * base::kNanosPerSecond;
    std::uint64_t max_tracked_keys = 1'000'000;
    base::Nanos idle_key_expiry = 2 * 3600 * base::kNanosPerSecond;
    std::uint32_t short_call_seconds = 10;
    // A ban verdict also ends the running calls of the banned source or account (BYE on both
    // legs), not only the next ones.
    bool end_calls_on_ban = false;
    // The callback list: calling numbers of inbound short rings from flagged ranges.
    std::vector<std::string> callback_lists;  // empty: every irsf, premium, high_risk list
    base::Nanos callback_expiry = 7 * 24 * 3600 * base::kNanosPerSecond;
    std::uint32_t callback_capacity = 1u << 14;
    // The company's own networks (office NATs): scored by account, never by address.
    std::vector<base::Prefix> own_networks;
    std::vector<FraudRule> rules;
    std::vector<FraudDeny> deny;
};

// The compiled, immutable policy. Built off the hot path; shared as shared_ptr<const Policy>.
struct Policy {
    std::uint64_t version = 0;  // assigned by PolicyStore (1, 2, ...); 0 when loaded standalone
    std::string hash;           // content hash of every source file, in load order (hex)
    std::vector<std::string> source_files;  // top-level files and includes, in load order
    std::string name;                       // [policy] name

    AccessLists access;
    RateLimits rate_limits;
    BanEscalation bans;
    ScannerSignatures scanners;
    TopologyOptions topology;
    Numbering numbering;
    std::vector<PrefixList> prefix_lists;
    PrefixTable prefixes;  // every prefix of every list
    std::vector<AccountGroup> account_groups;
    FraudSettings fraud;
    // Keys present in the files that `sbc run` accepts but does not enforce yet.
    std::vector<Diagnostic> notices;

    SourceVerdict classify_source(const base::IpAddress& a) const;
    const PrefixList* find_prefix_list(std::string_view name) const;
    std::int32_t prefix_list_index(std::string_view name) const;
    // The first group (in file order) containing the account, or nullptr.
    const AccountGroup* group_of(std::string_view account) const;
};

struct LoadOptions {
    bool allow_includes = true;    // false: `include` is an error (fuzzing, untrusted input)
    bool allow_file_lists = true;  // false: prefix list `file = ...` is an error
    std::uint64_t version = 0;
};

// Loads, validates and compiles the policy made of `files` (merged in order, with their
// includes). All errors are returned at once, each with file:line:column.
Loaded<Policy> load_policy(const std::vector<std::string>& files, const LoadOptions& options = {});
// The same from an in-memory TOML document named `name` in diagnostics.
Loaded<Policy> load_policy_from_string(std::string_view toml, const std::string& name,
                                       const LoadOptions& options = {});
// The effective, normalized policy (defaults filled in, includes resolved) as TOML.
std::string render_policy(const Policy& p);

// ---------------------------------------------------------------------------------------------
// Node configuration (sbc.toml)

enum class Transport : std::uint8_t { udp, tcp, tls };
enum class Realm : std::uint8_t { external, internal };
enum class DataplaneBackend : std::uint8_t { socket, dpdk, pcap };
std::string_view name(Transport t);
std::string_view name(Realm r);
std::string_view name(DataplaneBackend b);

// Client-certificate verification of one TLS listener (a trunk realm), or of every TLS
// listener ([tls]) that sets none of its own.
struct ClientVerification {
    std::string client_ca;  // PEM file; set = client certificates are verified
    bool require_client_certificate = false;
    // Names a verified client certificate must carry (subjectAltName DNS, else subject CN);
    // empty = any certificate the CA signed.
    std::vector<std::string> client_names;
};

struct ListenerConfig {
    Realm realm = Realm::external;
    base::Endpoint endpoint;
    Transport transport = Transport::udp;
    // tls only: this listener's own client verification (else [tls]'s).
    bool has_client_verification = false;
    ClientVerification clients;
    // Uniform answers to strangers on this listener (external only); unset: the node's
    // `registrations.enumeration_resistance`.
    std::optional<bool> enumeration_resistance;
};

struct TlsConfig {
    std::string certificate_chain;  // PEM file
    std::string private_key;        // PEM file
    ClientVerification clients;
    std::string min_version = "1.2";  // "1.2" | "1.3"
    std::string ciphers;       // OpenSSL cipher list (TLS 1.2); "" = strong default (ECDHE+AEAD)
    std::string ciphersuites;  // TLS 1.3 ciphersuites; "" = strong default
    std::string groups;        // key exchange groups; "" = X25519:P-256:P-384
    // Outgoing TLS (next hops, trunks, sips: Request-URIs): the CAs that verify the servers'
    // certificates; "" = the system's trust store. certificate_chain/private_key, when set, are
    // presented to a server that asks for a client certificate.
    std::string server_ca;
};

// Stream (TCP and TLS) connection hygiene; sized for an open-file limit of 20,000.
struct ConnectionsConfig {
    std::uint32_t max_connections = 4096;
    std::uint32_t max_per_source = 32;
    std::uint32_t max_outgoing = 512;  // connections the SBC opens (one per destination)
    std::uint32_t max_message_bytes = 65535;
    std::uint32_t max_buffered_bytes = 262144;
    base::Nanos handshake_timeout = 5 * base::kNanosPerSecond;
    base::Nanos idle_timeout = 300 * base::kNanosPerSecond;
};

struct HealthCheckConfig {
    bool enabled = true;
    base::Nanos interval = 5 * base::kNanosPerSecond;  // SIP OPTIONS ping period
    base::Nanos timeout = 2 * base::kNanosPerSecond;
    std::uint32_t failures_before_down = 3;
    std::uint32_t successes_before_up = 2;
};

// REGISTERs from the external realm through the SBC to the internal next hops (the registrar).
struct RegistrationsConfig {
    bool enabled = true;
    base::Nanos nat_expires = 60 * base::kNanosPerSecond;  // granted to clients behind NAT; 0: as
                                                           // the registrar grants
    base::Nanos max_expires = 3600 * base::kNanosPerSecond;
    std::uint32_t max_contacts_per_request = 10;
    std::uint32_t max_bindings_per_aor = 10;
    std::uint32_t max_bindings = 100000;
    std::string keepalive = "options";  // options | crlf | none
    base::Nanos keepalive_interval = 30 * base::kNanosPerSecond;
    base::Nanos keepalive_timeout = 5 * base::kNanosPerSecond;
    std::uint32_t keepalive_failures = 2;
    // Enumeration resistance of the external realm: every user answered alike.
    bool enumeration_resistance = true;
    std::string realm;  // challenge realm before the registrar sent one; "" = the To host
};

struct NextHopConfig {
    std::string name;
    // internal: where calls from outside go; external: a trunk where calls from inside go
    // instead of their Request-URI. Both are health-checked by [health_check] and weighted
    // among the hops up; failover on timeout, 503 or a transport error.
    Realm realm = Realm::internal;
    base::Endpoint endpoint;
    Transport transport = Transport::udp;
    std::uint32_t weight = 1;
    // tls: the name the server's certificate must carry, also sent as SNI; "" = the address
    // (checked against the certificate's IP addresses).
    std::string server_name;
};

struct MediaConfig {
    std::uint16_t port_min = 20000;
    std::uint16_t port_max = 39999;
    base::IpAddress external_address;  // relay address announced to the external realm
    base::IpAddress internal_address;  // relay address announced to the internal realm
    // A relayed stream silent this long is reported inactive; an answered call whose stream
    // it is ends with BYE on both legs.
    base::Nanos inactivity_timeout = 60 * base::kNanosPerSecond;
};

struct DataplaneConfig {
    DataplaneBackend backend = DataplaneBackend::socket;
    std::vector<std::string> dpdk_eal_args;
    std::vector<std::string> dpdk_ports;  // PCI addresses or vdev names
    struct HostAddress {
        base::IpAddress addr;
        std::uint8_t prefix_len = 0;
    };
    // Given to the exception port's kernel interface (the tap) at start; empty: the operator
    // assigns the node's addresses to it.
    std::vector<HostAddress> dpdk_tap_addresses;
    std::string pcap_input;
    std::string pcap_output;
    std::uint32_t burst_size = 32;
};

// Where `sbc run` and `sbc ctl` meet when sbc.toml names no control socket.
inline constexpr std::string_view kDefaultControlSocket = "/run/sbc/control.sock";

struct NodeConfig {
    std::string file;  // the sbc.toml it was read from
    std::string node_name = "sbc";
    std::vector<ListenerConfig> listeners;
    TlsConfig tls;
    ConnectionsConfig connections;
    std::vector<NextHopConfig> next_hops;
    HealthCheckConfig health_check;
    RegistrationsConfig registrations;
    MediaConfig media;
    DataplaneConfig dataplane;
    std::string log_level = "info";  // trace|debug|info|warn|error (the terminal, stderr)
    std::string log_file;            // JSON lines; "" = stderr only
    std::string log_file_level;      // "" = log_level
    // Security events as JSON lines: a file with rotation, optionally a webhook.
    struct Events {
        std::string file;  // "" = no file
        std::uint64_t max_bytes = 10 * 1024 * 1024;
        std::uint32_t max_files = 5;
        std::string webhook_url;  // http://host:port/path; "" = none
        std::uint32_t webhook_queue = 1024;
        std::uint32_t webhook_retries = 3;
        base::Nanos webhook_timeout = 2 * base::kNanosPerSecond;
        base::Nanos webhook_backoff = 500 * base::kNanosPerMilli;  // doubles per retry
    } events;
    bool metrics_enabled = false;
    base::Endpoint metrics_listen;
    std::string control_socket{kDefaultControlSocket};
    // The control socket file's permission bits and group ("" = the daemon's own group). A
    // peer that is neither root, nor the daemon's user, nor in `control_group` is refused.
    std::uint32_t control_mode = 0660;
    std::string control_group;
    // Drain (`sbc ctl drain`, SIGTERM): new calls get 503 with this Retry-After; calls in
    // progress have `drain_timeout` to end before the rest are hung up (BYE both legs).
    base::Nanos drain_timeout = 30 * base::kNanosPerSecond;
    std::uint32_t drain_retry_after = 60;
    // HEPv3 export of every SIP message the B2BUA receives and sends ([hep]).
    bool hep_enabled = false;
    base::Endpoint hep_collector;
    std::uint32_t hep_capture_id = 0;
    std::string hep_password;             // HEP auth key chunk; "" = none
    std::uint32_t hep_queue = 4096;       // messages waiting for the sender thread
    std::string state_backend = "local";  // local | redis
    std::string state_url;
    std::string geoip_database;
    std::vector<std::string> policy_files;  // resolved relative to the config file
    // Keys present in the file that `sbc run` accepts but does not enforce yet.
    std::vector<Diagnostic> notices;
};

Loaded<NodeConfig> load_node_config(const std::string& path);

// ---------------------------------------------------------------------------------------------
// PolicyStore: the current snapshot, all-or-nothing reloads, status.
//
// Every subsystem that follows the policy (the dataplane's limits, the fraud engine, ...) joins
// the store as a participant. A reload is two-phase: each participant first prepares its new
// state from the candidate snapshot, aside, without disturbing what runs, and may refuse it;
// only when every participant has prepared is the snapshot published and each prepared change
// committed, in the order the participants joined. When one refuses, the changes the others
// prepared are aborted, nothing changes anywhere and the old policy stays in force.

// What a participant prepared for a candidate snapshot.
class PolicyChange {
  public:
    // Ready. `commit` installs what was prepared and must not fail: whatever can fail (parsing,
    // compiling, allocating) belongs in prepare, and commit only hands the result over.
    // `abort` (optional) releases what prepare reserved outside the commit closure; dropping
    // the closure (and what it holds) is the abort of everything else.
    static PolicyChange ready(std::function<void()> commit, std::function<void()> abort = {});
    // Refused, with why (file:line:column of the offending rule or key where known).
    static PolicyChange refuse(std::vector<Diagnostic> reasons);

    bool refused() const { return !reasons_.empty(); }
    const std::vector<Diagnostic>& reasons() const { return reasons_; }

  private:
    friend class PolicyStore;
    std::function<void()> commit_;
    std::function<void()> abort_;
    std::vector<Diagnostic> reasons_;
};

struct PolicyParticipant {
    std::string name;  // who refused, in reload results and the status ("fraud_engine")
    // Called on the reloading thread, one reload at a time.
    std::function<PolicyChange(const std::shared_ptr<const Policy>& candidate)> prepare;
};

struct PolicyStatus {
    std::uint64_t version = 0;  // 0 = nothing loaded yet
    std::string hash;
    std::vector<std::string> files;
    base::UnixNanos loaded_at = 0;  // when the current version was installed
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
    bool last_reload_ok = true;
    base::UnixNanos last_reload_at = 0;
    std::vector<Diagnostic> last_errors;  // of the last failed reload
    std::string last_refused_by;          // the participant that refused it; "" = load errors
    // "ok", "none", "failed (3 errors)" (the files) or "refused by fraud_engine (1 error)".
    std::string last_result() const;
};

class PolicyStore {
  public:
    explicit PolicyStore(std::vector<std::string> files, LoadOptions options = {});

    // Hot path: one atomic load, never blocks on a reload. Re-read it per decision.
    std::shared_ptr<const Policy> current() const noexcept { return current_.load(); }

    struct ReloadResult {
        bool ok = false;
        std::uint64_t version = 0;  // the version in force afterwards
        std::vector<Diagnostic> errors;
        std::string refused_by;  // the participant that refused the candidate; "" otherwise
    };
    // Re-reads the files and compiles them off the hot path, has every participant prepare the
    // candidate, then publishes it atomically and commits every participant. On any failure
    // the current snapshot and every participant's state stay in force. `now` is wall time for
    // the status.
    ReloadResult reload(base::UnixNanos now);

    PolicyStatus status() const;
    const std::vector<std::string>& files() const { return files_; }

    // Joins the reloads. With a snapshot in force, the participant first prepares and commits
    // it (the initial load of a subsystem that starts after the store); if it refuses, it does
    // not join and its reasons are returned. Empty: joined.
    std::vector<Diagnostic> add_participant(PolicyParticipant participant);

  private:
    static void commit_all(std::vector<PolicyChange>& changes) noexcept;
    static void abort_all(std::vector<PolicyChange>& changes) noexcept;

    std::vector<std::string> files_;
    LoadOptions options_;
    std::atomic<std::shared_ptr<const Policy>> current_;
    std::mutex reload_mu_;   // serializes reloads and joins: one prepare/commit round at a time
    mutable std::mutex mu_;  // guards status_ (never held while compiling or preparing)
    PolicyStatus status_;
    std::vector<PolicyParticipant> participants_;  // under reload_mu_
};

}  // namespace sbc::policy

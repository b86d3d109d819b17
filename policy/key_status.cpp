// Where every policy and node-config key takes effect in `sbc run`, or what it waits for.
// One list per file kind; the loaders report what is present and not enforced, and
// tests/unit/policy/key_status_test.cpp checks this list against docs/policy.md.
#include "policy/key_status.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace sbc::policy {

namespace {

constexpr std::string_view kFraudEngine = "fraud engine (front door scoring)";
constexpr std::string_view kCalls =
    "B2BUA: calls from outside go to the next hops in order, failover on timeout or 503";
constexpr std::string_view kB2buaHides =
    "the B2BUA always gives each leg its own Call-ID, tags, Via and Contact; `false` is not "
    "offered on live traffic";
constexpr std::string_view kB2buaTopology =
    "B2BUA on relayed messages (applied at start and on reload); `sbc sip hide --policy`";
constexpr std::string_view kTcpConnect =
    "TCP/TLS connects: the dataplane's tcp_connect buckets (socket backend: asked by the "
    "transport thread before a connection is read; dpdk: SYNs in the fast path)";
constexpr std::string_view kAccessLater =
    "`sbc run` does not apply access lists yet (front door access stage)";

constexpr KeyStatus kPolicyKeys[] = {
    {"include", true, "loader: included files are read with the including file"},
    {"policy.name", true, "`policy check`, `policy show`"},
    {"access.default", false, kAccessLater},
    {"access.allow", false, kAccessLater},
    {"access.deny", false, kAccessLater},
    {"access.trusted[].name", true, "names a trusted trunk"},
    {"access.trusted[].cidrs", true,
     "dataplane rate limits and front door per-account limits are bypassed; fraud scoring "
     "never bans the trunk's address (the calling number instead)"},
    {"access.internal", true, "call direction of fraud events (front door, `policy test`)"},
    {"rate_limits.source_prefix_v4", true, "dataplane per-prefix buckets, fraud source_prefix"},
    {"rate_limits.source_prefix_v6", true, "dataplane per-prefix buckets, fraud source_prefix"},
    {"rate_limits.*.per_source", true, "dataplane token buckets"},
    {"rate_limits.*.per_prefix", true, "dataplane token buckets"},
    {"rate_limits.*.per_account", true, "front door per-account token buckets"},
    {"rate_limits.tcp_connect.per_source", true, kTcpConnect},
    {"rate_limits.tcp_connect.per_prefix", true, kTcpConnect},
    {"bans.base", true, "dataplane ban escalation"},
    {"bans.factor", true, "dataplane ban escalation"},
    {"bans.max", true, "dataplane ban escalation"},
    {"bans.violations", true, "dataplane ban escalation"},
    {"bans.violation_window", true, "dataplane ban escalation"},
    {"bans.history", true, "dataplane ban escalation"},
    {"scanners.user_agents", true, "front door (scanners.action) and fraud scanner_user_agent"},
    {"scanners.action", true, "front door: block answers 403, ban also bans the source"},
    {"scanners.empty_user_agent", true, "front door and fraud scanner_user_agent"},
    {"topology.hide_topology", true, kB2buaHides, "true"},
    {"topology.replace_call_id", true, kB2buaHides, "true"},
    {"topology.strip_headers", true, kB2buaTopology},
    {"topology.server_header", true, kB2buaTopology},
    {"topology.reason_phrases", true, kB2buaTopology},
    {"numbering.default_country_code", true, "front door: dialed numbers to E.164"},
    {"numbering.national_prefix", true, "front door: dialed numbers to E.164"},
    {"numbering.international_prefix", true, "front door: dialed numbers to E.164"},
    {"numbering.home_country", true, "fraud international_attempts: calls to another country"},
    {"numbering.extensions", true, "front door: extensions are of no country, not international"},
    {"prefix_lists[].name", true, kFraudEngine},
    {"prefix_lists[].category", true, kFraudEngine},
    {"prefix_lists[].prefixes", true, kFraudEngine},
    {"prefix_lists[].file", true, kFraudEngine},
    {"prefix_lists[].countries", true, kFraudEngine},
    {"account_groups[].name", true, kFraudEngine},
    {"account_groups[].accounts", true, kFraudEngine},
    {"account_groups[].account_patterns", true, kFraudEngine},
    {"account_groups[].tenant", true, kFraudEngine},
    {"account_groups[].timezone", true, kFraudEngine},
    {"account_groups[].business_hours", true, kFraudEngine},
    {"account_groups[].allowed_source_countries", true, kFraudEngine},
    {"account_groups[].allowed_destination_countries", true, kFraudEngine},
    {"fraud.mode", true, kFraudEngine},
    {"fraud.score_cap", true, kFraudEngine},
    {"fraud.flag_threshold", true, kFraudEngine},
    {"fraud.block_threshold", true, kFraudEngine},
    {"fraud.ban_threshold", true, kFraudEngine},
    {"fraud.ban_duration", true, "fraud engine and dataplane ban table"},
    {"fraud.max_tracked_keys", true, kFraudEngine},
    {"fraud.idle_key_expiry", true, kFraudEngine},
    {"fraud.short_call_seconds", true, kFraudEngine},
    {"fraud.end_calls_on_ban", true,
     "call core: a ban ends the running calls of its source or account"},
    {"fraud.callback_lists", true, kFraudEngine},
    {"fraud.callback_expiry", true, kFraudEngine},
    {"fraud.callback_capacity", true, kFraudEngine},
    {"fraud.own_networks", true, "fraud engine: keyed by account, never banned by address"},
    {"fraud.rules[].id", true, kFraudEngine},
    {"fraud.rules[].description", true, kFraudEngine},
    {"fraud.rules[].feature", true, kFraudEngine},
    {"fraud.rules[].key", true, kFraudEngine},
    {"fraud.rules[].window", true, kFraudEngine},
    {"fraud.rules[].op", true, kFraudEngine},
    {"fraud.rules[].threshold", true, kFraudEngine},
    {"fraud.rules[].weight", true, kFraudEngine},
    {"fraud.rules[].mode", true, kFraudEngine},
    {"fraud.rules[].scope.tenants", true, kFraudEngine},
    {"fraud.rules[].scope.account_groups", true, kFraudEngine},
    {"fraud.rules[].scope.destinations", true, kFraudEngine},
    {"fraud.rules[].scope.time", true, kFraudEngine},
    {"fraud.rules[].lists", true, kFraudEngine},
    {"fraud.rules[].min_attempts", true, kFraudEngine},
    {"fraud.rules[].count_blocked", true, kFraudEngine},
    {"fraud.rules[].scope.directions", true, kFraudEngine},
    {"fraud.deny[].id", true, kFraudEngine},
    {"fraud.deny[].destinations", true, kFraudEngine},
    {"fraud.deny[].countries", true, kFraudEngine},
    {"fraud.deny[].source_countries", true, kFraudEngine},
    {"fraud.deny[].callers", true, kFraudEngine},
    {"fraud.deny[].caller_countries", true, kFraudEngine},
    {"fraud.deny[].action", true, "fraud engine; ban also bans the source in the dataplane"},
};

constexpr std::string_view kHep = "HEPv3 export of the B2BUA's SIP messages";
constexpr std::string_view kTls =
    "TLS listeners (transport thread); certificate and key reread on every reload";
constexpr std::string_view kTlsClients =
    "client-certificate verification of TLS listeners without their own";
constexpr std::string_view kListenerClients =
    "client-certificate verification of this TLS listener (a trunk realm)";
constexpr std::string_view kConnections = "TCP/TLS connection hygiene (transport thread)";
constexpr std::string_view kDataplaneLater =
    "`sbc run` runs the socket backend with its own burst; the dpdk and pcap backends run "
    "through `sbc dataplane`";

constexpr std::string_view kRegistrations = "REGISTERs from outside through the call core";

constexpr KeyStatus kNodeKeys[] = {
    {"node.name", true, "`sbc ctl status`, logs"},
    {"listeners[].realm", true, "front door listeners: external, and internal for calls"},
    {"listeners[].address", true, "front door listeners"},
    {"listeners[].port", true, "front door listeners"},
    {"listeners[].transport", true,
     "front door listeners: UDP on the dataplane, TCP and TLS on the "
     "transport thread"},
    {"listeners[].client_ca", true, kListenerClients},
    {"listeners[].require_client_certificate", true, kListenerClients},
    {"listeners[].client_names", true, kListenerClients},
    {"listeners[].enumeration_resistance", true,
     "uniform answers to strangers on an external listener (REGISTER, INVITE, blocks)"},
    {"tls.certificate_chain", true, kTls},
    {"tls.private_key", true, kTls},
    {"tls.client_ca", true, kTlsClients},
    {"tls.require_client_certificate", true, kTlsClients},
    {"tls.client_names", true, kTlsClients},
    {"tls.min_version", true, kTls},
    {"tls.ciphers", true, kTls},
    {"tls.ciphersuites", true, kTls},
    {"tls.groups", true, kTls},
    {"tls.server_ca", true, "outgoing TLS: CAs that verify next hops' certificates"},
    {"connections.max_connections", true, kConnections},
    {"connections.max_per_source", true, kConnections},
    {"connections.max_outgoing", true, kConnections},
    {"connections.max_message_bytes", true, kConnections},
    {"connections.max_buffered_bytes", true, kConnections},
    {"connections.handshake_timeout", true, kConnections},
    {"connections.idle_timeout", true, kConnections},
    {"next_hops[].name", true, "start-up log of the call core"},
    {"next_hops[].address", true, kCalls},
    {"next_hops[].port", true, kCalls},
    {"next_hops[].transport", true,
     "B2BUA next hops over UDP, or over the SBC's own TCP/TLS connection (transport thread)"},
    {"next_hops[].server_name", true, "outgoing TLS: SNI and the name verified"},
    {"next_hops[].realm", true,
     "internal: calls from outside go there; external: a trunk for calls from inside"},
    {"next_hops[].weight", true,
     "the B2BUA picks among the hops up at random in proportion to their weights"},
    {"health_check.enabled", true, "OPTIONS probes of the next hops (B2BUA)"},
    {"health_check.interval", true, "OPTIONS probes of the next hops (B2BUA)"},
    {"health_check.timeout", true, "OPTIONS probes of the next hops (B2BUA)"},
    {"health_check.failures_before_down", true, "OPTIONS probes of the next hops (B2BUA)"},
    {"health_check.successes_before_up", true, "OPTIONS probes of the next hops (B2BUA)"},
    {"registrations.enabled", true, kRegistrations},
    {"registrations.nat_expires", true, kRegistrations},
    {"registrations.max_expires", true, kRegistrations},
    {"registrations.max_contacts_per_request", true, kRegistrations},
    {"registrations.max_bindings_per_aor", true, kRegistrations},
    {"registrations.max_bindings", true, kRegistrations},
    {"registrations.keepalive", true, "keep-alives of registered flows"},
    {"registrations.keepalive_interval", true, "keep-alives of registered flows"},
    {"registrations.keepalive_timeout", true, "keep-alives of registered flows"},
    {"registrations.keepalive_failures", true, "keep-alives of registered flows"},
    {"registrations.enumeration_resistance", true,
     "uniform answers to strangers on external listeners (REGISTER, INVITE, refusals)"},
    {"registrations.realm", true, "uniform answers to REGISTERs from outside"},
    {"media.port_min", true, "dataplane media ports, `sbc ctl media add`"},
    {"media.port_max", true, "dataplane media ports, `sbc ctl media add`"},
    {"media.external_address", true, "`sbc ctl media add` leg a"},
    {"media.internal_address", true, "`sbc ctl media add` leg b"},
    {"media.inactivity_timeout", true, "relay inactivity events; an answered call ends on them"},
    {"dataplane.backend", true, "`sbc run` runs the socket or the dpdk backend", "socket,dpdk"},
    {"dataplane.burst_size", true,
     "the DPDK worker's RX/TX burst (the socket backend has its own)"},
    {"dataplane.dpdk.eal_args", true, "`sbc run` on dpdk: the EAL"},
    {"dataplane.dpdk.ports", true, "`sbc run` on dpdk: the data ports"},
    {"dataplane.pcap.input", false, kDataplaneLater},
    {"dataplane.pcap.output", false, kDataplaneLater},
    {"logging.level", true, "daemon log"},
    {"logging.file", true, "daemon log as JSON lines"},
    {"logging.file_level", true, "daemon log as JSON lines"},
    {"events.file", true, "security events (JSON lines, rotated)"},
    {"events.max_bytes", true, "security events file rotation"},
    {"events.max_files", true, "security events file rotation"},
    {"events.webhook_url", true, "security events webhook"},
    {"events.webhook_queue", true, "security events webhook"},
    {"events.webhook_retries", true, "security events webhook"},
    {"events.webhook_timeout", true, "security events webhook"},
    {"events.webhook_backoff", true, "security events webhook"},
    {"metrics.enabled", true, "Prometheus endpoint /metrics"},
    {"metrics.address", true, "Prometheus endpoint /metrics"},
    {"metrics.port", true, "Prometheus endpoint /metrics"},
    {"control.socket", true, "control socket"},
    {"control.mode", true, "control socket file mode"},
    {"control.group", true, "control socket group, peers checked with SO_PEERCRED"},
    {"control.drain_timeout", true, "`sbc ctl drain`, SIGTERM"},
    {"control.drain_retry_after", true, "503 Retry-After while draining"},
    {"hep.enabled", true, kHep},
    {"hep.address", true, kHep},
    {"hep.port", true, kHep},
    {"hep.capture_id", true, kHep},
    {"hep.password", true, kHep},
    {"hep.queue", true, kHep},
    {"state.backend", true, "state is kept in the process; redis is a later stage", "local"},
    {"state.url", false, "shared state in redis (a later stage)"},
    {"geoip.database", true, kFraudEngine},
    {"policy.files", true, "policy store"},
};

bool segment_matches(std::string_view pattern, std::string_view seg) {
    if (pattern == "*") return seg.find('[') == std::string_view::npos;
    return pattern == seg;
}

// Pattern and path are dotted; '*' matches one segment.
bool key_matches(std::string_view pattern, std::string_view path) {
    for (;;) {
        const auto pd = pattern.find('.');
        const auto sd = path.find('.');
        if (!segment_matches(pattern.substr(0, pd), path.substr(0, sd))) return false;
        if (pd == std::string_view::npos || sd == std::string_view::npos)
            return pd == std::string_view::npos && sd == std::string_view::npos;
        pattern.remove_prefix(pd + 1);
        path.remove_prefix(sd + 1);
    }
}

bool value_listed(std::string_view list, std::string_view value) {
    while (!list.empty()) {
        const auto c = list.find(',');
        if (list.substr(0, c) == value) return true;
        if (c == std::string_view::npos) break;
        list.remove_prefix(c + 1);
    }
    return false;
}

struct Walker {
    const detail::Context& ctx;
    std::uint32_t file;
    std::span<const KeyStatus> table;
    std::vector<Diagnostic>& out;

    void notice(const toml::key& k, const toml::node& v, std::string message) {
        const auto& s = k.source().begin.line ? k.source() : v.source();
        Diagnostic d;
        d.file = file < ctx.files.size() ? ctx.files[file] : std::string("<input>");
        d.line = s.begin.line;
        d.column = s.begin.column;
        d.message = std::move(message);
        out.push_back(std::move(d));
    }

    // `pattern` has "[]" for arrays of tables, `shown` their indexes ("listeners[1].port").
    void walk(const toml::table& t, const std::string& pattern, const std::string& shown) {
        for (auto&& [k, v] : t) {
            const std::string key(k.str());
            std::string pat = pattern.empty() ? key : pattern + "." + key;
            std::string show = shown.empty() ? key : shown + "." + key;
            if (const auto* arr = v.as_array(); arr && !arr->empty() && arr->is_array_of_tables()) {
                pat += "[]";
                for (std::size_t i = 0; i < arr->size(); ++i)
                    walk(*arr->get(i)->as_table(), pat, show + "[" + std::to_string(i) + "]");
                continue;
            }
            if (const KeyStatus* st = find_key_status(table, pat)) {
                if (!st->enforced) {
                    notice(k, v,
                           "'" + show +
                               "' is accepted but not enforced yet: " + std::string(st->where));
                } else if (!st->enforced_values.empty()) {
                    // Strings and booleans: the values the running daemon acts on are listed.
                    std::string text;
                    bool quoted = true;
                    if (const auto* s = v.as_string()) {
                        text = s->get();
                    } else if (const auto* b = v.as_boolean()) {
                        text = b->get() ? "true" : "false";
                        quoted = false;
                    }
                    if (!text.empty() && !value_listed(st->enforced_values, text)) {
                        const std::string shown_value = quoted ? "\"" + text + "\"" : text;
                        notice(k, v,
                               "'" + show + "' = " + shown_value +
                                   " is accepted but not enforced yet: " + std::string(st->where));
                    }
                }
                continue;
            }
            if (const auto* sub = v.as_table()) {
                walk(*sub, pat, show);
                continue;
            }
            notice(k, v,
                   "'" + show +
                       "' is accepted but not enforced yet: no part of `sbc run` "
                       "is recorded as reading it");
        }
    }
};

}  // namespace

std::span<const KeyStatus> policy_key_status() {
    return kPolicyKeys;
}
std::span<const KeyStatus> node_key_status() {
    return kNodeKeys;
}

const KeyStatus* find_key_status(std::span<const KeyStatus> table, std::string_view path) {
    // A literal entry ("rate_limits.tcp_connect.per_source") wins over a pattern with '*'.
    const KeyStatus* best = nullptr;
    std::size_t best_stars = 0;
    for (const auto& e : table) {
        if (!key_matches(e.key, path)) continue;
        const auto stars = static_cast<std::size_t>(std::count(e.key.begin(), e.key.end(), '*'));
        if (!best || stars < best_stars) {
            best = &e;
            best_stars = stars;
        }
    }
    return best;
}

namespace detail {

void collect_key_notices(const Context& ctx, std::uint32_t file, const toml::table& doc,
                         std::span<const KeyStatus> table, std::vector<Diagnostic>& out) {
    Walker{ctx, file, table, out}.walk(doc, "", "");
}

void finish_notices(const Context& ctx, std::vector<Diagnostic>& notices) {
    std::erase_if(notices, [&](const Diagnostic& n) {
        return std::any_of(ctx.errors.begin(), ctx.errors.end(), [&](const Diagnostic& e) {
            return e.file == n.file && e.line == n.line && e.column == n.column;
        });
    });
    std::map<std::string, std::size_t> order;
    for (std::size_t i = 0; i < ctx.files.size(); ++i) order.emplace(ctx.files[i], i);
    std::stable_sort(notices.begin(), notices.end(), [&](const Diagnostic& a, const Diagnostic& b) {
        return std::tuple(order[a.file], a.line, a.column) <
               std::tuple(order[b.file], b.line, b.column);
    });
}

}  // namespace detail

}  // namespace sbc::policy

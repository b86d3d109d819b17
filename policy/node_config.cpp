// sbc.toml: the node configuration (listeners, TLS, next hops, media, dataplane, logging,
// metrics, control socket, state, GeoIP, policy files).
#include "policy/key_status.hpp"
#include "policy/toml_reader.hpp"

namespace sbc::policy {

using detail::Context;
using detail::Located;
using detail::Pos;
using detail::Table;

namespace {

constexpr std::string_view kTransportNames[] = {"udp", "tcp", "tls"};
constexpr std::string_view kRealmNames[] = {"external", "internal"};
constexpr std::string_view kBackendNames[] = {"socket", "dpdk", "pcap"};
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error"};
constexpr std::string_view kStateBackends[] = {"local", "redis"};

bool read_address(const Table& t, std::string_view key, base::IpAddress& out) {
    std::string text;
    Pos where;
    if (!t.string(key, text, &where)) return false;
    auto a = base::IpAddress::parse(text);
    if (!a) {
        t.error(where, t.quoted_path(key) + " = \"" + text + "\" is not an IP address");
        return false;
    }
    out = *a;
    return true;
}

void read_endpoint(const Table& t, base::Endpoint& e, bool port_required) {
    read_address(t, "address", e.addr);
    if (!t.has("address")) t.error(t.pos(), "'" + t.path() + "' needs an 'address'");
    std::int64_t port = 0;
    if (t.integer("port", port, 1, 65535))
        e.port = static_cast<std::uint16_t>(port);
    else if (!t.has("port") && port_required)
        t.error(t.pos(), "'" + t.path() + "' needs a 'port'");
}

std::string resolve(const std::string& dir, const std::string& p) {
    return p.empty() ? p : detail::join_path(dir, p);
}

void read_clients(const Table& t, const std::string& dir, ClientVerification& v) {
    if (t.string("client_ca", v.client_ca)) v.client_ca = resolve(dir, v.client_ca);
    t.boolean("require_client_certificate", v.require_client_certificate);
    std::vector<Located<std::string>> names;
    if (t.strings("client_names", names))
        for (auto& n : names) v.client_names.push_back(std::move(n.value));
    if (v.require_client_certificate && v.client_ca.empty())
        t.error(t.pos(), "'" + t.path() + ".require_client_certificate' needs a 'client_ca'");
    if (!v.client_names.empty() && v.client_ca.empty())
        t.error(t.pos(), "'" + t.path() + ".client_names' needs a 'client_ca'");
}

}  // namespace

Loaded<NodeConfig> load_node_config(const std::string& path) {
    Context ctx;
    auto cfg = std::make_shared<NodeConfig>();
    cfg->file = path;
    std::uint32_t file = ctx.add_file(path);
    std::string text;
    Loaded<NodeConfig> out;
    if (!detail::read_file(path, text)) {
        ctx.error(Pos{file, 0, 0}, "cannot read file");
        out.errors = std::move(ctx.errors);
        return out;
    }
    auto doc = detail::parse_toml(ctx, file, text);
    if (!doc) {
        out.errors = std::move(ctx.errors);
        return out;
    }
    const std::string dir = detail::dirname_of(path);
    detail::collect_key_notices(ctx, file, *doc, node_key_status(), out.notices);
    Table top(ctx, file, *doc, "");
    static constexpr std::string_view kTop[] = {
        "node",          "listeners", "tls",       "connections", "next_hops", "health_check",
        "registrations", "media",     "dataplane", "logging",     "metrics",   "control",
        "state",         "geoip",     "policy",    "events",      "hep"};
    top.only_keys(kTop);
    std::size_t c = 0;
    if (auto t = top.table("node")) {
        Table n(ctx, file, *t, "node");
        static constexpr std::string_view k[] = {"name"};
        n.only_keys(k);
        n.string("name", cfg->node_name);
    }
    std::size_t i = 0;
    for (auto lt : top.tables("listeners")) {
        Table l(ctx, file, *lt, "listeners[" + std::to_string(i++) + "]");
        static constexpr std::string_view k[] = {"realm",        "address",
                                                 "port",         "transport",
                                                 "client_ca",    "require_client_certificate",
                                                 "client_names", "enumeration_resistance"};
        l.only_keys(k);
        ListenerConfig lc;
        if (l.choice("realm", kRealmNames, c))
            lc.realm = static_cast<Realm>(c);
        else if (!l.has("realm"))
            l.error(l.pos(), "listener needs a 'realm' (external or internal)");
        if (l.choice("transport", kTransportNames, c)) lc.transport = static_cast<Transport>(c);
        read_endpoint(l, lc.endpoint, false);
        if (!l.has("port")) lc.endpoint.port = lc.transport == Transport::tls ? 5061 : 5060;
        if (l.has("client_ca") || l.has("require_client_certificate") || l.has("client_names")) {
            if (lc.transport != Transport::tls)
                l.error(l.pos(), "client certificates are verified on tls listeners only");
            lc.has_client_verification = true;
            read_clients(l, dir, lc.clients);
        }
        if (l.has("enumeration_resistance")) {
            bool on = false;
            l.boolean("enumeration_resistance", on);
            if (on && lc.realm == Realm::internal)
                l.error(l.pos(), "'enumeration_resistance' applies to external listeners only");
            lc.enumeration_resistance = on;
        }
        cfg->listeners.push_back(lc);
    }
    if (auto t = top.table("tls")) {
        Table l(ctx, file, *t, "tls");
        static constexpr std::string_view k[] = {"certificate_chain",
                                                 "private_key",
                                                 "client_ca",
                                                 "require_client_certificate",
                                                 "client_names",
                                                 "min_version",
                                                 "ciphers",
                                                 "ciphersuites",
                                                 "groups",
                                                 "server_ca"};
        l.only_keys(k);
        auto& tls = cfg->tls;
        if (l.string("certificate_chain", tls.certificate_chain))
            tls.certificate_chain = resolve(dir, tls.certificate_chain);
        if (l.string("private_key", tls.private_key))
            tls.private_key = resolve(dir, tls.private_key);
        read_clients(l, dir, tls.clients);
        static constexpr std::string_view kVersions[] = {"1.2", "1.3"};
        if (l.choice("min_version", kVersions, c)) tls.min_version = std::string(kVersions[c]);
        l.string("ciphers", tls.ciphers);
        l.string("ciphersuites", tls.ciphersuites);
        l.string("groups", tls.groups);
        if (l.string("server_ca", tls.server_ca)) tls.server_ca = resolve(dir, tls.server_ca);
    }
    if (auto t = top.table("connections")) {
        Table n(ctx, file, *t, "connections");
        static constexpr std::string_view k[] = {
            "max_connections",    "max_per_source",    "max_outgoing", "max_message_bytes",
            "max_buffered_bytes", "handshake_timeout", "idle_timeout"};
        n.only_keys(k);
        auto& cc = cfg->connections;
        std::int64_t v = 0;
        if (n.integer("max_connections", v, 1, 1000000))
            cc.max_connections = static_cast<std::uint32_t>(v);
        if (n.integer("max_per_source", v, 1, 1000000))
            cc.max_per_source = static_cast<std::uint32_t>(v);
        if (n.integer("max_outgoing", v, 1, 100000))
            cc.max_outgoing = static_cast<std::uint32_t>(v);
        if (n.integer("max_message_bytes", v, 512, 1 << 20))
            cc.max_message_bytes = static_cast<std::uint32_t>(v);
        if (n.integer("max_buffered_bytes", v, 1024, 64 << 20))
            cc.max_buffered_bytes = static_cast<std::uint32_t>(v);
        constexpr base::Nanos s = base::kNanosPerSecond;
        n.duration("handshake_timeout", cc.handshake_timeout, s / 10, 600 * s);
        n.duration("idle_timeout", cc.idle_timeout, s, 86400 * s);
        if (cc.max_buffered_bytes < cc.max_message_bytes)
            n.error(n.pos(), "'connections.max_buffered_bytes' is below 'max_message_bytes'");
    }
    bool any_tls = false;
    for (const auto& l : cfg->listeners) any_tls = any_tls || l.transport == Transport::tls;
    if (any_tls && (cfg->tls.certificate_chain.empty() || cfg->tls.private_key.empty()))
        top.error(top.pos(), "a tls listener needs [tls] certificate_chain and private_key");
    i = 0;
    for (auto ht : top.tables("next_hops")) {
        Table h(ctx, file, *ht, "next_hops[" + std::to_string(i++) + "]");
        static constexpr std::string_view k[] = {"name",   "address",     "port", "transport",
                                                 "weight", "server_name", "realm"};
        h.only_keys(k);
        NextHopConfig nh;
        h.string("name", nh.name);
        if (h.choice("realm", kRealmNames, c)) nh.realm = static_cast<Realm>(c);
        if (h.choice("transport", kTransportNames, c)) nh.transport = static_cast<Transport>(c);
        read_endpoint(h, nh.endpoint, false);
        if (!h.has("port")) nh.endpoint.port = nh.transport == Transport::tls ? 5061 : 5060;
        std::int64_t w = 0;
        if (h.integer("weight", w, 1, 1000)) nh.weight = static_cast<std::uint32_t>(w);
        if (nh.name.empty()) nh.name = nh.endpoint.to_string();
        if (h.string("server_name", nh.server_name) && nh.transport != Transport::tls)
            h.error(h.pos(), "'" + h.path() + ".server_name' is for transport = \"tls\" only");
        // The SBC's Via and Contact toward the hop name a listener of the hop's transport in the
        // hop's realm: the hop's requests in the dialog come back there.
        if (nh.transport != Transport::udp) {
            bool listening = false;
            for (const auto& l : cfg->listeners)
                listening = listening || (l.realm == nh.realm && l.transport == nh.transport);
            if (!listening)
                h.error(h.pos(), "'" + h.path() + "' over " + std::string(name(nh.transport)) +
                                     " needs an " + std::string(name(nh.realm)) + " " +
                                     std::string(name(nh.transport)) +
                                     " listener (named in the SBC's Via and Contact)");
        }
        cfg->next_hops.push_back(nh);
    }
    if (auto t = top.table("health_check")) {
        Table h(ctx, file, *t, "health_check");
        static constexpr std::string_view k[] = {"enabled", "interval", "timeout",
                                                 "failures_before_down", "successes_before_up"};
        h.only_keys(k);
        auto& hc = cfg->health_check;
        constexpr base::Nanos s = base::kNanosPerSecond;
        h.boolean("enabled", hc.enabled);
        h.duration("interval", hc.interval, s / 10, 3600 * s);
        h.duration("timeout", hc.timeout, s / 100, 600 * s);
        std::int64_t v = 0;
        if (h.integer("failures_before_down", v, 1, 100))
            hc.failures_before_down = static_cast<std::uint32_t>(v);
        if (h.integer("successes_before_up", v, 1, 100))
            hc.successes_before_up = static_cast<std::uint32_t>(v);
        if (hc.timeout > hc.interval) h.error(h.pos(), "'health_check.timeout' exceeds 'interval'");
    }
    if (auto t = top.table("registrations")) {
        Table r(ctx, file, *t, "registrations");
        static constexpr std::string_view k[] = {"enabled",
                                                 "nat_expires",
                                                 "max_expires",
                                                 "max_contacts_per_request",
                                                 "max_bindings_per_aor",
                                                 "max_bindings",
                                                 "keepalive",
                                                 "keepalive_interval",
                                                 "keepalive_timeout",
                                                 "keepalive_failures",
                                                 "enumeration_resistance",
                                                 "realm"};
        r.only_keys(k);
        auto& rc = cfg->registrations;
        constexpr base::Nanos s = base::kNanosPerSecond;
        r.boolean("enabled", rc.enabled);
        r.duration("nat_expires", rc.nat_expires, 0, 86400 * s);
        r.duration("max_expires", rc.max_expires, 60 * s, 7 * 86400 * s);
        std::int64_t v = 0;
        if (r.integer("max_contacts_per_request", v, 1, 1000))
            rc.max_contacts_per_request = static_cast<std::uint32_t>(v);
        if (r.integer("max_bindings_per_aor", v, 1, 1000))
            rc.max_bindings_per_aor = static_cast<std::uint32_t>(v);
        if (r.integer("max_bindings", v, 1, 10000000))
            rc.max_bindings = static_cast<std::uint32_t>(v);
        static constexpr std::string_view kKeepalive[] = {"options", "crlf", "none"};
        std::size_t ka = 0;
        if (r.choice("keepalive", kKeepalive, ka)) rc.keepalive = std::string(kKeepalive[ka]);
        r.duration("keepalive_interval", rc.keepalive_interval, s, 3600 * s);
        r.duration("keepalive_timeout", rc.keepalive_timeout, s / 10, 600 * s);
        if (r.integer("keepalive_failures", v, 1, 100))
            rc.keepalive_failures = static_cast<std::uint32_t>(v);
        r.boolean("enumeration_resistance", rc.enumeration_resistance);
        r.string("realm", rc.realm);
        if (rc.keepalive_timeout >= rc.keepalive_interval)
            r.error(r.pos(),
                    "'registrations.keepalive_timeout' must be shorter than 'keepalive_interval'");
    }
    if (auto t = top.table("media")) {
        Table m(ctx, file, *t, "media");
        static constexpr std::string_view k[] = {"port_min", "port_max", "external_address",
                                                 "internal_address", "inactivity_timeout"};
        m.only_keys(k);
        std::int64_t v = 0;
        if (m.integer("port_min", v, 1024, 65534))
            cfg->media.port_min = static_cast<std::uint16_t>(v);
        if (m.integer("port_max", v, 1025, 65535))
            cfg->media.port_max = static_cast<std::uint16_t>(v);
        if (cfg->media.port_max <= cfg->media.port_min)
            m.error(m.pos(), "'media.port_max' must be above 'media.port_min'");
        read_address(m, "external_address", cfg->media.external_address);
        read_address(m, "internal_address", cfg->media.internal_address);
        if (m.has("inactivity_timeout"))
            m.duration("inactivity_timeout", cfg->media.inactivity_timeout, base::kNanosPerSecond,
                       86400 * base::kNanosPerSecond);
    }
    if (auto t = top.table("dataplane")) {
        Table d(ctx, file, *t, "dataplane");
        static constexpr std::string_view k[] = {"backend", "burst_size", "dpdk", "pcap"};
        d.only_keys(k);
        if (d.choice("backend", kBackendNames, c))
            cfg->dataplane.backend = static_cast<DataplaneBackend>(c);
        std::int64_t v = 0;
        if (d.integer("burst_size", v, 1, 1024))
            cfg->dataplane.burst_size = static_cast<std::uint32_t>(v);
        if (auto dt = d.table("dpdk")) {
            Table dd(ctx, file, *dt, "dataplane.dpdk");
            static constexpr std::string_view kd[] = {"eal_args", "ports", "tap_addresses"};
            dd.only_keys(kd);
            std::vector<Located<std::string>> items;
            dd.strings("eal_args", items);
            for (auto& x : items) cfg->dataplane.dpdk_eal_args.push_back(x.value);
            items.clear();
            dd.strings("ports", items);
            for (auto& x : items) cfg->dataplane.dpdk_ports.push_back(x.value);
            items.clear();
            // ADDRESS/LENGTH: given to the exception port's kernel interface at start.
            dd.strings("tap_addresses", items);
            for (auto& x : items) {
                const auto slash = x.value.find('/');
                const auto addr = base::IpAddress::parse(std::string_view(x.value).substr(
                    0, slash == std::string::npos ? x.value.size() : slash));
                unsigned len = 0;
                bool ok = addr && !addr->is_unspecified() && slash != std::string::npos &&
                          slash + 1 < x.value.size() && x.value.size() - slash <= 4;
                for (std::size_t i = slash + 1; ok && i < x.value.size(); ++i) {
                    ok = x.value[i] >= '0' && x.value[i] <= '9';
                    len = len * 10 + static_cast<unsigned>(x.value[i] - '0');
                }
                if (ok) ok = len >= 1 && len <= (addr->is_v4() ? 32u : 128u);
                if (!ok) {
                    dd.error(x.pos,
                             "'dataplane.dpdk.tap_addresses': expected ADDRESS/LENGTH "
                             "(e.g. \"192.0.2.10/24\"), got '" +
                                 x.value + "'");
                    continue;
                }
                cfg->dataplane.dpdk_tap_addresses.push_back(
                    {*addr, static_cast<std::uint8_t>(len)});
            }
        }
        if (auto pt = d.table("pcap")) {
            Table pp(ctx, file, *pt, "dataplane.pcap");
            static constexpr std::string_view kp[] = {"input", "output"};
            pp.only_keys(kp);
            if (pp.string("input", cfg->dataplane.pcap_input))
                cfg->dataplane.pcap_input = resolve(dir, cfg->dataplane.pcap_input);
            if (pp.string("output", cfg->dataplane.pcap_output))
                cfg->dataplane.pcap_output = resolve(dir, cfg->dataplane.pcap_output);
        }
        if (cfg->dataplane.backend == DataplaneBackend::pcap && cfg->dataplane.pcap_input.empty())
            d.error(d.pos(), "backend \"pcap\" needs [dataplane.pcap] input");
        if (cfg->dataplane.backend == DataplaneBackend::dpdk && cfg->dataplane.dpdk_ports.empty())
            d.error(d.pos(), "backend \"dpdk\" needs [dataplane.dpdk] ports");
        // The host stack answers ARP and SIP for the node's addresses: each must be one of the
        // tap's when sbc gives the tap its addresses.
        const auto& tap = cfg->dataplane.dpdk_tap_addresses;
        auto on_tap = [&tap](const base::IpAddress& a) {
            if (a.is_unspecified()) return true;
            for (const auto& t : tap)
                if (t.addr == a) return true;
            return false;
        };
        if (cfg->dataplane.backend == DataplaneBackend::dpdk && !tap.empty()) {
            for (const auto& l : cfg->listeners)
                if (!on_tap(l.endpoint.addr))
                    d.error(d.pos(), "listener address " + l.endpoint.addr.to_string() +
                                         " is not in [dataplane.dpdk] tap_addresses");
            for (const auto* a : {&cfg->media.external_address, &cfg->media.internal_address})
                if (!on_tap(*a))
                    d.error(d.pos(), "media address " + a->to_string() +
                                         " is not in [dataplane.dpdk] tap_addresses");
        }
    }
    if (auto t = top.table("logging")) {
        Table l(ctx, file, *t, "logging");
        static constexpr std::string_view k[] = {"level", "file", "file_level"};
        l.only_keys(k);
        if (l.choice("level", kLogLevels, c)) cfg->log_level = std::string(kLogLevels[c]);
        if (l.string("file", cfg->log_file)) cfg->log_file = resolve(dir, cfg->log_file);
        if (l.choice("file_level", kLogLevels, c)) cfg->log_file_level = std::string(kLogLevels[c]);
    }
    if (auto t = top.table("events")) {
        Table e(ctx, file, *t, "events");
        static constexpr std::string_view k[] = {
            "file",          "max_bytes",       "max_files",       "webhook_url",
            "webhook_queue", "webhook_retries", "webhook_timeout", "webhook_backoff"};
        e.only_keys(k);
        auto& ev = cfg->events;
        if (e.string("file", ev.file)) ev.file = resolve(dir, ev.file);
        std::int64_t v = 0;
        if (e.integer("max_bytes", v, 4096, std::int64_t{1} << 40))
            ev.max_bytes = static_cast<std::uint64_t>(v);
        if (e.integer("max_files", v, 1, 100)) ev.max_files = static_cast<std::uint32_t>(v);
        Pos where;
        if (e.string("webhook_url", ev.webhook_url, &where) && !ev.webhook_url.empty() &&
            ev.webhook_url.rfind("http://", 0) != 0)
            e.error(where, "'events.webhook_url' must start with http:// (https is not built in)");
        if (e.integer("webhook_queue", v, 1, 1 << 20))
            ev.webhook_queue = static_cast<std::uint32_t>(v);
        if (e.integer("webhook_retries", v, 0, 20))
            ev.webhook_retries = static_cast<std::uint32_t>(v);
        e.duration("webhook_timeout", ev.webhook_timeout, base::kNanosPerMilli * 10,
                   base::kNanosPerSecond * 60);
        e.duration("webhook_backoff", ev.webhook_backoff, base::kNanosPerMilli,
                   base::kNanosPerSecond * 60);
    }
    if (auto t = top.table("metrics")) {
        Table m(ctx, file, *t, "metrics");
        static constexpr std::string_view k[] = {"enabled", "address", "port"};
        m.only_keys(k);
        m.boolean("enabled", cfg->metrics_enabled);
        read_address(m, "address", cfg->metrics_listen.addr);
        std::int64_t port = 0;
        if (m.integer("port", port, 1, 65535))
            cfg->metrics_listen.port = static_cast<std::uint16_t>(port);
    }
    if (auto t = top.table("control")) {
        Table m(ctx, file, *t, "control");
        static constexpr std::string_view k[] = {"socket", "mode", "group", "drain_timeout",
                                                 "drain_retry_after"};
        m.only_keys(k);
        std::int64_t v = 0;
        if (m.integer("mode", v, 0, 0777)) cfg->control_mode = static_cast<std::uint32_t>(v);
        m.string("group", cfg->control_group);
        m.duration("drain_timeout", cfg->drain_timeout, 0, 86400 * base::kNanosPerSecond);
        if (m.integer("drain_retry_after", v, 0, 86400))
            cfg->drain_retry_after = static_cast<std::uint32_t>(v);
        Pos where;
        if (m.string("socket", cfg->control_socket, &where)) {
            cfg->control_socket = resolve(dir, cfg->control_socket);
            // sockaddr_un::sun_path holds 108 bytes including the NUL.
            if (cfg->control_socket.empty() || cfg->control_socket.size() > 107)
                m.error(where, "'control.socket' must be a path of 1 to 107 bytes");
        }
    }
    if (auto t = top.table("hep")) {
        Table m(ctx, file, *t, "hep");
        static constexpr std::string_view k[] = {"enabled",    "address",  "port",
                                                 "capture_id", "password", "queue"};
        m.only_keys(k);
        m.boolean("enabled", cfg->hep_enabled);
        read_address(m, "address", cfg->hep_collector.addr);
        std::int64_t v = 0;
        if (m.integer("port", v, 1, 65535)) cfg->hep_collector.port = static_cast<std::uint16_t>(v);
        if (m.integer("capture_id", v, 0, 0xffffffffLL))
            cfg->hep_capture_id = static_cast<std::uint32_t>(v);
        m.string("password", cfg->hep_password);
        if (m.integer("queue", v, 16, 1 << 20)) cfg->hep_queue = static_cast<std::uint32_t>(v);
        if (cfg->hep_enabled && (!m.has("address") || !m.has("port")))
            m.error(m.pos(), "[hep] enabled needs the collector's 'address' and 'port'");
    }
    if (auto t = top.table("state")) {
        Table m(ctx, file, *t, "state");
        static constexpr std::string_view k[] = {"backend", "url"};
        m.only_keys(k);
        if (m.choice("backend", kStateBackends, c))
            cfg->state_backend = std::string(kStateBackends[c]);
        m.string("url", cfg->state_url);
        if (cfg->state_backend == "redis" && cfg->state_url.empty())
            m.error(m.pos(), "state backend \"redis\" needs a 'url'");
    }
    if (auto t = top.table("geoip")) {
        Table m(ctx, file, *t, "geoip");
        static constexpr std::string_view k[] = {"database"};
        m.only_keys(k);
        if (m.string("database", cfg->geoip_database))
            cfg->geoip_database = resolve(dir, cfg->geoip_database);
    }
    if (auto t = top.table("policy")) {
        Table m(ctx, file, *t, "policy");
        static constexpr std::string_view k[] = {"files"};
        m.only_keys(k);
        std::vector<Located<std::string>> items;
        m.strings("files", items);
        for (auto& x : items) cfg->policy_files.push_back(resolve(dir, x.value));
    }
    if (cfg->policy_files.empty())
        top.error(top.pos(), "no policy to load: set [policy] files = [\"policy.toml\"]");
    detail::finish_notices(ctx, out.notices);
    if (!ctx.errors.empty()) {
        out.errors = std::move(ctx.errors);
        return out;
    }
    cfg->notices = out.notices;
    out.value = std::move(cfg);
    return out;
}

}  // namespace sbc::policy

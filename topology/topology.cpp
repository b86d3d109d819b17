#include "topology/topology.hpp"

#include <cstdio>

namespace sbc::topology {

namespace {

// FNV-1a: a stable branch for the Via the SBC adds, so the same input gives the same output.
std::uint64_t fnv1a(std::string_view a, std::string_view b) {
    return base::fnv1a64(b, base::fnv1a64(a));
}

bool is_server_or_user_agent(const sip::Header& h) {
    return h.id == sip::HeaderId::server || h.id == sip::HeaderId::user_agent;
}

}  // namespace

std::vector<base::Prefix> HidingConfig::default_internal_networks() {
    std::vector<base::Prefix> out;
    for (const char* p : {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"})
        if (auto prefix = base::Prefix::parse(p)) out.push_back(*prefix);
    return out;
}

TopologyHider::TopologyHider(HidingConfig config) : config_(std::move(config)) {}

bool TopologyHider::is_internal_host(std::string_view host) const {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    for (const std::string& h : config_.internal_hosts)
        if (base::iequals(h, host)) return true;
    auto ip = base::IpAddress::parse(host);
    if (!ip) return false;
    for (const base::Prefix& p : config_.internal_networks)
        if (p.contains(*ip)) return true;
    return false;
}

void TopologyHider::hide_routing(sip::Message& m, const std::string& ext_host,
                                 HidingReport& r) const {
    // Via: internal hops go; the SBC's own and outside ones stay (RFC 3261 §16.7 step 3 keeps
    // response routing working through the SBC's own Via).
    std::size_t kept = 0;
    for (const sip::Via& v : m.vias()) {
        if (is_internal_host(v.host)) {
            m.remove_via(v);
            ++r.vias_removed;
        } else {
            ++kept;
        }
    }
    if (m.is_request() && kept == 0) {
        std::string top_branch = m.vias().empty() ? std::string() : std::string(m.vias()[0].branch);
        char branch[32];
        std::snprintf(branch, sizeof branch, "z9hG4bK%016llx",
                      static_cast<unsigned long long>(fnv1a(top_branch, m.call_id())));
        m.add_header_first("Via", "SIP/2.0/UDP " + ext_host + ":" +
                                      std::to_string(config_.external_port) + ";branch=" + branch +
                                      ";rport");
        r.via_added = true;
    }

    for (const sip::NameAddr& a : m.record_routes())
        if (is_internal_host(a.uri.host)) {
            m.remove_name_addr(a);
            ++r.record_routes_removed;
        }
    for (const sip::NameAddr& a : m.routes())
        if (is_internal_host(a.uri.host)) {
            m.remove_name_addr(a);
            ++r.routes_removed;
        }

    // Contact: the outside reaches the dialog through the SBC.
    for (const sip::NameAddr& c : m.contacts()) {
        if (c.uri.kind != sip::UriScheme::sip && c.uri.kind != sip::UriScheme::sips) continue;
        m.set_uri_host(c.uri, config_.external_host);
        m.set_uri_port(c.uri, config_.external_port);
    }
    for (const sip::NameAddr* a : {m.from(), m.to()}) {
        if (a && (a->uri.kind == sip::UriScheme::sip || a->uri.kind == sip::UriScheme::sips) &&
            is_internal_host(a->uri.host))
            m.set_uri_host(a->uri, config_.external_host);
    }
}

base::Result<std::string> TopologyHider::to_external(sip::Message& m, HidingReport* report) const {
    if (config_.external_host.empty()) return base::make_error("no external address configured");
    if (m.bytes().empty()) return base::make_error("message not parsed");
    HidingReport r;
    m.clear_edits();
    const bool ext_v6 = config_.external_host.find(':') != std::string::npos;
    const std::string ext_host = ext_v6 ? "[" + config_.external_host + "]" : config_.external_host;

    if (config_.hide_topology) hide_routing(m, ext_host, r);
    if (config_.replace_call_id) {
        // A stable value: the same inside Call-ID always maps to the same outside one.
        char cid[24];
        std::snprintf(cid, sizeof cid, "%016llx@",
                      static_cast<unsigned long long>(fnv1a(m.call_id(), "call-id")));
        m.replace(m.call_id(), cid + ext_host);
        r.call_id_replaced = true;
    } else if (config_.hide_topology) {
        // Call-ID "local@host": an inside host part is replaced.
        std::string_view cid = m.call_id();
        if (std::size_t at = cid.rfind('@'); at != std::string_view::npos) {
            std::string_view host = cid.substr(at + 1);
            if (is_internal_host(host)) m.replace(host, ext_host);
        }
    }
    if (!m.is_request()) {
        const auto it = config_.reason_phrases.find(static_cast<std::uint16_t>(m.status_code()));
        if (it != config_.reason_phrases.end()) {
            m.replace(m.start_line(), std::string(m.version()) + " " +
                                          std::to_string(m.status_code()) + " " + it->second);
            r.reason_replaced = true;
        }
    }

    // Server and User-Agent name products and versions: replaced by the configured value, or
    // stripped like the other configured header fields.
    const bool keep_server = config_.server_header && !config_.server_header->empty();
    auto named = [&](const std::string& name) {
        return !(keep_server &&
                 (base::iequals(name, "Server") || base::iequals(name, "User-Agent")));
    };
    for (const std::string& name : config_.strip_headers)
        if (named(name)) r.headers_stripped += m.remove_headers(name);
    for (const sip::Header& h : m.headers()) {
        if (keep_server && is_server_or_user_agent(h)) {
            m.replace_header_value(h, *config_.server_header);
            continue;
        }
        bool gone = false;  // already removed by name above
        for (const std::string& name : config_.strip_headers)
            gone = gone || (named(name) && base::iequals(name, h.name));
        if (gone) continue;
        bool strip = config_.server_header.has_value() && is_server_or_user_agent(h);
        for (const std::string& pattern : config_.strip_patterns)
            strip = strip || base::iglob_match(pattern, h.name);
        if (strip) {
            m.remove_header(h);
            ++r.headers_stripped;
        }
    }

    std::string new_body;
    if (!config_.relay_address.empty() && !m.body().empty() &&
        base::iequals(m.content_type().substr(0, 15), "application/sdp")) {
        sip::Sdp sdp;
        sip::Status s = sdp.parse(m.body());
        if (!s.ok) return base::make_error("SDP body: " + std::string(s.reason));
        sdp.set_connection_address(config_.relay_address);
        for (std::size_t i = 0; i < sdp.media().size(); ++i) {
            std::uint16_t port = i < config_.relay_ports.size()
                                     ? config_.relay_ports[i]
                                     : static_cast<std::uint16_t>(config_.relay_port + 2 * i);
            if (sdp.media()[i].port == 0)
                continue;  // a rejected stream stays rejected (RFC 3264 §6)
            sdp.set_media_port(i, port);
            // RFC 3605: RTCP on the next port, or on the RTP port with rtcp-mux (RFC 5761).
            std::uint16_t rtcp =
                sdp.media()[i].rtcp_mux ? port : static_cast<std::uint16_t>(port + 1);
            sdp.set_rtcp(i, rtcp, config_.relay_address);
        }
        m.set_body(sdp.serialize());
        r.sdp_rewritten = true;
    }
    if (report) *report = r;
    return m.serialize();
}

}  // namespace sbc::topology

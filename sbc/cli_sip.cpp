// sbc sip parse FILE | sbc sip hide FILE --external-ip A --relay-ip B --relay-port N [--policy P]
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "policy/policy.hpp"
#include "sbc/cli.hpp"
#include "sip/sip.hpp"
#include "topology/topology.hpp"

namespace sbc::cli {

namespace {

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
}

// Printable form of a view: control bytes (a NUL in a quoted string, folds) are escaped.
std::string show(std::string_view s) {
    std::string out;
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == '\r')
            out += "\\r";
        else if (c == '\n')
            out += "\\n";
        else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

void print_params(const sip::Message& m, sip::ParamRange r) {
    for (const sip::Param& p : m.params(r)) {
        std::cout << " ;" << show(p.name);
        if (p.has_value) std::cout << "=" << show(p.value);
    }
}

void print_uri(const sip::Message& m, const sip::Uri& u) {
    std::cout << "scheme=" << show(u.scheme);
    if (u.kind == sip::UriScheme::other) {
        std::cout << " opaque=" << show(u.opaque);
        return;
    }
    if (u.has_user) std::cout << " user=" << show(u.user);
    if (u.has_password) std::cout << " password=" << show(u.password);
    if (!u.host.empty()) std::cout << " host=" << show(u.host);
    if (u.has_port) std::cout << " port=" << u.port;
    if (u.params.count) {
        std::cout << " params:";
        print_params(m, u.params);
    }
    if (!u.headers_text.empty()) std::cout << " headers=" << show(u.headers_text);
}

void print_addr(const sip::Message& m, const char* label, const sip::NameAddr& a) {
    std::cout << "  " << label << ": ";
    if (!a.display_name.empty())
        std::cout << "display=\"" << show(sip::unquote(a.display_name)) << "\" ";
    print_uri(m, a.uri);
    if (!a.tag.empty()) std::cout << " tag=" << show(a.tag);
    for (const sip::Param& p : m.params(a.params)) {
        if (p.name == "tag") continue;  // shown above
        std::cout << " ;" << show(p.name);
        if (p.has_value) std::cout << "=" << show(p.value);
    }
    std::cout << "\n";
}

int run_parse(const std::string& path) {
    std::string bytes;
    if (!read_file(path, bytes)) {
        std::cerr << "sbc sip parse: cannot read " << path << "\n";
        return 2;
    }
    sip::Message m;
    sip::Status s = m.parse(bytes);
    if (!s.ok) {
        std::cout << "rejected: " << s.reason << " [" << sip::name(s.code) << "]";
        if (s.sip_status)
            std::cout << " (a server answers " << s.sip_status << ")";
        else
            std::cout << " (dropped)";
        std::cout << "\n";
        return 1;
    }
    if (m.is_request()) {
        std::cout << "request: method=" << show(m.method_name()) << "\n  request-uri: ";
        print_uri(m, m.request_uri());
        std::cout << "\n";
    } else {
        std::cout << "response: status=" << m.status_code() << " reason=\""
                  << show(m.reason_phrase()) << "\"\n";
    }
    std::cout << "  headers: " << m.headers().size() << " fields, " << m.bytes().size()
              << " bytes, body " << m.body().size() << " bytes\n";
    for (const sip::Via& v : m.vias()) {
        std::cout << "  via: " << show(v.protocol_name) << "/" << show(v.protocol_version) << "/"
                  << show(v.transport) << " host=" << show(v.host);
        if (v.has_port) std::cout << " port=" << v.port;
        if (!v.branch.empty()) std::cout << " branch=" << show(v.branch);
        if (v.has_received) std::cout << " received=" << show(v.received);
        if (v.has_rport)
            std::cout << " rport" << (v.rport_text.empty() ? "" : "=") << show(v.rport_text);
        std::cout << "\n";
    }
    for (const sip::NameAddr& a : m.routes()) print_addr(m, "route", a);
    for (const sip::NameAddr& a : m.record_routes()) print_addr(m, "record-route", a);
    if (m.from()) print_addr(m, "from", *m.from());
    if (m.to()) print_addr(m, "to", *m.to());
    if (!m.call_id().empty()) std::cout << "  call-id: " << show(m.call_id()) << "\n";
    if (m.cseq())
        std::cout << "  cseq: " << m.cseq()->number << " " << show(m.cseq()->method) << "\n";
    if (m.contact_star()) std::cout << "  contact: *\n";
    for (const sip::NameAddr& a : m.contacts()) print_addr(m, "contact", a);
    if (m.max_forwards()) std::cout << "  max-forwards: " << int{*m.max_forwards()} << "\n";
    if (m.expires()) std::cout << "  expires: " << *m.expires() << "\n";
    for (const sip::Credentials* c : {m.authorization(), m.proxy_authorization()}) {
        if (!c) continue;
        std::cout << "  " << (c == m.authorization() ? "authorization" : "proxy-authorization")
                  << ": scheme=" << show(c->scheme) << " username=" << show(c->username)
                  << " realm=" << show(c->realm) << "\n";
    }
    if (!m.user_agent().empty()) std::cout << "  user-agent: " << show(m.user_agent()) << "\n";
    if (!m.server().empty()) std::cout << "  server: " << show(m.server()) << "\n";
    if (!m.content_type().empty())
        std::cout << "  content-type: " << show(m.content_type()) << "\n";
    if (m.content_length()) std::cout << "  content-length: " << *m.content_length() << "\n";
    for (const sip::Header& h : m.headers())
        if (h.id == sip::HeaderId::other)
            std::cout << "  other: " << show(h.name) << ": " << show(sip::unfold(h.value)) << "\n";
    sip::Sdp sdp;
    if (m.content_type().substr(0, 15) == "application/sdp" && sdp.parse(m.body()).ok) {
        std::cout << "  sdp: origin=" << show(sdp.origin_address())
                  << " rtcp-mux=" << (sdp.rtcp_mux() ? "yes" : "no") << "\n";
        for (std::size_t i = 0; i < sdp.media().size(); ++i) {
            const sip::SdpMedia& md = sdp.media()[i];
            std::cout << "    m=" << show(md.media) << " " << show(sdp.connection_address(i)) << ":"
                      << md.port << " " << show(md.proto) << " " << show(md.formats);
            if (md.has_rtcp) std::cout << " rtcp=" << md.rtcp_port;
            std::cout << "\n";
        }
    }
    sip::Status check = sip::check_request(m);
    if (!check.ok) std::cout << "  check: " << check.sip_status << " " << check.reason << "\n";
    return 0;
}

struct HideOptions {
    std::string file, external_ip, relay_ip;
    std::uint16_t external_port = 5060;
    std::uint16_t relay_port = 0;
    std::vector<std::string> strip;
    std::string policy;  // a policy file whose [topology] options apply
};

int run_hide(const HideOptions& o) {
    std::string bytes;
    if (!read_file(o.file, bytes)) {
        std::cerr << "sbc sip hide: cannot read " << o.file << "\n";
        return 2;
    }
    sip::Message m;
    sip::Status s = m.parse(bytes);
    if (!s.ok) {
        std::cout << "rejected: " << s.reason << "\n";
        return 1;
    }
    topology::HidingConfig c;
    c.external_host = o.external_ip;
    c.external_port = o.external_port;
    c.relay_address = o.relay_ip;
    c.relay_port = o.relay_port;
    for (const std::string& h : o.strip) c.strip_headers.push_back(h);
    if (!o.policy.empty()) {
        auto p = policy::load_policy({o.policy});
        if (!p.ok()) {
            for (const auto& e : p.errors) std::cerr << e.to_string() << "\n";
            return 2;
        }
        const auto& t = p.value->topology;
        c.hide_topology = t.hide_topology;
        c.replace_call_id = t.replace_call_id;
        c.strip_patterns = t.strip_headers;
        c.server_header = t.server_header;
        c.reason_phrases = t.reason_phrases;
    }
    auto out = topology::TopologyHider(c).to_external(m);
    if (!out.ok()) {
        std::cerr << "sbc sip hide: " << out.error().message << "\n";
        return 1;
    }
    std::cout << *out;
    return 0;
}

void finish(int rc) {
    if (rc != 0) throw CLI::RuntimeError(rc);
}

}  // namespace

void register_sip_commands(CLI::App& app) {
    auto* sip_cmd = app.add_subcommand("sip", "Parse and rewrite SIP messages");
    sip_cmd->require_subcommand(1);

    auto file = std::make_shared<std::string>();
    auto* parse = sip_cmd->add_subcommand(
        "parse", "Print a SIP message's parsed structure, or why it is rejected (exit 1)");
    parse->add_option("FILE", *file, "message file (one message, as received)")->required();
    parse->callback([file] { finish(run_parse(*file)); });

    auto opts = std::make_shared<HideOptions>();
    auto* hide = sip_cmd->add_subcommand(
        "hide", "Print the message as the SBC forwards it outside (topology hiding)");
    hide->add_option("FILE", opts->file, "message file")->required();
    hide->add_option("--external-ip", opts->external_ip, "the SBC's external address")->required();
    hide->add_option("--external-port", opts->external_port, "the SBC's external SIP port");
    hide->add_option("--relay-ip", opts->relay_ip, "media relay address for SDP")->required();
    hide->add_option("--relay-port", opts->relay_port, "first media relay port")->required();
    hide->add_option("--strip", opts->strip, "more header fields to remove");
    hide->add_option("--policy", opts->policy,
                     "apply this policy's [topology] options (hide_topology, replace_call_id, "
                     "strip_headers, server_header, reason_phrases)");
    hide->callback([opts] { finish(run_hide(*opts)); });
}

}  // namespace sbc::cli

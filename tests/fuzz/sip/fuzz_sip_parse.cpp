// Parse, read every typed field, edit, serialize and parse again; the framer gets the same
// bytes in two chunks.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sip/sip.hpp"
#include "topology/topology.hpp"

using namespace sbc::sip;

namespace {

std::size_t touch_uri(const Message& m, const Uri& u) {
    std::size_t n = u.scheme.size() + u.user.size() + u.password.size() + u.host.size() + u.port +
                    u.headers_text.size() + u.opaque.size();
    for (const Param& p : m.params(u.params)) n += p.name.size() + p.value.size();
    n += unescape(u.user).size();
    return n;
}

std::size_t touch_addr(const Message& m, const NameAddr& a) {
    std::size_t n =
        a.raw.size() + unquote(a.display_name).size() + a.tag.size() + touch_uri(m, a.uri);
    for (const Param& p : m.params(a.params)) n += p.name.size() + p.value.size();
    return n;
}

std::size_t touch_all(const Message& m) {
    std::size_t n = m.method_name().size() + m.reason_phrase().size() + m.body().size();
    if (m.is_request()) n += touch_uri(m, m.request_uri());
    for (const Header& h : m.headers()) n += h.name.size() + unfold(h.value).size();
    for (const Via& v : m.vias()) {
        n += v.transport.size() + v.host.size() + v.port + v.branch.size() + v.received.size() +
             v.rport_text.size();
        for (const Param& p : m.params(v.params)) n += p.name.size() + p.value.size();
    }
    if (m.from()) n += touch_addr(m, *m.from());
    if (m.to()) n += touch_addr(m, *m.to());
    for (const NameAddr& a : m.contacts()) n += touch_addr(m, a);
    for (const NameAddr& a : m.routes()) n += touch_addr(m, a);
    for (const NameAddr& a : m.record_routes()) n += touch_addr(m, a);
    if (m.cseq()) n += m.cseq()->number + m.cseq()->method.size();
    if (m.authorization())
        n += m.authorization()->username.size() + m.authorization()->realm.size();
    n += m.call_id().size() + m.content_type().size() + m.user_agent().size() + m.server().size();
    n += m.max_forwards().value_or(0) + m.expires().value_or(0);
    n += check_request(m).reason.size();
    for (std::string_view v : split_list(m.headers().empty() ? "" : m.headers()[0].value))
        n += v.size();
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    Message m;
    Status s = m.parse(bytes);
    volatile std::size_t sink = 0;
    if (s.ok) {
        sink = sink + touch_all(m);
        // Edit what an SBC edits, then the result must parse again.
        if (!m.vias().empty()) {
            m.set_via_received(m.vias()[0], "192.0.2.1");
            m.set_via_rport(m.vias()[0], 5060);
        }
        if (m.vias().size() > 1) m.remove_via(m.vias()[1]);
        if (!m.contacts().empty() && m.contacts()[0].uri.kind != UriScheme::other &&
            m.contacts()[0].uri.kind != UriScheme::tel) {
            m.set_uri_host(m.contacts()[0].uri, "203.0.113.5");
            m.set_uri_port(m.contacts()[0].uri, 5070);
        }
        if (!m.record_routes().empty()) m.remove_name_addr(m.record_routes()[0]);
        m.remove_headers(HeaderId::user_agent);
        m.add_header("X-Fuzz", "1");
        std::string out = m.serialize();
        // The edits above add a header field and a few parameters: allow for them.
        Limits roomy;
        roomy.max_headers += 2;
        roomy.max_header_bytes += 1024;
        roomy.max_line_length += 1024;
        roomy.max_message_size += 1024;
        Message again;
        Status s2 = again.parse(out, roomy);
        if (!s2.ok) {
            // Edits must never turn a message the parser accepted into one it refuses.
            std::fprintf(stderr, "re-parse failed: %.*s\n---\n%s\n---\n",
                         static_cast<int>(s2.reason.size()), s2.reason.data(), out.c_str());
            std::abort();
        }
        sink = sink + touch_all(again);
        Sdp sdp;
        if (sdp.parse(m.body()).ok) sink = sink + sdp.media().size();

        // Topology hiding over the same message: its output must parse too.
        static const sbc::topology::TopologyHider hider([] {
            sbc::topology::HidingConfig c;
            c.external_host = "203.0.113.10";
            c.relay_address = "203.0.113.20";
            c.relay_port = 40000;
            return c;
        }());
        Message h;
        if (h.parse(bytes).ok) {
            auto hidden = hider.to_external(h);
            if (hidden.ok()) {
                Message again2;
                Status s3 = again2.parse(*hidden, roomy);
                if (!s3.ok) {
                    std::fprintf(stderr, "hidden re-parse failed: %.*s\n---\n%s\n---\n",
                                 static_cast<int>(s3.reason.size()), s3.reason.data(),
                                 hidden->c_str());
                    std::abort();
                }
            }
        }
    }
    StreamFramer f;
    f.feed(bytes.substr(0, size / 2));
    bool fed_rest = false;
    for (int i = 0; i < 8; ++i) {
        auto fr = f.next();
        if (fr.kind == StreamFramer::Kind::need_more) {
            if (fed_rest) break;
            f.feed(bytes.substr(size / 2));
            fed_rest = true;
        } else if (fr.kind == StreamFramer::Kind::error) {
            break;
        } else if (fr.kind == StreamFramer::Kind::message) {
            Message fm;
            sink = sink + fm.parse(fr.bytes).ok;
        }
    }
    return 0;
}

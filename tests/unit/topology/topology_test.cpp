// Golden files: tests/data/sip/topology/<name>.in.sip is hidden with the configuration below
// and compared byte for byte with <name>.out.sip. To regenerate after a reviewed change run
// `SBC_REGENERATE_GOLDEN=1 unit_topology` and review the diff.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "topology/topology.hpp"

using namespace sbc;

namespace {

std::string data_path(const std::string& rel) {
    return std::string(SBC_TEST_DATA_DIR) + "/sip/topology/" + rel;
}

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("missing " + path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

topology::HidingConfig test_config() {
    topology::HidingConfig c;
    c.external_host = "203.0.113.10";
    c.external_port = 5060;
    c.relay_address = "203.0.113.20";
    c.relay_port = 40000;
    return c;
}

// Internal addresses (RFC 1918) written in a text: every maximal run of digits and dots that
// is a dotted quad in 10/8, 172.16/12 or 192.168/16.
std::vector<std::string> internal_ips(const std::string& text) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < text.size()) {
        auto is_part = [](char c) { return (c >= '0' && c <= '9') || c == '.'; };
        if (!is_part(text[i])) {
            ++i;
            continue;
        }
        std::size_t b = i;
        while (i < text.size() && is_part(text[i])) ++i;
        std::string run = text.substr(b, i - b);
        int parts[4];
        int n = 0;
        std::size_t k = 0;
        bool ok = true;
        while (ok && k <= run.size()) {
            std::size_t dot = run.find('.', k);
            if (dot == std::string::npos) dot = run.size();
            std::string part = run.substr(k, dot - k);
            if (part.empty() || part.size() > 3 || n == 4) {
                ok = false;
                break;
            }
            parts[n++] = std::stoi(part);
            k = dot + 1;
        }
        if (!ok || n != 4) continue;
        if (parts[0] == 10 || (parts[0] == 172 && parts[1] >= 16 && parts[1] <= 31) ||
            (parts[0] == 192 && parts[1] == 168))
            out.push_back(run);
    }
    return out;
}

TEST_CASE("the internal address scanner itself") {
    CHECK(internal_ips("a 10.1.2.3 b").size() == 1);
    CHECK(internal_ips("x@172.20.0.1:5060").size() == 1);
    CHECK(internal_ips("192.168.255.111;branch").size() == 1);
    CHECK(internal_ips("172.32.0.1 110.1.1.1 203.0.113.10 1.10.1.2.3").empty());
}

}  // namespace

TEST_CASE("golden files: hidden output byte for byte") {
    for (const char* name : {"invite_internal", "ok_200_internal"}) {
        INFO(name);
        std::string in = read(data_path(std::string(name) + ".in.sip"));
        sip::Message m;
        REQUIRE(m.parse(in).ok);
        topology::TopologyHider hider(test_config());
        auto out = hider.to_external(m);
        REQUIRE(out.ok());
        std::string expected_path = data_path(std::string(name) + ".out.sip");
        if (std::getenv("SBC_REGENERATE_GOLDEN")) {
            std::ofstream(expected_path, std::ios::binary) << *out;
        }
        CHECK(*out == read(expected_path));
    }
}

TEST_CASE("no internal address from the input remains in the output") {
    for (const char* name : {"invite_internal", "ok_200_internal"}) {
        INFO(name);
        std::string in = read(data_path(std::string(name) + ".in.sip"));
        REQUIRE_FALSE(internal_ips(in).empty());  // the input does carry some
        sip::Message m;
        REQUIRE(m.parse(in).ok);
        topology::HidingReport report;
        auto out = topology::TopologyHider(test_config()).to_external(m, &report);
        REQUIRE(out.ok());
        CHECK(internal_ips(*out).empty());
        CHECK(report.sdp_rewritten);
        CHECK(report.vias_removed > 0);
        CHECK(report.record_routes_removed == 1);
        CHECK(report.headers_stripped == 1);
    }
}

TEST_CASE("hidden INVITE: structure after re-parse") {
    std::string in = read(data_path("invite_internal.in.sip"));
    sip::Message m;
    REQUIRE(m.parse(in).ok);
    auto out = topology::TopologyHider(test_config()).to_external(m);
    REQUIRE(out.ok());
    sip::Message r;
    REQUIRE(r.parse(*out).ok);
    REQUIRE(r.vias().size() == 1);
    CHECK(r.vias()[0].host == "203.0.113.10");
    REQUIRE(r.record_routes().size() == 1);
    CHECK(r.record_routes()[0].uri.host == "203.0.113.10");
    REQUIRE(r.contacts().size() == 1);
    CHECK(r.contacts()[0].uri.host == "203.0.113.10");
    CHECK(r.contacts()[0].uri.port == 5060);
    CHECK(r.from()->uri.host == "203.0.113.10");
    CHECK(r.user_agent().empty());
    CHECK(*r.content_length() == r.body().size());
    sip::Sdp sdp;
    REQUIRE(sdp.parse(r.body()).ok);
    CHECK(sdp.origin_address() == "203.0.113.20");
    CHECK(sdp.connection_address(0) == "203.0.113.20");
    CHECK(sdp.media()[0].port == 40000);
    CHECK(sdp.media()[0].rtcp_port == 40001);
    CHECK(sdp.media()[0].rtcp_address == "203.0.113.20");
    // Untouched fields are byte-identical.
    CHECK(
        out->find(
            "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REFER, NOTIFY\r\n") !=
        std::string::npos);
}

TEST_CASE("a request with only internal Vias gets the SBC's Via; config lists") {
    std::string in =
        "OPTIONS sip:peer@198.51.100.7 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKabc\r\n"
        "From: <sip:pbx@pbx.corp.internal>;tag=1\r\nTo: <sip:peer@198.51.100.7>\r\n"
        "Call-ID: q1@192.168.1.10\r\nCSeq: 1 OPTIONS\r\nX-Internal: secret\r\n"
        "Content-Length: 0\r\n\r\n";
    sip::Message m;
    REQUIRE(m.parse(in).ok);
    topology::HidingConfig c = test_config();
    c.internal_hosts = {"pbx.corp.internal"};
    c.strip_headers.push_back("X-Internal");
    topology::TopologyHider hider(c);
    CHECK(hider.is_internal_host("pbx.corp.internal"));
    CHECK(hider.is_internal_host("[fd00::1]"));
    CHECK_FALSE(hider.is_internal_host("198.51.100.7"));
    topology::HidingReport rep;
    auto out = hider.to_external(m, &rep);
    REQUIRE(out.ok());
    CHECK(rep.via_added);
    sip::Message r;
    REQUIRE(r.parse(*out).ok);
    REQUIRE(r.vias().size() == 1);
    CHECK(r.vias()[0].host == "203.0.113.10");
    CHECK(r.vias()[0].branch.substr(0, 7) == "z9hG4bK");
    CHECK(r.vias()[0].branch.size() == 23);
    CHECK(r.from()->uri.host == "203.0.113.10");
    CHECK(r.call_id() == "q1@203.0.113.10");
    CHECK(r.find("X-Internal") == nullptr);
    CHECK(internal_ips(*out).empty());
    // Deterministic: the same input gives the same bytes.
    sip::Message m2;
    REQUIRE(m2.parse(in).ok);
    CHECK(*hider.to_external(m2) == *out);
}

TEST_CASE("hider refuses without an external address") {
    sip::Message m;
    std::string in = read(data_path("invite_internal.in.sip"));
    REQUIRE(m.parse(in).ok);
    topology::HidingConfig c;
    auto out = topology::TopologyHider(c).to_external(m);
    CHECK_FALSE(out.ok());
}

namespace {
const std::string kNotFound =
    "SIP/2.0 404 Not Found\r\n"
    "Via: SIP/2.0/UDP 10.10.1.5:5060;branch=z9hG4bK-in-1\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-out-1;rport\r\n"
    "From: <sip:+14155550123@198.51.100.7>;tag=a1\r\n"
    "To: <sip:2999@10.10.1.20>;tag=b2\r\n"
    "Call-ID: 77aa@10.10.1.5\r\n"
    "CSeq: 1 INVITE\r\n"
    "Server: Kamailio (5.6.3)\r\n"
    "X-Internal-Id: 42\r\n"
    "X-Trace: t-9\r\n"
    "x-internal-route: r1\r\n"
    "Content-Length: 0\r\n\r\n";
}  // namespace

TEST_CASE("policy [topology] options: reason phrases, headers, Server, Call-ID") {
    sip::Message m;
    REQUIRE(m.parse(kNotFound).ok);
    auto c = test_config();
    c.strip_patterns = {"X-Internal-*"};
    c.server_header = "edge";
    c.reason_phrases = {{404, "Forbidden"}};
    c.replace_call_id = true;
    topology::HidingReport r;
    auto out = topology::TopologyHider(c).to_external(m, &r);
    REQUIRE(out.ok());
    sip::Message h;
    REQUIRE(h.parse(*out).ok);
    CHECK(h.status_code() == 404);
    CHECK(h.reason_phrase() == "Forbidden");
    CHECK(r.reason_replaced);
    CHECK(h.server() == "edge");
    CHECK(h.find("X-Internal-Id") == nullptr);
    CHECK(h.find("x-internal-route") == nullptr);
    CHECK(h.find("X-Trace") != nullptr);  // not matched by the pattern
    CHECK(r.headers_stripped == 2);
    CHECK(r.call_id_replaced);
    CHECK(h.call_id().find("77aa") == std::string_view::npos);
    CHECK(h.call_id().ends_with("@203.0.113.10"));
    // Stable: the same inside Call-ID gives the same outside one.
    sip::Message again;
    REQUIRE(again.parse(kNotFound).ok);
    auto out2 = topology::TopologyHider(c).to_external(again);
    REQUIRE(out2.ok());
    CHECK(*out2 == *out);
    CHECK(internal_ips(*out).empty());
}

TEST_CASE("policy [topology]: server_header empty strips; hide_topology false keeps routing") {
    sip::Message m;
    REQUIRE(m.parse(kNotFound).ok);
    auto c = test_config();
    c.strip_headers.clear();  // only the policy's options
    c.server_header = "";
    c.hide_topology = false;
    auto out = topology::TopologyHider(c).to_external(m);
    REQUIRE(out.ok());
    sip::Message h;
    REQUIRE(h.parse(*out).ok);
    CHECK(h.find(sip::HeaderId::server) == nullptr);
    CHECK(h.reason_phrase() == "Not Found");  // no phrase configured for 404
    REQUIRE(h.vias().size() == 2);            // routing left alone
    CHECK(h.vias()[0].host == "10.10.1.5");
    CHECK(h.call_id() == "77aa@10.10.1.5");
    CHECK(h.find("X-Internal-Id") != nullptr);
}

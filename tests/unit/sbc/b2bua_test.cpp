// The B2BUA over its transaction layer, with the wire, the relay and the admission faked: what
// each side receives is checked byte by byte for what must and must not be there.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sbc/signaling/b2bua.hpp"
#include "signaling_fixture.hpp"

using namespace sbc;
using namespace sbc::signaling;
using namespace sbc::signaling::fixture;
using base::millis;
using base::seconds;

namespace {

constexpr std::uint16_t kCallerPort = 5070;
constexpr std::uint16_t kProxyPort = 5080;
constexpr std::uint16_t kProxy2Port = 5090;

B2buaConfig config(std::vector<std::uint16_t> hops = {kProxyPort}) {
    B2buaConfig c = fixture::two_sides();
    for (auto p : hops) c.internal.next_hops.push_back({*base::IpAddress::parse("10.0.0.2"), p});
    c.health.enabled = false;   // hops always up, except in the health check's own test
    c.max_stranger_setups = 0;  // one unknown caller places many calls; the cap has its test
    return c;
}

Flow caller_flow() {
    Flow f;
    f.remote = {*base::IpAddress::parse("198.51.100.7"), kCallerPort};
    f.listener = 0;
    return f;
}

Flow proxy_flow(std::uint16_t port = kProxyPort) {
    Flow f;
    f.remote = {*base::IpAddress::parse("10.0.0.2"), port};
    f.listener = 1;
    return f;
}

const std::string kCallerSdp =
    "v=0\r\no=alice 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtcp:40001\r\n";
const std::string kCalleeSdp =
    "v=0\r\no=FreeSWITCH 2 2 IN IP4 10.9.9.9\r\ns=FreeSWITCH\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n"
    "m=audio 22000 RTP/AVP 0\r\n";

std::string invite(std::string_view branch = "z9hG4bKcaller1", std::string_view body = kCallerSdp) {
    std::string s =
        "INVITE sip:+442071234567@203.0.113.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=";
    s += branch;
    s += ";rport\r\nMax-Forwards: 70\r\n"
         "From: \"Alice\" <sip:alice@carrier.example>;tag=alice1\r\n"
         "To: <sip:+442071234567@203.0.113.1>\r\n"
         "Call-ID: outside-call-1\r\nCSeq: 10 INVITE\r\n"
         "Contact: <sip:alice@198.51.100.7:5070>\r\n"
         "X-SBC-Fraud: forged\r\n"
         "Content-Type: application/sdp\r\nContent-Length: ";
    s += std::to_string(body.size());
    s += "\r\n\r\n";
    s += body;
    return s;
}

std::string inside_response(const std::string& req, int status, std::string_view body = {},
                            std::string_view reason = {}) {
    sip::Message m = parse(req);
    std::string s = "SIP/2.0 " + std::to_string(status) + " ";
    s += reason.empty() ? sip::default_reason(status) : reason;
    s += "\r\n";
    for (const auto& h : m.headers())
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id || h.id == sip::HeaderId::cseq)
            s += h.line;
    s += "To: ";
    s += m.to()->raw;
    if (m.to()->tag.empty() && status > 100) s += ";tag=inside9";
    s += "\r\n";
    s += "Record-Route: <sip:10.0.0.2:5080;lr>\r\n";
    s += "Contact: <sip:uas@10.9.9.9:5090>\r\n";
    s += "Server: FreeSWITCH-mod_sofia/1.10\r\n";
    s += "Warning: 399 fs01.inside.lan \"internal detail\"\r\n";
    if (!body.empty()) s += "Content-Type: application/sdp\r\n";
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    s += body;
    return s;
}

// A request from inside in the dialog the SBC created there.
std::string inside_request(const std::string& sbc_invite, std::string_view method, int cseq,
                           std::string_view body = {}) {
    sip::Message m = parse(sbc_invite);
    std::string s(method);
    s += " sip:";
    s += m.contacts().front().uri.user;
    s += "@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKin";
    s += std::to_string(cseq);
    s += "\r\nMax-Forwards: 69\r\nFrom: ";
    s += m.to()->raw;
    s += ";tag=inside9\r\nTo: ";
    s += m.from()->raw;
    s += "\r\nCall-ID: ";
    s += m.call_id();
    s += "\r\nCSeq: " + std::to_string(cseq) + " ";
    s += method;
    s += "\r\nContact: <sip:uas@10.9.9.9:5090>\r\n";
    if (!body.empty()) s += "Content-Type: application/sdp\r\n";
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    s += body;
    return s;
}

// A request from the caller in its dialog with the SBC (To tag from the SBC's answer).
std::string caller_request(const std::string& sbc_answer, std::string_view method, int cseq,
                           std::string_view branch) {
    sip::Message a = parse(sbc_answer);
    std::string s(method);
    s += " sip:";
    s += a.contacts().empty() ? "x" : std::string(a.contacts().front().uri.user);
    s += "@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=";
    s += branch;
    s += ";rport\r\nMax-Forwards: 70\r\nFrom: ";
    s += a.from()->raw;
    s += "\r\nTo: ";
    s += a.to()->raw;
    s += "\r\nCall-ID: outside-call-1\r\nCSeq: " + std::to_string(cseq) + " ";
    s += method;
    s += "\r\nContent-Length: 0\r\n\r\n";
    return s;
}

bool leaks_inside(const std::string& bytes) {
    for (std::string_view needle :
         {"10.0.0.", "10.9.9.9", "inside.lan", "FreeSWITCH", "inside9", "Record-Route", "Warning"})
        if (bytes.find(needle) != std::string::npos) return true;
    return false;
}

struct Harness {
    FakeWire wire;
    FakeMedia media;
    FakeHooks hooks;
    B2bua b2b;
    explicit Harness(B2buaConfig c = config()) : b2b(std::move(c), wire, media, hooks) {}
};

// Places a call and returns the INVITE the SBC sent inside.
std::string place(Harness& h, base::Nanos now = 0) {
    feed(h.b2b, invite(), caller_flow(), Side::external, now);
    auto inside = h.wire.to(kProxyPort);
    REQUIRE(inside.size() == 1);
    return inside.back();
}

}  // namespace

TEST_CASE("a call goes inside as a new dialog and comes back out with nothing of the inside") {
    Harness h;
    const std::string inv = place(h);
    // The caller got 100 Trying at once.
    REQUIRE(h.wire.to(kCallerPort).size() == 1);
    CHECK(parse(h.wire.to(kCallerPort)[0]).status_code() == 100);

    sip::Message in = parse(inv);
    CHECK(in.call_id() != "outside-call-1");
    CHECK(in.from()->tag != "alice1");
    REQUIRE(in.vias().size() == 1);
    CHECK(in.vias()[0].host == "10.0.0.1");
    CHECK(in.request_uri().user == "+442071234567");
    CHECK(in.request_uri().host == "10.0.0.2");
    CHECK(in.max_forwards() == 69);
    CHECK(in.find("X-SBC-Fraud") == nullptr);              // forged from outside: removed
    CHECK(inv.find("198.51.100.7") == std::string::npos);  // the caller's address stays outside
    CHECK(in.body().find("c=IN IP4 10.0.0.1") != std::string::npos);
    CHECK(in.body().find("m=audio 30002 ") != std::string::npos);
    CHECK(in.body().find("a=rtcp:30003") != std::string::npos);
    CHECK(h.media.peers.at(0).port == 40000);

    feed(h.b2b, inside_response(inv, 180), proxy_flow(), Side::internal, millis(10));
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp, "OK from fs01.inside.lan"), proxy_flow(),
         Side::internal, millis(20));
    auto out = h.wire.to(kCallerPort);
    REQUIRE(out.size() == 3);
    sip::Message ringing = parse(out[1]);
    sip::Message ok = parse(out[2]);
    CHECK(ringing.status_code() == 180);
    CHECK(ok.status_code() == 200);
    CHECK(ok.reason_phrase() == "OK");
    CHECK(ok.call_id() == "outside-call-1");
    CHECK(ok.from()->tag == "alice1");
    CHECK(ok.to()->tag == ringing.to()->tag);
    CHECK_FALSE(ok.to()->tag.empty());
    REQUIRE(ok.contacts().size() == 1);
    CHECK(ok.contacts()[0].uri.host == "203.0.113.1");
    CHECK(ok.vias().size() == 1);
    CHECK(ok.vias()[0].host == "198.51.100.7");
    CHECK(ok.body().find("c=IN IP4 203.0.113.1") != std::string::npos);
    CHECK(ok.body().find("m=audio 30000 ") != std::string::npos);
    for (const auto& m : out) CHECK_FALSE(leaks_inside(m));
    CHECK(h.hooks.answered == 1);

    // The caller's ACK goes inside as the ACK of the inside dialog.
    const std::size_t mark = h.wire.sent.size();
    feed(h.b2b, caller_request(out[2], "ACK", 10, "z9hG4bKack1"), caller_flow(), Side::external,
         millis(30));
    auto acks = h.wire.to(kProxyPort, mark);
    REQUIRE(acks.size() == 1);
    sip::Message ack = parse(acks[0]);
    CHECK(ack.method() == sip::Method::ack);
    CHECK(ack.call_id() == in.call_id());
    CHECK(ack.to()->tag == "inside9");
    CHECK(ack.cseq()->number == in.cseq()->number);
    CHECK(ack.request_uri().raw == "sip:uas@10.9.9.9:5090");
    REQUIRE(ack.routes().size() == 1);  // the inside's Record-Route becomes the route set

    // BYE from the caller: answered, relayed inside, media freed once.
    feed(h.b2b, caller_request(out[2], "BYE", 11, "z9hG4bKbye1"), caller_flow(), Side::external,
         seconds(60));
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 200);
    const std::string bye = h.wire.to(kProxyPort).back();
    CHECK(parse(bye).method() == sip::Method::bye);
    CHECK(h.media.released[1] == 1);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::bye_caller);
    CHECK(h.b2b.calls().empty());
    feed(h.b2b, inside_response(bye, 200), proxy_flow(), Side::internal, seconds(60) + millis(5));
    h.b2b.advance(seconds(100));  // the transactions' last timers
    CHECK(h.b2b.active_calls() == 0);
    CHECK(h.b2b.transactions().size() == 0);
}

TEST_CASE("CANCEL from the caller: 487 out, CANCEL inside, the inside's 487 ACKed there") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 180), proxy_flow(), Side::internal, millis(10));
    const std::size_t mark = h.wire.sent.size();
    std::string cancel = invite();
    cancel.replace(0, 6, "CANCEL");
    cancel.replace(cancel.find("CSeq: 10 INVITE"), 15, "CSeq: 10 CANCEL");
    cancel = cancel.substr(0, cancel.find("Content-Type")) + "Content-Length: 0\r\n\r\n";
    feed(h.b2b, cancel, caller_flow(), Side::external, millis(20));
    auto out = h.wire.to(kCallerPort, mark);
    REQUIRE(out.size() == 2);
    CHECK(parse(out[0]).status_code() == 200);
    CHECK(parse(out[1]).status_code() == 487);
    auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(in.size() == 1);
    CHECK(parse(in[0]).method() == sip::Method::cancel);
    feed(h.b2b, inside_response(in[0], 200), proxy_flow(), Side::internal, millis(30));
    feed(h.b2b, inside_response(inv, 487), proxy_flow(), Side::internal, millis(40));
    CHECK(parse(h.wire.to(kProxyPort).back()).method() == sip::Method::ack);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::cancelled);
    CHECK(h.media.released[1] == 1);
    h.b2b.advance(seconds(40));
    CHECK(h.b2b.active_calls() == 0);
    CHECK(h.b2b.transactions().size() == 0);
}

TEST_CASE("an inside that rings forever: 408 out after max_pending, CANCEL inside, call gone") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 180), proxy_flow(), Side::internal, millis(10));
    const std::size_t mark = h.wire.sent.size();
    // The transaction layer answers the caller 408 once max_pending (180 s) has passed.
    h.b2b.advance(seconds(181));
    auto out = h.wire.to(kCallerPort, mark);
    REQUIRE(!out.empty());
    CHECK(parse(out[0]).status_code() == 408);
    auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(!in.empty());
    CHECK(parse(in[0]).method() == sip::Method::cancel);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::timeout);
    CHECK(h.hooks.ended[0].first.final_status == 408);
    CHECK(h.media.released[1] == 1);
    CHECK(h.b2b.counters()[B2buaCounter::calls_failed] == 1);
    // The inside never answers the CANCEL either: everything is gone once its timers ran out.
    h.b2b.advance(seconds(181 + 40));
    CHECK(h.b2b.active_calls() == 0);
    CHECK(h.b2b.transactions().size() == 0);
    CHECK(h.media.released[1] == 1);
}

TEST_CASE("a BYE from the caller in the early dialog: 487 out, CANCEL inside, call gone") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 180), proxy_flow(), Side::internal, millis(10));
    const std::string ringing = h.wire.to(kCallerPort).back();
    REQUIRE(parse(ringing).status_code() == 180);
    const std::size_t mark = h.wire.sent.size();
    feed(h.b2b, caller_request(ringing, "BYE", 11, "z9hG4bKearlybye"), caller_flow(),
         Side::external, millis(20));
    auto out = h.wire.to(kCallerPort, mark);
    REQUIRE(out.size() == 2);
    CHECK(parse(out[0]).status_code() == 200);
    CHECK(parse(out[0]).cseq()->method == "BYE");
    CHECK(parse(out[1]).status_code() == 487);
    CHECK(parse(out[1]).cseq()->method == "INVITE");
    auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(in.size() == 1);
    CHECK(parse(in[0]).method() == sip::Method::cancel);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::bye_caller);
    CHECK(h.media.released[1] == 1);
    // The inside answers neither the CANCEL nor the INVITE: the timers still clear everything.
    h.b2b.advance(seconds(60));
    CHECK(h.b2b.active_calls() == 0);
    CHECK(h.b2b.transactions().size() == 0);
    CHECK(h.media.released[1] == 1);
}

TEST_CASE("a 200 crossing the CANCEL is ACKed and ended inside with BYE") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 180), proxy_flow(), Side::internal, millis(10));
    std::string cancel = invite();
    cancel.replace(0, 6, "CANCEL");
    cancel.replace(cancel.find("CSeq: 10 INVITE"), 15, "CSeq: 10 CANCEL");
    cancel = cancel.substr(0, cancel.find("Content-Type")) + "Content-Length: 0\r\n\r\n";
    feed(h.b2b, cancel, caller_flow(), Side::external, millis(20));
    const std::size_t mark = h.wire.sent.size();
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(25));
    auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(in.size() == 2);
    CHECK(parse(in[0]).method() == sip::Method::ack);
    CHECK(parse(in[1]).method() == sip::Method::bye);
    CHECK(h.wire.to(kCallerPort, mark).empty());  // the caller already has its 487
    CHECK(h.media.released[1] == 1);
    // The far end retransmits its 200 (our ACK went missing): the same ACK again, no second BYE.
    const std::size_t again = h.wire.sent.size();
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(30));
    auto re = h.wire.to(kProxyPort, again);
    REQUIRE(re.size() == 1);
    CHECK(re[0] == in[0]);
}

TEST_CASE("failover: a next hop that times out, then one that answers 503, then 503 out") {
    Harness h(config({kProxyPort, kProxy2Port}));
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    // Equal weights: either hop first, the other one on failover.
    const bool one_first = h.wire.to(kProxyPort).size() == 1;
    const std::uint16_t first = one_first ? kProxyPort : kProxy2Port;
    const std::uint16_t then = one_first ? kProxy2Port : kProxyPort;
    REQUIRE(h.wire.to(first).size() == 1);
    REQUIRE(h.wire.to(then).empty());
    h.b2b.advance(seconds(32));
    auto second = h.wire.to(then);
    REQUIRE(second.size() == 1);
    CHECK(h.b2b.counters()[B2buaCounter::failovers] == 1);
    CHECK(parse(second[0]).request_uri().port == then);
    feed(h.b2b, inside_response(second[0], 503), proxy_flow(then), Side::internal, seconds(33));
    const auto out = h.wire.to(kCallerPort);
    CHECK(parse(out.back()).status_code() == 503);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::rejected);
}

TEST_CASE(
    "admission: a blocked call gets its status and nothing goes inside; a flagged one carries the "
    "header") {
    Harness h;
    h.hooks.next.kind = Admission::Kind::block;
    h.hooks.next.status = 403;
    h.hooks.next.reason = "Call Rejected By Policy";
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    CHECK(h.wire.to(kProxyPort).empty());
    sip::Message r = parse(h.wire.to(kCallerPort).back());
    CHECK(r.status_code() == 403);
    CHECK(r.reason_phrase() == "Call Rejected By Policy");
    CHECK(h.media.anchors.empty());

    h.hooks.next = {};
    h.hooks.next.kind = Admission::Kind::flag;
    h.hooks.next.flag_value = "score=55; rules=premium_destination";
    feed(h.b2b, invite("z9hG4bKcaller2"), caller_flow(), Side::external, millis(1));
    auto in = h.wire.to(kProxyPort);
    REQUIRE(in.size() == 1);
    const sip::Header* flag = parse(in[0]).find("X-SBC-Fraud");
    REQUIRE(flag != nullptr);
    CHECK(flag->value == "score=55; rules=premium_destination");
}

TEST_CASE("a forged in-dialog request gets 481 and reaches nobody") {
    Harness h;
    place(h);
    const std::size_t mark = h.wire.sent.size();
    std::string forged =
        "BYE sip:x@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKevil\r\n"
        "From: <sip:a@b>;tag=alice1\r\nTo: <sip:c@d>;tag=guessed\r\nCall-ID: outside-call-1\r\n"
        "CSeq: 11 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    Flow attacker = caller_flow();
    attacker.remote.port = 6000;
    feed(h.b2b, forged, attacker, Side::external, millis(5));
    REQUIRE(h.wire.to(6000, mark).size() == 1);
    CHECK(parse(h.wire.to(6000, mark)[0]).status_code() == 481);
    CHECK(h.wire.to(kProxyPort, mark).empty());
    CHECK(h.b2b.counters()[B2buaCounter::unknown_dialog] == 1);
    CHECK(h.b2b.calls().size() == 1);
}

TEST_CASE("a re-INVITE from inside (hold) reaches the caller anchored, and its ACK goes back") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(20));
    const std::string answer = h.wire.to(kCallerPort).back();
    feed(h.b2b, caller_request(answer, "ACK", 10, "z9hG4bKack1"), caller_flow(), Side::external,
         millis(30));
    const std::size_t mark = h.wire.sent.size();
    std::string hold = kCalleeSdp + "a=sendonly\r\n";
    feed(h.b2b, inside_request(inv, "INVITE", 1, hold), proxy_flow(), Side::internal, seconds(5));
    auto out = h.wire.to(kCallerPort, mark);
    REQUIRE(out.size() == 1);
    sip::Message re = parse(out[0]);
    CHECK(re.method() == sip::Method::invite);
    CHECK(re.call_id() == "outside-call-1");
    CHECK(re.to()->tag == "alice1");
    CHECK(re.request_uri().raw == "sip:alice@198.51.100.7:5070");
    CHECK(re.body().find("a=sendonly") != std::string::npos);
    CHECK(re.body().find("c=IN IP4 203.0.113.1") != std::string::npos);
    CHECK_FALSE(leaks_inside(out[0]));
    // A second offer while this one runs: glare.
    feed(h.b2b, caller_request(answer, "UPDATE", 11, "z9hG4bKupd"), caller_flow(), Side::external,
         seconds(5) + millis(1));
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 491);
    // The caller answers; the 200 goes inside; the inside's ACK comes back out as an ACK.
    std::string ok = "SIP/2.0 200 OK\r\n";
    for (const auto& hd : re.headers())
        if (hd.id == sip::HeaderId::via || hd.id == sip::HeaderId::from ||
            hd.id == sip::HeaderId::to || hd.id == sip::HeaderId::call_id ||
            hd.id == sip::HeaderId::cseq)
            ok += hd.line;
    ok +=
        "Contact: <sip:alice@198.51.100.7:5070>\r\nContent-Type: "
        "application/sdp\r\nContent-Length: " +
        std::to_string(kCallerSdp.size()) + "\r\n\r\n" + kCallerSdp;
    feed(h.b2b, ok, caller_flow(), Side::external, seconds(5) + millis(50));
    const std::string ok_inside = h.wire.to(kProxyPort).back();
    CHECK(parse(ok_inside).status_code() == 200);
    CHECK(parse(ok_inside).body().find("c=IN IP4 10.0.0.1") != std::string::npos);
    const std::size_t mark2 = h.wire.sent.size();
    std::string ack_in = inside_request(inv, "ACK", 1);
    ack_in.replace(ack_in.find("branch=z9hG4bKin1"), 17, "branch=z9hG4bKin1a");
    feed(h.b2b, ack_in, proxy_flow(), Side::internal, seconds(5) + millis(60));
    auto acks = h.wire.to(kCallerPort, mark2);
    REQUIRE(acks.size() == 1);
    CHECK(parse(acks[0]).method() == sip::Method::ack);
    CHECK(parse(acks[0]).cseq()->number == parse(out[0]).cseq()->number);
}

TEST_CASE("a 3xx from inside goes out as the configured status, without its Contact") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 302), proxy_flow(), Side::internal, millis(10));
    const std::string out = h.wire.to(kCallerPort).back();
    sip::Message r = parse(out);
    CHECK(r.status_code() == 480);
    CHECK(r.contacts().empty());
    CHECK_FALSE(leaks_inside(out));
}

TEST_CASE("the maximum call duration ends an answered call with BYE on both legs") {
    B2buaConfig c = config();
    c.max_call_duration = seconds(60);
    Harness h(c);
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(20));
    const std::string answer = h.wire.to(kCallerPort).back();
    feed(h.b2b, caller_request(answer, "ACK", 10, "z9hG4bKack1"), caller_flow(), Side::external,
         millis(30));
    const std::size_t mark = h.wire.sent.size();
    h.b2b.advance(seconds(59));
    CHECK(h.wire.sent.size() == mark);
    h.b2b.advance(millis(20) + seconds(60));
    CHECK(parse(h.wire.to(kCallerPort, mark).at(0)).method() == sip::Method::bye);
    CHECK(parse(h.wire.to(kProxyPort, mark).at(0)).method() == sip::Method::bye);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::max_duration);
    CHECK(h.media.released[1] == 1);
}

TEST_CASE("OPTIONS to the SBC is answered locally; no next hop gives 503 with Retry-After") {
    Harness h(config({}));
    std::string opt =
        "OPTIONS sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKo\r\n"
        "From: <sip:mon@carrier.example>;tag=m\r\nTo: <sip:203.0.113.1>\r\nCall-ID: o\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    feed(h.b2b, opt, caller_flow(), Side::external, 0);
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 200);
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    sip::Message r = parse(h.wire.to(kCallerPort).back());
    CHECK(r.status_code() == 503);
    CHECK(r.find("Retry-After") != nullptr);
    CHECK(h.media.released[1] == 1);  // the offer's streams were freed
}

TEST_CASE("health checks: calls go only to hops that answer OPTIONS") {
    B2buaConfig c = config({kProxyPort, kProxy2Port});
    c.health.enabled = true;
    c.health.interval = seconds(5);
    c.health.timeout = seconds(2);
    c.health.failures_before_down = 2;
    c.health.successes_before_up = 2;
    Harness h(c);
    // Before any probe is answered no hop is up: 503 at once, nothing sent inside.
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 503);
    CHECK(h.b2b.counters()[B2buaCounter::no_next_hop] == 1);
    h.b2b.advance(millis(1));
    auto probes1 = h.wire.to(kProxyPort);
    auto probes2 = h.wire.to(kProxy2Port);
    REQUIRE(probes1.size() == 1);
    REQUIRE(probes2.size() == 1);
    CHECK(parse(probes1[0]).method() == sip::Method::options);
    // Only the second hop answers: the call goes there.
    feed(h.b2b, inside_response(probes2[0], 200), proxy_flow(kProxy2Port), Side::internal,
         millis(5));
    CHECK_FALSE(h.b2b.hop_up(0));
    CHECK(h.b2b.hop_up(1));
    feed(h.b2b, invite("z9hG4bKcaller2"), caller_flow(), Side::external, millis(10));
    CHECK(h.wire.to(kProxyPort).size() == 1);
    REQUIRE(h.wire.to(kProxy2Port).size() == 2);
    CHECK(parse(h.wire.to(kProxy2Port).back()).method() == sip::Method::invite);
    // The second hop stops answering: down after two failed probes.
    h.b2b.advance(seconds(5) + millis(1));
    h.b2b.advance(seconds(7) + millis(2));
    CHECK(h.b2b.hop_up(1));
    h.b2b.advance(seconds(10) + millis(1));
    h.b2b.advance(seconds(12) + millis(2));
    CHECK_FALSE(h.b2b.hop_up(1));
    CHECK(h.b2b.counters()[B2buaCounter::hops_down] == 1);
    CHECK(h.b2b.counters()[B2buaCounter::probes_failed] >= 2);
    // The first hop never answered: each probe is retransmitted only until the health check's
    // timeout (0.5 s and 1.5 s after it), not until Timer F, while probes go on every 5 s.
    const std::size_t mark = h.wire.to(kProxyPort).size();
    for (int t = 13; t <= 60; ++t) h.b2b.advance(seconds(t));
    const auto later = h.wire.to(kProxyPort, mark);
    std::set<std::string> branches;
    for (const auto& m : later) {
        const auto p = parse(m);
        CHECK(p.method() == sip::Method::options);
        branches.insert(std::string(p.vias().front().branch));
    }
    CHECK(branches.size() >= 9);
    CHECK(later.size() <= 3 * branches.size());
}

TEST_CASE("strip_headers takes '*' patterns, case-insensitive, as topology.strip_headers") {
    auto c = config();
    c.strip_headers = {"x-carrier-*", "Server"};
    Harness h(std::move(c));
    std::string inv = invite();
    const std::string at = "X-SBC-Fraud: forged\r\n";
    inv.replace(inv.find(at), at.size(),
                "X-Carrier-Route: trunk7\r\nX-CARRIER-ID: 42\r\nX-Keep: yes\r\n"
                "Server: caller-pbx\r\n");
    feed(h.b2b, inv, caller_flow(), Side::external, 0);
    const auto inside = h.wire.to(kProxyPort);
    REQUIRE(inside.size() == 1);
    const sip::Message in = parse(inside.back());
    CHECK(in.find("X-Carrier-Route") == nullptr);
    CHECK(in.find("X-Carrier-Id") == nullptr);
    CHECK(in.find("Server") == nullptr);
    REQUIRE(in.find("X-Keep") != nullptr);
    CHECK(in.find("X-Keep")->value == "yes");
}

TEST_CASE("early media with PRACK: RAck names each dialog's INVITE, the answer still goes out") {
    Harness h;
    const std::string inv = place(h);
    const sip::Message in = parse(inv);
    std::string early = inside_response(inv, 183, kCalleeSdp);
    early.insert(early.find("Content-Type"), "Require: 100rel\r\nRSeq: 7\r\n");
    feed(h.b2b, early, proxy_flow(), Side::internal, millis(10));
    auto out = h.wire.to(kCallerPort);
    REQUIRE(out.size() == 2);
    const sip::Message progress = parse(out[1]);
    CHECK(progress.status_code() == 183);
    CHECK(out[1].find("RSeq: 7") != std::string::npos);
    CHECK(out[1].find("Require: 100rel") != std::string::npos);
    CHECK(progress.body().find("c=IN IP4 203.0.113.1") != std::string::npos);
    CHECK_FALSE(leaks_inside(out[1]));

    // The caller's PRACK names its INVITE (CSeq 10); inside, the SBC's INVITE has its own CSeq.
    std::string prack = caller_request(out[1], "PRACK", 11, "z9hG4bKprack1");
    prack.insert(prack.find("Content-Length"), "RAck: 7 10 INVITE\r\n");
    std::size_t mark = h.wire.sent.size();
    feed(h.b2b, prack, caller_flow(), Side::external, millis(20));
    auto inside = h.wire.to(kProxyPort, mark);
    REQUIRE(inside.size() == 1);
    const sip::Message p = parse(inside[0]);
    CHECK(p.method() == sip::Method::prack);
    CHECK(inside[0].find("RAck: 7 " + std::to_string(in.cseq()->number) + " INVITE\r\n") !=
          std::string::npos);
    feed(h.b2b, inside_response(inside[0], 200), proxy_flow(), Side::internal, millis(30));
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 200);
    CHECK(parse(h.wire.to(kCallerPort).back()).cseq()->method == "PRACK");

    // The INVITE's 200 after the PRACK goes out too.
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(40));
    const sip::Message ok = parse(h.wire.to(kCallerPort).back());
    CHECK(ok.status_code() == 200);
    CHECK(ok.cseq()->method == "INVITE");
    CHECK(h.hooks.answered == 1);
}

// INVITE transactions (not their retransmissions) sent to `port`.
static std::size_t invites_to(const FakeWire& w, std::uint16_t port) {
    std::set<std::string> branches;
    for (const auto& m : w.to(port))
        if (m.rfind("INVITE ", 0) == 0) branches.insert(std::string(parse(m).vias()[0].branch));
    return branches.size();
}

TEST_CASE("next-hop weights: calls spread in proportion among the hops up") {
    B2buaConfig c = config({kProxyPort, kProxy2Port});
    c.internal.weights = {1, 3};
    c.seed = 42;
    Harness h(c);
    constexpr int kCalls = 2000;
    for (int i = 0; i < kCalls; ++i) {
        std::string inv = invite("z9hG4bKw" + std::to_string(i));
        const std::string cid = "Call-ID: outside-call-1";
        inv.replace(inv.find(cid), cid.size(), "Call-ID: w" + std::to_string(i));
        feed(h.b2b, inv, caller_flow(), Side::external, millis(i));
    }
    const auto one = invites_to(h.wire, kProxyPort);
    const auto two = invites_to(h.wire, kProxy2Port);
    CHECK(one + two == kCalls);
    // 1:3 expected: 500 and 1500; binomial sd ~19, so +-100 cannot fail by chance.
    CHECK(one > 400);
    CHECK(one < 600);
    CHECK(two > 1400);
}

TEST_CASE("next-hop weights: failover goes to an untried hop, a down hop takes nothing") {
    B2buaConfig c = config({kProxyPort, kProxy2Port, 5100});
    c.internal.weights = {5, 1, 1};
    Harness h(c);
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    // Every hop in turn (each times out): three INVITEs to three different hops, then 408.
    h.b2b.advance(seconds(32));
    h.b2b.advance(seconds(64));
    CHECK(invites_to(h.wire, kProxyPort) == 1);
    CHECK(invites_to(h.wire, kProxy2Port) == 1);
    CHECK(invites_to(h.wire, 5100) == 1);
    CHECK(h.b2b.counters()[B2buaCounter::failovers] == 2);
    h.b2b.advance(seconds(96));
    CHECK(parse(h.wire.to(kCallerPort).back()).status_code() == 408);
}

TEST_CASE("end_calls_if: a ban of the caller's source ends its answered call with BYE both ways") {
    Harness h;
    const std::string inv = place(h);
    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(10));
    const std::string ok = h.wire.to(kCallerPort).back();
    feed(h.b2b, caller_request(ok, "ACK", 10, "z9hG4bKack9"), caller_flow(), Side::external,
         millis(20));
    REQUIRE(h.b2b.calls().size() == 1);
    const std::uint64_t id = h.b2b.calls()[0];
    CHECK(h.b2b.answered(id));
    REQUIRE(h.b2b.info(id) != nullptr);
    CHECK(h.b2b.info(id)->source.remote.port == kCallerPort);

    // Another source: nothing ends.
    const auto other = *base::IpAddress::parse("198.51.100.99");
    CHECK(h.b2b.end_calls_if([&](const CallInfo& c) { return c.source.remote.addr == other; },
                             seconds(1)) == 0);
    CHECK(h.b2b.calls().size() == 1);

    const std::size_t mark = h.wire.sent.size();
    const auto banned = *base::IpAddress::parse("198.51.100.7");
    CHECK(h.b2b.end_calls_if([&](const CallInfo& c) { return c.source.remote.addr == banned; },
                             seconds(2)) == 1);
    auto out = h.wire.to(kCallerPort, mark);
    auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(out.size() == 1);
    REQUIRE(in.size() == 1);
    CHECK(parse(out[0]).method() == sip::Method::bye);
    CHECK(parse(in[0]).method() == sip::Method::bye);
    CHECK_FALSE(leaks_inside(out[0]));
    CHECK(h.media.released[id] == 1);
    REQUIRE(h.hooks.ended.size() == 1);
    CHECK(h.hooks.ended[0].second == CallEnd::terminated);
    CHECK(h.b2b.calls().empty());
    CHECK(h.b2b.info(id) == nullptr);
}

TEST_CASE("call_view and call_of: each leg's Call-ID and far end; end_call sends BYE both ways") {
    Harness h;
    const std::string inv = place(h);
    const std::string inside_call_id(parse(inv).call_id());
    const auto ids = h.b2b.calls();
    REQUIRE(ids.size() == 1);
    auto v = h.b2b.call_view(ids[0]);
    REQUIRE(v);
    CHECK_FALSE(v->answered);
    CHECK(v->call_id[0] == "outside-call-1");
    CHECK(v->call_id[1] == inside_call_id);
    CHECK(v->side[0] == Side::external);
    CHECK(v->side[1] == Side::internal);
    CHECK(v->flow[0].remote == caller_flow().remote);
    CHECK(v->flow[1].remote == proxy_flow().remote);
    CHECK(h.b2b.call_of(Side::external, "outside-call-1") == ids[0]);
    CHECK(h.b2b.call_of(Side::internal, inside_call_id) == ids[0]);
    CHECK_FALSE(h.b2b.call_of(Side::internal, "outside-call-1"));  // sides are apart
    CHECK_FALSE(h.b2b.call_of(Side::external, "unknown"));

    feed(h.b2b, inside_response(inv, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(20));
    const std::string answer = h.wire.to(kCallerPort).back();
    feed(h.b2b, caller_request(answer, "ACK", 10, "z9hG4bKack1"), caller_flow(), Side::external,
         millis(30));
    REQUIRE(h.b2b.call_view(ids[0])->answered);

    const std::size_t mark = h.wire.sent.size();
    CHECK(h.b2b.end_call(ids[0], millis(40)));
    const auto out = h.wire.to(kCallerPort, mark);
    const auto in = h.wire.to(kProxyPort, mark);
    REQUIRE(out.size() == 1);
    REQUIRE(in.size() == 1);
    CHECK(parse(out[0]).method() == sip::Method::bye);
    CHECK(parse(out[0]).call_id() == "outside-call-1");
    CHECK(parse(in[0]).method() == sip::Method::bye);
    CHECK(parse(in[0]).call_id() == inside_call_id);
    CHECK(h.b2b.calls().empty());
    CHECK_FALSE(h.b2b.end_call(ids[0], millis(50)));
    // Ended, but its BYE transactions still run: the legs still map to the call (late
    // responses correlate), and the view says it ended.
    REQUIRE(h.b2b.call_view(ids[0]));
    CHECK(h.b2b.call_view(ids[0])->ended);
    CHECK(h.b2b.call_of(Side::internal, inside_call_id) == ids[0]);
    // The BYEs' transactions finish (Timer K / J): the call and its index are gone.
    h.b2b.advance(seconds(40));
    CHECK_FALSE(h.b2b.call_view(ids[0]));
    CHECK_FALSE(h.b2b.call_of(Side::external, "outside-call-1"));
    CHECK_FALSE(h.b2b.call_of(Side::internal, inside_call_id));
}

namespace {

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

// Places call `n` (its own Call-ID, tag and branch), answers it inside and ACKs it outside.
void place_answered(Harness& h, int n, base::Nanos now) {
    const std::string id = "outside-call-n" + std::to_string(n);
    std::string inv = replace_all(invite("z9hG4bKcall" + std::to_string(n)), "outside-call-1", id);
    inv = replace_all(inv, "tag=alice1", "tag=alice" + std::to_string(n));
    const std::size_t mark = h.wire.sent.size();
    feed(h.b2b, inv, caller_flow(), Side::external, now);
    const auto inside = h.wire.to(kProxyPort, mark);
    REQUIRE(inside.size() == 1);
    feed(h.b2b, inside_response(inside[0], 200, kCalleeSdp), proxy_flow(), Side::internal,
         now + millis(1));
    const std::string answer = h.wire.to(kCallerPort, mark).back();
    REQUIRE(parse(answer).status_code() == 200);
    const std::string ack = replace_all(
        caller_request(answer, "ACK", 10, "z9hG4bKack" + std::to_string(n)), "outside-call-1", id);
    const std::size_t before = h.wire.sent.size();
    feed(h.b2b, ack, caller_flow(), Side::external, now + millis(2));
    REQUIRE(h.wire.to(kProxyPort, before).size() == 1);
    h.wire.sent.clear();  // keeps the fake wire small over many calls
}

}  // namespace

TEST_CASE("a retransmitted 2xx gets the same ACK again, rebuilt from the dialog") {
    Harness h;
    const std::string inv = place(h);
    const std::string ok = inside_response(inv, 200, kCalleeSdp);
    feed(h.b2b, ok, proxy_flow(), Side::internal, millis(20));
    const std::string answer = h.wire.to(kCallerPort).back();
    feed(h.b2b, caller_request(answer, "ACK", 10, "z9hG4bKack1"), caller_flow(), Side::external,
         millis(30));
    const std::string first = h.wire.to(kProxyPort).back();
    REQUIRE(parse(first).method() == sip::Method::ack);
    // The inside missed the ACK and sends its 200 again (its T1 schedule), twice.
    for (int i = 1; i <= 2; ++i) {
        const std::size_t mark = h.wire.sent.size();
        feed(h.b2b, ok, proxy_flow(), Side::internal, millis(500 * i));
        const auto again = h.wire.to(kProxyPort, mark);
        REQUIRE(again.size() == 1);
        CHECK(again[0] == first);  // same branch, same CSeq, same route: byte for byte
        CHECK(h.wire.to(kCallerPort, mark).empty());  // the caller sees nothing of it
    }
}

TEST_CASE("held calls keep a bounded state in the call memory, reused by the next calls") {
    Harness h;
    constexpr int kCalls = 1024;
    const std::size_t idle = h.b2b.call_memory_bytes();
    for (int n = 0; n < kCalls; ++n) place_answered(h, n, millis(n));
    // Established: the INVITE transactions end (RFC 6026 Timer L / M, 64*T1); each call keeps
    // only its own state.
    h.b2b.advance(seconds(40));
    REQUIRE(h.b2b.calls().size() == kCalls);
    CHECK(h.b2b.transactions().size() == 0);
    const std::size_t held = h.b2b.call_memory_bytes() - idle;
    // Both dialogs with their strings, the call's information, the index entries: about 2 KB a
    // call (1.9 KB here; a copy of the INVITE or of its 2xx alone would add about 1 KB).
    CHECK(held / kCalls < 2304);
    CHECK(held / kCalls > 256);  // the state is counted where it lives

    const std::size_t peak = h.b2b.call_memory_bytes();
    for (auto id : h.b2b.calls()) CHECK(h.b2b.end_call(id, seconds(41)));
    h.b2b.advance(seconds(100));  // the BYEs time out (no answers here): calls freed
    REQUIRE(h.b2b.active_calls() == 0);
    // No call left: the peak goes back to the system.
    CHECK(h.b2b.call_memory_bytes() <= idle);
    for (int n = 0; n < kCalls; ++n) place_answered(h, kCalls + n, seconds(101) + millis(n));
    h.b2b.advance(seconds(150));
    REQUIRE(h.b2b.calls().size() == kCalls);
    // The same number of calls again: no more than the first time.
    CHECK(h.b2b.call_memory_bytes() <= peak + peak / 10);
    // While calls come and go, the memory of ended ones is reused, not added to.
    const auto ids = h.b2b.calls();
    for (std::size_t i = 0; i < ids.size() / 2; ++i) CHECK(h.b2b.end_call(ids[i], seconds(151)));
    h.b2b.advance(seconds(200));
    const std::size_t half = h.b2b.call_memory_bytes();
    for (int n = 0; n < kCalls / 2; ++n)
        place_answered(h, 2 * kCalls + n, seconds(201) + millis(n));
    h.b2b.advance(seconds(250));
    CHECK(h.b2b.call_memory_bytes() <= half + half / 10);
}

namespace {
Flow stranger_flow(int i) {
    Flow f;
    f.remote = {*base::IpAddress::parse("192.0.2." + std::to_string(i)),
                static_cast<std::uint16_t>(6000 + i)};
    return f;
}
std::string stranger_invite(int i) {
    std::string s = invite("z9hG4bKstranger" + std::to_string(i));
    const std::string id = "outside-call-1";
    s.replace(s.find(id), id.size(), "stranger-call-" + std::to_string(i));
    return s;
}
}  // namespace

// A spoofed INVITE flood passes the dataplane's new-source budget as strangers; their calls
// must not take every relay port and the inside's time from the callers the node knows.
TEST_CASE("strangers get max_stranger_setups calls in setup; known and trusted callers pass") {
    auto cfg = config();
    cfg.max_stranger_setups = 2;
    Harness h(cfg);
    // A caller whose call was answered becomes known.
    const std::string first = place(h);
    feed(h.b2b, inside_response(first, 200, kCalleeSdp), proxy_flow(), Side::internal, millis(5));
    REQUIRE(h.hooks.answered == 1);

    // Two strangers' calls go inside; the third stranger gets 503 with Retry-After at once.
    for (int i = 1; i <= 2; ++i)
        feed(h.b2b, stranger_invite(i), stranger_flow(i), Side::external, millis(10 + i));
    // The refusal is stateless: no transaction, nothing retransmitted to a spoofable address.
    const std::size_t transactions = h.b2b.transactions().size();
    feed(h.b2b, stranger_invite(3), stranger_flow(3), Side::external, millis(13));
    CHECK(h.b2b.transactions().size() == transactions);
    h.b2b.advance(seconds(2));
    CHECK(h.wire.to(6003).size() == 1);
    // A retransmission of an admitted stranger's INVITE is still absorbed by its transaction.
    feed(h.b2b, stranger_invite(2), stranger_flow(2), Side::external, seconds(2));
    CHECK(h.b2b.counters()[B2buaCounter::calls_refused_strangers] == 1);
    const auto refused = h.wire.to(6003);
    REQUIRE_FALSE(refused.empty());
    CHECK(parse(refused.back()).status_code() == 503);
    CHECK(parse(refused.back()).find("Retry-After") != nullptr);
    CHECK(h.b2b.counters()[B2buaCounter::calls_refused_strangers] == 1);
    CHECK(h.media.anchors.size() == 3);  // the known call and two strangers: none for the third

    // The known caller is not counted: its next call goes inside while the strangers wait.
    std::string again = invite("z9hG4bKagain");
    again.replace(again.find("outside-call-1"), 14, "outside-call-2");
    feed(h.b2b, again, caller_flow(), Side::external, seconds(3));
    CHECK(h.media.anchors.size() == 4);
    // So is a source the owner vouches for (a trusted trunk).
    h.hooks.next.known_source = true;
    feed(h.b2b, stranger_invite(4), stranger_flow(4), Side::external, seconds(3));
    CHECK(h.media.anchors.size() == 5);
    h.hooks.next.known_source = false;

    // The inside challenges a stranger's call (401): it ends, and its place is free again.
    // The inside sees only the SBC's identifiers: the calls' INVITEs in the order sent.
    std::vector<std::string> invites;
    for (const auto& m : h.wire.to(kProxyPort))
        if (m.rfind("INVITE ", 0) == 0 &&
            std::find_if(invites.begin(), invites.end(), [&](const std::string& x) {
                return parse(x).call_id() == parse(m).call_id();
            }) == invites.end())
            invites.push_back(m);
    REQUIRE(invites.size() == 5);
    const std::string challenged = invites[1];  // the first stranger's
    feed(h.b2b, inside_response(challenged, 401), proxy_flow(), Side::internal, seconds(4));
    feed(h.b2b, stranger_invite(5), stranger_flow(5), Side::external, seconds(4));
    CHECK(h.media.anchors.size() == 6);
    feed(h.b2b, stranger_invite(6), stranger_flow(6), Side::external, seconds(4));
    CHECK(h.media.anchors.size() == 6);
    CHECK(h.b2b.counters()[B2buaCounter::calls_refused_strangers] == 2);
}

// ---------------------------------------------------------------------------------------------
// Transports: each leg's Via, Contact and flow name the transport and listener of that leg.

namespace {

B2buaConfig stream_config(std::vector<Transport> hop_transports) {
    B2buaConfig c = config({kProxyPort, kProxy2Port});
    c.external.stream_listeners = {{Transport::tcp, "203.0.113.1", 5060, 10},
                                   {Transport::tls, "203.0.113.1", 5061, 11}};
    c.internal.stream_listeners = {{Transport::tcp, "10.0.0.1", 5062, 12},
                                   {Transport::tls, "10.0.0.1", 5063, 13}};
    c.internal.hop_transports = std::move(hop_transports);
    c.internal.weights = {1000, 1};  // the first hop nearly always first
    c.seed = 7;
    return c;
}

Flow caller_tcp_flow(std::uint64_t connection = 42) {
    Flow f = caller_flow();
    f.transport = Transport::tcp;
    f.connection = connection;
    f.listener = 10;
    return f;
}

std::string tcp_invite() {
    std::string s = invite();
    const auto at = s.find("SIP/2.0/UDP");
    s.replace(at, 11, "SIP/2.0/TCP");
    const auto ct = s.find("<sip:alice@198.51.100.7:5070>");
    s.replace(ct, 29, "<sip:alice@198.51.100.7:5070;transport=tcp>");
    return s;
}

// An INVITE from inside to `ruri` (the call leaves to the outside).
std::string inside_invite(std::string_view ruri) {
    std::string s = "INVITE ";
    s += ruri;
    s += " SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKinout1\r\n"
         "Max-Forwards: 70\r\nFrom: <sip:100@inside.lan>;tag=in1\r\n"
         "To: <sip:+33123456789@trunk.example>\r\nCall-ID: inside-call-9\r\n"
         "CSeq: 1 INVITE\r\nContact: <sip:100@10.0.0.2:5080>\r\n"
         "Content-Type: application/sdp\r\nContent-Length: ";
    s += std::to_string(kCalleeSdp.size());
    s += "\r\n\r\n";
    s += kCalleeSdp;
    return s;
}

}  // namespace

TEST_CASE(
    "transports: a TCP next hop gets the INVITE over TCP with the internal TCP listener's "
    "Via and Contact; the caller's TCP leg answers with its own") {
    Harness h(stream_config({Transport::tcp, Transport::udp}));
    feed(h.b2b, tcp_invite(), caller_tcp_flow(), Side::external, 0);
    REQUIRE(h.wire.sent.size() == 2);  // 100 Trying out, INVITE in
    const Sent& trying = h.wire.sent[0];
    CHECK(trying.flow.connection == 42);  // the response goes back on the caller's connection
    const Sent& in = h.wire.sent[1];
    CHECK(in.flow.transport == Transport::tcp);
    CHECK(in.flow.connection == 0);  // the owner opens or reuses its own connection to the hop
    CHECK(in.flow.listener == 12);
    CHECK(in.flow.remote.port == kProxyPort);
    sip::Message m = parse(in.bytes);
    REQUIRE(m.vias().size() == 1);
    CHECK(m.vias()[0].transport == "TCP");
    CHECK(m.vias()[0].host == "10.0.0.1");
    CHECK(m.vias()[0].port == 5062);
    CHECK(m.contacts().front().uri.port == 5062);
    CHECK(m.contacts().front().uri.params_text == "transport=tcp");
    CHECK(m.request_uri().params_text == "transport=tcp");

    // The answer from inside comes over the SBC's connection; the 200 out names the external
    // TCP listener.
    Flow back = proxy_flow();
    back.transport = Transport::tcp;
    back.connection = 77;
    back.listener = 12;
    feed(h.b2b, inside_response(in.bytes, 200, kCalleeSdp), back, Side::internal, millis(5));
    const Sent& ok = h.wire.sent.back();
    CHECK(ok.flow.connection == 42);
    sip::Message r = parse(ok.bytes);
    CHECK(r.status_code() == 200);
    CHECK(r.contacts().front().uri.host == "203.0.113.1");
    CHECK(r.contacts().front().uri.port == 5060);
    CHECK(r.contacts().front().uri.params_text == "transport=tcp");
    CHECK(!leaks_inside(ok.bytes));

    // The ACK inside goes over TCP with a TCP Via too.
    feed(h.b2b, caller_request(ok.bytes, "ACK", 10, "z9hG4bKack1"), caller_tcp_flow(),
         Side::external, millis(6));
    const Sent& ack = h.wire.sent.back();
    CHECK(ack.flow.transport == Transport::tcp);
    CHECK(parse(ack.bytes).method() == sip::Method::ack);
    CHECK(parse(ack.bytes).vias()[0].transport == "TCP");
    CHECK(parse(ack.bytes).vias()[0].port == 5062);
}

TEST_CASE("transports: a TLS next hop gets TLS in Via, Contact and Request-URI") {
    Harness h(stream_config({Transport::tls, Transport::udp}));
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    const Sent& in = h.wire.sent.back();
    CHECK(in.flow.transport == Transport::tls);
    CHECK(in.flow.listener == 13);
    sip::Message m = parse(in.bytes);
    CHECK(m.vias()[0].transport == "TLS");
    CHECK(m.vias()[0].port == 5063);
    CHECK(m.contacts().front().uri.params_text == "transport=tls");
    // The caller's leg is UDP: its 100 names nothing else, and the UDP Via stays on UDP hops.
    CHECK(h.wire.sent[0].flow.transport == Transport::udp);
}

TEST_CASE("transports: OPTIONS probes go over each hop's transport") {
    B2buaConfig c = stream_config({Transport::tcp, Transport::udp});
    c.health.enabled = true;
    Harness h(std::move(c));
    h.b2b.advance(0);
    REQUIRE(h.wire.sent.size() == 2);
    for (const auto& s : h.wire.sent) {
        const bool tcp = s.flow.remote.port == kProxyPort;
        CHECK(s.flow.transport == (tcp ? Transport::tcp : Transport::udp));
        CHECK(parse(s.bytes).vias()[0].transport == (tcp ? "TCP" : "UDP"));
        CHECK(parse(s.bytes).vias()[0].port == (tcp ? 5062 : 5060));
    }
}

TEST_CASE(
    "transports: a connection that cannot be opened fails the INVITE over to the next hop "
    "at once, and the hop goes down") {
    B2buaConfig c = stream_config({Transport::tcp, Transport::udp});
    Harness h(std::move(c));
    feed(h.b2b, invite(), caller_flow(), Side::external, 0);
    const Flow tcp_hop = h.wire.sent.back().flow;
    REQUIRE(tcp_hop.transport == Transport::tcp);
    const std::size_t before = h.wire.sent.size();
    // A flow nobody sent to fails nothing.
    Flow other = tcp_hop;
    other.remote.port = 1;
    CHECK(h.b2b.transport_failed(other, millis(100)) == 0);
    CHECK(h.wire.sent.size() == before);
    CHECK(h.b2b.transport_failed(tcp_hop, millis(200)) == 1);
    REQUIRE(h.wire.sent.size() == before + 1);
    const Sent& retry = h.wire.sent.back();
    CHECK(retry.flow.transport == Transport::udp);
    CHECK(retry.flow.remote.port == kProxy2Port);
    CHECK(parse(retry.bytes).vias()[0].transport == "UDP");
    CHECK(h.b2b.counters()[B2buaCounter::failovers] == 1);
    // Once answered, the hop is not failed again by a late report.
    CHECK(h.b2b.transport_failed(tcp_hop, millis(300)) == 0);
}

TEST_CASE(
    "transports: a call from inside to a sips: or ;transport=tcp Request-URI goes out over "
    "TLS or TCP with the external listener of that transport") {
    struct Case {
        std::string ruri;
        Transport t;
        std::uint16_t port, via_port;
        std::string contact_scheme, contact_params;
    };
    const Case cases[] = {
        {"sips:+33123456789@192.0.2.50", Transport::tls, 5061, 5061, "sips", ""},
        {"sip:+33123456789@192.0.2.50;transport=tls", Transport::tls, 5061, 5061, "sip",
         "transport=tls"},
        {"sip:+33123456789@192.0.2.50:5070;transport=TCP", Transport::tcp, 5070, 5060, "sip",
         "transport=tcp"},
        {"sip:+33123456789@192.0.2.50", Transport::udp, 5060, 5060, "sip", ""},
    };
    for (const auto& k : cases) {
        INFO(k.ruri);
        Harness h(stream_config({}));
        feed(h.b2b, inside_invite(k.ruri), proxy_flow(), Side::internal, 0);
        const Sent& out = h.wire.sent.back();
        CHECK(out.flow.transport == k.t);
        CHECK(out.flow.remote.port == k.port);
        CHECK(out.flow.connection == 0);
        CHECK(out.flow.listener == (k.t == Transport::tls   ? 11u
                                    : k.t == Transport::tcp ? 10u
                                                            : 0u));
        sip::Message m = parse(out.bytes);
        REQUIRE(m.is_request());
        CHECK(m.vias()[0].transport == transport_name(k.t));
        CHECK(m.vias()[0].host == "203.0.113.1");
        CHECK(m.vias()[0].port == k.via_port);
        CHECK(m.contacts().front().uri.scheme == k.contact_scheme);
        CHECK(m.contacts().front().uri.params_text == k.contact_params);
        CHECK(!leaks_inside(out.bytes));
    }
}

TEST_CASE("transports: a request that carries any of the side's listeners in a Via is a loop") {
    Harness h(stream_config({Transport::tcp}));
    std::string s = invite();
    s.insert(s.find("Via: "),
             "Via: SIP/2.0/TCP 203.0.113.1:5061;branch=z9hG4bKabcdefghijklmnopqrstuvwx\r\n");
    feed(h.b2b, s, caller_flow(), Side::external, 0);
    CHECK(parse(h.wire.sent.back().bytes).status_code() == 482);
}

TEST_CASE(
    "transports: a trunk next hop on the external side takes calls from inside over its "
    "transport, chosen by weight, failing over on a connect failure") {
    B2buaConfig c = stream_config({});
    c.external.next_hops = {{*base::IpAddress::parse("192.0.2.60"), 5061},
                            {*base::IpAddress::parse("192.0.2.61"), 5060}};
    c.external.hop_transports = {Transport::tls, Transport::udp};
    // Trunks are weighted like internal next hops: with a fixed seed the heavy one goes first.
    c.external.weights = {1000, 1};
    c.seed = 7;
    Harness h(std::move(c));
    feed(h.b2b, inside_invite("sip:+33123456789@trunk.example"), proxy_flow(), Side::internal, 0);
    const Sent first = h.wire.sent.back();
    CHECK(first.flow.transport == Transport::tls);
    CHECK(first.flow.remote.port == 5061);
    CHECK(first.flow.listener == 11);
    sip::Message m = parse(first.bytes);
    CHECK(m.request_uri().host == "192.0.2.60");
    CHECK(m.request_uri().params_text == "transport=tls");
    CHECK(m.vias()[0].transport == "TLS");
    CHECK(m.vias()[0].port == 5061);
    CHECK(h.b2b.transport_failed(first.flow, millis(10)) == 1);
    const Sent& second = h.wire.sent.back();
    CHECK(second.flow.transport == Transport::udp);
    CHECK(second.flow.remote.port == 5060);
    CHECK(parse(second.bytes).vias()[0].transport == "UDP");
    CHECK(parse(second.bytes).vias()[0].port == 5060);
}

// Registrations through the B2BUA with the wire faked and the clock moved: what the registrar
// and the client see, bindings, throttling, keep-alives, expiry, inbound calls over the
// registered flow, uniform answers and counted refusals.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "sbc/signaling/b2bua.hpp"
#include "signaling_fixture.hpp"

using namespace sbc;
using namespace sbc::signaling;
using namespace sbc::signaling::fixture;
using base::seconds;

namespace {

constexpr std::uint16_t kRegistrarPort = 5080;
const char* kPublic = "198.51.100.7";  // the NAT's public address

B2buaConfig config() {
    B2buaConfig c = fixture::two_sides();
    c.internal.next_hops.push_back({*base::IpAddress::parse("10.0.0.2"), kRegistrarPort});
    c.registrations.nat_expires = seconds(60);
    c.registrations.keepalive_interval = seconds(20);
    c.registrations.keepalive_timeout = seconds(4);
    c.registrations.max_contacts_per_request = 5;
    c.registrations.max_bindings_per_aor = 3;
    return c;
}

Flow client(std::uint16_t port = 40123, const char* addr = kPublic) {
    Flow f;
    f.remote = {*base::IpAddress::parse(addr), port};
    f.listener = 0;
    return f;
}

Flow registrar() {
    Flow f;
    f.remote = {*base::IpAddress::parse("10.0.0.2"), kRegistrarPort};
    f.listener = 1;
    return f;
}

// A REGISTER as a phone behind NAT writes it: its private address in Via and Contact.
std::string register_req(int cseq, std::string_view user = "1001",
                         std::string_view contacts = "<sip:1001@192.168.1.5:5060>",
                         std::string_view extra = {}, std::string_view call_id = "reg-1") {
    std::string s =
        "REGISTER sip:pbx.example SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKr" +
        std::to_string(cseq) + std::string(user) +
        ";rport\r\nMax-Forwards: 70\r\n"
        "From: <sip:" +
        std::string(user) + "@pbx.example>;tag=f" + std::to_string(cseq) +
        "\r\nTo: <sip:" + std::string(user) + "@pbx.example>\r\nCall-ID: " + std::string(call_id) +
        "\r\nCSeq: " + std::to_string(cseq) + " REGISTER\r\n";
    if (!contacts.empty()) s += "Contact: " + std::string(contacts) + "\r\n";
    s += extra;
    s += "User-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n";
    return s;
}

const std::string kAuth =
    "Authorization: Digest username=\"1001\", realm=\"pbx.example\", nonce=\"abc123\", "
    "uri=\"sip:pbx.example\", response=\"0123456789abcdef0123456789abcdef\"\r\n";
const std::string kChallenge =
    "Digest realm=\"pbx.example\", nonce=\"Xk3vQ9zZbA0cD1eF2gH3iJ4kL5mN6oP7\", qop=\"auth\"";

// The registrar's answer to a REGISTER the SBC sent it.
std::string registrar_answer(const std::string& req, int status, int grant = 3600) {
    sip::Message m = parse(req);
    std::string s = "SIP/2.0 " + std::to_string(status) + " " +
                    std::string(sip::default_reason(status)) + "\r\n";
    for (const auto& h : m.headers())
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id || h.id == sip::HeaderId::cseq)
            s += h.line;
    s += "To: " + std::string(m.to()->raw) + ";tag=kam" + std::to_string(status) + "\r\n";
    if (status == 401) s += "WWW-Authenticate: " + kChallenge + "\r\n";
    if (status == 200)
        for (const auto& c : m.contacts())
            s += "Contact: <" + std::string(c.uri.raw) +
                 ">;expires=" + std::to_string(c.expires == "0" ? 0 : grant) + "\r\n";
    s += "Server: kamailio (5.6.3 (x86_64/linux))\r\nContent-Length: 0\r\n\r\n";
    return s;
}

struct Rig {
    FakeWire wire;
    FakeMedia media;
    FakeHooks hooks;
    B2bua b;
    base::Nanos now = seconds(100);
    explicit Rig(B2buaConfig c = config()) : b(std::move(c), wire, media, hooks) {}
    std::vector<Sent> feed(const std::string& bytes, const Flow& f, Side side) {
        const std::size_t at = wire.sent.size();
        sip::Message m = parse(bytes);
        b.receive(m, f, side, now);
        return wire.since(at);
    }
    std::vector<Sent> tick(base::Nanos dt) {
        const std::size_t at = wire.sent.size();
        now += dt;
        b.advance(now);
        return wire.since(at);
    }
    // REGISTER, 401, REGISTER with credentials, 200: the token of the new binding.
    std::string register_fully(int cseq, const Flow& from, std::string_view user = "1001",
                               std::string_view contact = "<sip:1001@192.168.1.5:5060>") {
        auto out = feed(register_req(cseq, user, contact), from, Side::external);
        REQUIRE(out.size() == 1);
        feed(registrar_answer(out[0].bytes, 401), registrar(), Side::internal);
        out = feed(register_req(cseq + 1, user, contact, kAuth), from, Side::external);
        REQUIRE(out.size() == 1);
        const sip::Message inside = parse(out[0].bytes);
        REQUIRE(inside.contacts().size() == 1);
        const std::string token(inside.contacts()[0].uri.user);
        auto back = feed(registrar_answer(out[0].bytes, 200), registrar(), Side::internal);
        REQUIRE(back.size() == 1);
        REQUIRE(parse(back[0].bytes).status_code() == 200);
        return token;
    }
};

bool contains(const std::string& s, std::string_view what) {
    return s.find(what) != std::string::npos;
}

// Header names of a response, in order.
std::vector<std::string> header_names(const sip::Message& m) {
    std::vector<std::string> out;
    for (const auto& h : m.headers()) out.emplace_back(h.name);
    return out;
}

std::string challenge_of(const sip::Message& m) {
    const sip::Header* h = m.find(sip::HeaderId::www_authenticate);
    return h ? std::string(h->value) : std::string();
}

}  // namespace

TEST_CASE("REGISTER goes inside with the SBC's Contact and the credentials unchanged") {
    Rig r;
    auto out = r.feed(register_req(1), client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(out[0].flow == registrar());
    const std::string& in = out[0].bytes;
    CHECK(in.rfind("REGISTER sip:pbx.example SIP/2.0\r\n", 0) == 0);
    CHECK_FALSE(contains(in, "192.168.1.5"));  // the client's private address
    CHECK_FALSE(contains(in, kPublic));        // and its public one
    CHECK_FALSE(contains(in, "reg-1"));        // its Call-ID
    CHECK_FALSE(contains(in, "Yealink"));
    const sip::Message m = parse(in);
    REQUIRE(m.contacts().size() == 1);
    CHECK(m.contacts()[0].uri.host == "10.0.0.1");
    CHECK(m.contacts()[0].uri.user.size() == 24);
    CHECK(m.vias().size() == 1);

    // The challenge comes back unchanged, to the observed source (RFC 3581).
    auto back = r.feed(registrar_answer(in, 401), registrar(), Side::internal);
    REQUIRE(back.size() == 1);
    CHECK(back[0].flow == client());
    const sip::Message ch = parse(back[0].bytes);
    CHECK(ch.status_code() == 401);
    CHECK(challenge_of(ch) == kChallenge);
    CHECK_FALSE(contains(back[0].bytes, "kamailio"));
    CHECK(contains(back[0].bytes, "received=198.51.100.7"));
    CHECK(contains(back[0].bytes, "rport=40123"));

    // The answer with credentials: relayed byte for byte, same Call-ID inside.
    out = r.feed(register_req(2, "1001", "<sip:1001@192.168.1.5:5060>", kAuth), client(),
                 Side::external);
    REQUIRE(out.size() == 1);
    CHECK(contains(out[0].bytes, kAuth));
    CHECK(parse(out[0].bytes).call_id() == m.call_id());
    CHECK(parse(out[0].bytes).cseq()->number == 2);
    // A binding (and its token) exists once the registrar accepts it.
    const std::string token(parse(out[0].bytes).contacts()[0].uri.user);
    CHECK_FALSE(r.b.registrations()->binding(token));

    back = r.feed(registrar_answer(out[0].bytes, 200), registrar(), Side::internal);
    REQUIRE(back.size() == 1);
    const sip::Message ok = parse(back[0].bytes);
    CHECK(ok.status_code() == 200);
    REQUIRE(ok.contacts().size() == 1);
    CHECK(ok.contacts()[0].uri.raw == "sip:1001@192.168.1.5:5060");
    CHECK(ok.contacts()[0].expires == "60");  // cut for the NAT; the registrar gave 3600
    REQUIRE(r.b.registrations());
    const auto bv = r.b.registrations()->binding(token);
    REQUIRE(bv);
    CHECK(bv->aor == "1001@pbx.example");
    CHECK(bv->flow == client());
    CHECK(bv->client_until == r.now + seconds(60));
    CHECK(bv->registrar_until == r.now + seconds(3600));
    CHECK(r.hooks.outcomes == std::vector<int>{401, 200});
}

TEST_CASE("refreshes are answered from the cache until the registrar's binding is half gone") {
    auto cfg = config();
    cfg.registrations.keepalive = Keepalive::none;  // the refreshes alone keep it
    Rig r(cfg);
    const std::string token = r.register_fully(1, client());
    const auto& c = r.b.registrations()->counters();
    int cseq = 3;
    // 29 refreshes 50 s apart: 1450 s < 1800 s, none reaches the registrar.
    for (int i = 0; i < 29; ++i) {
        r.tick(seconds(50));
        auto out = r.feed(register_req(cseq++), client(), Side::external);
        REQUIRE(out.size() == 1);
        CHECK(out[0].flow == client());
        CHECK(parse(out[0].bytes).status_code() == 200);
    }
    CHECK(c[RegistrationCounter::answered_from_cache] == 29);
    CHECK(c[RegistrationCounter::forwarded] == 2);
    r.tick(seconds(400));  // past half of 3600 s since the registrar's 200... but the client
                           // binding (60 s) expired meanwhile: a new registration
    CHECK_FALSE(r.b.registrations()->binding(token));
    CHECK(c[RegistrationCounter::expired] == 1);
}

TEST_CASE("a retransmitted cached refresh gets the identical 200 from a slim transaction") {
    auto cfg = config();
    cfg.registrations.keepalive = Keepalive::none;  // only the registrations' transactions
    Rig r(cfg);
    // 1000 phones, each its own AOR and flow.
    constexpr int kPhones = 4000;
    auto user = [](int i) { return std::to_string(2000 + i); };
    auto contact = [&](int i) { return "<sip:" + user(i) + "@192.168.1.5:5060>"; };
    for (int i = 0; i < kPhones; ++i)
        r.register_fully(1, client(static_cast<std::uint16_t>(10000 + i)), user(i), contact(i));
    r.tick(seconds(40));  // the registrations' transactions end (Timer J)
    const TransactionLayer& layer = r.b.transactions();
    REQUIRE(layer.size() == 0);
    const auto& c = r.b.registrations()->counters();
    const auto cached = c[RegistrationCounter::answered_from_cache];
    // Every phone refreshes (same Call-ID, next CSeq): all answered from the cache.
    std::vector<std::string> refreshes, answers;
    for (int i = 0; i < kPhones; ++i) {
        refreshes.push_back(register_req(3, user(i), contact(i)));
        auto out =
            r.feed(refreshes.back(), client(static_cast<std::uint16_t>(10000 + i)), Side::external);
        REQUIRE(out.size() == 1);
        REQUIRE(parse(out[0].bytes).status_code() == 200);
        answers.push_back(out[0].bytes);
    }
    CHECK(c[RegistrationCounter::answered_from_cache] == cached + kPhones);
    r.tick(seconds(1));
    // Their transactions absorb retransmissions until Timer J; each holds what that needs
    // (key, response, flow, timer), not the request and its parse (a parse alone is 1.6 KB):
    // under 1.5 KB apiece, the slots, the pools, the tables and the timer queue all counted.
    REQUIRE(layer.size() == static_cast<std::size_t>(kPhones));
    CHECK(layer.memory_bytes() < kPhones * std::size_t{1536});
    // A retransmission (same branch, same CSeq) gets the same bytes again, without the
    // registrar logic running a second time.
    const auto absorbed = layer.counters()[TxCounter::request_retransmissions_absorbed];
    for (int i : {0, 1999, 3999}) {
        auto again = r.feed(refreshes[static_cast<std::size_t>(i)],
                            client(static_cast<std::uint16_t>(10000 + i)), Side::external);
        REQUIRE(again.size() == 1);
        CHECK(again[0].bytes == answers[static_cast<std::size_t>(i)]);
        CHECK(again[0].flow == client(static_cast<std::uint16_t>(10000 + i)));
    }
    CHECK(layer.counters()[TxCounter::request_retransmissions_absorbed] == absorbed + 3);
    CHECK(c[RegistrationCounter::answered_from_cache] == cached + kPhones);
    // After Timer J they are gone, and with them their memory.
    r.tick(seconds(40));
    r.tick(seconds(1));  // the pool of the previous epoch goes at the event after
    CHECK(layer.size() == 0);
    CHECK(layer.pool_bytes() == 0);
}

TEST_CASE("refreshes move a binding's expiry without piling up timers") {
    auto cfg = config();
    cfg.registrations.keepalive = Keepalive::none;  // NATed: the client is given 60 s
    Rig r(cfg);
    const std::string token = r.register_fully(1, client());
    const auto* regs = r.b.registrations();
    CHECK(regs->timer_entries() == 1);
    int cseq = 3;
    // 100 refreshes 10 s apart, all from the cache, each moving the expiry 60 s on: still one
    // timer for the binding (one per refresh would leave six pending at any time).
    for (int i = 0; i < 100; ++i) {
        r.tick(seconds(10));
        auto out = r.feed(register_req(cseq++), client(), Side::external);
        REQUIRE(out.size() == 1);
        REQUIRE(parse(out[0].bytes).status_code() == 200);
        CHECK(regs->timer_entries() <= 2);
    }
    CHECK(regs->counters()[RegistrationCounter::answered_from_cache] == 100);
    // It expires 60 s after the last refresh, not after the first registration.
    const auto until = regs->binding(token)->client_until;
    CHECK(until == r.now + seconds(60));
    r.tick(until - r.now - seconds(1));
    CHECK(regs->binding(token));
    r.tick(seconds(2));
    CHECK_FALSE(regs->binding(token));
    CHECK(regs->counters()[RegistrationCounter::expired] == 1);
    CHECK(regs->timer_entries() == 0);
}

TEST_CASE("a refresh after half the registrar's time goes to the registrar") {
    auto cfg = config();
    cfg.registrations.nat_expires = 0;  // not shortened: the client refreshes at its own pace
    cfg.registrations.keepalive = Keepalive::none;
    Rig r(cfg);
    r.register_fully(1, client());
    r.tick(seconds(1700));
    auto out = r.feed(register_req(3), client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(parse(out[0].bytes).status_code() == 200);  // cached
    r.tick(seconds(200));
    out = r.feed(register_req(4), client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(out[0].flow == registrar());
}

TEST_CASE("a call from inside to the token goes over the registered flow; forged: 480") {
    Rig r;
    const std::string token = r.register_fully(1, client());
    const std::string inv =
        "INVITE sip:" + token +
        "@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKinv1\r\n"
        "Max-Forwards: 69\r\nFrom: <sip:2000@pbx.example>;tag=in1\r\nTo: "
        "<sip:1001@pbx.example>\r\nCall-ID: inside-1\r\nCSeq: 1 INVITE\r\nContact: "
        "<sip:2000@10.0.0.2:5080>\r\nContent-Length: 0\r\n\r\n";
    auto out = r.feed(inv, registrar(), Side::internal);
    bool delivered = false;
    for (const auto& s : out)
        if (s.bytes.rfind("INVITE ", 0) == 0) {
            delivered = true;
            CHECK(s.flow == client());  // the observed source, not 192.168.1.5
            CHECK(s.bytes.rfind("INVITE sip:1001@192.168.1.5:5060 SIP/2.0", 0) == 0);
            CHECK_FALSE(contains(s.bytes, token));
        }
    CHECK(delivered);

    std::string forged = inv;
    forged.replace(forged.find(token), token.size(), "aaaaaaaaaaaaaaaaaaaaaaaa");
    forged.replace(forged.find("z9hG4bKinv1"), 11, "z9hG4bKinv2");
    forged.replace(forged.find("inside-1"), 8, "inside-2");
    out = r.feed(forged, registrar(), Side::internal);
    REQUIRE_FALSE(out.empty());
    CHECK(parse(out.back().bytes).status_code() == 480);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::inbound_gone] == 1);

    // Once the binding expires, the same token fails at once too.
    r.tick(seconds(61));
    std::string late = inv;
    late.replace(late.find("z9hG4bKinv1"), 11, "z9hG4bKinv3");
    late.replace(late.find("inside-1"), 8, "inside-3");
    out = r.feed(late, registrar(), Side::internal);
    REQUIRE_FALSE(out.empty());
    CHECK(parse(out.back().bytes).status_code() == 480);
}

TEST_CASE("Expires 0, '*', several contacts and a move to a new address") {
    Rig r;
    const std::string a = r.register_fully(1, client(), "1001", "<sip:1001@192.168.1.5:5060>");
    const std::string b = r.register_fully(3, client(), "1001", "<sip:1001@192.168.1.5:5062>");
    CHECK(a != b);
    CHECK(r.b.registrations()->tokens_of("1001@pbx.example").size() == 2);

    // Wi-Fi to 4G: the same contact from another address moves the binding (after auth).
    const Flow mobile = client(50000, "192.0.2.44");
    CHECK(r.register_fully(5, mobile, "1001", "<sip:1001@192.168.1.5:5060>") == a);
    CHECK(r.b.registrations()->binding(a)->flow == mobile);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::moved] == 1);

    // Expires 0 for one contact.
    auto out = r.feed(register_req(7, "1001", "<sip:1001@192.168.1.5:5062>;expires=0", kAuth),
                      client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(contains(out[0].bytes, ";expires=0"));
    r.feed(registrar_answer(out[0].bytes, 200), registrar(), Side::internal);
    CHECK_FALSE(r.b.registrations()->binding(b));
    CHECK(r.b.registrations()->binding(a));

    // '*' with Expires 0 removes every binding of the AOR.
    out = r.feed(register_req(8, "1001", "*", "Expires: 0\r\n" + kAuth), mobile, Side::external);
    REQUIRE(out.size() == 1);
    CHECK(contains(out[0].bytes, "Contact: *\r\n"));
    r.feed(registrar_answer(out[0].bytes, 200), registrar(), Side::internal);
    CHECK(r.b.registrations()->bindings() == 0);
    CHECK(r.b.registrations()->flows() == 0);
}

TEST_CASE("keep-alives: an answered flow stays, a silent one loses its bindings") {
    Rig r;
    const std::string token = r.register_fully(1, client());
    auto out = r.tick(seconds(20));
    REQUIRE(out.size() == 1);
    CHECK(out[0].flow == client());
    CHECK(out[0].bytes.rfind("OPTIONS ", 0) == 0);
    // The phone answers.
    sip::Message probe = parse(out[0].bytes);
    const std::string ok = answer_to(probe, "ph");
    r.feed(ok, client(), Side::external);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_answered] == 1);
    // A refresh keeps the binding past its 60 s.
    r.tick(seconds(20));
    r.feed(register_req(3), client(), Side::external);
    // Then the phone goes silent: two probes unanswered (20 s apart, 4 s timeout) and the
    // binding is gone before its expiry (200 s).
    r.tick(seconds(5));
    CHECK(r.b.registrations()->binding(token));
    r.tick(seconds(15));
    CHECK(r.b.registrations()->binding(token));
    r.tick(seconds(5));
    CHECK(r.now < seconds(200));
    CHECK_FALSE(r.b.registrations()->binding(token));
    CHECK(r.b.registrations()->counters()[RegistrationCounter::flows_dead] == 1);
}

TEST_CASE("keep-alive probes: no transaction, retransmitted with their branch, answers matched") {
    Rig r;
    const std::string token = r.register_fully(1, client());
    CHECK(r.tick(seconds(19)).empty());
    const std::size_t txs = r.b.transactions().size();
    const auto sent = r.b.transactions().counters()[TxCounter::client_transactions];
    auto out = r.tick(seconds(1));  // the first probe is due (20 s)
    REQUIRE(out.size() == 1);
    const sip::Message probe = parse(out[0].bytes);
    CHECK(probe.method() == sip::Method::options);
    // The probe is a branch in the registrations' table, not a client transaction.
    CHECK(r.b.transactions().size() == txs);
    CHECK(r.b.transactions().counters()[TxCounter::client_transactions] == sent);
    CHECK(r.b.registrations()->probes_out() == 1);
    // Unanswered, it is sent again over UDP after T1 (500 ms): the same request, byte for byte.
    out = r.tick(base::millis(500));
    REQUIRE(out.size() == 1);
    CHECK(out[0].bytes == std::string(probe.bytes()));
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_resent] == 1);
    // An answer from another address does not count.
    const std::string ok = answer_to(probe, "ph");
    Flow other = client();
    other.remote.port = static_cast<std::uint16_t>(other.remote.port + 1);
    r.feed(ok, other, Side::external);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_answered] == 0);
    CHECK(r.b.registrations()->probes_out() == 1);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_late] == 1);
    const auto strays = r.b.transactions().counters()[TxCounter::stray_responses];
    // The phone's answer, matched by branch.
    r.feed(ok, client(), Side::external);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_answered] == 1);
    CHECK(r.b.registrations()->probes_out() == 0);
    // Its retransmission is late: dropped and counted, not a stray for the transaction layer.
    r.feed(ok, client(), Side::external);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::keepalives_late] == 2);
    CHECK(r.b.transactions().counters()[TxCounter::stray_responses] == strays);
    // Answered: no more retransmissions until the next interval.
    CHECK(r.tick(seconds(4)).empty());
    CHECK(r.b.registrations()->binding(token));
}

TEST_CASE("unknown users get the same answer as known ones (status, headers, challenge shape)") {
    Rig r;
    // A known user: the registrar challenges.
    auto out = r.feed(register_req(1, "1001"), client(), Side::external);
    auto known = r.feed(registrar_answer(out[0].bytes, 401), registrar(), Side::internal);
    // An unknown one: the registrar says 404; the SBC answers as for a known user.
    out = r.feed(register_req(1, "1999", "<sip:1999@192.168.1.5:5060>", {}, "reg-9"), client(),
                 Side::external);
    auto unknown = r.feed(registrar_answer(out[0].bytes, 404), registrar(), Side::internal);
    REQUIRE(known.size() == 1);
    REQUIRE(unknown.size() == 1);
    const sip::Message k = parse(known[0].bytes), u = parse(unknown[0].bytes);
    CHECK(k.status_code() == u.status_code());
    CHECK(k.reason_phrase() == u.reason_phrase());
    CHECK(header_names(k) == header_names(u));
    CHECK(k.to()->tag.size() == u.to()->tag.size());
    const std::string kc = challenge_of(k), uc = challenge_of(u);
    REQUIRE(kc.size() == uc.size());
    CHECK(kc != uc);  // a fresh nonce
    // Same shape: everything but the nonce's characters, and those in the same classes.
    for (std::size_t i = 0; i < kc.size(); ++i) {
        const bool same_class = std::isdigit(kc[i]) == std::isdigit(uc[i]) &&
                                std::islower(kc[i]) == std::islower(uc[i]) &&
                                std::isupper(kc[i]) == std::isupper(uc[i]);
        CHECK((kc[i] == uc[i] || same_class));
    }
    // The engine hears the truth.
    CHECK(r.hooks.outcomes == std::vector<int>{401, 404});

    // Credentials for the unknown user: 404 again inside, the same challenge shape outside.
    out = r.feed(register_req(2, "1999", "<sip:1999@192.168.1.5:5060>", kAuth, "reg-9"), client(),
                 Side::external);
    auto again = r.feed(registrar_answer(out[0].bytes, 404), registrar(), Side::internal);
    CHECK(header_names(parse(again[0].bytes)) == header_names(k));

    // A fraud verdict on the outcome refuses alike.
    r.hooks.refuse_register = true;
    out = r.feed(register_req(3, "1001", "<sip:1001@192.168.1.5:5060>", kAuth), client(),
                 Side::external);
    auto blocked = r.feed(registrar_answer(out[0].bytes, 200), registrar(), Side::internal);
    REQUIRE(blocked.size() == 1);
    CHECK(parse(blocked[0].bytes).status_code() == 401);
    CHECK(header_names(parse(blocked[0].bytes)) == header_names(k));
    CHECK(r.b.registrations()->bindings() == 0);
}

TEST_CASE("hundreds of contacts, absurd Expires, a full AOR: counted refusals") {
    Rig r;
    const auto& c = r.b.registrations()->counters();
    std::string many;
    for (int i = 0; i < 300; ++i)
        many +=
            (i ? ", " : "") + std::string("<sip:x@192.168.1.5:") + std::to_string(1000 + i) + ">";
    auto out = r.feed(register_req(1, "1001", many), client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(out[0].flow == client());
    CHECK(parse(out[0].bytes).status_code() == 403);
    CHECK(c[RegistrationCounter::refused_too_many_contacts] == 1);

    out = r.feed(register_req(2, "1001", "<sip:1001@192.168.1.5:5060>;expires=99999999999"),
                 client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(parse(out[0].bytes).status_code() == 400);
    out = r.feed(register_req(3, "1001", "<sip:1001@192.168.1.5:5060>", "Expires: soon\r\n"),
                 client(), Side::external);
    CHECK(parse(out[0].bytes).status_code() == 400);
    CHECK(c[RegistrationCounter::refused_bad_expires] == 2);

    // Large but a number: cut to max_expires (3600) on the way in.
    out = r.feed(register_req(4, "1001", "<sip:1001@192.168.1.5:5060>;expires=4000000000"),
                 client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(contains(out[0].bytes, ";expires=3600"));
    CHECK(c[RegistrationCounter::expires_capped] == 1);

    // Three bindings per AOR in this config; the fourth is refused.
    for (int i = 0; i < 3; ++i)
        r.register_fully(10 + 2 * i, client(), "1002",
                         "<sip:1002@192.168.1.5:" + std::to_string(6000 + i) + ">");
    out = r.feed(register_req(20, "1002", "<sip:1002@192.168.1.5:6009>"), client(), Side::external);
    REQUIRE(out.size() == 1);
    CHECK(parse(out[0].bytes).status_code() == 403);
    CHECK(c[RegistrationCounter::refused_aor_full] == 1);
    CHECK(r.b.registrations()->bindings() == 3);
}

namespace {

// A stranger's INVITE from outside (no SDP: no media to anchor).
std::string outside_invite(std::string_view user, std::string_view call_id) {
    return "INVITE sip:" + std::string(user) +
           "@pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:40123;branch=z9hG4bK" +
           std::string(call_id) + ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:" + std::string(user) +
           "@pbx.example>;tag=sw" + std::string(call_id) + "\r\nTo: <sip:" + std::string(user) +
           "@pbx.example>\r\nCall-ID: " + std::string(call_id) +
           "\r\nCSeq: 1 INVITE\r\nContact: <sip:" + std::string(user) +
           "@198.51.100.7:40123>\r\nUser-Agent: friendly\r\nContent-Length: 0\r\n\r\n";
}

// The inside's final answer to the INVITE the SBC forwarded (among `sent`).
std::string inside_answer(const std::vector<Sent>& sent, int status) {
    for (const auto& x : sent)
        if (x.bytes.rfind("INVITE ", 0) == 0) {
            std::string a = registrar_answer(x.bytes, status);
            if (status == 407)
                a.insert(a.find("Server: "),
                         "Proxy-Authenticate: Digest realm=\"pbx.example\", "
                         "nonce=\"Yx7Qk2Lm9Pq4Rs8Tu1Vw5Xz0Ab3Cd6Ef\", qop=\"auth\"\r\n");
            return a;
        }
    FAIL("no INVITE went inside");
    return {};
}

// The final response the caller got (the last one toward `to`).
sip::Message final_to(const std::vector<Sent>& sent, const Flow& to) {
    for (auto it = sent.rbegin(); it != sent.rend(); ++it)
        if (it->flow == to && it->bytes.rfind("SIP/2.0 ", 0) == 0) {
            sip::Message m = parse(it->bytes);
            if (m.status_code() >= 200) return m;
        }
    FAIL("no final response to the caller");
    return {};
}

std::string proxy_challenge_of(const sip::Message& m) {
    const sip::Header* h = m.find(sip::HeaderId::proxy_authenticate);
    return h ? std::string(h->value) : std::string();
}

// The challenge with its nonce's characters replaced by their classes.
std::string shape(std::string c) {
    for (char& x : c)
        if (std::isdigit(static_cast<unsigned char>(x)))
            x = '9';
        else if (std::islower(static_cast<unsigned char>(x)))
            x = 'a';
        else if (std::isupper(static_cast<unsigned char>(x)))
            x = 'A';
    return c;
}

}  // namespace

TEST_CASE("INVITE sweeps: a known user, an unknown one and a block read alike") {
    Rig r;
    r.hooks.next.uniform = true;
    // A known user: the inside challenges (407); the caller gets it in a response of the
    // SBC's own making (no Server of the inside's).
    auto out = r.feed(outside_invite("1001", "sw1"), client(), Side::external);
    auto back = r.feed(inside_answer(out, 407), registrar(), Side::internal);
    const sip::Message known = final_to(back, client());
    CHECK(known.status_code() == 407);
    CHECK(known.find(sip::HeaderId::server) == nullptr);
    // An unknown one: the inside says 404, the caller reads a 407 of the same shape.
    out = r.feed(outside_invite("1999", "sw2"), client(), Side::external);
    back = r.feed(inside_answer(out, 404), registrar(), Side::internal);
    const sip::Message unknown = final_to(back, client());
    // A blocked one (a fraud verdict): never forwarded, the same again.
    r.hooks.next.kind = Admission::Kind::block;
    out = r.feed(outside_invite("1002", "sw3"), client(), Side::external);
    for (const auto& x : out) CHECK(x.bytes.rfind("INVITE ", 0) != 0);
    const sip::Message blocked = final_to(out, client());
    for (const sip::Message* m : {&unknown, &blocked}) {
        CHECK(m->status_code() == known.status_code());
        CHECK(m->reason_phrase() == known.reason_phrase());
        CHECK(header_names(*m) == header_names(known));
        CHECK(m->to()->tag.size() == known.to()->tag.size());
        CHECK(shape(proxy_challenge_of(*m)) == shape(proxy_challenge_of(known)));
        CHECK(proxy_challenge_of(*m) != proxy_challenge_of(known));  // a fresh nonce
    }
    CHECK(r.b.counters()[B2buaCounter::uniform_answers] == 3);

    // Without enumeration resistance (a trusted trunk), the inside's 404 goes out as it is.
    r.hooks.next = {};
    out = r.feed(outside_invite("1998", "sw4"), client(), Side::external);
    back = r.feed(inside_answer(out, 404), registrar(), Side::internal);
    CHECK(final_to(back, client()).status_code() == 404);
}

TEST_CASE("a closed TCP connection takes its bindings at once; calls to them get 480") {
    Rig r;
    Flow tcp = client(40200);
    tcp.transport = Transport::tcp;
    tcp.connection = 7;
    const std::string token = r.register_fully(1, tcp);
    REQUIRE(r.b.registrations()->binding(token)->flow == tcp);
    // While it is open, a call from inside goes on that connection, its Via saying TCP.
    const std::string first =
        "INVITE sip:" + token +
        "@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKtcp0\r\n"
        "Max-Forwards: 69\r\nFrom: <sip:2000@pbx.example>;tag=t0\r\nTo: "
        "<sip:1001@pbx.example>\r\nCall-ID: tcp-0\r\nCSeq: 1 INVITE\r\nContact: "
        "<sip:2000@10.0.0.2:5080>\r\nContent-Length: 0\r\n\r\n";
    bool delivered = false;
    for (const auto& x : r.feed(first, registrar(), Side::internal))
        if (x.bytes.rfind("INVITE ", 0) == 0) {
            delivered = true;
            CHECK(x.flow == tcp);
            CHECK(contains(x.bytes, "\r\nVia: SIP/2.0/TCP "));
        }
    CHECK(delivered);
    Flow other = tcp;
    other.connection = 8;  // another connection of the same address: not this flow
    r.b.registrations()->flow_closed(other, r.now);
    CHECK(r.b.registrations()->bindings() == 1);
    r.b.registrations()->flow_closed(tcp, r.now);
    CHECK(r.b.registrations()->bindings() == 0);
    CHECK(r.b.registrations()->counters()[RegistrationCounter::flows_closed] == 1);
    const std::string inv =
        "INVITE sip:" + token +
        "@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKtcp1\r\n"
        "Max-Forwards: 69\r\nFrom: <sip:2000@pbx.example>;tag=t1\r\nTo: "
        "<sip:1001@pbx.example>\r\nCall-ID: tcp-1\r\nCSeq: 1 INVITE\r\nContact: "
        "<sip:2000@10.0.0.2:5080>\r\nContent-Length: 0\r\n\r\n";
    auto out = r.feed(inv, registrar(), Side::internal);
    REQUIRE_FALSE(out.empty());
    CHECK(parse(out.back().bytes).status_code() == 480);
}

TEST_CASE("the operator lists, filters and removes bindings") {
    Rig r;
    const std::string a = r.register_fully(1, client(40301), "1002", "<sip:1002@192.168.1.6>");
    const std::string b = r.register_fully(3, client(40302), "1001", "<sip:1001@192.168.1.5>");
    auto& regs = *r.b.registrations();
    CHECK(regs.tokens() == std::vector<std::string>{b, a});  // by address of record
    CHECK(regs.tokens("1002@pbx.example") == std::vector<std::string>{a});
    CHECK(regs.tokens("1003@pbx.example").empty());
    CHECK_FALSE(regs.remove_binding("nosuchtoken"));
    CHECK(regs.remove_binding(a));
    CHECK(regs.tokens() == std::vector<std::string>{b});
    CHECK_FALSE(regs.binding(a).has_value());
    CHECK(regs.counters()[RegistrationCounter::removed_by_operator] == 1);
}

TEST_CASE("a registrar reached over TCP or TLS gets the REGISTER on a stream connection") {
    for (const Transport tp : {Transport::tcp, Transport::tls}) {
        auto cfg = config();
        cfg.internal.hop_transports = {tp};
        cfg.internal.stream_listeners.push_back({tp, "10.0.0.1", 5071, 3});
        Rig r(cfg);
        Flow to_registrar = registrar();
        to_registrar.transport = tp;
        to_registrar.listener = 3;  // the stream listener; connection 0: the owner's pool
        auto out = r.feed(register_req(1), client(), Side::external);
        REQUIRE(out.size() == 1);
        CHECK(out[0].flow == to_registrar);
        const sip::Message m = parse(out[0].bytes);
        REQUIRE(m.vias().size() == 1);
        const std::string via(m.find(sip::HeaderId::via)->value);
        CHECK(
            via.rfind(std::string("SIP/2.0/") + std::string(transport_name(tp)) + " 10.0.0.1:5071;",
                      0) == 0);
        REQUIRE(m.contacts().size() == 1);
        const std::string tname = tp == Transport::tls ? "tls" : "tcp";
        CHECK(contains(std::string(m.contacts()[0].uri.raw), ":5071;transport=" + tname));
        // The registrar's answers come back on that connection (another connection number:
        // the transaction is matched by its branch); the binding is made as over UDP.
        Flow back_flow = to_registrar;
        back_flow.connection = 42;
        auto back = r.feed(registrar_answer(out[0].bytes, 401), back_flow, Side::internal);
        REQUIRE(back.size() == 1);
        CHECK(back[0].flow == client());
        CHECK(parse(back[0].bytes).status_code() == 401);
        out = r.feed(register_req(2, "1001", "<sip:1001@192.168.1.5:5060>", kAuth), client(),
                     Side::external);
        REQUIRE(out.size() == 1);
        CHECK(out[0].flow == to_registrar);
        const std::string token(parse(out[0].bytes).contacts()[0].uri.user);
        back = r.feed(registrar_answer(out[0].bytes, 200), back_flow, Side::internal);
        REQUIRE(back.size() == 1);
        CHECK(parse(back[0].bytes).status_code() == 200);
        REQUIRE(r.b.registrations()->binding(token));
        // The registrar's proxy calls the Contact it stored, over the stream listener: the
        // token there names the binding, and the call goes out over the phone's flow.
        const std::string inv =
            "INVITE sip:" + token + "@10.0.0.1:5071;transport=" + tname +
            " SIP/2.0\r\nVia: SIP/2.0/" + std::string(transport_name(tp)) +
            " 10.0.0.2:5080;branch=z9hG4bKst1\r\nMax-Forwards: 69\r\nFrom: "
            "<sip:2000@pbx.example>;tag=s1\r\nTo: <sip:1001@pbx.example>\r\nCall-ID: st-1\r\n"
            "CSeq: 1 INVITE\r\nContact: <sip:2000@10.0.0.2:5080>\r\nContent-Length: 0\r\n\r\n";
        bool delivered = false;
        for (const auto& s : r.feed(inv, back_flow, Side::internal))
            if (s.bytes.rfind("INVITE ", 0) == 0) {
                delivered = true;
                CHECK(s.flow == client());
            }
        CHECK(delivered);
        CHECK(r.b.registrations()->counters()[RegistrationCounter::inbound_routed] == 1);
    }
}

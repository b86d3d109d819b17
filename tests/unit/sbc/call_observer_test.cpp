// The call observer: SIP messages of both directions in, fraud events out.
#include "sbc/call_observer.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace {

using sbc::base::Endpoint;
using sbc::base::IpAddress;

struct Recorder : sbc::FraudEventSink {
    std::vector<std::string> log;
    void attempt(const sbc::fraud::CallAttempt& a) override {
        log.push_back("attempt " + std::string(a.method) + " " + std::string(a.call_id) + " " +
                      std::string(a.account) + "->" + std::string(a.callee) + " " +
                      std::string(a.source.transport));
    }
    void answered(const sbc::fraud::CallAnswered& a) override {
        log.push_back("answer " + std::string(a.call_id));
    }
    void ended(const sbc::fraud::CallEnded& e) override {
        log.push_back("end " + std::string(e.call_id) + " " + std::to_string(e.status));
    }
    void auth(const sbc::fraud::AuthResult& a) override {
        log.push_back(std::string("auth ") + std::string(a.username) +
                      (a.success ? " ok" : " fail"));
    }
    void registration(const sbc::fraud::Registration& r) override {
        log.push_back("register " + std::string(r.user) + " " + std::to_string(r.status));
    }
};

const Endpoint kClient{*IpAddress::parse("198.51.100.7"), 5062};
const Endpoint kSbc{*IpAddress::parse("203.0.113.1"), 5060};

std::string request(const std::string& method, const std::string& ruri, const std::string& call_id,
                    int cseq, const std::string& branch, const std::string& extra = "",
                    const std::string& to_tag = "") {
    return method + " " + ruri + " SIP/2.0\r\n" +
           "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=" + branch + "\r\n" +
           "From: <sip:1001@example.com>;tag=f1\r\n" + "To: <sip:1001@example.com>" +
           (to_tag.empty() ? "" : ";tag=" + to_tag) + "\r\n" + "Call-ID: " + call_id + "\r\n" +
           "CSeq: " + std::to_string(cseq) + " " + method + "\r\n" +
           "Max-Forwards: 70\r\nUser-Agent: softphone\r\n" + extra + "Content-Length: 0\r\n\r\n";
}

std::string response(int status, const std::string& method, const std::string& call_id, int cseq,
                     const std::string& branch) {
    return "SIP/2.0 " + std::to_string(status) + " X\r\n" +
           "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=" + branch + "\r\n" +
           "From: <sip:1001@example.com>;tag=f1\r\n" + "To: <sip:1001@example.com>;tag=t1\r\n" +
           "Call-ID: " + call_id + "\r\n" + "CSeq: " + std::to_string(cseq) + " " + method +
           "\r\nContent-Length: 0\r\n\r\n";
}

struct Harness {
    Recorder rec;
    sbc::policy::Numbering numbering{"33", "0", "00"};
    sbc::CallObserver obs;
    explicit Harness(sbc::ObserverLimits limits = {}) : obs(rec, &numbering, limits) {}
    void in(const std::string& text, double t, bool tcp = false) {
        feed(text, t, kClient, kSbc, tcp);
    }
    void out(const std::string& text, double t) { feed(text, t, kSbc, kClient, false); }
    void feed(const std::string& text, double t, Endpoint src, Endpoint dst, bool tcp) {
        sbc::sip::Message m;
        REQUIRE(m.parse(text));
        sbc::ObservedMessage at;
        at.source = src;
        at.destination = dst;
        at.tcp = tcp;
        at.now = static_cast<sbc::base::Nanos>(t * 1e9);
        at.wall = at.now;
        obs.observe(m, at);
    }
};

const std::string kAuth =
    "Proxy-Authorization: Digest username=\"1001\", realm=\"r\", "
    "nonce=\"n\", uri=\"sip:x\", response=\"0123\"\r\n";

}  // namespace

TEST_CASE("observer: a challenged, authenticated, answered and hung-up call") {
    Harness h;
    const std::string ruri = "sip:0612345678@example.com";
    h.in(request("INVITE", ruri, "c1", 1, "z9hG4bK1"), 0);
    h.in(request("INVITE", ruri, "c1", 1, "z9hG4bK1"), 0.5);  // retransmission
    h.out(response(407, "INVITE", "c1", 1, "z9hG4bK1"), 0.6);
    h.in(request("INVITE", ruri, "c1", 2, "z9hG4bK2", kAuth), 1);
    h.out(response(180, "INVITE", "c1", 2, "z9hG4bK2"), 1.1);
    h.out(response(200, "INVITE", "c1", 2, "z9hG4bK2"), 3);
    h.out(response(200, "INVITE", "c1", 2, "z9hG4bK2"), 3.5);  // 2xx retransmission
    h.in(request("BYE", ruri, "c1", 3, "z9hG4bK3", "", "t1"), 63);
    CHECK(h.rec.log == std::vector<std::string>{"attempt INVITE c1 1001->33612345678 udp",
                                                "attempt INVITE c1 1001->33612345678 udp",
                                                "auth 1001 ok", "answer c1", "end c1 200"});
    CHECK(h.obs.counters()[sbc::ObserverEvent::retransmissions] == 1);
}

TEST_CASE("observer: failures, cancels and challenges that are not followed end the call") {
    Harness h;
    h.in(request("INVITE", "sip:100@x", "busy", 1, "b1"), 0, true);
    h.out(response(486, "INVITE", "busy", 1, "b1"), 1);
    h.in(request("INVITE", "sip:100@x", "cx", 1, "b2"), 2);
    h.in(request("CANCEL", "sip:100@x", "cx", 1, "b2"), 3);
    h.out(response(487, "INVITE", "cx", 1, "b2"), 3.1);
    h.in(request("INVITE", "sip:100@x", "ch", 1, "b3"), 4);
    h.out(response(407, "INVITE", "ch", 1, "b3"), 4.1);
    h.obs.expire(sbc::base::seconds(20), 0);  // the challenge may still be answered
    CHECK(h.rec.log.back() == "attempt INVITE ch 1001->100 udp");
    h.obs.expire(sbc::base::seconds(40), 0);
    CHECK(h.rec.log == std::vector<std::string>{"attempt INVITE busy 1001->100 tcp", "end busy 486",
                                                "attempt INVITE cx 1001->100 udp", "end cx 487",
                                                "attempt INVITE ch 1001->100 udp", "end ch 407"});
}

TEST_CASE("observer: a registration brute force gives auth failures and failed registrations") {
    Harness h;
    for (int i = 0; i < 3; ++i) {
        const std::string b = "r" + std::to_string(i);
        h.in(request("REGISTER", "sip:example.com", "reg", 2 * i + 1, b + "a"), i);
        h.out(response(401, "REGISTER", "reg", 2 * i + 1, b + "a"), i + 0.01);
        const std::string auth =
            "Authorization: Digest username=\"1001\", realm=\"r\", "
            "nonce=\"n\", uri=\"sip:x\", response=\"bad\"\r\n";
        h.in(request("REGISTER", "sip:example.com", "reg", 2 * i + 2, b + "b", auth), i + 0.1);
        h.out(response(i == 2 ? 200 : 403, "REGISTER", "reg", 2 * i + 2, b + "b"), i + 0.2);
    }
    CHECK(h.rec.log ==
          std::vector<std::string>{"register 1001 401", "auth 1001 fail", "register 1001 403",
                                   "register 1001 401", "auth 1001 fail", "register 1001 403",
                                   "register 1001 401", "auth 1001 ok", "register 1001 200"});
}

TEST_CASE("observer: 403 after a challenge is a failure; registrations without answer time out") {
    Harness h;
    h.in(request("REGISTER", "sip:example.com", "a", 1, "x1"), 0);
    h.out(response(401, "REGISTER", "a", 1, "x1"), 0.1);
    h.in(request("REGISTER", "sip:example.com", "a", 2, "x2"), 0.2);
    h.out(response(403, "REGISTER", "a", 2, "x2"), 0.3);
    h.in(request("REGISTER", "sip:example.com", "b", 1, "x3"), 1);
    h.obs.finish(sbc::base::seconds(2), 0);
    CHECK(h.rec.log == std::vector<std::string>{"register 1001 401", "auth 1001 fail",
                                                "register 1001 403", "register 1001 408"});
    CHECK(h.obs.counters()[sbc::ObserverEvent::timeouts] == 1);
}

TEST_CASE("observer: OPTIONS outside a dialog are requests; in-dialog requests are not") {
    Harness h;
    h.in(request("OPTIONS", "sip:200@x", "o1", 1, "o1"), 0);
    h.in(request("INFO", "sip:200@x", "o2", 1, "o2", "", "t9"), 0);
    h.out(response(404, "OPTIONS", "o1", 1, "o1"), 0.1);
    h.out(response(200, "OPTIONS", "nope", 1, "zz"), 0.1);
    CHECK(h.rec.log == std::vector<std::string>{"attempt OPTIONS o1 1001->200 udp"});
    CHECK(h.obs.counters()[sbc::ObserverEvent::unmatched_responses] == 1);
}

TEST_CASE("observer: tables are bounded and evictions counted") {
    sbc::ObserverLimits l;
    l.max_transactions = 4;
    l.max_calls = 2;
    Harness h(l);
    for (int i = 0; i < 10; ++i)
        h.in(request("INVITE", "sip:1@x", "k" + std::to_string(i), 1, "k" + std::to_string(i)), i);
    CHECK(h.obs.transactions() == 4);
    CHECK(h.obs.calls() == 2);
    CHECK(h.obs.counters()[sbc::ObserverEvent::transactions_evicted] == 6);
    CHECK(h.obs.counters()[sbc::ObserverEvent::calls_evicted] == 8);
}

TEST_CASE("observer helpers: account, registered user, callee") {
    sbc::sip::Message m;
    const std::string r = request("REGISTER", "sip:example.com", "h", 1, "h1",
                                  "Authorization: Digest username=\"alice\", realm=\"r\", "
                                  "nonce=\"n\", uri=\"sip:x\", response=\"0\"\r\n");
    REQUIRE(m.parse(r));
    CHECK(sbc::account_of(m) == "alice");
    CHECK(sbc::registered_user_of(m) == "1001");
    sbc::policy::Numbering n{"33", "0", "00"};
    CHECK(sbc::normalize_callee("0044 20 7946 0000", &n) == "442079460000");
    CHECK(sbc::normalize_callee("alice", &n) == "alice");
    CHECK(sbc::normalize_callee("0612345678", nullptr) == "0612345678");
    CHECK(sbc::transport_name(true, true) == "tls");
}

// The call observer: SIP messages of both directions in, fraud events out.
#include "sbc/call_observer.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sbc/cli.hpp"
#include "sbc/fraud_wiring.hpp"
#include "sbc/signaling/b2bua.hpp"
#include "signaling_fixture.hpp"

namespace {

using sbc::base::Endpoint;
using sbc::base::IpAddress;

struct Recorder : sbc::FraudEventSink {
    std::vector<std::string> log;
    void attempt(const sbc::fraud::CallAttempt& a) override {
        log.push_back("attempt " + std::string(name(a.request)) + " " + std::string(a.call_id) +
                      " " + std::string(a.account) + "->" + std::string(a.callee) + " " +
                      std::string(a.source.transport));
    }
    void answered(const sbc::fraud::CallAnswered& a) override {
        log.push_back("answer " + std::string(a.call_id));
    }
    void ended(const sbc::fraud::CallEnded& e) override {
        log.push_back("end " + std::string(e.call_id) + " " + std::string(name(e.outcome)));
    }
    void auth(const sbc::fraud::AuthResult& a) override {
        log.push_back(std::string("auth ") + std::string(a.username) +
                      (a.success ? " ok" : " fail"));
    }
    void registration(const sbc::fraud::Registration& r) override {
        log.push_back("register " + std::string(r.user) + " " + std::string(name(r.outcome)));
    }
};

using sbc::signaling::fixture::request;
using sbc::signaling::fixture::response;

const Endpoint kClient = sbc::signaling::fixture::endpoint(sbc::signaling::fixture::kOutside, 5062);
const Endpoint kSbc = sbc::signaling::fixture::endpoint(sbc::signaling::fixture::kSbcExternal,
                                                        sbc::signaling::fixture::kSipPort);

struct Harness {
    Recorder rec;
    sbc::policy::Numbering numbering{"33", "0", "00", "FR", {}};
    sbc::CallObserver obs;
    explicit Harness(sbc::ObserverLimits limits = {}) : obs(rec, &numbering, limits) {}
    void in(const std::string& text, double t, bool tcp = false) {
        feed(text, t, kClient, kSbc, tcp);
    }
    void out(const std::string& text, double t) { feed(text, t, kSbc, kClient, false); }
    void feed(const std::string& text, double t, Endpoint src, Endpoint dst, bool tcp) {
        const sbc::sip::Message m = sbc::signaling::fixture::parse(text);
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
    CHECK(h.rec.log == std::vector<std::string>{"attempt call c1 1001->33612345678 udp",
                                                "attempt call c1 1001->33612345678 udp",
                                                "auth 1001 ok", "answer c1", "end c1 answered"});
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
    CHECK(h.rec.log.back() == "attempt call ch 1001->100 udp");
    h.obs.expire(sbc::base::seconds(40), 0);
    CHECK(h.rec.log == std::vector<std::string>{"attempt call busy 1001->100 tcp", "end busy busy",
                                                "attempt call cx 1001->100 udp", "end cx cancelled",
                                                "attempt call ch 1001->100 udp",
                                                "end ch auth_challenge"});
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
          std::vector<std::string>{
              "register 1001 auth_challenge", "auth 1001 fail", "register 1001 auth_failure",
              "register 1001 auth_challenge", "auth 1001 fail", "register 1001 auth_failure",
              "register 1001 auth_challenge", "auth 1001 ok", "register 1001 answered"});
}

TEST_CASE("observer: 403 after a challenge is a failure; registrations without answer time out") {
    Harness h;
    h.in(request("REGISTER", "sip:example.com", "a", 1, "x1"), 0);
    h.out(response(401, "REGISTER", "a", 1, "x1"), 0.1);
    h.in(request("REGISTER", "sip:example.com", "a", 2, "x2"), 0.2);
    h.out(response(403, "REGISTER", "a", 2, "x2"), 0.3);
    h.in(request("REGISTER", "sip:example.com", "b", 1, "x3"), 1);
    h.obs.finish(sbc::base::seconds(2), 0);
    CHECK(h.rec.log == std::vector<std::string>{"register 1001 auth_challenge", "auth 1001 fail",
                                                "register 1001 auth_failure",
                                                "register 1001 timeout"});
    CHECK(h.obs.counters()[sbc::ObserverEvent::timeouts] == 1);
}

TEST_CASE("observer: OPTIONS outside a dialog are requests; in-dialog requests are not") {
    Harness h;
    h.in(request("OPTIONS", "sip:200@x", "o1", 1, "o1"), 0);
    h.in(request("INFO", "sip:200@x", "o2", 1, "o2", "", "t9"), 0);
    h.out(response(404, "OPTIONS", "o1", 1, "o1"), 0.1);
    h.out(response(200, "OPTIONS", "nope", 1, "zz"), 0.1);
    CHECK(h.rec.log == std::vector<std::string>{"attempt probe o1 1001->200 udp"});
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
    sbc::policy::Numbering n{"33", "0", "00", "FR", {}};
    CHECK(sbc::normalize_callee("0044 20 7946 0000", &n) == "442079460000");
    CHECK(sbc::normalize_callee("alice", &n) == "alice");
    CHECK(sbc::normalize_callee("0612345678", nullptr) == "0612345678");
    CHECK(sbc::transport_name(true, true) == "tls");
}

TEST_CASE("observer helpers: request kinds and outcomes of final statuses") {
    using sbc::fraud::Outcome;
    using sbc::fraud::RequestKind;
    CHECK(sbc::request_kind_of(sbc::sip::Method::invite) == RequestKind::call);
    CHECK(sbc::request_kind_of("OPTIONS") == RequestKind::probe);
    CHECK(sbc::request_kind_of("REGISTER") == RequestKind::registration);
    CHECK(sbc::request_kind_of("SUBSCRIBE") == RequestKind::subscription);
    CHECK(sbc::request_kind_of("FOO") == RequestKind::other);
    CHECK(sbc::outcome_of(200) == Outcome::answered);
    CHECK(sbc::outcome_of(202) == Outcome::answered);
    CHECK(sbc::outcome_of(486) == Outcome::busy);
    CHECK(sbc::outcome_of(600) == Outcome::busy);
    CHECK(sbc::outcome_of(487) == Outcome::cancelled);
    CHECK(sbc::outcome_of(408) == Outcome::timeout);
    CHECK(sbc::outcome_of(401) == Outcome::auth_challenge);
    CHECK(sbc::outcome_of(407) == Outcome::auth_challenge);
    CHECK(sbc::outcome_of(403) == Outcome::auth_failure);
    CHECK(sbc::outcome_of(404) == Outcome::not_found);
    CHECK(sbc::outcome_of(503) == Outcome::failed);
    CHECK(sbc::outcome_of(302) == Outcome::rejected);
    CHECK(sbc::outcome_of(480) == Outcome::rejected);
    CHECK(sbc::outcome_of(100) == Outcome::failed);
}

namespace {

// Scores every event with an engine of the scenario policy and keeps its JSON event line.
struct Scoring : sbc::FraudEventSink {
    std::unique_ptr<sbc::fraud::Engine> engine;
    std::vector<std::string> lines;
    explicit Scoring(const sbc::policy::Policy& p) {
        auto e = sbc::make_fraud_engine(p, "");
        REQUIRE(e);
        engine = std::move(*e);
    }
    void attempt(const sbc::fraud::CallAttempt& a) override {
        sbc::fraud::Verdict v;
        engine->on_attempt(a, v);
        lines.push_back(sbc::fraud::to_json(v, a));
    }
    void answered(const sbc::fraud::CallAnswered& a) override { engine->on_answer(a); }
    void ended(const sbc::fraud::CallEnded& e) override { engine->on_end(e); }
    void auth(const sbc::fraud::AuthResult& a) override {
        sbc::fraud::Verdict v;
        engine->on_auth(a, v);
        lines.push_back(sbc::fraud::to_json(v, a));
    }
    void registration(const sbc::fraud::Registration& r) override {
        sbc::fraud::Verdict v;
        engine->on_register(r, v);
        lines.push_back(sbc::fraud::to_json(v, r));
    }
};

std::vector<std::string> policy_test_lines(const std::vector<std::string>& events) {
    char path[] = "/tmp/sbc-observer-test-XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    std::string text;
    for (const auto& e : events) text += e + "\n";
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    std::ostringstream buf;
    auto* old = std::cout.rdbuf(buf.rdbuf());
    const int rc = sbc::cli::run_policy_test({SBC_SCENARIO_POLICY}, "", path, true);
    std::cout.rdbuf(old);
    unlink(path);
    CHECK(rc == 0);
    std::vector<std::string> lines;
    std::istringstream in(buf.str());
    for (std::string l; std::getline(in, l);) {
        if (l.find("\"event\":\"summary\"") != std::string::npos) continue;
        // The input's line number leads each verdict; the rest is the engine's event line.
        const std::string head = "{\"line\":";
        REQUIRE(l.starts_with(head));
        const auto comma = l.find(',');
        REQUIRE(comma != std::string::npos);
        lines.push_back("{" + l.substr(comma + 1));
    }
    return lines;
}

constexpr double kT = 7;
constexpr long long kWall = 1795777200;  // a Friday, 05:00 UTC

sbc::ObservedMessage at_client() {
    sbc::ObservedMessage at;
    at.source = kClient;
    at.destination = kSbc;
    at.now = static_cast<sbc::base::Nanos>(kT * 1e9);
    at.wall = kWall * sbc::base::kNanosPerSecond;
    return at;
}

}  // namespace

TEST_CASE("the front door, sbc policy test and replay give the same events for one message") {
    auto loaded = sbc::policy::load_policy({SBC_SCENARIO_POLICY});
    REQUIRE(loaded.ok());
    const auto& policy = *loaded.value;
    // Dialed nationally (normalized with [numbering]), credentials naming the account.
    const std::string inv =
        request("INVITE", "sip:0612345678@example.com", "same-1", 2, "z9hG4bKs1", kAuth);
    const std::string reg = request("REGISTER", "sip:example.com", "same-2", 1, "z9hG4bKs2");
    const std::string reg_answer = response(503, "REGISTER", "same-2", 1, "z9hG4bKs2");

    // The live front door's path: a new INVITE, a REGISTER with the answer it gets.
    Scoring live(policy);
    sbc::CallObserver live_obs(live, &policy.numbering);
    sbc::sip::Message m;
    REQUIRE(m.parse(inv));
    live_obs.request_offered(m, at_client());
    REQUIRE(m.parse(reg));
    live_obs.registration_answered(m, 503, at_client());

    // `sbc replay`'s path: the same messages (and the REGISTER's answer) observed passively.
    Scoring replay(policy);
    sbc::CallObserver replay_obs(replay, &policy.numbering);
    REQUIRE(m.parse(inv));
    replay_obs.observe(m, at_client());
    REQUIRE(m.parse(reg));
    replay_obs.observe(m, at_client());
    REQUIRE(m.parse(reg_answer));
    auto back = at_client();
    std::swap(back.source, back.destination);
    replay_obs.observe(m, back);

    // `sbc policy test`'s path: the messages as "sip" events.
    auto sip_event = [](const std::string& text, const Endpoint& src, const Endpoint& dst) {
        return nlohmann::json{{"type", "sip"},          {"t", kT},
                              {"wall", kWall},          {"src", src.to_string()},
                              {"dst", dst.to_string()}, {"message", text}}
            .dump();
    };
    const auto cli =
        policy_test_lines({sip_event(inv, kClient, kSbc), sip_event(reg, kClient, kSbc),
                           sip_event(reg_answer, kSbc, kClient)});

    REQUIRE(live.lines.size() == 2);
    CHECK(live.lines[0].find("\"to\":\"33612345678\"") != std::string::npos);
    CHECK(live.lines[0].find("\"account\":\"1001\"") != std::string::npos);
    CHECK(live.lines[0].find("\"ua\":\"softphone\"") != std::string::npos);
    CHECK(live.lines[0].find("\"src\":\"198.51.100.7:5062\"") != std::string::npos);
    CHECK(live.lines[1].find("\"outcome\":\"failed\"") != std::string::npos);
    CHECK(replay.lines == live.lines);
    CHECK(cli == live.lines);
}

namespace {

namespace sig = sbc::signaling;

struct Wire final : sig::Wire {
    std::vector<std::pair<sig::Flow, std::string>> sent;
    bool send(const sig::Flow& f, std::string_view b) override {
        sent.emplace_back(f, std::string(b));
        return true;
    }
    std::string last_to(std::uint16_t port) const {
        for (auto it = sent.rbegin(); it != sent.rend(); ++it)
            if (it->first.remote.port == port) return it->second;
        return {};
    }
};

struct Media final : sig::MediaAnchor {
    sbc::base::Result<Endpoint> anchor(std::uint64_t, std::size_t, sig::Side, const Endpoint&, bool,
                                       sbc::base::Nanos) override {
        return Endpoint{*IpAddress::parse("203.0.113.1"), 30000};
    }
    void release(std::uint64_t) override {}
};

// The front door's wiring of the call hooks, on a virtual clock.
struct Hooks final : sig::CallHooks {
    sbc::CallObserver& obs;
    sbc::base::Nanos now = 0;
    explicit Hooks(sbc::CallObserver& o) : obs(o) {}
    sig::Admission admit(const sbc::sip::Message&, const sig::Flow&, sig::Side) override {
        return {};
    }
    void on_answered(const sig::CallInfo& c) override { obs.call_answered(c, now, now); }
    void on_ended(const sig::CallInfo& c, sig::CallEnd how) override {
        obs.call_ended(c, how, now, now);
    }
    void on_response_relayed(const sig::CallInfo& c, int status) override {
        obs.response_relayed(c, status, now, now);
    }
};

// The inside's answer to the request the SBC sent there.
std::string inside_answer(const std::string& req, int status) {
    sbc::sip::Message m;
    REQUIRE(m.parse(req));
    std::string s = "SIP/2.0 " + std::to_string(status) + " X\r\n";
    for (const auto& h : m.headers())
        if (h.id == sbc::sip::HeaderId::via || h.id == sbc::sip::HeaderId::from ||
            h.id == sbc::sip::HeaderId::call_id || h.id == sbc::sip::HeaderId::cseq)
            s += h.line;
    s += "To: " + std::string(m.to()->raw) + ";tag=in1\r\nContent-Length: 0\r\n\r\n";
    return s;
}

}  // namespace

TEST_CASE("an authentication refused inside and relayed by the B2BUA reaches the fraud engine") {
    // One failed authentication from a source is enough to block it.
    sbc::fraud::EngineConfig cfg;
    sbc::fraud::Rule r;
    r.id = "auth-fail";
    r.feature = sbc::fraud::Feature::auth_failures;
    r.key = sbc::fraud::KeyKind::source_ip;
    r.threshold = 1;
    r.weight = 70;
    cfg.rules.push_back(r);
    auto engine = sbc::fraud::Engine::create(cfg);
    REQUIRE(engine);
    struct Sink : Recorder {
        sbc::fraud::Engine* e = nullptr;
        std::vector<sbc::fraud::Action> auth_verdicts;
        void auth(const sbc::fraud::AuthResult& a) override {
            Recorder::auth(a);
            sbc::fraud::Verdict v;
            e->on_auth(a, v);
            auth_verdicts.push_back(v.action);
        }
    } sink;
    sink.e = engine->get();
    sbc::CallObserver obs(sink, nullptr);

    sig::B2buaConfig c;
    c.external.host = "203.0.113.1";
    c.external.port = 5060;
    c.external.media_host = "203.0.113.1";
    c.external.listener = 0;
    c.internal.host = "10.0.0.1";
    c.internal.port = 5060;
    c.internal.media_host = "10.0.0.1";
    c.internal.listener = 1;
    c.internal.next_hops.push_back({*IpAddress::parse("10.0.0.2"), 5080});
    c.health.enabled = false;
    Wire wire;
    Media media;
    Hooks hooks(obs);
    sig::B2bua b2b(c, wire, media, hooks);
    sig::Flow caller;
    caller.remote = kClient;
    caller.listener = 0;
    sig::Flow proxy;
    proxy.remote = {*IpAddress::parse("10.0.0.2"), 5080};
    proxy.listener = 1;
    auto feed = [&](const std::string& text, const sig::Flow& f, sig::Side side, double t) {
        sbc::sip::Message m;
        REQUIRE(m.parse(text));
        hooks.now = static_cast<sbc::base::Nanos>(t * 1e9);
        b2b.receive(m, f, side, hooks.now);
    };

    // No credentials: the inside asks for them, the caller is told so.
    const std::string ruri = "sip:0612345678@203.0.113.1";
    feed(request("INVITE", ruri, "b2b-1", 1, "z9hG4bKa1"), caller, sig::Side::external, 0);
    const std::string out1 = wire.last_to(5080);
    REQUIRE(!out1.empty());
    feed(inside_answer(out1, 407), proxy, sig::Side::internal, 0.1);
    // With credentials the inside refuses.
    feed(request("INVITE", ruri, "b2b-1", 2, "z9hG4bKa2", kAuth), caller, sig::Side::external, 1);
    const std::string out2 = wire.last_to(5080);
    REQUIRE(out2 != out1);
    feed(inside_answer(out2, 403), proxy, sig::Side::internal, 1.1);

    CHECK(sink.log == std::vector<std::string>{"end b2b-1 auth_challenge", "auth 1001 fail",
                                               "end b2b-1 auth_failure"});
    REQUIRE(sink.auth_verdicts.size() == 1);
    CHECK(sink.auth_verdicts[0] == sbc::fraud::Action::block);
    CHECK((*engine)->counters()[sbc::fraud::Counter::auth_events] == 1);
    // The caller got the inside's answers.
    sbc::sip::Message last;
    const std::string back = wire.last_to(kClient.port);
    REQUIRE(last.parse(back));
    CHECK(last.status_code() == 403);
}

TEST_CASE("live: a challenge answered without credentials, then 403, is a failure") {
    Recorder rec;
    sbc::CallObserver obs(rec, nullptr);
    sbc::signaling::CallInfo c;
    c.from = sbc::signaling::Side::external;
    c.source.remote = kClient;
    c.caller = "1001";
    c.call_id = "x";
    obs.response_relayed(c, 407, 0, 0);
    obs.response_relayed(c, 403, 1, 0);
    c.from = sbc::signaling::Side::internal;  // calls from inside are not fraud events
    obs.response_relayed(c, 403, 2, 0);
    obs.call_ended(c, sbc::signaling::CallEnd::rejected, 2, 0);
    c.from = sbc::signaling::Side::external;
    c.final_status = 486;
    obs.call_ended(c, sbc::signaling::CallEnd::rejected, 3, 0);
    c.final_status = 0;
    obs.call_ended(c, sbc::signaling::CallEnd::timeout, 3, 0);
    obs.call_ended(c, sbc::signaling::CallEnd::blocked, 3, 0);
    c.answered = 5;
    obs.call_ended(c, sbc::signaling::CallEnd::bye_caller, 6, 0);
    CHECK(rec.log == std::vector<std::string>{"auth 1001 fail", "end x busy", "end x timeout",
                                              "end x answered"});
}

TEST_CASE(
    "observer: caller from P-Asserted-Identity, direction from trunks and internal networks") {
    const auto policy = sbc::policy::load_policy_from_string(R"([access]
internal = ["10.0.0.0/8"]
[[access.trusted]]
name = "carrier"
cidrs = ["198.51.100.0/28"]
[numbering]
default_country_code = "33"
)",
                                                             "t.toml");
    REQUIRE(policy.ok());
    const auto& access = policy.value->access;
    const auto& numbering = policy.value->numbering;
    sbc::sip::Message m;
    const std::string inv = request("INVITE", "sip:0140000000@example.com", "pai", 1, "p1",
                                    "P-Asserted-Identity: \"Caller\" <tel:+18765550042>\r\n");
    REQUIRE(m.parse(inv));
    CHECK(sbc::calling_user_of(m) == "+18765550042");
    sbc::ObservedMessage at;
    at.source = kClient;  // 198.51.100.7: the trusted trunk
    std::string callee, caller;
    auto a = sbc::attempt_of(m, at, &numbering, callee, caller, &access);
    CHECK(a.caller == "18765550042");
    CHECK(a.callee == "33140000000");
    CHECK(a.direction == sbc::fraud::Direction::inbound);
    CHECK(a.trusted);
    // Without a P-Asserted-Identity: the From user.
    sbc::sip::Message plain;
    REQUIRE(plain.parse(request("INVITE", "sip:204@example.com", "x", 1, "x1")));
    CHECK(sbc::calling_user_of(plain) == "1001");
    // From an office network: an extension is internal, a number outbound.
    at.source = {*IpAddress::parse("10.2.3.4"), 5060};
    a = sbc::attempt_of(plain, at, &numbering, callee, caller, &access);
    CHECK(a.direction == sbc::fraud::Direction::internal);
    CHECK_FALSE(a.trusted);
    a = sbc::attempt_of(m, at, &numbering, callee, caller, &access);
    CHECK(a.direction == sbc::fraud::Direction::outbound);
    // From the outside (a remote user): outbound.
    at.source = {*IpAddress::parse("192.0.2.50"), 5060};
    a = sbc::attempt_of(plain, at, &numbering, callee, caller, &access);
    CHECK(a.direction == sbc::fraud::Direction::outbound);
    // No policy: no trust, no internal networks.
    at.source = kClient;
    a = sbc::attempt_of(m, at, &numbering, callee, caller, nullptr);
    CHECK(a.direction == sbc::fraud::Direction::outbound);
    CHECK_FALSE(a.trusted);
}

TEST_CASE("observer: authentication results and registrations carry the attempts' direction") {
    const auto policy = sbc::policy::load_policy_from_string(R"([access]
internal = ["10.0.0.0/8"]
[[access.trusted]]
name = "carrier"
cidrs = ["198.51.100.0/28"]
)",
                                                             "t.toml");
    REQUIRE(policy.ok());
    struct Directions : sbc::FraudEventSink {
        std::vector<std::string> log;
        void attempt(const sbc::fraud::CallAttempt&) override {}
        void answered(const sbc::fraud::CallAnswered&) override {}
        void ended(const sbc::fraud::CallEnded&) override {}
        void auth(const sbc::fraud::AuthResult& a) override {
            log.push_back("auth " + std::string(name(a.direction)) + (a.trusted ? " trusted" : ""));
        }
        void registration(const sbc::fraud::Registration& r) override {
            log.push_back("register " + std::string(name(r.direction)) +
                          (r.trusted ? " trusted" : ""));
        }
    } rec;
    sbc::policy::Numbering numbering{"33", "0", "00", "FR", {}};
    sbc::CallObserver obs(rec, &numbering);
    obs.set_access(&policy.value->access);
    const std::string auth =
        "Authorization: Digest username=\"1001\", realm=\"r\", "
        "nonce=\"n\", uri=\"sip:x\", response=\"bad\"\r\n";
    int n = 0;
    for (const char* from : {"10.1.2.3", "192.0.2.50", "198.51.100.7"}) {
        const Endpoint src{*IpAddress::parse(from), 5062};
        const std::string b = "d" + std::to_string(++n);
        auto feed = [&](const std::string& text, Endpoint s, Endpoint d) {
            sbc::sip::Message m;
            REQUIRE(m.parse(text));
            sbc::ObservedMessage at;
            at.source = s;
            at.destination = d;
            at.now = n * sbc::base::kNanosPerSecond;
            obs.observe(m, at);
        };
        feed(request("REGISTER", "sip:example.com", "reg" + b, 1, b, auth), src, kSbc);
        feed(response(403, "REGISTER", "reg" + b, 1, b), kSbc, src);
    }
    CHECK(rec.log == std::vector<std::string>{"auth internal", "register internal", "auth outbound",
                                              "register outbound", "auth inbound trusted",
                                              "register inbound trusted"});
}

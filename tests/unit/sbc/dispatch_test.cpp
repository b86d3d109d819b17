// The front door's parse-and-dispatch without I/O: a fake wire, a fake call core and the owner's
// decisions (trusted sources, screening, verdicts) set per test.
#include "sbc/signaling/dispatch.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "signaling_fixture.hpp"

using namespace sbc;
using namespace sbc::signaling;
using namespace sbc::signaling::fixture;

namespace {

struct FakeCore final : DispatchCore {
    struct Received {
        std::string method;  // "" for a response
        int status = 0;
        Side side = Side::external;
        Flow flow;
        Admission admission;  // what the dispatcher had decided when it came
    };
    const Dispatcher* dispatcher = nullptr;
    std::vector<Received> received;
    std::set<std::string> calls;  // Call-IDs of calls in progress
    bool registrar = false;
    void receive(const sip::Message& m, const Flow& from, Side side, base::Nanos) override {
        received.push_back({m.is_request() ? std::string(m.method_name()) : std::string(),
                            m.is_request() ? 0 : m.status_code(), side, from,
                            dispatcher->admission()});
    }
    bool has_call(Side, std::string_view call_id) const override {
        return calls.count(std::string(call_id)) > 0;
    }
    bool registrations() const override { return registrar; }
};

struct Owner final : DispatchHooks {
    bool trust = false;
    bool screen_refuses = false;
    Admission verdict;
    std::vector<std::string> screened, scored, answers;
    bool trusted(const base::IpAddress&) override { return trust; }
    bool screen(const sip::Message& m, const Arrival&) override {
        screened.emplace_back(m.method_name());
        return screen_refuses;
    }
    Admission score(const sip::Message& m, const Arrival&) override {
        scored.emplace_back(m.method_name());
        return verdict;
    }
    void answered(const sip::Message&, const Arrival&, std::string_view response) override {
        answers.emplace_back(response);
    }
};

struct Rig {
    FakeWire wire;
    Owner owner;
    FakeCore core;
    Dispatcher d{wire, owner};
    explicit Rig(bool with_core) {
        core.dispatcher = &d;
        if (with_core) d.set_core(&core);
    }
    Dispatcher::Dispatched in(const std::string& bytes, Side side = Side::external,
                              bool uniform = false, bool known = true) {
        Arrival a;
        a.flow = udp_flow(kOutside, 5062, side == Side::external ? 0 : 1);
        a.local = endpoint(side == Side::external ? kSbcExternal : kSbcInternal, kSipPort);
        a.side = side;
        a.uniform = uniform;
        a.listener_known = known;
        a.now = base::seconds(1);
        return d.dispatch(bytes, a);
    }
    int last_status() const {
        REQUIRE(!wire.sent.empty());
        return parse(wire.sent.back().bytes).status_code();
    }
};

std::string invite(const std::string& call_id = "c1", const std::string& to_tag = "") {
    return request("INVITE", "sip:+442071234567@203.0.113.1", call_id, 1, "z9hG4bKi" + call_id, "",
                   to_tag);
}

}  // namespace

TEST_CASE("dispatch: a malformed message is a counted drop, nothing is sent") {
    Rig r(true);
    const auto d = r.in("INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n");
    CHECK(d.kind == Dispatcher::Dispatched::Kind::malformed);
    CHECK(r.d.events()[DispatchEvent::malformed] == 1);
    std::uint64_t reasons = 0;
    for (auto v : r.d.malformed().values) reasons += v;
    CHECK(reasons == 1);
    CHECK(r.wire.sent.empty());
    CHECK(r.core.received.empty());
    // A request missing Call-ID parses but fails the checks before dispatch (RFC 3261 §8.2).
    std::string no_call_id = request("OPTIONS", "sip:203.0.113.1", "x", 1, "z9hG4bKo");
    no_call_id.erase(no_call_id.find("Call-ID: x\r\n"), 12);
    CHECK(r.in(no_call_id).kind == Dispatcher::Dispatched::Kind::malformed);
    CHECK(r.d.events()[DispatchEvent::malformed] == 2);
    CHECK(r.wire.sent.empty());
}

TEST_CASE("dispatch: without a call core, the placeholder answer; a CANCEL gets 481, ACK nothing") {
    Rig r(false);
    const auto d = r.in(request("OPTIONS", "sip:203.0.113.1", "o1", 1, "z9hG4bKo1"));
    CHECK(d.kind == Dispatcher::Dispatched::Kind::request);
    CHECK(d.method == static_cast<std::size_t>(sip::Method::options));
    REQUIRE(r.wire.sent.size() == 1);
    const Sent first = r.wire.sent[0];
    CHECK(first.flow.remote == endpoint(kOutside, 5062));
    const sip::Message m = parse(first.bytes);
    CHECK(m.status_code() == 503);
    CHECK(first.bytes.find("Retry-After: 60\r\n") != std::string::npos);
    REQUIRE(m.to());
    CHECK_FALSE(m.to()->tag.empty());
    CHECK(r.owner.answers == std::vector<std::string>{first.bytes});
    // A retransmission gets the same response, To tag included (RFC 3261 §8.2.6.2).
    r.in(request("OPTIONS", "sip:203.0.113.1", "o1", 1, "z9hG4bKo1"));
    REQUIRE(r.wire.sent.size() == 2);
    CHECK(r.wire.sent[1].bytes == first.bytes);

    r.d.placeholder() = {480, "Temporarily Unavailable", 0};
    r.in(invite());
    CHECK(r.last_status() == 480);
    CHECK(r.wire.sent.back().bytes.find("Retry-After") == std::string::npos);

    r.in(request("CANCEL", "sip:+442071234567@203.0.113.1", "c9", 1, "z9hG4bKc9"));
    CHECK(r.last_status() == 481);
    const std::size_t before = r.wire.sent.size();
    r.in(request("ACK", "sip:+442071234567@203.0.113.1", "c9", 1, "z9hG4bKc9"));
    CHECK(r.wire.sent.size() == before);
    CHECK(r.d.events()[DispatchEvent::not_answered] == 1);
    CHECK(r.d.events()[DispatchEvent::answered] == 4);
    CHECK(r.d.requests_of(static_cast<std::size_t>(sip::Method::options)) == 2);
    CHECK(r.core.received.empty());
}

TEST_CASE("dispatch: requests and responses go to the call core; inside requests are not scored") {
    Rig r(true);
    r.in(invite());
    REQUIRE(r.core.received.size() == 1);
    CHECK(r.core.received[0].method == "INVITE");
    CHECK(r.owner.scored == std::vector<std::string>{"INVITE"});
    CHECK(r.owner.screened == std::vector<std::string>{"INVITE"});
    CHECK(r.wire.sent.empty());

    const auto d = r.in(response(180, "INVITE", "c1", 1, "z9hG4bKic1"), Side::internal);
    CHECK(d.kind == Dispatcher::Dispatched::Kind::response);
    CHECK(d.status == 180);
    REQUIRE(r.core.received.size() == 2);
    CHECK(r.core.received[1].status == 180);
    CHECK(r.core.received[1].side == Side::internal);

    r.in(invite("out1"), Side::internal);
    REQUIRE(r.core.received.size() == 3);
    CHECK(r.core.received[2].flow.listener == 1);
    CHECK(r.owner.scored.size() == 1);  // the inside's INVITE was not scored
    CHECK(r.d.events()[DispatchEvent::responses] == 1);
    CHECK(r.d.events()[DispatchEvent::requests] == 2);

    // A listener the owner does not know: nothing reaches the core; the answer's send fails.
    r.wire.accept = false;
    r.in(invite("lost"), Side::external, false, false);
    CHECK(r.core.received.size() == 3);
    CHECK(r.d.events()[DispatchEvent::answered] == 0);
}

TEST_CASE("dispatch: verdicts flag, block, and block uniformly on a listener that has it") {
    Rig r(true);
    r.owner.verdict.kind = Admission::Kind::flag;
    r.owner.verdict.flag_value = "score=40; rules=r1";
    r.in(invite("f1"));
    REQUIRE(r.core.received.size() == 1);
    CHECK(r.core.received[0].admission.kind == Admission::Kind::flag);
    CHECK(r.core.received[0].admission.flag_value == "score=40; rules=r1");
    CHECK_FALSE(r.core.received[0].admission.known_source);

    r.owner.verdict = {};
    r.owner.verdict.kind = Admission::Kind::block;
    r.in(invite("b1"));
    CHECK(r.core.received.size() == 1);
    CHECK(r.last_status() == 403);
    CHECK(r.d.events()[DispatchEvent::answered_403] == 1);

    // Enumeration resistance: the core answers the refusal as it answers every user.
    r.in(invite("u1"), Side::external, true);
    REQUIRE(r.core.received.size() == 2);
    CHECK(r.core.received[1].admission.kind == Admission::Kind::block);
    CHECK(r.core.received[1].admission.uniform);
    CHECK(r.d.events()[DispatchEvent::refused_uniform] == 1);
    CHECK(r.d.events()[DispatchEvent::answered_403] == 1);

    // A trusted source is neither screened nor uniform, and its admission says so.
    r.owner.verdict = {};
    r.owner.trust = true;
    r.owner.screened.clear();
    r.in(invite("t1"), Side::external, true);
    REQUIRE(r.core.received.size() == 3);
    CHECK(r.core.received[2].admission.known_source);
    CHECK_FALSE(r.core.received[2].admission.uniform);
    CHECK(r.owner.screened.empty());
}

TEST_CASE("dispatch: a stranger refused by screening gets 403 and is not scored") {
    Rig r(true);
    r.owner.screen_refuses = true;
    r.in(request("REGISTER", "sip:pbx.example", "r1", 1, "z9hG4bKr1"));
    CHECK(r.last_status() == 403);
    CHECK(r.owner.scored.empty());
    CHECK(r.core.received.empty());
}

TEST_CASE(
    "dispatch: what is scored: REGISTER only without the registrar proxy, probes of strangers") {
    Rig r(true);
    r.in(request("REGISTER", "sip:pbx.example", "r1", 1, "z9hG4bKr1"));
    r.core.registrar = true;
    r.in(request("REGISTER", "sip:pbx.example", "r2", 1, "z9hG4bKr2"));
    r.in(request("OPTIONS", "sip:203.0.113.1", "o1", 1, "z9hG4bKo1"));
    r.in(request("MESSAGE", "sip:203.0.113.1", "m1", 1, "z9hG4bKm1"));
    r.in(request("BYE", "sip:203.0.113.1", "c1", 2, "z9hG4bKb1", "", "t9"));
    r.in(invite("in-dialog", "t9"));  // a re-INVITE: the call's, not scored again
    r.owner.trust = true;
    r.in(request("OPTIONS", "sip:203.0.113.1", "o2", 1, "z9hG4bKo2"));
    CHECK(r.owner.scored == std::vector<std::string>{"REGISTER", "OPTIONS", "MESSAGE"});
    CHECK(r.core.received.size() == 7);
}

TEST_CASE("dispatch: draining refuses new INVITEs with 503, not those of calls in progress") {
    Rig r(true);
    r.d.set_draining(true, 30);
    r.in(invite("new"));
    CHECK(r.last_status() == 503);
    CHECK(r.wire.sent.back().bytes.find("Retry-After: 30\r\n") != std::string::npos);
    CHECK(r.d.events()[DispatchEvent::refused_draining] == 1);
    CHECK(r.core.received.empty());
    r.core.calls.insert("held");
    r.in(invite("held"));           // a retransmission of a call the core holds
    r.in(invite("other", "tag1"));  // in-dialog
    r.in(request("BYE", "sip:203.0.113.1", "z", 2, "z9hG4bKz", "", "t1"));
    CHECK(r.core.received.size() == 3);
    CHECK(r.d.events()[DispatchEvent::refused_draining] == 1);
    r.d.set_draining(false, 0);
    r.in(invite("after"));
    CHECK(r.core.received.size() == 4);
    const std::string stats = r.d.stats_text();
    CHECK(stats.find("sip.refused_draining=1\n") != std::string::npos);
    CHECK(stats.find("sip.method.INVITE=4\n") != std::string::npos);
}

// The transaction layer (RFC 3261 §17, RFC 6026) driven by a time the test moves.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "sbc/signaling/transaction.hpp"

using namespace sbc;
using namespace sbc::signaling;
using base::millis;
using base::seconds;

namespace {

struct Event {
    std::string what;
    TxId tx;
    int status = 0;
    TimeoutKind kind = TimeoutKind::no_response;
};

struct User final : TransactionUser {
    std::vector<std::string> sent;
    std::vector<Event> events;
    bool fail_sends = false;
    bool send(const Flow&, std::string_view bytes) override {
        if (fail_sends) return false;
        sent.emplace_back(bytes);
        return true;
    }
    void on_request(TxId tx, const sip::Message& m, const Flow&) override {
        events.push_back({"request:" + std::string(m.method_name()), tx});
    }
    void on_ack(TxId tx, const sip::Message&, const Flow&) override {
        events.push_back({"ack", tx});
    }
    void on_cancel(TxId tx, const sip::Message&) override { events.push_back({"cancel", tx}); }
    void on_response(TxId tx, const sip::Message& m) override {
        events.push_back({"response", tx, m.status_code()});
    }
    void on_timeout(TxId tx, TimeoutKind k) override { events.push_back({"timeout", tx, 0, k}); }
    void on_terminated(TxId tx) override { events.push_back({"terminated", tx}); }
    std::size_t count(std::string_view what) const {
        std::size_t n = 0;
        for (const auto& e : events) n += e.what == what;
        return n;
    }
    int last_sent_status() const {
        sip::Message m;
        if (sent.empty() || !m.parse(sent.back()).ok || m.is_request()) return 0;
        return m.status_code();
    }
};

Flow udp_flow() {
    Flow f;
    f.transport = Transport::udp;
    f.remote.addr = *base::IpAddress::parse("198.51.100.7");
    f.remote.port = 5060;
    return f;
}

Flow tcp_flow() {
    Flow f = udp_flow();
    f.transport = Transport::tcp;
    f.connection = 9;
    return f;
}

std::string request(std::string_view method, std::string_view branch,
                    std::string_view cseq_method = {}, std::string_view to_tag = {}, int cseq = 1) {
    std::string s(method);
    s += " sip:+15551234@sbc.example.com SIP/2.0\r\n";
    s += "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=";
    s += branch;
    s += ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=ft\r\nTo: "
         "<sip:+15551234@sbc.example.com>";
    if (!to_tag.empty()) {
        s += ";tag=";
        s += to_tag;
    }
    s += "\r\nCall-ID: call-1\r\nCSeq: " + std::to_string(cseq) + " ";
    s += cseq_method.empty() ? method : cseq_method;
    s += "\r\nContact: <sip:alice@198.51.100.7>\r\nContent-Length: 0\r\n\r\n";
    return s;
}

sip::Message parse(const std::string& bytes) {
    sip::Message m;
    REQUIRE(m.parse_owned(bytes).ok);
    return m;
}

// A response to `req` (a request text) as a peer would send it.
std::string response_to(const std::string& req, int status, std::string_view to_tag = "peer") {
    sip::Message m = parse(req);
    sip::ResponseOptions o;
    o.to_tag = to_tag;
    return sip::build_response(m, status, {}, o);
}

void feed(TransactionLayer& layer, const std::string& bytes, base::Nanos now, Flow f = udp_flow()) {
    sip::Message m = parse(bytes);
    layer.receive(m, f, now);
}

}  // namespace

TEST_CASE("server INVITE: 100 at once, retransmissions absorbed, non-2xx retransmitted until ACK") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKs1");
    sip::Message m = parse(inv);
    CHECK(layer.receive(m, udp_flow(), 0) == TransactionLayer::Received::new_request);
    REQUIRE(u.sent.size() == 1);
    CHECK(u.last_sent_status() == 100);
    REQUIRE(u.count("request:INVITE") == 1);
    const TxId tx = u.events[0].tx;
    CHECK(layer.state(tx) == TxState::proceeding);

    CHECK(layer.receive(m, udp_flow(), millis(300)) == TransactionLayer::Received::retransmission);
    CHECK(u.sent.size() == 2);  // the 100 again
    CHECK(u.count("request:INVITE") == 1);

    REQUIRE(layer.respond(tx, 486, {}, {}, millis(400)));
    CHECK(u.last_sent_status() == 486);
    CHECK(layer.state(tx) == TxState::completed);
    // Timer G: T1, 2T1, 4T1, then capped at T2.
    layer.advance(millis(899));
    CHECK(u.sent.size() == 3);
    layer.advance(millis(900));
    CHECK(u.sent.size() == 4);
    layer.advance(millis(1900));
    CHECK(u.sent.size() == 5);
    layer.advance(millis(3900));
    CHECK(u.sent.size() == 6);
    layer.advance(millis(7900));
    CHECK(u.sent.size() == 7);
    layer.advance(millis(11900));
    CHECK(u.sent.size() == 8);  // +T2, not +8 s

    // The ACK of the non-2xx: same branch, Confirmed, no more retransmissions, gone after T4.
    feed(layer, request("ACK", "z9hG4bKs1", {}, "x"), millis(12000));
    CHECK(layer.state(tx) == TxState::confirmed);
    CHECK(u.count("ack") == 0);  // absorbed by the transaction, not the user's
    layer.advance(millis(16999));
    CHECK(u.sent.size() == 8);
    CHECK(layer.state(tx) == TxState::confirmed);
    layer.advance(millis(17000));
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(layer.size() == 0);
    CHECK(u.count("timeout") == 0);
}

TEST_CASE("server INVITE: a final response without ACK times out at 64*T1 (Timer H)") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKh"), 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.respond(tx, 603, {}, {}, 0));
    layer.advance(seconds(31.9));
    CHECK(layer.state(tx) == TxState::completed);
    layer.advance(seconds(32));
    CHECK(layer.state(tx) == TxState::terminated);
    REQUIRE(u.count("timeout") == 1);
    CHECK(layer.counters()[TxCounter::ack_timeouts] == 1);
}

TEST_CASE("server INVITE: a bounded non-2xx final is retransmitted twice, then only on request") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKbound");
    feed(layer, inv, 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.limit_final_retransmissions(tx, 2));
    REQUIRE(layer.respond(tx, 401, {}, {}, 0));
    const std::size_t after_final = u.sent.size();  // the 100 and the 401
    // Timer G at T1 and 2T1 (two retransmissions), then nothing until Timer H.
    layer.advance(millis(500));
    CHECK(u.sent.size() == after_final + 1);
    layer.advance(millis(1500));
    CHECK(u.sent.size() == after_final + 2);
    CHECK(layer.counters()[TxCounter::finals_capped] == 0);
    layer.advance(millis(3500));
    CHECK(u.sent.size() == after_final + 2);
    CHECK(layer.counters()[TxCounter::finals_capped] == 1);
    layer.advance(seconds(20));
    CHECK(u.sent.size() == after_final + 2);
    CHECK(layer.state(tx) == TxState::completed);
    // A retransmitted INVITE still gets the final once: one datagram for one.
    feed(layer, inv, seconds(21));
    CHECK(u.sent.size() == after_final + 3);
    CHECK(u.last_sent_status() == 401);
    layer.advance(seconds(25));
    CHECK(u.sent.size() == after_final + 3);
    // The ACK is still absorbed (Confirmed, then gone after T4), never the user's.
    feed(layer, request("ACK", "z9hG4bKbound", {}, "x"), seconds(26));
    CHECK(layer.state(tx) == TxState::confirmed);
    CHECK(u.count("ack") == 0);
    layer.advance(seconds(31));
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(u.count("timeout") == 0);
    CHECK(u.sent.size() == after_final + 3);
    CHECK(layer.counters()[TxCounter::finals_capped] == 1);
}

TEST_CASE("server INVITE: a bounded final without ACK stays quiet and ends at Timer H") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKquiet"), 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.limit_final_retransmissions(tx, 0));
    REQUIRE(layer.respond(tx, 403, {}, {}, 0));
    const std::size_t after_final = u.sent.size();
    layer.advance(seconds(31.9));
    CHECK(u.sent.size() == after_final);
    CHECK(layer.state(tx) == TxState::completed);
    layer.advance(seconds(32));
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(u.count("timeout") == 1);
    CHECK(layer.counters()[TxCounter::ack_timeouts] == 1);
    // Only server INVITEs take a bound.
    feed(layer, request("OPTIONS", "z9hG4bKopt"), seconds(33));
    CHECK_FALSE(layer.limit_final_retransmissions(u.events.back().tx, 2));
}

TEST_CASE("server INVITE: the bound leaves a 2xx's retransmissions alone") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKok"), 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.limit_final_retransmissions(tx, 0));
    sip::ResponseOptions o;
    o.to_tag = "sbctag";
    REQUIRE(layer.respond(tx, 200, {}, o, 0));
    const std::size_t after_200 = u.sent.size();
    layer.advance(millis(500));
    layer.advance(millis(1500));
    CHECK(u.sent.size() == after_200 + 2);
}

TEST_CASE("server INVITE: a 2xx is retransmitted until its ACK, which goes to the user once") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bK2xx");
    feed(layer, inv, 0, tcp_flow());
    const TxId tx = u.events[0].tx;
    sip::ResponseOptions o;
    o.to_tag = "sbctag";
    REQUIRE(layer.respond(tx, 200, {}, o, millis(100)));
    CHECK(layer.state(tx) == TxState::accepted);
    const std::size_t after_200 = u.sent.size();
    // Retransmitted even over TCP (RFC 3261 §13.3.1.4).
    layer.advance(millis(600));
    CHECK(u.sent.size() == after_200 + 1);
    // An INVITE retransmission in Accepted is absorbed without a response.
    feed(layer, inv, millis(700), tcp_flow());
    CHECK(u.sent.size() == after_200 + 1);
    // The ACK has a branch of its own; it matches by dialog.
    const std::string ack = request("ACK", "z9hG4bKnewbranch", {}, "sbctag");
    feed(layer, ack, millis(800), tcp_flow());
    REQUIRE(u.count("ack") == 1);
    CHECK(u.events.back().tx == tx);
    feed(layer, ack, millis(900), tcp_flow());
    CHECK(u.count("ack") == 1);
    layer.advance(seconds(10));
    CHECK(u.sent.size() == after_200 + 1);  // no retransmission after the ACK
    CHECK(layer.state(tx) == TxState::accepted);
    layer.advance(millis(100) + seconds(32));  // Timer L
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(u.count("timeout") == 0);
}

TEST_CASE("server INVITE: a 2xx never acknowledged ends with no_ack after 64*T1") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKnoack"), 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.respond(tx, 200, {}, {}, 0));
    layer.advance(seconds(32));
    REQUIRE(u.count("timeout") == 1);
    CHECK(u.events[u.events.size() - 2].kind == TimeoutKind::no_ack);
    // 2xx sent at 0 and retransmitted at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5: 1 + 10.
    CHECK(u.sent.size() == 1 + 1 + 10);
}

TEST_CASE(
    "server non-INVITE: silent until answered, then the final again; Timer J or at once on TCP") {
    User u;
    TransactionLayer layer(u);
    const std::string opt = request("OPTIONS", "z9hG4bKo");
    feed(layer, opt, 0);
    CHECK(u.sent.empty());
    const TxId tx = u.events[0].tx;
    feed(layer, opt, millis(500));
    CHECK(u.sent.empty());
    REQUIRE(layer.respond(tx, 200, {}, {}, millis(600)));
    REQUIRE(u.sent.size() == 1);
    feed(layer, opt, millis(700));
    CHECK(u.sent.size() == 2);
    CHECK(u.sent[0] == u.sent[1]);  // the same To tag every time
    layer.advance(millis(600) + seconds(32));
    CHECK(layer.state(tx) == TxState::terminated);

    User t;
    TransactionLayer reliable(t);
    feed(reliable, opt, 0, tcp_flow());
    REQUIRE(reliable.respond(t.events[0].tx, 200, {}, {}, 0));
    CHECK(reliable.size() == 0);
}

TEST_CASE("CANCEL: answered 200 and handed over when it matches, 481 when not") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKc"), 0);
    const TxId invite = u.events[0].tx;
    feed(layer, request("CANCEL", "z9hG4bKc"), millis(100));
    CHECK(u.last_sent_status() == 200);
    REQUIRE(u.count("cancel") == 1);
    CHECK(u.events.back().tx == invite);
    REQUIRE(layer.respond(invite, 487, {}, {}, millis(110)));
    CHECK(u.last_sent_status() == 487);
    CHECK(layer.counters()[TxCounter::cancels_matched] == 1);

    feed(layer, request("CANCEL", "z9hG4bKnone"), millis(200));
    CHECK(u.last_sent_status() == 481);
    CHECK(u.count("cancel") == 1);
    CHECK(layer.counters()[TxCounter::cancels_unmatched] == 1);
}

TEST_CASE("client INVITE over UDP: Timer A doubles, Timer B times out at 64*T1") {
    User u;
    TransactionLayer layer(u);
    const TxId tx = layer.request(udp_flow(), request("INVITE", new_branch()), 0);
    REQUIRE(tx);
    CHECK(u.sent.size() == 1);
    layer.advance(seconds(31.9));
    // Sent at 0, then 0.5, 1.5, 3.5, 7.5, 15.5, 31.5.
    CHECK(u.sent.size() == 7);
    CHECK(layer.state(tx) == TxState::calling);
    layer.advance(seconds(32));
    REQUIRE(u.count("timeout") == 1);
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(layer.counters()[TxCounter::timeouts] == 1);
}

TEST_CASE(
    "client INVITE: a provisional stops retransmission; a non-2xx final is ACKed by the layer") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKclient", {}, {}, 12);
    const TxId tx = layer.request(udp_flow(), inv, 0);
    REQUIRE(tx);
    feed(layer, response_to(inv, 180), millis(100));
    CHECK(layer.state(tx) == TxState::proceeding);
    layer.advance(seconds(10));
    CHECK(u.sent.size() == 1);  // neither Timer A nor Timer B after a provisional
    const std::string busy = response_to(inv, 486, "busytag");
    feed(layer, busy, seconds(11));
    CHECK(layer.state(tx) == TxState::completed);
    REQUIRE(u.sent.size() == 2);
    sip::Message ack = parse(u.sent.back());
    CHECK(ack.method() == sip::Method::ack);
    CHECK(ack.vias().size() == 1);
    CHECK(ack.vias()[0].branch == "z9hG4bKclient");
    CHECK(ack.to()->tag == "busytag");
    CHECK(ack.cseq()->number == 12);
    CHECK(ack.cseq()->method == "ACK");
    CHECK(ack.call_id() == "call-1");
    CHECK(u.count("response") == 2);
    // A retransmitted final gets the ACK again and is not handed over twice.
    feed(layer, busy, seconds(12));
    CHECK(u.sent.size() == 3);
    CHECK(u.count("response") == 2);
    layer.advance(seconds(11) + seconds(32));  // Timer D
    CHECK(layer.state(tx) == TxState::terminated);
}

TEST_CASE("client INVITE: 2xx retransmissions reach the user until Timer M") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKok");
    const TxId tx = layer.request(udp_flow(), inv, 0);
    const std::string ok = response_to(inv, 200);
    feed(layer, ok, millis(50));
    CHECK(layer.state(tx) == TxState::accepted);
    feed(layer, ok, millis(600));
    CHECK(u.count("response") == 2);
    CHECK(u.sent.size() == 1);  // the layer never ACKs a 2xx: that is the dialog's job
    layer.advance(millis(50) + seconds(32));
    CHECK(layer.state(tx) == TxState::terminated);
}

TEST_CASE("client non-INVITE: Timer E caps at T2; Timer F times out") {
    User u;
    TransactionLayer layer(u);
    const TxId tx = layer.request(udp_flow(), request("OPTIONS", new_branch()), 0);
    layer.advance(seconds(31.9));
    // 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    CHECK(u.sent.size() == 11);
    layer.advance(seconds(32));
    CHECK(layer.state(tx) == TxState::terminated);
    REQUIRE(u.count("timeout") == 1);
}

TEST_CASE("client CANCEL waits for a provisional, then goes with the INVITE's branch") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKcx", {}, {}, 3);
    const TxId tx = layer.request(udp_flow(), inv, 0);
    REQUIRE(layer.cancel(tx, millis(10)));
    CHECK(u.sent.size() == 1);  // §9.1: not before a provisional
    feed(layer, response_to(inv, 183), millis(200));
    REQUIRE(u.sent.size() == 2);
    sip::Message c = parse(u.sent.back());
    CHECK(c.method() == sip::Method::cancel);
    CHECK(c.vias()[0].branch == "z9hG4bKcx");
    CHECK(c.cseq()->number == 3);
    CHECK(c.cseq()->method == "CANCEL");
    CHECK(c.to()->tag.empty());
    // The CANCEL's 200 is the layer's own business.
    feed(layer, response_to(u.sent.back(), 200), millis(250));
    CHECK(u.count("response") == 1);
    feed(layer, response_to(inv, 487), millis(300));
    CHECK(u.count("response") == 2);
    CHECK(parse(u.sent.back()).method() == sip::Method::ack);
    CHECK(layer.counters()[TxCounter::cancels_sent] == 1);
}

TEST_CASE("client INVITE: without a final after CANCEL the INVITE is given up at 64*T1") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKstuck");
    const TxId tx = layer.request(udp_flow(), inv, 0);
    feed(layer, response_to(inv, 180), millis(100));
    REQUIRE(layer.cancel(tx, seconds(1)));
    layer.advance(seconds(33));
    REQUIRE(u.count("timeout") == 1);
    CHECK(u.events[u.events.size() - 2].kind == TimeoutKind::no_final_after_cancel);
}

TEST_CASE("stray responses are counted and dropped; capacity refuses new transactions") {
    User u;
    TransactionLayer layer(u, {}, {2});
    feed(layer, response_to(request("INVITE", "z9hG4bKnobody"), 200), 0);
    CHECK(layer.counters()[TxCounter::stray_responses] == 1);
    CHECK(u.events.empty());
    feed(layer, request("OPTIONS", "z9hG4bK1"), 0);
    feed(layer, request("OPTIONS", "z9hG4bK2"), 0);
    sip::Message third = parse(request("OPTIONS", "z9hG4bK3"));
    CHECK(layer.receive(third, udp_flow(), 0) == TransactionLayer::Received::overloaded);
    CHECK_FALSE(layer.request(udp_flow(), request("OPTIONS", new_branch()), 0));
    CHECK(layer.counters()[TxCounter::overloaded] == 2);
}

TEST_CASE("a request the user never answers gets 408 from the layer") {
    User u;
    TimerSettings t;
    t.max_pending = seconds(10);
    TransactionLayer layer(u, t);
    feed(layer, request("INVITE", "z9hG4bKforgot"), 0);
    const TxId tx = u.events[0].tx;
    layer.advance(seconds(10));
    CHECK(u.last_sent_status() == 408);
    CHECK(layer.state(tx) == TxState::completed);
    CHECK(u.count("timeout") == 1);
    feed(layer, request("ACK", "z9hG4bKforgot", {}, "x"), seconds(11));
    CHECK(layer.state(tx) == TxState::confirmed);
}

TEST_CASE("a failing transport ends the transaction") {
    User u;
    TransactionLayer layer(u);
    const std::string inv = request("INVITE", "z9hG4bKtx");
    const TxId tx = layer.request(udp_flow(), inv, 0);
    u.fail_sends = true;
    layer.advance(millis(500));
    CHECK(layer.state(tx) == TxState::terminated);
    CHECK(layer.counters()[TxCounter::transport_errors] == 1);
    CHECK_FALSE(layer.request(udp_flow(), request("OPTIONS", new_branch()), 0));
}

TEST_CASE("random tokens are lowercase alphanumerics and do not repeat") {
    std::set<std::string> seen;
    for (int i = 0; i < 2000; ++i) {
        const std::string t = random_token(16);
        REQUIRE(t.size() == 16);
        for (char c : t) REQUIRE(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')));
        seen.insert(t);
    }
    CHECK(seen.size() == 2000);
    const std::string b = new_branch();
    CHECK(b.rfind("z9hG4bK", 0) == 0);
    CHECK(b.size() == 31);
}

TEST_CASE("the ACK of a non-2xx final with a branch of its own is matched by dialog") {
    User u;
    TransactionLayer layer(u);
    feed(layer, request("INVITE", "z9hG4bKfirst"), 0);
    const TxId tx = u.events[0].tx;
    REQUIRE(layer.respond(tx, 503, {}, {}, 0));
    feed(layer, request("ACK", "z9hG4bKsecond", {}, "x"), millis(100));
    CHECK(layer.state(tx) == TxState::confirmed);
    CHECK(u.count("ack") == 0);
    const std::size_t sent = u.sent.size();
    layer.advance(seconds(3));
    CHECK(u.sent.size() == sent);  // no more retransmissions of the 503
}

TEST_CASE("ended transactions beyond the pool are freed; their slots and handles stay safe") {
    User u;
    TransactionLayer layer(u);
    // 3000 OPTIONS, each timing out (Timer F) at 32 s: all end in the same advance().
    std::vector<TxId> first;
    for (int i = 0; i < 3000; ++i)
        first.push_back(layer.request(udp_flow(), request("OPTIONS", new_branch()), 0));
    REQUIRE(layer.size() == 3000);
    CHECK(layer.pooled() == 0);
    layer.advance(seconds(33));
    CHECK(layer.size() == 0);
    CHECK(u.count("timeout") == 3000);
    CHECK(layer.pooled() == 1024);
    // Old handles find nothing, whether their slot was freed or pooled.
    CHECK(layer.state(first.front()) == TxState::terminated);
    CHECK(layer.state(first.back()) == TxState::terminated);
    // Every slot, freed or pooled, serves again: a second burst works as the first did.
    std::vector<TxId> second;
    for (int i = 0; i < 3000; ++i)
        second.push_back(layer.request(udp_flow(), request("OPTIONS", new_branch()), seconds(40)));
    CHECK(layer.size() == 3000);
    CHECK(layer.pooled() == 0);
    for (const TxId& id : {second.front(), second[1500], second.back()})
        CHECK(layer.state(id) == TxState::trying);
    feed(layer, response_to(u.sent.back(), 200), seconds(40.1));
    CHECK(u.count("response") == 1);
    layer.advance(seconds(80));
    CHECK(layer.size() == 0);
    CHECK(layer.pooled() == 1024);
}

TEST_CASE("transaction storage: its own pool, slots reused lowest first, given back when idle") {
    User u;
    TransactionLayer layer(u);
    // 600 REGISTERs: server transactions whose requests and answers live in the layer's pool.
    std::vector<std::string> registers;
    std::vector<TxId> servers;
    for (int i = 0; i < 600; ++i) {
        registers.push_back(request("REGISTER", new_branch()));
        feed(layer, registers.back(), 0);
        servers.push_back(u.events.back().tx);
    }
    REQUIRE(layer.size() == 600);
    CHECK(layer.pool_bytes() >= 600 * registers[0].size());
    // Unanswered, the request can be asked for, parsed again from the transaction's own copy.
    const sip::Message* before = layer.request_of(servers[300]);
    REQUIRE(before != nullptr);
    CHECK(before->bytes() == registers[300]);
    CHECK(before->method() == sip::Method::register_);
    CHECK(before->vias().size() == 1);
    // Answered: Completed until Timer J. At the next event each gives back its request (bytes
    // and parse): what absorbs retransmissions is the key, the 200, the flow and the timer.
    for (const TxId& id : servers) REQUIRE(layer.respond(id, 200, {}, {}, millis(10)));
    const std::size_t answered = layer.memory_bytes();
    layer.advance(millis(20));
    CHECK(layer.request_of(servers[300]) == nullptr);
    CHECK(layer.state(servers[300]) == TxState::completed);
    CHECK(layer.memory_bytes() + 600 * sizeof(sip::Message) <= answered);
    // A retransmitted REGISTER still gets the 200 again.
    const std::size_t sent = u.sent.size();
    feed(layer, registers[0], millis(30));
    CHECK(u.sent.size() == sent + 1);
    CHECK(u.last_sent_status() == 200);
    // 300 OPTIONS over TCP; half of them answered (ended at once): new transactions take the
    // lowest free slots, those just freed, instead of growing the table.
    std::vector<std::string> options;
    std::uint32_t top = 0;
    for (int i = 0; i < 300; ++i) {
        options.push_back(request("OPTIONS", new_branch()));
        const TxId id = layer.request(tcp_flow(), options.back(), millis(40));
        REQUIRE(id);
        top = std::max(top, id.index);
    }
    for (int i = 0; i < 300; i += 2)
        feed(layer, response_to(options[i], 200), millis(50), tcp_flow());
    CHECK(layer.size() == 750);
    for (int i = 0; i < 150; ++i) {
        const TxId id = layer.request(tcp_flow(), request("OPTIONS", new_branch()), millis(60));
        REQUIRE(id);
        CHECK(id.index <= top);
    }
    // Idle: every transaction ended (Timer J, Timer F), the pool goes back to the heap.
    layer.advance(seconds(40));
    CHECK(layer.size() == 0);
    CHECK(layer.pool_bytes() == 0);
    // And serves again.
    feed(layer, request("REGISTER", new_branch()), seconds(41));
    CHECK(layer.size() == 1);
    CHECK(layer.pool_bytes() > 0);
}

TEST_CASE("transaction storage: a burst's pool goes back while other transactions stay alive") {
    User u;
    TransactionLayer layer(u);
    // A burst: 8,000 REGISTERs answered (Completed until Timer J, 32 s), several MB of strings.
    for (int i = 0; i < 8000; ++i) {
        feed(layer, request("REGISTER", new_branch()), 0);
        REQUIRE(layer.respond(u.events.back().tx, 200, {}, {}, 0));
    }
    const std::size_t peak = layer.pool_bytes();
    CHECK(peak > (std::size_t{4} << 20));
    // Steady traffic after it: one new REGISTER a second, each alive 32 s, so the layer is never
    // idle; the burst's strings still leave once its transactions have ended.
    for (int s = 1; s <= 80; ++s) {
        feed(layer, request("REGISTER", new_branch()), seconds(s));
        REQUIRE(layer.respond(u.events.back().tx, 200, {}, {}, seconds(s)));
        layer.advance(seconds(s));
        REQUIRE(layer.size() > 0);
    }
    CHECK(layer.size() < 40);
    CHECK(layer.pool_bytes() < peak / 8);
    // A retransmission of a live one is still recognised (its key moved with the tables).
    const std::string last = request("REGISTER", new_branch());
    feed(layer, last, seconds(81));
    REQUIRE(layer.respond(u.events.back().tx, 200, {}, {}, seconds(81)));
    const std::size_t sent = u.sent.size();
    feed(layer, last, seconds(82));
    CHECK(u.sent.size() == sent + 1);
}

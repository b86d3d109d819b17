// The call core's call ends from outside the SIP flow: the relay's inactivity events and fraud
// bans of a running call's source or account. The relay and the wire are faked; the B2BUA is the
// real one.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "sbc/call_core.hpp"
#include "signaling_fixture.hpp"

using namespace sbc;
using base::millis;
using base::seconds;

namespace {

struct FakeStreams final : MediaStreams {
    std::map<std::uint32_t, dataplane::StreamSpec> open_streams;
    std::uint32_t next = 1;
    base::Result<dataplane::StreamId> open(const dataplane::StreamSpec& spec) override {
        open_streams[next] = spec;
        return dataplane::StreamId{next++, 1};
    }
    base::Result<void> update(dataplane::StreamId id, const dataplane::StreamSpec& s) override {
        open_streams[id.slot] = s;
        return {};
    }
    base::Result<void> close(dataplane::StreamId id) override {
        open_streams.erase(id.slot);
        return {};
    }
};

struct Out {
    std::uint32_t listener;
    std::string bytes;
};

const base::IpAddress kCaller = *base::IpAddress::parse("198.51.100.7");
const base::IpAddress kProxy = *base::IpAddress::parse("10.0.0.2");

struct Core {
    FakeStreams streams;
    std::vector<Out> sent;
    std::vector<signaling::CallEnd> ends;
    std::unique_ptr<CallCore> core;
    Core() {
        CallCore::Setup s;
        s.b2bua.external.host = "203.0.113.1";
        s.b2bua.external.media_host = "203.0.113.1";
        s.b2bua.external.listener = 0;
        s.b2bua.internal.host = "10.0.0.1";
        s.b2bua.internal.media_host = "10.0.0.1";
        s.b2bua.internal.listener = 1;
        s.b2bua.internal.next_hops = {{kProxy, 5080}};
        s.b2bua.health.enabled = false;
        s.media_external = *base::IpAddress::parse("203.0.113.1");
        s.media_internal = *base::IpAddress::parse("10.0.0.1");
        s.port_min = 30000;
        s.port_max = 30099;
        core = std::make_unique<CallCore>(
            s, streams,
            [this](const signaling::Flow& f, std::string_view b) {
                sent.push_back({f.listener, std::string(b)});
                return true;
            },
            nullptr, nullptr,
            [this](const signaling::CallInfo&, signaling::CallEnd e) { ends.push_back(e); });
    }
    void feed(const std::string& bytes, const base::Endpoint& from, std::uint32_t listener,
              signaling::Side side, base::Nanos now) {
        sip::Message m;
        REQUIRE(m.parse_owned(bytes).ok);
        core->receive(m, from, listener, side, now);
    }
    const std::string& last_to(std::uint32_t listener) const {
        for (auto it = sent.rbegin(); it != sent.rend(); ++it)
            if (it->listener == listener) return it->bytes;
        FAIL("nothing sent on listener " << listener);
        return sent.back().bytes;
    }
    std::size_t byes_to(std::uint32_t listener, std::size_t from) const {
        std::size_t n = 0;
        for (std::size_t i = from; i < sent.size(); ++i)
            n += sent[i].listener == listener && sent[i].bytes.rfind("BYE ", 0) == 0;
        return n;
    }
};

const std::string kSdpOut =
    "v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\n";
const std::string kSdpIn =
    "v=0\r\no=b 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n"
    "m=audio 22000 RTP/AVP 0\r\n";

// An answered call from 198.51.100.7 (From user `user`, optional Authorization username).
void answered_call(Core& c, std::string_view call_id, std::string_view user, base::Nanos now) {
    std::string inv =
        "INVITE sip:+33123456789@203.0.113.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK";
    inv += call_id;
    inv += "\r\nMax-Forwards: 70\r\nFrom: <sip:";
    inv += user;
    inv += "@carrier.example>;tag=a1\r\nTo: <sip:+33123456789@203.0.113.1>\r\nCall-ID: ";
    inv += call_id;
    inv +=
        "\r\nCSeq: 1 INVITE\r\nContact: <sip:a@198.51.100.7:5070>\r\n"
        "Content-Type: application/sdp\r\nContent-Length: " +
        std::to_string(kSdpOut.size()) + "\r\n\r\n" + kSdpOut;
    c.feed(inv, {kCaller, 5070}, 0, signaling::Side::external, now);
    sip::Message in;
    REQUIRE(in.parse_owned(c.last_to(1)).ok);
    const std::string ok = signaling::fixture::answer_to(
        in, "in1",
        "Contact: <sip:b@10.9.9.9:5090>\r\nContent-Type: application/sdp\r\nContent-Length: " +
            std::to_string(kSdpIn.size()) + "\r\n\r\n" + kSdpIn);
    c.feed(ok, {kProxy, 5080}, 1, signaling::Side::internal, now + millis(5));
    REQUIRE(c.last_to(0).rfind("SIP/2.0 200", 0) == 0);
}

std::string stat(const CallCore& c, const std::string& key) {
    const std::string text = c.stats_text();
    const auto at = text.find("\n" + key + "=");
    REQUIRE(at != std::string::npos);
    return text.substr(at + key.size() + 2, text.find('\n', at + 1) - at - key.size() - 2);
}

}  // namespace

TEST_CASE("media inactivity ends an answered call: BYE on both legs, streams freed") {
    Core c;
    answered_call(c, "inact1", "alice", 0);
    REQUIRE(c.streams.open_streams.size() == 1);
    const std::uint32_t slot = c.streams.open_streams.begin()->first;
    const std::uint64_t call = c.streams.open_streams.begin()->second.call_id;
    // An event for a stream that is not this call's (a `media add` stream with the same
    // handle) ends nothing.
    CHECK_FALSE(c.core->media_inactive(call, dataplane::StreamId{slot + 7, 1}, seconds(61)));
    CHECK(c.byes_to(0, 0) == 0);

    const std::size_t mark = c.sent.size();
    CHECK(c.core->media_inactive(call, dataplane::StreamId{slot, 1}, seconds(61)));
    CHECK(c.byes_to(0, mark) == 1);
    CHECK(c.byes_to(1, mark) == 1);
    CHECK(c.streams.open_streams.empty());
    CHECK(c.core->media_streams() == 0);
    REQUIRE(c.ends.size() == 1);
    CHECK(c.ends[0] == signaling::CallEnd::terminated);
    CHECK(stat(*c.core, "calls.ended_inactive") == "1");
    // A second event for the same (gone) stream: nothing more.
    CHECK_FALSE(c.core->media_inactive(call, dataplane::StreamId{slot, 1}, seconds(62)));
}

TEST_CASE("media inactivity leaves a call that is not answered yet alone") {
    Core c;
    std::string inv =
        "INVITE sip:+33123456789@203.0.113.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKring1\r\nMax-Forwards: 70\r\n"
        "From: <sip:alice@carrier.example>;tag=a1\r\nTo: <sip:+33123456789@203.0.113.1>\r\n"
        "Call-ID: ring1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@198.51.100.7:5070>\r\n"
        "Content-Type: application/sdp\r\nContent-Length: " +
        std::to_string(kSdpOut.size()) + "\r\n\r\n" + kSdpOut;
    c.feed(inv, {kCaller, 5070}, 0, signaling::Side::external, 0);
    REQUIRE(c.streams.open_streams.size() == 1);
    const auto& [slot, spec] = *c.streams.open_streams.begin();
    CHECK_FALSE(c.core->media_inactive(spec.call_id, dataplane::StreamId{slot, 1}, seconds(61)));
    CHECK(c.streams.open_streams.size() == 1);
    CHECK(c.ends.empty());
}

TEST_CASE("a fraud ban ends the running calls of its source, or of its account") {
    Core c;
    answered_call(c, "ban1", "alice", 0);
    answered_call(c, "ban2", "bob", millis(10));
    REQUIRE(c.streams.open_streams.size() == 2);
    // Neither the source nor the account of a running call: nothing ends.
    CHECK(c.core->end_banned(*base::IpAddress::parse("192.0.2.1"), "carol", seconds(1)) == 0);
    // The account "bob" only.
    std::size_t mark = c.sent.size();
    CHECK(c.core->end_banned(base::IpAddress{}, "bob", seconds(2)) == 1);
    CHECK(c.byes_to(0, mark) == 1);
    CHECK(c.byes_to(1, mark) == 1);
    CHECK(c.streams.open_streams.size() == 1);
    // The source: alice's call.
    mark = c.sent.size();
    CHECK(c.core->end_banned(kCaller, "", seconds(3)) == 1);
    CHECK(c.byes_to(0, mark) == 1);
    CHECK(c.byes_to(1, mark) == 1);
    CHECK(c.streams.open_streams.empty());
    CHECK(stat(*c.core, "calls.ended_banned") == "2");
    CHECK(c.ends.size() == 2);
}

#pragma once
// Test fixture shared by the signaling core's unit tests (B2BUA, registrations, dispatcher,
// call observer): the wire, the relay and the call hooks faked, the two sides' addresses, flows,
// and SIP message builders. Nothing here opens a socket or reads a clock.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sbc/signaling/b2bua.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling::fixture {

// The SBC's addresses on each side, the outside party's and the inside next hop's.
inline constexpr const char* kSbcExternal = "203.0.113.1";
inline constexpr const char* kSbcInternal = "10.0.0.1";
inline constexpr const char* kOutside = "198.51.100.7";
inline constexpr const char* kNextHop = "10.0.0.2";
inline constexpr std::uint16_t kSipPort = 5060;

inline base::Endpoint endpoint(const char* addr, std::uint16_t port) {
    return {*base::IpAddress::parse(addr), port};
}

// A UDP flow from `addr`:`port` on listener `listener` (0: external, 1: internal).
inline Flow udp_flow(const char* addr, std::uint16_t port, std::uint32_t listener) {
    Flow f;
    f.remote = endpoint(addr, port);
    f.listener = listener;
    return f;
}

struct Sent {
    Flow flow;
    std::string bytes;
};

// Records every message sent; `accept` false makes every send fail.
struct FakeWire final : Wire {
    std::vector<Sent> sent;
    bool accept = true;
    bool send(const Flow& f, std::string_view b) override {
        if (!accept) return false;
        sent.push_back({f, std::string(b)});
        return true;
    }
    // Messages sent to `port` since index `from`.
    std::vector<std::string> to(std::uint16_t port, std::size_t from = 0) const {
        std::vector<std::string> out;
        for (std::size_t i = from; i < sent.size(); ++i)
            if (sent[i].flow.remote.port == port) out.push_back(sent[i].bytes);
        return out;
    }
    std::vector<Sent> since(std::size_t from) const {
        return {sent.begin() + static_cast<std::ptrdiff_t>(from), sent.end()};
    }
};

// Anchors every media line: toward the outside on kSbcExternal:30000+4*index, toward the
// inside on kSbcInternal:30002+4*index.
struct FakeMedia final : MediaAnchor {
    std::map<std::uint64_t, int> anchors;
    std::map<std::uint64_t, int> released;
    std::vector<base::Endpoint> peers;
    base::Result<base::Endpoint> anchor(std::uint64_t call, std::size_t index, Side from,
                                        const base::Endpoint& peer, bool, base::Nanos) override {
        ++anchors[call];
        peers.push_back(peer);
        const std::uint16_t base_port = static_cast<std::uint16_t>(30000 + 4 * index);
        const bool toward_external = from == Side::internal;
        return endpoint(toward_external ? kSbcExternal : kSbcInternal,
                        static_cast<std::uint16_t>(base_port + (toward_external ? 0 : 2)));
    }
    void release(std::uint64_t call) override { ++released[call]; }
};

// Admits every request with `next`; records answers, ends and REGISTER outcomes (refused when
// `refuse_register`).
struct FakeHooks final : CallHooks {
    Admission next;
    std::vector<std::pair<CallInfo, CallEnd>> ended;
    int answered = 0;
    std::vector<int> outcomes;
    bool refuse_register = false;
    Admission admit(const sip::Message&, const Flow&, Side) override { return next; }
    void on_answered(const CallInfo&) override { ++answered; }
    void on_ended(const CallInfo& c, CallEnd e) override { ended.emplace_back(c, e); }
    bool on_register_answered(const sip::Message&, const Flow&, int status) override {
        outcomes.push_back(status);
        return refuse_register;
    }
};

// The two sides: external listener 0 and internal listener 1, both on port 5060, media on
// the same hosts; no next hop, health checks off.
inline B2buaConfig two_sides() {
    B2buaConfig c;
    c.external.host = kSbcExternal;
    c.external.port = kSipPort;
    c.external.media_host = kSbcExternal;
    c.external.listener = 0;
    c.internal.host = kSbcInternal;
    c.internal.port = kSipPort;
    c.internal.media_host = kSbcInternal;
    c.internal.listener = 1;
    c.health.enabled = false;
    return c;
}

inline sip::Message parse(const std::string& b) {
    sip::Message m;
    REQUIRE(m.parse_owned(b).ok);
    return m;
}

inline void feed(B2bua& b, const std::string& bytes, const Flow& f, Side side, base::Nanos now) {
    sip::Message m = parse(bytes);
    b.receive(m, f, side, now);
}

// An out-of-dialog request (in-dialog with `to_tag`) from kOutside:5062 over UDP, no body.
inline std::string request(const std::string& method, const std::string& ruri,
                           const std::string& call_id, int cseq, const std::string& branch,
                           const std::string& extra = "", const std::string& to_tag = "") {
    return method + " " + ruri + " SIP/2.0\r\n" + "Via: SIP/2.0/UDP " + kOutside +
           ":5062;branch=" + branch + "\r\n" + "From: <sip:1001@example.com>;tag=f1\r\n" +
           "To: <sip:1001@example.com>" + (to_tag.empty() ? "" : ";tag=" + to_tag) + "\r\n" +
           "Call-ID: " + call_id + "\r\n" + "CSeq: " + std::to_string(cseq) + " " + method +
           "\r\n" + "Max-Forwards: 70\r\nUser-Agent: softphone\r\n" + extra +
           "Content-Length: 0\r\n\r\n";
}

// A response to such a request (To tag t1).
inline std::string response(int status, const std::string& method, const std::string& call_id,
                            int cseq, const std::string& branch) {
    return "SIP/2.0 " + std::to_string(status) + " X\r\n" + "Via: SIP/2.0/UDP " + kOutside +
           ":5062;branch=" + branch + "\r\n" + "From: <sip:1001@example.com>;tag=f1\r\n" +
           "To: <sip:1001@example.com>;tag=t1\r\n" + "Call-ID: " + call_id + "\r\n" +
           "CSeq: " + std::to_string(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n";
}

// A 200 to `req` as its UAS sends it: Via, From, Call-ID and CSeq copied, To tagged `to_tag`,
// then `rest` (further headers, the blank line and any body).
inline std::string answer_to(const sip::Message& req, const std::string& to_tag,
                             const std::string& rest = "Content-Length: 0\r\n\r\n") {
    std::string ok = "SIP/2.0 200 OK\r\n";
    for (const auto& h : req.headers())
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id || h.id == sip::HeaderId::cseq)
            ok += h.line;
    return ok + "To: " + std::string(req.to()->raw) + ";tag=" + to_tag + "\r\n" + rest;
}

}  // namespace sbc::signaling::fixture

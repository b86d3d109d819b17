// The B2BUA and its transaction layer driven from both sides by a sequence of records.
//
// Input: one configuration byte, then records, each starting with the 3-byte marker "\n#!"
// followed by an op byte, a time-step byte and a payload (up to the next marker):
//   op & 1          the side the record comes from (0 external, 1 internal)
//   (op >> 1) & 7   0: the payload is a SIP message received from that side
//                   1: a response to a request the B2BUA sent (payload: which one, status,
//                      mutation flags, then byte flips)
//                   2: a request in the dialog of a message the B2BUA sent (payload: which one,
//                      method, mutation flags, then byte flips)
//                   3: a message received earlier, again (payload: which one, as is / CANCEL /
//                      ACK, then byte flips)
//                   4: end_call on one of the calls (payload: which one)
//                   5: the admission for the next new calls (payload: allow / flag / block)
//   step            time advanced before the record: < 200: step * 20 ms, else (step-199) * 5 s
// After the records, time advances far with no input.
//
// Asserted: media anchored for a call is released exactly once and never anchored again after;
// on_ended at most once per call; active_calls() and transactions().size() within their limits;
// both zero once time has advanced far enough (max_call_duration bounds every call).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sbc/signaling/b2bua.hpp"
#include "sip/sip.hpp"

using namespace sbc;
using namespace sbc::signaling;

namespace {

[[noreturn]] void fail(const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
    std::fprintf(stderr, "fuzz_b2bua: invariant broken: %s (%llu, %llu)\n", what,
                 static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
    std::abort();
}

constexpr std::size_t kMaxCalls = 6;
constexpr std::size_t kMaxTransactions = 48;
constexpr base::Nanos kMaxDuration = base::seconds(120);

struct Sent {
    Flow flow;
    std::string bytes;
};

// FUZZ_B2BUA_TRACE=1 prints each message's first line (to read what a seed does).
const bool kTrace = std::getenv("FUZZ_B2BUA_TRACE") != nullptr;

void trace(const char* dir, const Flow& f, std::string_view b) {
    if (kTrace)
        std::fprintf(stderr, "%s %s %.*s\n", dir, f.remote.to_string().c_str(),
                     static_cast<int>(b.find('\r')), b.data());
}

struct Wire final : signaling::Wire {
    std::vector<Sent> sent;
    bool send(const Flow& f, std::string_view b) override {
        trace("<-", f, b);
        if (sent.size() >= 4096) sent.erase(sent.begin(), sent.begin() + 2048);
        sent.push_back({f, std::string(b)});
        return true;
    }
};

struct Media final : MediaAnchor {
    std::map<std::uint64_t, int> anchored;  // call -> streams anchored
    std::map<std::uint64_t, int> released;
    base::Result<base::Endpoint> anchor(std::uint64_t call, std::size_t index, Side from,
                                        const base::Endpoint&, bool, base::Nanos) override {
        if (released.count(call)) fail("anchor after release", call);
        if (index > 64) fail("media line index out of range", call, index);
        // Refuse now and then (a full port range): the B2BUA must answer 488, not leak.
        if (index == 3) return base::Error{"no free media ports"};
        ++anchored[call];
        return base::Endpoint{
            *base::IpAddress::parse(from == Side::internal ? "203.0.113.1" : "10.0.0.1"),
            static_cast<std::uint16_t>(30000 + 2 * index)};
    }
    void release(std::uint64_t call) override {
        if (!anchored.count(call)) fail("release of a call that anchored nothing", call);
        if (++released[call] > 1) fail("media released twice", call);
    }
};

struct Hooks final : CallHooks {
    Admission next;
    std::set<std::uint64_t> ended;
    Admission admit(const sip::Message&, const Flow&, Side) override { return next; }
    void on_ended(const CallInfo& c, CallEnd) override {
        if (!ended.insert(c.id).second) fail("call ended twice", c.id);
    }
};

B2buaConfig make_config(std::uint8_t bits) {
    B2buaConfig c;
    c.external.host = "203.0.113.1";
    c.external.media_host = "203.0.113.1";
    c.external.listener = 0;
    c.internal.host = "10.0.0.1";
    c.internal.media_host = "10.0.0.1";
    c.internal.listener = 1;
    c.internal.next_hops.push_back({*base::IpAddress::parse("10.0.0.2"), 5080});
    if (bits & 1) c.internal.next_hops.push_back({*base::IpAddress::parse("10.0.0.3"), 5080});
    // Probes run forever, so with health checks on only the call count must drain.
    c.health.enabled = (bits & 2) != 0;
    c.health.interval = base::seconds(30);
    c.max_call_duration = kMaxDuration;
    c.max_calls = kMaxCalls;
    if (bits & 4) c.reason_phrases.push_back({486, "Busy Here Now"});
    return c;
}

Flow flow_of_side(Side side, std::uint8_t variant) {
    Flow f;
    if (side == Side::external) {
        f.remote = {*base::IpAddress::parse((variant & 1) ? "198.51.100.8" : "198.51.100.7"), 5070};
        f.listener = 0;
    } else {
        f.remote = {*base::IpAddress::parse((variant & 1) ? "10.0.0.3" : "10.0.0.2"), 5080};
        f.listener = 1;
    }
    return f;
}

Side side_of(const Flow& f) {
    return f.listener == 0 ? Side::external : Side::internal;
}

// Byte flips from the rest of a payload: pairs (position, xor).
void flip(std::string& s, std::string_view rest) {
    for (std::size_t i = 0; i + 1 < rest.size() && !s.empty(); i += 2)
        s[static_cast<unsigned char>(rest[i]) * 7 % s.size()] ^= rest[i + 1];
}

std::string sdp_body(std::string_view host, int port) {
    return "v=0\r\no=- 1 1 IN IP4 " + std::string(host) + "\r\ns=-\r\nc=IN IP4 " +
           std::string(host) + "\r\nt=0 0\r\nm=audio " + std::to_string(port) +
           " RTP/AVP 0 8\r\na=rtcp:" + std::to_string(port + 1) + "\r\n";
}

void append_body(std::string& s, std::string_view body) {
    if (!body.empty()) s += "Content-Type: application/sdp\r\n";
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    s += body;
}

constexpr int kStatuses[] = {100, 180, 183, 200, 202, 302, 401, 404, 408,
                             481, 486, 487, 488, 500, 503, 603, 699, 199};

// A response to request `req` as its recipient would send it.
std::string respond_to(const sip::Message& req, int status, std::uint8_t flags) {
    std::string s = "SIP/2.0 " + std::to_string(status) + " Whatever\r\n";
    for (const auto& h : req.headers()) {
        if (h.id == sip::HeaderId::via && (flags & 8)) continue;  // Via lost
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id || h.id == sip::HeaderId::cseq)
            s += h.line;
    }
    if (req.to()) {
        s += "To: ";
        s += req.to()->raw;
        if (req.to()->tag.empty() && status > 100 && !(flags & 1))
            s += (flags & 4) ? ";tag=other7" : ";tag=far9";
        s += "\r\n";
    }
    if (flags & 16) s += "Record-Route: <sip:10.0.0.2:5080;lr>\r\n";
    if (status >= 300 && status < 400)
        s += "Contact: <sip:elsewhere@10.9.9.8>\r\n";
    else
        s += "Contact: <sip:far@10.9.9.9:5090>\r\n";
    if (flags & 32) s += "Server: inside-pbx\r\n";
    const bool sdp =
        (flags & 2) && status >= 180 && status < 300 && req.method() == sip::Method::invite;
    append_body(s, sdp ? sdp_body("10.9.9.9", 22000) : std::string());
    return s;
}

constexpr std::string_view kMethods[] = {"ACK",     "BYE",   "INVITE",  "INFO",  "UPDATE", "CANCEL",
                                         "OPTIONS", "REFER", "MESSAGE", "PRACK", "NOTIFY", "FOO"};

// A request in the dialog of `m`, sent by the party `m` went to. For a request the SBC sent, the
// far end is its recipient (From and To swap); for a response the SBC sent, the recipient is the
// caller (From and To stay).
std::string in_dialog(const sip::Message& m, std::string_view method, std::uint8_t flags,
                      std::uint32_t cseq) {
    if (!m.from() || !m.to() || !m.cseq()) return {};
    const bool to_request = m.is_request();
    std::string s(method);
    s += " sip:";
    if (!m.contacts().empty() && m.contacts().front().uri.has_user) {
        s += m.contacts().front().uri.user;
        s += '@';
    }
    s += to_request ? "10.0.0.1" : "203.0.113.1";
    s += " SIP/2.0\r\nVia: SIP/2.0/UDP ";
    s += to_request ? "10.0.0.2:5080" : "198.51.100.7:5070";
    s += ";branch=z9hG4bKdlg" + std::to_string(cseq) + (method == "ACK" ? "a" : "") +
         "\r\nMax-Forwards: " + ((flags & 8) ? "0" : "70") + "\r\nFrom: ";
    if (to_request) {
        s += m.to()->raw;
        if (m.to()->tag.empty()) s += ";tag=far9";
        s += "\r\nTo: ";
        s += m.from()->raw;
    } else {
        s += m.from()->raw;
        s += "\r\nTo: ";
        s += m.to()->raw;
    }
    s += "\r\nCall-ID: ";
    s += m.call_id();
    s += "\r\nCSeq: ";
    // ACK to a 2xx carries the INVITE's number (RFC 3261 §13.2.2.4).
    s += std::to_string(method == "ACK" && !(flags & 4) ? m.cseq()->number : cseq);
    s += ' ';
    s += method;
    s += "\r\nContact: <sip:";
    s += to_request ? "far@10.9.9.9:5090" : "alice@198.51.100.7:5070";
    s += ">\r\n";
    if (flags & 16) s += "X-SBC-Fraud: forged\r\n";
    const bool sdp = (flags & 2) && (method == "INVITE" || method == "UPDATE" || method == "ACK");
    append_body(s, sdp ? sdp_body(to_request ? "10.9.9.9" : "198.51.100.7", 24000) : std::string());
    return s;
}

// `m` received again, as it was, or turned into a CANCEL or a non-2xx ACK of its transaction.
std::string resend(const sip::Message& m, std::uint8_t how) {
    if (how % 3 == 0 || !m.is_request() || !m.cseq()) return std::string(m.bytes());
    const std::string_view method = how % 3 == 1 ? "CANCEL" : "ACK";
    std::string s(method);
    s += ' ';
    std::string_view start = m.start_line();
    const auto sp1 = start.find(' ');
    const auto sp2 = start.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 <= sp1) return {};
    s += start.substr(sp1 + 1, sp2 - sp1 - 1);
    s += " SIP/2.0\r\n";
    for (const auto& h : m.headers())
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::to || h.id == sip::HeaderId::call_id ||
            h.id == sip::HeaderId::max_forwards)
            s += h.line;
    s += "CSeq: " + std::to_string(m.cseq()->number) + " " + std::string(method) + "\r\n";
    append_body(s, {});
    return s;
}

struct Driver {
    Wire wire;
    Media media;
    Hooks hooks;
    B2bua b2bua;
    base::Nanos now = base::seconds(1000);
    std::vector<std::pair<Side, std::string>> received;  // what was fed, for op 3
    std::uint32_t cseq = 100;

    explicit Driver(std::uint8_t bits)
        : b2bua(make_config(bits), wire, media, hooks, TimerSettings{},
                TransactionLimits{kMaxTransactions}) {}

    void check_bounds() const {
        if (b2bua.active_calls() > kMaxCalls + kMaxTransactions)
            fail("active calls over the limit", b2bua.active_calls());
        if (b2bua.transactions().size() > kMaxTransactions)
            fail("transactions over the limit", b2bua.transactions().size());
    }

    void deliver(std::string bytes, Side side, const Flow& from) {
        if (bytes.empty()) return;
        sip::Message m;
        if (!m.parse_owned(bytes).ok) return;
        if (m.is_request() && !sip::check_request(m).ok) return;
        if (received.size() < 256) received.emplace_back(side, bytes);
        trace("->", from, bytes);
        b2bua.receive(m, from, side, now);
        check_bounds();
    }

    // The `which % 64`-th latest message the B2BUA sent (requests or responses; either when
    // which >= 128).
    const Sent* pick_sent(std::uint8_t which, bool want_request) const {
        std::size_t skip = which % 64;
        for (std::size_t i = wire.sent.size(); i-- > 0;) {
            const bool req = wire.sent[i].bytes.compare(0, 4, "SIP/") != 0;
            if (req != want_request && which < 128) continue;
            if (skip-- == 0) return &wire.sent[i];
        }
        return nullptr;
    }

    void record(std::uint8_t op, std::uint8_t step, std::string_view payload) {
        now += step < 200 ? base::millis(20) * step : base::seconds(5) * (step - 199);
        b2bua.advance(now);
        check_bounds();
        const Side side = (op & 1) ? Side::internal : Side::external;
        auto byte = [&](std::size_t i) -> std::uint8_t {
            return i < payload.size() ? static_cast<std::uint8_t>(payload[i]) : 0;
        };
        const std::string_view rest = payload.size() > 3 ? payload.substr(3) : std::string_view{};
        switch ((op >> 1) & 7) {
            case 0:
                deliver(std::string(payload), side, flow_of_side(side, op >> 4));
                break;
            case 1: {  // a response to a request the B2BUA sent
                const Sent* s = pick_sent(byte(0), true);
                if (!s) break;
                sip::Message req;
                if (!req.parse_owned(s->bytes).ok) break;
                std::string r = respond_to(
                    req, kStatuses[byte(1) % (sizeof kStatuses / sizeof kStatuses[0])], byte(2));
                flip(r, rest);
                const Flow f = s->flow;
                deliver(std::move(r), side_of(f), f);
                break;
            }
            case 2: {  // a request in the dialog of something the B2BUA sent
                const Sent* s = pick_sent(byte(0), (byte(2) & 1) != 0);
                if (!s) break;
                sip::Message m;
                if (!m.parse_owned(s->bytes).ok) break;
                std::string r =
                    in_dialog(m, kMethods[byte(1) % std::size(kMethods)], byte(2), ++cseq);
                flip(r, rest);
                const Flow f = s->flow;
                deliver(std::move(r), side_of(f), f);
                break;
            }
            case 3: {  // something received before, again
                if (received.empty()) break;
                const auto& [s, bytes] = received[byte(0) % received.size()];
                sip::Message m;
                if (!m.parse_owned(bytes).ok) break;
                std::string r = resend(m, byte(1));
                flip(r, rest);
                const Side again = s;
                deliver(std::move(r), again, flow_of_side(again, op >> 4));
                break;
            }
            case 4: {
                const auto calls = b2bua.calls();
                if (!calls.empty()) b2bua.end_call(calls[byte(0) % calls.size()], now);
                check_bounds();
                break;
            }
            case 5:
                hooks.next = {};
                if (byte(0) % 3 == 1) {
                    hooks.next.kind = Admission::Kind::flag;
                    hooks.next.flag_value = "score=0.9";
                } else if (byte(0) % 3 == 2) {
                    hooks.next.kind = Admission::Kind::block;
                    hooks.next.status = 400 + byte(1) % 200;
                    hooks.next.reason = "Refused";
                }
                break;
            default:
                break;
        }
    }

    // No input any more: every call ends by max_call_duration at the latest, and its
    // transactions by their timers.
    void drain(bool health) {
        const base::Nanos until = now + kMaxDuration + base::seconds(400);
        b2bua.advance(now);
        for (int i = 0; i < 100000 && now < until; ++i) {
            const base::Nanos next = b2bua.next_deadline();
            // A deadline that advance() has passed and left due would spin the owner's loop.
            if (next <= now) fail("next_deadline() not after the time just advanced to", next, now);
            now = std::min(until, next);
            b2bua.advance(now);
            check_bounds();
        }
        if (b2bua.active_calls() != 0) fail("calls left after draining", b2bua.active_calls());
        if (!health && b2bua.transactions().size() != 0)
            fail("transactions left after draining", b2bua.transactions().size());
        if (!b2bua.calls().empty()) fail("calls() not empty after draining");
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 64 * 1024) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::uint8_t bits = data[0];
    {
        Driver d(bits);
        constexpr std::string_view kMarker = "\n#!";
        std::size_t pos = in.find(kMarker, 1);
        for (int n = 0; pos != std::string_view::npos && n < 200; ++n) {
            const std::size_t start = pos + kMarker.size();
            const std::size_t next = in.find(kMarker, start);
            const std::string_view rec = in.substr(
                start, next == std::string_view::npos ? std::string_view::npos : next - start);
            if (rec.size() >= 2)
                d.record(static_cast<std::uint8_t>(rec[0]), static_cast<std::uint8_t>(rec[1]),
                         rec.substr(2));
            pos = next;
        }
        d.drain((bits & 2) != 0);
        for (const auto& [call, n] : d.media.anchored)
            if (d.media.released[call] != 1)
                fail("anchored call not released once", call,
                     static_cast<std::uint64_t>(d.media.released[call]));
    }
    return 0;
}

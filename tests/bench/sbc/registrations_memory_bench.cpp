// Heap bytes the registrar proxy holds per binding, measured without sockets: N phones, each
// from its own public address and port (its own flow, as phones behind distinct NATs are),
// register through the B2BUA (REGISTER forwarded, the registrar's 200 relayed); the clock then
// moves past RFC 3261 Timer J so that no transaction is left, and the growth of the heap in use
// (glibc mallinfo2) is divided by the bindings held. Then every phone refreshes R times (from
// its cache: same flow and Call-ID) and the heap is measured again: it must not grow.
//   bench_registrations_memory [N=50000] [R=3]
// Prints "bindings=.. heap_bytes_per_binding=.. after_refresh_bytes_per_binding=..".
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sbc/signaling/b2bua.hpp"

using namespace sbc;
using namespace sbc::signaling;

namespace {

struct LastSent final : Wire {
    std::string bytes;
    std::size_t count = 0;
    bool send(const Flow&, std::string_view b) override {
        bytes.assign(b);
        ++count;
        return true;
    }
};

struct NoMedia final : MediaAnchor {
    base::Result<base::Endpoint> anchor(std::uint64_t, std::size_t, Side, const base::Endpoint&,
                                        bool, base::Nanos) override {
        return base::Endpoint{*base::IpAddress::parse("203.0.113.1"), 30000};
    }
    void release(std::uint64_t) override {}
};

struct NoHooks final : CallHooks {
    Admission admit(const sip::Message&, const Flow&, Side) override { return {}; }
};

std::size_t heap_in_use() {
    malloc_trim(0);
    return mallinfo2().uordblks;
}

std::string register_req(std::size_t i, int cseq, const std::string& addr) {
    const std::string user = std::to_string(200000 + i);
    return "REGISTER sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKb" +
           std::to_string(i) + "." + std::to_string(cseq) +
           ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:" + user + "@pbx.example>;tag=f" +
           std::to_string(i) + "\r\nTo: <sip:" + user + "@pbx.example>\r\nCall-ID: reg" +
           std::to_string(i) + "-4711@" + addr + "\r\nCSeq: " + std::to_string(cseq) +
           " REGISTER\r\nContact: <sip:" + user +
           "@192.168.1.5:5060>\r\nExpires: 3600\r\nUser-Agent: Yealink SIP-T46S "
           "66.86.0.15\r\nContent-Length: 0\r\n\r\n";
}

// The registrar's 200: the Contacts it was sent, granted 3600 s.
std::string registrar_ok(const std::string& req) {
    sip::Message m;
    if (!m.parse_owned(req).ok) return {};
    std::string s = "SIP/2.0 200 OK\r\n";
    for (const auto& h : m.headers())
        if (h.id == sip::HeaderId::via || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id || h.id == sip::HeaderId::cseq)
            s += h.line;
    s += "To: " + std::string(m.to()->raw) + ";tag=reg\r\n";
    for (const auto& c : m.contacts())
        s += "Contact: <" + std::string(c.uri.raw) + ">;expires=3600\r\n";
    s += "Content-Length: 0\r\n\r\n";
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 50000;
    const int refreshes = argc > 2 ? std::atoi(argv[2]) : 3;
    B2buaConfig c;
    c.external.host = "203.0.113.1";
    c.external.port = 5060;
    c.external.media_host = "203.0.113.1";
    c.external.listener = 0;
    c.internal.host = "10.0.0.1";
    c.internal.port = 5060;
    c.internal.media_host = "10.0.0.1";
    c.internal.listener = 1;
    c.internal.next_hops.push_back({*base::IpAddress::parse("10.0.0.2"), 5060});
    c.health.enabled = false;
    c.registrations.max_bindings = n + 16;
    c.registrations.keepalive = Keepalive::crlf;  // no probe transactions in the measurement
    c.registrations.nat_expires = 0;  // bindings last the 3600 s granted: none expires here
    LastSent wire;
    NoMedia media;
    NoHooks hooks;
    B2bua b(std::move(c), wire, media, hooks);
    Flow registrar;
    registrar.remote = {*base::IpAddress::parse("10.0.0.2"), 5060};
    registrar.listener = 1;

    std::vector<std::string> addrs(n);
    std::vector<Flow> flows(n);
    for (std::size_t i = 0; i < n; ++i) {
        addrs[i] = "100." + std::to_string(64 + i / 65536) + "." + std::to_string(i / 256 % 256) +
                   "." + std::to_string(i % 256);
        flows[i].remote = {*base::IpAddress::parse(addrs[i]),
                           static_cast<std::uint16_t>(40000 + i % 20000)};
        flows[i].listener = 0;
    }
    base::Nanos now = base::seconds(100);
    auto one = [&](std::size_t i, int cseq) {
        const std::size_t before = wire.count;
        sip::Message m;
        if (!m.parse_owned(register_req(i, cseq, addrs[i])).ok) return false;
        b.receive(m, flows[i], Side::external, now);
        if (wire.count == before) return false;
        if (wire.bytes.rfind("REGISTER ", 0) == 0) {  // forwarded: the registrar answers
            sip::Message ok;
            if (!ok.parse_owned(registrar_ok(wire.bytes)).ok) return false;
            b.receive(ok, registrar, Side::internal, now);
        }
        return wire.bytes.rfind("SIP/2.0 200 ", 0) == 0;
    };
    auto settle = [&] {  // past Timer J (64*T1) and K: no transaction left
        for (int s = 0; s < 40; ++s) {
            now += base::seconds(1);
            b.advance(now);
        }
    };

    settle();
    const std::size_t heap0 = heap_in_use();
    std::size_t failed = 0;
    // 1,000 REGISTERs per second of the moved clock, as a live node would see them.
    auto round = [&](int cseq) {
        for (std::size_t i = 0; i < n; ++i) {
            if (!one(i, cseq)) ++failed;
            if (i % 100 == 99) {
                now += base::millis(100);
                b.advance(now);
            }
        }
    };
    round(1);
    const std::size_t tx_busy = b.transactions().size();
    settle();
    const std::size_t heap1 = heap_in_use();
    const std::size_t held = b.registrations()->bindings();
    for (int r = 0; r < refreshes; ++r) {
        round(2 + r);
        settle();
    }
    const std::size_t heap2 = heap_in_use();
    const double per = held ? static_cast<double>(heap1 - heap0) / static_cast<double>(held) : 0;
    const double per2 = held ? static_cast<double>(heap2 - heap0) / static_cast<double>(held) : 0;
    std::printf(
        "bindings=%zu flows=%zu failed=%zu transactions_during=%zu transactions_after=%zu "
        "heap_bytes_per_binding=%.0f after_%d_refreshes_bytes_per_binding=%.0f "
        "answered_from_cache=%llu\n",
        held, b.registrations()->flows(), failed, tx_busy, b.transactions().size(), per, refreshes,
        per2,
        static_cast<unsigned long long>(
            b.registrations()->counters()[RegistrationCounter::answered_from_cache]));
    return failed == 0 && held == n ? 0 : 1;
}

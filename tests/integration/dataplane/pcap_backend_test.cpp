// The pcap backend: a capture written here with libpcap goes through run_pcap; the output
// capture is read back and the rewritten headers and checksums are checked. Hostile captures
// end with counted drops or a clear error.
#include <pcap/pcap.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using namespace sbc::dataplane::test;
using sbc::base::Endpoint;
using sbc::base::IpAddress;

namespace {
std::string temp_path(const std::string& name) {
    return "/tmp/sbc_dp_" + std::to_string(::getpid()) + "_" + name;
}

struct Rec {
    std::vector<std::uint8_t> bytes;
    std::int64_t ts_ns;
    std::uint32_t caplen = 0;  // 0: all
};

void write_pcap(const std::string& path, const std::vector<Rec>& recs, int snaplen = 65535,
                int dlt = DLT_EN10MB) {
    pcap_t* dead = pcap_open_dead_with_tstamp_precision(dlt, snaplen, PCAP_TSTAMP_PRECISION_NANO);
    pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
    REQUIRE(d);
    for (const auto& r : recs) {
        pcap_pkthdr h{};
        h.ts.tv_sec = r.ts_ns / 1'000'000'000;
        h.ts.tv_usec = r.ts_ns % 1'000'000'000;
        h.len = static_cast<bpf_u_int32>(r.bytes.size());
        h.caplen = r.caplen ? r.caplen : h.len;
        pcap_dump(reinterpret_cast<u_char*>(d), &h, r.bytes.data());
    }
    pcap_dump_close(d);
    pcap_close(dead);
}

std::vector<std::vector<std::uint8_t>> read_pcap(const std::string& path, int* dlt = nullptr) {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline(path.c_str(), err);
    REQUIRE(p);
    if (dlt) *dlt = pcap_datalink(p);
    std::vector<std::vector<std::uint8_t>> out;
    pcap_pkthdr* h;
    const u_char* data;
    while (pcap_next_ex(p, &h, &data) == 1) out.emplace_back(data, data + h->caplen);
    pcap_close(p);
    return out;
}

StreamSpec the_call() {
    StreamSpec s;
    s.call_id = 1;
    s.a.local = {*IpAddress::parse("203.0.113.1"), 30000};
    s.a.remote = {*IpAddress::parse("198.51.100.10"), 4000};
    s.b.local = {*IpAddress::parse("203.0.113.1"), 30002};
    s.b.remote = {*IpAddress::parse("192.0.2.20"), 6000};
    return s;
}

void create_call(Pipeline& p, sbc::base::Nanos now, void*) {
    REQUIRE(p.media().create(the_call(), now));
}

FrameSpec rtp_frame(const char* src, std::uint16_t sport, std::uint16_t dport, std::uint16_t seq) {
    FrameSpec f;
    f.src = src;
    f.dst = "203.0.113.1";
    f.sport = sport;
    f.dport = dport;
    f.payload = rtp_payload(seq, seq * 160u, 172, static_cast<std::uint8_t>(seq));
    return f;
}
}  // namespace

TEST_CASE("pcap backend relays RTP with rewritten headers and valid checksums") {
    const std::int64_t t0 = 1'700'000'000'000'000'000;
    std::vector<Rec> recs;
    for (std::uint16_t seq = 1; seq <= 10; ++seq) {
        recs.push_back(
            {build_frame(rtp_frame("198.51.100.10", 4000, 30000, seq)), t0 + seq * 20'000'000});
        recs.push_back(
            {build_frame(rtp_frame("192.0.2.20", 6000, 30002, seq)), t0 + seq * 20'000'000 + 1000});
    }
    // Malformed: bad IPv4 checksum, and a record cut by the snaplen.
    auto bad = build_frame(rtp_frame("198.51.100.10", 4000, 30000, 11));
    bad[24] ^= 0x55;
    recs.push_back({bad, t0 + 300'000'000});
    recs.push_back(
        {build_frame(rtp_frame("198.51.100.10", 4000, 30000, 12)), t0 + 320'000'000, 60});
    // A stranger on the latched leg.
    recs.push_back({build_frame(rtp_frame("6.6.6.6", 1, 30000, 13)), t0 + 340'000'000});
    const auto in = temp_path("in.pcap"), out = temp_path("out.pcap");
    write_pcap(in, recs);

    Pipeline p(PipelineConfig::defaults());
    PcapRunHooks hooks;
    hooks.on_start = create_call;
    auto r = run_pcap(p, in, out, hooks);
    REQUIRE(r);
    CHECK(r->error.empty());
    CHECK(r->records == recs.size());
    CHECK(r->written == 20);
    CHECK(p.counters().drops[DropReason::bad_checksum] == 1);
    CHECK(p.counters().drops[DropReason::truncated] == 1);
    CHECK(p.counters().drops[DropReason::latch_rejected] == 1);

    auto frames = read_pcap(out);
    REQUIRE(frames.size() == 20);
    for (std::size_t i = 0; i < frames.size(); ++i) {
        auto parsed = parse_one(frames[i]);  // parse re-verifies IPv4 and UDP checksums
        INFO("frame " << i);
        REQUIRE(parsed.decision.action == Action::undecided);
        CHECK(checksums_ok(frames[i], parsed.meta));
        const bool from_a = i % 2 == 0;
        CHECK(parsed.meta.src == *IpAddress::parse("203.0.113.1"));
        CHECK(parsed.meta.src_port == (from_a ? 30002 : 30000));
        CHECK(parsed.meta.dst == *IpAddress::parse(from_a ? "192.0.2.20" : "198.51.100.10"));
        CHECK(parsed.meta.dst_port == (from_a ? 6000 : 4000));
        const std::uint16_t seq = static_cast<std::uint16_t>(i / 2 + 1);
        const auto expect = rtp_payload(seq, seq * 160u, 172, static_cast<std::uint8_t>(seq));
        CHECK(std::equal(expect.begin(), expect.end(),
                         frames[i].begin() + parsed.meta.payload_offset));
    }
    std::remove(in.c_str());
    std::remove(out.c_str());
}

TEST_CASE("pcap backend reports hostile captures without crashing") {
    const auto in = temp_path("hostile.pcap"), out = temp_path("hostile_out.pcap");
    Pipeline p(PipelineConfig::defaults());
    SECTION("garbage file") {
        std::ofstream(in) << "this is not a capture file at all, just text";
        auto r = run_pcap(p, in, out);
        CHECK_FALSE(r);
    }
    SECTION("missing file") {
        auto r = run_pcap(p, temp_path("does_not_exist.pcap"), out);
        REQUIRE_FALSE(r);
        CHECK(r.error().message.find("does_not_exist") != std::string::npos);
    }
    SECTION("last record truncated") {
        std::vector<Rec> recs;
        for (std::uint16_t i = 1; i <= 5; ++i)
            recs.push_back({build_frame(rtp_frame("198.51.100.10", 4000, 30000, i)), i * 1000});
        write_pcap(in, recs);
        // Cut the file in the middle of the last record.
        REQUIRE(::truncate(in.c_str(), 24 + 4 * (16 + 214) + 16 + 100) == 0);
        auto r = run_pcap(p, in, out);
        REQUIRE(r);
        CHECK(r->records == 4);
        CHECK_FALSE(r->error.empty());
    }
    SECTION("random bytes after a valid header, as records") {
        std::vector<Rec> recs;
        std::uint32_t x = 12345;
        for (int i = 0; i < 300; ++i) {
            std::vector<std::uint8_t> junk(static_cast<std::size_t>(x % 200));
            for (auto& b : junk) {
                x = x * 1103515245 + 12345;
                b = static_cast<std::uint8_t>(x >> 16);
            }
            // Some junk looks like IPv4 over Ethernet.
            if (junk.size() > 14 && i % 2) {
                junk[12] = 0x08;
                junk[13] = 0x00;
                junk[14] = 0x45;
            }
            recs.push_back({junk, i * 1000});
        }
        write_pcap(in, recs);
        auto r = run_pcap(p, in, out);
        REQUIRE(r);
        CHECK(r->records == 300);
        CHECK(r->written == 0);
        CHECK(p.counters().events[PipelineEvent::rx] == 300);
    }
    std::remove(in.c_str());
    std::remove(out.c_str());
}

TEST_CASE("pcap backend reads Linux cooked captures (tcpdump -i any)") {
    std::vector<Rec> recs;
    auto sll = [](std::uint16_t proto) {
        std::vector<std::uint8_t> h(16, 0);
        h[1] = 0;  // packet to us
        h[3] = 1;  // ARPHRD_ETHER
        h[5] = 6;
        h[14] = static_cast<std::uint8_t>(proto >> 8);
        h[15] = static_cast<std::uint8_t>(proto);
        return h;
    };
    for (std::uint16_t seq = 1; seq <= 3; ++seq) {
        auto rec = sll(0x0800);
        auto ip = build_ip(rtp_frame("198.51.100.10", 4000, 30000, seq));
        rec.insert(rec.end(), ip.begin(), ip.end());
        recs.push_back({rec, seq * 20'000'000});
    }
    auto arp = sll(0x0806);
    arp.resize(16 + 28, 0);
    recs.push_back({arp, 80'000'000});
    recs.push_back({std::vector<std::uint8_t>(10, 0), 90'000'000});  // shorter than the header
    const auto in = temp_path("sll.pcap"), out = temp_path("sll_out.pcap");
    write_pcap(in, recs, 65535, DLT_LINUX_SLL);
    Pipeline p(PipelineConfig::defaults());
    PcapRunHooks hooks;
    hooks.on_start = create_call;
    auto r = run_pcap(p, in, out, hooks);
    REQUIRE(r);
    CHECK(r->records == 5);
    CHECK(r->written == 3);
    CHECK(p.counters().events[PipelineEvent::to_kernel] == 1);
    CHECK(p.counters().drops[DropReason::truncated] == 1);
    int dlt = 0;
    auto frames = read_pcap(out, &dlt);
    CHECK(dlt == DLT_LINUX_SLL);
    REQUIRE(frames.size() == 3);
    for (auto& f : frames) {
        CHECK(std::equal(f.begin(), f.begin() + 16, recs[0].bytes.begin()));  // header kept
        std::vector<std::uint8_t> ip(f.begin() + 16, f.end());
        Frame fr{ip.data(), static_cast<std::uint32_t>(ip.size()),
                 static_cast<std::uint32_t>(ip.size()), 0, 0};
        PacketMeta m;
        Decision d;
        parse_ip_packet(fr, m, d);  // verifies IPv4 and UDP checksums
        REQUIRE(d.action == Action::undecided);
        CHECK(m.dst == *IpAddress::parse("192.0.2.20"));
        CHECK(m.src_port == 30002);
    }
    std::remove(in.c_str());
    std::remove(out.c_str());
}

TEST_CASE("pcap backend gives every packet its own capture time (jitter is measured right)") {
    // Leg b sends 1 ms or 3 ms after leg a, alternately: a 2 ms swing in transit, so RFC 3550
    // jitter converges towards 2 ms; a burst sharing one timestamp would hide it.
    const std::int64_t t0 = 1'700'000'000'000'000'000;
    std::vector<Rec> recs;
    for (std::uint16_t seq = 1; seq <= 60; ++seq) {
        const std::int64_t t = t0 + seq * 20'000'000LL;
        recs.push_back({build_frame(rtp_frame("198.51.100.10", 4000, 30000, seq)), t});
        recs.push_back({build_frame(rtp_frame("192.0.2.20", 6000, 30002, seq)),
                        t + (seq % 2 ? 1'000'000 : 3'000'000)});
    }
    const auto in = temp_path("jitter.pcap"), out = temp_path("jitter_out.pcap");
    write_pcap(in, recs);
    Pipeline p(PipelineConfig::defaults());
    PcapRunHooks hooks;
    hooks.on_start = create_call;
    auto r = run_pcap(p, in, out, hooks);
    REQUIRE(r);
    CHECK(r->written == 120);
    auto st = p.media().stats(StreamId{0, 1});
    REQUIRE(st);
    CHECK(st->a.jitter_ms() < 0.05);
    CHECK(st->b.jitter_ms() > 1.5);
    CHECK(st->b.jitter_ms() < 2.05);
    std::remove(in.c_str());
    std::remove(out.c_str());
}

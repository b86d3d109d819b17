// The DPDK backend driven end to end through vdevs: frames come from a generated capture
// (net_pcap rx), relayed frames go to a capture (net_pcap tx), and the exception port is a
// second net_pcap (or a net_tap in a network namespace) so the test sees what the host stack got.
//
// The EAL can be started once per process, so each TEST_CASE here is run by its own ctest
// entry (selected by tag).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/dpdk/dpdk.hpp"
#include "tests/integration/dataplane/dpdk/frames.hpp"

namespace dp = sbc::dataplane;
namespace dpdk = sbc::dataplane::dpdk;
using namespace sbc::dpdk_test;
using sbc::base::Endpoint;
using sbc::base::IpAddress;

namespace {

const Mac kRouterMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const Mac kSbcMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x10};
const Ip4 kSbc{203, 0, 113, 10};
const Ip4 kCaller{198, 51, 100, 20};
const Ip4 kCallee{192, 0, 2, 30};
const Ip4 kHijacker{198, 51, 100, 99};
const Ip4 kFlooder{198, 51, 100, 66};
constexpr std::uint32_t kSsrcA = 0xA0A0A0A0, kSsrcB = 0xB0B0B0B0;
constexpr std::uint32_t kSsrcA6 = 0xA6A6A6A6, kSsrcB6 = 0xB6B6B6B6;
constexpr std::uint16_t kVlan = 100;
// RFC 3849 documentation prefix.
const Ip6 kSbc6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
const Ip6 kCaller6{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20};
const Ip6 kCallee6{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30};

IpAddress ip(const Ip4& a) {
    return IpAddress::v4_bytes(a.data());
}

IpAddress ip6(const Ip6& a) {
    return IpAddress::v6(a.data());
}

// The same call over IPv6 (the relay keeps the family of each leg).
dp::StreamSpec call_spec_v6() {
    dp::StreamSpec s;
    s.call_id = 8;
    s.a.local = Endpoint{ip6(kSbc6), 30010};
    s.a.remote = Endpoint{ip6(kCaller6), 4010};
    s.b.local = Endpoint{ip6(kSbc6), 30012};
    s.b.remote = Endpoint{ip6(kCallee6), 6010};
    return s;
}

std::string temp_dir() {
    std::string t = "/tmp/sbc_dpdk_test_XXXXXX";
    if (!mkdtemp(t.data())) FAIL("mkdtemp failed");
    return t;
}

std::vector<std::string> eal_args(const std::string& tag) {
    // No hugepages and no PCI here; a per-process file prefix and no shared config keep
    // concurrent tests (ctest -j) apart.
    return {"-l",
            "0,1",
            "--no-huge",
            "--no-pci",
            "-m",
            "256",
            "--no-shconf",
            "--file-prefix=sbc_" + tag + std::to_string(getpid()),
            "--log-level=*:warning"};
}

dp::StreamSpec call_spec() {
    dp::StreamSpec s;
    s.call_id = 7;
    s.a.local = Endpoint{ip(kSbc), 30000};
    s.a.remote = Endpoint{ip(kCaller), 4000};
    s.b.local = Endpoint{ip(kSbc), 30002};
    s.b.remote = Endpoint{ip(kCallee), 6000};
    return s;
}

dp::PipelineConfig pipeline_config() {
    auto c = dp::PipelineConfig::defaults();
    c.local_addresses = {ip(kSbc), ip6(kSbc6)};
    c.media_port_min = 30000;
    c.media_port_max = 39999;
    c.sip_udp_ports = {5060};
    c.sip_tcp_ports = {5060, 5061};
    return c;
}

std::string sip_request(const std::string& method, int n) {
    return method +
           " sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK" +
           std::to_string(n) + "\r\nMax-Forwards: 70\r\nCall-ID: c" + std::to_string(n) +
           "\r\nCSeq: 1 " + method + "\r\nContent-Length: 0\r\n\r\n";
}

}  // namespace

TEST_CASE("dpdk backend relays media and hands SIP/ARP/ICMP to the exception port", "[pcap]") {
    const std::string dir = temp_dir();
    const std::string in = dir + "/in.pcap", out = dir + "/out.pcap";
    const std::string kin = dir + "/kernel_in.pcap", kout = dir + "/kernel_out.pcap";

    // --- the input capture -------------------------------------------------------------
    std::vector<Bytes> frames;
    std::vector<Bytes> rtp_a, rtp_b;  // as sent, to compare payloads
    for (std::uint16_t i = 0; i < 20; ++i) {
        rtp_a.push_back(rtp(kSsrcA, static_cast<std::uint16_t>(100 + i), 160u * i, 160));
        rtp_b.push_back(rtp(kSsrcB, static_cast<std::uint16_t>(900 + i), 160u * i, 160));
        frames.push_back(udp4(kSbcMac, kRouterMac, kCaller, 4000, kSbc, 30000, rtp_a.back()));
        frames.push_back(udp4(kSbcMac, kRouterMac, kCallee, 6000, kSbc, 30002, rtp_b.back()));
    }
    for (int i = 0; i < 2; ++i) {
        frames.push_back(udp4(kSbcMac, kRouterMac, kCaller, 4001, kSbc, 30001, rtcp_sr(kSsrcA)));
        frames.push_back(udp4(kSbcMac, kRouterMac, kCallee, 6001, kSbc, 30003, rtcp_sr(kSsrcB)));
    }
    std::vector<Bytes> rtp_a6, rtp_b6;
    for (std::uint16_t i = 0; i < 5; ++i) {
        rtp_a6.push_back(rtp(kSsrcA6, static_cast<std::uint16_t>(10 + i), 160u * i, 160));
        rtp_b6.push_back(rtp(kSsrcB6, static_cast<std::uint16_t>(70 + i), 160u * i, 160));
        frames.push_back(udp6(kSbcMac, kRouterMac, kCaller6, 4010, kSbc6, 30010, rtp_a6.back()));
        frames.push_back(udp6(kSbcMac, kRouterMac, kCallee6, 6010, kSbc6, 30012, rtp_b6.back()));
    }
    // Media on a VLAN: relayed with its tag.
    const Bytes rtp_vlan = rtp(kSsrcA, 120, 3200, 160);
    frames.push_back(
        vlan_tagged(udp4(kSbcMac, kRouterMac, kCaller, 4000, kSbc, 30000, rtp_vlan), kVlan));
    std::vector<Bytes> for_kernel;  // what the exception port must see, byte for byte
    for_kernel.push_back(
        udp4(kSbcMac, kRouterMac, kCaller, 5060, kSbc, 5060, text(sip_request("INVITE", 1))));
    for_kernel.push_back(tcp4_syn(kSbcMac, kRouterMac, kCaller, 40000, kSbc, 5061));
    for_kernel.push_back(arp_request(kRouterMac, Ip4{203, 0, 113, 1}, kSbc));
    for_kernel.push_back(icmp4_echo(kSbcMac, kRouterMac, kCaller, kSbc));
    // IPv6 neighbour discovery: a solicitation for our address to its solicited-node group
    // (ff02::1:ff00:10), the same for duplicate address detection (from ::), an unsolicited
    // advertisement to all nodes, and a solicited one to our link-local address.
    const Ip6 router6{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const Ip6 sbc_link6{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
    const Ip6 solicited6{0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x10};
    const Ip6 all_nodes6{0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    for_kernel.push_back(icmp6_nd(kSbcMac, kRouterMac, router6, solicited6, 135, kSbc6));
    for_kernel.push_back(icmp6_nd(kSbcMac, kRouterMac, Ip6{}, solicited6, 135, kSbc6));
    for_kernel.push_back(icmp6_nd(kSbcMac, kRouterMac, router6, all_nodes6, 136, router6));
    for_kernel.push_back(icmp6_nd(kSbcMac, kRouterMac, router6, sbc_link6, 136, router6));
    frames.insert(frames.end(), for_kernel.begin(), for_kernel.end());
    // Neighbour discovery for another host's solicited-node group: not ours.
    const Ip6 other_solicited6{0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x99};
    frames.push_back(icmp6_nd(kSbcMac, kRouterMac, router6, other_solicited6, 135, kCaller6));
    // Not for us: ARP for another host on the segment, SIP to an address we do not own.
    frames.push_back(arp_request(kRouterMac, Ip4{203, 0, 113, 1}, Ip4{203, 0, 113, 99}));
    frames.push_back(udp4(kSbcMac, kRouterMac, kCaller, 5060, Ip4{203, 0, 113, 77}, 5060,
                          text(sip_request("OPTIONS", 2))));
    // Garbage: a runt, a broken IPv4 header checksum. And media with a broken UDP checksum: the
    // relay does not verify it (default) but its incremental update keeps it broken.
    frames.push_back(Bytes(10, 0xee));
    Bytes corrupted_payload;
    {
        Bytes f =
            udp4(kSbcMac, kRouterMac, kCaller, 5060, kSbc, 5060, text(sip_request("INVITE", 3)));
        f[14 + 10] ^= 0x5a;
        frames.push_back(f);
        Bytes g = udp4(kSbcMac, kRouterMac, kCaller, 4000, kSbc, 30000, rtp(kSsrcA, 500, 0, 160));
        g.back() ^= 0x01;
        corrupted_payload.assign(g.begin() + 42, g.end());
        frames.push_back(g);
    }
    // Media ports nobody allocated, and a hijack attempt on the latched leg.
    for (std::uint16_t p : {31000, 31002, 39998})
        frames.push_back(udp4(kSbcMac, kRouterMac, kCaller, 4000, kSbc, p, rtp(1, 1, 1, 160)));
    frames.push_back(
        udp4(kSbcMac, kRouterMac, kHijacker, 4000, kSbc, 30000, rtp(0xBAD, 1, 1, 160)));
    // A flood of OPTIONS from one source.
    constexpr int kFlood = 300;
    std::vector<Bytes> flood;
    for (int i = 0; i < kFlood; ++i)
        flood.push_back(udp4(kSbcMac, kRouterMac, kFlooder, 5060, kSbc, 5060,
                             text(sip_request("OPTIONS", 1000 + i))));
    frames.insert(frames.end(), flood.begin(), flood.end());
    write_pcap(in, frames);

    // What the host stack sends back (an answer to the INVITE, an ARP reply): must leave by the
    // data port unchanged.
    std::vector<Bytes> from_kernel = {udp4(kRouterMac, kSbcMac, kSbc, 5060, kCaller, 5060,
                                           text("SIP/2.0 100 Trying\r\nCall-ID: c1\r\nCSeq: 1 "
                                                "INVITE\r\nContent-Length: 0\r\n\r\n")),
                                      arp_request(kSbcMac, kSbc, Ip4{203, 0, 113, 1})};
    write_pcap(kin, from_kernel);

    // --- run ------------------------------------------------------------------------------
    dp::Pipeline pipeline(pipeline_config());
    // Streams live on the worker's time line (the clock passed to run()).
    sbc::base::SystemClock clock;
    auto stream = pipeline.media().create(call_spec(), clock.monotonic());
    REQUIRE(stream.ok());
    REQUIRE(pipeline.media().create(call_spec_v6(), clock.monotonic()).ok());

    dpdk::BackendConfig cfg;
    cfg.eal_args = eal_args("pcap");
    cfg.eal_args.push_back("--vdev=net_pcap0,rx_pcap=" + in + ",tx_pcap=" + out);
    cfg.ports = {
        {"net_pcap0", "net_pcap1,rx_pcap=" + kin + ",tx_pcap=" + kout}};  // 2nd: hot-plugged
    cfg.mbufs_per_port = 2047;
    cfg.rx_descriptors = cfg.tx_descriptors = 256;
    auto backend = dpdk::Backend::create(cfg, pipeline);
    if (!backend)
        FAIL("DPDK backend did not start: "
             << backend.error().message << " (DPDK comes from scripts/setup: libdpdk-dev, dpdk)");
    const Mac data_mac = (*backend)->data_mac(0);
    REQUIRE((*backend)->exception_mac(0));
    const Mac exception_mac = *(*backend)->exception_mac(0);
    dpdk::StopCondition stop;
    stop.idle_polls = 20000;  // both captures exhausted
    stop.max_duration = sbc::base::seconds(20);
    const dpdk::RunResult r = (*backend)->run(stop, clock);
    backend->reset();  // stops the ports: the tx captures are flushed and closed

    INFO("worker ran on lcore " << r.lcore);
    CHECK(r.lcore == 1);  // a worker lcore, not the main one
    CHECK(r.elapsed < sbc::base::seconds(20));

    // --- counters -------------------------------------------------------------------------
    using C = dpdk::BackendCounter;
    using D = dpdk::BackendDrop;
    using R = dp::DropReason;
    CHECK(r.counters[C::rx] == frames.size());
    CHECK(r.counters[C::relayed] == 56);
    CHECK(r.counters[C::from_kernel] == 2);
    CHECK(r.drops[D::not_for_us] == 1);
    CHECK(r.drops[D::tx_full] == 0);
    CHECK(r.pipeline_drops[R::truncated] == 1);
    CHECK(r.pipeline_drops[R::bad_checksum] == 1);
    CHECK(r.pipeline_drops[R::no_session] == 3);
    CHECK(r.pipeline_drops[R::latch_rejected] == 1);
    CHECK(r.pipeline_drops[R::no_service] == 2);
    const std::uint64_t flood_denied =
        r.pipeline_drops[R::rate_limited] + r.pipeline_drops[R::banned];
    const std::uint64_t flood_admitted = r.counters[C::to_kernel] - for_kernel.size();
    CHECK(flood_denied + flood_admitted == kFlood);
    // The per-source OPTIONS bucket (burst 50) lets the start of the flood through, no more.
    CHECK(flood_admitted >= 1);
    CHECK(flood_admitted <= 60);
    std::uint64_t pipeline_dropped = 0, backend_dropped = 0;
    for (auto v : r.pipeline_drops.values) pipeline_dropped += v;
    for (auto v : r.drops.values) backend_dropped += v;
    CHECK(r.counters[C::dropped] == pipeline_dropped + backend_dropped);
    CHECK(r.counters[C::rx] ==
          r.counters[C::relayed] + r.counters[C::to_kernel] + r.counters[C::dropped]);
    // The pipeline's own counters agree with what the backend did.
    CHECK(pipeline.counters().events[dp::PipelineEvent::relayed] == 56);

    // --- relayed media: rewritten, valid checksums, payload untouched ------------------------
    const auto tx = read_pcap(out);
    REQUIRE(tx.size() == 56 + from_kernel.size());
    std::size_t corrupted_relayed = 0, vlan_relayed = 0;
    std::vector<Udp6View> to_callee6, to_caller6;
    std::vector<Udp4View> to_callee, to_caller;
    std::size_t kernel_frames_seen = 0;
    // The host stack's frames leave unchanged but for the source MAC: the data port's.
    for (auto& f : from_kernel) std::copy(data_mac.begin(), data_mac.end(), f.begin() + 6);
    for (const auto& f : tx) {
        if (std::find(from_kernel.begin(), from_kernel.end(), f) != from_kernel.end()) {
            ++kernel_frames_seen;
            continue;
        }
        if (get16(&f[12]) == 0x86DD) {
            auto v6 = decode_udp6(f);
            REQUIRE(v6);
            CHECK(v6->udp_checksum_ok);
            CHECK(v6->src == kSbc6);
            CHECK(std::equal(f.begin(), f.begin() + 6, kRouterMac.begin()));
            if (v6->dst == kCallee6)
                to_callee6.push_back(*v6);
            else if (v6->dst == kCaller6)
                to_caller6.push_back(*v6);
            else
                FAIL("IPv6 media relayed to an unexpected address");
            continue;
        }
        if (get16(&f[12]) == 0x8100) {  // keeps its tag; otherwise relayed like the others
            ++vlan_relayed;
            CHECK((get16(&f[14]) & 0x0fff) == kVlan);
            Bytes untagged = f;
            untagged.erase(untagged.begin() + 12, untagged.begin() + 16);
            auto v = decode_udp4(untagged);
            REQUIRE(v);
            CHECK(v->ip_checksum_ok);
            CHECK(v->udp_checksum_ok);
            CHECK(v->src == kSbc);
            CHECK(v->sport == 30002);
            CHECK(v->dst == kCallee);
            CHECK(v->dport == 6000);
            CHECK(v->payload == rtp_vlan);
            continue;
        }
        auto v = decode_udp4(f);
        REQUIRE(v);
        CHECK(v->ip_checksum_ok);
        CHECK(v->src == kSbc);
        if (!v->udp_checksum_ok) {  // only the frame that came in corrupted (RFC 1624 §3)
            ++corrupted_relayed;
            CHECK(v->payload == corrupted_payload);
            CHECK(v->dst == kCallee);
            continue;
        }
        CHECK(v->dst_mac == kRouterMac);  // back to the neighbour it came from
        CHECK(v->src_mac == data_mac);    // from our data port's address
        if (v->dst == kCallee)
            to_callee.push_back(*v);
        else if (v->dst == kCaller)
            to_caller.push_back(*v);
        else
            FAIL("relayed to an unexpected address");
    }
    CHECK(kernel_frames_seen == from_kernel.size());
    CHECK(corrupted_relayed == 1);
    CHECK(vlan_relayed == 1);
    REQUIRE(to_callee6.size() == 5);
    REQUIRE(to_caller6.size() == 5);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(to_callee6[i].sport == 30012);
        CHECK(to_callee6[i].dport == 6010);
        CHECK(to_callee6[i].payload == rtp_a6[i]);
        CHECK(to_caller6[i].sport == 30010);
        CHECK(to_caller6[i].dport == 4010);
        CHECK(to_caller6[i].payload == rtp_b6[i]);
    }
    REQUIRE(to_callee.size() == 22);
    REQUIRE(to_caller.size() == 22);
    std::size_t a = 0, b = 0;
    for (const auto& v : to_callee) {
        const bool is_rtcp = v.payload.size() == 28 && v.payload[1] == 200;
        CHECK(v.sport == (is_rtcp ? 30003 : 30002));  // out of the callee leg's local ports
        CHECK(v.dport == (is_rtcp ? 6001 : 6000));
        CHECK(get32(&v.payload[is_rtcp ? 4 : 8]) == kSsrcA);
        if (!is_rtcp) CHECK(v.payload == rtp_a[a++]);  // in order, unmodified
    }
    for (const auto& v : to_caller) {
        const bool is_rtcp = v.payload.size() == 28 && v.payload[1] == 200;
        CHECK(v.sport == (is_rtcp ? 30001 : 30000));
        CHECK(v.dport == (is_rtcp ? 4001 : 4000));
        CHECK(get32(&v.payload[is_rtcp ? 4 : 8]) == kSsrcB);
        if (!is_rtcp) CHECK(v.payload == rtp_b[b++]);
    }
    CHECK(a == 20);
    CHECK(b == 20);

    // --- the exception port: SIP, TCP (TLS) SYN, ARP, ICMP for us, and a limited flood ------
    // Unicast frames reach the host stack addressed to its interface; otherwise unchanged.
    for (auto* list : {&for_kernel, &flood})
        for (auto& f : *list)
            if ((f[0] & 1) == 0) std::copy(exception_mac.begin(), exception_mac.end(), f.begin());
    const auto exc = read_pcap(kout);
    CHECK(exc.size() == r.counters[C::to_kernel]);
    for (const auto& k : for_kernel) CHECK(std::count(exc.begin(), exc.end(), k) == 1);
    std::size_t flood_seen = 0;
    for (const auto& f : exc)
        if (std::find(flood.begin(), flood.end(), f) != flood.end()) ++flood_seen;
    CHECK(flood_seen == flood_admitted);
    CHECK(exc.size() == for_kernel.size() + flood_seen);

    std::filesystem::remove_all(dir);
    dpdk::shutdown_eal();
}

namespace {
int sh(const std::string& cmd) {
    return std::system(cmd.c_str());
}
}  // namespace

TEST_CASE("dpdk backend exception path through net_tap reaches the host stack", "[tap]") {
    if (access("/dev/net/tun", R_OK | W_OK) != 0)
        FAIL("/dev/net/tun is not usable: the net_tap exception port needs it (run as root)");
    REQUIRE(sh("command -v ip >/dev/null") == 0);  // iproute2, installed by scripts/setup
    const std::string dir = temp_dir();
    const std::string in = dir + "/in.pcap", out = dir + "/out.pcap";
    const std::string tag = std::to_string(getpid() % 100000);
    const std::string ns = "sbcdpdk" + tag, ifname = "sbct" + tag;
    const Ip4 kPeer{203, 0, 113, 20};  // on the SBC's subnet: the kernel answers it directly

    // An ARP request and a ping for the SBC's address, from a neighbour on its subnet.
    write_pcap(
        in, {arp_request(kRouterMac, kPeer, kSbc), icmp4_echo(kSbcMac, kRouterMac, kPeer, kSbc)});

    auto pc = pipeline_config();
    dp::Pipeline pipeline(pc);
    dpdk::BackendConfig cfg;
    cfg.eal_args = eal_args("tap");
    cfg.eal_args.push_back("--vdev=net_pcap0,rx_pcap=" + in + ",tx_pcap=" + out);
    cfg.ports = {{"net_pcap0", "net_tap0,iface=" + ifname}};
    cfg.mbufs_per_port = 2047;
    cfg.rx_descriptors = cfg.tx_descriptors = 256;
    auto backend = dpdk::Backend::create(cfg, pipeline);
    if (!backend) FAIL("DPDK backend with net_tap did not start: " << backend.error().message);

    // The host side of the exception port lives in a namespace of its own, with the SBC's
    // address, so nothing leaks to the machine's own stack.
    REQUIRE(sh("ip netns add " + ns) == 0);
    const bool moved =
        sh("ip link set " + ifname + " netns " + ns) == 0 &&
        sh("ip netns exec " + ns + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1") == 0 &&
        sh("ip netns exec " + ns + " ip addr add 203.0.113.10/24 dev " + ifname) == 0 &&
        sh("ip netns exec " + ns + " ip link set " + ifname + " up") == 0;
    const Mac data_mac = (*backend)->data_mac(0);
    dpdk::RunResult r;
    if (moved) {
        sbc::base::SystemClock clock;
        dpdk::StopCondition stop;
        stop.max_duration = sbc::base::millis(1500);  // the kernel answers asynchronously
        r = (*backend)->run(stop, clock);
    }
    backend->reset();
    sh("ip netns del " + ns);
    dpdk::shutdown_eal();
    REQUIRE(moved);

    using C = dpdk::BackendCounter;
    CHECK(r.counters[C::rx] == 2);
    CHECK(r.counters[C::to_kernel] == 2);
    // The host stack answered both, through the exception port and out of the data port.
    const auto tx = read_pcap(out);
    bool arp_reply = false, echo_reply = false;
    for (const auto& f : tx) {
        REQUIRE(f.size() >= 42);
        // Everything the host sent leaves from the data port's MAC.
        CHECK(std::equal(data_mac.begin(), data_mac.end(), &f[6]));
        if (get16(&f[12]) == 0x0806 && get16(&f[20]) == 2 &&
            std::equal(kSbc.begin(), kSbc.end(), &f[28]) &&
            std::equal(kPeer.begin(), kPeer.end(), &f[38])) {
            arp_reply = true;
            // RFC 826: the answer names the data port's MAC (the tap took it over).
            CHECK(std::equal(data_mac.begin(), data_mac.end(), &f[22]));
        }
        if (get16(&f[12]) == 0x0800 && f[23] == 1 && f[34] == 0 &&
            std::equal(kSbc.begin(), kSbc.end(), &f[26]) &&
            std::equal(kPeer.begin(), kPeer.end(), &f[30]))
            echo_reply = true;
    }
    CHECK(r.counters[C::from_kernel] >= 2);
    CHECK(arp_reply);
    CHECK(echo_reply);
    std::filesystem::remove_all(dir);
}

TEST_CASE("sbc.toml dataplane ports pair up as data and exception ports", "[config]") {
    auto c =
        dpdk::config_from_node({"-l", "0,1"},
                               {"0000:03:00.0", "net_tap0,iface=sbc0", "net_pcap0,rx_pcap=x.pcap",
                                "0000:04:00.0", "virtio_user0,path=/dev/vhost-net"},
                               32);
    REQUIRE(c.ok());
    REQUIRE(c->ports.size() == 3);
    CHECK(c->ports[0].data == "0000:03:00.0");
    CHECK(c->ports[0].exception == "net_tap0,iface=sbc0");
    CHECK(c->ports[1].data == "net_pcap0,rx_pcap=x.pcap");
    CHECK(c->ports[1].exception.empty());
    CHECK(c->ports[2].exception == "virtio_user0,path=/dev/vhost-net");
    CHECK(c->eal_args == std::vector<std::string>{"-l", "0,1"});
    CHECK(c->burst == 32);

    CHECK_FALSE(dpdk::config_from_node({}, {}, 32).ok());            // no port
    CHECK_FALSE(dpdk::config_from_node({}, {"net_tap0"}, 32).ok());  // no data port
    CHECK_FALSE(dpdk::config_from_node({}, {"net_pcap0", "net_tap0", "net_tap1"}, 32).ok());
    CHECK_FALSE(dpdk::config_from_node({}, {"net_pcap0"}, 0).ok());
    CHECK_FALSE(dpdk::config_from_node({}, {"net_pcap0"}, 1000).ok());
}

TEST_CASE("dpdk backend applies stream and ban commands from another thread while running",
          "[control]") {
    const std::string dir = temp_dir();
    const std::string in = dir + "/in.pcap";
    // Both legs of the call, replayed endlessly (infinite_rx) while commands arrive.
    write_pcap(in, {udp4(kSbcMac, kRouterMac, kCaller, 4000, kSbc, 30000, rtp(kSsrcA, 1, 0, 160)),
                    udp4(kSbcMac, kRouterMac, kCallee, 6000, kSbc, 30002, rtp(kSsrcB, 1, 0, 160))});
    // Millions of frames to a port with no stream would otherwise escalate to an automatic ban
    // of both peers (scan protection) before the stream exists; here only our ban counts.
    auto pc = pipeline_config();
    pc.ban_policy.enabled = false;
    dp::Pipeline pipeline(pc);
    dpdk::BackendConfig cfg;
    cfg.eal_args = eal_args("ctl");
    cfg.ports = {{"net_pcap0,rx_pcap=" + in + ",infinite_rx=1", ""}};  // tx: the PMD frees
    cfg.mbufs_per_port = 2047;
    cfg.rx_descriptors = cfg.tx_descriptors = 256;
    auto created = dpdk::Backend::create(cfg, pipeline);
    if (!created) FAIL("DPDK backend did not start: " << created.error().message);
    dpdk::Backend& backend = **created;

    using C = dpdk::BackendCounter;
    using R = dp::DropReason;
    std::vector<dpdk::ControlResult> results;
    bool controller_ok = true;
    std::string controller_error;
    // Waits for the result of command `tag` (the worker applies it between bursts).
    const auto await = [&](std::uint64_t tag) -> const dpdk::ControlResult* {
        for (int i = 0; i < 400; ++i) {
            backend.take_results(results);
            for (const auto& r : results)
                if (r.tag == tag) return &r;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return nullptr;
    };
    const auto step = std::chrono::milliseconds(250);
    std::thread controller([&] {
        const auto fail = [&](const std::string& why) {
            controller_ok = false;
            controller_error = why;
            backend.request_stop();
        };
        std::this_thread::sleep_for(step);  // no stream yet: no_session
        dpdk::ControlCommand create;
        create.tag = 1;
        create.media.kind = dp::MediaCommandKind::create;
        create.media.spec = call_spec();
        if (!backend.post(create)) return fail("post create");
        const auto* r1 = await(1);
        if (!r1 || !r1->ok) return fail("create: " + (r1 ? r1->error : std::string("no result")));
        const dp::StreamId id = r1->stream;
        std::this_thread::sleep_for(step);  // relayed both ways
        dpdk::ControlCommand ban;
        ban.tag = 2;
        ban.kind = dpdk::ControlCommand::Kind::ban;
        ban.prefix = sbc::base::Prefix(ip(kCaller), 32);
        ban.duration = sbc::base::seconds(60);
        if (!backend.post(ban)) return fail("post ban");
        const auto* r2 = await(2);
        if (!r2 || !r2->ok) return fail("ban: " + (r2 ? r2->error : std::string("no result")));
        std::this_thread::sleep_for(step);  // the caller's frames: banned
        dpdk::ControlCommand remove;
        remove.tag = 3;
        remove.media.kind = dp::MediaCommandKind::remove;
        remove.media.id = id;
        if (!backend.post(remove)) return fail("post remove");
        const auto* r3 = await(3);
        if (!r3 || !r3->ok) return fail("remove: " + (r3 ? r3->error : std::string("no result")));
        dpdk::ControlCommand again = remove;  // the stream is gone: an error, not a crash
        again.tag = 4;
        if (!backend.post(again)) return fail("post remove again");
        const auto* r4 = await(4);
        if (!r4 || r4->ok) return fail("second remove should fail");
        std::this_thread::sleep_for(step);
        backend.request_stop();
    });
    sbc::base::SystemClock clock;
    dpdk::StopCondition stop;
    stop.max_duration = sbc::base::seconds(20);  // bound: the controller stops it much earlier
    const dpdk::RunResult r = backend.run(stop, clock);
    controller.join();
    std::vector<dp::MediaEvent> events;
    backend.take_events(events);
    // A second run on the same ports, stopped by a frame count.
    dpdk::StopCondition count;
    count.max_rx = 5000;
    count.max_duration = sbc::base::seconds(20);
    const dpdk::RunResult r2 = backend.run(count, clock);
    created->reset();
    dpdk::shutdown_eal();
    std::filesystem::remove_all(dir);

    INFO(controller_error);
    REQUIRE(controller_ok);
    CHECK(r.elapsed < sbc::base::seconds(10));  // stopped by request_stop(), not the bound
    CHECK(r.counters[C::relayed] > 0);
    CHECK(r.pipeline_drops[R::no_session] > 0);  // before create and after remove
    CHECK(r.pipeline_drops[R::banned] > 0);      // the caller, once banned
    CHECK(r.counters[C::rx] ==
          r.counters[C::relayed] + r.counters[C::dropped] + r.counters[C::to_kernel]);
    CHECK(r2.counters[C::rx] >= 5000);
    CHECK(r2.counters[C::rx] < 5000u + cfg.burst);  // checked after every burst
    // Both legs latched on their first packets; the worker passed the events on.
    std::size_t latched = 0;
    for (const auto& e : events)
        if (e.kind == dp::MediaEventKind::latched && e.call_id == 7) ++latched;
    CHECK(latched == 2);
}

namespace {
// Runs a command and returns its standard output.
std::string capture(const std::string& cmd) {
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
        char buf[256];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        pclose(p);
    }
    return out;
}
}  // namespace

TEST_CASE("dpdk backend between real kernels: af_packet data port on a veth, net_tap exception",
          "[veth]") {
    if (access("/dev/net/tun", R_OK | W_OK) != 0)
        FAIL("/dev/net/tun is not usable: the net_tap exception port needs it (run as root)");
    if (sh("command -v ip >/dev/null && command -v python3 >/dev/null && "
           "command -v ethtool >/dev/null") != 0)
        FAIL("needs iproute2, python3 and ethtool (scripts/setup installs them)");
    const std::string tag = std::to_string(getpid() % 100000);
    const std::string peer_ns = "sbcpeer" + tag, sbc_ns = "sbchost" + tag;
    const std::string veth = "sbcv" + tag, veth_peer = "sbcp" + tag, tap = "sbct" + tag;
    // The peer: a namespace with two addresses (caller .20 and callee .21) on one veth; the
    // other end of the veth is the SBC's data port (net_af_packet).
    const auto setup_ok = [&] {
        return sh("ip netns add " + peer_ns) == 0 && sh("ip netns add " + sbc_ns) == 0 &&
               sh("ip link add " + veth + " type veth peer name " + veth_peer) == 0 &&
               sh("ip link set " + veth_peer + " netns " + peer_ns) == 0 &&
               sh("sysctl -qw net.ipv6.conf." + veth + ".disable_ipv6=1") == 0 &&
               sh("ip link set " + veth + " up") == 0 &&
               sh("ip netns exec " + peer_ns + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1") ==
                   0 &&
               sh("ip netns exec " + peer_ns + " ip addr add 203.0.113.20/24 dev " + veth_peer) ==
                   0 &&
               sh("ip netns exec " + peer_ns + " ip addr add 203.0.113.21/24 dev " + veth_peer) ==
                   0 &&
               sh("ip netns exec " + peer_ns + " ip link set " + veth_peer + " up") == 0 &&
               // A veth hands AF_PACKET frames whose UDP checksum the kernel has not filled
               // in yet (checksum offload); a NIC's wire never carries those.
               sh("ip netns exec " + peer_ns + " ethtool -K " + veth_peer + " tx off >/dev/null") ==
                   0;
    };
    const auto cleanup = [&] {
        sh("ip netns del " + peer_ns + " 2>/dev/null");
        sh("ip netns del " + sbc_ns + " 2>/dev/null");
        sh("ip link del " + veth + " 2>/dev/null");
    };
    if (!setup_ok()) {
        cleanup();
        FAIL("could not create the veth pair and namespaces (needs root and iproute2)");
    }

    auto pc = pipeline_config();
    dp::Pipeline pipeline(pc);
    sbc::base::SystemClock clock;
    dp::StreamSpec spec;
    spec.a.local = Endpoint{ip(kSbc), 30000};
    spec.a.remote = Endpoint{ip(Ip4{203, 0, 113, 20}), 4000};
    spec.b.local = Endpoint{ip(kSbc), 30002};
    spec.b.remote = Endpoint{ip(Ip4{203, 0, 113, 21}), 6000};
    REQUIRE(pipeline.media().create(spec, clock.monotonic()).ok());

    dpdk::BackendConfig cfg;
    cfg.eal_args = eal_args("veth");
    cfg.ports = {{"net_af_packet0,iface=" + veth, "net_tap0,iface=" + tap}};
    cfg.mbufs_per_port = 2047;
    cfg.rx_descriptors = cfg.tx_descriptors = 256;
    auto backend = dpdk::Backend::create(cfg, pipeline);
    if (!backend) {
        cleanup();
        FAIL("DPDK backend with net_af_packet/net_tap did not start: " << backend.error().message);
    }
    // The SBC's host stack: the tap in a namespace with the SBC's address.
    const bool host_ok =
        sh("ip link set " + tap + " netns " + sbc_ns) == 0 &&
        sh("ip netns exec " + sbc_ns + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1") == 0 &&
        sh("ip netns exec " + sbc_ns + " ip addr add 203.0.113.10/24 dev " + tap) == 0 &&
        sh("ip netns exec " + sbc_ns + " ip link set " + tap + " up") == 0;

    // The caller sends 10 RTP packets to the SBC (after resolving its address by ARP through the
    // exception path); the callee's socket must get them from the SBC's other media port.
    const std::string script =
        "import socket,time\n"
        "b=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);b.bind(('203.0.113.21',6000));"
        "b.settimeout(0.5)\n"
        "a=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);a.bind(('203.0.113.20',4000))\n"
        "got=[];t=time.time()\n"
        "for i in range(10):\n"
        "  a.sendto(bytes([0x80,0,0,i])+bytes(168),('203.0.113.10',30000));time.sleep(0.02)\n"
        "while len(got)<10 and time.time()-t<3:\n"
        "  try: d,s=b.recvfrom(2048);got.append('%s:%d'%s)\n"
        "  except socket.timeout: pass\n"
        "print(len(got),' '.join(sorted(set(got))))\n";
    std::string peer_output;
    std::thread peer([&] {
        if (host_ok)
            peer_output = capture("ip netns exec " + peer_ns + " timeout 10 python3 -c \"" +
                                  script + "\" 2>&1");
        (*backend)->request_stop();
    });
    dpdk::StopCondition stop;
    stop.max_duration = sbc::base::seconds(15);
    const dpdk::RunResult r = (*backend)->run(stop, clock);
    peer.join();
    backend->reset();
    cleanup();
    dpdk::shutdown_eal();
    REQUIRE(host_ok);

    using C = dpdk::BackendCounter;
    INFO("peer said: " << peer_output);
    CHECK(peer_output == "10 203.0.113.10:30002\n");
    CHECK(r.counters[C::relayed] >= 10);
    CHECK(r.counters[C::to_kernel] >= 1);    // the caller's ARP request
    CHECK(r.counters[C::from_kernel] >= 1);  // the host's ARP reply
}

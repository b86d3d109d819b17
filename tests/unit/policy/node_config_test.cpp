#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>

#include "policy/policy.hpp"

using namespace sbc::policy;

namespace {
std::string write_temp(const std::string& name, const std::string& text) {
    std::string path =
        std::string("/tmp/sbc_policy_test_") + std::to_string(::getpid()) + "_" + name;
    std::ofstream(path) << text;
    return path;
}
}  // namespace

TEST_CASE("the default node config loads with its policy", "[policy][node]") {
    auto r = load_node_config(std::string(SBC_SOURCE_DIR) + "/config/sbc.toml");
    for (const auto& e : r.errors) INFO(e.to_string());
    REQUIRE(r.ok());
    const auto& c = *r.value;
    CHECK(c.listeners.size() == 3);
    CHECK(c.listeners[0].realm == Realm::external);
    CHECK(c.listeners[0].endpoint.port == 5060);
    CHECK(c.next_hops.size() == 1);
    CHECK(c.dataplane.backend == DataplaneBackend::socket);
    REQUIRE(c.policy_files.size() == 1);
    auto p = load_policy(c.policy_files);
    CHECK(p.ok());
}

TEST_CASE("node config errors are all reported with positions", "[policy][node]") {
    auto path = write_temp("bad_node.toml",
                           "[[listeners]]\nrealm = \"outside\"\naddress = \"1.2.3\"\n"
                           "transport = \"tls\"\n[media]\nport_min = 30000\nport_max = 20000\n"
                           "[dataplane]\nbackend = \"dpdk\"\n[contrl]\n");
    auto r = load_node_config(path);
    std::remove(path.c_str());
    REQUIRE_FALSE(r.ok());
    auto has = [&](std::uint32_t line, const std::string& text) {
        for (const auto& e : r.errors)
            if (e.line == line && e.message.find(text) != std::string::npos) return true;
        return false;
    };
    CHECK(has(2, "not one of"));
    CHECK(has(3, "not an IP address"));
    CHECK(has(5, "port_max"));
    CHECK(has(8, "needs [dataplane.dpdk] ports"));
    CHECK(has(10, "did you mean 'control'"));
    bool tls = false, policy = false;
    for (const auto& e : r.errors) {
        tls = tls || e.message.find("tls listener") != std::string::npos;
        policy = policy || e.message.find("no policy") != std::string::npos;
    }
    CHECK(tls);
    CHECK(policy);
}

TEST_CASE("dpdk tap_addresses: parsed, checked, and must hold the node's addresses",
          "[policy][node]") {
    const std::string head =
        "[[listeners]]\nrealm = \"external\"\naddress = \"203.0.113.10\"\nport = 5060\n"
        "transport = \"udp\"\n[media]\nexternal_address = \"203.0.113.10\"\n"
        "internal_address = \"%INTERNAL%\"\n[dataplane]\nbackend = \"dpdk\"\n[dataplane.dpdk]\n"
        "ports = [\"net_af_packet0,iface=v0\", \"net_tap0,iface=t0\"]\n";
    const std::string policy = "[policy]\nfiles = [\"" + std::string(SBC_SOURCE_DIR) +
                               "/policy/examples/callcenter.toml\"]\n";
    auto load = [&](const std::string& internal, const std::string& taps) {
        std::string text = head;
        text.replace(text.find("%INTERNAL%"), 10, internal);
        auto path = write_temp("tap_node.toml", text + "tap_addresses = [" + taps + "]\n" + policy);
        auto r = load_node_config(path);
        std::remove(path.c_str());
        return r;
    };
    auto message = [](const auto& r, const std::string& text) {
        for (const auto& e : r.errors)
            if (e.message.find(text) != std::string::npos) return true;
        return false;
    };
    {
        auto r =
            load("198.51.100.10", "\"203.0.113.10/24\", \"198.51.100.10/32\", \"2001:db8::a/64\"");
        for (const auto& e : r.errors) INFO(e.to_string());
        REQUIRE(r.ok());
        const auto& t = r.value->dataplane.dpdk_tap_addresses;
        REQUIRE(t.size() == 3);
        CHECK(t[0].addr.to_string() == "203.0.113.10");
        CHECK(t[0].prefix_len == 24);
        CHECK(t[1].prefix_len == 32);
        CHECK(t[2].addr.is_v6());
        CHECK(t[2].prefix_len == 64);
    }
    for (const char* bad : {"\"203.0.113.10\"", "\"203.0.113.10/33\"", "\"203.0.113.10/0\"",
                            "\"nothing/24\"", "\"203.0.113.10/2x\"", "\"0.0.0.0/8\""}) {
        INFO(bad);
        CHECK(message(load("203.0.113.10", bad), "expected ADDRESS/LENGTH"));
    }
    // The internal media address is not on the tap: the host stack would not answer ARP for it.
    CHECK(message(load("198.51.100.10", "\"203.0.113.10/24\""),
                  "media address 198.51.100.10 is not in [dataplane.dpdk] tap_addresses"));
}

TEST_CASE("next hops over TCP/TLS: transport, server_name, server_ca and max_outgoing",
          "[policy][node]") {
    auto ok = write_temp("tcp_hops.toml",
                         "[[listeners]]\nrealm = \"internal\"\naddress = \"127.0.0.2\"\n"
                         "transport = \"tls\"\n"
                         "[tls]\ncertificate_chain = \"c.pem\"\nprivate_key = \"k.pem\"\n"
                         "server_ca = \"ca.pem\"\n"
                         "[connections]\nmax_outgoing = 64\n"
                         "[[next_hops]]\naddress = \"127.0.0.3\"\ntransport = \"tls\"\n"
                         "server_name = \"proxy.inside.test\"\n"
                         "[policy]\nfiles = [\"p.toml\"]\n");
    auto r = load_node_config(ok);
    std::remove(ok.c_str());
    for (const auto& e : r.errors) INFO(e.to_string());
    REQUIRE(r.ok());
    REQUIRE(r.value->next_hops.size() == 1);
    const auto& h = r.value->next_hops[0];
    CHECK(h.transport == Transport::tls);
    CHECK(h.endpoint.port == 5061);
    CHECK(h.server_name == "proxy.inside.test");
    CHECK(r.value->tls.server_ca == "/tmp/ca.pem");
    CHECK(r.value->connections.max_outgoing == 64);

    // A TCP hop without an internal TCP listener (the SBC's Via and Contact need one), and a
    // server_name on a hop that is not TLS: both refused, with positions.
    auto bad = write_temp("tcp_hops_bad.toml",
                          "[[next_hops]]\naddress = \"127.0.0.3\"\ntransport = \"tcp\"\n"
                          "server_name = \"x.test\"\n[policy]\nfiles = [\"p.toml\"]\n");
    auto b = load_node_config(bad);
    std::remove(bad.c_str());
    REQUIRE_FALSE(b.ok());
    std::string all;
    for (const auto& e : b.errors) all += e.to_string() + "\n";
    INFO(all);
    CHECK(all.find("'next_hops[0].server_name' is for transport = \"tls\" only") !=
          std::string::npos);
    CHECK(all.find("over tcp needs an internal tcp listener") != std::string::npos);
}

TEST_CASE("an external next hop is a trunk: its realm needs the listener, weights allowed",
          "[policy][node]") {
    auto ok = write_temp("trunk_hop.toml",
                         "[[listeners]]\nrealm = \"external\"\naddress = \"127.0.0.1\"\n"
                         "transport = \"tls\"\n"
                         "[tls]\ncertificate_chain = \"c.pem\"\nprivate_key = \"k.pem\"\n"
                         "[[next_hops]]\naddress = \"127.0.0.3\"\n"
                         "[[next_hops]]\nrealm = \"external\"\naddress = \"192.0.2.9\"\n"
                         "transport = \"tls\"\nserver_name = \"trunk.example\"\nweight = 7\n"
                         "[policy]\nfiles = [\"p.toml\"]\n");
    auto r = load_node_config(ok);
    std::remove(ok.c_str());
    for (const auto& e : r.errors) INFO(e.to_string());
    REQUIRE(r.ok());
    REQUIRE(r.value->next_hops.size() == 2);
    CHECK(r.value->next_hops[0].realm == Realm::internal);
    CHECK(r.value->next_hops[1].realm == Realm::external);
    CHECK(r.value->next_hops[1].weight == 7);
    auto bad = write_temp("trunk_hop_bad.toml",
                          "[[next_hops]]\nrealm = \"external\"\naddress = \"192.0.2.9\"\n"
                          "transport = \"tcp\"\nweight = 5\n[policy]\nfiles = [\"p.toml\"]\n");
    auto b = load_node_config(bad);
    std::remove(bad.c_str());
    REQUIRE_FALSE(b.ok());
    std::string all;
    for (const auto& e : b.errors) all += e.to_string() + "\n";
    INFO(all);
    CHECK(all.find("over tcp needs an external tcp listener") != std::string::npos);
}

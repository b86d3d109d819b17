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

// The node configuration -> dataplane mapping (sbc/dataplane_wiring.*).
#include <catch2/catch.hpp>

#include <algorithm>

#include "dataplane/types.hpp"
#include "policy/policy.hpp"
#include "sbc/dataplane_wiring.hpp"

using namespace sbc;

namespace {
base::IpAddress ip(const char* text) {
    auto a = base::IpAddress::parse(text);
    REQUIRE(a);
    return *a;
}

policy::NodeConfig node_with_next_hops() {
    policy::NodeConfig node;
    policy::ListenerConfig l;
    l.endpoint = *base::Endpoint::parse("127.0.0.1:5060");
    node.listeners.push_back(l);
    policy::NextHopConfig a;
    a.name = "proxy-1";
    a.endpoint = *base::Endpoint::parse("127.0.0.3:5060");
    policy::NextHopConfig b;
    b.name = "proxy-2";
    b.endpoint = *base::Endpoint::parse("[2001:db8::3]:5060");
    node.next_hops = {a, b};
    return node;
}
}  // namespace

// A spoofed INVITE flood forwarded inside made the proxy's 401s and probe answers look like a
// flood from the proxy: the limiter banned it and every call failed (flood_spoofed.sh).
TEST_CASE("the internal next hops bypass the rate limits, other sources do not",
          "[dataplane][wiring]") {
    const auto node = node_with_next_hops();
    auto loaded = policy::load_policy({SBC_CALLCENTER_POLICY});
    REQUIRE(loaded.ok());
    for (const policy::Policy* p : {static_cast<const policy::Policy*>(loaded.value.get()),
                                    static_cast<const policy::Policy*>(nullptr)}) {
        INFO((p ? "with the call-center policy" : "without a policy"));
        const auto config = pipeline_config_from(node, p);
        const auto trusted = [&](const char* a) {
            return std::any_of(config.trusted.begin(), config.trusted.end(),
                               [&](const base::Prefix& t) { return t.contains(ip(a)); });
        };
        CHECK(trusted("127.0.0.3"));
        CHECK(trusted("2001:db8::3"));
        CHECK_FALSE(trusted("127.0.0.4"));
        CHECK_FALSE(trusted("127.0.0.1"));
        CHECK_FALSE(trusted("2001:db8::4"));
    }
}

#include "sbc/dataplane_wiring.hpp"

#include <algorithm>

namespace sbc {

namespace {
dataplane::TrafficClass map_class(policy::TrafficClass c) {
    switch (c) {
        case policy::TrafficClass::sip_register:
            return dataplane::TrafficClass::sip_register;
        case policy::TrafficClass::sip_invite:
            return dataplane::TrafficClass::sip_invite;
        case policy::TrafficClass::sip_other:
            return dataplane::TrafficClass::sip_other;
        case policy::TrafficClass::tcp_connect:
            return dataplane::TrafficClass::tcp_connect;
        case policy::TrafficClass::media_unallocated:
            return dataplane::TrafficClass::media_unallocated;
        case policy::TrafficClass::count_:
            break;
    }
    return dataplane::TrafficClass::other;
}

dataplane::RateLimit map_limit(const policy::RateLimit& l) {
    if (!l.enabled) return {};
    return dataplane::RateLimit{l.rate, std::max(1.0, l.burst)};
}

void add_unique(std::vector<std::uint16_t>& v, std::uint16_t p) {
    if (std::find(v.begin(), v.end(), p) == v.end()) v.push_back(p);
}
void add_unique(std::vector<base::IpAddress>& v, const base::IpAddress& a) {
    if (a.is_unspecified()) return;
    if (std::find(v.begin(), v.end(), a) == v.end()) v.push_back(a);
}
}  // namespace

dataplane::PipelineConfig pipeline_config_from(const policy::NodeConfig& node,
                                               const policy::Policy* p) {
    auto c = dataplane::PipelineConfig::defaults();
    c.media_port_min = node.media.port_min;
    c.media_port_max = node.media.port_max;
    c.sip_udp_ports.clear();
    c.sip_tcp_ports.clear();
    bool any_wildcard = false;
    for (const auto& l : node.listeners) {
        if (l.transport == policy::Transport::udp)
            add_unique(c.sip_udp_ports, l.endpoint.port);
        else
            add_unique(c.sip_tcp_ports, l.endpoint.port);
        if (l.endpoint.addr.is_unspecified()) any_wildcard = true;
        add_unique(c.local_addresses, l.endpoint.addr);
    }
    add_unique(c.local_addresses, node.media.external_address);
    add_unique(c.local_addresses, node.media.internal_address);
    // A wildcard listener means every address of the host is ours.
    if (any_wildcard) c.local_addresses.clear();
    if (!p) return c;

    // Limits: per source and per prefix from the policy; the shared new-source budget keeps
    // its default unless a class is unlimited in the policy.
    for (std::size_t i = 0; i < policy::kTrafficClassCount; ++i) {
        const auto pc = static_cast<policy::TrafficClass>(i);
        auto& dl = c.limits[static_cast<std::size_t>(map_class(pc))];
        dl.per_source = map_limit(p->rate_limits.get(pc, policy::LimitKey::source_address));
        dl.per_prefix = map_limit(p->rate_limits.get(pc, policy::LimitKey::source_prefix));
        if (dl.per_source.unlimited() && dl.per_prefix.unlimited()) dl.new_sources = {};
    }
    c.v4_prefix_len = p->rate_limits.source_prefix_v4;
    c.v6_prefix_len = p->rate_limits.source_prefix_v6;

    // Escalation ladder: base, base*factor, ... up to max.
    c.ban_policy.violations_to_ban = std::max<std::uint32_t>(1, p->bans.violations);
    c.ban_policy.window = p->bans.violation_window;
    c.ban_policy.forget_after = p->bans.history;
    c.ban_policy.durations.clear();
    for (std::uint32_t n = 0; n < 32; ++n) {
        const base::Nanos d = p->bans.duration_for(n);
        if (!c.ban_policy.durations.empty() && d == c.ban_policy.durations.back()) break;
        c.ban_policy.durations.push_back(d);
    }

    c.trusted.clear();
    for (const auto& t : p->access.trusted_trunks)
        c.trusted.insert(c.trusted.end(), t.cidrs.begin(), t.cidrs.end());
    return c;
}

}  // namespace sbc

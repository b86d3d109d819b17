#include "sbc/dataplane_wiring.hpp"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "sbc/daemon.hpp"

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

namespace {
std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}
}  // namespace

DataplaneRuntime::DataplaneRuntime(const dataplane::PipelineConfig& c)
    : pipeline_(c), relay_(pipeline_) {}

std::unique_ptr<DataplaneRuntime> DataplaneRuntime::attach(Daemon& daemon) {
    auto policy = daemon.policies().current();
    std::unique_ptr<DataplaneRuntime> rt(
        new DataplaneRuntime(pipeline_config_from(daemon.config(), policy.get())));
    DataplaneRuntime* self = rt.get();
    daemon.add_control_command("ban", [self](std::string_view a) { return self->ban_command(a); });
    daemon.add_control_command("unban",
                               [self](std::string_view a) { return self->unban_command(a); });
    daemon.add_control_command("bans", [self](std::string_view) { return self->bans_command(); });
    const policy::NodeConfig node = daemon.config();
    daemon.on_policy_change([self, node](const std::shared_ptr<const policy::Policy>& p) {
        self->mailbox_.post_config(pipeline_config_from(node, p.get()));
    });
    rt->thread_ = std::thread([self] { self->loop(); });
    return rt;
}

DataplaneRuntime::~DataplaneRuntime() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

void DataplaneRuntime::loop() {
    // The daemon takes these signals through a signalfd: no other thread may receive them.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    while (!stop_.load(std::memory_order_relaxed)) {
        relay_.poll(20, clock_);
        mailbox_.apply(pipeline_, clock_.monotonic());
    }
}

bool DataplaneRuntime::wait_applied(base::Nanos before) const {
    for (int i = 0; i < 100; ++i) {
        base::Nanos at = 0;
        (void)mailbox_.bans(&at);
        if (at != before) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

std::string DataplaneRuntime::ban_command(std::string_view args) {
    args = trim(args);
    const auto sp = args.find(' ');
    const auto target = args.substr(0, sp);
    auto prefix = base::Prefix::parse(target);
    if (!prefix) return "error: usage: ban ADDRESS|PREFIX [SECONDS]\n";
    base::Nanos duration = 0;
    if (sp != std::string_view::npos) {
        const std::string secs(trim(args.substr(sp + 1)));
        char* end = nullptr;
        const double v = std::strtod(secs.c_str(), &end);
        if (secs.empty() || *end != '\0' || v <= 0) return "error: bad duration '" + secs + "'\n";
        duration = base::seconds(v);
    } else if (prefix->length() != (prefix->is_v4() ? 32 : 128)) {
        duration = base::seconds(3600);  // escalation is per address; a prefix gets an hour
    }
    base::Nanos before = 0;
    (void)mailbox_.bans(&before);
    const auto failed_before = mailbox_.failed();
    if (!mailbox_.post({dataplane::ControlCommand::Kind::ban, *prefix, duration,
                        dataplane::BanOrigin::control}))
        return "error: dataplane busy, try again\n";
    if (!wait_applied(before)) return "queued\n";
    if (mailbox_.failed() != failed_before) return "error: ban table full\n";
    return "ok banned " + prefix->to_string() + "\n";
}

std::string DataplaneRuntime::unban_command(std::string_view args) {
    auto prefix = base::Prefix::parse(trim(args));
    if (!prefix) return "error: usage: unban ADDRESS|PREFIX\n";
    base::Nanos before = 0;
    (void)mailbox_.bans(&before);
    const auto failed_before = mailbox_.failed();
    if (!mailbox_.post(
            {dataplane::ControlCommand::Kind::unban, *prefix, 0, dataplane::BanOrigin::control}))
        return "error: dataplane busy, try again\n";
    if (!wait_applied(before)) return "queued\n";
    if (mailbox_.failed() != failed_before)
        return "error: " + prefix->to_string() + " is not banned\n";
    return "ok unbanned " + prefix->to_string() + "\n";
}

std::string DataplaneRuntime::bans_command() const {
    base::Nanos at = 0;
    const auto list = mailbox_.bans(&at);
    std::string out = "bans=" + std::to_string(list.size()) + "\n";
    char line[256];
    for (const auto& b : list) {
        std::snprintf(line, sizeof line, "%s origin=%s offenses=%u remaining_s=%.0f dropped=%llu\n",
                      b.prefix.to_string().c_str(), std::string(dataplane::name(b.origin)).c_str(),
                      b.offenses, static_cast<double>(b.expires - at) / 1e9,
                      static_cast<unsigned long long>(b.hits));
        out += line;
    }
    return out;
}

}  // namespace sbc

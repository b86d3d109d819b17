#include "sbc/dataplane_wiring.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

DataplaneRuntime::DataplaneRuntime(const dataplane::PipelineConfig& c,
                                   const policy::NodeConfig& node)
    : pipeline_(c),
      relay_(pipeline_),
      media_a_addr_(node.media.external_address),
      media_b_addr_(node.media.internal_address) {}

std::unique_ptr<DataplaneRuntime> DataplaneRuntime::attach(Daemon& daemon) {
    auto policy = daemon.policies().current();
    std::unique_ptr<DataplaneRuntime> rt(
        new DataplaneRuntime(pipeline_config_from(daemon.config(), policy.get()), daemon.config()));
    DataplaneRuntime* self = rt.get();
    daemon.add_control_command("ban", [self](std::string_view a) { return self->ban_command(a); });
    daemon.add_control_command("unban",
                               [self](std::string_view a) { return self->unban_command(a); });
    daemon.add_control_command("bans", [self](std::string_view) { return self->bans_command(); });
    daemon.add_control_command("media",
                               [self](std::string_view a) { return self->media_command(a); });
    const policy::NodeConfig node = daemon.config();
    // The pipeline config is built when a reload prepares (it cannot refuse one) and posted
    // when it commits.
    (void)daemon.add_policy_participant(
        {"dataplane", [self, node](const std::shared_ptr<const policy::Policy>& p) {
             auto c = pipeline_config_from(node, p.get());
             return policy::PolicyChange::ready([self, c] { self->mailbox_.post_config(c); });
         }});
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
        if (tasks_pending_.load(std::memory_order_acquire)) run_tasks();
    }
    run_tasks();  // nobody waits forever on a task posted during shutdown
}

std::future<std::string> DataplaneRuntime::post(std::function<std::string()> task) {
    std::packaged_task<std::string()> t(std::move(task));
    auto f = t.get_future();
    {
        std::lock_guard lock(tasks_mu_);
        if (stop_.load()) {
            std::promise<std::string> p;
            p.set_value("error: dataplane stopped\n");
            return p.get_future();
        }
        tasks_.push_back(std::move(t));
        tasks_pending_.store(true, std::memory_order_release);
    }
    return f;
}

void DataplaneRuntime::run_tasks() {
    std::deque<std::packaged_task<std::string()>> ready;
    {
        std::lock_guard lock(tasks_mu_);
        ready.swap(tasks_);
        tasks_pending_.store(false, std::memory_order_relaxed);
    }
    for (auto& t : ready) t();
}

namespace {
// The socket backend keeps its sockets to itself; the stateless answers of the front door
// leave from the listener's own socket (RFC 3581 §4: a client behind NAT only accepts the
// response from where it sent the request), found by the address it is bound to.
int find_bound_udp_socket(const base::Endpoint& local) {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return -1;
    int found = -1;
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
        int type = 0;
        socklen_t tl = sizeof type;
        if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
            type != SOCK_DGRAM)
            continue;
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
            continue;
        base::Endpoint bound;
        if (ss.ss_family == AF_INET) {
            const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
            bound.addr =
                base::IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&s->sin_addr));
            bound.port = ntohs(s->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
            bound.addr = base::IpAddress::v6(reinterpret_cast<const std::uint8_t*>(&s->sin6_addr));
            bound.port = ntohs(s->sin6_port);
        } else {
            continue;
        }
        if (bound == local) {
            found = static_cast<int>(fd);
            break;
        }
    }
    ::closedir(dir);
    return found;
}
}  // namespace

base::Result<int> DataplaneRuntime::open_signaling(const base::Endpoint& local,
                                                   dataplane::SocketRelay::SignalingHandler handler,
                                                   void* ctx) {
    if (auto r = relay_.open_signaling(local, handler, ctx); !r) return r.error();
    const int fd = find_bound_udp_socket(local);
    if (fd < 0) return base::make_error("listener " + local.to_string() + " has no socket");
    return fd;
}

std::string DataplaneRuntime::stats_command() {
    const auto& c = pipeline_.counters();
    std::string out;
    for (std::size_t i = 0; i < dataplane::kPipelineEventCount; ++i) {
        const auto e = static_cast<dataplane::PipelineEvent>(i);
        out += "pipeline." + std::string(dataplane::name(e)) + "=" + std::to_string(c.events[e]) +
               "\n";
    }
    for (std::size_t i = 1; i < dataplane::kDropReasonCount; ++i) {
        const auto r = static_cast<dataplane::DropReason>(i);
        out += "drop." + std::string(dataplane::name(r)) + "=" + std::to_string(c.drops[r]) + "\n";
    }
    out += "media.streams=" + std::to_string(pipeline_.media().active()) + "\n";
    out += "sockets=" + std::to_string(relay_.open_sockets()) + "\n";
    return out;
}

namespace {
std::optional<std::uint16_t> parse_port(std::string_view t) {
    if (t.empty() || t.size() > 5) return std::nullopt;
    unsigned v = 0;
    for (char c : t) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(v);
}

// "1.2.3.4:5000" or "[::1]:5000"
std::optional<base::Endpoint> parse_endpoint(std::string_view t) {
    const auto colon = t.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto host = t.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    auto addr = base::IpAddress::parse(host);
    auto port = parse_port(t.substr(colon + 1));
    if (!addr || !port) return std::nullopt;
    return base::Endpoint{*addr, *port};
}

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
        std::size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r') ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

std::string leg_text(const char* name, const dataplane::LegSpec& spec,
                     const dataplane::LegStats& st) {
    char line[512];
    std::snprintf(line, sizeof line,
                  " %s.local=%s %s.peer=%s %s.latched=%s %s.packets=%llu %s.bytes=%llu "
                  "%s.rtcp=%llu %s.lost=%lld %s.jitter_ms=%.2f",
                  name, spec.local.to_string().c_str(), name, spec.remote.to_string().c_str(), name,
                  st.latched_rtp.port ? st.latched_rtp.to_string().c_str() : "-", name,
                  static_cast<unsigned long long>(st.packets), name,
                  static_cast<unsigned long long>(st.bytes), name,
                  static_cast<unsigned long long>(st.rtcp_packets), name,
                  static_cast<long long>(st.lost), name, st.jitter_ms());
    return line;
}
}  // namespace

std::string DataplaneRuntime::media_command(std::string_view args) {
    const auto w = words(args);
    const std::string rest(w.empty() ? std::string_view{}
                                     : trim(args.substr(args.find(w[0]) + w[0].size())));
    if (!w.empty() && w[0] == "add") return call([this, rest] { return media_add(rest); });
    if (!w.empty() && w[0] == "del") return call([this, rest] { return media_del(rest); });
    if (!w.empty() && w[0] == "list") return call([this] { return media_list(); });
    return "error: usage: media add LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT PEER_B_IP:PORT "
           "[rtcp-mux] | media del ID | media list\n";
}

std::string DataplaneRuntime::media_add(std::string_view args) {
    const auto w = words(args);
    const char* usage =
        "error: usage: media add LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT PEER_B_IP:PORT "
        "[rtcp-mux]\n";
    if (w.size() != 4 && !(w.size() == 5 && w[4] == "rtcp-mux")) return usage;
    const auto a_port = parse_port(w[0]);
    const auto a_peer = parse_endpoint(w[1]);
    const auto b_port = parse_port(w[2]);
    const auto b_peer = parse_endpoint(w[3]);
    if (!a_port || !a_peer || !b_port || !b_peer) return usage;
    dataplane::StreamSpec spec;
    spec.call_id = next_stream_;
    spec.rtcp_mux = w.size() == 5;
    spec.a.local = {media_a_addr_, *a_port};
    spec.a.remote = *a_peer;
    spec.b.local = {media_b_addr_, *b_port};
    spec.b.remote = *b_peer;
    auto id = relay_.open_stream(spec, clock_.monotonic());
    if (!id) return "error: " + id.error().message + "\n";
    const std::uint32_t n = next_stream_++;
    streams_[n] = *id;
    return "ok media " + std::to_string(n) + " a=" + spec.a.local.to_string() +
           " b=" + spec.b.local.to_string() + "\n";
}

std::string DataplaneRuntime::media_del(std::string_view args) {
    const auto w = words(args);
    char* end = nullptr;
    const std::string t(w.empty() ? "" : std::string(w[0]));
    const unsigned long n = std::strtoul(t.c_str(), &end, 10);
    if (w.size() != 1 || t.empty() || *end != '\0') return "error: usage: media del ID\n";
    const auto it = streams_.find(static_cast<std::uint32_t>(n));
    if (it == streams_.end()) return "error: no media stream " + t + "\n";
    auto r = relay_.close_stream(it->second);
    streams_.erase(it);
    if (!r) return "error: " + r.error().message + "\n";
    return "ok media " + t + " removed\n";
}

std::string DataplaneRuntime::media_list() {
    std::string out = "streams=" + std::to_string(streams_.size()) + "\n";
    for (const auto& [n, id] : streams_) {
        const auto* spec = pipeline_.media().spec(id);
        auto st = pipeline_.media().stats(id);
        if (!spec || !st) {
            out += std::to_string(n) + " gone\n";
            continue;
        }
        out += std::to_string(n) + (spec->rtcp_mux ? " rtcp-mux" : "") +
               leg_text("a", spec->a, st->a) + leg_text("b", spec->b, st->b) + "\n";
    }
    return out;
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

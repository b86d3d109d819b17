#include "sbc/dataplane_wiring.hpp"

#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <array>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/sockaddr.hpp"
#include "sbc/daemon.hpp"
#ifdef SBC_HAVE_DPDK
#include "dataplane/dpdk/dpdk.hpp"
#endif

namespace sbc {

void DataplaneRuntime::add_control_commands(Daemon& daemon) {
    daemon.add_control_command("ban", [this](std::string_view a) { return ban_command(a); });
    daemon.add_control_command("unban", [this](std::string_view a) { return unban_command(a); });
    daemon.add_control_command("bans", [this](std::string_view) { return bans_command(); });
    daemon.add_control_command("media", [this](std::string_view a) { return media_command(a); });
}

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

// The internal next hops are peers the node itself chose: their answers, probes and in-dialog
// requests are not rate limited (bans still apply). Else a flood that the front door forwards
// inside makes the proxy's replies look like a flood too, the limiter bans the proxy and every
// call fails.
void trust_next_hops(const policy::NodeConfig& node, dataplane::PipelineConfig& c) {
    for (const auto& h : node.next_hops) {
        if (h.endpoint.addr.is_unspecified()) continue;
        const base::Prefix host(h.endpoint.addr, h.endpoint.addr.is_v4() ? 32 : 128);
        if (std::find(c.trusted.begin(), c.trusted.end(), host) == c.trusted.end())
            c.trusted.push_back(host);
    }
}
}  // namespace

dataplane::PipelineConfig pipeline_config_from(const policy::NodeConfig& node,
                                               const policy::Policy* p) {
    auto c = dataplane::PipelineConfig::defaults();
    c.media_port_min = node.media.port_min;
    c.media_port_max = node.media.port_max;
    c.media.inactivity_timeout = node.media.inactivity_timeout;
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
    if (!p) {
        trust_next_hops(node, c);
        return c;
    }

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
    trust_next_hops(node, c);
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

namespace {
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

struct BanArgs {
    base::Prefix prefix;
    base::Nanos duration = 0;
};
// "ADDRESS|PREFIX [SECONDS]"; an error is the reply to send.
base::Result<BanArgs> parse_ban(std::string_view args) {
    args = trim(args);
    const auto sp = args.find(' ');
    auto prefix = base::Prefix::parse(args.substr(0, sp));
    if (!prefix) return base::make_error("error: usage: ban ADDRESS|PREFIX [SECONDS]\n");
    BanArgs b{*prefix, 0};
    if (sp != std::string_view::npos) {
        const std::string secs(trim(args.substr(sp + 1)));
        char* end = nullptr;
        const double v = std::strtod(secs.c_str(), &end);
        if (secs.empty() || *end != '\0' || v <= 0)
            return base::make_error("error: bad duration '" + secs + "'\n");
        b.duration = base::seconds(v);
    } else if (prefix->length() != (prefix->is_v4() ? 32 : 128)) {
        b.duration = base::seconds(3600);  // escalation is per address; a prefix gets an hour
    }
    return b;
}

constexpr const char* kMediaUsage =
    "error: usage: media add LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT PEER_B_IP:PORT "
    "[rtcp-mux] | media del ID | media list\n";

// "LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT PEER_B_IP:PORT [rtcp-mux]" on our two addresses.
std::optional<dataplane::StreamSpec> parse_media_add(std::string_view args,
                                                     const base::IpAddress& a_addr,
                                                     const base::IpAddress& b_addr) {
    const auto w = words(args);
    if (w.size() != 4 && !(w.size() == 5 && w[4] == "rtcp-mux")) return std::nullopt;
    const auto a_port = base::parse_port(w[0]);
    const auto a_peer = base::Endpoint::parse(w[1]);
    const auto b_port = base::parse_port(w[2]);
    const auto b_peer = base::Endpoint::parse(w[3]);
    if (!a_port || !a_peer || !b_port || !b_peer) return std::nullopt;
    dataplane::StreamSpec spec;
    spec.rtcp_mux = w.size() == 5;
    spec.a.local = {a_addr, *a_port};
    spec.a.remote = *a_peer;
    spec.b.local = {b_addr, *b_port};
    spec.b.remote = *b_peer;
    return spec;
}

std::optional<std::uint32_t> parse_media_id(std::string_view args) {
    const auto w = words(args);
    if (w.size() != 1) return std::nullopt;
    const std::string t(w[0]);
    char* end = nullptr;
    const unsigned long n = std::strtoul(t.c_str(), &end, 10);
    if (t.empty() || *end != '\0' || n == 0 || n > 0xffffffffUL) return std::nullopt;
    return static_cast<std::uint32_t>(n);
}

std::string stream_text(std::uint32_t n, const dataplane::StreamSpec& spec,
                        const dataplane::StreamStats& st) {
    return std::to_string(n) + (spec.rtcp_mux ? " rtcp-mux" : "") + leg_text("a", spec.a, st.a) +
           leg_text("b", spec.b, st.b) + "\n";
}

std::string bans_text(const std::vector<dataplane::BanInfo>& list, base::Nanos at) {
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

std::string pipeline_text(const dataplane::Counters& c) {
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
    return out;
}

void block_daemon_signals() {
    // The daemon takes these signals through a signalfd: no other thread may receive them.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

// Work handed to the signaling thread by other threads; it runs them between two polls.
class TaskQueue {
  public:
    std::future<std::string> post(std::function<std::string()> task) {
        std::packaged_task<std::string()> t(std::move(task));
        auto f = t.get_future();
        std::lock_guard lock(mu_);
        if (closed_) {
            std::promise<std::string> p;
            p.set_value("error: dataplane stopped\n");
            return p.get_future();
        }
        tasks_.push_back(std::move(t));
        pending_.store(true, std::memory_order_release);
        return f;
    }
    bool pending() const { return pending_.load(std::memory_order_acquire); }
    // The owner stops: later posts get an error at once, and what is queued runs now, so that
    // nobody waits forever on a task posted during shutdown.
    void close() {
        {
            std::lock_guard lock(mu_);
            closed_ = true;
        }
        run();
    }
    void run() {
        std::deque<std::packaged_task<std::string()>> ready;
        {
            std::lock_guard lock(mu_);
            ready.swap(tasks_);
            pending_.store(false, std::memory_order_relaxed);
        }
        for (auto& t : ready) t();
    }

  private:
    std::mutex mu_;
    std::deque<std::packaged_task<std::string()>> tasks_;
    std::atomic<bool> pending_{false};
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------
// socket backend: the relay's poll loop is the signaling thread.
// ---------------------------------------------------------------------------------------
class SocketRuntime final : public DataplaneRuntime {
  public:
    SocketRuntime(const dataplane::PipelineConfig& c, const policy::NodeConfig& node)
        : pipeline_(c),
          relay_(pipeline_),
          media_a_addr_(node.media.external_address),
          media_b_addr_(node.media.internal_address) {}
    ~SocketRuntime() override {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

    void start(Daemon& daemon) {
        add_control_commands(daemon);
        const policy::NodeConfig node = daemon.config();
        // The pipeline config is built when a reload prepares (it cannot refuse one) and posted
        // when it commits.
        (void)daemon.add_policy_participant(
            {"dataplane", [this, node](const std::shared_ptr<const policy::Policy>& p) {
                 auto c = pipeline_config_from(node, p.get());
                 return policy::PolicyChange::ready([this, c] {
                     mailbox_.post_config(c);
                     relay_.wake();
                 });
             }});
        thread_ = std::thread([this] { loop(); });
    }

    std::string_view backend() const override { return "socket"; }
    std::vector<dataplane::BanInfo> active_bans() override {
        return pipeline_.bans().active(clock_.monotonic());
    }
    void write_metrics(MetricsWriter& w) override {
        write_dataplane_metrics(w, "socket", pipeline_.counters(),
                                pipeline_.bans().active(clock_.monotonic()),
                                pipeline_.media().active());
    }
    std::future<std::string> post(std::function<std::string()> task) override {
        auto f = tasks_.post(std::move(task));
        relay_.wake();
        return f;
    }
    void wake() override { relay_.wake(); }
    base::Result<int> open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                     void* ctx) override {
        auto fd = relay_.open_signaling(local, handler, ctx);
        if (fd)
            spdlog::info("SIP listener udp {}: receive buffer {} bytes ({} asked)",
                         local.to_string(), relay_.signaling_rcvbuf(),
                         relay_.signaling_rcvbuf_requested());
        return fd;
    }
    bool post_ban(const base::Prefix& prefix, base::Nanos duration,
                  dataplane::BanOrigin origin) override {
        const bool queued =
            mailbox_.post({dataplane::ControlCommand::Kind::ban, prefix, duration, origin});
        relay_.wake();
        return queued;
    }
    bool admit_connection(const base::Endpoint& remote, const base::Endpoint& local) override {
        dataplane::PacketMeta m;
        m.src = remote.addr;
        m.src_port = remote.port;
        m.dst = local.addr;
        m.dst_port = local.port;
        m.l4_proto = 6;
        m.tcp_flags = 0x02;  // SYN
        dataplane::Decision d;
        pipeline_.decide(std::span(&m, 1), std::span(&d, 1), clock_.monotonic());
        return d.action == dataplane::Action::to_kernel;
    }
    void protect_signaling_peer(const base::Endpoint& local,
                                const base::Endpoint& remote) override {
        if (relay_.protect_signaling_peer(local.port, remote))
            ++peers_protected_;
        else
            ++peers_refused_;
    }
    std::string stats_command() override {
        return "dataplane.backend=socket\n" + pipeline_text(pipeline_.counters()) +
               "media.streams=" + std::to_string(pipeline_.media().active()) + "\n" +
               "sockets=" + std::to_string(relay_.open_sockets()) + "\n" +
               "signaling_rcvbuf_bytes=" + std::to_string(relay_.signaling_rcvbuf()) + "\n" +
               "signaling_peers=" + std::to_string(relay_.signaling_peers()) + "\n" +
               "signaling_peers_protected=" + std::to_string(peers_protected_) + "\n" +
               "signaling_peers_refused=" + std::to_string(peers_refused_) + "\n";
    }

  private:
    void loop() {
        block_daemon_signals();
        while (!stop_.load(std::memory_order_relaxed)) {
            relay_.poll(20, clock_);
            mailbox_.apply(pipeline_, clock_.monotonic());
            if (tasks_.pending()) tasks_.run();
            // The relay's events (inactivity ends calls) for the call core, a batch per poll.
            std::array<dataplane::MediaEvent, 64> events;
            for (std::size_t n; (n = pipeline_.media().drain_events(events)) > 0;)
                for (std::size_t i = 0; i < n; ++i) media_event(events[i]);
            tick();
        }
        tasks_.close();
    }

    std::string media_command(std::string_view args) override {
        args = trim(args);
        const auto sp = args.find(' ');
        const auto verb = args.substr(0, sp);
        const std::string rest(sp == std::string_view::npos ? "" : args.substr(sp + 1));
        if (verb == "add") return call([this, rest] { return media_add(rest); });
        if (verb == "del") return call([this, rest] { return media_del(rest); });
        if (verb == "list") return call([this] { return media_list(); });
        return kMediaUsage;
    }
    MediaStreams* media_streams() override { return &streams_for_calls_; }

    // The call core's streams: opened and closed on the relay's own sockets, re-addressed in
    // the pipeline's media table (same local ports).
    struct CallStreams final : MediaStreams {
        SocketRuntime& rt;
        explicit CallStreams(SocketRuntime& r) : rt(r) {}
        base::Result<dataplane::StreamId> open(const dataplane::StreamSpec& spec) override {
            return rt.relay_.open_stream(spec, rt.clock_.monotonic());
        }
        base::Result<void> update(dataplane::StreamId id,
                                  const dataplane::StreamSpec& spec) override {
            return rt.pipeline_.media().update(id, spec, rt.clock_.monotonic());
        }
        base::Result<void> close(dataplane::StreamId id) override {
            return rt.relay_.close_stream(id);
        }
        base::Result<dataplane::StreamStats> stats(dataplane::StreamId id) const override {
            return rt.pipeline_.media().stats(id);
        }
    };
    CallStreams streams_for_calls_{*this};

    std::string media_add(std::string_view args) {
        auto spec = parse_media_add(args, media_a_addr_, media_b_addr_);
        if (!spec)
            return "error: usage: media add LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT "
                   "PEER_B_IP:PORT [rtcp-mux]\n";
        spec->call_id = next_stream_;
        auto id = relay_.open_stream(*spec, clock_.monotonic());
        if (!id) return "error: " + id.error().message + "\n";
        const std::uint32_t n = next_stream_++;
        streams_[n] = *id;
        return "ok media " + std::to_string(n) + " a=" + spec->a.local.to_string() +
               " b=" + spec->b.local.to_string() + "\n";
    }
    std::string media_del(std::string_view args) {
        const auto n = parse_media_id(args);
        if (!n) return "error: usage: media del ID\n";
        const auto it = streams_.find(*n);
        if (it == streams_.end()) return "error: no media stream " + std::to_string(*n) + "\n";
        auto r = relay_.close_stream(it->second);
        streams_.erase(it);
        if (!r) return "error: " + r.error().message + "\n";
        return "ok media " + std::to_string(*n) + " removed\n";
    }
    std::string media_list() {
        std::string out = "streams=" + std::to_string(streams_.size()) + "\n";
        for (const auto& [n, id] : streams_) {
            const auto* spec = pipeline_.media().spec(id);
            auto st = pipeline_.media().stats(id);
            if (!spec || !st)
                out += std::to_string(n) + " gone\n";
            else
                out += stream_text(n, *spec, *st);
        }
        return out;
    }

    bool wait_applied(base::Nanos before) const {
        for (int i = 0; i < 100; ++i) {
            base::Nanos at = 0;
            (void)mailbox_.bans(&at);
            if (at != before) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return false;
    }
    std::string ban_command(std::string_view args) override {
        auto b = parse_ban(args);
        if (!b) return b.error().message;
        base::Nanos before = 0;
        (void)mailbox_.bans(&before);
        const auto failed_before = mailbox_.failed();
        if (!mailbox_.post({dataplane::ControlCommand::Kind::ban, b->prefix, b->duration,
                            dataplane::BanOrigin::control}))
            return "error: dataplane busy, try again\n";
        relay_.wake();
        if (!wait_applied(before)) return "queued\n";
        if (mailbox_.failed() != failed_before) return "error: ban table full\n";
        return "ok banned " + b->prefix.to_string() + "\n";
    }
    std::string unban_command(std::string_view args) override {
        auto prefix = base::Prefix::parse(trim(args));
        if (!prefix) return "error: usage: unban ADDRESS|PREFIX\n";
        base::Nanos before = 0;
        (void)mailbox_.bans(&before);
        const auto failed_before = mailbox_.failed();
        if (!mailbox_.post({dataplane::ControlCommand::Kind::unban, *prefix, 0,
                            dataplane::BanOrigin::control}))
            return "error: dataplane busy, try again\n";
        relay_.wake();
        if (!wait_applied(before)) return "queued\n";
        if (mailbox_.failed() != failed_before)
            return "error: " + prefix->to_string() + " is not banned\n";
        return "ok unbanned " + prefix->to_string() + "\n";
    }
    std::string bans_command() const override {
        base::Nanos at = 0;
        const auto list = mailbox_.bans(&at);
        return bans_text(list, at);
    }

    dataplane::Pipeline pipeline_;
    dataplane::SocketRelay relay_;
    dataplane::ControlMailbox mailbox_;
    std::atomic<bool> stop_{false};
    TaskQueue tasks_;
    base::IpAddress media_a_addr_, media_b_addr_;           // our addresses for leg a / leg b
    std::map<std::uint32_t, dataplane::StreamId> streams_;  // `media` ids (dataplane thread)
    std::uint32_t next_stream_ = 1;
    std::uint64_t peers_protected_ = 0, peers_refused_ = 0;  // signaling thread
    std::thread thread_;
};

#ifdef SBC_HAVE_DPDK
// ---------------------------------------------------------------------------------------
// dpdk backend: the fast path on the EAL's worker lcore, the front door on kernel sockets.
// ---------------------------------------------------------------------------------------

// Gives the exception port's kernel interface the node's addresses and brings it up, so the
// host stack answers ARP, ICMP and SIP for them (ioctl: no netlink library needed).
base::Result<void> configure_host_interface(
    const std::string& ifname, const std::vector<policy::DataplaneConfig::HostAddress>& addrs) {
    if (ifname.size() >= IFNAMSIZ) return base::make_error("interface name too long: " + ifname);
    const int s4 = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s4 < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    auto fail = [&](const std::string& what) {
        const int e = errno;
        ::close(s4);
        return base::make_error(what + " on " + ifname + ": " + std::strerror(e));
    };
    unsigned v4 = 0;
    for (const auto& a : addrs) {
        if (a.addr.is_v4()) {
            // The first IPv4 address is the interface's own, the others are labelled aliases.
            const std::string label = v4 == 0 ? ifname : ifname + ":" + std::to_string(v4);
            ++v4;
            if (label.size() >= IFNAMSIZ) return fail("too many IPv4 addresses");
            ifreq r{};
            std::memcpy(r.ifr_name, label.c_str(), label.size());
            auto* sin = reinterpret_cast<sockaddr_in*>(&r.ifr_addr);
            sin->sin_family = AF_INET;
            std::memcpy(&sin->sin_addr, a.addr.bytes().data() + 12, 4);
            if (::ioctl(s4, SIOCSIFADDR, &r) != 0) return fail("add " + a.addr.to_string());
            const std::uint32_t mask =
                a.prefix_len == 0 ? 0 : htonl(~std::uint32_t{0} << (32 - a.prefix_len));
            std::memcpy(&sin->sin_addr, &mask, 4);
            if (::ioctl(s4, SIOCSIFNETMASK, &r) != 0) return fail("netmask " + a.addr.to_string());
        } else {
            // struct in6_ifreq of <linux/ipv6.h>, which clashes with <netinet/in.h>.
            struct {
                in6_addr addr;
                std::uint32_t prefix_len;
                int ifindex;
            } r6{};
            std::memcpy(&r6.addr, a.addr.bytes().data(), 16);
            r6.prefix_len = a.prefix_len;
            r6.ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
            const int s6 = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            const bool ok = s6 >= 0 && r6.ifindex != 0 && ::ioctl(s6, SIOCSIFADDR, &r6) == 0;
            if (s6 >= 0) ::close(s6);
            if (!ok) return fail("add " + a.addr.to_string());
        }
    }
    ifreq r{};
    std::memcpy(r.ifr_name, ifname.c_str(), ifname.size());
    if (::ioctl(s4, SIOCGIFFLAGS, &r) != 0) return fail("read flags");
    r.ifr_flags = static_cast<short>(r.ifr_flags | IFF_UP);
    if (::ioctl(s4, SIOCSIFFLAGS, &r) != 0) return fail("set up");
    ::close(s4);
    return {};
}

class DpdkRuntime final : public DataplaneRuntime {
  public:
    DpdkRuntime(const dataplane::PipelineConfig& c, const policy::NodeConfig& node)
        : pipeline_(c),
          media_a_addr_(node.media.external_address),
          media_b_addr_(node.media.internal_address) {}

    ~DpdkRuntime() override {
        stop_ = true;
        if (wake_fd_ >= 0) {
            const std::uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
        }
        if (signaling_.joinable()) signaling_.join();
        if (backend_) backend_->request_stop();
        if (worker_.joinable()) worker_.join();
        for (const auto& l : listeners_) ::close(l.fd);
        if (wake_fd_ >= 0) ::close(wake_fd_);
        backend_.reset();  // stops and closes the ports (the tap goes away)
        dataplane::dpdk::shutdown_eal();
    }

    base::Result<void> start(Daemon& daemon) {
        const auto& dp = daemon.config().dataplane;
        auto cfg =
            dataplane::dpdk::config_from_node(dp.dpdk_eal_args, dp.dpdk_ports, dp.burst_size);
        if (!cfg) return base::make_error("[dataplane.dpdk]: " + cfg.error().message);
        auto backend = dataplane::dpdk::Backend::create(*cfg, pipeline_);
        if (!backend) return base::make_error("DPDK backend: " + backend.error().message);
        backend_ = std::move(*backend);
        tap_ = backend_->port_pairs() > 0 ? backend_->exception_interface(0) : std::string();
        if (tap_.empty()) {
            if (!dp.dpdk_tap_addresses.empty())
                return base::make_error(
                    "[dataplane.dpdk] tap_addresses needs an exception port with a kernel "
                    "interface (net_tap) in ports");
            spdlog::warn(
                "DPDK: no exception port with a kernel interface: SIP, ARP and ICMP "
                "for our addresses are dropped");
        } else {
            if (auto r = configure_host_interface(tap_, dp.dpdk_tap_addresses); !r)
                return base::make_error("exception interface: " + r.error().message);
            std::string list;
            for (const auto& a : dp.dpdk_tap_addresses)
                list += " " + a.addr.to_string() + "/" + std::to_string(a.prefix_len);
            spdlog::info("DPDK exception interface {} up{}", tap_,
                         list.empty() ? " (addresses left to the operator)" : list);
        }
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wake_fd_ < 0) return base::make_error(std::string("eventfd: ") + std::strerror(errno));

        add_control_commands(daemon);
        const policy::NodeConfig node = daemon.config();
        // Built when a reload prepares, posted to the worker when it commits.
        (void)daemon.add_policy_participant(
            {"dataplane", [this, node](const std::shared_ptr<const policy::Policy>& p) {
                 auto config = std::make_shared<const dataplane::PipelineConfig>(
                     pipeline_config_from(node, p.get()));
                 return policy::PolicyChange::ready([this, config] {
                     dataplane::dpdk::ControlCommand c;
                     c.kind = dataplane::dpdk::ControlCommand::Kind::reconfigure;
                     c.config = config;
                     if (!backend_->post(std::move(c)))
                         spdlog::error(
                             "DPDK: control queue full, policy not applied to the fast path");
                 });
             }});
        worker_ = std::thread([this] {
            block_daemon_signals();
            const auto r = backend_->run({}, clock_);
            spdlog::info("DPDK worker stopped on lcore {} after {} frames", r.lcore,
                         r.counters[dataplane::dpdk::BackendCounter::rx]);
        });
        signaling_ = std::thread([this] { signaling_loop(); });
        return {};
    }

    std::string_view backend() const override { return "dpdk"; }
    std::future<std::string> post(std::function<std::string()> task) override {
        auto f = tasks_.post(std::move(task));
        wake();
        return f;
    }
    void wake() override {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }

    base::Result<int> open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                     void* ctx) override {
        sockaddr_storage ss;
        const socklen_t len = base::to_sockaddr(local, ss);
        const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
        // The address may reach the tap after we start (an operator's script, IPv6 DAD).
        const int one = 1;
        (void)::setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
            const int e = errno;
            ::close(fd);
            return base::make_error("bind " + local.to_string() + ": " + std::strerror(e));
        }
        listeners_.push_back({local, fd, handler, ctx});
        return fd;
    }

    bool post_ban(const base::Prefix& prefix, base::Nanos duration,
                  dataplane::BanOrigin origin) override {
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::ban;
        c.prefix = prefix;
        c.duration = duration;
        c.origin = origin;
        return backend_->post(std::move(c));  // tag 0: nobody waits for the result
    }

    std::vector<dataplane::BanInfo> active_bans() override { return backend_->snapshot().bans; }
    void write_metrics(MetricsWriter& w) override {
        const auto snap = backend_->snapshot();
        write_dataplane_metrics(w, "dpdk", snap.pipeline, snap.bans, snap.media_active);
        w.each("dpdk", snap.run.counters, dataplane::dpdk::kBackendCounterNames,
               dataplane::dpdk::kBackendCounterDescriptions);
        w.by_label("sbc_dpdk_drops_total", "frames the DPDK worker dropped, by reason", "reason",
                   snap.run.drops, dataplane::dpdk::kBackendDropNames);
    }
    std::string stats_command() override {
        using dataplane::dpdk::BackendCounter;
        using dataplane::dpdk::BackendDrop;
        wait_published();  // what the worker did up to this command
        const auto snap = backend_->snapshot();
        std::string out = "dataplane.backend=dpdk\n";
        out += "dpdk.running=" + std::string(snap.running ? "1" : "0") + "\n";
        out += "dpdk.lcore=" + std::to_string(snap.run.lcore) + "\n";
        for (std::size_t i = 0; i < dataplane::dpdk::kBackendCounterCount; ++i) {
            const auto c = static_cast<BackendCounter>(i);
            out +=
                "dpdk." + std::string(name(c)) + "=" + std::to_string(snap.run.counters[c]) + "\n";
        }
        for (std::size_t i = 0; i < dataplane::dpdk::kBackendDropCount; ++i) {
            const auto d = static_cast<BackendDrop>(i);
            out += "dpdk.drop." + std::string(name(d)) + "=" + std::to_string(snap.run.drops[d]) +
                   "\n";
        }
        out += "dpdk.exception_interface=" + (tap_.empty() ? std::string("-") : tap_) + "\n";
        out += "dpdk.media_events=" + std::to_string(media_events_.load()) + "\n";
        out += "dpdk.commands_failed=" + std::to_string(commands_failed_.load()) + "\n";
        out += pipeline_text(snap.pipeline);
        out += "media.streams=" + std::to_string(snap.media_active) + "\n";
        out += "bans.active=" + std::to_string(snap.bans.size()) + "\n";
        return out;
    }

  private:
    struct Listener {
        base::Endpoint local;
        int fd = -1;
        SignalingHandler handler = nullptr;
        void* ctx = nullptr;
    };

    void signaling_loop() {
        block_daemon_signals();
        static constexpr int kMaxListeners = 15;
        std::vector<std::uint8_t> buf(65536);
        std::vector<dataplane::MediaEvent> events;
        while (!stop_.load(std::memory_order_relaxed)) {
            pollfd fds[1 + kMaxListeners];
            fds[0] = {wake_fd_, POLLIN, 0};
            int n = 1;
            for (const auto& l : listeners_)
                if (n < 1 + kMaxListeners) fds[n++] = {l.fd, POLLIN, 0};
            if (::poll(fds, static_cast<nfds_t>(n), 20) > 0) {
                if (fds[0].revents & POLLIN) {
                    std::uint64_t v;
                    [[maybe_unused]] auto r = ::read(wake_fd_, &v, sizeof v);
                }
                for (int i = 1; i < n; ++i)
                    if (fds[i].revents & POLLIN) receive(listeners_[i - 1], buf);
            }
            if (tasks_.pending()) tasks_.run();
            tick();
            events.clear();
            media_events_ += backend_->take_events(events);
            for (const auto& e : events) media_event(e);
            collect_results();
        }
        tasks_.close();
    }

    // Up to a bounded batch per wake-up, so one busy listener cannot starve the others.
    void receive(const Listener& l, std::vector<std::uint8_t>& buf) {
        for (int k = 0; k < 64; ++k) {
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            const auto got = ::recvfrom(l.fd, buf.data(), buf.size(), MSG_DONTWAIT,
                                        reinterpret_cast<sockaddr*>(&ss), &len);
            if (got < 0) return;
            const auto from = base::from_sockaddr(ss);
            if (!from) continue;
            dataplane::PacketMeta m;
            m.src = from->addr;
            m.src_port = from->port;
            m.dst = l.local.addr;
            m.dst_port = l.local.port;
            m.l4_proto = 17;
            m.payload = buf.data();
            m.payload_len = static_cast<std::uint16_t>(std::min<ssize_t>(got, 65535));
            l.handler(m, l.ctx);
        }
    }

    // Results of tagged commands are kept for their waiter; untagged ones (fraud bans) only
    // count their failures.
    void collect_results() {
        std::vector<dataplane::dpdk::ControlResult> got;
        if (backend_->take_results(got) == 0) return;
        std::lock_guard lock(results_mu_);
        for (auto& r : got) {
            if (r.tag == 0) {
                if (!r.ok) ++commands_failed_;
                continue;
            }
            if (results_.size() >= 1024) results_.erase(results_.begin());  // waiter gone
            results_[r.tag] = std::move(r);
        }
    }

    // Control socket thread: posts `c` and waits (up to 1 s) for the worker's result.
    base::Result<dataplane::dpdk::ControlResult> command(dataplane::dpdk::ControlCommand c) {
        c.tag = next_tag_++;
        if (!backend_->post(c)) return base::make_error("error: dataplane busy, try again\n");
        for (int i = 0; i < 200; ++i) {
            collect_results();
            {
                std::lock_guard lock(results_mu_);
                if (auto it = results_.find(c.tag); it != results_.end()) {
                    auto r = std::move(it->second);
                    results_.erase(it);
                    return r;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return base::make_error("queued\n");
    }

    // After a command: wait until the worker published a snapshot that includes it, so that
    // `bans`/`media list` right after show it.
    void wait_published() {
        const base::Nanos since = clock_.monotonic();
        for (int i = 0; i < 100; ++i) {
            const auto s = backend_->snapshot();
            if (!s.running || s.at > since) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    std::string ban_command(std::string_view args) override {
        auto b = parse_ban(args);
        if (!b) return b.error().message;
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::ban;
        c.prefix = b->prefix;
        c.duration = b->duration;
        c.origin = dataplane::BanOrigin::control;
        auto r = command(std::move(c));
        if (!r) return r.error().message;
        if (!r->ok) return "error: " + r->error + "\n";
        wait_published();
        return "ok banned " + b->prefix.to_string() + "\n";
    }
    std::string unban_command(std::string_view args) override {
        auto prefix = base::Prefix::parse(trim(args));
        if (!prefix) return "error: usage: unban ADDRESS|PREFIX\n";
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::unban;
        c.prefix = *prefix;
        auto r = command(std::move(c));
        if (!r) return r.error().message;
        if (!r->ok) return "error: " + prefix->to_string() + " is not banned\n";
        wait_published();
        return "ok unbanned " + prefix->to_string() + "\n";
    }
    std::string bans_command() const override {
        const auto s = backend_->snapshot();
        return bans_text(s.bans, s.at);
    }

    std::string media_command(std::string_view args) override {
        args = trim(args);
        const auto sp = args.find(' ');
        const auto verb = args.substr(0, sp);
        const std::string_view rest = sp == std::string_view::npos ? "" : args.substr(sp + 1);
        std::lock_guard lock(streams_mu_);  // one media command at a time
        if (verb == "add") return media_add(rest);
        if (verb == "del") return media_del(rest);
        if (verb == "list") return media_list();
        return kMediaUsage;
    }

    MediaStreams* media_streams() override { return &streams_for_calls_; }

    // The call core's streams: each change is a command to the worker lcore, which applies it
    // between two bursts; the signaling thread waits for its result (the worker polls its
    // control ring every loop, so the wait is short; bounded by kMediaWait).
    struct CallStreams final : MediaStreams {
        DpdkRuntime& rt;
        explicit CallStreams(DpdkRuntime& r) : rt(r) {}
        base::Result<dataplane::StreamId> open(const dataplane::StreamSpec& spec) override {
            auto r = rt.media_now(dataplane::MediaCommandKind::create, {}, spec);
            if (!r) return r.error();
            return r->stream;
        }
        base::Result<void> update(dataplane::StreamId id,
                                  const dataplane::StreamSpec& spec) override {
            auto r = rt.media_now(dataplane::MediaCommandKind::update, id, spec);
            if (!r) return r.error();
            return {};
        }
        base::Result<void> close(dataplane::StreamId id) override {
            auto r = rt.media_now(dataplane::MediaCommandKind::remove, id, {});
            if (!r) return r.error();
            return {};
        }
        // From the worker's last snapshot (its first Backend::kReportedStreams streams).
        base::Result<dataplane::StreamStats> stats(dataplane::StreamId id) const override {
            const auto s = rt.backend_->snapshot();
            for (const auto& x : s.streams)
                if (x.id == id) return x.stats;
            return base::make_error("stream not in the DPDK worker's snapshot");
        }
    };
    CallStreams streams_for_calls_{*this};
    static constexpr auto kMediaWait = std::chrono::seconds(1);

    // Signaling thread: one media command, waited for.
    base::Result<dataplane::dpdk::ControlResult> media_now(dataplane::MediaCommandKind kind,
                                                           dataplane::StreamId id,
                                                           const dataplane::StreamSpec& spec) {
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::media;
        c.media.kind = kind;
        c.media.id = id;
        c.media.spec = spec;
        c.tag = next_tag_++;
        const std::uint64_t tag = c.tag;
        if (!backend_->post(std::move(c)))
            return base::make_error("the DPDK worker's control queue is full");
        const auto deadline = std::chrono::steady_clock::now() + kMediaWait;
        for (int spin = 0;; ++spin) {
            collect_results();
            {
                std::lock_guard lock(results_mu_);
                if (auto it = results_.find(tag); it != results_.end()) {
                    auto r = std::move(it->second);
                    results_.erase(it);
                    if (!r.ok) return base::make_error(r.error);
                    return r;
                }
            }
            if (std::chrono::steady_clock::now() > deadline)
                return base::make_error("the DPDK worker did not answer a media command in 1 s");
            if (spin < 1000)
                std::this_thread::yield();
            else
                std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

    std::string media_add(std::string_view args) {
        auto spec = parse_media_add(args, media_a_addr_, media_b_addr_);
        if (!spec)
            return "error: usage: media add LOCAL_A_PORT PEER_A_IP:PORT LOCAL_B_PORT "
                   "PEER_B_IP:PORT [rtcp-mux]\n";
        spec->call_id = next_stream_;
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::media;
        c.media.kind = dataplane::MediaCommandKind::create;
        c.media.spec = *spec;
        auto r = command(std::move(c));
        if (!r) return r.error().message;
        if (!r->ok) return "error: " + r->error + "\n";
        const std::uint32_t n = next_stream_++;
        streams_[n] = r->stream;
        return "ok media " + std::to_string(n) + " a=" + spec->a.local.to_string() +
               " b=" + spec->b.local.to_string() + "\n";
    }
    std::string media_del(std::string_view args) {
        const auto n = parse_media_id(args);
        if (!n) return "error: usage: media del ID\n";
        const auto it = streams_.find(*n);
        if (it == streams_.end()) return "error: no media stream " + std::to_string(*n) + "\n";
        dataplane::dpdk::ControlCommand c;
        c.kind = dataplane::dpdk::ControlCommand::Kind::media;
        c.media.kind = dataplane::MediaCommandKind::remove;
        c.media.id = it->second;
        auto r = command(std::move(c));
        if (!r) return r.error().message;
        streams_.erase(it);
        if (!r->ok) return "error: " + r->error + "\n";
        return "ok media " + std::to_string(*n) + " removed\n";
    }
    std::string media_list() {
        wait_published();
        const auto s = backend_->snapshot();
        std::string out = "streams=" + std::to_string(streams_.size()) + "\n";
        for (const auto& [n, stream] : streams_) {
            const dataplane::StreamId id = stream;  // clang 14 captures no structured binding
            const auto it = std::find_if(s.streams.begin(), s.streams.end(),
                                         [id](const auto& x) { return x.id == id; });
            if (it == s.streams.end())
                out += std::to_string(n) + " gone\n";
            else
                out += stream_text(n, it->spec, it->stats);
        }
        return out;
    }

    dataplane::Pipeline pipeline_;  // the worker's while it runs
    std::unique_ptr<dataplane::dpdk::Backend> backend_;
    std::string tap_;
    base::IpAddress media_a_addr_, media_b_addr_;
    std::atomic<bool> stop_{false};
    int wake_fd_ = -1;
    TaskQueue tasks_;
    std::vector<Listener> listeners_;  // signaling thread
    std::mutex results_mu_;
    std::map<std::uint64_t, dataplane::dpdk::ControlResult> results_;
    std::atomic<std::uint64_t> next_tag_{1};
    std::mutex streams_mu_;
    std::map<std::uint32_t, dataplane::StreamId> streams_;
    std::uint32_t next_stream_ = 1;
    std::atomic<std::uint64_t> media_events_{0}, commands_failed_{0};
    std::thread worker_, signaling_;
};
#endif  // SBC_HAVE_DPDK

}  // namespace

base::Result<std::unique_ptr<DataplaneRuntime>> DataplaneRuntime::start(Daemon& daemon) {
    const auto& node = daemon.config();
    const auto policy = daemon.policies().current();
    const auto config = pipeline_config_from(node, policy.get());
    switch (node.dataplane.backend) {
        case policy::DataplaneBackend::socket: {
            auto rt = std::make_unique<SocketRuntime>(config, node);
            rt->start(daemon);
            return std::unique_ptr<DataplaneRuntime>(std::move(rt));
        }
        case policy::DataplaneBackend::dpdk: {
#ifdef SBC_HAVE_DPDK
            auto rt = std::make_unique<DpdkRuntime>(config, node);
            if (auto r = rt->start(daemon); !r) return r.error();
            return std::unique_ptr<DataplaneRuntime>(std::move(rt));
#else
            return base::make_error(
                "[dataplane] backend = \"dpdk\": this sbc was built without DPDK "
                "(install libdpdk-dev and rebuild)");
#endif
        }
        case policy::DataplaneBackend::pcap:
            break;
    }
    return base::make_error(
        "[dataplane] backend = \"pcap\" is for offline use: `sbc dataplane pcap`/replay; "
        "`sbc run` needs \"socket\" or \"dpdk\"");
}

}  // namespace sbc

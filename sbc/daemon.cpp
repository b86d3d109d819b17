#include "sbc/daemon.hpp"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include <spdlog/spdlog.h>

#include "sbc/control.hpp"
#include "sbc/dataplane_wiring.hpp"
#include "sbc/events.hpp"
#include "sbc/fraud_wiring.hpp"
#include "sbc/front_door.hpp"
#include "sbc/metrics.hpp"

namespace sbc {

struct Daemon::Impl {
    ControlServer control;
    int signal_fd = -1;
    int stop_pipe[2] = {-1, -1};
    base::SystemClock clock;
    std::unique_ptr<SecurityEvents> events;  // outlives everything that emits
    std::optional<gid_t> control_group;
    bool draining = false;
    base::Nanos drain_deadline = 0;               // monotonic
    std::unique_ptr<FrontDoor> front_door;        // called by the dataplane thread: outlives it
    std::unique_ptr<DataplaneRuntime> dataplane;  // stops before the control server goes
    std::unique_ptr<MetricsServer> metrics;       // last: stops first
    // Calls still up free their relay streams while the dataplane is there to take them.
    ~Impl() {
        if (front_door && dataplane) front_door->stop_calls();
    }
    std::size_t rss_at_start = 0;  // once the dataplane, listeners and fraud tables are up
};

namespace {

// Resident memory of this process (/proc/self/statm), 0 when unreadable.
std::size_t resident_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    return n == 2 ? resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

std::string format_time(base::UnixNanos t) {
    if (t == 0) return "never";
    std::time_t secs = static_cast<std::time_t>(t / base::kNanosPerSecond);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

}  // namespace

std::unique_ptr<Daemon> Daemon::create(const std::string& config_path,
                                       std::vector<policy::Diagnostic>& errors) {
    auto cfg = policy::load_node_config(config_path);
    if (!cfg.ok()) {
        errors = std::move(cfg.errors);
        return nullptr;
    }
    std::unique_ptr<Daemon> d(new Daemon());
    d->config_ = *cfg.value;
    d->impl_ = std::make_unique<Impl>();
    d->store_ = std::make_unique<policy::PolicyStore>(d->config_.policy_files);
    auto first = d->store_->reload(d->impl_->clock.wall());
    if (!first.ok) {
        errors = std::move(first.errors);
        return nullptr;
    }
    // The fraud engine joins with the front door in run(); its limits are checked here so
    // that `sbc run --check` and start-up fail before anything is opened.
    if (auto refused = check_fraud_engine(*d->store_->current()); !refused.empty()) {
        errors = std::move(refused);
        return nullptr;
    }
    d->add_control_command("reload", [daemon = d.get()](std::string_view) {
        auto r = daemon->reload();
        // "ok", "failed" (the files do not load) or "refused" (a subsystem refused the new
        // policy: nothing changed), the version in force, then every reason.
        std::string out = r.ok ? "ok version=" + std::to_string(r.version) + "\n"
                               : std::string(r.refused_by.empty() ? "failed" : "refused") +
                                     " version=" + std::to_string(r.version) +
                                     " errors=" + std::to_string(r.errors.size()) +
                                     (r.refused_by.empty() ? "" : " by=" + r.refused_by) + "\n";
        for (const auto& e : r.errors) out += e.to_string() + "\n";
        return out;
    });
    d->add_control_command("status",
                           [daemon = d.get()](std::string_view) { return daemon->status_text(); });
    d->add_control_command("version", [](std::string_view) { return std::string("sbc 0.1.0\n"); });
    d->add_control_command("drain", [daemon = d.get()](std::string_view args) {
        // drain [SECONDS]: the configured drain_timeout unless given.
        base::Nanos timeout = daemon->config_.drain_timeout;
        while (!args.empty() && (args.back() == ' ' || args.back() == '\r')) args.remove_suffix(1);
        if (!args.empty()) {
            std::uint64_t s = 0;
            const auto [p, ec] = std::from_chars(args.data(), args.data() + args.size(), s);
            if (ec != std::errc{} || p != args.data() + args.size() || s > 86400)
                return std::string("error: usage: drain [SECONDS (0-86400)]\n");
            timeout = static_cast<base::Nanos>(s) * base::kNanosPerSecond;
        }
        return daemon->drain(timeout);
    });
    if (!d->config_.control_group.empty()) {
        // Resolved here so that `sbc run --check` reports an unknown group.
        if (const group* g = ::getgrnam(d->config_.control_group.c_str()))
            d->impl_->control_group = g->gr_gid;
        else
            errors.push_back({d->config_.file, 0, 0,
                              "[control] group = \"" + d->config_.control_group +
                                  "\": no such group on this system"});
        if (!errors.empty()) return nullptr;
    }
    if (d->config_.dataplane.backend == policy::DataplaneBackend::pcap) {
        // Never a silent fallback to sockets: the capture backend has no live traffic.
        errors.push_back({d->config_.file, 0, 0,
                          "[dataplane] backend = \"pcap\" has no live traffic (a capture in, a "
                          "capture out: `sbc dataplane pcap`); `sbc run` needs \"socket\" or "
                          "\"dpdk\""});
        return nullptr;
    }
    // The dataplane starts with run(), not here: `sbc run --check` brings up no EAL, opens no
    // socket.
    return d;
}

Daemon::~Daemon() {
    if (impl_) {
        if (impl_->signal_fd >= 0) ::close(impl_->signal_fd);
        for (int fd : impl_->stop_pipe)
            if (fd >= 0) ::close(fd);
    }
}

void Daemon::add_control_command(std::string name, ControlHandler handler) {
    impl_->control.add(std::move(name), std::move(handler));
}

std::vector<policy::Diagnostic> Daemon::add_policy_participant(
    policy::PolicyParticipant participant) {
    return store_->add_participant(std::move(participant));
}

SecurityEvents* Daemon::security_events() {
    return impl_ ? impl_->events.get() : nullptr;
}

policy::PolicyStore::ReloadResult Daemon::reload() {
    auto r = store_->reload(impl_->clock.wall());
    auto st = store_->status();
    if (impl_->events)
        impl_->events->emit(
            SecurityEventKind::policy_reload, impl_->clock.wall(),
            {{"result", r.ok ? "ok" : (r.refused_by.empty() ? "failed" : "refused")},
             {"version", SecurityEvents::number(static_cast<double>(r.version))},
             {"hash", st.hash},
             {"errors", SecurityEvents::number(static_cast<double>(r.errors.size()))},
             {"refused_by", r.refused_by},
             {"first_error", r.errors.empty() ? std::string() : r.errors.front().to_string()}});
    if (r.ok) {
        spdlog::info("policy reloaded: version {} hash {}", st.version, st.hash);
    } else if (!r.refused_by.empty()) {
        spdlog::error(
            "policy reload refused by {} with {} error(s); nothing changed, version {} stays in "
            "force",
            r.refused_by, r.errors.size(), r.version);
        for (const auto& e : r.errors) spdlog::error("  {}", e.to_string());
    } else {
        spdlog::error("policy reload failed with {} error(s); version {} stays in force",
                      r.errors.size(), r.version);
        for (const auto& e : r.errors) spdlog::error("  {}", e.to_string());
    }
    return r;
}

std::string Daemon::status_text() const {
    auto st = store_->status();
    std::string out;
    out += "node=" + config_.node_name + "\n";
    out += std::string("state=") + (impl_->draining ? "draining" : "running") + "\n";
    out += "policy_version=" + std::to_string(st.version) + "\n";
    out += "policy_hash=" + st.hash + "\n";
    out += "policy_files=" + join(st.files, ",") + "\n";
    out += "policy_loaded_at=" + format_time(st.loaded_at) + "\n";
    out += "reloads_ok=" + std::to_string(st.reloads_ok) + "\n";
    out += "reloads_failed=" + std::to_string(st.reloads_failed) + "\n";
    out += "last_reload_result=" + st.last_result() + "\n";
    out += "last_reload_at=" + format_time(st.last_reload_at) + "\n";
    for (const auto& e : st.last_errors) out += "last_reload_error=" + e.to_string() + "\n";
    if (impl_ && impl_->front_door) {
        // The fixed footprint: what the node holds once started (its tables committed), and
        // what it holds now; calls and connections add to the difference.
        out += "memory_rss_at_start_bytes=" + std::to_string(impl_->rss_at_start) + "\n";
        out += "memory_rss_bytes=" + std::to_string(resident_bytes()) + "\n";
        out += impl_->front_door->memory_status();
        out += impl_->front_door->next_hops_status();
    }
    return out;
}

std::string Daemon::drain(base::Nanos timeout) {
    const base::Nanos now = impl_->clock.monotonic();
    if (!impl_->draining) {
        impl_->draining = true;
        impl_->drain_deadline = now + timeout;
        if (impl_->front_door) impl_->front_door->set_draining(true, config_.drain_retry_after);
        spdlog::info(
            "draining: new calls get 503 (Retry-After {} s); {:.0f} s for the calls in "
            "progress",
            config_.drain_retry_after, static_cast<double>(timeout) / 1e9);
    } else if (now + timeout < impl_->drain_deadline) {
        impl_->drain_deadline = now + timeout;  // a shorter drain wins
    }
    const std::size_t calls = impl_->front_door ? impl_->front_door->active_calls() : 0;
    char left[32];
    std::snprintf(left, sizeof left, "%.1f",
                  static_cast<double>(impl_->drain_deadline - now) / 1e9);
    return "ok draining calls=" + std::to_string(calls) + " timeout_s=" + left + "\n";
}

// Whether a drain is over: no call left, or the deadline passed (the calls left are hung up).
static bool drain_done(Daemon::Impl& impl, base::Nanos now) {
    const std::size_t calls = impl.front_door ? impl.front_door->active_calls() : 0;
    if (calls == 0) {
        spdlog::info("drained: no call in progress, stopping");
        return true;
    }
    if (now < impl.drain_deadline) return false;
    const std::size_t ended = impl.front_door->end_all_calls();
    spdlog::warn("drain timeout: {} call(s) still in progress hung up (BYE both legs), stopping",
                 ended);
    return true;
}

void Daemon::stop() {
    if (impl_ && impl_->stop_pipe[1] >= 0) {
        char c = 1;
        [[maybe_unused]] auto n = ::write(impl_->stop_pipe[1], &c, 1);
    }
}

int Daemon::run() {
    // Signals arrive through a signalfd in this loop, never in a handler racing with the
    // reload; threads started later inherit the blocked mask.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    impl_->signal_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (impl_->signal_fd < 0 || ::pipe2(impl_->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        spdlog::error("cannot set up signal handling: {}", std::strerror(errno));
        return 1;
    }
    auto events = SecurityEvents::start(config_.events, config_.node_name);
    if (!events) {
        spdlog::error("{}", events.error().message);
        return 1;
    }
    impl_->events = std::move(*events);
    // The dataplane and the SIP listeners open with run(), not create(): `sbc run --check`
    // binds nothing. Threads started from here on inherit the blocked signals.
    auto dataplane = DataplaneRuntime::start(*this);  // ban, unban, bans, media
    if (!dataplane) {
        spdlog::error("{}", dataplane.error().message);
        return 1;
    }
    impl_->dataplane = std::move(*dataplane);
    spdlog::info("dataplane backend: {}", impl_->dataplane->backend());
    auto front_door = FrontDoor::attach(*this, *impl_->dataplane);  // stats, answer
    if (!front_door) {
        spdlog::error("{}", front_door.error().message);
        return 1;
    }
    impl_->front_door = std::move(*front_door);
    impl_->rss_at_start = resident_bytes();
    // The metrics page and the ban watch (security events) run on the signaling thread every
    // 0.5 s; the HTTP listener only with [metrics] enabled.
    auto metrics = MetricsServer::start(*this, *impl_->dataplane, *impl_->front_door);
    if (!metrics) {
        spdlog::error("{}", metrics.error().message);
        return 1;
    }
    impl_->metrics = std::move(*metrics);
    if (auto r =
            impl_->control.open(config_.control_socket, config_.control_mode, impl_->control_group);
        !r) {
        spdlog::error("{}", r.error().message);
        return 1;
    }
    auto st = store_->status();
    spdlog::info("sbc {} running: policy version {} hash {}, control socket {}, {} MiB resident",
                 config_.node_name, st.version, st.hash, config_.control_socket,
                 impl_->rss_at_start >> 20);
    for (;;) {
        pollfd fds[3] = {{impl_->signal_fd, POLLIN, 0},
                         {impl_->control.fd(), POLLIN, 0},
                         {impl_->stop_pipe[0], POLLIN, 0}};
        // While draining, the calls left are looked at four times a second.
        int n = ::poll(fds, 3, impl_->draining ? 250 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::error("poll: {}", std::strerror(errno));
            return 1;
        }
        if (fds[2].revents) {
            spdlog::info("stopping");
            return 0;
        }
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo si;
            while (::read(impl_->signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                if (si.ssi_signo == SIGHUP) {
                    spdlog::info("SIGHUP: reloading policy");
                    reload();
                } else if (si.ssi_signo == SIGTERM && !impl_->draining) {
                    spdlog::info("SIGTERM: draining");
                    drain(config_.drain_timeout);
                } else {
                    // SIGINT, or a second SIGTERM: stop now, hanging up the calls left.
                    const std::size_t ended =
                        impl_->front_door ? impl_->front_door->end_all_calls() : 0;
                    spdlog::info("signal {}: stopping ({} call(s) hung up)", si.ssi_signo, ended);
                    return 0;
                }
            }
        }
        if (fds[1].revents & POLLIN) impl_->control.serve_one();
        if (impl_->draining && drain_done(*impl_, impl_->clock.monotonic())) return 0;
    }
}

}  // namespace sbc

// `sbc dataplane pcap IN OUT`: runs the pcap backend over a capture and prints the counters.
// `sbc relay`: runs the socket backend standalone for a given set of streams.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "dataplane/dataplane.hpp"
#include "policy/policy.hpp"
#include "sbc/cli.hpp"
#include "sbc/dataplane_wiring.hpp"

namespace sbc::cli {

namespace {

// "LOCAL_A=REMOTE_A,LOCAL_B=REMOTE_B[,mux]", endpoints as ip:port or [v6]:port.
std::optional<dataplane::StreamSpec> parse_stream(const std::string& text, std::uint64_t call_id) {
    dataplane::StreamSpec s;
    s.call_id = call_id;
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto comma = text.find(',', start);
        parts.push_back(
            text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    if (parts.size() < 2 || parts.size() > 3) return std::nullopt;
    if (parts.size() == 3) {
        if (parts[2] != "mux") return std::nullopt;
        s.rtcp_mux = true;
    }
    dataplane::LegSpec* legs[2] = {&s.a, &s.b};
    for (int i = 0; i < 2; ++i) {
        const auto eq = parts[i].find('=');
        if (eq == std::string::npos) return std::nullopt;
        auto local = base::Endpoint::parse(std::string_view(parts[i]).substr(0, eq));
        auto remote = base::Endpoint::parse(std::string_view(parts[i]).substr(eq + 1));
        if (!local || !remote) return std::nullopt;
        legs[i]->local = *local;
        legs[i]->remote = *remote;
    }
    return s;
}

struct Loaded {
    dataplane::PipelineConfig config;
    bool ok = true;
};

Loaded load_config(const std::string& path) {
    Loaded out;
    out.config = dataplane::PipelineConfig::defaults();
    if (path.empty()) return out;
    auto node = policy::load_node_config(path);
    if (!node.ok()) {
        for (const auto& e : node.errors) std::cerr << e.to_string() << "\n";
        out.ok = false;
        return out;
    }
    std::shared_ptr<const policy::Policy> pol;
    if (!node.value->policy_files.empty()) {
        auto p = policy::load_policy(node.value->policy_files);
        if (!p.ok()) {
            for (const auto& e : p.errors) std::cerr << e.to_string() << "\n";
            out.ok = false;
            return out;
        }
        pol = p.value;
    }
    out.config = pipeline_config_from(*node.value, pol.get());
    return out;
}

void print_counters(const dataplane::Pipeline& p) {
    const auto& c = p.counters();
    for (std::size_t i = 0; i < dataplane::kPipelineEventCount; ++i)
        if (c.events.values[i])
            std::printf("  %-20s %12llu\n", std::string(dataplane::kPipelineEventNames[i]).c_str(),
                        static_cast<unsigned long long>(c.events.values[i]));
    std::printf("drops by reason:\n");
    for (std::size_t i = 0; i < dataplane::kDropReasonCount; ++i)
        if (c.drops.values[i])
            std::printf("  %-20s %12llu  %s\n", std::string(dataplane::kDropReasonNames[i]).c_str(),
                        static_cast<unsigned long long>(c.drops.values[i]),
                        std::string(dataplane::kDropReasonDescriptions[i]).c_str());
}

void print_bans(dataplane::Pipeline& p, base::Nanos now) {
    auto bans = p.bans().active(now);
    std::printf("active bans: %zu\n", bans.size());
    for (const auto& b : bans)
        std::printf("  %-40s %-10s offenses=%u remaining=%.0fs dropped=%llu\n",
                    b.prefix.to_string().c_str(), std::string(name(b.origin)).c_str(), b.offenses,
                    static_cast<double>(b.expires - now) / 1e9,
                    static_cast<unsigned long long>(b.hits));
}

void print_stream(const dataplane::Pipeline& p, dataplane::StreamId id, const std::string& label) {
    auto st = const_cast<dataplane::Pipeline&>(p).media().stats(id);
    if (!st) return;
    auto leg = [](const char* n, const dataplane::LegStats& l) {
        std::printf(
            "    leg %s: packets=%llu bytes=%llu rtcp=%llu lost=%lld jitter=%.2fms latched=%s\n", n,
            static_cast<unsigned long long>(l.packets), static_cast<unsigned long long>(l.bytes),
            static_cast<unsigned long long>(l.rtcp_packets), static_cast<long long>(l.lost),
            l.jitter_ms(), l.latched_rtp.port ? l.latched_rtp.to_string().c_str() : "-");
    };
    std::printf("  stream %s\n", label.c_str());
    leg("a", st->a);
    leg("b", st->b);
}

struct PcapCtx {
    std::vector<dataplane::StreamSpec> specs;
    std::vector<dataplane::StreamId> ids;
    bool ok = true;
};

void create_streams(dataplane::Pipeline& p, base::Nanos now, void* ctx) {
    auto* c = static_cast<PcapCtx*>(ctx);
    for (const auto& s : c->specs) {
        auto id = p.media().create(s, now);
        if (!id) {
            std::cerr << "stream: " << id.error().message << "\n";
            c->ok = false;
            continue;
        }
        c->ids.push_back(*id);
    }
}

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
    g_stop = 1;
}

}  // namespace

void register_dataplane_commands(CLI::App& app) {
    auto* dp = app.add_subcommand("dataplane", "Dataplane tools");
    dp->require_subcommand(1);

    auto* reasons = dp->add_subcommand("reasons", "Print the drop reasons and events as a table");
    reasons->callback([]() {
        std::printf("| drop reason | meaning |\n|---|---|\n");
        for (std::size_t i = 0; i < dataplane::kDropReasonCount; ++i)
            std::printf("| `%s` | %s |\n", std::string(dataplane::kDropReasonNames[i]).c_str(),
                        std::string(dataplane::kDropReasonDescriptions[i]).c_str());
        std::printf("\n| event | meaning |\n|---|---|\n");
        for (std::size_t i = 0; i < dataplane::kPipelineEventCount; ++i)
            std::printf("| `%s` | %s |\n", std::string(dataplane::kPipelineEventNames[i]).c_str(),
                        std::string(dataplane::kPipelineEventDescriptions[i]).c_str());
        std::printf("\n| traffic class | meaning |\n|---|---|\n");
        for (std::size_t i = 0; i < dataplane::kTrafficClassCount; ++i)
            std::printf("| `%s` | %s |\n", std::string(dataplane::kTrafficClassNames[i]).c_str(),
                        std::string(dataplane::kTrafficClassDescriptions[i]).c_str());
    });

    struct PcapOpts {
        std::string in, out, config;
        std::vector<std::string> streams;
        bool write_signaling = false;
    };
    auto po = std::make_shared<PcapOpts>();
    auto* pcap = dp->add_subcommand("pcap", "Run the pcap backend: capture in, relayed frames out");
    pcap->add_option("input", po->in, "input capture (Ethernet or raw IP)")->required();
    pcap->add_option("output", po->out, "output capture of what would be sent")->required();
    pcap->add_option("--config", po->config, "sbc.toml (limits, ports from it and its policy)");
    pcap->add_option("--stream", po->streams,
                     "media stream LOCAL_A=REMOTE_A,LOCAL_B=REMOTE_B[,mux] created at the "
                     "capture's first timestamp (repeatable)");
    pcap->add_flag("--write-signaling", po->write_signaling,
                   "also write SIP admitted for signaling to the output");
    pcap->callback([po]() {
        auto cfg = load_config(po->config);
        if (!cfg.ok) throw CLI::RuntimeError(2);
        PcapCtx ctx;
        for (std::size_t i = 0; i < po->streams.size(); ++i) {
            auto s = parse_stream(po->streams[i], i + 1);
            if (!s) {
                std::cerr << "bad --stream '" << po->streams[i] << "'\n";
                throw CLI::RuntimeError(2);
            }
            ctx.specs.push_back(*s);
        }
        dataplane::Pipeline pipeline(cfg.config);
        dataplane::PcapRunHooks hooks;
        hooks.on_start = create_streams;
        hooks.ctx = &ctx;
        hooks.write_signaling = po->write_signaling;
        auto r = dataplane::run_pcap(pipeline, po->in, po->out, hooks);
        if (!r) {
            std::cerr << "sbc dataplane pcap: " << r.error().message << "\n";
            throw CLI::RuntimeError(1);
        }
        std::printf("records read: %llu, written: %llu, capture span: %.3fs\n",
                    static_cast<unsigned long long>(r->records),
                    static_cast<unsigned long long>(r->written),
                    static_cast<double>(r->last_time - r->first_time) / 1e9);
        if (!r->error.empty()) std::printf("capture error: %s\n", r->error.c_str());
        std::printf("pipeline:\n");
        print_counters(pipeline);
        for (std::size_t i = 0; i < ctx.ids.size(); ++i)
            print_stream(pipeline, ctx.ids[i], po->streams[i]);
        print_bans(pipeline, r->last_time);
        if (!r->error.empty() || !ctx.ok) throw CLI::RuntimeError(1);
    });

    struct RelayOpts {
        std::string config;
        std::vector<std::string> streams;
        double duration = 0;
        bool quiet = false;
    };
    auto ro = std::make_shared<RelayOpts>();
    auto* relay = app.add_subcommand("relay", "Run the socket media relay standalone");
    relay->add_option("--config", ro->config, "sbc.toml (limits, ports from it and its policy)");
    relay
        ->add_option("--stream", ro->streams,
                     "media stream LOCAL_A=REMOTE_A,LOCAL_B=REMOTE_B[,mux]")
        ->required();
    relay->add_option("--duration", ro->duration, "seconds to run (0: until SIGINT/SIGTERM)");
    relay->add_flag("--quiet", ro->quiet, "print only the final counters");
    relay->callback([ro]() {
        auto cfg = load_config(ro->config);
        if (!cfg.ok) throw CLI::RuntimeError(2);
        // Standalone: any port of the streams is a media port.
        cfg.config.media_port_min = 1024;
        cfg.config.media_port_max = 65534;
        cfg.config.local_addresses.clear();
        dataplane::Pipeline pipeline(cfg.config);
        dataplane::SocketRelay relay(pipeline);
        base::SystemClock clock;
        std::vector<dataplane::StreamId> ids;
        for (std::size_t i = 0; i < ro->streams.size(); ++i) {
            auto s = parse_stream(ro->streams[i], i + 1);
            if (!s) {
                std::cerr << "bad --stream '" << ro->streams[i] << "'\n";
                throw CLI::RuntimeError(2);
            }
            auto id = relay.open_stream(*s, clock.monotonic());
            if (!id) {
                std::cerr << "stream " << ro->streams[i] << ": " << id.error().message << "\n";
                throw CLI::RuntimeError(1);
            }
            ids.push_back(*id);
        }
        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        if (!ro->quiet)
            std::printf("relaying %zu streams on %zu sockets\n", ids.size(), relay.open_sockets());
        std::fflush(stdout);
        const base::Nanos end =
            ro->duration > 0 ? clock.monotonic() + base::seconds(ro->duration) : 0;
        std::array<dataplane::MediaEvent, 64> events;
        while (!g_stop && (end == 0 || clock.monotonic() < end)) {
            relay.poll(100, clock);
            const auto n = pipeline.media().drain_events(events);
            for (std::size_t i = 0; !ro->quiet && i < n; ++i)
                std::printf("event %s stream=%llu leg=%c source=%s\n",
                            std::string(name(events[i].kind)).c_str(),
                            static_cast<unsigned long long>(events[i].call_id),
                            events[i].leg ? 'b' : 'a', events[i].source.to_string().c_str());
        }
        print_counters(pipeline);
        if (!ro->quiet)
            for (std::size_t i = 0; i < ids.size(); ++i)
                print_stream(pipeline, ids[i], ro->streams[i]);
        print_bans(pipeline, clock.monotonic());
    });
}

}  // namespace sbc::cli

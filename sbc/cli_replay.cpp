// sbc replay CAPTURE... --policy P.toml [--config sbc.toml] [--json r.json] [--html r.html]
//                       [--pcap-out passed.pcap] [--compare other.toml]
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "policy/policy.hpp"
#include "sbc/cli.hpp"
#include "sbc/replay.hpp"

namespace sbc::cli {

namespace {

struct ReplayCliOptions {
    std::vector<std::string> captures;
    std::vector<std::string> policy, compare;
    std::string config, json, html, pcap_out;
    bool no_progress = false;
};

bool write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) std::cerr << "sbc replay: cannot write " << path << "\n";
    return static_cast<bool>(f);
}

// A progress bar on stderr: packets, rate and time left (by bytes read). Only the display
// reads the wall clock; the replay itself runs on capture time.
class Progress {
  public:
    explicit Progress(std::string label) : label_(std::move(label)) {}
    void operator()(std::uint64_t done, std::uint64_t total, std::uint64_t packets) {
        const double el = std::chrono::duration<double>(clock::now() - start_).count();
        const double frac = total ? std::min(1.0, double(done) / double(total)) : 0;
        const double rate = el > 0 ? double(packets) / el : 0;
        const double left = frac > 0 ? el * (1 - frac) / frac : 0;
        char bar[31];
        const int fill = static_cast<int>(frac * 30);
        for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        std::fprintf(stderr, "\r%s [%s] %3.0f%% %llu pkts %.2f Mpkt/s %.0fs left ", label_.c_str(),
                     bar, frac * 100, (unsigned long long)packets, rate / 1e6, left);
        shown_ = true;
    }
    ~Progress() {
        if (shown_) std::fprintf(stderr, "\r%*s\r", 100, "");
    }

  private:
    using clock = std::chrono::steady_clock;
    std::string label_;
    clock::time_point start_ = clock::now();
    bool shown_ = false;
};

int run_replay_command(const ReplayCliOptions& o) {
    auto loaded = policy::load_policy(o.policy);
    if (!loaded.ok()) {
        for (const auto& e : loaded.errors) std::cerr << e.to_string() << "\n";
        return 1;
    }
    std::unique_ptr<policy::NodeConfig> node;
    if (!o.config.empty()) {
        auto n = policy::load_node_config(o.config);
        if (!n.ok()) {
            for (const auto& e : n.errors) std::cerr << e.to_string() << "\n";
            return 1;
        }
        node = std::make_unique<policy::NodeConfig>(*n.value);
    }
    const bool tty = isatty(STDERR_FILENO) && !o.no_progress;
    auto run = [&](const policy::Policy& p, const std::string& out, const char* label) {
        ReplayOptions ro;
        ro.captures = o.captures;
        ro.pcap_out = out;
        std::shared_ptr<Progress> bar;
        if (tty) {
            bar = std::make_shared<Progress>(label);
            ro.progress = [bar](std::uint64_t d, std::uint64_t t, std::uint64_t n) {
                (*bar)(d, t, n);
            };
        }
        return run_replay(p, node.get(), ro);
    };
    ReplayResult r = run(*loaded.value, o.pcap_out, "replay");
    if (!r.error.empty()) {
        for (const auto& f : r.files)
            if (!f.error.empty()) std::cerr << "sbc replay: " << f.path << ": " << f.error << "\n";
        std::cerr << "sbc replay: " << r.error << "\n";
        return 1;
    }
    std::cout << replay_text(r);
    std::unique_ptr<ReplayResult> other;
    ReplayComparison cmp;
    if (!o.compare.empty()) {
        auto l2 = policy::load_policy(o.compare);
        if (!l2.ok()) {
            for (const auto& e : l2.errors) std::cerr << e.to_string() << "\n";
            return 1;
        }
        other = std::make_unique<ReplayResult>(run(*l2.value, "", "compare"));
        if (!other->error.empty()) {
            std::cerr << "sbc replay: --compare: " << other->error << "\n";
            return 1;
        }
        cmp = compare_replays(r, *other);
        std::cout << "\n--compare:\n" << comparison_text(cmp);
    }
    bool ok = true;
    if (!o.json.empty()) {
        std::string text = replay_json(r);
        if (other) {
            auto j = nlohmann::json::parse(text);
            j["comparison"] = nlohmann::json::parse(comparison_json(cmp));
            text = j.dump(1) + "\n";
        }
        ok = write_file(o.json, text) && ok;
    }
    if (!o.html.empty()) ok = write_file(o.html, replay_html(r, "sbc replay report")) && ok;
    return ok ? 0 : 1;
}

}  // namespace

void register_replay_commands(CLI::App& app) {
    auto opts = std::make_shared<ReplayCliOptions>();
    auto* cmd = app.add_subcommand(
        "replay", "Run captures (pcap/pcapng) offline through the policy and report");
    cmd->add_option("captures", opts->captures, "Capture files (merged by timestamp)")->required();
    cmd->add_option("--policy", opts->policy, "Policy files")->required();
    cmd->add_option("--config", opts->config, "Node configuration (sbc.toml): ports, addresses");
    cmd->add_option("--json", opts->json, "Write the JSON report here");
    cmd->add_option("--html", opts->html, "Write the HTML report here");
    cmd->add_option("--pcap-out", opts->pcap_out, "Write the packets the SBC lets through");
    cmd->add_option("--compare", opts->compare, "Policy files to compare verdicts against");
    cmd->add_flag("--no-progress", opts->no_progress, "No progress bar even on a terminal");
    cmd->callback([opts] {
        const int rc = run_replay_command(*opts);
        if (rc != 0) throw CLI::RuntimeError(rc);
    });
}

}  // namespace sbc::cli

// sbc policy check|show|test, sbc run, sbc ctl.
#include <CLI/CLI.hpp>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "policy/policy.hpp"
#include "sbc/cli.hpp"
#include "sbc/daemon.hpp"
#include "sbc/events.hpp"
#include "sbc/fraud_wiring.hpp"

// The fraud engine implements `sbc policy test` in cli_policy_test.cpp; register it only when
// that file is part of the build.
#if __has_include("sbc/cli_policy_test.cpp")
#define SBC_HAVE_POLICY_TEST 1
#endif

namespace sbc::cli {

namespace {

struct CheckOptions {
    std::vector<std::string> files;
    bool json = false;
    bool separately = false;
};

nlohmann::json diagnostics_json(const std::vector<policy::Diagnostic>& errors) {
    auto arr = nlohmann::json::array();
    for (const auto& e : errors)
        arr.push_back(
            {{"file", e.file}, {"line", e.line}, {"column", e.column}, {"message", e.message}});
    return arr;
}

nlohmann::json summary_json(const policy::Policy& p) {
    std::size_t prefixes = 0;
    for (const auto& l : p.prefix_lists) prefixes += l.prefixes.size();
    return {{"name", p.name},
            {"hash", p.hash},
            {"sources", p.source_files},
            {"prefix_lists", p.prefix_lists.size()},
            {"prefixes", prefixes},
            {"account_groups", p.account_groups.size()},
            {"fraud_rules", p.fraud.rules.size()},
            {"fraud_deny_rules", p.fraud.deny.size()},
            {"scanner_signatures", p.scanners.user_agents.size()}};
}

// A key that is accepted but not enforced yet: a warning, the configuration stays valid.
std::string notice_line(const policy::Diagnostic& n) {
    return n.file + ":" + std::to_string(n.line) + ":" + std::to_string(n.column) +
           ": warning: " + n.message;
}

void print_notices(const std::vector<policy::Diagnostic>& notices, std::FILE* to) {
    for (const auto& n : notices) std::fprintf(to, "%s\n", notice_line(n).c_str());
}

void print_summary(const std::vector<std::string>& files, const policy::Policy& p) {
    std::size_t prefixes = 0;
    for (const auto& l : p.prefix_lists) prefixes += l.prefixes.size();
    std::string names;
    for (const auto& f : files) names += (names.empty() ? "" : " ") + f;
    std::printf(
        "%s: OK (hash %s; %zu files; %zu prefix lists, %zu prefixes; %zu account groups; %zu "
        "fraud rules, %zu deny rules; %zu scanner signatures)\n",
        names.c_str(), p.hash.c_str(), p.source_files.size(), p.prefix_lists.size(), prefixes,
        p.account_groups.size(), p.fraud.rules.size(), p.fraud.deny.size(),
        p.scanners.user_agents.size());
}

int run_check(const CheckOptions& o) {
    std::vector<std::vector<std::string>> sets;
    if (o.separately)
        for (const auto& f : o.files) sets.push_back({f});
    else
        sets.push_back(o.files);
    bool all_ok = true;
    auto results = nlohmann::json::array();
    for (const auto& set : sets) {
        auto loaded = policy::load_policy(set);
        // A valid policy must also fit the fraud engine's limits, checked as the daemon
        // checks them at start-up and reload (its tables are not allocated).
        auto errors = loaded.ok() ? check_fraud_engine(*loaded.value) : std::move(loaded.errors);
        const bool ok = errors.empty();
        all_ok = all_ok && ok;
        if (o.json) {
            nlohmann::json r = {{"files", set},
                                {"ok", ok},
                                {"errors", diagnostics_json(errors)},
                                {"notices", diagnostics_json(loaded.notices)}};
            if (ok) r["summary"] = summary_json(*loaded.value);
            results.push_back(std::move(r));
            continue;
        }
        print_notices(loaded.notices, stdout);
        if (ok) {
            print_summary(set, *loaded.value);
        } else {
            for (const auto& e : errors) std::printf("%s\n", e.to_string().c_str());
            std::printf("%zu error%s\n", errors.size(), errors.size() == 1 ? "" : "s");
        }
    }
    if (o.json) {
        nlohmann::json out = {{"ok", all_ok}, {"results", results}};
        std::printf("%s\n", out.dump(2).c_str());
    }
    return all_ok ? 0 : 1;
}

int run_show(const std::vector<std::string>& files) {
    auto loaded = policy::load_policy(files);
    if (!loaded.ok()) {
        for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
        return 1;
    }
    std::fputs(policy::render_policy(*loaded.value).c_str(), stdout);
    return 0;
}

void print_errors(const std::vector<policy::Diagnostic>& errors) {
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

int run_daemon(const std::string& config, bool check_only) {
    std::vector<policy::Diagnostic> errors;
    auto daemon = Daemon::create(config, errors);
    if (!daemon) {
        print_errors(errors);
        std::fprintf(stderr, "sbc run: %zu error%s, not started\n", errors.size(),
                     errors.size() == 1 ? "" : "s");
        return 1;
    }
    if (check_only) {
        print_notices(daemon->config().notices, stderr);
        if (auto p = daemon->policies().current()) print_notices(p->notices, stderr);
        std::fputs(daemon->status_text().c_str(), stdout);
        return 0;
    }
    // The daemon logs text to stderr and JSON lines to the configured file, never to stdout.
    if (auto r = setup_logging(daemon->config()); !r) {
        std::fprintf(stderr, "sbc run: %s\n", r.error().message.c_str());
        return 1;
    }
    for (const auto& n : daemon->config().notices) spdlog::warn("{}", notice_line(n));
    // Every policy version in force says which of its keys are not enforced yet.
    auto refused = daemon->add_policy_participant(
        {"notices", [](const std::shared_ptr<const policy::Policy>& p) {
             return policy::PolicyChange::ready([p] {
                 if (p)
                     for (const auto& n : p->notices) spdlog::warn("{}", notice_line(n));
             });
         }});
    (void)refused;  // never refuses
    return daemon->run();
}

std::string socket_from_config(const std::string& config) {
    auto cfg = policy::load_node_config(config);
    if (!cfg.ok()) {
        print_errors(cfg.errors);
        return {};
    }
    return cfg.value->control_socket;
}

void finish(int rc) {
    // main() returns 0 after parsing; a failing command reports its exit code this way.
    if (rc != 0) throw CLI::RuntimeError(rc);
}

}  // namespace

void register_policy_commands(CLI::App& app) {
    auto* policy_cmd = app.add_subcommand("policy", "Validate, show and test policy files");
    policy_cmd->require_subcommand(1);

    auto check_opts = std::make_shared<CheckOptions>();
    auto* check = policy_cmd->add_subcommand(
        "check", "Validate policy files (merged as the daemon loads them); exit 0 or 1");
    check->add_option("files", check_opts->files, "Policy files")->required();
    check->add_flag("--json", check_opts->json, "Machine-readable output for CI");
    check->add_flag("--separately", check_opts->separately,
                    "Check each file as a policy of its own");
    check->callback([check_opts] { finish(run_check(*check_opts)); });

    auto show_files = std::make_shared<std::vector<std::string>>();
    auto* show = policy_cmd->add_subcommand(
        "show", "Print the effective policy (defaults filled in, includes resolved)");
    show->add_option("files", *show_files, "Policy files")->required();
    show->callback([show_files] { finish(run_show(*show_files)); });

#ifdef SBC_HAVE_POLICY_TEST
    struct TestOptions {
        std::vector<std::string> files;
        std::string call;
        std::string calls;
        bool json = false;
        bool lenient = false;
    };
    auto test_opts = std::make_shared<TestOptions>();
    auto* test = policy_cmd->add_subcommand(
        "test", "Run call attempts through the compiled policy and explain each verdict");
    test->add_option("files", test_opts->files, "Policy files")->required();
    test->add_option("--call", test_opts->call, "One call attempt as JSON");
    test->add_option("--calls", test_opts->calls, "A JSONL file of call attempts");
    test->add_flag("--json", test_opts->json, "Machine-readable output");
    test->add_flag("--lenient", test_opts->lenient,
                   "Unknown keys in an event are warnings, not errors");
    test->callback([test_opts] {
        finish(run_policy_test(test_opts->files, test_opts->call, test_opts->calls, test_opts->json,
                               test_opts->lenient));
    });
#endif

    auto run_opts = std::make_shared<std::pair<std::string, bool>>();
    auto* run = app.add_subcommand("run", "Run the SBC node until SIGTERM/SIGINT (SIGHUP reloads)");
    run->add_option("--config", run_opts->first, "Node configuration (sbc.toml)")->required();
    run->add_flag("--check", run_opts->second,
                  "Load the configuration and policies, print the status and exit");
    run->callback([run_opts] { finish(run_daemon(run_opts->first, run_opts->second)); });

    struct CtlOptions {
        std::string socket;
        std::string config;
        std::vector<std::string> command;
    };
    auto ctl_opts = std::make_shared<CtlOptions>();
    auto* ctl = app.add_subcommand("ctl", "Send a command to a running node (reload, status, ...)");
    ctl->add_option("--socket", ctl_opts->socket, "Control socket path");
    ctl->add_option("--config", ctl_opts->config, "Read the control socket path from sbc.toml");
    ctl->add_option("command", ctl_opts->command, "Command and arguments")->required();
    ctl->callback([ctl_opts] {
        std::string path = ctl_opts->socket;
        if (path.empty() && !ctl_opts->config.empty()) path = socket_from_config(ctl_opts->config);
        if (path.empty()) path = policy::kDefaultControlSocket;
        std::string line;
        for (const auto& w : ctl_opts->command) line += (line.empty() ? "" : " ") + w;
        auto reply = control_request(path, line);
        if (!reply) {
            std::fprintf(stderr, "sbc ctl: %s\n", reply.error().message.c_str());
            finish(2);
            return;
        }
        std::fputs(reply->c_str(), stdout);
        // A refused command (unknown, failed or refused reload) is a failure for scripts.
        finish(reply->starts_with("error") || reply->starts_with("failed") ||
                       reply->starts_with("refused")
                   ? 1
                   : 0);
    });
}

}  // namespace sbc::cli

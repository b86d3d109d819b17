// fraud_bench: call-attempt evaluations per second through the fraud engine with 100 rules
// and over a million tracked keys. Prints the table memory (fixed at creation) and RSS, and
// ends with the RESULT line of CONVENTIONS.md.
//   fraud_bench [--keys N] [--evals N] [--rules N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fraud/fraud.hpp"

using namespace sbc;
using namespace sbc::fraud;

namespace {

constexpr base::Nanos kSec = base::kNanosPerSecond;

long rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

// 100 rules spread over every feature and key, with several windows: what a large operator
// policy looks like (most rules share state components, as they do in real policies).
EngineConfig config(std::size_t max_keys, int nrules) {
    EngineConfig c;
    c.home_country_code = "33";
    c.country_codes = {{"33", "FR"}, {"32", "BE"},  {"41", "CH"},  {"44", "GB"}, {"49", "DE"},
                       {"1", "US"},  {"882", "XN"}, {"881", "XS"}, {"53", "CU"}, {"252", "SO"}};
    c.prefix_lists = {{"irsf", Category::irsf, {"881", "882", "883", "3712", "53", "252"}},
                      {"premium", Category::premium, {"3389", "3381"}},
                      {"risky", Category::high_risk, {"2392", "2246"}}};
    AccountGroup g;
    g.name = "agents";
    g.account_patterns = {"a*"};
    g.tenant = "acme";
    g.timezone = "Europe/Paris";
    g.business_hours = {{0x1f, 8 * 60, 19 * 60}};
    g.allowed_source_countries = {"FR", "BE"};
    c.account_groups.push_back(g);
    c.scanner_user_agents = {"friendly-scanner", "sipvicious", "sipcli", "sip-scan", "pplsip"};
    c.max_tracked_keys = max_keys;
    c.max_tracked_calls = 1 << 18;
    const Feature feats[] = {Feature::attempts,
                             Feature::international_attempts,
                             Feature::high_risk_attempts,
                             Feature::premium_attempts,
                             Feature::distinct_destinations,
                             Feature::distinct_destination_countries,
                             Feature::sequential_dialing,
                             Feature::concurrent_calls,
                             Feature::short_call_ratio,
                             Feature::failed_call_ratio,
                             Feature::scanner_user_agent,
                             Feature::request_sweep,
                             Feature::off_hours,
                             Feature::source_country_not_allowed,
                             Feature::country_change,
                             Feature::short_rings};
    const KeyKind keys[] = {KeyKind::account, KeyKind::source_ip, KeyKind::source_prefix,
                            KeyKind::tenant, KeyKind::destination_prefix};
    const base::Nanos windows[] = {60 * kSec, 600 * kSec, 3600 * kSec};
    for (int i = 0; i < nrules; ++i) {
        Rule r;
        r.id = "rule-" + std::to_string(i);
        r.feature = feats[i % 16];
        r.key = keys[(i / 16 + i) % 5];
        r.window = windows[(i / 7) % 3];
        r.threshold = 5 + i % 11;
        if (r.feature == Feature::short_call_ratio || r.feature == Feature::failed_call_ratio) {
            r.threshold = 0.9;
            r.min_attempts = 10;
        }
        r.weight = 5;
        if (i % 10 == 3) r.scope.time = TimeScope::off_hours;
        if (i % 10 == 7) r.scope.destinations = "irsf";
        c.rules.push_back(r);
    }
    c.deny.push_back({"deny-kp", "", {"KP"}, {}, false});
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t keys = 2'000'000;  // key budget
    std::size_t evals = 3'000'000;
    int nrules = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--keys")) keys = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--evals")) evals = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--rules")) nrules = std::atoi(argv[i + 1]);
    }
    long rss0 = rss_kib();
    auto created = Engine::create(config(keys, nrules));
    if (!created) {
        std::fprintf(stderr, "fraud_bench: %s\n", created.error().message.c_str());
        return 1;
    }
    auto& e = **created;
    std::printf(
        "engine: %d rules, key budget %zu (source_ip %zu, source_prefix %zu, account %zu, "
        "tenant %zu, destination_prefix %zu), tables %.1f MiB\n",
        nrules, keys, e.key_capacity(KeyKind::source_ip), e.key_capacity(KeyKind::source_prefix),
        e.key_capacity(KeyKind::account), e.key_capacity(KeyKind::tenant),
        e.key_capacity(KeyKind::destination_prefix), e.table_bytes() / 1048576.0);

    // Populations: as many sources and accounts as their tables hold.
    std::mt19937_64 rng(1);
    std::size_t nsrc = e.key_capacity(KeyKind::source_ip);
    std::size_t nacct = e.key_capacity(KeyKind::account);
    std::vector<base::IpAddress> srcs(nsrc);
    for (auto& a : srcs) a = base::IpAddress::v4(static_cast<std::uint32_t>(rng()) | 0x01000000u);
    std::vector<std::string> accounts(nacct);
    for (std::size_t i = 0; i < nacct; ++i) accounts[i] = "a" + std::to_string(i);
    std::vector<std::string> tenants(64);
    for (std::size_t i = 0; i < tenants.size(); ++i) tenants[i] = "t" + std::to_string(i);
    const char* dests[] = {"3361", "3314", "3389", "4420", "4915",
                           "8821", "3712", "3225", "1202", "5371"};
    std::vector<std::string> callees(1 << 16);
    for (auto& s : callees)
        s = std::string(dests[rng() % 10]) + std::to_string(1000000 + rng() % 9000000);
    std::vector<std::string> call_ids(1 << 20);
    for (std::size_t i = 0; i < call_ids.size(); ++i) call_ids[i] = "c" + std::to_string(i) + "@h";

    base::UnixNanos wall = 1'795'737'600LL * kSec + 10 * 3600 * kSec;
    auto make = [&](std::size_t i, base::Nanos now) {
        CallAttempt a;
        a.now = now;
        a.wall = wall + now;
        a.call_id = call_ids[i & (call_ids.size() - 1)];
        a.source.addr = srcs[i % nsrc];
        a.source.port = 5060;
        a.source.country = (i & 15) ? "FR" : "NG";
        a.account = accounts[(i * 7919) % nacct];
        a.tenant = tenants[i & 63];
        a.callee = callees[(i * 31) & (callees.size() - 1)];
        a.user_agent = (i % 97) ? "Yealink SIP-T46S 66.86.0.15" : "friendly-scanner";
        return a;
    };

    // Fill: one attempt per source/account so every key exists before measuring.
    Verdict v;
    std::size_t fill = std::max(nsrc, nacct);
    base::Nanos now = 0;
    for (std::size_t i = 0; i < fill; ++i) {
        now += 1000;  // 1 us apart: all inside every window
        CallAttempt a = make(i, now);
        a.call_id = {};
        e.on_attempt(a, v);
    }
    std::printf("tracked keys after fill: %zu (source_ip %zu, source_prefix %zu, account %zu)\n",
                e.tracked_keys(), e.tracked_keys(KeyKind::source_ip),
                e.tracked_keys(KeyKind::source_prefix), e.tracked_keys(KeyKind::account));

    // Measured: attempts (with Call-IDs, so the call table and concurrency are exercised) and
    // the end of each call 64 attempts later; only attempts are counted as evaluations.
    std::uint64_t non_allow = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < evals; ++i) {
        now += 2000;
        std::size_t k = fill + i;
        CallAttempt a = make(k * 104729, now);
        a.call_id = call_ids[i & (call_ids.size() - 1)];
        e.on_attempt(a, v);
        non_allow += v.action != Action::allow;
        if (i >= 64) e.on_end({now, wall + now, call_ids[(i - 64) & (call_ids.size() - 1)], 200});
    }
    auto t1 = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(t1 - t0).count();
    double rate = evals / secs;
    std::printf(
        "evaluated %zu attempts in %.3f s: %.0f evals/s (%.0f ns each, ends included), "
        "%lu non-allow verdicts\n",
        evals, secs, rate, secs * 1e9 / evals, static_cast<unsigned long>(non_allow));
    std::printf(
        "tracked keys at the end: %zu; table bytes %zu (%.1f MiB, fixed); RSS %.1f MiB "
        "(%.1f MiB before the engine)\n",
        e.tracked_keys(), e.table_bytes(), e.table_bytes() / 1048576.0, rss_kib() / 1024.0,
        rss0 / 1024.0);
    std::printf("RESULT case=fraud metric=evals_per_s ours=%.0f\n", rate);
    return 0;
}

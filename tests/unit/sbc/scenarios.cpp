#include "scenarios.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>
#include "sbc/call_observer.hpp"

namespace sbc::scenarios {

namespace {

constexpr base::Nanos kSec = base::kNanosPerSecond;
// Friday 2026-11-27 00:00:00 UTC (Paris is UTC+1 in November).
constexpr base::UnixNanos kFriday = 1'795'737'600LL * kSec;
constexpr base::UnixNanos kFriday10Paris = kFriday + 9 * 3600 * kSec;
constexpr base::UnixNanos kSaturday3Paris = kFriday + 26 * 3600 * kSec;

base::Nanos secs(double s) {
    return static_cast<base::Nanos>(s * 1e9);
}

Event invite(double t, std::string src, std::string account, std::string callee,
             std::string call_id, bool fraud, std::string country = "FR",
             std::string ua = "Yealink SIP-T46S 66.86.0.15") {
    Event e;
    e.type = Event::Type::attempt;
    e.t = secs(t);
    e.src = std::move(src);
    e.account = std::move(account);
    e.callee = std::move(callee);
    e.call_id = std::move(call_id);
    e.fraud = fraud;
    e.country = std::move(country);
    e.ua = std::move(ua);
    return e;
}

Event answer(double t, const std::string& call_id, bool fraud) {
    Event e;
    e.type = Event::Type::answer;
    e.t = secs(t);
    e.call_id = call_id;
    e.fraud = fraud;
    return e;
}

Event end(double t, const std::string& call_id, int status, bool fraud) {
    Event e;
    e.type = Event::Type::end;
    e.t = secs(t);
    e.call_id = call_id;
    e.status = status;
    e.fraud = fraud;
    return e;
}

Event auth(double t, std::string src, std::string user, bool ok, bool fraud,
           std::string country = "FR") {
    Event e;
    e.type = Event::Type::auth;
    e.t = secs(t);
    e.src = std::move(src);
    e.user = std::move(user);
    e.ok = ok;
    e.fraud = fraud;
    e.country = std::move(country);
    return e;
}

Event reg(double t, std::string src, std::string user, int status, bool fraud, std::string ua,
          std::string country = "FR") {
    Event e;
    e.type = Event::Type::reg;
    e.t = secs(t);
    e.src = std::move(src);
    e.user = std::move(user);
    e.status = status;
    e.fraud = fraud;
    e.ua = std::move(ua);
    e.country = std::move(country);
    return e;
}

Event request(double t, std::string src, std::string method, std::string target, bool fraud,
              std::string ua, std::string country) {
    Event e;
    e.type = Event::Type::attempt;
    e.t = secs(t);
    e.src = std::move(src);
    e.method = std::move(method);
    e.callee = std::move(target);
    e.fraud = fraud;
    e.ua = std::move(ua);
    e.country = std::move(country);
    return e;
}

void sort_by_time(std::vector<Event>& v) {
    std::stable_sort(v.begin(), v.end(), [](const Event& a, const Event& b) { return a.t < b.t; });
}

std::string agent_ip(int agent) {
    return (agent < 50 ? "10.1.0." : "10.2.0.") + std::to_string(10 + agent % 50);
}

// A few ordinary calls of an agent before the attack: the account has a normal history.
void warmup(std::vector<Event>& ev, int agent, double until) {
    std::string acct = std::to_string(1000 + agent);
    for (int i = 0; i * 200.0 < until; ++i) {
        std::string id = "warm-" + acct + "-" + std::to_string(i);
        double t = i * 200.0;
        ev.push_back(
            invite(t, agent_ip(agent), acct, "3314" + std::to_string(5550100 + i), id, false));
        ev.push_back(answer(t + 8, id, false));
        ev.push_back(end(t + 120, id, 200, false));
    }
}

}  // namespace

bool Outcome::met() const {
    switch (target) {
        case Target::none:
            return true;
        case Target::block:
            return first_block > 0 && first_block <= target_events;
        case Target::ban:
            return first_ban > 0 && first_ban <= target_events;
    }
    return false;
}

std::vector<Scenario> attack_scenarios() {
    std::vector<Scenario> out;

    {  // A compromised agent account pours calls into international premium (IRSF) ranges.
        Scenario s{"irsf-burst",
                   "compromised account 1042 dials IRSF ranges (+882, +881, +3712) every 3 s",
                   kFriday10Paris,
                   {},
                   Target::block,
                   5,
                   false};
        warmup(s.events, 42, 600);
        const char* ranges[] = {"8821600", "8818100", "3712700", "8823400"};
        for (int i = 0; i < 30; ++i) {
            std::string id = "irsf-" + std::to_string(i);
            double t = 900 + i * 3.0;
            s.events.push_back(invite(t, agent_ip(42), "1042",
                                      std::string(ranges[i % 4]) + std::to_string(10000 + i * 37),
                                      id, true));
            s.events.push_back(answer(t + 2, id, true));
            s.events.push_back(end(t + 1800, id, 200, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Sequential dialing through a number range.
        Scenario s{"sequential-dialing",
                   "account 1077 walks +44 20 7946 0001, 0002, ... every 5 s",
                   kFriday10Paris,
                   {},
                   Target::block,
                   5,
                   false};
        warmup(s.events, 77, 600);
        for (int i = 0; i < 30; ++i) {
            std::string id = "seq-" + std::to_string(i);
            double t = 700 + i * 5.0;
            char num[32];
            std::snprintf(num, sizeof num, "44207946%04d", i + 1);
            s.events.push_back(invite(t, agent_ip(77), "1077", num, id, true));
            s.events.push_back(end(t + 3, id, 404, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // A scanner that announces itself.
        Scenario s{"scanner-user-agent",
                   "friendly-scanner OPTIONS sweep of extensions 100-299",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 200; ++i)
            s.events.push_back(request(i * 0.02, "203.0.113.50", "OPTIONS", std::to_string(100 + i),
                                       true, "friendly-scanner", "NL"));
        out.push_back(std::move(s));
    }
    {  // The same sweep with a forged softphone User-Agent: behaviour gives it away.
        Scenario s{"options-sweep",
                   "OPTIONS sweep of 200 extensions, forged User-Agent",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 200; ++i)
            s.events.push_back(request(i * 0.02, "203.0.113.51", "OPTIONS", std::to_string(100 + i),
                                       true, "Zoiper rv2.10.8.1", "NL"));
        out.push_back(std::move(s));
    }
    {  // Extension enumeration through REGISTER: unknown users answered 404.
        Scenario s{"extension-enumeration",
                   "REGISTER for users 100-299, answered 404 (svwar style)",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 200; ++i)
            s.events.push_back(reg(i * 0.05, "203.0.113.52", std::to_string(100 + i), 404, true,
                                   "Zoiper rv2.10.8.1", "FR"));
        out.push_back(std::move(s));
    }
    {  // Password brute force from one address.
        Scenario s{"register-brute-force",
                   "one address tries passwords for 1001, 5 per second",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 300; ++i)
            s.events.push_back(auth(i * 0.2, "203.0.113.60", "1001", false, true, "FR"));
        out.push_back(std::move(s));
    }
    {  // Distributed over a /24: each address tries one user once (below per-address limits).
        Scenario s{"distributed-brute-force",
                   "198.51.100.0/24, each address one try of a different user",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 200; ++i)
            s.events.push_back(auth(i * 1.0, "198.51.100." + std::to_string(i % 250 + 1),
                                    std::to_string(1000 + i % 100), false, true, "FR"));
        out.push_back(std::move(s));
    }
    {  // Many calls at once from one account.
        Scenario s{"concurrent-spike",
                   "account 1033 opens 20 long calls within 10 s",
                   kFriday10Paris,
                   {},
                   Target::block,
                   5,
                   false};
        warmup(s.events, 33, 400);
        for (int i = 0; i < 20; ++i) {
            std::string id = "conc-" + std::to_string(i);
            double t = 500 + i * 0.5;
            s.events.push_back(invite(t, agent_ip(33), "1033",
                                      "3361" + std::to_string(2340000 + i * 13), id, true));
            s.events.push_back(answer(t + 4, id, true));
            s.events.push_back(end(t + 3600, id, 200, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Short-call pumping (traffic pumping to ranges sharing revenue per answered call).
        Scenario s{"short-call-pumping",
                   "account 1055: answered 3 s calls every 20 s",
                   kFriday10Paris,
                   {},
                   Target::none,
                   0,
                   false};
        warmup(s.events, 55, 400);
        for (int i = 0; i < 40; ++i) {
            std::string id = "pump-" + std::to_string(i);
            double t = 500 + i * 20.0;
            s.events.push_back(invite(t, agent_ip(55), "1055",
                                      "3325" + std::to_string(1000000 + (i * 7919) % 9000000), id,
                                      true));
            s.events.push_back(answer(t + 2, id, true));
            s.events.push_back(end(t + 5, id, 200, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Saturday 03:00 in Paris: international calls from an agent account.
        Scenario s{"off-hours-international",
                   "Saturday 03:00 Paris, account 1099 calls GB, DE, US, CH, MA",
                   kSaturday3Paris,
                   {},
                   Target::none,
                   0,
                   false};
        const char* nums[] = {"447700900", "4915123456", "12025550", "41791234", "212612345"};
        for (int i = 0; i < 20; ++i) {
            std::string id = "night-" + std::to_string(i);
            double t = i * 10.0;
            s.events.push_back(
                invite(t, agent_ip(99), "1099", nums[i % 5] + std::to_string(100 + i), id, true));
            s.events.push_back(answer(t + 5, id, true));
            s.events.push_back(end(t + 900, id, 200, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Stolen credentials used from abroad.
        Scenario s{"unexpected-country",
                   "account 1011, registered in France, calls from Nigeria",
                   kFriday10Paris,
                   {},
                   Target::none,
                   0,
                   false};
        warmup(s.events, 11, 400);
        for (int i = 0; i < 10; ++i) {
            std::string id = "ng-" + std::to_string(i);
            double t = 500 + i * 15.0;
            s.events.push_back(invite(t, "203.0.113.140", "1011",
                                      "3361" + std::to_string(4440000 + i * 101), id, true, "NG",
                                      "Yealink SIP-T46S 66.86.0.15"));
            s.events.push_back(answer(t + 5, id, true));
            s.events.push_back(end(t + 600, id, 200, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Wangiri: one ring, hang up, hope for a call back to a premium number.
        Scenario s{
            "wangiri",      "trunk 203.0.113.77 rings our users for 2 s and cancels, every 4 s",
            kFriday10Paris, {},
            Target::none,   0,
            false};
        for (int i = 0; i < 40; ++i) {
            std::string id = "wangiri-" + std::to_string(i);
            double t = i * 4.0;
            Event e = invite(t, "203.0.113.77", "", "3314" + std::to_string(5550000 + i), id, true,
                             "SO", "carrier-gw");
            s.events.push_back(e);
            s.events.push_back(end(t + 2, id, 487, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    // Second-round cases: callers, devices, callbacks, prefix bans, NANP, extensions.
    {  // One-ring calls over the carrier trunk from a Jamaican range to the company's DIDs.
        Scenario s{
            "inbound-sweep-trunk",
            "calls from +1 876 555 numbers over the trusted trunk to 40 DIDs, cancelled after 6 s",
            kFriday10Paris,
            {},
            Target::ban,
            10,
            false};
        for (int i = 0; i < 40; ++i) {
            std::string id = "sweep-" + std::to_string(i);
            Event e = invite(300 + i * 2.0, "198.51.100.10", "",
                             "3314000" + std::to_string(1000 + i), id, true, "", "carrier-sbc");
            e.caller = "1876555" + std::to_string(1000 + i * 7);
            e.direction = fraud::Direction::inbound;
            e.trusted = true;
            s.events.push_back(e);
            // Rings once or twice (6 s): past the 5 s short ring, so the rules keyed on the
            // trunk's address (wangiri) stay quiet: a trusted trunk's address carries customers.
            s.events.push_back(end(300 + i * 2.0 + 6, id, 487, true));
        }
        for (int i = 0; i < 3; ++i) {  // a customer calls in over the same trunk meanwhile
            std::string id = "customer-" + std::to_string(i);
            Event e = invite(310 + i * 25.0, "198.51.100.10", "", "33140001000", id, false, "",
                             "carrier-sbc");
            e.caller = "33612345678";
            e.direction = fraud::Direction::inbound;
            e.trusted = true;
            s.events.push_back(e);
            s.events.push_back(answer(312 + i * 25.0, id, false));
            s.events.push_back(end(400 + i * 25.0, id, 200, false));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // Stolen credentials used from a second phone behind the owner's office NAT.
        Scenario s{"compromised-device",
                   "account 1042 from another port and User-Agent behind its NAT dials 30 "
                   "numbers; the owner keeps calling",
                   kFriday10Paris,
                   {},
                   Target::block,
                   10,
                   false};
        warmup(s.events, 42, 600);
        for (int i = 0; i < 30; ++i) {
            std::string id = "dev-" + std::to_string(i);
            Event e = invite(700 + i * 8.0, agent_ip(42), "1042",
                             "336" + std::to_string(20000000 + i * 7919), id, true, "FR",
                             "Zoiper rv2.10");
            e.port = 5082;
            s.events.push_back(e);
            s.events.push_back(end(700 + i * 8.0 + 4, id, 486, true));
        }
        for (int i = 0; i < 3; ++i) {
            std::string id = "own-" + std::to_string(i);
            s.events.push_back(invite(760 + i * 60.0, agent_ip(42), "1042",
                                      "3314555" + std::to_string(2000 + i), id, false));
            s.events.push_back(answer(765 + i * 60.0, id, false));
            s.events.push_back(end(800 + i * 60.0, id, 200, false));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    {  // An agent calls back a number that rang once from a flagged range.
        Scenario s{"callback-one-ring",
                   "+1 876 555 rings the DID once (3 s, cancelled); agent 1042 calls it back",
                   kFriday10Paris,
                   {},
                   Target::block,
                   2,
                   false};
        Event ring = invite(100, "198.51.100.10", "", "33140001042", "lure", true, "", "carrier");
        ring.caller = "18765550199";
        ring.direction = fraud::Direction::inbound;
        ring.trusted = true;
        s.events.push_back(ring);
        s.events.push_back(end(103, "lure", 487, true));
        Event back = invite(400, agent_ip(42), "1042", "18765550199", "callback", true);
        back.direction = fraud::Direction::outbound;
        s.events.push_back(back);
        s.events.push_back(end(430, "callback", 200, true));
        out.push_back(std::move(s));
    }
    {  // A slow guess at one account from every address of a /24, on through the ban.
        Scenario s{"prefix-brute-force",
                   "one failed login for 1001 from each address of 198.18.7.0/24, every 3 s",
                   kFriday10Paris,
                   {},
                   Target::ban,
                   20,
                   false};
        for (int i = 0; i < 200; ++i)
            s.events.push_back(
                auth(i * 3.0, "198.18.7." + std::to_string(1 + i), "1001", false, true, "FR"));
        out.push_back(std::move(s));
    }
    {  // North American numbers by area code: six Caribbean countries, not one "+1".
        Scenario s{"nanp-caribbean",
                   "account 1042 calls +1 876/809/284/268/473/868 (JM DO VG AG GD TT)",
                   kFriday10Paris,
                   {},
                   Target::block,
                   6,
                   false};
        warmup(s.events, 42, 600);
        const char* npa[] = {"1876", "1809", "1284", "1268", "1473", "1868"};
        for (int i = 0; i < 12; ++i) {
            std::string id = "nanp-" + std::to_string(i);
            s.events.push_back(invite(700 + i * 30.0, agent_ip(42), "1042",
                                      std::string(npa[i % 6]) + std::to_string(5550100 + i), id,
                                      true));
            s.events.push_back(end(700 + i * 30.0 + 5, id, 480, true));
        }
        sort_by_time(s.events);
        out.push_back(std::move(s));
    }
    return out;
}

// A night shift calling each other's extensions (legitimate): an extension is of no country,
// so the off-hours international rule never sees these.
Scenario extension_night() {
    Scenario s{"extension-night",
               "10 agents call each other's 4-digit extensions, 22:00-23:00 Paris",
               kFriday + 21 * 3600 * kSec,
               {},
               Target::none,
               0,
               true};
    for (int a = 0; a < 10; ++a)
        for (int i = 0; i < 6; ++i) {
            std::string id = "ext-" + std::to_string(a) + "-" + std::to_string(i);
            double t = a * 30.0 + i * 500.0;
            Event e = invite(t, agent_ip(a), std::to_string(1000 + a),
                             std::to_string(1000 + (a * 13 + i * 37) % 100), id, false);
            e.extension = true;
            e.direction = fraud::Direction::internal;
            s.events.push_back(e);
            s.events.push_back(answer(t + 4, id, false));
            s.events.push_back(end(t + 60, id, 200, false));
        }
    sort_by_time(s.events);
    return s;
}

Scenario callcenter_day() {
    // 100 agents, Friday 08:00-19:00 in Paris. Each agent registers (2 in 100 mistype their
    // password once), keeps an OPTIONS keepalive, and places calls back to back: 65% answered
    // (10% of those under 10 s: voicemail hang-ups), 20% not answered and cancelled after
    // 20-30 s, 10% busy, 5% other failures; 95% French numbers, 5% to BE/CH/GB/DE/LU. Busy
    // hours (10-12, 14-17) shorten the wrap-up time between calls.
    Scenario s{"callcenter-day",
               "100 agents, 08:00-19:00 Paris, realistic mix",
               kFriday + 7 * 3600 * kSec,
               {},
               Target::none,
               0,
               true};
    std::mt19937_64 rng(20261127);
    auto uni = [&](double a, double b) {
        return std::uniform_real_distribution<double>(a, b)(rng);
    };
    // Foreign numbers: Brussels, Geneva, London, Berlin, Luxembourg (none in a risk list).
    const char* intl[] = {"322", "4122", "4420", "4930", "35226"};
    const double day_end = 11 * 3600.0;
    for (int a = 0; a < 100; ++a) {
        std::string acct = std::to_string(1000 + a);
        std::string ip = agent_ip(a);
        double t = uni(0, 900);
        if (a == 17 || a == 63)
            s.events.push_back(auth(t - 5 < 0 ? 0 : t - 5, ip, acct, false, false));
        s.events.push_back(reg(t, ip, acct, 200, false, "Yealink SIP-T46S 66.86.0.15"));
        s.events.push_back(auth(t + 0.1, ip, acct, true, false));
        for (double k = t + 600; k < day_end; k += 600)
            s.events.push_back(
                request(k, ip, "OPTIONS", "sbc", false, "Yealink SIP-T46S 66.86.0.15", "FR"));
        for (double r = t + 3600; r < day_end; r += 3600)
            s.events.push_back(reg(r, ip, acct, 200, false, "Yealink SIP-T46S 66.86.0.15"));
        int n = 0;
        t += uni(30, 300);
        while (t < day_end) {
            double hour_paris = 8 + t / 3600.0;
            if (hour_paris >= 12.5 && hour_paris < 13.5 && uni(0, 1) < 0.8) {  // lunch
                t += uni(600, 1800);
                continue;
            }
            bool busy_hours =
                (hour_paris >= 10 && hour_paris < 12) || (hour_paris >= 14 && hour_paris < 17);
            std::string id = "cc-" + acct + "-" + std::to_string(n++);
            std::string callee;
            if (uni(0, 1) < 0.05) {
                callee = std::string(intl[static_cast<int>(uni(0, 5))]) +
                         std::to_string(static_cast<long>(uni(1000000, 9999999)));
            } else {
                const char* fr[] = {"336", "337", "331", "332", "334", "335"};
                callee = std::string(fr[static_cast<int>(uni(0, 6))]) +
                         std::to_string(static_cast<long>(uni(10000000, 99999999)));
            }
            s.events.push_back(invite(t, ip, acct, callee, id, false));
            double o = uni(0, 1);
            double dur;
            if (o < 0.65) {
                double ring = uni(3, 20);
                double talk = uni(0, 1) < 0.1 ? uni(2, 9) : uni(30, 600);
                s.events.push_back(answer(t + ring, id, false));
                s.events.push_back(end(t + ring + talk, id, 200, false));
                dur = ring + talk;
            } else if (o < 0.85) {
                dur = uni(20, 30);
                s.events.push_back(end(t + dur, id, 487, false));
            } else if (o < 0.95) {
                dur = uni(2, 5);
                s.events.push_back(end(t + dur, id, 486, false));
            } else {
                dur = uni(1, 3);
                const int codes[] = {404, 480, 503};
                s.events.push_back(end(t + dur, id, codes[static_cast<int>(uni(0, 3))], false));
            }
            t += dur + (busy_hours ? uni(15, 90) : uni(30, 240));
        }
    }
    sort_by_time(s.events);
    return s;
}

Outcome run(const Scenario& s, fraud::Engine& engine) {
    Outcome o;
    o.name = s.name;
    o.target = s.target;
    o.target_events = s.target_events;
    base::Nanos first_fraud_t = -1;
    fraud::Verdict v;
    for (const auto& e : s.events) {
        base::UnixNanos wall = s.wall_start + e.t;
        fraud::Source src;
        if (!e.src.empty()) src.addr = *base::IpAddress::parse(e.src);
        src.port = e.port;
        src.transport = "udp";
        src.country = e.country;
        bool verdict = true;
        bool is_call = false;
        switch (e.type) {
            case Event::Type::attempt: {
                fraud::CallAttempt a;
                a.now = e.t;
                a.wall = wall;
                a.call_id = e.call_id;
                a.source = src;
                a.account = e.account;
                a.caller = e.caller.empty() ? std::string_view(e.account) : e.caller;
                a.callee = e.callee;
                a.callee_extension = e.extension;
                a.user_agent = e.ua;
                a.request = request_kind_of(e.method);
                a.direction = e.direction;
                a.trusted = e.trusted;
                engine.on_attempt(a, v);
                is_call = a.request == fraud::RequestKind::call;
                break;
            }
            case Event::Type::answer:
                engine.on_answer({e.t, wall, e.call_id});
                verdict = false;
                break;
            case Event::Type::end:
                engine.on_end({e.t, wall, e.call_id, outcome_of(e.status)});
                verdict = false;
                break;
            case Event::Type::auth: {
                fraud::AuthResult a;
                a.now = e.t;
                a.wall = wall;
                a.source = src;
                a.username = e.user;
                a.success = e.ok;
                engine.on_auth(a, v);
                break;
            }
            case Event::Type::reg: {
                fraud::Registration r;
                r.now = e.t;
                r.wall = wall;
                r.source = src;
                r.user = e.user;
                r.user_agent = e.ua;
                r.outcome = outcome_of(e.status);
                engine.on_register(r, v);
                break;
            }
        }
        if (!verdict) continue;
        auto rules = [&] {
            std::string r;
            for (std::size_t i = 0; i < v.reason_count; ++i)
                r += (r.empty() ? "" : ", ") + std::string(v.reasons[i].rule_id);
            return r;
        };
        if (!e.fraud) {
            if (v.action >= fraud::Action::flag && o.legit_flag_rules.size() < 2000)
                o.legit_flag_rules += "[" + std::to_string(e.t / base::kNanosPerSecond) + "s " +
                                      e.account + e.user + " " + e.callee + ": " + rules() + "] ";
            ++o.legit_events;
            if (v.action >= fraud::Action::flag) ++o.legit_flagged;
            if (v.action >= fraud::Action::block) ++o.legit_blocked;
            o.legit_max_score = std::max(o.legit_max_score, v.score);
            continue;
        }
        ++o.fraud_events;
        if (first_fraud_t < 0) first_fraud_t = e.t;
        double since = static_cast<double>(e.t - first_fraud_t) / 1e9;
        if (is_call) {
            ++o.fraud_calls;
            if (v.action <= fraud::Action::flag) ++o.fraud_calls_through;
        }
        if (v.action >= fraud::Action::block && o.first_block == 0) {
            o.first_block = o.fraud_events;
            o.first_block_s = since;
            o.first_block_rules = v.banned_source ? "source banned" : rules();
        }
        if (v.action == fraud::Action::ban && o.first_ban == 0) {
            o.first_ban = o.fraud_events;
            o.first_ban_s = since;
        }
    }
    return o;
}

std::string table(const std::vector<Outcome>& outcomes) {
    std::ostringstream out;
    char buf[64];
    auto at = [&](int n, double s) -> std::string {
        if (n == 0) return "never";
        std::snprintf(buf, sizeof buf, "#%d (%.1f s)", n, s);
        return buf;
    };
    out << "| scenario | fraudulent events (calls) | first block | first ban | fraudulent calls "
           "through "
           "| legit events flagged/blocked | target | result | rules at first block |\n";
    out << "|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& o : outcomes) {
        std::string target = o.target == Target::none ? "-"
                             : o.target == Target::block
                                 ? "block within " + std::to_string(o.target_events)
                                 : "ban within " + std::to_string(o.target_events);
        if (o.fraud_events == 0 && o.legit_events > 0) target = "no flag, no block";
        bool ok = o.met() && (o.fraud_events > 0 || (o.legit_flagged == 0 && o.legit_blocked == 0));
        out << "| " << o.name << " | " << o.fraud_events << " (" << o.fraud_calls << ") | "
            << at(o.first_block, o.first_block_s) << " | " << at(o.first_ban, o.first_ban_s)
            << " | " << o.fraud_calls_through << " | " << o.legit_flagged << "/" << o.legit_blocked
            << " of " << o.legit_events << " | " << target << " | " << (ok ? "met" : "MISSED")
            << " | " << o.first_block_rules << " |\n";
    }
    return out.str();
}

}  // namespace sbc::scenarios

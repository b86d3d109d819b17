// Arbitrary event sequences (decoded from the input bytes) through a small engine: nothing
// may crash, counters stay bounded, every emitted JSON line is one line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fraud/fraud.hpp"

using namespace sbc;
using namespace sbc::fraud;

namespace {

std::unique_ptr<Engine> make_engine() {
    EngineConfig c;
    c.home_country_code = "33";
    c.country_codes = {{"33", "FR"}, {"882", "XN"}, {"44", "GB"}};
    c.prefix_lists = {{"irsf", Category::irsf, {"882", "3712"}}};
    c.scanner_user_agents = {"scan*er"};
    c.max_tracked_keys = 64;
    c.max_tracked_calls = 64;
    c.ban_capacity = 64;
    AccountGroup g;
    g.name = "g";
    g.account_patterns = {"1*"};
    g.timezone = "UTC";
    g.business_hours = {{0x1f, 480, 1140}};
    g.allowed_source_countries = {"FR"};
    c.account_groups.push_back(g);
    const Feature fs[] = {
        Feature::attempts,           Feature::high_risk_attempts, Feature::distinct_destinations,
        Feature::sequential_dialing, Feature::concurrent_calls,   Feature::short_call_ratio,
        Feature::failed_call_ratio,  Feature::auth_failures,      Feature::distinct_usernames,
        Feature::request_sweep,      Feature::country_change,     Feature::short_rings,
        Feature::off_hours,          Feature::scanner_user_agent};
    int i = 0;
    for (auto f : fs) {
        Rule r;
        r.id = "r" + std::to_string(i);
        r.feature = f;
        r.key = static_cast<KeyKind>(i % kKeyKindCount);
        r.window = (1 + i % 3) * 60 * base::kNanosPerSecond;
        r.threshold = 2 + i % 4;
        r.weight = 25;
        ++i;
        c.rules.push_back(r);
    }
    auto e = Engine::create(c);
    if (!e) std::abort();
    return std::move(*e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto engine = make_engine();
    engine->set_event_sink([](std::string_view line) {
        if (line.find('\n') != std::string_view::npos) std::abort();
    });
    base::Nanos now = 0;
    Verdict v;
    std::size_t i = 0;
    auto next = [&]() -> std::uint8_t { return i < size ? data[i++] : 0; };
    while (i < size) {
        std::uint8_t op = next();
        now += static_cast<base::Nanos>(next()) * base::kNanosPerSecond / 4;
        std::string src = "10.0." + std::to_string(next() & 3) + "." + std::to_string(next());
        std::string acct = "1" + std::to_string(next() & 15);
        std::string call = "c" + std::to_string(next() & 31);
        std::string callee = "88" + std::to_string(next());
        std::string text(reinterpret_cast<const char*>(data + i),
                         std::min<std::size_t>(size - i, next() & 15));
        i += text.size();
        Source s;
        s.addr = *base::IpAddress::parse(src);
        s.country = (op & 8) ? "FR" : "";
        switch (op % 6) {
            case 0:
            case 1: {
                CallAttempt a;
                a.now = now;
                a.wall = now;
                a.call_id = call;
                a.source = s;
                a.account = acct;
                a.callee = (op & 16) ? std::string_view(text) : std::string_view(callee);
                a.user_agent = text;
                a.request = (op & 32) ? RequestKind::probe : RequestKind::call;
                engine->on_attempt(a, v);
                break;
            }
            case 2:
                engine->on_answer({now, now, call});
                break;
            case 3:
                engine->on_end({now, now, call, static_cast<Outcome>((op >> 3) % kOutcomeCount)});
                break;
            case 4: {
                AuthResult a;
                a.now = now;
                a.source = s;
                a.username = text;
                a.success = op & 64;
                engine->on_auth(a, v);
                break;
            }
            case 5: {
                Registration r;
                r.now = now;
                r.source = s;
                r.user = text;
                r.outcome = (op & 64) ? Outcome::not_found : Outcome::answered;
                engine->on_register(r, v);
                break;
            }
        }
        if (engine->tracked_keys() > 64 || engine->tracked_calls() > 64) std::abort();
    }
    return 0;
}

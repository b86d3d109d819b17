// fraud_scenarios [POLICY.toml]: runs every fraud scenario and prints the detection table
// (markdown) that docs/fraud.md shows.
#include <iostream>

#include "policy/policy.hpp"
#include "sbc/fraud_wiring.hpp"
#include "scenarios.hpp"

int main(int argc, char** argv) {
    std::string file = argc > 1 ? argv[1] : SBC_SCENARIO_POLICY;
    auto loaded = sbc::policy::load_policy({file});
    if (!loaded.ok()) {
        for (const auto& e : loaded.errors) std::cerr << e.to_string() << "\n";
        return 1;
    }
    std::vector<sbc::scenarios::Outcome> outcomes;
    auto all = sbc::scenarios::attack_scenarios();
    all.push_back(sbc::scenarios::extension_night());
    all.push_back(sbc::scenarios::callcenter_day());
    bool ok = true;
    for (const auto& s : all) {
        auto engine = sbc::make_fraud_engine(*loaded.value, "");
        if (!engine) {
            std::cerr << engine.error().message << "\n";
            return 1;
        }
        auto o = sbc::scenarios::run(s, **engine);
        ok = ok && o.met() && o.legit_blocked == 0 && (o.fraud_events > 0 || o.legit_flagged == 0);
        outcomes.push_back(o);
    }
    std::cout << "Scenarios against " << file << "\n\n";
    for (const auto& s : all) std::cout << "- " << s.name << ": " << s.description << "\n";
    std::cout << "\n" << sbc::scenarios::table(outcomes);
    for (const auto& o : outcomes)
        if (!o.legit_flag_rules.empty())
            std::cout << "\n"
                      << o.name << ": legitimate events flagged: " << o.legit_flag_rules << "\n";
    return ok ? 0 : 1;
}

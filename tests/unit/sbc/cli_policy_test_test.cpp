// sbc policy test: events in, verdicts with their reasons out (human and JSON).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sbc/cli.hpp"

namespace {

struct Captured {
    int rc = 0;
    std::string out;
};

Captured run(const std::vector<std::string>& files, const std::string& call,
             const std::string& calls, bool json) {
    std::ostringstream buf;
    auto* old = std::cout.rdbuf(buf.rdbuf());
    Captured c;
    c.rc = sbc::cli::run_policy_test(files, call, calls, json);
    std::cout.rdbuf(old);
    c.out = buf.str();
    return c;
}

std::string write_temp(const std::string& text) {
    char path[] = "/tmp/sbc-policy-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    return path;
}

}  // namespace

TEST_CASE("sbc policy test explains a single call", "[fraud][cli]") {
    auto c = run(
        {SBC_SCENARIO_POLICY},
        R"({"src":"203.0.113.9","account":"1001","to":"+882 1234567","ua":"friendly-scanner","country":"FR","wall":"2026-11-27T10:00:00Z"})",
        "", false);
    CHECK(c.rc == 0);
    CHECK(c.out.find("BAN") != std::string::npos);
    CHECK(c.out.find("scanner-ua: scanner_user_agent[source_ip] = 1 == 1 -> +100") !=
          std::string::npos);
    CHECK(c.out.find("irsf-first: high_risk_attempts[account] = 1 >= 1 -> +30") !=
          std::string::npos);
}

TEST_CASE("sbc policy test runs a stream of events on a virtual clock", "[fraud][cli]") {
    std::string events;
    for (int i = 0; i < 4; ++i)
        events +=
            R"({"t":)" + std::to_string(i * 3) +
            R"(,"wall":1795777200,"src":"10.1.0.52:5060","country":"FR","account":"1042","to":"00882160000)" +
            std::to_string(i) + R"(","call_id":"c)" + std::to_string(i) + "\"}\n";
    events += R"({"t":20,"type":"answer","call_id":"c0"})"
              "\n";
    events += R"({"t":30,"type":"end","call_id":"c0","status":200})"
              "\n";
    events +=
        R"({"t":40,"type":"auth","src":"203.0.113.60","user":"1001","ok":false,"country":"FR"})"
        "\n";
    auto file = write_temp(events);
    auto human = run({SBC_SCENARIO_POLICY}, "", file, false);
    CHECK(human.rc == 0);
    CHECK(human.out.find("#3 t=6s INVITE 1042 -> 8821600002") != std::string::npos);
    CHECK(human.out.find("BLOCK score 70") != std::string::npos);
    CHECK(human.out.find("summary: ") != std::string::npos);

    auto js = run({SBC_SCENARIO_POLICY}, "", file, true);
    CHECK(js.rc == 0);
    std::istringstream lines(js.out);
    std::string line;
    std::vector<nlohmann::json> out;
    while (std::getline(lines, line)) out.push_back(nlohmann::json::parse(line));
    REQUIRE(out.size() == 6);  // 4 attempts, 1 auth, the summary
    CHECK(out[0]["action"] == "flag");
    CHECK(out[2]["action"] == "block");
    bool burst = false;
    for (const auto& r : out[2]["reasons"])
        if (r["rule"] == "irsf-burst") {
            burst = true;
            CHECK(r["value"] == 3);
            CHECK(r["threshold"] == 3);
            CHECK(r["weight"] == 40);
            CHECK(r["key"] == "account");
        }
    CHECK(burst);
    CHECK(out[4]["kind"] == "auth");
    CHECK(out[5]["event"] == "summary");
    CHECK(out[3]["action"] == "ban");  // and the numbers are sequential: +70
    CHECK(out[5]["verdicts"]["block"] == 1);
    CHECK(out[5]["verdicts"]["ban"] == 1);
    REQUIRE(out[5]["bans"].size() == 1);
    CHECK(out[5]["bans"][0]["src"] == "10.1.0.52:5060");
    std::remove(file.c_str());
}

TEST_CASE("sbc policy test rejects bad input with its line number", "[fraud][cli]") {
    auto file = write_temp("{\"src\":\"not-an-ip\"}\nnot json\n");
    std::ostringstream err;
    auto* old = std::cerr.rdbuf(err.rdbuf());
    auto c = run({SBC_SCENARIO_POLICY}, "", file, false);
    std::cerr.rdbuf(old);
    CHECK(c.rc == 2);
    CHECK(err.str().find(":1: bad \"src\"") != std::string::npos);
    CHECK(err.str().find(":2: not JSON") != std::string::npos);
    CHECK(run({SBC_SCENARIO_POLICY}, "", "", false).rc == 2);  // neither --call nor --calls
    std::remove(file.c_str());
}

TEST_CASE("sbc policy test takes a direction and a calling number", "[fraud][cli]") {
    const std::string policy = write_temp(R"([[prefix_lists]]
name = "jm-scam"
category = "high_risk"
prefixes = ["1876555"]
[[fraud.rules]]
id = "inbound-caller"
feature = "attempts"
key = "caller_prefix"
threshold = 2
weight = 70
scope.directions = ["inbound"]
)");
    std::string events;
    for (int i = 0; i < 2; ++i)
        events += R"({"t":)" + std::to_string(i) + R"(,"src":"192.0.2.1","from":"+1 876 555 000)" +
                  std::to_string(i) + R"(","to":"33140000000","direction":"outbound"})" + "\n";
    for (int i = 0; i < 2; ++i)
        events += R"({"t":)" + std::to_string(10 + i) +
                  R"(,"src":"192.0.2.1","from":"+1 876 555 000)" + std::to_string(i) +
                  R"(","to":"33140000000","direction":"inbound"})" + "\n";
    const std::string input = write_temp(events);
    auto c = run({policy}, "", input, true);
    std::remove(input.c_str());
    INFO(c.out);
    std::vector<std::string> actions;
    std::istringstream lines(c.out);
    for (std::string line; std::getline(lines, line);) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("action")) actions.push_back(j["action"]);
    }
    CHECK(actions == std::vector<std::string>{"allow", "allow", "allow", "block"});
    const std::string bad = write_temp(R"({"t":0,"to":"1","direction":"sideways"})"
                                       "\n");
    std::ostringstream err;
    auto* old = std::cerr.rdbuf(err.rdbuf());
    auto b = run({policy}, "", bad, true);
    std::cerr.rdbuf(old);
    std::remove(bad.c_str());
    std::remove(policy.c_str());
    CHECK(b.rc == 2);
    CHECK(err.str().find(":1: \"direction\" must be") != std::string::npos);
}

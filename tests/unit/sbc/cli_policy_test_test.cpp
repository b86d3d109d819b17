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
    std::string err;
};

Captured run(const std::vector<std::string>& files, const std::string& call,
             const std::string& calls, bool json, bool lenient = false) {
    std::ostringstream buf, err;
    auto* old = std::cout.rdbuf(buf.rdbuf());
    auto* old_err = std::cerr.rdbuf(err.rdbuf());
    Captured c;
    c.rc = sbc::cli::run_policy_test(files, call, calls, json, lenient);
    std::cout.rdbuf(old);
    std::cerr.rdbuf(old_err);
    c.out = buf.str();
    c.err = err.str();
    return c;
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
    std::istringstream lines(out);
    std::string line;
    std::vector<nlohmann::json> v;
    while (std::getline(lines, line)) v.push_back(nlohmann::json::parse(line));
    return v;
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
    CHECK(human.out.find("line 3 t=6s INVITE 1042 -> 8821600002") != std::string::npos);
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
    auto c = run({SBC_SCENARIO_POLICY}, "", file, false);
    CHECK(c.rc == 2);
    CHECK(c.err.find(":1: bad \"src\"") != std::string::npos);
    CHECK(c.err.find(":2: not JSON") != std::string::npos);
    // ... and in the output stream, where the verdicts are.
    CHECK(c.out.find("line 1: REJECTED: bad \"src\"") != std::string::npos);
    CHECK(c.out.find("line 2: REJECTED: not JSON") != std::string::npos);
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
    auto b = run({policy}, "", bad, true);
    std::remove(bad.c_str());
    std::remove(policy.c_str());
    CHECK(b.rc == 2);
    CHECK(b.err.find(":1: \"direction\" must be") != std::string::npos);
    CHECK(b.out.find("\"event\":\"rejected\"") != std::string::npos);
}

TEST_CASE("RFC 3339 times are read exactly, with any offset and fraction", "[fraud][cli]") {
    using sbc::cli::parse_rfc3339;
    std::int64_t t = 0;
    const std::int64_t base = 1'795'773'600LL * 1'000'000'000LL;  // 2026-11-27T10:00:00Z
    CHECK(parse_rfc3339("2026-11-27T10:00:00Z", t).empty());
    CHECK(t == base);
    CHECK(parse_rfc3339("2026-11-27t10:00:00z", t).empty());
    CHECK(t == base);
    CHECK(parse_rfc3339("2026-11-27T11:30:00+01:30", t).empty());
    CHECK(t == base);
    CHECK(parse_rfc3339("2026-11-27T04:00:00-06:00", t).empty());
    CHECK(t == base);
    CHECK(parse_rfc3339("2026-11-27T10:00:00.123456789Z", t).empty());
    CHECK(t == base + 123'456'789);
    CHECK(parse_rfc3339("2026-11-27T10:00:00.5+00:00", t).empty());
    CHECK(t == base + 500'000'000);
    CHECK(parse_rfc3339("2024-02-29T00:00:00Z", t).empty());  // a leap day
    CHECK(t == 1'709'164'800LL * 1'000'000'000LL);
    CHECK(parse_rfc3339("1969-12-31T23:59:59Z", t).empty());
    CHECK(t == -1'000'000'000LL);
    // Everything else is an error, never a silent UTC or zero.
    for (const char* bad :
         {"2026-11-27T10:00:00", "2026-11-27 10:00:00Z", "2026-11-27T10:00Z",
          "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2026-11-27T24:00:00Z",
          "2026-11-27T10:00:60Z", "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00+0100",
          "2026-11-27T10:00:00+01:00x", "2026-11-27T10:00:00.1234567891Z", "27/11/2026 10:00", "",
          "1795777200"}) {
        INFO(bad);
        t = 42;
        CHECK_FALSE(parse_rfc3339(bad, t).empty());
    }
    CHECK(parse_rfc3339("2026-11-27T10:00:00.1234567890Z", t).empty());  // trailing zero: exact
    CHECK(t == base + 123'456'789);
}

TEST_CASE("sbc policy test: a bad time rejects its line, in the output with the line's id",
          "[fraud][cli]") {
    auto file = write_temp(
        R"({"id":"ok-1","wall":"2026-11-27T10:00:00+01:00","src":"10.1.0.52","account":"1042","to":"0612345678"})"
        "\n"
        R"({"id":"bad-2","wall":"2026-11-27 10:00:01","src":"10.1.0.52","account":"1042","to":"0612345679"})"
        "\n\n"
        R"({"id":7,"wall":"2026-11-27T10:00:02.250+01:00","src":"10.1.0.52","account":"1042","to":"0612345670"})"
        "\n");
    auto c = run({SBC_SCENARIO_POLICY}, "", file, true);
    CHECK(c.rc == 2);
    auto out = json_lines(c.out);
    REQUIRE(out.size() == 4);  // verdict, rejected, verdict, summary
    CHECK(out[0]["line"] == 1);
    CHECK(out[0]["id"] == "ok-1");
    CHECK(out[0]["wall"] == 1795770000);  // 09:00:00Z
    CHECK(out[1]["event"] == "rejected");
    CHECK(out[1]["line"] == 2);
    CHECK(out[1]["id"] == "bad-2");
    CHECK(out[1]["error"].get<std::string>().find("RFC 3339") != std::string::npos);
    CHECK(out[2]["line"] == 4);
    CHECK(out[2]["id"] == "7");
    CHECK(out[2]["wall"] == 1795770002);  // whole seconds in the verdict
    CHECK(out[3]["rejected"] == 1);
    CHECK(out[3]["events"]["attempt"] == 2);
    std::remove(file.c_str());
}

TEST_CASE("sbc policy test: wall-clock times alone drive the engine's clock", "[fraud][cli]") {
    // Ten failed authentications, one a minute: a 5-minute window never holds ten of them if
    // the clock follows the wall times; all ten would fall in one instant if it stood still.
    std::string events;
    for (int i = 0; i < 10; ++i)
        events +=
            R"({"type":"auth","src":"203.0.113.60","account":"1001","ok":false,"wall":"2026-11-27T10:)" +
            std::string(i < 10 ? "0" : "") + std::to_string(i) + R"(:00Z"})" + "\n";
    auto file = write_temp(events);
    auto c = run({SBC_SCENARIO_POLICY}, "", file, true);
    CHECK(c.rc == 0);
    auto out = json_lines(c.out);
    REQUIRE(out.size() == 11);
    for (int i = 0; i < 10; ++i) {
        INFO(i);
        CHECK(out[i]["action"] == "allow");
        CHECK(out[i]["line"] == i + 1);
    }
    // The same ten in one second are a brute force.
    std::string burst;
    for (int i = 0; i < 10; ++i)
        burst +=
            R"({"type":"auth","src":"203.0.113.60","account":"1001","ok":false,"wall":"2026-11-27T10:00:00.)" +
            std::to_string(i) + R"(Z"})" + "\n";
    auto file2 = write_temp(burst);
    auto b = run({SBC_SCENARIO_POLICY}, "", file2, true);
    auto bout = json_lines(b.out);
    REQUIRE(bout.size() == 11);
    CHECK(bout[9]["action"] != "allow");
    // Time going back is an error for that line, not a clock that runs backwards.
    auto file3 = write_temp(
        R"({"type":"auth","src":"203.0.113.60","account":"1001","ok":false,"wall":"2026-11-27T10:05:00Z"})"
        "\n"
        R"({"type":"auth","src":"203.0.113.60","account":"1001","ok":false,"wall":"2026-11-27T10:04:00Z"})"
        "\n");
    auto back = run({SBC_SCENARIO_POLICY}, "", file3, false);
    CHECK(back.rc == 2);
    CHECK(back.out.find("line 2: REJECTED: \"wall\" is 60s before the previous event's") !=
          std::string::npos);
    for (const auto& f : {file, file2, file3}) std::remove(f.c_str());
}

TEST_CASE("sbc policy test: unknown keys are errors, warnings with --lenient", "[fraud][cli]") {
    const std::string line =
        R"({"id":"x1","src":"10.1.0.52","account":"1042","to":"0612345678","acount":"1043"})";
    auto strict = run({SBC_SCENARIO_POLICY}, line, "", false);
    CHECK(strict.rc == 2);
    CHECK(strict.out.find("line 1 id=x1: REJECTED: unknown key \"acount\" in a attempt event") !=
          std::string::npos);
    auto lenient = run({SBC_SCENARIO_POLICY}, line, "", false, true);
    CHECK(lenient.rc == 0);
    CHECK(lenient.out.find("line 1 id=x1: warning: unknown key \"acount\"") != std::string::npos);
    CHECK(lenient.out.find("INVITE 1042 -> 33612345678") != std::string::npos);
    // A key of another event type is unknown here too.
    auto answer = run({SBC_SCENARIO_POLICY},
                      R"({"type":"answer","call_id":"c1","src":"10.1.0.52"})", "", true);
    CHECK(answer.rc == 2);
    CHECK(json_lines(answer.out)[0]["error"].get<std::string>().find("\"src\"") !=
          std::string::npos);
}

TEST_CASE("sbc policy test: the account is \"account\" in every event", "[fraud][cli]") {
    for (std::string type : {"auth", "register"}) {
        INFO(type);
        const std::string extra = type == "auth" ? R"("ok":false)" : R"("status":401)";
        const std::string head = R"({"type":")" + type + R"(","src":"203.0.113.60",)" + extra;
        auto a = run({SBC_SCENARIO_POLICY}, head + R"(,"account":"1001"})", "", true);
        CHECK(a.rc == 0);
        auto out = json_lines(a.out);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["kind"] == type);
        CHECK(out[0]["user"] == "1001");
        // "user" stays as a documented alias; both, differing, is an error.
        auto u = run({SBC_SCENARIO_POLICY}, head + R"(,"user":"1001"})", "", true);
        CHECK(json_lines(u.out)[0]["user"] == "1001");
        CHECK(
            run({SBC_SCENARIO_POLICY}, head + R"(,"user":"1001","account":"1002"})", "", true).rc ==
            2);
        // The attempt's fields are not the register's: "ok" is auth only.
        if (type == "register")
            CHECK(
                run({SBC_SCENARIO_POLICY}, head + R"(,"account":"1001","ok":true})", "", true).rc ==
                2);
    }
}

// Reports of `sbc replay`: terminal summary, JSON, self-contained HTML, policy comparison.
// Everything is built from ordered containers and the capture's own times: same input, same
// bytes.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "sbc/replay.hpp"

namespace sbc {

namespace {

using nlohmann::json;

std::string utc(base::UnixNanos t) {
    if (!t) return "-";
    const std::time_t s = static_cast<std::time_t>(t / base::kNanosPerSecond);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(t % base::kNanosPerSecond / 1000000));
    return buf;
}

double seconds(base::Nanos n) {
    return static_cast<double>(n) / 1e9;
}

// The n largest entries, by count then name.
std::vector<std::pair<std::string, std::uint64_t>> top(
    const std::map<std::string, std::uint64_t>& m, std::size_t n) {
    std::vector<std::pair<std::string, std::uint64_t>> v(m.begin(), m.end());
    std::stable_sort(v.begin(), v.end(), [](auto& x, auto& y) { return x.second > y.second; });
    if (v.size() > n) v.resize(n);
    return v;
}

template <class Enum>
json counters_json(const base::CounterSet<Enum>& c) {
    json j = json::object();
    for (std::size_t i = 0; i < c.kSize; ++i)
        if (c.values[i]) j[std::string(name(static_cast<Enum>(i)))] = c.values[i];
    return j;
}

json call_json(const CallRecord& c) {
    json j = {{"call_id", c.call_id},
              {"account", c.account},
              {"caller", c.caller},
              {"callee", c.callee},
              {"source", c.source},
              {"transport", c.transport},
              {"user_agent", c.user_agent},
              {"start", utc(c.start)},
              {"outcome", c.outcome()},
              {"end", c.end ? json(std::string(name(*c.end))) : json(nullptr)},
              {"verdict", std::string(name(c.action))},
              {"score", c.score},
              {"reasons", c.reason_texts}};
    j["answered"] = c.answered ? json(utc(c.answered)) : json(nullptr);
    j["ended"] = c.ended ? json(utc(c.ended)) : json(nullptr);
    j["duration_s"] = c.answered && c.ended ? json(seconds(c.ended - c.answered)) : json(nullptr);
    return j;
}

std::string html_escape(std::string_view s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '<':
                o += "&lt;";
                break;
            case '>':
                o += "&gt;";
                break;
            case '&':
                o += "&amp;";
                break;
            case '"':
                o += "&quot;";
                break;
            default:
                o += c;
        }
    }
    return o;
}

}  // namespace

static json summary_json(const ReplayResult& r) {
    json s;
    s["packets"] = r.events[ReplayEvent::packets];
    s["first_packet"] = utc(r.first_time);
    s["last_packet"] = utc(r.last_time);
    s["first_detection"] = utc(r.first_detection);
    s["last_detection"] = utc(r.last_detection);
    s["sip_messages"] = r.events[ReplayEvent::sip_messages];
    s["calls"] = r.calls.size();
    s["replay"] = counters_json(r.events);
    s["capture"] = counters_json(r.capture);
    s["malformed"] = counters_json(r.malformed);
    s["dataplane_drops"] = counters_json(r.pipeline.drops);
    s["dataplane_events"] = counters_json(r.pipeline.events);
    s["observer"] = counters_json(r.observer);
    json verdicts = json::object();
    for (std::size_t i = 0; i < fraud::kActionCount; ++i)
        verdicts[std::string(fraud::kActionNames[i])] = r.verdicts[i];
    s["verdicts"] = verdicts;
    s["rules_fired"] = r.rules_fired;
    json src = json::array();
    for (auto& [k, n] : top(r.source_attempts, 20)) src.push_back({{"source", k}, {"requests", n}});
    s["top_sources"] = src;
    s["flagged_accounts"] = r.flagged_accounts;
    s["blocked_sources"] = r.blocked_sources;
    json bans = json::array();
    for (auto& [src_addr, t] : r.bans) bans.push_back({{"source", src_addr}, {"time", utc(t)}});
    s["fraud_bans"] = bans;
    json files = json::array();
    for (const auto& f : r.files)
        files.push_back({{"path", f.path},
                         {"link_type", f.link_type},
                         {"records", f.records},
                         {"error", f.error}});
    s["files"] = files;
    return s;
}

std::string replay_json(const ReplayResult& r) {
    json j;
    j["summary"] = summary_json(r);
    json calls = json::array();
    for (const auto& c : r.calls) calls.push_back(call_json(c));
    j["calls"] = calls;
    json events = json::array();
    for (const auto& e : r.security_events) events.push_back(json::parse(e, nullptr, false));
    j["events"] = events;
    return j.dump(1) + "\n";
}

std::string replay_text(const ReplayResult& r) {
    std::string o;
    char buf[256];
    auto line = [&](const char* fmt, auto... a) {
        std::snprintf(buf, sizeof buf, fmt, a...);
        o += buf;
    };
    for (const auto& f : r.files)
        if (!f.error.empty()) o += "capture " + f.path + ": " + f.error + "\n";
    line("packets      %llu (%s .. %s)\n", (unsigned long long)r.events[ReplayEvent::packets],
         utc(r.first_time).c_str(), utc(r.last_time).c_str());
    line("             passed %llu, dropped %llu, media untracked %llu\n",
         (unsigned long long)r.events[ReplayEvent::passed],
         (unsigned long long)r.events[ReplayEvent::dropped],
         (unsigned long long)r.events[ReplayEvent::media_untracked]);
    line("sip          %llu messages (%llu over TCP, %llu from HEP, %llu malformed)\n",
         (unsigned long long)r.events[ReplayEvent::sip_messages],
         (unsigned long long)r.events[ReplayEvent::sip_over_tcp],
         (unsigned long long)r.events[ReplayEvent::sip_over_hep],
         (unsigned long long)r.events[ReplayEvent::sip_malformed]);
    std::size_t answered = 0;
    for (const auto& c : r.calls) answered += c.answered != 0;
    line("calls        %zu (%zu answered)\n", r.calls.size(), answered);
    o += "verdicts    ";
    for (std::size_t i = 0; i < fraud::kActionCount; ++i)
        line(" %s=%llu", std::string(fraud::kActionNames[i]).c_str(),
             (unsigned long long)r.verdicts[i]);
    o += "\n";
    line("detections   first %s, last %s\n", utc(r.first_detection).c_str(),
         utc(r.last_detection).c_str());
    std::string drops;
    for (std::size_t i = 1; i < r.pipeline.drops.kSize; ++i)
        if (r.pipeline.drops.values[i])
            drops += " " + std::string(dataplane::kDropReasonNames[i]) + "=" +
                     std::to_string(r.pipeline.drops.values[i]);
    if (!drops.empty()) o += "drops       " + drops + "\n";
    std::string bad;
    for (auto e : {dataplane::CaptureEvent::snaplen_cut, dataplane::CaptureEvent::unknown_link_type,
                   dataplane::CaptureEvent::bad_link_header, dataplane::CaptureEvent::malformed,
                   dataplane::CaptureEvent::time_backwards, dataplane::CaptureEvent::tcp_gaps,
                   dataplane::CaptureEvent::tls_segments, dataplane::CaptureEvent::hep_malformed})
        if (r.capture[e]) bad += " " + std::string(name(e)) + "=" + std::to_string(r.capture[e]);
    if (!bad.empty()) o += "capture     " + bad + "\n";
    o += "top sources ";
    for (auto& [k, n] : top(r.source_attempts, 5)) o += " " + k + "(" + std::to_string(n) + ")";
    o += "\nflagged     ";
    for (auto& [k, n] : top(r.flagged_accounts, 8)) o += " " + k + "(" + std::to_string(n) + ")";
    o += "\nblocked src ";
    for (auto& [k, n] : top(r.blocked_sources, 8)) o += " " + k + "(" + std::to_string(n) + ")";
    o += "\nrules fired ";
    for (auto& [k, n] : top(r.rules_fired, 10)) o += " " + k + "(" + std::to_string(n) + ")";
    o += "\n";
    line("bans         %zu fraud, %llu dataplane (rate-limit escalation)\n", r.bans.size(),
         (unsigned long long)r.pipeline.events[dataplane::PipelineEvent::bans_escalated]);
    return o;
}

std::string replay_html(const ReplayResult& r, const std::string& title) {
    std::string o;
    o += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
         html_escape(title) +
         "</title>\n<style>\n"
         "body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
         "padding:2px 6px;font-size:.85em;text-align:left}th{background:#eee}"
         ".allow{color:#176}.flag{color:#a60}.block,.ban{color:#b00;font-weight:bold}"
         "svg text{font-size:10px}\n</style></head><body>\n";
    o += "<h1>" + html_escape(title) + "</h1>\n<p>" +
         std::to_string(r.events[ReplayEvent::packets]) + " packets from " + utc(r.first_time) +
         " to " + utc(r.last_time) + ", " + std::to_string(r.events[ReplayEvent::sip_messages]) +
         " SIP messages, " + std::to_string(r.calls.size()) + " calls. Verdicts:";
    for (std::size_t i = 0; i < fraud::kActionCount; ++i)
        o += " " + std::string(fraud::kActionNames[i]) + " " + std::to_string(r.verdicts[i]);
    o += ".</p>\n";

    // Timeline: one group of four bars per minute (attempts, flags, blocks, bans).
    const std::size_t n = std::max<std::size_t>(r.timeline.size(), 1);
    std::uint64_t peak = 1;
    for (auto& [m, b] : r.timeline) peak = std::max({peak, b.attempts, b.flags, b.blocks, b.bans});
    const int w = static_cast<int>(std::max<std::size_t>(600, n * 24 + 60)), h = 220;
    const double gw = (w - 60.0) / static_cast<double>(n);
    o +=
        "<h2>Timeline (per minute)</h2>\n<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\"" +
        std::to_string(w) + "\" height=\"" + std::to_string(h + 40) + "\">\n";
    o += "<line x1=\"50\" y1=\"" + std::to_string(h) + "\" x2=\"" + std::to_string(w) + "\" y2=\"" +
         std::to_string(h) + "\" stroke=\"#444\"/>\n<text x=\"2\" y=\"12\">" +
         std::to_string(peak) + "</text><text x=\"2\" y=\"" + std::to_string(h) + "\">0</text>\n";
    const char* colors[4] = {"#4a7", "#e90", "#d33", "#700"};
    const char* names[4] = {"attempts", "flags", "blocks", "bans"};
    std::size_t i = 0;
    char buf[256];
    for (auto& [minute, b] : r.timeline) {
        const std::uint64_t v[4] = {b.attempts, b.flags, b.blocks, b.bans};
        for (int k = 0; k < 4; ++k) {
            const double bh = (h - 20.0) * static_cast<double>(v[k]) / static_cast<double>(peak);
            std::snprintf(buf, sizeof buf,
                          "<rect class=\"bar %s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                          "height=\"%.1f\" fill=\"%s\"><title>%s %s: %llu</title></rect>\n",
                          names[k], 50 + gw * static_cast<double>(i) + gw * 0.1 + k * gw * 0.2,
                          h - bh, gw * 0.19, bh, colors[k],
                          utc(minute * base::seconds(60)).substr(11, 5).c_str(), names[k],
                          static_cast<unsigned long long>(v[k]));
            o += buf;
        }
        if (i % std::max<std::size_t>(1, n / 12) == 0) {
            std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%d\">%s</text>\n",
                          50 + gw * static_cast<double>(i), h + 14,
                          utc(minute * base::seconds(60)).substr(11, 5).c_str());
            o += buf;
        }
        ++i;
    }
    for (int k = 0; k < 4; ++k) {
        std::snprintf(buf, sizeof buf,
                      "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                      "<text x=\"%d\" y=\"%d\">%s</text>\n",
                      60 + k * 90, h + 24, colors[k], 74 + k * 90, h + 33, names[k]);
        o += buf;
    }
    o += "</svg>\n";

    o += "<h2>Top sources</h2>\n<table id=\"top-sources\"><tr><th>source</th><th>requests</th>"
         "<th>blocked verdicts</th></tr>\n";
    for (auto& [k, c] : top(r.source_attempts, 20)) {
        auto b = r.blocked_sources.find(k);
        o += "<tr><td>" + html_escape(k) + "</td><td>" + std::to_string(c) + "</td><td>" +
             std::to_string(b == r.blocked_sources.end() ? 0 : b->second) + "</td></tr>\n";
    }
    o += "</table>\n<h2>Flagged accounts</h2>\n<table id=\"flagged-accounts\"><tr><th>account"
         "</th><th>non-allow verdicts</th></tr>\n";
    for (auto& [k, c] : top(r.flagged_accounts, 50))
        o += "<tr><td>" + html_escape(k) + "</td><td>" + std::to_string(c) + "</td></tr>\n";
    o += "</table>\n<h2>Rules fired</h2>\n<table id=\"rules\"><tr><th>rule</th><th>times</th>"
         "</tr>\n";
    for (auto& [k, c] : top(r.rules_fired, 100))
        o += "<tr><td>" + html_escape(k) + "</td><td>" + std::to_string(c) + "</td></tr>\n";
    o += "</table>\n<h2>Calls</h2>\n<table id=\"calls\"><tr><th>start</th><th>call-id</th><th>"
         "account</th><th>callee</th><th>source</th><th>outcome</th><th>duration s</th><th>"
         "verdict</th><th>score</th><th>reasons</th></tr>\n";
    const std::size_t max_rows = 5000;  // the JSON report has every call
    std::size_t rows = 0;
    for (const auto& c : r.calls) {
        if (rows++ == max_rows) break;
        std::string reasons;
        for (const auto& t : c.reason_texts) reasons += html_escape(t) + "<br>";
        std::snprintf(buf, sizeof buf, "%g", c.score);
        std::string dur =
            c.answered && c.ended ? std::to_string((c.ended - c.answered) / 1000000000) : "";
        const std::string verdict(name(c.action));
        o += "<tr><td>" + utc(c.start) + "</td><td>" + html_escape(c.call_id) + "</td><td>" +
             html_escape(c.account) + "</td><td>" + html_escape(c.callee) + "</td><td>" +
             html_escape(c.source) + "</td><td>" + c.outcome() + "</td><td>" + dur +
             "</td><td class=\"" + verdict + "\">" + verdict + "</td><td>" + buf + "</td><td>" +
             reasons + "</td></tr>\n";
    }
    o += "</table>\n";
    if (r.calls.size() > max_rows)
        o += "<p>" + std::to_string(r.calls.size() - max_rows) +
             " more calls in the JSON report.</p>\n";
    o += "</body></html>\n";
    return o;
}

std::string comparison_text(const ReplayComparison& c) {
    std::string o = "verdict changes: " + std::to_string(c.differing.size()) + " calls\n";
    auto side = [](const CallRecord* r) {
        if (!r) return std::string("(not seen)");
        std::string s = std::string(name(r->action));
        char buf[32];
        std::snprintf(buf, sizeof buf, " score %g", r->score);
        s += buf;
        for (const auto& t : r->reasons) s += " " + t;
        return s;
    };
    std::size_t shown = 0;
    for (const auto& d : c.differing) {
        if (shown++ == 50) {
            o += "  ... (all of them in --json)\n";
            break;
        }
        o += "  " + d.call_id + ": " + side(d.a) + "  =>  " + side(d.b) + "\n";
    }
    o += "rule changes (calls where only the first / only the second policy fired it):\n";
    for (const auto& [rule, ch] : c.rule_changes)
        o += "  " + rule + ": -" + std::to_string(ch.first) + " +" + std::to_string(ch.second) +
             "\n";
    return o;
}

std::string comparison_json(const ReplayComparison& c) {
    json j;
    json calls = json::array();
    auto side = [](const CallRecord* r) {
        if (!r) return json(nullptr);
        return json{{"verdict", std::string(name(r->action))},
                    {"score", r->score},
                    {"reasons", r->reason_texts}};
    };
    for (const auto& d : c.differing)
        calls.push_back({{"call_id", d.call_id}, {"policy", side(d.a)}, {"compare", side(d.b)}});
    j["differing_calls"] = calls;
    json rules = json::object();
    for (const auto& [rule, ch] : c.rule_changes)
        rules[rule] = {{"only_policy", ch.first}, {"only_compare", ch.second}};
    j["rule_changes"] = rules;
    return j.dump(1);
}

}  // namespace sbc

// What each part of `sbc run` exports, written on the signaling thread into the page the
// metrics server publishes (sbc/metrics.hpp).
#include <algorithm>
#include <cstdio>

#include "sbc/call_core.hpp"
#include "sbc/daemon.hpp"
#include "sbc/dataplane_wiring.hpp"
#include "sbc/front_door.hpp"
#include "sbc/metrics.hpp"
#include "sbc/stream_transport.hpp"

namespace sbc {

namespace {
constexpr std::string_view kRealmNames[] = {"external", "internal"};
constexpr std::string_view kDirectionNames[] = {"received", "sent"};
constexpr std::string_view kClassNames[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"};
// sip::Method order (signaling::kMethodNames), "other" for unknown.
constexpr std::string_view kMethodLabels[] = {
    "other",     "INVITE", "ACK",     "BYE",  "CANCEL", "OPTIONS", "REGISTER", "PRACK",
    "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER",  "MESSAGE", "UPDATE",   "other"};
constexpr std::string_view kBanOrigins[] = {"rate_limit", "signaling", "fraud", "control"};
}  // namespace

void RelayQuality::observe(const dataplane::StreamStats& s) {
    for (const auto* leg : {&s.a, &s.b}) {
        if (leg->packets == 0 || leg->expected == 0) continue;  // no RTP on this leg
        ++legs;
        const double lost = leg->lost > 0 ? static_cast<double>(leg->lost) : 0.0;
        loss_ratio.observe(std::min(1.0, lost / static_cast<double>(leg->expected)));
        jitter_seconds.observe(leg->jitter_ms() / 1000.0);
    }
}

void write_dataplane_metrics(MetricsWriter& w, std::string_view backend,
                             const dataplane::Counters& c,
                             const std::vector<dataplane::BanInfo>& active_bans,
                             std::size_t streams_active) {
    const MetricLabels b{{"backend", std::string(backend)}};
    for (std::size_t i = 0; i < dataplane::kPipelineEventCount; ++i) {
        const std::string n =
            "sbc_dataplane_" + std::string(dataplane::kPipelineEventNames[i]) + "_total";
        w.family(n, "counter", dataplane::kPipelineEventDescriptions[i]);
        w.sample(n, b, static_cast<double>(c.events.values[i]));
    }
    w.by_label("sbc_dataplane_drops_total", "packets dropped by the pipeline, by reason", "reason",
               c.drops, dataplane::kDropReasonNames, b);
    w.by_label("sbc_dataplane_rate_limited_total",
               "packets over their token bucket, by traffic class (media_unallocated ones are "
               "dropped as no_session and count towards a ban)",
               "class", c.rate_limited, dataplane::kTrafficClassNames, b);
    w.family("sbc_dataplane_bans_issued_total", "counter",
             "bans added to the ban table, by origin");
    for (std::size_t i = 0; i < c.bans_by_origin.size(); ++i)
        w.sample("sbc_dataplane_bans_issued_total", {{"origin", std::string(kBanOrigins[i])}},
                 static_cast<double>(c.bans_by_origin[i]));
    std::array<std::size_t, 4> active{};
    for (const auto& ban : active_bans) ++active[static_cast<std::size_t>(ban.origin) & 3];
    w.family("sbc_dataplane_bans_active", "gauge", "bans in force, by origin");
    for (std::size_t i = 0; i < active.size(); ++i)
        w.sample("sbc_dataplane_bans_active", {{"origin", std::string(kBanOrigins[i])}},
                 static_cast<double>(active[i]));
    w.family("sbc_relay_streams_active", "gauge", "media streams on the relay");
    w.sample("sbc_relay_streams_active", b, static_cast<double>(streams_active));
}

void CallCore::write_metrics(MetricsWriter& w) const {
    w.each("b2bua", b2bua_->counters(), signaling::kB2buaCounterNames,
           signaling::kB2buaCounterDescriptions);
    w.each("transactions", b2bua_->transactions().counters(), signaling::kTxCounterNames,
           signaling::kTxCounterDescriptions);
    w.gauge("sbc_calls_active", "calls through the B2BUA",
            static_cast<double>(b2bua_->calls().size()));
    w.gauge("sbc_transactions_active", "SIP transactions (RFC 3261 §17) in progress",
            static_cast<double>(b2bua_->transactions().size()));
    w.gauge("sbc_media_calls_anchored", "calls with media anchored on the relay",
            static_cast<double>(streams_by_call_.size()));
    w.gauge("sbc_media_free_port_pairs", "relay port pairs free for new streams",
            static_cast<double>(free_ports_.size() / 2));
    w.counter("sbc_media_anchor_failures_total", "SDP media that could not be anchored",
              media_failures_);
    w.counter("sbc_relay_legs_measured_total", "stream legs with RTP measured when they closed",
              quality_.legs);
    w.family("sbc_relay_loss_ratio", "histogram",
             "RTP loss of each stream leg when its stream closed (RFC 3550 A.3 lost / expected)");
    w.histogram("sbc_relay_loss_ratio", {}, quality_.loss_ratio);
    w.family("sbc_relay_jitter_seconds", "histogram",
             "RTP interarrival jitter of each stream leg when its stream closed (RFC 3550 §6.4.1)");
    w.histogram("sbc_relay_jitter_seconds", {}, quality_.jitter_seconds);
    if (const auto* regs = b2bua_->registrations()) {
        w.each("registrations", regs->counters(), signaling::kRegistrationCounterNames,
               signaling::kRegistrationCounterDescriptions);
        w.gauge("sbc_registrations_active", "registered contacts (bindings) held by the SBC",
                static_cast<double>(regs->bindings()));
        w.gauge("sbc_registration_flows_active", "flows (NAT bindings) registered contacts use",
                static_cast<double>(regs->flows()));
    }
}

void StreamTransport::write_metrics(MetricsWriter& w) const {
    base::CounterSet<signaling::StreamEvent> c;
    std::size_t open = 0;
    {
        std::lock_guard lock(stats_mu_);
        c = published_;
        open = published_open_;
    }
    c.add(signaling::StreamEvent::outbox_full, outbox_full_.load(std::memory_order_relaxed));
    // TLS handshakes, their failures by reason and every connection refusal are stream events.
    w.each("streams", c, signaling::kStreamEventNames, signaling::kStreamEventDescriptions);
    w.gauge("sbc_streams_open", "TCP and TLS connections open", static_cast<double>(open));
    w.counter("sbc_tls_reloads_total", "TLS certificate and key reloads",
              tls_reloads_.load(std::memory_order_relaxed));
}

void FrontDoor::write_metrics(MetricsWriter& w) const {
    rt_.write_metrics(w);
    w.each("frontdoor", dispatcher_.events(), signaling::kDispatchEventNames,
           signaling::kDispatchEventDescriptions);
    w.each("frontdoor", events_, kFrontDoorEventNames, kFrontDoorEventDescriptions);
    w.by_label("sbc_sip_malformed_total", "SIP messages dropped as malformed, by reason", "reason",
               dispatcher_.malformed(), sip::kRejectNames);
    const auto& m = metrics_;
    w.family("sbc_sip_requests_total", "counter",
             "well-formed SIP requests received, by realm and method");
    for (std::size_t r = 0; r < m.kRealms; ++r)
        for (std::size_t i = 0; i + 1 < m.kMethods; ++i)
            if (m.requests[r][i] || i == 1)  // INVITE always: queries need the series
                w.sample("sbc_sip_requests_total",
                         {{"realm", std::string(kRealmNames[r])},
                          {"method", std::string(kMethodLabels[i])}},
                         static_cast<double>(m.requests[r][i]));
    w.family("sbc_sip_responses_total", "counter",
             "SIP responses by realm, direction (received, sent) and class");
    for (std::size_t r = 0; r < m.kRealms; ++r)
        for (std::size_t d = 0; d < 2; ++d)
            for (std::size_t c = 0; c < m.kClasses; ++c)
                w.sample("sbc_sip_responses_total",
                         {{"realm", std::string(kRealmNames[r])},
                          {"direction", std::string(kDirectionNames[d])},
                          {"class", std::string(kClassNames[c])}},
                         static_cast<double>(m.responses[r][d][c]));
    w.family("sbc_call_setup_seconds", "histogram",
             "call setup latency: INVITE received to 200 OK relayed, answered calls");
    w.histogram("sbc_call_setup_seconds", {}, m.setup_latency);
    w.by_label("sbc_fraud_verdicts_total", "fraud verdicts by action", "action", verdicts_,
               fraud::kActionNames);
    w.family("sbc_fraud_rule_hits_total", "counter",
             "fraud rules that fired in a verdict, by rule id (the policy's)");
    for (const auto& [rule, n] : m.verdict_rules)
        w.sample("sbc_fraud_rule_hits_total", {{"rule", rule}}, static_cast<double>(n));
    if (core_) core_->write_metrics(w);
    if (streams_) streams_->write_metrics(w);
}

void FrontDoor::security_event(SecurityEventKind kind,
                               std::vector<std::pair<std::string_view, std::string>> fields) {
    if (auto* ev = daemon_.security_events()) ev->emit(kind, rt_.wall(), fields);
}

void FrontDoor::verdict_event(const fraud::Verdict& v, const base::IpAddress& source) {
    std::string rules;
    bool auth = false;
    for (std::size_t i = 0; i < v.reason_count; ++i) {
        const auto& r = v.reasons[i];
        rules += (i ? "," : "") + std::string(r.rule_id);
        auth = auth || r.feature == fraud::Feature::auth_failures ||
               r.feature == fraud::Feature::distinct_usernames;
    }
    SecurityEvents::Fields f{{"source", source.to_string()},
                             {"action", std::string(name(v.action))},
                             {"score", SecurityEvents::number(v.score)},
                             {"rules", rules}};
    security_event(
        v.action == fraud::Action::flag ? SecurityEventKind::flag : SecurityEventKind::block, f);
    if (auth) security_event(SecurityEventKind::auth_failure_burst, std::move(f));
}

void FrontDoor::watch_bans() {
    if (!daemon_.security_events()) return;
    const auto now = rt_.monotonic();
    std::map<std::string, dataplane::BanInfo> current;
    for (auto& b : rt_.active_bans()) current.emplace(b.prefix.to_string(), b);
    for (const auto& [prefix, b] : current) {
        const auto it = bans_seen_.find(prefix);
        // New, or banned again (a later offense) after an unseen unban.
        if (it == bans_seen_.end() || b.offenses > it->second.offenses)
            security_event(
                SecurityEventKind::ban,
                {{"prefix", prefix},
                 {"origin", std::string(dataplane::name(b.origin))},
                 {"offenses", SecurityEvents::number(b.offenses)},
                 {"seconds", SecurityEvents::number(
                                 static_cast<double>((b.expires - now) / 1'000'000) / 1000.0)}});
    }
    for (const auto& [prefix, b] : bans_seen_)
        if (!current.count(prefix))
            security_event(SecurityEventKind::unban,
                           {{"prefix", prefix},
                            {"origin", std::string(dataplane::name(b.origin))},
                            {"hits", SecurityEvents::number(static_cast<double>(b.hits))}});
    bans_seen_ = std::move(current);
}

}  // namespace sbc

// `sbc replay`: the capture loop (a list of named stages per record) and the fraud sink that
// records calls, verdicts and bans on the capture's own time.
#include "sbc/replay.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <unordered_map>

#include "sbc/dataplane_wiring.hpp"
#include "sbc/fraud_wiring.hpp"

namespace sbc {

std::string CallRecord::outcome() const {
    if (action == fraud::Action::block || action == fraud::Action::ban) return "blocked";
    if (answered) return ended ? "completed" : "answered";
    if (!end) return "unanswered";
    switch (*end) {
        case fraud::Outcome::cancelled:
            return "cancelled";
        case fraud::Outcome::auth_challenge:
            return "challenged";
        case fraud::Outcome::timeout:
            return "timeout";
        default:
            return "failed";
    }
}

namespace {

constexpr base::Nanos kMinute = base::seconds(60);

std::string reason_text(const fraud::Reason& r) {
    std::string s(r.rule_id);
    char buf[160];
    if (r.hard) {
        s += r.ban ? ": deny rule -> ban" : ": deny rule -> block";
    } else {
        std::snprintf(buf, sizeof buf, ": %s[%s] = %g %s %g -> +%g",
                      std::string(name(r.feature)).c_str(), std::string(name(r.key)).c_str(),
                      r.value, std::string(description(r.op)).c_str(), r.threshold, r.weight);
        s += buf;
    }
    if (r.observe) s += " (observe)";
    return s;
}

// Captures taken on a loopback interface (the SBC's own calls on lo) carry loopback sources;
// they are replayed when the destination is loopback too. UDP checksums are not verified: a
// capture taken on the sending host holds them before the NIC (or, on lo, nobody) fills them in
// (checksum offload), as packet analysers assume by default.
dataplane::ParseOptions capture_parse_options() {
    dataplane::ParseOptions o;
    o.loopback_within_host = true;
    o.verify_udp_checksum = false;
    return o;
}

class Replayer final : public FraudEventSink {
  public:
    Replayer(const policy::Policy& p, const dataplane::PipelineConfig& config,
             fraud::Engine& engine, ReplayResult& out)
        : decoder_({}, capture_parse_options()),
          pipeline_(config),
          engine_(engine),
          observer_(*this, &p.numbering),
          out_(out) {
        engine_.set_event_sink(
            [this](std::string_view line) { out_.security_events.emplace_back(line); });
        for (auto port : pipeline_.config().sip_udp_ports) sip_udp_[port] = true;
        for (auto port : pipeline_.config().sip_tcp_ports) sip_tcp_[port] = true;
    }

    // -- FraudEventSink ------------------------------------------------------------------
    void attempt(const fraud::CallAttempt& a) override {
        fraud::Verdict v;
        engine_.on_attempt(a, v);
        ++out_.source_attempts[a.source.addr.to_string()];
        const bool invite = a.request == fraud::RequestKind::call;
        if (invite && !v.duplicate) ++bucket(a.wall).attempts;
        judge(v, a.source.addr, a.account, a.wall, a.now);
        if (!invite) return;
        auto [it, fresh] = call_index_.try_emplace(std::string(a.call_id), out_.calls.size());
        if (fresh) {
            CallRecord c;
            c.call_id = a.call_id;
            c.account = a.account;
            c.caller = a.caller;
            c.callee = a.callee;
            c.source = base::Endpoint{a.source.addr, a.source.port}.to_string();
            c.transport = a.source.transport;
            c.user_agent = a.user_agent;
            c.start = a.wall;
            out_.calls.push_back(std::move(c));
        }
        CallRecord& c = out_.calls[it->second];
        // The strongest verdict the call received (a retried INVITE is scored again).
        if (fresh || v.action > c.action || (v.action == c.action && v.score > c.score)) {
            if (!v.duplicate || fresh) {
                c.action = v.action;
                c.score = v.score;
                c.reasons.clear();
                c.reason_texts.clear();
                for (std::size_t i = 0; i < v.reason_count; ++i) {
                    c.reasons.emplace_back(v.reasons[i].rule_id);
                    c.reason_texts.push_back(reason_text(v.reasons[i]));
                }
            }
        }
    }
    void answered(const fraud::CallAnswered& a) override {
        engine_.on_answer(a);
        if (auto* c = call(a.call_id); c && !c->answered) c->answered = a.wall;
    }
    void ended(const fraud::CallEnded& e) override {
        engine_.on_end(e);
        if (auto* c = call(e.call_id)) {
            c->ended = e.wall;
            c->end = e.outcome;
        }
    }
    void auth(const fraud::AuthResult& a) override {
        fraud::Verdict v;
        engine_.on_auth(a, v);
        judge(v, a.source.addr, a.username, a.wall, a.now);
    }
    void registration(const fraud::Registration& r) override {
        fraud::Verdict v;
        engine_.on_register(r, v);
        ++out_.source_attempts[r.source.addr.to_string()];
        judge(v, r.source.addr, r.user, r.wall, r.now);
    }

    // -- the capture loop ------------------------------------------------------------------
    void run(const ReplayOptions& opt) {
        dataplane::CaptureReader reader;
        if (!reader.open(opt.captures)) {
            out_.files = reader.status();
            out_.error = "no capture could be opened";
            return;
        }
        dataplane::CaptureWriter writer;
        bool writer_open = false;
        dataplane::CaptureRecord rec;
        base::Nanos last = 0;
        base::Nanos next_expiry = 0;
        std::vector<dataplane::StreamChunk> chunks;
        while (reader.next(rec)) {
            out_.events.add(ReplayEvent::packets);
            // Virtual time: the capture's; never backwards (late records take the latest).
            if (rec.time < last) {
                decoder_.counters().add(dataplane::CaptureEvent::time_backwards);
                rec.time = last;
            }
            last = rec.time;
            if (!out_.first_time) out_.first_time = rec.time;
            out_.last_time = rec.time;
            if (rec.time >= next_expiry) {
                expire(rec.time);
                next_expiry = rec.time + base::seconds(1);
            }
            if (opt.progress && (out_.events[ReplayEvent::packets] & 0xffff) == 0)
                opt.progress(reader.bytes_read(), reader.total_bytes(),
                             out_.events[ReplayEvent::packets]);

            const bool pass = process(rec, chunks);
            if (pass) {
                out_.events.add(ReplayEvent::passed);
                if (!opt.pcap_out.empty()) {
                    if (!writer_open) {
                        auto ok = writer.open(opt.pcap_out, rec.link_type);
                        if (!ok) {
                            out_.error = ok.error().message;
                            return;
                        }
                        writer_open = true;
                    }
                    writer.write(rec);
                }
            }
        }
        observer_.finish(last, last);
        engine_.expire(last, 1u << 20);
        out_.files = reader.status();
        out_.capture = decoder_.counters();
        out_.malformed = decoder_.malformed();
        out_.pipeline = pipeline_.counters();
        out_.observer = observer_.counters();
        if (writer_open) writer.close();
        if (!opt.pcap_out.empty() && !writer_open) {
            // An empty but valid output: nothing passed (or the capture was empty).
            if (writer.open(opt.pcap_out, out_.files.empty() ? 1 : out_.files[0].link_type))
                writer.close();
        }
    }

  private:
    // One record through the stages; true when the SBC would have let it through.
    bool process(const dataplane::CaptureRecord& rec, std::vector<dataplane::StreamChunk>& chunks) {
        const base::Nanos now = rec.time;
        auto p = decoder_.decode(rec);  // 1. link, IP, UDP/TCP
        if (!p.ok) {
            out_.events.add(ReplayEvent::dropped);
            return false;
        }
        dataplane::PacketMeta& m = p.meta;
        if (m.l4_proto == 17 && !(m.flags & dataplane::kFlagLaterFragment) &&
            decoder_.is_hep(m)) {  // 2. HEP: the SIP inside, with its own addresses
            dataplane::HepMessage h;
            if (!decoder_.unwrap_hep(m, now, h)) return false;
            out_.events.add(ReplayEvent::sip_over_hep);
            const base::Nanos t = std::max(now, h.time);
            sip_message(h.meta, h.meta.payload, h.meta.payload_len, h.tcp, false, t);
            return true;
        }
        const bool inbound = toward_sbc(m);
        out_.events.add(inbound ? ReplayEvent::inbound : ReplayEvent::outbound);
        if (inbound) {
            // 3. the live pipeline: bans, rate limits, classification.
            if (p.decision.action == dataplane::Action::undecided)
                pipeline_.decide({&m, 1}, {&p.decision, 1}, now);
            const auto& d = p.decision;
            if (d.action == dataplane::Action::drop) {
                if (d.reason == dataplane::DropReason::no_session ||
                    d.reason == dataplane::DropReason::peer_unknown) {
                    // Media to a port replay does not track (no SDP-driven streams yet).
                    out_.events.add(ReplayEvent::media_untracked);
                    return true;
                }
                out_.events.add(ReplayEvent::dropped);
                return false;
            }
        }
        if (m.flags & dataplane::kFlagFragment) {  // 4. fragments into datagrams
            auto dg = decoder_.reassemble(p, rec);
            if (dg.ok && dg.meta.l4_proto == 17 && is_sip_port(dg.meta, false))
                return sip_message(dg.meta, dg.meta.payload, dg.meta.payload_len, false, false,
                                   now);
            return true;
        }
        if (m.l4_proto == 6) {  // 5. TCP streams, SIP framed
            chunks.clear();
            decoder_.tcp_segment(p, chunks);
            for (const auto& c : chunks) stream_chunk(c, now);
            for (auto id : decoder_.take_closed_flows()) framers_.erase(id);
            return true;
        }
        if (m.l4_proto == 17 && m.payload && is_sip_port(m, false))  // 6. UDP SIP
            return sip_message(m, m.payload, m.payload_len, false, false, now);
        return true;
    }

    bool toward_sbc(const dataplane::PacketMeta& m) const {
        const auto& locals = pipeline_.config().local_addresses;
        if (!locals.empty()) return std::find(locals.begin(), locals.end(), m.dst) != locals.end();
        if (m.flags & dataplane::kFlagLaterFragment) return true;  // no ports: the first decides
        if (m.l4_proto == 17 || m.l4_proto == 6) {
            if ((m.l4_proto == 6 ? sip_tcp_ : sip_udp_)[m.dst_port]) return true;
            const auto& c = pipeline_.config();
            return m.dst_port >= c.media_port_min && m.dst_port <= c.media_port_max;
        }
        return true;
    }
    bool is_sip_port(const dataplane::PacketMeta& m, bool tcp) const {
        const auto& ports = tcp ? sip_tcp_ : sip_udp_;
        return ports[m.dst_port] || ports[m.src_port];
    }

    void stream_chunk(const dataplane::StreamChunk& c, base::Nanos now) {
        if (c.tls) return;  // counted by the decoder; never guessed at
        auto it = framers_.find(c.flow);
        if (it == framers_.end() || c.gap_before) {
            if (it != framers_.end()) out_.events.add(ReplayEvent::tcp_resync);
            it = framers_.insert_or_assign(c.flow, sip::StreamFramer{}).first;
        }
        sip::StreamFramer& f = it->second;
        if (f.failed()) return;
        f.feed(c.bytes);
        for (int guard = 0; guard < 10000; ++guard) {
            auto fr = f.next();
            if (fr.kind == sip::StreamFramer::Kind::need_more) break;
            if (fr.kind == sip::StreamFramer::Kind::error) {
                out_.events.add(ReplayEvent::tcp_framing_errors);
                break;
            }
            if (fr.kind != sip::StreamFramer::Kind::message) continue;
            out_.events.add(ReplayEvent::sip_over_tcp);
            sip_message(c.meta, reinterpret_cast<const std::uint8_t*>(fr.bytes.data()),
                        fr.bytes.size(), true, false, now);
        }
    }

    // A SIP message: parsed, observed (fraud events), and refused when the verdict says so.
    bool sip_message(const dataplane::PacketMeta& m, const std::uint8_t* data, std::size_t len,
                     bool tcp, bool tls, base::Nanos now) {
        sip::Message msg;
        if (!data || !msg.parse({reinterpret_cast<const char*>(data), len})) {
            out_.events.add(ReplayEvent::sip_malformed);
            return true;  // the live front door answers 400 or drops; the packet arrived
        }
        out_.events.add(ReplayEvent::sip_messages);
        ObservedMessage at;
        at.source = {m.src, m.src_port};
        at.destination = {m.dst, m.dst_port};
        at.tcp = tcp;
        at.tls = tls;
        at.now = now;
        at.wall = now;
        refused_ = false;
        observer_.observe(msg, at);
        if (refused_ && msg.is_request()) {
            out_.events.add(ReplayEvent::blocked_requests);
            return false;
        }
        return true;
    }

    void judge(const fraud::Verdict& v, const base::IpAddress& src, std::string_view subject,
               base::UnixNanos wall, base::Nanos now) {
        if (v.banned_source) {
            refused_ = true;
            return;
        }
        if (v.duplicate) {
            if (v.action == fraud::Action::block || v.action == fraud::Action::ban) refused_ = true;
            return;
        }
        ++out_.verdicts[static_cast<std::size_t>(v.action)];
        for (std::size_t i = 0; i < v.reason_count; ++i)
            ++out_.rules_fired[std::string(v.reasons[i].rule_id)];
        if (v.action == fraud::Action::allow) return;
        if (!out_.first_detection) out_.first_detection = wall;
        out_.last_detection = wall;
        if (!subject.empty()) ++out_.flagged_accounts[std::string(subject)];
        auto& b = bucket(wall);
        if (v.action == fraud::Action::flag) {
            ++b.flags;
            return;
        }
        refused_ = true;
        ++out_.blocked_sources[src.to_string()];
        if (v.action == fraud::Action::block) {
            ++b.blocks;
            return;
        }
        ++b.bans;
        // As the live front door does: the fraud ban goes into the dataplane's ban table.
        const base::Nanos duration =
            v.ban_until > now ? v.ban_until - now : engine_.config().ban_duration;
        if (pipeline_.bans().ban(base::Prefix(src, src.is_v4() ? 32 : 128), duration,
                                 dataplane::BanOrigin::fraud, now))
            out_.events.add(ReplayEvent::fraud_bans);
        out_.bans.emplace_back(src.to_string(), wall);
    }

    void expire(base::Nanos now) {
        decoder_.expire(now);
        for (auto id : decoder_.take_closed_flows()) framers_.erase(id);
        observer_.expire(now, now);
        engine_.expire(now, 256);
        const auto bans_now = pipeline_.counters().events[dataplane::PipelineEvent::bans_escalated];
        if (bans_now > dataplane_bans_) {
            bucket(now).bans += bans_now - dataplane_bans_;
            dataplane_bans_ = bans_now;
        }
    }

    MinuteBucket& bucket(base::UnixNanos wall) { return out_.timeline[wall / kMinute]; }
    CallRecord* call(std::string_view id) {
        auto it = call_index_.find(std::string(id));
        return it == call_index_.end() ? nullptr : &out_.calls[it->second];
    }

    dataplane::CaptureDecoder decoder_;
    dataplane::Pipeline pipeline_;
    fraud::Engine& engine_;
    CallObserver observer_;
    ReplayResult& out_;
    std::unordered_map<std::string, std::size_t> call_index_;
    std::unordered_map<std::uint64_t, sip::StreamFramer> framers_;
    std::array<bool, 65536> sip_udp_{}, sip_tcp_{};
    bool refused_ = false;
    std::uint64_t dataplane_bans_ = 0;
};

}  // namespace

ReplayResult run_replay(const policy::Policy& policy, const policy::NodeConfig* node,
                        const ReplayOptions& options) {
    ReplayResult r;
    auto engine = make_fraud_engine(policy, node ? node->geoip_database : "");
    if (!engine) {
        r.error = engine.error().message;
        return r;
    }
    dataplane::PipelineConfig config;
    if (node) {
        config = pipeline_config_from(*node, &policy);
    } else {
        // No node configuration: the policy's limits with the default ports, and every
        // address the SBC's (direction is told by the ports).
        static const policy::NodeConfig kDefaultNode;
        config = pipeline_config_from(kDefaultNode, &policy);
        const auto d = dataplane::PipelineConfig::defaults();
        config.sip_udp_ports = d.sip_udp_ports;
        config.sip_tcp_ports = d.sip_tcp_ports;
        config.local_addresses.clear();
    }
    auto replayer = std::make_unique<Replayer>(policy, config, **engine, r);
    replayer->run(options);
    return r;
}

ReplayComparison compare_replays(const ReplayResult& a, const ReplayResult& b) {
    ReplayComparison c;
    std::map<std::string, const CallRecord*> in_a, in_b;
    for (const auto& x : a.calls) in_a[x.call_id] = &x;
    for (const auto& x : b.calls) in_b[x.call_id] = &x;
    std::map<std::string, CallDiff> all;
    for (auto& [id, r] : in_a) all[id].a = r;
    for (auto& [id, r] : in_b) all[id].b = r;
    for (auto& [id, d] : all) {
        d.call_id = id;
        std::vector<std::string> ra = d.a ? d.a->reasons : std::vector<std::string>{};
        std::vector<std::string> rb = d.b ? d.b->reasons : std::vector<std::string>{};
        std::sort(ra.begin(), ra.end());
        std::sort(rb.begin(), rb.end());
        ra.erase(std::unique(ra.begin(), ra.end()), ra.end());
        rb.erase(std::unique(rb.begin(), rb.end()), rb.end());
        for (const auto& r : ra)
            if (!std::binary_search(rb.begin(), rb.end(), r)) ++c.rule_changes[r].first;
        for (const auto& r : rb)
            if (!std::binary_search(ra.begin(), ra.end(), r)) ++c.rule_changes[r].second;
        const bool differs = !d.a || !d.b || d.a->action != d.b->action;
        if (differs) c.differing.push_back(d);
    }
    return c;
}

}  // namespace sbc

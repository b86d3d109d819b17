#include "sbc/call_core.hpp"

#include <algorithm>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "sbc/hep.hpp"

namespace sbc {

using signaling::Side;

base::Result<CallCore::Setup> CallCore::setup_from(const policy::NodeConfig& node,
                                                   std::uint32_t external_listener,
                                                   std::uint32_t internal_listener,
                                                   const std::vector<StreamListenerRef>& streams) {
    Setup s;
    const policy::ListenerConfig* ext = nullptr;
    const policy::ListenerConfig* in = nullptr;
    for (const auto& l : node.listeners) {
        if (l.transport != policy::Transport::udp) continue;
        if (l.realm == policy::Realm::external && !ext) ext = &l;
        if (l.realm == policy::Realm::internal && !in) in = &l;
    }
    if (!ext || !in)
        return base::Error{"calls need an external and an internal UDP listener in sbc.toml"};
    auto transport_of = [](policy::Transport t) {
        return t == policy::Transport::tls   ? signaling::Transport::tls
               : t == policy::Transport::tcp ? signaling::Transport::tcp
                                             : signaling::Transport::udp;
    };
    // Internal next hops take the calls from outside; trunks (external) those from inside,
    // instead of their Request-URI. Both are health-checked and weighted the same way.
    for (const auto& h : node.next_hops) {
        const bool trunk = h.realm == policy::Realm::external;
        auto& side = trunk ? s.b2bua.external : s.b2bua.internal;
        side.next_hops.push_back(h.endpoint);
        side.weights.push_back(h.weight);
        side.hop_transports.push_back(transport_of(h.transport));
        s.hop_names[trunk ? 0 : 1].push_back(h.name);
    }
    if (s.b2bua.internal.next_hops.empty())
        return base::Error{"calls need at least one internal next hop in sbc.toml"};
    for (const auto& l : streams) {
        auto& side = l.realm == policy::Realm::internal ? s.b2bua.internal : s.b2bua.external;
        const auto t = transport_of(l.transport);
        bool have = false;
        for (const auto& sl : side.stream_listeners) have = have || sl.transport == t;
        if (!have)
            side.stream_listeners.push_back({t, l.local.addr.to_string(), l.local.port, l.index});
    }
    s.b2bua.external.host = ext->endpoint.addr.to_string();
    s.b2bua.external.port = ext->endpoint.port;
    s.b2bua.external.listener = external_listener;
    s.b2bua.internal.host = in->endpoint.addr.to_string();
    s.b2bua.internal.port = in->endpoint.port;
    s.b2bua.internal.listener = internal_listener;
    const auto& hc = node.health_check;
    s.b2bua.health.enabled = hc.enabled;
    s.b2bua.health.interval = hc.interval;
    s.b2bua.health.timeout = hc.timeout;
    s.b2bua.health.failures_before_down = hc.failures_before_down;
    s.b2bua.health.successes_before_up = hc.successes_before_up;
    s.media_external = node.media.external_address;
    s.media_internal = node.media.internal_address;
    s.b2bua.external.media_host = node.media.external_address.to_string();
    s.b2bua.internal.media_host = node.media.internal_address.to_string();
    s.port_min = node.media.port_min;
    s.port_max = node.media.port_max;
    const auto& r = node.registrations;
    auto& rc = s.b2bua.registrations;
    rc.enabled = r.enabled;
    rc.nat_expires = r.nat_expires;
    rc.max_expires = r.max_expires;
    rc.max_contacts_per_request = r.max_contacts_per_request;
    rc.max_bindings_per_aor = r.max_bindings_per_aor;
    rc.max_bindings = r.max_bindings;
    rc.keepalive = r.keepalive == "crlf"   ? signaling::Keepalive::crlf
                   : r.keepalive == "none" ? signaling::Keepalive::none
                                           : signaling::Keepalive::options;
    rc.keepalive_interval = r.keepalive_interval;
    rc.keepalive_timeout = r.keepalive_timeout;
    rc.keepalive_failures = r.keepalive_failures;
    rc.uniform_answers = r.enumeration_resistance;
    rc.realm = r.realm;
    return s;
}

CallCore::CallCore(Setup setup, MediaStreams& streams, SendFn send, AdmitFn admit, EndFn answered,
                   EndFn ended, RelayedFn relayed, RegisteredFn registered)
    : setup_(std::move(setup)),
      streams_(streams),
      send_(std::move(send)),
      admit_(std::move(admit)),
      answered_(std::move(answered)),
      ended_(std::move(ended)),
      relayed_(std::move(relayed)),
      registered_(std::move(registered)) {
    // Ports are handed out in blocks of two (RTP even, RTCP odd), lowest first.
    std::uint32_t first = setup_.port_min + (setup_.port_min & 1u);
    for (std::uint32_t p = setup_.port_max & ~1u; p + 1 <= setup_.port_max && p >= first; p -= 2) {
        free_ports_.push_back(static_cast<std::uint16_t>(p));
        if (p < 2) break;
    }
    const signaling::SideConfig* sides[2] = {&setup_.b2bua.external, &setup_.b2bua.internal};
    for (int i = 0; i < 2; ++i) {
        local_[i].port = sides[i]->port;
        if (auto a = base::IpAddress::parse(sides[i]->host)) local_[i].addr = *a;
    }
    // Strangers' calls in setup hold at most a quarter of the relay's port blocks (a call with
    // one audio stream takes two blocks, one per side): a spoofed flood cannot take them all.
    auto& strangers = setup_.b2bua.max_stranger_setups;
    if (strangers > 0)
        strangers = std::min(strangers, std::max<std::size_t>(1, free_ports_.size() / 2 / 4));
    signaling::Wire& wire = *this;
    signaling::MediaAnchor& media = *this;
    signaling::CallHooks& hooks = *this;
    b2bua_ = std::make_unique<signaling::B2bua>(setup_.b2bua, wire, media, hooks);
}

CallCore::~CallCore() {
    b2bua_.reset();  // releases every call's media through release()
}

void CallCore::receive(const sip::Message& m, const base::Endpoint& from, std::uint32_t listener,
                       Side side, base::Nanos now) {
    signaling::Flow f;
    f.transport = signaling::Transport::udp;
    f.remote = from;
    f.listener = listener;
    receive(m, f, side, now);
}

void CallCore::receive(const sip::Message& m, const signaling::Flow& from, Side side,
                       base::Nanos now) {
    const base::UnixNanos t = hep_ ? wall_() : 0;
    b2bua_->receive(m, from, side, now);
    // Captured after the B2BUA has seen it, so that a new call's INVITE already correlates.
    if (hep_) capture(side, from.remote, local_[static_cast<int>(side)], m.call_id(), m.bytes(), t);
}

Side CallCore::side_of_listener(std::uint32_t listener) const {
    const auto& in = setup_.b2bua.internal;
    if (listener == in.listener) return Side::internal;
    for (const auto& l : in.stream_listeners)
        if (l.listener == listener) return Side::internal;
    return Side::external;
}

bool CallCore::send(const signaling::Flow& flow, std::string_view bytes) {
    const bool ok = send_(flow, bytes);
    if (hep_ && ok) {
        const Side side = side_of_listener(flow.listener);
        const auto st = sent_.parse(bytes);
        capture(side, local_[static_cast<int>(side)], flow.remote,
                st ? sent_.call_id() : std::string_view{}, bytes, wall_());
    }
    return ok;
}

void CallCore::set_capture(HepExporter* hep, std::function<base::UnixNanos()> wall) {
    hep_ = hep;
    wall_ = std::move(wall);
}

void CallCore::capture(Side side, const base::Endpoint& src, const base::Endpoint& dst,
                       std::string_view call_id, std::string_view bytes, base::UnixNanos time) {
    // Homer ties the two legs of a call by the correlation id: the caller's Call-ID on both.
    std::string_view correlation = call_id;
    if (auto c = b2bua_->call_of(side, call_id))
        if (auto v = b2bua_->call_view(*c)) correlation = v->call_id[0];
    hep_->capture(src, dst, time, correlation, bytes);
}

namespace {

std::string seconds_text(base::Nanos d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(d) / 1e9);
    return buf;
}

}  // namespace

std::string CallCore::calls_text(base::Nanos now) const {
    std::string out;
    const auto ids = b2bua_->calls();
    for (auto id : ids) {
        auto v = b2bua_->call_view(id);
        if (!v || v->ended) continue;
        const auto& i = *v->info;
        out += "call=" + std::to_string(id) + " state=" + (v->answered ? "answered" : "setup") +
               " from=" + std::string(signaling::side_name(i.from)) +
               " caller=" + std::string(i.caller) + " callee=" + std::string(i.callee) +
               " source=" + i.source.remote.to_string() +
               " age_s=" + seconds_text(now - i.started) + "\n";
    }
    out += "calls=" + std::to_string(ids.size()) + "\n";
    return out;
}

std::string CallCore::call_text(std::uint64_t id, base::Nanos now) const {
    auto v = b2bua_->call_view(id);
    if (!v || v->ended) return {};
    const auto& i = *v->info;
    std::string out;
    out += "call=" + std::to_string(id) + "\n";
    out += std::string("state=") + (v->answered ? "answered" : "setup") + "\n";
    out += "from=" + std::string(signaling::side_name(i.from)) + "\n";
    out += "caller=" + std::string(i.caller) + "\n";
    out += "callee=" + std::string(i.callee) + "\n";
    out += "user_agent=" + std::string(i.user_agent) + "\n";
    out += "credentials_user=" + std::string(i.credentials_user) + "\n";
    out += "age_s=" + seconds_text(now - i.started) + "\n";
    if (v->answered) out += "answered_after_s=" + seconds_text(i.answered - i.started) + "\n";
    for (int l = 0; l < 2; ++l) {
        const std::string p = "leg" + std::to_string(l) + ".";
        out += p + "side=" + std::string(signaling::side_name(v->side[l])) + "\n";
        out += p + "call_id=" + std::string(v->call_id[l]) + "\n";
        out += p + "local=" + local_[static_cast<int>(v->side[l])].to_string() + "\n";
        out += p + "remote=" + v->flow[l].remote.to_string() + "\n";
    }
    auto it = streams_by_call_.find(id);
    const std::size_t n = it == streams_by_call_.end() ? 0 : it->second.size();
    out += "media_streams=" + std::to_string(n) + "\n";
    if (it != streams_by_call_.end())
        for (const auto& [index, s] : it->second)
            out += "media." + std::to_string(index) + "=" + s.spec.a.remote.to_string() + " <-> " +
                   s.spec.a.local.to_string() + " | " + s.spec.b.local.to_string() + " <-> " +
                   s.spec.b.remote.to_string() + "\n";
    return out;
}

std::string CallCore::next_hops_text() const {
    std::string out;
    const auto& cfg = b2bua_->config();
    for (const Side side : {Side::internal, Side::external}) {
        const auto& sc = side == Side::external ? cfg.external : cfg.internal;
        const auto& names = setup_.hop_names[side == Side::external ? 0 : 1];
        for (std::size_t i = 0; i < sc.next_hops.size(); ++i) {
            const auto h = b2bua_->hop_health(side, i);
            if (!h) continue;
            const std::string name = i < names.size() ? names[i] : sc.next_hops[i].to_string();
            const auto t =
                i < sc.hop_transports.size() ? sc.hop_transports[i] : signaling::Transport::udp;
            const std::uint32_t w = i < sc.weights.size() && sc.weights[i] ? sc.weights[i] : 1;
            out += "next_hop." + name + "=" + (h->up ? "up" : "down") +
                   " realm=" + std::string(signaling::side_name(side)) +
                   " address=" + sc.next_hops[i].to_string() +
                   " transport=" + std::string(signaling::transport_name(t)) +
                   " weight=" + std::to_string(w) +
                   " probes_sent=" + std::to_string(h->probes_sent) +
                   " probes_answered=" + std::to_string(h->probes_answered) +
                   " failures_in_a_row=" + std::to_string(h->failures) + "\n";
        }
    }
    return out;
}

std::optional<std::uint16_t> CallCore::take_port() {
    if (free_ports_.empty()) return std::nullopt;
    const std::uint16_t p = free_ports_.back();
    free_ports_.pop_back();
    return p;
}

void CallCore::give_port(std::uint16_t port) {
    free_ports_.push_back(port);
}

base::Result<base::Endpoint> CallCore::anchor(std::uint64_t call, std::size_t index, Side from,
                                              const base::Endpoint& peer, bool rtcp_mux,
                                              base::Nanos) {
    auto& lines = streams_by_call_[call];
    auto it = lines.find(index);
    if (it == lines.end()) {
        auto a = take_port();
        auto b = take_port();
        if (!a || !b) {
            if (a) give_port(*a);
            if (b) give_port(*b);
            ++media_failures_;
            if (lines.empty()) streams_by_call_.erase(call);
            return base::Error{"no free media ports"};
        }
        dataplane::StreamSpec spec;
        spec.call_id = call;
        spec.stream_index = static_cast<std::uint16_t>(index);
        spec.rtcp_mux = rtcp_mux;
        spec.a.local = {setup_.media_external, *a};
        spec.b.local = {setup_.media_internal, *b};
        (from == Side::external ? spec.a : spec.b).remote = peer;
        auto id = streams_.open(spec);
        if (!id) {
            give_port(*a);
            give_port(*b);
            ++media_failures_;
            if (lines.empty()) streams_by_call_.erase(call);
            return id.error();
        }
        lines.emplace(index, Anchored{*id, spec});
        return from == Side::external ? spec.b.local : spec.a.local;
    }
    Anchored& s = it->second;
    (from == Side::external ? s.spec.a : s.spec.b).remote = peer;
    s.spec.rtcp_mux = s.spec.rtcp_mux || rtcp_mux;
    auto r = streams_.update(s.id, s.spec);
    if (!r) {
        ++media_failures_;
        return r.error();
    }
    return from == Side::external ? s.spec.b.local : s.spec.a.local;
}

void CallCore::release(std::uint64_t call) {
    auto it = streams_by_call_.find(call);
    if (it == streams_by_call_.end()) return;
    for (auto& [index, s] : it->second) {
        if (auto st = streams_.stats(s.id)) quality_.observe(*st);
        (void)streams_.close(s.id);
        give_port(s.spec.a.local.port);
        give_port(s.spec.b.local.port);
    }
    streams_by_call_.erase(it);
}

bool CallCore::media_inactive(std::uint64_t call, dataplane::StreamId stream, base::Nanos now) {
    auto it = streams_by_call_.find(call);
    if (it == streams_by_call_.end()) return false;
    bool ours = false;
    for (const auto& [index, s] : it->second) ours = ours || s.id == stream;
    if (!ours || !b2bua_->answered(call)) return false;
    spdlog::info("call {}: no media for the relay's inactivity timeout, ending it", call);
    if (!b2bua_->end_call(call, now)) return false;
    ++ended_inactive_;
    return true;
}

std::size_t CallCore::end_banned(const base::IpAddress& source, std::string_view account,
                                 base::Nanos now) {
    const std::size_t n = b2bua_->end_calls_if(
        [&](const signaling::CallInfo& c) {
            if (c.from != Side::external) return false;
            if (!source.is_unspecified() && c.source.remote.addr == source) return true;
            const std::string_view who = c.credentials_user.empty() ? c.caller : c.credentials_user;
            return !account.empty() && who == account;
        },
        now);
    if (n) spdlog::warn("fraud ban: {} running call(s) ended", n);
    ended_banned_ += n;
    return n;
}

signaling::Admission CallCore::admit(const sip::Message& invite, const signaling::Flow& from,
                                     Side side) {
    return admit_ ? admit_(invite, from, side) : signaling::Admission{};
}

void CallCore::on_answered(const signaling::CallInfo& c) {
    if (answered_) answered_(c, signaling::CallEnd::terminated);
}

void CallCore::on_ended(const signaling::CallInfo& c, signaling::CallEnd e) {
    spdlog::debug("call {} ended: {} (status {})", c.id, signaling::call_end_name(e),
                  c.final_status);
    if (ended_) ended_(c, e);
}

void CallCore::on_response_relayed(const signaling::CallInfo& c, int status) {
    if (relayed_) relayed_(c, status);
}

bool CallCore::on_register_answered(const sip::Message& request, const signaling::Flow& from,
                                    int status) {
    return registered_ && registered_(request, from, status);
}

std::string CallCore::stats_text() const {
    std::string out;
    const auto& c = b2bua_->counters();
    for (std::size_t i = 0; i < signaling::kB2buaCounterCount; ++i) {
        const auto e = static_cast<signaling::B2buaCounter>(i);
        out += "calls." + std::string(name(e)) + "=" + std::to_string(c[e]) + "\n";
    }
    const auto& t = b2bua_->transactions().counters();
    for (std::size_t i = 0; i < signaling::kTxCounterCount; ++i) {
        const auto e = static_cast<signaling::TxCounter>(i);
        out += "transactions." + std::string(name(e)) + "=" + std::to_string(t[e]) + "\n";
    }
    out += "calls.active=" + std::to_string(b2bua_->calls().size()) + "\n";
    out += "transactions.active=" + std::to_string(b2bua_->transactions().size()) + "\n";
    if (const auto* r = b2bua_->registrations()) {
        const auto& rc = r->counters();
        for (std::size_t i = 0; i < signaling::kRegistrationCounterCount; ++i) {
            const auto e = static_cast<signaling::RegistrationCounter>(i);
            out += "registrations." + std::string(name(e)) + "=" + std::to_string(rc[e]) + "\n";
        }
        out += "registrations.bindings=" + std::to_string(r->bindings()) + "\n";
        out += "registrations.flows=" + std::to_string(r->flows()) + "\n";
    }
    out += "media.calls_anchored=" + std::to_string(streams_by_call_.size()) + "\n";
    out += "media.free_port_pairs=" + std::to_string(free_ports_.size() / 2) + "\n";
    out +=
        "calls.max_stranger_setups=" + std::to_string(b2bua_->config().max_stranger_setups) + "\n";
    // The call state pool keeps its peak for the next calls (not returned to the system).
    out += "calls.call_memory_bytes=" + std::to_string(b2bua_->call_memory_bytes()) + "\n";
    out += "media.anchor_failures=" + std::to_string(media_failures_) + "\n";
    out += next_hops_text();
    out += "calls.ended_inactive=" + std::to_string(ended_inactive_) + "\n";
    out += "calls.ended_banned=" + std::to_string(ended_banned_) + "\n";
    return out;
}

}  // namespace sbc

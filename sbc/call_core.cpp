#include "sbc/call_core.hpp"

#include <spdlog/spdlog.h>

namespace sbc {

using signaling::Side;

base::Result<CallCore::Setup> CallCore::setup_from(const policy::NodeConfig& node,
                                                   std::uint32_t external_listener,
                                                   std::uint32_t internal_listener) {
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
    std::vector<base::Endpoint> hops;
    for (const auto& h : node.next_hops)
        if (h.transport == policy::Transport::udp) hops.push_back(h.endpoint);
    if (hops.empty()) return base::Error{"calls need at least one UDP next hop in sbc.toml"};
    s.b2bua.external.host = ext->endpoint.addr.to_string();
    s.b2bua.external.port = ext->endpoint.port;
    s.b2bua.external.listener = external_listener;
    s.b2bua.internal.host = in->endpoint.addr.to_string();
    s.b2bua.internal.port = in->endpoint.port;
    s.b2bua.internal.listener = internal_listener;
    s.b2bua.internal.next_hops = std::move(hops);
    s.media_external = node.media.external_address;
    s.media_internal = node.media.internal_address;
    s.b2bua.external.media_host = node.media.external_address.to_string();
    s.b2bua.internal.media_host = node.media.internal_address.to_string();
    s.port_min = node.media.port_min;
    s.port_max = node.media.port_max;
    return s;
}

CallCore::CallCore(Setup setup, MediaStreams& streams, SendFn send, AdmitFn admit, EndFn answered,
                   EndFn ended, RelayedFn relayed)
    : setup_(std::move(setup)),
      streams_(streams),
      send_(std::move(send)),
      admit_(std::move(admit)),
      answered_(std::move(answered)),
      ended_(std::move(ended)),
      relayed_(std::move(relayed)) {
    // Ports are handed out in blocks of two (RTP even, RTCP odd), lowest first.
    std::uint32_t first = setup_.port_min + (setup_.port_min & 1u);
    for (std::uint32_t p = setup_.port_max & ~1u; p + 1 <= setup_.port_max && p >= first; p -= 2) {
        free_ports_.push_back(static_cast<std::uint16_t>(p));
        if (p < 2) break;
    }
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
    b2bua_->receive(m, f, side, now);
}

bool CallCore::send(const signaling::Flow& flow, std::string_view bytes) {
    return send_(flow.listener, flow.remote, bytes);
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
    out += "media.calls_anchored=" + std::to_string(streams_by_call_.size()) + "\n";
    out += "media.free_port_pairs=" + std::to_string(free_ports_.size() / 2) + "\n";
    out += "media.anchor_failures=" + std::to_string(media_failures_) + "\n";
    return out;
}

}  // namespace sbc

// The media relay table: streams created, updated and removed by signaling through a closed
// command set; per-leg latching (symmetric RTP) and RFC 3550 receive statistics.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "dataplane/media.hpp"
#include "dataplane/media_layout.hpp"
#include "dataplane/rtp_stats.hpp"

namespace sbc::dataplane {

namespace {

// RFC 5761 §4: with rtcp-mux, RTCP is told apart from RTP by the second octet (payload type
// 64-95 with the marker bit: RTCP packet types 192-223).
bool looks_like_rtcp(const PacketMeta& m) {
    return m.payload_len >= 8 && (m.payload[0] >> 6) == 2 && m.payload[1] >= 192 &&
           m.payload[1] <= 223;
}

// clock_rate * 2^64 / 1e9, rounded up so that whole timestamp units are not lost to rounding.
std::uint64_t rate_q64(std::uint32_t clock_rate) {
    const unsigned __int128 q = (static_cast<unsigned __int128>(clock_rate) << 64) + 999'999'999u;
    return static_cast<std::uint64_t>(q / 1'000'000'000u);
}

base::Endpoint signaled_rtcp(const LegSpec& l, bool mux) {
    if (l.remote_rtcp.port != 0) return l.remote_rtcp;
    if (mux || l.remote.port == 0) return l.remote;
    return base::Endpoint{l.remote.addr, static_cast<std::uint16_t>(l.remote.port + 1)};
}
}  // namespace

std::string_view name(MediaEventKind k) {
    switch (k) {
        case MediaEventKind::inactive:
            return "inactive";
        case MediaEventKind::latched:
            return "latched";
        case MediaEventKind::relatched:
            return "relatched";
    }
    return "?";
}

double LegStats::jitter_ms() const {
    return clock_rate ? jitter * 1000.0 / clock_rate : 0.0;
}

MediaControl::MediaControl(std::uint32_t capacity, std::uint32_t event_capacity,
                           const MediaDefaults& d, std::uint16_t port_min, std::uint16_t port_max)
    : streams_(capacity),
      relay_(port_max >= port_min ? port_max - port_min + 1u : 0u),
      stats_(std::size_t{capacity} * 2),
      events_(std::max<std::uint32_t>(1, event_capacity)),
      defaults_(d),
      port_min_(port_min),
      port_max_(port_max) {
    free_.reserve(capacity);
    for (std::uint32_t i = capacity; i > 0; --i) free_.push_back(i - 1);
}

MediaControl::~MediaControl() = default;

std::size_t MediaControl::capacity() const { return streams_.size(); }

MediaControl::Stream* MediaControl::lookup(StreamId id) {
    if (id.slot >= streams_.size()) return nullptr;
    Stream& s = streams_[id.slot];
    return s.in_use && s.generation == id.generation ? &s : nullptr;
}
const MediaControl::Stream* MediaControl::lookup(StreamId id) const {
    return const_cast<MediaControl*>(this)->lookup(id);
}

base::Result<void> MediaControl::bind_ports(std::uint32_t slot, const StreamSpec& s) {
    const LegSpec* legs[2] = {&s.a, &s.b};
    const unsigned span = s.rtcp_mux ? 1 : 2;
    for (const LegSpec* l : legs) {
        const unsigned p = l->local.port;
        if (p < port_min_ || p + span - 1 > port_max_)
            return base::make_error("local port " + std::to_string(p) +
                                    " outside the media port range");
        for (unsigned k = 0; k < span; ++k)
            if (relay_[p + k - port_min_].slot_plus_1 != 0 &&
                relay_[p + k - port_min_].slot_plus_1 != slot + 1)
                return base::make_error("local port " + std::to_string(p + k) + " in use");
    }
    if (s.a.local.port == s.b.local.port || (!s.rtcp_mux && (s.a.local.port + 1 == s.b.local.port ||
                                                             s.b.local.port + 1 == s.a.local.port)))
        return base::make_error("legs share a local port");
    for (std::uint8_t leg = 0; leg < 2; ++leg) {
        for (unsigned k = 0; k < span; ++k) {
            RelayRecord& r = relay_[legs[leg]->local.port + k - port_min_];
            r = RelayRecord{};
            r.slot_plus_1 = slot + 1;
            r.leg = leg;
            r.rtcp = static_cast<std::uint8_t>(k);
            r.stats_index = slot * 2 + leg;
        }
    }
    return {};
}

void MediaControl::unbind_ports(const StreamSpec& s) {
    const unsigned span = s.rtcp_mux ? 1 : 2;
    for (const LegSpec* l : {&s.a, &s.b})
        for (unsigned k = 0; k < span; ++k) relay_[l->local.port + k - port_min_] = RelayRecord{};
}

void MediaControl::refresh_forwards(Stream& s) {
    const LegSpec* legs[2] = {&s.spec.a, &s.spec.b};
    for (unsigned to = 0; to < 2; ++to) {
        const LegSpec& l = *legs[to];
        const LegLatch& st = s.legs[to];
        Forward& rtp = s.forwards[to * 2];
        Forward& rtcp = s.forwards[to * 2 + 1];
        rtp.from_local = l.local;
        rtp.to_peer = st.latched_rtp.port ? st.latched_rtp : l.remote;
        rtcp.from_local =
            s.spec.rtcp_mux
                ? l.local
                : base::Endpoint{l.local.addr, static_cast<std::uint16_t>(l.local.port + 1)};
        rtcp.to_peer = st.latched_rtcp.port ? st.latched_rtcp : signaled_rtcp(l, s.spec.rtcp_mux);
        // With rtcp-mux, RTCP follows wherever RTP latched.
        if (s.spec.rtcp_mux && !st.latched_rtcp.port) rtcp.to_peer = rtp.to_peer;
    }
}

namespace {
inline std::uint32_t word_of(const base::IpAddress& a) {
    std::uint32_t w;
    std::memcpy(&w, a.bytes().data() + 12, 4);
    return w;
}
// Two ports as the UDP header carries them (network order), loaded as one word.
inline std::uint32_t ports_word(std::uint16_t first, std::uint16_t second) {
    const std::uint8_t b[4] = {
        static_cast<std::uint8_t>(first >> 8), static_cast<std::uint8_t>(first),
        static_cast<std::uint8_t>(second >> 8), static_cast<std::uint8_t>(second)};
    std::uint32_t w;
    std::memcpy(&w, b, 4);
    return w;
}
// A 64-bit one's complement sum of 32-bit words folded to 16 bits (RFC 1071 §2(B): the byte
// order of the words does not matter as long as the checksum is handled in the same order).
inline std::uint32_t fold_sum(std::uint64_t s) {
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint32_t>(s);
}
}  // namespace

void MediaControl::set_fast_path_scope(const std::vector<base::IpAddress>& local_addresses,
                                       const std::vector<std::uint16_t>& sip_udp_ports) {
    fast_any_local_ = local_addresses.empty();
    fast_locals_.clear();
    for (const auto& a : local_addresses)
        if (a.is_v4()) fast_locals_.push_back(word_of(a));
    fast_sip_ports_ = sip_udp_ports;
    refresh_all_records();
}

void MediaControl::refresh_all_records() {
    for (std::uint32_t slot = 0; slot < streams_.size(); ++slot)
        if (streams_[slot].in_use) refresh_records(slot);
}

// A record is fast when a packet that matches it word for word would be relayed by the generic
// path with no side effect beyond the leg's statistics: its local address is one of ours and
// IPv4, its port is not a SIP port, the leg has latched an IPv4 source (a packet from it is
// accepted without the latch rules), and the forward's peer is known and IPv4.
void MediaControl::refresh_records(std::uint32_t slot) {
    const Stream& s = streams_[slot];
    const LegSpec* legs[2] = {&s.spec.a, &s.spec.b};
    const unsigned span = s.spec.rtcp_mux ? 1 : 2;
    for (unsigned leg = 0; leg < 2; ++leg) {
        const LegSpec& ls = *legs[leg];
        for (unsigned k = 0; k < span; ++k) {
            const std::uint16_t port = static_cast<std::uint16_t>(ls.local.port + k);
            RelayRecord& r = relay_[port - port_min_];
            r.flags = 0;
            r.rate_q64 = s.rate_q64;
            const base::Endpoint& latched = k ? s.legs[leg].latched_rtcp : s.legs[leg].latched_rtp;
            const Forward& fwd = s.forwards[(1u - leg) * 2 + k];
            const bool ours =
                ls.local.addr.is_v4() && !ls.local.addr.is_unspecified() &&
                (fast_any_local_ || std::find(fast_locals_.begin(), fast_locals_.end(),
                                              word_of(ls.local.addr)) != fast_locals_.end());
            const bool sip = std::find(fast_sip_ports_.begin(), fast_sip_ports_.end(), port) !=
                             fast_sip_ports_.end();
            if (!ours || sip || latched.port == 0 || !latched.addr.is_v4() ||
                fwd.to_peer.port == 0 || !fwd.to_peer.addr.is_v4() || !fwd.from_local.addr.is_v4())
                continue;
            r.local = word_of(ls.local.addr);
            r.source = word_of(latched.addr);
            r.ports_in = ports_word(latched.port, port);
            r.new_src = word_of(fwd.from_local.addr);
            r.new_dst = word_of(fwd.to_peer.addr);
            r.new_ports = ports_word(fwd.from_local.port, fwd.to_peer.port);
            // RFC 1624 eqn. 3: the old words are known (the packet matched them), so the sum of
            // ~old and new is computed once here instead of per packet.
            const std::uint64_t addr = std::uint64_t{~r.local} + ~r.source + r.new_src + r.new_dst;
            r.ip_delta = fold_sum(addr);
            r.udp_delta = fold_sum(addr + std::uint64_t{~r.ports_in} + r.new_ports);
            r.flags = static_cast<std::uint8_t>(kRecordFast | (s.spec.rtcp_mux ? kRecordMux : 0));
        }
    }
}

base::Nanos MediaControl::last_packet(std::uint32_t slot) const {
    base::Nanos t = streams_[slot].created;
    for (unsigned leg = 0; leg < 2; ++leg) {
        const LegCounters& c = stats_[slot * 2 + leg];
        t = std::max({t, c.last_rx_rtp, c.last_rx_rtcp});
    }
    return t;
}

base::Result<StreamId> MediaControl::create(const StreamSpec& spec, base::Nanos now) {
    if (free_.empty()) return base::make_error("media stream table full");
    const std::uint32_t slot = free_.back();
    if (auto r = bind_ports(slot, spec); !r) return r.error();
    free_.pop_back();
    Stream& s = streams_[slot];
    const std::uint32_t gen = s.generation + 1;
    s = Stream{};
    s.generation = gen;
    s.spec = spec;
    s.rate_q64 = rate_q64(spec.clock_rate);
    s.in_use = true;
    s.created = s.offer_at = now;
    stats_[slot * 2] = LegCounters{};
    stats_[slot * 2 + 1] = LegCounters{};
    refresh_forwards(s);
    refresh_records(slot);
    ++active_;
    return StreamId{slot, gen};
}

base::Result<void> MediaControl::update(StreamId id, const StreamSpec& spec, base::Nanos now) {
    Stream* s = lookup(id);
    if (!s) return base::make_error("no such stream");
    const StreamSpec old = s->spec;
    unbind_ports(old);
    if (auto r = bind_ports(id.slot, spec); !r) {
        (void)bind_ports(id.slot, old);
        refresh_records(id.slot);
        return r;
    }
    // A new offer/answer: addresses may have changed, so latching starts over in a new window.
    const bool moved_a = !(old.a.remote == spec.a.remote);
    const bool moved_b = !(old.b.remote == spec.b.remote);
    s->spec = spec;
    s->rate_q64 = rate_q64(spec.clock_rate);
    s->offer_at = now;
    if (moved_a) s->legs[0].latched_rtp = s->legs[0].latched_rtcp = base::Endpoint{};
    if (moved_b) s->legs[1].latched_rtp = s->legs[1].latched_rtcp = base::Endpoint{};
    refresh_forwards(*s);
    refresh_records(id.slot);
    return {};
}

base::Result<void> MediaControl::remove(StreamId id) {
    Stream* s = lookup(id);
    if (!s) return base::make_error("no such stream");
    unbind_ports(s->spec);
    s->in_use = false;
    free_.push_back(id.slot);
    --active_;
    return {};
}

base::Result<StreamId> MediaControl::apply(const MediaCommand& cmd, base::Nanos now) {
    switch (cmd.kind) {
        case MediaCommandKind::create:
            return create(cmd.spec, now);
        case MediaCommandKind::update:
            if (auto r = update(cmd.id, cmd.spec, now); !r) return r.error();
            return cmd.id;
        case MediaCommandKind::remove:
            if (auto r = remove(cmd.id); !r) return r.error();
            return cmd.id;
    }
    return base::make_error("unknown media command");
}

const StreamSpec* MediaControl::spec(StreamId id) const {
    const Stream* s = lookup(id);
    return s ? &s->spec : nullptr;
}

base::Result<StreamStats> MediaControl::stats(StreamId id) const {
    const Stream* s = lookup(id);
    if (!s) return base::make_error("no such stream");
    StreamStats out;
    out.created = s->created;
    out.last_packet = last_packet(id.slot);
    LegStats* dst[2] = {&out.a, &out.b};
    for (unsigned i = 0; i < 2; ++i) {
        const LegCounters& c = stats_[id.slot * 2 + i];
        LegStats& o = *dst[i];
        o.packets = c.packets;
        o.bytes = c.bytes;
        o.rtcp_packets = c.rtcp_packets;
        o.clock_rate = s->spec.clock_rate;
        o.latched_rtp = s->legs[i].latched_rtp;
        o.latched_rtcp = s->legs[i].latched_rtcp;
        o.jitter = c.jitter_q4 / 16.0;
        if ((c.rtp_state & rtp_stats::kSeqInitialized) && c.probation == 0) {
            // RFC 3550 A.3 (only once A.1 has validated the source: no figures in probation)
            const std::uint32_t ext_max = (std::uint32_t{c.cycles} << 16) + c.max_seq;
            o.expected = ext_max - c.base_seq + 1;
            o.lost = static_cast<std::int64_t>(o.expected) - c.received;
        }
    }
    return out;
}

void MediaControl::push_event(const MediaEvent& e) {
    if (ev_size_ == events_.size()) {
        ++events_dropped_;
        return;
    }
    events_[(ev_head_ + ev_size_) % events_.size()] = e;
    ++ev_size_;
}

std::size_t MediaControl::drain_events(std::span<MediaEvent> out) {
    std::size_t n = 0;
    while (n < out.size() && ev_size_) {
        out[n++] = events_[ev_head_];
        ev_head_ = (ev_head_ + 1) % events_.size();
        --ev_size_;
    }
    return n;
}

void MediaControl::poll(base::Nanos now, std::uint32_t budget) {
    const std::uint32_t n = static_cast<std::uint32_t>(streams_.size());
    if (n == 0) return;
    for (std::uint32_t k = 0; k < budget && k < n; ++k) {
        Stream& s = streams_[poll_cursor_];
        if (!s.in_use) {
            poll_cursor_ = (poll_cursor_ + 1) % n;
            continue;
        }
        const base::Nanos last = last_packet(poll_cursor_);
        // A packet since the report makes the stream active again (reportable once more).
        if (s.inactive_reported && last != s.reported_last) s.inactive_reported = false;
        if (!s.inactive_reported &&
            now - std::max(last, s.offer_at) >= defaults_.inactivity_timeout) {
            s.inactive_reported = true;
            s.reported_last = last;
            push_event(MediaEvent{MediaEventKind::inactive,
                                  StreamId{poll_cursor_, s.generation},
                                  s.spec.call_id,
                                  s.spec.stream_index,
                                  0,
                                  {}});
        }
        poll_cursor_ = (poll_cursor_ + 1) % n;
    }
}

DropReason MediaControl::on_packet(const PacketMeta& m, Decision& d, base::Nanos now,
                                   Counters& counters) {
    const RelayRecord* rec = record(m.dst_port);
    if (rec == nullptr || rec->slot_plus_1 == 0) return DropReason::no_session;
    const std::uint32_t slot = rec->slot_plus_1 - 1;
    const std::uint8_t leg_index = rec->leg;
    Stream& s = streams_[slot];
    const LegSpec& ls = leg_index ? s.spec.b : s.spec.a;
    if (!(ls.local.addr == m.dst) && !ls.local.addr.is_unspecified()) return DropReason::no_session;
    const bool rtcp = rec->rtcp || (s.spec.rtcp_mux && looks_like_rtcp(m));
    LegCounters& c = stats_[rec->stats_index];
    const base::Endpoint src{m.src, m.src_port};
    base::Endpoint& latched = rtcp ? s.legs[leg_index].latched_rtcp : s.legs[leg_index].latched_rtp;
    if (latched.port == 0 || !(latched == src)) {
        // Latching rule (docs/dataplane.md): the first source within the latch window after the
        // offer/answer is learned; packets from the signaled endpoint are always accepted;
        // switching to another source needs the latched one silent for relatch_silence.
        // strict_source restricts both to the signaled address (the port may differ: NAT).
        const base::Endpoint signaled = rtcp ? signaled_rtcp(ls, s.spec.rtcp_mux) : ls.remote;
        const bool addr_ok = !defaults_.strict_source || m.src == ls.remote.addr;
        const base::Nanos last_rx = rtcp ? c.last_rx_rtcp : c.last_rx_rtp;
        MediaEventKind kind;
        if (latched.port == 0) {
            if (!(src == signaled) && !(addr_ok && now - s.offer_at <= defaults_.latch_window))
                return DropReason::latch_rejected;
            kind = MediaEventKind::latched;
            counters.events.add(PipelineEvent::latched);
        } else {
            if (!addr_ok || now - last_rx < defaults_.relatch_silence)
                return DropReason::latch_rejected;
            kind = MediaEventKind::relatched;
            counters.events.add(PipelineEvent::relatched);
        }
        latched = src;
        refresh_forwards(s);
        refresh_records(slot);
        push_event(MediaEvent{kind, StreamId{slot, s.generation}, s.spec.call_id,
                              s.spec.stream_index, leg_index, src});
    }
    rtp_stats::count_packet(c, rtcp, m.payload, m.payload_len, now, s.rate_q64);
    const unsigned to = 1u - leg_index;
    const unsigned sub = to * 2 + (rtcp ? 1 : 0);
    if (s.forwards[sub].to_peer.port == 0) return DropReason::peer_unknown;
    d.stream_slot = slot * 4 + sub;
    return DropReason::none;
}

}  // namespace sbc::dataplane

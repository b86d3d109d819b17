// The media relay table: streams created, updated and removed by signaling through a closed
// command set; per-leg latching (symmetric RTP) and RFC 3550 receive statistics.
#include <algorithm>
#include <cmath>

#include "dataplane/dataplane.hpp"

namespace sbc::dataplane {

namespace {
constexpr std::uint32_t kRtpSeqMod = 1u << 16;
constexpr std::uint32_t kMaxDropout = 3000;  // RFC 3550 A.1
constexpr std::uint32_t kMaxMisorder = 100;
constexpr std::uint32_t kMinSequential = 2;

inline std::uint16_t rd16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t rd32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}

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
      ports_(65536),
      events_(std::max<std::uint32_t>(1, event_capacity)),
      defaults_(d),
      port_min_(port_min),
      port_max_(port_max) {
    free_.reserve(capacity);
    for (std::uint32_t i = capacity; i > 0; --i) free_.push_back(i - 1);
}

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
            if (ports_[p + k].slot_plus_1 != 0 && ports_[p + k].slot_plus_1 != slot + 1)
                return base::make_error("local port " + std::to_string(p + k) + " in use");
    }
    if (s.a.local.port == s.b.local.port || (!s.rtcp_mux && (s.a.local.port + 1 == s.b.local.port ||
                                                             s.b.local.port + 1 == s.a.local.port)))
        return base::make_error("legs share a local port");
    for (std::uint8_t leg = 0; leg < 2; ++leg)
        for (unsigned k = 0; k < span; ++k)
            ports_[legs[leg]->local.port + k] =
                PortBinding{slot + 1, leg, static_cast<std::uint8_t>(k)};
    return {};
}

void MediaControl::unbind_ports(const StreamSpec& s) {
    const unsigned span = s.rtcp_mux ? 1 : 2;
    for (const LegSpec* l : {&s.a, &s.b})
        for (unsigned k = 0; k < span; ++k) ports_[l->local.port + k] = PortBinding{};
}

void MediaControl::refresh_forwards(Stream& s) {
    const LegSpec* legs[2] = {&s.spec.a, &s.spec.b};
    for (unsigned to = 0; to < 2; ++to) {
        const LegSpec& l = *legs[to];
        const Leg& st = s.legs[to];
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
    s.created = s.offer_at = s.last_packet = now;
    refresh_forwards(s);
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
    out.last_packet = s->last_packet;
    LegStats* dst[2] = {&out.a, &out.b};
    for (int i = 0; i < 2; ++i) {
        const Leg& l = s->legs[i];
        LegStats& o = *dst[i];
        o.packets = l.packets;
        o.bytes = l.bytes;
        o.rtcp_packets = l.rtcp_packets;
        o.clock_rate = s->spec.clock_rate;
        o.latched_rtp = l.latched_rtp;
        o.latched_rtcp = l.latched_rtcp;
        o.jitter = l.rtp.jitter_q4 / 16.0;
        if (l.rtp.initialized && l.rtp.probation == 0) {
            // RFC 3550 A.3 (only once A.1 has validated the source: no figures in probation)
            const std::uint32_t ext_max = l.rtp.cycles + l.rtp.max_seq;
            o.expected = ext_max - l.rtp.base_seq + 1;
            o.lost = static_cast<std::int64_t>(o.expected) - l.rtp.received;
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
        if (s.in_use && !s.inactive_reported &&
            now - std::max(s.last_packet, s.offer_at) >= defaults_.inactivity_timeout) {
            s.inactive_reported = true;
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

namespace {
// RFC 3550 A.1 init_seq / update_seq.
template <class S>
void init_seq(S& s, std::uint16_t seq) {
    s.base_seq = seq;
    s.max_seq = seq;
    s.bad_seq = kRtpSeqMod + 1;
    s.cycles = 0;
    s.received = 0;
}

template <class S>
void update_seq(S& s, std::uint16_t seq) {
    if (!s.initialized) {
        init_seq(s, seq);
        s.max_seq = static_cast<std::uint16_t>(seq - 1);
        s.probation = kMinSequential;
        s.initialized = true;
    }
    const std::uint16_t udelta = static_cast<std::uint16_t>(seq - s.max_seq);
    if (s.probation) {
        if (seq == static_cast<std::uint16_t>(s.max_seq + 1)) {
            s.probation--;
            s.max_seq = seq;
            if (s.probation == 0) {
                init_seq(s, seq);
                s.received++;
            }
        } else {
            s.probation = kMinSequential - 1;
            s.max_seq = seq;
        }
        return;
    }
    if (udelta < kMaxDropout) {
        if (seq < s.max_seq) s.cycles += kRtpSeqMod;
        s.max_seq = seq;
    } else if (udelta <= kRtpSeqMod - kMaxMisorder) {
        if (seq == s.bad_seq) {
            init_seq(s, seq);  // the source restarted its sequence
        } else {
            s.bad_seq = (seq + 1u) & (kRtpSeqMod - 1);
            return;
        }
    }
    s.received++;
}
}  // namespace

DropReason MediaControl::on_packet(const PacketMeta& m, Decision& d, base::Nanos now,
                                   Counters& counters) {
    const PortBinding b = ports_[m.dst_port];
    if (b.slot_plus_1 == 0) return DropReason::no_session;
    const std::uint32_t slot = b.slot_plus_1 - 1;
    Stream& s = streams_[slot];
    const LegSpec& ls = b.leg ? s.spec.b : s.spec.a;
    if (!(ls.local.addr == m.dst) && !ls.local.addr.is_unspecified()) return DropReason::no_session;
    const bool rtcp = b.rtcp || (s.spec.rtcp_mux && looks_like_rtcp(m));
    Leg& leg = s.legs[b.leg];
    const base::Endpoint src{m.src, m.src_port};
    base::Endpoint& latched = rtcp ? leg.latched_rtcp : leg.latched_rtp;
    base::Nanos& last_rx = rtcp ? leg.last_rx_rtcp : leg.last_rx_rtp;
    if (latched.port == 0 || !(latched == src)) {
        // Latching rule (docs/dataplane.md): the first source within the latch window after the
        // offer/answer is learned; packets from the signaled endpoint are always accepted;
        // switching to another source needs the latched one silent for relatch_silence.
        // strict_source restricts both to the signaled address (the port may differ: NAT).
        const base::Endpoint signaled = rtcp ? signaled_rtcp(ls, s.spec.rtcp_mux) : ls.remote;
        const bool addr_ok = !defaults_.strict_source || m.src == ls.remote.addr;
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
        push_event(MediaEvent{kind, StreamId{slot, s.generation}, s.spec.call_id,
                              s.spec.stream_index, b.leg, src});
    }
    last_rx = now;
    s.last_packet = now;
    s.inactive_reported = false;
    ++leg.packets;
    leg.bytes += m.payload_len;
    if (rtcp) {
        ++leg.rtcp_packets;
    } else if (m.payload_len >= 12 && (m.payload[0] >> 6) == 2) {
        // RTP (RFC 3550 §5.1): sequence number and timestamp for loss and jitter.
        RtpState& r = leg.rtp;
        update_seq(r, rd16(m.payload + 2));
        const std::uint32_t ts = rd32(m.payload + 4);
        // RFC 3550 A.8: arrival time in timestamp units; transit differences need no common
        // clock origin, so `now` (any time line) works.
        const auto arrival = static_cast<std::uint32_t>(
            (static_cast<unsigned __int128>(static_cast<std::uint64_t>(now)) * s.rate_q64) >> 64);
        const std::uint32_t transit = arrival - ts;
        if (r.have_transit) {
            // RFC 3550 A.8, in integers: J += |D| - J/16 with J kept scaled by 16.
            const auto dd = static_cast<std::int32_t>(transit - r.last_transit);
            // |D| capped (2^26 units: hours of RTP time) so that 16 * J cannot overflow.
            const std::uint32_t ad = std::min<std::uint32_t>(
                dd < 0 ? 0u - static_cast<std::uint32_t>(dd) : static_cast<std::uint32_t>(dd),
                1u << 26);
            r.jitter_q4 += ad - ((r.jitter_q4 + 8) >> 4);
        }
        r.last_transit = transit;
        r.have_transit = true;
    }
    const unsigned to = 1u - b.leg;
    const unsigned sub = to * 2 + (rtcp ? 1 : 0);
    if (s.forwards[sub].to_peer.port == 0) return DropReason::peer_unknown;
    d.stream_slot = slot * 4 + sub;
    return DropReason::none;
}

}  // namespace sbc::dataplane

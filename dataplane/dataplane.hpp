#pragma once
// The public header of dataplane/: the perimeter's first line. Every packet is parsed,
// checked against the ban table, classified, rate limited and either relayed (RTP/RTCP),
// handed to signaling or to the kernel, or dropped with a named reason, in bounded memory.
//
// One pipeline, three I/O backends: the socket backend (kernel UDP sockets, recvmmsg/sendmmsg,
// epoll; below), the pcap backend (capture in, capture out; below) and the DPDK backend
// (dataplane/dpdk/, which calls parse_frames / Pipeline / rewrite_frame).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/base.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// Counters: every drop reason and pipeline event, declared once.
// ---------------------------------------------------------------------------------------
#define SBC_DATAPLANE_DROP_REASONS(X)                                                     \
    X(none, "not dropped")                                                                \
    X(truncated, "frame shorter than its headers or captured partially (snaplen)")        \
    X(not_ip, "Ethernet payload is neither IPv4 nor IPv6")                                \
    X(bad_ip_header, "IPv4/IPv6 header malformed (version, header length, ext. headers)") \
    X(bad_ip_length, "IP total/payload length inconsistent with the frame")               \
    X(bad_source, "source address is multicast, broadcast, unspecified or loopback")      \
    X(bad_l4_header, "UDP/TCP header malformed or length inconsistent")                   \
    X(bad_checksum, "IPv4 header or UDP checksum wrong (or zero UDP checksum over IPv6)") \
    X(fragment, "IP fragment not accepted by configuration")                              \
    X(unsupported_l4, "transport protocol other than UDP/TCP/ICMP")                       \
    X(banned, "source is banned")                                                         \
    X(rate_limited, "source, prefix or class over its token-bucket limit")                \
    X(no_service, "no SIP/media service on the destination port")                         \
    X(no_session, "media port not allocated to any stream")                               \
    X(latch_rejected, "media from an unexpected source (anti-hijacking latch rule)")      \
    X(peer_unknown, "media for a leg whose peer address is not known yet")                \
    X(family_mismatch, "frame backend cannot translate between IPv4 and IPv6")            \
    X(tx_failed, "send failed or no socket for the egress port")
SBC_DECLARE_COUNTER_LIST(DropReason, SBC_DATAPLANE_DROP_REASONS)

#define SBC_DATAPLANE_EVENTS(X)                                                            \
    X(rx, "packets entering the pipeline")                                                 \
    X(relayed, "media packets relayed")                                                    \
    X(to_signaling, "SIP packets handed to signaling")                                     \
    X(to_kernel, "packets handed to the host stack (TCP SIP, ICMP, fragments)")            \
    X(dropped, "packets dropped (see drop reasons)")                                       \
    X(latched, "media legs latched to their first source")                                 \
    X(relatched, "media legs re-latched after a NAT rebinding")                            \
    X(bans_added, "bans added (automatic escalation, signaling, control)")                 \
    X(bans_escalated, "automatic bans from sustained excess")                              \
    X(limiter_untracked, "limiter lookups with no slot (set full of established sources)") \
    X(events_dropped, "media events lost because the event queue was full")
SBC_DECLARE_COUNTER_LIST(PipelineEvent, SBC_DATAPLANE_EVENTS)

// Rate-limit traffic classes. SIP requests are classed by their method token only (a
// cheap peek at the UDP payload, not a SIP parse: dataplane does not depend on sip/).
#define SBC_DATAPLANE_TRAFFIC_CLASSES(X)                                \
    X(sip_register, "SIP REGISTER requests")                            \
    X(sip_invite, "SIP INVITE requests")                                \
    X(sip_other, "other SIP requests (OPTIONS, ...) and responses")     \
    X(tcp_connect, "TCP connection attempts (SYN) to SIP ports")        \
    X(media_unallocated, "UDP to media ports with no allocated stream") \
    X(other, "fragments and everything else admitted to the host")
SBC_DECLARE_COUNTER_LIST(TrafficClass, SBC_DATAPLANE_TRAFFIC_CLASSES)

struct Counters {
    base::CounterSet<DropReason> drops;
    base::CounterSet<PipelineEvent> events;
};

// ---------------------------------------------------------------------------------------
// Packets and decisions
// ---------------------------------------------------------------------------------------
enum PacketFlags : std::uint8_t {
    kFlagFragment = 1,       // IPv4 MF/offset or IPv6 fragment header
    kFlagLaterFragment = 2,  // fragment offset != 0: no L4 header in this packet
    kFlagVlan = 4,           // at least one 802.1Q / 802.1ad tag
    kFlagQinQ = 8,           // two tags
    kFlagV6 = 16,
    kFlagIpOptions = 32,  // IPv4 options or IPv6 extension headers present
};

// One received packet as the pipeline sees it. Frame backends (dpdk, pcap) fill `Frame` and
// let parse_frames() fill this; the socket backend fills it directly from recvmmsg (the
// kernel already stripped L2-L4: offsets stay 0 and `payload` points at the datagram).
struct PacketMeta {
    base::IpAddress src, dst;
    std::uint16_t src_port = 0, dst_port = 0;
    std::uint8_t l4_proto = 0;   // 17 UDP, 6 TCP, 1/58 ICMP
    std::uint8_t tcp_flags = 0;  // SYN detection for tcp_connect limits
    std::uint8_t hop_limit = 0;  // IPv4 TTL / IPv6 hop limit (ND requires 255)
    std::uint16_t l3_offset = 0, l4_offset = 0, payload_offset = 0, payload_len = 0;
    std::uint16_t vlan_tci_outer = 0, vlan_tci_inner = 0;
    std::uint8_t flags = 0;                 // PacketFlags
    const std::uint8_t* payload = nullptr;  // L4 payload (SIP method peek, RTP header)
};

struct Frame {
    std::uint8_t* data = nullptr;
    std::uint32_t len = 0;       // bytes present in data
    std::uint32_t capacity = 0;  // bytes available at data
    std::uint16_t port = 0;      // backend's port id
    std::uint32_t wire_len = 0;  // original length if the capture cut it (0: same as len)
};

enum class Action : std::uint8_t {
    undecided,     // parse_frames/socket backend: the pipeline has to decide
    relay,         // media: forward per Pipeline::forward_of()
    to_signaling,  // UDP SIP for the signaling layer
    to_kernel,     // host stack: TCP to SIP ports, ICMP, non-IP (ARP/ND), fragments
    drop,
};
std::string_view name(Action a);

struct Decision {
    Action action = Action::undecided;
    DropReason reason = DropReason::none;
    std::uint32_t stream_slot = 0;  // for relay: opaque handle for forward_of()
    TrafficClass traffic_class = TrafficClass::other;
};

struct ParseOptions {
    // UDP checksums are verified in software unless the caller (a NIC offload) already did.
    bool verify_udp_checksum = true;
};

// L2-L4 parse of a burst of Ethernet frames (802.1Q/QinQ, IPv4 with options and fragments,
// IPv6 with extension headers and fragments, UDP, TCP). Fills meta[i]; out[i] becomes
// drop+reason for malformed frames, to_kernel for non-IP and ICMP, undecided otherwise.
void parse_frames(std::span<const Frame> frames, std::span<PacketMeta> meta,
                  std::span<Decision> out, const ParseOptions& options = {});
// Same, for an L3 packet with no link header (pcap DLT_RAW, tun devices).
void parse_ip_packet(const Frame& frame, PacketMeta& meta, Decision& out,
                     const ParseOptions& options = {});

// The request method class of a UDP SIP payload: a peek at its first token only.
TrafficClass sip_method_class(const std::uint8_t* payload, std::size_t len);

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------
struct RateLimit {
    double rate_per_s = 0;  // 0: unlimited
    double burst = 0;       // bucket depth in packets (>= 1 when rate > 0)
    bool unlimited() const { return rate_per_s <= 0; }
};

struct ClassLimits {
    RateLimit per_source;   // per source address
    RateLimit per_prefix;   // per covering /24 (IPv4) or /64 (IPv6)
    RateLimit new_sources;  // shared by all sources not (yet) established: caps spoofed floods
};

struct BanPolicy {
    bool enabled = true;
    // A source denied this many times within `window` is banned.
    std::uint32_t violations_to_ban = 100;
    base::Nanos window = base::seconds(10);
    // The n-th ban of a source lasts durations[min(n, size-1)].
    std::vector<base::Nanos> durations{base::seconds(60), base::seconds(600), base::seconds(3600)};
    // A ban record is remembered this long after it expires (for escalation).
    base::Nanos forget_after = base::seconds(86400);
};

struct MediaDefaults {
    // Latching (symmetric RTP, RFC 4961 style): a leg learns its peer's real address from its
    // first packets within `latch_window` after the offer/answer (create/update).
    base::Nanos latch_window = base::seconds(30);
    // Re-latching to a new source is allowed only once the latched source has been silent this
    // long (NAT rebinding), never while it is still sending (stops hijacking of a live stream).
    base::Nanos relatch_silence = base::millis(1000);
    // Accept a latch source only if its address equals the signaled one (port may differ).
    bool strict_source = false;
    base::Nanos inactivity_timeout = base::seconds(60);
};

struct PipelineConfig {
    std::vector<base::IpAddress> local_addresses;  // empty: any destination is ours
    std::uint16_t media_port_min = 30000, media_port_max = 39999;
    std::vector<std::uint16_t> sip_udp_ports{5060};
    std::vector<std::uint16_t> sip_tcp_ports{5060, 5061};
    std::vector<base::Prefix> trusted;  // bypass rate limits (not bans)
    std::array<ClassLimits, kTrafficClassCount> limits{};
    std::uint8_t v4_prefix_len = 24, v6_prefix_len = 64;
    BanPolicy ban_policy;
    MediaDefaults media;
    // Capacities (fixed at construction; a reload keeps them).
    std::uint32_t limiter_capacity = 1u << 16;  // entries (sources + prefixes)
    std::uint32_t ban_capacity = 1u << 14;
    std::uint32_t stream_capacity = 10000;
    std::uint32_t event_capacity = 4096;
    // Limiter entry life cycle: a new key is on probation until seen again after
    // `establish_after`; established entries are evicted only after `idle_evict_after` silence.
    base::Nanos establish_after = base::seconds(1);
    base::Nanos idle_evict_after = base::seconds(300);
    bool fragments_to_kernel = true;  // else drop (fragment)
    bool other_to_kernel = false;     // traffic to non-SIP, non-media ports: else drop

    // Sensible defaults for an edge SBC (REGISTER 5/s per source, INVITE 10/s, ...).
    static PipelineConfig defaults();
};

// ---------------------------------------------------------------------------------------
// Rate limiter: token buckets per (source | prefix, class) in a fixed-capacity table.
// ---------------------------------------------------------------------------------------
class RateLimiter {
  public:
    enum class Verdict : std::uint8_t { admit, deny, deny_ban };

    RateLimiter(std::uint32_t capacity, const PipelineConfig& config);
    void apply_config(const PipelineConfig& config);

    // One token from the source's bucket, its prefix's bucket and (for sources on probation)
    // the class-wide new-source bucket. deny_ban: sustained excess reached the ban threshold.
    Verdict admit(const base::IpAddress& src, TrafficClass cls, base::Nanos now);

    std::size_t capacity() const { return entries_.size(); }
    std::size_t size() const { return used_; }
    std::size_t memory_bytes() const;
    std::uint64_t untracked() const { return untracked_; }
    // For tests and `sbc dataplane`: whether a source has an established entry for a class.
    bool is_established(const base::IpAddress& src, TrafficClass cls) const;

    static constexpr unsigned kWays = 8;

    struct Entry {
        base::IpAddress key;
        std::uint8_t cls = 0;
        std::uint8_t is_prefix = 0;
        std::uint8_t established = 0;
        std::uint8_t pad = 0;
        std::uint32_t hits = 0;
        float tokens = 0;
        std::uint32_t violations = 0;
        base::Nanos first_seen = 0;
        base::Nanos last_seen = 0;
        base::Nanos window_start = 0;
    };

  private:
    struct Bucket {
        double tokens = 0;
        base::Nanos last = 0;
    };
    Entry* find_or_insert(const base::IpAddress& key, std::uint8_t cls, std::uint8_t is_prefix,
                          base::Nanos now, bool& inserted);
    const Entry* find(const base::IpAddress& key, std::uint8_t cls, std::uint8_t is_prefix) const;
    static bool take(float& tokens, base::Nanos& last, const RateLimit& lim, base::Nanos now);

    std::vector<Entry> entries_;
    std::vector<std::uint32_t> tags_;  // 0 = empty way
    std::uint32_t set_mask_ = 0;
    std::size_t used_ = 0;
    std::uint64_t untracked_ = 0;
    std::array<ClassLimits, kTrafficClassCount> limits_{};
    std::array<Bucket, kTrafficClassCount> new_source_buckets_{};
    std::uint8_t v4_len_ = 24, v6_len_ = 64;
    BanPolicy ban_policy_;
    base::Nanos establish_after_ = 0, idle_evict_after_ = 0;
};

// ---------------------------------------------------------------------------------------
// Ban table: fixed capacity, checked first for every packet.
// ---------------------------------------------------------------------------------------
enum class BanOrigin : std::uint8_t { rate_limit, signaling, fraud, control };
std::string_view name(BanOrigin o);

struct BanInfo {
    base::Prefix prefix;
    base::Nanos expires = 0;  // on the pipeline's monotonic time line
    std::uint32_t offenses = 0;
    BanOrigin origin = BanOrigin::control;
    std::uint64_t hits = 0;  // packets dropped by this ban
};

class BanTable {
  public:
    explicit BanTable(std::uint32_t capacity);
    // Adds or extends a ban on an address (full-length prefix) or a prefix. duration 0: use the
    // escalation ladder of `policy` from the remembered offense count. Fails only when the table
    // is full of bans that expire later than this one would.
    base::Result<void> ban(const base::Prefix& p, base::Nanos duration, BanOrigin origin,
                           base::Nanos now);
    base::Result<void> ban_escalating(const base::IpAddress& a, const BanPolicy& policy,
                                      BanOrigin origin, base::Nanos now);
    bool unban(const base::Prefix& p);
    // Hot path: whether `a` (or a banned prefix covering it) is banned at `now`.
    bool is_banned(const base::IpAddress& a, base::Nanos now);
    // The relay fast path's ban check for an IPv4 source (its four bytes as loaded from the
    // packet): false means certainly not banned; true means "maybe", and the caller then does
    // the full is_banned() lookup (the fast path hands such packets to the generic pipeline).
    // With no bans at all this is one compare; otherwise two bit tests in 8 KiB bitmaps: one
    // bit per hashed /32 ban and one per /16 covering a ban of /16 to /31. IPv4 bans shorter
    // than /16 (rare) make every IPv4 source "maybe". Removals leave stale bits (false
    // positives only) until a rebuild.
    bool may_be_banned_v4(std::uint32_t addr_word) const {
        if (live_ == 0) return false;
        if (v4_unfiltered_ != 0) return true;
        const std::uint32_t h = exact_bit(addr_word), p = addr_word & 0xffffu;
        return ((v4_exact_[h >> 6] >> (h & 63)) | (v4_by16_[p >> 6] >> (p & 63))) & 1u;
    }
    std::vector<BanInfo> active(base::Nanos now) const;
    std::size_t capacity() const { return slots_.size(); }
    std::size_t memory_bytes() const { return slots_.size() * sizeof(Slot); }

    static constexpr unsigned kWays = 8;

  private:
    struct Slot {
        BanInfo info;
        std::uint64_t hash = 0;  // 0 = empty
        base::Nanos remember_until = 0;
    };
    Slot* find(const base::Prefix& p, std::uint64_t h);
    std::uint64_t hash_of(const base::Prefix& p) const;
    std::vector<Slot> slots_;
    std::uint32_t set_mask_ = 0;
    void count_len(unsigned mapped_len, int delta);
    std::array<std::uint32_t, 129> active_by_len_{};  // mapped prefix length -> entries
    std::array<std::uint64_t, 3> len_bits_{};         // lengths with entries, for the lookup
    std::uint32_t live_ = 0;
    // may_be_banned_v4's filter.
    static std::uint32_t exact_bit(std::uint32_t addr_word) {
        return (addr_word * 0x9E3779B1u) >> 16;
    }
    void filter_add(const base::Prefix& p);
    void filter_removed(const base::Prefix& p);
    std::array<std::uint64_t, 1024> v4_exact_{}, v4_by16_{};
    std::uint32_t v4_unfiltered_ = 0;  // live IPv4 entries shorter than /16
    std::uint32_t filter_stale_ = 0;   // entries removed since the last rebuild
};

// ---------------------------------------------------------------------------------------
// Media relay: streams created by signaling through a closed command set.
// ---------------------------------------------------------------------------------------
struct LegSpec {
    base::Endpoint local;        // our RTP address:port for this leg (RTCP on port+1 unless mux)
    base::Endpoint remote;       // the peer's signaled RTP address:port (from its SDP)
    base::Endpoint remote_rtcp;  // signaled RTCP (port 0: remote.port+1, or RTP port if mux)
};

struct StreamSpec {
    std::uint64_t call_id = 0;        // signaling's handle, returned in events
    std::uint16_t stream_index = 0;   // m-line index
    LegSpec a, b;                     // a: caller side, b: callee side
    bool rtcp_mux = false;            // RFC 5761: RTP and RTCP share the RTP port
    std::uint32_t clock_rate = 8000;  // RTP timestamp rate, for jitter
};

struct StreamId {
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;
    bool operator==(const StreamId&) const = default;
};

struct LegStats {
    std::uint64_t packets = 0, bytes = 0;  // received on this leg (RTP + RTCP)
    std::uint64_t rtcp_packets = 0;
    std::int64_t lost = 0;       // RFC 3550 A.3 cumulative lost
    std::uint32_t expected = 0;  // extended max - base + 1
    double jitter = 0;           // RFC 3550 §6.4.1, timestamp units
    double jitter_ms() const;
    std::uint32_t clock_rate = 8000;
    base::Endpoint latched_rtp, latched_rtcp;  // port 0: not latched
};

struct StreamStats {
    LegStats a, b;
    base::Nanos created = 0, last_packet = 0;
};

enum class MediaEventKind : std::uint8_t { inactive, latched, relatched };
std::string_view name(MediaEventKind k);
struct MediaEvent {
    MediaEventKind kind = MediaEventKind::inactive;
    StreamId id;
    std::uint64_t call_id = 0;
    std::uint16_t stream_index = 0;
    std::uint8_t leg = 0;  // 0 = a, 1 = b
    base::Endpoint source;
};

enum class MediaCommandKind : std::uint8_t { create, update, remove };
struct MediaCommand {
    MediaCommandKind kind = MediaCommandKind::create;
    StreamId id;      // update, remove
    StreamSpec spec;  // create, update
};

class Pipeline;

// The control API signaling uses. Flat fixed-size records, no pointers into signaling state.
class MediaControl {
  public:
    MediaControl(std::uint32_t capacity, std::uint32_t event_capacity, const MediaDefaults& d,
                 std::uint16_t port_min, std::uint16_t port_max);
    base::Result<StreamId> create(const StreamSpec& spec, base::Nanos now);
    // A re-offer/answer: new addresses; the latch window restarts.
    base::Result<void> update(StreamId id, const StreamSpec& spec, base::Nanos now);
    base::Result<void> remove(StreamId id);
    base::Result<StreamId> apply(const MediaCommand& cmd, base::Nanos now);
    const StreamSpec* spec(StreamId id) const;
    base::Result<StreamStats> stats(StreamId id) const;
    std::size_t active() const { return active_; }
    std::size_t capacity() const { return streams_.size(); }
    // Checks up to `budget` streams for inactivity (round robin) and queues events.
    void poll(base::Nanos now, std::uint32_t budget = 256);
    // Moves up to out.size() queued events to `out`; returns how many.
    std::size_t drain_events(std::span<MediaEvent> out);
    std::uint64_t events_dropped() const { return events_dropped_; }
    void set_defaults(const MediaDefaults& d) { defaults_ = d; }
    // Where a relayed packet goes: sent from our local endpoint of the other leg to its peer.
    struct Forward {
        base::Endpoint from_local;
        base::Endpoint to_peer;
    };

  private:
    friend class Pipeline;
    // Per-leg receive statistics (RTP and RTCP of the leg), one cache line each in an array
    // of their own: the only line the relay writes per packet. RFC 3550 A.1 sequence state
    // and A.8 integer jitter; `cycles` counts wraps (the RFC's cycles is wraps << 16, which
    // a 32-bit field holds modulo 2^32 just the same).
    struct alignas(64) LegCounters {
        std::uint64_t packets = 0, bytes = 0, rtcp_packets = 0;
        base::Nanos last_rx_rtp = 0, last_rx_rtcp = 0;
        std::uint16_t max_seq = 0, base_seq = 0, cycles = 0;
        std::uint8_t probation = 0;
        std::uint8_t rtp_state = 0;  // dataplane/rtp_stats.hpp: initialized, have transit
        std::uint32_t bad_seq = 0, received = 0;
        std::uint32_t last_transit = 0;
        std::uint32_t jitter_q4 = 0;  // RFC 3550 A.8 integer form: jitter * 16
    };
    // The relay record of one local port (a leg's RTP port, or its RTCP port without
    // rtcp-mux), indexed by port - port_min: the port is unique across local addresses
    // (bind_ports), so the table is a flat array with one probe. One cache line holds all the
    // fast path reads: the identity of the packets it may forward without the generic
    // pipeline (local address, latched source and ports as the header carries them), and the
    // precomputed rewrite (new words and RFC 1624 checksum deltas), rebuilt whenever the
    // stream is created, updated or latched, or the configuration changes.
    struct alignas(64) RelayRecord {
        std::uint32_t slot_plus_1 = 0;  // 0: unbound
        std::uint8_t leg = 0;
        std::uint8_t rtcp = 0;   // the leg's RTCP port (not rtcp-mux)
        std::uint8_t flags = 0;  // kRecordFast | kRecordMux
        std::uint8_t pad = 0;
        // What the fast path accepts, as loaded from the header (network byte order words), in
        // the header's order (IPv4 bytes 12-19, UDP bytes 0-3): compared in two loads.
        std::uint32_t source = 0;    // IPv4 source: the latched one
        std::uint32_t local = 0;     // IPv4 destination
        std::uint32_t ports_in = 0;  // UDP source and destination ports
        // The rewrite: new source/destination address and ports; the folded one's
        // complement deltas of RFC 1624 eqn. 3 (sum of ~old and new) for the IPv4 header
        // checksum and the UDP checksum.
        std::uint32_t new_src = 0, new_dst = 0, new_ports = 0;
        std::uint32_t ip_delta = 0, udp_delta = 0;
        std::uint32_t stats_index = 0;  // into stats_: slot * 2 + leg
        std::uint64_t rate_q64 = 0;     // the stream's RTP clock in 0.64 units per ns
    };
    static constexpr std::uint8_t kRecordFast = 1, kRecordMux = 2;
    struct LegLatch {
        base::Endpoint latched_rtp, latched_rtcp;  // port 0: not latched
    };
    struct Stream {
        StreamSpec spec;
        // RTP timestamp units per nanosecond in 0.64 fixed point (clock_rate * 2^64 / 1e9):
        // the arrival time of RFC 3550 A.8 with one multiplication instead of a division.
        std::uint64_t rate_q64 = 0;
        std::uint32_t generation = 0;
        bool in_use = false;
        bool inactive_reported = false;
        base::Nanos created = 0, offer_at = 0;
        base::Nanos reported_last = 0;  // last packet time when inactivity was reported
        std::array<LegLatch, 2> legs;
        std::array<Forward, 4> forwards;  // [to_leg*2 + rtcp]
    };
    Stream* lookup(StreamId id);
    const Stream* lookup(StreamId id) const;
    base::Result<void> bind_ports(std::uint32_t slot, const StreamSpec& s);
    void unbind_ports(const StreamSpec& s);
    void refresh_forwards(Stream& s);
    // Rebuilds the relay records of a stream's ports from its spec, latches and forwards.
    void refresh_records(std::uint32_t slot);
    void refresh_all_records();
    // What the relay may take for granted about a record's local address and port (the
    // pipeline's local addresses and SIP ports), set by Pipeline::apply_config.
    void set_fast_path_scope(const std::vector<base::IpAddress>& local_addresses,
                             const std::vector<std::uint16_t>& sip_udp_ports);
    base::Nanos last_packet(std::uint32_t slot) const;
    void push_event(const MediaEvent& e);
    RelayRecord* record(std::uint16_t port) {
        return port >= port_min_ && port <= port_max_ ? &relay_[port - port_min_] : nullptr;
    }
    // Brings the relay record, then the leg's statistics line, into the cache: called for a
    // whole burst ahead of on_packet so that the misses overlap.
    void prefetch_binding(const PacketMeta& m) const {
        if (m.dst_port >= port_min_ && m.dst_port <= port_max_)
            __builtin_prefetch(&relay_[m.dst_port - port_min_]);
    }
    void prefetch_stream(const PacketMeta& m) const {
        if (m.dst_port < port_min_ || m.dst_port > port_max_) return;
        const RelayRecord& r = relay_[m.dst_port - port_min_];
        if (r.slot_plus_1 == 0) return;
        __builtin_prefetch(&stats_[r.stats_index], 1);
        const Stream& s = streams_[r.slot_plus_1 - 1];
        __builtin_prefetch(r.leg ? &s.spec.b : &s.spec.a);
        __builtin_prefetch(&s.legs[r.leg]);
        __builtin_prefetch(&s.forwards[(1u - r.leg) * 2 + r.rtcp]);
    }
    // Returns drop reason or none and sets decision.stream_slot.
    DropReason on_packet(const PacketMeta& m, Decision& d, base::Nanos now, Counters& counters);

    std::vector<Stream> streams_;
    std::vector<std::uint32_t> free_;
    std::vector<RelayRecord> relay_;          // indexed by local port - port_min_
    std::vector<LegCounters> stats_;          // [slot * 2 + leg]
    std::vector<std::uint32_t> fast_locals_;  // local IPv4 addresses (network order words)
    bool fast_any_local_ = true;              // no local addresses configured: any is ours
    std::vector<std::uint16_t> fast_sip_ports_;
    std::vector<MediaEvent> events_;  // ring
    std::size_t ev_head_ = 0, ev_size_ = 0;
    std::uint64_t events_dropped_ = 0;
    std::size_t active_ = 0;
    std::uint32_t poll_cursor_ = 0;
    MediaDefaults defaults_;
    std::uint16_t port_min_, port_max_;
};

// ---------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------
// Pipeline::relay_fast can rewrite the Ethernet addresses of what it relays while the line is
// hot: source = `source`, destination = `destination` (the next hop) or, when that is null, the
// frame's own source (back to the neighbour it came from).
struct RelayL2 {
    const std::uint8_t* source = nullptr;       // 6 bytes; null: L2 left to the caller
    const std::uint8_t* destination = nullptr;  // 6 bytes; null: the frame's source
};

class Pipeline {
  public:
    explicit Pipeline(const PipelineConfig& config);
    // Fills out[i] for packets whose out[i].action is undecided: ban check first, then
    // classify (media port range / SIP ports / other), rate limit, relay lookup and latching.
    void decide(std::span<const PacketMeta> meta, std::span<Decision> out, base::Nanos now);

    using Forward = MediaControl::Forward;
    const Forward& forward_of(const Decision& d) const {
        return media_.streams_[d.stream_slot >> 2].forwards[d.stream_slot & 3];
    }
    // Rewrites IP addresses/ports of a relayed frame in place and fixes the IPv4 header and
    // UDP checksums incrementally (RFC 1624). L2 is left to the backend. Returns false (and
    // leaves the frame alone) when the frame's family differs from the forward's.
    static bool rewrite_frame(Frame& frame, const PacketMeta& meta, const Forward& fwd);

    // The relay fast path for a burst of Ethernet frames: the common case of an untagged
    // IPv4/UDP frame without options or fragmentation, from a leg's latched source to its
    // local port, is checked in a few word compares, counted in the leg's statistics and
    // rewritten in place at L3/L4 (and L2 if asked, below), exactly as parse_frames +
    // decide + rewrite_frame would (but for one documented case: a frame takes the forward
    // as it is when it comes, not as a latch later in the same burst leaves it; see
    // docs/dataplane.md, "The relay fast path"). relayed[i] becomes 1 for those frames and 0
    // for every other frame, which the caller runs through the generic pipeline unchanged
    // (VLAN, IPv6, options, fragments, SIP, unlatched or re-latching legs, sources that may be
    // banned, RTCP on an rtcp-mux port...). Returns the number relayed. Bans still come first: a
    // source the ban filter cannot clear is left to the generic pipeline.
    // With `l2.source` set, the Ethernet addresses are rewritten too (RelayL2).
    std::size_t relay_fast(std::span<Frame> frames, std::span<std::uint8_t> relayed,
                           base::Nanos now, const ParseOptions& options = {},
                           const RelayL2& l2 = {});

    MediaControl& media() { return media_; }
    BanTable& bans() { return bans_; }
    RateLimiter& limiter() { return limiter_; }
    const Counters& counters() const { return counters_; }
    Counters& counters() { return counters_; }
    const PipelineConfig& config() const { return config_; }
    // On policy reload: limits, ports and trusted sources change; tables and streams survive.
    void apply_config(const PipelineConfig& config);

  private:
    bool is_trusted(const base::IpAddress& a) const;
    bool is_local(const base::IpAddress& a) const;
    bool is_neighbour_discovery_for_us(const PacketMeta& m) const;
    void finish(Decision& d, Action a, DropReason r);

    PipelineConfig config_;
    RateLimiter limiter_;
    BanTable bans_;
    MediaControl media_;
    Counters counters_;
    std::array<std::uint8_t, 65536 / 8> sip_udp_{}, sip_tcp_{};  // port bitmaps
};

// ---------------------------------------------------------------------------------------
// Commands from other threads (control socket, signaling, fraud verdicts) to the thread that
// owns a Pipeline. Bounded; the owner applies them between bursts (one atomic load when idle),
// so the pipeline's tables stay single-writer and lock-free on the fast path.
// ---------------------------------------------------------------------------------------
struct ControlCommand {
    enum class Kind : std::uint8_t { ban, unban };
    Kind kind = Kind::ban;
    base::Prefix prefix;
    base::Nanos duration = 0;  // ban: 0 = escalate per the ban policy (addresses only)
    BanOrigin origin = BanOrigin::control;
};

class ControlMailbox {
  public:
    explicit ControlMailbox(std::size_t capacity = 1024) : capacity_(capacity) {}
    // Any thread. False when the mailbox is full (counted in rejected()).
    bool post(const ControlCommand& c);
    // Any thread: a new configuration, applied by the owner with Pipeline::apply_config.
    void post_config(const PipelineConfig& c);
    // Owner thread: applies what is queued; refreshes the published ban list at most once per
    // `publish_every` (or at once after a command).
    void apply(Pipeline& p, base::Nanos now, base::Nanos publish_every = base::seconds(1));
    // Any thread: the ban list as last published, and the owner's time of that publication.
    std::vector<BanInfo> bans(base::Nanos* as_of = nullptr) const;
    std::uint64_t rejected() const { return rejected_.load(); }
    std::uint64_t failed() const { return failed_.load(); }

  private:
    std::size_t capacity_;
    mutable std::mutex mu_;
    std::vector<ControlCommand> queue_;
    std::unique_ptr<PipelineConfig> config_;
    std::vector<BanInfo> published_;
    base::Nanos published_at_ = 0;
    bool republish_ = true;
    std::atomic<bool> pending_{false};
    std::atomic<std::uint64_t> rejected_{0}, failed_{0};
};

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

// pcap backend: frames from a capture (timestamps as `now`), relayed frames rewritten and
// written to an output capture. Malformed captures end with a clear error, never a crash.
struct PcapRunResult {
    std::uint64_t records = 0;                  // records read
    std::uint64_t written = 0;                  // records written to the output
    base::Nanos first_time = 0, last_time = 0;  // capture timestamps
    std::string error;                          // non-empty if the capture ended in an error
};
// `on_start` runs once before the first packet, with `now` = the first timestamp (create
// streams there); `on_tick` is called for each burst (not per packet) with the burst's time.
struct PcapRunHooks {
    void (*on_start)(Pipeline&, base::Nanos now, void* ctx) = nullptr;
    void* ctx = nullptr;
    bool write_signaling = false;  // also write packets for signaling to the output
};
base::Result<PcapRunResult> run_pcap(Pipeline& pipeline, const std::string& in_path,
                                     const std::string& out_path, const PcapRunHooks& hooks = {});

// How SocketRelay moves packets. `uring`: a multishot recvmsg per socket into a provided
// buffer ring, one sendmsg per relayed packet, all submitted and reaped with one io_uring_enter
// per burst. `mmsg`: epoll + recvmmsg/sendmmsg (runs anywhere). `automatic`: uring when the
// kernel allows it (io_uring_queue_init succeeds, kernel.io_uring_disabled is 0), else mmsg.
enum class SocketIo : std::uint8_t { automatic, uring, mmsg };
const char* socket_io_name(SocketIo io);

struct SocketRelayConfig {
    SocketIo io = SocketIo::automatic;
    // uring only: receive buffers shared by all sockets (a power of two). Packets received but
    // not yet sent hold one each; when none is free a socket's receive pauses (counted in
    // rx_buffer_shortages) and the datagrams wait in its socket queue.
    unsigned uring_buffers = 4096;
    // uring only: a port that sends to a peer gets a second socket on the same port connected to
    // that peer, which carries the port's packets to it (no route lookup or address per send)
    // and receives the peer's; the port's own socket keeps receiving everyone else's, so
    // latching and re-latching are unchanged. Costs one file descriptor per sending port while
    // the relay's sockets stay well below the open-file limit (by an eighth of it, at most
    // 1024); at the limit, new media ports close twins to make room.
    bool connected_egress = true;
};

// socket backend: one UDP socket per local media port (RTP, and RTCP unless rtcp-mux),
// io_uring or epoll + recvmmsg/sendmmsg (SocketRelayConfig::io).
class SocketRelay {
  public:
    explicit SocketRelay(Pipeline& pipeline, const SocketRelayConfig& config = {});
    ~SocketRelay();
    SocketRelay(const SocketRelay&) = delete;
    SocketRelay& operator=(const SocketRelay&) = delete;

    // Creates the stream in the pipeline and opens/binds its sockets.
    base::Result<StreamId> open_stream(const StreamSpec& spec, base::Nanos now);
    base::Result<void> close_stream(StreamId id);
    // A UDP SIP listener fronted by the pipeline: what it admits is handed to `handler` (the
    // signaling layer); banned and over-limit sources are dropped before signaling sees them.
    using SignalingHandler = void (*)(const PacketMeta& meta, void* ctx);
    // Returns the listener's socket, which stays the relay's (open while the relay lives):
    // signaling sends its answers from it (RFC 3581 §4: a client behind NAT only takes the
    // response from where it sent the request).
    base::Result<int> open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                     void* ctx);
    // Waits up to timeout_ms for traffic and processes what is ready; returns packets handled.
    std::size_t poll_once(int timeout_ms, const base::Clock& clock);
    // The loop step for a dedicated thread: blocks up to idle_timeout_ms while traffic is light,
    // but does not sleep while the previous step found a busy relay (at least a burst's worth):
    // under load, sleeping and being woken per packet costs more than polling.
    std::size_t poll(int idle_timeout_ms, const base::Clock& clock) {
        last_handled_ = poll_once(last_handled_ >= kBurst / 2 ? 0 : idle_timeout_ms, clock);
        return last_handled_;
    }
    std::size_t open_sockets() const { return sockets_open_; }
    std::uint64_t tx_errors() const { return tx_errors_; }
    // The I/O mode running (never `automatic`).
    SocketIo io_mode() const { return io_; }
    // uring: times a socket's multishot receive stopped for want of a free buffer.
    std::uint64_t rx_buffer_shortages() const { return rx_buffer_shortages_; }
    // uring with connected_egress: ports sending through a connected twin socket, and the
    // packets sent that way.
    std::size_t connected_sockets() const;
    std::uint64_t connected_sends() const { return connected_sends_; }

    static constexpr unsigned kBurst = 64;

  private:
    struct Impl;
    std::size_t poll_mmsg(int timeout_ms, const base::Clock& clock);
    std::size_t poll_uring(int timeout_ms, const base::Clock& clock);
    base::Result<void> watch(int fd, std::uint16_t port);
    void unwatch(std::uint16_t port);
    Pipeline& pipeline_;
    std::unique_ptr<Impl> impl_;
    std::size_t sockets_open_ = 0;
    std::uint64_t tx_errors_ = 0;
    std::uint64_t rx_buffer_shortages_ = 0;
    std::uint64_t connected_sends_ = 0;
    SocketIo io_ = SocketIo::mmsg;
    base::Nanos last_media_poll_ = 0;
    std::size_t last_handled_ = 0;
    SignalingHandler signaling_handler_ = nullptr;
    void* signaling_ctx_ = nullptr;
};

}  // namespace sbc::dataplane

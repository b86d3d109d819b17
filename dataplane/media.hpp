#pragma once
// dataplane/: the media relay's control API (streams created by signaling).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/types.hpp"

namespace sbc::dataplane {

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
    ~MediaControl();
    MediaControl(const MediaControl&) = delete;
    MediaControl& operator=(const MediaControl&) = delete;
    base::Result<StreamId> create(const StreamSpec& spec, base::Nanos now);
    // A re-offer/answer: new addresses; the latch window restarts.
    base::Result<void> update(StreamId id, const StreamSpec& spec, base::Nanos now);
    base::Result<void> remove(StreamId id);
    base::Result<StreamId> apply(const MediaCommand& cmd, base::Nanos now);
    const StreamSpec* spec(StreamId id) const;
    base::Result<StreamStats> stats(StreamId id) const;
    std::size_t active() const { return active_; }
    std::size_t capacity() const;
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
    // The relay's record layout (one cache line per port, one statistics line per leg) is
    // internal to dataplane/: dataplane/media_layout.hpp.
    struct LegCounters;
    struct RelayRecord;
    struct LegLatch;
    struct Stream;
    static constexpr std::uint8_t kRecordFast = 1, kRecordMux = 2;
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
    RelayRecord* record(std::uint16_t port);
    // Brings the relay record, then the leg's statistics line, into the cache: called for a
    // whole burst ahead of on_packet so that the misses overlap.
    void prefetch_binding(const PacketMeta& m) const;
    void prefetch_stream(const PacketMeta& m) const;
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

}  // namespace sbc::dataplane

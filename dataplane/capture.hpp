#pragma once
// Capture input for `sbc replay`: the records of pcap/pcapng files (read through libpcap, the
// only room where it is included: pcap_capture.cpp) decoded into what the SBC would have seen.
//
// CaptureDecoder is pure (bytes and capture timestamps in, views out; no I/O, no clock), in
// stages the caller runs in order so that the live pipeline can decide between them:
//   1. decode()      link header (Ethernet with 802.1Q/QinQ, Linux SLL/SLL2, raw IP, BSD
//                    loopback), then dataplane's own L2-L4 parse (parse_frames/parse_ip_packet).
//   2. unwrap_hep()  SIP carried in HEPv2/HEPv3 (a Homer collector feed): the inner message
//                    with its original addresses, ports and time.
//   3. reassemble()  IPv4/IPv6 fragments into whole datagrams (bounded).
//   4. tcp_segment() TCP payload into per-flow in-order byte runs (retransmissions trimmed,
//                    out-of-order segments held, gaps reported; bounded), TLS recognized and
//                    counted as encrypted, never decoded.
// Everything malformed is counted under a named reason; nothing here can crash or loop on
// hostile input (tests/fuzz/dataplane/fuzz_capture.cpp).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"

namespace sbc::dataplane {

#define SBC_CAPTURE_EVENTS(X)                                                                     \
    X(records, "capture records read")                                                            \
    X(snaplen_cut, "records captured partially (snaplen shorter than the packet)")                \
    X(unknown_link_type, "records of a link type replay does not decode")                         \
    X(bad_link_header, "link header cut or malformed")                                            \
    X(not_ip, "link payload neither IPv4 nor IPv6 (ARP, LLDP, ...)")                              \
    X(malformed, "IP/UDP/TCP headers malformed (see the dataplane drop reasons)")                 \
    X(time_backwards, "records older than one already read (replayed at the latest time)")        \
    X(fragments, "IP fragments")                                                                  \
    X(reassembled, "datagrams reassembled from fragments")                                        \
    X(fragments_overlapping, "fragments overlapping earlier ones (the datagram is dropped)")      \
    X(fragments_expired, "partial datagrams dropped: not completed within the timeout")           \
    X(fragments_evicted, "partial datagrams dropped: reassembly table full")                      \
    X(fragments_too_large, "fragments beyond 65535 bytes of datagram (dropped)")                  \
    X(tcp_segments, "TCP segments with payload")                                                  \
    X(tcp_retransmitted, "TCP segments (or parts) already delivered: trimmed")                    \
    X(tcp_out_of_order, "TCP segments held until the bytes before them arrived")                  \
    X(tcp_gaps, "TCP byte ranges never captured: stream resumed after the gap")                   \
    X(tcp_flows, "TCP flows tracked")                                                             \
    X(tcp_flows_evicted, "TCP flows evicted from a full flow table (oldest activity first)")      \
    X(tcp_held_dropped, "out-of-order TCP bytes dropped: per-flow hold buffer full")              \
    X(tls_segments, "TCP segments of TLS streams (port 5061 or TLS records): encrypted, skipped") \
    X(hep_packets, "HEPv2/HEPv3 packets decoded")                                                 \
    X(hep_malformed, "HEP packets malformed or without a SIP payload")                            \
    X(hep_compressed, "HEP packets with a compressed payload (not decoded)")
SBC_DECLARE_COUNTER_LIST(CaptureEvent, SBC_CAPTURE_EVENTS)

// pcap link types (LINKTYPE_* of the pcap/pcapng specifications).
enum class LinkType : std::uint16_t {
    null_loopback = 0,  // BSD loopback: 4-byte host-order address family
    ethernet = 1,
    raw = 101,  // raw IPv4/IPv6 (also DLT_RAW 12/14 on some systems, mapped by the reader)
    linux_sll = 113,
    linux_sll2 = 276,
    ipv4 = 228,
    ipv6 = 229,
};
bool link_type_supported(std::uint32_t link_type);

struct CaptureLimits {
    std::uint32_t max_fragment_datagrams = 4096;  // partial datagrams held at once
    base::Nanos fragment_timeout = base::seconds(30);
    std::uint32_t max_tcp_flows = 65536;
    std::uint32_t max_tcp_hold_bytes = 256 * 1024;  // out-of-order bytes held per flow
    base::Nanos tcp_idle_timeout = base::seconds(600);
    std::vector<std::uint16_t> hep_ports{9060};  // UDP ports carrying HEP (plus "HEP3" magic)
    std::vector<std::uint16_t> tls_ports{5061};
};

// One capture record.
struct CaptureRecord {
    base::Nanos time = 0;  // Unix nanoseconds
    std::uint32_t link_type = 1;
    const std::uint8_t* data = nullptr;
    std::uint32_t caplen = 0;
    std::uint32_t wire_len = 0;
};

// What the decoder made of a record (stage 1): meta/decision as parse_frames gives them, with
// payload pointing into the record's bytes. `ok` false: counted, nothing more to do.
struct DecodedPacket {
    bool ok = false;
    PacketMeta meta;
    Decision decision;
    base::Nanos time = 0;
    const std::uint8_t* frame = nullptr;  // what meta's offsets count from
    std::uint32_t frame_len = 0;
};

// A SIP message found inside HEP (stage 2). Views into the record.
struct HepMessage {
    PacketMeta meta;  // inner addresses and ports (payload = the SIP bytes)
    base::Nanos time = 0;
    bool tcp = false;  // the inner transport was TCP (one message per HEP packet)
};

// A whole UDP datagram (stage 3): payload points into the decoder's buffer until the next call.
struct Datagram {
    PacketMeta meta;
    bool ok = false;
};

// In-order bytes of one direction of a TCP flow (stage 4).
struct StreamChunk {
    std::uint64_t flow = 0;   // unique id of the flow direction (never reused)
    PacketMeta meta;          // the flow's addresses and ports (payload: see bytes)
    bool gap_before = false;  // bytes are missing before this chunk
    bool tls = false;
    std::string_view bytes;
};

class CaptureDecoder {
  public:
    explicit CaptureDecoder(const CaptureLimits& limits = {}, const ParseOptions& parse = {});
    ~CaptureDecoder();
    CaptureDecoder(const CaptureDecoder&) = delete;
    CaptureDecoder& operator=(const CaptureDecoder&) = delete;

    // Stage 1. Counts the record.
    DecodedPacket decode(const CaptureRecord& r);
    // Stage 2: a UDP packet to a HEP port (or starting with "HEP3"). Empty when not HEP or
    // malformed (counted).
    bool is_hep(const PacketMeta& m) const;
    bool unwrap_hep(const PacketMeta& m, base::Nanos time, HepMessage& out);
    // Stage 3: a fragment (meta.flags & kFlagFragment) of an admitted packet. ok when this
    // fragment completed a UDP datagram: meta then describes the whole datagram.
    Datagram reassemble(const DecodedPacket& p, const CaptureRecord& r);
    // Stage 4: a TCP segment of an admitted packet. Appends the in-order chunks it releases
    // (valid until the next call).
    void tcp_segment(const DecodedPacket& p, std::vector<StreamChunk>& out);
    // Frees expired fragments and idle TCP flows (called with the capture's time).
    void expire(base::Nanos now);
    // Ids of the TCP flows closed (FIN, RST, idle, evicted) since the last call.
    std::vector<std::uint64_t> take_closed_flows();

    const base::CounterSet<CaptureEvent>& counters() const { return counters_; }
    base::CounterSet<CaptureEvent>& counters() { return counters_; }
    const base::CounterSet<DropReason>& malformed() const { return malformed_; }
    std::size_t fragment_datagrams() const;
    std::size_t tcp_flows() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    base::CounterSet<CaptureEvent> counters_;
    base::CounterSet<DropReason> malformed_;
};

// ---------------------------------------------------------------------------------------
// Files (pcap_capture.cpp: libpcap). Several files are merged in timestamp order.
// ---------------------------------------------------------------------------------------
struct CaptureFileStatus {
    std::string path;
    std::uint32_t link_type = 0;
    std::uint64_t records = 0;
    std::string error;  // open or read error (the file's remaining records are lost)
};

class CaptureReader {
  public:
    CaptureReader();
    ~CaptureReader();
    CaptureReader(const CaptureReader&) = delete;
    CaptureReader& operator=(const CaptureReader&) = delete;
    // Opens every file (pcap or pcapng). A file that cannot be opened is reported in status()
    // and skipped; false only when none could be opened.
    bool open(const std::vector<std::string>& paths);
    // The next record across all files by timestamp (ties: file order). false at the end.
    // The record's bytes stay valid until the next call.
    bool next(CaptureRecord& r, std::size_t* file_index = nullptr);
    const std::vector<CaptureFileStatus>& status() const;
    std::uint64_t total_bytes() const;  // sum of file sizes (progress)
    std::uint64_t bytes_read() const;   // approximate position (progress)

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A pcap file written with the link type of the records given (nanosecond timestamps).
class CaptureWriter {
  public:
    CaptureWriter();
    ~CaptureWriter();
    CaptureWriter(const CaptureWriter&) = delete;
    CaptureWriter& operator=(const CaptureWriter&) = delete;
    base::Result<void> open(const std::string& path, std::uint32_t link_type);
    void write(const CaptureRecord& r);
    std::uint64_t written() const { return written_; }
    std::uint64_t link_mismatch() const { return link_mismatch_; }
    void close();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::uint64_t written_ = 0;
    std::uint64_t link_mismatch_ = 0;
};

}  // namespace sbc::dataplane

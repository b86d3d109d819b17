#pragma once
// dataplane/: L2-L4 parsing of frames (frame backends) and the SIP method peek.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/types.hpp"

namespace sbc::dataplane {

struct ParseOptions {
    // UDP checksums are verified in software unless the caller (a NIC offload) already did.
    bool verify_udp_checksum = true;
    // A loopback source is a bad source (RFC 1122 §3.2.1.3: it never appears outside a host),
    // except, with this set, when the destination is loopback too: a capture taken on a
    // loopback interface (replay) holds such packets, which never left their host.
    bool loopback_within_host = false;
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

}  // namespace sbc::dataplane

#pragma once
// HEP (Homer Encapsulation Protocol) version 3 wire vocabulary, shared by the capture decoder
// (replay of HEP feeds) and the live exporter: the packet magic and the generic chunk types of
// vendor 0. A HEPv3 packet is "HEP3", a 16-bit total length, then chunks of
// {u16 vendor, u16 type, u16 length including these 6 bytes, value}, all in network order.
#include <cstddef>
#include <cstdint>

namespace sbc::base::hep {

inline constexpr char kMagic[4] = {'H', 'E', 'P', '3'};
inline constexpr std::size_t kHeaderSize = 6;       // magic + total length
inline constexpr std::size_t kChunkHeaderSize = 6;  // vendor + type + length
inline constexpr std::uint16_t kVendorGeneric = 0;

enum Chunk : std::uint16_t {
    kIpFamily = 1,        // u8: 2 IPv4, 10 IPv6
    kIpProtocol = 2,      // u8: 17 UDP, 6 TCP
    kIpv4Src = 3,         // 4 bytes
    kIpv4Dst = 4,         // 4 bytes
    kIpv6Src = 5,         // 16 bytes
    kIpv6Dst = 6,         // 16 bytes
    kSrcPort = 7,         // u16
    kDstPort = 8,         // u16
    kTimeSec = 9,         // u32, seconds since the epoch
    kTimeUsec = 10,       // u32, microseconds
    kProtoType = 11,      // u8: 1 SIP
    kCaptureId = 12,      // u32, the capture agent's id
    kAuthKey = 14,        // string
    kPayload = 15,        // the captured message
    kCompressed = 16,     // a compressed payload
    kCorrelationId = 17,  // string tying messages together (the legs of a B2BUA call)
};

inline constexpr std::uint8_t kFamilyIpv4 = 2;
inline constexpr std::uint8_t kFamilyIpv6 = 10;
inline constexpr std::uint8_t kProtoSip = 1;

}  // namespace sbc::base::hep

// Parse an SDP body, rewrite addresses and ports, serialize and parse the result again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sip/sip.hpp"

using namespace sbc::sip;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    Sdp sdp;
    if (!sdp.parse(body).ok) return 0;
    std::size_t media = sdp.media().size();
    volatile std::size_t sink = sdp.rtcp_mux() + sdp.origin_address().size();
    for (std::size_t i = 0; i < media; ++i) sink = sink + sdp.connection_address(i).size();
    sdp.set_connection_address(size % 2 ? "203.0.113.7" : "2001:db8::7");
    for (std::size_t i = 0; i < media; ++i) {
        sdp.set_media_port(i, static_cast<std::uint16_t>(30000 + 2 * i));
        sdp.set_rtcp(i, static_cast<std::uint16_t>(30001 + 2 * i), "203.0.113.7");
    }
    std::string out = sdp.serialize();
    Sdp again;
    if (!again.parse(out).ok || again.media().size() != media) std::abort();
    for (std::size_t i = 0; i < media; ++i)
        if (again.media()[i].port != 30000 + 2 * i) std::abort();
    return 0;
}

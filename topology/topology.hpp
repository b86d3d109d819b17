#pragma once
// topology/: hides the inside of the network in SIP messages that leave it (RFC 3261 §16.6 for
// what a proxy may rewrite; RFC 5853 §3.1 for what an SBC's topology hiding removes). Pure
// functions over parsed messages, built on the sip/ editing API.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "sip/sip.hpp"

namespace sbc::topology {

struct HidingConfig {
    std::string external_host;  // the SBC's address as the outside sees it
    std::uint16_t external_port = 5060;
    std::string relay_address;  // media relay address written into SDP
    // Relay port for each m= line; lines past the end get relay_port + 2 * index.
    std::vector<std::uint16_t> relay_ports;
    std::uint16_t relay_port = 0;
    // Header fields removed outright (they reveal products and versions inside).
    std::vector<std::string> strip_headers = {"Server", "User-Agent"};
    // Hosts that are inside: addresses in these prefixes, or these names.
    std::vector<base::Prefix> internal_networks = default_internal_networks();
    std::vector<std::string> internal_hosts;

    // A policy's [topology] options (`sbc sip hide --policy FILE`).
    // false: Via, Route/Record-Route, Contact, From/To hosts and the Call-ID are left alone.
    bool hide_topology = true;
    // The whole Call-ID becomes a stable hash of it at the external host (without: only an
    // internal host part is replaced).
    bool replace_call_id = false;
    // Header names removed too, case-insensitive, '*' matching any run ("X-*").
    std::vector<std::string> strip_patterns;
    // Set: Server and User-Agent carry this value instead of being stripped ("" strips them).
    std::optional<std::string> server_header;
    // Responses: the reason phrase sent outside for a status (against user enumeration).
    std::map<std::uint16_t, std::string> reason_phrases;

    static std::vector<base::Prefix> default_internal_networks();  // RFC 1918, RFC 4193
};

struct HidingReport {
    std::size_t vias_removed = 0;
    std::size_t record_routes_removed = 0;
    std::size_t routes_removed = 0;
    std::size_t headers_stripped = 0;
    bool call_id_replaced = false;
    bool reason_replaced = false;
    bool via_added = false;
    bool sdp_rewritten = false;
};

class TopologyHider {
  public:
    explicit TopologyHider(HidingConfig config);
    // Rewrites a message going from inside to outside and returns its bytes: internal Via
    // values and Record-Route/Route entries removed (the SBC's own Via kept, one added to a
    // request that has none left), Contact pointing at the SBC, internal hosts in From/To and
    // Call-ID replaced, configured headers stripped, SDP connection/origin addresses and media
    // ports moved to the relay. `m` keeps its parse; its edit list is replaced.
    base::Result<std::string> to_external(sip::Message& m, HidingReport* report = nullptr) const;
    bool is_internal_host(std::string_view host) const;
    const HidingConfig& config() const { return config_; }

  private:
    void hide_routing(sip::Message& m, const std::string& ext_host, HidingReport& r) const;
    HidingConfig config_;
};

}  // namespace sbc::topology

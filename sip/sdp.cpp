// SDP (RFC 8866) parsing and the address/port rewrites an SBC makes.
#include <charconv>

#include "sip/lex.hpp"
#include "sip/sip.hpp"

namespace sbc::sip {

using namespace lex;

namespace {

// Splits a line value on SP into at most n fields; the last field keeps the rest.
std::size_t fields(std::string_view v, std::string_view* out, std::size_t n) {
    std::size_t k = 0, i = 0;
    while (k < n && i < v.size()) {
        while (i < v.size() && v[i] == ' ') ++i;
        if (i >= v.size()) break;
        if (k == n - 1) {
            out[k++] = v.substr(i);
            break;
        }
        std::size_t e = v.find(' ', i);
        if (e == std::string_view::npos) e = v.size();
        out[k++] = v.substr(i, e - i);
        i = e;
    }
    return k;
}

std::string number(std::uint16_t v) {
    char buf[8];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

std::string_view addrtype_for(std::string_view address) {
    return address.find(':') != std::string_view::npos ? "IP6" : "IP4";
}

}  // namespace

Status Sdp::parse(std::string_view body) {
    buf_ = body;
    version_ = origin_user_ = origin_addr_ = origin_addrtype_ = session_name_ = {};
    connections_.clear();
    media_.clear();
    edits_.clear();
    std::size_t i = 0;
    bool first = true;
    while (i < body.size()) {
        std::size_t nl = body.find('\n', i);
        std::size_t e = nl == std::string_view::npos ? body.size() : nl;
        std::string_view line = body.substr(i, e - i);
        i = nl == std::string_view::npos ? body.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        if (line.size() < 2 || line[1] != '=' || line[0] < 'a' || line[0] > 'z')
            return Status::fail(400, Reject::malformed_sdp_line);
        std::string_view v = line.substr(2);
        if (first && line[0] != 'v') return Status::fail(400, Reject::sdp_not_starting_with_v);
        first = false;
        switch (line[0]) {
            case 'v':
                version_ = v;
                if (v != "0") return Status::fail(400, Reject::unsupported_sdp_version);
                break;
            case 'o': {
                std::string_view f[6];
                if (fields(v, f, 6) != 6) return Status::fail(400, Reject::malformed_sdp_o_line);
                origin_user_ = f[0];
                origin_addrtype_ = f[4];
                origin_addr_ = f[5];
                break;
            }
            case 's':
                session_name_ = v;
                break;
            case 'c': {
                std::string_view f[3];
                if (fields(v, f, 3) != 3) return Status::fail(400, Reject::malformed_sdp_c_line);
                connections_.push_back(
                    SdpConnection{f[0], f[1], f[2], static_cast<int>(media_.size()) - 1});
                break;
            }
            case 'm': {
                std::string_view f[4];
                std::size_t n = fields(v, f, 4);
                if (n < 3) return Status::fail(400, Reject::malformed_sdp_m_line);
                SdpMedia m;
                m.line = v;
                m.media = f[0];
                std::string_view port = f[1];
                std::size_t slash = port.find('/');
                if (slash != std::string_view::npos) {
                    m.port_count = port.substr(slash + 1);
                    port = port.substr(0, slash);
                }
                std::uint64_t p = 0;
                if (!parse_uint(port, 65535, p))
                    return Status::fail(400, Reject::bad_sdp_media_port);
                m.port_text = port;
                m.port = static_cast<std::uint16_t>(p);
                m.proto = f[2];
                if (n == 4) m.formats = f[3];
                media_.push_back(m);
                break;
            }
            case 'a': {
                if (media_.empty()) break;
                SdpMedia& m = media_.back();
                if (v.substr(0, 5) == "rtcp:") {
                    // RFC 3605: a=rtcp:port [nettype addrtype address]
                    std::string_view f[4];
                    std::size_t n = fields(v.substr(5), f, 4);
                    std::uint64_t p = 0;
                    if (n < 1 || !parse_uint(f[0], 65535, p))
                        return Status::fail(400, Reject::malformed_a_rtcp);
                    m.has_rtcp = true;
                    m.rtcp_port_text = f[0];
                    m.rtcp_port = static_cast<std::uint16_t>(p);
                    if (n == 4) {
                        m.rtcp_nettype = f[1];
                        m.rtcp_addrtype = f[2];
                        m.rtcp_address = f[3];
                    } else if (n != 1) {
                        return Status::fail(400, Reject::malformed_a_rtcp);
                    }
                } else if (v == "rtcp-mux") {
                    m.rtcp_mux = true;
                } else if (v == "sendrecv" || v == "sendonly" || v == "recvonly" ||
                           v == "inactive") {
                    m.direction = v;
                }
                break;
            }
            default:
                break;
        }
    }
    if (version_.empty()) return Status::fail(400, Reject::sdp_without_v);
    return Status::success();
}

std::string_view Sdp::connection_address(std::size_t media_index) const {
    std::string_view session;
    for (const SdpConnection& c : connections_) {
        if (c.media == static_cast<int>(media_index)) return c.address;
        if (c.media == -1) session = c.address;
    }
    return session;
}

bool Sdp::rtcp_mux() const {
    for (const SdpMedia& m : media_)
        if (m.rtcp_mux) return true;
    return false;
}

namespace {
std::pair<std::size_t, std::size_t> range_in(std::string_view buf, std::string_view part) {
    std::size_t b = static_cast<std::size_t>(part.data() - buf.data());
    return {b, b + part.size()};
}
}  // namespace

void Sdp::set_connection_address(std::string_view address) {
    std::string_view type = addrtype_for(address);
    auto rewrite = [&](std::string_view addrtype, std::string_view addr) {
        if (addrtype != type) {
            auto [b, e] = range_in(buf_, addrtype);
            edits_.add(b, e, type);
        }
        auto [b, e] = range_in(buf_, addr);
        edits_.add(b, e, address);
    };
    for (const SdpConnection& c : connections_) rewrite(c.addrtype, c.address);
    if (!origin_addr_.empty()) rewrite(origin_addrtype_, origin_addr_);
}

void Sdp::set_origin_username(std::string_view username) {
    if (origin_user_.empty()) return;
    auto [b, e] = range_in(buf_, origin_user_);
    edits_.add(b, e, username);
}

void Sdp::set_session_name(std::string_view name) {
    if (session_name_.empty()) return;
    auto [b, e] = range_in(buf_, session_name_);
    edits_.add(b, e, name);
}

void Sdp::set_media_port(std::size_t media_index, std::uint16_t port) {
    if (media_index >= media_.size()) return;
    auto [b, e] = range_in(buf_, media_[media_index].port_text);
    edits_.add(b, e, number(port));
}

void Sdp::set_rtcp(std::size_t media_index, std::uint16_t port, std::string_view address) {
    if (media_index >= media_.size() || !media_[media_index].has_rtcp) return;
    const SdpMedia& m = media_[media_index];
    auto [b, e] = range_in(buf_, m.rtcp_port_text);
    edits_.add(b, e, number(port));
    if (!m.rtcp_address.empty() && !address.empty()) {
        if (m.rtcp_addrtype != addrtype_for(address)) {
            auto [tb, te] = range_in(buf_, m.rtcp_addrtype);
            edits_.add(tb, te, addrtype_for(address));
        }
        auto [ab, ae] = range_in(buf_, m.rtcp_address);
        edits_.add(ab, ae, address);
    }
}

}  // namespace sbc::sip

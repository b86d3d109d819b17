#pragma once
// sip/: a zero-copy parser and editor for SIP messages (RFC 3261) and SDP bodies (RFC 8866).
//
// A parsed Message is a set of std::string_view into one buffer that the Message either owns
// (parse_owned) or borrows (parse: the caller keeps the bytes alive). Edits are recorded as
// splices over that buffer and applied by serialize(): untouched bytes are copied, never
// re-rendered. A Message is meant to be reused: parse() keeps the capacity of its tables, so a
// worker that parses into the same Message allocates nothing in steady state.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.hpp"

namespace sbc::sip {

// Limits beyond which a message is refused (fixed memory on a path an attacker can feed).
struct Limits {
    std::size_t max_message_size = 65535;  // whole message, start line to end of body
    std::size_t max_header_bytes = 16384;  // start line and header fields, up to the empty line
    std::size_t max_headers = 128;         // header fields (lines, not comma-separated values)
    std::size_t max_line_length = 8192;    // one header field including its folded lines
    std::size_t max_uri_length = 2048;     // any one URI
};

// Why a message, URI or SDP body was refused: declared once, so each reason is also a metric
// label (name()) and a human text (description()).
#define SBC_SIP_REJECT_REASONS(X)                                                             \
    X(none, "accepted")                                                                       \
    X(unexpected_character_after_header_value, "unexpected character after header value")     \
    X(empty_header_parameter, "empty header parameter")                                       \
    X(unterminated_quoted_string, "unterminated quoted string")                               \
    X(empty_parameter_value, "empty parameter value")                                         \
    X(too_many_parameters, "too many parameters")                                             \
    X(empty_address, "empty address")                                                         \
    X(display_name_without_uri, "display name without <URI>")                                 \
    X(missing_closing_angle_bracket, "missing '>' after URI")                                 \
    X(unbracketed_uri_with_headers, "URI with headers must be enclosed in <>")                \
    X(malformed_via_protocol, "malformed Via protocol")                                       \
    X(malformed_via_transport, "malformed Via transport")                                     \
    X(malformed_via_sent_by, "malformed Via sent-by")                                         \
    X(malformed_ipv6_reference_in_via, "malformed IPv6 reference in Via")                     \
    X(via_without_host, "Via without host")                                                   \
    X(bad_via_port, "bad Via port")                                                           \
    X(malformed_credentials, "malformed credentials")                                         \
    X(message_too_large, "message too large")                                                 \
    X(empty_message, "empty message")                                                         \
    X(no_line_end_after_start_line, "no line end after start line")                           \
    X(start_line_too_long, "start line too long")                                             \
    X(malformed_status_line, "malformed status line")                                         \
    X(malformed_sip_version, "malformed SIP version")                                         \
    X(unsupported_sip_version, "unsupported SIP version")                                     \
    X(status_code_not_three_digits, "status code is not three digits")                        \
    X(status_code_out_of_range, "status code out of range")                                   \
    X(malformed_request_line, "malformed request line")                                       \
    X(invalid_character_in_method, "invalid character in method")                             \
    X(malformed_request_version, "malformed request line (SIP version)")                      \
    X(sip_version_not_supported, "SIP version not supported")                                 \
    X(request_uri_too_long, "Request-URI too long")                                           \
    X(bracketed_request_uri, "Request-URI enclosed in <>")                                    \
    X(headers_in_request_uri, "headers in Request-URI")                                       \
    X(unterminated_header_section, "header section not terminated by an empty line")          \
    X(stray_continuation_line, "continuation line without a header field")                    \
    X(too_many_header_fields, "too many header fields")                                       \
    X(malformed_header_field, "malformed header field")                                       \
    X(header_field_too_long, "header field too long")                                         \
    X(header_section_too_large, "header section too large")                                   \
    X(content_length_exceeds_message, "Content-Length larger than the message")               \
    X(method_not_implemented, "method not implemented")                                       \
    X(cseq_method_mismatch, "CSeq method does not match the request method")                  \
    X(malformed_via, "malformed Via")                                                         \
    X(malformed_contact, "malformed Contact *")                                               \
    X(malformed_address_list, "malformed address list")                                       \
    X(malformed_from_to, "malformed From/To")                                                 \
    X(empty_call_id, "empty Call-ID")                                                         \
    X(invalid_call_id, "invalid Call-ID")                                                     \
    X(bad_cseq_number, "CSeq number invalid or larger than 2^32-1")                           \
    X(malformed_cseq, "malformed CSeq")                                                       \
    X(malformed_cseq_method, "malformed CSeq method")                                         \
    X(bad_max_forwards, "Max-Forwards not in 0-255")                                          \
    X(bad_content_length, "Content-Length is not a valid number")                             \
    X(malformed_content_type, "malformed Content-Type")                                       \
    X(date_not_in_gmt, "Date not in GMT")                                                     \
    X(missing_required_header_field, "missing required header field")                         \
    X(single_value_header_field_repeated, "single-value header field repeated")               \
    X(conflicting_content_length_values, "conflicting Content-Length values")                 \
    X(via_branch_without_transaction_identifier, "Via branch without transaction identifier") \
    X(unsupported_uri_scheme, "unsupported URI scheme")                                       \
    X(unsupported_extension, "unsupported extension")                                         \
    X(malformed_sdp_line, "malformed SDP line")                                               \
    X(sdp_not_starting_with_v, "SDP does not start with v=")                                  \
    X(unsupported_sdp_version, "unsupported SDP version")                                     \
    X(malformed_sdp_o_line, "malformed SDP o= line")                                          \
    X(malformed_sdp_c_line, "malformed SDP c= line")                                          \
    X(malformed_sdp_m_line, "malformed SDP m= line")                                          \
    X(bad_sdp_media_port, "bad SDP media port")                                               \
    X(malformed_a_rtcp, "malformed a=rtcp")                                                   \
    X(sdp_without_v, "SDP without v=")                                                        \
    X(uri_too_long, "URI too long")                                                           \
    X(uri_without_scheme, "URI without scheme")                                               \
    X(malformed_uri_scheme, "malformed URI scheme")                                           \
    X(empty_uri, "empty URI")                                                                 \
    X(invalid_character_in_uri, "invalid character in URI")                                   \
    X(empty_telephone_number, "empty telephone number")                                       \
    X(empty_uri_parameter, "empty URI parameter")                                             \
    X(empty_uri_user, "empty URI user")                                                       \
    X(malformed_ipv6_reference, "malformed IPv6 reference")                                   \
    X(uri_without_host, "URI without host")                                                   \
    X(bad_uri_port, "bad URI port")                                                           \
    X(invalid_character_in_uri_host, "invalid character in URI host")                         \
    X(empty_uri_headers, "empty URI headers")
SBC_DECLARE_COUNTER_LIST(Reject, SBC_SIP_REJECT_REASONS)

// The outcome of a parse or a check. On failure `code` says why (`reason` is its text) and
// `sip_status` is the status a server would answer (400, 416, 501, 505, ...), or 0 when the
// message must just be dropped (a malformed response, RFC 4475 §3.1.2.5 and §3.1.2.19).
struct Status {
    bool ok = true;
    int sip_status = 0;
    Reject code = Reject::none;
    std::string_view reason;
    explicit operator bool() const { return ok; }
    static Status success() { return {}; }
    static Status fail(int status, Reject why) { return {false, status, why, description(why)}; }
};

enum class Method : std::uint8_t {
    unknown,
    invite,
    ack,
    bye,
    cancel,
    options,
    register_,
    prack,
    subscribe,
    notify,
    publish,
    info,
    refer,
    message,
    update,
};
Method method_from_name(std::string_view name);  // case-sensitive (RFC 3261 §7.1)

// Header fields the parser knows. Compact forms (RFC 3261 §7.3.3 and the IANA registry) map
// to the same id as the long name.
enum class HeaderId : std::uint8_t {
    other,
    via,
    from,
    to,
    call_id,
    cseq,
    contact,
    max_forwards,
    content_length,
    content_type,
    content_encoding,
    route,
    record_route,
    authorization,
    proxy_authorization,
    www_authenticate,
    proxy_authenticate,
    user_agent,
    server,
    expires,
    subject,
    supported,
    require,
    proxy_require,
    allow,
    accept,
    date,
    event,
    allow_events,
    refer_to,
    referred_by,
    session_expires,
    accept_contact,
    reject_contact,
    request_disposition,
    identity,
    identity_info,
};
HeaderId header_id_from_name(std::string_view name);  // case-insensitive, compact forms too
std::string_view canonical_header_name(HeaderId id);  // "" for HeaderId::other

struct Param {
    std::string_view name;
    std::string_view value;  // raw (quotes kept); empty when absent
    bool has_value = false;
};
// A run of parameters in the Message's parameter pool (see Message::params).
struct ParamRange {
    std::uint16_t begin = 0;
    std::uint16_t count = 0;
};
// The first parameter named `name` (case-insensitive), or nullptr.
const Param* find_param(std::span<const Param> params, std::string_view name);

enum class UriScheme : std::uint8_t { sip, sips, tel, other };

// RFC 3261 §19.1 SIP/SIPS URI, RFC 3966 tel URI; any other scheme is kept as an absolute URI
// (scheme and the opaque rest). Escapes are kept; unescape() decodes on demand.
struct Uri {
    std::string_view raw;
    std::string_view scheme;
    UriScheme kind = UriScheme::other;
    std::string_view user;      // sip/sips: userinfo user (may contain ';'), tel: the number
    std::string_view password;  // sip/sips
    std::string_view host;      // sip/sips; an IPv6 reference keeps its brackets
    std::string_view port_text;
    std::string_view params_text;   // after the first ';' of the host part (without it)
    std::string_view headers_text;  // after '?' (without it)
    std::string_view opaque;        // other schemes: everything after "scheme:"
    std::uint16_t port = 0;
    bool has_user = false;
    bool has_password = false;
    bool has_port = false;
    bool ipv6 = false;
    ParamRange params;
};

// name-addr / addr-spec with header parameters (From, To, Contact, Route, Record-Route, ...).
struct NameAddr {
    std::string_view raw;           // the whole value
    std::string_view display_name;  // raw: quoted strings keep their quotes (see unquote())
    bool display_quoted = false;
    bool bracketed = false;  // the URI was enclosed in <>
    bool star = false;       // Contact: *
    Uri uri;
    std::string_view tag;
    std::string_view expires;  // Contact expires parameter (raw)
    std::string_view q;        // Contact q parameter (raw)
    ParamRange params;         // header parameters (not URI parameters)
    std::uint16_t header = 0;  // index of the header field it came from
};

// RFC 3261 §20.42 Via, with RFC 3581 rport.
struct Via {
    std::string_view raw;
    std::string_view protocol_name;     // "SIP"
    std::string_view protocol_version;  // "2.0"
    std::string_view transport;         // "UDP", "TCP", "TLS", "SCTP", "WS", ... (any token)
    std::string_view host;              // IPv6 reference keeps its brackets
    std::string_view port_text;
    std::string_view branch;
    std::string_view received;
    std::string_view maddr;
    std::string_view rport_text;  // empty when rport has no value
    std::uint16_t port = 0;
    bool has_port = false;
    bool has_rport = false;
    bool has_received = false;
    ParamRange params;  // every parameter, in order (branch, received, rport included)
    std::uint16_t header = 0;
};

struct CSeq {
    std::uint32_t number = 0;  // RFC 3261 §8.1.1.5: less than 2^31 when generated, up to 2^32-1
    std::string_view method;
};

// RFC 3261 §20.7 / §25.1 credentials. Values are unquoted views (quoted-pairs are kept).
struct Credentials {
    std::string_view raw;
    std::string_view scheme;
    std::string_view username, realm, nonce, uri, response, algorithm, cnonce, opaque, qop, nc;
    ParamRange params;
};

struct Header {
    std::string_view name;   // as written (any case, compact or long)
    std::string_view value;  // trimmed; may contain folds (CRLF + WSP), see unfold()
    std::string_view line;   // the whole field, from the name to after its final line end
    HeaderId id = HeaderId::other;
};

// Percent-decoding (RFC 3986 §2.1), one level only: "%2541" becomes "%41", never "A". A '%'
// not followed by two hex digits is kept as is.
std::string unescape(std::string_view text);
// A quoted-string's content with its quoted-pairs resolved; text that is not quoted is returned
// as is.
std::string unquote(std::string_view text);
// Replaces each fold (CRLF or LF followed by whitespace) and the whitespace around it with one SP
// (RFC 3261 §7.3.1).
std::string unfold(std::string_view text);
// Splits a comma-separated header value, ignoring commas in quoted strings and in <...>.
std::vector<std::string_view> split_list(std::string_view value);

// Parses one URI on its own (pool receives its parameters).
Status parse_uri(std::string_view text, Uri& out, std::vector<Param>& pool,
                 const Limits& limits = {});

// A list of replacements over one buffer, applied in offset order. Overlapping edits: the one
// that starts first wins and the later ones inside its range are dropped (so removing a header
// after editing inside it just removes it).
class SpliceList {
  public:
    void clear() {
        splices_.clear();
        text_.clear();
    }
    bool empty() const { return splices_.empty(); }
    // Whether an edit replaces the byte at pos.
    bool covers(std::size_t pos) const {
        for (const Splice& s : splices_)
            if (s.begin <= pos && pos < s.end) return true;
        return false;
    }
    // Replaces [begin, end) of the buffer with text.
    void add(std::size_t begin, std::size_t end, std::string_view text);
    std::string apply(std::string_view buffer) const;

  private:
    struct Splice {
        std::size_t begin, end, text_begin, text_len, seq;
    };
    std::vector<Splice> splices_;
    std::string text_;
};

class Message {
  public:
    Message() = default;
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;
    Message(Message&&) = default;
    Message& operator=(Message&&) = default;

    // Parses one datagram (RFC 3261 §18.3: bytes after Content-Length are ignored; without
    // Content-Length the body is the rest of the datagram). The bytes are borrowed: they must
    // outlive the Message's use.
    Status parse(std::string_view datagram, const Limits& limits = {});
    // Same, but the Message keeps its own copy of the bytes.
    Status parse_owned(std::string_view datagram, const Limits& limits = {});

    // Start line.
    bool is_request() const { return is_request_; }
    Method method() const { return method_; }
    std::string_view method_name() const { return method_name_; }
    const Uri& request_uri() const { return request_uri_; }
    std::string_view version() const { return version_; }
    int status_code() const { return status_code_; }
    std::string_view reason_phrase() const { return reason_; }
    std::string_view start_line() const { return start_line_; }

    // Header fields in order; typed views of the ones the parser knows.
    std::span<const Header> headers() const { return headers_; }
    const Header* find(HeaderId id) const;
    const Header* find(std::string_view name) const;  // case-insensitive, compact forms too
    std::size_t count(HeaderId id) const;
    std::span<const Via> vias() const { return vias_; }
    const NameAddr* from() const { return has_from_ ? &from_ : nullptr; }
    const NameAddr* to() const { return has_to_ ? &to_ : nullptr; }
    std::span<const NameAddr> contacts() const { return contacts_; }
    bool contact_star() const { return contact_star_; }
    std::span<const NameAddr> routes() const { return routes_; }
    std::span<const NameAddr> record_routes() const { return record_routes_; }
    const CSeq* cseq() const { return has_cseq_ ? &cseq_ : nullptr; }
    std::string_view call_id() const { return call_id_; }
    std::optional<std::uint8_t> max_forwards() const { return max_forwards_; }
    std::optional<std::uint64_t> content_length() const { return content_length_; }
    bool content_length_conflict() const { return content_length_conflict_; }
    // From, To, Call-ID, CSeq, Max-Forwards or Content-Type seen more than once (RFC 4475
    // §3.3.8); the typed accessors return the first.
    bool repeated_single_value_field() const { return header_dups_ != 0; }
    std::string_view content_type() const { return content_type_; }
    const Credentials* authorization() const { return has_auth_ ? &auth_ : nullptr; }
    const Credentials* proxy_authorization() const {
        return has_proxy_auth_ ? &proxy_auth_ : nullptr;
    }
    std::string_view user_agent() const { return user_agent_; }
    std::string_view server() const { return server_; }
    // Absent when missing or out of range (RFC 4475 §3.1.2.4: treated as absent).
    std::optional<std::uint32_t> expires() const { return expires_; }
    std::span<const Param> params(ParamRange r) const {
        return {params_.data() + r.begin, r.count};
    }
    std::string_view body() const { return body_; }
    // The message's own bytes (start line to end of body; trailing datagram bytes excluded).
    std::string_view bytes() const { return bytes_; }

    // Editing. Views passed in must come from this Message. Nothing changes until serialize().
    void replace(std::string_view region, std::string_view text);
    void insert_before(std::string_view region, std::string_view text);
    void insert_after(std::string_view region, std::string_view text);
    void remove_header(const Header& h);
    std::size_t remove_headers(HeaderId id);
    std::size_t remove_headers(std::string_view name);
    void replace_header_value(const Header& h, std::string_view value);
    void add_header(std::string_view name, std::string_view value);        // after the last one
    void add_header_first(std::string_view name, std::string_view value);  // after start line
    // Removes one value of a comma-separated header field (the whole field if it is the only).
    void remove_value(std::uint16_t header_index, std::string_view value_raw);
    void remove_via(const Via& v) { remove_value(v.header, v.raw); }
    void remove_name_addr(const NameAddr& a) { remove_value(a.header, a.raw); }
    void set_uri_host(const Uri& uri, std::string_view host);
    void set_uri_port(const Uri& uri, std::uint16_t port);  // 0 removes the port
    void set_uri_user(const Uri& uri, std::string_view user);
    // RFC 3581 §4: received and rport filled in by the server.
    void set_via_received(const Via& v, std::string_view address);
    void set_via_rport(const Via& v, std::uint16_t port);
    void set_body(std::string_view body);
    void clear_edits();
    bool edited() const { return !edits_.empty() || body_replaced_; }
    // The message with every edit applied and a Content-Length that matches the body.
    std::string serialize() const;

  private:
    void reset();
    std::size_t offset_of(const char* p) const { return static_cast<std::size_t>(p - buf_.data()); }
    Status parse_impl(const Limits& limits);
    Status parse_header_value(Header& h, std::uint16_t index, const Limits& limits);

    std::unique_ptr<char[]> owned_;
    std::size_t owned_cap_ = 0;
    std::string_view buf_;
    std::string_view bytes_;
    std::string_view start_line_;
    bool is_request_ = false;
    Method method_ = Method::unknown;
    std::string_view method_name_;
    Uri request_uri_;
    std::string_view version_;
    int status_code_ = 0;
    std::string_view reason_;
    std::vector<Header> headers_;
    std::vector<Via> vias_;
    std::vector<NameAddr> contacts_, routes_, record_routes_;
    std::vector<Param> params_;
    NameAddr from_, to_;
    bool has_from_ = false, has_to_ = false, contact_star_ = false;
    CSeq cseq_;
    bool has_cseq_ = false;
    std::string_view call_id_;
    std::optional<std::uint8_t> max_forwards_;
    std::optional<std::uint64_t> content_length_;
    bool content_length_conflict_ = false;
    std::string_view content_type_;
    Credentials auth_, proxy_auth_;
    bool has_auth_ = false, has_proxy_auth_ = false;
    std::string_view user_agent_, server_;
    std::optional<std::uint32_t> expires_;
    std::string_view headers_end_;  // the empty line ending the header section
    std::string_view body_;
    std::size_t header_dups_ = 0;  // bitmask of single-value headers seen twice
    SpliceList edits_;
    std::string new_body_;
    bool body_replaced_ = false;
};

// Semantic checks a server makes after a successful parse (RFC 3261 §8.2, §16.3; RFC 4475
// §3.2-3.3): missing or repeated single-value headers (400), branch without identifier (400),
// conflicting Content-Length (400), unsupported Request-URI scheme (416), Require /
// Proxy-Require tags not in `supported` (420).
struct CheckOptions {
    std::vector<std::string> supported_extensions;
};
Status check_request(const Message& m, const CheckOptions& options = {});

// RFC 3261 §8.2.6 response to a request: the status line, then the request's Via fields (all,
// in order), From, To, Call-ID and CSeq; nothing else of the request comes back. Used for every
// response the SBC itself generates (stateless refusals and the transaction layer's answers).
struct ResponseOptions {
    // Added to To when the request's To has no tag and the status is above 100 (§8.2.6.2). The
    // same request must get the same tag on every retransmission.
    std::string_view to_tag;
    // The request's source: the top Via gets received= when its sent-by differs (§18.2.1), and
    // received= and rport= when it asked for rport (RFC 3581 §4). Empty address: untouched.
    std::string_view source_address;
    std::uint16_t source_port = 0;
    // Extra header fields, in order ("Name", "value"), after the copied ones.
    std::span<const std::pair<std::string_view, std::string_view>> headers;
    std::string_view content_type;  // set with a body
    std::string_view body;
};
std::string build_response(const Message& request, int status, std::string_view reason,
                           const ResponseOptions& options = {});
// The reason phrase RFC 3261 §21 (and its extensions) gives a status code; "" when unknown.
std::string_view default_reason(int status);
// RFC 3261 §8.2.6 for a server that keeps no state of the request: build_response with a To tag
// derived from what identifies the request (Call-ID, From tag, top Via branch), so that every
// retransmission gets the same one (§8.2.6.2); received/rport for `source` (RFC 3581 §4); and a
// Retry-After when `retry_after` (seconds) is not 0. No Server header: nothing that names a
// product a scanner could look up.
std::string stateless_response(const Message& request, int status, std::string_view reason,
                               const base::Endpoint& source, std::uint32_t retry_after = 0);

// Frames messages on a stream transport (RFC 3261 §18.3) fed with arbitrary chunks.
class StreamFramer {
  public:
    enum class Kind { need_more, message, ping, error };
    struct Frame {
        Kind kind = Kind::need_more;
        std::string_view bytes;  // the message (valid until the next feed()/next())
        std::string_view error;  // static text
    };
    // RFC 5626 §3.5.1: a double-CRLF ping is answered with a single-CRLF pong.
    static constexpr std::string_view kPong = "\r\n";

    explicit StreamFramer(const Limits& limits = {}) : limits_(limits) {}
    void feed(std::string_view chunk);
    // The next event. After an error the framer stays failed: the connection must be closed.
    Frame next();
    std::size_t buffered() const { return buf_.size() - pos_; }
    bool failed() const { return failed_; }

  private:
    Limits limits_;
    std::string buf_;
    std::size_t pos_ = 0;
    bool failed_ = false;
    std::string_view error_;
};

// SDP (RFC 8866) session description with the edits an SBC makes: connection and origin
// addresses, media ports and RFC 3605 a=rtcp. Everything else stays byte-exact.
struct SdpConnection {
    std::string_view nettype, addrtype, address;  // address may carry /ttl/count
    int media = -1;                               // -1: session level
};
struct SdpMedia {
    std::string_view line;  // the m= value
    std::string_view media, port_text, proto, formats;
    std::uint16_t port = 0;
    std::string_view port_count;  // after '/', if any
    bool has_rtcp = false;
    std::string_view rtcp_port_text;
    std::uint16_t rtcp_port = 0;
    std::string_view rtcp_nettype, rtcp_addrtype, rtcp_address;  // empty when a=rtcp has no address
    bool rtcp_mux = false;                                       // RFC 5761 a=rtcp-mux
    std::string_view direction;                                  // sendrecv/sendonly/...
};

class Sdp {
  public:
    Status parse(std::string_view body);
    std::string_view version() const { return version_; }
    std::string_view origin_username() const { return origin_user_; }
    std::string_view origin_address() const { return origin_addr_; }
    std::string_view origin_addrtype() const { return origin_addrtype_; }
    std::string_view session_name() const { return session_name_; }
    std::span<const SdpConnection> connections() const { return connections_; }
    std::span<const SdpMedia> media() const { return media_; }
    // The connection address that applies to media i (its own c= or the session one).
    std::string_view connection_address(std::size_t media_index) const;
    bool rtcp_mux() const;  // any media has a=rtcp-mux
    std::string_view bytes() const { return buf_; }

    // Rewrites every c= address and the o= address (and their address type: IP4/IP6).
    void set_connection_address(std::string_view address);
    void set_media_port(std::size_t media_index, std::uint16_t port);
    // The o= username and the s= text (they often name a product or a host).
    void set_origin_username(std::string_view username);
    void set_session_name(std::string_view name);
    // Rewrites an existing a=rtcp (port, and address when it has one).
    void set_rtcp(std::size_t media_index, std::uint16_t port, std::string_view address);
    void clear_edits() { edits_.clear(); }
    std::string serialize() const { return edits_.apply(buf_); }

  private:
    std::string_view buf_;
    std::string_view version_, origin_user_, origin_addr_, origin_addrtype_, session_name_;
    std::vector<SdpConnection> connections_;
    std::vector<SdpMedia> media_;
    SpliceList edits_;
};

}  // namespace sbc::sip

// Message parsing: start line, header fields and the typed values the SBC relies on.
#include <array>
#include <cstring>

#include "sip/lex.hpp"
#include "sip/sip.hpp"

namespace sbc::sip {

using namespace lex;

namespace {

struct NamedMethod {
    std::string_view name;
    Method method;
};
constexpr NamedMethod kMethods[] = {
    {"INVITE", Method::invite},   {"ACK", Method::ack},
    {"BYE", Method::bye},         {"CANCEL", Method::cancel},
    {"OPTIONS", Method::options}, {"REGISTER", Method::register_},
    {"PRACK", Method::prack},     {"SUBSCRIBE", Method::subscribe},
    {"NOTIFY", Method::notify},   {"PUBLISH", Method::publish},
    {"INFO", Method::info},       {"REFER", Method::refer},
    {"MESSAGE", Method::message}, {"UPDATE", Method::update},
};

struct NamedHeader {
    std::string_view name;
    HeaderId id;
};
constexpr NamedHeader kHeaders[] = {
    {"Via", HeaderId::via},
    {"From", HeaderId::from},
    {"To", HeaderId::to},
    {"Call-ID", HeaderId::call_id},
    {"CSeq", HeaderId::cseq},
    {"Contact", HeaderId::contact},
    {"Max-Forwards", HeaderId::max_forwards},
    {"Content-Length", HeaderId::content_length},
    {"Content-Type", HeaderId::content_type},
    {"Content-Encoding", HeaderId::content_encoding},
    {"Route", HeaderId::route},
    {"Record-Route", HeaderId::record_route},
    {"Authorization", HeaderId::authorization},
    {"Proxy-Authorization", HeaderId::proxy_authorization},
    {"WWW-Authenticate", HeaderId::www_authenticate},
    {"Proxy-Authenticate", HeaderId::proxy_authenticate},
    {"User-Agent", HeaderId::user_agent},
    {"Server", HeaderId::server},
    {"Expires", HeaderId::expires},
    {"Subject", HeaderId::subject},
    {"Supported", HeaderId::supported},
    {"Require", HeaderId::require},
    {"Proxy-Require", HeaderId::proxy_require},
    {"Allow", HeaderId::allow},
    {"Accept", HeaderId::accept},
    {"Date", HeaderId::date},
    {"Event", HeaderId::event},
    {"Allow-Events", HeaderId::allow_events},
    {"Refer-To", HeaderId::refer_to},
    {"Referred-By", HeaderId::referred_by},
    {"Session-Expires", HeaderId::session_expires},
    {"Accept-Contact", HeaderId::accept_contact},
    {"Reject-Contact", HeaderId::reject_contact},
    {"Request-Disposition", HeaderId::request_disposition},
    {"Identity", HeaderId::identity},
    {"Identity-Info", HeaderId::identity_info},
};

// RFC 3261 §7.3.3 and the IANA "Header Fields" registry compact forms.
constexpr HeaderId compact_form(char c) {
    switch (c) {
        case 'a':
            return HeaderId::accept_contact;
        case 'b':
            return HeaderId::referred_by;
        case 'c':
            return HeaderId::content_type;
        case 'd':
            return HeaderId::request_disposition;
        case 'e':
            return HeaderId::content_encoding;
        case 'f':
            return HeaderId::from;
        case 'i':
            return HeaderId::call_id;
        case 'j':
            return HeaderId::reject_contact;
        case 'k':
            return HeaderId::supported;
        case 'l':
            return HeaderId::content_length;
        case 'm':
            return HeaderId::contact;
        case 'n':
            return HeaderId::identity_info;
        case 'o':
            return HeaderId::event;
        case 'r':
            return HeaderId::refer_to;
        case 's':
            return HeaderId::subject;
        case 't':
            return HeaderId::to;
        case 'u':
            return HeaderId::allow_events;
        case 'v':
            return HeaderId::via;
        case 'x':
            return HeaderId::session_expires;
        case 'y':
            return HeaderId::identity;
        default:
            return HeaderId::other;
    }
}

constexpr std::size_t bit(HeaderId id) {
    return std::size_t{1} << static_cast<unsigned>(id);
}

bool is_valid_version(std::string_view v) {
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (RFC 3261 §7.1)
    if (v.size() < 7 || !iequals(v.substr(0, 4), "SIP/")) return false;
    std::size_t i = 4, b = i;
    while (i < v.size() && is_digit(v[i])) ++i;
    if (i == b || i >= v.size() || v[i] != '.') return false;
    b = ++i;
    while (i < v.size() && is_digit(v[i])) ++i;
    return i > b && i == v.size();
}

std::string_view view(const char* b, const char* e) {
    return {b, static_cast<std::size_t>(e - b)};
}

// Header parameters after a value: *( SEMI generic-param ), SEMI = SWS ";" SWS.
// Empty parameters are refused (RFC 4475 §3.1.2.1).
Status parse_params(Cursor& c, std::vector<Param>& pool, ParamRange& range, bool list) {
    range.begin = static_cast<std::uint16_t>(pool.size());
    range.count = 0;
    for (;;) {
        c.skip_ws();
        if (c.done() || (list && c.peek() == ',')) return Status::success();
        if (!c.eat(';')) return Status::fail(400, Reject::unexpected_character_after_header_value);
        c.skip_ws();
        Param p;
        p.name = c.token();
        if (p.name.empty()) return Status::fail(400, Reject::empty_header_parameter);
        c.skip_ws();
        if (c.eat('=')) {
            c.skip_ws();
            p.has_value = true;
            if (!c.done() && c.peek() == '"') {
                if (!c.quoted(p.value))
                    return Status::fail(400, Reject::unterminated_quoted_string);
            } else {
                const char* b = c.p;
                while (!c.done() && (is_token(*c.p) || *c.p == ':' || *c.p == '[' || *c.p == ']'))
                    ++c.p;
                p.value = view(b, c.p);
                if (p.value.empty()) return Status::fail(400, Reject::empty_parameter_value);
            }
        }
        if (pool.size() >= 0xffff) return Status::fail(400, Reject::too_many_parameters);
        pool.push_back(p);
        ++range.count;
    }
}

// name-addr / addr-spec followed by header parameters (RFC 3261 §20.10, §20.20, §20.39).
Status parse_name_addr(Cursor& c, NameAddr& a, std::vector<Param>& pool, const Limits& limits,
                       bool list) {
    c.skip_ws();
    const char* start = c.p;
    if (c.done()) return Status::fail(400, Reject::empty_address);
    if (c.peek() == '"') {
        if (!c.quoted(a.display_name)) return Status::fail(400, Reject::unterminated_quoted_string);
        a.display_quoted = true;
        c.skip_ws();
        if (c.done() || c.peek() != '<') return Status::fail(400, Reject::display_name_without_uri);
    } else if (c.peek() != '<') {
        // A token display name is followed by '<'; otherwise this is an addr-spec. RFC 4475
        // §3.1.1.6: no LWS is needed before '<'.
        const char* q = c.p;
        while (q < c.end && (is_token(*q) || is_ws(*q))) ++q;
        if (q < c.end && *q == '<') {
            a.display_name = trim(view(c.p, q));
            c.p = q;
        }
    }
    std::string_view uri_text;
    if (c.eat('<')) {
        const char* gt = static_cast<const char*>(std::memchr(c.p, '>', c.end - c.p));
        if (!gt) return Status::fail(400, Reject::missing_closing_angle_bracket);
        uri_text = view(c.p, gt);
        c.p = gt + 1;
        a.bracketed = true;
    } else {
        // addr-spec: the URI ends at whitespace, ';' (header parameters) or ',' (next value).
        const char* b = c.p;
        while (!c.done() && !is_ws(*c.p) && *c.p != ';' && !(list && *c.p == ',')) ++c.p;
        uri_text = view(b, c.p);
        // RFC 3261 §20: a URI with ',', ';' or '?' must be enclosed in <> (RFC 4475 §3.1.2.13).
        if (uri_text.find('?') != std::string_view::npos)
            return Status::fail(400, Reject::unbracketed_uri_with_headers);
    }
    if (Status s = parse_fresh_uri(uri_text, a.uri, pool, limits); !s) return s;
    if (Status s = parse_params(c, pool, a.params, list); !s) return s;
    const char* e = c.p;
    while (e > start && is_ws(e[-1])) --e;
    a.raw = view(start, e);
    for (const Param& p : std::span<const Param>(pool.data() + a.params.begin, a.params.count)) {
        if (iequals(p.name, "tag"))
            a.tag = p.value;
        else if (iequals(p.name, "expires"))
            a.expires = p.value;
        else if (iequals(p.name, "q"))
            a.q = p.value;
    }
    return Status::success();
}

// One via-parm (RFC 3261 §20.42): sent-protocol LWS sent-by *( SEMI via-params ).
Status parse_via(Cursor& c, Via& v, std::vector<Param>& pool) {
    c.skip_ws();
    const char* start = c.p;
    v.protocol_name = c.token();
    c.skip_ws();
    if (v.protocol_name.empty() || !c.eat('/'))
        return Status::fail(400, Reject::malformed_via_protocol);
    c.skip_ws();
    v.protocol_version = c.token();
    c.skip_ws();
    if (v.protocol_version.empty() || !c.eat('/'))
        return Status::fail(400, Reject::malformed_via_protocol);
    c.skip_ws();
    v.transport = c.token();
    if (v.transport.empty()) return Status::fail(400, Reject::malformed_via_transport);
    if (c.done() || !is_ws(c.peek())) return Status::fail(400, Reject::malformed_via_sent_by);
    c.skip_ws();
    const char* hb = c.p;
    if (c.eat('[')) {
        while (!c.done() && (is(*c.p, kHex) || *c.p == ':' || *c.p == '.')) ++c.p;
        if (!c.eat(']')) return Status::fail(400, Reject::malformed_ipv6_reference_in_via);
    } else {
        while (!c.done() && is(*c.p, kHost)) ++c.p;
    }
    v.host = view(hb, c.p);
    if (v.host.empty()) return Status::fail(400, Reject::via_without_host);
    const char* save = c.p;
    c.skip_ws();
    if (c.eat(':')) {
        c.skip_ws();
        const char* pb = c.p;
        while (!c.done() && is_digit(*c.p)) ++c.p;
        v.port_text = view(pb, c.p);
        std::uint64_t port = 0;
        if (!parse_uint(v.port_text, 65535, port)) return Status::fail(400, Reject::bad_via_port);
        v.port = static_cast<std::uint16_t>(port);
        v.has_port = true;
    } else {
        c.p = save;
    }
    if (Status s = parse_params(c, pool, v.params, true); !s) return s;
    const char* e = c.p;
    while (e > start && is_ws(e[-1])) --e;
    v.raw = view(start, e);
    for (const Param& p : std::span<const Param>(pool.data() + v.params.begin, v.params.count)) {
        if (iequals(p.name, "branch")) {
            v.branch = p.value;
        } else if (iequals(p.name, "received")) {
            v.received = p.value;
            v.has_received = true;
        } else if (iequals(p.name, "rport")) {
            v.has_rport = true;
            v.rport_text = p.value;
        } else if (iequals(p.name, "maddr")) {
            v.maddr = p.value;
        }
    }
    return Status::success();
}

std::string_view strip_quotes(std::string_view v) {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
    return v;
}

// credentials = auth-scheme LWS auth-param *(COMMA auth-param) (RFC 3261 §25.1, RFC 7235).
Status parse_credentials(Cursor& c, Credentials& cr, std::vector<Param>& pool) {
    c.skip_ws();
    cr.raw = view(c.p, c.end);
    cr.scheme = c.token();
    if (cr.scheme.empty()) return Status::fail(400, Reject::malformed_credentials);
    cr.params.begin = static_cast<std::uint16_t>(pool.size());
    cr.params.count = 0;
    for (;;) {
        c.skip_ws();
        if (c.done()) break;
        Param p;
        p.name = c.token();
        if (p.name.empty()) return Status::fail(400, Reject::malformed_credentials);
        c.skip_ws();
        if (c.eat('=')) {
            c.skip_ws();
            p.has_value = true;
            if (!c.done() && c.peek() == '"') {
                if (!c.quoted(p.value))
                    return Status::fail(400, Reject::unterminated_quoted_string);
            } else {
                const char* b = c.p;
                while (!c.done() && !is_ws(*c.p) && *c.p != ',') ++c.p;
                p.value = view(b, c.p);
            }
        }
        if (pool.size() >= 0xffff) return Status::fail(400, Reject::too_many_parameters);
        pool.push_back(p);
        ++cr.params.count;
        c.skip_ws();
        if (!c.done() && !c.eat(',')) {
            // token68 forms (e.g. "Basic abc=") have no commas; keep going on whitespace only.
            if (is_ws(*c.p)) continue;
        }
    }
    for (const Param& p : std::span<const Param>(pool.data() + cr.params.begin, cr.params.count)) {
        std::string_view v = strip_quotes(p.value);
        if (iequals(p.name, "username"))
            cr.username = v;
        else if (iequals(p.name, "realm"))
            cr.realm = v;
        else if (iequals(p.name, "nonce"))
            cr.nonce = v;
        else if (iequals(p.name, "uri"))
            cr.uri = v;
        else if (iequals(p.name, "response"))
            cr.response = v;
        else if (iequals(p.name, "algorithm"))
            cr.algorithm = v;
        else if (iequals(p.name, "cnonce"))
            cr.cnonce = v;
        else if (iequals(p.name, "opaque"))
            cr.opaque = v;
        else if (iequals(p.name, "qop"))
            cr.qop = v;
        else if (iequals(p.name, "nc"))
            cr.nc = v;
    }
    return Status::success();
}

}  // namespace

Method method_from_name(std::string_view name) {
    for (const auto& m : kMethods)
        if (m.name == name) return m.method;
    return Method::unknown;
}

namespace {

// A 256-slot table keyed on length, first and last letter: one load and one comparison per
// header field (the known names do not collide under this key; a unit test checks every one).
constexpr std::size_t header_key(std::size_t len, char first, char last) {
    return (len * 37 + static_cast<unsigned char>(first) * 11 +
            static_cast<unsigned char>(last) * 3) &
           255;
}

struct HeaderTable {
    std::array<std::uint8_t, 256> slot{};  // index + 1 into kHeaders, 0 = none
    constexpr HeaderTable() {
        for (std::size_t i = 0; i < std::size(kHeaders); ++i) {
            std::string_view n = kHeaders[i].name;
            std::size_t k =
                header_key(n.size(), base::to_lower(n.front()), base::to_lower(n.back()));
            slot[k] = static_cast<std::uint8_t>(i + 1);
        }
    }
};
constexpr HeaderTable kHeaderTable{};

}  // namespace

HeaderId header_id_from_name(std::string_view name) {
    if (name.size() == 1) return compact_form(base::to_lower(name[0]));
    if (name.empty()) return HeaderId::other;
    std::uint8_t i = kHeaderTable.slot[header_key(name.size(), base::to_lower(name.front()),
                                                  base::to_lower(name.back()))];
    if (i == 0) return HeaderId::other;
    const NamedHeader& h = kHeaders[i - 1];
    return iequals(h.name, name) ? h.id : HeaderId::other;
}

std::string_view canonical_header_name(HeaderId id) {
    for (const auto& h : kHeaders)
        if (h.id == id) return h.name;
    return {};
}

void Message::reset() {
    bytes_ = start_line_ = method_name_ = version_ = reason_ = {};
    // Large records are cleared only when the last parse wrote them (a response has no
    // Request-URI; credentials are parsed into a fresh record and copied).
    if (is_request_) request_uri_ = Uri{};
    is_request_ = false;
    method_ = Method::unknown;
    status_code_ = 0;
    headers_.clear();
    vias_.clear();
    contacts_.clear();
    routes_.clear();
    record_routes_.clear();
    params_.clear();
    from_ = to_ = NameAddr{};
    has_from_ = has_to_ = contact_star_ = has_cseq_ = has_auth_ = has_proxy_auth_ = false;
    cseq_ = CSeq{};
    call_id_ = content_type_ = user_agent_ = server_ = headers_end_ = body_ = {};
    max_forwards_.reset();
    content_length_.reset();
    expires_.reset();
    content_length_conflict_ = false;
    header_dups_ = 0;
    edits_.clear();
    new_body_.clear();
    body_replaced_ = false;
}

Status Message::parse(std::string_view datagram, const Limits& limits) {
    reset();
    buf_ = datagram;
    Status s = parse_impl(limits);
    // A malformed response is dropped, never answered (RFC 4475 §3.1.2.5, §3.1.2.19).
    if (!s.ok && !is_request_) s.sip_status = 0;
    return s;
}

Status Message::parse_owned(std::string_view datagram, const Limits& limits) {
    reset();
    if (owned_cap_ < datagram.size() || !owned_) {
        owned_cap_ = datagram.size() < 256 ? 256 : datagram.size();
        owned_ = std::make_unique<char[]>(owned_cap_);
    }
    if (!datagram.empty()) std::memcpy(owned_.get(), datagram.data(), datagram.size());
    buf_ = std::string_view(owned_.get(), datagram.size());
    Status s = parse_impl(limits);
    if (!s.ok && !is_request_) s.sip_status = 0;
    return s;
}

Status Message::parse_impl(const Limits& limits) {
    if (buf_.size() > limits.max_message_size) return Status::fail(513, Reject::message_too_large);
    const char* p = buf_.data();
    const char* end = p + buf_.size();
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    while (p < end && (*p == '\r' || *p == '\n')) ++p;
    if (p == end) return Status::fail(0, Reject::empty_message);
    const char* msg_start = p;

    // Start line.
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (!nl) return Status::fail(400, Reject::no_line_end_after_start_line);
    const char* le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
    if (static_cast<std::size_t>(le - p) > limits.max_line_length)
        return Status::fail(414, Reject::start_line_too_long);
    start_line_ = view(p, le);
    std::string_view line = start_line_;
    if (line.size() >= 4 && line.substr(0, 4) == "SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2). A bad
        // response is dropped, not answered (sip_status 0).
        std::size_t sp = line.find(' ');
        if (sp == std::string_view::npos) return Status::fail(0, Reject::malformed_status_line);
        version_ = line.substr(0, sp);
        if (!is_valid_version(version_)) return Status::fail(0, Reject::malformed_sip_version);
        if (version_ != "SIP/2.0") return Status::fail(0, Reject::unsupported_sip_version);
        std::string_view rest = line.substr(sp + 1);
        if (rest.size() < 3 || !is_digit(rest[0]) || !is_digit(rest[1]) || !is_digit(rest[2]) ||
            (rest.size() > 3 && rest[3] != ' '))
            return Status::fail(0, Reject::status_code_not_three_digits);
        status_code_ = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
        if (status_code_ < 100 || status_code_ > 699)
            return Status::fail(0, Reject::status_code_out_of_range);
        reason_ = rest.size() > 4 ? rest.substr(4) : std::string_view{};
    } else {
        // Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1): exactly one SP
        // between the elements (RFC 4475 §3.1.2.8-10).
        is_request_ = true;
        std::size_t sp1 = line.find(' ');
        if (sp1 == std::string_view::npos || sp1 == 0)
            return Status::fail(400, Reject::malformed_request_line);
        method_name_ = line.substr(0, sp1);
        for (char ch : method_name_)
            if (!is_token(ch)) return Status::fail(400, Reject::invalid_character_in_method);
        std::size_t sp2 = line.find(' ', sp1 + 1);
        if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
            return Status::fail(400, Reject::malformed_request_line);
        std::string_view uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
        version_ = line.substr(sp2 + 1);
        if (!is_valid_version(version_))
            return Status::fail(400, Reject::malformed_request_version);
        if (version_ != "SIP/2.0") return Status::fail(505, Reject::sip_version_not_supported);
        if (uri.size() > limits.max_uri_length)
            return Status::fail(414, Reject::request_uri_too_long);
        if (uri[0] == '<') return Status::fail(400, Reject::bracketed_request_uri);
        if (Status s = parse_fresh_uri(uri, request_uri_, params_, limits); !s) return s;
        // RFC 3261 §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        if (request_uri_.kind != UriScheme::other && !request_uri_.headers_text.empty())
            return Status::fail(400, Reject::headers_in_request_uri);
        method_ = method_from_name(method_name_);
    }

    // Header fields.
    p = nl + 1;
    for (;;) {
        if (p >= end) return Status::fail(400, Reject::unterminated_header_section);
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')) {
            headers_end_ = view(p, *p == '\n' ? p + 1 : p + 2);
            p = headers_end_.data() + headers_end_.size();
            break;
        }
        if (is_ws(*p)) return Status::fail(400, Reject::stray_continuation_line);
        if (headers_.size() >= limits.max_headers)
            return Status::fail(400, Reject::too_many_header_fields);
        const char* line_start = p;
        const char* q = p;
        while (q < end && is_token(*q)) ++q;
        Header h;
        h.name = view(p, q);
        while (q < end && (*q == ' ' || *q == '\t')) ++q;
        if (h.name.empty() || q >= end || *q != ':')
            return Status::fail(400, Reject::malformed_header_field);
        const char* vb = q + 1;
        // The field ends at a line end not followed by SP/HT (RFC 3261 §7.3.1 folding).
        const char* s = vb;
        const char* fe;
        for (;;) {
            const char* n = static_cast<const char*>(std::memchr(s, '\n', end - s));
            if (!n) return Status::fail(400, Reject::unterminated_header_section);
            if (n + 1 < end && (n[1] == ' ' || n[1] == '\t')) {
                s = n + 1;
                continue;
            }
            fe = n + 1;
            break;
        }
        if (static_cast<std::size_t>(fe - line_start) > limits.max_line_length)
            return Status::fail(400, Reject::header_field_too_long);
        if (static_cast<std::size_t>(fe - msg_start) > limits.max_header_bytes)
            return Status::fail(400, Reject::header_section_too_large);
        h.line = view(line_start, fe);
        h.value = trim(view(vb, fe));
        if (h.value.empty()) h.value = view(vb, vb);  // keeps edits of an empty value in place
        h.id = header_id_from_name(h.name);
        if (h.id != HeaderId::other) {
            if (Status st =
                    parse_header_value(h, static_cast<std::uint16_t>(headers_.size()), limits);
                !st)
                return st;
        }
        headers_.push_back(h);
        p = fe;
    }

    // Body: framed by Content-Length; without it, the rest of the datagram (RFC 3261 §18.3).
    std::size_t remaining = static_cast<std::size_t>(end - p);
    if (content_length_ && !content_length_conflict_) {
        if (*content_length_ > remaining)
            return Status::fail(400, Reject::content_length_exceeds_message);
        body_ = view(p, p + *content_length_);
    } else {
        body_ = view(p, end);
    }
    bytes_ = view(msg_start, body_.data() + body_.size());

    // RFC 3261 §8.2.2 / RFC 4475 §3.1.2.17-18: CSeq method must match the request method.
    if (is_request_ && has_cseq_ && cseq_.method != method_name_) {
        if (method_ == Method::unknown) return Status::fail(501, Reject::method_not_implemented);
        return Status::fail(400, Reject::cseq_method_mismatch);
    }
    return Status::success();
}

Status Message::parse_header_value(Header& h, std::uint16_t index, const Limits& limits) {
    Cursor c{h.value.data(), h.value.data() + h.value.size()};
    // A repeated single-value field is remembered; check_request() answers 400 (RFC 4475
    // §3.3.8). The first value is the one the typed accessors return.
    std::size_t b = bit(h.id);
    switch (h.id) {
        case HeaderId::via: {
            for (;;) {
                Via& v = vias_.emplace_back();
                if (Status s = parse_via(c, v, params_); !s) return s;
                v.header = index;
                c.skip_ws();
                if (c.done()) break;
                if (!c.eat(',')) return Status::fail(400, Reject::malformed_via);
            }
            return Status::success();
        }
        case HeaderId::contact:
        case HeaderId::route:
        case HeaderId::record_route: {
            auto& list = h.id == HeaderId::contact ? contacts_
                         : h.id == HeaderId::route ? routes_
                                                   : record_routes_;
            c.skip_ws();
            if (h.id == HeaderId::contact && !c.done() && c.peek() == '*') {
                ++c.p;
                c.skip_ws();
                if (!c.done()) return Status::fail(400, Reject::malformed_contact);
                contact_star_ = true;
                return Status::success();
            }
            for (;;) {
                NameAddr& a = list.emplace_back();
                if (Status s = parse_name_addr(c, a, params_, limits, true); !s) return s;
                a.header = index;
                c.skip_ws();
                if (c.done()) break;
                if (!c.eat(',')) return Status::fail(400, Reject::malformed_address_list);
            }
            return Status::success();
        }
        case HeaderId::from:
        case HeaderId::to: {
            bool& has = h.id == HeaderId::from ? has_from_ : has_to_;
            auto parse_into = [&](NameAddr& a) {
                if (Status s = parse_name_addr(c, a, params_, limits, false); !s) return s;
                a.header = index;
                c.skip_ws();
                if (!c.done()) return Status::fail(400, Reject::malformed_from_to);
                return Status::success();
            };
            if (has) {
                // A repeated From/To is still checked for syntax; the first one is kept.
                NameAddr scratch;
                if (Status s = parse_into(scratch); !s) return s;
                header_dups_ |= b;
                return Status::success();
            }
            if (Status s = parse_into(h.id == HeaderId::from ? from_ : to_); !s) return s;
            has = true;
            return Status::success();
        }
        case HeaderId::call_id: {
            if (h.value.empty()) return Status::fail(400, Reject::empty_call_id);
            for (char ch : h.value)
                if (static_cast<unsigned char>(ch) < 0x21)  // no whitespace or controls
                    return Status::fail(400, Reject::invalid_call_id);
            if (!call_id_.empty())
                header_dups_ |= b;
            else
                call_id_ = h.value;
            return Status::success();
        }
        case HeaderId::cseq: {
            const char* nb = c.p;
            while (!c.done() && is_digit(*c.p)) ++c.p;
            std::uint64_t n = 0;
            if (!parse_uint(view(nb, c.p), 0xffffffffULL, n))
                return Status::fail(400, Reject::bad_cseq_number);
            if (c.done() || !is_ws(c.peek())) return Status::fail(400, Reject::malformed_cseq);
            c.skip_ws();
            std::string_view m = c.token();
            c.skip_ws();
            if (m.empty() || !c.done()) return Status::fail(400, Reject::malformed_cseq_method);
            if (has_cseq_) {
                header_dups_ |= b;
            } else {
                cseq_.number = static_cast<std::uint32_t>(n);
                cseq_.method = m;
                has_cseq_ = true;
            }
            return Status::success();
        }
        case HeaderId::max_forwards: {
            std::uint64_t n = 0;
            if (!parse_uint(h.value, 255, n)) return Status::fail(400, Reject::bad_max_forwards);
            if (max_forwards_)
                header_dups_ |= b;
            else
                max_forwards_ = static_cast<std::uint8_t>(n);
            return Status::success();
        }
        case HeaderId::content_length: {
            std::uint64_t n = 0;
            if (!parse_uint(h.value, 0xffffffffULL, n))
                return Status::fail(400, Reject::bad_content_length);
            if (content_length_ && *content_length_ != n) content_length_conflict_ = true;
            if (!content_length_) content_length_ = n;
            return Status::success();
        }
        case HeaderId::content_type: {
            std::string_view type = c.token();
            if (type.empty() || !c.eat('/') || c.token().empty())
                return Status::fail(400, Reject::malformed_content_type);
            if (!content_type_.empty())
                header_dups_ |= b;
            else
                content_type_ = h.value;
            return Status::success();
        }
        case HeaderId::authorization:
        case HeaderId::proxy_authorization: {
            bool proxy = h.id == HeaderId::proxy_authorization;
            Credentials cr;
            if (Status s = parse_credentials(c, cr, params_); !s) return s;
            if (!(proxy ? has_proxy_auth_ : has_auth_)) {
                (proxy ? proxy_auth_ : auth_) = cr;
                (proxy ? has_proxy_auth_ : has_auth_) = true;
            }
            return Status::success();
        }
        case HeaderId::user_agent:
            user_agent_ = h.value;
            return Status::success();
        case HeaderId::server:
            server_ = h.value;
            return Status::success();
        case HeaderId::expires: {
            // Out of range or non-numeric (RFC 2543 dates) is treated as absent (RFC 4475
            // §3.1.2.4).
            std::uint64_t n = 0;
            if (parse_uint(h.value, 0xffffffffULL, n)) expires_ = static_cast<std::uint32_t>(n);
            return Status::success();
        }
        case HeaderId::date: {
            // RFC 3261 §20.17: rfc1123-date in "GMT" only (RFC 4475 §3.1.2.12).
            if (h.value.size() < 3 || h.value.substr(h.value.size() - 3) != "GMT")
                return Status::fail(400, Reject::date_not_in_gmt);
            return Status::success();
        }
        default:
            return Status::success();
    }
}

const Header* Message::find(HeaderId id) const {
    for (const Header& h : headers_)
        if (h.id == id) return &h;
    return nullptr;
}

const Header* Message::find(std::string_view name) const {
    HeaderId id = header_id_from_name(name);
    if (id != HeaderId::other) return find(id);
    for (const Header& h : headers_)
        if (iequals(h.name, name)) return &h;
    return nullptr;
}

std::size_t Message::count(HeaderId id) const {
    std::size_t n = 0;
    for (const Header& h : headers_) n += h.id == id;
    return n;
}

Status check_request(const Message& m, const CheckOptions& options) {
    if (!m.is_request()) return Status::success();
    // RFC 3261 §8.1.1: To, From, CSeq, Call-ID, Max-Forwards and Via are mandatory (Max-Forwards
    // is tolerated missing for RFC 2543 peers, RFC 4475 §3.4.1).
    if (!m.from() || !m.to() || m.call_id().empty() || !m.cseq() || m.vias().empty())
        return Status::fail(400, Reject::missing_required_header_field);
    if (m.repeated_single_value_field())
        return Status::fail(400, Reject::single_value_header_field_repeated);
    if (m.content_length_conflict())
        return Status::fail(400, Reject::conflicting_content_length_values);
    // RFC 3261 §8.1.1.7: the branch must start with the magic cookie and have an identifier.
    std::string_view branch = m.vias().front().branch;
    if (branch.size() <= 7 && iequals(branch, "z9hG4bK"))
        return Status::fail(400, Reject::via_branch_without_transaction_identifier);
    // RFC 3261 §8.2.2.1 / RFC 4475 §3.3.2.
    if (m.request_uri().kind == UriScheme::other)
        return Status::fail(416, Reject::unsupported_uri_scheme);
    for (HeaderId id : {HeaderId::require, HeaderId::proxy_require}) {
        for (const Header& h : m.headers()) {
            if (h.id != id) continue;
            for (std::string_view tag : split_list(h.value)) {
                bool known = false;
                for (const std::string& s : options.supported_extensions)
                    if (iequals(s, tag)) known = true;
                if (!known && !tag.empty()) return Status::fail(420, Reject::unsupported_extension);
            }
        }
    }
    return Status::success();
}

}  // namespace sbc::sip

// Stream framing for TCP/TLS (RFC 3261 §18.3) with RFC 5626 §3.5.1 CRLF keep-alives.
#include "sip/lex.hpp"
#include "sip/sip.hpp"

namespace sbc::sip {

using namespace lex;

void StreamFramer::feed(std::string_view chunk) {
    if (failed_) return;
    if (pos_ > 0) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(chunk);
}

StreamFramer::Frame StreamFramer::next() {
    Frame f;
    if (failed_) {
        f.kind = Kind::error;
        f.error = error_;
        return f;
    }
    auto fail = [&](std::string_view why) {
        failed_ = true;
        error_ = why;
        f.kind = Kind::error;
        f.error = why;
        return f;
    };
    for (;;) {
        std::string_view rest = std::string_view(buf_).substr(pos_);
        if (rest.empty()) return f;
        if (rest[0] == '\r' || rest[0] == '\n') {
            // Between messages only keep-alives may appear: CRLFCRLF is a ping to answer with
            // kPong; a lone CRLF is a pong (or stray) and is skipped.
            if (rest.substr(0, 4) == "\r\n\r\n") {
                pos_ += 4;
                f.kind = Kind::ping;
                return f;
            }
            if (rest.size() < 4 && std::string_view("\r\n\r\n").substr(0, rest.size()) == rest)
                return f;  // maybe the start of a ping: wait
            pos_ += (rest.substr(0, 2) == "\r\n") ? 2 : 1;
            continue;
        }
        std::size_t hdr_end = rest.find("\r\n\r\n");
        std::size_t sep = 4;
        if (hdr_end == std::string_view::npos) {
            hdr_end = rest.find("\n\n");
            sep = 2;
        }
        if (hdr_end == std::string_view::npos || hdr_end + sep > limits_.max_header_bytes) {
            if (rest.size() > limits_.max_header_bytes ||
                (hdr_end != std::string_view::npos && hdr_end + sep > limits_.max_header_bytes))
                return fail("header section larger than the limit");
            return f;
        }
        std::string_view head = rest.substr(0, hdr_end);
        // Find Content-Length (long or compact form) in the header lines.
        bool have = false;
        std::uint64_t length = 0;
        std::size_t ls = head.find('\n');
        while (ls != std::string_view::npos) {
            std::size_t b = ls + 1;
            std::size_t e = head.find('\n', b);
            std::string_view line = head.substr(b, e == std::string_view::npos ? e : e - b);
            ls = e;
            std::size_t colon = line.find(':');
            if (colon == std::string_view::npos) continue;
            std::string_view name = trim(line.substr(0, colon));
            if (!iequals(name, "content-length") && !iequals(name, "l")) continue;
            std::uint64_t v = 0;
            if (!parse_uint(trim(line.substr(colon + 1)), 0xffffffffULL, v))
                return fail("invalid Content-Length");
            if (have && v != length) return fail("conflicting Content-Length values");
            have = true;
            length = v;
        }
        if (!have) return fail("missing Content-Length on a stream transport (RFC 3261 §18.3)");
        std::uint64_t total = hdr_end + sep + length;
        if (total > limits_.max_message_size) return fail("message larger than the limit");
        if (rest.size() < total) return f;
        f.kind = Kind::message;
        f.bytes = rest.substr(0, static_cast<std::size_t>(total));
        pos_ += static_cast<std::size_t>(total);
        return f;
    }
}

}  // namespace sbc::sip

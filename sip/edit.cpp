// Editing: splices recorded over the parsed buffer and applied by serialize().
#include <algorithm>
#include <charconv>

#include "sip/lex.hpp"
#include "sip/sip.hpp"

namespace sbc::sip {

using namespace lex;

void SpliceList::add(std::size_t begin, std::size_t end, std::string_view text) {
    splices_.push_back(Splice{begin, end, text_.size(), text.size(), splices_.size()});
    text_.append(text);
}

std::string SpliceList::apply(std::string_view buffer) const {
    std::vector<const Splice*> order;
    order.reserve(splices_.size());
    for (const Splice& s : splices_) order.push_back(&s);
    // At one offset, insertions go before replacements so that removing a field does not swallow
    // a field inserted in front of it.
    std::stable_sort(order.begin(), order.end(), [](const Splice* a, const Splice* b) {
        if (a->begin != b->begin) return a->begin < b->begin;
        return (a->end == a->begin) > (b->end == b->begin);
    });
    std::string out;
    out.reserve(buffer.size() + text_.size());
    std::size_t pos = 0;
    for (const Splice* s : order) {
        if (s->begin < pos || s->end > buffer.size()) continue;  // inside an earlier edit
        out.append(buffer.substr(pos, s->begin - pos));
        out.append(std::string_view(text_).substr(s->text_begin, s->text_len));
        pos = s->end;
    }
    if (pos < buffer.size()) out.append(buffer.substr(pos));
    return out;
}

namespace {
// The decimal port after an optional prefix (":", ";rport="), written into one string.
// Concatenating a literal with a temporary string (`":" + port_string(p)`) makes GCC 12 at -O3
// report a false -Wrestrict overlap inside std::string::insert; appending avoids that pattern.
std::string port_string(std::uint16_t port, std::string_view prefix = {}) {
    char buf[8];
    auto r = std::to_chars(buf, buf + sizeof buf, port);
    std::string s;
    s.reserve(prefix.size() + static_cast<std::size_t>(r.ptr - buf));
    s.append(prefix);
    s.append(buf, r.ptr);
    return s;
}
bool within(std::string_view outer, const char* p) {
    return p >= outer.data() && p <= outer.data() + outer.size();
}
}  // namespace

void Message::replace(std::string_view region, std::string_view text) {
    const char* base = bytes_.data();
    if (!within(bytes_, region.data()) || !within(bytes_, region.data() + region.size())) return;
    edits_.add(static_cast<std::size_t>(region.data() - base),
               static_cast<std::size_t>(region.data() + region.size() - base), text);
}

void Message::insert_before(std::string_view region, std::string_view text) {
    replace(region.substr(0, 0), text);
}

void Message::insert_after(std::string_view region, std::string_view text) {
    replace(region.substr(region.size()), text);
}

void Message::remove_header(const Header& h) {
    replace(h.line, "");
}

std::size_t Message::remove_headers(HeaderId id) {
    std::size_t n = 0;
    for (const Header& h : headers_)
        if (h.id == id) {
            remove_header(h);
            ++n;
        }
    return n;
}

std::size_t Message::remove_headers(std::string_view name) {
    HeaderId id = header_id_from_name(name);
    if (id != HeaderId::other) return remove_headers(id);
    std::size_t n = 0;
    for (const Header& h : headers_)
        if (h.id == HeaderId::other && iequals(h.name, name)) {
            remove_header(h);
            ++n;
        }
    return n;
}

void Message::replace_header_value(const Header& h, std::string_view value) {
    if (h.value.empty()) {
        std::string v(" ");
        v.append(value);
        replace(h.value, v);
    } else {
        replace(h.value, value);
    }
}

void Message::add_header(std::string_view name, std::string_view value) {
    std::string line;
    line.reserve(name.size() + value.size() + 4);
    line.append(name).append(": ").append(value).append("\r\n");
    insert_before(headers_end_, line);
}

void Message::add_header_first(std::string_view name, std::string_view value) {
    std::string line;
    line.append(name).append(": ").append(value).append("\r\n");
    insert_before(headers_.empty() ? headers_end_ : headers_.front().line, line);
}

void Message::remove_value(std::uint16_t header_index, std::string_view raw) {
    if (header_index >= headers_.size()) return;
    const Header& h = headers_[header_index];
    const char* vb = h.value.data();
    const char* ve = vb + h.value.size();
    const char* rb = raw.data();
    const char* re = rb + raw.size();
    if (rb < vb || re > ve) return;
    // RFC 3261 §7.3.1: a list field is the same as several fields, so one value can go with
    // its comma.
    const char* a = re;
    while (a < ve && is_ws(*a)) ++a;
    if (a < ve && *a == ',') {
        ++a;
        while (a < ve && is_ws(*a)) ++a;
        replace(std::string_view(rb, static_cast<std::size_t>(a - rb)), "");
        return;
    }
    const char* b = rb;
    while (b > vb && is_ws(b[-1])) --b;
    if (b > vb && b[-1] == ',') {
        --b;
        replace(std::string_view(b, static_cast<std::size_t>(re - b)), "");
        return;
    }
    remove_header(h);
}

void Message::set_uri_host(const Uri& uri, std::string_view host) {
    if (host.find(':') != std::string_view::npos && host.front() != '[') {
        std::string h = "[";
        h.append(host).append("]");
        replace(uri.host, h);
    } else {
        replace(uri.host, host);
    }
}

void Message::set_uri_port(const Uri& uri, std::uint16_t port) {
    if (uri.has_port) {
        if (port == 0) {
            const char* b = uri.host.data() + uri.host.size();
            replace(std::string_view(b, static_cast<std::size_t>(uri.port_text.data() +
                                                                 uri.port_text.size() - b)),
                    "");
        } else {
            replace(uri.port_text, port_string(port));
        }
    } else if (port != 0) {
        insert_after(uri.host, port_string(port, ":"));
    }
}

void Message::set_uri_user(const Uri& uri, std::string_view user) {
    if (uri.has_user)
        replace(uri.user, user);
    else
        insert_before(uri.host, std::string(user) + "@");
}

void Message::set_via_received(const Via& v, std::string_view address) {
    for (const Param& p : params(v.params)) {
        if (!iequals(p.name, "received")) continue;
        // A valueless parameter is replaced whole (not appended to), so that an insertion at
        // the end of the Via value (another parameter) still lands after it.
        if (p.has_value)
            replace(p.value, address);
        else
            replace(p.name, std::string(p.name) + "=" + std::string(address));
        return;
    }
    insert_after(v.raw, ";received=" + std::string(address));
}

void Message::set_via_rport(const Via& v, std::uint16_t port) {
    for (const Param& p : params(v.params)) {
        if (!iequals(p.name, "rport")) continue;
        if (p.has_value)
            replace(p.value, port_string(port));
        else
            replace(p.name, port_string(port, std::string(p.name) + "="));
        return;
    }
    insert_after(v.raw, port_string(port, ";rport="));
}

void Message::set_body(std::string_view body) {
    new_body_.assign(body);
    body_replaced_ = true;
}

void Message::clear_edits() {
    edits_.clear();
    new_body_.clear();
    body_replaced_ = false;
}

std::string Message::serialize() const {
    SpliceList all = edits_;
    const char* base = bytes_.data();
    auto off = [base](const char* p) { return static_cast<std::size_t>(p - base); };
    std::size_t body_len = body_replaced_ ? new_body_.size() : body_.size();
    if (body_replaced_) all.add(off(body_.data()), off(body_.data() + body_.size()), new_body_);
    // RFC 3261 §20.14: the Content-Length must count the body actually sent.
    const Header* cl = nullptr;
    for (const Header& h : headers_)
        if (h.id == HeaderId::content_length && !edits_.covers(off(h.line.data()))) {
            cl = &h;
            break;
        }
    std::string len = port_string(0);
    {
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, body_len);
        len.assign(buf, r.ptr);
    }
    if (cl) {
        if (cl->value != len)
            all.add(off(cl->value.data()), off(cl->value.data() + cl->value.size()), len);
    } else {
        all.add(off(headers_end_.data()), off(headers_end_.data()),
                "Content-Length: " + len + "\r\n");
    }
    return all.apply(bytes_);
}

}  // namespace sbc::sip

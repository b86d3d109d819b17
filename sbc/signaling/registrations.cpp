#include "sbc/signaling/registrations.hpp"

#include <algorithm>
#include <cstdio>
#include <random>

#include "sbc/signaling/b2bua.hpp"

namespace sbc::signaling {

namespace {

std::uint64_t pack(TxId id) {
    return (std::uint64_t{id.generation} << 32) | id.index;
}

// Keep-alive probes' branches: the cookie, "ka" and 12 base-36 characters that encode the
// probe's key (random, about 62 bits): a length no transaction's branch has (new_branch()).
constexpr std::string_view kProbePrefix = "z9hG4bKka";
constexpr std::size_t kProbeKeyChars = 12;

std::uint64_t probe_key_of(std::string_view chars) {
    std::uint64_t v = 0;
    for (char c : chars) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 10;
        else
            return 0;
        v = v * 36 + static_cast<std::uint64_t>(d);
    }
    return v;
}

void append_probe_key(std::string& out, std::uint64_t key) {
    char chars[kProbeKeyChars];
    for (std::size_t i = kProbeKeyChars; i-- > 0; key /= 36) {
        const auto d = static_cast<char>(key % 36);
        chars[i] = d < 10 ? static_cast<char>('0' + d) : static_cast<char>('a' + d - 10);
    }
    out.append(chars, kProbeKeyChars);
}

std::uint64_t new_probe_key() {
    for (;;)
        if (const std::uint64_t k = probe_key_of(random_token(kProbeKeyChars))) return k;
}

std::string host_port(const std::string& host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
    std::string out = v6 ? "[" + host + "]" : host;
    out += ':';
    out += std::to_string(port);
    return out;
}

std::string aor_of(const sip::Message& m) {
    const sip::NameAddr* to = m.to();
    if (!to) return {};
    std::string aor(to->uri.user);
    aor += '@';
    aor += base::to_lower(to->uri.host);
    return aor;
}

// A delta-seconds value (RFC 3261 §25.1): digits only, at most 2^32-1. nullopt: not one.
std::optional<std::uint64_t> delta_seconds(std::string_view t) {
    if (t.empty() || t.size() > 10) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : t) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v > 0xffffffffULL) return std::nullopt;
    return v;
}

// The value of `name="..."` in a challenge, as a region of `s` (empty: none).
std::pair<std::size_t, std::size_t> quoted_param(std::string_view s, std::string_view name) {
    std::size_t at = 0;
    while ((at = s.find(name, at)) != std::string_view::npos) {
        const bool start = at == 0 || s[at - 1] == ' ' || s[at - 1] == ',' || s[at - 1] == '\t';
        std::size_t p = at + name.size();
        while (p < s.size() && s[p] == ' ') ++p;
        if (start && p < s.size() && s[p] == '=') {
            ++p;
            while (p < s.size() && s[p] == ' ') ++p;
            if (p < s.size() && s[p] == '"') {
                const std::size_t end = s.find('"', p + 1);
                if (end != std::string_view::npos) return {p + 1, end - p - 1};
            }
        }
        at = p;
    }
    return {std::string_view::npos, 0};
}

// A fresh value with the length and alphabet of `like`: hex stays hex, otherwise each digit,
// lower and upper case letter is redrawn within its class and other characters are kept.
std::string redraw(std::string_view like) {
    const std::string r = random_token(like.size());
    const bool hex = std::all_of(like.begin(), like.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
    std::string out(like);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const unsigned v = static_cast<unsigned char>(r[i]);
        const char c = out[i];
        if (hex)
            out[i] = "0123456789abcdef"[v % 16];
        else if (c >= '0' && c <= '9')
            out[i] = static_cast<char>('0' + v % 10);
        else if (c >= 'a' && c <= 'z')
            out[i] = static_cast<char>('a' + v % 26);
        else if (c >= 'A' && c <= 'Z')
            out[i] = static_cast<char>('A' + v % 26);
    }
    return out;
}

}  // namespace

void ChallengeTemplate::learn(const sip::Message& r) {
    for (const sip::Header& h : r.headers())
        if (h.id == sip::HeaderId::www_authenticate || h.id == sip::HeaderId::proxy_authenticate) {
            status_ = r.status_code();
            header_ =
                h.id == sip::HeaderId::www_authenticate ? "WWW-Authenticate" : "Proxy-Authenticate";
            value_ = std::string(h.value);
            return;
        }
}

ChallengeTemplate::Challenge ChallengeTemplate::draw(const sip::Message& request,
                                                     std::string_view realm) const {
    Challenge c{status_, header_, {}};
    if (value_.empty()) {
        std::string r(realm);
        if (r.empty() && request.to()) r = std::string(request.to()->uri.host);
        c.value = "Digest realm=\"" + r + "\", nonce=\"" + redraw(std::string(32, '0')) +
                  "\", qop=\"auth\", algorithm=MD5";
        return c;
    }
    c.value = value_;
    for (std::string_view name : {"nonce", "opaque"}) {
        const auto [at, len] = quoted_param(c.value, name);
        if (at != std::string_view::npos)
            c.value.replace(at, len, redraw(std::string_view(c.value).substr(at, len)));
    }
    return c;
}

bool reveals_user(int status) {
    switch (status) {
        case 401:
        case 403:
        case 404:
        case 407:
        case 410:
        case 484:
        case 485:
        case 604:
            return true;
        default:
            return false;
    }
}

Registrations::Registrations(RegistrationConfig config, TransactionLayer& tx, Wire& wire,
                             RegistrationHooks& hooks, HopUsable hop_usable)
    : config_(std::move(config)),
      tx_(tx),
      wire_(wire),
      hooks_(hooks),
      hop_usable_(std::move(hop_usable)) {
    std::random_device rd;
    secret_[0] = (std::uint64_t{rd()} << 32) | rd();
    secret_[1] = (std::uint64_t{rd()} << 32) | rd();
}

std::string Registrations::call_id_for(std::string_view client_call_id, const Flow& from) const {
    // A keyed hash: the same client Call-ID from the same source gives the same Call-ID inside
    // (the registrar sees one registration), and nothing of the client's shows.
    const std::string src = from.remote.addr.to_string();
    char out[40];
    std::uint64_t h[2];
    for (int i = 0; i < 2; ++i) {
        std::uint64_t x = base::fnv1a64(
            std::string_view(reinterpret_cast<const char*>(&secret_[i]), sizeof secret_[i]));
        x = base::fnv1a64(client_call_id, x);
        x = base::fnv1a64(src, x);
        h[i] = x;
    }
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(h[0]),
                  static_cast<unsigned long long>(h[1]));
    return out;
}

std::uint64_t Registrations::call_id_hash(std::string_view client_call_id) const {
    // Keyed, so that a cached refresh cannot be had by a Call-ID made to collide.
    std::uint64_t h =
        base::fnv1a64(std::string_view(reinterpret_cast<const char*>(secret_), sizeof secret_));
    return base::fnv1a64(client_call_id, h);
}

std::optional<Registrations::Token> Registrations::Token::of(std::string_view text) {
    Token t;
    if (text.size() != t.chars.size()) return std::nullopt;
    std::copy(text.begin(), text.end(), t.chars.begin());
    return t;
}

Registrations::Token Registrations::Token::random() {
    Token t;
    const std::string r = random_token(t.chars.size());
    std::copy(r.begin(), r.end(), t.chars.begin());
    return t;
}

std::size_t Registrations::TokenHash::operator()(const Token& t) const {
    return static_cast<std::size_t>(base::fnv1a64(t.view()));
}

std::size_t Registrations::FlowHash::operator()(const Flow& f) const {
    std::uint64_t h = f.remote.addr.hash();
    h ^= (std::uint64_t{f.remote.port} << 8 | static_cast<std::uint64_t>(f.transport)) +
         0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= (f.connection * 0x9e3779b97f4a7c15ULL) + (std::uint64_t{f.listener} << 32) + (h << 6) +
         (h >> 2);
    return static_cast<std::size_t>(h);
}

Registrations::Local Registrations::internal_local(Transport t) const {
    if (t != Transport::udp)
        for (const auto& l : config_.internal_streams)
            if (l.transport == t) return {l.host, l.port, l.listener, true};
    return {config_.internal_host, config_.internal_port, config_.internal_listener, false};
}

Transport Registrations::registrar_transport(std::size_t hop) const {
    return hop < config_.registrar_transports.size() ? config_.registrar_transports[hop]
                                                     : config_.internal_transport;
}

bool Registrations::internal_host(std::string_view host) const {
    if (base::iequals(host, config_.internal_host)) return true;
    for (const auto& l : config_.internal_streams)
        if (base::iequals(host, l.host)) return true;
    return false;
}

std::string Registrations::our_contact(std::string_view token, Transport t) const {
    const Local l = internal_local(t);
    std::string out = "sip:" + std::string(token) + "@" + host_port(l.host, l.port);
    if (l.stream) {
        out += ";transport=";
        out += base::to_lower(transport_name(t));
    }
    return out;
}

bool Registrations::natted(const sip::Message& m, const Flow& from) const {
    // A client is behind NAT when what it says of itself (Contact, Via sent-by) is not where
    // its packets come from.
    auto differs = [&from](std::string_view host, bool has_port, std::uint16_t port) {
        auto a = base::IpAddress::parse(host);
        return !a || *a != from.remote.addr || (has_port ? port : 5060) != from.remote.port;
    };
    for (const sip::NameAddr& c : m.contacts())
        if (!c.star && differs(c.uri.host, c.uri.has_port, c.uri.port)) return true;
    if (!m.vias().empty()) {
        const sip::Via& v = m.vias().front();
        if (differs(v.host, v.has_port, v.port)) return true;
    }
    return false;
}

void Registrations::on_register(TxId tx, const sip::Message& m, const Flow& from, base::Nanos now) {
    counters_.add(RegistrationCounter::registers);
    const std::string aor = aor_of(m);
    const auto contacts = m.contacts();
    if (contacts.size() > config_.max_contacts_per_request) {
        counters_.add(RegistrationCounter::refused_too_many_contacts);
        (void)hooks_.on_register_answered(m, from, 403);
        tx_.respond(tx, 403, {}, {}, now);
        return;
    }
    // Expires: the header's (absent when it is not a number: refused), else 3600 (§10.2.1.1).
    std::optional<std::uint64_t> header_expires;
    if (const sip::Header* h = m.find(sip::HeaderId::expires)) {
        header_expires = delta_seconds(h->value);
        if (!header_expires) {
            counters_.add(RegistrationCounter::refused_bad_expires);
            (void)hooks_.on_register_answered(m, from, 400);
            tx_.respond(tx, 400, "Bad Expires", {}, now);
            return;
        }
    }
    const std::uint64_t max_s = static_cast<std::uint64_t>(config_.max_expires / base::seconds(1));
    bool capped = false;
    auto cap = [&](std::uint64_t s) {
        if (s > max_s) {
            capped = true;
            return max_s;
        }
        return s;
    };

    Forwarded f;
    f.server = tx;
    f.from = from;
    f.aor = aor;
    f.client_call_id = std::string(m.call_id());
    f.natted = natted(m, from);
    f.requested = header_expires ? static_cast<base::Nanos>(cap(*header_expires)) : -1;
    if (m.contact_star()) {
        // RFC 3261 §10.3 step 6: '*' only with Expires 0 and no other Contact.
        if (!header_expires || *header_expires != 0 || contacts.size() > 1) {
            counters_.add(RegistrationCounter::refused_bad_expires);
            (void)hooks_.on_register_answered(m, from, 400);
            tx_.respond(tx, 400, "Invalid Contact *", {}, now);
            return;
        }
        f.star = true;
        forward(tx, m, from, std::move(f), now);
        return;
    }
    const auto known = by_aor_.find(std::string_view(aor));
    std::size_t fresh = 0, kept = 0;
    for (const sip::NameAddr& c : contacts) {
        Wanted w;
        w.contact = std::string(c.uri.raw);
        std::uint64_t secs = header_expires ? *header_expires : 3600;
        if (!c.expires.empty()) {
            auto e = delta_seconds(c.expires);
            if (!e) {
                counters_.add(RegistrationCounter::refused_bad_expires);
                (void)hooks_.on_register_answered(m, from, 400);
                tx_.respond(tx, 400, "Bad Expires", {}, now);
                return;
            }
            secs = *e;
        }
        w.expires = base::seconds(static_cast<std::int64_t>(cap(secs)));
        bool have = false;
        if (known != by_aor_.end())
            for (const Token& t : known->second)
                if (auto b = bindings_.find(t);
                    b != bindings_.end() && std::string_view(b->second.contact) == w.contact) {
                    w.token = t;
                    have = true;
                }
        if (!have) {
            if (w.expires == 0) continue;  // removing what is not there: nothing to forward
            do w.token = Token::random();
            while (bindings_.count(w.token));
            w.fresh = true;
            ++fresh;
        } else if (w.expires > 0) {
            ++kept;
        }
        f.contacts.push_back(std::move(w));
    }
    if (capped) counters_.add(RegistrationCounter::expires_capped);
    const std::size_t have = known == by_aor_.end() ? 0 : known->second.size();
    if (fresh > 0 && have + fresh > config_.max_bindings_per_aor) {
        counters_.add(RegistrationCounter::refused_aor_full);
        (void)hooks_.on_register_answered(m, from, 403);
        tx_.respond(tx, 403, {}, {}, now);
        return;
    }
    if (fresh > 0 && bindings_.size() + fresh > config_.max_bindings) {
        counters_.add(RegistrationCounter::refused_table_full);
        (void)hooks_.on_register_answered(m, from, 503);
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "60"}};
        sip::ResponseOptions o;
        o.headers = h;
        tx_.respond(tx, 503, {}, o, now);
        return;
    }
    // Registration throttling: a refresh of bindings this client holds, from the same flow and
    // the same Call-ID, while the registrar's binding has more than half its time left, is
    // answered from the cache.
    if (!contacts.empty() && fresh == 0 && kept == f.contacts.size() && kept > 0) {
        bool cached = true;
        const std::uint64_t call_id = call_id_hash(m.call_id());
        for (const Wanted& w : f.contacts) {
            const Binding& b = bindings_.at(w.token);
            if (!(b.flow == from) || b.client_call_id != call_id ||
                b.registrar_until - now <= b.registrar_granted / 2)
                cached = false;
        }
        if (cached) {
            for (const Wanted& w : f.contacts) {
                Binding& b = bindings_.at(w.token);
                base::Nanos grant = std::min(w.expires, b.registrar_until - now);
                if (b.natted && config_.nat_expires > 0)
                    grant = std::min(grant, config_.nat_expires);
                b.client_until = now + grant;
                schedule_expiry(w.token, b);
                counters_.add(RegistrationCounter::refreshed);
            }
            counters_.add(RegistrationCounter::answered_from_cache);
            (void)hooks_.on_register_answered(m, from, 200);
            answer_ok(tx, aor, now);
            return;
        }
    }
    forward(tx, m, from, std::move(f), now);
}

void Registrations::forward(TxId tx, const sip::Message& m, const Flow& from, Forwarded f,
                            base::Nanos now) {
    std::size_t hop = config_.registrars.size();
    for (std::size_t i = 0; i < config_.registrars.size(); ++i)
        if (!hop_usable_ || hop_usable_(i)) {
            hop = i;
            break;
        }
    if (hop == config_.registrars.size()) {
        counters_.add(RegistrationCounter::no_registrar);
        (void)hooks_.on_register_answered(m, from, 503);
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "60"}};
        sip::ResponseOptions o;
        o.headers = h;
        tx_.respond(tx, 503, {}, o, now);
        return;
    }
    // Over TCP/TLS the Via and Contacts name the SBC's listener of that transport.
    const Transport tp = registrar_transport(hop);
    const Local local = internal_local(tp);
    const std::string ours = host_port(local.host, local.port);
    std::string out;
    out.reserve(1024);
    out += "REGISTER ";
    out += m.request_uri().raw;  // unchanged: the digest covers it
    out += " SIP/2.0\r\nVia: SIP/2.0/";
    out += transport_name(tp);
    out += ' ';
    out += ours;
    out += ";branch=";
    out += new_branch();
    out += ";rport\r\nMax-Forwards: ";
    const int mf = m.max_forwards() ? std::min<int>(*m.max_forwards() - 1, 70) : 70;
    out += std::to_string(std::max(mf, 0));
    out += "\r\nFrom: ";
    out += m.from()->raw;
    out += "\r\nTo: ";
    out += m.to()->raw;
    out += "\r\nCall-ID: ";
    out += call_id_for(f.client_call_id, from);
    out += "\r\nCSeq: ";
    out += std::to_string(m.cseq()->number);
    out += " REGISTER\r\n";
    if (f.star) {
        out += "Contact: *\r\n";
    } else {
        for (const Wanted& w : f.contacts) {
            out += "Contact: <";
            out += our_contact(w.token.view(), tp);
            out += ">;expires=";
            out += std::to_string(w.expires / base::seconds(1));
            out += "\r\n";
        }
    }
    if (f.requested >= 0) {
        out += "Expires: ";
        out += std::to_string(f.requested);
        out += "\r\n";
    }
    for (const sip::Header& h : m.headers())
        if (h.id == sip::HeaderId::authorization || h.id == sip::HeaderId::proxy_authorization ||
            base::iequals(h.name, "Supported")) {
            out += h.name;
            out += ": ";
            out += h.value;
            out += "\r\n";
        }
    out += "Content-Length: 0\r\n\r\n";
    Flow to;
    to.transport = tp;
    to.listener = local.listener;
    to.remote = config_.registrars[hop];
    const TxId t = tx_.request(to, std::move(out), now);
    if (!t) {
        counters_.add(RegistrationCounter::no_registrar);
        (void)hooks_.on_register_answered(m, from, 503);
        tx_.respond(tx, 503, {}, {}, now);
        return;
    }
    counters_.add(RegistrationCounter::forwarded);
    f.hop = hop;
    if (f.contacts.empty() && !f.star) f.contacts.clear();
    forwarded_.emplace(pack(t), std::move(f));
}

void Registrations::answer_ok(TxId tx, const std::string& aor, base::Nanos now) {
    // RFC 3261 §10.3 step 8: the 200 lists the AOR's current bindings with their expiry.
    std::vector<std::string> values;
    if (auto it = by_aor_.find(std::string_view(aor)); it != by_aor_.end())
        for (const Token& t : it->second) {
            const Binding& b = bindings_.at(t);
            if (b.client_until <= now) continue;
            values.push_back(
                "<" + std::string(b.contact) + ">;expires=" +
                std::to_string((b.client_until - now + base::seconds(1) - 1) / base::seconds(1)));
        }
    std::vector<std::pair<std::string_view, std::string_view>> h;
    for (const auto& v : values) h.emplace_back("Contact", v);
    const std::string tag = random_token(16);
    sip::ResponseOptions o;
    o.to_tag = tag;
    o.headers = h;
    tx_.respond(tx, 200, {}, o, now);
}

void Registrations::learn_challenge(const sip::Message& r) {
    for (const sip::Header& h : r.headers())
        if (h.id == sip::HeaderId::www_authenticate || h.id == sip::HeaderId::proxy_authenticate) {
            template_status_ = r.status_code();
            template_header_ =
                h.id == sip::HeaderId::www_authenticate ? "WWW-Authenticate" : "Proxy-Authenticate";
            template_value_ = std::string(h.value);
            return;
        }
}

void Registrations::relay_challenge(TxId tx, const sip::Message& r, base::Nanos now) {
    counters_.add(RegistrationCounter::challenges_relayed);
    // The challenges unchanged (the client answers them), in a response of the SBC's own
    // making: the same header set whoever asks.
    std::vector<std::pair<std::string_view, std::string_view>> h;
    for (const sip::Header& x : r.headers())
        if (x.id == sip::HeaderId::www_authenticate || x.id == sip::HeaderId::proxy_authenticate)
            h.emplace_back(
                x.id == sip::HeaderId::www_authenticate ? "WWW-Authenticate" : "Proxy-Authenticate",
                x.value);
    const std::string tag = random_token(16);
    sip::ResponseOptions o;
    o.to_tag = tag;
    o.headers = h;
    tx_.respond(tx, r.status_code(), {}, o, now);
}

std::string Registrations::fake_challenge(const sip::Message& request) const {
    if (template_value_.empty()) {
        std::string realm = config_.realm;
        if (realm.empty() && request.to()) realm = std::string(request.to()->uri.host);
        return "Digest realm=\"" + realm + "\", nonce=\"" + redraw(std::string(32, '0')) +
               "\", qop=\"auth\", algorithm=MD5";
    }
    std::string v = template_value_;
    for (std::string_view name : {"nonce", "opaque"}) {
        const auto [at, len] = quoted_param(v, name);
        if (at != std::string_view::npos)
            v.replace(at, len, redraw(std::string_view(v).substr(at, len)));
    }
    return v;
}

void Registrations::uniform_refusal(TxId tx, const sip::Message& request, int fallback_status,
                                    base::Nanos now) {
    if (!config_.uniform_answers) {
        tx_.respond(tx, fallback_status, {}, {}, now);
        return;
    }
    counters_.add(RegistrationCounter::uniform_refusals);
    const std::string value = fake_challenge(request);
    const int status = template_status_ ? template_status_ : 401;
    const std::pair<std::string_view, std::string_view> h[] = {
        {template_header_.empty() ? std::string_view("WWW-Authenticate")
                                  : std::string_view(template_header_),
         value}};
    const std::string tag = random_token(16);
    sip::ResponseOptions o;
    o.to_tag = tag;
    o.headers = h;
    tx_.respond(tx, status, {}, o, now);
}

void Registrations::refuse(TxId tx, const sip::Message& m, base::Nanos now) {
    counters_.add(RegistrationCounter::registers);
    counters_.add(RegistrationCounter::refused_by_hook);
    bool usable = false;
    for (std::size_t i = 0; i < config_.registrars.size() && !usable; ++i)
        usable = !hop_usable_ || hop_usable_(i);
    if (config_.uniform_answers && !usable) {
        // What every REGISTER gets while no registrar is up (forward()): a block reads alike.
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "60"}};
        sip::ResponseOptions o;
        o.headers = h;
        tx_.respond(tx, 503, {}, o, now);
        return;
    }
    uniform_refusal(tx, m, 403, now);
}

void Registrations::attach(const Token& t, Binding& b, const Flow& flow, base::Nanos now) {
    b.flow = flow;
    auto [it, inserted] = flows_.try_emplace(flow, &store_);
    FlowState& fs = it->second;
    fs.tokens.push_back(t);
    if (inserted && config_.keepalive != Keepalive::none) {
        fs.next_probe = now + config_.keepalive_interval;
        keepalive_.push({fs.next_probe, flow});
    }
}

void Registrations::detach(const Token& t, Binding& b) {
    auto it = flows_.find(b.flow);
    if (it == flows_.end()) return;
    auto& v = it->second.tokens;
    v.erase(std::remove(v.begin(), v.end(), t), v.end());
    if (v.empty()) {
        if (it->second.probe) probes_.erase(it->second.probe);
        flows_.erase(it);
    }
}

void Registrations::schedule_expiry(const Token& t, Binding& b) {
    // One live entry per binding: a later expiry is rescheduled when the live entry comes
    // due (advance()), so refreshes do not pile entries up in the queue.
    if (b.expiry_due != 0 && b.expiry_due <= b.client_until) return;
    b.expiry_due = b.client_until;
    expiry_.push({b.client_until, t});
}

void Registrations::remove(const Token& token, RegistrationCounter why) {
    auto it = bindings_.find(token);
    if (it == bindings_.end()) return;
    Binding& b = it->second;
    detach(token, b);
    if (auto a = by_aor_.find(std::string_view(*b.aor)); a != by_aor_.end()) {
        auto& v = a->second;
        v.erase(std::remove(v.begin(), v.end(), token), v.end());
        if (v.empty()) by_aor_.erase(a);  // b.aor dangles from here on: not used again
    }
    bindings_.erase(it);
    counters_.add(why);
}

void Registrations::commit(const Forwarded& f, const sip::Message& ok, base::Nanos now) {
    if (f.star) {
        const auto it = by_aor_.find(std::string_view(f.aor));
        if (it == by_aor_.end()) return;
        const std::vector<Token> tokens(it->second.begin(), it->second.end());
        for (const Token& t : tokens) remove(t, RegistrationCounter::unregistered);
        return;
    }
    // What the registrar granted each of our Contacts (§10.3 step 8: its expires parameter,
    // else the Expires header).
    std::unordered_map<std::string_view, base::Nanos> granted;
    for (const sip::NameAddr& c : ok.contacts()) {
        if (c.star || !internal_host(c.uri.host)) continue;
        std::optional<std::uint64_t> e;
        if (!c.expires.empty())
            e = delta_seconds(c.expires);
        else if (ok.expires())
            e = *ok.expires();
        granted[c.uri.user] = e ? base::seconds(static_cast<std::int64_t>(*e)) : base::Nanos{-1};
    }
    for (const Wanted& w : f.contacts) {
        if (w.expires == 0) {
            remove(w.token, RegistrationCounter::unregistered);
            continue;
        }
        auto g = granted.find(w.token.view());
        if (g == granted.end()) continue;  // the registrar did not take it
        base::Nanos grant = g->second < 0 ? w.expires : g->second;
        if (grant == 0) {
            remove(w.token, RegistrationCounter::unregistered);
            continue;
        }
        auto it = bindings_.find(w.token);
        if (it == bindings_.end()) {
            if (bindings_.size() >= config_.max_bindings) {
                counters_.add(RegistrationCounter::refused_table_full);
                continue;
            }
            auto a = by_aor_.find(std::string_view(f.aor));
            if (a == by_aor_.end())
                a = by_aor_
                        .emplace(std::piecewise_construct,
                                 std::forward_as_tuple(std::string_view(f.aor)),
                                 std::forward_as_tuple())
                        .first;
            a->second.push_back(w.token);
            it = bindings_.try_emplace(w.token, &store_).first;
            it->second.aor = &a->first;
            it->second.contact = w.contact;
            attach(w.token, it->second, f.from, now);
            counters_.add(RegistrationCounter::registered);
        } else {
            if (!(it->second.flow == f.from)) {
                // DSL reconnect, Wi-Fi to 4G: the binding follows the client to its new flow.
                detach(w.token, it->second);
                attach(w.token, it->second, f.from, now);
                counters_.add(RegistrationCounter::moved);
            }
            counters_.add(RegistrationCounter::refreshed);
        }
        Binding& b = it->second;
        b.client_call_id = call_id_hash(f.client_call_id);
        b.natted = f.natted;
        b.registrar_granted = grant;
        b.registrar_until = now + grant;
        const base::Nanos to_client =
            f.natted && config_.nat_expires > 0 ? std::min(grant, config_.nat_expires) : grant;
        b.client_until = now + to_client;
        schedule_expiry(w.token, b);
    }
}

bool Registrations::on_probe_response(const sip::Message& r, const Flow& from, base::Nanos) {
    if (r.is_request() || r.vias().empty() || !r.cseq() || r.cseq()->method != "OPTIONS")
        return false;
    const std::string_view branch = r.vias().front().branch;
    if (branch.size() != kProbePrefix.size() + kProbeKeyChars ||
        branch.substr(0, kProbePrefix.size()) != kProbePrefix)
        return false;
    const std::uint64_t key = probe_key_of(branch.substr(kProbePrefix.size()));
    auto p = key ? probes_.find(key) : probes_.end();
    if (p == probes_.end() || p->second.remote != from.remote) {
        // Judged already (its timeout passed), or never ours: nobody else sends this branch.
        counters_.add(RegistrationCounter::keepalives_late);
        return true;
    }
    if (r.status_code() < 200) return true;
    if (auto fs = flows_.find(p->second); fs != flows_.end() && fs->second.probe == key) {
        fs->second.probe = 0;
        fs->second.failures = 0;
        counters_.add(RegistrationCounter::keepalives_answered);
    }
    probes_.erase(p);
    return true;
}

bool Registrations::on_response(TxId tx, const sip::Message& r, base::Nanos now) {
    auto it = forwarded_.find(pack(tx));
    if (it == forwarded_.end()) return false;
    const int status = r.status_code();
    if (status < 200) return true;
    const Forwarded f = std::move(it->second);
    forwarded_.erase(it);
    const sip::Message* request = tx_.request_of(f.server);
    if (!request) return true;
    if (hooks_.on_register_answered(*request, f.from, status)) {
        counters_.add(RegistrationCounter::refused_by_hook);
        uniform_refusal(f.server, *request, 403, now);
        return true;
    }
    if (status >= 200 && status < 300) {
        commit(f, r, now);
        answer_ok(f.server, f.aor, now);
    } else if (status == 401 || status == 407) {
        learn_challenge(r);
        relay_challenge(f.server, r, now);
    } else {
        uniform_refusal(f.server, *request, status, now);
    }
    return true;
}

bool Registrations::on_timeout(TxId tx, TimeoutKind, base::Nanos now) {
    auto it = forwarded_.find(pack(tx));
    if (it == forwarded_.end()) return false;
    const Forwarded f = std::move(it->second);
    forwarded_.erase(it);
    counters_.add(RegistrationCounter::registrar_timeouts);
    if (const sip::Message* request = tx_.request_of(f.server))
        (void)hooks_.on_register_answered(*request, f.from, 408);
    tx_.respond(f.server, 408, {}, {}, now);
    return true;
}

void Registrations::advance(base::Nanos now) {
    while (!expiry_.empty() && expiry_.top().at <= now) {
        const auto [due, token] = expiry_.top();
        expiry_.pop();
        auto it = bindings_.find(token);
        if (it == bindings_.end() || it->second.expiry_due != due) continue;  // a stale entry
        Binding& b = it->second;
        if (b.client_until <= now) {
            remove(token, RegistrationCounter::expired);
        } else {  // refreshed since: its entry moves to the new expiry
            b.expiry_due = b.client_until;
            expiry_.push({b.client_until, token});
        }
    }
    while (!probe_due_.empty() && probe_due_.top().at <= now) {
        const Flow key = probe_due_.top().what;
        probe_due_.pop();
        probe_due(key, now);
    }
    while (!keepalive_.empty() && keepalive_.top().at <= now) {
        const Flow key = keepalive_.top().what;
        keepalive_.pop();
        auto it = flows_.find(key);
        if (it == flows_.end()) continue;
        FlowState& fs = it->second;
        if (fs.next_probe > now) continue;  // a stale entry
        fs.next_probe = now + config_.keepalive_interval;
        keepalive_.push({fs.next_probe, key});
        if (config_.keepalive == Keepalive::crlf || is_reliable(key.transport)) {
            // RFC 5626 §3.5.1: CRLF over streams; over UDP it only keeps the NAT open.
            if (wire_.send(key, "\r\n\r\n")) counters_.add(RegistrationCounter::keepalives_sent);
            continue;
        }
        if (fs.probe) continue;  // the last one is still out
        const std::uint64_t k = new_probe_key();
        if (!send_probe(key, k)) continue;
        counters_.add(RegistrationCounter::keepalives_sent);
        fs.probe = k;
        fs.probe_sent = now;
        fs.probe_sends = 1;
        probes_.emplace(k, key);
        probe_due_.push({probe_resend_at(fs), key});
    }
}

// The OPTIONS of a probe, from its flow and key only: a retransmission is the same request
// (RFC 3261 §17.1.2.2), so nothing of it is kept between sends.
bool Registrations::send_probe(const Flow& flow, std::uint64_t key) {
    std::string& b = probe_buf_;
    b.clear();
    const std::string remote = flow.remote.to_string();
    const std::string ext = host_port(config_.external_host, config_.external_port);
    b += "OPTIONS sip:";
    b += remote;
    b += " SIP/2.0\r\nVia: SIP/2.0/";
    b += transport_name(flow.transport);
    b += ' ';
    b += ext;
    b += ";branch=";
    b += kProbePrefix;
    append_probe_key(b, key);
    b += ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:";
    b += ext;
    b += ">;tag=";
    append_probe_key(b, key);
    b += "\r\nTo: <sip:";
    b += remote;
    b += ">\r\nCall-ID: ka";
    append_probe_key(b, key);
    b += "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    return wire_.send(flow, b);
}

// When the probe out is next retransmitted (Timer E: T1, doubling up to T2), or judged, at
// `keepalive_timeout` after it was first sent, whichever comes first.
base::Nanos Registrations::probe_resend_at(const FlowState& fs) const {
    const TimerSettings& t = tx_.timers();
    base::Nanos at = fs.probe_sent, interval = t.t1;
    for (std::uint8_t i = 0; i < fs.probe_sends; ++i) {
        at += interval;
        interval = std::min(interval * 2, t.t2);
    }
    return std::min(at, fs.probe_sent + config_.keepalive_timeout);
}

void Registrations::probe_due(const Flow& key, base::Nanos now) {
    auto it = flows_.find(key);
    if (it == flows_.end()) return;
    FlowState& fs = it->second;
    if (!fs.probe) return;  // answered since (a stale entry)
    if (fs.probe_sent + config_.keepalive_timeout <= now) {
        probes_.erase(fs.probe);
        fs.probe = 0;
        if (++fs.failures < config_.keepalive_failures) return;
        // The client behind this flow is gone (or its NAT forgot it): its bindings go, and a
        // call to them fails at once instead of timing out.
        const std::vector<Token> tokens(fs.tokens.begin(), fs.tokens.end());
        counters_.add(RegistrationCounter::flows_dead);
        for (const Token& t : tokens) remove(t, RegistrationCounter::expired);
        return;
    }
    if (probe_resend_at(fs) > now) return;  // an entry of an earlier probe
    if (send_probe(key, fs.probe)) counters_.add(RegistrationCounter::keepalives_resent);
    if (fs.probe_sends < 255) ++fs.probe_sends;
    probe_due_.push({probe_resend_at(fs), key});
}

void Registrations::flow_closed(const Flow& f, base::Nanos) {
    auto it = flows_.find(f);
    if (it == flows_.end()) return;
    const std::vector<Token> tokens(it->second.tokens.begin(), it->second.tokens.end());
    counters_.add(RegistrationCounter::flows_closed);
    for (const auto& t : tokens) remove(t, RegistrationCounter::expired);
}

base::Nanos Registrations::next_deadline() const {
    base::Nanos next = INT64_MAX;
    if (!expiry_.empty()) next = std::min(next, expiry_.top().at);
    if (!keepalive_.empty()) next = std::min(next, keepalive_.top().at);
    if (!probe_due_.empty()) next = std::min(next, probe_due_.top().at);
    return next;
}

Registrations::Route Registrations::route(const sip::Uri& uri) {
    Route r;
    if (uri.kind != sip::UriScheme::sip && uri.kind != sip::UriScheme::sips) return r;
    const Binding* b = nullptr;
    if (internal_host(uri.host)) {
        // A URI on the SBC itself: its user part must be one of our tokens.
        if (auto t = Token::of(uri.user))
            if (auto it = bindings_.find(*t); it != bindings_.end()) b = &it->second;
        if (!b) {
            counters_.add(RegistrationCounter::inbound_gone);
            r.kind = Route::Kind::gone;
            return r;
        }
    } else {
        std::string aor(uri.user);
        aor += '@';
        aor += base::to_lower(uri.host);
        auto it = by_aor_.find(std::string_view(aor));
        if (it == by_aor_.end() || it->second.empty()) return r;
        // The most recent registration of the address of record.
        for (const Token& t : it->second) {
            const Binding& c = bindings_.at(t);
            if (!b || c.client_until > b->client_until) b = &c;
        }
    }
    counters_.add(RegistrationCounter::inbound_routed);
    r.kind = Route::Kind::found;
    r.flow = b->flow;
    r.target = b->contact;
    return r;
}

std::optional<Registrations::BindingView> Registrations::binding(std::string_view token) const {
    const auto t = Token::of(token);
    if (!t) return std::nullopt;
    auto it = bindings_.find(*t);
    if (it == bindings_.end()) return std::nullopt;
    const Binding& b = it->second;
    return BindingView{std::string(*b.aor), std::string(b.contact), b.flow, b.client_until,
                       b.registrar_until};
}

std::vector<std::string> Registrations::tokens_of(std::string_view aor) const {
    std::vector<std::string> out;
    if (auto it = by_aor_.find(aor); it != by_aor_.end())
        for (const Token& t : it->second) out.emplace_back(t.view());
    return out;
}

std::vector<std::string> Registrations::tokens(std::string_view aor) const {
    std::vector<std::pair<std::string_view, std::string_view>> all;
    if (!aor.empty()) {
        if (auto it = by_aor_.find(aor); it != by_aor_.end())
            for (const Token& t : it->second) all.emplace_back(it->first, t.view());
    } else {
        all.reserve(bindings_.size());
        for (const auto& [t, b] : bindings_) all.emplace_back(*b.aor, t.view());
    }
    std::sort(all.begin(), all.end());
    std::vector<std::string> out;
    out.reserve(all.size());
    for (const auto& [a, t] : all) out.emplace_back(t);
    return out;
}

bool Registrations::remove_binding(std::string_view token) {
    const auto t = Token::of(token);
    if (!t || !bindings_.count(*t)) return false;
    remove(*t, RegistrationCounter::removed_by_operator);
    return true;
}

}  // namespace sbc::signaling

#include "sbc/signaling/b2bua.hpp"

#include <algorithm>
#include <array>
#include <map>

namespace sbc::signaling {

std::string_view side_name(Side s) {
    return s == Side::external ? "external" : "internal";
}

std::string_view call_end_name(CallEnd e) {
    switch (e) {
        case CallEnd::rejected:
            return "rejected";
        case CallEnd::cancelled:
            return "cancelled";
        case CallEnd::bye_caller:
            return "bye_caller";
        case CallEnd::bye_callee:
            return "bye_callee";
        case CallEnd::timeout:
            return "timeout";
        case CallEnd::max_duration:
            return "max_duration";
        case CallEnd::terminated:
            return "terminated";
        case CallEnd::blocked:
            return "blocked";
    }
    return "terminated";
}

namespace {

std::uint64_t pack(TxId id) {
    return (std::uint64_t{id.generation} << 32) | id.index;
}

// A name-addr's text without its tag parameter (the B2BUA writes its own tags).
std::string without_tag(const sip::NameAddr& a) {
    std::string s(a.raw);
    if (a.tag.empty()) return s;
    const std::size_t at = s.find(a.tag);
    if (at == std::string::npos) return s;
    std::size_t begin = s.rfind(';', at);
    if (begin == std::string::npos) return s;
    s.erase(begin, at + a.tag.size() - begin);
    return s;
}

// The value of URI parameter `name` in `params` ("a=b;c;transport=tcp"), "" when absent.
std::string_view uri_param(std::string_view params, std::string_view name) {
    while (!params.empty()) {
        const auto semi = params.find(';');
        std::string_view p = params.substr(0, semi);
        params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
        const auto eq = p.find('=');
        if (eq != std::string_view::npos && base::iequals(p.substr(0, eq), name))
            return p.substr(eq + 1);
    }
    return {};
}

std::optional<base::Endpoint> endpoint_of_uri(std::string_view uri_text) {
    std::string_view t = uri_text;
    if (!t.empty() && t.front() == '<') {
        const auto close = t.find('>');
        if (close == std::string_view::npos) return std::nullopt;
        t = t.substr(1, close - 1);
    } else if (const auto lt = t.find('<'); lt != std::string_view::npos) {
        const auto close = t.find('>', lt);
        if (close == std::string_view::npos) return std::nullopt;
        t = t.substr(lt + 1, close - lt - 1);
    }
    sip::Uri uri;
    std::vector<sip::Param> pool;
    if (!sip::parse_uri(t, uri, pool).ok || uri.kind == sip::UriScheme::tel ||
        uri.kind == sip::UriScheme::other)
        return std::nullopt;
    auto addr = base::IpAddress::parse(uri.host);
    if (!addr) return std::nullopt;
    // RFC 3263 §4.2: without a port, 5061 for TLS, 5060 otherwise.
    const bool tls = uri.kind == sip::UriScheme::sips ||
                     base::iequals(uri_param(uri.params_text, "transport"), "tls");
    return base::Endpoint{*addr, uri.has_port ? uri.port : std::uint16_t(tls ? 5061 : 5060)};
}

// The transport a URI asks for (RFC 3261 §19.1.4, RFC 3263 §4.1): sips: is TLS, else its
// transport parameter, else UDP.
Transport transport_of_uri(std::string_view uri_text) {
    std::string_view t = uri_text;
    if (const auto lt = t.find('<'); lt != std::string_view::npos) {
        const auto close = t.find('>', lt);
        t = t.substr(lt + 1, close == std::string_view::npos ? close : close - lt - 1);
    }
    sip::Uri uri;
    std::vector<sip::Param> pool;
    if (!sip::parse_uri(t, uri, pool).ok) return Transport::udp;
    if (uri.kind == sip::UriScheme::sips) return Transport::tls;
    const std::string_view tp = uri_param(uri.params_text, "transport");
    if (base::iequals(tp, "tls")) return Transport::tls;
    if (base::iequals(tp, "tcp")) return Transport::tcp;
    return Transport::udp;
}

std::string host_port(std::string_view host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
    std::string out = v6 ? "[" + std::string(host) + "]" : std::string(host);
    out += ':';
    out += std::to_string(port);
    return out;
}

// Hands a string's block back to the call memory.
void release_text(std::pmr::string& s) {
    std::pmr::string(s.get_allocator()).swap(s);
}

std::string host_port(const SideConfig& s) {
    return host_port(s.host, s.port);
}

// The SBC's address on side `s` for a leg over transport `t`: the stream listener of that
// transport when the side has one, else the side's UDP address.
std::string host_port(const SideConfig& s, Transport t) {
    if (t != Transport::udp)
        for (const auto& l : s.stream_listeners)
            if (l.transport == t) return host_port(l.host, l.port);
    return host_port(s);
}

std::uint32_t listener_for(const SideConfig& s, Transport t) {
    if (t != Transport::udp)
        for (const auto& l : s.stream_listeners)
            if (l.transport == t) return l.listener;
    return s.listener;
}

// The SBC's Contact on a leg over `t` (RFC 3261 §8.1.1.8: a URI that reaches us over the same
// transport): sips: when the leg's target is a SIPS URI, else the transport parameter.
std::string contact_of(std::string_view user, const SideConfig& s, Transport t,
                       std::string_view target) {
    const bool sips =
        t == Transport::tls && target.size() >= 5 && base::iequals(target.substr(0, 5), "sips:");
    std::string out = sips ? "<sips:" : "<sip:";
    out += user;
    out += '@';
    out += host_port(s, t);
    if (!sips && t == Transport::tcp) out += ";transport=tcp";
    if (!sips && t == Transport::tls) out += ";transport=tls";
    out += '>';
    return out;
}

// The Request-URI for a next hop over `t`.
std::string hop_uri(const sip::Uri& request_uri, const base::Endpoint& hop, Transport t) {
    std::string ruri = "sip:";
    if (request_uri.has_user) {
        ruri += request_uri.user;
        ruri += '@';
    }
    ruri += hop.to_string();
    if (t == Transport::tcp) ruri += ";transport=tcp";
    if (t == Transport::tls) ruri += ";transport=tls";
    return ruri;
}

// Header fields outgoing messages may carry from the other leg when they leave to the outside:
// those that describe the session or the request, never a route, a host or a product.
// RFC 3262 §7.2: RAck is "response-num CSeq-num method". The CSeq number names the INVITE of
// the dialog the PRACK travels in, which is the SBC's own on the other leg.
void renumber_rack(std::string& bytes, std::uint32_t invite_cseq) {
    const std::size_t at = bytes.find("\r\nRAck: ");
    if (at == std::string::npos) return;
    const std::size_t value = at + 8;
    const std::size_t end = bytes.find("\r\n", value);
    if (end == std::string::npos) return;
    const std::string_view v(bytes.data() + value, end - value);
    const std::size_t sp1 = v.find_first_of(" \t");
    if (sp1 == std::string_view::npos) return;
    const std::size_t num = v.find_first_not_of(" \t", sp1);
    if (num == std::string_view::npos) return;
    const std::size_t sp2 = v.find_first_of(" \t", num);
    if (sp2 == std::string_view::npos) return;
    bytes.replace(value + num, sp2 - num, std::to_string(invite_cseq));
}

bool safe_outbound(std::string_view name) {
    static constexpr std::string_view kSafe[] = {
        "Allow",
        "Supported",
        "Require",
        "Unsupported",
        "Content-Disposition",
        "Session-Expires",
        "Min-SE",
        "RSeq",
        "RAck",
        "Event",
        "Subscription-State",
        "Accept",
        "Allow-Events",
        "Privacy",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Retry-After",
        "Min-Expires",
        "Expires",
        "Subject",
        "Accept-Language",
        "Accept-Encoding",
        "Content-Language",
        "Content-Encoding",
        "Date",
        "Timestamp",
        "Priority",
        "k",
        "o",
        "x",
        "u",
    };
    for (std::string_view s : kSafe)
        if (base::iequals(s, name)) return true;
    return false;
}

}  // namespace

// An identifier of ours of fixed length (tags, Contact users, branches), kept inline.
template <std::size_t N>
struct Token {
    std::array<char, N> text{};
    std::uint8_t size = 0;
    Token& operator=(std::string_view s) {
        size = static_cast<std::uint8_t>(std::min(s.size(), N));
        std::copy_n(s.data(), size, text.data());
        return *this;
    }
    std::string_view view() const { return {text.data(), size}; }
    operator std::string_view() const { return view(); }
    bool empty() const { return size == 0; }
};

struct B2bua::Leg {
    explicit Leg(std::pmr::memory_resource* r)
        : call_id(r), remote_tag(r), local_uri(r), remote_uri(r), remote_target(r), route_set(r) {}
    Side side = Side::external;
    Flow flow;
    std::pmr::string call_id;
    Token<16> local_tag;
    std::pmr::string remote_tag;
    std::pmr::string local_uri, remote_uri;  // name-addrs without tags
    std::pmr::string remote_target;          // the peer's Contact URI
    std::pmr::vector<std::pmr::string> route_set;
    std::uint32_t local_cseq = 0;
    std::uint32_t remote_cseq = 0;
    Token<20> contact_user;
};

// What a call keeps for its whole life: both dialogs, and only what the rest of them needs
// (no copy of the INVITE or its 2xx; the caller's offer only until the call is answered or
// fails; our ACK of a 2xx as the few fields that rebuild it).
struct B2bua::Call {
    explicit Call(std::pmr::memory_resource* r)
        : info(r),
          leg{Leg(r), Leg(r)},
          flag_value(r),
          offer(r),
          ack_body(r),
          registered_target(r) {}
    std::uint64_t id = 0;
    CallInfo info;
    Leg leg[2];  // 0: the side the call came from, 1: the side it went to
    TxId invite_server;
    TxId invite_client;
    std::uint32_t invite_cseq = 0;         // on leg 1
    std::uint32_t caller_invite_cseq = 0;  // the caller's INVITE, on leg 0
    // The next hop tried last + 1, or (to a registered client or a Request-URI) how many tries.
    std::size_t hop = 0;
    std::uint64_t tried = 0;  // next hops of leg 1's side tried, bit i = hop i
    bool flagged = false;     // admitted with a flag verdict: flag_value goes inside
    bool uniform = false;     // admitted with enumeration resistance: refusals made uniform
    std::pmr::string flag_value;
    std::pmr::string offer;  // the caller's SDP anchored toward leg 1 (kept for failover)
    bool answered = false, ended = false, cancelled = false, media = false;
    bool stranger = false;  // counted in stranger_setups_ until answered or ended
    int outstanding = 0;    // client transactions still running
    // The INVITE (initial or re-) whose 2xx waits for the ACK of the side that sent it.
    TxId ack_server;
    int ack_leg = -1;  // where our ACK goes
    std::uint32_t ack_cseq = 0;
    // Our ACK went (to ack_leg): a retransmitted 2xx gets it again, rebuilt from the dialog
    // with the same branch and body.
    bool acked = false;
    Token<31> ack_branch;
    std::pmr::string ack_body;   // a late answer in our ACK (usually empty)
    bool offer_pending = false;  // an INVITE/UPDATE transaction in progress (glare: 491)
    base::Nanos deadline = 0;
    // A call from inside to a registered client: the flow it registered on and its Contact.
    std::optional<Flow> registered;
    std::pmr::string registered_target;
};

namespace {
// Chunks of the call memory grow up to this many blocks; blocks up to kLargestPooled bytes are
// pooled (a Call and every string of one), larger ones (index buckets) come from the heap.
constexpr std::size_t kMaxBlocksPerChunk = 256;
constexpr std::size_t kLargestPooled = 2048;
}  // namespace

B2bua::CallMemory::CallMemory()
    : pool_(std::pmr::pool_options{kMaxBlocksPerChunk, kLargestPooled}, &upstream_) {}

B2bua::CallMemory::~CallMemory() {
    for (void* c : chunks_) ::operator delete (c, std::align_val_t{alignof(std::max_align_t)});
}

void* B2bua::CallMemory::take_slot(std::size_t size) {
    size = (size + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) *
           alignof(std::max_align_t);
    if (!free_slots_) {
        slot_size_ = size;
        auto* chunk = static_cast<std::byte*>(
            ::operator new (size* kSlotsPerChunk, std::align_val_t{alignof(std::max_align_t)}));
        chunks_.push_back(chunk);
        held_ += size * kSlotsPerChunk;
        for (std::size_t i = kSlotsPerChunk; i-- > 0;) {
            void* slot = chunk + i * size;
            *static_cast<void**>(slot) = free_slots_;
            free_slots_ = slot;
        }
    }
    void* slot = free_slots_;
    free_slots_ = *static_cast<void**>(slot);
    return slot;
}

void B2bua::CallMemory::release() {
    pool_.release();
    for (void* c : chunks_) {
        ::operator delete (c, std::align_val_t{alignof(std::max_align_t)});
        held_ -= slot_size_ * kSlotsPerChunk;
    }
    chunks_.clear();
    chunks_.shrink_to_fit();
    free_slots_ = nullptr;
}

void B2bua::trim_call_memory() {
    // Below this the memory is kept for the next calls.
    constexpr std::size_t kKeepBelow = 1 << 20;
    if (!calls_.empty() || !dialogs_.empty() || !call_ids_.empty() ||
        call_memory_.held() < kKeepBelow)
        return;
    // Empty containers still hold their bucket arrays in the call memory: replace them.
    decltype(calls_)(&call_memory_).swap(calls_);
    KeyIndex(&call_memory_).swap(dialogs_);
    KeyIndex(&call_memory_).swap(call_ids_);
    call_memory_.release();
}

void B2bua::CallMemory::give_slot(void* p) {
    *static_cast<void**>(p) = free_slots_;
    free_slots_ = p;
}

void* B2bua::CallMemory::do_allocate(std::size_t bytes, std::size_t align) {
    return pool_.allocate(bytes, align);
}
void B2bua::CallMemory::do_deallocate(void* p, std::size_t bytes, std::size_t align) {
    pool_.deallocate(p, bytes, align);
}
void* B2bua::CallMemory::Counting::do_allocate(std::size_t bytes, std::size_t align) {
    void* p = std::pmr::new_delete_resource()->allocate(bytes, align);
    *held += bytes;
    return p;
}
void B2bua::CallMemory::Counting::do_deallocate(void* p, std::size_t bytes, std::size_t align) {
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
    *held -= bytes;
}

void B2bua::CallDelete::operator()(Call* c) const {
    c->~Call();
    memory->give_slot(c);
}

B2bua::B2bua(B2buaConfig config, Wire& wire, MediaAnchor& media, CallHooks& hooks,
             TimerSettings timers, TransactionLimits limits)
    : config_(std::move(config)),
      wire_(wire),
      media_(media),
      hooks_(hooks),
      tx_(*this, timers, limits) {
    // At most 64 next hops per side: a call's tried set is one word.
    for (const Side side : {Side::external, Side::internal})
        hops_[static_cast<int>(side)].resize(
            std::min<std::size_t>(side_config(side).next_hops.size(), 64));
    rng_ = config_.seed;
    index_seed_ = random_token(16);
    if (rng_ == 0)
        for (char ch : random_token(12)) rng_ = rng_ * 37 + static_cast<unsigned char>(ch);
    if (!config_.health.enabled)
        for (auto& side : hops_)
            for (auto& h : side) h.up = h.ever_up = true;
    known_.resize(config_.known_sources);
    if (config_.registrations.enabled && !config_.internal.next_hops.empty()) {
        RegistrationConfig rc = config_.registrations;
        rc.external_host = config_.external.host;
        rc.external_port = config_.external.port;
        rc.external_transport = config_.external.transport;
        rc.external_listener = config_.external.listener;
        rc.internal_host = config_.internal.host;
        rc.internal_port = config_.internal.port;
        rc.internal_transport = config_.internal.transport;
        rc.internal_listener = config_.internal.listener;
        rc.registrars = config_.internal.next_hops;
        rc.registrar_transports = config_.internal.hop_transports;
        for (const auto& l : config_.internal.stream_listeners)
            rc.internal_streams.push_back({l.transport, l.host, l.port, l.listener});
        regs_ = std::make_unique<Registrations>(std::move(rc), tx_, wire_, hooks_,
                                                [this](std::size_t i) { return hop_usable(i); });
    }
}

bool B2bua::hop_usable(std::size_t hop) const {
    const auto& hops = hops_[static_cast<int>(Side::internal)];
    return hop >= hops.size() || hops[hop].up;
}

std::optional<B2bua::HopHealth> B2bua::hop_health(Side side, std::size_t i) const {
    const auto& hops = hops_[static_cast<int>(side)];
    if (i >= hops.size()) return std::nullopt;
    HopHealth h;
    h.up = hops[i].up;
    h.failures = hops[i].failures;
    h.probes_sent = hops[i].probes_sent;
    h.probes_answered = hops[i].probes_answered;
    return h;
}

std::size_t B2bua::pick_hop(Side side, std::uint64_t tried) {
    const auto& hops = hops_[static_cast<int>(side)];
    const auto& w = side_config(side).weights;
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < hops.size(); ++i)
        if (!(tried >> i & 1u) && hops[i].up) total += i < w.size() && w[i] > 0 ? w[i] : 1;
    if (total == 0) return hops.size();
    // splitmix64: cheap, well mixed, and deterministic for a given seed (tests).
    rng_ += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = rng_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::uint64_t r = z % total;
    for (std::size_t i = 0; i < hops.size(); ++i) {
        if ((tried >> i & 1u) || !hops[i].up) continue;
        const std::uint64_t wi = i < w.size() && w[i] > 0 ? w[i] : 1;
        if (r < wi) return i;
        r -= wi;
    }
    return hops.size();
}

void B2bua::hop_result(Side side, std::size_t hop, bool ok) {
    auto& hops = hops_[static_cast<int>(side)];
    if (hop >= hops.size() || !config_.health.enabled) return;
    HopState& h = hops[hop];
    if (ok) {
        h.failures = 0;
        ++h.successes;
        if (!h.up && (!h.ever_up || h.successes >= config_.health.successes_before_up)) {
            h.up = h.ever_up = true;
            counters_.add(B2buaCounter::hops_up);
        }
    } else {
        h.successes = 0;
        ++h.failures;
        if (h.up && h.failures >= config_.health.failures_before_down) {
            h.up = false;
            counters_.add(B2buaCounter::hops_down);
        }
    }
}

void B2bua::probe_hops(Side side, base::Nanos now) {
    if (!config_.health.enabled) return;
    const SideConfig& in = side_config(side);
    auto& hops = hops_[static_cast<int>(side)];
    for (std::size_t i = 0; i < hops.size(); ++i) {
        HopState& h = hops[i];
        if (h.probe && now - h.probe_sent >= config_.health.timeout) {
            // A late answer no longer counts, and a dead hop is not sent retransmissions
            // until Timer F: the next probe comes at the health check's interval.
            pending_.erase(pack(h.probe));
            tx_.abandon(h.probe);
            h.probe = {};
            counters_.add(B2buaCounter::probes_failed);
            hop_result(side, i, false);
        }
        if (h.probe || now < h.next_probe) continue;
        h.next_probe = now + config_.health.interval;
        const base::Endpoint& to = in.next_hops[i];
        const Transport tp = i < in.hop_transports.size() ? in.hop_transports[i] : Transport::udp;
        std::string req =
            "OPTIONS sip:" + to.to_string() + " SIP/2.0\r\nVia: SIP/2.0/" +
            std::string(transport_name(tp)) + " " + host_port(in, tp) + ";branch=" + new_branch() +
            ";rport\r\nMax-Forwards: 70\r\n" + "From: <sip:" + host_port(in) +
            ">;tag=" + random_token(12) + "\r\nTo: <sip:" + to.to_string() +
            ">\r\nCall-ID: " + random_token(24) + "\r\nCSeq: 1 OPTIONS\r\n" +
            (config_.user_agent.empty() ? std::string()
                                        : "User-Agent: " + config_.user_agent + "\r\n") +
            "Content-Length: 0\r\n\r\n";
        Flow f;
        f.transport = tp;
        f.listener = listener_for(in, tp);
        f.remote = to;
        const TxId t = tx_.request(f, std::move(req), now);
        if (!t) continue;
        counters_.add(B2buaCounter::probes_sent);
        ++h.probes_sent;
        h.probe = t;
        h.probe_sent = now;
        Pending p;
        p.probe = static_cast<int>(i);
        p.hop_side = side;
        pending_[pack(t)] = p;
    }
}

B2bua::~B2bua() {
    for (auto& [id, call] : calls_)
        if (call->media) media_.release(id);
}

bool B2bua::send(const Flow& flow, std::string_view bytes) {
    return wire_.send(flow, bytes);
}

const CallInfo* B2bua::info(std::uint64_t id) const {
    auto it = calls_.find(id);
    return it == calls_.end() || it->second->ended ? nullptr : &it->second->info;
}

bool B2bua::answered(std::uint64_t id) const {
    auto it = calls_.find(id);
    return it != calls_.end() && !it->second->ended && it->second->answered;
}

std::vector<std::uint64_t> B2bua::calls() const {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, c] : calls_)
        if (!c->ended) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::optional<CallView> B2bua::call_view(std::uint64_t id) const {
    auto it = calls_.find(id);
    if (it == calls_.end()) return std::nullopt;
    const Call& c = *it->second;
    CallView v;
    v.info = &c.info;
    v.answered = c.answered;
    v.ended = c.ended;
    for (int i = 0; i < 2; ++i) {
        v.side[i] = c.leg[i].side;
        v.flow[i] = c.leg[i].flow;
        v.call_id[i] = c.leg[i].call_id;
    }
    return v;
}

std::uint64_t B2bua::index_hash(Side side, std::string_view call_id, std::string_view tag) const {
    std::string k;
    k.reserve(index_seed_.size() + 3 + call_id.size() + tag.size());
    k += index_seed_;
    k += side == Side::external ? 'e' : 'i';
    k += call_id;
    k += '\0';
    k += tag;
    return std::hash<std::string_view>{}(k);
}

void B2bua::index_add(KeyIndex& index, std::uint64_t hash, std::uint64_t call) {
    index.emplace(hash, call);
}

void B2bua::index_remove(KeyIndex& index, std::uint64_t hash, std::uint64_t call) {
    auto [it, end] = index.equal_range(hash);
    for (; it != end; ++it)
        if (it->second == call) {
            index.erase(it);
            return;
        }
}

std::optional<std::uint64_t> B2bua::call_of(Side side, std::string_view call_id) const {
    // The newest call with a leg of that Call-ID on that side.
    std::optional<std::uint64_t> found;
    auto [it, end] = call_ids_.equal_range(index_hash(side, call_id, {}));
    for (; it != end; ++it) {
        auto c = calls_.find(it->second);
        if (c == calls_.end() || (found && *found > it->second)) continue;
        for (const Leg& l : c->second->leg)
            if (l.side == side && l.call_id == call_id) found = it->second;
    }
    return found;
}

void B2bua::forget_call_ids(const Call& c) {
    for (const Leg& l : c.leg) index_remove(call_ids_, index_hash(l.side, l.call_id, {}), c.id);
}

void B2bua::receive(const sip::Message& m, const Flow& from, Side side, base::Nanos now) {
    now_ = now;
    current_side_ = side;
    if (refuse_stranger(m, from, side)) {
        counters_.add(B2buaCounter::calls_refused_strangers);
        respond_503_statelessly(m, from);
        return;
    }
    // Answers to the registrations' keep-alive OPTIONS: matched by branch, no transaction.
    if (regs_ && !m.is_request() && regs_->on_probe_response(m, from, now)) return;
    const auto r = tx_.receive(m, from, now);
    if (r == TransactionLayer::Received::overloaded) respond_503_statelessly(m, from);
}

void B2bua::respond_503_statelessly(const sip::Message& m, const Flow& from) {
    sip::ResponseOptions o;
    const std::string src = from.remote.addr.to_string();
    o.source_address = src;
    o.source_port = from.remote.port;
    const std::string tag = random_token(16);
    o.to_tag = tag;
    const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "5"}};
    o.headers = h;
    wire_.send(from, sip::build_response(m, 503, {}, o));
}

// Known callers first: strangers (a spoofed flood among them) get max_stranger_setups calls in
// setup at a time, so their relay ports and the inside's time stay bounded. The refusal is
// stateless: no transaction, no retransmitted 503 toward an address that may be spoofed.
//
// Strangers also leave transactions behind them: a final to a spoofed source is never ACKed,
// so its server transaction lives until Timer H and the call's client INVITE until Timer D
// (32 s each). A flood fast enough would fill the table and known callers' INVITEs would get
// the layer's 503 (overloaded): the last quarter of it is kept for them.
bool B2bua::refuse_stranger(const sip::Message& m, const Flow& from, Side side) {
    if (side != Side::external || config_.max_stranger_setups == 0 || !m.is_request() ||
        m.method() != sip::Method::invite || (m.to() && !m.to()->tag.empty()))
        return false;
    const bool table_left = tx_.size() < tx_.capacity() - tx_.capacity() / 4;
    if (stranger_setups_ < config_.max_stranger_setups && table_left) return false;
    if (is_known(from.remote.addr) || tx_.has_server_transaction(m)) return false;
    return !hooks_.admit(m, from, side).known_source;
}

std::size_t B2bua::transport_failed(const Flow& to, base::Nanos now) {
    now_ = now;
    return tx_.fail_flow(to, now);
}

void B2bua::advance(base::Nanos now) {
    now_ = now;
    tx_.advance(now);
    probe_hops(Side::internal, now);
    probe_hops(Side::external, now);
    if (regs_) regs_->advance(now);
    trim_call_memory();
    if (config_.max_call_duration > 0) {
        std::vector<std::uint64_t> due;
        for (const auto& [id, c] : calls_)
            if (!c->ended && c->answered && c->deadline <= now) due.push_back(id);
        for (auto id : due) {
            auto it = calls_.find(id);
            if (it == calls_.end()) continue;
            Call& c = *it->second;
            send_bye(c, 0, now);
            send_bye(c, 1, now);
            finish(c, CallEnd::max_duration, now);
        }
    }
}

base::Nanos B2bua::next_deadline() const {
    base::Nanos next = tx_.next_deadline();
    if (regs_) next = std::min(next, regs_->next_deadline());
    if (config_.health.enabled)
        for (const auto& side : hops_)
            for (const HopState& h : side)
                next =
                    std::min(next, h.probe ? h.probe_sent + config_.health.timeout : h.next_probe);
    if (config_.max_call_duration > 0)
        for (const auto& [id, c] : calls_)
            if (!c->ended && c->answered) next = std::min(next, c->deadline);
    return next;
}

bool B2bua::end_call(std::uint64_t id, base::Nanos now) {
    now_ = now;
    auto it = calls_.find(id);
    if (it == calls_.end() || it->second->ended) return false;
    Call& c = *it->second;
    if (c.answered) {
        send_bye(c, 0, now);
        send_bye(c, 1, now);
    } else {
        if (c.invite_client) tx_.cancel(c.invite_client, now);
        c.cancelled = true;
        tx_.respond(c.invite_server, 480, {}, {}, now);
    }
    finish(c, CallEnd::terminated, now);
    return true;
}

std::string B2bua::reason_for(int status) const {
    for (const auto& [code, phrase] : config_.reason_phrases)
        if (code == status) return phrase;
    return std::string(sip::default_reason(status));
}

Flow B2bua::leg_destination(const Call& call, int leg) const {
    const Leg& l = call.leg[leg];
    Flow f = l.flow;
    if (l.side == Side::internal) {
        std::optional<base::Endpoint> ep;
        if (!l.route_set.empty())
            ep = endpoint_of_uri(l.route_set.front());
        else if (!l.remote_target.empty())
            ep = endpoint_of_uri(l.remote_target);
        if (ep) f.remote = *ep;
    }
    return f;
}

// Header fields of `src` that go on with a message the B2BUA builds for side `to`: the ones it
// does not rebuild itself, minus the configured ones and, toward the outside, anything that is
// not known to be free of inside detail.
static void collect_headers(const sip::Message& src, Side to, const B2buaConfig& cfg,
                            std::vector<std::pair<std::string_view, std::string_view>>& out) {
    using H = sip::HeaderId;
    for (const sip::Header& h : src.headers()) {
        switch (h.id) {
            case H::via:
            case H::from:
            case H::to:
            case H::call_id:
            case H::cseq:
            case H::contact:
            case H::max_forwards:
            case H::content_length:
            case H::content_type:
            case H::route:
            case H::record_route:
            case H::user_agent:
            case H::server:
                continue;
            default:
                break;
        }
        if (base::iequals(h.name, cfg.flag_header) || base::iequals(h.name, "Path") ||
            base::iequals(h.name, "Service-Route"))
            continue;
        bool stripped = false;
        for (const auto& s : cfg.strip_headers)
            if (base::iglob_match(s, h.name)) stripped = true;
        if (stripped) continue;
        if (to == Side::external && !safe_outbound(h.name)) continue;
        out.emplace_back(h.name, h.value);
    }
}

std::string B2bua::build_request(Call& call, int li, std::string_view method,
                                 const sip::Message* src, std::string_view body, std::uint32_t cseq,
                                 std::string_view branch) {
    Leg& l = call.leg[li];
    const SideConfig& sc = l.side == Side::external ? config_.external : config_.internal;
    std::string out;
    out.reserve(1024 + body.size());
    out += method;
    out += ' ';
    out += l.remote_target;
    out += " SIP/2.0\r\nVia: SIP/2.0/";
    // RFC 3261 §18.1.1: the transport the request really goes on (a registered phone's TCP
    // or TLS connection, whatever the side's default).
    out += transport_name(l.flow.transport);
    out += ' ';
    out += host_port(sc, l.flow.transport);
    out += ";branch=";
    out += branch;
    out += ";rport\r\n";
    for (const auto& r : l.route_set) {
        out += "Route: ";
        out += r;
        out += "\r\n";
    }
    out += "Max-Forwards: 70\r\nFrom: ";
    out += l.local_uri;
    out += ";tag=";
    out += l.local_tag;
    out += "\r\nTo: ";
    out += l.remote_uri;
    if (!l.remote_tag.empty()) {
        out += ";tag=";
        out += l.remote_tag;
    }
    out += "\r\nCall-ID: ";
    out += l.call_id;
    out += "\r\nCSeq: ";
    out += std::to_string(cseq);
    out += ' ';
    out += method;
    out += "\r\n";
    if (method == "INVITE" || method == "UPDATE" || method == "SUBSCRIBE" || method == "NOTIFY" ||
        method == "REFER") {
        out += "Contact: ";
        out += contact_of(l.contact_user, sc, l.flow.transport, l.remote_target);
        out += "\r\n";
    }
    if (!config_.user_agent.empty()) {
        out += "User-Agent: ";
        out += config_.user_agent;
        out += "\r\n";
    }
    if (src) {
        std::vector<std::pair<std::string_view, std::string_view>> hs;
        collect_headers(*src, l.side, config_, hs);
        for (const auto& [n, v] : hs) {
            out += n;
            out += ": ";
            out += v;
            out += "\r\n";
        }
        if (!body.empty() && !src->content_type().empty()) {
            out += "Content-Type: ";
            out += src->content_type();
            out += "\r\n";
        }
    }
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n\r\n";
    out += body;
    return out;
}

std::optional<std::string> B2bua::anchor_sdp(Call& call, std::string_view body, Side from,
                                             base::Nanos now) {
    sip::Sdp sdp;
    if (!sdp.parse(body)) return std::nullopt;
    const SideConfig& toward = other(from) == Side::external ? config_.external : config_.internal;
    bool any = false;
    std::string rtcp_address;
    for (std::size_t i = 0; i < sdp.media().size(); ++i) {
        const sip::SdpMedia& md = sdp.media()[i];
        if (md.port == 0) continue;  // a rejected stream stays rejected
        std::string_view addr_text = sdp.connection_address(i);
        if (const auto slash = addr_text.find('/'); slash != std::string_view::npos)
            addr_text = addr_text.substr(0, slash);
        auto addr = base::IpAddress::parse(addr_text);
        if (!addr) return std::nullopt;
        auto ep = media_.anchor(call.id, i, from, base::Endpoint{*addr, md.port}, md.rtcp_mux, now);
        if (!ep) return std::nullopt;
        call.media = true;
        any = true;
        sdp.set_media_port(i, ep->port);
        if (md.has_rtcp)
            sdp.set_rtcp(i, md.rtcp_mux ? ep->port : static_cast<std::uint16_t>(ep->port + 1),
                         toward.media_host);
    }
    sdp.set_connection_address(toward.media_host);
    // Nothing of the sender's software or host in what the other side reads.
    sdp.set_origin_username("-");
    sdp.set_session_name("-");
    if (any) counters_.add(B2buaCounter::sdp_rewritten);
    return sdp.serialize();
}

void B2bua::on_request(TxId tx, const sip::Message& m, const Flow& from) {
    const Side side = current_side_;
    const sip::NameAddr* to = m.to();
    if (to && !to->tag.empty()) {
        int leg = 0;
        Call* call = call_of_dialog(m, side, &leg);
        if (!call) {
            counters_.add(B2buaCounter::unknown_dialog);
            tx_.respond(tx, 481, {}, {}, now_);
            return;
        }
        in_dialog(tx, m, from, *call, leg);
        return;
    }
    switch (m.method()) {
        case sip::Method::invite:
            new_call(tx, m, from);
            return;
        case sip::Method::options: {
            counters_.add(B2buaCounter::options_answered);
            sip::ResponseOptions o;
            const std::pair<std::string_view, std::string_view> h[] = {
                {"Allow",
                 "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, MESSAGE"},
                {"Accept", "application/sdp"},
                {"Server", config_.user_agent}};
            o.headers = std::span(h, config_.user_agent.empty() ? 2 : 3);
            tx_.respond(tx, 200, {}, o, now_);
            return;
        }
        case sip::Method::register_: {
            if (regs_ && side == Side::external) {
                if (hooks_.admit(m, from, side).kind == Admission::Kind::block)
                    regs_->refuse(tx, m, now_);
                else
                    regs_->on_register(tx, m, from, now_);
                return;
            }
            const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "60"}};
            sip::ResponseOptions o;
            o.headers = h;
            tx_.respond(tx, 503, {}, o, now_);
            return;
        }
        case sip::Method::message:
            relay_message(tx, m, from);
            return;
        case sip::Method::bye:
        case sip::Method::prack:
        case sip::Method::update:
        case sip::Method::info:
            counters_.add(B2buaCounter::unknown_dialog);
            tx_.respond(tx, 481, {}, {}, now_);
            return;
        default: {
            const std::pair<std::string_view, std::string_view> h[] = {
                {"Allow",
                 "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, MESSAGE"}};
            sip::ResponseOptions o;
            o.headers = h;
            tx_.respond(tx, 405, {}, o, now_);
            return;
        }
    }
}

void B2bua::new_call(TxId tx, const sip::Message& m, const Flow& from) {
    const Side side = current_side_;
    counters_.add(B2buaCounter::calls_offered);
    const SideConfig& here = side == Side::external ? config_.external : config_.internal;
    // A stranger's address may be spoofed: whatever final answers it (ours or the inside's) is
    // retransmitted only a bounded number of times toward it.
    const Admission adm = hooks_.admit(m, from, side);
    const bool stranger =
        side == Side::external && !adm.known_source && !is_known(from.remote.addr);
    if (stranger) tx_.limit_final_retransmissions(tx, config_.stranger_final_retransmissions);
    if (const int status = loop_refusal(m, here, to_binding(m, side))) {
        tx_.respond(tx, status, {}, {}, now_);
        return;
    }
    if (calls_.size() >= config_.max_calls) {
        counters_.add(B2buaCounter::calls_refused_capacity);
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "5"}};
        sip::ResponseOptions o;
        o.headers = h;
        tx_.respond(tx, 503, {}, o, now_);
        return;
    }
    std::optional<Registrations::Route> route;
    if (regs_ && side == Side::internal) {
        route = regs_->route(m.request_uri());
        if (route->kind == Registrations::Route::Kind::gone) {
            // The token names no binding (expired, its flow dead, or forged): fail at once.
            tx_.respond(tx, 480, {}, {}, now_);
            return;
        }
    }
    if (adm.kind == Admission::Kind::block) {
        counters_.add(B2buaCounter::calls_blocked);
        if (adm.uniform) {
            // A block must not read differently from an unknown or a known user: what they
            // get now, the challenge, or the 503 of a node with no next hop up.
            const auto& inside = hops_[static_cast<int>(Side::internal)];
            bool hop_up = inside.empty();
            for (const HopState& h : inside) hop_up = hop_up || h.up;
            if (!hop_up) {
                const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "30"}};
                sip::ResponseOptions o;
                o.headers = h;
                const std::string tag = random_token(16);
                o.to_tag = tag;
                tx_.respond(tx, 503, {}, o, now_);
                return;
            }
            uniform_answer(tx, m, nullptr, random_token(16));
            return;
        }
        tx_.respond(tx, adm.status >= 300 && adm.status <= 699 ? adm.status : 403,
                    adm.reason.empty() ? std::string_view{} : std::string_view(adm.reason), {},
                    now_);
        return;
    }
    if (adm.kind == Admission::Kind::flag) counters_.add(B2buaCounter::calls_flagged);

    CallPtr owned(new (call_memory_.take_slot(sizeof(Call))) Call(&call_memory_),
                  CallDelete{&call_memory_});
    Call& c = *owned;
    c.id = next_call_++;
    c.flagged = adm.kind == Admission::Kind::flag;
    if (c.flagged) c.flag_value = adm.flag_value;
    c.uniform = adm.uniform;
    c.invite_server = tx;
    c.info.id = c.id;
    c.info.from = side;
    c.info.source = from;
    if (m.from()) c.info.caller = m.from()->uri.user;
    c.info.callee = m.request_uri().user;
    c.info.call_id = m.call_id();
    if (const auto* a = m.authorization(); a && !a->username.empty())
        c.info.credentials_user = a->username;
    else if (const auto* p = m.proxy_authorization(); p && !p->username.empty())
        c.info.credentials_user = p->username;
    c.info.user_agent = m.user_agent();
    c.info.started = now_;

    Leg& a = c.leg[0];
    a.side = side;
    a.flow = from;
    a.call_id = m.call_id();
    a.local_tag = random_token(16);
    if (m.from()) a.remote_tag = m.from()->tag;
    if (m.to()) a.local_uri = without_tag(*m.to());
    if (m.from()) a.remote_uri = without_tag(*m.from());
    a.remote_target = m.contacts().empty() ? m.request_uri().raw : m.contacts().front().uri.raw;
    for (const auto& rr : m.record_routes()) a.route_set.emplace_back(rr.raw);
    a.remote_cseq = m.cseq()->number;
    c.caller_invite_cseq = a.remote_cseq;
    a.contact_user = random_token(20);

    Leg& b = c.leg[1];
    b.side = other(side);
    b.call_id = random_token(32);
    b.local_tag = random_token(16);
    b.contact_user = random_token(20);
    b.local_cseq = 1;
    const SideConfig& there = b.side == Side::external ? config_.external : config_.internal;
    b.flow.transport = there.transport;
    b.flow.listener = there.listener;
    if (route && route->kind == Registrations::Route::Kind::found) {
        c.registered = route->flow;
        c.registered_target = route->target;
        b.flow = route->flow;  // UDP to the observed source; the same connection for TCP/TLS
    }
    // The caller as the far side sees it: its user, and a host that is the SBC when the call
    // leaves to the outside (an inside domain never leaks).
    if (m.from()) {
        if (b.side == Side::external) {
            const std::string_view disp = m.from()->display_name;
            if (!disp.empty()) {
                b.local_uri = disp;
                b.local_uri += ' ';
            }
            b.local_uri += "<sip:";
            if (m.from()->uri.has_user) {
                b.local_uri += m.from()->uri.user;
                b.local_uri += '@';
            }
            b.local_uri += there.host;
            b.local_uri += '>';
        } else {
            b.local_uri = without_tag(*m.from());
        }
    }
    if (m.to()) b.remote_uri = without_tag(*m.to());

    if (!m.body().empty()) {
        auto sdp = anchor_sdp(c, m.body(), side, now_);
        if (!sdp) {
            counters_.add(B2buaCounter::sdp_refused);
            if (c.media) media_.release(c.id);
            tx_.respond(tx, 488, {}, {}, now_);
            return;
        }
        c.offer = *sdp;
    }
    const std::uint64_t id = c.id;
    index_add(dialogs_, index_hash(a.side, a.call_id, a.local_tag), id);
    index_add(dialogs_, index_hash(b.side, b.call_id, b.local_tag), id);
    index_add(call_ids_, index_hash(a.side, a.call_id, {}), id);
    index_add(call_ids_, index_hash(b.side, b.call_id, {}), id);
    server_calls_[pack(tx)] = id;
    calls_.emplace(id, std::move(owned));
    Call& call = *calls_[id];
    if (stranger) {  // a call in setup of a stranger (refuse_stranger) until answered or ended
        call.stranger = true;
        ++stranger_setups_;
    }
    if (!try_next_hop(call, now_)) {
        counters_.add(B2buaCounter::no_next_hop);
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", "30"}};
        sip::ResponseOptions o;
        o.headers = h;
        o.to_tag = call.leg[0].local_tag;
        tx_.respond(tx, 503, {}, o, now_);
        call.info.final_status = 503;
        finish(call, CallEnd::rejected, now_);
    }
}

// A request that already went through us: the network routes it back (RFC 3261 §16.3 4).
// A request from inside to a phone registered through us (its Request-URI one of our binding
// tokens) may carry our own Via: a phone outside calling another one, routed back by the
// inside's registrar. That is a spiral, not a loop (RFC 3261 §16.3 4: the Request-URI changed);
// Max-Forwards bounds it.
bool B2bua::to_binding(const sip::Message& m, Side side) const {
    const sip::Uri& ruri = m.request_uri();
    return regs_ && side == Side::internal && ruri.has_user &&
           (ruri.kind == sip::UriScheme::sip || ruri.kind == sip::UriScheme::sips) &&
           regs_->internal_host(ruri.host);
}

// 482 for a loop, 483 for Max-Forwards 0 (both counted as loops), 0 to go on.
int B2bua::loop_refusal(const sip::Message& m, const SideConfig& here, bool to_binding) {
    int status = 0;
    if (looped(m, here, to_binding))
        status = 482;
    else if (m.max_forwards() && *m.max_forwards() == 0)
        status = 483;
    if (status != 0) counters_.add(B2buaCounter::loops);
    return status;
}

bool B2bua::looped(const sip::Message& m, const SideConfig& here, bool to_binding) const {
    if (to_binding) return false;
    auto ours = [&here](const sip::Via& v) {
        if (!v.has_port || v.branch.size() != 31) return false;
        if (v.host == here.host && v.port == here.port) return true;
        for (const auto& l : here.stream_listeners)
            if (v.host == l.host && v.port == l.port) return true;
        return false;
    };
    for (const sip::Via& v : m.vias())
        if (ours(v)) return true;
    return false;
}

void B2bua::relay_message(TxId tx, const sip::Message& m, const Flow& from) {
    const Side side = current_side_;
    const Side to_side = other(side);
    const SideConfig& here = side_config(side);
    const SideConfig& there = side_config(to_side);
    auto refuse = [&](int status, std::string_view retry_after) {
        counters_.add(B2buaCounter::messages_refused);
        const std::pair<std::string_view, std::string_view> h[] = {{"Retry-After", retry_after}};
        sip::ResponseOptions o;
        if (!retry_after.empty()) o.headers = h;
        tx_.respond(tx, status, {}, o, now_);
    };
    const sip::Uri& ruri = m.request_uri();
    const bool to_reg = to_binding(m, side);
    if (const int status = loop_refusal(m, here, to_reg)) return refuse(status, {});
    // From outside: the front door's verdict (strangers' MESSAGEs are scored as probes). A
    // refusal under enumeration resistance reads as any user's answer: the challenge.
    Admission adm;
    if (side == Side::external) adm = hooks_.admit(m, from, side);
    if (adm.kind == Admission::Kind::block) {
        counters_.add(B2buaCounter::messages_refused);
        if (adm.uniform) {
            uniform_answer(tx, m, nullptr, random_token(16));
            return;
        }
        tx_.respond(tx, adm.status >= 300 && adm.status <= 699 ? adm.status : 403,
                    adm.reason.empty() ? std::string_view{} : std::string_view(adm.reason), {},
                    now_);
        return;
    }
    // Where it goes: a registered client's flow (a token of ours from inside), else a next hop
    // of the other side up (weighted), else (to the outside, no trunk) its Request-URI.
    Flow flow;
    std::string target;
    std::optional<Registrations::Route> route;
    if (to_reg) route = regs_->route(ruri);
    const auto& hops = hops_[static_cast<int>(to_side)];
    if (route && route->kind == Registrations::Route::Kind::gone) return refuse(480, {});
    if (route && route->kind == Registrations::Route::Kind::found) {
        flow = route->flow;
        target = route->target;
    } else if (!hops.empty()) {
        const std::size_t hop = pick_hop(to_side, 0);
        if (hop >= hops.size()) {
            counters_.add(B2buaCounter::no_next_hop);
            return refuse(503, "30");
        }
        const Transport tp =
            hop < there.hop_transports.size() ? there.hop_transports[hop] : Transport::udp;
        flow = Flow{tp, there.next_hops[hop], 0, listener_for(there, tp)};
        target = hop_uri(ruri, there.next_hops[hop], tp);
    } else if (to_side == Side::external) {
        auto ep = endpoint_of_uri(ruri.raw);
        if (!ep) return refuse(404, {});
        const Transport tp = transport_of_uri(ruri.raw);
        flow = Flow{tp, *ep, 0, listener_for(there, tp)};
        target = std::string(ruri.raw);
    } else {
        return refuse(503, "30");
    }
    // The request as a first request of a dialog of ours (RFC 3428 §4: MESSAGE is outside any
    // dialog): our Call-ID, From tag, branch and Via; the sender as the far side may see it.
    std::string out;
    out.reserve(1024 + m.body().size());
    out += "MESSAGE ";
    out += target;
    out += " SIP/2.0\r\nVia: SIP/2.0/";
    out += transport_name(flow.transport);
    out += ' ';
    out += host_port(there, flow.transport);
    out += ";branch=";
    out += new_branch();
    out += ";rport\r\nMax-Forwards: ";
    // Decremented inside; afresh outside so that the hops inside stay invisible.
    out += std::to_string(to_side == Side::internal && m.max_forwards()
                              ? std::min<int>(*m.max_forwards() - 1, 70)
                              : 70);
    out += "\r\nFrom: ";
    if (const sip::NameAddr* f = m.from()) {
        if (to_side == Side::external) {
            if (!f->display_name.empty()) {
                out += f->display_name;
                out += ' ';
            }
            out += "<sip:";
            if (f->uri.has_user) {
                out += f->uri.user;
                out += '@';
            }
            out += there.host;
            out += '>';
        } else {
            out += without_tag(*f);
        }
    }
    out += ";tag=";
    out += random_token(16);
    out += "\r\nTo: ";
    if (const sip::NameAddr* t = m.to()) out += without_tag(*t);
    out += "\r\nCall-ID: ";
    out += random_token(32);
    out += "\r\nCSeq: 1 MESSAGE\r\n";
    if (!config_.user_agent.empty()) {
        out += "User-Agent: ";
        out += config_.user_agent;
        out += "\r\n";
    }
    if (adm.kind == Admission::Kind::flag && to_side == Side::internal) {
        out += config_.flag_header;
        out += ": ";
        out += adm.flag_value;
        out += "\r\n";
    }
    std::vector<std::pair<std::string_view, std::string_view>> hs;
    collect_headers(m, to_side, config_, hs);
    for (const auto& [n, v] : hs) {
        out += n;
        out += ": ";
        out += v;
        out += "\r\n";
    }
    if (!m.body().empty() && !m.content_type().empty()) {
        out += "Content-Type: ";
        out += m.content_type();
        out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(m.body().size());
    out += "\r\n\r\n";
    out += m.body();
    const TxId t = tx_.request(flow, std::move(out), now_);
    if (!t) return refuse(503, "5");
    counters_.add(B2buaCounter::messages_relayed);
    Pending p;
    p.server = tx;
    p.method = sip::Method::message;
    p.standalone = true;
    p.uniform = adm.uniform;
    p.server_side = side;
    pending_[pack(t)] = p;
}

void B2bua::answer_message(const Pending& p, const sip::Message& r) {
    const int status = r.status_code();
    if (status < 200) return;  // RFC 3428 §7: provisionals are not forwarded
    if (tx_.state(p.server) == TxState::completed) return;
    const sip::Message* request = tx_.request_of(p.server);
    const std::string tag = random_token(16);
    if (p.uniform && p.server_side == Side::external && reveals_user(status) && request) {
        // Enumeration resistance: as for an INVITE, an answer that tells whether the user
        // exists becomes the challenge; a challenge goes in a response of our own making.
        const bool challenge = status == 401 || status == 407;
        if (challenge) call_challenge_.learn(r);
        uniform_answer(p.server, *request, challenge ? &r : nullptr, tag);
        return;
    }
    std::vector<std::pair<std::string_view, std::string_view>> hs;
    collect_headers(r, p.server_side, config_, hs);
    if (!config_.user_agent.empty()) hs.emplace_back("Server", config_.user_agent);
    sip::ResponseOptions o;
    o.to_tag = tag;
    o.headers = hs;
    const int out_status = status >= 300 && status < 400 ? config_.redirect_status : status;
    tx_.respond(p.server, out_status, reason_for(out_status), o, now_);
}

bool B2bua::try_next_hop(Call& c, base::Nanos now) {
    Leg& b = c.leg[1];
    const SideConfig& there = b.side == Side::external ? config_.external : config_.internal;
    const sip::Message* inv = tx_.request_of(c.invite_server);
    if (!inv) return false;
    const auto& hops = hops_[static_cast<int>(b.side)];
    // A call to a registered client goes on its flow; any other call leaving on a side with
    // next hops goes to one of them (the inside's proxies, the outside's trunks), chosen by
    // health and weight; without any, a call to the outside goes to its Request-URI.
    const bool via_hops = !hops.empty() && !(b.side == Side::external && c.registered);
    while (true) {
        std::optional<base::Endpoint> dest;
        std::string ruri;
        std::size_t hop = there.next_hops.size();
        if (via_hops) {
            hop = pick_hop(b.side, c.tried);
            if (hop < hops.size()) c.tried |= std::uint64_t{1} << hop;
        }
        if (hop < hops.size()) {
            dest = there.next_hops[hop];
            const Transport tp =
                hop < there.hop_transports.size() ? there.hop_transports[hop] : Transport::udp;
            ruri = hop_uri(inv->request_uri(), *dest, tp);
            // Over TCP/TLS the owner opens or reuses its own connection to the hop.
            b.flow = Flow{tp, *dest, 0, listener_for(there, tp)};
        } else if (b.side == Side::external && c.registered && c.hop == 0) {
            dest = c.registered->remote;
            ruri = c.registered_target;
            b.flow = *c.registered;  // the connection the client registered on
        } else if (b.side == Side::external && there.next_hops.empty() && c.hop == 0) {
            dest = endpoint_of_uri(inv->request_uri().raw);
            ruri = std::string(inv->request_uri().raw);
            const Transport tp = transport_of_uri(ruri);
            b.flow = Flow{tp, dest.value_or(base::Endpoint{}), 0, listener_for(there, tp)};
        }
        if (!dest) return false;
        b.flow.remote = *dest;
        b.remote_target = ruri;
        b.route_set.clear();
        b.remote_tag.clear();
        c.invite_cseq = b.local_cseq;
        const std::string branch = new_branch();
        std::string bytes = build_request(c, 1, "INVITE", inv, c.offer, c.invite_cseq, branch);
        if (c.flagged && b.side == Side::internal) {
            const std::string line =
                config_.flag_header + ": " + std::string(c.flag_value) + "\r\n";
            bytes.insert(bytes.find("\r\nContent-Length: ") + 2, line);
        }
        // Max-Forwards goes on decremented inside; toward the outside it starts afresh so that
        // the number of hops inside stays invisible.
        if (b.side == Side::internal && inv->max_forwards()) {
            const int mf = std::min<int>(*inv->max_forwards() - 1, 70);
            const std::size_t at = bytes.find("Max-Forwards: 70\r\n");
            bytes.replace(at, 18, "Max-Forwards: " + std::to_string(mf) + "\r\n");
        }
        const TxId t = tx_.request(b.flow, std::move(bytes), now);
        c.hop = via_hops ? hop + 1 : c.hop + 1;
        if (!t) continue;
        c.invite_client = t;
        ++c.outstanding;
        Pending p;
        p.call = c.id;
        p.leg = 1;
        p.server = c.invite_server;
        p.server_leg = 0;
        p.method = sip::Method::invite;
        p.initial = true;
        p.hop = via_hops ? hop : ~std::size_t{0};
        p.hop_side = b.side;
        pending_[pack(t)] = p;
        return true;
    }
}

B2bua::Call* B2bua::call_of_dialog(const sip::Message& m, Side side, int* leg) {
    auto [it, end] = dialogs_.equal_range(index_hash(side, m.call_id(), m.to()->tag));
    for (; it != end; ++it) {
        auto c = calls_.find(it->second);
        if (c == calls_.end() || c->second->ended) continue;
        Call& call = *c->second;
        for (int i = 0; i < 2; ++i)
            if (call.leg[i].side == side && call.leg[i].call_id == m.call_id() &&
                call.leg[i].local_tag.view() == m.to()->tag) {
                *leg = i;
                return &call;
            }
    }
    return nullptr;
}

void B2bua::in_dialog(TxId tx, const sip::Message& m, const Flow& from, Call& c, int li) {
    Leg& here = c.leg[li];
    const int oi = 1 - li;
    Leg& there = c.leg[oi];
    const std::uint32_t cseq = m.cseq()->number;
    if (here.remote_cseq != 0 && cseq <= here.remote_cseq && m.method() != sip::Method::ack) {
        tx_.respond(tx, 500, "CSeq Out of Order", {}, now_);
        return;
    }
    here.remote_cseq = cseq;
    if (here.side == Side::external) here.flow = from;  // follow the client's NAT binding

    if (m.method() == sip::Method::bye) {
        tx_.respond(tx, 200, {}, {}, now_);
        if (!c.answered) {
            // A BYE in an early dialog (RFC 3261 §15): the caller's pending INVITE is answered
            // 487 (§15.1.2) and the inside INVITE cancelled as a CANCEL would (§9.1); a BYE
            // alone would leave both INVITE transactions, and the call, waiting for ever.
            c.cancelled = true;
            if (c.invite_client) tx_.cancel(c.invite_client, now_);
            sip::ResponseOptions o;
            o.to_tag = c.leg[0].local_tag;
            tx_.respond(c.invite_server, 487, {}, o, now_);
            c.info.final_status = 487;
            finish(c, li == 0 ? CallEnd::bye_caller : CallEnd::bye_callee, now_);
            return;
        }
        send_bye(c, oi, now_);
        finish(c, li == 0 ? CallEnd::bye_caller : CallEnd::bye_callee, now_);
        return;
    }
    const bool offer_method =
        m.method() == sip::Method::invite || m.method() == sip::Method::update;
    if (offer_method && c.offer_pending) {
        tx_.respond(tx, 491, {}, {}, now_);  // RFC 3261 §14.2 glare
        return;
    }
    if (offer_method && !m.contacts().empty()) here.remote_target = m.contacts().front().uri.raw;
    std::string body(m.body());
    if (!body.empty() && m.content_type().find("sdp") != std::string_view::npos) {
        auto sdp = anchor_sdp(c, body, here.side, now_);
        if (!sdp) {
            counters_.add(B2buaCounter::sdp_refused);
            tx_.respond(tx, 488, {}, {}, now_);
            return;
        }
        body = std::move(*sdp);
    }
    const std::uint32_t out_cseq = ++there.local_cseq;
    std::string bytes = build_request(c, oi, m.method_name(), &m, body, out_cseq, new_branch());
    if (m.method() == sip::Method::prack)
        renumber_rack(bytes, oi == 1 ? c.invite_cseq : c.caller_invite_cseq);
    const TxId t = tx_.request(leg_destination(c, oi), std::move(bytes), now_);
    if (!t) {
        tx_.respond(tx, 503, {}, {}, now_);
        return;
    }
    counters_.add(B2buaCounter::in_dialog_relayed);
    ++c.outstanding;
    Pending p;
    p.call = c.id;
    p.leg = oi;
    p.server = tx;
    p.server_leg = li;
    p.method = m.method();
    pending_[pack(t)] = p;
    if (offer_method) c.offer_pending = true;
    if (m.method() == sip::Method::invite) {
        server_calls_[pack(tx)] = c.id;
        c.ack_server = tx;
        c.ack_leg = oi;
        c.ack_cseq = out_cseq;
        c.acked = false;
    }
}

void B2bua::relay_response(Call& c, TxId server, int li, const sip::Message& r, base::Nanos now) {
    const int status = r.status_code();
    const Leg& l = c.leg[li];
    const SideConfig& sc = l.side == Side::external ? config_.external : config_.internal;
    std::vector<std::pair<std::string_view, std::string_view>> hs;
    collect_headers(r, l.side, config_, hs);
    // The Contact answers in the scheme the request was addressed with (a sips: request gets a
    // sips: Contact, RFC 3261 §12.1.1).
    const sip::Message* req = tx_.request_of(server);
    const std::string contact = contact_of(l.contact_user.view(), sc, l.flow.transport,
                                           req ? req->request_uri().raw : std::string_view{});
    const bool dialog_response = status > 100 && status < 300 && r.cseq() &&
                                 (r.cseq()->method == "INVITE" || r.cseq()->method == "UPDATE" ||
                                  r.cseq()->method == "SUBSCRIBE");
    if (dialog_response) hs.emplace_back("Contact", contact);
    if (!config_.user_agent.empty()) hs.emplace_back("Server", config_.user_agent);
    sip::ResponseOptions o;
    o.to_tag = l.local_tag;
    o.headers = hs;
    std::string body;
    if (!r.body().empty()) {
        const Side from_side = c.leg[1 - li].side;
        if (r.content_type().find("sdp") != std::string_view::npos) {
            auto sdp = anchor_sdp(c, r.body(), from_side, now);
            if (sdp) body = std::move(*sdp);
        } else {
            body = std::string(r.body());
        }
        if (!body.empty()) {
            o.body = body;
            o.content_type = r.content_type();
        }
    }
    int out_status = status;
    if (status >= 300 && status < 400) out_status = config_.redirect_status;
    const std::string reason = reason_for(out_status);
    tx_.respond(server, out_status, reason, o, now);
}

void B2bua::uniform_answer(TxId tx, const sip::Message& request, const sip::Message* real,
                           std::string_view to_tag) {
    counters_.add(B2buaCounter::uniform_answers);
    std::vector<std::pair<std::string_view, std::string_view>> h;
    ChallengeTemplate::Challenge drawn;
    int status = 0;
    if (real) {
        status = real->status_code();
        for (const sip::Header& x : real->headers())
            if (x.id == sip::HeaderId::www_authenticate ||
                x.id == sip::HeaderId::proxy_authenticate)
                h.emplace_back(x.id == sip::HeaderId::www_authenticate ? "WWW-Authenticate"
                                                                       : "Proxy-Authenticate",
                               x.value);
    } else {
        drawn = call_challenge_.draw(request, config_.registrations.realm);
        status = drawn.status;
        h.emplace_back(drawn.header, drawn.value);
    }
    if (!config_.user_agent.empty()) h.emplace_back("Server", config_.user_agent);
    sip::ResponseOptions o;
    o.to_tag = to_tag;
    o.headers = h;
    tx_.respond(tx, status, reason_for(status), o, now_);
}

void B2bua::on_response(TxId tx, const sip::Message& r) {
    if (regs_ && regs_->on_response(tx, r, now_)) return;
    auto pit = pending_.find(pack(tx));
    if (pit == pending_.end()) return;
    const Pending p = pit->second;
    if (p.standalone) {
        answer_message(p, r);
        return;
    }
    if (p.probe >= 0) {
        if (r.status_code() < 200) return;
        HopState& h = hops_[static_cast<int>(p.hop_side)][static_cast<std::size_t>(p.probe)];
        if (h.probe == tx) {
            h.probe = {};
            ++h.probes_answered;
            counters_.add(B2buaCounter::probes_answered);
            hop_result(p.hop_side, static_cast<std::size_t>(p.probe), true);
        }
        return;
    }
    auto cit = calls_.find(p.call);
    if (cit == calls_.end()) return;
    Call& c = *cit->second;
    const int status = r.status_code();
    Leg& l = c.leg[p.leg];

    if (p.initial) {
        if (status == 100) return;
        const bool dialog = r.to() && !r.to()->tag.empty() && status < 300;
        if (dialog && l.remote_tag.empty()) {
            l.remote_tag = r.to()->tag;
            if (!r.contacts().empty()) l.remote_target = r.contacts().front().uri.raw;
            l.route_set.clear();
            for (auto it = r.record_routes().rbegin(); it != r.record_routes().rend(); ++it)
                l.route_set.emplace_back(it->raw);
        }
        if (status >= 200 && status < 300) {
            if (!r.contacts().empty()) l.remote_target = r.contacts().front().uri.raw;
            if (c.answered) {
                // A retransmitted 2xx: our ACK went missing.
                if (c.acked && c.ack_leg == p.leg) resend_ack(c);
                return;
            }
            if (c.cancelled || c.ended) {
                // A 2xx crossing our CANCEL: confirm and end that dialog at once. A retransmission
                // of it means our ACK went missing: the ACK again, not another BYE.
                if (c.acked && c.ack_leg == p.leg) {
                    resend_ack(c);
                    return;
                }
                send_ack(c, p.leg, {});
                send_bye(c, p.leg, now_);
                return;
            }
            c.answered = true;
            c.info.answered = now_;
            stranger_setup_done(c);
            if (c.info.from == Side::external) remember_known(c.info.source.remote.addr);
            c.info.final_status = status;
            if (config_.max_call_duration > 0) c.deadline = now_ + config_.max_call_duration;
            counters_.add(B2buaCounter::calls_answered);
            c.ack_server = p.server;
            c.ack_leg = p.leg;
            c.ack_cseq = c.invite_cseq;
            c.acked = false;
            release_text(c.offer);  // no failover once answered
            relay_response(c, p.server, p.server_leg, r, now_);
            hooks_.on_response_relayed(c.info, status);
            hooks_.on_answered(c.info);
            return;
        }
        if (status < 200) {
            if (!c.cancelled && !c.ended) relay_response(c, p.server, p.server_leg, r, now_);
            return;
        }
        // Final non-2xx. 503 from a next hop: the next one is tried (§16.7 failover).
        if (c.cancelled || c.ended) return;
        if (status == 503 && l.remote_tag.empty()) {
            const std::size_t tried = c.hop;
            (void)tried;
            if (try_next_hop(c, now_)) {
                counters_.add(B2buaCounter::failovers);
                return;
            }
        }
        c.info.final_status = status >= 300 && status < 400 ? config_.redirect_status : status;
        release_text(c.offer);
        const sip::Message* invite = tx_.request_of(p.server);
        if (c.uniform && c.leg[p.server_leg].side == Side::external && reveals_user(status) &&
            invite) {
            // Enumeration resistance: a challenge is relayed in a response of our own making,
            // any other answer about the user becomes a challenge drawn like the last real one.
            const bool challenge = status == 401 || status == 407;
            if (challenge) call_challenge_.learn(r);
            uniform_answer(p.server, *invite, challenge ? &r : nullptr,
                           c.leg[p.server_leg].local_tag);
        } else {
            relay_response(c, p.server, p.server_leg, r, now_);
        }
        hooks_.on_response_relayed(c.info, status);
        counters_.add(B2buaCounter::calls_failed);
        finish(c, CallEnd::rejected, now_);
        return;
    }

    if (p.method == sip::Method::bye || !p.server) return;
    if (status >= 200 && (p.method == sip::Method::invite || p.method == sip::Method::update))
        c.offer_pending = false;
    if (p.method == sip::Method::invite && status >= 200 && status < 300) {
        if (c.acked && c.ack_leg == p.leg) {
            resend_ack(c);
            return;
        }
        if (!r.contacts().empty()) l.remote_target = r.contacts().front().uri.raw;
    }
    if (tx_.state(p.server) == TxState::accepted || tx_.state(p.server) == TxState::completed)
        return;
    relay_response(c, p.server, p.server_leg, r, now_);
}

void B2bua::on_ack(TxId invite, const sip::Message& ack, const Flow&) {
    if (!invite) return;  // a late or foreign ACK: nothing to confirm
    auto it = server_calls_.find(pack(invite));
    if (it == server_calls_.end()) return;
    auto cit = calls_.find(it->second);
    if (cit == calls_.end()) return;
    Call& c = *cit->second;
    if (c.ack_server != invite || c.ack_leg < 0 || c.acked) return;
    std::string body;
    if (!ack.body().empty()) {
        auto sdp = anchor_sdp(c, ack.body(), c.leg[1 - c.ack_leg].side, now_);
        if (sdp) body = std::move(*sdp);
    }
    send_ack(c, c.ack_leg, body);
}

void B2bua::send_ack(Call& c, int li, std::string_view body) {
    // The ACK of a 2xx is a transaction of its own (new branch), with the INVITE's CSeq number.
    const std::string branch = new_branch();
    c.ack_branch = branch;
    c.ack_body = body;
    c.ack_leg = li;
    c.acked = true;
    resend_ack(c);
}

void B2bua::resend_ack(Call& c) {
    // RFC 3261 §13.2.2.4: each retransmission of the 2xx gets the ACK again; the dialog it is
    // built from is the one the first went in (a re-INVITE's 2xx has not been relayed yet).
    const int li = c.ack_leg;
    std::string bytes = build_request(c, li, "ACK", nullptr, c.ack_body,
                                      c.ack_cseq ? c.ack_cseq : c.invite_cseq, c.ack_branch);
    if (!c.ack_body.empty()) {
        const std::size_t at = bytes.find("Content-Length: ");
        bytes.insert(at, "Content-Type: application/sdp\r\n");
    }
    wire_.send(leg_destination(c, li), bytes);
}

void B2bua::on_cancel(TxId invite, const sip::Message&) {
    auto it = server_calls_.find(pack(invite));
    if (it == server_calls_.end()) return;
    auto cit = calls_.find(it->second);
    if (cit == calls_.end()) return;
    Call& c = *cit->second;
    if (c.invite_server != invite || c.answered) return;
    c.cancelled = true;
    if (c.invite_client) tx_.cancel(c.invite_client, now_);
    sip::ResponseOptions o;
    o.to_tag = c.leg[0].local_tag;
    tx_.respond(invite, 487, {}, o, now_);
    c.info.final_status = 487;
    finish(c, CallEnd::cancelled, now_);
}

void B2bua::send_bye(Call& c, int li, base::Nanos now) {
    Leg& l = c.leg[li];
    if (li == 1 && l.remote_tag.empty()) return;  // no dialog on that side
    const std::uint32_t cseq = ++l.local_cseq;
    std::string bytes = build_request(c, li, "BYE", nullptr, {}, cseq, new_branch());
    const TxId t = tx_.request(leg_destination(c, li), std::move(bytes), now);
    if (!t) return;
    ++c.outstanding;
    Pending p;
    p.call = c.id;
    p.leg = li;
    p.method = sip::Method::bye;
    pending_[pack(t)] = p;
}

void B2bua::on_timeout(TxId tx, TimeoutKind kind) {
    if (regs_ && regs_->on_timeout(tx, kind, now_)) return;
    if (auto pit = pending_.find(pack(tx)); pit != pending_.end()) {
        const Pending p = pit->second;
        if (p.probe >= 0) return;  // judged by the health check's own timeout
        if (p.standalone) {
            // No answer from the destination, or it could not be reached (RFC 3261 §8.1.3.1).
            if (tx_.state(p.server) != TxState::completed)
                tx_.respond(p.server, kind == TimeoutKind::transport_error ? 503 : 408, {}, {},
                            now_);
            return;
        }
        auto cit = calls_.find(p.call);
        if (cit == calls_.end()) return;
        Call& c = *cit->second;
        if (p.initial) {
            if (c.cancelled || c.ended || c.answered) return;
            // A next hop that lets an INVITE time out takes no more calls until probes say so.
            auto& hops = hops_[static_cast<int>(p.hop_side)];
            if ((kind == TimeoutKind::no_response || kind == TimeoutKind::transport_error) &&
                config_.health.enabled && p.hop < hops.size() && hops[p.hop].up) {
                hops[p.hop].up = false;
                hops[p.hop].successes = 0;
                counters_.add(B2buaCounter::hops_down);
            }
            if (kind != TimeoutKind::no_final_after_cancel && c.leg[1].remote_tag.empty() &&
                try_next_hop(c, now_)) {
                counters_.add(B2buaCounter::failovers);
                return;
            }
            sip::ResponseOptions o;
            o.to_tag = c.leg[0].local_tag;
            tx_.respond(c.invite_server, kind == TimeoutKind::no_response ? 408 : 503, {}, o, now_);
            c.info.final_status = 408;
            counters_.add(B2buaCounter::calls_failed);
            finish(c, CallEnd::timeout, now_);
            return;
        }
        if (p.server) tx_.respond(p.server, 408, {}, {}, now_);
        if (p.method == sip::Method::invite || p.method == sip::Method::update)
            c.offer_pending = false;
        return;
    }
    // The caller's INVITE got the layer's 408 after max_pending (the inside sent provisionals
    // and never a final response): the call is over, and the inside INVITE, which has no timer
    // of its own once a provisional came (RFC 3261 §17.1.1.2), is cancelled as Timer C's expiry
    // would do (§16.8).
    if (kind == TimeoutKind::no_final_from_user) {
        auto it = server_calls_.find(pack(tx));
        if (it == server_calls_.end()) return;
        auto cit = calls_.find(it->second);
        if (cit == calls_.end()) return;
        Call& c = *cit->second;
        if (c.ended || c.answered || c.invite_server != tx) return;
        c.cancelled = true;
        if (c.invite_client) tx_.cancel(c.invite_client, now_);
        c.info.final_status = 408;
        counters_.add(B2buaCounter::calls_failed);
        finish(c, CallEnd::timeout, now_);
        return;
    }
    // A server INVITE whose 2xx was never ACKed: the call cannot be confirmed (§13.3.1.4).
    if (kind == TimeoutKind::no_ack) {
        auto it = server_calls_.find(pack(tx));
        if (it == server_calls_.end()) return;
        auto cit = calls_.find(it->second);
        if (cit == calls_.end()) return;
        Call& c = *cit->second;
        if (c.ended || c.ack_server != tx || c.acked) return;
        if (!c.answered) return;
        send_bye(c, 0, now_);
        send_bye(c, 1, now_);
        finish(c, CallEnd::timeout, now_);
    }
}

void B2bua::on_terminated(TxId tx) {
    const std::uint64_t k = pack(tx);
    server_calls_.erase(k);
    auto pit = pending_.find(k);
    if (pit == pending_.end()) return;
    const std::uint64_t id = pit->second.call;
    pending_.erase(pit);
    auto cit = calls_.find(id);
    if (cit == calls_.end()) return;
    Call& c = *cit->second;
    if (--c.outstanding <= 0 && c.ended) {
        forget_call_ids(c);
        calls_.erase(cit);
    }
}

bool B2bua::is_known(const base::IpAddress& a) const {
    if (known_.empty() || a.is_unspecified()) return false;
    return known_[std::hash<base::IpAddress>{}(a) % known_.size()] == a;
}

void B2bua::remember_known(const base::IpAddress& a) {
    if (known_.empty() || a.is_unspecified()) return;
    known_[std::hash<base::IpAddress>{}(a) % known_.size()] = a;
}

void B2bua::stranger_setup_done(Call& c) {
    if (!c.stranger) return;
    c.stranger = false;
    --stranger_setups_;
}

void B2bua::finish(Call& c, CallEnd how, base::Nanos now) {
    if (c.ended) return;
    c.ended = true;
    c.info.ended = now;
    release_text(c.offer);
    release_text(c.ack_body);
    stranger_setup_done(c);
    if (c.answered) counters_.add(B2buaCounter::calls_ended);
    if (c.media) {
        media_.release(c.id);
        c.media = false;
    }
    for (const Leg& l : c.leg)
        index_remove(dialogs_, index_hash(l.side, l.call_id, l.local_tag), c.id);
    hooks_.on_ended(c.info, how);
    if (c.outstanding <= 0) {
        forget_call_ids(c);
        calls_.erase(c.id);
    }
}

}  // namespace sbc::signaling

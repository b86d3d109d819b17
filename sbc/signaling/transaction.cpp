#include "sbc/signaling/transaction.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>

namespace sbc::signaling {

std::string_view transport_name(Transport t) {
    switch (t) {
        case Transport::udp:
            return "UDP";
        case Transport::tcp:
            return "TCP";
        case Transport::tls:
            return "TLS";
    }
    return "UDP";
}

std::string_view state_name(TxState s) {
    switch (s) {
        case TxState::calling:
            return "calling";
        case TxState::trying:
            return "trying";
        case TxState::proceeding:
            return "proceeding";
        case TxState::completed:
            return "completed";
        case TxState::confirmed:
            return "confirmed";
        case TxState::accepted:
            return "accepted";
        case TxState::terminated:
            return "terminated";
    }
    return "terminated";
}

std::string_view timeout_name(TimeoutKind k) {
    switch (k) {
        case TimeoutKind::no_response:
            return "no_response";
        case TimeoutKind::transport_error:
            return "transport_error";
        case TimeoutKind::no_ack:
            return "no_ack";
        case TimeoutKind::no_final_after_cancel:
            return "no_final_after_cancel";
        case TimeoutKind::no_final_from_user:
            return "no_final_from_user";
    }
    return "no_response";
}

std::string random_token(std::size_t chars) {
    static constexpr char kAlphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    thread_local unsigned char pool[512];
    thread_local std::size_t left = 0;
    std::string out;
    out.reserve(chars);
    while (out.size() < chars) {
        if (left == 0) {
            std::size_t got = 0;
            while (got < sizeof pool) {
                const ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
                }
                got += static_cast<std::size_t>(n);
            }
            left = sizeof pool;
        }
        const unsigned char b = pool[--left];
        if (b >= 252) continue;  // 252 = 7 * 36: keeps the characters uniform
        out.push_back(kAlphabet[b % 36]);
    }
    return out;
}

std::string new_branch() {
    return "z9hG4bK" + random_token(24);
}

struct TransactionLayer::Tx {
    explicit Tx(std::pmr::memory_resource* r)
        : bytes(r), key(r), dialog_key(r), last_response(r), ack(r) {}
    TxKind kind = TxKind::server_non_invite;
    TxState state = TxState::terminated;
    std::uint32_t generation = 0;
    std::uint32_t index = 0;
    std::uint8_t epoch = 0;  // the string pool its strings come from
    Flow flow;
    std::pmr::string bytes;  // own copy of the request: server, what came; client, what we sent
    // `bytes` parsed (views into it): a server transaction's while its user may need it, else
    // made again when asked for (parsed()). Out of the slot: a parse is 1.6 KB, and most
    // transactions (those in Completed or Accepted, absorbing retransmissions) hold none.
    mutable std::unique_ptr<sip::Message> request;
    mutable bool is_parsed = false;
    bool ever_used = false;  // a released slot (pooled) rather than a fresh one
    std::pmr::string key;
    std::pmr::string dialog_key;     // server INVITE in Accepted, for the ACK of its 2xx
    std::pmr::string last_response;  // server: the last response sent
    std::pmr::string ack;            // client INVITE: the ACK of a non-2xx final
    int last_status = 0;
    Nanos interval = 0;  // current retransmission interval
    std::uint32_t serial = 0;
    std::uint32_t retransmit_serial = 0;  // 0: disarmed
    std::uint32_t end_serial = 0;
    bool cancel_pending = false;  // client INVITE: CANCEL asked before any provisional
    bool cancel_sent = false;
    bool acked = false;          // server INVITE in Accepted: the 2xx's ACK came
    bool internal = false;       // a CANCEL the layer sent itself: no events for the user
    bool final_bounded = false;  // limit_final_retransmissions() was called
    std::uint8_t final_retransmissions = 0;  // then: how many more Timer G may send
    TxId id() const { return {index, generation}; }
};

namespace {

constexpr std::string_view kCookie = "z9hG4bK";

std::string sent_by(const sip::Via& v) {
    std::string s(v.host);
    s += ':';
    s += std::to_string(v.has_port ? v.port : 0);
    return s;
}

// RFC 3261 §17.2.3: the key of the server transaction a request belongs to. ACK belongs to
// the INVITE's; CANCEL has its own.
std::string server_key(const sip::Message& m, std::string_view method) {
    const sip::Via& top = m.vias().front();
    std::string k;
    if (top.branch.size() > kCookie.size() && top.branch.substr(0, kCookie.size()) == kCookie) {
        k.reserve(top.branch.size() + top.host.size() + method.size() + 16);
        k += "s|";
        k += method;
        k += '|';
        k += top.branch;
        k += '|';
        k += sent_by(top);
        return k;
    }
    // An RFC 2543 request: Request-URI, From tag, Call-ID, CSeq number and top Via.
    k += "o|";
    k += method;
    k += '|';
    k += m.request_uri().raw;
    k += '|';
    if (const auto* f = m.from()) k += f->tag;
    k += '|';
    k += m.call_id();
    k += '|';
    k += std::to_string(m.cseq() ? m.cseq()->number : 0);
    k += '|';
    k += top.raw;
    return k;
}

std::string client_key(std::string_view branch, std::string_view method) {
    std::string k = "c|";
    k += method;
    k += '|';
    k += branch;
    return k;
}

std::string dialog_key(const sip::Message& m) {
    std::string k = "d|";
    k += m.call_id();
    k += '|';
    k += std::to_string(m.cseq() ? m.cseq()->number : 0);
    k += '|';
    if (const auto* f = m.from()) k += f->tag;
    return k;
}

// The header fields a CANCEL or the ACK of a non-2xx final copy from the request (§9.1,
// §17.1.1.3): its top Via, Route set, From and Call-ID, with the request's CSeq number.
std::string request_echo(const sip::Message& request, std::string_view method,
                         std::string_view to_value) {
    std::string out;
    out.reserve(512);
    out += method;
    out += ' ';
    out += request.request_uri().raw;
    out += " SIP/2.0\r\n";
    out += "Via: ";
    out += request.vias().front().raw;
    out += "\r\n";
    for (const auto& h : request.headers())
        if (h.id == sip::HeaderId::route || h.id == sip::HeaderId::from ||
            h.id == sip::HeaderId::call_id)
            out += h.line;
    out += "To: ";
    out += to_value;
    out += "\r\nCSeq: ";
    out += std::to_string(request.cseq()->number);
    out += ' ';
    out += method;
    out += "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    return out;
}

}  // namespace

struct TransactionLayer::Slab {
    explicit Slab(std::pmr::memory_resource* r) {
        tx.reserve(kSlab);
        for (std::uint32_t i = 0; i < kSlab; ++i) tx.emplace_back(r);
        free.reserve(kSlab);
        for (std::uint32_t i = kSlab; i-- > 0;) free.push_back(static_cast<std::uint16_t>(i));
    }
    std::vector<Tx> tx;               // never grows: the slots do not move
    std::vector<std::uint16_t> free;  // free slots, the lowest at the back
    std::uint32_t live = 0;
    std::uint32_t released = 0;  // free slots that held a transaction (pooled)
};

void* TransactionLayer::CountingResource::do_allocate(std::size_t n, std::size_t align) {
    void* p = std::pmr::new_delete_resource()->allocate(n, align);
    bytes_ += n;
    return p;
}

void TransactionLayer::CountingResource::do_deallocate(void* p, std::size_t n, std::size_t align) {
    std::pmr::new_delete_resource()->deallocate(p, n, align);
    bytes_ -= n;
}

TransactionLayer::TransactionLayer(TransactionUser& user, TimerSettings timers, Limits limits)
    : user_(user), timers_(timers), limits_(limits) {}

TransactionLayer::~TransactionLayer() = default;

TransactionLayer::Tx* TransactionLayer::find(TxId id) {
    if (!id) return nullptr;
    const std::size_t s = id.index / kSlab;
    if (s >= slabs_.size() || !slabs_[s]) return nullptr;
    Tx* tx = &slabs_[s]->tx[id.index % kSlab];
    return tx->generation == id.generation ? tx : nullptr;
}

TransactionLayer::Tx* TransactionLayer::find_index(std::uint32_t index) {
    const std::size_t s = index / kSlab;
    return s < slabs_.size() && slabs_[s] ? &slabs_[s]->tx[index % kSlab] : nullptr;
}

const sip::Message& TransactionLayer::parsed(const Tx& tx) const {
    if (!tx.is_parsed) {
        if (!tx.request) {
            tx.request = std::make_unique<sip::Message>();
            ++parses_;
        }
        (void)tx.request->parse(tx.bytes);  // it parsed when it came in or was sent
        tx.is_parsed = true;
    }
    return *tx.request;
}

// Between events nobody holds a server transaction's request from the last one: the parses of
// those answered since go back to the heap. A non-INVITE one in Completed (a REGISTER's lives on
// 32 s, Timer J) gives back its request's bytes too: from here on it only absorbs
// retransmissions, for which its key, its last response, its flow and Timer J are enough.
void TransactionLayer::drop_parsed() {
    for (const TxId id : answered_) {
        Tx* tx = find(id);
        if (!tx) continue;
        drop_parse(*tx);
        if (tx->kind == TxKind::server_non_invite && tx->state == TxState::completed) {
            std::destroy_at(&tx->bytes);
            std::construct_at(&tx->bytes, &strings_.pool[tx->epoch]);
        }
    }
    answered_.clear();
}

void TransactionLayer::drop_parse(const Tx& tx) const {
    if (tx.request) {
        tx.request.reset();
        --parses_;
    }
    tx.is_parsed = false;
}

const TransactionLayer::Tx* TransactionLayer::find(TxId id) const {
    return const_cast<TransactionLayer*>(this)->find(id);
}

TxId TransactionLayer::allocate(TxKind kind) {
    if (live_ >= limits_.max_transactions) {
        counters_.add(TxCounter::overloaded);
        return {};
    }
    std::size_t si = lowest_free_;
    while (si < slabs_.size() && slabs_[si] && slabs_[si]->free.empty()) ++si;
    lowest_free_ = si;
    if (si == slabs_.size()) slabs_.emplace_back();
    if (!slabs_[si]) {
        slabs_[si] = std::make_unique<Slab>(&strings_.pool[epoch_]);
        ++empty_slabs_;
    }
    Slab& slab = *slabs_[si];
    const std::uint32_t slot = slab.free.back();
    slab.free.pop_back();
    if (slab.live++ == 0) --empty_slabs_;
    const auto index = static_cast<std::uint32_t>(si * kSlab + slot);
    Tx& tx = slab.tx[slot];
    if (tx.ever_used) {
        --pooled_;
        --slab.released;
    }
    tx.ever_used = true;
    tx.is_parsed = false;
    // Its (empty) strings may name the other pool: made anew on the current one.
    tx.epoch = epoch_;
    reset_strings(tx, &strings_.pool[epoch_]);
    ++epoch_live_[epoch_];
    tx.kind = kind;
    tx.index = index;
    tx.generation = next_generation_++;
    if (next_generation_ == 0) next_generation_ = 1;
    tx.state = TxState::trying;
    tx.last_status = 0;
    tx.interval = 0;
    tx.retransmit_serial = tx.end_serial = 0;
    tx.cancel_pending = tx.cancel_sent = tx.acked = tx.internal = false;
    tx.final_bounded = false;
    tx.final_retransmissions = 0;
    ++live_;
    counters_.add(kind == TxKind::server_invite || kind == TxKind::server_non_invite
                      ? TxCounter::server_transactions
                      : TxCounter::client_transactions);
    return tx.id();
}

void TransactionLayer::release(Tx& tx) {
    const TxId id = tx.id();
    const bool internal = tx.internal;
    if (!tx.key.empty()) {
        auto it = maps_->by_key.find(tx.key);
        if (it != maps_->by_key.end() && it->second == tx.index) maps_->by_key.erase(it);
    }
    if (!tx.dialog_key.empty()) {
        auto it = maps_->by_dialog.find(tx.dialog_key);
        if (it != maps_->by_dialog.end() && it->second == tx.index) maps_->by_dialog.erase(it);
    }
    // A pooled transaction keeps only its own object: the message and strings of the one that
    // ended go back to the heap now (several blocks each; kept, the pool's 1024 would pin pages
    // all over a heap that the calls of a burst have since left).
    drop_parse(tx);
    reset_strings(tx, &strings_.pool[tx.epoch]);
    --epoch_live_[tx.epoch];
    tx.state = TxState::terminated;
    tx.generation = 0;
    tx.retransmit_serial = tx.end_serial = 0;
    const std::size_t si = tx.index / kSlab;
    Slab& slab = *slabs_[si];
    // Kept sorted (lowest at the back) so that the lowest free slot is taken first.
    slab.free.insert(
        std::upper_bound(slab.free.begin(), slab.free.end(),
                         static_cast<std::uint16_t>(tx.index % kSlab), std::greater<>{}),
        static_cast<std::uint16_t>(tx.index % kSlab));
    ++slab.released;
    if (--slab.live == 0) ++empty_slabs_;
    lowest_free_ = std::min(lowest_free_, si);
    ++pooled_;
    --live_;
    if (!internal) user_.on_terminated(id);
}

// The tables' keys are views of the transactions' own strings (slots never move): an entry
// another transaction made with the same dialog key goes, so that no view outlives its string.
void TransactionLayer::bind_dialog(Tx& tx) {
    if (auto it = maps_->by_dialog.find(std::string_view(tx.dialog_key));
        it != maps_->by_dialog.end())
        maps_->by_dialog.erase(it);
    maps_->by_dialog.emplace(std::string_view(tx.dialog_key), tx.index);
}

void TransactionLayer::terminate(Tx& tx) {
    release(tx);
}

void TransactionLayer::arm(Tx& tx, bool retransmit, Nanos at) {
    const std::uint32_t serial = ++tx.serial == 0 ? ++tx.serial : tx.serial;
    (retransmit ? tx.retransmit_serial : tx.end_serial) = serial;
    heap_.push_back({at, tx.index, serial, retransmit});
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

bool TransactionLayer::transmit(Tx& tx, std::string_view bytes) {
    return user_.send(tx.flow, bytes);
}

std::size_t TransactionLayer::fail_flow(const Flow& to, Nanos) {
    // Collected first: the user's on_timeout may start new transactions (a failover).
    std::vector<TxId> due;
    for (const auto& slab : slabs_) {
        if (!slab || slab->live == 0) continue;
        for (const Tx& t : slab->tx) {
            if (t.generation == 0 || t.state == TxState::terminated || t.internal) continue;
            const bool client =
                t.kind == TxKind::client_invite || t.kind == TxKind::client_non_invite;
            const bool unanswered = t.state == TxState::calling || t.state == TxState::trying;
            if (client && unanswered && t.flow == to) due.push_back(t.id());
        }
    }
    std::size_t n = 0;
    for (TxId id : due)
        if (Tx* tx = find(id); tx && tx->state != TxState::terminated) {
            fail(*tx, TimeoutKind::transport_error);
            ++n;
        }
    return n;
}

void TransactionLayer::fail(Tx& tx, TimeoutKind kind) {
    const TxId id = tx.id();
    switch (kind) {
        case TimeoutKind::no_response:
        case TimeoutKind::no_final_after_cancel:
        case TimeoutKind::no_final_from_user:
            counters_.add(TxCounter::timeouts);
            break;
        case TimeoutKind::transport_error:
            counters_.add(TxCounter::transport_errors);
            break;
        case TimeoutKind::no_ack:
            counters_.add(TxCounter::ack_timeouts);
            break;
    }
    tx.retransmit_serial = tx.end_serial = 0;
    if (!tx.internal) user_.on_timeout(id, kind);
    if (Tx* still = find(id)) terminate(*still);
}

bool TransactionLayer::has_server_transaction(const sip::Message& request) const {
    if (!request.is_request() || request.vias().empty() || !request.cseq()) return false;
    return maps_->by_key.count(server_key(request, request.method_name())) != 0;
}

TransactionLayer::Received TransactionLayer::receive(const sip::Message& m, const Flow& from,
                                                     Nanos now) {
    advance(now);  // drops the parses of the last event's answered requests too
    return m.is_request() ? receive_request(m, from, now) : receive_response(m, now);
}

TransactionLayer::Received TransactionLayer::receive_request(const sip::Message& m,
                                                             const Flow& from, Nanos now) {
    if (m.vias().empty() || !m.cseq()) {
        counters_.add(TxCounter::malformed);
        return Received::malformed;
    }
    const sip::Method method = m.method();

    if (method == sip::Method::ack) {
        auto it = maps_->by_key.find(server_key(m, "INVITE"));
        if (it != maps_->by_key.end()) {
            Tx& tx = *find_index(it->second);
            if (tx.kind == TxKind::server_invite && tx.state == TxState::completed) {
                // The ACK of our non-2xx final (§17.2.1): stop retransmitting, absorb the
                // ACK's own retransmissions for T4.
                tx.state = TxState::confirmed;
                tx.retransmit_serial = 0;
                if (is_reliable(tx.flow.transport))
                    terminate(tx);
                else
                    arm(tx, false, now + timers_.t4);
                return Received::ack;
            }
            if (tx.kind == TxKind::server_invite && tx.state == TxState::confirmed) {
                counters_.add(TxCounter::request_retransmissions_absorbed);
                return Received::ack;
            }
        }
        auto d = maps_->by_dialog.find(dialog_key(m));
        if (d != maps_->by_dialog.end()) {
            Tx& tx = *find_index(d->second);
            if (tx.state == TxState::completed || tx.state == TxState::confirmed) {
                // The ACK of a non-2xx final with a branch of its own (clients that number
                // every message's branch): matched by dialog instead, as RFC 2543 did.
                if (tx.state == TxState::confirmed) {
                    counters_.add(TxCounter::request_retransmissions_absorbed);
                    return Received::ack;
                }
                tx.state = TxState::confirmed;
                tx.retransmit_serial = 0;
                if (is_reliable(tx.flow.transport))
                    terminate(tx);
                else
                    arm(tx, false, now + timers_.t4);
                return Received::ack;
            }
            if (tx.acked) {
                counters_.add(TxCounter::request_retransmissions_absorbed);
                return Received::ack;
            }
            tx.acked = true;
            tx.retransmit_serial = 0;
            counters_.add(TxCounter::acks_for_2xx);
            user_.on_ack(tx.id(), m, from);
            return Received::ack;
        }
        counters_.add(TxCounter::stray_acks);
        user_.on_ack({}, m, from);
        return Received::ack;
    }

    const std::string key = server_key(m, m.method_name());
    if (auto it = maps_->by_key.find(key); it != maps_->by_key.end()) {
        Tx& tx = *find_index(it->second);
        counters_.add(TxCounter::request_retransmissions_absorbed);
        // A retransmitted request gets the last response again (§17.2.1, §17.2.2), except in
        // Accepted, where the 2xx has its own retransmission timer (RFC 6026 §7.1).
        if (!tx.last_response.empty() &&
            (tx.state == TxState::proceeding || tx.state == TxState::completed)) {
            counters_.add(TxCounter::retransmissions_sent);
            if (!transmit(tx, tx.last_response)) fail(tx, TimeoutKind::transport_error);
        }
        return Received::retransmission;
    }

    const TxId id =
        allocate(method == sip::Method::invite ? TxKind::server_invite : TxKind::server_non_invite);
    if (!id) return Received::overloaded;
    Tx& tx = *find(id);
    tx.flow = from;
    tx.bytes.assign(m.bytes());
    tx.request = std::make_unique<sip::Message>();
    ++parses_;
    tx.is_parsed = true;
    if (!tx.request->parse(tx.bytes)) {
        tx.internal = true;
        release(tx);
        counters_.add(TxCounter::malformed);
        return Received::malformed;
    }
    tx.key = key;
    maps_->by_key.emplace(std::string_view(tx.key), id.index);
    // A server transaction never lives on a user that forgets it: without a final response
    // in time, the layer answers 408 itself.
    arm(tx, false, now + timers_.max_pending);

    if (method == sip::Method::cancel) {
        std::string invite_key = server_key(m, "INVITE");
        Tx* invite = nullptr;
        if (auto it = maps_->by_key.find(invite_key); it != maps_->by_key.end())
            invite = find_index(it->second);
        if (!invite || invite->kind != TxKind::server_invite) {
            counters_.add(TxCounter::cancels_unmatched);
            respond(id, 481, {}, {}, now);
            return Received::cancel;
        }
        const bool pending =
            invite->state == TxState::proceeding || invite->state == TxState::trying;
        // §9.2: the CANCEL is answered 200 whether or not the INVITE still can be cancelled.
        respond(id, 200, {}, {}, now);
        if (pending) {
            counters_.add(TxCounter::cancels_matched);
            user_.on_cancel(invite->id(), m);
        }
        return Received::cancel;
    }

    if (method == sip::Method::invite) {
        // §17.2.1: 100 Trying at once, so the client stops retransmitting.
        tx.state = TxState::proceeding;
        sip::ResponseOptions o;
        const std::string src = from.remote.addr.to_string();
        o.source_address = src;
        o.source_port = from.remote.port;
        tx.last_response = sip::build_response(*tx.request, 100, {}, o);
        tx.last_status = 100;
        if (!transmit(tx, tx.last_response)) {
            fail(tx, TimeoutKind::transport_error);
            return Received::new_request;
        }
    }
    user_.on_request(id, *tx.request, from);
    return Received::new_request;
}

bool TransactionLayer::respond(TxId id, int status, std::string_view reason,
                               sip::ResponseOptions options, Nanos now) {
    Tx* tx = find(id);
    if (!tx || (tx->kind != TxKind::server_invite && tx->kind != TxKind::server_non_invite))
        return false;
    const std::string src = tx->flow.remote.addr.to_string();
    options.source_address = src;
    options.source_port = tx->flow.remote.port;
    std::string tag;
    if (options.to_tag.empty() && status > 100) {
        tag = random_token(16);
        options.to_tag = tag;
    }
    return respond_with(id, status, sip::build_response(parsed(*tx), status, reason, options), now);
}

bool TransactionLayer::respond_with(TxId id, int status, std::string bytes, Nanos now) {
    Tx* found = find(id);
    if (!found) return false;
    Tx& tx = *found;
    const bool pending = tx.state == TxState::trying || tx.state == TxState::proceeding;
    if (!pending || status < 100 || status > 699) return false;
    if (tx.kind != TxKind::server_invite && tx.kind != TxKind::server_non_invite) return false;
    tx.last_response.assign(bytes);
    tx.last_status = status;
    if (status >= 200) answered_.push_back(id);
    const bool reliable = is_reliable(tx.flow.transport);

    if (status < 200) {
        tx.state = TxState::proceeding;
        if (!transmit(tx, tx.last_response)) {
            fail(tx, TimeoutKind::transport_error);
            return false;
        }
        return true;
    }

    if (tx.kind == TxKind::server_non_invite) {
        tx.state = TxState::completed;
        tx.end_serial = 0;
        if (!transmit(tx, tx.last_response)) {
            fail(tx, TimeoutKind::transport_error);
            return false;
        }
        if (reliable)
            terminate(tx);  // Timer J = 0
        else
            arm(tx, false, now + 64 * timers_.t1);  // Timer J
        return true;
    }

    if (status < 300) {
        // RFC 6026 Accepted. The UAS core retransmits its 2xx until the ACK, at T1 doubling up
        // to T2, on every transport (RFC 3261 §13.3.1.4: hops beyond may be UDP).
        tx.state = TxState::accepted;
        tx.dialog_key.assign(dialog_key(parsed(tx)));
        bind_dialog(tx);
        tx.interval = timers_.t1;
        if (!transmit(tx, tx.last_response)) {
            fail(tx, TimeoutKind::transport_error);
            return false;
        }
        arm(tx, true, now + tx.interval);
        arm(tx, false, now + 64 * timers_.t1);  // Timer L
        return true;
    }

    tx.state = TxState::completed;
    tx.dialog_key.assign(dialog_key(parsed(tx)));
    bind_dialog(tx);
    if (!transmit(tx, tx.last_response)) {
        fail(tx, TimeoutKind::transport_error);
        return false;
    }
    tx.retransmit_serial = 0;
    if (!reliable) {
        tx.interval = timers_.t1;
        arm(tx, true, now + tx.interval);  // Timer G
    }
    arm(tx, false, now + 64 * timers_.t1);  // Timer H
    return true;
}

bool TransactionLayer::limit_final_retransmissions(TxId id, std::uint8_t max) {
    Tx* tx = find(id);
    if (!tx || tx->kind != TxKind::server_invite) return false;
    tx->final_bounded = true;
    tx->final_retransmissions = max;
    return true;
}

const sip::Message* TransactionLayer::request_of(TxId id) const {
    const Tx* tx = find(id);
    // Empty: a non-INVITE answered since the last event gave its request back (drop_parsed).
    return tx && !tx->bytes.empty() ? &parsed(*tx) : nullptr;
}

std::size_t TransactionLayer::memory_bytes() const {
    std::size_t slabs = 0;
    for (const auto& slab : slabs_)
        if (slab) ++slabs;
    return pool_bytes() + slabs * (sizeof(Slab) + kSlab * (sizeof(Tx) + sizeof(std::uint16_t))) +
           parses_ * sizeof(sip::Message) + heap_.size() * sizeof(Timer);
}

const Flow* TransactionLayer::flow_of(TxId id) const {
    const Tx* tx = find(id);
    return tx ? &tx->flow : nullptr;
}

TxState TransactionLayer::state(TxId id) const {
    const Tx* tx = find(id);
    return tx ? tx->state : TxState::terminated;
}

TxId TransactionLayer::request(const Flow& to, std::string bytes, Nanos now) {
    // Parsed here to check it and find its key; the transaction keeps only the bytes.
    sip::Message check;
    if (!check.parse(bytes) || !check.is_request() || check.vias().empty() || !check.cseq() ||
        check.method() == sip::Method::ack)
        return {};
    const std::string key = client_key(check.vias().front().branch, check.cseq()->method);
    if (maps_->by_key.find(std::string_view(key)) != maps_->by_key.end()) return {};
    const bool invite = check.method() == sip::Method::invite;
    const TxId id = allocate(invite ? TxKind::client_invite : TxKind::client_non_invite);
    if (!id) return {};
    Tx& tx = *find(id);
    tx.flow = to;
    tx.bytes.assign(bytes);
    tx.key.assign(key);
    maps_->by_key.emplace(std::string_view(tx.key), id.index);
    tx.state = invite ? TxState::calling : TxState::trying;
    if (!transmit(tx, tx.bytes)) {
        counters_.add(TxCounter::transport_errors);
        tx.internal = true;  // the user never saw this id
        release(tx);
        return {};
    }
    if (!is_reliable(to.transport)) {
        tx.interval = timers_.t1;
        arm(tx, true, now + tx.interval);  // Timer A / E
    }
    arm(tx, false, now + 64 * timers_.t1);  // Timer B / F
    return id;
}

bool TransactionLayer::abandon(TxId id) {
    Tx* tx = find(id);
    if (!tx || tx->kind != TxKind::client_non_invite || tx->state == TxState::terminated)
        return false;
    counters_.add(TxCounter::abandoned);
    terminate(*tx);
    return true;
}

bool TransactionLayer::cancel(TxId id, Nanos now) {
    Tx* tx = find(id);
    if (!tx || tx->kind != TxKind::client_invite || tx->cancel_sent || tx->cancel_pending)
        return false;
    if (tx->state == TxState::calling) {
        tx->cancel_pending = true;  // §9.1: not before a provisional response
        return true;
    }
    if (tx->state != TxState::proceeding) return false;
    send_cancel(*tx, now);
    return true;
}

void TransactionLayer::send_cancel(Tx& tx, Nanos now) {
    tx.cancel_pending = false;
    tx.cancel_sent = true;
    const sip::NameAddr* to = parsed(tx).to();
    std::string bytes = request_echo(parsed(tx), "CANCEL", to ? to->raw : std::string_view{});
    const TxId invite = tx.id();
    const Flow flow = tx.flow;
    const TxId c = request(flow, std::move(bytes), now);
    if (Tx* ct = find(c)) {
        ct->internal = true;
        counters_.add(TxCounter::cancels_sent);
    }
    // §9.1: without a final response 64*T1 after the CANCEL, the INVITE is given up.
    if (Tx* again = find(invite)) arm(*again, false, now + 64 * timers_.t1);
}

TransactionLayer::Received TransactionLayer::receive_response(const sip::Message& m, Nanos now) {
    if (m.vias().empty() || !m.cseq()) {
        counters_.add(TxCounter::malformed);
        return Received::malformed;
    }
    auto it = maps_->by_key.find(client_key(m.vias().front().branch, m.cseq()->method));
    if (it == maps_->by_key.end()) {
        counters_.add(TxCounter::stray_responses);
        return Received::stray_response;
    }
    Tx& tx = *find_index(it->second);
    const TxId id = tx.id();
    const int status = m.status_code();
    const bool reliable = is_reliable(tx.flow.transport);

    if (tx.kind == TxKind::client_invite) {
        switch (tx.state) {
            case TxState::calling:
            case TxState::proceeding:
                if (status < 200) {
                    tx.state = TxState::proceeding;
                    tx.retransmit_serial = 0;                // Timer A stops
                    if (!tx.cancel_sent) tx.end_serial = 0;  // so does Timer B
                    if (tx.cancel_pending) send_cancel(tx, now);
                    if (!tx.internal) user_.on_response(id, m);
                    return Received::response;
                }
                tx.retransmit_serial = tx.end_serial = 0;
                if (status < 300) {
                    tx.state = TxState::accepted;
                    arm(tx, false, now + 64 * timers_.t1);  // Timer M
                    user_.on_response(id, m);
                    return Received::response;
                }
                tx.state = TxState::completed;
                tx.ack.assign(
                    request_echo(parsed(tx), "ACK", m.to() ? m.to()->raw : std::string_view{}));
                if (!transmit(tx, tx.ack)) {
                    fail(tx, TimeoutKind::transport_error);
                    return Received::response;
                }
                if (!reliable)
                    arm(tx, false, now + std::max(base::seconds(32), 64 * timers_.t1));  // Timer D
                user_.on_response(id, m);
                if (reliable)
                    if (Tx* still = find(id)) terminate(*still);
                return Received::response;
            case TxState::completed:
                counters_.add(TxCounter::response_retransmissions_absorbed);
                if (status >= 300) {
                    counters_.add(TxCounter::retransmissions_sent);
                    if (!transmit(tx, tx.ack)) fail(tx, TimeoutKind::transport_error);
                }
                return Received::absorbed_response;
            case TxState::accepted:
                if (status >= 200 && status < 300) {
                    user_.on_response(id, m);  // a retransmitted 2xx: the user ACKs it again
                    return Received::response;
                }
                counters_.add(TxCounter::response_retransmissions_absorbed);
                return Received::absorbed_response;
            default:
                counters_.add(TxCounter::stray_responses);
                return Received::stray_response;
        }
    }
    if (tx.kind == TxKind::client_non_invite) {
        if (tx.state == TxState::completed) {
            counters_.add(TxCounter::response_retransmissions_absorbed);
            return Received::absorbed_response;
        }
        if (status < 200) {
            tx.state = TxState::proceeding;
            tx.interval = timers_.t2;  // Timer E continues at T2 (§17.1.2.2)
            if (!tx.internal) user_.on_response(id, m);
            return Received::response;
        }
        tx.state = TxState::completed;
        tx.retransmit_serial = tx.end_serial = 0;
        if (!reliable) arm(tx, false, now + timers_.t4);  // Timer K
        if (!tx.internal) user_.on_response(id, m);
        if (reliable)
            if (Tx* still = find(id)) terminate(*still);
        return Received::response;
    }
    counters_.add(TxCounter::stray_responses);
    return Received::stray_response;
}

void TransactionLayer::fire(Tx& tx, bool retransmit, Nanos now) {
    if (retransmit) {
        std::string_view bytes;
        Nanos next = 0;
        switch (tx.kind) {
            case TxKind::client_invite:
                if (tx.state != TxState::calling) return;
                bytes = tx.bytes;
                next = tx.interval * 2;  // Timer A doubles without a cap
                break;
            case TxKind::client_non_invite:
                if (tx.state != TxState::trying && tx.state != TxState::proceeding) return;
                bytes = tx.bytes;
                next = tx.state == TxState::trying ? std::min(tx.interval * 2, timers_.t2)
                                                   : timers_.t2;
                break;
            case TxKind::server_invite:
                if (tx.state == TxState::completed && tx.final_bounded) {
                    if (tx.final_retransmissions == 0) {
                        // Quiet until the ACK or Timer H (limit_final_retransmissions).
                        counters_.add(TxCounter::finals_capped);
                        return;
                    }
                    --tx.final_retransmissions;
                }
                if (tx.state == TxState::completed ||
                    (tx.state == TxState::accepted && !tx.acked)) {
                    bytes = tx.last_response;
                    next = std::min(tx.interval * 2, timers_.t2);  // Timer G / 2xx
                    break;
                }
                return;
            case TxKind::server_non_invite:
                return;
        }
        counters_.add(TxCounter::retransmissions_sent);
        if (!transmit(tx, bytes)) {
            fail(tx, TimeoutKind::transport_error);
            return;
        }
        tx.interval = next;
        arm(tx, true, now + next);
        return;
    }

    switch (tx.kind) {
        case TxKind::client_invite:
            if (tx.state == TxState::calling || tx.state == TxState::proceeding)
                fail(tx, tx.cancel_sent ? TimeoutKind::no_final_after_cancel
                                        : TimeoutKind::no_response);  // Timer B
            else
                terminate(tx);  // Timer D / M
            return;
        case TxKind::client_non_invite:
            if (tx.state == TxState::trying || tx.state == TxState::proceeding)
                fail(tx, TimeoutKind::no_response);  // Timer F
            else
                terminate(tx);  // Timer K
            return;
        case TxKind::server_invite:
            if (tx.state == TxState::trying || tx.state == TxState::proceeding) {
                user_gave_up(tx, now);
            } else if (tx.state == TxState::completed ||
                       (tx.state == TxState::accepted && !tx.acked)) {
                fail(tx, TimeoutKind::no_ack);  // Timer H / L without ACK
            } else {
                terminate(tx);  // Timer I / L
            }
            return;
        case TxKind::server_non_invite:
            if (tx.state == TxState::trying || tx.state == TxState::proceeding) {
                user_gave_up(tx, now);
            } else {
                terminate(tx);  // Timer J
            }
            return;
    }
}

void TransactionLayer::user_gave_up(Tx& tx, Nanos now) {
    const TxId id = tx.id();
    counters_.add(TxCounter::timeouts);
    respond(id, 408, {}, {}, now);
    if (find(id) && !tx.internal) user_.on_timeout(id, TimeoutKind::no_final_from_user);
}

void TransactionLayer::advance(Nanos now) {
    drop_parsed();
    while (!heap_.empty() && heap_.front().at <= now) {
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
        const Timer t = heap_.back();
        heap_.pop_back();
        Tx* found = find_index(t.index);
        if (!found || found->generation == 0) continue;  // freed since
        Tx& tx = *found;
        const std::uint32_t armed = t.retransmit ? tx.retransmit_serial : tx.end_serial;
        if (armed != t.serial) continue;  // disarmed or re-armed since
        (t.retransmit ? tx.retransmit_serial : tx.end_serial) = 0;
        fire(tx, t.retransmit, t.at);
    }
    trim_pool();
}

// A burst of calls leaves tens of thousands of ended transactions (INVITEs linger 32 s in
// Accepted, RFC 6026); kept, their slots would hold the daemon's memory at its busiest minute.
// Empty slabs beyond kPooledTransactions slots are freed, the last ones first (new
// transactions take the lowest free slot, so the last slabs are the ones that empty out); no
// reference is held to them here, between events. With no transaction left at all, the
// pool of their strings goes back to the heap as well.
void TransactionLayer::trim_pool() {
    for (std::size_t si = slabs_.size(); si-- > 0 && pooled_ > kPooledTransactions;) {
        if (empty_slabs_ == 0) break;
        auto& slab = slabs_[si];
        if (!slab || slab->live != 0) continue;
        pooled_ -= slab->released;
        --empty_slabs_;
        slab.reset();
    }
    while (!slabs_.empty() && !slabs_.back()) slabs_.pop_back();
    lowest_free_ = std::min(lowest_free_, slabs_.size());
    const std::uint8_t other = epoch_ ^ 1;
    if (epoch_live_[other] == 0) {
        if (strings_.bytes[other] > 0) strings_.pool[other].release();
        if (strings_.bytes[epoch_] > kEpochBytes) epoch_ = other;
    }
    if (live_ == 0 && strings_.bytes[epoch_] > 0) strings_.pool[epoch_].release();
    if (live_ == 0 && map_pools_.held() > 0) {  // idle: the (empty) tables go too
        maps_.reset();
        map_pools_.pool[0].release();
        map_pools_.pool[1].release();
        maps_ = std::make_unique<Maps>(&map_pools_.pool[map_epoch_]);
    }
    // Key tables: rebuilt into the other pool when theirs holds over a quarter of kEpochBytes
    // and more than four times what their entries and buckets take (at most a few hundred
    // bytes each).
    const std::size_t entries = maps_->by_key.size() + maps_->by_dialog.size();
    const std::size_t buckets = maps_->by_key.bucket_count() + maps_->by_dialog.bucket_count();
    if (map_pools_.bytes[map_epoch_] > kEpochBytes / 4 &&
        map_pools_.bytes[map_epoch_] > 4 * (entries * 256 + buckets * sizeof(void*))) {
        const std::uint8_t to = map_epoch_ ^ 1;
        auto fresh = std::make_unique<Maps>(&map_pools_.pool[to]);
        fresh->by_key.reserve(maps_->by_key.size());
        for (const auto& [k, v] : maps_->by_key) fresh->by_key.emplace(k, v);
        fresh->by_dialog.reserve(maps_->by_dialog.size());
        for (const auto& [k, v] : maps_->by_dialog) fresh->by_dialog.emplace(k, v);
        maps_.reset();
        map_pools_.pool[map_epoch_].release();
        maps_ = std::move(fresh);
        map_epoch_ = to;
    }
}

void TransactionLayer::reset_strings(Tx& tx, std::pmr::memory_resource* r) {
    for (std::pmr::string* s : {&tx.bytes, &tx.key, &tx.dialog_key, &tx.last_response, &tx.ack}) {
        std::destroy_at(s);
        std::construct_at(s, r);
    }
}

Nanos TransactionLayer::next_deadline() const {
    return heap_.empty() ? std::numeric_limits<Nanos>::max() : heap_.front().at;
}

}  // namespace sbc::signaling

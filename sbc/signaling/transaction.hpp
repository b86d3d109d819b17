#pragma once
// The SIP transaction layer (RFC 3261 §17 with the RFC 6026 Accepted state), sans I/O.
//
// The layer owns no socket and no clock: the owner feeds it the messages it receives
// (receive()), tells it the time (every call takes `now`; advance() fires the timers that are
// due), and the layer calls back its TransactionUser to put bytes on the wire and to deliver
// requests, responses, CANCELs, ACKs and timeouts. Tests drive it with a time they move.
//
// What it does for its user:
//  - server transactions: retransmitted requests absorbed (the last response re-sent), 100
//    Trying sent at once for INVITE, final responses retransmitted over UDP until the ACK
//    (Timer G/H, and for a 2xx the UAS core's T1..T2 retransmission until the ACK or 64*T1),
//    CANCEL answered (200, or 481 when it matches nothing) and handed to the user;
//  - client transactions: requests retransmitted over UDP (Timer A/E), timeouts (B/F), the ACK
//    of a non-2xx final response built and sent (§17.1.1.3), retransmitted finals absorbed,
//    CANCEL built per §9.1 and sent once a provisional response has arrived;
//  - stray responses, unmatched ACKs and CANCELs counted.
// Capacity is fixed: when it is reached, receive() refuses new server transactions
// (Received::overloaded; the owner answers 503 statelessly) and request() fails.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling {

using base::Nanos;

enum class Transport : std::uint8_t { udp, tcp, tls };
constexpr bool is_reliable(Transport t) {
    return t != Transport::udp;
}
std::string_view transport_name(Transport t);  // "UDP", "TCP", "TLS" (as in a Via)

// Where a message came from or goes to. `connection` names a stream connection (0 for UDP, or
// "any connection to remote"); `listener` is the owner's index of the local socket.
struct Flow {
    Transport transport = Transport::udp;
    base::Endpoint remote;
    std::uint64_t connection = 0;
    std::uint32_t listener = 0;
    bool operator==(const Flow&) const = default;
};

struct TimerSettings {
    Nanos t1 = base::millis(500);   // RTT estimate
    Nanos t2 = base::millis(4000);  // maximum retransmit interval for non-INVITE and responses
    Nanos t4 = base::millis(5000);  // maximum duration a message stays in the network
    // A server transaction whose user gives no final response within this is answered 408 by
    // the layer (Timer C's three minutes, RFC 3261 §16.6): no state lives on a forgotten request.
    Nanos max_pending = base::seconds(180);
};

// A transaction's handle. Indexes are reused; the generation tells a stale handle apart.
struct TxId {
    std::uint32_t index = 0;
    std::uint32_t generation = 0;  // 0: no transaction
    explicit operator bool() const { return generation != 0; }
    bool operator==(const TxId&) const = default;
};

enum class TxKind : std::uint8_t {
    server_invite,
    server_non_invite,
    client_invite,
    client_non_invite
};
enum class TxState : std::uint8_t {
    calling,     // client INVITE: request sent, nothing back yet
    trying,      // client non-INVITE sent / server non-INVITE received, nothing sent back yet
    proceeding,  // a provisional response went (server) or came (client)
    completed,   // a final non-2xx (INVITE) or any final (non-INVITE): absorbing retransmissions
    confirmed,   // server INVITE: the ACK of the non-2xx final came
    accepted,    // INVITE with a 2xx (RFC 6026): absorbing retransmissions until Timer L / M
    terminated,
};
std::string_view state_name(TxState s);

enum class TimeoutKind : std::uint8_t {
    no_response,            // client: Timer B or F fired
    transport_error,        // the user's send() failed
    no_ack,                 // server INVITE: no ACK for a final response (Timer H or L)
    no_final_after_cancel,  // client INVITE: CANCEL sent, no final response within 64*T1
    no_final_from_user,     // server: the user gave no final response within max_pending; the
                            // layer answered 408 and the transaction carries on from there
};
std::string_view timeout_name(TimeoutKind k);

#define SBC_SIGNALING_TX_COUNTERS(X)                                         \
    X(server_transactions, "server transactions created")                    \
    X(client_transactions, "client transactions created")                    \
    X(request_retransmissions_absorbed, "retransmitted requests absorbed")   \
    X(response_retransmissions_absorbed, "retransmitted responses absorbed") \
    X(retransmissions_sent, "requests and responses retransmitted over UDP") \
    X(stray_responses, "responses matching no client transaction (dropped)") \
    X(acks_for_2xx, "ACKs of 2xx responses handed to the user")              \
    X(stray_acks, "ACKs matching no transaction")                            \
    X(cancels_matched, "CANCELs matching a pending INVITE")                  \
    X(cancels_unmatched, "CANCELs matching no INVITE (answered 481)")        \
    X(cancels_sent, "CANCELs sent for client INVITEs")                       \
    X(timeouts, "client transactions timed out (Timer B/F)")                 \
    X(ack_timeouts, "server INVITE transactions without ACK (Timer H/L)")    \
    X(transport_errors, "transactions ended by a transport error")           \
    X(abandoned, "client transactions ended early by their user")            \
    X(overloaded, "new transactions refused at capacity")                    \
    X(finals_capped, "non-2xx finals at their retransmission bound")         \
    X(malformed, "messages without Via or CSeq (dropped)")
SBC_DECLARE_COUNTER_LIST(TxCounter, SBC_SIGNALING_TX_COUNTERS)

class TransactionUser {
  public:
    virtual ~TransactionUser() = default;
    // Puts bytes on the wire. false: the transport failed (RFC 3261 §17.1.4 / §17.2.4).
    virtual bool send(const Flow& flow, std::string_view bytes) = 0;
    // A new request got a server transaction (retransmissions never come here; nor do ACK and
    // CANCEL, which have their own calls).
    virtual void on_request(TxId tx, const sip::Message& request, const Flow& from) = 0;
    // An ACK that no Completed INVITE server transaction absorbs: the ACK of a 2xx (end to end,
    // §13.2.2.4). `invite` is the Accepted transaction it acknowledges, or {} when none is known
    // (a late ACK, or one for a 2xx sent by someone else).
    virtual void on_ack(TxId invite, const sip::Message& ack, const Flow& from) = 0;
    // A CANCEL matched an INVITE server transaction that has no final response yet. The CANCEL
    // is already answered 200; the user answers the INVITE (487) and cancels what it started.
    virtual void on_cancel(TxId invite, const sip::Message& cancel) = 0;
    // A response to a client transaction: provisionals, the final, and in Accepted the
    // retransmitted 2xx (the user re-sends its ACK).
    virtual void on_response(TxId tx, const sip::Message& response) = 0;
    virtual void on_timeout(TxId tx, TimeoutKind kind) = 0;
    // The transaction is gone; its id is stale from now on.
    virtual void on_terminated(TxId /*tx*/) {}
};

struct TransactionLimits {
    std::size_t max_transactions = 65536;
};

class TransactionLayer {
  public:
    using Limits = TransactionLimits;
    enum class Received : std::uint8_t {
        new_request,     // handed to on_request
        retransmission,  // absorbed
        ack,             // absorbed or handed to on_ack
        cancel,          // answered
        response,        // handed to on_response
        absorbed_response,
        stray_response,  // dropped
        overloaded,      // no room for a new server transaction: answer 503 statelessly
        malformed,       // no Via or CSeq: dropped
    };

    explicit TransactionLayer(TransactionUser& user, TimerSettings timers = {}, Limits limits = {});
    ~TransactionLayer();
    TransactionLayer(const TransactionLayer&) = delete;
    TransactionLayer& operator=(const TransactionLayer&) = delete;

    // Feeds one message received on `from` (parsed and checked by the caller).
    Received receive(const sip::Message& message, const Flow& from, Nanos now);

    // Server side: sends a response on a server transaction, built from its request
    // (sip::build_response; the request's source fills received/rport).
    bool respond(TxId tx, int status, std::string_view reason, sip::ResponseOptions options,
                 Nanos now);
    // Same with bytes the user built (a relayed response).
    bool respond_with(TxId tx, int status, std::string bytes, Nanos now);
    // Bounds how often a server INVITE's non-2xx final response is retransmitted over UDP
    // (Timer G) to `max`. For a source whose address nothing proves (a stranger: it may be
    // spoofed), so that one datagram in cannot make the layer send ten out. Once the bound is
    // reached the transaction stays in Completed, quiet: it still absorbs the ACK, and a
    // retransmitted INVITE still gets the final once more (one datagram for one), until Timer
    // H. A 2xx is not bounded (a call was answered). false when `tx` is not a server INVITE.
    bool limit_final_retransmissions(TxId tx, std::uint8_t max);
    // The request of a server transaction: while it lives, except for a non-INVITE one once it
    // is answered (Completed, absorbing retransmissions until Timer J): from the next event on
    // it keeps only its key, its last response, its flow and its timer, and this is null.
    const sip::Message* request_of(TxId tx) const;
    const Flow* flow_of(TxId tx) const;

    // Client side: sends `bytes` (a request whose top Via carries `branch`, see new_branch())
    // to `to` and creates its client transaction. {} when the bytes do not parse or at capacity.
    TxId request(const Flow& to, std::string bytes, Nanos now);
    // Cancels a client INVITE (RFC 3261 §9.1): sent now if a provisional came, else as soon as
    // one does. false when the transaction is not a pending client INVITE.
    bool cancel(TxId invite, Nanos now);
    // The transport could not reach `to` (a TCP connect or TLS handshake that failed or timed
    // out, RFC 3261 §17.1.4): every client transaction sent to that flow that has no response
    // yet fails with TimeoutKind::transport_error. Returns how many.
    std::size_t fail_flow(const Flow& to, Nanos now);
    // Ends a client non-INVITE transaction now, without waiting for Timer F: no more
    // retransmissions, a late response is stray. For a request whose answer no longer matters
    // (a health probe judged by its own timeout). false when `tx` is not a live client
    // non-INVITE transaction.
    bool abandon(TxId tx);

    // Fires every timer due at `now`.
    void advance(Nanos now);
    // When advance() next has something to do (INT64_MAX: nothing pending).
    Nanos next_deadline() const;

    TxState state(TxId tx) const;  // terminated for a stale id
    // Whether `request` belongs to a live server transaction (a retransmission, §17.2.3).
    bool has_server_transaction(const sip::Message& request) const;
    std::size_t size() const { return live_; }
    // Ended transactions kept allocated for reuse: their slots in slabs that still hold live
    // transactions, and at most kPooledTransactions in empty slabs once advance() has run (a
    // burst's transactions do not hold memory after it).
    std::size_t pooled() const { return pooled_; }
    // Bytes the transactions' own pool (message copies, keys, responses) holds from the heap:
    // kept at its peak while transactions live, handed back when none does.
    std::size_t pool_bytes() const { return strings_.held() + map_pools_.held(); }
    // What the layer holds for its transactions, bytes: the pool above, the slots' slabs, the
    // timer queue and the parsed requests it keeps (their own objects; their lists are the
    // parser's few small vectors).
    std::size_t memory_bytes() const;
    std::size_t capacity() const { return limits_.max_transactions; }
    const base::CounterSet<TxCounter>& counters() const { return counters_; }
    const TimerSettings& timers() const { return timers_; }

  private:
    struct Tx;
    struct Timer {
        Nanos at;
        std::uint32_t index;
        std::uint32_t serial;
        bool retransmit;
        bool operator>(const Timer& o) const { return at > o.at; }
    };
    Tx* find(TxId id);
    const Tx* find(TxId id) const;
    Tx* find_index(std::uint32_t index);  // the slot, live or not (null: its slab is freed)
    TxId allocate(TxKind kind);
    void release(Tx& tx);
    void arm(Tx& tx, bool retransmit, Nanos at);
    void fire(Tx& tx, bool retransmit, Nanos now);
    bool transmit(Tx& tx, std::string_view bytes);
    void terminate(Tx& tx);
    void bind_dialog(Tx& tx);
    void fail(Tx& tx, TimeoutKind kind);
    Received receive_request(const sip::Message& m, const Flow& from, Nanos now);
    Received receive_response(const sip::Message& m, Nanos now);
    bool send_final(Tx& tx, int status, std::string bytes, Nanos now);
    void send_cancel(Tx& tx, Nanos now);
    void user_gave_up(Tx& tx, Nanos now);

    const sip::Message& parsed(const Tx& tx) const;
    void drop_parsed();
    void drop_parse(const Tx& tx) const;
    mutable std::size_t parses_ = 0;  // requests held parsed

    TransactionUser& user_;
    TimerSettings timers_;
    Limits limits_;
    // Storage (docs/registrations.md, "Sizing"): transactions live in fixed-size slots, kSlab to
    // a slab, a new one taking the lowest free slot so that the live ones gather in the first
    // slabs and the last ones empty out and are freed; their strings (the request's bytes, the
    // keys, the last response, the ACK) and the key tables live in a pool of their own, so that
    // their churn does not scatter over the heap the rest of the thread uses. The parse of a
    // server transaction's request is dropped once it is answered (rebuilt if asked for; a
    // non-INVITE one drops the request's bytes as well), and a client transaction keeps only
    // its bytes.
    static constexpr std::uint32_t kSlab = 256;
    struct Slab;
    class CountingResource : public std::pmr::memory_resource {
      public:
        explicit CountingResource(std::size_t& bytes) : bytes_(bytes) {}

      private:
        void* do_allocate(std::size_t n, std::size_t align) override;
        void do_deallocate(void* p, std::size_t n, std::size_t align) override;
        bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
            return this == &o;
        }
        std::size_t& bytes_;
    };
    // Two pools, each counting what it holds from the heap (bytes[i]); the transaction strings
    // and the key tables each have such a pair, used in turns as described below.
    struct TwinPools {
        std::size_t bytes[2] = {0, 0};
        CountingResource up[2] = {CountingResource{bytes[0]}, CountingResource{bytes[1]}};
        std::pmr::unsynchronized_pool_resource pool[2] = {
            {std::pmr::pool_options{0, 8192}, &up[0]}, {std::pmr::pool_options{0, 8192}, &up[1]}};
        std::size_t held() const { return bytes[0] + bytes[1]; }
    };
    // Two pools take turns (epochs): new transactions take their strings from the current one;
    // once it holds more than kEpochBytes and the other has no live transaction left, the other
    // becomes current and this one is given back whole when its last transaction ends. So a
    // burst's strings leave the heap within a transaction lifetime (Timer H/J) after it, even
    // while steady traffic (calls, health-check probes) keeps transactions alive.
    static constexpr std::size_t kEpochBytes = std::size_t{1} << 20;
    TwinPools strings_;
    std::size_t epoch_live_[2] = {0, 0};
    std::uint8_t epoch_ = 0;
    // The key tables have pools of their own, rebuilt into the other one when theirs holds far
    // more than their entries need (a burst's nodes freed between live ones).
    TwinPools map_pools_;
    std::uint8_t map_epoch_ = 0;
    std::vector<std::unique_ptr<Slab>> slabs_;  // null: freed
    std::size_t lowest_free_ = 0;               // no free slot in slabs_[0, lowest_free_)
    static constexpr std::size_t kPooledTransactions = 1024;
    std::size_t pooled_ = 0;
    std::size_t empty_slabs_ = 0;  // allocated slabs without a live transaction
    void trim_pool();
    static void reset_strings(Tx& tx, std::pmr::memory_resource* r);
    std::size_t live_ = 0;
    std::uint32_t next_generation_ = 1;
    struct KeyHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    struct KeyEq {
        using is_transparent = void;
        bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    };
    // Keyed by views of the transactions' own key strings (Tx::key, Tx::dialog_key): a key is
    // held once.
    using KeyMap = std::pmr::unordered_map<std::string_view, std::uint32_t, KeyHash, KeyEq>;
    struct Maps {
        explicit Maps(std::pmr::memory_resource* r) : by_key(r), by_dialog(r) {}
        KeyMap by_key;     // transaction keys
        KeyMap by_dialog;  // Accepted INVITEs, for 2xx ACKs
    };
    std::unique_ptr<Maps> maps_ = std::make_unique<Maps>(&map_pools_.pool[0]);
    std::vector<TxId> answered_;  // server transactions whose parse goes at the next event
    std::vector<Timer> heap_;
    base::CounterSet<TxCounter> counters_;
};

// Identifiers the SBC puts on the wire (branches, tags, Call-IDs, Contact users) are drawn from
// the kernel's random source: never derived from a counter, an address or a time, so nobody can
// guess the next one or forge one in a dialog it has not seen.
std::string random_token(std::size_t chars);  // [0-9a-z], `chars` long
std::string new_branch();                     // "z9hG4bK" + 24 random characters

}  // namespace sbc::signaling

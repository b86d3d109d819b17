#pragma once
// Registrations through the SBC: a registrar proxy for clients outside (most of them behind
// NAT), sans I/O like the B2BUA that owns it.
//
// A REGISTER from outside goes on to the internal registrar (the internal next hops) with the
// client's Request-URI, From, To, CSeq and credentials unchanged, so the digest challenge and
// the client's answer are relayed untouched. Everything that names the client is replaced: the
// Via is the SBC's, the Call-ID is a keyed hash of the client's, and each Contact becomes
// <sip:TOKEN@sbc-internal> where TOKEN (24 random characters) names one binding: an address of
// record, the client's own Contact URI and the flow the REGISTER arrived on (transport, observed
// source address and port, stream connection, listener). The registrar's location service thus
// points at the SBC; an INVITE from inside whose Request-URI carries the token is delivered over
// that flow (route()). A token that names no binding (expired, its flow dead, forged) answers
// 480 at once.
//
// NAT: every answer goes to the observed source (the transaction layer adds received/rport,
// RFC 3581 §4); the inside never sees a client Contact; the expiry granted to a client whose
// Contact or Via differs from its observed source is cut to `nat_expires` so that its refreshes
// keep the NAT binding open, while refreshes that arrive while the registrar's binding still has
// more than half its time left are answered from the SBC's cache (registration throttling: the
// registrar's load does not grow with the refresh rate). Flows with bindings are probed
// (OPTIONS, or CRLF which only keeps the NAT open) every `keepalive_interval`; a flow that misses
// `keepalive_failures` probes in a row loses its bindings.
//
// Enumeration resistance (`uniform_answers`): every REGISTER from outside, for a user that
// exists or not, is answered with the same status, reason phrase, header set and challenge
// shape. The registrar's 401/407 is relayed with its challenge unchanged, in a response the SBC
// builds itself (fixed header set, its own To tag); any other refusal (404 for an unknown user,
// 403 for a wrong password, the SBC's own refusals) becomes the same status with a challenge
// made from the last real one seen, its nonce and opaque redrawn with the same length and
// alphabet.
#include <array>
#include <cstdint>
#include <functional>
#include <memory_resource>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.hpp"
#include "sbc/signaling/transaction.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling {

class Wire;

// Enumeration resistance for requests other than REGISTER (INVITE from outside): the challenge
// a uniform refusal shows, copied from the last real one the inside sent (status, header and
// value), its nonce and opaque redrawn with the same length and alphabet. Before any real one:
// `default_status`, `default_header` and Digest realm="<realm or To host>", a 32-hex nonce,
// qop="auth", algorithm=MD5.
class ChallengeTemplate {
  public:
    ChallengeTemplate(int default_status, std::string default_header)
        : status_(default_status), header_(std::move(default_header)) {}
    // A 401/407 from inside: the template from now on.
    void learn(const sip::Message& challenge);
    struct Challenge {
        int status = 0;
        std::string header, value;
    };
    Challenge draw(const sip::Message& request, std::string_view realm) const;
    bool learned() const { return !value_.empty(); }

  private:
    int status_;
    std::string header_, value_;
};

// Final statuses to a request from outside that can tell whether its user exists (RFC 3261
// §21: 401/407 challenge a known user, 404/604/410/484/485 say there is none, 403 refuses a
// known one); under enumeration resistance they are all answered as the uniform challenge.
bool reveals_user(int status);

enum class Keepalive : std::uint8_t { none, options, crlf };

struct RegistrationConfig {
    bool enabled = true;
    // The SBC as the clients see it (Via of keep-alive probes) and as the registrar sees it
    // (Via and Contact of the REGISTERs it forwards).
    std::string external_host;
    std::uint16_t external_port = 5060;
    Transport external_transport = Transport::udp;
    std::uint32_t external_listener = 0;
    std::string internal_host;
    std::uint16_t internal_port = 5060;
    Transport internal_transport = Transport::udp;
    std::uint32_t internal_listener = 0;
    std::vector<base::Endpoint> registrars;  // the internal next hops, in order of preference
    // Transport of each registrar (same order; missing: `internal_transport`). Over TCP and
    // TLS the owner opens or reuses its connection to it (the flow carries connection 0), as
    // for the calls' next hops.
    std::vector<Transport> registrar_transports;
    // The SBC's internal TCP/TLS listeners: a REGISTER that goes over one of those transports
    // names the listener of that transport in its Via and in its Contacts (with
    // `;transport=`), so that the registrar's answers and the calls from inside to the
    // binding come back over it (RFC 3261 §18.2.1); without one, the UDP address.
    struct StreamListener {
        Transport transport = Transport::tcp;
        std::string host;
        std::uint16_t port = 5060;
        std::uint32_t listener = 0;
    };
    std::vector<StreamListener> internal_streams;

    // Expiry granted to clients behind NAT (0: as the registrar grants). Requests above
    // `max_expires` ask the registrar for `max_expires`.
    base::Nanos nat_expires = base::seconds(60);
    base::Nanos max_expires = base::seconds(3600);
    // Limits on what an attacker can make the SBC hold.
    std::size_t max_contacts_per_request = 10;
    std::size_t max_bindings_per_aor = 10;
    std::size_t max_bindings = 100000;
    Keepalive keepalive = Keepalive::options;
    base::Nanos keepalive_interval = base::seconds(30);
    base::Nanos keepalive_timeout = base::seconds(5);  // OPTIONS probes only
    std::uint32_t keepalive_failures = 2;
    bool uniform_answers = true;
    // The challenge realm until the registrar has sent a challenge ("" = the To host).
    std::string realm;
};

// How a REGISTER fared, for the fraud engine (every final answer). `status` is what the
// registrar (or the SBC) really answered, before uniform answers rewrite it. Returns true to
// refuse the request (the client then gets the uniform refusal instead of `status`).
class RegistrationHooks {
  public:
    virtual ~RegistrationHooks() = default;
    virtual bool on_register_answered(const sip::Message& /*request*/, const Flow& /*from*/,
                                      int /*status*/) {
        return false;
    }
};

#define SBC_SIGNALING_REGISTRATION_COUNTERS(X)                                               \
    X(registers, "REGISTERs from outside")                                                   \
    X(forwarded, "REGISTERs forwarded to the registrar")                                     \
    X(answered_from_cache, "refreshes answered from the SBC's cache (throttled)")            \
    X(registered, "bindings created")                                                        \
    X(refreshed, "bindings refreshed")                                                       \
    X(moved, "bindings moved to a new flow (re-registration from another address)")          \
    X(unregistered, "bindings removed by Expires 0 or *")                                    \
    X(expired, "bindings expired (no refresh in time)")                                      \
    X(flows_dead, "flows removed with their bindings (keep-alives unanswered)")              \
    X(flows_closed, "TCP/TLS flows removed with their bindings (connection closed)")         \
    X(removed_by_operator, "bindings removed from the control socket")                       \
    X(keepalives_sent, "keep-alives sent (OPTIONS or CRLF)")                                 \
    X(keepalives_answered, "OPTIONS keep-alives answered")                                   \
    X(keepalives_resent, "OPTIONS keep-alives retransmitted (UDP, T1 doubling)")             \
    X(keepalives_late, "answers to OPTIONS keep-alives already judged or unknown (dropped)") \
    X(challenges_relayed, "401/407 challenges relayed")                                      \
    X(uniform_refusals, "refusals answered as a challenge (enumeration resistance)")         \
    X(refused_too_many_contacts, "REGISTERs refused for too many Contacts (403)")            \
    X(refused_bad_expires, "REGISTERs refused for an Expires that is not a number (400)")    \
    X(expires_capped, "REGISTERs whose Expires was cut to max_expires")                      \
    X(refused_aor_full, "REGISTERs refused at the per-AOR binding limit (403)")              \
    X(refused_table_full, "REGISTERs refused at the total binding limit (503)")              \
    X(refused_by_hook, "REGISTERs refused by the fraud verdict on their outcome")            \
    X(no_registrar, "REGISTERs with no registrar to go to (503 or uniform refusal)")         \
    X(registrar_timeouts, "forwarded REGISTERs without an answer")                           \
    X(inbound_routed, "calls from inside delivered over a registered flow")                  \
    X(inbound_gone, "calls from inside to a token naming no binding (480; forged or expired)")
SBC_DECLARE_COUNTER_LIST(RegistrationCounter, SBC_SIGNALING_REGISTRATION_COUNTERS)

class Registrations {
  public:
    using HopUsable = std::function<bool(std::size_t)>;
    Registrations(RegistrationConfig config, TransactionLayer& tx, Wire& wire,
                  RegistrationHooks& hooks, HopUsable hop_usable = {});

    // A REGISTER from outside on server transaction `tx`.
    void on_register(TxId tx, const sip::Message& m, const Flow& from, base::Nanos now);
    // The SBC refuses a REGISTER itself (a fraud block): the uniform refusal, or 403.
    void refuse(TxId tx, const sip::Message& m, base::Nanos now);
    // Client transaction events of the owner's layer; true when the transaction was ours.
    bool on_response(TxId tx, const sip::Message& r, base::Nanos now);
    bool on_timeout(TxId tx, TimeoutKind kind, base::Nanos now);
    // A response that may answer an OPTIONS keep-alive. The probes are not client transactions:
    // a flow's probe is one branch in a table (the request is rebuilt from the branch and the
    // flow to be sent or retransmitted), matched here by its branch. True when it was one of
    // ours (consumed, answered or late); false: for the transaction layer.
    bool on_probe_response(const sip::Message& r, const Flow& from, base::Nanos now);
    // Keep-alive probes waiting for their answer.
    std::size_t probes_out() const { return probes_.size(); }
    void advance(base::Nanos now);
    base::Nanos next_deadline() const;
    // The connection of a TCP/TLS flow closed: its bindings go now (a call to them gets 480
    // at once instead of waiting for a keep-alive or the expiry).
    void flow_closed(const Flow& f, base::Nanos now);

    struct Route {
        enum class Kind : std::uint8_t { not_ours, found, gone } kind = Kind::not_ours;
        Flow flow;           // found: where the call goes
        std::string target;  // found: the client's Contact URI (the new Request-URI)
    };
    // Where a request from inside with this Request-URI goes: a token of ours (the user part
    // of a URI on the SBC's internal address), or an address of record with bindings.
    Route route(const sip::Uri& request_uri);
    // Whether `host` is one of the SBC's internal addresses (the UDP listener or a stream one):
    // a Request-URI there names a binding by its token.
    bool internal_host(std::string_view host) const;

    std::size_t bindings() const { return bindings_.size(); }
    std::size_t flows() const { return flows_.size(); }
    // Entries in the due-time queues (expiry, keep-alive, probe): about one per binding and
    // one per flow, however often the bindings are refreshed.
    std::size_t timer_entries() const {
        return expiry_.size() + keepalive_.size() + probe_due_.size();
    }
    // The binding a token names (tests, `ctl`): its address of record and flow.
    struct BindingView {
        std::string aor, contact;
        Flow flow;
        base::Nanos client_until = 0, registrar_until = 0;
    };
    std::optional<BindingView> binding(std::string_view token) const;
    std::vector<std::string> tokens_of(std::string_view aor) const;
    // Every binding's token (`sbc ctl registrations`), sorted by address of record then
    // token; only those of `aor` when it is given.
    std::vector<std::string> tokens(std::string_view aor = {}) const;
    // The operator removes a binding (`sbc ctl registration remove`): gone at the SBC at once
    // (calls to it get 480); the registrar keeps its own until it expires. False: no such
    // token.
    bool remove_binding(std::string_view token);
    const base::CounterSet<RegistrationCounter>& counters() const { return counters_; }
    const RegistrationConfig& config() const { return config_; }
    // The challenge the uniform refusal copies (status and header value; empty: none seen).
    std::string_view challenge_template() const { return template_value_; }

  private:
    // Storage is laid out for tens of thousands of bindings (docs/registrations.md, "Sizing"):
    // a token is 24 characters held inline (no heap), a binding names its address of record by
    // the key of its by_aor_ entry, the client's Call-ID is kept as a keyed hash, flows are
    // keyed by value, and each binding has one live entry in the expiry queue.
    struct Token {
        std::array<char, 24> chars{};
        static std::optional<Token> of(std::string_view text);  // nullopt: not 24 characters
        static Token random();
        std::string_view view() const { return {chars.data(), chars.size()}; }
        bool operator==(const Token&) const = default;
    };
    struct TokenHash {
        std::size_t operator()(const Token& t) const;
    };
    struct FlowHash {
        std::size_t operator()(const Flow& f) const;
    };
    struct Binding {
        explicit Binding(std::pmr::memory_resource* store) : contact(store) {}
        const std::pmr::string* aor = nullptr;  // the key of its by_aor_ entry (nodes do not move)
        std::pmr::string contact;               // the client's URI as it wrote it
        Flow flow;
        std::uint64_t client_call_id = 0;  // call_id_hash() of the client's Call-ID
        base::Nanos client_until = 0;      // the client must refresh before this
        base::Nanos registrar_until = 0;   // the registrar's binding lasts until this
        base::Nanos registrar_granted = 0;
        base::Nanos expiry_due = 0;  // when its live expiry_ entry comes due (0: none)
        bool natted = false;
    };
    struct Wanted {  // one Contact of a forwarded REGISTER
        Token token;
        std::string contact;
        base::Nanos expires = 0;
        bool fresh = false;  // not a binding yet
    };
    struct Forwarded {
        TxId server;
        Flow from;
        std::string aor, client_call_id;
        std::vector<Wanted> contacts;
        bool star = false, natted = false;
        std::size_t hop = 0;
        base::Nanos requested = 0;  // Expires header asked of the registrar (or -1: none)
    };
    struct FlowState {
        explicit FlowState(std::pmr::memory_resource* store) : tokens(store) {}
        std::pmr::vector<Token> tokens;  // its bindings
        base::Nanos next_probe = 0;
        std::uint64_t probe = 0;  // the branch key of the probe out (0: none)
        base::Nanos probe_sent = 0;
        std::uint32_t failures = 0;
        std::uint8_t probe_sends = 0;  // copies of the probe out sent so far
    };
    // Due times, lazily checked against the binding or flow they name; ordered by time only.
    template <class T>
    struct Due {
        base::Nanos at;
        T what;
        bool operator>(const Due& o) const { return at > o.at; }
    };
    template <class T>
    using DueQueue = std::priority_queue<Due<T>, std::vector<Due<T>>, std::greater<Due<T>>>;

    void forward(TxId tx, const sip::Message& m, const Flow& from, Forwarded f, base::Nanos now);
    void answer_from_cache(TxId tx, const sip::Message& m, const std::string& aor, base::Nanos now);
    void answer_ok(TxId tx, const std::string& aor, base::Nanos now);
    void relay_challenge(TxId tx, const sip::Message& r, base::Nanos now);
    void uniform_refusal(TxId tx, const sip::Message& request, int fallback_status,
                         base::Nanos now);
    void learn_challenge(const sip::Message& r);
    std::string fake_challenge(const sip::Message& request) const;
    void commit(const Forwarded& f, const sip::Message& ok, base::Nanos now);
    void attach(const Token& t, Binding& b, const Flow& flow, base::Nanos now);
    void detach(const Token& t, Binding& b);
    void remove(const Token& token, RegistrationCounter why);
    void schedule_expiry(const Token& t, Binding& b);
    std::string call_id_for(std::string_view client_call_id, const Flow& from) const;
    std::uint64_t call_id_hash(std::string_view client_call_id) const;
    std::string our_contact(std::string_view token, Transport t) const;
    // The SBC's internal address for transport `t` (a stream listener, else the UDP one).
    struct Local {
        const std::string& host;
        std::uint16_t port;
        std::uint32_t listener;
        bool stream;
    };
    Local internal_local(Transport t) const;
    Transport registrar_transport(std::size_t hop) const;
    bool natted(const sip::Message& m, const Flow& from) const;
    // Keep-alive OPTIONS probes (UDP): built from the flow and the branch key alone.
    bool send_probe(const Flow& flow, std::uint64_t key);
    base::Nanos probe_resend_at(const FlowState& fs) const;
    void probe_due(const Flow& key, base::Nanos now);

    RegistrationConfig config_;
    TransactionLayer& tx_;
    Wire& wire_;
    RegistrationHooks& hooks_;
    HopUsable hop_usable_;
    std::uint64_t secret_[2];
    // The bindings, addresses of record and flows live in a pool of their own: they outlive
    // the transactions of the REGISTERs that made them by hours, and the transactions' memory
    // (freed seconds later) then leaves whole pages behind that go back to the system,
    // instead of holes between bindings that the heap keeps (docs/registrations.md, "Sizing").
    std::pmr::unsynchronized_pool_resource store_;
    struct AorHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::pmr::unordered_map<Token, Binding, TokenHash> bindings_{&store_};
    struct AorEq {
        using is_transparent = void;
        bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    };
    std::pmr::unordered_map<std::pmr::string, std::pmr::vector<Token>, AorHash, AorEq> by_aor_{
        &store_};  // aor -> tokens
    std::pmr::unordered_map<Flow, FlowState, FlowHash> flows_{&store_};
    std::unordered_map<std::uint64_t, Forwarded> forwarded_;  // client tx -> request
    // Keep-alive probes out: branch key -> flow probed (in the pool: one entry per flow at
    // most, no transaction, no copy of the request).
    std::pmr::unordered_map<std::uint64_t, Flow> probes_{&store_};
    std::string probe_buf_;  // the probe being built (reused: no allocation per probe)
    DueQueue<Token> expiry_;
    DueQueue<Flow> keepalive_, probe_due_;
    int template_status_ = 0;
    std::string template_header_, template_value_;
    base::CounterSet<RegistrationCounter> counters_;
};

}  // namespace sbc::signaling

#pragma once
// The B2BUA: each call is two dialogs, both owned by the SBC (RFC 7092 §3.1.4). A call enters on
// one side (external or internal) and leaves on the other; nothing of one leg's identifiers
// (Call-ID, tags, branches, Contact, Via, Record-Route) appears on the other, and every message
// the SBC sends is built from its own dialog state, so topology hiding is structural.
//
// Sans I/O like the transaction layer below it: the owner feeds received messages and the time,
// and supplies three interfaces: Wire (bytes out), MediaAnchor (relay streams for SDP) and
// CallHooks (admission before a new call goes on, and the call's life after).
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.hpp"
#include "sbc/signaling/registrations.hpp"
#include "sbc/signaling/transaction.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling {

enum class Side : std::uint8_t { external, internal };
constexpr Side other(Side s) {
    return s == Side::external ? Side::internal : Side::external;
}
std::string_view side_name(Side s);

struct SideConfig {
    std::string host;  // the SBC's address on this side, as written in Via and Contact
    std::uint16_t port = 5060;
    std::string media_host;  // the relay's address on this side, written into SDP
    Transport transport = Transport::udp;
    std::uint32_t listener = 0;  // the owner's listener index for this side
    // The SBC's stream listeners on this side. A leg that runs over TCP or TLS names the
    // listener of that transport in its Via and Contact (RFC 3261 §18.2.1 and §8.1.1.8), so
    // that the peer's requests come back over the same transport; without one, `host`/`port`.
    struct StreamListener {
        Transport transport = Transport::tcp;
        std::string host;
        std::uint16_t port = 5060;
        std::uint32_t listener = 0;  // the owner's listener index
    };
    std::vector<StreamListener> stream_listeners;
    // Where new calls that leave on this side go (failover on timeout, 503 or a transport
    // error), health-checked and weighted alike on both sides: the internal side's proxies,
    // the external side's trunks. Empty on the external side: a call from inside goes to its
    // Request-URI's address, over the transport the URI names (sips: or ;transport=tls: TLS,
    // ;transport=tcp: TCP, else UDP).
    std::vector<base::Endpoint> next_hops;
    // Transport of each next hop (same order; missing counts as UDP). Over TCP and TLS the
    // owner opens (or reuses) a connection to the hop: the flow carries connection 0.
    std::vector<Transport> hop_transports;
    // Relative weight of each next hop (same order; missing or 0 counts as 1). A new call goes
    // to one of the hops up, chosen at random in proportion to their weights; on failover the
    // next one is chosen the same way among the hops up it has not tried yet.
    std::vector<std::uint32_t> weights;
};

// OPTIONS probes of the next hops (RFC 3261 §11). Any response is a sign of life; a probe
// without a response within `timeout` is a failure. A hop takes calls only while it is up: it
// comes up on its first answered probe after start, and after `successes_before_up` answered
// probes once it was down; it goes down after `failures_before_down` failed probes in a row,
// and at once when a call to it times out. With no hop up, a new call gets 503 at once.
struct HealthCheck {
    bool enabled = true;
    base::Nanos interval = base::seconds(5);
    base::Nanos timeout = base::seconds(2);
    std::uint32_t failures_before_down = 3;
    std::uint32_t successes_before_up = 2;
};

struct B2buaConfig {
    SideConfig external, internal;
    HealthCheck health;
    // Header fields never relayed (on top of the hop-by-hop ones the B2BUA rebuilds); names,
    // case-insensitive, '*' matching any run ("X-Internal-*"), as topology.strip_headers.
    std::vector<std::string> strip_headers = {"Server", "User-Agent", "Organization", "Warning"};
    // The header that carries a flag verdict to the inside; removed when it comes from outside.
    std::string flag_header = "X-SBC-Fraud";
    // Reason phrases going out are the standard ones for their status (inside wording never
    // leaks) unless listed here (status -> phrase).
    std::vector<std::pair<int, std::string>> reason_phrases;
    // A 3xx from inside goes out as this final status (its Contact names an inside host).
    int redirect_status = 480;
    // A call is ended (BYE both ways) after this long; 0: no limit.
    base::Nanos max_call_duration = 0;
    // Server / User-Agent of the SBC's own messages; "" (the default): none, so that no answer
    // names a product a scanner could look up.
    std::string user_agent;
    std::size_t max_calls = 20000;
    // Calls in setup (not answered yet) from external sources with no answered call behind
    // them: a spoofed INVITE flood passes the dataplane's new-source budget as strangers, and
    // without a cap its calls take the relay ports and the inside's capacity from the callers
    // the node knows. Beyond the cap a stranger's INVITE gets 503 (Retry-After). 0: no cap.
    std::size_t max_stranger_setups = 256;
    // External source addresses remembered as known (one of their calls was answered); a
    // fixed table, an address overwriting the one in its slot. Trusted sources are known.
    std::size_t known_sources = 16384;
    // Retransmissions over UDP of a non-2xx final response to a stranger's INVITE (Timer G
    // would send up to ten datagrams toward an address that may be spoofed); the transaction
    // then absorbs the ACK or a retransmitted INVITE (answered once more) until Timer H.
    std::uint8_t stranger_final_retransmissions = 2;
    // Seed of the weighted next-hop choice; 0: from the kernel's random source.
    std::uint64_t seed = 0;
    // REGISTERs from outside (registrations.hpp). Hosts, ports, listeners and registrars are
    // taken from the two sides; disabled: REGISTER is answered 503.
    RegistrationConfig registrations;
};

// Relay streams for the calls' SDP (implemented on the dataplane's media control).
class MediaAnchor {
  public:
    virtual ~MediaAnchor() = default;
    // Media line `index` of call `call`: the party on side `from` signaled `peer`. Returns the
    // SBC's endpoint that the party on the other side must send to.
    virtual base::Result<base::Endpoint> anchor(std::uint64_t call, std::size_t index, Side from,
                                                const base::Endpoint& peer, bool rtcp_mux,
                                                base::Nanos now) = 0;
    // Frees every stream of the call (called exactly once per call that anchored media).
    virtual void release(std::uint64_t call) = 0;
};

class Wire {
  public:
    virtual ~Wire() = default;
    virtual bool send(const Flow& flow, std::string_view bytes) = 0;
};

struct Admission {
    enum class Kind : std::uint8_t { allow, flag, block } kind = Kind::allow;
    int status = 403;        // block
    std::string reason;      // block: the reason phrase
    std::string flag_value;  // flag: the flag header's value
    // The owner vouches for the source (a trusted trunk): never counted as a stranger. (The
    // B2BUA may ask admit() again for an INVITE it would refuse as a stranger's, to learn this.)
    bool known_source = false;
    // Enumeration resistance (a stranger on an external listener that has it): a block, and
    // every final answer that could tell whether the user exists (reveals_user()), is the
    // same challenge for every user.
    bool uniform = false;
};

enum class CallEnd : std::uint8_t {
    rejected,    // a final non-2xx before answer
    cancelled,   // CANCEL from the caller
    bye_caller,  // BYE from the side that placed the call
    bye_callee,  // BYE from the side that took it
    timeout,     // no answer / no ACK
    max_duration,
    terminated,  // ended by the owner (inactivity, ban, shutdown)
    blocked,     // refused by admission
};
std::string_view call_end_name(CallEnd e);

// The strings of a call the B2BUA holds live in its call memory (see B2bua); a copy takes the
// default resource, so a copy may outlive the B2BUA.
struct CallInfo {
    CallInfo() = default;
    explicit CallInfo(std::pmr::memory_resource* r)
        : caller(r), callee(r), call_id(r), credentials_user(r), user_agent(r) {}
    std::uint64_t id = 0;
    Side from = Side::external;
    Flow source;
    std::pmr::string caller, callee;  // From user, Request-URI user
    std::pmr::string call_id;         // the caller's Call-ID
    // Authorization (else Proxy-Authorization) username of the INVITE, "" = no credentials.
    std::pmr::string credentials_user;
    std::pmr::string user_agent;  // the caller's User-Agent
    base::Nanos started = 0, answered = 0, ended = 0;
    int final_status = 0;
};

// One call as the owner may inspect it (`sbc ctl call show`, capture correlation).
struct CallView {
    const CallInfo* info = nullptr;
    bool answered = false;
    bool ended = false;  // ended, kept until its last transactions finish
    Side side[2] = {Side::external, Side::internal};  // 0: the caller's leg, 1: the callee's
    Flow flow[2];                                     // each leg's far end as the SBC sees it
    std::string_view call_id[2];                      // each leg's Call-ID
};

class CallHooks : public RegistrationHooks {
  public:
    ~CallHooks() override = default;
    // A new INVITE (or a REGISTER from outside), before anything goes on.
    virtual Admission admit(const sip::Message& invite, const Flow& from, Side side) = 0;
    virtual void on_answered(const CallInfo&) {}
    virtual void on_ended(const CallInfo&, CallEnd) {}
    // A final response to the call's INVITE relayed back to the caller, with the status the
    // far side sent (before any rewriting): how the caller's credentials fared (a challenge,
    // then a success or a refusal).
    virtual void on_response_relayed(const CallInfo&, int /*status*/) {}
};

#define SBC_SIGNALING_B2BUA_COUNTERS(X)                                                         \
    X(calls_offered, "new INVITEs")                                                             \
    X(calls_blocked, "new INVITEs refused by admission")                                        \
    X(calls_flagged, "new INVITEs forwarded with the flag header")                              \
    X(calls_answered, "calls answered")                                                         \
    X(calls_failed, "calls ended before answer")                                                \
    X(calls_ended, "answered calls ended")                                                      \
    X(calls_refused_capacity, "new INVITEs refused at the call limit")                          \
    X(calls_refused_strangers, "new INVITEs of unknown sources refused at max_stranger_setups") \
    X(no_next_hop, "new INVITEs with no next hop up (503)")                                     \
    X(failovers, "INVITEs retried on the next hop")                                             \
    X(unknown_dialog, "in-dialog requests matching no dialog (481)")                            \
    X(options_answered, "OPTIONS to the SBC answered locally")                                  \
    X(uniform_answers, "INVITE refusals made uniform (challenge)")                              \
    X(sdp_rewritten, "SDP bodies anchored on the relay")                                        \
    X(sdp_refused, "SDP bodies that could not be anchored (488)")                               \
    X(loops, "requests refused for Max-Forwards 0 (483)")                                       \
    X(in_dialog_relayed, "in-dialog requests relayed")                                          \
    X(messages_relayed, "out-of-dialog MESSAGEs relayed (RFC 3428)")                            \
    X(messages_refused, "out-of-dialog MESSAGEs refused (admission, loop, no destination)")     \
    X(probes_sent, "OPTIONS probes sent to next hops")                                          \
    X(probes_answered, "OPTIONS probes answered")                                               \
    X(probes_failed, "OPTIONS probes without an answer in time")                                \
    X(hops_down, "next hops marked down")                                                       \
    X(hops_up, "next hops marked up")
SBC_DECLARE_COUNTER_LIST(B2buaCounter, SBC_SIGNALING_B2BUA_COUNTERS)

class B2bua final : private TransactionUser {
  public:
    B2bua(B2buaConfig config, Wire& wire, MediaAnchor& media, CallHooks& hooks,
          TimerSettings timers = {}, TransactionLimits limits = {});
    ~B2bua() override;

    // One message received on `from` from side `side` (parsed; requests passed check_request).
    void receive(const sip::Message& m, const Flow& from, Side side, base::Nanos now);
    void advance(base::Nanos now);
    base::Nanos next_deadline() const;
    // The owner could not open a connection to `to` (connect refused or timed out, TLS
    // handshake failed): requests sent there and still unanswered fail as a transport error
    // (RFC 3261 §17.1.4), so a new call fails over to the next hop at once.
    std::size_t transport_failed(const Flow& to, base::Nanos now);
    // Ends a call from outside the SIP flow (media inactivity, a fraud ban, shutdown).
    bool end_call(std::uint64_t call, base::Nanos now);
    // Ends every call (BYE on both legs once answered, else 480 and CANCEL) whose information
    // matches `pred`: a fraud ban of its source or account. Returns how many.
    template <class Pred>
    std::size_t end_calls_if(Pred pred, base::Nanos now) {
        std::vector<std::uint64_t> ids;
        for (std::uint64_t id : calls())
            if (const CallInfo* i = info(id); i && pred(*i)) ids.push_back(id);
        std::size_t n = 0;
        for (std::uint64_t id : ids) n += end_call(id, now) ? 1 : 0;
        return n;
    }
    // A running call's information, or nullptr.
    const CallInfo* info(std::uint64_t call) const;
    // Whether a running call was answered.
    bool answered(std::uint64_t call) const;
    std::vector<std::uint64_t> calls() const;
    // A call the B2BUA still holds (ended ones until their last transactions finish), or
    // nullopt. Views are valid until the next receive/advance/end_call.
    std::optional<CallView> call_view(std::uint64_t call) const;
    // The call one of whose legs has Call-ID `call_id` on side `side` (until that call object
    // is freed, which may be after it ended: late responses and retransmissions still match).
    std::optional<std::uint64_t> call_of(Side side, std::string_view call_id) const;
    // A policy reload's header stripping, reason phrases and own Server/User-Agent, for the
    // messages built from now on.
    void set_topology(std::vector<std::string> strip_headers,
                      std::vector<std::pair<int, std::string>> reason_phrases,
                      std::string user_agent) {
        config_.strip_headers = std::move(strip_headers);
        config_.reason_phrases = std::move(reason_phrases);
        config_.user_agent = std::move(user_agent);
    }

    std::size_t active_calls() const { return calls_.size(); }
    // Bytes the call memory holds from the allocator (calls, their strings, their dialog
    // index), whether in use or kept for the next calls.
    std::size_t call_memory_bytes() const { return call_memory_.held(); }
    // Whether next hop i of side `side` takes calls now.
    bool hop_up(Side side, std::size_t i) const {
        const auto& h = hops_[static_cast<int>(side)];
        return i < h.size() && h[i].up;
    }
    bool hop_up(std::size_t i) const { return hop_up(Side::internal, i); }
    // Probes of next hop i of side `side`: sent, answered, failed in a row.
    struct HopHealth {
        bool up = false;
        std::uint32_t failures = 0;  // failed probes (or calls) in a row
        std::uint64_t probes_sent = 0, probes_answered = 0;
    };
    std::optional<HopHealth> hop_health(Side side, std::size_t i) const;
    const base::CounterSet<B2buaCounter>& counters() const { return counters_; }
    const TransactionLayer& transactions() const { return tx_; }
    // Null when registrations are disabled.
    const Registrations* registrations() const { return regs_.get(); }
    Registrations* registrations() { return regs_.get(); }
    const B2buaConfig& config() const { return config_; }

  private:
    struct Leg;
    struct Call;
    // Everything a call keeps for its whole life (the Call, its strings, its entries in the
    // dialog index) comes from this pool, apart from the short-lived messages and transactions
    // of the general heap: a held call's bytes sit together, and the pages that its setup's
    // transactions used are handed back whole once those end (docs/running.md, "Memory per
    // call"). Declared first: destroyed last.
    class CallMemory final : public std::pmr::memory_resource {
      public:
        CallMemory();
        ~CallMemory() override;
        std::size_t held() const { return held_; }
        // Slots of one size (the Call's), carved from chunks of kSlotsPerChunk: a Call is
        // larger than the pool's block sizes are fine-grained (1304 bytes would take 1536).
        void* take_slot(std::size_t size);
        void give_slot(void* p);
        // Hands every chunk back to the system. Only when nothing allocated from it is alive
        // (no call, every container on it emptied and shrunk).
        void release();

      private:
        void* do_allocate(std::size_t bytes, std::size_t align) override;
        void do_deallocate(void* p, std::size_t bytes, std::size_t align) override;
        bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
            return this == &o;
        }
        struct Counting final : std::pmr::memory_resource {
            std::size_t* held;
            explicit Counting(std::size_t* h) : held(h) {}
            void* do_allocate(std::size_t bytes, std::size_t align) override;
            void do_deallocate(void* p, std::size_t bytes, std::size_t align) override;
            bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
                return this == &o;
            }
        };
        static constexpr std::size_t kSlotsPerChunk = 64;
        std::size_t held_ = 0;
        std::size_t slot_size_ = 0;
        void* free_slots_ = nullptr;  // intrusive list: each free slot holds the next
        std::vector<void*> chunks_;
        Counting upstream_{&held_};
        std::pmr::unsynchronized_pool_resource pool_;
    };
    CallMemory call_memory_;
    // With no call left, the call memory's peak (a burst of calls, a flood of strangers) goes
    // back to the system instead of waiting for the next calls.
    void trim_call_memory();
    struct CallDelete {
        CallMemory* memory = nullptr;
        void operator()(Call* c) const;
    };
    using CallPtr = std::unique_ptr<Call, CallDelete>;
    // The dialog and Call-ID indexes map a keyed hash of (side, Call-ID[, our tag]) to calls;
    // every hit is checked against the call's own legs, so a collision costs a comparison,
    // never a wrong match, and an index entry is two words instead of a copy of its strings.
    struct Prehashed {
        std::size_t operator()(std::uint64_t h) const { return static_cast<std::size_t>(h); }
    };
    using KeyIndex = std::pmr::unordered_multimap<std::uint64_t, std::uint64_t, Prehashed>;
    std::uint64_t index_hash(Side side, std::string_view call_id, std::string_view tag) const;
    void index_add(KeyIndex& index, std::uint64_t hash, std::uint64_t call);
    void index_remove(KeyIndex& index, std::uint64_t hash, std::uint64_t call);
    std::string index_seed_;  // random, secret: the hash is not steerable from outside
    struct Pending {
        std::uint64_t call = 0;
        int leg = 0;  // the leg the client transaction runs on
        TxId server;  // the server transaction it answers, if any
        int server_leg = 0;
        sip::Method method = sip::Method::unknown;
        bool initial = false;            // the call's first INVITE
        int probe = -1;                  // an OPTIONS probe of this next hop
        std::size_t hop = 0;             // initial INVITE: the next hop it went to
        Side hop_side = Side::internal;  // the side of `probe` or `hop`
        // An out-of-dialog MESSAGE relayed outside any call: `server` answers it.
        bool standalone = false;
        bool uniform = false;  // its answers made uniform (a stranger's, enumeration resistance)
        Side server_side = Side::external;
    };
    // TransactionUser
    bool send(const Flow& flow, std::string_view bytes) override;
    void on_request(TxId tx, const sip::Message& request, const Flow& from) override;
    void on_ack(TxId invite, const sip::Message& ack, const Flow& from) override;
    void on_cancel(TxId invite, const sip::Message& cancel) override;
    void on_response(TxId tx, const sip::Message& response) override;
    void on_timeout(TxId tx, TimeoutKind kind) override;
    void on_terminated(TxId tx) override;

    void new_call(TxId tx, const sip::Message& invite, const Flow& from);
    // An out-of-dialog MESSAGE (RFC 3428 §7): a non-INVITE transaction of its own on the other
    // side, built from the SBC's identifiers as a call's first request is.
    void relay_message(TxId tx, const sip::Message& m, const Flow& from);
    void answer_message(const Pending& p, const sip::Message& response);
    // Whether `m` carries one of our Vias on side `here` (it already went through us).
    bool looped(const sip::Message& m, const SideConfig& here, bool to_binding) const;
    bool to_binding(const sip::Message& m, Side side) const;
    int loop_refusal(const sip::Message& m, const SideConfig& here, bool to_binding);
    void in_dialog(TxId tx, const sip::Message& request, const Flow& from, Call& call, int leg);
    bool try_next_hop(Call& call, base::Nanos now);
    std::string build_request(Call& call, int leg, std::string_view method, const sip::Message* src,
                              std::string_view body, std::uint32_t cseq, std::string_view branch);
    std::string relay_headers(const sip::Message& src, Side to) const;
    std::optional<std::string> anchor_sdp(Call& call, std::string_view body, Side from,
                                          base::Nanos now);
    void relay_response(Call& call, TxId server, int server_leg, const sip::Message& response,
                        base::Nanos now);
    void send_ack(Call& call, int leg, std::string_view body);
    void resend_ack(Call& call);
    void send_bye(Call& call, int leg, base::Nanos now);
    void finish(Call& call, CallEnd how, base::Nanos now);
    Call* call_of_dialog(const sip::Message& m, Side side, int* leg);
    std::string reason_for(int status) const;
    Flow leg_destination(const Call& call, int leg) const;

    struct HopState {
        bool up = false;
        bool ever_up = false;
        std::uint32_t successes = 0, failures = 0;
        base::Nanos next_probe = 0;
        TxId probe;
        base::Nanos probe_sent = 0;
        std::uint64_t probes_sent = 0, probes_answered = 0;
    };
    const SideConfig& side_config(Side s) const {
        return s == Side::external ? config_.external : config_.internal;
    }
    void probe_hops(Side side, base::Nanos now);
    void hop_result(Side side, std::size_t hop, bool ok);
    bool hop_usable(std::size_t hop) const;
    // The next hop of side `side` for a call that tried those in `tried` (bit i = hop i),
    // chosen at random among the hops up in proportion to their weights, or the side's hop
    // count when none is left.
    std::size_t pick_hop(Side side, std::uint64_t tried);

    B2buaConfig config_;
    std::vector<HopState> hops_[2];  // each side's next hops (Side as index)
    std::uint64_t rng_ = 0;          // splitmix64 state of the weighted choice
    Wire& wire_;
    MediaAnchor& media_;
    CallHooks& hooks_;
    TransactionLayer tx_;
    base::Nanos now_ = 0;
    Side current_side_ = Side::external;  // the side of the message being received
    std::uint64_t next_call_ = 1;
    std::pmr::unordered_map<std::uint64_t, CallPtr> calls_{&call_memory_};
    KeyIndex dialogs_{&call_memory_};   // side|Call-ID|local tag
    KeyIndex call_ids_{&call_memory_};  // side|Call-ID
    void forget_call_ids(const Call& call);
    std::unordered_map<std::uint64_t, Pending> pending_;             // client tx -> what it is for
    std::unordered_map<std::uint64_t, std::uint64_t> server_calls_;  // server INVITE tx -> call
    base::CounterSet<B2buaCounter> counters_;
    std::unique_ptr<Registrations> regs_;
    // Sources with an answered call (max_stranger_setups), direct-mapped by address hash.
    std::vector<base::IpAddress> known_;
    std::size_t stranger_setups_ = 0;
    bool is_known(const base::IpAddress& a) const;
    void remember_known(const base::IpAddress& a);
    void stranger_setup_done(Call& c);
    bool refuse_stranger(const sip::Message& m, const Flow& from, Side side);
    void respond_503_statelessly(const sip::Message& m, const Flow& from);
    // The challenge uniform INVITE refusals copy (the inside's last 401/407 to an INVITE).
    ChallengeTemplate call_challenge_{407, "Proxy-Authenticate"};
    // A challenge (the inside's, `real`, or one drawn from call_challenge_) in a response of
    // our own making: the same header set whoever is asked.
    void uniform_answer(TxId tx, const sip::Message& request, const sip::Message* real,
                        std::string_view to_tag);
};

}  // namespace sbc::signaling

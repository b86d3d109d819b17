#pragma once
// The one adapter from SIP to fraud events (fraud/ knows no SIP): the account and callee
// choice, the request kind of a method, the outcome of a final status, and how credentials
// fared. Used by the live front door (`sbc run`, fed by the front door and the B2BUA's call
// hooks), by `sbc policy test` (SIP messages given in its event files) and by `sbc replay` (a
// passive observer of both directions of captured SIP traffic that follows transactions and
// calls itself).
//
// The observer makes no decision and sends nothing: it is fed parsed messages (or the B2BUA's
// reports) with their source and time, and calls a FraudEventSink. Its tables have
// capacities; what they cannot hold is evicted (oldest first) and counted.
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/base.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"
#include "sbc/signaling/b2bua.hpp"
#include "sip/sip.hpp"

namespace sbc {

// ---------------------------------------------------------------------------------------------
// Helpers: the front door's mapping of one request onto the fraud vocabulary.

// The calling account: the authenticated user (Authorization, else Proxy-Authorization
// username), else the From user.
std::string_view account_of(const sip::Message& m);
// The user a REGISTER registers: the To (address-of-record) user, else the account.
std::string_view registered_user_of(const sip::Message& m);
// Dialed digits to E.164 with the policy's [numbering]; a target that is not a number (a user
// name, "100" without a country code) is kept as is.
std::string normalize_callee(std::string_view dialed, const policy::Numbering* numbering);
// The calling user: the P-Asserted-Identity user (RFC 3325 §9.1: the identity a trusted trunk
// asserts), else the From user.
std::string_view calling_user_of(const sip::Message& m);
// The transport name of the fraud vocabulary: "udp", "tcp", "tls".
std::string_view transport_name(bool tcp, bool tls);
// The request kind of a method: INVITE a call, OPTIONS a probe, REGISTER a registration...
fraud::RequestKind request_kind_of(sip::Method method);
// The same for a method name as written (upper case; unknown names: other).
fraud::RequestKind request_kind_of(std::string_view method_name);
// The outcome of a final status (RFC 3261 §21): 2xx answered; 401/407 auth_challenge; 403
// auth_failure; 404/604 not_found; 486/600 busy; 487 cancelled; 408 timeout; 5xx failed;
// other 3xx-6xx rejected. A status that is not final (< 200, > 699): failed.
fraud::Outcome outcome_of(int status);

// ---------------------------------------------------------------------------------------------
// Observer

#define SBC_OBSERVER_EVENTS(X)                                                                   \
    X(messages, "SIP messages observed")                                                         \
    X(requests, "requests")                                                                      \
    X(responses, "responses")                                                                    \
    X(retransmissions, "requests already seen in a transaction (not counted again)")             \
    X(attempts, "call attempts (new INVITE transactions outside a dialog)")                      \
    X(other_requests, "out-of-dialog requests other than INVITE/REGISTER (OPTIONS, MESSAGE...)") \
    X(answers, "calls answered (first 2xx to the INVITE)")                                       \
    X(ends, "calls ended (BYE, final failure, CANCEL, challenge not followed)")                  \
    X(auth_success, "authentications accepted (credentials, then a 2xx)")                        \
    X(auth_failure,                                                                              \
      "authentications refused (credentials then 401/407/403, or 403 after a challenge)")        \
    X(registrations, "registrations completed (final response, or 408 when none came)")          \
    X(unmatched_responses, "responses to no known transaction")                                  \
    X(timeouts, "transactions with no final response within the transaction timeout")            \
    X(transactions_evicted, "transactions evicted from a full table (oldest first)")             \
    X(calls_evicted, "calls evicted from a full table (oldest first)")                           \
    X(challenges_evicted, "challenge records evicted from a full table")
SBC_DECLARE_COUNTER_LIST(ObserverEvent, SBC_OBSERVER_EVENTS)

// Where fraud events go. Views are valid during the call only.
class FraudEventSink {
  public:
    virtual ~FraudEventSink() = default;
    // An INVITE (a call) or another out-of-dialog request (request kind of its method).
    virtual void attempt(const fraud::CallAttempt& a) = 0;
    virtual void answered(const fraud::CallAnswered& a) = 0;
    virtual void ended(const fraud::CallEnded& e) = 0;
    virtual void auth(const fraud::AuthResult& a) = 0;
    virtual void registration(const fraud::Registration& r) = 0;
};

struct ObserverLimits {
    std::uint32_t max_transactions = 1u << 16;
    std::uint32_t max_calls = 1u << 16;
    std::uint32_t max_challenges = 1u << 14;  // (user, source) pairs challenged lately
    // RFC 3261 §17.1.1.2 Timer B / §17.1.2.2 Timer F: 64*T1. A transaction without a final
    // response by then is over (registration: 408); a challenged INVITE not retried by then
    // ends the call with the challenge's status.
    base::Nanos transaction_timeout = base::seconds(32);
    base::Nanos max_call_duration = base::seconds(4 * 3600);
};

struct ObservedMessage {
    base::Endpoint source, destination;
    bool tcp = false, tls = false;
    bool internal_side = false;  // entered on the B2BUA's internal side
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
};

// The direction of a call (docs/fraud.md, "Direction"): from a trusted trunk, inbound; from
// the internal side or an internal network ([access] internal), internal when the callee is
// an extension (not a number of at least 7 digits) and outbound otherwise; from anywhere else
// (users registered from outside), outbound.
fraud::Direction direction_of(const ObservedMessage& at, const policy::AccessLists* access,
                              std::string_view callee);

// The attempt a request is (INVITE or another method): views into `m`, `callee` (the dialed
// user normalized with `numbering`) and `caller` (the calling user normalized alike), kept in
// the caller's strings. `access` (may be null): trusted trunks and internal networks, for
// the direction and the trusted flag.
fraud::CallAttempt attempt_of(const sip::Message& m, const ObservedMessage& at,
                              const policy::Numbering* numbering, std::string& callee,
                              std::string& caller, const policy::AccessLists* access = nullptr);
// The registration a REGISTER is, with the outcome of its final answer; `access` (may be
// null): its direction and trusted flag, derived as for attempts.
fraud::Registration registration_of(const sip::Message& m, const ObservedMessage& at,
                                    fraud::Outcome outcome,
                                    const policy::AccessLists* access = nullptr);

class CallObserver {
  public:
    CallObserver(FraudEventSink& sink, const policy::Numbering* numbering,
                 const ObserverLimits& limits = {});
    ~CallObserver();
    CallObserver(const CallObserver&) = delete;
    CallObserver& operator=(const CallObserver&) = delete;

    // The policy's [numbering] changed (a reload); the old one is not read again.
    void set_numbering(const policy::Numbering* numbering);
    // The policy's [access] (trusted trunks, internal networks: direction and trusted flag of
    // attempts); null: every attempt is outbound and untrusted. Same lifetime rule.
    void set_access(const policy::AccessLists* access);

    // -- Passive (`sbc replay`, `sbc policy test`): every message of both directions.
    // One well-formed message (either direction).
    void observe(const sip::Message& m, const ObservedMessage& at);

    // -- Live (`sbc run`): the B2BUA follows transactions and calls and reports here; only
    // the challenge table is kept. Calls placed from the internal side are not fraud events.
    // A new request from outside, scored now: an INVITE outside a dialog or another
    // out-of-dialog request (an attempt of its kind; a REGISTER: use registration_answered).
    void request_offered(const sip::Message& m, const ObservedMessage& at);
    // A REGISTER and the final status it is answered with.
    void registration_answered(const sip::Message& m, int status, const ObservedMessage& at);
    void call_answered(const signaling::CallInfo& c, base::Nanos now, base::UnixNanos wall);
    void call_ended(const signaling::CallInfo& c, signaling::CallEnd how, base::Nanos now,
                    base::UnixNanos wall);
    // A final response to a call's INVITE relayed to the caller: authentication outcomes.
    void response_relayed(const signaling::CallInfo& c, int status, base::Nanos now,
                          base::UnixNanos wall);

    // Times out transactions and challenges, releases calls older than max_call_duration.
    void expire(base::Nanos now, base::UnixNanos wall);
    // End of input: every pending transaction and challenge is settled as a timeout would.
    void finish(base::Nanos now, base::UnixNanos wall);

    const base::CounterSet<ObserverEvent>& counters() const { return counters_; }
    std::size_t transactions() const;
    std::size_t calls() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    base::CounterSet<ObserverEvent> counters_;
};

}  // namespace sbc

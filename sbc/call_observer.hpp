#pragma once
// The one adapter from SIP messages to fraud events (fraud/ knows no SIP): the account and
// callee choice, and a passive observer of both directions of SIP traffic that follows
// transactions and calls and says when a call was attempted, answered and ended, when an
// authentication succeeded or failed, when a registration completed, and which other requests
// were made. Used by `sbc replay`; meant for the live front door and `sbc policy test` too.
//
// The observer makes no decision and sends nothing: it is fed parsed messages with their
// source, destination and time, and calls a FraudEventSink. Its tables have capacities; what
// they cannot hold is evicted (oldest first) and counted.
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/base.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"
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
// The transport name of the fraud vocabulary: "udp", "tcp", "tls".
std::string_view transport_name(bool tcp, bool tls);

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
    // An INVITE (method "INVITE") or another out-of-dialog request (method as sent).
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
    base::Nanos now = 0;
    base::UnixNanos wall = 0;
};

class CallObserver {
  public:
    CallObserver(FraudEventSink& sink, const policy::Numbering* numbering,
                 const ObserverLimits& limits = {});
    ~CallObserver();
    CallObserver(const CallObserver&) = delete;
    CallObserver& operator=(const CallObserver&) = delete;

    // One well-formed message (either direction).
    void observe(const sip::Message& m, const ObservedMessage& at);
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

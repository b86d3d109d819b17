#pragma once
// The front door's parse-and-dispatch, sans I/O: a message the dataplane admitted is parsed
// (sip/), checked (RFC 3261 §8.2: malformed is a counted drop), counted by method, and handed
// on: to the call core (the B2BUA, its registrar and its answers to OPTIONS), or answered
// statelessly (drain, refusals, a stray CANCEL's 481, the placeholder answer when calls are not
// forwarded). What needs the node's policy and fraud engine (trusted sources, scanner
// signatures, per-account limits, verdicts) the owner decides through DispatchHooks; bytes go
// out through a Wire.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/base.hpp"
#include "sbc/signaling/b2bua.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling {

#define SBC_DISPATCH_EVENTS(X)                                               \
    X(datagrams, "SIP datagrams admitted by the dataplane")                  \
    X(stream_messages, "SIP messages framed on TCP/TLS connections")         \
    X(malformed, "malformed messages dropped (see sip.malformed.<reason>)")  \
    X(responses, "SIP responses received and dropped (no transactions yet)") \
    X(requests, "well-formed requests")                                      \
    X(answered, "stateless final responses sent")                            \
    X(answered_403, "403 Forbidden sent for a blocked or banned request")    \
    X(not_answered, "requests not answered (ACK)")                           \
    X(refused_draining, "new INVITEs refused (503) while the node drains")   \
    X(refused_uniform, "blocked requests answered like every user (enumeration resistance)")
SBC_DECLARE_COUNTER_LIST(DispatchEvent, SBC_DISPATCH_EVENTS)

// Counter labels of request methods, indexed by sip::Method; "other" (index 0) counts
// extension methods under one label (the method token is attacker-chosen: no per-name
// counters).
inline constexpr std::string_view kMethodNames[] = {
    "other",     "INVITE", "ACK",     "BYE",  "CANCEL", "OPTIONS", "REGISTER", "PRACK",
    "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER",  "MESSAGE", "UPDATE"};
inline constexpr std::size_t kMethodCount = sizeof kMethodNames / sizeof kMethodNames[0];

// The final response every admitted request gets while calls are not forwarded (never a fake
// 200).
struct PlaceholderAnswer {
    int status = 503;
    std::string reason = "Service Unavailable";
    std::uint32_t retry_after = 60;  // seconds; 0: no Retry-After
};

// Where a message came from, as the owner's listeners know it.
struct Arrival {
    Flow flow;                   // transport, source, connection (TCP/TLS), listener index
    base::Endpoint local;        // the address it was sent to
    bool listener_known = true;  // false: no listener of the owner matches `local`
    Side side = Side::external;  // the listener's realm (external when unknown)
    bool uniform = false;        // the listener answers strangers alike (enumeration resistance)
    base::Nanos now = 0;
};

// What the call core offers the dispatcher (implemented by the program's call core).
class DispatchCore {
  public:
    virtual ~DispatchCore() = default;
    virtual void receive(const sip::Message& m, const Flow& from, Side side, base::Nanos now) = 0;
    // Whether a call in progress has a leg with this Call-ID on `side`.
    virtual bool has_call(Side side, std::string_view call_id) const = 0;
    // Whether REGISTERs go to registrars (they are then scored on their answer).
    virtual bool registrations() const = 0;
};

// The owner's decisions on a request (policy, fraud engine) and its view of what was sent.
class DispatchHooks {
  public:
    virtual ~DispatchHooks() = default;
    // A trusted peer (a trunk) bypasses screening and probe scoring, and its requests are never
    // answered with enumeration resistance.
    virtual bool trusted(const base::IpAddress& source) = 0;
    // A stranger's request, before scoring (scanner signatures, per-account limits); true:
    // refuse it.
    virtual bool screen(const sip::Message& request, const Arrival& a) = 0;
    // The verdict on a request that is scored: allow, flag (with its flag value) or block.
    virtual Admission score(const sip::Message& request, const Arrival& a) = 0;
    // A stateless response the dispatcher sent for `request` (for capture).
    virtual void answered(const sip::Message& request, const Arrival& a,
                          std::string_view response) = 0;
};

class Dispatcher {
  public:
    // What a message was, for the owner's per-realm metrics.
    struct Dispatched {
        enum class Kind : std::uint8_t { malformed, response, request } kind = Kind::malformed;
        int status = 0;          // response
        std::size_t method = 0;  // request: index into kMethodNames
    };

    Dispatcher(Wire& wire, DispatchHooks& hooks) : wire_(wire), hooks_(hooks) {}
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    // The call core requests go to; null: calls are not forwarded (the placeholder answer).
    void set_core(DispatchCore* core) { core_ = core; }
    Dispatched dispatch(std::string_view bytes, const Arrival& a);

    // The admission of the request being dispatched (the call core asks for it when the
    // request reaches its B2BUA).
    const Admission& admission() const { return admission_; }

    // Drain (any thread): while on, new INVITEs get 503 with `retry_after` seconds; requests of
    // calls in progress go on.
    void set_draining(bool on, std::uint32_t retry_after) {
        drain_retry_after_.store(retry_after, std::memory_order_relaxed);
        draining_.store(on, std::memory_order_relaxed);
    }
    bool draining() const { return draining_.load(std::memory_order_relaxed); }

    PlaceholderAnswer& placeholder() { return placeholder_; }
    const PlaceholderAnswer& placeholder() const { return placeholder_; }

    const base::CounterSet<DispatchEvent>& events() const { return events_; }
    const base::CounterSet<sip::Reject>& malformed() const { return malformed_; }
    std::uint64_t requests_of(std::size_t method) const { return by_method_[method]; }
    // `stats` lines: sip.<event>, sip.method.<METHOD>, sip.malformed.<reason> (those seen).
    std::string stats_text() const;

  private:
    void refuse(const sip::Message& m, const Arrival& a);
    void answer(const sip::Message& m, const Arrival& a, int status, std::string_view reason,
                std::uint32_t retry_after);

    Wire& wire_;
    DispatchHooks& hooks_;
    DispatchCore* core_ = nullptr;
    sip::Message msg_;  // reused for every message
    Admission admission_;
    // The request being dispatched gets enumeration resistance: a stranger's out-of-dialog
    // request on a listener that has it, with the call core running. Its refusals then go
    // through the core as a blocked admission (answered as every user is).
    bool uniform_ = false;
    PlaceholderAnswer placeholder_;
    std::atomic<bool> draining_{false};
    std::atomic<std::uint32_t> drain_retry_after_{60};
    base::CounterSet<DispatchEvent> events_;
    base::CounterSet<sip::Reject> malformed_;
    std::uint64_t by_method_[kMethodCount] = {};
};

}  // namespace sbc::signaling

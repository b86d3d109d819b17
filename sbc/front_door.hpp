#pragma once
// The SBC's front door inside `sbc run`: the SIP listeners, opened through the
// DataplaneRuntime so that every datagram passes the ban table and the rate limits first (the
// socket relay's pipeline, or the DPDK fast path before the exception port). What the
// pipeline admits is parsed (sip/), counted, checked against scanner signatures and per-account
// limits, and new INVITEs and REGISTERs are scored by the fraud engine. With calls on (an
// internal listener and a next hop) the rest goes to the call core's B2BUA; otherwise requests
// are answered statelessly with the placeholder final response.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"
#include "sbc/account_limiter.hpp"
#include "sbc/call_core.hpp"
#include "sbc/call_observer.hpp"
#include "sbc/events.hpp"
#include "sbc/hep.hpp"
#include "sbc/metrics.hpp"
#include "sbc/signaling/dispatch.hpp"
#include "sbc/stream_transport.hpp"
#include "sip/sip.hpp"

namespace sbc {

class Daemon;
class DataplaneRuntime;

// The wiring's events; parse and dispatch count theirs in signaling::DispatchEvent (both are
// `sip.` lines in `stats` and `sbc_frontdoor_` metrics).
#define SBC_FRONT_DOOR_EVENTS(X)                                                             \
    X(send_failed, "responses that could not be sent")                                       \
    X(calls_ended, "calls through the B2BUA ended (fed to the fraud engine)")                \
    X(fraud_events, "events scored by the fraud engine (INVITE, REGISTER)")                  \
    X(fraud_auth_events, "authentication outcomes in relayed responses scored")              \
    X(fraud_bans_posted, "fraud bans handed to the dataplane ban table")                     \
    X(fraud_bans_rejected, "fraud bans refused by a full dataplane mailbox")                 \
    X(fraud_ban_drops_fed, "packets dropped by fraud bans, counted in the engine's windows") \
    X(engine_rebuilt, "fraud engines rebuilt for a changed fraud configuration")             \
    X(engine_reconfigured, "changed fraud rules applied in place, the engine's state kept")  \
    X(refused_scanner, "requests refused (403) for a scanner User-Agent ([scanners])")       \
    X(scanner_bans_posted, "scanner bans handed to the dataplane ban table (action ban)")    \
    X(scanner_bans_rejected, "scanner bans refused by a full dataplane mailbox")             \
    X(refused_account_limit, "requests refused (403) by a per-account rate limit")
SBC_DECLARE_COUNTER_LIST(FrontDoorEvent, SBC_FRONT_DOOR_EVENTS)

// The rate-limit class of a request method (the policy's register, invite, other).
policy::TrafficClass limit_class(sip::Method method);
// The [scanners] signature a User-Agent matches ("" and `empty_user_agent`: the empty one),
// or nullopt: no match.
std::optional<std::string_view> scanner_match(const policy::ScannerSignatures& s,
                                              std::string_view user_agent);

// Parse, checks and dispatch are the signaling library's (signaling::Dispatcher); the front door
// answers its hooks with the node's policy and fraud engine. Fraud events reach the engine
// through the CallObserver (the one SIP -> fraud mapping): new INVITEs and REGISTERs from the
// dispatcher, answers, ends and relayed responses from the B2BUA's call hooks.
class FrontDoor final : FraudEventSink, signaling::Wire, signaling::DispatchHooks {
  public:
    // Opens every UDP listener of the node config on the dataplane and every TCP/TLS one on the
    // stream transport's thread (whose connections the dataplane admits first), holds the fraud
    // engine and takes part in policy reloads (as "fraud_engine"), and registers `stats` and
    // `answer` on the control socket. Fails when a listener cannot be opened or the fraud
    // engine refuses the policy.
    static base::Result<std::unique_ptr<FrontDoor>> attach(Daemon& daemon, DataplaneRuntime& rt);
    ~FrontDoor();
    FrontDoor(const FrontDoor&) = delete;
    FrontDoor& operator=(const FrontDoor&) = delete;

    // Signaling thread (DataplaneRuntime): one admitted SIP datagram.
    void on_datagram(const dataplane::PacketMeta& m);
    // Any thread but the dataplane's, before the runtime goes: ends the call core (its calls'
    // relay streams are closed); later requests get the placeholder answer.
    void stop_calls();
    // Dataplane thread: the front door's part of `stats`.
    std::string stats_text() const;
    // Signaling thread: every metric of the node (sbc/metrics_sources.cpp).
    void write_metrics(MetricsWriter& w) const;
    // Signaling thread: bans that entered or left the ban table since the last call become
    // security events (every origin: rate limit, signaling, fraud, control; expiry).
    void watch_bans();
    // Any thread: the fraud engine's fixed tables, for `status` (key=value lines).
    std::string memory_status() const;
    // The next hops' health, one line each (runs on the dataplane thread).
    std::string next_hops_status();

    // Drain (any thread): while on, new INVITEs get 503 with `retry_after` seconds; requests
    // of calls in progress go on.
    void set_draining(bool on, std::uint32_t retry_after);
    // Any thread (run on the dataplane thread): calls in progress; ends them all (BYE both
    // legs, CANCEL/480 before answer) and returns how many.
    std::size_t active_calls();
    std::size_t end_all_calls();

  private:
    FrontDoor(Daemon& daemon, DataplaneRuntime& rt);
    // A policy reload in two steps. prepare (the reloading thread) compiles the new fraud
    // engine aside, its tables allocated there, or refuses the policy with the engine's
    // reasons; the running engine is not touched. commit (the dataplane thread) installs it:
    // the running engine's state moves over when its layout is unchanged, else the new engine
    // starts afresh; neither can fail.
    policy::PolicyChange prepare_policy(const std::shared_ptr<const policy::Policy>& p);
    // Returns the engine it replaced, for the caller to free off the dataplane thread.
    std::unique_ptr<fraud::Engine> commit_policy(std::shared_ptr<const policy::Policy> p,
                                                 std::unique_ptr<fraud::Engine> next);
    // DispatchHooks: the policy's trusted sources, [scanners] and per-account limits, the
    // fraud engine's verdict, HEP capture of the stateless answers.
    bool trusted(const base::IpAddress& source) override;
    bool screen(const sip::Message& m, const signaling::Arrival& a) override;
    signaling::Admission score(const sip::Message& m, const signaling::Arrival& a) override;
    void answered(const sip::Message& m, const signaling::Arrival& a,
                  std::string_view response) override;
    // Wire: the dispatcher's stateless answers, on the listener (and connection) the request
    // came on.
    bool send(const signaling::Flow& to, std::string_view bytes) override;
    // A verdict on an event from `source`: counted, and a ban posted to the dataplane.
    void apply_verdict(const fraud::Verdict& v, const base::IpAddress& source, base::Nanos now,
                       std::string_view account = {});
    // FraudEventSink: the observer's events, into the engine (verdicts in verdict_).
    void attempt(const fraud::CallAttempt& a) override;
    void answered(const fraud::CallAnswered& a) override;
    void ended(const fraud::CallEnded& e) override;
    void auth(const fraud::AuthResult& a) override;
    void registration(const fraud::Registration& r) override;
    // [scanners] and per-account limits, before scoring; true: refuse.
    bool refuse_scanner(const sip::Message& m, const signaling::Arrival& a);
    bool refuse_over_account_limit(const sip::Message& m, const signaling::Arrival& a);
    // UDP from the listener's socket, or TCP/TLS on `connection` (through the transport).
    bool send_to(std::size_t listener, const base::Endpoint& to, std::string_view bytes,
                 std::uint64_t connection = 0);
    // The call core's sends: UDP from the flow's listener; TCP/TLS on the flow's connection, or
    // (connection 0) on the SBC's own connection to the flow's address, opened if needed.
    bool send_flow(const signaling::Flow& flow, std::string_view bytes);
    // Dataplane thread, after every poll: the stream transport's admission requests and
    // messages, then the call core's timers.
    void on_tick(base::Nanos now);
    void drain_streams();
    signaling::Flow flow_of(const dataplane::PacketMeta& meta, std::size_t listener) const;
    std::size_t listener_of(const dataplane::PacketMeta& meta) const;  // size(): none
    static std::string flag_text(const fraud::Verdict& v);
    void call_answered(const signaling::CallInfo& c);
    void call_ended(const signaling::CallInfo& c, signaling::CallEnd how);
    void response_relayed(const signaling::CallInfo& c, int status);
    // A REGISTER's outcome into the engine; true: its verdict refuses the request.
    bool register_answered(const sip::Message& m, const signaling::Flow& from, int status);
    void apply_topology(signaling::B2buaConfig& b) const;
    std::string answer_command(std::string_view args);  // dataplane thread
    std::string call_command(std::string_view args);    // dataplane thread

    Daemon& daemon_;
    DataplaneRuntime& rt_;
    struct Listener {
        base::Endpoint local;
        int fd = -1;  // UDP; TCP/TLS sockets are the stream transport's
        signaling::Side side = signaling::Side::external;
        signaling::Transport transport = signaling::Transport::udp;
        bool uniform = false;  // enumeration resistance toward strangers
    };
    std::vector<Listener> listeners_;
    signaling::Dispatcher dispatcher_{*this, *this};
    std::shared_ptr<const policy::Policy> policy_;
    std::unique_ptr<fraud::Engine> engine_;
    CallObserver observer_;   // its sink is this front door
    fraud::Verdict verdict_;  // of the last event the observer handed over
    fraud::Action register_action_ = fraud::Action::allow;  // worst of a REGISTER's events
    std::string engine_fingerprint_;  // of engine_'s config; read and written by reloads only
    std::shared_ptr<const fraud::GeoIp> geoip_;  // the node's database, opened once
    base::CounterSet<FrontDoorEvent> events_;
    base::CounterSet<fraud::Action> verdicts_;
    SignalingMetrics metrics_;                             // per realm, setup latency, rules
    std::map<std::string, dataplane::BanInfo> bans_seen_;  // watch_bans()
    void verdict_event(const fraud::Verdict& v, const base::IpAddress& source);
    void security_event(SecurityEventKind kind,
                        std::vector<std::pair<std::string_view, std::string>> fields);
    // 64k accounts x 3 classes share 2 MiB whatever the traffic (see account_limiter.hpp).
    static constexpr std::uint32_t kAccountLimiterCapacity = 65536;
    AccountLimiter account_limits_;
    // HEP export of the call core's messages ([hep]); outlives core_, which points at it.
    std::unique_ptr<HepExporter> hep_;
    // The signaling core; null when calls are not forwarded (no next hop or internal listener).
    std::unique_ptr<CallCore> core_;
    // Fraud bans whose running calls end at the next tick ([fraud] end_calls_on_ban).
    std::vector<std::pair<base::IpAddress, std::string>> banned_calls_;
    // The message being handled came on this TCP/TLS connection (else: a UDP datagram).
    struct StreamSource {
        bool active = false;
        std::uint64_t connection = 0;
        signaling::Transport transport = signaling::Transport::udp;
        std::size_t listener = 0;
    } stream_;
    std::vector<StreamTransport::Inbound> stream_batch_;
    // TLS next hops with a server_name: the name to verify (and send as SNI) per address.
    std::vector<std::pair<base::Endpoint, std::string>> tls_names_;
    // Last member: its thread stops first.
    std::unique_ptr<StreamTransport> streams_;
    // The running engine's tables (sized by max_tracked_keys) and how much of them was
    // committed when it was built: written by reloads, read by `status`.
    std::atomic<std::size_t> fraud_table_bytes_{0};
    std::atomic<std::size_t> fraud_committed_bytes_{0};
    std::atomic<std::uint64_t> fraud_max_tracked_keys_{0};
    // Free heap pages handed back to the kernel this often (signaling thread's tick).
    static constexpr base::Nanos kTrimInterval = 30 * base::kNanosPerSecond;
    base::Nanos last_trim_ = 0;
    // Ban feedback: the fraud bans this front door posted (prefix -> packets the dataplane had
    // dropped on it at the last look). Once a second while any is live, the drops since are
    // handed to the engine (fraud::Engine::on_banned_drops), so that the source prefix's
    // windows keep counting an attack the fast path now drops.
    void feed_ban_drops(base::Nanos now);
    static constexpr std::size_t kMaxFedBans = 4096;
    static constexpr base::Nanos kBanFeedbackInterval = base::kNanosPerSecond;
    struct FedBan {
        std::uint64_t hits = 0;  // dropped at the last look
        base::Nanos posted = 0;  // until it shows in the table (the mailbox may be behind)
    };
    std::unordered_map<std::string, FedBan> fed_bans_;
    base::Nanos last_ban_feedback_ = 0;
};

}  // namespace sbc

#pragma once
// `sbc replay`: captures run offline through the live engine (dataplane pipeline: bans, rate
// limits; the call observer; the fraud engine) on virtual time taken from the packets'
// timestamps, and the reports made of it (terminal, JSON, HTML, per-call policy comparison).
//
// Same capture + same policy => byte-identical reports: nothing here reads the wall clock
// except the progress bar, and every report is built from ordered containers.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "dataplane/capture.hpp"
#include "dataplane/dataplane.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"
#include "sbc/call_observer.hpp"

namespace sbc {

#define SBC_REPLAY_EVENTS(X)                                                                   \
    X(packets, "capture records")                                                              \
    X(inbound, "packets toward the SBC (run through the pipeline)")                            \
    X(outbound, "packets from the SBC side (observed, not filtered)")                          \
    X(passed, "packets the SBC would have let through")                                        \
    X(dropped, "packets the dataplane would have dropped (see drops)")                         \
    X(blocked_requests, "SIP requests the fraud verdict would have refused (block/ban)")       \
    X(sip_messages, "SIP messages parsed")                                                     \
    X(sip_malformed, "SIP payloads that did not parse")                                        \
    X(sip_over_tcp, "SIP messages framed from TCP streams")                                    \
    X(sip_over_hep, "SIP messages from HEP")                                                   \
    X(tcp_framing_errors, "TCP streams whose SIP framing failed (rest of the stream skipped)") \
    X(tcp_resync, "TCP streams restarted after a gap in the capture")                          \
    X(media_untracked, "media packets passed without stream tracking (no SDP replay)")         \
    X(fraud_bans, "fraud bans added to the dataplane ban table")
SBC_DECLARE_COUNTER_LIST(ReplayEvent, SBC_REPLAY_EVENTS)

struct ReplayOptions {
    std::vector<std::string> captures;
    std::string pcap_out;  // "" = none
    // Called every few thousand packets with (bytes read, total bytes, packets).
    std::function<void(std::uint64_t, std::uint64_t, std::uint64_t)> progress;
};

// One call (an INVITE dialog) as the capture shows it and as the policy judged it.
struct CallRecord {
    std::string call_id, account, caller, callee, source, transport, user_agent;
    base::UnixNanos start = 0, answered = 0, ended = 0;
    std::optional<fraud::Outcome> end;  // how it ended (none: no end seen)
    fraud::Action action = fraud::Action::allow;
    double score = 0;
    std::vector<std::string> reasons;       // rule ids (enforced and observe)
    std::vector<std::string> reason_texts;  // "rule: feature[key] = v >= t -> +w"
    std::string outcome() const;            // answered, failed, cancelled, blocked, ...
};

struct MinuteBucket {
    std::uint64_t attempts = 0, flags = 0, blocks = 0, bans = 0;
};

struct ReplayResult {
    base::CounterSet<ReplayEvent> events;
    base::CounterSet<dataplane::CaptureEvent> capture;
    base::CounterSet<dataplane::DropReason> malformed;
    dataplane::Counters pipeline;
    base::CounterSet<ObserverEvent> observer;
    std::vector<dataplane::CaptureFileStatus> files;
    base::UnixNanos first_time = 0, last_time = 0;
    base::UnixNanos first_detection = 0, last_detection = 0;  // first/last non-allow verdict
    std::vector<CallRecord> calls;                            // in order of first attempt
    std::vector<std::string> security_events;                 // live event JSON lines
    std::map<std::int64_t, MinuteBucket> timeline;            // minute since epoch
    std::map<std::string, std::uint64_t> source_attempts;     // requests per source address
    std::map<std::string, std::uint64_t> flagged_accounts;    // account -> non-allow verdicts
    std::map<std::string, std::uint64_t> blocked_sources;     // source -> block/ban verdicts
    std::map<std::string, std::uint64_t> rules_fired;
    std::array<std::uint64_t, fraud::kActionCount> verdicts{};
    std::vector<std::pair<std::string, base::UnixNanos>> bans;  // source, time
    std::string error;                                          // fatal (no capture opened)
};

// Runs the captures through the engine built from `policy` and `node` (null: defaults: every
// address ours, SIP on 5060/udp and 5060-5061/tcp, media 30000-39999).
ReplayResult run_replay(const policy::Policy& policy, const policy::NodeConfig* node,
                        const ReplayOptions& options);

std::string replay_text(const ReplayResult& r);  // the terminal summary
std::string replay_json(const ReplayResult& r);
std::string replay_html(const ReplayResult& r, const std::string& title);

// Calls whose verdict differs between two runs of the same captures, and per-rule changes.
struct CallDiff {
    std::string call_id;
    const CallRecord* a = nullptr;  // null: not seen under that policy (dropped earlier)
    const CallRecord* b = nullptr;
};
struct ReplayComparison {
    std::vector<CallDiff> differing;
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> rule_changes;  // -a, +b
};
ReplayComparison compare_replays(const ReplayResult& a, const ReplayResult& b);
std::string comparison_text(const ReplayComparison& c);
std::string comparison_json(const ReplayComparison& c);

}  // namespace sbc

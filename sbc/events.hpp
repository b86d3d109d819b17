#pragma once
// Security events of `sbc run` (flags, blocks, bans and unbans, scanner hits, auth-failure
// bursts, policy reloads): one JSON object per event, appended to a file with rotation
// ([events] file, max_bytes, max_files) and optionally POSTed to a webhook ([events]
// webhook_url) with retries and exponential backoff.
//
// emit() never blocks its caller on I/O: it appends the line to a bounded queue (a mutex held
// for a push) and returns; a writer thread writes the file, another posts to the webhook. Full
// queues drop the event and count it.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.hpp"
#include "policy/policy.hpp"

namespace sbc {

class MetricsWriter;

#define SBC_SECURITY_EVENT_KINDS(X)                                               \
    X(flag, "a fraud verdict flagged a call or registration (forwarded, marked)") \
    X(block, "a fraud verdict blocked a request (403)")                           \
    X(ban, "a ban entered the dataplane's ban table (any origin)")                \
    X(unban, "a ban left the ban table (expired or removed)")                     \
    X(scanner, "a request refused for a scanner User-Agent")                      \
    X(auth_failure_burst, "a fraud rule on authentication failures fired")        \
    X(policy_reload, "a policy reload, successful or not")
SBC_DECLARE_COUNTER_LIST(SecurityEventKind, SBC_SECURITY_EVENT_KINDS)

#define SBC_SECURITY_EVENT_COUNTERS(X)                                                 \
    X(emitted, "security events emitted")                                              \
    X(dropped_queue_full, "events dropped: the file writer's queue was full")          \
    X(written, "events written to the events file")                                    \
    X(file_errors, "events that could not be written to the file")                     \
    X(webhook_delivered, "events the webhook accepted (2xx)")                          \
    X(webhook_retries, "webhook attempts retried after a failure or a non-2xx answer") \
    X(webhook_failed, "events given up after every retry")                             \
    X(webhook_dropped_queue_full, "events dropped: the webhook queue was full")
SBC_DECLARE_COUNTER_LIST(SecurityEventCounter, SBC_SECURITY_EVENT_COUNTERS)

class SecurityEvents {
  public:
    // Opens the file (its directory must exist) and starts the threads. Nothing configured:
    // events are still counted (and logged at info).
    static base::Result<std::unique_ptr<SecurityEvents>> start(
        const policy::NodeConfig::Events& config, std::string node_name);
    ~SecurityEvents();  // delivers what is queued to the file; the webhook gets up to 1 s more
    SecurityEvents(const SecurityEvents&) = delete;
    SecurityEvents& operator=(const SecurityEvents&) = delete;

    // Any thread. `fields` are added to {"ts","node","kind"} as JSON strings, or as numbers
    // when the value is given with number().
    using Fields = std::vector<std::pair<std::string_view, std::string>>;
    void emit(SecurityEventKind kind, base::UnixNanos wall, const Fields& fields);
    static std::string number(double v);  // marks a field value as a JSON number

    // The counters (any thread): for the metrics page.
    base::CounterSet<SecurityEventCounter> counters() const;
    base::CounterSet<SecurityEventKind> kinds() const;
    void write_metrics(MetricsWriter& w) const;

    // The JSON line of one event (tests, and the file): no trailing newline.
    static std::string format(SecurityEventKind kind, base::UnixNanos wall, std::string_view node,
                              const Fields& fields);

    struct Impl;

  private:
    SecurityEvents() = default;
    std::unique_ptr<Impl> impl_;
};

// The daemon's log sinks: text on stderr at `level`, JSON lines to `file` at `file_level`
// (when set). Returns an error when the file cannot be opened.
base::Result<void> setup_logging(const policy::NodeConfig& node);

}  // namespace sbc

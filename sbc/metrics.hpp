#pragma once
// Prometheus metrics of `sbc run`.
//
// The signaling thread (which owns the front door, the call core and, on the socket backend,
// the pipeline) writes every metric into a MetricsWriter about once a second and publishes the
// rendered page as an immutable snapshot; the HTTP thread only ever serves the last snapshot.
// It never reads live state and never takes a lock the dataplane or signaling waits on.
//
// Counter lists (SBC_DECLARE_COUNTER_LIST) are exported generically, with their descriptions as
// help text, in one of two shapes:
//   each(module, set)               one counter per entry: sbc_<module>_<entry>_total
//   by_label(family, label, set)    one counter family, the entry name as the label value
// Units follow Prometheus' naming: counts end in _total, durations are _seconds.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"

namespace sbc {

class Daemon;
class DataplaneRuntime;
class FrontDoor;

namespace signaling {
struct CallInfo;
}
namespace fraud {
struct Verdict;
}

using MetricLabels = std::vector<std::pair<std::string_view, std::string>>;

// A fixed-bucket histogram (cumulative, Prometheus' `le` buckets). Single writer.
class Histogram {
  public:
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double v);
    const std::vector<double>& bounds() const { return bounds_; }
    const std::vector<std::uint64_t>& buckets() const { return counts_; }  // not cumulative
    std::uint64_t count() const { return count_; }
    double sum() const { return sum_; }

  private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> counts_;  // bounds_.size() + 1 (+Inf last)
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// Builds one exposition page (text format 0.0.4). Families are written whole, in order: a
// family's HELP and TYPE once, then its samples.
class MetricsWriter {
  public:
    // Starts a family; samples follow with sample(). type: counter | gauge | histogram.
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, const MetricLabels& labels, double value);
    void counter(std::string_view name, std::string_view help, std::uint64_t value) {
        family(name, "counter", help);
        sample(name, {}, static_cast<double>(value));
    }
    void gauge(std::string_view name, std::string_view help, double value) {
        family(name, "gauge", help);
        sample(name, {}, value);
    }
    // The _bucket, _sum and _count samples of one histogram (family() first).
    void histogram(std::string_view name, const MetricLabels& labels, const Histogram& h);

    template <class Enum>
    void each(std::string_view module, const base::CounterSet<Enum>& set,
              std::span<const std::string_view> names,
              std::span<const std::string_view> descriptions) {
        for (std::size_t i = 0; i < set.kSize; ++i) {
            const std::string n =
                "sbc_" + std::string(module) + "_" + std::string(names[i]) + "_total";
            counter(n, descriptions[i], set.values[i]);
        }
    }
    template <class Enum>
    void by_label(std::string_view family_name, std::string_view help, std::string_view label,
                  const base::CounterSet<Enum>& set, std::span<const std::string_view> names,
                  const MetricLabels& extra = {}, bool start = true) {
        if (start) family(family_name, "counter", help);
        for (std::size_t i = 0; i < set.kSize; ++i) {
            MetricLabels l = extra;
            l.emplace_back(label, std::string(names[i]));
            sample(family_name, l, static_cast<double>(set.values[i]));
        }
    }

    const std::string& text() const { return out_; }
    std::string take() { return std::move(out_); }

  private:
    std::string out_;
};

// Signaling counters the front door keeps for the metrics only (signaling thread).
struct SignalingMetrics {
    static constexpr std::size_t kRealms = 2;  // signaling::Side: external, internal
    static constexpr std::size_t kMethods = 16;
    static constexpr std::size_t kClasses = 6;  // 1xx..6xx
    std::array<std::array<std::uint64_t, kMethods>, kRealms> requests{};
    // [realm][direction: 0 received, 1 sent][class]
    std::array<std::array<std::array<std::uint64_t, kClasses>, 2>, kRealms> responses{};
    Histogram setup_latency{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
    // Fraud verdicts by the rule that fired (rule ids are the policy's: bounded by it).
    std::vector<std::pair<std::string, std::uint64_t>> verdict_rules;
    static constexpr std::size_t kMaxRules = 256;

    void request(std::size_t realm, std::size_t method_index);
    void response(std::size_t realm, bool sent, int status);
    // A response about to be sent (bytes of a serialized message): counted when it is one.
    void sent(std::size_t realm, std::string_view bytes);
    void answered(const signaling::CallInfo& c);
    void verdict(const fraud::Verdict& v);
};

// Relay quality: a histogram of each stream leg's loss and jitter when its stream closes.
struct RelayQuality {
    Histogram loss_ratio{{0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1}};
    Histogram jitter_seconds{{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32}};
    std::uint64_t legs = 0;
    void observe(const dataplane::StreamStats& s);
};

// The dataplane's part, the same for every backend: packets by event and drop reason, rate-limit
// drops by class, bans issued and active by origin, relay streams active.
void write_dataplane_metrics(MetricsWriter& w, std::string_view backend,
                             const dataplane::Counters& c,
                             const std::vector<dataplane::BanInfo>& active_bans,
                             std::size_t streams_active);

// The published page, immutable.
struct MetricsPage {
    std::string text;
    base::Nanos built_at = 0;
    std::uint64_t sequence = 0;
};

// Holds the last page; the publishing side stores, the HTTP thread loads (lock-free).
class MetricsBoard {
  public:
    void publish(std::string text, base::Nanos now);
    std::shared_ptr<const MetricsPage> current() const { return page_.load(); }

  private:
    std::atomic<std::shared_ptr<const MetricsPage>> page_;
    std::uint64_t sequence_ = 0;  // publishing side only
};

// The `[metrics]` listener: an HTTP server on its own thread serving /metrics from the board,
// and a publisher thread that asks the signaling thread for a fresh page every `interval`
// (without waiting for it: a stalled signaling thread leaves the last page served, with
// sbc_metrics_page_age_seconds growing). The same periodic task runs the front door's ban
// watch (security events); without [metrics] enabled only that runs and nothing listens.
class MetricsServer {
  public:
    static constexpr base::Nanos kInterval = 500 * base::kNanosPerMilli;
    static base::Result<std::unique_ptr<MetricsServer>> start(Daemon& daemon, DataplaneRuntime& rt,
                                                              FrontDoor& front_door);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;
    struct Impl;

  private:
    MetricsServer() = default;
    std::shared_ptr<Impl> impl_;
};

}  // namespace sbc

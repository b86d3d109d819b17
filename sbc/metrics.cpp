#include "sbc/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

// cpp-httplib stays in this file and sbc/events.cpp (see docs/operations.md).
#include <httplib.h>
#include <spdlog/spdlog.h>

#include "fraud/fraud.hpp"
#include "sbc/daemon.hpp"
#include "sbc/dataplane_wiring.hpp"
#include "sbc/events.hpp"
#include "sbc/front_door.hpp"
#include "sbc/signaling/b2bua.hpp"

namespace sbc {

// ---------------------------------------------------------------------------------------------
Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    ++counts_[static_cast<std::size_t>(it - bounds_.begin())];
    ++count_;
    sum_ += v;
}

// ---------------------------------------------------------------------------------------------
namespace {

void append_number(std::string& out, double v) {
    char buf[40];
    if (v == static_cast<double>(static_cast<std::int64_t>(v)) && v < 9e15 && v > -9e15)
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else
        std::snprintf(buf, sizeof buf, "%.9g", v);
    out += buf;
}

// Text format 0.0.4: label values escape backslash, double quote and newline.
void append_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

// HELP text escapes backslash and newline.
void append_help(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

void append_labels(std::string& out, const MetricLabels& labels) {
    if (labels.empty()) return;
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) out += ',';
        first = false;
        out += k;
        out += "=\"";
        append_label_value(out, v);
        out += '"';
    }
    out += '}';
}

}  // namespace

void MetricsWriter::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    append_help(out_, help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
}

void MetricsWriter::sample(std::string_view name, const MetricLabels& labels, double value) {
    out_ += name;
    append_labels(out_, labels);
    out_ += ' ';
    append_number(out_, value);
    out_ += '\n';
}

void MetricsWriter::histogram(std::string_view name, const MetricLabels& labels,
                              const Histogram& h) {
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
        cumulative += h.buckets()[i];
        MetricLabels l = labels;
        std::string le;
        if (i == h.bounds().size()) {
            le = "+Inf";
        } else {
            append_number(le, h.bounds()[i]);
        }
        l.emplace_back("le", std::move(le));
        sample(bucket, l, static_cast<double>(cumulative));
    }
    sample(std::string(name) + "_sum", labels, h.sum());
    sample(std::string(name) + "_count", labels, static_cast<double>(h.count()));
}

// ---------------------------------------------------------------------------------------------
void SignalingMetrics::request(std::size_t realm, std::size_t method_index) {
    if (realm < kRealms) ++requests[realm][std::min(method_index, kMethods - 1)];
}

void SignalingMetrics::response(std::size_t realm, bool is_sent, int status) {
    if (realm >= kRealms || status < 100 || status > 699) return;
    ++responses[realm][is_sent ? 1 : 0][static_cast<std::size_t>(status / 100 - 1)];
}

void SignalingMetrics::sent(std::size_t realm, std::string_view bytes) {
    // "SIP/2.0 NNN ": a response; anything else is a request (counted where it is received).
    if (bytes.size() < 12 || bytes.substr(0, 8) != "SIP/2.0 ") return;
    int status = 0;
    for (std::size_t i = 8; i < 11; ++i) {
        if (bytes[i] < '0' || bytes[i] > '9') return;
        status = status * 10 + (bytes[i] - '0');
    }
    response(realm, true, status);
}

void SignalingMetrics::answered(const signaling::CallInfo& c) {
    if (c.answered >= c.started && c.started != 0)
        setup_latency.observe(static_cast<double>(c.answered - c.started) / 1e9);
}

void SignalingMetrics::verdict(const fraud::Verdict& v) {
    for (std::size_t i = 0; i < v.reason_count; ++i) {
        const auto id = v.reasons[i].rule_id;
        auto it = std::find_if(verdict_rules.begin(), verdict_rules.end(),
                               [&](const auto& r) { return r.first == id; });
        if (it != verdict_rules.end()) {
            ++it->second;
        } else if (verdict_rules.size() < kMaxRules) {
            verdict_rules.emplace_back(std::string(id), 1);
        } else {
            ++verdict_rules.back().second;  // "other": the last slot absorbs the overflow
            verdict_rules.back().first = "other";
        }
    }
}

// ---------------------------------------------------------------------------------------------
void MetricsBoard::publish(std::string text, base::Nanos now) {
    auto page = std::make_shared<MetricsPage>();
    page->text = std::move(text);
    page->built_at = now;
    page->sequence = ++sequence_;
    page_.store(std::move(page));
}

// ---------------------------------------------------------------------------------------------
struct MetricsServer::Impl {
    Daemon& daemon;
    DataplaneRuntime& rt;
    FrontDoor& front_door;
    MetricsBoard board;
    base::SystemClock clock;
    httplib::Server http;
    std::thread http_thread, publisher;
    std::mutex mu;  // the publisher's sleep only
    std::condition_variable cv;
    bool stopping = false;
    std::atomic<bool> in_flight{false};
    std::atomic<std::uint64_t> scrapes{0};
    std::atomic<std::uint64_t> publish_skipped{0};
    std::weak_ptr<Impl> self;

    Impl(Daemon& d, DataplaneRuntime& r, FrontDoor& f) : daemon(d), rt(r), front_door(f) {}

    bool serving = false;  // [metrics] enabled

    // Signaling thread: the ban watch, then the whole page.
    void build() {
        front_door.watch_bans();
        if (!serving) return;
        MetricsWriter w;
        front_door.write_metrics(w);
        if (auto* ev = daemon.security_events()) ev->write_metrics(w);
        const auto st = daemon.policies().status();
        w.gauge("sbc_policy_version", "version of the policy in force (1 = first load)",
                static_cast<double>(st.version));
        w.gauge("sbc_policy_loaded_timestamp_seconds",
                "when the policy in force was installed (Unix time)",
                static_cast<double>(st.loaded_at) / 1e9);
        w.family("sbc_policy_reloads_total", "counter", "policy reloads by result");
        w.sample("sbc_policy_reloads_total", {{"result", "ok"}},
                 static_cast<double>(st.reloads_ok));
        w.sample("sbc_policy_reloads_total", {{"result", "failed"}},
                 static_cast<double>(st.reloads_failed));
        w.gauge("sbc_policy_last_reload_success",
                "1 when the last reload (or the first load) succeeded, 0 when it failed or was "
                "refused",
                st.last_reload_ok ? 1 : 0);
        w.gauge("sbc_policy_last_reload_timestamp_seconds",
                "when the last reload was tried (Unix time; 0: never)",
                static_cast<double>(st.last_reload_at) / 1e9);
        w.counter("sbc_metrics_publish_skipped_total",
                  "page refreshes skipped because the signaling thread had not built the last one",
                  publish_skipped.load(std::memory_order_relaxed));
        board.publish(w.take(), clock.monotonic());
    }

    void publish_loop() {
        std::unique_lock lock(mu);
        while (!stopping) {
            if (!in_flight.exchange(true)) {
                // Not waited for: the future is dropped; the task publishes when it runs.
                // The task holds the state: it may run after the server is gone (queued tasks
                // run when the signaling thread stops, while the front door is still alive).
                (void)rt.post([self = self.lock()] {
                    if (!self) return std::string();
                    self->build();
                    self->in_flight = false;
                    return std::string();
                });
            } else {
                publish_skipped.fetch_add(1, std::memory_order_relaxed);
            }
            cv.wait_for(lock, std::chrono::nanoseconds(kInterval), [this] { return stopping; });
        }
    }

    void serve(const httplib::Request&, httplib::Response& res) {
        scrapes.fetch_add(1, std::memory_order_relaxed);
        const auto page = board.current();
        if (!page) {
            res.status = 503;
            res.set_content("no metrics published yet\n", "text/plain");
            return;
        }
        std::string body = page->text;
        MetricsWriter w;
        w.gauge("sbc_metrics_page_age_seconds",
                "age of the published metrics (the signaling thread refreshes them every 0.5 s)",
                static_cast<double>(clock.monotonic() - page->built_at) / 1e9);
        w.counter("sbc_metrics_scrapes_total", "requests for /metrics served",
                  scrapes.load(std::memory_order_relaxed));
        body += w.text();
        res.set_content(std::move(body), "text/plain; version=0.0.4; charset=utf-8");
    }
};

base::Result<std::unique_ptr<MetricsServer>> MetricsServer::start(Daemon& daemon,
                                                                  DataplaneRuntime& rt,
                                                                  FrontDoor& front_door) {
    std::unique_ptr<MetricsServer> s(new MetricsServer());
    s->impl_ = std::make_shared<Impl>(daemon, rt, front_door);
    s->impl_->self = s->impl_;
    auto* impl = s->impl_.get();
    const auto& listen = daemon.config().metrics_listen;
    impl->serving = daemon.config().metrics_enabled;
    if (!impl->serving) {
        impl->publisher = std::thread([impl] { impl->publish_loop(); });
        return s;
    }
    impl->http.new_task_queue = [] { return new httplib::ThreadPool(1); };
    impl->http.set_read_timeout(5, 0);
    impl->http.set_write_timeout(5, 0);
    impl->http.set_keep_alive_max_count(10);
    impl->http.Get("/metrics", [impl](const httplib::Request& req, httplib::Response& res) {
        impl->serve(req, res);
    });
    impl->http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (res.status == 404) res.set_content("not found: try /metrics\n", "text/plain");
    });
    if (!impl->http.bind_to_port(listen.addr.to_string(), listen.port))
        return base::make_error("[metrics] cannot listen on " + listen.to_string() +
                                " (address in use or not local)");
    impl->http_thread = std::thread([impl] { impl->http.listen_after_bind(); });
    impl->publisher = std::thread([impl] { impl->publish_loop(); });
    spdlog::info("metrics: http://{}/metrics", listen.to_string());
    return s;
}

MetricsServer::~MetricsServer() {
    if (!impl_) return;
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->publisher.joinable()) impl_->publisher.join();
    if (impl_->http_thread.joinable()) {
        impl_->http.stop();
        impl_->http_thread.join();
    }
}

}  // namespace sbc

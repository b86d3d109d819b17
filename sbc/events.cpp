#include "sbc/events.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

// cpp-httplib stays in this file and sbc/metrics.cpp (see docs/operations.md).
#include <httplib.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "sbc/metrics.hpp"

namespace sbc {

namespace {

constexpr char kNumberMark = '\x01';
constexpr std::size_t kFileQueue = 4096;

void append_json_string(std::string& out, std::string_view s) {
    // nlohmann-json's escaping (the project's JSON library); bytes that are not UTF-8 become
    // U+FFFD so that every line stays valid JSON.
    out += nlohmann::json(std::string(s))
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string utc_time(std::int64_t unix_nanos) {
    const std::time_t secs = static_cast<std::time_t>(unix_nanos / 1'000'000'000);
    const long millis = static_cast<long>((unix_nanos / 1'000'000) % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03ldZ", millis);
    return buf;
}

// One JSON object per log line: {"ts","level","msg"}.
class JsonLineFormatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch())
                .count();
        std::string line = "{\"ts\":\"" + utc_time(ns) + "\",\"level\":";
        const auto lv = spdlog::level::to_string_view(msg.level);
        append_json_string(line, std::string_view(lv.data(), lv.size()));
        line += ",\"logger\":";
        append_json_string(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
        line += ",\"msg\":";
        append_json_string(line, std::string_view(msg.payload.data(), msg.payload.size()));
        line += "}\n";
        dest.append(line.data(), line.data() + line.size());
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonLineFormatter>();
    }
};

spdlog::level::level_enum level_of(const std::string& name) {
    return spdlog::level::from_str(name == "warn" ? "warning" : name);
}

struct Url {
    std::string host;
    int port = 80;
    std::string path = "/";
};

base::Result<Url> parse_http_url(std::string_view u) {
    if (u.rfind("http://", 0) != 0) return base::make_error("webhook URL must start with http://");
    u.remove_prefix(7);
    Url out;
    const auto slash = u.find('/');
    std::string_view hostport = u.substr(0, slash);
    if (slash != std::string_view::npos) out.path = std::string(u.substr(slash));
    const auto colon = hostport.rfind(':');
    if (colon != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
        out.host = std::string(hostport.substr(0, colon));
        try {
            out.port = std::stoi(std::string(hostport.substr(colon + 1)));
        } catch (...) {
            return base::make_error("webhook URL has a bad port");
        }
    } else {
        out.host = std::string(hostport);
    }
    if (out.host.empty() || out.port <= 0 || out.port > 65535)
        return base::make_error("webhook URL has no host or a bad port");
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
struct SecurityEvents::Impl {
    policy::NodeConfig::Events config;
    std::string node;
    std::shared_ptr<spdlog::logger> file;  // pattern "%v", rotating
    Url url;
    bool webhook = false;

    std::array<std::atomic<std::uint64_t>, kSecurityEventCounterCount> counters{};
    std::array<std::atomic<std::uint64_t>, kSecurityEventKindCount> kinds{};
    void count(SecurityEventCounter c, std::uint64_t n = 1) {
        counters[static_cast<std::size_t>(c)].fetch_add(n, std::memory_order_relaxed);
    }

    std::mutex mu;  // both queues; held for a push or a swap only
    std::condition_variable file_cv, hook_cv;
    std::deque<std::string> file_queue, hook_queue;
    bool stopping = false;
    std::thread file_thread, hook_thread;

    void file_loop() {
        std::deque<std::string> batch;
        for (;;) {
            {
                std::unique_lock lock(mu);
                file_cv.wait(lock, [this] { return stopping || !file_queue.empty(); });
                batch.swap(file_queue);
                if (batch.empty() && stopping) return;
            }
            for (const auto& line : batch) {
                try {
                    file->info("{}", line);
                    count(SecurityEventCounter::written);
                } catch (...) {
                    count(SecurityEventCounter::file_errors);
                }
            }
            file->flush();
            batch.clear();
        }
    }

    // Waits `d` unless stopping; false when stopping.
    bool pause(std::chrono::milliseconds d) {
        std::unique_lock lock(mu);
        return !hook_cv.wait_for(lock, d, [this] { return stopping; });
    }

    void hook_loop() {
        httplib::Client client(url.host, url.port);
        const auto timeout_ms = config.webhook_timeout / base::kNanosPerMilli;
        client.set_connection_timeout(std::chrono::milliseconds(timeout_ms));
        client.set_read_timeout(std::chrono::milliseconds(timeout_ms));
        client.set_write_timeout(std::chrono::milliseconds(timeout_ms));
        client.set_keep_alive(true);
        for (;;) {
            std::string body;
            {
                std::unique_lock lock(mu);
                hook_cv.wait(lock, [this] { return stopping || !hook_queue.empty(); });
                if (stopping) return;  // what is left is in the file
                body = std::move(hook_queue.front());
                hook_queue.pop_front();
            }
            auto backoff = std::chrono::milliseconds(config.webhook_backoff / base::kNanosPerMilli);
            bool delivered = false;
            for (std::uint32_t attempt = 0;; ++attempt) {
                auto res = client.Post(url.path, body, "application/json");
                if (res && res->status >= 200 && res->status < 300) {
                    delivered = true;
                    break;
                }
                if (attempt >= config.webhook_retries) break;
                count(SecurityEventCounter::webhook_retries);
                if (!pause(backoff)) return;
                backoff *= 2;
            }
            count(delivered ? SecurityEventCounter::webhook_delivered
                            : SecurityEventCounter::webhook_failed);
        }
    }
};

base::Result<std::unique_ptr<SecurityEvents>> SecurityEvents::start(
    const policy::NodeConfig::Events& config, std::string node_name) {
    std::unique_ptr<SecurityEvents> s(new SecurityEvents());
    s->impl_ = std::make_unique<Impl>();
    auto* impl = s->impl_.get();
    impl->config = config;
    impl->node = std::move(node_name);
    if (!config.file.empty()) {
        try {
            auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
                config.file, static_cast<std::size_t>(config.max_bytes),
                static_cast<std::size_t>(config.max_files - 1 > 0 ? config.max_files - 1 : 1));
            impl->file = std::make_shared<spdlog::logger>("events", sink);
            impl->file->set_pattern("%v");
            impl->file->set_level(spdlog::level::info);
        } catch (const spdlog::spdlog_ex& e) {
            return base::make_error("[events] cannot open '" + config.file + "': " + e.what());
        }
        impl->file_thread = std::thread([impl] { impl->file_loop(); });
    }
    if (!config.webhook_url.empty()) {
        auto url = parse_http_url(config.webhook_url);
        if (!url) return base::make_error("[events] " + url.error().message);
        impl->url = *url;
        impl->webhook = true;
        impl->hook_thread = std::thread([impl] { impl->hook_loop(); });
    }
    return s;
}

SecurityEvents::~SecurityEvents() {
    if (!impl_) return;
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = true;
    }
    impl_->file_cv.notify_all();
    impl_->hook_cv.notify_all();
    if (impl_->file_thread.joinable()) impl_->file_thread.join();
    if (impl_->hook_thread.joinable()) impl_->hook_thread.join();
}

std::string SecurityEvents::number(double v) {
    char buf[40];
    if (v == static_cast<double>(static_cast<long long>(v)))
        std::snprintf(buf, sizeof buf, "%c%lld", kNumberMark, static_cast<long long>(v));
    else
        std::snprintf(buf, sizeof buf, "%c%.6g", kNumberMark, v);
    return buf;
}

std::string SecurityEvents::format(SecurityEventKind kind, base::UnixNanos wall,
                                   std::string_view node, const Fields& fields) {
    std::string line = "{\"ts\":\"" + utc_time(wall) + "\",\"node\":";
    append_json_string(line, node);
    line += ",\"kind\":\"";
    line += name(kind);
    line += '"';
    for (const auto& [k, v] : fields) {
        line += ',';
        append_json_string(line, k);
        line += ':';
        if (!v.empty() && v[0] == kNumberMark)
            line.append(v, 1);
        else
            append_json_string(line, v);
    }
    line += '}';
    return line;
}

void SecurityEvents::emit(SecurityEventKind kind, base::UnixNanos wall, const Fields& fields) {
    auto& d = *impl_;
    d.count(SecurityEventCounter::emitted);
    d.kinds[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
    std::string line = format(kind, wall, d.node, fields);
    spdlog::info("security event: {}", line);
    bool to_file = false, to_hook = false;
    {
        std::lock_guard lock(d.mu);
        if (d.file) {
            if (d.file_queue.size() < kFileQueue) {
                if (d.webhook)
                    d.file_queue.push_back(line);
                else
                    d.file_queue.push_back(std::move(line));
                to_file = true;
            } else {
                d.count(SecurityEventCounter::dropped_queue_full);
            }
        }
        if (d.webhook) {
            if (d.hook_queue.size() < d.config.webhook_queue) {
                d.hook_queue.push_back(std::move(line));
                to_hook = true;
            } else {
                d.count(SecurityEventCounter::webhook_dropped_queue_full);
            }
        }
    }
    if (to_file) d.file_cv.notify_one();
    if (to_hook) d.hook_cv.notify_one();
}

base::CounterSet<SecurityEventCounter> SecurityEvents::counters() const {
    base::CounterSet<SecurityEventCounter> out;
    for (std::size_t i = 0; i < out.kSize; ++i)
        out.values[i] = impl_->counters[i].load(std::memory_order_relaxed);
    return out;
}

base::CounterSet<SecurityEventKind> SecurityEvents::kinds() const {
    base::CounterSet<SecurityEventKind> out;
    for (std::size_t i = 0; i < out.kSize; ++i)
        out.values[i] = impl_->kinds[i].load(std::memory_order_relaxed);
    return out;
}

void SecurityEvents::write_metrics(MetricsWriter& w) const {
    w.by_label("sbc_security_events_total", "security events by kind", "kind", kinds(),
               kSecurityEventKindNames);
    w.each("events", counters(), kSecurityEventCounterNames, kSecurityEventCounterDescriptions);
}

// ---------------------------------------------------------------------------------------------
base::Result<void> setup_logging(const policy::NodeConfig& node) {
    std::vector<spdlog::sink_ptr> sinks;
    auto term = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    term->set_level(level_of(node.log_level));
    sinks.push_back(term);
    auto lowest = level_of(node.log_level);
    if (!node.log_file.empty()) {
        try {
            auto f = std::make_shared<spdlog::sinks::basic_file_sink_mt>(node.log_file);
            f->set_formatter(std::make_unique<JsonLineFormatter>());
            const auto lv =
                level_of(node.log_file_level.empty() ? node.log_level : node.log_file_level);
            f->set_level(lv);
            lowest = std::min(lowest, lv);
            sinks.push_back(f);
        } catch (const spdlog::spdlog_ex& e) {
            return base::make_error("cannot open log file '" + node.log_file + "': " + e.what());
        }
    }
    auto logger = std::make_shared<spdlog::logger>("sbc", sinks.begin(), sinks.end());
    logger->set_level(lowest);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return {};
}

}  // namespace sbc

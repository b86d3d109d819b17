// The control channel of the DPDK backend: commands from other threads are applied by the worker
// between bursts, and media events travel back the same way. Off the per-packet path: the lock
// is taken only when the worker sees pending work.
#include <algorithm>
#include <array>

#include "dataplane/dpdk/backend_impl.hpp"

namespace sbc::dataplane::dpdk {

namespace {

ControlResult apply_one(Pipeline& pipeline, const ControlCommand& c, base::Nanos now) {
    ControlResult r;
    r.tag = c.tag;
    const auto fail = [&r](const base::Error& e) {
        r.ok = false;
        r.error = e.message;
    };
    switch (c.kind) {
        case ControlCommand::Kind::media:
            if (auto id = pipeline.media().apply(c.media, now); id)
                r.stream = *id;
            else
                fail(id.error());
            break;
        case ControlCommand::Kind::ban:
            if (auto b = pipeline.bans().ban(c.prefix, c.duration, c.origin, now); !b)
                fail(b.error());
            break;
        case ControlCommand::Kind::unban:
            if (!pipeline.bans().unban(c.prefix)) fail(base::make_error("no such ban"));
            break;
        case ControlCommand::Kind::reconfigure:
            if (c.config)
                pipeline.apply_config(*c.config);
            else
                fail(base::make_error("reconfigure without a configuration"));
            break;
    }
    return r;
}

}  // namespace

bool Backend::post(ControlCommand command) {
    auto& ch = impl_->control;
    std::lock_guard lock(ch.mutex);
    if (ch.inbox.size() >= kControlCapacity) return false;
    ch.inbox.push_back(std::move(command));
    ch.pending.fetch_add(1, std::memory_order_release);
    return true;
}

std::size_t Backend::take_results(std::vector<ControlResult>& out) {
    auto& ch = impl_->control;
    std::lock_guard lock(ch.mutex);
    const std::size_t n = ch.results.size();
    std::move(ch.results.begin(), ch.results.end(), std::back_inserter(out));
    ch.results.clear();
    return n;
}

std::size_t Backend::take_events(std::vector<MediaEvent>& out) {
    auto& ch = impl_->control;
    std::lock_guard lock(ch.mutex);
    const std::size_t n = ch.events.size();
    out.insert(out.end(), ch.events.begin(), ch.events.end());
    ch.events.clear();
    return n;
}

std::uint64_t Backend::events_dropped() const {
    auto& ch = impl_->control;
    std::lock_guard lock(ch.mutex);
    return ch.events_dropped;
}

void apply_control(Backend::Impl& impl, base::Nanos now) {
    auto& ch = impl.control;
    std::deque<ControlCommand> batch;
    {
        std::lock_guard lock(ch.mutex);
        batch.swap(ch.inbox);
        ch.pending.store(0, std::memory_order_relaxed);
    }
    std::vector<ControlResult> done;
    done.reserve(batch.size());
    for (const auto& c : batch) {
        done.push_back(apply_one(*impl.pipeline, c, now));
        if (c.kind != ControlCommand::Kind::media || !done.back().ok) continue;
        auto& rep = impl.reported;
        if (c.media.kind == MediaCommandKind::create) {
            if (rep.size() < Backend::kReportedStreams) rep.push_back(done.back().stream);
        } else if (c.media.kind == MediaCommandKind::remove) {
            rep.erase(std::remove(rep.begin(), rep.end(), c.media.id), rep.end());
        }
    }
    std::lock_guard lock(ch.mutex);
    for (auto& r : done) {
        if (ch.results.size() >= ControlChannel::kMaxOutbox) break;
        ch.results.push_back(std::move(r));
    }
}

void publish_snapshot(Backend::Impl& impl, const RunResult& result, base::Nanos now, bool running) {
    Snapshot s;
    s.run = result;
    s.pipeline = impl.pipeline->counters();
    s.bans = impl.pipeline->bans().active(now);
    const auto& media = impl.pipeline->media();
    s.media_active = media.active();
    s.streams.reserve(impl.reported.size());
    for (const auto& id : impl.reported) {
        const StreamSpec* spec = media.spec(id);
        auto st = media.stats(id);
        if (spec && st) s.streams.push_back({id, *spec, *st});
    }
    s.at = now;
    s.running = running;
    std::lock_guard lock(impl.snapshot_mutex);
    impl.published = std::move(s);
}

Snapshot Backend::snapshot() const {
    std::lock_guard lock(impl_->snapshot_mutex);
    return impl_->published;
}

void media_housekeeping(Backend::Impl& impl, base::Nanos now) {
    auto& media = impl.pipeline->media();
    media.poll(now);
    std::array<MediaEvent, 64> buf;
    std::size_t n = media.drain_events(buf);
    if (n == 0) return;
    auto& ch = impl.control;
    std::lock_guard lock(ch.mutex);
    while (n > 0) {
        for (std::size_t i = 0; i < n; ++i) {
            if (ch.events.size() >= ControlChannel::kMaxOutbox)
                ++ch.events_dropped;
            else
                ch.events.push_back(buf[i]);
        }
        n = media.drain_events(buf);
    }
}

}  // namespace sbc::dataplane::dpdk

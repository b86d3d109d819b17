// Cross-thread commands for a pipeline's owner thread (see ControlMailbox in dataplane.hpp).
#include "dataplane/mailbox.hpp"

namespace sbc::dataplane {

bool ControlMailbox::post(const ControlCommand& c) {
    std::lock_guard lock(mu_);
    if (queue_.size() >= capacity_) {
        ++rejected_;
        return false;
    }
    queue_.push_back(c);
    pending_.store(true, std::memory_order_release);
    return true;
}

void ControlMailbox::post_config(const PipelineConfig& c) {
    std::lock_guard lock(mu_);
    config_ = std::make_unique<PipelineConfig>(c);
    pending_.store(true, std::memory_order_release);
}

void ControlMailbox::apply(Pipeline& p, base::Nanos now, base::Nanos publish_every) {
    if (pending_.load(std::memory_order_acquire)) {
        std::vector<ControlCommand> cmds;
        std::unique_ptr<PipelineConfig> cfg;
        {
            std::lock_guard lock(mu_);
            cmds.swap(queue_);
            cfg.swap(config_);
            pending_.store(false, std::memory_order_relaxed);
        }
        if (cfg) p.apply_config(*cfg);
        for (const auto& c : cmds) {
            bool ok = true;
            if (c.kind == ControlCommand::Kind::unban) {
                ok = p.bans().unban(c.prefix);
            } else if (c.duration == 0) {
                // An address or a prefix: the escalation ladder of [bans] either way.
                ok = p.bans().ban_escalating(c.prefix, p.config().ban_policy, c.origin, now).ok();
            } else {
                ok = p.bans().ban(c.prefix, c.duration, c.origin, now).ok();
            }
            if (ok && c.kind == ControlCommand::Kind::ban) {
                p.counters().events.add(PipelineEvent::bans_added);
                ++p.counters().bans_by_origin[static_cast<std::size_t>(c.origin)];
            }
            if (!ok) ++failed_;
        }
        if (!cmds.empty()) republish_ = true;
    }
    if (republish_ || now - published_at_ >= publish_every) {
        auto list = p.bans().active(now);
        std::lock_guard lock(mu_);
        published_.swap(list);
        published_at_ = now;
        republish_ = false;
    }
}

std::vector<BanInfo> ControlMailbox::bans(base::Nanos* as_of) const {
    std::lock_guard lock(mu_);
    if (as_of) *as_of = published_at_;
    return published_;
}

}  // namespace sbc::dataplane

#pragma once
// dataplane/: the control mailbox.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "dataplane/ban_table.hpp"
#include "dataplane/pipeline.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// Commands from other threads (control socket, signaling, fraud verdicts) to the thread that
// owns a Pipeline. Bounded; the owner applies them between bursts (one atomic load when idle),
// so the pipeline's tables stay single-writer and lock-free on the fast path.
// ---------------------------------------------------------------------------------------
struct ControlCommand {
    enum class Kind : std::uint8_t { ban, unban };
    Kind kind = Kind::ban;
    base::Prefix prefix;
    base::Nanos duration = 0;  // ban: 0 = escalate per the ban policy (address or prefix)
    BanOrigin origin = BanOrigin::control;
};

class ControlMailbox {
  public:
    explicit ControlMailbox(std::size_t capacity = 1024) : capacity_(capacity) {}
    // Any thread. False when the mailbox is full (counted in rejected()).
    bool post(const ControlCommand& c);
    // Any thread: a new configuration, applied by the owner with Pipeline::apply_config.
    void post_config(const PipelineConfig& c);
    // Owner thread: applies what is queued; refreshes the published ban list at most once per
    // `publish_every` (or at once after a command).
    void apply(Pipeline& p, base::Nanos now, base::Nanos publish_every = base::seconds(1));
    // Any thread: the ban list as last published, and the owner's time of that publication.
    std::vector<BanInfo> bans(base::Nanos* as_of = nullptr) const;
    std::uint64_t rejected() const { return rejected_.load(); }
    std::uint64_t failed() const { return failed_.load(); }

  private:
    std::size_t capacity_;
    mutable std::mutex mu_;
    std::vector<ControlCommand> queue_;
    std::unique_ptr<PipelineConfig> config_;
    std::vector<BanInfo> published_;
    base::Nanos published_at_ = 0;
    bool republish_ = true;
    std::atomic<bool> pending_{false};
    std::atomic<std::uint64_t> rejected_{0}, failed_{0};
};

}  // namespace sbc::dataplane

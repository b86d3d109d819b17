#pragma once
// Internal to dataplane/dpdk/: the DPDK-side state of a Backend. The only header of the project
// that includes DPDK.
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "dataplane/dpdk/dpdk.hpp"

namespace sbc::dataplane::dpdk {

constexpr std::uint16_t kNoPort = 0xffff;
constexpr std::uint16_t kMaxBurst = 128;

struct PortPairState {
    std::uint16_t data = kNoPort;
    std::uint16_t exception = kNoPort;
    rte_ether_addr data_mac{};
    rte_ether_addr exception_mac{};
};

// The control channel between other threads and the worker. The worker looks at `pending`
// once per loop iteration and takes the lock only when there is something to do.
struct ControlChannel {
    std::mutex mutex;
    std::deque<ControlCommand> inbox;
    std::vector<ControlResult> results;
    std::vector<MediaEvent> events;
    std::uint64_t events_dropped = 0;
    std::atomic<std::size_t> pending{0};
    static constexpr std::size_t kMaxOutbox = 65536;
};

struct Backend::Impl {
    BackendConfig config;
    Pipeline* pipeline = nullptr;
    rte_mempool* pool = nullptr;
    std::vector<PortPairState> pairs;
    std::vector<std::uint16_t> started;  // every port we configured, to stop and close
    std::vector<std::string> probed;     // vdevs we hot-plugged, to remove
    ControlChannel control;
    // Streams created through post(), reported in the snapshot (worker only).
    std::vector<StreamId> reported;
    mutable std::mutex snapshot_mutex;
    Snapshot published;
};

// Publishes the worker's counters, bans and reported streams (control.cpp).
void publish_snapshot(Backend::Impl& impl, const RunResult& result, base::Nanos now, bool running);

// Applies queued control commands to the pipeline (control.cpp); called by the worker.
void apply_control(Backend::Impl& impl, base::Nanos now);
// Inactivity checks and media events, every kHousekeepingPeriod of worker time.
void media_housekeeping(Backend::Impl& impl, base::Nanos now);
constexpr base::Nanos kHousekeepingPeriod = base::kNanosPerMilli;

// The worker loop (worker.cpp). `stop_flag` is polled once per iteration.
RunResult run_worker(Backend::Impl& impl, const StopCondition& stop, const base::Clock& clock,
                     const std::atomic<bool>& stop_flag);

}  // namespace sbc::dataplane::dpdk

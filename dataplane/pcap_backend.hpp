#pragma once
// dataplane/: the pcap backend.
#include <cstdint>
#include <string>

#include "dataplane/pipeline.hpp"

namespace sbc::dataplane {

// pcap backend: frames from a capture (timestamps as `now`), relayed frames rewritten and
// written to an output capture. Malformed captures end with a clear error, never a crash.
struct PcapRunResult {
    std::uint64_t records = 0;                  // records read
    std::uint64_t written = 0;                  // records written to the output
    base::Nanos first_time = 0, last_time = 0;  // capture timestamps
    std::string error;                          // non-empty if the capture ended in an error
};
// `on_start` runs once before the first packet, with `now` = the first timestamp (create
// streams there); `on_tick` is called for each burst (not per packet) with the burst's time.
struct PcapRunHooks {
    void (*on_start)(Pipeline&, base::Nanos now, void* ctx) = nullptr;
    void* ctx = nullptr;
    bool write_signaling = false;  // also write packets for signaling to the output
};
base::Result<PcapRunResult> run_pcap(Pipeline& pipeline, const std::string& in_path,
                                     const std::string& out_path, const PcapRunHooks& hooks = {});
}  // namespace sbc::dataplane

#pragma once
// Internal to sbc/: HEPv3 export of SIP messages to a Homer collector (UDP).
//
// The signaling thread hands each message to HepExporter::capture(), which encodes it into a
// slot of a bounded single-producer ring and returns: it never waits for the network, and a
// full ring drops the message and counts it. A sender thread of its own empties the ring onto
// a UDP socket connected to the collector.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/base.hpp"

namespace sbc {

// One captured message (views borrowed for the call).
struct HepRecord {
    base::Endpoint src, dst;  // the real addresses of the leg, as on the wire
    base::UnixNanos time = 0;
    bool tcp = false;
    std::uint32_t capture_id = 0;
    std::string_view auth_key;        // "" = no auth chunk
    std::string_view correlation_id;  // "" = no correlation chunk
    std::string_view payload;         // the SIP message
};

// Writes the HEPv3 packet for `r` into `out` (replacing its content). False when it would not
// fit HEP's 16-bit length.
bool encode_hep3(const HepRecord& r, std::string& out);

#define SBC_HEP_EVENTS(X)                                         \
    X(captured, "SIP messages queued for the collector")          \
    X(sent, "HEP packets sent to the collector")                  \
    X(dropped_queue_full, "messages dropped: the queue was full") \
    X(dropped_too_large, "messages dropped: too large for HEP")   \
    X(send_failed, "HEP packets the socket refused")
SBC_DECLARE_COUNTER_LIST(HepEvent, SBC_HEP_EVENTS)

class HepExporter {
  public:
    // Opens the UDP socket toward `collector` and starts the sender thread.
    static base::Result<std::unique_ptr<HepExporter>> start(const base::Endpoint& collector,
                                                            std::uint32_t capture_id,
                                                            std::string auth_key,
                                                            std::size_t queue_slots);
    // Sends what is still queued, then stops the sender thread.
    ~HepExporter();
    HepExporter(const HepExporter&) = delete;
    HepExporter& operator=(const HepExporter&) = delete;

    // One producer thread only. Never blocks: a full queue drops and counts.
    void capture(const base::Endpoint& src, const base::Endpoint& dst, base::UnixNanos time,
                 std::string_view correlation_id, std::string_view sip);
    std::uint64_t count(HepEvent e) const {
        return counters_[static_cast<std::size_t>(e)].load(std::memory_order_relaxed);
    }
    // hep.<event>=N lines (any thread).
    std::string stats_text() const;

  private:
    HepExporter(int fd, std::uint32_t capture_id, std::string auth_key, std::size_t slots);
    void run();
    void add(HepEvent e) {
        counters_[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
    }

    int fd_ = -1;
    std::uint32_t capture_id_;
    std::string auth_key_;
    std::vector<std::string> slots_;      // encoded packets; capacity reused
    std::atomic<std::uint64_t> head_{0};  // next slot the producer fills
    std::atomic<std::uint64_t> tail_{0};  // next slot the sender sends
    std::atomic<std::uint32_t> wake_{0};  // bumped to wake the sender
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> counters_[kHepEventCount] = {};
    std::thread sender_;
};

}  // namespace sbc

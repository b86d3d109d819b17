#pragma once
// The DPDK backend of the dataplane: frames are received in bursts from poll-mode drivers on a
// worker lcore, run through the same pipeline as every other backend (parse_frames ->
// Pipeline::decide), and then
//   - relayed media (RTP/RTCP) is rewritten in place and sent out of the port it came from,
//     using the very mbuf it arrived in (zero copy);
//   - SIP (UDP, TCP, TLS), ARP, ICMP and fragments for our own addresses are handed to the
//     host stack through an exception port (net_tap, or virtio_user with vhost-net), so the
//     signaling layer keeps using ordinary sockets; what the host stack sends back through
//     the exception port goes out of the data port;
//   - everything else is freed and counted by reason.
//
// This header is DPDK-free: only the .cpp files of this folder include DPDK headers, so the
// rest of the project sees plain types (the "one room per third-party library" rule).
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"

namespace sbc::dataplane::dpdk {

#define SBC_DPDK_COUNTERS(X)                                                          \
    X(rx, "frames received on data ports")                                            \
    X(relayed, "media frames rewritten and sent out of their data port")              \
    X(to_kernel, "frames handed to the host stack through the exception port")        \
    X(from_kernel, "frames from the host stack sent out of the data port")            \
    X(dropped, "frames freed without being sent (pipeline and backend drop reasons)") \
    X(polls, "worker loop iterations")                                                \
    X(empty_polls, "worker loop iterations that received nothing on any port")
SBC_DECLARE_COUNTER_LIST(BackendCounter, SBC_DPDK_COUNTERS)

// Drops that only a frame backend can see; pipeline drops are counted by the pipeline's own
// DropReason list (Pipeline::counters()).
#define SBC_DPDK_DROP_REASONS(X)                                                                \
    X(tx_full, "the transmit queue did not take the frame")                                     \
    X(multi_segment, "frame spans several mbufs (scatter/jumbo): not handled in the fast path") \
    X(not_for_us, "ARP/ICMP/TCP/fragment for the host stack not addressed to our addresses")    \
    X(no_exception_port, "frame for the host stack on a port without an exception port")        \
    X(rewrite_failed, "relayed frame could not be rewritten (address family mismatch)")
SBC_DECLARE_COUNTER_LIST(BackendDrop, SBC_DPDK_DROP_REASONS)

// A data port and the exception port that connects it to the host stack. Each is a DPDK
// device name: a PCI address ("0000:03:00.0") or a vdev name ("net_tap0"). A name with
// arguments ("net_tap0,iface=sbc0") is also added to the EAL as --vdev.
struct PortPair {
    std::string data;
    std::string exception;  // empty: frames for the host stack are dropped (no_exception_port)
};

using MacAddress = std::array<std::uint8_t, 6>;

struct BackendConfig {
    // EAL arguments (without argv[0]), e.g. {"-l", "0,1", "--no-huge", "--no-pci", "-m", "512",
    // "--no-shconf", "--file-prefix=sbc", "--vdev=net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"}.
    std::vector<std::string> eal_args;
    std::vector<PortPair> ports;
    std::uint16_t burst = 32;
    std::uint32_t mbufs_per_port = 8191;
    std::uint16_t rx_descriptors = 1024;
    std::uint16_t tx_descriptors = 1024;
    // L2 next hop of relayed media. Unset: the frame goes back to the MAC address it came from
    // (an SBC behind a router, the common edge deployment).
    std::optional<MacAddress> next_hop_mac;
    // Verify UDP checksums in software (IPv4 header checksums are always verified). Off by
    // default: the relay updates checksums incrementally (RFC 1624 §3), which keeps a wrong
    // checksum wrong, so the receiver still discards a corrupted packet, and frames for the
    // host stack are verified there. A NIC that checks them (RX offload) is used either way.
    bool verify_udp_checksum = false;
    // Name prefix of the mbuf pools (unique per process when several backends are created).
    std::string pool_name = "sbc";
};

// When the worker loop stops (whichever comes first; all zero: only request_stop()).
struct StopCondition {
    std::uint64_t max_rx = 0;      // frames received on data ports
    base::Nanos max_duration = 0;  // on the clock passed to run()
    std::uint32_t idle_polls = 0;  // consecutive polls with nothing received (pcap input)
};

struct RunResult {
    base::CounterSet<BackendCounter> counters;
    base::CounterSet<BackendDrop> drops;
    base::CounterSet<DropReason> pipeline_drops;  // frames this backend freed on a pipeline drop
    base::Nanos elapsed = 0;
    unsigned lcore = 0;  // the lcore the loop ran on
};

// Maps the node configuration's plain values (sbc.toml [dataplane]: eal_args, ports, burst) to
// a BackendConfig. Ports pair up in order: a data port, optionally followed by its exception
// port; a port whose driver talks to the host stack (net_tap*, virtio_user*) is an exception
// port, anything else starts a new pair.
base::Result<BackendConfig> config_from_node(const std::vector<std::string>& eal_args,
                                             const std::vector<std::string>& ports,
                                             std::uint32_t burst);

// Commands from other threads (signaling, policy reloads, the fraud engine). While run() is in
// progress the pipeline belongs to the worker lcore, so they are queued and the worker applies
// them between bursts with its own `now`: a closed command set, no lock per packet.
struct ControlCommand {
    enum class Kind : std::uint8_t { media, ban, unban, reconfigure };
    Kind kind = Kind::media;
    std::uint64_t tag = 0;  // echoed in the result
    MediaCommand media;     // media: create/update/remove a stream
    base::Prefix prefix;    // ban/unban
    base::Nanos duration = 0;
    BanOrigin origin = BanOrigin::control;
    std::shared_ptr<const PipelineConfig> config;  // reconfigure (a policy reload)
};
// What the worker publishes for other threads while run() is in progress (every
// kSnapshotPeriod of worker time and when the run ends): its counters so far, the pipeline's
// counters, the active bans and the statistics of the streams created through post() (up to
// kReportedStreams of them, oldest first).
struct Snapshot {
    RunResult run;
    Counters pipeline;
    std::vector<BanInfo> bans;
    std::size_t media_active = 0;
    struct Stream {
        StreamId id;
        StreamSpec spec;
        StreamStats stats;
    };
    std::vector<Stream> streams;
    base::Nanos at = 0;  // the worker's `now` when it was taken (0: never published)
    bool running = false;
};

struct ControlResult {
    std::uint64_t tag = 0;
    bool ok = true;
    std::string error;
    StreamId stream;  // media create
};

class Backend {
  public:
    // Initialises the EAL (once per process: the EAL cannot be initialised twice), creates the
    // mbuf pools and configures and starts every port. Fails with a message naming the step.
    static base::Result<std::unique_ptr<Backend>> create(const BackendConfig& config,
                                                         Pipeline& pipeline);
    ~Backend();
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    // Runs the worker loop until `stop` says so or request_stop() is called: on the first
    // worker lcore if the EAL has one, else on the calling thread. Blocks until it ends.
    // The pipeline is used by that lcore only while run() is in progress.
    RunResult run(const StopCondition& stop, const base::Clock& clock);
    // Thread-safe; a stop requested before run() makes the next run() return at once.
    void request_stop() { stop_requested_.store(true, std::memory_order_relaxed); }

    // Thread-safe. Queued commands are applied by the worker between bursts (or at the start of
    // the next run()); false when the queue is full (kControlCapacity).
    bool post(ControlCommand command);
    // Thread-safe: moves the results of applied commands, and the media events (latched,
    // relatched, inactive) the worker collected, to `out`; returns how many.
    std::size_t take_results(std::vector<ControlResult>& out);
    std::size_t take_events(std::vector<MediaEvent>& out);
    // Events lost because nobody took them in time (the outbox is bounded too).
    std::uint64_t events_dropped() const;

    static constexpr std::size_t kControlCapacity = 4096;

    // Thread-safe: the worker's last published Snapshot.
    Snapshot snapshot() const;
    static constexpr base::Nanos kSnapshotPeriod = 50 * base::kNanosPerMilli;
    static constexpr std::size_t kReportedStreams = 256;

    // The host-stack interface behind a pair's exception port (net_tap: the `iface=` name),
    // empty when the pair has none or its driver has no kernel interface.
    std::string exception_interface(std::size_t pair) const;

    // The data port's MAC address (relayed frames leave with it as their source).
    MacAddress data_mac(std::size_t pair) const;
    // The exception port's MAC address (unicast frames for the host stack are sent to it).
    std::optional<MacAddress> exception_mac(std::size_t pair) const;
    std::size_t port_pairs() const;

    struct Impl;

  private:
    Backend() = default;
    std::unique_ptr<Impl> impl_;
    std::atomic<bool> stop_requested_{false};
};

// The EAL is process-wide; this ends it (after every Backend is destroyed) so that vdevs
// flush their output (pcap files) and resources are released. Safe to call when not started.
void shutdown_eal();

}  // namespace sbc::dataplane::dpdk

// Start-up and tear-down of the DPDK backend: EAL, mbuf pool, ports. Runs once, off the fast
// path, so it reports every failure as a Result naming the step.
#include <net/if.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "dataplane/dpdk/backend_impl.hpp"

namespace sbc::dataplane::dpdk {

namespace {

// The EAL is initialised once per process and cannot be initialised again after cleanup.
enum class EalState { not_started, running, failed, cleaned_up };
std::mutex g_eal_mutex;
EalState g_eal_state = EalState::not_started;
std::string g_eal_error;

base::Result<void> start_eal(const std::vector<std::string>& args) {
    std::lock_guard lock(g_eal_mutex);
    switch (g_eal_state) {
        case EalState::running:
            return {};
        case EalState::failed:
            return base::make_error("EAL init failed earlier: " + g_eal_error);
        case EalState::cleaned_up:
            return base::make_error("EAL was shut down; it cannot be started twice in a process");
        case EalState::not_started:
            break;
    }
    // rte_eal_init may permute argv, and keeps pointers into it: the strings live forever.
    static std::vector<std::string> storage;
    static std::vector<char*> argv;
    storage.clear();
    storage.push_back("sbc");
    storage.insert(storage.end(), args.begin(), args.end());
    argv.clear();
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);
    const int rc = rte_eal_init(static_cast<int>(storage.size()), argv.data());
    if (rc < 0) {
        g_eal_state = EalState::failed;
        g_eal_error = rte_strerror(rte_errno);
        return base::make_error("rte_eal_init failed: " + g_eal_error);
    }
    g_eal_state = EalState::running;
    return {};
}

std::string device_name(const std::string& spec) {
    return spec.substr(0, spec.find(','));
}

// Finds a port by device name; a spec with arguments that is not known yet is hot-plugged
// (rte_dev_probe) so that ports can come from the configuration and not only from --vdev.
base::Result<std::uint16_t> find_or_probe(const std::string& spec, Backend::Impl& impl) {
    const std::string name = device_name(spec);
    std::uint16_t id = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0) return id;
    if (spec.find(',') == std::string::npos && name.rfind("net_", 0) != 0)
        return base::make_error("no DPDK port named '" + name +
                                "' (is the device bound to a DPDK driver, or given as --vdev?)");
    if (int rc = rte_dev_probe(spec.c_str()); rc < 0)
        return base::make_error("cannot probe device '" + spec + "': " + rte_strerror(-rc));
    impl.probed.push_back(name);
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0)
        return base::make_error("device '" + name + "' probed but has no ethdev port");
    return id;
}

base::Result<void> start_port(std::uint16_t port, const BackendConfig& cfg, rte_mempool* pool) {
    const auto fail = [port](const char* step, int rc) {
        return base::make_error("port " + std::to_string(port) + ": " + step + ": " +
                                rte_strerror(rc < 0 ? -rc : rc));
    };
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(port, &info); rc != 0) return fail("dev_info_get", rc);
    rte_eth_conf conf{};
    // Let a NIC verify IPv4/UDP checksums when it can: parse_frames then skips that work for
    // bursts the NIC marked good (worker.cpp). Software checks remain for everything else.
    constexpr std::uint64_t kRxCsum = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
    if ((info.rx_offload_capa & kRxCsum) == kRxCsum) conf.rxmode.offloads |= kRxCsum;
    if (int rc = rte_eth_dev_configure(port, 1, 1, &conf); rc != 0) return fail("configure", rc);
    std::uint16_t nrx = cfg.rx_descriptors, ntx = cfg.tx_descriptors;
    if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx); rc != 0)
        return fail("adjust descriptors", rc);
    const int socket = rte_eth_dev_socket_id(port);
    const unsigned sock = socket < 0 ? SOCKET_ID_ANY : static_cast<unsigned>(socket);
    if (int rc = rte_eth_rx_queue_setup(port, 0, nrx, sock, nullptr, pool); rc != 0)
        return fail("rx queue setup", rc);
    if (int rc = rte_eth_tx_queue_setup(port, 0, ntx, sock, nullptr); rc != 0)
        return fail("tx queue setup", rc);
    if (int rc = rte_eth_dev_start(port); rc != 0) return fail("start", rc);
    // Media arrives for our addresses, but an exception port must also see what the kernel
    // expects (multicast ND, broadcast ARP); vdevs that cannot do it report ENOTSUP: fine.
    (void)rte_eth_promiscuous_enable(port);
    return {};
}

bool is_exception_device(const std::string& spec) {
    const std::string name = device_name(spec);
    return name.rfind("net_tap", 0) == 0 || name.rfind("virtio_user", 0) == 0 ||
           name.rfind("net_virtio_user", 0) == 0;
}

}  // namespace

base::Result<BackendConfig> config_from_node(const std::vector<std::string>& eal_args,
                                             const std::vector<std::string>& ports,
                                             std::uint32_t burst) {
    BackendConfig cfg;
    cfg.eal_args = eal_args;
    if (burst == 0 || burst > kMaxBurst)
        return base::make_error("dataplane burst_size must be 1.." + std::to_string(kMaxBurst));
    cfg.burst = static_cast<std::uint16_t>(burst);
    for (const auto& p : ports) {
        if (p.empty()) return base::make_error("dataplane: empty DPDK port name");
        if (is_exception_device(p)) {
            if (cfg.ports.empty() || !cfg.ports.back().exception.empty())
                return base::make_error("dataplane: exception port '" + p +
                                        "' must follow the data port it serves");
            cfg.ports.back().exception = p;
        } else {
            cfg.ports.push_back(PortPair{p, {}});
        }
    }
    if (cfg.ports.empty()) return base::make_error("dataplane: the dpdk backend needs a data port");
    return cfg;
}

base::Result<std::unique_ptr<Backend>> Backend::create(const BackendConfig& config,
                                                       Pipeline& pipeline) {
    if (config.ports.empty()) return base::make_error("no DPDK ports configured");
    if (config.burst == 0 || config.burst > kMaxBurst)
        return base::make_error("burst must be 1.." + std::to_string(kMaxBurst));
    if (auto r = start_eal(config.eal_args); !r) return r.error();

    std::unique_ptr<Backend> backend(new Backend());
    backend->impl_ = std::make_unique<Impl>();
    Impl& impl = *backend->impl_;
    impl.config = config;
    impl.pipeline = &pipeline;

    for (const auto& pair : config.ports) {
        PortPairState st;
        auto data = find_or_probe(pair.data, impl);
        if (!data) return data.error();
        st.data = *data;
        if (!pair.exception.empty()) {
            auto exc = find_or_probe(pair.exception, impl);
            if (!exc) return exc.error();
            st.exception = *exc;
            if (st.exception == st.data)
                return base::make_error("port '" + pair.data + "' is its own exception port");
        }
        impl.pairs.push_back(st);
    }

    std::vector<std::uint16_t> ports;
    for (const auto& st : impl.pairs) {
        for (std::uint16_t p : {st.data, st.exception}) {
            if (p == kNoPort) continue;
            bool seen = false;
            for (auto q : ports) seen = seen || q == p;
            if (!seen) ports.push_back(p);
        }
    }
    static std::atomic<unsigned> pool_serial{0};
    const std::string pool_name = config.pool_name + "_mbuf" + std::to_string(pool_serial++);
    const unsigned n_mbufs = config.mbufs_per_port * static_cast<unsigned>(ports.size());
    impl.pool = rte_pktmbuf_pool_create(pool_name.c_str(), n_mbufs, 256, 0,
                                        RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    if (impl.pool == nullptr)
        return base::make_error("cannot create mbuf pool of " + std::to_string(n_mbufs) +
                                " mbufs: " + rte_strerror(rte_errno) +
                                " (EAL memory too small? raise -m)");
    for (auto p : ports) {
        if (auto r = start_port(p, config, impl.pool); !r) return r.error();
        impl.started.push_back(p);
    }
    for (auto& st : impl.pairs) {
        if (int rc = rte_eth_macaddr_get(st.data, &st.data_mac); rc != 0)
            return base::make_error("port " + std::to_string(st.data) +
                                    ": cannot read MAC address: " + rte_strerror(-rc));
        if (st.exception == kNoPort) continue;
        // The host stack answers ARP with its own interface's address (RFC 826), so the
        // exception port takes the data port's MAC where the driver allows it (net_tap does).
        // The worker also rewrites the MACs crossing the exception path, for ports that
        // cannot (net_pcap, some virtio_user setups).
        const int rc = rte_eth_dev_default_mac_addr_set(st.exception, &st.data_mac);
        if (rc != 0 && rc != -ENOTSUP)
            return base::make_error("exception port " + std::to_string(st.exception) +
                                    ": cannot take the data port's MAC: " + rte_strerror(-rc));
        if (int r2 = rte_eth_macaddr_get(st.exception, &st.exception_mac); r2 != 0)
            return base::make_error("exception port " + std::to_string(st.exception) +
                                    ": cannot read MAC address: " + rte_strerror(-r2));
    }
    return backend;
}

Backend::~Backend() {
    if (!impl_) return;
    for (auto p : impl_->started) {
        // Stopping flushes and closes what vdevs write (tx pcap files).
        (void)rte_eth_dev_stop(p);
        (void)rte_eth_dev_close(p);
    }
    for (const auto& name : impl_->probed) {
        (void)rte_eal_hotplug_remove("vdev", name.c_str());
    }
    if (impl_->pool) rte_mempool_free(impl_->pool);
}

RunResult Backend::run(const StopCondition& stop, const base::Clock& clock) {
    struct Launch {
        Impl* impl;
        const StopCondition* stop;
        const base::Clock* clock;
        const std::atomic<bool>* flag;
        RunResult result;
        std::atomic<bool> done{false};
    } launch{impl_.get(), &stop, &clock, &stop_requested_, {}};
    const auto body = [](void* arg) -> int {
        auto* l = static_cast<Launch*>(arg);
        l->result = run_worker(*l->impl, *l->stop, *l->clock, *l->flag);
        l->done.store(true, std::memory_order_release);
        l->done.notify_all();
        return 0;
    };
    // The fast path gets a core of its own when the EAL has one (-l 0,1): the main lcore then
    // only waits, blocked until the worker says it is done (rte_eal_wait_lcore would spin a
    // second core). It must not wake up periodically either: under the kernel's autogroup
    // scheduling a process's CPU weight is shared among the CPUs its threads load, so a waiter
    // that keeps waking takes weight away from the worker's core. rte_eal_wait_lcore then only
    // covers the worker's last instructions. With a single lcore the loop runs here.
    const unsigned worker = rte_get_next_lcore(static_cast<unsigned>(-1), 1, 0);
    if (worker < RTE_MAX_LCORE && rte_eal_remote_launch(body, &launch, worker) == 0) {
        launch.done.wait(false, std::memory_order_acquire);
        rte_eal_wait_lcore(worker);
    } else {
        body(&launch);
    }
    // A stop requested before or during this run ends this run only.
    stop_requested_.store(false, std::memory_order_relaxed);
    return launch.result;
}

MacAddress Backend::data_mac(std::size_t pair) const {
    MacAddress m{};
    std::memcpy(m.data(), impl_->pairs.at(pair).data_mac.addr_bytes, m.size());
    return m;
}

std::optional<MacAddress> Backend::exception_mac(std::size_t pair) const {
    const auto& st = impl_->pairs.at(pair);
    if (st.exception == kNoPort) return std::nullopt;
    MacAddress m{};
    std::memcpy(m.data(), st.exception_mac.addr_bytes, m.size());
    return m;
}

std::string Backend::exception_interface(std::size_t pair) const {
    const auto& st = impl_->pairs.at(pair);
    if (st.exception == kNoPort) return {};
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(st.exception, &info) != 0 || info.if_index == 0) return {};
    char name[IF_NAMESIZE] = {};
    if (::if_indextoname(info.if_index, name) == nullptr) return {};
    return name;
}

std::size_t Backend::port_pairs() const {
    return impl_->pairs.size();
}

void shutdown_eal() {
    std::lock_guard lock(g_eal_mutex);
    if (g_eal_state != EalState::running) return;
    rte_eal_cleanup();
    g_eal_state = EalState::cleaned_up;
}

}  // namespace sbc::dataplane::dpdk

// bare_relay: the ceiling for relay-socket. The least a userspace UDP relay can do per packet on
// this kernel: epoll over one ingress socket per stream, recvmmsg what is queued, sendmmsg it
// from the stream's egress socket to one fixed destination, a flat array from stream to
// sockets. No parsing, no latching, no statistics, no rewrite, no checks. Standalone (libc only)
// so that nothing of ours is in the figure.
//
//   bare_relay --addr A --port-base P --streams N --dest ADDR --dest-port D [--ready-fd FD]
//   stream i: ingress A:P+4i, egress A:P+4i+2 (the port plan of the socket bench's relay)
// Runs until SIGTERM, then prints "bare: relayed=... send_failed=..." on stderr.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {
volatile sig_atomic_t g_stop = 0;
void on_term(int) {
    g_stop = 1;
}

int bound_socket(const char* ip, int port) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        std::perror("socket");
        std::exit(1);
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, ip, &sa.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        std::perror("bind");
        std::exit(1);
    }
    return fd;
}
}  // namespace

int main(int argc, char** argv) {
    const char* addr = "127.0.88.1";
    const char* dest_ip = "127.0.88.4";
    int port_base = 20000, streams = 100, dest_port = 40002, ready_fd = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char* k = argv[i];
        const char* v = argv[i + 1];
        if (!std::strcmp(k, "--addr"))
            addr = v;
        else if (!std::strcmp(k, "--port-base"))
            port_base = std::atoi(v);
        else if (!std::strcmp(k, "--streams"))
            streams = std::atoi(v);
        else if (!std::strcmp(k, "--dest"))
            dest_ip = v;
        else if (!std::strcmp(k, "--dest-port"))
            dest_port = std::atoi(v);
        else if (!std::strcmp(k, "--ready-fd"))
            ready_fd = std::atoi(v);
        else {
            std::fprintf(stderr, "bare_relay: unknown option %s\n", k);
            return 2;
        }
    }
    if (streams < 1 || port_base < 1024 || port_base + 4 * streams > 65535) {
        std::fprintf(stderr, "bare_relay: streams and port base out of range\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    sockaddr_in dest{};
    dest.sin_family = AF_INET;
    dest.sin_port = htons(static_cast<std::uint16_t>(dest_port));
    inet_pton(AF_INET, dest_ip, &dest.sin_addr);

    const int ep = epoll_create1(0);
    // The flat table: stream index (the epoll cookie) -> ingress and egress socket.
    std::vector<int> ingress(static_cast<std::size_t>(streams));
    std::vector<int> egress(static_cast<std::size_t>(streams));
    for (int i = 0; i < streams; ++i) {
        const auto s = static_cast<std::size_t>(i);
        ingress[s] = bound_socket(addr, port_base + 4 * i);
        egress[s] = bound_socket(addr, port_base + 4 * i + 2);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<std::uint32_t>(i);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ingress[s], &ev) != 0) {
            std::perror("epoll_ctl");
            return 1;
        }
    }
    if (ready_fd >= 0) {
        const char c = 'b';
        if (write(ready_fd, &c, 1) != 1) return 1;
        close(ready_fd);
    }

    constexpr int kBurst = 32, kEvents = 256;
    static unsigned char buf[kBurst][2048];
    iovec iov[kBurst];
    mmsghdr msgs[kBurst];
    epoll_event events[kEvents];
    unsigned long long relayed = 0, send_failed = 0;
    while (!g_stop) {
        const int n = epoll_wait(ep, events, kEvents, 50);
        for (int e = 0; e < n; ++e) {
            const auto s = static_cast<std::size_t>(events[e].data.u32);
            for (int i = 0; i < kBurst; ++i) {
                iov[i] = {buf[i], sizeof buf[i]};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            const int got = recvmmsg(ingress[s], msgs, kBurst, MSG_DONTWAIT, nullptr);
            if (got <= 0) continue;
            for (int i = 0; i < got; ++i) {
                iov[i].iov_len = msgs[i].msg_len;
                msgs[i].msg_hdr.msg_name = &dest;
                msgs[i].msg_hdr.msg_namelen = sizeof dest;
            }
            const int sent = sendmmsg(egress[s], msgs, static_cast<unsigned>(got), 0);
            relayed += static_cast<unsigned long long>(sent > 0 ? sent : 0);
            send_failed += static_cast<unsigned long long>(got - (sent > 0 ? sent : 0));
        }
    }
    std::fprintf(stderr, "  bare: relayed=%llu send_failed=%llu\n", relayed, send_failed);
    return 0;
}

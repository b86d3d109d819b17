// sbc-reg-phones: many registered phones behind distinct NATs, for `scripts/bench registrations`
// (PARTS=memory). The registrar half stays in reg_phones.py (it sees few requests: the SBC
// answers the refreshes from its cache).
//
//   sbc-reg-phones --target HOST:PORT --count N [--procs P] [--net 127.10] [--rate R]
//                  [--expires S] [--refresh S] [--hold S] [--duration S] [--status DIR]
//
// Phone i sends from its own address NET.(i / 250).(i % 250 + 1), port 5060 (one UDP socket
// each: a flow of its own, as a phone behind its own NAT has), as user 200000+i at
// pbx.example, with a Contact naming that address and port. Each registers once (paced at R
// REGISTERs/s in all), then refreshes (same Call-ID, next CSeq) --hold seconds after its first
// 200 (default: --refresh) and every --refresh seconds after each later one; answers OPTIONS
// keep-alives with 200; retransmits an unanswered REGISTER (RFC 3261 Timer E: 0.5 s doubling,
// 4 times) and counts what failed, trying again 5 s later. Phones are spread over P forked
// processes (the open-file limit is per process); each runs one epoll loop over its sockets
// and a timer heap, and every second writes DIR/phones-K as one line:
//   registered=.. ok=.. refused=.. timeouts=.. options=.. sent=.. refreshes=.. refreshed=..
// (registered: phones with a first 200; ok: every 2xx to a REGISTER; refreshes: refresh
// REGISTERs sent, retransmissions not counted; refreshed: refreshes answered 2xx; sent: every
// REGISTER datagram). Runs --duration seconds (0: until SIGTERM); every loop is bounded by it.
// Only loopback (127.0.0.0/8) addresses are used.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void request_stop(int) {
    stop_requested = 1;
}

struct Options {
    std::string target = "";
    long count = 0;
    int procs = 4;
    std::string net = "127.10";
    double rate = 1000;
    long expires = 3600;
    double refresh = 60;
    double hold = 0;
    double duration = 0;
    std::string status;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "sbc-reg-phones: %s\nusage: sbc-reg-phones --target HOST:PORT --count N "
                 "[--procs P] [--net 127.10] [--rate R] [--expires S] [--refresh S] [--hold S] "
                 "[--duration S] [--status DIR]\n",
                 why);
    std::exit(2);
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

bool loopback_v4(const std::string& a, in_addr& out) {
    return inet_pton(AF_INET, a.c_str(), &out) == 1 && (ntohl(out.s_addr) >> 24) == 127;
}

bool iprefix(std::string_view line, std::string_view name) {
    if (line.size() <= name.size() || line[name.size()] != ':') return false;
    for (std::size_t i = 0; i < name.size(); ++i)
        if ((line[i] | 0x20) != (name[i] | 0x20)) return false;
    return true;
}

// Calls f(line) for each header line (without CRLF) of a message, up to the blank line.
template <typename F>
void for_each_header(std::string_view msg, F&& f) {
    std::size_t at = msg.find("\r\n");
    while (at != std::string_view::npos) {
        at += 2;
        const std::size_t end = msg.find("\r\n", at);
        if (end == std::string_view::npos || end == at) return;
        f(msg.substr(at, end - at));
        at = end;
    }
}

std::string_view value_of(std::string_view line) {
    std::size_t c = line.find(':') + 1;
    while (c < line.size() && (line[c] == ' ' || line[c] == '\t')) ++c;
    return line.substr(c);
}

// The 200 a phone answers an OPTIONS keep-alive with: Via, From, Call-ID, CSeq copied, a To
// tag added when there is none.
std::string answer_200(std::string_view req) {
    std::string out = "SIP/2.0 200 OK\r\n";
    std::string to;
    std::string_view call_id;
    for_each_header(req, [&](std::string_view line) {
        if (iprefix(line, "Via") || iprefix(line, "From") || iprefix(line, "Call-ID") ||
            iprefix(line, "CSeq")) {
            out += line;
            out += "\r\n";
        }
        if (iprefix(line, "Call-ID")) call_id = value_of(line);
        if (iprefix(line, "To")) to = std::string(value_of(line));
    });
    if (to.find(";tag=") == std::string::npos) {
        char tag[32];
        std::snprintf(tag, sizeof tag, ";tag=b3nch%zx",
                      std::hash<std::string_view>{}(call_id)&0xFFFFFF);
        to += tag;
    }
    out += "To: " + to + "\r\nContent-Length: 0\r\n\r\n";
    return out;
}

struct Counts {
    long registered = 0, ok = 0, refused = 0, timeouts = 0, options = 0, sent = 0, refreshes = 0,
         refreshed = 0;
};

void write_status(const std::string& path, const Counts& c) {
    if (path.empty()) return;
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::fprintf(f,
                 "registered=%ld ok=%ld refused=%ld timeouts=%ld options=%ld sent=%ld "
                 "refreshes=%ld refreshed=%ld\n",
                 c.registered, c.ok, c.refused, c.timeouts, c.options, c.sent, c.refreshes,
                 c.refreshed);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}

struct Phone {
    int fd = -1;
    std::string addr;
    std::string user;
    std::string call_id;
    long cseq = 0;
    double pending = 0;  // when the outstanding REGISTER was first sent (0: none)
    double retry_at = 0;
    int retries = 0;
    bool registered = false;
    bool refreshing = false;  // the outstanding REGISTER is a refresh
};

struct Due {
    double at;
    std::uint32_t phone;
    bool retransmission_check;
    bool operator>(const Due& o) const { return at > o.at; }
};

int phone_proc(const Options& o, int k, long first, long last) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const std::size_t colon = o.target.rfind(':');
    sockaddr_in target{};
    target.sin_family = AF_INET;
    if (colon == std::string::npos || !loopback_v4(o.target.substr(0, colon), target.sin_addr))
        usage("--target: a loopback IPv4 HOST:PORT");
    target.sin_port = htons(static_cast<std::uint16_t>(std::atoi(o.target.c_str() + colon + 1)));

    const int ep = epoll_create1(0);
    if (ep < 0) {
        std::perror("epoll_create1");
        return 1;
    }
    std::vector<Phone> phones(static_cast<std::size_t>(last - first));
    for (long i = first; i < last; ++i) {
        Phone& p = phones[static_cast<std::size_t>(i - first)];
        p.addr = o.net + "." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        p.user = std::to_string(200000 + i);
        p.call_id = "reg" + std::to_string(i) + "-" + std::to_string(getpid()) + "@" + p.addr;
        sockaddr_in local{};
        local.sin_family = AF_INET;
        local.sin_port = htons(5060);
        if (!loopback_v4(p.addr, local.sin_addr)) usage("--net: a loopback prefix (127.x)");
        p.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p.fd < 0 || bind(p.fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
            std::fprintf(stderr, "phones[%d]: socket for %s: %s\n", k, p.addr.c_str(),
                         std::strerror(errno));
            return 1;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<std::uint32_t>(i - first);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) != 0) {
            std::perror("epoll_ctl");
            return 1;
        }
    }

    std::priority_queue<Due, std::vector<Due>, std::greater<>> due;
    const double t0 = now_s() + 0.5;
    for (std::size_t j = 0; j < phones.size(); ++j)
        due.push({t0 + static_cast<double>(static_cast<long>(j) * o.procs + k) / o.rate,
                  static_cast<std::uint32_t>(j), false});
    Counts counts;
    const double end = o.duration > 0 ? now_s() + o.duration : 1e300;
    const std::string status_path =
        o.status.empty() ? std::string() : o.status + "/phones-" + std::to_string(k);
    double next_status = 0;
    std::string msg;
    msg.reserve(1024);

    auto send_register = [&](std::uint32_t j, double now, bool retransmission) {
        Phone& p = phones[j];
        if (!retransmission) {
            ++p.cseq;
            p.refreshing = p.registered;
            if (p.refreshing) ++counts.refreshes;
        }
        const std::string cseq = std::to_string(p.cseq);
        msg.clear();
        msg += "REGISTER sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP ";
        msg += p.addr + ":5060;branch=z9hG4bK" + std::to_string(j) + "." + cseq + ";rport\r\n";
        msg += "From: <sip:" + p.user + "@pbx.example>;tag=t" + std::to_string(j) + "\r\n";
        msg += "To: <sip:" + p.user + "@pbx.example>\r\n";
        msg += "Call-ID: " + p.call_id + "\r\n";
        msg += "CSeq: " + cseq + " REGISTER\r\n";
        msg += "Contact: <sip:" + p.user + "@" + p.addr + ":5060>\r\n";
        msg += "Expires: " + std::to_string(o.expires) + "\r\n";
        msg += "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        if (sendto(p.fd, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&target),
                   sizeof target) >= 0)
            ++counts.sent;
        if (!retransmission) {
            p.pending = now;
            p.retries = 0;
        }
        p.retry_at = now + 0.5 * static_cast<double>(1 << p.retries);
        due.push({p.retry_at, j, true});
    };

    constexpr int kEvents = 256;
    epoll_event events[kEvents];
    char buf[65536];
    while (!stop_requested) {
        double now = now_s();
        if (now >= end) break;
        while (!due.empty() && due.top().at <= now) {
            const Due d = due.top();
            due.pop();
            Phone& p = phones[d.phone];
            if (!d.retransmission_check) {
                send_register(d.phone, now, false);
            } else if (p.pending != 0 && now >= p.retry_at) {
                if (p.retries >= 4) {
                    ++counts.timeouts;
                    p.pending = 0;
                    due.push({now + 5.0, d.phone, false});
                } else {
                    ++p.retries;
                    send_register(d.phone, now, true);
                }
            }
        }
        double wait = 0.2;
        if (!due.empty()) wait = std::min(wait, std::max(0.0, due.top().at - now));
        wait = std::min(wait, end - now);
        const int n = epoll_wait(ep, events, kEvents, static_cast<int>(wait * 1000));
        if (n < 0 && errno != EINTR) {
            std::perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; ++e) {
            const std::uint32_t j = events[e].data.u32;
            Phone& p = phones[j];
            for (int r = 0; r < 16; ++r) {  // bounded: a socket's queue holds a few messages
                const ssize_t got = recv(p.fd, buf, sizeof buf, 0);
                if (got <= 0) break;
                const std::string_view m(buf, static_cast<std::size_t>(got));
                if (m.starts_with("SIP/2.0 ") && m.size() >= 11) {
                    const int status = std::atoi(std::string(m.substr(8, 3)).c_str());
                    long cseq = -1;
                    for_each_header(m, [&](std::string_view line) {
                        if (iprefix(line, "CSeq"))
                            cseq = std::atol(std::string(value_of(line)).c_str());
                    });
                    if (status < 200 || p.pending == 0 || cseq != p.cseq) continue;
                    p.pending = 0;
                    const double t = now_s();
                    if (status < 300) {
                        ++counts.ok;
                        double wait_s = o.refresh;
                        if (p.refreshing) ++counts.refreshed;
                        if (!p.registered) {
                            p.registered = true;
                            ++counts.registered;
                            wait_s = o.hold > 0 ? o.hold : o.refresh;
                        }
                        due.push({t + wait_s, j, false});
                    } else {
                        ++counts.refused;
                        due.push({t + 5.0, j, false});
                    }
                } else if (m.starts_with("OPTIONS ")) {
                    ++counts.options;
                    const std::string a = answer_200(m);
                    (void)sendto(p.fd, a.data(), a.size(), 0,
                                 reinterpret_cast<const sockaddr*>(&target), sizeof target);
                }
            }
        }
        if (!status_path.empty() && now >= next_status) {
            next_status = now + 1.0;
            write_status(status_path, counts);
        }
    }
    write_status(status_path, counts);
    for (Phone& p : phones) close(p.fd);
    close(ep);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc) usage("each option takes a value");
        const char* v = argv[++i];
        if (a == "--target")
            o.target = v;
        else if (a == "--count")
            o.count = std::atol(v);
        else if (a == "--procs")
            o.procs = std::atoi(v);
        else if (a == "--net")
            o.net = v;
        else if (a == "--rate")
            o.rate = std::atof(v);
        else if (a == "--expires")
            o.expires = std::atol(v);
        else if (a == "--refresh")
            o.refresh = std::atof(v);
        else if (a == "--hold")
            o.hold = std::atof(v);
        else if (a == "--duration")
            o.duration = std::atof(v);
        else if (a == "--status")
            o.status = v;
        else
            usage("unknown option");
    }
    if (o.target.empty() || o.count <= 0) usage("--target and --count are required");
    if (o.count > 250L * 256) usage("--count: at most 64000 phones (addresses NET.0-255.1-250)");
    if (o.procs < 1 || o.procs > 64 || o.rate <= 0 || o.refresh <= 0 || o.duration < 0)
        usage("--procs 1..64, --rate, --refresh > 0, --duration >= 0");

    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    const long per = (o.count + o.procs - 1) / o.procs;
    std::vector<pid_t> kids;
    for (int k = 0; k < o.procs; ++k) {
        const long first = k * per, last = std::min(o.count, (k + 1) * per);
        if (first >= last) break;
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("fork");
            break;
        }
        if (pid == 0) _exit(phone_proc(o, k, first, last));
        kids.push_back(pid);
    }
    int rc = kids.empty() ? 1 : 0;
    bool forwarded = false;
    for (pid_t pid : kids) {
        int st = 0;
        for (;;) {
            if (waitpid(pid, &st, 0) == pid) break;
            if (errno != EINTR) break;
            if (stop_requested && !forwarded) {  // forward the stop to every phone process
                forwarded = true;
                for (pid_t p : kids) kill(p, SIGTERM);
            }
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) != 0) rc = 1;
    }
    return rc;
}

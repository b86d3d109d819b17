#include "sbc/control.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "sbc/daemon.hpp"

namespace sbc {

namespace {

constexpr std::size_t kMaxLine = 4096;

bool fill_address(const std::string& path, sockaddr_un& addr) {
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
    std::memcpy(addr.sun_path, path.data(), path.size());
    return true;
}

bool wait_fd(int fd, short events, int timeout_ms) {
    pollfd p{fd, events, 0};
    int r;
    do {
        r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        if (!wait_fd(fd, POLLOUT, 2000)) return;
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

ControlServer::~ControlServer() {
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
}

base::Result<void> ControlServer::open(const std::string& path, unsigned mode,
                                       std::optional<gid_t> group) {
    sockaddr_un addr;
    if (!fill_address(path, addr))
        return base::make_error("control socket path '" + path + "' is empty or too long");
    // A socket file nobody answers on is a leftover of a dead daemon: replace it. One that
    // answers belongs to a running daemon: refuse to steal it.
    if (::access(path.c_str(), F_OK) == 0) {
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive =
            probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        if (probe >= 0) ::close(probe);
        if (alive) return base::make_error("another daemon is listening on '" + path + "'");
        ::unlink(path.c_str());
    }
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    // The file is created owner-only and opened up to `mode` once its group is set: nobody
    // outside the group can connect in between.
    const mode_t old_umask = ::umask(0177);
    const int bound = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old_umask);
    if (bound != 0 || ::listen(fd_, 16) != 0) {
        std::string err = std::strerror(errno);
        ::close(fd_);
        fd_ = -1;
        return base::make_error("cannot listen on '" + path + "': " + err);
    }
    path_ = path;
    if ((group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) ||
        ::chmod(path.c_str(), static_cast<mode_t>(mode & 0777)) != 0) {
        std::string err = std::strerror(errno);
        return base::make_error("control socket '" + path +
                                "': cannot set its group or mode: " + err);
    }
    group_ = group;
    return {};
}

std::string ControlServer::dispatch(std::string_view line) const {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    auto space = line.find(' ');
    std::string_view name = line.substr(0, space);
    std::string_view args =
        space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
    if (name == "help" || name.empty()) {
        std::string out = "commands:";
        for (const auto& [n, h] : handlers_) out += " " + n;
        return out + " help\n";
    }
    auto it = handlers_.find(name);
    if (it == handlers_.end())
        return "error: unknown command '" + std::string(name) + "' (try help)\n";
    std::string reply = it->second(args);
    if (reply.empty() || reply.back() != '\n') reply += '\n';
    return reply;
}

namespace {

// The peer's uid, and whether it may use the socket: root, the daemon's own user, or a member
// (primary or supplementary group) of the socket's group.
bool peer_allowed(int c, std::optional<gid_t> group, ucred& who) {
    socklen_t len = sizeof who;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &who, &len) != 0) return false;
    if (who.uid == 0 || who.uid == ::geteuid()) return true;
    if (!group) return false;
    if (who.gid == *group) return true;
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 4; ++attempt) {
        socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(c, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
            groups.resize(glen / sizeof(gid_t));
            for (gid_t g : groups)
                if (g == *group) return true;
            return false;
        }
        if (errno != ERANGE) return false;
        groups.resize(glen / sizeof(gid_t) + 16);  // glen says how much is needed
    }
    return false;
}

}  // namespace

void ControlServer::serve_one() {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    ucred who{};
    if (!peer_allowed(c, group_, who)) {
        ++refused_;
        spdlog::warn("control socket: refused a command from uid {} pid {}", who.uid, who.pid);
        write_all(c, "error: permission denied: uid " + std::to_string(who.uid) +
                         " is not root, the daemon's user or in the control group\n");
        ::close(c);
        return;
    }
    std::string line;
    char buf[512];
    // One line, read with a deadline so a silent client cannot stall the daemon.
    while (line.find('\n') == std::string::npos && line.size() < kMaxLine) {
        if (!wait_fd(c, POLLIN, 1000)) break;
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        line.append(buf, static_cast<std::size_t>(n));
    }
    if (auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
    write_all(c, line.size() >= kMaxLine ? "error: line too long\n" : dispatch(line));
    ::close(c);
}

base::Result<std::string> control_request(const std::string& socket_path, std::string_view line,
                                          int timeout_ms) {
    sockaddr_un addr;
    if (!fill_address(socket_path, addr))
        return base::make_error("control socket path '" + socket_path + "' is empty or too long");
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::string err = std::strerror(errno);
        ::close(fd);
        return base::make_error("cannot connect to '" + socket_path + "': " + err +
                                " (is `sbc run` running?)");
    }
    std::string req(line);
    req += '\n';
    write_all(fd, req);
    std::string reply;
    char buf[4096];
    for (;;) {
        if (!wait_fd(fd, POLLIN, timeout_ms)) {
            ::close(fd);
            return base::make_error("no reply from '" + socket_path + "' within " +
                                    std::to_string(timeout_ms) + " ms");
        }
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reply.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return reply;
}

}  // namespace sbc

#include "sbc/control.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

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

base::Result<void> ControlServer::open(const std::string& path) {
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
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 16) != 0) {
        std::string err = std::strerror(errno);
        ::close(fd_);
        fd_ = -1;
        return base::make_error("cannot listen on '" + path + "': " + err);
    }
    path_ = path;
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

void ControlServer::serve_one() {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
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

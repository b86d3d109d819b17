#include "sbc/control.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
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

namespace {

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// Seconds left until `until` (rounded up; 0 once past).
long long seconds_left(base::Nanos until, base::Nanos now) {
    return until <= now ? 0 : (until - now + base::seconds(1) - 1) / base::seconds(1);
}

std::string flow_text(const signaling::Flow& f) {
    std::string t(signaling::transport_name(f.transport));
    for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "transport=" + t + " remote=" + f.remote.to_string() +
           " connection=" + std::to_string(f.connection);
}

}  // namespace

std::string registrations_text(const signaling::Registrations* regs, std::string_view args,
                               base::Nanos now) {
    if (!regs) return "registrations=0 (registrations are not forwarded)\n";
    const std::string_view aor = trimmed(args);
    std::string out;
    std::size_t n = 0;
    for (const std::string& t : regs->tokens(aor)) {
        const auto b = regs->binding(t);
        if (!b) continue;
        ++n;
        out += "aor=" + b->aor + " token=" + t + " " + flow_text(b->flow) +
               " client_expires_s=" + std::to_string(seconds_left(b->client_until, now)) +
               " registrar_expires_s=" + std::to_string(seconds_left(b->registrar_until, now)) +
               " contact=" + b->contact + "\n";
    }
    out += "registrations=" + std::to_string(n) + "\n";
    return out;
}

std::string registration_command(signaling::Registrations* regs, std::string_view args,
                                 base::Nanos now) {
    args = trimmed(args);
    const std::size_t sp = args.find(' ');
    const std::string_view verb = args.substr(0, sp);
    const std::string_view what = sp == std::string_view::npos ? "" : trimmed(args.substr(sp + 1));
    if ((verb != "show" && verb != "remove") || what.empty() ||
        what.find(' ') != std::string_view::npos)
        return "error: usage: registration show TOKEN | registration remove TOKEN|AOR\n";
    if (!regs) return "error: registrations are not forwarded on this node\n";
    if (verb == "show") {
        const auto b = regs->binding(what);
        if (!b) return "error: no binding with token " + std::string(what) + "\n";
        std::string f = flow_text(b->flow);
        for (char& c : f)
            if (c == ' ') c = '\n';
        return "token=" + std::string(what) + "\naor=" + b->aor + "\ncontact=" + b->contact + "\n" +
               f + "\nlistener=" + std::to_string(b->flow.listener) +
               "\nclient_expires_s=" + std::to_string(seconds_left(b->client_until, now)) +
               "\nregistrar_expires_s=" + std::to_string(seconds_left(b->registrar_until, now)) +
               "\n";
    }
    // A token, or every binding of an address of record (user@host).
    std::vector<std::string> tokens;
    if (regs->binding(what))
        tokens.emplace_back(what);
    else if (what.find('@') != std::string_view::npos)
        tokens = regs->tokens(what);
    if (tokens.empty()) return "error: no binding " + std::string(what) + "\n";
    std::size_t removed = 0;
    for (const auto& t : tokens) removed += regs->remove_binding(t) ? 1 : 0;
    return "ok removed=" + std::to_string(removed) + "\n";
}

}  // namespace sbc

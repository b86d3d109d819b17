#pragma once
// Internal to sbc/: the unix control socket of `sbc run` (line protocol: one command line in,
// a text reply out, then the server closes the connection).
#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "sbc/signaling/registrations.hpp"

namespace sbc {

// `sbc ctl registrations [AOR]`: one line per binding (address of record, contact token, the
// flow's transport, address and connection, expiry toward the client and toward the
// registrar in seconds, the client's Contact), then `registrations=N`. `regs` null: the node
// does not forward registrations.
std::string registrations_text(const signaling::Registrations* regs, std::string_view args,
                               base::Nanos now);
// `sbc ctl registration show TOKEN | remove TOKEN|AOR`.
std::string registration_command(signaling::Registrations* regs, std::string_view args,
                                 base::Nanos now);

class ControlServer {
  public:
    using Handler = std::function<std::string(std::string_view args)>;

    ~ControlServer();
    // Binds and listens on `path` (a stale socket file left by a dead daemon is replaced); the
    // socket file gets `mode` and, when given, `group`.
    base::Result<void> open(const std::string& path, unsigned mode = 0600,
                            std::optional<gid_t> group = std::nullopt);
    int fd() const { return fd_; }
    void add(std::string name, Handler handler) { handlers_[std::move(name)] = std::move(handler); }
    // Accepts and serves one pending connection (call when fd() is readable). A peer that is
    // not root, not the daemon's user and not in the socket's group (SO_PEERCRED,
    // SO_PEERGROUPS) gets a refusal whatever the file's mode let through.
    void serve_one();
    std::uint64_t refused() const { return refused_; }
    // The reply to one command line (also used by tests).
    std::string dispatch(std::string_view line) const;

  private:
    int fd_ = -1;
    std::string path_;
    std::optional<gid_t> group_;
    std::uint64_t refused_ = 0;
    std::map<std::string, Handler, std::less<>> handlers_;
};

}  // namespace sbc

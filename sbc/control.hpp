#pragma once
// Internal to sbc/: the unix control socket of `sbc run` (line protocol: one command line in,
// a text reply out, then the server closes the connection).
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/result.hpp"

namespace sbc {

class ControlServer {
  public:
    using Handler = std::function<std::string(std::string_view args)>;

    ~ControlServer();
    // Binds and listens on `path` (a stale socket file left by a dead daemon is replaced).
    base::Result<void> open(const std::string& path);
    int fd() const { return fd_; }
    void add(std::string name, Handler handler) { handlers_[std::move(name)] = std::move(handler); }
    // Accepts and serves one pending connection (call when fd() is readable).
    void serve_one();
    // The reply to one command line (also used by tests).
    std::string dispatch(std::string_view line) const;

  private:
    int fd_ = -1;
    std::string path_;
    std::map<std::string, Handler, std::less<>> handlers_;
};

}  // namespace sbc

#pragma once
// TLS termination for the stream transport: the only part of the project that includes
// OpenSSL. A ServerContext is one immutable server configuration (certificate chain and key,
// versions, ciphers, groups, client verification, session resumption); a Session is one
// non-blocking server-side TLS connection on a socket the caller owns. A certificate reload
// builds a new ServerContext: connections already established keep the one they started with.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/base.hpp"

namespace sbc::tls {

struct ServerSettings {
    std::string certificate_chain;    // PEM: the leaf first, then intermediates
    std::string private_key;          // PEM
    std::string min_version = "1.2";  // "1.2" | "1.3"
    // TLS 1.2 cipher list (OpenSSL syntax); "" = kDefaultCiphers.
    std::string ciphers;
    // TLS 1.3 ciphersuites; "" = kDefaultCiphersuites.
    std::string ciphersuites;
    // Key exchange groups; "" = kDefaultGroups.
    std::string groups;
    // Client certificates: verified against this CA file when set; required when
    // `require_client_certificate`; when `client_names` is not empty the certificate must name
    // one of them (subjectAltName DNS, or the subject CN when there is no DNS name).
    std::string client_ca;
    bool require_client_certificate = false;
    std::vector<std::string> client_names;
};

// Forward secrecy and AEAD only.
inline constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
inline constexpr const char* kDefaultCiphersuites =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
inline constexpr const char* kDefaultGroups = "X25519:P-256:P-384";

class ServerContext {
  public:
    // Reads the chain and key (and the client CA), checks that the key matches the
    // certificate and that every list is understood; the error says which file or setting.
    static base::Result<std::shared_ptr<ServerContext>> create(const ServerSettings& s);
    ~ServerContext();
    ServerContext(const ServerContext&) = delete;
    ServerContext& operator=(const ServerContext&) = delete;

    // "subject=...; not_after=...; sha256=AB:CD:..." of the leaf certificate, for logs and
    // `sbc ctl stats`.
    const std::string& certificate_summary() const { return summary_; }
    const ServerSettings& settings() const { return settings_; }

  private:
    friend class Session;
    ServerContext() = default;
    void* ctx_ = nullptr;  // SSL_CTX
    ServerSettings settings_;
    std::string summary_;
};

// The client side: TLS connections the SBC opens to next hops and trunks. The server's
// certificate is always verified, against `ca_file` (else the system's trust store), and must
// name the host the SBC connects to (a DNS name, also sent as SNI, or the IP address).
struct ClientSettings {
    std::string ca_file;  // PEM; "" = the system's default trust store
    // Presented when a server asks for a client certificate (mutual TLS with a trunk); "" =
    // none.
    std::string certificate_chain;
    std::string private_key;
    std::string min_version = "1.2";
    std::string ciphers, ciphersuites, groups;  // "" = the defaults above
};

// Session resumption (RFC 5077 tickets and TLS 1.2 session ids, RFC 8446 §2.2 tickets): the
// latest session each destination gave is kept and offered on the next connection there, so
// that reconnecting to a trunk or next hop skips the certificate exchange and its signatures.
// At most kMaxCachedSessions destinations (one more replaces an arbitrary one). A context and
// its sessions belong to the one thread that runs its connections.
class ClientContext {
  public:
    static constexpr std::size_t kMaxCachedSessions = 1024;
    static base::Result<std::shared_ptr<ClientContext>> create(const ClientSettings& s);
    ~ClientContext();
    ClientContext(const ClientContext&) = delete;
    ClientContext& operator=(const ClientContext&) = delete;
    // Destinations with a session to offer.
    std::size_t cached_sessions() const;

  private:
    friend class Session;
    friend struct SessionCallbacks;
    struct SessionCache;
    ClientContext();
    void* ctx_ = nullptr;  // SSL_CTX
    std::unique_ptr<SessionCache> cache_;
};

class Session {
  public:
    enum class Io : std::uint8_t { done, want_read, want_write, closed, failed };
    // Why a handshake failed, for the refusal counters.
    enum class Failure : std::uint8_t {
        none,
        protocol,
        client_certificate,
        client_name,
        server_certificate,  // client side: the server's certificate or its name did not verify
    };

    Session(std::shared_ptr<const ServerContext> ctx, int fd);
    // Client side on a connected socket: `host` is a DNS name (sent as SNI and verified) or an
    // IP address (verified against the certificate's IP addresses; no SNI, RFC 6066 §3).
    // `destination` names where it goes (address, port and `host`): the session the server
    // gave the last connection there is offered, and the one this connection gets is kept.
    Session(std::shared_ptr<const ClientContext> ctx, int fd, const std::string& host,
            std::string destination = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Io handshake();
    // Reads up to `cap` bytes into `buf`; `n` is what was read when done.
    Io read(char* buf, std::size_t cap, std::size_t& n);
    // Writes from `data`; `n` is what was written when done (may be less than `len`).
    Io write(const char* data, std::size_t len, std::size_t& n);
    // Sends close_notify (best effort, never blocks).
    void shutdown();

    // The handshake resumed a session (server: the client offered one we took; client: the
    // server took the one we offered).
    bool resumed() const;
    Failure failure() const { return failure_; }
    const std::string& error() const { return error_; }  // the last failure, as text
    std::string version() const;                         // "TLSv1.3"

  private:
    Io result(int ret, const char* op);
    std::shared_ptr<const ServerContext> ctx_;
    std::shared_ptr<const ClientContext> client_ctx_;
    std::string destination_;  // client side: the key of its cached session
    void* ssl_ = nullptr;      // SSL
    friend struct SessionCallbacks;
    Failure failure_ = Failure::none;
    std::string error_;
};

}  // namespace sbc::tls

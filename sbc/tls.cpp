#include "sbc/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <unordered_map>

namespace sbc::tls {

namespace {

SSL_CTX* as_ctx(void* p) {
    return static_cast<SSL_CTX*>(p);
}
SSL* as_ssl(void* p) {
    return static_cast<SSL*>(p);
}

// The oldest error of this thread's OpenSSL queue as text (then the queue is emptied).
std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    std::string out;
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        out = buf;
    } else {
        out = "unknown error";
    }
    ERR_clear_error();
    return out;
}

std::string summary_of(X509* cert) {
    if (!cert) return "no certificate";
    std::string out = "subject=";
    char name[512];
    X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
    out += name;
    if (BIO* b = BIO_new(BIO_s_mem())) {
        if (ASN1_TIME_print(b, X509_get0_notAfter(cert)) == 1) {
            char* data = nullptr;
            const long n = BIO_get_mem_data(b, &data);
            out += "; not_after=";
            out.append(data, static_cast<std::size_t>(n));
        }
        BIO_free(b);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_digest(cert, EVP_sha256(), md, &len) == 1) {
        out += "; sha256=";
        for (unsigned i = 0; i < len; ++i) {
            char hex[4];
            std::snprintf(hex, sizeof hex, i ? ":%02X" : "%02X", md[i]);
            out += hex;
        }
    }
    return out;
}

}  // namespace

base::Result<std::shared_ptr<ServerContext>> ServerContext::create(const ServerSettings& s) {
    ERR_clear_error();
    std::shared_ptr<ServerContext> out(new ServerContext());
    out->settings_ = s;
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return base::make_error("TLS: " + openssl_error());
    out->ctx_ = ctx;
    auto fail = [](std::string what) { return base::make_error(what + ": " + openssl_error()); };

    if (s.min_version != "1.2" && s.min_version != "1.3")
        return base::make_error("tls.min_version: \"" + s.min_version + "\" (1.2 or 1.3)");
    SSL_CTX_set_min_proto_version(ctx, s.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    // Renegotiation asked by a client is a cheap way to make the server compute: refused.
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    // Idle connections give their read/write buffers back (thousands of phones stay connected).
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_max_cert_list(ctx, 32 * 1024);  // a client's chain cannot take more
    if (SSL_CTX_set_cipher_list(ctx, s.ciphers.empty() ? kDefaultCiphers : s.ciphers.c_str()) != 1)
        return fail("tls.ciphers \"" + s.ciphers + "\"");
    if (SSL_CTX_set_ciphersuites(
            ctx, s.ciphersuites.empty() ? kDefaultCiphersuites : s.ciphersuites.c_str()) != 1)
        return fail("tls.ciphersuites \"" + s.ciphersuites + "\"");
    if (SSL_CTX_set1_groups_list(ctx, s.groups.empty() ? kDefaultGroups : s.groups.c_str()) != 1)
        return fail("tls.groups \"" + s.groups + "\"");
    if (SSL_CTX_use_certificate_chain_file(ctx, s.certificate_chain.c_str()) != 1)
        return fail("tls.certificate_chain " + s.certificate_chain);
    if (SSL_CTX_use_PrivateKey_file(ctx, s.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
        return fail("tls.private_key " + s.private_key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail("tls.private_key " + s.private_key + " does not match the certificate");
    // Resumption: a server-side cache (TLS 1.2 session IDs) and tickets (TLS 1.2 and 1.3,
    // keys of this context: a certificate reload starts new ones).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 8192);
    static const unsigned char kSessionContext[] = "sbc-sip";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
    if (!s.client_ca.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, s.client_ca.c_str(), nullptr) != 1)
            return fail("client_ca " + s.client_ca);
        if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.client_ca.c_str()))
            SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (s.require_client_certificate) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, nullptr);
        if (!s.client_names.empty()) {
            // The names are checked by the chain verification itself (a mismatch fails the
            // handshake with a certificate alert).
            X509_VERIFY_PARAM* p = SSL_CTX_get0_param(ctx);
            X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            for (std::size_t i = 0; i < s.client_names.size(); ++i) {
                const auto& n = s.client_names[i];
                const int ok = i == 0 ? X509_VERIFY_PARAM_set1_host(p, n.c_str(), n.size())
                                      : X509_VERIFY_PARAM_add1_host(p, n.c_str(), n.size());
                if (ok != 1) return fail("client_names \"" + n + "\"");
            }
        }
    } else if (s.require_client_certificate) {
        return base::make_error("require_client_certificate needs a client_ca");
    }
    out->summary_ = summary_of(SSL_CTX_get0_certificate(ctx));
    return out;
}

// The sessions servers gave, one per destination (the latest).
struct ClientContext::SessionCache {
    std::unordered_map<std::string, SSL_SESSION*> by_destination;
    ~SessionCache() {
        for (auto& [k, s] : by_destination) SSL_SESSION_free(s);
    }
    SSL_SESSION* find(const std::string& destination) const {
        auto it = by_destination.find(destination);
        return it == by_destination.end() ? nullptr : it->second;
    }
    void put(const std::string& destination, SSL_SESSION* s) {
        auto it = by_destination.find(destination);
        if (it != by_destination.end()) {
            SSL_SESSION_free(it->second);
            it->second = s;
            return;
        }
        if (by_destination.size() >= ClientContext::kMaxCachedSessions) {
            SSL_SESSION_free(by_destination.begin()->second);
            by_destination.erase(by_destination.begin());
        }
        by_destination.emplace(destination, s);
    }
    void erase(const std::string& destination) {
        auto it = by_destination.find(destination);
        if (it == by_destination.end()) return;
        SSL_SESSION_free(it->second);
        by_destination.erase(it);
    }
};

struct SessionCallbacks {
    // OpenSSL hands every session the server establishes or issues a ticket for (TLS 1.3:
    // after the handshake, when the NewSessionTicket is read). Returning 1 keeps its reference.
    static int new_session(SSL* ssl, SSL_SESSION* session) {
        auto* s = static_cast<Session*>(SSL_get_app_data(ssl));
        if (!s || !s->client_ctx_ || s->destination_.empty()) return 0;
        if (SSL_SESSION_is_resumable(session) != 1) return 0;
        s->client_ctx_->cache_->put(s->destination_, session);
        return 1;
    }
};

ClientContext::ClientContext() : cache_(std::make_unique<SessionCache>()) {}

std::size_t ClientContext::cached_sessions() const {
    return cache_->by_destination.size();
}

base::Result<std::shared_ptr<ClientContext>> ClientContext::create(const ClientSettings& s) {
    ERR_clear_error();
    std::shared_ptr<ClientContext> out(new ClientContext());
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return base::make_error("TLS: " + openssl_error());
    out->ctx_ = ctx;
    auto fail = [](std::string what) { return base::make_error(what + ": " + openssl_error()); };
    if (s.min_version != "1.2" && s.min_version != "1.3")
        return base::make_error("tls.min_version: \"" + s.min_version + "\" (1.2 or 1.3)");
    SSL_CTX_set_min_proto_version(ctx, s.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_max_cert_list(ctx, 32 * 1024);
    // Sessions are kept per destination by SessionCache, not in OpenSSL's internal store
    // (which a client does not look up).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &SessionCallbacks::new_session);
    if (SSL_CTX_set_cipher_list(ctx, s.ciphers.empty() ? kDefaultCiphers : s.ciphers.c_str()) != 1)
        return fail("tls.ciphers \"" + s.ciphers + "\"");
    if (SSL_CTX_set_ciphersuites(
            ctx, s.ciphersuites.empty() ? kDefaultCiphersuites : s.ciphersuites.c_str()) != 1)
        return fail("tls.ciphersuites \"" + s.ciphersuites + "\"");
    if (SSL_CTX_set1_groups_list(ctx, s.groups.empty() ? kDefaultGroups : s.groups.c_str()) != 1)
        return fail("tls.groups \"" + s.groups + "\"");
    if (!s.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1)
            return fail("tls.server_ca " + s.ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return fail("TLS: the system's trust store");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!s.certificate_chain.empty() && !s.private_key.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx, s.certificate_chain.c_str()) != 1)
            return fail("tls.certificate_chain " + s.certificate_chain);
        if (SSL_CTX_use_PrivateKey_file(ctx, s.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
            return fail("tls.private_key " + s.private_key);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return fail("tls.private_key " + s.private_key + " does not match the certificate");
    }
    return out;
}

ClientContext::~ClientContext() {
    if (ctx_) SSL_CTX_free(as_ctx(ctx_));
}

ServerContext::~ServerContext() {
    if (ctx_) SSL_CTX_free(as_ctx(ctx_));
}

Session::Session(std::shared_ptr<const ServerContext> ctx, int fd) : ctx_(std::move(ctx)) {
    SSL* ssl = SSL_new(as_ctx(ctx_->ctx_));
    if (!ssl) return;
    ssl_ = ssl;
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
}

Session::Session(std::shared_ptr<const ClientContext> ctx, int fd, const std::string& host,
                 std::string destination)
    : client_ctx_(std::move(ctx)), destination_(std::move(destination)) {
    SSL* ssl = SSL_new(as_ctx(client_ctx_->ctx_));
    if (!ssl) return;
    ssl_ = ssl;
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    SSL_set_app_data(ssl, this);
    // The destination's session, when it has one (the same name verified: the key names it).
    if (!destination_.empty())
        if (SSL_SESSION* cached = client_ctx_->cache_->find(destination_))
            if (SSL_SESSION_is_resumable(cached) == 1) SSL_set_session(ssl, cached);
    X509_VERIFY_PARAM* p = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    // An address is checked against the certificate's IP entries; a name is sent as SNI and
    // checked against its DNS names (RFC 5922 §7.2 for SIP over TLS).
    if (X509_VERIFY_PARAM_set1_ip_asc(p, host.c_str()) != 1) {
        SSL_set_tlsext_host_name(ssl, host.c_str());
        X509_VERIFY_PARAM_set1_host(p, host.c_str(), host.size());
    }
    ERR_clear_error();
}

Session::~Session() {
    if (ssl_) SSL_free(as_ssl(ssl_));
}

Session::Io Session::result(int ret, const char* op) {
    const int e = SSL_get_error(as_ssl(ssl_), ret);
    switch (e) {
        case SSL_ERROR_WANT_READ:
            return Io::want_read;
        case SSL_ERROR_WANT_WRITE:
            return Io::want_write;
        case SSL_ERROR_ZERO_RETURN:
            return Io::closed;
        case SSL_ERROR_SYSCALL:
            if (ERR_peek_error() == 0) {
                error_ = std::string(op) + ": connection closed";
                return Io::closed;
            }
            break;
        default:
            break;
    }
    const unsigned long code = ERR_peek_last_error();
    const int reason = ERR_GET_REASON(code);
    failure_ = Failure::protocol;
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        failure_ = Failure::client_certificate;
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && client_ctx_) {
        failure_ = Failure::server_certificate;
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        failure_ = SSL_get_verify_result(as_ssl(ssl_)) == X509_V_ERR_HOSTNAME_MISMATCH
                       ? Failure::client_name
                       : Failure::client_certificate;
    }
    error_ = std::string(op) + ": " + openssl_error();
    // A destination whose handshake failed offers nothing stale next time.
    if (client_ctx_ && !destination_.empty()) client_ctx_->cache_->erase(destination_);
    return Io::failed;
}

Session::Io Session::handshake() {
    if (!ssl_) {
        error_ = "handshake: no TLS session";
        failure_ = Failure::protocol;
        return Io::failed;
    }
    ERR_clear_error();
    const int r = SSL_do_handshake(as_ssl(ssl_));
    return r == 1 ? Io::done : result(r, "handshake");
}

Session::Io Session::read(char* buf, std::size_t cap, std::size_t& n) {
    n = 0;
    ERR_clear_error();
    const int r = SSL_read_ex(as_ssl(ssl_), buf, cap, &n);
    return r == 1 ? Io::done : result(r, "read");
}

Session::Io Session::write(const char* data, std::size_t len, std::size_t& n) {
    n = 0;
    ERR_clear_error();
    const int r = SSL_write_ex(as_ssl(ssl_), data, len, &n);
    return r == 1 ? Io::done : result(r, "write");
}

void Session::shutdown() {
    if (!ssl_ || !SSL_is_init_finished(as_ssl(ssl_))) return;
    ERR_clear_error();
    (void)SSL_shutdown(as_ssl(ssl_));
    ERR_clear_error();
}

bool Session::resumed() const {
    return ssl_ && SSL_session_reused(as_ssl(ssl_)) == 1;
}

std::string Session::version() const {
    return ssl_ ? SSL_get_version(as_ssl(ssl_)) : "";
}

}  // namespace sbc::tls

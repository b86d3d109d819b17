// TLS server contexts (sbc/tls.hpp): what loads, and what is refused with the file or setting
// named. Certificates are made with the openssl command line in a temporary directory.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "sbc/tls.hpp"

using namespace sbc;

namespace {

struct Certs {
    std::string dir;
    Certs() {
        dir = "/tmp/sbc_tls_test_" + std::to_string(::getpid());
        const std::string gen =
            "mkdir -p " + dir + " && cd " + dir +
            " && for n in a b; do openssl req -x509 -newkey ec -pkeyopt "
            "ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.pem -days 1 -subj "
            "/CN=sbc-$n.test >/dev/null 2>&1 || exit 1; done";
        REQUIRE(std::system(gen.c_str()) == 0);
    }
    ~Certs() { (void)std::system(("rm -rf " + dir).c_str()); }
    tls::ServerSettings settings(const char* cert = "a", const char* key = "a") const {
        tls::ServerSettings s;
        s.certificate_chain = dir + "/" + cert + ".pem";
        s.private_key = dir + "/" + key + ".key";
        return s;
    }
};

}  // namespace

TEST_CASE("tls: a chain and its key load; the summary names the certificate") {
    Certs c;
    auto ctx = tls::ServerContext::create(c.settings());
    REQUIRE(ctx);
    const auto& summary = (*ctx)->certificate_summary();
    CHECK(summary.find("CN=sbc-a.test") != std::string::npos);
    CHECK(summary.find("sha256=") != std::string::npos);
    CHECK(summary.find("not_after=") != std::string::npos);
}

TEST_CASE("tls: a key of another certificate, a missing file, garbage: refused by name") {
    Certs c;
    auto mismatch = tls::ServerContext::create(c.settings("a", "b"));
    REQUIRE_FALSE(mismatch);
    // Named by the key's file, with OpenSSL's reason ("key values mismatch").
    CHECK(mismatch.error().message.find("tls.private_key " + c.dir + "/b.key") !=
          std::string::npos);
    CHECK(mismatch.error().message.find("mismatch") != std::string::npos);
    auto s = c.settings();
    s.certificate_chain = c.dir + "/missing.pem";
    auto missing = tls::ServerContext::create(s);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message.find("tls.certificate_chain " + s.certificate_chain) !=
          std::string::npos);
    std::ofstream(c.dir + "/garbage.pem") << "not a certificate\n";
    s.certificate_chain = c.dir + "/garbage.pem";
    CHECK_FALSE(tls::ServerContext::create(s));
}

TEST_CASE("tls: versions, cipher lists and groups are checked") {
    Certs c;
    auto s = c.settings();
    s.min_version = "1.0";
    auto v = tls::ServerContext::create(s);
    REQUIRE_FALSE(v);
    CHECK(v.error().message.find("tls.min_version") != std::string::npos);
    s = c.settings();
    s.ciphers = "NO-SUCH-CIPHER";
    auto ci = tls::ServerContext::create(s);
    REQUIRE_FALSE(ci);
    CHECK(ci.error().message.find("tls.ciphers") != std::string::npos);
    s = c.settings();
    s.groups = "nosuchgroup";
    CHECK_FALSE(tls::ServerContext::create(s));
    s = c.settings();
    s.min_version = "1.3";
    s.ciphersuites = "TLS_AES_128_GCM_SHA256";
    CHECK(tls::ServerContext::create(s));
}

TEST_CASE("tls: client verification needs its CA file") {
    Certs c;
    auto s = c.settings();
    s.require_client_certificate = true;
    CHECK_FALSE(tls::ServerContext::create(s));
    s.client_ca = c.dir + "/b.pem";
    s.client_names = {"trunk.example.net"};
    CHECK(tls::ServerContext::create(s));
    s.client_ca = c.dir + "/none.pem";
    auto r = tls::ServerContext::create(s);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("client_ca") != std::string::npos);
}

namespace {

// A client and a server session over a non-blocking socket pair, stepped in turn until both
// handshakes end (bounded). Returns the client's outcome.
tls::Session::Io handshake_pair(tls::Session& client, tls::Session& server) {
    tls::Session::Io c = tls::Session::Io::want_write, s = tls::Session::Io::want_read;
    auto pending = [](tls::Session::Io r) {
        return r == tls::Session::Io::want_read || r == tls::Session::Io::want_write;
    };
    for (int i = 0; i < 200 && (pending(c) || pending(s)); ++i) {
        if (pending(c)) c = client.handshake();
        if (pending(s)) s = server.handshake();
    }
    return c;
}

struct Pair {
    int fd[2] = {-1, -1};
    Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0); }
    ~Pair() {
        ::close(fd[0]);
        ::close(fd[1]);
    }
};

}  // namespace

TEST_CASE("tls client: the server certificate is verified against the CA and the name") {
    Certs c;
    auto server_ctx = tls::ServerContext::create(c.settings());
    REQUIRE(server_ctx);
    struct Case {
        const char* ca;
        std::string host;
        bool ok;
    };
    // a.pem is self-signed (its own CA) for CN sbc-a.test; b.pem is another CA.
    const Case cases[] = {
        {"a", "sbc-a.test", true},
        {"a", "other.test", false},  // the name is not the certificate's
        {"b", "sbc-a.test", false},  // another CA signed it
        {"a", "127.0.0.1", false},   // an address the certificate does not carry
    };
    for (const auto& k : cases) {
        INFO(k.ca << " " << k.host);
        tls::ClientSettings cs;
        cs.ca_file = c.dir + "/" + k.ca + ".pem";
        auto client_ctx = tls::ClientContext::create(cs);
        REQUIRE(client_ctx);
        Pair p;
        tls::Session client(std::shared_ptr<const tls::ClientContext>(*client_ctx), p.fd[0],
                            k.host);
        tls::Session server(std::shared_ptr<const tls::ServerContext>(*server_ctx), p.fd[1]);
        const auto r = handshake_pair(client, server);
        if (k.ok) {
            CHECK(r == tls::Session::Io::done);
            // Application data both ways once established.
            std::size_t n = 0;
            REQUIRE(client.write("OPTIONS", 7, n) == tls::Session::Io::done);
            char buf[16];
            auto rr = tls::Session::Io::want_read;
            for (int i = 0; i < 50 && rr == tls::Session::Io::want_read; ++i)
                rr = server.read(buf, sizeof buf, n);
            REQUIRE(rr == tls::Session::Io::done);
            CHECK(std::string(buf, n) == "OPTIONS");
        } else {
            CHECK(r == tls::Session::Io::failed);
            CHECK(client.failure() == tls::Session::Failure::server_certificate);
        }
    }
}

TEST_CASE("tls client: a CA file that does not load is refused by name") {
    tls::ClientSettings cs;
    cs.ca_file = "/nonexistent/ca.pem";
    auto ctx = tls::ClientContext::create(cs);
    REQUIRE_FALSE(ctx);
    CHECK(ctx.error().message.find("tls.server_ca /nonexistent/ca.pem") != std::string::npos);
}

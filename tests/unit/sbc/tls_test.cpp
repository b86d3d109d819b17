// TLS server contexts (sbc/tls.hpp): what loads, and what is refused with the file or setting
// named. Certificates are made with the openssl command line in a temporary directory.
#include <catch2/catch.hpp>

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

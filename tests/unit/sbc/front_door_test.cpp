// The request-level decisions of the front door that need no socket: which account a request
// is attributed to, its rate-limit class, and the scanner signature match.
#include <catch2/catch.hpp>

#include <string>

#include "sbc/front_door.hpp"

using namespace sbc;

namespace {
std::string request(const std::string& method, const std::string& extra) {
    return method +
           " sip:2000@192.0.2.1 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1\r\n"
           "Max-Forwards: 70\r\n"
           "From: <sip:1001@192.0.2.1>;tag=a\r\n"
           "To: <sip:2000@192.0.2.1>\r\n"
           "Call-ID: c1@198.51.100.7\r\n"
           "CSeq: 1 " +
           method + "\r\n" + extra + "Content-Length: 0\r\n\r\n";
}
}  // namespace

TEST_CASE("the account of a request: Authorization, Proxy-Authorization, From",
          "[sbc][front_door]") {
    sip::Message m;
    std::string a = request("INVITE", "");
    REQUIRE(m.parse(a));
    CHECK(account_of(m) == "1001");
    std::string b = request("REGISTER",
                            "Authorization: Digest username=\"alice\", realm=\"x\", nonce=\"n\", "
                            "uri=\"sip:x\", response=\"0\"\r\n");
    REQUIRE(m.parse(b));
    CHECK(account_of(m) == "alice");
    std::string c = request("INVITE",
                            "Proxy-Authorization: Digest username=\"bob\", realm=\"x\", "
                            "nonce=\"n\", uri=\"sip:x\", response=\"0\"\r\n");
    REQUIRE(m.parse(c));
    CHECK(account_of(m) == "bob");
}

TEST_CASE("rate-limit class of a method", "[sbc][front_door]") {
    CHECK(limit_class(sip::Method::invite) == policy::TrafficClass::sip_invite);
    CHECK(limit_class(sip::Method::register_) == policy::TrafficClass::sip_register);
    CHECK(limit_class(sip::Method::options) == policy::TrafficClass::sip_other);
    CHECK(limit_class(sip::Method::bye) == policy::TrafficClass::sip_other);
}

TEST_CASE("scanner signatures: patterns and the empty User-Agent", "[sbc][front_door]") {
    auto loaded = policy::load_policy_from_string(
        "[scanners]\nuser_agents = [\"friendly-scanner\", \"sipvicious*\"]\naction = \"block\"\n",
        "scanners.toml");
    REQUIRE(loaded.ok());
    const auto& s = loaded.value->scanners;
    CHECK(s.action == policy::DenyAction::block);
    auto hit = scanner_match(s, "SIPVicious 0.3.4");
    REQUIRE(hit);
    CHECK(*hit == "sipvicious*");
    CHECK(scanner_match(s, "my friendly-scanner"));
    CHECK_FALSE(scanner_match(s, "Linphone/5.2"));
    CHECK_FALSE(scanner_match(s, ""));  // empty_user_agent = false
    auto with_empty =
        policy::load_policy_from_string("[scanners]\nempty_user_agent = true\n", "empty.toml");
    REQUIRE(with_empty.ok());
    CHECK(with_empty.value->scanners.action == policy::DenyAction::ban);  // the default
    CHECK(scanner_match(with_empty.value->scanners, ""));
    CHECK_FALSE(scanner_match(with_empty.value->scanners, "Linphone/5.2"));
}

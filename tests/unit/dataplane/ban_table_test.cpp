#include <catch2/catch.hpp>
#include <thread>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using sbc::base::IpAddress;
using sbc::base::Prefix;
using sbc::base::seconds;

TEST_CASE("Bans on addresses and prefixes expire") {
    BanTable bans(1024);
    const auto a = *IpAddress::parse("198.51.100.7");
    CHECK_FALSE(bans.is_banned(a, 0));
    REQUIRE(bans.ban(*Prefix::parse("198.51.100.7"), seconds(60), BanOrigin::control, 0));
    CHECK(bans.is_banned(a, seconds(59)));
    CHECK_FALSE(bans.is_banned(a, seconds(60)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("198.51.100.8"), 0));

    REQUIRE(bans.ban(*Prefix::parse("203.0.113.0/24"), seconds(10), BanOrigin::fraud, 0));
    CHECK(bans.is_banned(*IpAddress::parse("203.0.113.200"), seconds(1)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("203.0.114.1"), seconds(1)));
    REQUIRE(bans.ban(*Prefix::parse("2001:db8:1::/48"), seconds(10), BanOrigin::signaling, 0));
    CHECK(bans.is_banned(*IpAddress::parse("2001:db8:1:2::3"), seconds(1)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("2001:db8:2::3"), seconds(1)));
    auto list = bans.active(seconds(1));
    CHECK(list.size() == 3);

    CHECK(bans.unban(*Prefix::parse("203.0.113.0/24")));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("203.0.113.200"), seconds(1)));
    CHECK_FALSE(bans.unban(*Prefix::parse("203.0.113.0/24")));
}

TEST_CASE("Escalating bans grow with repeated offenses") {
    BanTable bans(64);
    BanPolicy pol;
    pol.durations = {seconds(10), seconds(100), seconds(1000)};
    const auto a = *IpAddress::parse("192.0.2.9");
    REQUIRE(bans.ban_escalating(a, pol, BanOrigin::rate_limit, 0));
    CHECK(bans.is_banned(a, seconds(9)));
    CHECK_FALSE(bans.is_banned(a, seconds(10)));
    REQUIRE(bans.ban_escalating(a, pol, BanOrigin::rate_limit, seconds(20)));
    CHECK(bans.is_banned(a, seconds(119)));
    CHECK_FALSE(bans.is_banned(a, seconds(120)));
    REQUIRE(bans.ban_escalating(a, pol, BanOrigin::rate_limit, seconds(200)));
    REQUIRE(bans.ban_escalating(a, pol, BanOrigin::rate_limit, seconds(5000)));
    CHECK(bans.is_banned(a, seconds(5999)));  // capped at the last step
    CHECK(bans.active(seconds(5000)).front().offenses == 4);
}

TEST_CASE("The ban table has a fixed capacity and replaces expired bans first") {
    BanTable bans(8);  // one set
    const std::size_t mem = bans.memory_bytes();
    for (std::uint32_t i = 0; i < 8; ++i)
        REQUIRE(bans.ban(Prefix(IpAddress::v4(0x0A000000 + i), 32), seconds(100 + i),
                         BanOrigin::control, 0));
    // Full of live bans that outlast the new one: refused, nothing lost.
    CHECK_FALSE(
        bans.ban(Prefix(IpAddress::v4(0x0B000000), 32), seconds(50), BanOrigin::control, 0));
    // A longer ban replaces the one that would expire first.
    REQUIRE(bans.ban(Prefix(IpAddress::v4(0x0B000001), 32), seconds(500), BanOrigin::control, 0));
    CHECK_FALSE(bans.is_banned(IpAddress::v4(0x0A000000), 1));
    CHECK(bans.is_banned(IpAddress::v4(0x0A000001), 1));
    // Expired bans are replaced.
    REQUIRE(bans.ban(Prefix(IpAddress::v4(0x0B000002), 32), seconds(10), BanOrigin::control,
                     seconds(1000)));
    CHECK(bans.is_banned(IpAddress::v4(0x0B000002), seconds(1001)));
    CHECK(bans.memory_bytes() == mem);
}

TEST_CASE("Ban commands from another thread reach the owner through the mailbox") {
    Pipeline p(PipelineConfig::defaults());
    ControlMailbox mb(2);
    std::thread control([&] {
        CHECK(mb.post({ControlCommand::Kind::ban, *Prefix::parse("192.0.2.0/24"), seconds(60),
                       BanOrigin::control}));
        CHECK(mb.post(
            {ControlCommand::Kind::ban, *Prefix::parse("198.51.100.9"), 0, BanOrigin::fraud}));
        CHECK_FALSE(mb.post({ControlCommand::Kind::ban, *Prefix::parse("198.51.100.10"), seconds(1),
                             BanOrigin::control}));  // full
    });
    control.join();
    CHECK_FALSE(p.bans().is_banned(*IpAddress::parse("192.0.2.7"), 0));
    mb.apply(p, seconds(1));
    CHECK(p.bans().is_banned(*IpAddress::parse("192.0.2.7"), seconds(2)));
    CHECK(p.bans().is_banned(*IpAddress::parse("198.51.100.9"), seconds(2)));
    CHECK(mb.rejected() == 1);
    sbc::base::Nanos at = 0;
    auto list = mb.bans(&at);
    CHECK(list.size() == 2);
    CHECK(at == seconds(1));
    REQUIRE(mb.post(
        {ControlCommand::Kind::unban, *Prefix::parse("192.0.2.0/24"), 0, BanOrigin::control}));
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {5999};
    mb.post_config(cfg);
    mb.apply(p, seconds(3));
    CHECK_FALSE(p.bans().is_banned(*IpAddress::parse("192.0.2.7"), seconds(3)));
    CHECK(mb.bans().size() == 1);
    CHECK(p.config().sip_udp_ports == std::vector<std::uint16_t>{5999});
}

TEST_CASE("Lookups visit every prefix length in use, for both families") {
    BanTable bans(256);
    REQUIRE(bans.ban(*Prefix::parse("10.0.0.0/8"), seconds(10), BanOrigin::control, 0));
    REQUIRE(bans.ban(*Prefix::parse("10.1.0.0/16"), seconds(100), BanOrigin::control, 0));
    REQUIRE(bans.ban(*Prefix::parse("2001:db8::/32"), seconds(10), BanOrigin::control, 0));
    REQUIRE(bans.ban(*Prefix::parse("2001:db8:0:1::5"), seconds(100), BanOrigin::control, 0));
    CHECK(bans.is_banned(*IpAddress::parse("10.2.3.4"), 1));
    CHECK(bans.is_banned(*IpAddress::parse("10.1.3.4"), 1));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("11.1.3.4"), 1));
    CHECK(bans.is_banned(*IpAddress::parse("2001:db8:5::1"), 1));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("2001:db9::1"), 1));
    // The /8 expired: the longer /16 still applies, the rest of the /8 is free.
    CHECK(bans.is_banned(*IpAddress::parse("10.1.3.4"), seconds(20)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("10.2.3.4"), seconds(20)));
    CHECK(bans.is_banned(*IpAddress::parse("2001:db8:0:1::5"), seconds(20)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("2001:db8:0:1::6"), seconds(20)));
    REQUIRE(bans.unban(*Prefix::parse("10.1.0.0/16")));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("10.1.3.4"), seconds(20)));
}

TEST_CASE("Prefix bans escalate on their own offense count") {
    BanTable bans(64);
    BanPolicy pol;
    pol.durations = {seconds(10), seconds(100), seconds(1000)};
    const auto net = *Prefix::parse("198.51.100.0/24");
    REQUIRE(bans.ban_escalating(net, pol, BanOrigin::fraud, 0));
    CHECK(bans.is_banned(*IpAddress::parse("198.51.100.77"), seconds(9)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("198.51.101.77"), seconds(9)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("198.51.100.77"), seconds(10)));
    REQUIRE(bans.ban_escalating(net, pol, BanOrigin::fraud, seconds(20)));
    CHECK(bans.is_banned(*IpAddress::parse("198.51.100.1"), seconds(119)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("198.51.100.1"), seconds(120)));
    // An address inside keeps its own count.
    REQUIRE(bans.ban_escalating(*IpAddress::parse("198.51.100.1"), pol, BanOrigin::fraud,
                                seconds(200)));
    CHECK_FALSE(bans.is_banned(*IpAddress::parse("198.51.100.1"), seconds(210)));
    const auto list = bans.active(seconds(130));
    REQUIRE(list.size() == 1);
    CHECK(list.front().prefix == *Prefix::parse("198.51.100.1/32"));
}

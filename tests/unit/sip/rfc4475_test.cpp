// RFC 4475 torture tests: what the RFC expects of each of the 49 messages (see
// tests/data/rfc4475/INDEX.md).
#include <catch2/catch.hpp>

#include "sip/sip.hpp"
#include "test_data.hpp"

using namespace sbc::sip;

namespace {

struct Parsed {
    std::string bytes;
    Message msg;
    Status status;
};

std::unique_ptr<Parsed> load(const std::string& name) {
    auto p = std::make_unique<Parsed>();
    p->bytes = sbc::sip::test::read_data("rfc4475/" + name + ".dat");
    p->status = p->msg.parse(p->bytes);
    return p;
}

void expect_rejected(const std::string& name, int status) {
    INFO(name);
    auto p = load(name);
    CHECK_FALSE(p->status.ok);
    CHECK_FALSE(p->status.reason.empty());
    CHECK(p->status.sip_status == status);
}

}  // namespace

TEST_CASE("3.1.1.1 wsinv: folding, odd LWS, compact forms") {
    auto p = load("wsinv");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(m.request_uri().host == "chair-dnrc.example.com");
    CHECK(m.request_uri().params_text == "unknownparam");
    CHECK(m.to()->tag == "1918181833n");
    CHECK(m.from()->tag == "98asjd8");
    CHECK(unquote(m.from()->display_name) == "J Rosenberg \\\"");
    CHECK(m.max_forwards() == std::optional<std::uint8_t>(68));
    CHECK(m.cseq()->number == 9);
    CHECK(m.cseq()->method == "INVITE");
    REQUIRE(m.vias().size() == 3);
    CHECK(m.vias()[0].transport == "UDP");
    CHECK(m.vias()[0].host == "192.0.2.2");
    CHECK(m.vias()[0].branch == "390skdjuw");
    CHECK(m.vias()[1].transport == "TCP");
    CHECK(m.vias()[1].host == "spindle.example.com");
    CHECK(m.vias()[1].branch == "z9hG4bK9ikj8");
    CHECK(m.vias()[2].host == "192.168.255.111");
    CHECK(m.vias()[2].branch == "z9hG4bK30239");
    const Header* subject = m.find(HeaderId::subject);
    REQUIRE(subject);
    CHECK(subject->name == "s");
    CHECK(subject->value.empty());
    const Header* nf = m.find("newfangledheader");
    REQUIRE(nf);
    CHECK(unfold(nf->value) == "newfangled value continued newfangled value");
    CHECK(m.find("UnknownHeaderWithUnusualValue")->value == ";;,,;;,;");
    REQUIRE(m.routes().size() == 1);
    CHECK(m.routes()[0].uri.params.count == 3);
    REQUIRE(m.contacts().size() == 1);
    CHECK(unquote(m.contacts()[0].display_name) == "Quoted string \"\"");
    CHECK(m.contacts()[0].q == "0.33");
    auto cp = m.params(m.contacts()[0].params);
    REQUIRE(cp.size() == 3);
    CHECK(cp[0].name == "newparam");
    CHECK(cp[0].value == "newvalue");
    CHECK(cp[1].name == "secondparam");
    CHECK(m.body().size() == 150);
    // A proxy forwards unknown headers unchanged: an edit elsewhere leaves them byte-identical.
    p->msg.set_via_received(p->msg.vias()[0], "192.0.2.200");
    std::string out = p->msg.serialize();
    CHECK(out.find("\r\nUnknownHeaderWithUnusualValue: ;;,,;;,;\r\n") != std::string::npos);
    CHECK(out.find("\r\nNewFangledHeader:   newfangled value\r\n continued newfangled value\r\n") !=
          std::string::npos);
    Message again;
    REQUIRE(again.parse(out).ok);
    CHECK(again.vias()[0].received == "192.0.2.200");
}

TEST_CASE("3.1.1.2 intmeth: unusual characters, NUL in quoted To") {
    auto p = load("intmeth");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(m.method() == Method::unknown);
    CHECK(m.method_name() == "!interesting-Method0123456789_*+`.%indeed'~");
    CHECK(m.request_uri().user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    CHECK(m.request_uri().password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    CHECK(m.request_uri().host == "example.com");
    std::string to_name = unquote(m.to()->display_name);
    CHECK(to_name == std::string("BEL:\x07 NUL:\0 DEL:\x7f", 17));
    CHECK(m.from()->display_name == "token1~` token2'+_ token3*%!.-");
    CHECK(m.from()->tag == "_token~1'+`*%!-.");
    CHECK(m.call_id() == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    CHECK(m.cseq()->number == 139122385);
    CHECK(m.max_forwards() == std::optional<std::uint8_t>(255));
    CHECK(m.vias()[0].branch == "z9hG4bK-.!%66*_+`'~");
    CHECK(m.find("extensionHeader-!.%*+_`'~") != nullptr);
    CHECK(check_request(m).ok);  // a proxy forwards it
}

TEST_CASE("3.1.1.3 esc01: escapes decoded once, on demand") {
    auto p = load("esc01");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(unescape(m.request_uri().user) == "sips:user@example.com");
    CHECK(m.request_uri().host == "example.net");
    CHECK(unescape(m.to()->uri.user) == "user");
    CHECK(unescape(m.from()->uri.user) == "I have spaces");
    REQUIRE(m.contacts().size() == 1);
    const Uri& c = m.contacts()[0].uri;
    CHECK(unescape(c.user) == "caller");
    auto prm = m.params(c.params);
    REQUIRE(prm.size() == 2);
    CHECK(unescape(prm[0].name) == "lr");
    CHECK(unescape(prm[1].name) == "name");
    CHECK(unescape(prm[1].value) == "value%41");
}

TEST_CASE("3.1.1.4 escnull: %00 does not truncate, two bindings") {
    auto p = load("escnull");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(unescape(m.to()->uri.user) == std::string("null-\0-null", 11));
    REQUIRE(m.contacts().size() == 2);
    CHECK(unescape(m.contacts()[0].uri.user) == std::string("\0", 1));
    CHECK(unescape(m.contacts()[1].uri.user) == std::string("\0\0", 2));
    CHECK(m.contacts()[0].uri.user != m.contacts()[1].uri.user);
}

TEST_CASE("3.1.1.5 esc02: % in a method and a header name is not an escape") {
    auto p = load("esc02");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(m.method() == Method::unknown);
    CHECK(m.method_name() == "RE%47IST%45R");
    CHECK(m.contacts().size() == 2);
    const Header* ext = m.find("C%6Fntact");
    REQUIRE(ext);
    CHECK(ext->id == HeaderId::other);
    CHECK(unquote(m.to()->display_name) == "%Z%45");
    CHECK(m.vias()[0].branch == "z9hG4bK209%fzsnel234");
}

TEST_CASE("3.1.1.6 lwsdisp: no LWS between display name and <") {
    auto p = load("lwsdisp");
    REQUIRE(p->status.ok);
    CHECK(p->msg.from()->display_name == "caller");
    CHECK(p->msg.from()->uri.user == "caller");
}

TEST_CASE("3.1.1.7 longreq: long values") {
    auto p = load("longreq");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(m.vias().size() == 34);
    CHECK(m.vias()[0].host == "sip33.example.com");
    CHECK(m.vias()[0].branch.empty());
    CHECK(m.to()->display_name.size() > 100);
    CHECK(m.from()->uri.user.size() > 100);
    CHECK(m.from()->tag.size() > 100);
    CHECK(m.call_id().size() > 100);
}

TEST_CASE("3.1.1.8 dblreq: trailing octets ignored") {
    auto p = load("dblreq");
    REQUIRE(p->status.ok);
    const Message& m = p->msg;
    CHECK(m.method() == Method::register_);
    CHECK(m.body().empty());
    CHECK(m.bytes().size() < p->bytes.size());
    CHECK(m.bytes().substr(m.bytes().size() - 4) == "\r\n\r\n");
    CHECK(p->bytes.substr(m.bytes().size()).find("INVITE sip:joe@example.com") !=
          std::string::npos);
}

TEST_CASE("3.1.1.9 semiuri: ';' in the user part") {
    auto p = load("semiuri");
    REQUIRE(p->status.ok);
    CHECK(p->msg.request_uri().user == "user;par=u%40example.net");
    CHECK(p->msg.request_uri().host == "example.com");
    CHECK(p->msg.request_uri().params.count == 0);
    CHECK(split_list(p->msg.find(HeaderId::accept)->value).size() == 6);
}

TEST_CASE("3.1.1.10 transports: varied Via transports") {
    auto p = load("transports");
    REQUIRE(p->status.ok);
    auto v = p->msg.vias();
    REQUIRE(v.size() == 5);
    CHECK(v[0].transport == "UDP");
    CHECK(v[1].transport == "SCTP");
    CHECK(v[2].transport == "TLS");
    CHECK(v[3].transport == "UNKNOWN");
    CHECK(v[4].transport == "TCP");
}

TEST_CASE("3.1.1.11 mpart01: binary body framed by Content-Length") {
    auto p = load("mpart01");
    REQUIRE(p->status.ok);
    REQUIRE(p->msg.content_length());
    CHECK(p->msg.body().size() == *p->msg.content_length());
    CHECK(p->msg.body().find('\0') != std::string_view::npos);
    CHECK(p->msg.content_type() == "multipart/mixed;boundary=7a9cbec02ceef655");
}

TEST_CASE("3.1.1.12-13 unusual and empty reason phrases") {
    auto u = load("unreason");
    REQUIRE(u->status.ok);
    CHECK(u->msg.status_code() == 200);
    CHECK(u->msg.reason_phrase().substr(0, 5) == "= 2**");
    auto n = load("noreason");
    REQUIRE(n->status.ok);
    CHECK(n->msg.status_code() == 100);
    CHECK(n->msg.reason_phrase().empty());
}

TEST_CASE("3.1.2 invalid messages are rejected with a reason") {
    expect_rejected("badinv01", 400);
    expect_rejected("clerr", 400);
    expect_rejected("ncl", 400);
    expect_rejected("scalar02", 400);
    expect_rejected("scalarlg", 0);  // a response: discarded
    expect_rejected("quotbal", 400);
    expect_rejected("ltgtruri", 400);
    expect_rejected("lwsruri", 400);
    expect_rejected("lwsstart", 400);
    expect_rejected("trws", 400);
    expect_rejected("escruri", 400);
    expect_rejected("baddate", 400);
    expect_rejected("regbadct", 400);
    expect_rejected("badaspec", 400);
    expect_rejected("baddn", 400);
    expect_rejected("badvers", 505);
    expect_rejected("mismatch01", 400);
    expect_rejected("mismatch02", 501);
    expect_rejected("bigcode", 0);  // a response: dropped
}

TEST_CASE("rejection codes are named once (metric labels)") {
    CHECK(load("scalar02")->status.code == Reject::bad_cseq_number);
    CHECK(load("badvers")->status.code == Reject::sip_version_not_supported);
    CHECK(load("ltgtruri")->status.code == Reject::bracketed_request_uri);
    CHECK(load("wsinv")->status.code == Reject::none);
    CHECK(name(Reject::bad_cseq_number) == "bad_cseq_number");
    CHECK(description(Reject::bad_cseq_number) == "CSeq number invalid or larger than 2^32-1");
}

TEST_CASE("specific rejection reasons") {
    CHECK(load("scalar02")->status.reason == "CSeq number invalid or larger than 2^32-1");
    CHECK(load("quotbal")->status.reason == "unterminated quoted string");
    CHECK(load("ncl")->status.reason == "Content-Length is not a valid number");
    CHECK(load("clerr")->status.reason == "Content-Length larger than the message");
    CHECK(load("badinv01")->status.reason == "empty header parameter");
    CHECK(load("escruri")->status.reason == "headers in Request-URI");
    CHECK(load("mismatch01")->status.reason == "CSeq method does not match the request method");
}

TEST_CASE("3.2-3.4 semantically odd messages parse; the request check answers") {
    struct Case {
        const char* name;
        int status;  // 0: the check accepts it
    };
    const Case cases[] = {
        {"badbranch", 400}, {"insuf", 400}, {"unkscm", 416}, {"novelsc", 416}, {"unksm2", 0},
        {"bext01", 420},    {"invut", 0},   {"regaut01", 0}, {"multi01", 400}, {"mcl01", 400},
        {"bcast", 0},       {"zeromf", 0},  {"cparam01", 0}, {"cparam02", 0},  {"regescrt", 0},
        {"sdp01", 0},       {"inv2543", 0},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        auto p = load(c.name);
        REQUIRE(p->status.ok);
        Status s = check_request(p->msg);
        CHECK(s.ok == (c.status == 0));
        if (c.status) CHECK(s.sip_status == c.status);
    }
}

TEST_CASE("sem-valid messages: fields as the RFC describes") {
    auto bc = load("bcast");
    REQUIRE(bc->msg.vias().size() == 2);
    CHECK(bc->msg.vias()[1].host == "255.255.255.255");
    auto zm = load("zeromf");
    CHECK(zm->msg.max_forwards() == std::optional<std::uint8_t>(0));
    auto c1 = load("cparam01");
    REQUIRE(c1->msg.contacts().size() == 1);
    CHECK_FALSE(c1->msg.contacts()[0].bracketed);
    CHECK(c1->msg.contacts()[0].uri.params.count == 0);
    CHECK(c1->msg.contacts()[0].params.count == 1);
    CHECK(c1->msg.params(c1->msg.contacts()[0].params)[0].name == "unknownparam");
    auto c2 = load("cparam02");
    CHECK(c2->msg.contacts()[0].uri.params.count == 1);
    CHECK(c2->msg.contacts()[0].params.count == 0);
    auto re = load("regescrt");
    CHECK(re->msg.contacts()[0].uri.headers_text == "Route=%3Csip:sip.example.com%3E");
    auto u2 = load("unksm2");
    CHECK(u2->msg.to()->uri.scheme == "isbn");
    CHECK(u2->msg.from()->uri.scheme == "http");
    CHECK(u2->msg.contacts()[0].uri.opaque == "John_Smith");
    auto ra = load("regaut01");
    CHECK(ra->msg.authorization()->scheme == "NoOneKnowsThisScheme");
    auto inv = load("inv2543");
    CHECK_FALSE(inv->msg.content_length());
    CHECK(inv->msg.body().substr(0, 4) == "v=0\r");
    CHECK_FALSE(inv->msg.max_forwards());
    auto bx = load("bext01");
    CheckOptions opts;
    opts.supported_extensions = {"nothingSupportsThis", "nothingSupportsThisEither",
                                 "noProxiesSupportThis", "norDoAnyProxiesSupportThis"};
    CHECK(check_request(bx->msg, opts).ok);
    auto sd = load("sdp01");
    CHECK(sd->msg.find(HeaderId::accept)->value == "text/nobodyKnowsThis");
    auto mu = load("multi01");
    CHECK(mu->msg.repeated_single_value_field());
    CHECK(mu->msg.call_id() == "multi01.98asdh@192.0.2.1");  // the first one
    CHECK(mu->msg.cseq()->number == 5);
    CHECK(mu->msg.to()->uri.host == "example.com");
    CHECK(mu->msg.contacts().size() == 2);
    CHECK_FALSE(load("wsinv")->msg.repeated_single_value_field());
    auto mc = load("mcl01");
    CHECK(mc->msg.content_length_conflict());
    auto ins = load("insuf");
    CHECK(ins->msg.from() == nullptr);
    CHECK(ins->msg.call_id().empty());
}

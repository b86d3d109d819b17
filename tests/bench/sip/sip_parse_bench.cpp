// sip-parse bench: messages per second for our parser, sofia-sip and libosip2 on the same
// bytes (an INVITE with SDP, a 200 OK with two Record-Route and SDP, a REGISTER with Digest
// credentials, and the mix of the three). Each figure is the median of 5 runs.
//
// Depth: our parse() fills typed Via (protocol, transport, host, port, params), From/To
// (display name, URI split into user/host/port/params, tag), Contact, Route/Record-Route,
// CSeq (number, method), Call-ID, Max-Forwards and Content-Length as integers, Digest fields,
// in the measured loop. sofia-sip's msg_make() parses every header it knows; libosip2's
// osip_message_parse() does the same (URI params and Digest fields split). Each loop then reads
// a few typed fields so that no parser can skip work.
//
//   bench_sip_parse DATA_DIR [seconds_per_run]
#include <osipparser2/osip_message.h>
#include <osipparser2/osip_parser.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_protos.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "sip/sip.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        std::exit(2);
    }
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

volatile std::uint64_t g_sink = 0;

// Parses msgs round-robin for about `seconds`; returns messages per second.
double measure(const std::vector<const std::string*>& msgs, double seconds,
               const std::function<std::uint64_t(const std::string&)>& parse_one) {
    std::uint64_t n = 0, sink = 0;
    auto start = Clock::now();
    auto deadline = start + std::chrono::duration<double>(seconds);
    auto now = start;
    do {
        for (int i = 0; i < 256; ++i) {
            sink += parse_one(*msgs[n % msgs.size()]);
            ++n;
        }
        now = Clock::now();
    } while (now < deadline);
    g_sink = g_sink + sink;
    return static_cast<double>(n) / std::chrono::duration<double>(now - start).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

namespace {

sbc::sip::Message g_msg;

std::uint64_t parse_ours(const std::string& bytes) {
    sbc::sip::Status s = g_msg.parse(bytes);
    if (!s.ok) {
        std::fprintf(stderr, "ours: parse failed: %.*s\n", static_cast<int>(s.reason.size()),
                     s.reason.data());
        std::exit(1);
    }
    std::uint64_t x = g_msg.cseq()->number + g_msg.vias().front().port + g_msg.call_id().size() +
                      g_msg.from()->tag.size() + g_msg.to()->uri.host.size();
    if (!g_msg.contacts().empty()) x += g_msg.contacts().front().uri.port;
    if (g_msg.max_forwards()) x += *g_msg.max_forwards();
    return x;
}

std::uint64_t parse_sofia(const std::string& bytes) {
    msg_t* msg =
        msg_make(sip_default_mclass(), 0, bytes.data(), static_cast<isize_t>(bytes.size()));
    sip_t* sip = msg ? sip_object(msg) : nullptr;
    if (!sip || !sip->sip_cseq || !sip->sip_via || !sip->sip_from || !sip->sip_to) {
        std::fprintf(stderr, "sofia: parse failed\n");
        std::exit(1);
    }
    std::uint64_t x = sip->sip_cseq->cs_seq + std::strlen(sip->sip_via->v_host) +
                      std::strlen(sip->sip_call_id->i_id) +
                      (sip->sip_from->a_tag ? std::strlen(sip->sip_from->a_tag) : 0) +
                      std::strlen(sip->sip_to->a_url->url_host);
    if (sip->sip_contact && sip->sip_contact->m_url->url_port)
        x += std::strlen(sip->sip_contact->m_url->url_port);
    if (sip->sip_max_forwards) x += sip->sip_max_forwards->mf_count;
    msg_destroy(msg);
    return x;
}

std::uint64_t parse_osip(const std::string& bytes) {
    osip_message_t* sip = nullptr;
    osip_message_init(&sip);
    if (osip_message_parse(sip, bytes.data(), bytes.size()) != 0) {
        std::fprintf(stderr, "osip: parse failed\n");
        std::exit(1);
    }
    osip_via_t* via = static_cast<osip_via_t*>(osip_list_get(&sip->vias, 0));
    std::uint64_t x = std::strlen(sip->cseq->number) + std::strlen(via->host) +
                      std::strlen(sip->call_id->number) + std::strlen(sip->to->url->host);
    osip_message_free(sip);
    return x;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DATA_DIR [seconds_per_run]\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    double secs = argc > 2 ? std::atof(argv[2]) : 0.3;
    std::string invite = read_file(dir + "/bench_invite.sip");
    std::string ok = read_file(dir + "/ok_200_rr.sip");
    std::string reg = read_file(dir + "/register_digest.sip");
    parser_init();

    struct Case {
        const char* name;
        std::vector<const std::string*> msgs;
    };
    std::vector<Case> cases = {{"invite_sdp", {&invite}},
                               {"ok200_rr_sdp", {&ok}},
                               {"register_digest", {&reg}},
                               {"mix", {&invite, &ok, &reg}}};
    std::printf("sip-parse: messages/s, median of 5 runs of %.2fs, one thread\n", secs);
    std::printf("message sizes: INVITE %zu B, 200 OK %zu B, REGISTER %zu B\n", invite.size(),
                ok.size(), reg.size());
    std::printf("%-16s %12s %12s %12s %8s\n", "case", "ours", "sofia-sip", "libosip2", "ratio");
    double mix_ours = 0, mix_sofia = 0, mix_osip = 0;
    for (const Case& c : cases) {
        // Rounds interleave the three parsers so that load from other processes on this shared
        // machine hits them alike; each figure is the median of the 5 rounds.
        std::vector<double> o, s, p;
        for (int round = 0; round < 5; ++round) {
            o.push_back(measure(c.msgs, secs, parse_ours));
            s.push_back(measure(c.msgs, secs, parse_sofia));
            p.push_back(measure(c.msgs, secs, parse_osip));
        }
        double mo = median(o), ms = median(s), mp = median(p);
        std::printf("%-16s %12.0f %12.0f %12.0f %8.2f\n", c.name, mo, ms, mp,
                    mo / std::max(ms, mp));
        std::fflush(stdout);
        if (std::string(c.name) == "mix") {
            mix_ours = mo;
            mix_sofia = ms;
            mix_osip = mp;
        }
    }
    std::printf(
        "RESULT case=sip-parse metric=msg_per_s ours=%.0f sofia=%.0f osip=%.0f ratio=%.2f\n",
        mix_ours, mix_sofia, mix_osip, mix_ours / std::max(mix_sofia, mix_osip));
    return 0;
}

#pragma once
// The signaling core inside `sbc run`: the B2BUA (sbc/signaling) on the dataplane thread, fed
// by the front door with what the pipeline admitted, sending through the front door's
// listeners, anchoring media on the relay and asking the fraud engine before a call goes on.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "dataplane/media.hpp"
#include "policy/policy.hpp"
#include "sbc/metrics.hpp"
#include "sbc/signaling/b2bua.hpp"
#include "sbc/signaling/dispatch.hpp"

namespace sbc {

// The relay's stream control as the core needs it (implemented by the dataplane runtime).
class MediaStreams {
  public:
    virtual ~MediaStreams() = default;
    virtual base::Result<dataplane::StreamId> open(const dataplane::StreamSpec& spec) = 0;
    virtual base::Result<void> update(dataplane::StreamId id,
                                      const dataplane::StreamSpec& spec) = 0;
    virtual base::Result<void> close(dataplane::StreamId id) = 0;
    // The stream's RTP statistics (the relay quality metrics read them before a close).
    virtual base::Result<dataplane::StreamStats> stats(dataplane::StreamId) const {
        return base::make_error("stream statistics not offered by this backend");
    }
};

class HepExporter;

class CallCore final : public signaling::DispatchCore,
                       signaling::Wire,
                       signaling::MediaAnchor,
                       signaling::CallHooks {
  public:
    // Bytes to a flow: UDP from listener `flow.listener` to `flow.remote`, TCP/TLS on
    // connection `flow.connection` (the one the peer used).
    using SendFn = std::function<bool(const signaling::Flow& flow, std::string_view)>;
    using AdmitFn = std::function<signaling::Admission(const sip::Message&, const signaling::Flow&,
                                                       signaling::Side)>;
    using EndFn = std::function<void(const signaling::CallInfo&, signaling::CallEnd)>;
    using RelayedFn = std::function<void(const signaling::CallInfo&, int status)>;
    // A REGISTER from outside and what the registrar (or the SBC) answered it; true: refuse it.
    using RegisteredFn =
        std::function<bool(const sip::Message&, const signaling::Flow&, int status)>;

    struct Setup {
        signaling::B2buaConfig b2bua;
        std::uint16_t port_min = 20000, port_max = 29999;
        base::IpAddress media_external, media_internal;
        // The next hops' names (sbc.toml), trunks (external) first, in each side's order.
        std::vector<std::string> hop_names[2];
    };
    // A TCP or TLS listener of the front door, by its index there.
    struct StreamListenerRef {
        policy::Realm realm = policy::Realm::external;
        policy::Transport transport = policy::Transport::tcp;
        base::Endpoint local;
        std::uint32_t index = 0;
    };
    // The B2BUA configuration from the node's listeners, next hops and media addresses:
    // external and internal UDP listener indexes are those of `listeners` (the front door's
    // order), and `streams` the TCP/TLS ones (the first of each transport per realm is the one
    // a leg over that transport names in its Via and Contact). Next hops keep their transport.
    // Fails when the node has no internal UDP listener or no next hop.
    static base::Result<Setup> setup_from(const policy::NodeConfig& node,
                                          std::uint32_t external_listener,
                                          std::uint32_t internal_listener,
                                          const std::vector<StreamListenerRef>& streams = {});
    // The owner could not open a connection to `to` (TCP/TLS): its transactions fail over.
    void transport_failed(const signaling::Flow& to, base::Nanos now) {
        b2bua_->transport_failed(to, now);
    }

    CallCore(Setup setup, MediaStreams& streams, SendFn send, AdmitFn admit, EndFn answered,
             EndFn ended, RelayedFn relayed = {}, RegisteredFn registered = {});
    ~CallCore() override;

    void receive(const sip::Message& m, const base::Endpoint& from, std::uint32_t listener,
                 signaling::Side side, base::Nanos now);
    // The same from any transport: `from` names the connection of a TCP/TLS message.
    void receive(const sip::Message& m, const signaling::Flow& from, signaling::Side side,
                 base::Nanos now) override;
    void advance(base::Nanos now) { b2bua_->advance(now); }
    bool end_call(std::uint64_t call, base::Nanos now) { return b2bua_->end_call(call, now); }
    // The relay reported stream `stream` of call `call` inactive: an answered call whose stream
    // it is ends (BYE on both legs, streams freed). Streams of `sbc ctl media add` and calls not
    // answered yet are left alone. Returns whether a call ended.
    bool media_inactive(std::uint64_t call, dataplane::StreamId stream, base::Nanos now);
    // A fraud ban of `source` (any call from that address) or of `account` (its authenticated
    // user, else its From user; "" = none) ends the calls it names. Returns how many.
    std::size_t end_banned(const base::IpAddress& source, std::string_view account,
                           base::Nanos now);
    std::string stats_text() const;
    // One line per next hop, internal ones then trunks: "next_hop.NAME=up|down realm=...
    // address=... transport=... weight=... probes_sent=... probes_answered=...
    // failures_in_a_row=..." (in `sbc ctl stats` and `sbc ctl status`).
    std::string next_hops_text() const;
    void write_metrics(MetricsWriter& w) const;  // sbc/metrics_sources.cpp
    const signaling::B2buaConfig& b2bua_config() const { return b2bua_->config(); }
    void set_topology(std::vector<std::string> strip_headers,
                      std::vector<std::pair<int, std::string>> reason_phrases,
                      std::string user_agent) {
        b2bua_->set_topology(std::move(strip_headers), std::move(reason_phrases),
                             std::move(user_agent));
    }
    std::size_t media_streams() const { return streams_by_call_.size(); }
    bool registrations() const override { return b2bua_->registrations() != nullptr; }
    // The registrar proxy (null: registrations are not forwarded), for `sbc ctl registrations`.
    signaling::Registrations* registrar() { return b2bua_->registrations(); }
    const signaling::Registrations* registrar() const { return b2bua_->registrations(); }
    // A TCP/TLS connection is gone: the bindings on it go at once (calls to them get 480).
    void flow_closed(const signaling::Flow& f, base::Nanos now) {
        if (auto* r = b2bua_->registrations()) r->flow_closed(f, now);
    }
    std::size_t active_calls() const { return b2bua_->calls().size(); }
    std::vector<std::uint64_t> call_ids() const { return b2bua_->calls(); }
    // Whether a call the B2BUA holds has a leg with this Call-ID on `side`.
    bool has_call(signaling::Side side, std::string_view call_id) const override {
        return b2bua_->call_of(side, call_id).has_value();
    }
    // `sbc ctl calls`: one line per call in progress.
    std::string calls_text(base::Nanos now) const;
    signaling::Side side_of_listener(std::uint32_t listener) const;
    // `sbc ctl call show ID`: key=value lines, "" when there is no such call in progress.
    std::string call_text(std::uint64_t id, base::Nanos now) const;
    // HEP capture of every message the B2BUA receives and sends, both legs, correlated by the
    // caller's Call-ID (null: off). `wall` stamps each message.
    void set_capture(HepExporter* hep, std::function<base::UnixNanos()> wall);

  private:
    bool send(const signaling::Flow& flow, std::string_view bytes) override;
    base::Result<base::Endpoint> anchor(std::uint64_t call, std::size_t index, signaling::Side from,
                                        const base::Endpoint& peer, bool rtcp_mux,
                                        base::Nanos now) override;
    void release(std::uint64_t call) override;
    signaling::Admission admit(const sip::Message& invite, const signaling::Flow& from,
                               signaling::Side side) override;
    void on_answered(const signaling::CallInfo&) override;
    void on_ended(const signaling::CallInfo&, signaling::CallEnd) override;
    void on_response_relayed(const signaling::CallInfo&, int status) override;
    bool on_register_answered(const sip::Message& request, const signaling::Flow& from,
                              int status) override;

    std::optional<std::uint16_t> take_port();
    void capture(signaling::Side side, const base::Endpoint& src, const base::Endpoint& dst,
                 std::string_view call_id, std::string_view bytes, base::UnixNanos time);
    void give_port(std::uint16_t port);

    Setup setup_;
    MediaStreams& streams_;
    SendFn send_;
    AdmitFn admit_;
    EndFn answered_, ended_;
    RelayedFn relayed_;
    RegisteredFn registered_;
    struct Anchored {
        dataplane::StreamId id;
        dataplane::StreamSpec spec;
    };
    // The anchored streams of the calls in progress, in a pool of their own as the B2BUA's
    // call state is (sbc/signaling/b2bua.hpp): held for a call's whole life, they would
    // otherwise pin heap pages that its setup's transactions leave free.
    std::pmr::unsynchronized_pool_resource stream_memory_{std::pmr::pool_options{256, 1024}};
    std::pmr::map<std::uint64_t, std::pmr::map<std::size_t, Anchored>> streams_by_call_{
        &stream_memory_};
    std::vector<std::uint16_t> free_ports_;  // even RTP ports (RTCP on +1)
    std::uint64_t media_failures_ = 0;
    std::uint64_t ended_inactive_ = 0, ended_banned_ = 0;
    RelayQuality quality_;  // legs of closed streams
    std::unique_ptr<signaling::B2bua> b2bua_;
    HepExporter* hep_ = nullptr;
    std::function<base::UnixNanos()> wall_;
    base::Endpoint local_[2];  // the SBC's signaling address per side (Side as index)
    sip::Message sent_;        // our own outgoing message, parsed for its Call-ID (capture only)
};

}  // namespace sbc

#include "sbc/front_door.hpp"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>

#include <spdlog/spdlog.h>

#include "base/sockaddr.hpp"
#include "sbc/control.hpp"
#include "sbc/daemon.hpp"
#include "sbc/dataplane_wiring.hpp"
#include "sbc/fraud_wiring.hpp"

namespace sbc {

namespace {

// Everything of an EngineConfig that changes a verdict, as text: equal fingerprints mean the
// running engine (and the state it has gathered) can stay.
std::string fingerprint(const fraud::EngineConfig& c) {
    std::string f;
    auto add = [&f](const auto&... v) {
        ((
             f +=
             [](const auto& x) {
                 if constexpr (std::is_convertible_v<decltype(x), std::string_view>)
                     return std::string(x);
                 else
                     return std::to_string(x);
             }(v),
             f += '\x1f'),
         ...);
    };
    auto list = [&add](const std::vector<std::string>& v) {
        add(v.size());
        for (const auto& s : v) add(s);
    };
    add(static_cast<int>(c.mode), c.score_cap, c.flag_threshold, c.block_threshold, c.ban_threshold,
        c.ban_duration, c.max_tracked_keys, c.idle_key_expiry, c.short_call_seconds,
        c.short_ring_seconds, c.max_tracked_calls, c.max_call_duration, c.ban_capacity,
        c.source_prefix_v4, c.source_prefix_v6, c.sequential_max_step, c.home_country_code,
        c.empty_user_agent_is_scanner, c.zoneinfo_dir);
    add(c.country_codes.size());
    for (const auto& cc : c.country_codes) add(cc.code, cc.iso);
    add(c.prefix_lists.size());
    for (const auto& l : c.prefix_lists) {
        add(l.name, static_cast<int>(l.category));
        list(l.prefixes);
    }
    add(c.account_groups.size());
    for (const auto& g : c.account_groups) {
        add(g.name, g.tenant, g.timezone);
        list(g.accounts);
        list(g.account_patterns);
        list(g.allowed_source_countries);
        list(g.allowed_destination_countries);
        for (const auto& h : g.business_hours) add(h.days, h.start_minute, h.end_minute);
    }
    list(c.scanner_user_agents);
    add(c.rules.size());
    for (const auto& r : c.rules) {
        add(r.id, static_cast<int>(r.feature), static_cast<int>(r.key), r.window,
            static_cast<int>(r.op), r.threshold, r.weight, static_cast<int>(r.mode),
            r.scope.destinations, static_cast<int>(r.scope.time), r.min_attempts, r.count_blocked);
        add(r.scope.directions.size());
        for (auto d : r.scope.directions) add(static_cast<int>(d));
        list(r.scope.tenants);
        list(r.scope.account_groups);
        list(r.lists);
    }
    add(c.deny.size());
    for (const auto& d : c.deny) {
        add(d.id, d.destinations, d.ban, d.callers);
        list(d.countries);
        list(d.source_countries);
        list(d.caller_countries);
    }
    list(c.callback_lists);
    add(c.callback_expiry, c.callback_capacity);
    return f;
}

void front_door_handler(const dataplane::PacketMeta& m, void* ctx) {
    static_cast<FrontDoor*>(ctx)->on_datagram(m);
}

}  // namespace

policy::TrafficClass limit_class(sip::Method method) {
    if (method == sip::Method::invite) return policy::TrafficClass::sip_invite;
    if (method == sip::Method::register_) return policy::TrafficClass::sip_register;
    return policy::TrafficClass::sip_other;
}

std::optional<std::string_view> scanner_match(const policy::ScannerSignatures& s,
                                              std::string_view user_agent) {
    if (user_agent.empty())
        return s.empty_user_agent_is_scanner ? std::optional<std::string_view>("") : std::nullopt;
    if (const auto* g = s.match(user_agent)) return std::string_view(g->pattern());
    return std::nullopt;
}

FrontDoor::FrontDoor(Daemon& daemon, DataplaneRuntime& rt)
    : daemon_(daemon),
      rt_(rt),
      observer_(*this, nullptr),
      account_limits_(kAccountLimiterCapacity, std::random_device{}()) {}

FrontDoor::~FrontDoor() = default;

void FrontDoor::stop_calls() {
    (void)rt_.call([this] {
        dispatcher_.set_core(nullptr);
        core_.reset();
        return std::string();
    });
}

base::Result<std::unique_ptr<FrontDoor>> FrontDoor::attach(Daemon& daemon, DataplaneRuntime& rt) {
    std::unique_ptr<FrontDoor> fd(new FrontDoor(daemon, rt));
    FrontDoor* self = fd.get();
    if (const auto& path = daemon.config().geoip_database; !path.empty()) {
        auto geo = fraud::GeoIp::open(path);
        if (!geo) return base::make_error("fraud engine: " + geo.error().message);
        self->geoip_ = *geo;
    }
    // Joining builds the engine before any datagram can reach it. Reloads install theirs on
    // the dataplane thread, between two polls, so scoring never takes a lock. (A failed
    // attach ends run(): no reload can reach the participant afterwards.)
    auto refused = daemon.add_policy_participant(
        {"fraud_engine", [self](const std::shared_ptr<const policy::Policy>& p) {
             return self->prepare_policy(p);
         }});
    if (!refused.empty()) {
        std::string why;
        for (const auto& d : refused) why += (why.empty() ? "" : "; ") + d.to_string();
        return base::make_error(why);
    }
    std::vector<StreamTransport::ListenerSpec> stream_specs;
    std::vector<CallCore::StreamListenerRef> stream_refs;
    std::string error = rt.call([self, &daemon, &stream_specs, &stream_refs]() -> std::string {
        // Calls go through when the node has an internal listener, a next hop and a backend
        // that offers relay streams to signaling; otherwise requests get the placeholder.
        std::uint32_t ext = 0, in = 0;
        bool have_ext = false, have_in = false;
        const auto& node = daemon.config();
        for (const auto& l : node.listeners) {
            if (l.transport == policy::Transport::udp) continue;
            // TCP and TLS: sockets of the stream transport, one listener index each.
            StreamTransport::ListenerSpec spec;
            spec.local = l.endpoint;
            spec.transport = l.transport == policy::Transport::tls ? signaling::Transport::tls
                                                                   : signaling::Transport::tcp;
            spec.index = static_cast<std::uint32_t>(self->listeners_.size());
            if (l.transport == policy::Transport::tls) {
                const auto& t = node.tls;
                const auto& v = l.has_client_verification ? l.clients : t.clients;
                spec.tls.certificate_chain = t.certificate_chain;
                spec.tls.private_key = t.private_key;
                spec.tls.min_version = t.min_version;
                spec.tls.ciphers = t.ciphers;
                spec.tls.ciphersuites = t.ciphersuites;
                spec.tls.groups = t.groups;
                spec.tls.client_ca = v.client_ca;
                spec.tls.require_client_certificate = v.require_client_certificate;
                spec.tls.client_names = v.client_names;
            }
            stream_refs.push_back({l.realm, l.transport, l.endpoint, spec.index});
            stream_specs.push_back(std::move(spec));
            self->listeners_.push_back(
                {l.endpoint, -1,
                 l.realm == policy::Realm::internal ? signaling::Side::internal
                                                    : signaling::Side::external,
                 stream_specs.back().transport,
                 l.realm == policy::Realm::external &&
                     l.enumeration_resistance.value_or(node.registrations.enumeration_resistance)});
        }
        self->rt_.set_tick([self](base::Nanos now) { self->on_tick(now); });
        for (const auto& l : node.listeners) {
            if (l.transport != policy::Transport::udp) continue;
            if (l.realm == policy::Realm::external && !have_ext) {
                ext = static_cast<std::uint32_t>(self->listeners_.size()), have_ext = true;
            } else if (l.realm == policy::Realm::internal && !have_in) {
                in = static_cast<std::uint32_t>(self->listeners_.size()), have_in = true;
            } else if (l.realm == policy::Realm::internal) {
                continue;
            }
            auto r = self->rt_.open_signaling(l.endpoint, front_door_handler, self);
            if (!r) return "SIP listener udp " + l.endpoint.to_string() + ": " + r.error().message;
            self->listeners_.push_back(
                {l.endpoint, *r,
                 l.realm == policy::Realm::internal ? signaling::Side::internal
                                                    : signaling::Side::external,
                 signaling::Transport::udp,
                 l.realm == policy::Realm::external &&
                     l.enumeration_resistance.value_or(node.registrations.enumeration_resistance)});
            spdlog::info("SIP listener udp {} open ({})", l.endpoint.to_string(),
                         l.realm == policy::Realm::internal ? "internal" : "external");
        }
        auto setup = CallCore::setup_from(daemon.config(), ext, in, stream_refs);
        for (const auto& h : node.next_hops)
            if (h.transport == policy::Transport::tls && !h.server_name.empty())
                self->tls_names_.emplace_back(h.endpoint, h.server_name);
        MediaStreams* streams = self->rt_.media_streams();
        if (!setup || !streams) {
            spdlog::warn("calls are not forwarded ({}): requests get the placeholder answer",
                         !setup ? setup.error().message
                                : std::string(self->rt_.backend()) +
                                      " backend: relay streams not offered to signaling yet");
            return {};
        }
        const auto& hc = daemon.config().health_check;
        setup->b2bua.health.enabled = hc.enabled;
        setup->b2bua.health.interval = hc.interval;
        setup->b2bua.health.timeout = hc.timeout;
        setup->b2bua.health.failures_before_down = hc.failures_before_down;
        setup->b2bua.health.successes_before_up = hc.successes_before_up;
        self->apply_topology(setup->b2bua);
        self->core_ = std::make_unique<CallCore>(
            std::move(*setup), *streams,
            [self](const signaling::Flow& f, std::string_view bytes) {
                return self->send_flow(f, bytes);
            },
            [self](const sip::Message&, const signaling::Flow&, signaling::Side) {
                return self->dispatcher_.admission();
            },
            [self](const signaling::CallInfo& c, signaling::CallEnd) { self->call_answered(c); },
            [self](const signaling::CallInfo& c, signaling::CallEnd e) { self->call_ended(c, e); },
            [self](const signaling::CallInfo& c, int status) { self->response_relayed(c, status); },
            [self](const sip::Message& m, const signaling::Flow& f, int status) {
                return self->register_answered(m, f, status);
            });
        self->dispatcher_.set_core(self->core_.get());
        self->rt_.set_media_events([self](const dataplane::MediaEvent& e) {
            if (self->core_ && e.kind == dataplane::MediaEventKind::inactive)
                self->core_->media_inactive(e.call_id, e.id, self->rt_.monotonic());
        });
        if (const auto& cfg = daemon.config(); cfg.hep_enabled) {
            auto hep = HepExporter::start(cfg.hep_collector, cfg.hep_capture_id, cfg.hep_password,
                                          cfg.hep_queue);
            if (!hep) return hep.error().message;
            self->hep_ = std::move(*hep);
            self->core_->set_capture(self->hep_.get(), [self] { return self->rt_.wall(); });
            spdlog::info("HEP capture to {} (capture id {})", cfg.hep_collector.to_string(),
                         cfg.hep_capture_id);
        }
        self->core_->advance(self->rt_.monotonic());  // the first health probes go now
        for (const auto& h : daemon.config().next_hops) {
            spdlog::info("next hop {} {} ({}{})", h.name, h.endpoint.to_string(),
                         policy::name(h.transport),
                         h.server_name.empty() ? std::string() : ", tls name " + h.server_name);
        }
        spdlog::info("calls: external -> internal next hops through the B2BUA");
        return {};
    });
    if (!error.empty()) return base::make_error(error);
    if (!stream_specs.empty()) {
        const auto& cc = daemon.config().connections;
        StreamTransport::Options o;
        o.limits.max_connections = cc.max_connections;
        o.limits.max_per_source = cc.max_per_source;
        o.limits.max_outgoing = cc.max_outgoing;
        // Outgoing TLS verifies servers against [tls] server_ca (else the system's store) and
        // presents the node's certificate when a server asks for one.
        const auto& tc = daemon.config().tls;
        o.client_tls_enabled = true;
        o.client_tls.ca_file = tc.server_ca;
        o.client_tls.certificate_chain = tc.certificate_chain;
        o.client_tls.private_key = tc.private_key;
        o.client_tls.min_version = tc.min_version;
        o.client_tls.ciphers = tc.ciphers;
        o.client_tls.ciphersuites = tc.ciphersuites;
        o.client_tls.groups = tc.groups;
        o.limits.max_message_bytes = cc.max_message_bytes;
        o.limits.max_buffered_bytes = cc.max_buffered_bytes;
        o.limits.handshake_timeout = cc.handshake_timeout;
        o.limits.idle_timeout = cc.idle_timeout;
        o.wake_signaling = [&rt = self->rt_] { rt.wake(); };
        auto t = StreamTransport::open(std::move(stream_specs), o);
        if (!t) return base::make_error(t.error().message);
        StreamTransport* transport = t->get();
        // Certificates and keys are reread on every reload; a broken one refuses the reload
        // (the running certificate stays) and the reload's result says why.
        auto refused = daemon.add_policy_participant(
            {"tls_certificates", [transport](const std::shared_ptr<const policy::Policy>& p) {
                 auto contexts = transport->prepare_tls();
                 if (!contexts)
                     return policy::PolicyChange::refuse(
                         {policy_diagnostic(*p, contexts.error().message)});
                 auto holder = std::make_shared<StreamTransport::Contexts>(std::move(*contexts));
                 return policy::PolicyChange::ready(
                     [transport, holder] { transport->install_tls(std::move(*holder)); });
             }});
        if (!refused.empty()) return base::make_error(refused.front().to_string());
        (void)rt.call([self, &t] {
            self->streams_ = std::move(*t);
            return std::string();
        });
        self->streams_->start();
        for (const auto& l : self->listeners_)
            if (l.transport != signaling::Transport::udp)
                spdlog::info("SIP listener {} {} open ({})",
                             l.transport == signaling::Transport::tls ? "tls" : "tcp",
                             l.local.to_string(),
                             l.side == signaling::Side::internal ? "internal" : "external");
    }
    daemon.add_control_command("stats", [self](std::string_view) {
        return self->rt_.call([self] { return self->rt_.stats_command() + self->stats_text(); });
    });
    // `sbc ctl fraud lists`: the lists the engine maintains (the callback list, learned from
    // inbound short rings of flagged ranges), one "list number expires_in_s" line each.
    daemon.add_control_command("fraud", [self](std::string_view args) {
        const std::string a(args);
        return self->rt_.call([self, a]() -> std::string {
            if (a != "lists") return "error: usage: fraud lists\n";
            if (!self->engine_) return "";
            const base::Nanos now = self->rt_.monotonic();
            std::string out;
            for (const auto& n : self->engine_->learned_callbacks(now))
                out += "callback " + n.number + " " +
                       std::to_string((n.until - now) / base::kNanosPerSecond) + "\n";
            return out;
        });
    });
    daemon.add_control_command("calls", [self](std::string_view) {
        return self->rt_.call([self] {
            return self->core_ ? self->core_->calls_text(self->rt_.monotonic())
                               : std::string("calls=0 (calls are not forwarded)\n");
        });
    });
    daemon.add_control_command("call", [self](std::string_view args) {
        const std::string a(args);
        return self->rt_.call([self, a] { return self->call_command(a); });
    });
    daemon.add_control_command("registrations", [self](std::string_view args) {
        const std::string a(args);
        return self->rt_.call([self, a] {
            return registrations_text(self->core_ ? self->core_->registrar() : nullptr, a,
                                      self->rt_.monotonic());
        });
    });
    daemon.add_control_command("registration", [self](std::string_view args) {
        const std::string a(args);
        return self->rt_.call([self, a] {
            return registration_command(self->core_ ? self->core_->registrar() : nullptr, a,
                                        self->rt_.monotonic());
        });
    });
    daemon.add_control_command("answer", [self](std::string_view args) {
        const std::string a(args);
        return self->rt_.call([self, a] { return self->answer_command(a); });
    });
    return fd;
}

policy::PolicyChange FrontDoor::prepare_policy(const std::shared_ptr<const policy::Policy>& p) {
    auto cfg = fraud_config(*p);
    if (!cfg)
        return policy::PolicyChange::refuse(
            {policy_diagnostic(*p, "fraud engine: " + cfg.error().message)});
    std::string fp = fingerprint(*cfg);
    // std::function needs copyable captures: the engine travels in a shared holder.
    auto next = std::make_shared<std::unique_ptr<fraud::Engine>>();
    if (fp != engine_fingerprint_) {
        cfg->geoip = geoip_;
        auto engine = fraud::Engine::create(std::move(*cfg));
        if (!engine) {
            auto why = check_fraud_engine(*p);  // the same refusal, at the rule's position
            if (why.empty()) why.push_back(policy_diagnostic(*p, engine.error().message));
            return policy::PolicyChange::refuse(std::move(why));
        }
        *next = std::move(*engine);
    }
    // The node's footprint is fixed at start (and at each rebuild), not reached by the first
    // few thousand sources touching the tables' pages at random. An engine that will take
    // over the running one's tables keeps none of its own: nothing to commit. engine_ is only
    // written by a commit, which runs while this (reloading) thread waits for it.
    std::size_t committed = 0;
    const bool own_tables = *next && !(engine_ && (*next)->takes_state_of(*engine_));
    if (own_tables) {
        committed = (*next)->commit_tables();
        spdlog::info("fraud engine: {} MiB of state tables committed ({} keys)", committed >> 20,
                     (*next)->config().max_tracked_keys);
    }
    return policy::PolicyChange::ready([this, p, next, own_tables, committed, fp = std::move(fp)] {
        std::unique_ptr<fraud::Engine> retired;
        const bool replaced = *next != nullptr;
        (void)rt_.call([&] {
            retired = commit_policy(p, std::move(*next));
            engine_fingerprint_ = fp;
            if (replaced && engine_) {
                fraud_table_bytes_ = engine_->table_bytes();
                fraud_max_tracked_keys_ = engine_->config().max_tracked_keys;
                if (own_tables) fraud_committed_bytes_ = committed;
            }
            return std::string();
        });
        // `retired` (and its tables) is freed here, on the reloading thread.
    });
}

std::string FrontDoor::memory_status() const {
    return "fraud_max_tracked_keys=" + std::to_string(fraud_max_tracked_keys_.load()) +
           "\nfraud_table_bytes=" + std::to_string(fraud_table_bytes_.load()) +
           "\nfraud_table_committed_bytes=" + std::to_string(fraud_committed_bytes_.load()) + "\n";
}

std::string FrontDoor::next_hops_status() {
    return rt_.call([this] { return core_ ? core_->next_hops_text() : std::string(); });
}

std::unique_ptr<fraud::Engine> FrontDoor::commit_policy(std::shared_ptr<const policy::Policy> p,
                                                        std::unique_ptr<fraud::Engine> next) {
    policy_ = std::move(p);
    if (core_) {
        // The [topology] options of the new policy for the messages the B2BUA relays from now.
        signaling::B2buaConfig b = core_->b2bua_config();
        b.strip_headers = signaling::B2buaConfig{}.strip_headers;
        b.reason_phrases.clear();
        b.user_agent = signaling::B2buaConfig{}.user_agent;
        apply_topology(b);
        core_->set_topology(b.strip_headers, b.reason_phrases, b.user_agent);
    }
    observer_.set_numbering(policy_ ? &policy_->numbering : nullptr);
    observer_.set_access(policy_ ? &policy_->access : nullptr);
    if (!next) return nullptr;  // same fraud configuration: the engine and its state carry on
    if (engine_ && engine_->hand_over_state(*next)) {
        // Retuned rules (thresholds, weights, modes, lists) keep the gathered state: a rebuild
        // would give every key, an ongoing attack's included, a fresh budget.
        spdlog::info("fraud rules updated in place, state kept");
        events_.add(FrontDoorEvent::engine_reconfigured);
    } else {
        if (engine_) {
            // A new feature, window, scope or key kind needs another state layout: those rules
            // start from empty windows (bans already in the dataplane stay).
            spdlog::warn("fraud configuration changed: engine rebuilt, its counters start afresh");
            events_.add(FrontDoorEvent::engine_rebuilt);
        }
        // Every flag/block/ban verdict (and shadow non-allow) as one JSON line in the daemon
        // log. (A handed-over state brings its sink along.)
        next->set_event_sink([](std::string_view line) { spdlog::warn("{}", line); });
    }
    std::swap(engine_, next);
    return next;
}

void FrontDoor::on_tick(base::Nanos now) {
    if (streams_) drain_streams();
    if (core_)
        for (const auto& [source, account] : banned_calls_) core_->end_banned(source, account, now);
    banned_calls_.clear();
    if (core_) {
        core_->advance(now);
        observer_.expire(now, rt_.wall());  // challenges not followed
    }
    // What ended calls and transactions freed goes back to the kernel: freed chunks in the
    // middle of the heap are otherwise kept by the allocator, and the node would keep the
    // resident size of its busiest minute.
    if (!fed_bans_.empty() && now - last_ban_feedback_ >= kBanFeedbackInterval) {
        last_ban_feedback_ = now;
        feed_ban_drops(now);
    }
    if (now - last_trim_ >= kTrimInterval) {
        last_trim_ = now;
        malloc_trim(0);
    }
}

void FrontDoor::feed_ban_drops(base::Nanos now) {
    // One pass over the dataplane's bans, only while a fraud ban of ours is live.
    std::unordered_map<std::string, FedBan> live;
    for (const auto& b : rt_.active_bans()) {
        if (b.origin != dataplane::BanOrigin::fraud) continue;
        auto key = b.prefix.to_string();
        auto it = fed_bans_.find(key);
        if (it == fed_bans_.end()) continue;
        // A ban posted again (escalated) may start its count afresh.
        const std::uint64_t seen = it->second.hits;
        const std::uint64_t dropped = b.hits >= seen ? b.hits - seen : b.hits;
        if (dropped && engine_)
            events_.add(FrontDoorEvent::fraud_ban_drops_fed,
                        engine_->on_banned_drops(b.prefix, dropped, now));
        live[std::move(key)] = {b.hits, it->second.posted};
    }
    // Posted a moment ago and not in the table yet (the mailbox is behind): kept a few
    // seconds. Lapsed bans go.
    for (auto& [key, f] : fed_bans_)
        if (!live.count(key) && now - f.posted < 5 * base::kNanosPerSecond) live.emplace(key, f);
    fed_bans_ = std::move(live);
}

void FrontDoor::drain_streams() {
    // Bounded per tick: the relay's loop runs again before the next batch.
    stream_batch_.clear();
    streams_->drain(stream_batch_, 1024);
    for (auto& in : stream_batch_) {
        if (in.kind == StreamTransport::Inbound::Kind::admit) {
            streams_->admit(in.connection, rt_.admit_connection(in.remote, in.local));
            continue;
        }
        if (in.kind == StreamTransport::Inbound::Kind::closed) {
            if (core_)
                core_->flow_closed({in.transport, in.remote, in.connection, in.listener},
                                   rt_.monotonic());
            continue;
        }
        if (in.kind == StreamTransport::Inbound::Kind::connect_failed) {
            // RFC 3261 §17.1.4: what was sent there fails as a transport error (failover).
            if (core_)
                core_->transport_failed({in.transport, in.remote, 0, in.listener}, rt_.monotonic());
            continue;
        }
        if (in.bytes.size() > 0xffff) continue;  // max_message_bytes is at most 65535
        dataplane::PacketMeta m;
        m.src = in.remote.addr;
        m.src_port = in.remote.port;
        m.dst = in.local.addr;
        m.dst_port = in.local.port;
        m.l4_proto = 6;
        m.payload = reinterpret_cast<const std::uint8_t*>(in.bytes.data());
        m.payload_len = static_cast<std::uint16_t>(in.bytes.size());
        stream_ = {true, in.connection, in.transport, in.listener};
        on_datagram(m);
        stream_ = {};
    }
}

signaling::Flow FrontDoor::flow_of(const dataplane::PacketMeta& m, std::size_t listener) const {
    signaling::Flow f;
    f.transport = stream_.active ? stream_.transport : signaling::Transport::udp;
    f.remote = {m.src, m.src_port};
    f.connection = stream_.active ? stream_.connection : 0;
    f.listener = static_cast<std::uint32_t>(listener);
    return f;
}

void FrontDoor::on_datagram(const dataplane::PacketMeta& m) {
    const std::string_view bytes(reinterpret_cast<const char*>(m.payload), m.payload_len);
    const std::size_t li = listener_of(m);
    signaling::Arrival a;
    a.flow = flow_of(m, li);
    a.local = {m.dst, m.dst_port};
    a.listener_known = li < listeners_.size();
    a.side = a.listener_known ? listeners_[li].side : signaling::Side::external;
    a.uniform = a.listener_known && listeners_[li].uniform;
    a.now = rt_.monotonic();
    const auto d = dispatcher_.dispatch(bytes, a);
    using Kind = signaling::Dispatcher::Dispatched::Kind;
    if (d.kind == Kind::response)
        metrics_.response(static_cast<std::size_t>(a.side), false, d.status);
    else if (d.kind == Kind::request)
        metrics_.request(static_cast<std::size_t>(a.side), d.method);
}

bool FrontDoor::trusted(const base::IpAddress& source) {
    return policy_ && policy_->classify_source(source) == policy::SourceVerdict::trusted;
}

bool FrontDoor::screen(const sip::Message& m, const signaling::Arrival& a) {
    return policy_ && (refuse_scanner(m, a) || refuse_over_account_limit(m, a));
}

bool FrontDoor::send(const signaling::Flow& to, std::string_view bytes) {
    if (to.listener >= listeners_.size()) {
        events_.add(FrontDoorEvent::send_failed);
        return false;
    }
    return send_to(to.listener, to.remote, bytes, to.connection);
}

void FrontDoor::answered(const sip::Message& m, const signaling::Arrival& a,
                         std::string_view response) {
    if (!hep_) return;
    // The front door's own answers (blocks, drain, placeholders) reach Homer too, with the
    // request they answer; no other leg exists, so the Call-ID is the correlation id.
    const auto& local = listeners_[a.flow.listener].local;
    const base::UnixNanos t = rt_.wall();
    hep_->capture(a.flow.remote, local, t, m.call_id(), m.bytes());
    hep_->capture(local, a.flow.remote, t, m.call_id(), response);
}

bool FrontDoor::refuse_scanner(const sip::Message& msg, const signaling::Arrival& a) {
    const auto& s = policy_->scanners;
    if (s.user_agents.empty() && !s.empty_user_agent_is_scanner) return false;
    const auto sig = scanner_match(s, msg.user_agent());
    if (!sig) return false;
    events_.add(FrontDoorEvent::refused_scanner);
    security_event(SecurityEventKind::scanner,
                   {{"source", a.flow.remote.addr.to_string()},
                    {"user_agent", std::string(msg.user_agent())},
                    {"signature", std::string(*sig)},
                    {"action", s.action == policy::DenyAction::ban ? "ban" : "block"}});
    if (s.action == policy::DenyAction::ban) {
        // Duration 0: the dataplane escalates per [bans] (base, factor, max), as for floods.
        const base::IpAddress& src = a.flow.remote.addr;
        const base::Prefix host(src, src.is_v4() ? 32 : 128);
        if (rt_.post_ban(host, 0, dataplane::BanOrigin::signaling)) {
            events_.add(FrontDoorEvent::scanner_bans_posted);
            spdlog::warn("scanner ban: {} (User-Agent matches \"{}\")", host.to_string(), *sig);
        } else {
            events_.add(FrontDoorEvent::scanner_bans_rejected);
        }
    }
    return true;
}

bool FrontDoor::refuse_over_account_limit(const sip::Message& msg, const signaling::Arrival& a) {
    const auto cls = limit_class(msg.method());
    const auto& limit = policy_->rate_limits.get(cls, policy::LimitKey::account);
    if (!limit.enabled) return false;
    // No account (no username, no From user): the per-source limits of the dataplane apply.
    const std::string_view account = account_of(msg);
    if (account.empty() || account_limits_.admit(account, cls, limit, a.now)) return false;
    events_.add(FrontDoorEvent::refused_account_limit);
    return true;
}

signaling::Admission FrontDoor::score(const sip::Message& msg, const signaling::Arrival& a) {
    signaling::Admission out;
    verdict_.reset();
    if (!engine_) return out;
    events_.add(FrontDoorEvent::fraud_events);
    ObservedMessage at;
    at.source = a.flow.remote;
    at.destination = a.local;
    at.now = a.now;
    at.wall = rt_.wall();
    if (msg.method() == sip::Method::register_)
        // Not forwarded: the answer it gets is the placeholder, never a success.
        observer_.registration_answered(msg, dispatcher_.placeholder().status, at);
    else
        observer_.request_offered(msg, at);
    if (verdict_.action == fraud::Action::flag) {
        out.kind = signaling::Admission::Kind::flag;
        out.flag_value = flag_text(verdict_);
    } else if (verdict_.action == fraud::Action::block || verdict_.action == fraud::Action::ban) {
        out.kind = signaling::Admission::Kind::block;
    }
    return out;
}

void FrontDoor::apply_verdict(const fraud::Verdict& v, const base::IpAddress& source,
                              base::Nanos now, std::string_view account) {
    verdicts_.add(v.action);
    metrics_.verdict(v);
    if (v.action != fraud::Action::allow && !v.duplicate) verdict_event(v, source);
    // [fraud] end_calls_on_ban: the running calls of a banned source or account end too (an
    // IRSF call lasts tens of minutes; refusing the next one is not enough).
    // Not here: a verdict may come from inside a B2BUA callback (an authentication outcome
    // seen in a relayed response); the calls end at the next tick.
    if (v.action == fraud::Action::ban && core_ && policy_ && policy_->fraud.end_calls_on_ban &&
        banned_calls_.size() < 1024)
        banned_calls_.emplace_back(source, std::string(account));
    if (v.action != fraud::Action::ban || v.banned_source || source.is_unspecified()) return;
    // A calling number (traffic of a trusted trunk) is banned in the engine only: the trunk's
    // address is never banned.
    if (v.ban_target != fraud::BanTarget::source_address &&
        v.ban_target != fraud::BanTarget::source_prefix)
        return;
    const bool prefix = v.ban_target == fraud::BanTarget::source_prefix;
    const base::Prefix host =
        prefix ? base::covering_prefix(source, v.ban_prefix_length, v.ban_prefix_length)
               : base::Prefix(source, source.is_v4() ? 32 : 128);
    // A prefix ban escalates per [bans] like the dataplane's own (duration 0).
    const base::Nanos duration = prefix              ? 0
                                 : v.ban_until > now ? v.ban_until - now
                                                     : engine_->config().ban_duration;
    if (rt_.post_ban(host, duration, dataplane::BanOrigin::fraud)) {
        events_.add(FrontDoorEvent::fraud_bans_posted);
        if (fed_bans_.size() < kMaxFedBans) fed_bans_[host.to_string()].posted = now;
        spdlog::warn("fraud ban: {} for {}", host.to_string(),
                     prefix ? std::string("the [bans] ladder")
                            : std::to_string(duration / base::kNanosPerSecond) + " s");
    } else {
        events_.add(FrontDoorEvent::fraud_bans_rejected);
    }
}

void FrontDoor::attempt(const fraud::CallAttempt& a) {
    engine_->on_attempt(a, verdict_);
    apply_verdict(verdict_, a.source.addr, a.now, a.account);
}

void FrontDoor::registration(const fraud::Registration& r) {
    engine_->on_register(r, verdict_);
    register_action_ = std::max(register_action_, verdict_.action);
    apply_verdict(verdict_, r.source.addr, r.now);
}

void FrontDoor::auth(const fraud::AuthResult& a) {
    events_.add(FrontDoorEvent::fraud_auth_events);
    fraud::Verdict v;
    engine_->on_auth(a, v);
    register_action_ = std::max(register_action_, v.action);
    apply_verdict(v, a.source.addr, a.now);
}

bool FrontDoor::register_answered(const sip::Message& m, const signaling::Flow& from, int status) {
    if (!engine_) return false;
    events_.add(FrontDoorEvent::fraud_events);
    ObservedMessage at;
    at.source = from.remote;
    at.tcp = from.transport != signaling::Transport::udp;
    at.tls = from.transport == signaling::Transport::tls;
    at.now = rt_.monotonic();
    at.wall = rt_.wall();
    register_action_ = fraud::Action::allow;
    observer_.registration_answered(m, status, at);
    return register_action_ == fraud::Action::block || register_action_ == fraud::Action::ban;
}

void FrontDoor::answered(const fraud::CallAnswered& a) {
    engine_->on_answer(a);
}

void FrontDoor::ended(const fraud::CallEnded& e) {
    engine_->on_end(e);
}

std::string FrontDoor::flag_text(const fraud::Verdict& v) {
    char score[32];
    std::snprintf(score, sizeof score, "score=%.0f", v.score);
    std::string out = score;
    out += "; rules=";
    for (std::size_t i = 0; i < v.reason_count; ++i) {
        if (i) out += ',';
        out += v.reasons[i].rule_id;
    }
    return out;
}

void FrontDoor::call_answered(const signaling::CallInfo& c) {
    metrics_.answered(c);
    // A caller with an answered call is known: its datagrams get a queue of their own, which a
    // spoofed flood filling the listener's cannot overflow.
    if (c.from == signaling::Side::external && c.source.transport == signaling::Transport::udp &&
        c.source.listener < listeners_.size())
        rt_.protect_signaling_peer(listeners_[c.source.listener].local, c.source.remote);
    if (engine_) observer_.call_answered(c, rt_.monotonic(), rt_.wall());
}

void FrontDoor::call_ended(const signaling::CallInfo& c, signaling::CallEnd how) {
    events_.add(FrontDoorEvent::calls_ended);
    if (engine_) observer_.call_ended(c, how, rt_.monotonic(), rt_.wall());
}

void FrontDoor::response_relayed(const signaling::CallInfo& c, int status) {
    if (engine_) observer_.response_relayed(c, status, rt_.monotonic(), rt_.wall());
}

void FrontDoor::apply_topology(signaling::B2buaConfig& b) const {
    if (!policy_) return;
    const auto& t = policy_->topology;
    for (const auto& h : t.strip_headers) b.strip_headers.push_back(h);
    for (const auto& [code, phrase] : t.reason_phrases) b.reason_phrases.emplace_back(code, phrase);
    if (!t.server_header.empty()) b.user_agent = t.server_header;
}

bool FrontDoor::send_to(std::size_t listener, const base::Endpoint& to, std::string_view bytes,
                        std::uint64_t connection) {
    if (listener >= listeners_.size()) return false;
    if (listeners_[listener].transport != signaling::Transport::udp) {
        // RFC 3261 §18.2.2: a response goes back on the connection its request came on; a
        // request to a client goes on the connection the client uses (there are no outgoing
        // connections yet).
        if (!streams_ || connection == 0 || !streams_->send(connection, std::string(bytes))) {
            events_.add(FrontDoorEvent::send_failed);
            return false;
        }
        return true;
    }
    // Always to the packet's source address and port for answers (symmetric response routing,
    // RFC 3581 §4 for every client): never to an address named inside a message, which would
    // make the SBC a reflector.
    sockaddr_storage ss;
    const socklen_t len = base::to_sockaddr(to, ss);
    const auto n = ::sendto(listeners_[listener].fd, bytes.data(), bytes.size(), MSG_DONTWAIT,
                            reinterpret_cast<sockaddr*>(&ss), len);
    if (n != static_cast<ssize_t>(bytes.size())) {
        events_.add(FrontDoorEvent::send_failed);
        return false;
    }
    metrics_.sent(static_cast<std::size_t>(listeners_[listener].side), bytes);
    return true;
}

bool FrontDoor::send_flow(const signaling::Flow& f, std::string_view bytes) {
    if (f.transport == signaling::Transport::udp) return send_to(f.listener, f.remote, bytes);
    if (f.connection != 0) {  // the connection the peer opened, or ours it answers on
        if (!streams_ || !streams_->send(f.connection, std::string(bytes))) {
            events_.add(FrontDoorEvent::send_failed);
            return false;
        }
        return true;
    }
    std::string name;
    for (const auto& [ep, n] : tls_names_)
        if (ep == f.remote && f.transport == signaling::Transport::tls) name = n;
    if (!streams_ || !streams_->send_to(f.transport, f.remote, std::move(name), f.listener,
                                        std::string(bytes))) {
        events_.add(FrontDoorEvent::send_failed);
        return false;
    }
    if (f.listener < listeners_.size())
        metrics_.sent(static_cast<std::size_t>(listeners_[f.listener].side), bytes);
    return true;
}

std::size_t FrontDoor::listener_of(const dataplane::PacketMeta& meta) const {
    if (stream_.active) return stream_.listener;
    for (std::size_t i = 0; i < listeners_.size(); ++i)
        if (listeners_[i].transport == signaling::Transport::udp &&
            listeners_[i].local.port == meta.dst_port && listeners_[i].local.addr == meta.dst)
            return i;
    return listeners_.size();
}

std::string FrontDoor::answer_command(std::string_view args) {
    // answer [STATUS [RETRY_AFTER_S] [REASON...]]: the placeholder final response.
    std::string a(args);
    while (!a.empty() && (a.back() == '\n' || a.back() == ' ' || a.back() == '\r')) a.pop_back();
    if (!a.empty()) {
        int status = 0;
        auto& placeholder = dispatcher_.placeholder();
        unsigned retry = placeholder.retry_after;
        char reason[128] = "";
        const int n = std::sscanf(a.c_str(), "%d %u %127[^\n]", &status, &retry, reason);
        // 2xx would tell a peer that a call or registration succeeded: never a fake success.
        if (n < 1 || status < 300 || status > 699)
            return "error: usage: answer [STATUS(300-699) [RETRY_AFTER_S] [REASON]]\n";
        placeholder.status = status;
        placeholder.retry_after = n >= 2 ? retry : 0;
        if (n >= 3)
            placeholder.reason = reason;
        else if (status == 503)
            placeholder.reason = "Service Unavailable";
        else if (status == 480)
            placeholder.reason = "Temporarily Unavailable";
        else
            placeholder.reason = "Unavailable";
    }
    const auto& placeholder = dispatcher_.placeholder();
    return "answer=" + std::to_string(placeholder.status) + " " + placeholder.reason +
           "\nretry_after=" + std::to_string(placeholder.retry_after) + "\n";
}

void FrontDoor::set_draining(bool on, std::uint32_t retry_after) {
    dispatcher_.set_draining(on, retry_after);
}

std::size_t FrontDoor::active_calls() {
    const std::string n =
        rt_.call([this] { return std::to_string(core_ ? core_->active_calls() : 0); });
    return static_cast<std::size_t>(std::stoull(n));
}

std::size_t FrontDoor::end_all_calls() {
    const std::string n = rt_.call([this] {
        std::size_t ended = 0;
        if (core_)
            for (auto id : core_->call_ids()) ended += core_->end_call(id, rt_.monotonic());
        return std::to_string(ended);
    });
    return static_cast<std::size_t>(std::stoull(n));
}

std::string FrontDoor::call_command(std::string_view args) {
    // call show ID | call hangup ID
    std::string verb(args.substr(0, args.find(' ')));
    std::string_view rest = verb.size() < args.size() ? args.substr(verb.size() + 1) : "";
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\r')) rest.remove_suffix(1);
    std::uint64_t id = 0;
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), id);
    if ((verb != "show" && verb != "hangup") || rest.empty() || ec != std::errc{} ||
        ptr != rest.data() + rest.size())
        return "error: usage: call show ID | call hangup ID (ids from `calls`)\n";
    if (!core_) return "error: calls are not forwarded on this node\n";
    if (verb == "show") {
        std::string t = core_->call_text(id, rt_.monotonic());
        return t.empty() ? "error: no call " + std::to_string(id) + " in progress\n" : t;
    }
    if (!core_->end_call(id, rt_.monotonic()))
        return "error: no call " + std::to_string(id) + " in progress\n";
    spdlog::info("call {} hung up from the control socket", id);
    return "ok call=" + std::to_string(id) + " ended\n";
}

std::string FrontDoor::stats_text() const {
    std::string out;
    for (std::size_t i = 0; i < kFrontDoorEventCount; ++i) {
        const auto e = static_cast<FrontDoorEvent>(i);
        out += "sip." + std::string(name(e)) + "=" + std::to_string(events_[e]) + "\n";
    }
    out += dispatcher_.stats_text();
    for (std::size_t i = 0; i < fraud::kActionCount; ++i) {
        const auto a = static_cast<fraud::Action>(i);
        out += "fraud.verdict." + std::string(name(a)) + "=" + std::to_string(verdicts_[a]) + "\n";
    }
    out += "listeners=" + std::to_string(listeners_.size()) + "\n";
    out += std::string("draining=") + (dispatcher_.draining() ? "1" : "0") + "\n";
    if (hep_) out += hep_->stats_text();
    if (core_) out += core_->stats_text();
    if (streams_) out += streams_->stats_text();
    out += "account_limits.used=" + std::to_string(account_limits_.used()) + "\n";
    out += "account_limits.capacity=" + std::to_string(account_limits_.capacity()) + "\n";
    out += "account_limits.evicted_idle=" + std::to_string(account_limits_.evicted_idle()) + "\n";
    out +=
        "account_limits.evicted_active=" + std::to_string(account_limits_.evicted_active()) + "\n";
    return out;
}

}  // namespace sbc

#include "sbc/call_observer.hpp"

#include <algorithm>

namespace sbc {

std::string_view account_of(const sip::Message& m) {
    if (const auto* a = m.authorization(); a && !a->username.empty()) return a->username;
    if (const auto* p = m.proxy_authorization(); p && !p->username.empty()) return p->username;
    return m.from() ? m.from()->uri.user : std::string_view{};
}

std::string_view registered_user_of(const sip::Message& m) {
    const std::string_view to_user = m.to() ? m.to()->uri.user : std::string_view{};
    return to_user.empty() ? account_of(m) : to_user;
}

std::string normalize_callee(std::string_view dialed, const policy::Numbering* numbering) {
    std::string callee = numbering ? numbering->normalize(dialed) : std::string();
    if (callee.empty()) callee = std::string(dialed);
    return callee;
}

std::string_view transport_name(bool tcp, bool tls) {
    return tls ? "tls" : tcp ? "tcp" : "udp";
}

fraud::RequestKind request_kind_of(sip::Method method) {
    using K = fraud::RequestKind;
    switch (method) {
        case sip::Method::invite:
            return K::call;
        case sip::Method::options:
            return K::probe;
        case sip::Method::register_:
            return K::registration;
        case sip::Method::message:
            return K::message;
        case sip::Method::subscribe:
        case sip::Method::notify:
        case sip::Method::publish:
            return K::subscription;
        default:
            return K::other;
    }
}

fraud::RequestKind request_kind_of(std::string_view method_name) {
    return request_kind_of(sip::method_from_name(method_name));
}

fraud::Outcome outcome_of(int status) {
    using O = fraud::Outcome;
    if (status >= 200 && status < 300) return O::answered;
    switch (status) {
        case 401:
        case 407:
            return O::auth_challenge;
        case 403:
            return O::auth_failure;
        case 404:
        case 604:
            return O::not_found;
        case 486:
        case 600:
            return O::busy;
        case 487:
            return O::cancelled;
        case 408:
            return O::timeout;
        default:
            break;
    }
    if (status >= 500 && status < 600) return O::failed;
    if (status >= 300 && status < 700) return O::rejected;
    return O::failed;
}

std::string_view calling_user_of(const sip::Message& m) {
    if (const auto* pai = m.find("P-Asserted-Identity")) {
        // <sip:user@host>, <tel:+number>, possibly a list: the first identity's user.
        std::string_view v = pai->value;
        for (std::string_view scheme : {"sip:", "sips:", "tel:"}) {
            auto at = v.find(scheme);
            if (at == std::string_view::npos) continue;
            v.remove_prefix(at + scheme.size());
            auto end = v.find_first_of("@;>, ");
            v = v.substr(0, end);
            if (!v.empty()) return v;
            break;
        }
    }
    return m.from() ? m.from()->uri.user : std::string_view{};
}

fraud::Direction direction_of(const ObservedMessage& at, const policy::AccessLists* access,
                              std::string_view callee) {
    std::size_t digits = 0;
    bool number = !callee.empty();
    for (char ch : callee) {
        if (ch >= '0' && ch <= '9')
            ++digits;
        else if (ch != '+')
            number = false;
    }
    const bool extension = !number || digits < 7;
    if (access && access->trusted.contains(at.source.addr)) return fraud::Direction::inbound;
    if (at.internal_side || (access && access->internal.contains(at.source.addr)))
        return extension ? fraud::Direction::internal : fraud::Direction::outbound;
    return fraud::Direction::outbound;
}

fraud::CallAttempt attempt_of(const sip::Message& m, const ObservedMessage& at,
                              const policy::Numbering* numbering, std::string& callee,
                              std::string& caller, const policy::AccessLists* access) {
    callee = normalize_callee(m.request_uri().user, numbering);
    caller = normalize_callee(calling_user_of(m), numbering);
    fraud::CallAttempt a;
    a.now = at.now;
    a.wall = at.wall;
    a.call_id = m.call_id();
    a.source.addr = at.source.addr;
    a.source.port = at.source.port;
    a.source.transport = transport_name(at.tcp, at.tls);
    a.account = account_of(m);
    a.caller = caller;
    a.callee = callee;
    a.callee_extension = numbering && numbering->is_extension(m.request_uri().user);
    a.user_agent = m.user_agent();
    a.request = request_kind_of(m.method());
    a.direction = direction_of(at, access, callee);
    a.trusted = access && access->trusted.contains(at.source.addr);
    return a;
}

fraud::Registration registration_of(const sip::Message& m, const ObservedMessage& at,
                                    fraud::Outcome outcome, const policy::AccessLists* access) {
    fraud::Registration r;
    r.now = at.now;
    r.wall = at.wall;
    r.source.addr = at.source.addr;
    r.source.port = at.source.port;
    r.source.transport = transport_name(at.tcp, at.tls);
    r.user = registered_user_of(m);
    r.user_agent = m.user_agent();
    r.outcome = outcome;
    // A REGISTER names no number: from a trusted trunk inbound, from inside internal.
    r.direction = direction_of(at, access, m.request_uri().user);
    r.trusted = access && access->trusted.contains(at.source.addr);
    return r;
}

namespace {

std::string credentials_user(const sip::Message& m) {
    if (const auto* a = m.authorization(); a && !a->username.empty())
        return std::string(a->username);
    if (const auto* p = m.proxy_authorization(); p && !p->username.empty())
        return std::string(p->username);
    return {};
}

// RFC 3261 §17.1.3 / §17.2.3: a transaction is named by the top Via branch and the CSeq
// method (ACK and CANCEL share the INVITE's branch); without a branch (RFC 2543 peers), by
// Call-ID, CSeq number and method.
std::string transaction_key(const sip::Message& m) {
    const sip::CSeq* cs = m.cseq();
    std::string key;
    const std::string_view branch = m.vias().empty() ? std::string_view{} : m.vias().front().branch;
    std::string_view method = cs ? cs->method : m.method_name();
    if (!branch.empty()) {
        key.reserve(branch.size() + method.size() + 1);
        key.append(branch).push_back('\x1f');
        key.append(method);
    } else {
        key.append(m.call_id()).push_back('\x1f');
        key.append(std::to_string(cs ? cs->number : 0)).push_back('\x1f');
        key.append(method);
    }
    return key;
}

bool has_to_tag(const sip::Message& m) {
    return m.to() && !m.to()->tag.empty();
}

}  // namespace

struct CallObserver::Impl {
    // Whose credentials a final response judges.
    struct AuthSubject {
        std::string_view cred_user;  // username of the credentials sent, "" = none
        std::string_view account;    // account_of
        std::string_view user_agent;
        base::Endpoint source;
        bool tcp = false, tls = false;
        fraud::Direction direction = fraud::Direction::unknown;
        bool trusted = false;
    };
    struct Tx {
        std::string key;
        sip::Method method = sip::Method::unknown;
        bool initial_invite = false;
        std::string call_id;
        std::string cred_user;  // username of the credentials sent, "" = none
        std::string account;    // account_of
        std::string reg_user;   // REGISTER: registered_user_of
        std::string user_agent;
        base::Endpoint source;
        bool tcp = false, tls = false;
        base::Nanos created = 0;
        fraud::Direction direction = fraud::Direction::unknown;
        bool trusted = false;
        base::Nanos final_at = 0;
        int final_status = 0;
    };
    enum class CallState : std::uint8_t { trying, challenged, answered, ended };
    struct Call {
        std::string call_id;
        CallState state = CallState::trying;
        int challenge_status = 0;
        base::Nanos created = 0, changed = 0;
        bool cancelled = false;
    };
    struct Challenge {
        std::string key;
        base::Nanos at = 0;
    };

    FraudEventSink& sink;
    const policy::Numbering* numbering;
    const policy::AccessLists* access = nullptr;
    ObserverLimits limits;
    base::CounterSet<ObserverEvent>& counters;
    std::list<Tx> txs;  // creation order
    std::unordered_map<std::string, std::list<Tx>::iterator> tx_index;
    std::list<Call> calls;
    std::unordered_map<std::string, std::list<Call>::iterator> call_index;
    std::list<Challenge> challenges;
    std::unordered_map<std::string, std::list<Challenge>::iterator> challenge_index;

    Impl(FraudEventSink& s, const policy::Numbering* n, const ObserverLimits& l,
         base::CounterSet<ObserverEvent>& c)
        : sink(s), numbering(n), limits(l), counters(c) {}

    static fraud::Source source_of(const base::Endpoint& e, bool tcp, bool tls) {
        fraud::Source s;
        s.addr = e.addr;
        s.port = e.port;
        s.transport = transport_name(tcp, tls);
        return s;
    }
    static fraud::Source source_of(const Tx& t) { return source_of(t.source, t.tcp, t.tls); }
    static AuthSubject subject_of(const Tx& t) {
        return {t.cred_user, t.account, t.user_agent, t.source,
                t.tcp,       t.tls,     t.direction,  t.trusted};
    }

    Call* find_call(std::string_view id) {
        auto it = call_index.find(std::string(id));
        return it == call_index.end() ? nullptr : &*it->second;
    }

    Call& add_call(std::string_view id, base::Nanos now) {
        if (call_index.size() >= limits.max_calls && !calls.empty()) {
            call_index.erase(calls.front().call_id);
            calls.pop_front();
            counters.add(ObserverEvent::calls_evicted);
        }
        calls.push_back(Call{std::string(id), CallState::trying, 0, now, now, false});
        call_index[calls.back().call_id] = std::prev(calls.end());
        return calls.back();
    }

    void end_call(Call& c, int status, base::Nanos now, base::UnixNanos wall) {
        if (c.state == CallState::ended) return;
        c.state = CallState::ended;
        c.changed = now;
        emit_end(c.call_id, outcome_of(status), now, wall);
    }

    void emit_end(std::string_view call_id, fraud::Outcome outcome, base::Nanos now,
                  base::UnixNanos wall) {
        counters.add(ObserverEvent::ends);
        sink.ended(fraud::CallEnded{now, wall, call_id, outcome});
    }

    std::string challenge_key(std::string_view user, const base::IpAddress& a) const {
        std::string k(user);
        k.push_back('\x1f');
        k.append(reinterpret_cast<const char*>(a.bytes().data()), 16);
        return k;
    }

    void note_challenge(std::string_view user, const base::IpAddress& a, base::Nanos now) {
        std::string k = challenge_key(user, a);
        if (auto it = challenge_index.find(k); it != challenge_index.end()) {
            it->second->at = now;
            challenges.splice(challenges.end(), challenges, it->second);
            return;
        }
        if (challenge_index.size() >= limits.max_challenges && !challenges.empty()) {
            challenge_index.erase(challenges.front().key);
            challenges.pop_front();
            counters.add(ObserverEvent::challenges_evicted);
        }
        challenges.push_back(Challenge{k, now});
        challenge_index[challenges.back().key] = std::prev(challenges.end());
    }

    bool was_challenged(std::string_view user, const base::IpAddress& a) const {
        return challenge_index.count(challenge_key(user, a)) != 0;
    }

    void auth_event(const AuthSubject& t, std::string_view user, bool success, base::Nanos now,
                    base::UnixNanos wall) {
        fraud::AuthResult a;
        a.now = now;
        a.wall = wall;
        a.source = source_of(t.source, t.tcp, t.tls);
        a.username = user;
        a.user_agent = t.user_agent;
        a.success = success;
        a.direction = t.direction;
        a.trusted = t.trusted;
        counters.add(success ? ObserverEvent::auth_success : ObserverEvent::auth_failure);
        sink.auth(a);
    }

    // Authentication outcome of a final response (RFC 3261 §22): credentials answered by a
    // challenge or 403 were refused; by anything else, accepted (a non-INVITE refused for
    // another reason says nothing). A 403 to a user just challenged from the same source is a
    // refusal too.
    void settle_auth(const AuthSubject& t, int status, bool invite, base::Nanos now,
                     base::UnixNanos wall) {
        const fraud::Outcome o = outcome_of(status);
        if (!t.cred_user.empty()) {
            if (o == fraud::Outcome::auth_challenge || o == fraud::Outcome::auth_failure)
                auth_event(t, t.cred_user, false, now, wall);
            else if (o == fraud::Outcome::answered || invite)
                auth_event(t, t.cred_user, true, now, wall);
        } else if (o == fraud::Outcome::auth_challenge) {
            note_challenge(t.account, t.source.addr, now);
        } else if (o == fraud::Outcome::auth_failure && was_challenged(t.account, t.source.addr)) {
            auth_event(t, t.account, false, now, wall);
        }
    }

    void registration_event(const Tx& t, int status, base::Nanos now, base::UnixNanos wall) {
        fraud::Registration r;
        r.now = now;
        r.wall = wall;
        r.source = source_of(t);
        r.user = t.reg_user;
        r.user_agent = t.user_agent;
        r.outcome = outcome_of(status);
        r.direction = t.direction;
        r.trusted = t.trusted;
        counters.add(ObserverEvent::registrations);
        sink.registration(r);
    }

    void request(const sip::Message& m, const ObservedMessage& at) {
        counters.add(ObserverEvent::requests);
        const sip::Method method = m.method();
        if (method == sip::Method::ack) return;  // no transaction of its own (RFC 3261 §17.1.1.3)
        std::string key = transaction_key(m);
        if (tx_index.count(key)) {
            counters.add(ObserverEvent::retransmissions);
            return;
        }
        if (tx_index.size() >= limits.max_transactions && !txs.empty()) {
            tx_index.erase(txs.front().key);
            txs.pop_front();
            counters.add(ObserverEvent::transactions_evicted);
        }
        Tx t;
        t.key = std::move(key);
        t.method = method;
        t.call_id = std::string(m.call_id());
        t.cred_user = credentials_user(m);
        t.account = std::string(account_of(m));
        t.user_agent = std::string(m.user_agent());
        t.source = at.source;
        t.tcp = at.tcp;
        t.tls = at.tls;
        t.created = at.now;
        t.direction = direction_of(at, access, m.request_uri().user);
        t.trusted = access && access->trusted.contains(at.source.addr);
        const bool in_dialog = has_to_tag(m);
        t.initial_invite = method == sip::Method::invite && !in_dialog;
        if (method == sip::Method::register_) t.reg_user = std::string(registered_user_of(m));
        txs.push_back(std::move(t));
        Tx& tx = txs.back();
        tx_index[tx.key] = std::prev(txs.end());

        switch (method) {
            case sip::Method::invite: {
                if (in_dialog) return;  // re-INVITE: the call goes on
                Call* c = find_call(tx.call_id);
                if (!c) c = &add_call(tx.call_id, at.now);
                if (c->state == CallState::challenged) c->state = CallState::trying;
                emit_attempt(m, at);
                counters.add(ObserverEvent::attempts);
                return;
            }
            case sip::Method::bye: {
                Call* c = find_call(tx.call_id);
                if (c && c->state == CallState::answered) end_call(*c, 200, at.now, at.wall);
                return;
            }
            case sip::Method::cancel: {
                if (Call* c = find_call(tx.call_id)) c->cancelled = true;
                return;
            }
            case sip::Method::register_:
                return;  // settled by its final response
            default:
                if (in_dialog) return;
                emit_attempt(m, at);
                counters.add(ObserverEvent::other_requests);
                return;
        }
    }

    void emit_attempt(const sip::Message& m, const ObservedMessage& at) {
        std::string callee, caller;
        sink.attempt(attempt_of(m, at, numbering, callee, caller, access));
    }

    void response(const sip::Message& m, const ObservedMessage& at) {
        counters.add(ObserverEvent::responses);
        auto it = tx_index.find(transaction_key(m));
        if (it == tx_index.end()) {
            counters.add(ObserverEvent::unmatched_responses);
            return;
        }
        Tx& t = *it->second;
        const int status = m.status_code();
        if (status < 200 || t.final_status != 0) return;  // provisional or a retransmission
        t.final_status = status;
        t.final_at = at.now;
        const bool challenge = outcome_of(status) == fraud::Outcome::auth_challenge;
        settle_auth(subject_of(t), status, t.method == sip::Method::invite, at.now, at.wall);
        if (t.initial_invite) {
            Call* c = find_call(t.call_id);
            if (!c || c->state == CallState::ended) return;
            if (status < 300) {
                if (c->state != CallState::answered) {
                    c->state = CallState::answered;
                    c->changed = at.now;
                    counters.add(ObserverEvent::answers);
                    sink.answered(fraud::CallAnswered{at.now, at.wall, c->call_id});
                }
            } else if (challenge) {
                c->state = CallState::challenged;
                c->challenge_status = status;
                c->changed = at.now;
            } else {
                end_call(*c, status, at.now, at.wall);
            }
        } else if (t.method == sip::Method::register_) {
            registration_event(t, status, at.now, at.wall);
        }
    }

    void time_out(Tx& t, base::Nanos now, base::UnixNanos wall) {
        counters.add(ObserverEvent::timeouts);
        if (t.method == sip::Method::register_) {
            registration_event(t, 408, now, wall);
        } else if (t.initial_invite) {
            if (Call* c = find_call(t.call_id); c && (c->state == CallState::trying))
                end_call(*c, c->cancelled ? 487 : 408, now, wall);
        }
    }

    void expire(base::Nanos now, base::UnixNanos wall, bool all) {
        for (auto it = txs.begin(); it != txs.end();) {
            const base::Nanos since = it->final_status ? it->final_at : it->created;
            if (!all && now - since <= limits.transaction_timeout) {
                ++it;
                continue;
            }
            if (!it->final_status) time_out(*it, now, wall);
            tx_index.erase(it->key);
            it = txs.erase(it);
        }
        for (auto it = calls.begin(); it != calls.end();) {
            Call& c = *it;
            const base::Nanos idle = now - c.changed;
            if (c.state == CallState::challenged && (all || idle > limits.transaction_timeout))
                end_call(c, c.challenge_status, now, wall);
            const bool drop =
                (c.state == CallState::ended && (all || idle > limits.transaction_timeout)) ||
                now - c.created > limits.max_call_duration;
            if (drop) {
                call_index.erase(c.call_id);
                it = calls.erase(it);
            } else {
                ++it;
            }
        }
        while (!challenges.empty() &&
               (all || now - challenges.front().at > limits.transaction_timeout)) {
            challenge_index.erase(challenges.front().key);
            challenges.pop_front();
        }
    }
};

CallObserver::CallObserver(FraudEventSink& sink, const policy::Numbering* numbering,
                           const ObserverLimits& limits)
    : impl_(std::make_unique<Impl>(sink, numbering, limits, counters_)) {}
CallObserver::~CallObserver() = default;

void CallObserver::set_numbering(const policy::Numbering* numbering) {
    impl_->numbering = numbering;
}

void CallObserver::set_access(const policy::AccessLists* access) {
    impl_->access = access;
}

void CallObserver::request_offered(const sip::Message& m, const ObservedMessage& at) {
    counters_.add(ObserverEvent::messages);
    counters_.add(ObserverEvent::requests);
    counters_.add(m.method() == sip::Method::invite ? ObserverEvent::attempts
                                                    : ObserverEvent::other_requests);
    impl_->emit_attempt(m, at);
}

void CallObserver::registration_answered(const sip::Message& m, int status,
                                         const ObservedMessage& at) {
    counters_.add(ObserverEvent::messages);
    counters_.add(ObserverEvent::requests);
    counters_.add(ObserverEvent::registrations);
    impl_->sink.registration(registration_of(m, at, outcome_of(status), impl_->access));
    // How the credentials fared (RFC 3261 §22): a relayed challenge, then a success or a
    // refusal for the same user and source.
    const std::string cred = credentials_user(m);
    Impl::AuthSubject s;
    s.cred_user = cred;
    s.account = account_of(m);
    s.user_agent = m.user_agent();
    s.source = at.source;
    s.tcp = at.tcp;
    s.tls = at.tls;
    s.direction = direction_of(at, impl_->access, m.request_uri().user);
    s.trusted = impl_->access && impl_->access->trusted.contains(at.source.addr);
    impl_->settle_auth(s, status, false, at.now, at.wall);
}

void CallObserver::call_answered(const signaling::CallInfo& c, base::Nanos now,
                                 base::UnixNanos wall) {
    if (c.from != signaling::Side::external) return;
    counters_.add(ObserverEvent::answers);
    impl_->sink.answered(fraud::CallAnswered{now, wall, c.call_id});
}

void CallObserver::call_ended(const signaling::CallInfo& c, signaling::CallEnd how, base::Nanos now,
                              base::UnixNanos wall) {
    // A call refused by admission was never let in: its attempt was the whole story.
    if (c.from != signaling::Side::external || how == signaling::CallEnd::blocked) return;
    fraud::Outcome o = fraud::Outcome::answered;
    if (c.answered <= 0) {
        if (c.final_status >= 200)
            o = outcome_of(c.final_status);
        else if (how == signaling::CallEnd::timeout)
            o = fraud::Outcome::timeout;
        else
            o = fraud::Outcome::cancelled;  // given up before any answer (CANCEL, shutdown)
    }
    impl_->emit_end(c.call_id, o, now, wall);
}

void CallObserver::response_relayed(const signaling::CallInfo& c, int status, base::Nanos now,
                                    base::UnixNanos wall) {
    if (c.from != signaling::Side::external || status < 200) return;
    counters_.add(ObserverEvent::responses);
    Impl::AuthSubject s;
    s.cred_user = c.credentials_user;
    s.account = c.credentials_user.empty() ? std::string_view(c.caller) : c.credentials_user;
    s.user_agent = c.user_agent;
    s.source = c.source.remote;
    s.tcp = c.source.transport != signaling::Transport::udp;
    s.tls = c.source.transport == signaling::Transport::tls;
    ObservedMessage at;  // the call's INVITE, from the external side
    at.source = c.source.remote;
    s.direction = direction_of(at, impl_->access, c.callee);
    s.trusted = impl_->access && impl_->access->trusted.contains(at.source.addr);
    impl_->settle_auth(s, status, true, now, wall);
}

void CallObserver::observe(const sip::Message& m, const ObservedMessage& at) {
    counters_.add(ObserverEvent::messages);
    if (m.is_request())
        impl_->request(m, at);
    else
        impl_->response(m, at);
}

void CallObserver::expire(base::Nanos now, base::UnixNanos wall) {
    impl_->expire(now, wall, false);
}

void CallObserver::finish(base::Nanos now, base::UnixNanos wall) {
    impl_->expire(now, wall, true);
}

std::size_t CallObserver::transactions() const {
    return impl_->tx_index.size();
}
std::size_t CallObserver::calls() const {
    return impl_->call_index.size();
}

}  // namespace sbc

#include "sbc/signaling/dispatch.hpp"

namespace sbc::signaling {

Dispatcher::Dispatched Dispatcher::dispatch(std::string_view bytes, const Arrival& a) {
    events_.add(a.flow.transport == Transport::udp ? DispatchEvent::datagrams
                                                   : DispatchEvent::stream_messages);
    Dispatched out;
    auto st = msg_.parse(bytes);
    if (st && msg_.is_request()) st = sip::check_request(msg_);
    if (!st) {
        events_.add(DispatchEvent::malformed);
        malformed_.add(st.code);
        return out;
    }
    const Side side = a.side;
    const bool to_core = core_ && a.listener_known;
    if (!msg_.is_request()) {
        events_.add(DispatchEvent::responses);
        out.kind = Dispatched::Kind::response;
        out.status = msg_.status_code();
        if (to_core) core_->receive(msg_, a.flow, side, a.now);
        return out;
    }
    events_.add(DispatchEvent::requests);
    const auto method = msg_.method();
    const auto mi = static_cast<std::size_t>(method);
    out.kind = Dispatched::Kind::request;
    out.method = mi < kMethodCount ? mi : 0;
    ++by_method_[out.method];
    // Draining: no new call on either side; a retransmitted INVITE of a call already in
    // progress still reaches its transaction.
    if (method == sip::Method::invite && draining() && !(msg_.to() && !msg_.to()->tag.empty()) &&
        !(to_core && core_->has_call(side, msg_.call_id()))) {
        events_.add(DispatchEvent::refused_draining);
        answer(msg_, a, 503, "Service Unavailable",
               drain_retry_after_.load(std::memory_order_relaxed));
        return out;
    }
    if (to_core && side == Side::internal) {
        // The inside: in-dialog requests of calls and calls going out. Not scored.
        core_->receive(msg_, a.flow, side, a.now);
        return out;
    }
    if (method == sip::Method::ack) {  // RFC 3261 §17.2.1: an ACK is never answered
        events_.add(DispatchEvent::not_answered);
        if (to_core) core_->receive(msg_, a.flow, side, a.now);
        return out;
    }
    const bool in_dialog = msg_.to() && !msg_.to()->tag.empty();
    const bool stranger = !hooks_.trusted(a.flow.remote.addr);
    admission_ = {};
    admission_.known_source = !stranger;
    // Enumeration resistance: a stranger's out-of-dialog request (a CANCEL belongs to an
    // INVITE) is answered alike for every user, its refusals included.
    uniform_ = to_core && stranger && !in_dialog && method != sip::Method::cancel && a.uniform;
    admission_.uniform = uniform_;
    // Trusted trunks bypass the signature and per-account checks as they bypass the
    // dataplane's rate limits. A refused request is not scored.
    if (stranger && hooks_.screen(msg_, a)) {
        refuse(msg_, a);
        return out;
    }
    bool refused = false;
    // A REGISTER the registrations proxy forwards is scored when its answer is known (the
    // registrar's outcome, challenges included); out-of-dialog OPTIONS and MESSAGE from
    // strangers are scored as probes (request sweeps, host discovery).
    const bool registrar_proxy = to_core && core_->registrations();
    if ((method == sip::Method::invite && !(to_core && in_dialog)) ||
        (method == sip::Method::register_ && !registrar_proxy) ||
        ((method == sip::Method::options || method == sip::Method::message) && !in_dialog &&
         stranger)) {
        Admission v = hooks_.score(msg_, a);
        if (v.kind == Admission::Kind::flag) {
            admission_.kind = Admission::Kind::flag;
            admission_.flag_value = std::move(v.flag_value);
        }
        refused = v.kind == Admission::Kind::block;
    }
    if (refused) {
        refuse(msg_, a);
    } else if (to_core) {
        core_->receive(msg_, a.flow, side, a.now);
    } else if (method == sip::Method::cancel) {
        // No transaction can match: RFC 3261 §9.2.
        answer(msg_, a, 481, "Call/Transaction Does Not Exist", 0);
    } else {
        answer(msg_, a, placeholder_.status, placeholder_.reason, placeholder_.retry_after);
    }
    return out;
}

void Dispatcher::refuse(const sip::Message& m, const Arrival& a) {
    if (uniform_) {
        // The call core answers it as it answers any user: a REGISTER or INVITE with the
        // uniform challenge, an OPTIONS or MESSAGE as the SBC answers them all.
        events_.add(DispatchEvent::refused_uniform);
        admission_.kind = Admission::Kind::block;
        core_->receive(m, a.flow, a.side, a.now);
        return;
    }
    events_.add(DispatchEvent::answered_403);
    answer(m, a, 403, "Forbidden", 0);
}

void Dispatcher::answer(const sip::Message& m, const Arrival& a, int status,
                        std::string_view reason, std::uint32_t retry_after) {
    // Always to the message's source (symmetric response routing, RFC 3581 §4 for every
    // client), on the connection it came on (RFC 3261 §18.2.2): never to an address named
    // inside the message, which would make the SBC a reflector.
    const std::string response =
        sip::stateless_response(m, status, reason, a.flow.remote, retry_after);
    if (!wire_.send(a.flow, response)) return;
    events_.add(DispatchEvent::answered);
    hooks_.answered(m, a, response);
}

std::string Dispatcher::stats_text() const {
    std::string out;
    for (std::size_t i = 0; i < kDispatchEventCount; ++i) {
        const auto e = static_cast<DispatchEvent>(i);
        out += "sip." + std::string(name(e)) + "=" + std::to_string(events_[e]) + "\n";
    }
    for (std::size_t i = 0; i < kMethodCount; ++i)
        out += "sip.method." + std::string(kMethodNames[i]) + "=" + std::to_string(by_method_[i]) +
               "\n";
    for (std::size_t i = 1; i < sip::kRejectCount; ++i) {
        const auto r = static_cast<sip::Reject>(i);
        if (malformed_[r])
            out += "sip.malformed." + std::string(name(r)) + "=" + std::to_string(malformed_[r]) +
                   "\n";
    }
    return out;
}

}  // namespace sbc::signaling

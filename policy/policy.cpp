// Policy snapshot queries, names of enumerations, PolicyStore.
#include "policy/policy.hpp"

#include <algorithm>
#include <exception>

namespace sbc::policy {

std::string Diagnostic::to_string() const {
    return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

std::string_view toml_name(TrafficClass c) {
    switch (c) {
        case TrafficClass::sip_register:
            return "register";
        case TrafficClass::sip_invite:
            return "invite";
        case TrafficClass::sip_other:
            return "other";
        case TrafficClass::tcp_connect:
            return "tcp_connect";
        case TrafficClass::media_unallocated:
            return "media_unallocated";
        case TrafficClass::count_:
            break;
    }
    return "?";
}

std::string_view toml_name(LimitKey k) {
    switch (k) {
        case LimitKey::source_address:
            return "per_source";
        case LimitKey::source_prefix:
            return "per_prefix";
        case LimitKey::account:
            return "per_account";
        case LimitKey::count_:
            break;
    }
    return "?";
}

std::string_view name(DenyAction a) {
    return a == DenyAction::block ? "block" : "ban";
}
std::string_view name(SourceVerdict v) {
    switch (v) {
        case SourceVerdict::denied:
            return "denied";
        case SourceVerdict::trusted:
            return "trusted";
        case SourceVerdict::allowed:
            return "allowed";
        case SourceVerdict::default_allow:
            return "default_allow";
        case SourceVerdict::default_deny:
            return "default_deny";
    }
    return "?";
}
std::string_view name(Transport t) {
    switch (t) {
        case Transport::udp:
            return "udp";
        case Transport::tcp:
            return "tcp";
        case Transport::tls:
            return "tls";
    }
    return "?";
}
std::string_view name(Realm r) {
    return r == Realm::external ? "external" : "internal";
}
std::string_view name(DataplaneBackend b) {
    switch (b) {
        case DataplaneBackend::socket:
            return "socket";
        case DataplaneBackend::dpdk:
            return "dpdk";
        case DataplaneBackend::pcap:
            return "pcap";
    }
    return "?";
}

base::Nanos BanEscalation::duration_for(std::uint32_t previous_bans) const {
    double d = static_cast<double>(base);
    for (std::uint32_t i = 0; i < previous_bans && d < static_cast<double>(max); ++i) d *= factor;
    return d >= static_cast<double>(max) ? max : static_cast<base::Nanos>(d);
}

bool AccountGroup::has_account(std::string_view account) const {
    if (std::find(accounts.begin(), accounts.end(), account) != accounts.end()) return true;
    return std::any_of(account_patterns.begin(), account_patterns.end(),
                       [&](const ExactGlob& g) { return g.matches(account); });
}

bool AccountGroup::in_business_hours(int local_weekday, int local_minute) const {
    if (business_hours.empty()) return true;
    for (const auto& w : business_hours) {
        if (!(w.days & (1u << local_weekday))) continue;
        if (local_minute >= w.start_minute && local_minute < w.end_minute) return true;
    }
    return false;
}

SourceVerdict Policy::classify_source(const base::IpAddress& a) const {
    if (access.deny.contains(a)) return SourceVerdict::denied;
    if (access.trusted.contains(a)) return SourceVerdict::trusted;
    if (access.allow.contains(a)) return SourceVerdict::allowed;
    return access.default_allow ? SourceVerdict::default_allow : SourceVerdict::default_deny;
}

const PrefixList* Policy::find_prefix_list(std::string_view n) const {
    auto i = prefix_list_index(n);
    return i < 0 ? nullptr : &prefix_lists[static_cast<std::size_t>(i)];
}

std::int32_t Policy::prefix_list_index(std::string_view n) const {
    for (std::size_t i = 0; i < prefix_lists.size(); ++i)
        if (prefix_lists[i].name == n) return static_cast<std::int32_t>(i);
    return -1;
}

const AccountGroup* Policy::group_of(std::string_view account) const {
    for (const auto& g : account_groups)
        if (g.has_account(account)) return &g;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------
// PolicyStore

std::string PolicyStatus::last_result() const {
    if (reloads_ok + reloads_failed == 0) return "none";
    if (last_reload_ok) return "ok";
    const std::string count =
        std::to_string(last_errors.size()) + " error" + (last_errors.size() == 1 ? "" : "s");
    if (!last_refused_by.empty()) return "refused by " + last_refused_by + " (" + count + ")";
    return "failed (" + count + ")";
}

PolicyChange PolicyChange::ready(std::function<void()> commit, std::function<void()> abort) {
    PolicyChange c;
    c.commit_ = std::move(commit);
    c.abort_ = std::move(abort);
    return c;
}

PolicyChange PolicyChange::refuse(std::vector<Diagnostic> reasons) {
    PolicyChange c;
    c.reasons_ = std::move(reasons);
    if (c.reasons_.empty()) c.reasons_.push_back({{}, 0, 0, "refused without a reason"});
    return c;
}

namespace {

// The first refusal among the participants, or every participant's prepared change.
struct Prepared {
    std::vector<PolicyChange> changes;
    std::string refused_by;
    std::vector<Diagnostic> reasons;
};

Prepared prepare_all(const std::vector<PolicyParticipant>& participants,
                     const std::shared_ptr<const Policy>& candidate) {
    Prepared out;
    for (const auto& p : participants) {
        PolicyChange c;
        try {
            c = p.prepare(candidate);
        } catch (const std::exception& e) {
            // A participant that cannot even prepare (memory for its tables) refuses.
            c = PolicyChange::refuse(
                {{candidate->source_files.empty() ? std::string() : candidate->source_files.front(),
                  0, 0, e.what()}});
        }
        if (c.refused()) {
            out.refused_by = p.name;
            out.reasons = c.reasons();
            break;
        }
        out.changes.push_back(std::move(c));
    }
    return out;
}

}  // namespace

// noexcept: a commit that throws ends the process rather than leave some participants on the
// new policy and others on the old one.
void PolicyStore::commit_all(std::vector<PolicyChange>& changes) noexcept {
    for (auto& c : changes)
        if (c.commit_) c.commit_();
}

void PolicyStore::abort_all(std::vector<PolicyChange>& changes) noexcept {
    for (auto& c : changes)
        if (c.abort_) c.abort_();
    changes.clear();  // what the commit closures hold goes with them
}

PolicyStore::PolicyStore(std::vector<std::string> files, LoadOptions options)
    : files_(std::move(files)), options_(options) {
    status_.files = files_;
}

PolicyStore::ReloadResult PolicyStore::reload(base::UnixNanos now) {
    std::lock_guard reload_lock(reload_mu_);
    LoadOptions opts = options_;
    auto previous = current_.load();
    opts.version = (previous ? previous->version : 0) + 1;
    ReloadResult result;
    result.version = previous ? previous->version : 0;
    auto refuse = [&](std::vector<Diagnostic> errors, std::string refused_by) {
        std::lock_guard lock(mu_);
        status_.last_reload_at = now;
        status_.reloads_failed++;
        status_.last_reload_ok = false;
        status_.last_errors = errors;
        status_.last_refused_by = refused_by;
        result.ok = false;
        result.errors = std::move(errors);
        result.refused_by = std::move(refused_by);
        return result;
    };
    // Compiled and prepared here, on the reloading thread, with no lock that readers or
    // status() need; readers and every participant keep using `previous` meanwhile.
    auto loaded = load_policy(files_, opts);
    if (!loaded.ok()) return refuse(std::move(loaded.errors), {});
    auto prepared = prepare_all(participants_, loaded.value);
    if (!prepared.refused_by.empty()) {
        abort_all(prepared.changes);
        return refuse(std::move(prepared.reasons), prepared.refused_by);
    }
    current_.store(loaded.value);
    {
        std::lock_guard lock(mu_);
        status_.last_reload_at = now;
        status_.reloads_ok++;
        status_.last_reload_ok = true;
        status_.last_errors.clear();
        status_.last_refused_by.clear();
        status_.version = loaded.value->version;
        status_.hash = loaded.value->hash;
        status_.loaded_at = now;
        status_.files = loaded.value->source_files;
    }
    // Outside mu_: a commit may call status().
    commit_all(prepared.changes);
    result.ok = true;
    result.version = loaded.value->version;
    return result;
}

PolicyStatus PolicyStore::status() const {
    std::lock_guard lock(mu_);
    return status_;
}

std::vector<Diagnostic> PolicyStore::add_participant(PolicyParticipant participant) {
    std::lock_guard reload_lock(reload_mu_);  // no reload can slip between prepare and joining
    if (auto p = current_.load()) {
        std::vector<PolicyParticipant> one{participant};
        auto prepared = prepare_all(one, p);
        if (!prepared.refused_by.empty()) return std::move(prepared.reasons);
        commit_all(prepared.changes);
    }
    participants_.push_back(std::move(participant));
    return {};
}

}  // namespace sbc::policy

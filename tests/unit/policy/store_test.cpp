#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <thread>

#include "policy/policy.hpp"

using namespace sbc::policy;

namespace {

const std::string kData = SBC_POLICY_TEST_DATA;

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("sbc_store_test_" + std::to_string(::getpid()) + "_" +
                std::to_string(reinterpret_cast<std::uintptr_t>(this)));
        std::filesystem::create_directories(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// Replaces `target` with the content of `source` atomically (write + rename), as editors and
// deployment tools do.
void install(const std::string& source, const std::filesystem::path& target) {
    auto tmp = target;
    tmp += ".tmp";
    std::filesystem::copy_file(source, tmp, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::rename(tmp, target);
}

// A call attempt evaluated the way the signaling path will: re-read the snapshot per decision.
struct Evaluation {
    bool ok = false;
    std::string name;
};

Evaluation evaluate_call(const PolicyStore& store, const sbc::base::IpAddress& src,
                         std::string_view dialed) {
    Evaluation ev;
    auto p = store.current();
    if (!p) return ev;
    // A complete snapshot of one of the two good versions, never a mix.
    const bool a = p->name == "good-a", b = p->name == "good-b";
    if (!a && !b) return ev;
    if (p->fraud.block_threshold != (a ? 60 : 50)) return ev;
    if (p->classify_source(src) != SourceVerdict::default_allow) return ev;
    auto number = p->numbering.normalize(dialed);
    auto m = p->prefixes.lpm(number);
    if (!m.matched() || m.category != PrefixCategory::irsf) return ev;
    if (p->prefixes.lpm("8811").matched() != b) return ev;
    if (p->hash.empty() || p->version == 0) return ev;
    ev.ok = true;
    ev.name = p->name;
    return ev;
}

}  // namespace

TEST_CASE("a failed reload keeps the previous policy and reports every error", "[policy][store]") {
    TempDir dir;
    auto file = dir.path / "policy.toml";
    install(kData + "/reload/good_a.toml", file);
    PolicyStore store({file.string()});
    CHECK(store.current() == nullptr);
    CHECK(store.status().last_result() == "none");

    std::vector<std::uint64_t> seen_versions;
    std::vector<std::uint64_t> status_versions;
    REQUIRE(store
                .add_participant({"recorder",
                                  [&](const std::shared_ptr<const Policy>& p) {
                                      return PolicyChange::ready([&, p] {
                                          seen_versions.push_back(p->version);
                                          // must not deadlock
                                          status_versions.push_back(store.status().version);
                                      });
                                  }})
                .empty());

    auto r1 = store.reload(1000);
    REQUIRE(r1.ok);
    CHECK(r1.version == 1);
    auto v1 = store.current();
    REQUIRE(v1);
    CHECK(v1->name == "good-a");
    auto st = store.status();
    CHECK(st.version == 1);
    CHECK(st.hash == v1->hash);
    CHECK(st.loaded_at == 1000);
    CHECK(st.last_result() == "ok");

    install(kData + "/reload/broken.toml", file);
    auto r2 = store.reload(2000);
    CHECK_FALSE(r2.ok);
    CHECK(r2.version == 1);
    CHECK(r2.errors.size() == 2);
    CHECK(store.current() == v1);  // the very same snapshot stays in force
    st = store.status();
    CHECK(st.version == 1);
    CHECK(st.loaded_at == 1000);
    CHECK(st.last_reload_at == 2000);
    CHECK(st.reloads_failed == 1);
    CHECK(st.last_result() == "failed (2 errors)");
    CHECK(st.last_errors.size() == 2);

    install(kData + "/reload/good_b.toml", file);
    auto r3 = store.reload(3000);
    REQUIRE(r3.ok);
    CHECK(r3.version == 2);
    CHECK(store.current()->name == "good-b");
    CHECK(store.current()->hash != v1->hash);
    CHECK(v1->name == "good-a");  // a holder of the old snapshot still sees it whole
    st = store.status();
    CHECK(st.reloads_ok == 2);
    CHECK(st.last_result() == "ok");
    CHECK(st.last_errors.empty());
    CHECK(seen_versions == std::vector<std::uint64_t>{1, 2});
    CHECK(status_versions == std::vector<std::uint64_t>{1, 2});
}

namespace {

// A participant of the tests: what it was asked to do, in one shared journal, and the state
// it prepared (a token whose lifetime shows whether a prepared change was dropped).
struct Token {
    int* alive;
    explicit Token(int* a) : alive(a) { ++*alive; }
    ~Token() { --*alive; }
};

struct Journal {
    std::vector<std::string> entries;
    std::vector<std::string> installed;  // the "running state" of every fake participant
    std::map<std::string, std::shared_ptr<Token>> running;
};

PolicyParticipant fake(const std::string& name, Journal& j, int* alive,
                       std::string refuse_policy_name = {}) {
    return {name, [name, &j, alive, refuse_policy_name](const std::shared_ptr<const Policy>& p) {
                j.entries.push_back(name + " prepare v" + std::to_string(p->version));
                if (p->name == refuse_policy_name) {
                    return PolicyChange::refuse(
                        {{p->source_files.front(), 7, 3, name + " cannot take '" + p->name + "'"}});
                }
                auto prepared = std::make_shared<Token>(alive);
                const std::string state = name + "@" + p->name;
                return PolicyChange::ready(
                    [name, &j, prepared, state, p] {
                        j.entries.push_back(name + " commit v" + std::to_string(p->version));
                        for (auto& s : j.installed)
                            if (s.starts_with(name + "@")) s = state;
                        j.running[name] = prepared;
                    },
                    [name, &j] { j.entries.push_back(name + " abort"); });
            }};
}

}  // namespace

TEST_CASE("a participant refusing a reload: nothing is committed anywhere, the version stays",
          "[policy][store]") {
    TempDir dir;
    auto file = dir.path / "policy.toml";
    install(kData + "/reload/good_a.toml", file);
    PolicyStore store({file.string()});
    REQUIRE(store.reload(1000).ok);
    auto v1 = store.current();

    int alive = 0;  // before the journal, whose tokens count on it
    Journal j;
    j.installed = {"dataplane@", "fraud_engine@", "late@"};
    // The fraud engine takes good-a but refuses good-b; the others take anything.
    REQUIRE(store.add_participant(fake("dataplane", j, &alive)).empty());
    REQUIRE(store.add_participant(fake("fraud_engine", j, &alive, "good-b")).empty());
    REQUIRE(store.add_participant(fake("late", j, &alive)).empty());
    // Joining with a snapshot in force prepares and commits it at once.
    CHECK(j.entries == std::vector<std::string>{"dataplane prepare v1", "dataplane commit v1",
                                                "fraud_engine prepare v1", "fraud_engine commit v1",
                                                "late prepare v1", "late commit v1"});
    CHECK(j.installed ==
          std::vector<std::string>{"dataplane@good-a", "fraud_engine@good-a", "late@good-a"});
    CHECK(alive == 3);
    j.entries.clear();

    install(kData + "/reload/good_b.toml", file);
    auto r = store.reload(2000);
    CHECK_FALSE(r.ok);
    CHECK(r.version == 1);
    CHECK(r.refused_by == "fraud_engine");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == file.string() + ":7:3: fraud_engine cannot take 'good-b'");
    // The dataplane prepared and was aborted; the participant after the refusal was not asked.
    CHECK(j.entries == std::vector<std::string>{"dataplane prepare v2", "fraud_engine prepare v2",
                                                "dataplane abort"});
    CHECK(j.installed ==
          std::vector<std::string>{"dataplane@good-a", "fraud_engine@good-a", "late@good-a"});
    CHECK(alive == 3);  // the dataplane's prepared state was dropped
    CHECK(store.current() == v1);
    auto st = store.status();
    CHECK(st.version == 1);
    CHECK(st.hash == v1->hash);
    CHECK(st.loaded_at == 1000);
    CHECK(st.last_reload_at == 2000);
    CHECK(st.reloads_ok == 1);
    CHECK(st.reloads_failed == 1);
    CHECK_FALSE(st.last_reload_ok);
    CHECK(st.last_refused_by == "fraud_engine");
    CHECK(st.last_result() == "refused by fraud_engine (1 error)");
    REQUIRE(st.last_errors.size() == 1);
    CHECK(st.last_errors[0].message == "fraud_engine cannot take 'good-b'");

    // A broken file is a load failure, not a refusal: no participant is asked.
    j.entries.clear();
    install(kData + "/reload/broken.toml", file);
    r = store.reload(2500);
    CHECK_FALSE(r.ok);
    CHECK(r.refused_by.empty());
    CHECK(j.entries.empty());
    CHECK(store.status().last_result() == "failed (2 errors)");
    CHECK(store.status().last_refused_by.empty());

    // Accepted by all: committed in the order they joined, after the snapshot was published;
    // the version follows the one in force (refusals use no number).
    j.entries.clear();
    install(kData + "/reload/good_a.toml", file);
    std::shared_ptr<const Policy> seen_at_commit;
    REQUIRE(store
                .add_participant({"observer",
                                  [&](const std::shared_ptr<const Policy>&) {
                                      return PolicyChange::ready(
                                          [&] { seen_at_commit = store.current(); });
                                  }})
                .empty());
    r = store.reload(3000);
    REQUIRE(r.ok);
    CHECK(r.version == 2);
    CHECK(r.refused_by.empty());
    CHECK(j.entries == std::vector<std::string>{"dataplane prepare v2", "fraud_engine prepare v2",
                                                "late prepare v2", "dataplane commit v2",
                                                "fraud_engine commit v2", "late commit v2"});
    REQUIRE(seen_at_commit);
    CHECK(seen_at_commit->version == 2);
    CHECK(store.current()->version == 2);
    st = store.status();
    CHECK(st.version == 2);
    CHECK(st.last_result() == "ok");
    CHECK(st.last_refused_by.empty());
    CHECK(st.last_errors.empty());
    CHECK(alive == 3);  // each holds its newly installed state; the previous ones are gone
}

TEST_CASE("a participant refusing the snapshot in force does not join", "[policy][store]") {
    TempDir dir;
    auto file = dir.path / "policy.toml";
    install(kData + "/reload/good_b.toml", file);
    PolicyStore store({file.string()});
    int alive = 0;
    Journal j;
    // Before any load there is nothing to prepare: it joins.
    REQUIRE(store.add_participant(fake("early", j, &alive, "good-b")).empty());
    CHECK(j.entries.empty());
    auto r = store.reload(1);
    CHECK_FALSE(r.ok);  // the initial load itself is refused by the participant
    CHECK(r.refused_by == "early");
    CHECK(store.current() == nullptr);
    CHECK(store.status().version == 0);

    PolicyStore second({file.string()});
    REQUIRE(second.reload(1).ok);
    j.entries.clear();
    auto refused = second.add_participant(fake("fussy", j, &alive, "good-b"));
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].message == "fussy cannot take 'good-b'");
    j.entries.clear();
    REQUIRE(second.reload(2).ok);  // it did not join: nobody refuses good-b now
    CHECK(j.entries.empty());
    CHECK(second.current()->version == 2);
}

TEST_CASE("a participant whose prepare throws refuses the reload", "[policy][store]") {
    TempDir dir;
    auto file = dir.path / "policy.toml";
    install(kData + "/reload/good_a.toml", file);
    PolicyStore store({file.string()});
    REQUIRE(store.reload(1).ok);
    bool throwing = false;
    int commits = 0;
    REQUIRE(store
                .add_participant({"tables",
                                  [&](const std::shared_ptr<const Policy>&) {
                                      if (throwing) throw std::bad_alloc();
                                      return PolicyChange::ready([&] { ++commits; });
                                  }})
                .empty());
    CHECK(commits == 1);
    throwing = true;
    auto r = store.reload(2);
    CHECK_FALSE(r.ok);
    CHECK(r.refused_by == "tables");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message == std::bad_alloc().what());
    CHECK(commits == 1);
    CHECK(store.current()->version == 1);
}

TEST_CASE("reloads under load: every evaluation sees a complete valid snapshot",
          "[policy][store][stress]") {
    TempDir dir;
    auto file = dir.path / "policy.toml";
    install(kData + "/reload/good_a.toml", file);
    PolicyStore store({file.string()});
    REQUIRE(store.reload(0).ok);

    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> evaluations{0}, failures{0}, saw_a{0}, saw_b{0};
    auto worker = [&](int seed) {
        auto src = *sbc::base::IpAddress::parse("203.0.113." + std::to_string(seed));
        while (!done.load(std::memory_order_relaxed)) {
            auto ev = evaluate_call(store, src, "+882 1234 5678");
            evaluations.fetch_add(1, std::memory_order_relaxed);
            if (!ev.ok) failures.fetch_add(1, std::memory_order_relaxed);
            (ev.name == "good-a" ? saw_a : saw_b).fetch_add(1, std::memory_order_relaxed);
        }
    };
    std::thread t1(worker, 9), t2(worker, 10);

    // Alternate good A, broken, good B, broken, ... a bounded number of times.
    constexpr int kRounds = 400;
    std::uint64_t expected_version = 1;
    int ok_reloads = 0, failed_reloads = 0, wrong = 0;
    for (int i = 0; i < kRounds; ++i) {
        const bool broken = i % 2 == 1;
        const std::string src =
            broken ? "broken.toml" : ((i / 2) % 2 ? "good_a.toml" : "good_b.toml");
        install(kData + "/reload/" + src, file);
        auto before = store.current();
        auto r = store.reload(i);
        if (broken) {
            ++failed_reloads;
            if (r.ok || store.current() != before || r.version != expected_version) ++wrong;
        } else {
            ++ok_reloads;
            ++expected_version;
            if (!r.ok || r.version != expected_version ||
                store.current()->version != expected_version)
                ++wrong;
        }
    }
    done = true;
    t1.join();
    t2.join();
    INFO("evaluations: " << evaluations.load() << " (a " << saw_a.load() << ", b " << saw_b.load()
                         << ")");
    CHECK(wrong == 0);
    CHECK(failures.load() == 0);
    CHECK(evaluations.load() > 1000);
    auto st = store.status();
    CHECK(st.reloads_ok == static_cast<std::uint64_t>(ok_reloads) + 1);
    CHECK(st.reloads_failed == static_cast<std::uint64_t>(failed_reloads));
    CHECK(st.version == expected_version);
    CHECK_FALSE(st.last_reload_ok);  // the last round was a broken file
}

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
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
    store.on_change([&](const std::shared_ptr<const Policy>& p) {
        seen_versions.push_back(p->version);
        status_versions.push_back(store.status().version);  // must not deadlock
    });

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

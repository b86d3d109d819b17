// Every documented key is known to the loaders and either takes effect in `sbc run` or is
// reported as accepted but not enforced yet; the key status list and the docs agree.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "policy/policy.hpp"

using namespace sbc::policy;

namespace {

struct DocRow {
    std::string key;      // "fraud.rules[].weight"
    std::string example;  // TOML value
    std::string status;   // "enforced: ...", "enforced for `udp`: ...", "not enforced yet: ..."
    int doc_line = 0;
};

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string unquote(std::string cell) {
    while (!cell.empty() && cell.front() == ' ') cell.erase(0, 1);
    while (!cell.empty() && cell.back() == ' ') cell.pop_back();
    if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`')
        cell = cell.substr(1, cell.size() - 2);
    return cell;
}

// The rows of the `| key | example | in `sbc run` |` table that follows `heading`.
std::vector<DocRow> doc_table(const std::string& path, const std::string& heading) {
    std::istringstream in(read_text(path));
    std::vector<DocRow> rows;
    std::string line;
    bool in_section = false, in_table = false;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!in_section) {
            in_section = line == heading;
            continue;
        }
        if (line.rfind("| key | example |", 0) == 0) {
            in_table = true;
            continue;
        }
        if (!in_table) continue;
        if (line.rfind("|---", 0) == 0) continue;
        if (line.empty() || line[0] != '|') break;
        std::vector<std::string> cells;
        std::size_t start = 1;
        for (std::size_t i = 1; i < line.size(); ++i)
            if (line[i] == '|') {
                cells.push_back(line.substr(start, i - start));
                start = i + 1;
            }
        REQUIRE(cells.size() == 3);
        rows.push_back({unquote(cells[0]), unquote(cells[1]), unquote(cells[2]), n});
    }
    return rows;
}

// A TOML document setting only `key` to `example`; the key sits on line `key_line`.
std::string toml_for(const std::string& key, const std::string& example, std::uint32_t& key_line) {
    std::vector<std::string> segs;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= key.size(); ++i)
        if (i == key.size() || key[i] == '.') {
            segs.push_back(key.substr(start, i - start));
            start = i + 1;
        }
    std::size_t last_array = segs.size();
    for (std::size_t i = 0; i + 1 < segs.size(); ++i)
        if (segs[i].ends_with("[]")) last_array = i;
    std::string header, dotted;
    if (last_array < segs.size()) {
        for (std::size_t i = 0; i <= last_array; ++i) {
            std::string s = segs[i];
            if (s.ends_with("[]")) s.resize(s.size() - 2);
            header += (i ? "." : "") + s;
        }
        header = "[[" + header + "]]";
        for (std::size_t i = last_array + 1; i < segs.size(); ++i)
            dotted += (dotted.empty() ? "" : ".") + segs[i];
    } else if (segs.size() > 1) {
        for (std::size_t i = 0; i + 1 < segs.size(); ++i) header += (i ? "." : "") + segs[i];
        header = "[" + header + "]";
        dotted = segs.back();
    } else {
        dotted = segs.back();
    }
    key_line = header.empty() ? 1 : 2;
    return (header.empty() ? "" : header + "\n") + dotted + " = " + example + "\n";
}

// The effective policy without its leading comments (version, hash, source files).
std::string settings_of(const Policy& p) {
    std::string s = render_policy(p);
    while (s.starts_with("#")) s.erase(0, s.find('\n') + 1);
    return s;
}

enum class Expect { enforced, enforced_for, not_enforced };

Expect expected(const DocRow& r) {
    if (r.status.rfind("not enforced yet", 0) == 0) return Expect::not_enforced;
    if (r.status.rfind("enforced for ", 0) == 0) return Expect::enforced_for;
    REQUIRE(r.status.rfind("enforced", 0) == 0);
    return Expect::enforced;
}

template <class T>
void check_row(const DocRow& row, const Loaded<T>& r, std::uint32_t key_line,
               std::span<const KeyStatus> table) {
    INFO("documented at line " << row.doc_line << ": " << row.key << " = " << row.example);
    for (const auto& e : r.errors) INFO("error: " << e.to_string());
    for (const auto& n : r.notices) INFO("notice: " << n.to_string());
    // Known to the loader: no "unknown key" anywhere in the document.
    for (const auto& e : r.errors) CHECK(e.message.find("unknown key") == std::string::npos);
    // The list next to the loader says the same as the docs.
    const KeyStatus* st = find_key_status(table, row.key);
    REQUIRE(st != nullptr);
    const Expect want = expected(row);
    CHECK(st->enforced == (want != Expect::not_enforced));
    CHECK(st->enforced_values.empty() == (want != Expect::enforced_for));
    bool noticed = false;
    for (const auto& n : r.notices) {
        CHECK(n.message.find("accepted but not enforced yet") != std::string::npos);
        CHECK(n.message.find("no part of `sbc run`") == std::string::npos);
        noticed = noticed || n.line == key_line;
    }
    CHECK(noticed == (want != Expect::enforced));
    CHECK(r.notices.size() == (noticed ? 1u : 0u));
}

// Every entry of the list is documented (the reverse direction).
void check_all_documented(std::span<const KeyStatus> table, const std::vector<DocRow>& rows) {
    for (const auto& e : table) {
        bool covered = false;
        for (const auto& r : rows) covered = covered || find_key_status(table, r.key) == &e;
        INFO("key status entry '" << e.key << "' has no row in the docs table");
        CHECK(covered);
    }
}

}  // namespace

TEST_CASE("every documented policy key is enforced or reported", "[policy][keys]") {
    auto rows = doc_table(std::string(SBC_SOURCE_DIR) + "/docs/policy.md",
                          "## Where each policy key takes effect");
    REQUIRE(rows.size() > 50);
    auto defaults = load_policy_from_string("", "empty.toml");
    REQUIRE(defaults.ok());
    const std::string default_render = settings_of(*defaults.value);
    std::size_t reported = 0, changed = 0;
    for (const auto& row : rows) {
        std::uint32_t line = 0;
        const std::string toml = toml_for(row.key, row.example, line);
        auto r = load_policy_from_string(toml, "gen.toml");
        check_row(row, r, line, policy_key_status());
        reported += r.notices.empty() ? 0 : 1;
        // A key that loads on its own changes the compiled policy (the documented examples
        // are not the defaults): the loader does not read it and drop it.
        if (r.ok() && row.key != "include") {
            INFO("documented at line " << row.doc_line << ": " << row.key);
            CHECK(settings_of(*r.value) != default_render);
            ++changed;
        }
    }
    CHECK(reported >= 3);  // access (3)
    CHECK(changed >= 30);
    check_all_documented(policy_key_status(), rows);
}

TEST_CASE("every documented node key is enforced or reported", "[policy][keys]") {
    auto rows = doc_table(std::string(SBC_SOURCE_DIR) + "/docs/running.md",
                          "### Where each node key takes effect");
    REQUIRE(rows.size() > 30);
    const std::string path = "/tmp/sbc_key_status_" + std::to_string(::getpid()) + ".toml";
    for (const auto& row : rows) {
        std::uint32_t line = 0;
        std::ofstream(path) << toml_for(row.key, row.example, line);
        auto r = load_node_config(path);
        check_row(row, r, line, node_key_status());
    }
    std::remove(path.c_str());
    check_all_documented(node_key_status(), rows);
}

TEST_CASE("an enforced-for key is quiet for an enforced value", "[policy][keys]") {
    const std::string path = "/tmp/sbc_key_values_" + std::to_string(::getpid()) + ".toml";
    std::ofstream(path) << "[[listeners]]\nrealm = \"internal\"\naddress = \"127.0.0.2\"\n"
                           "transport = \"tcp\"\n"
                           "[[next_hops]]\naddress = \"127.0.0.3\"\ntransport = \"udp\"\n"
                           "[[next_hops]]\naddress = \"127.0.0.4\"\ntransport = \"tcp\"\n"
                           "[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1\"\n"
                           "[policy]\nfiles = [\"p.toml\"]\n";
    auto r = load_node_config(path);
    std::remove(path.c_str());
    REQUIRE(r.ok());
    // Next hops over TCP are enforced (no notice); state.backend is enforced for local only,
    // and state.url not at all.
    REQUIRE(r.notices.size() == 2);
    CHECK(r.notices[0].line == 12);
    CHECK(r.notices[0].column == 1);
    CHECK(r.notices[0].message.find("'state.backend' = \"redis\"") != std::string::npos);
    CHECK(r.notices[1].message.find("'state.url'") != std::string::npos);
    for (const auto& n : r.notices) CHECK(n.message.find("next_hops") == std::string::npos);
    CHECK(r.value->notices.size() == 2);
}

TEST_CASE("key status lookup: literal entries win, no prefix matching", "[policy][keys]") {
    const KeyStatus partial[] = {{"topology.hide_topology", true, "x"}};
    CHECK(find_key_status(partial, "topology.strip_headers") == nullptr);
    CHECK(find_key_status(policy_key_status(), "rate_limits.invite.per_account")->enforced);
    CHECK(find_key_status(policy_key_status(), "rate_limits.tcp_connect.per_source")->enforced);
    CHECK_FALSE(find_key_status(policy_key_status(), "access.default")->enforced);
    CHECK(find_key_status(policy_key_status(), "rate_limits.invite.per_account.rate") == nullptr);
}

TEST_CASE("the shipped configuration reports what it sets for later stages", "[policy][keys]") {
    auto node = load_node_config(std::string(SBC_SOURCE_DIR) + "/config/sbc.toml");
    REQUIRE(node.ok());
    std::string all;
    for (const auto& n : node.notices) {
        CHECK(n.file.ends_with("config/sbc.toml"));
        CHECK(n.line > 0);
        CHECK(n.message.find("no part of `sbc run`") == std::string::npos);
        all += n.message + "\n";
    }
    // What the call core, TLS and the metrics endpoint enforce is quiet.
    for (const char* key : {"'next_hops[0].name'", "'health_check.enabled'", "'listeners[2].realm'",
                            "'dataplane.burst_size'", "'tls.min_version'",
                            "'listeners[1].transport'", "'metrics.port'", "'metrics.enabled'"})
        CHECK(all.find(key) == std::string::npos);
    CHECK(all.find("'media.") == std::string::npos);
    CHECK(all.find("'control.") == std::string::npos);
    for (const char* example : {"callcenter.toml", "carrier-trunk.toml", "lab.toml"}) {
        auto p = load_policy({std::string(SBC_SOURCE_DIR) + "/policy/examples/" + example});
        REQUIRE(p.ok());
        for (const auto& n : p.notices)
            CHECK(n.message.find("no part of `sbc run`") == std::string::npos);
        CHECK(p.notices.size() == p.value->notices.size());
    }
}

// GeoIP: the only file that includes libmaxminddb.
#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>

#include <cstring>

#include "fraud/fraud.hpp"

namespace sbc::fraud {

struct GeoIp::Impl {
    MMDB_s db{};
    bool open = false;
    ~Impl() {
        if (open) MMDB_close(&db);
    }
};

GeoIp::~GeoIp() = default;

base::Result<std::shared_ptr<const GeoIp>> GeoIp::open(const std::string& path) {
    std::shared_ptr<GeoIp> g(new GeoIp());
    g->impl_ = std::make_unique<Impl>();
    int rc = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &g->impl_->db);
    if (rc != MMDB_SUCCESS)
        return base::make_error("GeoIP database '" + path + "': " + MMDB_strerror(rc));
    g->impl_->open = true;
    return std::shared_ptr<const GeoIp>(std::move(g));
}

std::string GeoIp::country(const base::IpAddress& a) const {
    // MMDB lookups are read-only on the mapped file: safe from several threads.
    sockaddr_storage ss{};
    if (a.is_v4()) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(a.v4_value());
    } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        std::memcpy(&s6->sin6_addr, a.bytes().data(), 16);
    }
    int err = 0;
    auto res = MMDB_lookup_sockaddr(&impl_->db, reinterpret_cast<sockaddr*>(&ss), &err);
    if (err != MMDB_SUCCESS || !res.found_entry) return {};
    MMDB_entry_data_s data{};
    if (MMDB_get_value(&res.entry, &data, "country", "iso_code", nullptr) != MMDB_SUCCESS ||
        !data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING)
        return {};
    return std::string(data.utf8_string, data.data_size);
}

}  // namespace sbc::fraud

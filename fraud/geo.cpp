// GeoIP: the only file that includes libmaxminddb.
#include <maxminddb.h>

#include "base/sockaddr.hpp"
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
    sockaddr_storage ss;
    base::to_sockaddr(base::Endpoint{a, 0}, ss);
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

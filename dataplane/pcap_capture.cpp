// Capture files for replay: pcap and pcapng through libpcap (this file and pcap_backend.cpp are
// the only ones that include it). Several files are merged by timestamp.
#include <pcap/pcap.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "dataplane/capture.hpp"

namespace sbc::dataplane {

struct CaptureReader::Impl {
    struct Source {
        pcap_t* pcap = nullptr;
        FILE* file = nullptr;
        std::uint32_t link_type = 0;
        bool pending = false;  // a record is loaded in `rec`
        bool done = false;
        CaptureRecord rec;
    };
    std::vector<Source> sources;
    std::vector<CaptureFileStatus> status;
    std::uint64_t total = 0;

    void load(std::size_t i) {
        Source& s = sources[i];
        s.pending = false;
        if (s.done) return;
        pcap_pkthdr* h = nullptr;
        const u_char* data = nullptr;
        for (;;) {
            const int rc = pcap_next_ex(s.pcap, &h, &data);
            if (rc == 1) break;
            if (rc == 0) continue;  // live captures only
            if (rc != PCAP_ERROR_BREAK) status[i].error = pcap_geterr(s.pcap);
            s.done = true;
            return;
        }
        ++status[i].records;
        s.rec.time = static_cast<base::Nanos>(h->ts.tv_sec) * base::kNanosPerSecond +
                     static_cast<base::Nanos>(h->ts.tv_usec);  // nanosecond precision asked
        s.rec.link_type = s.link_type;
        s.rec.data = data;
        s.rec.caplen = h->caplen;
        s.rec.wire_len = h->len;
        s.pending = true;
    }
};

CaptureReader::CaptureReader() : impl_(std::make_unique<Impl>()) {}
CaptureReader::~CaptureReader() {
    for (auto& s : impl_->sources)
        if (s.pcap) pcap_close(s.pcap);
}

bool CaptureReader::open(const std::vector<std::string>& paths) {
    bool any = false;
    for (const auto& path : paths) {
        CaptureFileStatus st;
        st.path = path;
        char err[PCAP_ERRBUF_SIZE] = {};
        FILE* f = std::fopen(path.c_str(), "rb");
        if (!f) {
            st.error = std::string("cannot open: ") + std::strerror(errno);
            impl_->status.push_back(st);
            impl_->sources.push_back({});
            impl_->sources.back().done = true;
            continue;
        }
        struct stat sb {};
        if (fstat(fileno(f), &sb) == 0) impl_->total += static_cast<std::uint64_t>(sb.st_size);
        // pcap_fopen_offline takes ownership of the FILE (closed by pcap_close).
        pcap_t* p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, err);
        if (!p) {
            std::fclose(f);
            st.error = err;
            impl_->status.push_back(st);
            impl_->sources.push_back({});
            impl_->sources.back().done = true;
            continue;
        }
        Impl::Source s;
        s.pcap = p;
        s.file = pcap_file(p);
        s.link_type = static_cast<std::uint32_t>(pcap_datalink(p));
        st.link_type = s.link_type;
        impl_->status.push_back(st);
        impl_->sources.push_back(s);
        any = true;
    }
    for (std::size_t i = 0; i < impl_->sources.size(); ++i) impl_->load(i);
    return any;
}

bool CaptureReader::next(CaptureRecord& r, std::size_t* file_index) {
    // Records of the previous call were handed out: load that source's next one first.
    Impl& im = *impl_;
    std::size_t best = im.sources.size();
    for (std::size_t i = 0; i < im.sources.size(); ++i) {
        const auto& s = im.sources[i];
        if (!s.pending) continue;
        if (best == im.sources.size() || s.rec.time < im.sources[best].rec.time) best = i;
    }
    if (best == im.sources.size()) return false;
    // Copy out, then advance: libpcap's buffer is reused by the next read of that source, so
    // the record is kept in our own storage until the next call.
    static thread_local std::vector<std::uint8_t> storage;
    const CaptureRecord& rec = im.sources[best].rec;
    storage.assign(rec.data, rec.data + rec.caplen);
    r = rec;
    r.data = storage.data();
    if (file_index) *file_index = best;
    im.load(best);
    return true;
}

const std::vector<CaptureFileStatus>& CaptureReader::status() const {
    return impl_->status;
}
std::uint64_t CaptureReader::total_bytes() const {
    return impl_->total;
}
std::uint64_t CaptureReader::bytes_read() const {
    std::uint64_t n = 0;
    for (const auto& s : impl_->sources) {
        if (s.done || !s.file) continue;
        const long pos = std::ftell(s.file);
        if (pos > 0) n += static_cast<std::uint64_t>(pos);
    }
    return n;
}

struct CaptureWriter::Impl {
    pcap_t* dead = nullptr;
    pcap_dumper_t* dumper = nullptr;
    std::uint32_t link_type = 0;
};

CaptureWriter::CaptureWriter() : impl_(std::make_unique<Impl>()) {}
CaptureWriter::~CaptureWriter() {
    close();
}

base::Result<void> CaptureWriter::open(const std::string& path, std::uint32_t link_type) {
    close();
    const int dlt = static_cast<int>(link_type);  // the DLT of the records (as read)
    impl_->dead = pcap_open_dead_with_tstamp_precision(dlt, 262144, PCAP_TSTAMP_PRECISION_NANO);
    if (!impl_->dead) return base::make_error(path + ": cannot create a capture handle");
    impl_->dumper = pcap_dump_open(impl_->dead, path.c_str());
    if (!impl_->dumper) {
        std::string e = path + ": " + pcap_geterr(impl_->dead);
        pcap_close(impl_->dead);
        impl_->dead = nullptr;
        return base::make_error(e);
    }
    impl_->link_type = link_type;
    return {};
}

void CaptureWriter::write(const CaptureRecord& r) {
    if (!impl_->dumper) return;
    if (r.link_type != impl_->link_type) {
        ++link_mismatch_;  // one pcap file has one link type
        return;
    }
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(r.time / base::kNanosPerSecond);
    h.ts.tv_usec = static_cast<suseconds_t>(r.time % base::kNanosPerSecond);  // nanoseconds
    h.caplen = r.caplen;
    h.len = std::max(r.wire_len, r.caplen);
    pcap_dump(reinterpret_cast<u_char*>(impl_->dumper), &h, r.data);
    ++written_;
}

void CaptureWriter::close() {
    if (impl_->dumper) {
        pcap_dump_flush(impl_->dumper);
        pcap_dump_close(impl_->dumper);
        impl_->dumper = nullptr;
    }
    if (impl_->dead) {
        pcap_close(impl_->dead);
        impl_->dead = nullptr;
    }
}

}  // namespace sbc::dataplane

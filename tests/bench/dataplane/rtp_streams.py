#!/usr/bin/env python3
# rtp_streams.py CAPTURE.pcap: checks that the RTP in a capture is made of real streams, as the
# relay benches need (issue: a generator that gives every packet a new SSRC or repeats sequence
# numbers is no real stream): per destination address and port one SSRC, and from one packet to
# the next the sequence number up by n > 0 and the timestamp up by 160 n (20 ms of G.711). Prints
# the streams, the distinct SSRCs and the spacing per sequence step (capture time, ms); exits 1
# when a stream breaks the rule. Ethernet, Linux cooked (v1, v2) and raw IPv4 captures.
#   tcpdump -i lo -w gen.pcap 'udp and src host 127.0.88.3' & bench_relay_socket --peer ours ...
#   relay_dpdk_bench --write-pcap rtp.pcap
import struct, sys, collections
d = open(sys.argv[1], 'rb').read()
magic, = struct.unpack_from('<I', d, 0)
ns = magic == 0xa1b23c4d
link, = struct.unpack_from('<I', d, 20)
p = 24
streams = collections.defaultdict(list)
while p + 16 <= len(d):
    sec, frac, incl, orig = struct.unpack_from('<IIII', d, p)
    pkt = d[p + 16:p + 16 + incl]; p += 16 + incl
    t = sec + frac / (1e9 if ns else 1e6)
    off = {1: 14, 113: 16, 276: 20, 101: 0, 12: 0}[link]
    if link == 1 and pkt[12:14] != b'\x08\x00': continue
    ip = pkt[off:]
    if ip[0] >> 4 != 4 or ip[9] != 17: continue
    ihl = (ip[0] & 15) * 4
    dst = ip[16:20]; dport, = struct.unpack_from('>H', ip, ihl + 2)
    rtp = ip[ihl + 8:]
    if len(rtp) < 12 or rtp[0] >> 6 != 2: continue
    seq, ts, ssrc = struct.unpack_from('>HII', rtp, 2)
    streams[(dst, dport)].append((t, seq, ts, ssrc))
bad = 0; gaps = []
ssrcs = set()
for k, pk in streams.items():
    ss = {x[3] for x in pk}; ssrcs |= ss
    if len(ss) != 1: bad += 1; print("stream", k, "has", len(ss), "SSRCs"); continue
    for a, b in zip(pk, pk[1:]):
        ds = (b[1] - a[1]) & 0xffff; dt = (b[2] - a[2]) & 0xffffffff
        if ds == 0 or ds > 0x8000 or dt != 160 * ds:
            bad += 1; print("stream", k, "seq", a[1], "->", b[1], "ts", a[2], "->", b[2]); break
        gaps.append((b[0] - a[0]) / ds)
gaps.sort()
print(f"streams={len(streams)} distinct_ssrcs={len(ssrcs)} packets={sum(map(len, streams.values()))} bad_streams={bad}",
      f"interarrival_per_seq_ms p1={gaps[len(gaps)//100]*1e3:.2f} p50={gaps[len(gaps)//2]*1e3:.2f} p99={gaps[len(gaps)*99//100]*1e3:.2f}" if gaps else "")
sys.exit(1 if bad or not streams else 0)

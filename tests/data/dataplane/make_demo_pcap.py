#!/usr/bin/env python3
"""Writes a small Ethernet capture for the dataplane demo and tests:
an RTP call (caller behind a NAT, RTCP on port+1), a REGISTER flood from one source,
one REGISTER each from many spoofed sources, a scan of unallocated media ports and a
handful of malformed frames.

usage: make_demo_pcap.py OUT.pcap [--sbc 127.0.0.1] [--media-port 20000]
"""
import argparse
import ipaddress
import random
import struct


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def udp4(src, sport, dst, dport, payload):
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ulen = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = csum(s + d + struct.pack("!BBH", 0, 17, ulen) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + udp


def rtp(seq, ts, ssrc, n=160):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes(
        (seq + i) & 0xFF for i in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--sbc", default="127.0.0.1")
    ap.add_argument("--media-port", type=int, default=20000)
    a = ap.parse_args()
    rnd = random.Random(7)
    recs = []  # (time_ns, frame)
    t0 = 1_764_000_000 * 10**9
    sbc, mp = a.sbc, a.media_port
    caller_nat, caller_sdp, callee = ("198.51.100.99", 5555), ("198.51.100.10", 4000), ("192.0.2.20", 6000)
    # The call: 3 s of 20 ms packets each way, seq 1..150 (caller loses 3 on the way in).
    for k in range(150):
        t = t0 + k * 20_000_000
        if k not in (40, 41, 90):
            recs.append((t + 1000, udp4(*caller_nat, sbc, mp, rtp(k + 1, 160 * (k + 1), 0x1111))))
        jitter = rnd.randint(0, 4_000_000)
        recs.append((t + 5_000_000 + jitter, udp4(*callee, sbc, mp + 2, rtp(1000 + k, 160 * k, 0x2222))))
        if k % 50 == 0:
            rr = struct.pack("!BBHI", 0x81, 201, 7, 0x1111) + bytes(24)
            recs.append((t + 2000, udp4(caller_nat[0], caller_nat[1] + 1, sbc, mp + 1, rr)))
    reg = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66;branch=z9hG4bK1\r\n\r\n"
    # A brute-force source: 2000 REGISTERs in one second.
    for k in range(2000):
        recs.append((t0 + 500_000_000 + k * 500_000, udp4("203.0.113.66", 5070, sbc, 5060, reg)))
    # 5000 spoofed sources, one REGISTER each, over the same second.
    for k in range(5000):
        src = str(ipaddress.IPv4Address(rnd.randint(0x0B000000, 0xDF000000)))
        recs.append((t0 + 500_000_000 + k * 200_000, udp4(src, 5060, sbc, 5060, reg)))
    # A scanner walking unallocated media ports.
    for k in range(300):
        recs.append((t0 + 2 * 10**9 + k * 1_000_000, udp4("192.0.2.200", 40000, sbc, mp + 100 + k, b"\0" * 12)))
    # Malformed frames.
    good = udp4("198.51.100.7", 5060, sbc, 5060, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    bad_ck = bytearray(good); bad_ck[24] ^= 0xFF
    bad_udp = bytearray(good); bad_udp[-3] ^= 0x01
    bad_ihl = bytearray(good); bad_ihl[14] = 0x43
    arp = b"\xff" * 6 + b"\x02\0\0\0\0\x02\x08\x06" + bytes(28)
    for k, f in enumerate([bytes(bad_ck), bytes(bad_udp), bytes(bad_ihl), good[:30], arp]):
        recs.append((t0 + 2_500_000_000 + k * 1000, f))
    recs.sort(key=lambda r: r[0])
    with open(a.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))  # ns timestamps
        for t, f in recs:
            out.write(struct.pack("<IIII", t // 10**9, t % 10**9, len(f), len(f)) + f)
    print("wrote %s: %d frames" % (a.out, len(recs)))


if __name__ == "__main__":
    main()

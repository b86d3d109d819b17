#!/usr/bin/env python3
"""Two RTP endpoints exchanging real RTP through the SBC's relay, both ways.

  rtp_pair.py A_BIND A_SBC B_BIND B_SBC [--count N]

A (bound to A_BIND) sends to the SBC's leg-a address A_SBC, B (bound to B_BIND) to leg b's
B_SBC. Every packet must arrive at the other side with its payload intact and from the SBC's
address of the other leg. Prints one line per direction; exits 1 on any loss or mismatch.
"""
import argparse
import socket
import struct
import sys


def endpoint(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def rtp(seq, ssrc, payload):
    # RFC 3550 §5.1: V=2, PT 0 (PCMU), 20 ms of 8 kHz audio per packet.
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a_bind", type=endpoint)
    ap.add_argument("a_sbc", type=endpoint)
    ap.add_argument("b_bind", type=endpoint)
    ap.add_argument("b_sbc", type=endpoint)
    ap.add_argument("--count", type=int, default=50)
    args = ap.parse_args()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(args.a_bind)
    b.bind(args.b_bind)
    a.settimeout(2)
    b.settimeout(2)
    ok = True
    for name, tx, to, rx, expect_from, ssrc in (
        ("a->b", a, args.a_sbc, b, args.b_sbc, 0x1111),
        ("b->a", b, args.b_sbc, a, args.a_sbc, 0x2222),
    ):
        got = 0
        for seq in range(args.count):
            payload = b"%s seq %d " % (name.encode(), seq) + bytes(160 - 16)
            tx.sendto(rtp(seq, ssrc, payload), to)
            try:
                data, src = rx.recvfrom(2048)
            except socket.timeout:
                print(f"{name}: packet {seq} lost")
                ok = False
                break
            if data[12:] != payload or struct.unpack("!I", data[8:12])[0] != ssrc:
                print(f"{name}: packet {seq} arrived altered")
                ok = False
                break
            if src != expect_from:
                print(f"{name}: packet {seq} came from {src}, expected {expect_from}")
                ok = False
                break
            got += 1
        print(f"{name}: {got}/{args.count} RTP packets relayed, payloads intact")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Sends one new INVITE (own Call-ID, account and dialed number) from each of N loopback
sources (127.S.x.y from S = --subnet up, --per-prefix to a /24, one UDP socket per source) to a SIP listener, paced, and counts the answers
that come back within a bounded wait.
  invite_burst.py HOST PORT N [--subnet S] [--rate PER_SECOND]"""
import argparse, os, socket, time, select

ap = argparse.ArgumentParser()
ap.add_argument("host"); ap.add_argument("port", type=int); ap.add_argument("n", type=int)
ap.add_argument("--subnet", type=int, default=77, help="second octet of the 127.S.x.y sources")
ap.add_argument("--rate", type=float, default=2000.0)
ap.add_argument("--per-prefix", type=int, default=10,
                help="sources per /24 (the dataplane's per-prefix limits apply to each /24)")
ap.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the last answers")
a = ap.parse_args()
if not 1 <= a.per_prefix <= 250 or not 1 <= a.n <= 60000:
    raise SystemExit("n must be 1..60000, per-prefix 1..250")
if a.subnet + (a.n - 1) // (250 * a.per_prefix) > 254:
    raise SystemExit("sources would run past 127.254.x.y: lower --subnet")

def invite(i, src, sport):
    cid = "%s-%d-%d@burst" % (os.urandom(6).hex(), os.getpid(), i)
    body = ("v=0\r\no=- %d 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" % (i, src, src, 10000 + 2 * (i % 20000)))
    return ("INVITE sip:+4420%07d@%s:%d SIP/2.0\r\n"
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:user%d@%s>;tag=%s\r\n"
            "To: <sip:+4420%07d@%s>\r\n"
            "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:user%d@%s:%d>\r\n"
            "User-Agent: burst\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s"
            % (i, a.host, a.port, src, sport, os.urandom(5).hex(), i, src, os.urandom(4).hex(),
               i, a.host, cid, i, src, sport, len(body), body)).encode()

socks = []
sent = answered = 0
t0 = time.monotonic()
try:
    for i in range(a.n):
        p = i // a.per_prefix  # the source's /24, 250 to a /16
        src = "127.%d.%d.%d" % (a.subnet + p // 250, 1 + p % 250, 1 + i % a.per_prefix)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.setblocking(False)
        s.sendto(invite(i, src, s.getsockname()[1]), (a.host, a.port))
        socks.append(s)
        sent += 1
        # Pace, and drain what came back so far (bounded: one pass per source).
        ahead = t0 + sent / a.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if len(socks) >= 900:  # keep the open-file count low: read what we can, then close
            for x in socks:
                try:
                    while x.recv(65535):
                        answered += 1
                        break
                except BlockingIOError:
                    pass
                x.close()
            socks = []
    deadline = time.monotonic() + a.wait
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select(pending, [], [], 0.2)
        for x in r:
            try:
                x.recv(65535)
                answered += 1
            except BlockingIOError:
                continue
            pending.remove(x)
finally:
    for x in socks:
        x.close()
print("burst: sent=%d answered=%d seconds=%.2f" % (sent, answered, time.monotonic() - t0))

#!/usr/bin/env python3
"""Many registered phones, and the registrar they register with, for the registrations bench.

  reg_phones.py phones --target HOST:PORT --count N [--procs P] [--net 127.10] [--rate R]
                       [--expires S] [--refresh S] [--hold S] [--duration S] [--status DIR]
  reg_phones.py registrar --listen HOST:PORT

phones: N phones, phone i sending from its own address 127.10.(i // 250).(i % 250 + 1), port
5060 (one UDP socket each: distinct flows, as phones behind distinct NATs are), user 200000+i
at pbx.example, Contact naming the address and port it sends from. Each registers once (paced
at R REGISTERs/s in all), then refreshes (same Call-ID, next CSeq) --hold seconds after its
first 200 (default: --refresh) and every --refresh seconds after each later one, answers OPTIONS keep-alives with 200, retransmits an unanswered REGISTER (RFC 3261
Timer E, 0.5 s doubling, 4 times) and counts what failed. The sockets are spread over P
processes (the open-file limit is per process). Every second each process writes
DIR/phones-K: "registered=.. ok=.. refused=.. timeouts=.. options=..". Runs --duration seconds
(0: until SIGTERM); every loop is bounded by it.

registrar: answers REGISTER with 200 listing the Contacts it was sent (their expires kept),
OPTIONS with 200: a location service that accepts everyone (the memory bench measures what the
SBC holds per binding; a challenge there would change nothing the SBC keeps).
"""
import argparse
import heapq
import os
import re
import resource
import select
import signal
import socket
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def header(msg, name):
    m = re.search(r"^" + name + r":[ \t]*(.*?)\r$", msg, re.M | re.I)
    return m.group(1) if m else ""


def answer_200(req, extra=""):
    lines = [l for l in req.split("\r\n") if re.match(r"(Via|From|Call-ID|CSeq):", l, re.I)]
    to = header(req, "To")
    if ";tag=" not in to:
        to += ";tag=b3nch%x" % (hash(header(req, "Call-ID")) & 0xFFFFFF)
    return "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nTo: " + to + "\r\n" + extra + "Content-Length: 0\r\n\r\n"


def registrar(args):
    host, port = args.listen.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((host, int(port)))
    s.settimeout(0.5)
    while not stop:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        msg = data.decode("latin-1")
        if msg.startswith("REGISTER "):
            contacts = "".join("Contact: %s\r\n" % c for c in re.findall(r"^Contact:[ \t]*(.*?)\r$", msg, re.M | re.I))
            exp = header(msg, "Expires")
            s.sendto(answer_200(msg, contacts + ("Expires: %s\r\n" % exp if exp else "")).encode(), peer)
        elif msg.startswith("OPTIONS "):
            s.sendto(answer_200(msg).encode(), peer)


def phone_proc(args, k, first, last):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    thost, tport = args.target.rsplit(":", 1)
    target = (thost, int(tport))
    n = last - first
    socks, addr, user, cseq, callid = [], [], [], [], []
    fd_to = {}
    ep = select.epoll()
    for i in range(first, last):
        a = "%s.%d.%d" % (args.net, i // 250, i % 250 + 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((a, 5060))
        j = len(socks)
        socks.append(s)
        addr.append(a)
        user.append(str(200000 + i))
        cseq.append(0)
        callid.append("reg%d-%d@%s" % (i, os.getpid(), a))
        fd_to[s.fileno()] = j
        ep.register(s.fileno(), select.EPOLLIN)
    pending = [0.0] * n   # time the outstanding REGISTER was first sent (0: none)
    retries = [0] * n
    retry_at = [0.0] * n
    registered = [False] * n
    due = []              # (time, j, kind): kind 0 = send a REGISTER, 1 = retransmission check
    t0 = time.monotonic() + 0.5
    for j in range(n):
        heapq.heappush(due, (t0 + (j * args.procs + k) / args.rate, j, 0))
    counts = dict(registered=0, ok=0, refused=0, timeouts=0, options=0, sent=0)
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    status_path = os.path.join(args.status, "phones-%d" % k) if args.status else None
    next_status = 0.0

    def send_register(j, now, retrans):
        if not retrans:
            cseq[j] += 1
        a = addr[j]
        msg = ("REGISTER sip:pbx.example SIP/2.0\r\n"
               "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%d.%d;rport\r\n"
               "From: <sip:%s@pbx.example>;tag=t%d\r\n"
               "To: <sip:%s@pbx.example>\r\n"
               "Call-ID: %s\r\n"
               "CSeq: %d REGISTER\r\n"
               "Contact: <sip:%s@%s:5060>\r\n"
               "Expires: %d\r\n"
               "Max-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n") % (a, j, cseq[j], user[j], j, user[j], callid[j], cseq[j],
                                               user[j], a, args.expires)
        try:
            socks[j].sendto(msg.encode(), target)
            counts["sent"] += 1
        except (BlockingIOError, OSError):
            pass
        if not retrans:
            pending[j] = now
            retries[j] = 0
        retry_at[j] = now + 0.5 * (2 ** retries[j])
        heapq.heappush(due, (retry_at[j], j, 1))

    while not stop:
        now = time.monotonic()
        if now >= end:
            break
        while due and due[0][0] <= now:
            _, j, kind = heapq.heappop(due)
            if kind == 0:
                send_register(j, now, False)
            elif pending[j] and now >= retry_at[j]:
                if retries[j] >= 4:
                    counts["timeouts"] += 1
                    pending[j] = 0.0
                    heapq.heappush(due, (now + 5.0, j, 0))
                else:
                    retries[j] += 1
                    send_register(j, now, True)
        timeout = max(0.0, min(due[0][0] - now if due else 0.2, 0.2, end - now))
        try:
            events = ep.poll(timeout, 256)
        except InterruptedError:
            continue
        for fd, _ in events:
            j = fd_to[fd]
            for _ in range(16):  # bounded: a socket's queue, a few messages at most
                try:
                    data = socks[j].recv(65535)
                except (BlockingIOError, OSError):
                    break
                msg = data.decode("latin-1")
                if msg.startswith("SIP/2.0 "):
                    status = int(msg[8:11])
                    if status < 200 or not pending[j] or header(msg, "CSeq").split(" ")[0] != str(cseq[j]):
                        continue
                    pending[j] = 0.0
                    if status < 300:
                        counts["ok"] += 1
                        wait = args.refresh
                        if not registered[j]:
                            registered[j] = True
                            counts["registered"] += 1
                            wait = args.hold or args.refresh
                        heapq.heappush(due, (time.monotonic() + wait, j, 0))
                    else:
                        counts["refused"] += 1
                        heapq.heappush(due, (time.monotonic() + 5.0, j, 0))
                elif msg.startswith("OPTIONS "):
                    counts["options"] += 1
                    try:
                        socks[j].sendto(answer_200(msg).encode(), target)
                    except OSError:
                        pass
        if status_path and now >= next_status:
            next_status = now + 1.0
            with open(status_path + ".tmp", "w") as f:
                f.write(" ".join("%s=%d" % kv for kv in counts.items()) + "\n")
            os.replace(status_path + ".tmp", status_path)
    if status_path:
        with open(status_path, "w") as f:
            f.write(" ".join("%s=%d" % kv for kv in counts.items()) + "\n")


def phones(args):
    per = (args.count + args.procs - 1) // args.procs
    kids = []
    for k in range(args.procs):
        first, last = k * per, min(args.count, (k + 1) * per)
        if first >= last:
            break
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, on_term)
            try:
                phone_proc(args, k, first, last)
            except Exception as e:  # noqa: BLE001: report and exit non-zero
                print("phones[%d]: %s" % (k, e), file=sys.stderr)
                os._exit(1)
            os._exit(0)
        kids.append(pid)
        _kids.append(pid)
    rc = 0
    for pid in kids:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                st = 0
                break
        rc |= 1 if os.waitstatus_to_exitcode(st) not in (0, -signal.SIGTERM) else 0
    return rc


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    ph = sub.add_parser("phones")
    ph.add_argument("--target", required=True)
    ph.add_argument("--count", type=int, required=True)
    ph.add_argument("--procs", type=int, default=4)
    ph.add_argument("--net", default="127.10")
    ph.add_argument("--rate", type=float, default=1000)
    ph.add_argument("--expires", type=int, default=3600)
    ph.add_argument("--refresh", type=float, default=60)
    ph.add_argument("--hold", type=float, default=0)
    ph.add_argument("--duration", type=float, default=0)
    ph.add_argument("--status", default="")
    rg = sub.add_parser("registrar")
    rg.add_argument("--listen", required=True)
    args = p.parse_args()
    if args.mode == "registrar":
        signal.signal(signal.SIGTERM, on_term)
        registrar(args)
        return 0
    if args.count > 250 * 256:
        p.error("--count: at most 64000 phones (addresses NET.0-255.1-250)")

    def forward(*_):
        on_term()
        for pid in kids_alive():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    return phones(args)


_kids = []


def kids_alive():
    return list(_kids)


if __name__ == "__main__":
    sys.exit(main())

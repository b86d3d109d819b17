#!/usr/bin/env python3
"""The registrar the phones of the registrations bench register with.

  reg_phones.py registrar --listen HOST:PORT

Answers REGISTER with 200 listing the Contacts it was sent (their expires kept), OPTIONS with
200: a location service that accepts everyone (the memory bench measures what the SBC holds per
binding; a challenge there would change nothing the SBC keeps). It sees few requests: the SBC
answers the phones' refreshes from its cache. The phones themselves are sbc-reg-phones
(reg_phones.cpp), which keeps up with 50,000 of them.
"""
import argparse
import re
import signal
import socket
import sys

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


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    rg = sub.add_parser("registrar")
    rg.add_argument("--listen", required=True)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    registrar(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A SIP peer over UDP for tests: answers OPTIONS 200 and every other request (ACK aside) with
the status given for its Request-URI user's prefix (else 200), naming an inside host in its
Server header; writes every request it receives to LOG (separated by a line of '=').
   sip_udp_answerer.py ADDRESS PORT LOG SECONDS [PREFIX=STATUS ...]"""
import re
import socket
import sys
import time

addr, port, log, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rules = [a.split("=", 1) for a in sys.argv[5:]]
reasons = {200: "OK", 202: "Accepted", 404: "Not Found", 503: "Service Unavailable"}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(0.5)
end = time.time() + seconds
while time.time() < end:
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        continue
    text = data.decode("utf-8", "replace")
    first = text.split("\r\n", 1)[0]
    if text.startswith("SIP/2.0") or first.startswith("ACK "):
        continue
    method = first.split(" ", 1)[0]
    m = re.match(r"\S+ sips?:([^@;>]*)@", first)
    user = m.group(1) if m else ""
    status = 200
    if method != "OPTIONS":
        with open(log, "a") as f:
            f.write(text + "\n" + "=" * 20 + "\n")
        for prefix, code in rules:
            if user.startswith(prefix):
                status = int(code)
                break
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    keep = []
    for l in head:
        if re.match(r"(?i)(via|v|from|f|call-id|i|cseq)\s*:", l):
            keep.append(l)
        elif re.match(r"(?i)(to|t)\s*:", l):
            keep.append(l if ";tag=" in l else l + ";tag=inside77")
    out = "SIP/2.0 %d %s\r\n%s\r\nServer: InternalPBX/9.9 (fs01.inside.lan)\r\n" \
          "Content-Length: 0\r\n\r\n" % (status, reasons.get(status, "Status"), "\r\n".join(keep))
    s.sendto(out.encode(), src)

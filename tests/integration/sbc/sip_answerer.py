#!/usr/bin/env python3
"""A SIP peer over TCP for tests: answers every request it reads with 200 OK (Via, From, To,
Call-ID and CSeq copied), counts what it answered per method in a file.
   sip_answerer.py ADDRESS PORT COUNT_FILE SECONDS"""
import re
import socket
import sys
import threading
import time

addr, port, count_file, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
counts = {}
lock = threading.Lock()


def answer(head):
    lines = head.split("\r\n")
    method = lines[0].split(" ", 1)[0]
    keep = [l for l in lines[1:] if re.match(r"(?i)(via|v|from|f|to|t|call-id|i|cseq)\s*:", l)]
    to_tagged = []
    for l in keep:
        if re.match(r"(?i)(to|t)\s*:", l) and ";tag=" not in l:
            l += ";tag=answerer1"
        to_tagged.append(l)
    with lock:
        counts[method] = counts.get(method, 0) + 1
        with open(count_file, "w") as f:
            for k, v in sorted(counts.items()):
                f.write("%s=%d\n" % (k, v))
    return ("SIP/2.0 200 OK\r\n" + "\r\n".join(to_tagged) + "\r\nContent-Length: 0\r\n\r\n").encode()


def serve(conn):
    conn.settimeout(1.0)
    data = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        while True:
            data = data.lstrip(b"\r\n")
            head, sep, rest = data.partition(b"\r\n\r\n")
            if not sep:
                break
            m = re.search(rb"\r\n(?:content-length|l)\s*:\s*(\d+)", head, re.I)
            n = int(m.group(1)) if m else 0
            if len(rest) < n:
                break
            data = rest[n:]
            text = head.decode("utf-8", "replace")
            if not text.startswith("SIP/2.0") and text.split(" ", 1)[0] != "ACK":
                conn.sendall(answer(text))
    conn.close()


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(16)
srv.settimeout(1.0)
end = time.time() + seconds
while time.time() < end:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()

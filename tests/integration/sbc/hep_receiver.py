#!/usr/bin/env python3
"""A HEP collector for tests: receives HEPv3 on UDP, decodes every generic chunk and prints one
JSON object per packet (flushed). Stops after `seconds` or when killed.
    hep_receiver.py ADDRESS PORT SECONDS OUT.jsonl"""
import json, socket, struct, sys, time

addr, port, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def decode(p):
    if len(p) < 6 or p[:4] != b"HEP3":
        return {"error": "no HEP3 magic"}
    total = struct.unpack("!H", p[4:6])[0]
    if total != len(p):
        return {"error": "length %d != datagram %d" % (total, len(p))}
    d, off = {}, 6
    while off < total:
        if total - off < 6:
            return {"error": "truncated chunk header"}
        vendor, ctype, clen = struct.unpack("!HHH", p[off:off + 6])
        if clen < 6 or off + clen > total:
            return {"error": "bad chunk length"}
        v = p[off + 6:off + clen]
        if vendor == 0:
            if ctype == 1: d["family"] = v[0]
            elif ctype == 2: d["proto"] = v[0]
            elif ctype in (3, 4): d["src_ip" if ctype == 3 else "dst_ip"] = socket.inet_ntop(socket.AF_INET, v)
            elif ctype in (5, 6): d["src_ip" if ctype == 5 else "dst_ip"] = socket.inet_ntop(socket.AF_INET6, v)
            elif ctype == 7: d["src_port"] = struct.unpack("!H", v)[0]
            elif ctype == 8: d["dst_port"] = struct.unpack("!H", v)[0]
            elif ctype == 9: d["time_sec"] = struct.unpack("!I", v)[0]
            elif ctype == 10: d["time_usec"] = struct.unpack("!I", v)[0]
            elif ctype == 11: d["proto_type"] = v[0]
            elif ctype == 12: d["capture_id"] = struct.unpack("!I", v)[0]
            elif ctype == 14: d["auth_key"] = v.decode()
            elif ctype == 15: d["payload"] = v.decode("utf-8", "replace")
            elif ctype == 17: d["correlation_id"] = v.decode()
        off += clen
    return d


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(0.2)
deadline = time.time() + seconds
with open(out, "w") as f:
    while time.time() < deadline:
        try:
            p = s.recv(65535)
        except socket.timeout:
            continue
        f.write(json.dumps(decode(p)) + "\n")
        f.flush()

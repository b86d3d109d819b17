#!/usr/bin/env python3
"""What the SBC sent to the outside, checked for anything of the inside, from a capture.
Over UDP and TCP (messages framed out of each connection's byte stream).

  leak_check.py PCAP --sbc ADDR --outside ADDR --inside FILTER [options]

Reads every SIP message the SBC sent from ADDR (its external address) to the outside party
(--outside, repeatable) out of PCAP with tshark, and fails (exit 1, one line per finding) when
one of them:
  - contains a --forbid string anywhere (internal addresses, host names, products), case-blind;
  - contains an identifier seen on the inside: every Call-ID, From/To tag, Via branch and
    Contact user of the SIP messages that match the tshark display filter --inside;
  - carries a header named by --strip (Server, User-Agent, Organization, Warning, ...) other
    than the SBC's own --server value, or any Record-Route or Route header;
  - is a request with a Max-Forwards other than --max-forwards (the inside hop count hidden),
    or with more than one Via;
  - carries SDP whose s= line is not "-" (it often names a product or a host);
  - has a tshark expert note or a malformed mark (_ws.malformed, _ws.expert) in its dissection.
Prints one summary line when nothing leaked. Reusable by any test that captured the SBC.
"""
import argparse
import re
import subprocess
import sys

COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject"}


def tshark(pcap, display, fields):
    cmd = ["tshark", "-r", pcap, "-Y", display, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


SIP_START = re.compile(rb"^(SIP/2\.0 \d{3} |[A-Z]+ sips?:)")


def messages(pcap, display):
    """(frame number, SIP message text) of every SIP message matching `display`: each UDP SIP
    frame, and over TCP every message framed (by Content-Length) out of the byte stream of each
    direction of each connection, numbered by the frame it starts in."""
    out = []
    for row in tshark(pcap, display + " && sip && udp", ["frame.number", "udp.payload"]):
        if len(row) < 2 or not row[1]:
            continue
        data = bytes.fromhex(row[1].replace(":", ""))
        out.append((int(row[0]), data.decode("utf-8", "replace")))
    flows = {}
    for row in tshark(pcap, display + " && tcp.len > 0",
                      ["frame.number", "tcp.stream", "ip.src", "tcp.srcport", "tcp.payload"]):
        if len(row) < 5 or not row[4]:
            continue
        chunks = flows.setdefault((row[1], row[2], row[3]), [])
        chunks.append((int(row[0]), bytes.fromhex(row[4].replace(":", ""))))
    for chunks in flows.values():
        data, starts = b"", []  # starts: (offset, frame) of each chunk
        for frame, chunk in chunks:
            starts.append((len(data), frame))
            data += chunk
        pos = 0
        while pos < len(data):
            while data[pos:pos + 2] == b"\r\n":
                pos += 2  # keep-alives between messages
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            head = data[pos:end]
            m = re.search(rb"\r\n(?:content-length|l)\s*:\s*(\d+)", head, re.I)
            stop = end + 4 + (int(m.group(1)) if m else 0)
            frame = max(f for off, f in starts if off <= pos)
            if SIP_START.match(head):
                out.append((frame, data[pos:stop].decode("utf-8", "replace")))
            pos = stop
    return out


def split(msg):
    head, _, body = msg.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers.append((COMPACT.get(name, name), value.strip()))
    return lines[0], headers, body


def identifiers(msg):
    """Call-ID, tags, branches and Contact users of one message (those worth looking for)."""
    _, headers, _ = split(msg)
    found = set()
    for name, value in headers:
        if name == "call-id":
            found.add(value)
        elif name in ("from", "to"):
            found.update(re.findall(r";\s*tag=([^;>\s,]+)", value))
        elif name == "via":
            found.update(re.findall(r";\s*branch=([^;>\s,]+)", value))
        elif name == "contact":
            found.update(re.findall(r"sips?:([^@;>\s]+)@", value))
    # Short or generic values would match by chance.
    return {f for f in found if len(f) >= 6 and f.lower() not in ("z9hg4bk",)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap")
    ap.add_argument("--sbc", required=True, help="the SBC's external address")
    ap.add_argument("--outside", action="append", required=True, help="an outside party's address")
    ap.add_argument("--inside", required=True, help="tshark display filter of the inside's SIP")
    ap.add_argument("--forbid", action="append", default=[], help="a string never to be seen")
    ap.add_argument("--strip", action="append", default=[], help="a header name never relayed")
    ap.add_argument("--server", default="sbc", help="the SBC's own Server/User-Agent value")
    ap.add_argument("--max-forwards", type=int, default=70)
    ap.add_argument("--min-messages", type=int, default=1)
    a = ap.parse_args()

    outside = " || ".join("ip.dst==%s" % o for o in a.outside)
    display = "ip.src==%s && (%s)" % (a.sbc, outside)
    sent = messages(a.pcap, display)
    inside_ids = set()
    for _, m in messages(a.pcap, "(%s)" % a.inside):
        inside_ids |= identifiers(m)
    # An identifier the outside chose itself and the inside merely echoes is no leak (the
    # B2BUA passes none on, but a test may reuse values).
    outside_ids = set()
    for _, m in messages(a.pcap, "(%s) && ip.dst==%s" % (" || ".join("ip.src==%s" % o for o in a.outside), a.sbc)):
        outside_ids |= identifiers(m)
    inside_ids -= outside_ids

    findings = []
    strip = {s.lower() for s in a.strip}
    for frame, m in sent:
        first, headers, body = split(m)
        where = "frame %d (%s)" % (frame, first[:60])
        low = m.lower()
        for f in a.forbid:
            if f.lower() in low:
                findings.append("%s: contains '%s'" % (where, f))
        for ident in inside_ids:
            if ident in m:
                findings.append("%s: carries the inside identifier '%s'" % (where, ident))
        for name, value in headers:
            if name in ("record-route", "route"):
                findings.append("%s: has %s: %s" % (where, name, value))
            elif name in strip and not (name in ("server", "user-agent") and value == a.server):
                findings.append("%s: has the stripped header %s: %s" % (where, name, value))
        if not first.startswith("SIP/2.0"):
            mf = [v for n, v in headers if n == "max-forwards"]
            if mf != [str(a.max_forwards)]:
                findings.append("%s: Max-Forwards %s, not %d" % (where, mf, a.max_forwards))
            vias = [v for n, v in headers if n == "via"]
            if len(vias) != 1 or "," in vias[0]:
                findings.append("%s: %d Via values" % (where, len(vias)))
        for line in body.split("\r\n"):
            if line.startswith("s=") and line != "s=-":
                findings.append("%s: SDP session name '%s'" % (where, line))
    bad = tshark(a.pcap, display + " && sip && (_ws.malformed || _ws.expert)",
                 ["frame.number", "_ws.expert.message"])
    for row in bad:
        findings.append("frame %s: tshark: %s" % (row[0], row[1] if len(row) > 1 else "malformed"))
    if len(sent) < a.min_messages:
        findings.append("only %d SIP messages from %s to the outside in the capture" % (len(sent), a.sbc))

    for f in findings[:50]:
        print("LEAK " + f)
    if findings:
        print("leak check: %d findings in %d messages" % (len(findings), len(sent)))
        return 1
    print("leak check: %d SIP messages from the SBC to the outside, %d inside identifiers, "
          "%d forbidden strings, %d stripped headers: nothing of the inside, no malformed SIP"
          % (len(sent), len(inside_ids), len(a.forbid), len(a.strip)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

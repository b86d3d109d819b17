#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_b2bua (tests/fuzz/corpus/b2bua/): realistic call flows in the
target's record format (see fuzz_b2bua.cpp). Run from anywhere; the files are rewritten."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "b2bua")
EXT, INT = 0, 1
RAW, RESPOND, DIALOG, AGAIN, END, ADMIT = range(6)
# Indexes into the target's kStatuses and kMethods tables.
ST = {100: 0, 180: 1, 183: 2, 200: 3, 302: 5, 486: 10, 487: 11, 503: 14}
ME = {"ACK": 0, "BYE": 1, "INVITE": 2, "INFO": 3, "UPDATE": 4, "CANCEL": 5, "OPTIONS": 6}
SDP_FLAG, REQ_FLAG, RR_FLAG = 2, 1, 16


def sdp(host, port):
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8\r\na=rtcp:{port + 1}\r\n")


def invite_out(callid="call-1@198.51.100.7", branch="z9hG4bKc1", body=True):
    b = sdp("198.51.100.7", 40000) if body else ""
    return ("INVITE sip:+442071234567@203.0.113.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 198.51.100.7:5070;branch={branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@carrier.example>;tag=alice1\r\n"
            "To: <sip:+442071234567@203.0.113.1>\r\n"
            f"Call-ID: {callid}\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@198.51.100.7:5070>\r\n"
            "User-Agent: softphone\r\n"
            + ("Content-Type: application/sdp\r\n" if b else "")
            + f"Content-Length: {len(b)}\r\n\r\n{b}")


def invite_in():
    b = sdp("10.9.9.9", 22000)
    return ("INVITE sip:+15551234@198.51.100.9:5070 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKi1\r\n"
            "Max-Forwards: 69\r\nFrom: <sip:1001@pbx.inside.lan>;tag=pbx1\r\n"
            "To: <sip:+15551234@198.51.100.9>\r\nCall-ID: inside-1@10.0.0.2\r\n"
            "CSeq: 1 INVITE\r\nContact: <sip:1001@10.0.0.2:5080>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(b)}\r\n\r\n{b}")


def options_out():
    return ("OPTIONS sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKo1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:ping@carrier.example>;tag=p1\r\nTo: <sip:203.0.113.1>\r\n"
            "Call-ID: ping-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def rec(side, kind, step, payload, variant=0):
    if isinstance(payload, str):
        payload = payload.encode()
    return b"\n#!" + bytes([side | (kind << 1) | (variant << 4), step]) + bytes(payload)


def respond(which, status, flags=0, step=5):
    return rec(INT, RESPOND, step, [which, ST[status], flags])


def dialog(which, method, flags=0, step=5):
    return rec(EXT, DIALOG, step, [which, ME[method], flags])


def answered_call():
    return [rec(EXT, RAW, 0, invite_out()), respond(0, 100), respond(0, 180, step=50),
            respond(0, 200, SDP_FLAG | RR_FLAG, step=150),
            dialog(0, "ACK")]  # the caller's ACK to the SBC's 200


SEEDS = {
    "call_bye_caller": [0] + answered_call() + [dialog(0, "BYE", step=210), respond(0, 200)],
    "call_bye_callee": [0] + answered_call() + [
        dialog(0, "BYE", REQ_FLAG, step=210), rec(EXT, RESPOND, 5, [0, ST[200], 0])],
    "call_reinvite": [0] + answered_call() + [
        dialog(0, "INVITE", SDP_FLAG, step=100), respond(0, 200, SDP_FLAG),
        dialog(1, "ACK"), dialog(0, "INFO", step=20), respond(0, 200),
        dialog(0, "BYE", step=100), respond(0, 200)],
    "call_busy": [0, rec(EXT, RAW, 0, invite_out()), respond(0, 100), respond(0, 486, step=40),
                  rec(EXT, AGAIN, 2, [0, 2])],
    "call_cancel": [0, rec(EXT, RAW, 0, invite_out()), respond(0, 180, step=10),
                    rec(EXT, AGAIN, 150, [0, 1]), respond(0, 200), respond(1, 487),
                    rec(EXT, AGAIN, 2, [0, 2])],
    "call_no_answer": [0, rec(EXT, RAW, 0, invite_out()), respond(0, 100),
                       rec(EXT, AGAIN, 25, [0, 0]), rec(EXT, RAW, 255, b"")],
    "call_failover": [1, rec(EXT, RAW, 0, invite_out()), respond(0, 503, step=10),
                      respond(0, 200, SDP_FLAG, step=10), dialog(0, "ACK"),
                      rec(EXT, END, 200, [0]), respond(0, 200), rec(EXT, RESPOND, 2, [0, ST[200], 0])],
    "call_from_inside": [0, rec(INT, RAW, 0, invite_in()),
                         rec(EXT, RESPOND, 10, [0, ST[180], 0]),
                         rec(EXT, RESPOND, 100, [0, ST[200], SDP_FLAG]),
                         rec(INT, DIALOG, 5, [0, ME["ACK"], 0]),
                         rec(INT, DIALOG, 200, [0, ME["BYE"], 0]),
                         rec(EXT, RESPOND, 5, [0, ST[200], 0])],
    "call_blocked_then_flagged": [0, rec(EXT, ADMIT, 0, [2, 3]), rec(EXT, RAW, 0, invite_out()),
                                  rec(EXT, ADMIT, 0, [1]),
                                  rec(EXT, RAW, 5, invite_out("call-2@x", "z9hG4bKc2")),
                                  respond(0, 200, SDP_FLAG), dialog(0, "ACK"),
                                  dialog(0, "BYE", step=50), respond(0, 200)],
    "health_and_options": [2, rec(EXT, RAW, 0, options_out()), respond(0, 200, step=0),
                           rec(EXT, RAW, 255, invite_out(body=False)), respond(0, 200, SDP_FLAG),
                           dialog(0, "ACK", SDP_FLAG), dialog(0, "BYE", step=30), respond(0, 200)],
    "redirect": [4, rec(EXT, RAW, 0, invite_out()), respond(0, 302, step=10),
                 rec(EXT, AGAIN, 2, [0, 2])],
}

os.makedirs(OUT, exist_ok=True)
for name, parts in SEEDS.items():
    data = bytes([parts[0]]) + b"".join(parts[1:])
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {os.path.normpath(OUT)}")

#!/usr/bin/env bash
# Bad REGISTERs and forged binding tokens on the wire against `sbc run` (no registrar needed:
# each is refused before anything is forwarded): hundreds of Contacts, absurd Expires
# (negative, huge, not a number, in the header and in a Contact parameter), `*` without
# Expires 0, and INVITEs from inside naming tokens that no binding has. Every one gets its
# answer and its counter; the daemon keeps serving.
#   registrations_bad_input.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11070
INT_PORT=11071
write_config
cp -r "$ROOT/policy/examples" "$WORK/policy"
python3 - "$WORK/sbc.toml" "$INT_PORT" "$WORK/policy/callcenter.toml" <<'PY'
import re, sys
path, internal, pol = sys.argv[1:4]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>11072', s, flags=re.S)
s = re.sub(r'(realm = "internal"[^\[]*?port = )\d+', r'\g<1>' + internal, s, flags=re.S)
s = s.replace('port_min = 20000', 'port_min = 20400').replace('port_max = 29999', 'port_max = 20499')
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
s = s.replace('[media]', '[registrations]\nmax_contacts_per_request = 10\nmax_expires = "1h"\n\n[media]')
open(path, "w").write(s)
p = open(pol).read()
p = p.replace('per_source = { rate = 2, burst = 10 }', 'per_source = { rate = 100, burst = 200 }')
p = p.replace('per_account = { rate = 1, burst = 5 }', 'per_account = { rate = 100, burst = 200 }')
open(pol, "w").write(p)
PY
grep -q "port = $INT_PORT" "$WORK/sbc.toml" || fail "internal port not rewritten"
start_sbc
for _ in $(seq 100); do [ -n "$(stat registrations.registers)" ] && break; sleep 0.1; done
[ -n "$(stat registrations.registers)" ] || fail "registrations are not forwarded on this node"

# send.py KIND...: each case sends one request and prints "case status" (or "case none").
cat >"$WORK/send.py" <<'PY'
import socket, sys, random
sbc_port, int_port = int(sys.argv[1]), int(sys.argv[2])

def request(method, ruri, extra, src="127.0.0.60", dst=("127.0.0.1", sbc_port), to_user="1001"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(3)
    port = s.getsockname()[1]
    tag = "%08x" % random.getrandbits(32)
    msg = (f"{method} {ruri} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {src}:{port};branch=z9hG4bK{tag}x;rport\r\n"
           f"From: <sip:{to_user}@pbx.example>;tag={tag}\r\n"
           f"To: <sip:{to_user}@pbx.example>\r\n"
           f"Call-ID: {tag}@bad\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
           + "".join(h + "\r\n" for h in extra) + "Content-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), dst)
    try:
        while True:
            data, _ = s.recvfrom(65535)
            line = data.split(b"\r\n", 1)[0].decode()
            code = int(line.split()[1])
            if code >= 200:
                return line
    except socket.timeout:
        return "none"
    finally:
        s.close()

reg = lambda extra: request("REGISTER", "sip:pbx.example", extra)
contact = "Contact: <sip:1001@192.168.1.5:5060>"
cases = {
    "contacts_300": lambda: reg([f"Contact: <sip:1001@192.168.1.{i % 250}:{5060 + i}>" for i in range(300)] + ["Expires: 60"]),
    "contacts_30_one_header": lambda: reg(["Contact: " + ", ".join(f"<sip:u{i}@10.0.0.1>" for i in range(30)), "Expires: 60"]),
    "expires_negative": lambda: reg([contact, "Expires: -1"]),
    "expires_huge": lambda: reg([contact, "Expires: 99999999999999999999"]),
    "expires_text": lambda: reg([contact, "Expires: forever"]),
    "expires_param_negative": lambda: reg([contact + ";expires=-60"]),
    "expires_param_text": lambda: reg([contact + ";expires=1e9"]),
    "star_without_zero": lambda: reg(["Contact: *", "Expires: 3600"]),
    "forged_token": lambda: request("INVITE", f"sip:{'x' * 24}@127.0.0.2:{int_port}", ["Contact: <sip:2000@127.0.0.61>"],
                                    src="127.0.0.61", dst=("127.0.0.2", int_port)),
    "forged_token_short": lambda: request("INVITE", f"sip:abc@127.0.0.2:{int_port}", ["Contact: <sip:2000@127.0.0.61>"],
                                          src="127.0.0.61", dst=("127.0.0.2", int_port)),
}
for name in sys.argv[3:]:
    print(name, cases[name]())
PY
before=$(ctl stats)
out=$(python3 "$WORK/send.py" "$SIP_PORT" "$INT_PORT" contacts_300 contacts_30_one_header \
  expires_negative expires_huge expires_text expires_param_negative expires_param_text \
  star_without_zero forged_token forged_token_short)
echo "$out"
after=$(ctl stats)
delta() { echo $(( $(echo "$after" | sed -n "s/^$1=//p") - $(echo "$before" | sed -n "s/^$1=//p") )); }
answer() { echo "$out" | sed -n "s/^$1 //p"; }

# Too many Contacts: refused 403; a datagram past the parser's header limit is a counted
# malformed drop, one past the socket backend's receive buffer a counted truncated drop.
m=$(($(delta sip.malformed) + $(delta drop.truncated)))
c=$(delta registrations.refused_too_many_contacts)
[ "$c" -ge 1 ] || fail "too many Contacts not counted (refused $c, dropped $m)"
[ "$((c + m))" = 2 ] || fail "two oversized REGISTERs: refused $c + dropped $m"
case "$(answer contacts_30_one_header)" in "SIP/2.0 403"*) ;; *) fail "30 Contacts: $(answer contacts_30_one_header)" ;; esac
echo "hundreds of Contacts: refused ($c with 403, $m dropped as malformed or truncated), counted"

# Absurd Expires: 400, counted, each of the six.
[ "$(delta registrations.refused_bad_expires)" = 6 ] ||
  fail "bad Expires counted $(delta registrations.refused_bad_expires) of 6"
for k in expires_negative expires_huge expires_text expires_param_negative expires_param_text star_without_zero; do
  case "$(answer $k)" in "SIP/2.0 400"*) ;; *) fail "$k: $(answer $k)" ;; esac
done
[ "$(delta registrations.forwarded)" = 0 ] || fail "a bad REGISTER reached the registrar"
echo "absurd Expires and '*' without 0: 400, counted (6)"

# Forged tokens from inside: 480 at once, counted.
[ "$(delta registrations.inbound_gone)" = 2 ] || fail "forged tokens counted $(delta registrations.inbound_gone) of 2"
for k in forged_token forged_token_short; do
  case "$(answer $k)" in "SIP/2.0 480"*) ;; *) fail "$k: $(answer $k)" ;; esac
done
echo "forged binding tokens: 480, counted (2)"

# Still serving: the control socket answers and the process is alive.
kill -0 "$SBC_PID" || fail "sbc run died"
[ "$(stat registrations.bindings)" = 0 ] || fail "a bad REGISTER left a binding"
stop_sbc
echo "PASS"

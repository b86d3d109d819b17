#!/usr/bin/env python3
"""A webhook receiver for the security-event tests: appends every POST body as one line to
OUT and answers 200 after DELAY seconds (a slow receiver), one request at a time.

    webhook_receiver.py PORT OUT [DELAY]
"""
import http.server
import sys
import time

PORT, OUT = int(sys.argv[1]), sys.argv[2]
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if DELAY:
            time.sleep(DELAY)
        with open(OUT, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

#!/usr/bin/env python3
"""Audnexus and Audible's catalog for tests that run the real binary without the network
(scripts/schemathesis.sh): answers from the recorded responses in tests/fixtures/metadata/,
for any ASIN and any search. Covers are 404 (a warning in aiom4b, never a failure).

    scripts/metadata-stub.py        # prints "listening on http://127.0.0.1:PORT", then serves

Point aiom4b at it with AIOM4B_AUDNEXUS_URL=http://127.0.0.1:PORT and
AIOM4B_AUDIBLE_URL=http://127.0.0.1:PORT/{tld}.
"""
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "metadata")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urlsplit(self.path).path
        base = f"http://{self.headers.get('Host')}"
        m = re.fullmatch(r"/books/([A-Za-z0-9]+)(/chapters)?", path)
        if m:
            doc = fixture("audnexus_chapters.json" if m[2] else "audnexus_book.json")
            doc["asin"] = m[1].upper()
            if not m[2]:
                doc["image"] = f"{base}/img/{m[1]}.jpg"
            return self.send_json(doc)
        m = re.fullmatch(r"/[a-z.]+/1\.0/catalog/products(/[A-Za-z0-9]+)?", path)
        if m:
            return self.send_json(fixture("audible_product.json" if m[1] else "audible_search.json"))
        body = b'{"statusCode":404,"error":"Not Found","message":"stub"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)

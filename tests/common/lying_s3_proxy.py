#!/usr/bin/env python3
"""An HTTP proxy in front of a real S3 server that lies about ETags.

Usage: lying_s3_proxy.py UPSTREAM_PORT LOG MODE

Every request is forwarded unchanged (same Host header, so signatures still hold) to
127.0.0.1:UPSTREAM_PORT. In every answer, each 32-hex-digit MD5 inside an ETag - the ETag
header, and <ETag> elements of XML bodies (CompleteMultipartUpload, listings) - is
replaced by its reverse: consistently wrong, as a broken or hostile server would be. The
bytes stored upstream are exactly what the client sent. MODE "all" lies in every answer;
MODE "objects" tells the truth about uploaded parts and lies about whole objects only (so
an upload completes, and only then fails verification).

Prints the port it listens on (loopback), then serves until killed. Appends one line per
request to LOG: "METHOD PATH?QUERY STATUS".
"""

import http.client
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = int(sys.argv[1])
LOG = sys.argv[2]
MODE = sys.argv[3]
MD5 = re.compile(rb"[0-9a-f]{32}")
ETAG_XML = re.compile(rb"<ETag>(.*?)</ETag>", re.S)
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def lie(value: bytes) -> bytes:
    return MD5.sub(lambda m: m.group(0)[::-1], value)


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def forward(self):
        body = self.body()
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP:
                up.putheader(k, v)
        up.putheader("Content-Length", str(len(body)))
        up.endheaders(body)
        resp = up.getresponse()
        data = resp.read()
        honest = MODE == "objects" and self.command == "PUT" and "partNumber=" in self.path
        if honest:
            pass
        elif self.command != "HEAD":
            data = ETAG_XML.sub(lambda m: b"<ETag>" + lie(m.group(1)) + b"</ETag>", data)
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() == "etag" and not honest:
                v = lie(v.encode()).decode()
            if k.lower() not in HOP:
                self.send_header(k, v)
        if self.command == "HEAD":
            # A HEAD answer has no body but tells the object's size.
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        up.close()
        with open(LOG, "a") as log:
            log.write(f"{self.command} {self.path} {resp.status}\n")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward


server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()

#!/usr/bin/python3
"""Upstream for bench/run.sh's memory part (standard library only).

GET  /big     answers SIZE bytes of zeros (Content-Length), written 1 MiB at a time.
PUT  /upload  (or POST) reads the whole body (Content-Length or chunked), drops it, and answers
              "received N".
Anything else answers 200 "ok".
"""
import argparse
import http.server
import socketserver

CHUNK = 1 << 20
ZEROS = bytes(CHUNK)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 0

    def log_message(self, *args):
        pass

    def reply(self, body: bytes, code: int = 200):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.split("?")[0] != "/big":
            return self.reply(b"ok")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        left = self.size
        while left > 0:
            n = min(left, CHUNK)
            self.wfile.write(ZEROS[:n] if n < CHUNK else ZEROS)
            left -= n

    def read_body(self) -> int:
        total = 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                left = n
                while left > 0:
                    got = self.rfile.read(min(left, CHUNK))
                    if not got:
                        return total
                    left -= len(got)
                    total += len(got)
                self.rfile.readline()
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            got = self.rfile.read(min(left, CHUNK))
            if not got:
                break
            left -= len(got)
            total += len(got)
        return total

    def do_PUT(self):
        total = self.read_body()
        self.reply(b"received %d\n" % total)

    do_POST = do_PUT


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=1 << 30)
    args = ap.parse_args()
    Handler.size = args.size
    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

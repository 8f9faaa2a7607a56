#!/usr/bin/python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT and holds them idle, then prints the RSS
of process PID (standard library only).

Each connection sends one `GET PATH` (HTTP/1.1, keep-alive) and reads its answer, so it is a real
idle keep-alive connection; with --no-request the sockets are only connected. The output is one
line of key=value pairs:
  rss_before_kb  RSS of PID before the first connection
  rss_idle_kb    RSS with all connections open and idle (after --settle seconds)
  open           connections still open at the end; answered: requests answered 200
"""
import argparse
import resource
import selectors
import socket
import sys
import time


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="process whose RSS is measured")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--path", default="/health")
    ap.add_argument("--no-request", action="store_true", help="connect only, send nothing")
    ap.add_argument("--settle", type=float, default=1.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.count + 64
    if soft < need:
        if hard < need:
            print(f"error=open-file-limit-{hard}-below-{need}")
            return 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    before = rss_kb(args.pid)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    socks = []
    for i in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", args.port))
        s.setblocking(False)
        socks.append(s)
        if not args.no_request:
            s.send(request)  # a few dozen bytes always fit in an empty send buffer

    answered = 0
    if not args.no_request:
        # Read each answer (one small response per connection); done when the header ends.
        sel = selectors.DefaultSelector()
        pending = {}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(s)
                    del pending[s]
                    continue
                pending[s] += data
                if b"\r\n\r\n" in pending[s]:
                    if pending[s].startswith(b"HTTP/1.1 200"):
                        answered += 1
                    sel.unregister(s)
                    del pending[s]
        sel.close()

    time.sleep(args.settle)
    idle = rss_kb(args.pid)
    # Still open? A closed connection reads EOF (b"") without blocking.
    open_count = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        open_count += 1
    for s in socks:
        s.close()
    print(f"rss_before_kb={before} rss_idle_kb={idle} count={args.count} open={open_count} "
          f"answered={answered if not args.no_request else '-'}")
    return 0 if open_count == args.count else 2


if __name__ == "__main__":
    sys.exit(main())

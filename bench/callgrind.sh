#!/usr/bin/env bash
# bench/callgrind.sh: instructions the proxy process executes per proxied request, counted by
# callgrind, for STORE=redis and STORE=memory. Builds nothing.
#
# Usage: bench/callgrind.sh PROXY_BINARY [REQUESTS] [WARMUP]
#
# Starts a redis-server and a fixed upstream (a few lines of asyncio answering "200 ok") on
# free ports of 127.0.0.1, then for each store runs the proxy (THREADS=1) under callgrind twice:
# once with WARMUP + REQUESTS requests on one keep-alive connection, once with WARMUP alone.
# Startup, registration, warm-up and shutdown are the same in both runs, so the difference of
# their total Ir over REQUESTS is what one request costs. Everything started is stopped on exit.
# CALLGRIND_KEEP=DIR keeps the callgrind outputs there (for callgrind_annotate).
set -euo pipefail
command -v valgrind >/dev/null || { echo "bench/callgrind.sh needs valgrind: apt-get install valgrind" >&2; exit 1; }

BINARY="$(realpath "${1:?usage: bench/callgrind.sh PROXY_BINARY [REQUESTS] [WARMUP]}")"
REQUESTS="${2:-2000}"
WARMUP="${3:-200}"
PYTHON=/usr/bin/python3 # Debian's: the python3 on PATH may lack its modules
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rlp-callgrind.XXXXXX")"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT
    for _ in $(seq 1 200); do
        if "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

cat >"$WORK/upstream.py" <<'EOF'
import asyncio, sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF

cat >"$WORK/client.py" <<'EOF'
import http.client, sys

port, count, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
headers = {"Authorization": "Bearer " + token}
for _ in range(count):
    conn.request("GET", "/api/bench", headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit("unexpected status %d" % r.status)
conn.close()
EOF

UPSTREAM_PORT="$(free_port)"
"$PYTHON" "$WORK/upstream.py" "$UPSTREAM_PORT" &
PIDS+=($!)
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"
wait_port "$REDIS_PORT"

# run_once STORE COUNT: prints the total Ir of one proxy run that answers COUNT requests.
run_once() {
    local store="$1" count="$2" port out pid token
    port="$(free_port)"
    out="$WORK/callgrind.$store.$count.out"
    env -i PATH="$PATH" HOME="${HOME:-/root}" TARGET_API_URL="http://127.0.0.1:$UPSTREAM_PORT" \
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT" BIND_ADDRESS="127.0.0.1:$port" THREADS=1 \
        LOG_LEVEL=warn REGISTRATION_MODE=open RATE_LIMIT=1000000000 BURST=1000000000 \
        STORE="$store" \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$BINARY" \
        >"$WORK/proxy.$store.$count.log" 2>&1 &
    pid=$!
    wait_port "$port"
    token="$(curl -s --noproxy '*' -m 30 -X POST "http://127.0.0.1:$port/register" |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
    [[ -n "$token" ]] || { echo "POST /register gave no token" >&2; return 1; }
    "$PYTHON" "$WORK/client.py" "$port" "$count" "$token"
    kill -TERM "$pid"
    wait "$pid" || true
    sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out"
    if [[ -n "${CALLGRIND_KEEP:-}" ]]; then
        mkdir -p "$CALLGRIND_KEEP"
        cp "$out" "$CALLGRIND_KEEP/"
    fi
}

printf '%-8s %14s %14s %10s\n' store "Ir($((WARMUP + REQUESTS)))" "Ir($WARMUP)" "Ir/request"
for store in redis memory; do
    full="$(run_once "$store" $((WARMUP + REQUESTS)))"
    base="$(run_once "$store" "$WARMUP")"
    printf '%-8s %14s %14s %10s\n' "$store" "$full" "$base" $(((full - base) / REQUESTS))
done

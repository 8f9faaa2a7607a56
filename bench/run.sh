#!/usr/bin/env bash
# bench/run.sh: ratelimit-proxy side by side with nginx and HAProxy, as
# ../shared/design/benchmark-protocol.md describes (see bench/README.md).
#
# Installs what is missing (Debian 12), builds Release into build-bench/, starts a static nginx
# upstream, a redis-server and every system under test on free ports of 127.0.0.1, measures them
# interleaved with wrk (one round = every system once, in turn), prints one table and writes its
# markdown version to bench/results/latest.md. Everything it starts is stopped on exit.
#
# Usage: bench/run.sh [--no-memory] [--duration S] [--pairs N] [--pairs-edge N]
#                     [--memory-only] [--skip-install] [--keep-tmp] [--binary PATH]
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/common.sh
source "$BENCH_DIR/../scripts/common.sh"

BUILD_DIR="$RLP_ROOT/build-bench"
BINARY="$BUILD_DIR/ratelimit-proxy"
RESULTS_DIR="$BENCH_DIR/results"

DURATION=3          # seconds per wrk run
PAIRS=5             # rounds at -c64 (the key comparison)
PAIRS_EDGE=3        # rounds at -c1 and -c256
CONCURRENCIES=(1 64 256)
MEMORY=1
PREBUILT=0
THROUGHPUT=1
INSTALL=1
KEEP_TMP=0
WRK_CPU="${BENCH_WRK_CPU:-1}"       # wrk runs here
SERVER_CPU="${BENCH_SERVER_CPU:-0}" # upstream, redis and every proxy run here
# Redis shares the proxies' CPU by default (the conservative layout: its CPU per check counts
# against ratelimit-proxy). BENCH_REDIS_CPU=1 puts it beside wrk instead, as a separate Redis
# host would be; the output says which layout ran.
REDIS_CPU="${BENCH_REDIS_CPU:-$SERVER_CPU}"
STREAM_BYTES=$((1024 * 1024 * 1024))
IDLE_CONNECTIONS=10000

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --no-memory      skip the memory part (RSS with $IDLE_CONNECTIONS idle connections, 1 GiB streams)
  --memory-only    only the memory part (no throughput runs)
  --duration S     seconds per wrk run (default $DURATION)
  --pairs N        rounds at -c64 (default $PAIRS; the protocol wants at least 5)
  --pairs-edge N   rounds at -c1 and -c256 (default $PAIRS_EDGE)
  --skip-install   do not check or install Debian packages
  --keep-tmp       keep the temporary directory (configs, logs, raw wrk output)
  --binary PATH    measure this ratelimit-proxy binary instead of building build-bench/
  --baseline PATH  also measure this other ratelimit-proxy binary (an earlier commit) as
                   rlp-baseline, configured like rlp-redis, in the same rounds: a change's A/B
Environment: BENCH_WRK_CPU (default 1), BENCH_SERVER_CPU (default 0), BENCH_REDIS_CPU (default:
the server CPU): taskset CPUs.
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --no-memory) MEMORY=0 ;;
    --memory-only) THROUGHPUT=0 ;;
    --duration) DURATION="$2"; shift ;;
    --pairs) PAIRS="$2"; shift ;;
    --pairs-edge) PAIRS_EDGE="$2"; shift ;;
    --skip-install) INSTALL=0 ;;
    --keep-tmp) KEEP_TMP=1 ;;
    --binary) BINARY="$(realpath "$2")"; PREBUILT=1; shift ;;
    --baseline) BASELINE="$(realpath "$2")"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; rlp_die "unknown argument: $1" ;;
    esac
    shift
done
for n in "$DURATION" "$PAIRS" "$PAIRS_EDGE"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || rlp_die "--duration, --pairs and --pairs-edge take a positive integer, got '$n'"
done

START_TIME=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rlp-bench.XXXXXX")"
STARTED_PIDS=()

# ---------------------------------------------------------------------------------------------
# Clean-up: every process this script started, by pid; newest first.
# ---------------------------------------------------------------------------------------------
cleanup() {
    local rc=$? i pid deadline
    trap - EXIT INT TERM
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${STARTED_PIDS[i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 5))
    for pid in "${STARTED_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_TMP -eq 1 || $rc -ne 0 ]]; then
        rlp_info "temporary files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pinning (skipped on a one-CPU machine).
if [[ "$(nproc)" -ge 2 ]]; then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_WRK=(taskset -c "$WRK_CPU")
    PIN_REDIS=(taskset -c "$REDIS_CPU")
    if [[ "$REDIS_CPU" == "$SERVER_CPU" ]]; then
        PINNING="wrk on CPU $WRK_CPU; upstream nginx, redis-server and every proxy on CPU $SERVER_CPU"
    else
        PINNING="wrk on CPU $WRK_CPU; redis-server on CPU $REDIS_CPU; upstream nginx and every proxy on CPU $SERVER_CPU"
    fi
else
    PIN_SERVER=()
    PIN_REDIS=()
    PIN_WRK=()
    PINNING="not pinned (one CPU)"
fi

# ---------------------------------------------------------------------------------------------
# Install and build
# ---------------------------------------------------------------------------------------------
install_dependencies() {
    local services=(nginx haproxy redis-server) fresh=() s
    mapfile -t fresh < <(rlp_missing_packages "${services[@]}")
    rlp_install_packages "${RLP_BUILD_PACKAGES[@]}" "${RLP_RUNTIME_PACKAGES[@]}" \
        nginx haproxy wrk python3 util-linux procps
    # Debian starts these as system services when it installs them; this script runs its own
    # instances only. Stop and disable the ones it just installed (never a pre-existing one).
    for s in "${fresh[@]}"; do
        rlp_as_root service "$s" stop >/dev/null 2>&1 || true
        rlp_as_root update-rc.d "$s" disable >/dev/null 2>&1 || true
        if command -v systemctl >/dev/null 2>&1; then
            rlp_as_root systemctl disable --now "$s" >/dev/null 2>&1 || true
        fi
    done
}

build_proxy() {
    rlp_reset_foreign_build_dir "$BUILD_DIR"
    if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
        cmake -S "$RLP_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DRLP_BUILD_TESTS=OFF >"$WORK/cmake.log" 2>&1 ||
            { tail -n 30 "$WORK/cmake.log" >&2; rlp_die "cmake configure failed"; }
    fi
    cmake --build "$BUILD_DIR" -j"$(rlp_jobs)" --target ratelimit-proxy >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; rlp_die "build failed (log: $WORK/build.log)"; }
    [[ -x "$BINARY" ]] || rlp_die "the build finished but $BINARY is missing"
}

# ---------------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------------
# free_port: a port below the ephemeral range (so no outgoing connection can hold it, which
# scripts/common.sh's rlp_free_port allows) that no socket uses now.
PORTS_TAKEN=" "
free_port() {
    local low i port used
    low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    ((low > 20100)) || low=60999 # odd range: fall back to ports above it
    used=" $(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
    for ((i = 0; i < 500; i++)); do
        if ((low == 60999)); then port=$((61000 + RANDOM % 4000)); else port=$((20000 + RANDOM % (low - 20000))); fi
        [[ "$PORTS_TAKEN$used" == *" $port "* ]] && continue
        PORTS_TAKEN+="$port "
        printf '%s\n' "$port"
        return 0
    done
    rlp_die "no free TCP port found"
}

# cpu_ticks PID: utime+stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    stat="${stat##*) }" # the fields after "(comm) "; utime and stime are the 12th and 13th
    awk '{ print $12 + $13 }' <<<"$stat"
}

# redis_calls: "ALL SCRIPTS": calls of every command so far except the INFO that asks (commands
# run inside a Lua script count too), and of the script commands (EVALSHA, EVAL, FCALL) alone,
# which are the round trips a proxy makes for its limit checks.
redis_calls() {
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" { n += $3 }
                       /^cmdstat_(evalsha|eval|fcall|evalsha_ro|eval_ro|fcall_ro):/ { e += $3 }
                       END { print n + 0, e + 0 }'
}

vm_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

wait_port() { # wait_port PORT PID NAME
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    for f in "$WORK/$3"/*.log "$WORK/$3.log"; do [[ -f "$f" ]] && tail -n 20 "$f" >&2; done
    rlp_die "$3 did not start listening on port $1"
}

# nginx_start NAME PORT HTTP_EXTRA SERVER_BODY: one nginx (master + 1 worker, foreground) with its
# own prefix, pid file and logs under $WORK/NAME. Sets NGINX_WORKER_PID.
nginx_start() {
    local name="$1" port="$2" dir="$WORK/$1" pid i
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    $3
    server {
        listen 127.0.0.1:$port backlog=4096;
        $4
    }
}
EOF
    "${PIN_SERVER[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    wait_port "$port" "$pid" "$name"
    NGINX_WORKER_PID=""
    for ((i = 0; i < 50; i++)); do
        NGINX_WORKER_PID="$(pgrep -P "$pid" | head -n 1 || true)"
        [[ -n "$NGINX_WORKER_PID" ]] && return 0
        sleep 0.1
    done
    rlp_die "$name: no nginx worker process under master $pid"
}

# ---------------------------------------------------------------------------------------------
# Shared servers: upstream and Redis
# ---------------------------------------------------------------------------------------------
start_upstream() {
    UPSTREAM_PORT="$(free_port)"
    nginx_start upstream "$UPSTREAM_PORT" "" 'location / { return 200 "ok"; }'
}

start_redis() {
    REDIS_PORT="$(free_port)"
    mkdir -p "$WORK/redis"
    "${PIN_REDIS[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" --daemonize no &
    REDIS_PID=$!
    STARTED_PIDS+=("$REDIS_PID")
    wait_port "$REDIS_PORT" "$REDIS_PID" redis
}

# ---------------------------------------------------------------------------------------------
# Systems under test. Each start function sets SYS_PORT, SYS_CPU_PID (the process whose CPU is
# counted; empty for none), SYS_EXPECT (status every request must get) and SYS_AUTH.
# ---------------------------------------------------------------------------------------------
SYSTEMS=(direct nginx nginx-limit_req haproxy rlp-redis rlp-memory rlp-deny)
declare -A SYS_START=(
    [direct]=start_direct
    [nginx]=start_nginx_plain
    [nginx-limit_req]=start_nginx_limit
    [haproxy]=start_haproxy
    [rlp-redis]=start_rlp_redis
    [rlp-baseline]=start_rlp_baseline
    [rlp-memory]=start_rlp_memory
    [rlp-deny]=start_rlp_deny
)
if [[ -n "${BASELINE:-}" ]]; then
    [[ -x "$BASELINE" ]] || rlp_die "--baseline $BASELINE: not an executable"
    SYSTEMS=(direct nginx nginx-limit_req haproxy rlp-redis rlp-baseline rlp-memory rlp-deny)
fi
declare -A SYS_DESC=(
    [direct]="wrk straight at the upstream (the ceiling)"
    [nginx]="nginx proxy_pass, 1 worker, upstream keepalive 64"
    [nginx-limit_req]="nginx proxy_pass + limit_req keyed on \$http_authorization (allows all)"
    [haproxy]="HAProxy, nbthread 1, http-reuse always"
    [rlp-redis]="ratelimit-proxy THREADS=1, Redis token bucket per request (allows all)"
    [rlp-baseline]="the --baseline ratelimit-proxy binary, configured as rlp-redis"
    [rlp-memory]="ratelimit-proxy THREADS=1, STORE=memory (allows all)"
    [rlp-deny]="ratelimit-proxy THREADS=1, Redis store, token over its limit (all 429)"
)
declare -A SYS_PORT SYS_CPU_PID SYS_EXPECT SYS_AUTH
BENCH_PATH="/api/bench"
ANY_AUTH="Bearer rlp_benchmark_placeholder" # replaced by a real token once rlp-redis is up

start_direct() {
    SYS_PORT[direct]="$UPSTREAM_PORT"
    SYS_CPU_PID[direct]=""
}

NGINX_PROXY_LOCATION='location /api/ {
            proxy_pass http://bench_upstream/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            LIMIT
        }'
nginx_upstream_block() {
    printf 'upstream bench_upstream { server 127.0.0.1:%s; keepalive 64; keepalive_requests 100000000; }' \
        "$UPSTREAM_PORT"
}

start_nginx_plain() {
    local port
    port="$(free_port)"
    nginx_start nginx "$port" "$(nginx_upstream_block)" "${NGINX_PROXY_LOCATION/LIMIT/}"
    SYS_PORT[nginx]="$port"
    SYS_CPU_PID[nginx]="$NGINX_WORKER_PID"
}

start_nginx_limit() {
    local port
    port="$(free_port)"
    nginx_start nginx-limit_req "$port" \
        "$(nginx_upstream_block)
    limit_req_zone \$http_authorization zone=bench:10m rate=10000000r/s;" \
        "${NGINX_PROXY_LOCATION/LIMIT/limit_req zone=bench burst=1000000 nodelay;}"
    SYS_PORT[nginx-limit_req]="$port"
    SYS_CPU_PID[nginx-limit_req]="$NGINX_WORKER_PID"
}

start_haproxy() {
    local port dir="$WORK/haproxy" pid
    port="$(free_port)"
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    pidfile $dir/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    http-reuse always

frontend bench
    bind 127.0.0.1:$port
    default_backend upstream

backend upstream
    http-request replace-path /api(/.*) \1
    server up 127.0.0.1:$UPSTREAM_PORT
EOF
    haproxy -c -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; rlp_die "haproxy: bad config"; }
    "${PIN_SERVER[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    wait_port "$port" "$pid" haproxy
    SYS_PORT[haproxy]="$port"
    SYS_CPU_PID[haproxy]="$pid"
}

# rlp_start NAME TARGET_URL [VAR=VALUE...]: ratelimit-proxy with a clean environment. Sets RLP_PID
# and RLP_PORT.
rlp_start() {
    local name="$1" target="$2" dir="$WORK/$1"
    shift 2
    RLP_PORT="$(free_port)"
    mkdir -p "$dir"
    env -i PATH="$PATH" HOME="${HOME:-/root}" TARGET_API_URL="$target" \
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT" BIND_ADDRESS="127.0.0.1:$RLP_PORT" THREADS=1 \
        LOG_LEVEL=warn REGISTRATION_MODE=open "$@" \
        "${PIN_SERVER[@]}" "$BINARY" >"$dir/proxy.log" 2>&1 &
    RLP_PID=$!
    STARTED_PIDS+=("$RLP_PID")
    wait_port "$RLP_PORT" "$RLP_PID" "$name"
    rlp_wait_http "http://127.0.0.1:$RLP_PORT/ready" 10 "$RLP_PID" ||
        { tail -n 20 "$dir/proxy.log" >&2; rlp_die "$name: /ready did not answer 200"; }
}

rlp_register() { # rlp_register PORT: prints a new token
    local token
    token="$(curl -s --noproxy '*' -m 5 -X POST "http://127.0.0.1:$1/register" |
        sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
    [[ -n "$token" ]] || rlp_die "POST /register on port $1 gave no token"
    printf '%s\n' "$token"
}

ALLOW_ALL=(RATE_LIMIT=1000000000 BURST=1000000000)

start_rlp_system() { # start_rlp_system NAME VAR=VALUE...
    local name="$1"
    shift
    rlp_start "$name" "http://127.0.0.1:$UPSTREAM_PORT" "$@"
    SYS_PORT[$name]="$RLP_PORT"
    SYS_CPU_PID[$name]="$RLP_PID"
    SYS_AUTH[$name]="Bearer $(rlp_register "$RLP_PORT")"
}

start_rlp_redis() {
    start_rlp_system rlp-redis "${ALLOW_ALL[@]}" STORE=redis
    ANY_AUTH="${SYS_AUTH[rlp-redis]}"
}
start_rlp_memory() { start_rlp_system rlp-memory "${ALLOW_ALL[@]}" STORE=memory; }
# The same as rlp-redis with the --baseline binary (rlp_start runs $BINARY, seen through this local).
start_rlp_baseline() {
    local BINARY="$BASELINE"
    start_rlp_system rlp-baseline "${ALLOW_ALL[@]}" STORE=redis
}

# Deny path: a bucket of 1 that refills once in 1000 minutes. The token spends its one request
# here, so every request after it is answered 429 for the whole run (RATE_LIMIT=1 would refill one
# request a minute, which a run this long would see).
start_rlp_deny() {
    local code
    start_rlp_system rlp-deny RATE_LIMIT=0.001 BURST=1 STORE=redis
    code="$(curl -s --noproxy '*' -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: ${SYS_AUTH[rlp-deny]}" \
        "http://127.0.0.1:${SYS_PORT[rlp-deny]}$BENCH_PATH")"
    [[ "$code" == 200 ]] || rlp_die "rlp-deny: the token's one allowed request got $code"
}

# ---------------------------------------------------------------------------------------------
# Checks and measurement
# ---------------------------------------------------------------------------------------------
sys_url() { printf 'http://127.0.0.1:%s%s' "${SYS_PORT[$1]}" "$BENCH_PATH"; }
sys_auth() { printf '%s' "${SYS_AUTH[$1]:-$ANY_AUTH}"; }

# A curl per system, then a 1 s wrk run with bench/count_status.lua: every response must have the
# expected status (200 with body "ok"; 429 for rlp-deny). Fails loudly otherwise.
check_system() {
    local sys="$1" expect="${SYS_EXPECT[$1]}" out code body statuses
    out="$(curl -s --noproxy '*' -m 5 -w '\n%{http_code}' -H "Authorization: $(sys_auth "$sys")" "$(sys_url "$sys")")" ||
        rlp_die "$sys: curl $(sys_url "$sys") failed"
    code="${out##*$'\n'}"
    body="${out%$'\n'*}"
    [[ "$code" == "$expect" ]] || rlp_die "$sys: expected HTTP $expect, got $code: $body"
    [[ "$expect" != 200 || "$body" == "ok" ]] || rlp_die "$sys: expected the upstream's body 'ok', got '$body'"
    statuses="$("${PIN_WRK[@]}" wrk -t1 -c8 -d1s -s "$BENCH_DIR/count_status.lua" -H "Authorization: $(sys_auth "$sys")" \
        "$(sys_url "$sys")" | awk '$1 == "status" { printf "%s:%s ", $2, $3 }')"
    [[ "${statuses% }" =~ ^${expect}:[0-9]+$ ]] ||
        rlp_die "$sys: a 1 s wrk check run got statuses '$statuses' (expected only $expect)"
    rlp_info "$(printf '%-16s port %-5s %s -> %s  (check run: %s)' "$sys" "${SYS_PORT[$sys]}" "$BENCH_PATH" "$code" "${statuses% }")"
}

# measure SYSTEM CONCURRENCY ROUND: one wrk run; appends a line to runs.tsv.
measure() {
    local sys="$1" conc="$2" round="$3" out pid ticks0=0 ticks1=0 calls0 calls1 evals0 evals1 rticks0 rticks1
    out="$WORK/wrk/$sys.c$conc.r$round.txt"
    pid="${SYS_CPU_PID[$sys]}"
    [[ -n "$pid" ]] && ticks0="$(cpu_ticks "$pid")"
    read -r calls0 evals0 < <(redis_calls)
    rticks0="$(cpu_ticks "$REDIS_PID")"
    "${PIN_WRK[@]}" wrk -t1 -c"$conc" -d"${DURATION}s" --latency -H "Authorization: $(sys_auth "$sys")" \
        "$(sys_url "$sys")" >"$out" 2>&1 || echo "wrk exited with status $?" >>"$out"
    rticks1="$(cpu_ticks "$REDIS_PID")"
    read -r calls1 evals1 < <(redis_calls)
    [[ -n "$pid" ]] && ticks1="$(cpu_ticks "$pid")"
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        local rc=0
        wait "$pid" 2>/dev/null || rc=$? # our child (ratelimit-proxy, haproxy): its exit status
        ((rc > 128)) && rc="$rc (signal $((rc - 128)))"
        tail -n 5 "$WORK/$sys"/*.log >&2 2>/dev/null || true
        rlp_die "$sys (pid $pid) died during the -c$conc run (exit status $rc); wrk said: $(grep -E 'Socket errors|requests in' "$out" | tr -s ' ' | tr '\n' ';')"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$conc" "$round" "$out" "${SYS_EXPECT[$sys]}" \
        "$([[ -n "$pid" ]] && echo $((ticks1 - ticks0)) || echo -)" $((calls1 - calls0)) $((rticks1 - rticks0)) \
        $((evals1 - evals0)) >>"$WORK/runs.tsv"
    printf '  %-16s c%-4s round %s: %10s req/s  p99 %s\n' "$sys" "$conc" "$round" \
        "$(awk '/^Requests\/sec/ { print $2 }' "$out")" "$(awk '$1 == "99%" { print $2 }' "$out")"
}

run_benchmark() {
    local conc rounds r sys
    mkdir -p "$WORK/wrk"
    : >"$WORK/runs.tsv"
    for conc in "${CONCURRENCIES[@]}"; do
        rounds=$PAIRS_EDGE
        [[ "$conc" == 64 ]] && rounds=$PAIRS
        rlp_section "-c$conc: $rounds rounds of ${#SYSTEMS[@]} systems, ${DURATION}s each"
        for ((r = 1; r <= rounds; r++)); do
            for sys in "${SYSTEMS[@]}"; do
                measure "$sys" "$conc" "$r"
            done
        done
    done
}

# ---------------------------------------------------------------------------------------------
# Memory: RSS with idle keep-alive connections, RSS growth while 1 GiB streams each way
# ---------------------------------------------------------------------------------------------
mem_record() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/memory.tsv"; }

# stream_peak NAME CURL_ARGS...: resets the proxy's peak RSS (clear_refs 5), runs curl, records the
# RSS before, the peak during, and what curl reports (size, speed).
stream_peak() {
    local name="$1" before peak result
    shift
    before="$(vm_kb "$MEM_PID" VmRSS)"
    echo 5 >"/proc/$MEM_PID/clear_refs" 2>/dev/null || rlp_warn "cannot reset the peak RSS; VmHWM is the peak since start"
    result="$(curl -s --noproxy '*' -m 300 -H "Authorization: $MEM_AUTH" -w '%{http_code} %{size_download} %{size_upload} %{speed_download} %{speed_upload}' "$@")" ||
        rlp_die "memory: $name: curl failed ($result)"
    peak="$(vm_kb "$MEM_PID" VmHWM)"
    mem_record "$name.rss_before_kb" "$before"
    mem_record "$name.peak_kb" "$peak"
    mem_record "$name.curl" "$result"
    rlp_info "$name: RSS before $((before / 1024)) MiB, peak $((peak / 1024)) MiB, growth $(((peak - before) / 1024)) MiB (curl: code size_down size_up speed_down speed_up = $result)"
}

run_memory() {
    local sport up_pid bigfile="$WORK/big.bin" idle_out body
    rlp_section "memory: ratelimit-proxy THREADS=1 (Redis store), 1 GiB each way, then $IDLE_CONNECTIONS idle connections"
    : >"$WORK/memory.tsv"
    sport="$(free_port)"
    python3 "$BENCH_DIR/stream_upstream.py" --port "$sport" --size "$STREAM_BYTES" >"$WORK/stream_upstream.log" 2>&1 &
    up_pid=$!
    STARTED_PIDS+=("$up_pid")
    wait_port "$sport" "$up_pid" stream_upstream
    rlp_start rlp-memtest "http://127.0.0.1:$sport" "${ALLOW_ALL[@]}" STORE=redis
    MEM_PID="$RLP_PID"
    MEM_AUTH="Bearer $(rlp_register "$RLP_PORT")"
    curl -s --noproxy '*' -m 5 -o /dev/null -H "Authorization: $MEM_AUTH" "http://127.0.0.1:$RLP_PORT/api/ping" || true
    mem_record start_rss_kb "$(vm_kb "$MEM_PID" VmRSS)"

    stream_peak download -o /dev/null "http://127.0.0.1:$RLP_PORT/api/big"
    truncate -s "$STREAM_BYTES" "$bigfile" # sparse: no disk used
    body="$WORK/upload.out"
    stream_peak upload -o "$body" -T "$bigfile" "http://127.0.0.1:$RLP_PORT/api/upload"
    rm -f "$bigfile"
    grep -qx "received $STREAM_BYTES" "$body" || rlp_warn "upload: the upstream answered '$(head -c 200 "$body")'"
    mem_record upload.upstream_answer "$(head -c 100 "$body")"

    idle_out="$(python3 "$BENCH_DIR/idle_connections.py" --port "$RLP_PORT" --count "$IDLE_CONNECTIONS" \
        --pid "$MEM_PID" --path /health)" || rlp_die "idle_connections.py failed: $idle_out"
    rlp_info "idle: $idle_out"
    local kv
    for kv in $idle_out; do mem_record "idle.${kv%%=*}" "${kv#*=}"; done
    kill -TERM "$MEM_PID" "$up_pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
write_meta() {
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "uname=$(uname -srm)"
        echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) ($(nproc) CPUs)"
        echo "nginx=$(nginx -v 2>&1 | head -n 1)"
        echo "haproxy=$(haproxy -v 2>&1 | head -n 1)"
        echo "wrk=$(wrk -v 2>&1 | head -n 1 | sed 's/ *Copyright.*//')"
        echo "redis=$(redis-server --version | head -n 1)"
        echo "git=$(git -C "$RLP_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$RLP_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "binary=${BINARY#"$RLP_ROOT"/}"
        echo "pinning=$PINNING"
        echo "duration=$DURATION"
        echo "pairs=$PAIRS"
        echo "pairs_edge=$PAIRS_EDGE"
        echo "clk_tck=$(getconf CLK_TCK)"
        echo "path=$BENCH_PATH"
        local sys
        for sys in "${SYSTEMS[@]}"; do echo "desc.$sys=${SYS_DESC[$sys]}"; done
    } >"$WORK/meta.env"
}

main() {
    rlp_section "setup"
    if [[ $INSTALL -eq 1 ]]; then install_dependencies; fi
    local tool
    for tool in nginx haproxy wrk redis-server redis-cli python3 curl cmake; do
        command -v "$tool" >/dev/null 2>&1 || rlp_die "$tool not found (run without --skip-install)"
    done
    if [[ $PREBUILT -eq 1 ]]; then
        [[ -x "$BINARY" ]] || rlp_die "--binary $BINARY: not an executable"
        rlp_info "binary: $BINARY (not built here)"
    else
        rlp_info "build: ${BUILD_DIR#"$RLP_ROOT"/}/ (Release)"
        build_proxy
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    rlp_info "pinning: $PINNING; work dir $WORK"

    start_redis
    : >"$WORK/runs.tsv"
    if [[ $THROUGHPUT -eq 1 ]]; then
        start_upstream
        local sys
        for sys in "${SYSTEMS[@]}"; do
            SYS_EXPECT[$sys]=200
            "${SYS_START[$sys]}"
        done
        SYS_EXPECT[rlp-deny]=429
        rlp_section "checks (curl, then a 1 s wrk run counting statuses)"
        for sys in "${SYSTEMS[@]}"; do check_system "$sys"; done
        run_benchmark
    fi
    if [[ $MEMORY -eq 1 ]]; then run_memory; fi

    write_meta
    echo "wall=$((SECONDS - START_TIME))" >>"$WORK/meta.env"
    mkdir -p "$RESULTS_DIR"
    rlp_section "results"
    python3 "$BENCH_DIR/report.py" "$WORK" "$RESULTS_DIR/latest.md"
    rlp_info "markdown: ${RESULTS_DIR#"$RLP_ROOT"/}/latest.md; total wall time $((SECONDS - START_TIME)) s"
}

main

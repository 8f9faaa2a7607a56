#!/usr/bin/env bash
# demo.sh: watch the rate limiter at work.
#
# Registers a token, sends 8 requests to /api/get and shows which ones went through and which
# got 429, with the rate limit headers of each. With the proxy this script starts itself
# (RATE_LIMIT=5, so BURST=5) that is 5 x 200 and then 3 x 429.
#
# If a proxy already answers at PROXY_URL (default http://127.0.0.1:3000/health) it is used
# as it is. Otherwise the demo starts everything it needs on free loopback ports: a redis-server,
# an upstream (https://httpbin.org if reachable, else Debian's httpbin under gunicorn) and
# build/ratelimit-proxy (built first if missing), and stops them all when it ends.
#
# Exit code: 0 when the responses are what the limit says they should be, 1 otherwise.
# Environment: PROXY_URL, DEMO_UPSTREAM (an httpbin-like base URL to use as the upstream),
#              DEMO_KEEP_LOGS=1 (keep the temporary directory with the logs), NO_COLOR.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/common.sh"
cd "$RLP_ROOT"

REQUESTS=8
DEMO_RATE_LIMIT=5
PROXY_URL="${PROXY_URL:-http://127.0.0.1:3000/health}"
base="${PROXY_URL%/}"
base="${base%/health}"

work="$(mktemp -d "${TMPDIR:-/tmp}/rlp-demo.XXXXXX")"
started_pids=()
started_names=()

# shellcheck disable=SC2317 # called through trap
cleanup() {
    local rc=$? i pid n
    trap - EXIT INT TERM
    for ((i = ${#started_pids[@]} - 1; i >= 0; i--)); do
        pid="${started_pids[i]}"
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((n = 0; n < 50; n++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            rlp_warn "${started_names[i]} (pid $pid) did not stop after SIGTERM: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${DEMO_KEEP_LOGS:-}" ]]; then
        printf '%sLogs kept in %s%s\n' "$C_DIM" "$work" "$C_RESET"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Shows the end of a log of ours, then fails.
fail_with_log() {
    local message="$1" log="${2:-}"
    if [[ -n "$log" && -s "$log" ]]; then
        printf '%s--- last lines of %s ---%s\n' "$C_DIM" "$(basename "$log")" "$C_RESET" >&2
        tail -n 20 "$log" >&2
    fi
    rlp_die "$message"
}

# start_bg NAME LOG COMMAND...: runs COMMAND in the background, to be stopped on exit.
start_bg() {
    local name="$1" log="$2"
    shift 2
    "$@" >"$log" 2>&1 &
    started_pids+=("$!")
    started_names+=("$name")
    last_pid="$!"
}

# Value of a response header (case-insensitive name) from a curl -D dump.
header() {
    grep -i "^$1:" "$2" 2>/dev/null | tail -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^[[:space:]]*//' || true
}

command -v curl >/dev/null 2>&1 || rlp_install_packages curl ca-certificates
curl_local=(curl -s --noproxy '*')

printf '%s%sratelimit-proxy demo%s\n' "$C_BOLD" "$C_BLUE" "$C_RESET"

existing=""
health="$("${curl_local[@]}" -m 2 "$base/health" 2>/dev/null || true)"
if [[ "$health" == *'"status"'* ]]; then
    existing=1
    rlp_info "using the proxy already running at $base"
    rlp_warn "the limit shown below is that proxy's own (its RATE_LIMIT/BURST), not this demo's RATE_LIMIT=$DEMO_RATE_LIMIT;
         stop it to let the demo start its own proxy"
else
    rlp_info "no proxy answers at $base/health: starting one (RATE_LIMIT=$DEMO_RATE_LIMIT per minute)"

    if [[ ! -x "$RLP_BINARY" ]]; then
        rlp_section "Building build/ratelimit-proxy (missing)"
        rlp_install_packages "${RLP_BUILD_PACKAGES[@]}"
        rlp_build_daemon
    fi
    rlp_install_packages "${RLP_RUNTIME_PACKAGES[@]}"

    # Redis, no persistence, on a free port.
    redis_port="$(rlp_free_port)"
    start_bg redis-server "$work/redis.log" \
        redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work"
    redis_pid="$last_pid"
    ready=""
    for ((i = 0; i < 50; i++)); do
        if [[ "$(timeout 2 redis-cli -p "$redis_port" ping 2>/dev/null || true)" == "PONG" ]]; then
            ready=1
            break
        fi
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.2
    done
    [[ -n "$ready" ]] || fail_with_log "redis-server did not start on port $redis_port" "$work/redis.log"
    rlp_info "redis-server on 127.0.0.1:$redis_port"

    # Upstream: httpbin.org when reachable, else a local httpbin.
    if [[ -n "${DEMO_UPSTREAM:-}" ]]; then
        upstream="${DEMO_UPSTREAM%/}"
        rlp_info "upstream: $upstream (DEMO_UPSTREAM)"
    elif curl -s -f -m 3 -o /dev/null https://httpbin.org/get 2>/dev/null; then
        upstream="https://httpbin.org"
        rlp_info "upstream: $upstream"
    else
        rlp_info "https://httpbin.org is not reachable: starting a local httpbin (Debian python3-httpbin)"
        rlp_install_packages python3-httpbin gunicorn
        httpbin_port="$(rlp_free_port)"
        # Debian's gunicorn explicitly: python3 on PATH may be a build without Debian's modules.
        start_bg httpbin "$work/httpbin.log" \
            /usr/bin/gunicorn --chdir "$work" -b "127.0.0.1:$httpbin_port" httpbin:app
        upstream="http://127.0.0.1:$httpbin_port"
        rlp_wait_http "$upstream/get" 30 "$last_pid" ||
            fail_with_log "httpbin did not start on port $httpbin_port" "$work/httpbin.log"
        rlp_info "upstream: $upstream (local httpbin)"
    fi

    # The proxy. The user's upstream key settings are not passed on: the demo needs no key.
    proxy_port="$(rlp_free_port)"
    start_bg ratelimit-proxy "$work/proxy.log" \
        env -u TARGET_API_KEY -u TARGET_API_KEY_HEADER -u TARGET_API_KEY_FORMAT -u TARGET_CA_FILE \
        TARGET_API_URL="$upstream" RATE_LIMIT="$DEMO_RATE_LIMIT" BURST="$DEMO_RATE_LIMIT" \
        REDIS_URL="redis://127.0.0.1:$redis_port" BIND_ADDRESS="127.0.0.1:$proxy_port" \
        THREADS=2 LOG_LEVEL="${LOG_LEVEL:-warn}" "$RLP_BINARY"
    base="http://127.0.0.1:$proxy_port"
    rlp_wait_http "$base/health" 20 "$last_pid" ||
        fail_with_log "ratelimit-proxy did not answer on $base/health" "$work/proxy.log"
    rlp_info "ratelimit-proxy on $base"
fi

# --- Register a token. ---
rlp_section "POST $base/register"
register_code="$("${curl_local[@]}" -m 10 -X POST -o "$work/register.json" -w '%{http_code}' "$base/register" || true)"
token="$(grep -o '"token":"[^"]*"' "$work/register.json" 2>/dev/null | cut -d'"' -f4 || true)"
if [[ "$register_code" != "201" || -z "$token" ]]; then
    fail_with_log "POST /register answered ${register_code:-nothing} without a token: $(head -c 300 "$work/register.json" 2>/dev/null)" \
        "$work/proxy.log"
fi
printf '  %s201 Created%s  token %s%s...%s (shown once; the proxy keeps only its SHA-256)\n' \
    "$C_GREEN" "$C_RESET" "$C_BOLD" "${token:0:12}" "$C_RESET"

# --- Send the requests as fast as possible. ---
rlp_section "$REQUESTS x GET $base/api/get  (Authorization: Bearer ${token:0:12}...)"
passed=0 passed_2xx=0 limited=0 errors=0 capacity="" missing_headers=0 first_429_body=""
for ((i = 1; i <= REQUESTS; i++)); do
    h="$work/headers.$i" b="$work/body.$i"
    code="$("${curl_local[@]}" -m 30 -D "$h" -o "$b" -w '%{http_code}' \
        -H "Authorization: Bearer $token" "$base/api/get" || true)"
    code="${code:-000}"
    limit="$(header X-RateLimit-Limit "$h")"
    remaining="$(header X-RateLimit-Remaining "$h")"
    reset="$(header X-RateLimit-Reset "$h")"
    policy="$(header RateLimit-Policy "$h")"
    ratelimit="$(header RateLimit "$h")"
    retry_after="$(header Retry-After "$h")"
    [[ -z "$capacity" && -n "$limit" ]] && capacity="$limit"

    case "$code" in
    429)
        limited=$((limited + 1))
        colour="$C_RED" label="429 Too Many Requests"
        [[ -z "$first_429_body" ]] && first_429_body="$(head -c 300 "$b")"
        [[ -n "$retry_after" ]] || missing_headers=$((missing_headers + 1))
        ;;
    000 | 401)
        errors=$((errors + 1))
        colour="$C_RED" label="$code $([[ $code == 000 ]] && echo 'no response' || echo 'Unauthorized')"
        ;;
    2??)
        passed=$((passed + 1)) passed_2xx=$((passed_2xx + 1))
        colour="$C_GREEN" label="$code OK"
        ;;
    *)
        passed=$((passed + 1))
        colour="$C_YELLOW" label="$code (not limited)"
        ;;
    esac
    [[ "$code" == 000 || -n "$limit" ]] || missing_headers=$((missing_headers + 1))

    printf '  %s#%d%s  %s%-22s%s' "$C_BOLD" "$i" "$C_RESET" "$colour$C_BOLD" "$label" "$C_RESET"
    printf '%sX-RateLimit-Limit:%s %-4s %sX-RateLimit-Remaining:%s %-4s %sX-RateLimit-Reset:%s %s' \
        "$C_DIM" "$C_RESET" "${limit:--}" "$C_DIM" "$C_RESET" "${remaining:--}" "$C_DIM" "$C_RESET" "${reset:--}"
    if [[ "$code" == 429 ]]; then
        printf '  %sRetry-After:%s %s%s%s' "$C_DIM" "$C_RESET" "$C_YELLOW$C_BOLD" "${retry_after:-(missing)}" "$C_RESET"
    fi
    printf '\n'
    printf '       %sRateLimit:%s %-28s %sRateLimit-Policy:%s %s\n' \
        "$C_DIM" "$C_RESET" "${ratelimit:--}" "$C_DIM" "$C_RESET" "${policy:--}"
done

if [[ -n "$first_429_body" ]]; then
    printf '\n  429 body: %s%s%s\n' "$C_DIM" "$first_429_body" "$C_RESET"
fi

# --- Verdict. ---
rlp_section "Result"
if [[ -z "$existing" ]]; then
    expect_passed=$DEMO_RATE_LIMIT
    why="BURST=$DEMO_RATE_LIMIT: a fresh bucket holds $DEMO_RATE_LIMIT requests, refilled at $DEMO_RATE_LIMIT per minute"
elif [[ "$capacity" =~ ^[0-9]+$ ]]; then
    expect_passed=$((capacity < REQUESTS ? capacity : REQUESTS))
    why="that proxy's bucket capacity (X-RateLimit-Limit) is $capacity"
else
    expect_passed=""
    why="that proxy sent no usable X-RateLimit-Limit"
fi
printf '  %s%d passed%s, %s%d rate limited (429)%s, %d failed  (%s)\n' \
    "$C_GREEN" "$passed" "$C_RESET" "$C_RED" "$limited" "$C_RESET" "$errors" "$why"

ok=1
if [[ -z "$expect_passed" || $errors -ne 0 || $missing_headers -ne 0 ]]; then
    ok=""
elif [[ -z "$existing" ]]; then
    # Our own proxy and httpbin: exactly 5 x 200, then 3 x 429.
    [[ $passed_2xx -eq $expect_passed && $limited -eq $((REQUESTS - expect_passed)) ]] || ok=""
else
    # Someone else's proxy: at least its capacity passes (it may refill meanwhile), the rest are 429.
    [[ $passed -ge $expect_passed && $((passed + limited)) -eq $REQUESTS ]] || ok=""
fi
[[ $missing_headers -eq 0 ]] || rlp_error "$missing_headers response(s) lacked X-RateLimit-Limit (or Retry-After on a 429)"

if [[ -n "$ok" ]]; then
    printf '  %sAs expected: %d went through, then the limiter answered 429 with Retry-After.%s\n' \
        "$C_GREEN$C_BOLD" "$passed" "$C_RESET"
    exit 0
fi
if [[ -n "$expect_passed" ]]; then
    rlp_error "expected $expect_passed passed and $((REQUESTS - expect_passed)) rate limited"
fi
if [[ -z "$existing" && -s "$work/proxy.log" ]]; then
    printf '%s--- last lines of proxy.log ---%s\n' "$C_DIM" "$C_RESET" >&2
    tail -n 20 "$work/proxy.log" >&2
fi
exit 1

# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source this
# Shared helpers for scripts/run.sh, scripts/test.sh and demo.sh. Source it; don't run it.
#
# Sets RLP_ROOT (the repository root) and RLP_BUILD_DIR (RLP_ROOT/build), and provides:
#   output       rlp_section, rlp_info, rlp_warn, rlp_error, rlp_die
#   packages     rlp_install_packages PKG...   (installs only what dpkg says is missing)
#   building     rlp_build_daemon, rlp_reset_foreign_build_dir [DIR]
#   fuzzing      rlp_fuzz_run, rlp_fuzz_report
#   redis        rlp_parse_redis_url, rlp_redis_ping, rlp_ensure_redis
#   processes    rlp_free_port, rlp_wait_http
#   sdk checks   rlp_sdk_install (npm ci in tests/sdk)

if [[ -n "${RLP_COMMON_SOURCED:-}" ]]; then
    return 0
fi
RLP_COMMON_SOURCED=1

RLP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RLP_BUILD_DIR="$RLP_ROOT/build"
RLP_BINARY="$RLP_BUILD_DIR/ratelimit-proxy"

# Debian packages. Build: compiler, CMake and the libraries the daemon links.
RLP_BUILD_PACKAGES=(build-essential cmake pkg-config ccache libboost1.81-dev libboost-url1.81-dev
                    libhiredis-dev nlohmann-json3-dev libspdlog-dev libssl-dev libgtest-dev
                    libmimalloc-dev prometheus-cpp-dev)
# Running it: a local Redis (redis-tools, with redis-cli, comes with redis-server), curl for checks.
RLP_RUNTIME_PACKAGES=(redis-server curl openssl ca-certificates)
# Tests: the integration tests start httpbin with Debian's /usr/bin/gunicorn; promtool (package
# prometheus) lints the metrics and the alert rules, docker-compose checks the compose file;
# nodejs runs the OpenAI SDK checks of tests/sdk (npm: see rlp_sdk_install).
RLP_TEST_PACKAGES=(python3-httpbin gunicorn prometheus docker-compose nodejs)
# Sanitizer and fuzz stages of scripts/test.sh: clang with its sanitizer runtimes and libFuzzer
# (libclang_rt.*, in libclang-rt-14-dev), llvm-symbolizer (package llvm) for file:line in reports.
RLP_SANITIZER_PACKAGES=(clang libclang-rt-14-dev llvm)

# ccache keeps its cache in one stable place, so a rebuild after `rm -rf build` is quick.
export CCACHE_DIR="${CCACHE_DIR:-${HOME:-/root}/.cache/ccache}"

# ---------------------------------------------------------------------------------------------
# Output. Colour only when the stream is a terminal and NO_COLOR is not set.
# ---------------------------------------------------------------------------------------------
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    C_RESET=$'\e[0m' C_BOLD=$'\e[1m' C_DIM=$'\e[2m' C_RED=$'\e[31m' C_GREEN=$'\e[32m'
    C_YELLOW=$'\e[33m' C_BLUE=$'\e[34m' C_CYAN=$'\e[36m'
else
    C_RESET='' C_BOLD='' C_DIM='' C_RED='' C_GREEN='' C_YELLOW='' C_BLUE='' C_CYAN=''
fi
if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    E_RESET=$'\e[0m' E_RED=$'\e[31m' E_YELLOW=$'\e[33m'
else
    E_RESET='' E_RED='' E_YELLOW=''
fi

rlp_section() { printf '\n%s==> %s%s\n' "$C_BOLD$C_BLUE" "$*" "$C_RESET"; }
rlp_info() { printf '%s-->%s %s\n' "$C_CYAN" "$C_RESET" "$*"; }
rlp_warn() { printf '%swarning:%s %s\n' "$E_YELLOW" "$E_RESET" "$*" >&2; }
rlp_error() { printf '%serror:%s %s\n' "$E_RED" "$E_RESET" "$*" >&2; }
rlp_die() {
    rlp_error "$@"
    exit 1
}

# Runs a command as root: directly when we are root, through sudo when it exists.
rlp_as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        rlp_die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------
RLP_APT_UPDATED=""

# Prints the packages among the arguments that are not installed, one per line.
rlp_missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == "installed" ]] || printf '%s\n' "$pkg"
    done
}

# Installs the Debian packages among the arguments that are missing; quiet when none are.
# apt-get's output goes to a log file, shown only if something fails.
rlp_install_packages() {
    local missing=() log
    command -v dpkg-query >/dev/null 2>&1 ||
        rlp_die "dpkg-query not found: these scripts install dependencies on Debian 12 (bookworm) only"
    mapfile -t missing < <(rlp_missing_packages "$@")
    if [[ ${#missing[@]} -eq 0 ]]; then
        rlp_info "packages: all ${#} present"
        return 0
    fi
    rlp_info "packages: installing ${missing[*]}"
    log="$(mktemp "${TMPDIR:-/tmp}/rlp-apt.XXXXXX.log")"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$RLP_APT_UPDATED" ]]; then
        if ! rlp_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1; then
            tail -n 30 "$log" >&2
            rlp_die "apt-get update failed (full log: $log)"
        fi
        RLP_APT_UPDATED=1
    fi
    if ! rlp_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rlp_die "apt-get install failed (full log: $log)"
    fi
    rm -f "$log"
    rlp_info "packages: installed ${#missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

# A build directory made from another checkout (copied or moved tree) makes CMake refuse to run:
# start over. Argument: the build directory (default build/).
rlp_reset_foreign_build_dir() {
    local dir="${1:-$RLP_BUILD_DIR}"
    local cache="$dir/CMakeCache.txt" home
    [[ -f "$cache" ]] || return 0
    home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")"
    if [[ -n "$home" && "$home" != "$RLP_ROOT" ]]; then
        rlp_warn "${dir#"$RLP_ROOT"/}/ was configured for $home, not $RLP_ROOT: removing it"
        rm -rf "$dir"
    fi
}

rlp_jobs() { nproc 2>/dev/null || echo 2; }

# Builds build/ratelimit-proxy. A fresh build/ is configured as Release without tests; an
# existing one keeps its configuration (e.g. RelWithDebInfo from scripts/test.sh) and is built
# incrementally.
rlp_build_daemon() {
    rlp_reset_foreign_build_dir "$RLP_BUILD_DIR"
    if [[ -f "$RLP_BUILD_DIR/CMakeCache.txt" ]]; then
        local type
        type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$RLP_BUILD_DIR/CMakeCache.txt")"
        rlp_info "build: reusing build/ (${type:-default} configuration), incremental build"
    else
        rlp_info "build: configuring build/ (Release)"
        cmake -S "$RLP_ROOT" -B "$RLP_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DRLP_BUILD_TESTS=OFF
    fi
    cmake --build "$RLP_BUILD_DIR" -j"$(rlp_jobs)" --target ratelimit-proxy
    [[ -x "$RLP_BINARY" ]] || rlp_die "the build finished but $RLP_BINARY is missing"
}

# ---------------------------------------------------------------------------------------------
# Fuzzing (scripts/test.sh, scripts/fuzz.sh): libFuzzer targets of tests/fuzz in build-fuzz/
# ---------------------------------------------------------------------------------------------
RLP_FUZZ_BUILD_DIR="$RLP_ROOT/build-fuzz"
RLP_FUZZERS=(fuzz_request_path fuzz_config fuzz_redis_url fuzz_usage_reader)
RLP_FUZZ_CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Debug -DRLP_BUILD_TESTS=OFF -DRLP_FUZZ=ON
                     -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)

# rlp_fuzz_run NAME SECONDS [LIBFUZZER_ARGS...]: runs build-fuzz/tests/fuzz/NAME for SECONDS on
# a copy of tests/fuzz/corpus/NAME (new inputs go to the copy, never into the repository).
# Everything goes to build-fuzz/fuzz-run/NAME/: corpus/, artifacts/ (crash inputs), fuzz.log,
# exit-code.
rlp_fuzz_run() {
    local name="$1" seconds="$2" run="$RLP_FUZZ_BUILD_DIR/fuzz-run/$1" args=() rc=0
    shift 2
    rm -rf "$run"
    mkdir -p "$run/corpus" "$run/artifacts"
    cp -R "$RLP_ROOT/tests/fuzz/corpus/$name/." "$run/corpus/"
    [[ -f "$RLP_ROOT/tests/fuzz/$name.dict" ]] && args+=("-dict=$RLP_ROOT/tests/fuzz/$name.dict")
    (cd "$run" && env ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
        "$RLP_FUZZ_BUILD_DIR/tests/fuzz/$name" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=25 -print_final_stats=1 -artifact_prefix="$run/artifacts/" "${args[@]}" "$@" \
        "$run/corpus" >"$run/fuzz.log" 2>&1) || rc=$?
    echo "$rc" >"$run/exit-code"
    return "$rc"
}

# rlp_fuzz_report NAME: prints what rlp_fuzz_run NAME found; returns 1 if the fuzzer failed
# (crash, leak, timeout, out of memory), after printing its last output and every input it saved,
# in base64 and hex.
rlp_fuzz_report() {
    local name="$1" run="$RLP_FUZZ_BUILD_DIR/fuzz-run/$1" rc f stats
    rc="$(cat "$run/exit-code" 2>/dev/null || echo 1)"
    stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' \
        "$run/fuzz.log" 2>/dev/null | sed 's/^stat:://; s/: */=/' | tr '\n' ' ')"
    if [[ "$rc" -eq 0 ]]; then
        rlp_info "$name: no findings; $stats"
        return 0
    fi
    rlp_error "$name: FAILED (exit $rc); $stats"
    printf -- '---- last lines of %s ----\n' "${run#"$RLP_ROOT"/}/fuzz.log"
    tail -n 80 "$run/fuzz.log"
    for f in "$run"/artifacts/*; do
        [[ -f "$f" ]] || continue
        printf -- '---- input %s (%d bytes) ----\nbase64: %s\n' "${f##*/}" "$(wc -c <"$f")" \
            "$(base64 -w0 <"$f")"
        od -A x -t x1z -v "$f" | head -n 64
        printf 'reproduce: scripts/fuzz.sh %s %s\n' "$name" "${f#"$RLP_ROOT"/}"
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

# Decodes %XX escapes (URL userinfo).
rlp_url_decode() {
    local s="${1//\\/\\\\}" # keep literal backslashes literal for printf %b
    s="${s//%/\\x}"
    printf '%b' "$s"
}

# Parses redis://[[user]:password@]host[:port][/db] into RLP_REDIS_HOST, RLP_REDIS_PORT,
# RLP_REDIS_USER, RLP_REDIS_PASSWORD, RLP_REDIS_DB. Returns 1 (with a message) if malformed.
rlp_parse_redis_url() {
    local url="$1" rest auth hostport path
    RLP_REDIS_HOST="" RLP_REDIS_PORT="" RLP_REDIS_USER="" RLP_REDIS_PASSWORD="" RLP_REDIS_DB=0
    if [[ "$url" != redis://* ]]; then
        rlp_error "REDIS_URL must look like redis://[:password@]host[:port][/db], got '$url'"
        return 1
    fi
    rest="${url#redis://}"
    if [[ "$rest" == *@* ]]; then
        auth="${rest%@*}"
        rest="${rest##*@}"
        if [[ "$auth" == *:* ]]; then
            RLP_REDIS_USER="$(rlp_url_decode "${auth%%:*}")"
            RLP_REDIS_PASSWORD="$(rlp_url_decode "${auth#*:}")"
        else
            RLP_REDIS_PASSWORD="$(rlp_url_decode "$auth")"
        fi
    fi
    hostport="${rest%%/*}"
    path="${rest#"$hostport"}"
    path="${path#/}"
    path="${path%%\?*}"
    [[ -n "$path" ]] && RLP_REDIS_DB="$path"
    if [[ "$hostport" == \[* ]]; then # [IPv6]:port
        RLP_REDIS_HOST="${hostport%%]*}"
        RLP_REDIS_HOST="${RLP_REDIS_HOST#[}"
        RLP_REDIS_PORT="${hostport#*]}"
    else
        RLP_REDIS_HOST="${hostport%%:*}"
        RLP_REDIS_PORT="${hostport#"$RLP_REDIS_HOST"}"
    fi
    RLP_REDIS_PORT="${RLP_REDIS_PORT#:}"
    RLP_REDIS_HOST="${RLP_REDIS_HOST:-127.0.0.1}"
    RLP_REDIS_PORT="${RLP_REDIS_PORT:-6379}"
    if ! [[ "$RLP_REDIS_PORT" =~ ^[0-9]+$ && "$RLP_REDIS_PORT" -ge 1 && "$RLP_REDIS_PORT" -le 65535 ]]; then
        rlp_error "REDIS_URL has an invalid port '$RLP_REDIS_PORT'"
        return 1
    fi
    if ! [[ "$RLP_REDIS_DB" =~ ^[0-9]+$ ]]; then
        rlp_error "REDIS_URL has an invalid database number '$RLP_REDIS_DB'"
        return 1
    fi
}

# PINGs the parsed Redis. Returns 0 on PONG, 1 if nothing answers, 2 if something answered
# with anything else (wrong password, not Redis...); that answer is left in RLP_REDIS_REPLY.
rlp_redis_ping() {
    local args=(-h "$RLP_REDIS_HOST" -p "$RLP_REDIS_PORT" -n "$RLP_REDIS_DB")
    [[ -n "$RLP_REDIS_USER" ]] && args+=(--user "$RLP_REDIS_USER")
    local rc=0 auth=()
    # The password goes through the environment, not the command line (ps shows that).
    [[ -n "$RLP_REDIS_PASSWORD" ]] && auth=(env REDISCLI_AUTH="$RLP_REDIS_PASSWORD")
    RLP_REDIS_REPLY="$("${auth[@]}" timeout 5 redis-cli "${args[@]}" ping 2>&1)" || rc=$?
    RLP_REDIS_REPLY="$(printf '%s' "$RLP_REDIS_REPLY" | tr -d '\r' | sed '/^$/d' | head -n 3)"
    if [[ $rc -eq 0 && "$RLP_REDIS_REPLY" == "PONG" ]]; then
        return 0
    fi
    if [[ "$RLP_REDIS_REPLY" == *"Could not connect"* || "$RLP_REDIS_REPLY" == *"Connection refused"* ||
        $rc -eq 124 || -z "$RLP_REDIS_REPLY" ]]; then
        return 1
    fi
    return 2
}

rlp_is_loopback_host() {
    case "$1" in
    localhost | 127.* | ::1 | 0.0.0.0) return 0 ;;
    *) return 1 ;;
    esac
}

# Makes sure Redis answers at the given URL. If nothing answers and the host is this machine,
# starts redis-server (no persistence, daemonized) on that port and waits for it.
rlp_ensure_redis() {
    local url="$1" rc=0 i bind logfile
    rlp_parse_redis_url "$url" || exit 1
    command -v redis-cli >/dev/null 2>&1 || rlp_die "redis-cli not found (Debian package redis-tools)"
    rlp_redis_ping || rc=$?
    case $rc in
    0)
        rlp_info "redis: answering at $RLP_REDIS_HOST:$RLP_REDIS_PORT"
        return 0
        ;;
    2)
        rlp_die "something answers at $RLP_REDIS_HOST:$RLP_REDIS_PORT but PING failed: $RLP_REDIS_REPLY
       (check the password in REDIS_URL: redis://:PASSWORD@host:port/db)"
        ;;
    esac
    if ! rlp_is_loopback_host "$RLP_REDIS_HOST"; then
        rlp_die "Redis at $RLP_REDIS_HOST:$RLP_REDIS_PORT does not answer ($RLP_REDIS_REPLY).
       Start it, or point REDIS_URL at a running Redis (only a local one is started automatically)."
    fi
    if [[ -n "$RLP_REDIS_USER" && "$RLP_REDIS_USER" != "default" ]]; then
        rlp_die "Redis at $RLP_REDIS_HOST:$RLP_REDIS_PORT does not answer, and REDIS_URL names the ACL user
       '$RLP_REDIS_USER', which cannot be set up automatically: start that Redis yourself."
    fi
    command -v redis-server >/dev/null 2>&1 || rlp_die "redis-server not found (Debian package redis-server)"
    bind="127.0.0.1 -::1"
    [[ "$RLP_REDIS_HOST" == 127.* && "$RLP_REDIS_HOST" != "127.0.0.1" ]] && bind="$RLP_REDIS_HOST $bind"
    logfile="${TMPDIR:-/tmp}/ratelimit-proxy-redis-$RLP_REDIS_PORT.log"
    rlp_info "redis: nothing answers at $RLP_REDIS_HOST:$RLP_REDIS_PORT, starting redis-server on port $RLP_REDIS_PORT (log: $logfile)"
    local args=(--port "$RLP_REDIS_PORT" --daemonize yes --save "" --appendonly no
                --dir "${TMPDIR:-/tmp}" --logfile "$logfile"
                --pidfile "${TMPDIR:-/tmp}/ratelimit-proxy-redis-$RLP_REDIS_PORT.pid")
    # shellcheck disable=SC2206 # bind is a list of addresses on purpose
    args+=(--bind $bind)
    [[ -n "$RLP_REDIS_PASSWORD" ]] && args+=(--requirepass "$RLP_REDIS_PASSWORD")
    redis-server "${args[@]}" || rlp_die "redis-server failed to start (see $logfile)"
    for ((i = 0; i < 50; i++)); do
        if rlp_redis_ping; then
            local stop="redis-cli -p $RLP_REDIS_PORT shutdown nosave"
            [[ -n "$RLP_REDIS_PASSWORD" ]] && stop="REDISCLI_AUTH=<password> $stop"
            rlp_info "redis: started; it keeps running after the proxy stops (stop it with: $stop)"
            return 0
        fi
        sleep 0.2
    done
    [[ -f "$logfile" ]] && tail -n 20 "$logfile" >&2
    rlp_die "redis-server on port $RLP_REDIS_PORT did not answer within 10 s"
}

# ---------------------------------------------------------------------------------------------
# Processes and ports
# ---------------------------------------------------------------------------------------------
RLP_PORTS_TAKEN=" "

# Prints a TCP port on 127.0.0.1 that nothing listens on now (and that this script has not
# handed out before).
rlp_free_port() {
    local i port
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        [[ "$RLP_PORTS_TAKEN" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            RLP_PORTS_TAKEN+="$port "
            printf '%s\n' "$port"
            return 0
        fi
    done
    rlp_die "could not find a free TCP port on 127.0.0.1"
}

# rlp_wait_http URL SECONDS [PID]: waits until URL answers 200. Fails early if PID has exited.
rlp_wait_http() {
    local url="$1" seconds="$2" pid="${3:-}" i code
    for ((i = 0; i < seconds * 5; i++)); do
        code="$(curl -s -o /dev/null -m 2 --noproxy '*' -w '%{http_code}' "$url" 2>/dev/null || true)"
        [[ "$code" == "200" ]] && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# SDK checks (tests/sdk): the pinned OpenAI Node SDK the integration tests run against the proxy
# ---------------------------------------------------------------------------------------------

# Installs tests/sdk/node_modules with `npm ci` (from package-lock.json, the npm registry) when it
# is missing. Returns 1 (with a warning) if that fails: the tests that need it then skip.
rlp_sdk_install() {
    local dir="$RLP_ROOT/tests/sdk" log
    command -v node >/dev/null 2>&1 || rlp_install_packages nodejs
    # NodeSource's nodejs package carries npm; Debian's npm is a package of its own (installing it
    # next to NodeSource's nodejs would conflict, hence only when the command is missing).
    command -v npm >/dev/null 2>&1 || rlp_install_packages npm
    if [[ -f "$dir/node_modules/openai/package.json" ]]; then
        rlp_info "sdk: tests/sdk/node_modules present"
        return 0
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/rlp-npm.XXXXXX.log")"
    rlp_info "sdk: npm ci in tests/sdk"
    if ! (cd "$dir" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rlp_warn "npm ci in tests/sdk failed (full log: $log): the SDK tests will be skipped"
        return 1
    fi
    rm -f "$log"
    rlp_info "sdk: installed openai $(sed -n 's/^ *"version": "\([^"]*\)".*/\1/p' "$dir/node_modules/openai/package.json" | head -n 1)"
}

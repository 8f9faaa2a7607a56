#!/usr/bin/env bash
# Installs what is missing, builds build/ratelimit-proxy, makes sure Redis answers at REDIS_URL
# (starting a local redis-server if nothing does), then runs the proxy in the foreground.
#
#   export TARGET_API_URL="https://api.openai.com/v1"
#   export TARGET_API_KEY="sk-..."
#   export RATE_LIMIT="60"
#   scripts/run.sh [--config FILE] [other ratelimit-proxy arguments]
#
# Stop it with Ctrl-C (SIGINT) or SIGTERM: it drains open requests and exits 0.
set -euo pipefail

orig_pwd="$PWD"
# shellcheck source=scripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

# --- Arguments: make a relative --config path absolute (we cd to the repository root). ---
args=()
config_file=""
info_only=""   # --help / --version: no upstream or Redis needed
check_only=""  # --check-config: the binary validates; Redis not needed
while [[ $# -gt 0 ]]; do
    arg="$1"
    shift
    case "$arg" in
    --config | --config=*)
        if [[ "$arg" == --config ]]; then
            [[ $# -gt 0 ]] || rlp_die "--config needs a file name"
            value="$1"
            shift
        else
            value="${arg#--config=}"
        fi
        if [[ "$value" != /* && -e "$orig_pwd/$value" ]]; then
            value="$orig_pwd/$value"
        fi
        config_file="$value"
        args+=(--config "$value")
        ;;
    --help | -h | --version) info_only=1; args+=("$arg") ;;
    --check-config) check_only=1; args+=("$arg") ;;
    *) args+=("$arg") ;;
    esac
done
cd "$RLP_ROOT"
if [[ -n "$config_file" && -z "$info_only" && ! -r "$config_file" ]]; then
    rlp_die "config file '$config_file' not found or not readable"
fi

# Reads a string field ("a.b") from the JSON config file; prints nothing if absent or unreadable.
json_field() {
    [[ -n "$config_file" && -r "$config_file" && -x /usr/bin/python3 ]] || return 0
    /usr/bin/python3 - "$config_file" "$1" <<'EOF' 2>/dev/null || true
import json, sys
value = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    value = value.get(part) if isinstance(value, dict) else None
if isinstance(value, str):
    print(value)
EOF
}

# --- The upstream: fail before a long build if it is missing. ---
if [[ -z "$info_only" && -z "$check_only" ]]; then
    target="${TARGET_API_URL:-}"
    target_origin="TARGET_API_URL"
    if [[ -z "$target" && -n "$config_file" ]]; then
        target="$(json_field upstream.url)"
        target_origin="upstream.url in $config_file"
    fi
    if [[ -z "$target" ]]; then
        rlp_die "TARGET_API_URL is not set: it is the base URL of the API to put behind the proxy, e.g.
       export TARGET_API_URL=\"https://api.openai.com/v1\"
       export TARGET_API_KEY=\"sk-...\"        # optional: the key the proxy sends upstream
       (or pass --config FILE with upstream.url set)"
    fi
    if [[ "$target" != http://* && "$target" != https://* ]]; then
        rlp_die "$target_origin must start with http:// or https://, got '$target'"
    fi
fi

rlp_section "Dependencies"
rlp_install_packages "${RLP_BUILD_PACKAGES[@]}" "${RLP_RUNTIME_PACKAGES[@]}"

rlp_section "Build"
rlp_build_daemon

if [[ -z "$info_only" && -z "$check_only" ]]; then
    rlp_section "Redis"
    redis_url="${REDIS_URL:-}"
    [[ -z "$redis_url" ]] && redis_url="$(json_field redis.url)"
    rlp_ensure_redis "${redis_url:-redis://127.0.0.1:6379}"

    rlp_section "ratelimit-proxy"
    rlp_info "upstream: $target"
    rlp_info "listening on ${BIND_ADDRESS:-127.0.0.1:3000} (unless the config file says otherwise); Ctrl-C stops it"
fi

exec "$RLP_BINARY" "${args[@]}"

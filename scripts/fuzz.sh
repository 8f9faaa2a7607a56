#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, in build-fuzz/ with clang) and runs one of them.
#
#   scripts/fuzz.sh                          lists the targets
#   scripts/fuzz.sh NAME [SECONDS] [ARGS...]  fuzzes NAME for SECONDS (default 60) on a copy of
#                                            tests/fuzz/corpus/NAME; ARGS go to libFuzzer
#                                            (e.g. -jobs=2 -workers=2, -max_len=8192)
#   scripts/fuzz.sh NAME FILE...             runs NAME once on each FILE (reproduces a crash)
#
# Runs leave everything in build-fuzz/fuzz-run/NAME/ (the grown corpus, crash inputs, the log);
# nothing is written into the repository. To keep an input as a seed, copy it into
# tests/fuzz/corpus/NAME/ yourself.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
cd "$RLP_ROOT"

if [[ $# -eq 0 ]]; then
    printf 'usage: scripts/fuzz.sh NAME [SECONDS] [LIBFUZZER_ARGS...] | NAME FILE...\ntargets: %s\n' \
        "${RLP_FUZZERS[*]}"
    exit 0
fi
name="$1"
shift
[[ " ${RLP_FUZZERS[*]} " == *" $name "* ]] || rlp_die "unknown fuzz target '$name' (targets: ${RLP_FUZZERS[*]})"

rlp_install_packages "${RLP_BUILD_PACKAGES[@]}" "${RLP_SANITIZER_PACKAGES[@]}"
rlp_reset_foreign_build_dir "$RLP_FUZZ_BUILD_DIR"
if [[ ! -f "$RLP_FUZZ_BUILD_DIR/CMakeCache.txt" ]]; then
    cmake -S . -B "$RLP_FUZZ_BUILD_DIR" "${RLP_FUZZ_CMAKE_ARGS[@]}"
fi
cmake --build "$RLP_FUZZ_BUILD_DIR" -j"$(rlp_jobs)" --target "$name"

if [[ $# -gt 0 && -f "$1" ]]; then
    # Reproduce: libFuzzer runs each file once and reports (exit non-zero on a crash).
    exec "$RLP_FUZZ_BUILD_DIR/tests/fuzz/$name" "$@"
fi
seconds="${1:-60}"
[[ $# -gt 0 ]] && shift
[[ "$seconds" =~ ^[0-9]+$ ]] || rlp_die "SECONDS must be a number, got '$seconds'"
rlp_info "fuzzing $name for ${seconds}s (log: build-fuzz/fuzz-run/$name/fuzz.log)"
rc=0
rlp_fuzz_run "$name" "$seconds" "$@" || rc=$?
rlp_fuzz_report "$name" || true
exit "$rc"

#!/usr/bin/env bash
# Installs what is missing, then runs every test stage, each in its own build directory:
#
#   normal  build/       RelWithDebInfo (g++), the whole ctest suite
#   asan    build-asan/  AddressSanitizer + LeakSanitizer + UBSan (clang, Debug), the whole suite
#   tsan    build-tsan/  ThreadSanitizer (clang, Debug), the concurrency-heavy integration tests
#                        (ctest label tsan, given in tests/CMakeLists.txt)
#   fuzz    build-fuzz/  the libFuzzer targets in tests/fuzz, each for a bounded time
#
# A stage that fails does not stop the others. At the end: a timing summary, then one line
# "tests: N passed, N failed" over all stages (a stage that could not run, e.g. a failed build,
# counts as one failure); the exit code is non-zero if any stage failed.
#
# Extra arguments go to every ctest run, e.g.  scripts/test.sh -R Config  or  -L integration.
# Environment:
#   RLP_SKIP_NORMAL=1, RLP_SKIP_ASAN=1, RLP_SKIP_TSAN=1, RLP_SKIP_FUZZ=1   skip that stage
#   RLP_SKIP_SANITIZERS=1          skip asan and tsan
#   RLP_TSAN_TESTS=REGEX           the tests tsan runs (ctest -R), instead of those labelled tsan
#   RLP_FUZZ_SECONDS=N             run every fuzzer N seconds (default: 60 request path, 30 others)
# The integration tests start their own redis-server and httpbin: nothing needs to be running.
set -uo pipefail

# shellcheck source=scripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
cd "$RLP_ROOT" || exit 1

CTEST_ARGS=("$@")
# TSan runs the tests tests/CMakeLists.txt labels tsan (where threads meet), or RLP_TSAN_TESTS.
if [[ -n "${RLP_TSAN_TESTS:-}" ]]; then
    TSAN_SELECTION=(-R "$RLP_TSAN_TESTS")
else
    TSAN_SELECTION=(-L tsan)
fi
if [[ "${RLP_SKIP_SANITIZERS:-}" == 1 ]]; then
    RLP_SKIP_ASAN=1 RLP_SKIP_TSAN=1
fi

# Per stage: its result line for the summary, and totals over all stages.
declare -a SUMMARY=()
TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED_STAGES=()
SCRIPT_START=$SECONDS

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# stage_result NAME PASSED FAILED DETAIL
stage_result() {
    local name="$1" passed="$2" failed="$3" detail="$4"
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    [[ "$failed" -gt 0 ]] && FAILED_STAGES+=("$name")
    SUMMARY+=("$(printf '%-7s %-6s %s' "$name" "$([[ $failed -gt 0 ]] && echo FAILED || echo ok)" "$detail")")
}

# configure_and_build NAME DIR TARGETS(space-separated, "" = all) CMAKE_ARGS...
# Sets BUILD_SECONDS. Returns non-zero if configuring or building failed.
configure_and_build() {
    local name="$1" dir="$2" targets="$3" start=$SECONDS rc=0
    shift 3
    rlp_reset_foreign_build_dir "$RLP_ROOT/$dir"
    rlp_section "[$name] Configure ($dir/)"
    cmake -S . -B "$dir" "$@" || rc=$?
    if [[ $rc -eq 0 ]]; then
        rlp_section "[$name] Build (-j$(rlp_jobs), ccache in $CCACHE_DIR)"
        local target_args=()
        for t in $targets; do target_args+=(--target "$t"); done
        cmake --build "$dir" -j"$(rlp_jobs)" "${target_args[@]}" || rc=$?
    fi
    BUILD_SECONDS=$((SECONDS - start))
    [[ $rc -eq 0 ]] || rlp_error "[$name] configure/build failed (exit $rc)"
    return "$rc"
}

# run_ctest NAME DIR CTEST_ARGS...: runs ctest, tee'd to DIR/ctest.log. Sets TEST_SECONDS,
# CTEST_PASSED, CTEST_FAILED, CTEST_LINE (ctest's summary line) and returns ctest's exit code.
run_ctest() {
    local name="$1" dir="$2" start=$SECONDS rc=0 line total
    shift 2
    rlp_section "[$name] Test"
    ctest --test-dir "$dir" --output-on-failure -j2 --timeout 300 --no-tests=error "$@" "${CTEST_ARGS[@]}" 2>&1 |
        tee "$dir/ctest.log"
    rc=${PIPESTATUS[0]}
    TEST_SECONDS=$((SECONDS - start))
    line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$dir/ctest.log" | tail -n 1)"
    CTEST_LINE="${line:-no ctest summary (exit $rc)}"
    if [[ -n "$line" ]]; then
        CTEST_FAILED="$(sed -E 's/.*, ([0-9]+) tests? failed out of.*/\1/' <<<"$line")"
        total="$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")"
        CTEST_PASSED=$((total - CTEST_FAILED))
    else
        CTEST_PASSED=0 CTEST_FAILED=0
    fi
    if [[ $rc -ne 0 && $CTEST_FAILED -eq 0 ]]; then
        CTEST_FAILED=1 # ctest itself failed (no tests found, ...): count it
    fi
    return "$rc"
}

# Prints the sanitizer reports left in DIR/sanitizer-logs (every test's reports stay there; a
# report of a process that outlived its test is only found here). Returns 1 if there are any.
check_sanitizer_logs() {
    local dir="$1/sanitizer-logs" files f
    [[ -d "$dir" ]] || return 0
    mapfile -t files < <(find "$dir" -type f | sort)
    [[ ${#files[@]} -eq 0 ]] && return 0
    rlp_error "${#files[@]} sanitizer report file(s) in $dir:"
    for f in "${files[@]}"; do
        printf '\n==== %s ====\n' "${f#"$RLP_ROOT"/}"
        head -n 200 "$f"
    done
    return 1
}

# sanitizer_stage NAME DIR SANITIZE TARGETS CTEST_ARGS...
sanitizer_stage() {
    local name="$1" dir="$2" sanitize="$3" targets="$4" stage_start=$SECONDS rc=0 extra=0
    shift 4
    if ! configure_and_build "$name" "$dir" "$targets" -DCMAKE_BUILD_TYPE=Debug -DRLP_BUILD_TESTS=ON \
        -DRLP_SANITIZE="$sanitize" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++; then
        stage_result "$name" 0 1 "build failed after $(fmt_time "$BUILD_SECONDS")"
        return 1
    fi
    rm -rf "${dir:?}/sanitizer-logs"
    run_ctest "$name" "$dir" "$@" || rc=$?
    if ! check_sanitizer_logs "$dir" && [[ $rc -eq 0 ]]; then
        extra=1 # reports no failed test accounts for
        rlp_error "[$name] sanitizer reports appeared although every test passed"
    fi
    stage_result "$name" "$CTEST_PASSED" $((CTEST_FAILED + extra)) \
        "build $(fmt_time "$BUILD_SECONDS"), test $(fmt_time "$TEST_SECONDS"), total $(fmt_time $((SECONDS - stage_start))): $CTEST_LINE"
}

# TSan maps its shadow memory at fixed addresses; with a kernel's large mmap randomization
# (vm.mmap_rnd_bits > 28) binaries die at start with "FATAL: ThreadSanitizer: unexpected memory
# mapping". A tiny TSan program tells; if it fails that way, tests run under setarch -R (no
# address space randomization for them and their children), see tests/sanitizers/run-test.sh.in.
check_tsan_runs() {
    local probe out
    probe="$(mktemp -d "${TMPDIR:-/tmp}/rlp-tsan-probe.XXXXXX")"
    printf '#include <thread>\nint main() { std::thread t([] {}); t.join(); }\n' >"$probe/probe.cpp"
    if ! clang++ -fsanitize=thread -pthread "$probe/probe.cpp" -o "$probe/probe" >"$probe/log" 2>&1; then
        cat "$probe/log" >&2
        rm -rf "$probe"
        rlp_error "[tsan] clang++ -fsanitize=thread cannot build a test program"
        return 1
    fi
    if out="$("$probe/probe" 2>&1)"; then
        rlp_info "ThreadSanitizer runs here"
    elif out="$(setarch "$(uname -m)" -R "$probe/probe" 2>&1)"; then
        rlp_warn "ThreadSanitizer needs address space randomization off on this kernel" \
            "(vm.mmap_rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null)): tests run under setarch -R"
        export RLP_SANITIZER_SETARCH=1
    else
        printf '%s\n' "$out" >&2
        rm -rf "$probe"
        rlp_error "[tsan] a ThreadSanitizer program does not run here, not even under setarch -R"
        return 1
    fi
    rm -rf "$probe"
}

# ---------------------------------------------------------------------------------------------
# Fuzzing
# ---------------------------------------------------------------------------------------------

fuzz_stage() {
    local stage_start=$SECONDS passed=0 failed=0 name
    if ! configure_and_build fuzz "${RLP_FUZZ_BUILD_DIR#"$RLP_ROOT"/}" fuzzers "${RLP_FUZZ_CMAKE_ARGS[@]}"; then
        stage_result fuzz 0 1 "build failed after $(fmt_time "$BUILD_SECONDS")"
        return 1
    fi
    local t_request="${RLP_FUZZ_SECONDS:-60}" t_other="${RLP_FUZZ_SECONDS:-30}" start=$SECONDS
    rlp_section "[fuzz] Run (fuzz_request_path ${t_request}s, beside fuzz_config, fuzz_redis_url and fuzz_usage_reader ${t_other}s each)"
    # Two cores: the request path fuzzer on one, the small ones one after the other on the other.
    rlp_fuzz_run fuzz_request_path "$t_request" &
    local bg=$!
    rlp_fuzz_run fuzz_config "$t_other"
    rlp_fuzz_run fuzz_redis_url "$t_other"
    rlp_fuzz_run fuzz_usage_reader "$t_other"
    wait "$bg"
    for name in fuzz_request_path fuzz_config fuzz_redis_url fuzz_usage_reader; do
        if rlp_fuzz_report "$name"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
    stage_result fuzz "$passed" "$failed" \
        "build $(fmt_time "$BUILD_SECONDS"), fuzz $(fmt_time $((SECONDS - start))), total $(fmt_time $((SECONDS - stage_start))): $passed of 4 fuzzers without findings"
}

# ---------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------

rlp_section "Dependencies"
deps_start=$SECONDS
packages=("${RLP_BUILD_PACKAGES[@]}" "${RLP_RUNTIME_PACKAGES[@]}" "${RLP_TEST_PACKAGES[@]}")
if [[ "${RLP_SKIP_ASAN:-}" != 1 || "${RLP_SKIP_TSAN:-}" != 1 || "${RLP_SKIP_FUZZ:-}" != 1 ]]; then
    packages+=("${RLP_SANITIZER_PACKAGES[@]}")
fi
rlp_install_packages "${packages[@]}"
rlp_sdk_install || true # on failure it warned; the SDK tests skip
DEPS_SECONDS=$((SECONDS - deps_start))

if [[ "${RLP_SKIP_NORMAL:-}" != 1 ]]; then
    stage_start=$SECONDS
    if configure_and_build normal build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRLP_BUILD_TESTS=ON \
        -DRLP_SANITIZE= -DRLP_FUZZ=OFF; then
        run_ctest normal build
        stage_result normal "$CTEST_PASSED" "$CTEST_FAILED" \
            "build $(fmt_time "$BUILD_SECONDS"), test $(fmt_time "$TEST_SECONDS"), total $(fmt_time $((SECONDS - stage_start))): $CTEST_LINE"
    else
        stage_result normal 0 1 "build failed after $(fmt_time "$BUILD_SECONDS")"
    fi
else
    SUMMARY+=("$(printf '%-7s %-6s %s' normal skipped RLP_SKIP_NORMAL=1)")
fi

if [[ "${RLP_SKIP_ASAN:-}" != 1 ]]; then
    sanitizer_stage asan build-asan "address,undefined" ""
else
    SUMMARY+=("$(printf '%-7s %-6s %s' asan skipped 'RLP_SKIP_ASAN=1 or RLP_SKIP_SANITIZERS=1')")
fi

if [[ "${RLP_SKIP_TSAN:-}" != 1 ]]; then
    if check_tsan_runs; then
        # Only what the chosen tests need: the daemon and the integration tests.
        sanitizer_stage tsan build-tsan thread "ratelimit-proxy integration_tests" "${TSAN_SELECTION[@]}"
    else
        stage_result tsan 0 1 "ThreadSanitizer does not run on this machine"
    fi
else
    SUMMARY+=("$(printf '%-7s %-6s %s' tsan skipped 'RLP_SKIP_TSAN=1 or RLP_SKIP_SANITIZERS=1')")
fi

if [[ "${RLP_SKIP_FUZZ:-}" != 1 ]]; then
    fuzz_stage
else
    SUMMARY+=("$(printf '%-7s %-6s %s' fuzz skipped RLP_SKIP_FUZZ=1)")
fi

rlp_section "Summary ($(fmt_time $((SECONDS - SCRIPT_START))) in all, dependencies $(fmt_time "$DEPS_SECONDS"))"
printf '%s\n' "${SUMMARY[@]}"
if [[ ${#FAILED_STAGES[@]} -gt 0 ]]; then
    printf '%sfailed stages: %s%s\n' "$C_RED" "${FAILED_STAGES[*]}" "$C_RESET"
fi
# The last line: the plain form CI reads, over every stage that ran.
printf 'tests: %d passed, %d failed\n' "$TOTAL_PASSED" "$TOTAL_FAILED"
[[ $TOTAL_FAILED -eq 0 && ${#FAILED_STAGES[@]} -eq 0 ]]

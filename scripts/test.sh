#!/usr/bin/env bash
# Installs what is missing, builds build/ (RelWithDebInfo, tests on) and runs the test suite.
# Extra arguments go to ctest, e.g.  scripts/test.sh -R Config   or   scripts/test.sh -L integration
# The integration tests start their own redis-server and httpbin: nothing needs to be running.
set -euo pipefail

# shellcheck source=scripts/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
cd "$RLP_ROOT"

rlp_section "Dependencies"
rlp_install_packages "${RLP_BUILD_PACKAGES[@]}" "${RLP_RUNTIME_PACKAGES[@]}" "${RLP_TEST_PACKAGES[@]}"

rlp_section "Configure (build/, RelWithDebInfo, tests on)"
rlp_reset_foreign_build_dir
cmake -S . -B "$RLP_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRLP_BUILD_TESTS=ON

rlp_section "Build (-j$(rlp_jobs), ccache in $CCACHE_DIR)"
cmake --build "$RLP_BUILD_DIR" -j"$(rlp_jobs)"

rlp_section "Test"
# ctest's summary stays the last thing printed; its exit code is the script's.
exec ctest --test-dir "$RLP_BUILD_DIR" --output-on-failure -j2 --timeout 300 --no-tests=error "$@"

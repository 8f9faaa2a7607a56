#!/usr/bin/env bash
# Fails when a module includes another module's header that its rlp_module() line in
# CMakeLists.txt does not list: the dependency direction is declared once, there, and this
# keeps header-only back-edges (which the linker cannot see) out too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
status=0
modules=0
while read -r module deps; do
    modules=$((modules + 1))
    allowed=" $module $deps "
    while IFS= read -r line; do
        file="${line%%:*}"
        used="$(sed -E 's|.*#include "ratelimit_proxy/([a-z_]+)/.*|\1|' <<<"$line")"
        if [[ "$allowed" != *" $used "* ]]; then
            echo "module $module may not use $used: $file (${line#*:})"
            status=1
        fi
    done < <(grep -rnE '#include "ratelimit_proxy/[a-z_]+/' \
        "$root/src/$module" "$root/include/ratelimit_proxy/$module" 2>/dev/null |
        sed "s|^$root/||")
done < <(sed -nE 's/^rlp_module\(([a-z_]+)( [a-z_ ]+)?\)$/\1\2/p' "$root/CMakeLists.txt")
if [[ $modules -eq 0 ]]; then
    echo "no rlp_module() line found in CMakeLists.txt: nothing was checked"
    exit 1
fi
if [[ $status -eq 0 ]]; then
    echo "module direction: every include follows CMakeLists.txt's rlp_module() lines"
fi
exit $status

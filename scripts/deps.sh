#!/usr/bin/env bash
# Usage: scripts/deps.sh [-q]
#
# Prints the crate's module graph (each top-level module of src/ and the modules it names with `crate::<module>`)
# and exits 1 when the graph has a cycle, naming the modules in it. Comment lines and test code (a `tests.rs`
# file, or what follows `#[cfg(test)]` in a file) are not counted: doc links and tests are not dependencies.
# -q prints only the cycles. Run by scripts/test.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}/src"

# The top-level modules: src/NAME.rs or src/NAME/.
modules=$(find . -mindepth 1 -maxdepth 1 \( -name '*.rs' -o -type d \) ! -name lib.rs ! -name main.rs |
    sed 's|^\./||; s|\.rs$||' | sort -u)

# "from to" pairs, one per line (only names that are modules: `crate::error_chain` is a function).
edges=$(
    find . -name '*.rs' ! -name tests.rs ! -path ./lib.rs ! -path ./main.rs | sort | while read -r f; do
        from=${f#./}
        from=${from%%/*}
        from=${from%.rs}
        awk -v from="${from}" '
            /^[[:space:]]*#\[cfg\(test\)\]/ { exit }
            /^[[:space:]]*\/\// { next }
            {
                line = $0
                while (match(line, /crate::[a-z_][a-z0-9_]*/)) {
                    to = substr(line, RSTART + 7, RLENGTH - 7)
                    if (to != from) print from, to
                    line = substr(line, RSTART + RLENGTH)
                }
            }' "${f}"
    done | awk -v list="${modules//$'\n'/ }" 'BEGIN { n = split(list, m, " "); for (i = 1; i <= n; i++) ok[m[i]] = 1 }
        ok[$2]' | sort -u
)

if [[ ${1:-} != -q ]]; then
    for m in ${modules}; do
        printf '%-10s -> %s\n' "${m}" "$(awk -v m="${m}" '$1 == m { printf "%s ", $2 }' <<<"${edges}")"
    done
fi

# tsort names the modules of every loop it finds on stderr and fails.
if ! out=$(tsort <<<"${edges}" 2>&1 >/dev/null); then
    echo "deps.sh: the module graph has a cycle:" >&2
    grep -v 'input contains a loop' <<<"${out}" | sed 's/^tsort: /  /' >&2
    exit 1
fi
echo "deps.sh: no dependency cycle between modules"

#!/usr/bin/env bash
# The Python package against the command line, in one run:
#   1. backup: `bakthat.backup(CORPUS)` from Python against `bakthat backup CORPUS` (the Rust binary), same corpus,
#      same local store kind, alternating, BENCH_RUNS rounds each; wall time of the whole process (interpreter start
#      and import included) and of the call alone. The two run the same core, so the difference is the overhead of
#      the binding (and of starting Python).
#   2. show: `bakthat.show()` (printing to /dev/null) and `bakthat.ls()` over an inventory of BENCH_ROWS rows
#      (default 10,000, made by examples/bench_inventory), the median of BENCH_RUNS calls in one process, against
#      `bakthat show` (the binary, output to /dev/null). Target: show() under 100 ms.
#
# Usage: scripts/bench-python.sh
# Environment:
#   BENCH_DIR     work directory (default /tmp/bakthat-bench-python); results go to $BENCH_DIR/results.md
#   BENCH_CORPUS  directory to back up (default: a copy of /usr/share/doc, about 30 MB in ~10,000 files on Debian)
#   BENCH_RUNS    rounds (default 5)
#   BENCH_ROWS    inventory rows for the show step (default 10000)
#   BENCH_PROFILE cargo profile of both builds: release (default) or dev (quick checks only: debug numbers mean
#                 little)
#   BAKTHAT_VENV  the project venv with maturin (default /opt/bakthat-venv)
#   CARGO_TARGET_DIR where the builds go
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bakthat-bench-python}
RUNS=${BENCH_RUNS:-5}
ROWS=${BENCH_ROWS:-10000}
PROFILE=${BENCH_PROFILE:-release}
VENV=${BAKTHAT_VENV:-/opt/bakthat-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/bakthat-target}
export PYO3_PYTHON=$VENV/bin/python

die() { echo "bench-python.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

[[ -x $VENV/bin/maturin ]] || die "$VENV/bin/maturin is missing: run scripts/install-test-deps.sh"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

# --- build --------------------------------------------------------------------------------------------------------
case $PROFILE in
    release) cargo_flags=(--release) maturin_flags=(--release) dir=release ;;
    dev) cargo_flags=() maturin_flags=() dir=debug ;;
    *) die "BENCH_PROFILE must be release or dev" ;;
esac
note "building the binary and examples/bench_inventory ($PROFILE)"
(cd "$ROOT" && cargo build --quiet --locked "${cargo_flags[@]}" --bin bakthat --example bench_inventory) >&2
mkdir -p "$BENCH_DIR/bin"
cp "$CARGO_TARGET_DIR/$dir/bakthat" "$CARGO_TARGET_DIR/$dir/examples/bench_inventory" "$BENCH_DIR/bin/"
BIN=$BENCH_DIR/bin/bakthat
note "building the wheel ($PROFILE) and installing it into $BENCH_DIR/venv"
rm -rf "$BENCH_DIR/wheels" "$BENCH_DIR/venv"
"$VENV/bin/maturin" build --quiet --locked "${maturin_flags[@]}" --manifest-path "$ROOT/python/Cargo.toml" \
    --interpreter "$VENV/bin/python" --out "$BENCH_DIR/wheels" >&2
"$VENV/bin/python" -m venv --without-pip "$BENCH_DIR/venv"
"$VENV/bin/python" -m pip --disable-pip-version-check --python "$BENCH_DIR/venv/bin/python" install --quiet \
    --no-deps --no-index "$BENCH_DIR"/wheels/bakthat-*.whl
PY=$BENCH_DIR/venv/bin/python

# --- corpus -------------------------------------------------------------------------------------------------------
CORPUS=${BENCH_CORPUS:-$BENCH_DIR/corpus}
if [[ -z ${BENCH_CORPUS:-} && ! -d $CORPUS ]]; then
    note "copying /usr/share/doc to $CORPUS"
    cp -r /usr/share/doc "$CORPUS.tmp" && mv "$CORPUS.tmp" "$CORPUS"
fi
corpus_files=$(find "$CORPUS" -type f | wc -l)
corpus_mb=$(du -sm "$CORPUS" | cut -f1)
tar cf /dev/null "$CORPUS" # warm the page cache

# One home per tool: config, inventory and store.
setup_home() {
    rm -rf "$1"
    mkdir -p "$1/home"
    printf 'default:\n  local_path: %s/store\n' "$1" >"$1/home/.bakthat.yml"
}
run_in() { # run_in HOME CMD... : with that home's config and inventory
    local h=$1
    shift
    env -i PATH="$PATH" HOME="$h/home" BAKTHAT_DB="$h/inventory.sqlite" "$@"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --- 1. backup ----------------------------------------------------------------------------------------------------
note "backup: $RUNS rounds of the CLI and of bakthat.backup() on $CORPUS ($corpus_files files, $corpus_mb MB)"
cli_h=$BENCH_DIR/home-cli py_h=$BENCH_DIR/home-py
setup_home "$cli_h"
setup_home "$py_h"
: >"$BENCH_DIR/cli.times"
: >"$BENCH_DIR/py.times"
: >"$BENCH_DIR/py.call"
for i in $(seq "$RUNS"); do
    sync
    run_in "$cli_h" /usr/bin/time -f %e -o "$BENCH_DIR/t" "$BIN" -q backup --prompt no "$CORPUS" >/dev/null
    cat "$BENCH_DIR/t" >>"$BENCH_DIR/cli.times"
    sync
    run_in "$py_h" /usr/bin/time -f %e -o "$BENCH_DIR/t" "$PY" -c '
import sys, time
import bakthat
t0 = time.perf_counter()
bakthat.backup(sys.argv[1], prompt="no")
print(f"{time.perf_counter() - t0:.2f}")' "$CORPUS" >>"$BENCH_DIR/py.call"
    cat "$BENCH_DIR/t" >>"$BENCH_DIR/py.times"
    note "round $i: cli $(tail -1 "$BENCH_DIR/cli.times") s, python $(tail -1 "$BENCH_DIR/py.times") s"
done
cli_med=$(median <"$BENCH_DIR/cli.times")
py_med=$(median <"$BENCH_DIR/py.times")
call_med=$(median <"$BENCH_DIR/py.call")
start_py=$(run_in "$py_h" /usr/bin/time -f %e "$PY" -c 'import bakthat' 2>&1 >/dev/null | tail -1)

# --- 2. show over ROWS rows ---------------------------------------------------------------------------------------
note "show: $ROWS rows"
show_h=$BENCH_DIR/home-show
setup_home "$show_h"
"$BENCH_DIR/bin/bench_inventory" "$show_h/inventory.sqlite" "$ROWS" >/dev/null
show_py=$(run_in "$show_h" "$PY" -c '
import os, statistics, sys, time
import bakthat
runs = int(sys.argv[1])
out = open(os.devnull, "w")
def med(f):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); n = len(f()); ts.append(time.perf_counter() - t0)
    return n, statistics.median(ts) * 1000
n1, show = med(lambda: bakthat.show(output=out))
n2, ls = med(lambda: bakthat.ls())
assert n1 == n2
print(n1, f"{show:.1f}", f"{ls:.1f}")' "$RUNS")
read -r show_n show_ms ls_ms <<<"$show_py"
: >"$BENCH_DIR/cli-show.times"
for _ in $(seq "$RUNS"); do
    run_in "$show_h" /usr/bin/time -f %e -o "$BENCH_DIR/t" "$BIN" show >/dev/null
    cat "$BENCH_DIR/t" >>"$BENCH_DIR/cli-show.times"
done
cli_show=$(median <"$BENCH_DIR/cli-show.times")

{
    echo "# bakthat Python package vs CLI ($PROFILE builds, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "Backup of $CORPUS ($corpus_files files, $corpus_mb MB) to a local store, median of $RUNS:"
    echo
    echo "| what | wall s |"
    echo "|---|---|"
    echo "| \`bakthat backup\` (Rust binary, whole process) | $cli_med |"
    echo "| \`python -c 'bakthat.backup(...)'\` (whole process) | $py_med |"
    echo "| \`bakthat.backup(...)\` call alone | $call_med |"
    echo "| \`python -c 'import bakthat'\` | $start_py |"
    echo
    echo "Listing $show_n inventory rows, median of $RUNS:"
    echo
    echo "| what | ms |"
    echo "|---|---|"
    echo "| \`bakthat.show()\` (rows as Backups objects, printed to /dev/null) | $show_ms |"
    echo "| \`bakthat.ls()\` (rows as Backups objects) | $ls_ms |"
    echo "| \`bakthat show\` (Rust binary, whole process, to /dev/null) | $(awk -v s="$cli_show" 'BEGIN {print s * 1000}') |"
} | tee "$BENCH_DIR/results.md"

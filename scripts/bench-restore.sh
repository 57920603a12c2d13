#!/usr/bin/env bash
# Restore only, for comparing restore changes: one or two bakthat binaries (A/B) against rustic, interleaved, on
# the benchmark corpus, encrypted, each restore into a fresh ext4 on a RAM-backed loop device (bench.sh's method),
# zstd and gzip archives made once by the first binary. Prints wall, user and system seconds and peak RSS per
# restore, and checks the first round's trees with diff -r.
#
# Usage: scripts/bench-restore.sh BAKTHAT [OTHER_BAKTHAT]
# Environment:
#   BENCH_DIR     work directory (default /tmp/bakthat-bench-restore)
#   BENCH_CORPUS  the tree (default: $BENCH_DIR/corpus, a copy of /usr/share and /usr/lib/python3, as bench.sh)
#   BENCH_RUNS    rounds (default 2)
#   rustic is the one scripts/peers.sh installs; skipped with a note when absent. Run as root (loop mounts).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bakthat-bench-restore}
RUNS=${BENCH_RUNS:-2}
PW=benchpw
die() { echo "bench-restore.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: scripts/bench-restore.sh BAKTHAT [OTHER_BAKTHAT]"
[ "$(id -u)" = 0 ] || die "run as root (each restore goes to a freshly mounted ext4)"
BINS=()
for b in "$@"; do [ -x "$b" ] || die "$b is not an executable"; BINS+=("$(realpath "$b")"); done
# shellcheck source=scripts/peers.sh
source "$ROOT/scripts/peers.sh"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
peers_env
[ -n "$RUSTIC" ] || echo "bench-restore.sh: rustic is not installed (scripts/peers.sh install): skipped" >&2
mkdir -p "$BENCH_DIR"

CORPUS=${BENCH_CORPUS:-$BENCH_DIR/corpus}
[ -n "${BENCH_CORPUS:-}" ] || bench_corpus "$CORPUS" "$BENCH_DIR/corpus.done"
CORPUS=$(cd "$CORPUS" && pwd)
NAME=$(basename "$CORPUS")

OUT=$BENCH_DIR/out
IMAGE=/dev/shm/bakthat-bench-restore.img
OUT_FS=ext4
fresh_out() { bench_fresh_out "$OUT"; }
# shellcheck disable=SC2317 # the EXIT trap
cleanup() { bench_drop_out "$OUT"; }
trap cleanup EXIT

# The stores, made once by the first binary.
for mode in zstd gzip; do
    d=$BENCH_DIR/$mode
    [ -f "$d/done" ] && continue
    rm -rf "$d"
    mkdir -p "$d/store"
    printf 'default:\n  local_path: %s\n  compression: %s\n' "$d/store" "$mode" >"$d/bakthat.yml"
    BAKTHAT_DB=$d/inv.sqlite BAKTHAT_PASSWORD=$PW "${BINS[0]}" -q -c "$d/bakthat.yml" backup "$CORPUS" --prompt no
    touch "$d/done"
done
if [ -n "$RUSTIC" ]; then
    export RUSTIC_PASSWORD=$PW RUSTIC_REPOSITORY=$BENCH_DIR/rustic-repo RUSTIC_CACHE_DIR=$BENCH_DIR/rustic-cache
    if [ ! -f "$BENCH_DIR/rustic.done" ]; then
        rm -rf "$RUSTIC_REPOSITORY" "$RUSTIC_CACHE_DIR"
        "$RUSTIC" init >/dev/null 2>&1
        "$RUSTIC" backup "$CORPUS" >/dev/null 2>&1
        touch "$BENCH_DIR/rustic.done"
    fi
fi
tar cf - -C "$(dirname "$CORPUS")" "$NAME" | cat >/dev/null # warm the page cache

check() { # check LABEL DIR
    if diff -r --no-dereference "$CORPUS" "$2" >/dev/null 2>&1; then echo "  $1: tree equal"; else echo "  $1: DIFFERS"; FAILED=1; fi
}
FAILED=0
echo "| round | what | wall s | user s | sys s | peak RSS KiB |"
echo "|---|---|---:|---:|---:|---:|"
for run in $(seq 1 "$RUNS"); do
    for mode in zstd gzip; do
        for i in "${!BINS[@]}"; do
            d=$BENCH_DIR/$mode
            fresh_out
            sync
            /usr/bin/time -f "| $run | bakthat#$((i + 1)) $mode | %e | %U | %S | %M |" -o "$BENCH_DIR/t" \
                env BAKTHAT_DB="$d/inv.sqlite" BAKTHAT_PASSWORD=$PW "${BINS[$i]}" -q -c "$d/bakthat.yml" \
                restore "$NAME" --to "$OUT" >/dev/null
            tail -n1 "$BENCH_DIR/t"
            [ "$run" != 1 ] || check "bakthat#$((i + 1)) $mode" "$OUT/$NAME"
        done
    done
    if [ -n "$RUSTIC" ]; then
        fresh_out
        sync
        /usr/bin/time -f "| $run | rustic | %e | %U | %S | %M |" -o "$BENCH_DIR/t" "$RUSTIC" restore latest "$OUT" \
            >/dev/null 2>&1
        tail -n1 "$BENCH_DIR/t"
    fi
done
echo "bakthat#1 = ${BINS[0]}${BINS[1]:+, bakthat#2 = ${BINS[1]}}; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$FAILED" = 0 ] || die "a restored tree differs from the corpus"

#!/usr/bin/env bash
# Deflate backends, zstd levels and member spans against `gzip -6`, on a tar of the benchmark corpus
# (examples/deflate_compare.rs).
#
# Usage: scripts/bench-deflate.sh
# Environment:
#   BENCH_DIR        work directory (default /tmp/bakthat-bench); the table also goes to $BENCH_DIR/deflate.md
#   BENCH_CORPUS     corpus directory (default $BENCH_DIR/corpus: a copy of /usr/share and /usr/lib/python3,
#                    shared with scripts/bench.sh)
#   CARGO_TARGET_DIR where release builds go (default: the repository's target/)
#
# All timings are single-core; the corpus tar is read from a warm page cache. The machine should be quiet (the
# load average is printed before and after).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bakthat-bench}
CORPUS=${BENCH_CORPUS:-$BENCH_DIR/corpus}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TAR=$BENCH_DIR/corpus.tar
OUT=$BENCH_DIR/deflate.md

die() { echo "bench-deflate.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

mkdir -p "$BENCH_DIR"
if [ -n "${BENCH_CORPUS:-}" ]; then
    [ -d "$CORPUS" ] || die "BENCH_CORPUS=$CORPUS is not a directory"
elif [ ! -f "$BENCH_DIR/corpus.done" ]; then
    note "building the corpus in $CORPUS (cp -a /usr/share /usr/lib/python3)"
    rm -rf "$CORPUS" "$TAR"
    mkdir -p "$CORPUS"
    cp -a /usr/share "$CORPUS/share"
    cp -a /usr/lib/python3 "$CORPUS/python3"
    date -u +%FT%TZ >"$BENCH_DIR/corpus.done"
fi
if [ ! -f "$TAR" ] || [ "$TAR" -ot "$BENCH_DIR/corpus.done" ]; then
    note "writing $TAR"
    tar cf "$TAR.part" -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")"
    mv "$TAR.part" "$TAR"
fi

note "building deflate_compare (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --locked --example deflate_compare) >&2
# A private copy: a shared target directory may be rebuilt from another tree while we measure.
cp "$CARGO_TARGET_DIR/release/examples/deflate_compare" "$BENCH_DIR/deflate_compare"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$TAR" >/dev/null # warm the page cache
TAR_BYTES=$(stat -c %s "$TAR")
secs_since() { awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $1 }"; }
start=$(date +%s.%N)
gzip -6 -c "$TAR" >"$TAR.gz"
gz_secs=$(secs_since "$start")
GZIP6=$(stat -c %s "$TAR.gz")
start=$(date +%s.%N)
gzip -dc "$TAR.gz" >/dev/null
gunz_secs=$(secs_since "$start")
rm -f "$TAR.gz"

{
    echo "# deflate backends vs gzip -6 ($(date -u +%FT%TZ))"
    echo
    echo "Machine: $(nproc) cores; load average before: $LOAD_BEFORE. Corpus tar: $TAR, $TAR_BYTES bytes."
    echo "$(gzip --version | head -n1): -6 gives $GZIP6 bytes ($(awk "BEGIN { printf \"%.3f\", $GZIP6 / $TAR_BYTES }") \
of the tar), compress ${gz_secs} s = $(awk "BEGIN { printf \"%.0f\", $TAR_BYTES / 1e6 / $gz_secs }") MB/s, \
decompress ${gunz_secs} s = $(awk "BEGIN { printf \"%.0f\", $TAR_BYTES / 1e6 / $gunz_secs }") MB/s (single core)."
    echo
    echo '```'
    "$BENCH_DIR/deflate_compare" "$TAR" "$GZIP6"
    echo '```'
    echo
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT"

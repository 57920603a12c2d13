#!/usr/bin/env bash
# Incremental backups against restic, borg and rustic (issue 15), local repositories on one disk, every tool
# encrypted (bakthat with BAKTHAT_PASSWORD, restic/rustic always, borg repokey):
#   1. a second backup of an unchanged tree: wall time, and bytes the store grew by;
#   2. a BENCH_DAYS-day simulation (one backup a day at 03:00, BENCH_CHANGE percent of the files rewritten before
#      each, a different slice every day) with the default rotation (7 daily, 4 weekly, 3 monthly; bakthat keeps the
#      chains its kept backups need): store bytes at the end, and the wall time of a restore of the newest backup
#      (checked with diff -r against the tree of that day).
#
# Usage: scripts/bench-incremental.sh
# Environment:
#   BENCH_DIR     work directory (default /tmp/bakthat-bench-incr); results in $BENCH_DIR/results.md
#   BENCH_CORPUS  the tree to back up (default: a copy of /usr/share and /usr/lib/python3, as scripts/bench.sh);
#                 BENCH_SMALL=1 instead copies /usr/share/doc and /usr/lib/python3/dist-packages (a quick run)
#   BENCH_DAYS    days simulated (default 30); BENCH_CHANGE percent of files changed a day (default 1)
#   BENCH_LONG    the policy of the second bakthat row, bakthat_long (default '{full_every: 1M, max_chain: 31}': one
#                 chain a month); the first row, bakthat, has the README's example policy (7D, 14)
#   BENCH_TOOLS   the tools to run (default: bakthat bakthat_long restic borg, and rustic when installed)
#   BENCH_OUT_FS  ext4 (default as root): each restore goes to a fresh ext4 on a RAM-backed loop device, so no tool
#                 pays for the previous one's deleted files (ext4 scans recently deleted inodes when it creates
#                 files: a restore into /tmp after another tool's rm -rf measured 5-8x slower); dir: plain directories
#   BENCH_PHASES  all (default), or restore: only the restores, from the repositories and tree a previous run left in
#                 BENCH_DIR (the other columns are then empty)
#   BAKTHAT_BIN / BENCH_EXAMPLE  prebuilt bakthat and examples/bench_incremental binaries (default: a release
#                 build into CARGO_TARGET_DIR)
#   rustic is the one scripts/peers.sh installs (`scripts/peers.sh install`); when it is absent its rows are
#   skipped with a note (this script installs nothing)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bakthat-bench-incr}
DAYS=${BENCH_DAYS:-30}
CHANGE=${BENCH_CHANGE:-1}
PW=benchpw
LOG=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.md
FAILURES=()

die() { echo "bench-incremental.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
for tool in restic borg diff awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-test-deps.sh installs restic and borg)"
done
mkdir -p "$BENCH_DIR" "$LOG"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

# --- binaries ----------------------------------------------------------------------------------------------------
if [ -z "${BAKTHAT_BIN:-}" ] || [ -z "${BENCH_EXAMPLE:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    note "building bakthat and examples/bench_incremental (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --locked --bin bakthat --example bench_incremental) >&2
    BAKTHAT_BIN=$CARGO_TARGET_DIR/release/bakthat
    BENCH_EXAMPLE=$CARGO_TARGET_DIR/release/examples/bench_incremental
fi
mkdir -p "$BENCH_DIR/bin"
cp "$BAKTHAT_BIN" "$BENCH_DIR/bin/bakthat"
cp "$BENCH_EXAMPLE" "$BENCH_DIR/bin/bench_incremental"
BAKTHAT=$BENCH_DIR/bin/bakthat
DAY_STEP=$BENCH_DIR/bin/bench_incremental
# shellcheck source=scripts/peers.sh
source "$ROOT/scripts/peers.sh"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
peers_env
HAVE_RUSTIC=1
if [ -z "$RUSTIC" ]; then
    HAVE_RUSTIC=0
    echo "note: rustic is not installed: its rows are skipped (scripts/peers.sh install builds it)" >&2
fi

# --- corpus ------------------------------------------------------------------------------------------------------
CORPUS=${BENCH_CORPUS:-$BENCH_DIR/corpus}
if [ -n "${BENCH_CORPUS:-}" ]; then
    [ -d "$CORPUS" ] || die "BENCH_CORPUS=$CORPUS is not a directory"
else
    bench_corpus "$CORPUS" "$BENCH_DIR/corpus.done" "$([ "${BENCH_SMALL:-0}" = 1 ] && echo small)"
fi
CORPUS=$(cd "$CORPUS" && pwd)
FILES=$(find "$CORPUS" -type f | wc -l)
BYTES=$(du -sb "$CORPUS" | cut -f1)

# timed KEY CMD...: runs CMD (a command or one of the functions below), its wall seconds in TIME[KEY]; a failure is
# recorded and the script goes on.
declare -A TIME GROWTH STORE RESTORE CHECK
timed() {
    local key=$1 start end
    shift
    sync
    start=$(date +%s%N)
    if "$@" >"$LOG/$key.log" 2>&1; then
        end=$(date +%s%N)
        TIME[$key]=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.2f", ns / 1e9 }')
    else
        TIME[$key]=failed
        FAILURES+=("$key")
        echo "!!! $key failed; last lines of $LOG/$key.log:" >&2
        tail -n 20 "$LOG/$key.log" >&2
    fi
}
size() { du -sb "$1" | cut -f1; }

# Every tool's repository and command lines, for a tree at WORK (the simulation mutates WORK, the tools read it).
WORK=$BENCH_DIR/work/tree
EPOCH0=$(date -u -d '2026-11-01 03:00:00' +%s)
export RESTIC_PASSWORD=$PW BORG_PASSPHRASE=$PW BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
LONG=${BENCH_LONG:-'{full_every: 1M, max_chain: 31}'}
bakthat_repo() { # bakthat_repo NAME POLICY
    mkdir -p "$BENCH_DIR/repos/$1/store"
    printf 'default:\n  local_path: %s\n  incremental: %s\n  rotation: {days: 7, weeks: 4, months: 3}\n' \
        "$BENCH_DIR/repos/$1/store" "$2" >"$BENCH_DIR/repos/$1/bakthat.yml"
}
setup() {
    rm -rf "$BENCH_DIR/repos"
    bakthat_repo bakthat '{full_every: 7D, max_chain: 14}'
    bakthat_repo bakthat_long "$LONG"
    restic init -q -r "$BENCH_DIR/repos/restic" >/dev/null
    borg init -e repokey "$BENCH_DIR/repos/borg" >/dev/null 2>&1
    if [ "$HAVE_RUSTIC" = 1 ]; then "$RUSTIC" -r "$BENCH_DIR/repos/rustic" --password "$PW" init >/dev/null 2>&1; fi
}
# backup TOOL EPOCH: one backup of WORK dated EPOCH, then (ROTATE=1) the tool's rotation with the default policy.
backup() {
    local tool=$1 at=$2 when
    when=$(date -u -d "@$at" '+%Y-%m-%d %H:%M:%S')
    case $tool in
    bakthat | bakthat_long)
        BAKTHAT_CONFIG=$BENCH_DIR/repos/$tool/bakthat.yml BAKTHAT_DB=$BENCH_DIR/repos/$tool/inv.sqlite \
            BAKTHAT_PASSWORD=$PW "$DAY_STEP" "$at" "$WORK" ;;
    restic)
        restic -q -r "$BENCH_DIR/repos/restic" backup --time "$when" "$WORK"
        if [ "${ROTATE:-0}" = 1 ]; then
            restic -q -r "$BENCH_DIR/repos/restic" forget --keep-daily 7 --keep-weekly 4 --keep-monthly 3 --prune
        fi ;;
    borg)
        borg create --timestamp "${when/ /T}" "$BENCH_DIR/repos/borg::d$at" "$WORK"
        if [ "${ROTATE:-0}" = 1 ]; then
            borg prune --keep-daily 7 --keep-weekly 4 --keep-monthly 3 "$BENCH_DIR/repos/borg"
            borg compact "$BENCH_DIR/repos/borg" 2>/dev/null || true
        fi ;;
    rustic)
        "$RUSTIC" -r "$BENCH_DIR/repos/rustic" --password "$PW" backup --time "$when" "$WORK"
        if [ "${ROTATE:-0}" = 1 ]; then
            "$RUSTIC" -r "$BENCH_DIR/repos/rustic" --password "$PW" forget --keep-daily 7 --keep-weekly 4 \
                --keep-monthly 3 --prune
        fi ;;
    esac
}
# restore TOOL OUT: the newest backup of WORK into OUT.
restore() {
    local tool=$1 out=$2
    case $tool in
    bakthat | bakthat_long)
        BAKTHAT_CONFIG=$BENCH_DIR/repos/$tool/bakthat.yml BAKTHAT_DB=$BENCH_DIR/repos/$tool/inv.sqlite \
            BAKTHAT_PASSWORD=$PW "$BAKTHAT" -q restore tree --to "$out" ;;
    restic) restic -q -r "$BENCH_DIR/repos/restic" restore latest --target "$out" ;;
    borg) (cd "$out" && borg extract "$BENCH_DIR/repos/borg::$(borg list --short --last 1 "$BENCH_DIR/repos/borg")") ;;
    rustic) "$RUSTIC" -r "$BENCH_DIR/repos/rustic" --password "$PW" restore latest "$out" ;;
    esac
}
restored_root() {
    local out=$1 c
    for c in "$out$WORK" "$out/$(basename "$WORK")" "$out"; do
        if [ -d "$c" ]; then echo "$c"; return; fi
    done
}
if [ -n "${BENCH_TOOLS:-}" ]; then
    read -r -a TOOLS <<<"$BENCH_TOOLS"
else
    TOOLS=(bakthat bakthat_long restic borg)
    [ "$HAVE_RUSTIC" = 0 ] || TOOLS+=(rustic)
fi

PHASES=${BENCH_PHASES:-all}
OUT_FS=${BENCH_OUT_FS:-$([ "$(id -u)" = 0 ] && echo ext4 || echo dir)}
IMAGE=/dev/shm/bakthat-bench-incr-out.img
# shellcheck disable=SC2317 # the EXIT trap
unmount_outs() { bench_unmount_outs "$BENCH_DIR"; }
trap unmount_outs EXIT

if [ "$PHASES" = all ]; then
# --- 1. a second backup of an unchanged tree ---------------------------------------------------------------------
note "copying the corpus ($FILES files, $BYTES bytes) to $WORK"
rm -rf "$BENCH_DIR/work"
mkdir -p "$BENCH_DIR/work"
cp -a "$CORPUS" "$WORK"
setup
for tool in "${TOOLS[@]}"; do
    note "$tool: first backup"
    timed "${tool}_first" backup "$tool" "$EPOCH0"
    before=$(size "$BENCH_DIR/repos/$tool")
    note "$tool: second backup of the unchanged tree"
    timed "${tool}_second" backup "$tool" $((EPOCH0 + 3600))
    GROWTH[$tool]=$(($(size "$BENCH_DIR/repos/$tool") - before))
done

# --- 2. the simulation -------------------------------------------------------------------------------------------
setup
mapfile -t ALL < <(cd "$WORK" && find . -type f | sort)
for day in $(seq 0 $((DAYS - 1))); do
    if [ "$day" -gt 0 ]; then
        # CHANGE% of the files, a different slice each day: appended to, so size, mtime and content change.
        n=$((${#ALL[@]} * CHANGE / 100 + 1))
        for i in $(seq 0 $((n - 1))); do
            f=${ALL[$(((day * n + i) % ${#ALL[@]}))]}
            [ -w "$WORK/$f" ] && printf 'day %s\n' "$day" >>"$WORK/$f"
        done
    fi
    at=$((EPOCH0 + day * 86400))
    for tool in "${TOOLS[@]}"; do
        note "day $day: $tool"
        ROTATE=1 timed "${tool}_day" backup "$tool" "$at"
    done
done
elif [ "$PHASES" != restore ]; then
    die "BENCH_PHASES must be all or restore"
fi
for tool in "${TOOLS[@]}"; do
    [ -d "$BENCH_DIR/repos/$tool" ] || die "no repository for $tool in $BENCH_DIR/repos (run the whole script first)"
    STORE[$tool]=$(size "$BENCH_DIR/repos/$tool")
    out=$BENCH_DIR/out-$tool
    bench_fresh_out "$out"
    timed "${tool}_restore" restore "$tool" "$out"
    RESTORE[$tool]=${TIME[${tool}_restore]}
    if diff -r --no-dereference -q "$WORK" "$(restored_root "$out")" >"$LOG/$tool.diff" 2>&1; then
        CHECK[$tool]=ok
    else
        CHECK[$tool]=FAILED
        FAILURES+=("$tool restore differs")
    fi
    bench_drop_out "$out"
done

# --- results -----------------------------------------------------------------------------------------------------
{
    echo "# bench-incremental.sh, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Corpus: $CORPUS, $FILES files, $BYTES bytes. $DAYS days, $CHANGE% of files changed a day."
    echo "bakthat: incremental {full_every: 7D, max_chain: 14}; bakthat_long: incremental $LONG."
    echo "Restores into: $([ "$OUT_FS" = ext4 ] && echo "a fresh ext4 on a RAM-backed loop device each" || echo "directories on $(df --output=fstype "$BENCH_DIR" | tail -n1)")."
    echo
    echo "| tool | 1st backup s | 2nd (unchanged) backup s | bytes added by it | store after $DAYS days | restore newest s | check |"
    echo "|---|---|---|---|---|---|---|"
    for tool in "${TOOLS[@]}"; do
        echo "| $tool | ${TIME[${tool}_first]:-} | ${TIME[${tool}_second]:-} | ${GROWTH[$tool]:-} | ${STORE[$tool]} | ${RESTORE[$tool]} | ${CHECK[$tool]} |"
    done
    [ "$HAVE_RUSTIC" = 1 ] || echo "rustic: not installed (scripts/peers.sh install), skipped."
} | tee "$RESULTS"
if [ ${#FAILURES[@]} -gt 0 ]; then
    echo "failures: ${FAILURES[*]}" >&2
    exit 1
fi

#!/usr/bin/env bash
# Archive and CLI benchmark: bakthat (gzip and zstd, each plain and encrypted) against tar+gzip -6, restic and borg
# (Debian's), rustic and borg 1.4 (the current releases, from scripts/peers.sh), on one corpus, with local
# repositories on the same disk; then (BENCH_5G=1, the default) the fetch cost of small reads in a 5 GB encrypted
# archive (examples/fetch_cost.rs).
#
# Usage: scripts/bench.sh
# Environment:
#   BENCH_DIR        work directory (default /tmp/bakthat-bench); results go to $BENCH_DIR/results.md
#   BENCH_CORPUS     corpus directory (default $BENCH_DIR/corpus: a copy of /usr/share and /usr/lib/python3)
#   BENCH_RUNS       rounds of measurements (default 3); the table gives the median wall time and the largest RSS
#   BENCH_OUT        where restores go (default $BENCH_DIR, the same disk as the stores; a tmpfs such as
#                    /dev/shm/bakthat-bench takes the file system's cost of creating files out of the comparison)
#   BENCH_OUT_FS     `ext4` (default): each restore goes to a freshly made ext4 file system on a RAM-backed loop
#                    device mounted at its output directory, so every tool restores to the same fresh file system.
#                    Restoring into a directory where the previous round's 58,000 files were just deleted makes
#                    ext4's inode allocator scan for recently deleted inodes (perf: 45% of restore time in
#                    find_get_block/recently_deleted), which swamps the tools. `dir` restores into plain directories.
#   BENCH_5G         1 (default) to run the 5 GB fetch-cost step, 0 to skip it
#   BENCH_ZSTD_LEVEL a compression_level for the zstd rows (default: bakthat's default zstd level)
#   CARGO_TARGET_DIR where release builds go (default: the repository's target/)
#   BENCH_PEERS      1 (default): install rustic and borg 1.4 when missing (scripts/peers.sh install; rustic takes
#                    about 20 minutes to build, once per machine); 0: measure only the peers already installed
#
# Every tool starts with a warm page cache (dropping caches is not reliable in a VM): the corpus is read once with
# tar before the first measurement. Each command is timed BENCH_RUNS times with /usr/bin/time (wall seconds, peak RSS); a
# `sync` runs before each one, none is added after it (the tools' own fsyncs are included). Restores are checked
# with `diff -r`; a failed check or a failed command makes the script exit non-zero after printing the table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/bakthat-bench}
CORPUS=${BENCH_CORPUS:-$BENCH_DIR/corpus}
BENCH_5G=${BENCH_5G:-1}
RUNS=${BENCH_RUNS:-3}
OUTDIR=${BENCH_OUT:-$BENCH_DIR}
OUT_FS=${BENCH_OUT_FS:-ext4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PW=benchpw
LOG=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.md
FAILURES=()

die() { echo "bench.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

for tool in restic borg tar gzip diff awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-test-deps.sh installs restic and borg)"
done
if [ ! -x /usr/bin/time ]; then
    note "installing GNU time"
    apt-get install -y -q time >/dev/null || die "/usr/bin/time is missing and could not be installed (apt-get install time)"
fi

# shellcheck source=scripts/peers.sh
source "$ROOT/scripts/peers.sh"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
if [ "${BENCH_PEERS:-1}" = 1 ]; then
    bash "$ROOT/scripts/peers.sh" install >&2 || FAILURES+=("installing rustic or borg 1.4 failed (scripts/peers.sh install)")
fi
peers_env
[ -n "$RUSTIC" ] || note "rustic is not installed: its rows are skipped (scripts/peers.sh install)"
[ -n "$BORG14" ] || note "borg 1.4 is not installed: its rows are skipped (scripts/peers.sh install)"

mkdir -p "$BENCH_DIR" "$LOG" "$OUTDIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
OUTDIR=$(cd "$OUTDIR" && pwd)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- build -------------------------------------------------------------------------------------------------------
note "building bakthat (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --locked --bin bakthat --example fetch_cost) >&2
# Private copies: a shared target directory may be rebuilt from another tree while we measure.
mkdir -p "$BENCH_DIR/bin"
cp "$CARGO_TARGET_DIR/release/bakthat" "$CARGO_TARGET_DIR/release/examples/fetch_cost" "$BENCH_DIR/bin/"
BAKTHAT=$BENCH_DIR/bin/bakthat
FETCH_COST=$BENCH_DIR/bin/fetch_cost
BAKTHAT_CLI=1
if ! "$BAKTHAT" --help 2>&1 | grep -qw backup || ! "$BAKTHAT" --help 2>&1 | grep -qw restore; then
    BAKTHAT_CLI=0
    echo "!!! the bakthat CLI has no working 'backup'/'restore' commands in this build: bakthat rows are skipped" >&2
    FAILURES+=("bakthat CLI not available")
fi

# --- corpus ------------------------------------------------------------------------------------------------------
if [ -n "${BENCH_CORPUS:-}" ]; then
    [ -d "$CORPUS" ] || die "BENCH_CORPUS=$CORPUS is not a directory"
else
    bench_corpus "$CORPUS" "$BENCH_DIR/corpus.done"
fi
CORPUS=$(cd "$CORPUS" && pwd)
CORPUS_BYTES=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
CORPUS_ENTRIES=$(find "$CORPUS" | wc -l)
CORPUS_DU=$(du -sb "$CORPUS" | cut -f1)

note "warm-up: reading the corpus once (tar cf - | cat >/dev/null)"
# Through a pipe: GNU tar skips reading file data when its archive is /dev/null itself.
tar cf - -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")" | cat >/dev/null

# --- measuring ---------------------------------------------------------------------------------------------------
# Per key: WALLS (every run's wall seconds), WALL (their median), RSS (the largest peak), OK (1 when every run
# succeeded), SIZE (output bytes of the last run), VERIFY (restore check, FAILED if any run failed it).
declare -A WALLS WALL RSS OK SIZE VERIFY

# measure KEY CMD...: runs CMD under /usr/bin/time, output in $LOG/KEY.log.
measure() {
    local key=$1 w m
    shift
    sync
    note "[$RUN/$RUNS] $key: $*"
    if /usr/bin/time -f '%e %M' -o "$LOG/$key.time" "$@" >"$LOG/$key.log" 2>&1; then
        read -r w m < <(tail -n1 "$LOG/$key.time")
        WALLS[$key]="${WALLS[$key]:-} $w"
        [ "${RSS[$key]:-0}" -ge "$m" ] || RSS[$key]=$m
        [ "${OK[$key]:-1}" = 0 ] || OK[$key]=1
    else
        OK[$key]=0
        echo "!!! $key FAILED (exit status in $LOG/$key.time); last lines of $LOG/$key.log:" >&2
        tail -n 20 "$LOG/$key.log" >&2
        FAILURES+=("$key failed")
    fi
}

# restored_root OUT: where a restore put the corpus (tools differ: full absolute path, basename, or contents).
restored_root() {
    local out=$1 c
    for c in "$out$CORPUS" "$out/$(basename "$CORPUS")" "$out"; do
        if [ -d "$c" ]; then
            echo "$c"
            return
        fi
    done
    echo "$out"
}

# verify KEY OUT: compares the restored tree with the corpus.
verify() {
    local key=$1 out=$2 root
    if [ "${OK[$key]:-0}" != 1 ]; then
        VERIFY[$key]="not run"
        return
    fi
    root=$(restored_root "$out")
    if diff -r --no-dereference -q "$CORPUS" "$root" >"$LOG/$key.diff" 2>&1; then
        [ "${VERIFY[$key]:-ok}" = FAILED ] || VERIFY[$key]="ok"
    else
        VERIFY[$key]="FAILED"
        echo "!!! $key: the restored tree $root differs from the corpus ($(wc -l <"$LOG/$key.diff") lines in $LOG/$key.diff):" >&2
        head -n 20 "$LOG/$key.diff" >&2
        FAILURES+=("$key restore differs from the corpus")
    fi
    if mountpoint -q "$out"; then umount "$out"; fi
    rm -rf "$out"
}

fresh() { rm -rf "$@"; mkdir -p "$@"; }
# A restore target: a fresh ext4 on a RAM-backed loop device (BENCH_OUT_FS=ext4) or an emptied directory.
IMAGE=/dev/shm/bakthat-bench-out.img
fresh_out() { bench_fresh_out "$1"; }
# shellcheck disable=SC2317 # the EXIT trap
cleanup_out() { bench_unmount_outs "$OUTDIR"; }
if [ "$OUT_FS" = ext4 ]; then
    [ "$(id -u)" = 0 ] || die "BENCH_OUT_FS=ext4 mounts loop devices: run as root, or set BENCH_OUT_FS=dir"
    command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (e2fsprogs)"
    trap cleanup_out EXIT
fi

# Rounds go through every tool in turn, so that a burst of load from elsewhere spreads over the tools.
for RUN in $(seq 1 "$RUNS"); do
    # tar + gzip (gzip's default level is 6)
    TGZ=$BENCH_DIR/corpus.tgz
    rm -f "$TGZ"
    measure tar_create tar czf "$TGZ" -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")"
    SIZE[tar_create]=$(stat -c %s "$TGZ" 2>/dev/null || echo 0)
    fresh_out "$OUTDIR/out-tar"
    measure tar_extract tar xzf "$TGZ" -C "$OUTDIR/out-tar"
    verify tar_extract "$OUTDIR/out-tar"
    rm -f "$TGZ"

    # bakthat, gzip (plain, enc) and zstd (zstd, zstd_enc); each with its own store, config and inventory.
    for mode in plain enc zstd zstd_enc; do
        [ "$BAKTHAT_CLI" = 1 ] || break
        d=$BENCH_DIR/bakthat-$mode
        fresh "$d" "$d/store"
        printf 'default:\n  local_path: %s\n' "$d/store" >"$d/bakthat.yml"
        case $mode in zstd*)
            printf '  compression: zstd\n' >>"$d/bakthat.yml"
            [ -z "${BENCH_ZSTD_LEVEL:-}" ] || printf '  compression_level: %s\n' "$BENCH_ZSTD_LEVEL" >>"$d/bakthat.yml"
        esac
        envs=(env -u BAKTHAT_PASSWORD BAKTHAT_DB="$d/inv.sqlite" BAKTHAT_CONFIG="$d/bakthat.yml")
        case $mode in *enc) envs+=(BAKTHAT_PASSWORD="$PW") ;; esac
        measure "bakthat_${mode}_backup" "${envs[@]}" "$BAKTHAT" -c "$d/bakthat.yml" backup "$CORPUS" --prompt no
        SIZE[bakthat_${mode}_backup]=$(du -sb "$d/store" | cut -f1)
        stored=$(find "$d/store" -type f -name "$(basename "$CORPUS").*" -printf '%f (%s bytes)\n' | sort | tr '\n' ' ')
        if [ -n "$stored" ]; then
            note "bakthat $mode stored: $stored"
        elif [ "${OK[bakthat_${mode}_backup]}" = 1 ]; then
            OK[bakthat_${mode}_backup]=0
            echo "!!! bakthat_${mode}_backup exited 0 but stored nothing in $d/store" >&2
            FAILURES+=("bakthat_${mode}_backup stored nothing")
        fi
        fresh_out "$OUTDIR/out-bakthat"
        measure "bakthat_${mode}_restore" "${envs[@]}" "$BAKTHAT" -c "$d/bakthat.yml" restore "$(basename "$CORPUS")" \
            --to "$OUTDIR/out-bakthat"
        verify "bakthat_${mode}_restore" "$OUTDIR/out-bakthat"
    done

    # restic (repository v2: zstd compression, AES-256-CTR + Poly1305)
    export RESTIC_PASSWORD=$PW RESTIC_REPOSITORY=$BENCH_DIR/restic-repo RESTIC_CACHE_DIR=$BENCH_DIR/restic-cache
    rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
    restic init -q >"$LOG/restic_init.log" 2>&1 || die "restic init failed: $(cat "$LOG/restic_init.log")"
    measure restic_backup restic backup -q "$CORPUS"
    SIZE[restic_backup]=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
    fresh_out "$OUTDIR/out-restic"
    measure restic_restore restic restore latest --target "$OUTDIR/out-restic"
    verify restic_restore "$OUTDIR/out-restic"

    # borg (repokey: AES-256-CTR + HMAC-SHA256; lz4)
    export BORG_PASSPHRASE=$PW BORG_BASE_DIR=$BENCH_DIR/borg-base BORG_DISPLAY_PASSPHRASE=no
    BORG_REPO=$BENCH_DIR/borg-repo
    rm -rf "$BORG_REPO" "$BORG_BASE_DIR"
    borg init -e repokey "$BORG_REPO" >"$LOG/borg_init.log" 2>&1 || die "borg init failed: $(cat "$LOG/borg_init.log")"
    measure borg_create borg create --compression lz4 "$BORG_REPO::b1" "$CORPUS"
    SIZE[borg_create]=$(du -sb "$BORG_REPO" | cut -f1)
    fresh_out "$OUTDIR/out-borg"
    measure borg_extract bash -c 'cd "$1" && exec borg extract "$2"' _ "$OUTDIR/out-borg" "$BORG_REPO::b1"
    verify borg_extract "$OUTDIR/out-borg"

    # rustic (restic's repository format v2, zstd; the current release)
    if [ -n "$RUSTIC" ]; then
        export RUSTIC_PASSWORD=$PW RUSTIC_REPOSITORY=$BENCH_DIR/rustic-repo RUSTIC_CACHE_DIR=$BENCH_DIR/rustic-cache
        rm -rf "$RUSTIC_REPOSITORY" "$RUSTIC_CACHE_DIR"
        "$RUSTIC" init >"$LOG/rustic_init.log" 2>&1 || die "rustic init failed: $(cat "$LOG/rustic_init.log")"
        measure rustic_backup "$RUSTIC" backup "$CORPUS"
        SIZE[rustic_backup]=$(du -sb "$RUSTIC_REPOSITORY" | cut -f1)
        fresh_out "$OUTDIR/out-rustic"
        measure rustic_restore "$RUSTIC" restore latest "$OUTDIR/out-rustic"
        verify rustic_restore "$OUTDIR/out-rustic"
    fi

    # borg 1.4 from PyPI (repokey, lz4 as borg 1.2 above)
    if [ -n "$BORG14" ]; then
        export BORG_BASE_DIR=$BENCH_DIR/borg14-base
        BORG14_REPO=$BENCH_DIR/borg14-repo
        rm -rf "$BORG14_REPO" "$BORG_BASE_DIR"
        "$BORG14" init -e repokey "$BORG14_REPO" >"$LOG/borg14_init.log" 2>&1 || die "borg 1.4 init failed: $(cat "$LOG/borg14_init.log")"
        measure borg14_create "$BORG14" create --compression lz4 "$BORG14_REPO::b1" "$CORPUS"
        SIZE[borg14_create]=$(du -sb "$BORG14_REPO" | cut -f1)
        fresh_out "$OUTDIR/out-borg14"
        measure borg14_extract bash -c 'cd "$1" && exec "$2" extract "$3"' _ "$OUTDIR/out-borg14" "$BORG14" "$BORG14_REPO::b1"
        verify borg14_extract "$OUTDIR/out-borg14"
        export BORG_BASE_DIR=$BENCH_DIR/borg-base
    fi
done # rounds

for key in "${!WALLS[@]}"; do
    WALL[$key]=$(printf '%s\n' ${WALLS[$key]} | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ---------------------------------------------------------------------------------------------------
calc() { awk "BEGIN { printf \"%.${1}f\", $2 }"; }
mbs() { [ "${OK[$1]:-0}" = 1 ] && calc 0 "$CORPUS_BYTES / 1e6 / ${WALL[$1]}" || echo "n/a"; }
rss() { [ "${OK[$1]:-0}" = 1 ] && calc 0 "${RSS[$1]} / 1024" || echo "n/a"; }
wall() {
    if [ "${OK[$1]:-0}" != 1 ]; then
        echo FAILED
    elif [ "$RUNS" -gt 1 ]; then
        echo "${WALL[$1]} ($(printf '%s\n' ${WALLS[$1]} | sort -n | sed -n '1p;$p' | paste -sd-))"
    else
        echo "${WALL[$1]}"
    fi
}
size() { [ -n "${SIZE[$1]:-}" ] && [ "${OK[$1]:-0}" = 1 ] && calc 1 "${SIZE[$1]} / 1e6" || echo ""; }
ratio() { [ "${OK[$1]:-0}" = 1 ] && [ "${OK[$2]:-0}" = 1 ] && calc 2 "${WALL[$2]} / ${WALL[$1]}" || echo "n/a"; }
size_ratio() { [ "${OK[$1]:-0}" = 1 ] && [ "${OK[$2]:-0}" = 1 ] && calc 3 "${SIZE[$1]} / ${SIZE[$2]}" || echo "n/a"; }
# fastest KEY...: the key with the smallest median wall time among those that succeeded.
fastest() {
    local k best="" bw=""
    for k in "$@"; do
        [ "${OK[$k]:-0}" = 1 ] || continue
        if [ -z "$best" ] || awk "BEGIN { exit !(${WALL[$k]} < $bw) }"; then best=$k; bw=${WALL[$k]}; fi
    done
    echo "${best:-none}"
}
# target LABEL VALUE OP LIMIT
target() {
    local verdict=MISS
    if [ "$2" = n/a ]; then verdict="NOT RUN"; elif awk "BEGIN { exit !($2 $3 $4) }"; then verdict=PASS; fi
    echo "| $1 | $2 | $3 $4 | $verdict |"
}

versions() {
    local v
    v=$("$BAKTHAT" --version 2>/dev/null || true)
    echo "- bakthat: ${v:-? (no --version)} @ $(git -C "$ROOT" describe --always --dirty)"
    peers_versions
    echo "- $(tar --version | head -n1); $(gzip --version | head -n1)"
    echo "- $(rustc --version)"
}

{
    echo "# bakthat benchmark ($(date -u +%FT%TZ))"
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo "Corpus: $CORPUS: $CORPUS_FILES files ($CORPUS_ENTRIES entries), $(calc 1 "$CORPUS_BYTES / 1e6") MB in regular \
files ($CORPUS_BYTES bytes; du -sb $CORPUS_DU)."
    echo "Stores and repositories in $BENCH_DIR ($(df --output=fstype "$BENCH_DIR" | tail -n1)); restores into $OUTDIR \
($(if [ "$OUT_FS" = ext4 ]; then echo "a fresh ext4 on a RAM-backed loop device for each restore"; else df --output=fstype "$OUTDIR" | tail -n1; fi))."
    echo "Warm cache: the corpus was read once before the first run; page caches were not dropped between runs."
    echo "$RUNS round(s), tools interleaved; wall s = median (min-max); MB/s = corpus file bytes / median wall s;"
    echo "peak RSS = largest of the runs; output = du -sb of the archive/store/repo."
    echo
    versions
    echo
    echo "| tool | operation | wall s | MB/s | peak RSS MiB | output MB | restore check |"
    echo "|---|---|---:|---:|---:|---:|---|"
    row() { echo "| $1 | $2 | $(wall "$3") | $(mbs "$3") | $(rss "$3") | $(size "$3") | ${VERIFY[$3]:-} |"; }
    row "tar + gzip -6" "tar czf" tar_create
    row "tar + gzip -6" "tar xzf" tar_extract
    if [ "$BAKTHAT_CLI" = 1 ]; then
        row "bakthat" "backup (plain)" bakthat_plain_backup
        row "bakthat" "restore (plain)" bakthat_plain_restore
        row "bakthat" "backup (encrypted)" bakthat_enc_backup
        row "bakthat" "restore (encrypted)" bakthat_enc_restore
        row "bakthat zstd" "backup (plain)" bakthat_zstd_backup
        row "bakthat zstd" "restore (plain)" bakthat_zstd_restore
        row "bakthat zstd" "backup (encrypted)" bakthat_zstd_enc_backup
        row "bakthat zstd" "restore (encrypted)" bakthat_zstd_enc_restore
    else
        echo "| bakthat | backup/restore | not run: the CLI has no backup/restore in this build | | | | |"
    fi
    row "restic 0.14 (zstd auto)" "backup" restic_backup
    row "restic 0.14" "restore latest" restic_restore
    row "borg 1.2 (lz4, repokey)" "create" borg_create
    row "borg 1.2" "extract" borg_extract
    row "rustic (zstd auto)" "backup" rustic_backup
    row "rustic" "restore latest" rustic_restore
    row "borg 1.4 (lz4, repokey)" "create" borg14_create
    row "borg 1.4" "extract" borg14_extract
    echo
    echo "Ratios (speed = other tool's wall time / bakthat's; size = bakthat's output / other's):"
    echo
    echo "| comparison | plain | encrypted |"
    echo "|---|---:|---:|"
    echo "| pack vs restic backup | $(ratio bakthat_plain_backup restic_backup) | $(ratio bakthat_enc_backup restic_backup) |"
    echo "| pack vs borg create | $(ratio bakthat_plain_backup borg_create) | $(ratio bakthat_enc_backup borg_create) |"
    echo "| pack vs rustic backup | $(ratio bakthat_plain_backup rustic_backup) | $(ratio bakthat_enc_backup rustic_backup) |"
    echo "| pack vs borg 1.4 create | $(ratio bakthat_plain_backup borg14_create) | $(ratio bakthat_enc_backup borg14_create) |"
    echo "| pack vs tar czf | $(ratio bakthat_plain_backup tar_create) | $(ratio bakthat_enc_backup tar_create) |"
    echo "| unpack vs restic restore | $(ratio bakthat_plain_restore restic_restore) | $(ratio bakthat_enc_restore restic_restore) |"
    echo "| unpack vs borg extract | $(ratio bakthat_plain_restore borg_extract) | $(ratio bakthat_enc_restore borg_extract) |"
    echo "| unpack vs rustic restore | $(ratio bakthat_plain_restore rustic_restore) | $(ratio bakthat_enc_restore rustic_restore) |"
    echo "| unpack vs borg 1.4 extract | $(ratio bakthat_plain_restore borg14_extract) | $(ratio bakthat_enc_restore borg14_extract) |"
    echo "| unpack vs tar xzf | $(ratio bakthat_plain_restore tar_extract) | $(ratio bakthat_enc_restore tar_extract) |"
    echo "| size vs gzip -6 | $(size_ratio bakthat_plain_backup tar_create) | $(size_ratio bakthat_enc_backup tar_create) |"
    echo "| size vs restic | $(size_ratio bakthat_plain_backup restic_backup) | $(size_ratio bakthat_enc_backup restic_backup) |"
    echo "| size vs borg lz4 | $(size_ratio bakthat_plain_backup borg_create) | $(size_ratio bakthat_enc_backup borg_create) |"
    echo
    echo "zstd archives (\`compression: zstd\`${BENCH_ZSTD_LEVEL:+, level $BENCH_ZSTD_LEVEL}), same comparisons:"
    echo
    echo "| comparison | plain | encrypted |"
    echo "|---|---:|---:|"
    echo "| pack vs restic backup | $(ratio bakthat_zstd_backup restic_backup) | $(ratio bakthat_zstd_enc_backup restic_backup) |"
    echo "| pack vs borg create | $(ratio bakthat_zstd_backup borg_create) | $(ratio bakthat_zstd_enc_backup borg_create) |"
    echo "| pack vs rustic backup | $(ratio bakthat_zstd_backup rustic_backup) | $(ratio bakthat_zstd_enc_backup rustic_backup) |"
    echo "| pack vs borg 1.4 create | $(ratio bakthat_zstd_backup borg14_create) | $(ratio bakthat_zstd_enc_backup borg14_create) |"
    echo "| pack vs bakthat gzip | $(ratio bakthat_zstd_backup bakthat_plain_backup) | $(ratio bakthat_zstd_enc_backup bakthat_enc_backup) |"
    echo "| unpack vs restic restore | $(ratio bakthat_zstd_restore restic_restore) | $(ratio bakthat_zstd_enc_restore restic_restore) |"
    echo "| unpack vs borg extract | $(ratio bakthat_zstd_restore borg_extract) | $(ratio bakthat_zstd_enc_restore borg_extract) |"
    echo "| unpack vs rustic restore | $(ratio bakthat_zstd_restore rustic_restore) | $(ratio bakthat_zstd_enc_restore rustic_restore) |"
    echo "| unpack vs borg 1.4 extract | $(ratio bakthat_zstd_restore borg14_extract) | $(ratio bakthat_zstd_enc_restore borg14_extract) |"
    echo "| unpack vs bakthat gzip | $(ratio bakthat_zstd_restore bakthat_plain_restore) | $(ratio bakthat_zstd_enc_restore bakthat_enc_restore) |"
    echo "| size vs gzip -6 | $(size_ratio bakthat_zstd_backup tar_create) | $(size_ratio bakthat_zstd_enc_backup tar_create) |"
    echo "| size vs restic | $(size_ratio bakthat_zstd_backup restic_backup) | $(size_ratio bakthat_zstd_enc_backup restic_backup) |"
    echo
    echo "Targets (on the encrypted runs, as restic and borg encrypt too):"
    echo
    echo "| target | measured | wanted | verdict |"
    echo "|---|---:|---:|---|"
    target "pack vs restic backup" "$(ratio bakthat_enc_backup restic_backup)" ">=" 3
    target "pack vs borg create" "$(ratio bakthat_enc_backup borg_create)" ">=" 1.5
    target "unpack vs restic restore" "$(ratio bakthat_enc_restore restic_restore)" ">=" 3
    fb=$(fastest restic_backup borg_create rustic_backup borg14_create)
    fr=$(fastest restic_restore borg_extract rustic_restore borg14_extract)
    target "pack vs the fastest peer ($fb)" "$(ratio bakthat_enc_backup "$fb")" ">=" 3
    target "unpack vs the fastest peer ($fr)" "$(ratio bakthat_enc_restore "$fr")" ">=" 2.5
    target "zstd pack vs the fastest peer ($fb)" "$(ratio bakthat_zstd_enc_backup "$fb")" ">=" 3
    target "zstd unpack vs the fastest peer ($fr)" "$(ratio bakthat_zstd_enc_restore "$fr")" ">=" 2.5
    target "zstd size vs gzip -6" "$(size_ratio bakthat_zstd_enc_backup tar_create)" "<=" 1
    peak=n/a
    if [ "$BAKTHAT_CLI" = 1 ]; then
        peak=0
        for k in bakthat_plain_backup bakthat_plain_restore bakthat_enc_backup bakthat_enc_restore \
            bakthat_zstd_backup bakthat_zstd_restore bakthat_zstd_enc_backup bakthat_zstd_enc_restore; do
            [ "${OK[$k]:-0}" = 1 ] && peak=$(calc 0 "(${RSS[$k]} / 1024 > $peak) ? ${RSS[$k]} / 1024 : $peak")
        done
    fi
    target "bakthat peak RSS MiB (all eight runs)" "$peak" "<=" 256
} | tee "$RESULTS"

# --- 5 GB fetch cost ---------------------------------------------------------------------------------------------
if [ "$BENCH_5G" = 1 ]; then
    have_src=0
    [ -f "$BENCH_DIR/src5g.done" ] && have_src=$(du -sb "$BENCH_DIR/src5g" 2>/dev/null | cut -f1 || echo 0)
    need=$((11 * 1000 * 1000 * 1000 - have_src))
    free=$(($(df -B1 --output=avail "$BENCH_DIR" | tail -n1)))
    {
        echo
        echo "## Fetch cost: random 4 KiB reads in a 5 GB encrypted archive (examples/fetch_cost.rs)"
        echo
    } | tee -a "$RESULTS"
    if [ "$free" -lt "$need" ]; then
        echo "SKIPPED: needs $((need / 1000000000)) GB free in $BENCH_DIR, only $((free / 1000000000)) GB free \
(set BENCH_5G=0 to silence)" | tee -a "$RESULTS"
    else
        note "fetch cost: 5 GB tree in $BENCH_DIR/src5g (reused when present)"
        sync
        if /usr/bin/time -f '%e s wall, %M KiB peak RSS' -o "$LOG/fetch_cost.time" "$FETCH_COST" "$BENCH_DIR" \
            >"$LOG/fetch_cost.log" 2>&1; then
            { echo '```'; cat "$LOG/fetch_cost.log"; echo "whole run: $(tail -n1 "$LOG/fetch_cost.time")"; echo '```'; } |
                tee -a "$RESULTS"
            grep -q 'fetch target .*PASS' "$LOG/fetch_cost.log" || FAILURES+=("fetch cost target missed")
        else
            cat "$LOG/fetch_cost.log" >&2
            echo "fetch_cost FAILED; see $LOG/fetch_cost.log" | tee -a "$RESULTS"
            FAILURES+=("fetch_cost failed")
        fi
        rm -f "$BENCH_DIR/fetch5g.tgz.enc"
    fi
fi

echo >&2
echo "results written to $RESULTS" >&2
if [ ${#FAILURES[@]} -gt 0 ]; then
    printf '!!! %s\n' "${FAILURES[@]}" | tee -a "$RESULTS" >&2
    exit 1
fi

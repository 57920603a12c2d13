#!/usr/bin/env bash
# Usage: scripts/bench-mount.sh [WORKDIR]
#
# Measures `bakthat mount` against `restic mount` and `borg mount` on the same data, in one run, and prints the
# numbers and the ratios:
#   - cold and warm read throughput of a large file (page cache dropped and bakthat's block cache emptied for cold);
#   - time to first byte of a small file (cold);
#   - the same cold and warm reads of an encrypted bakthat backup (restic and borg always encrypt);
#   - `ls -lR` over 10,000 backups (bakthat only: rows and small indexes made through the library), and the store
#     requests it made (the mount's own meter, its root's `user.bakthat.store_requests` attribute);
#   - at scale, 1,000,000 backups (4 files each): the time until the mount is up, `ls /by-name`, `ls -lR` of one
#     name (10,000 backups), and the mount's peak RSS;
#   - bytes the mount read from its store for a 4 KiB read in the middle of a multi-GB backup (the root's
#     `user.bakthat.store_bytes_read` attribute);
#   - the peak RSS (VmHWM) of each mount process.
# Run as root (drop_caches). Needs restic, borg (python3-llfuse), fusermount3 (scripts/install-test-deps.sh).
# The current peers from scripts/peers.sh are measured too when installed: `rustic mount` (if that rustic build has
# the command) and borg 1.4's `borg mount` (pyfuse3), each on its own repository of the same data.
# Environment: BENCH_BIG_MB (large file, default 512), BENCH_HUGE_MB (the multi-GB backup, default 3072),
#              BENCH_PROFILE (release, or debug for a quick smoke run),
#              BENCH_BACKUPS (default 10000), BENCH_ROUNDS (reads per tool, median kept; default 3),
#              BENCH_SCALE (backups of the scale run, default 1000000; 0 skips it; the generated inventory is kept
#              in WORKDIR and reused), BENCH_ONLY=listing (only the listing and scale runs: no restic or borg),
#              CARGO_TARGET_DIR (release build location).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/bakthat-bench.XXXXXX)}
BIG_MB=${BENCH_BIG_MB:-512}
HUGE_MB=${BENCH_HUGE_MB:-3072}
PROFILE=${BENCH_PROFILE:-release}
BACKUPS=${BENCH_BACKUPS:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_SCALE:-1000000}
ONLY=${BENCH_ONLY:-all}
TARGET=${CARGO_TARGET_DIR:-${ROOT}/target}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-mount: error: %s\n' "$*" >&2; exit 1; }
[[ ${EUID} -eq 0 ]] || die "run as root (the cold runs drop the page cache)"
tools=(fusermount3 getfattr)
[[ ${ONLY} == listing ]] || tools+=(restic borg)
for t in "${tools[@]}"; do command -v "$t" >/dev/null || die "$t is missing: run scripts/install-test-deps.sh"; done

# shellcheck source=scripts/peers.sh
source "${ROOT}/scripts/peers.sh"
peers_env
PEERS=()
if [[ ${ONLY} != listing ]]; then
    if [[ -n ${RUSTIC} ]] && "${RUSTIC}" mount --help > /dev/null 2>&1; then PEERS+=(rc); else log "rustic (with mount) is not installed: skipped"; fi
    if [[ -n ${BORG14} ]]; then PEERS+=(b4); else log "borg 1.4 is not installed: skipped"; fi
fi

log "building bakthat (${PROFILE})"
flags=(--quiet --bin bakthat --example bench_inventory)
[[ ${PROFILE} == release ]] && flags+=(--release)
(cd "${ROOT}" && cargo build "${flags[@]}")
B=${TARGET}/${PROFILE}/bakthat
GEN=${TARGET}/${PROFILE}/examples/bench_inventory

mkdir -p "${WORK}"
cd "${WORK}"
MOUNTS=()
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for m in "${MOUNTS[@]}"; do fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

export BAKTHAT_CONFIG=${WORK}/bakthat.yml BAKTHAT_DB=${WORK}/inventory.sqlite XDG_CACHE_HOME=${WORK}/xdg-cache
printf 'default:\n  local_path: %s/store\n' "${WORK}" > "${BAKTHAT_CONFIG}"
export RESTIC_REPOSITORY=${WORK}/restic RESTIC_PASSWORD=bench BORG_REPO=${WORK}/borg BORG_PASSPHRASE=bench
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }
mbps() { echo "scale=1; $1 / 1048576 / $2" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
wait_path() {
    local i
    for i in $(seq 1 600); do [[ -e "$1" ]] && return 0; sleep 0.1; done
    die "$1 did not appear"
}

if [[ ${ONLY} != listing ]]; then
log "making the data: ${BIG_MB} MiB large file (half random, half text) and a small file"
mkdir -p data
head -c $((BIG_MB * 1048576 / 2)) /dev/urandom > data/big.bin
{ yes "the quick brown fox jumps over the lazy dog $(date)" || true; } | head -c $((BIG_MB * 1048576 / 2)) >> data/big.bin
echo "small file" > data/small.txt
cp -r data edata

log "backing up with bakthat, restic and borg"
t=$(now); "$B" backup data --prompt no -q > /dev/null; T_BK=$(elapsed "$t")
export BAKTHAT_PASSWORD=bench
t=$(now); "$B" backup edata -q > /dev/null; T_BKE=$(elapsed "$t")
rm -rf edata
restic init -q > /dev/null; t=$(now); restic backup -q data > /dev/null; T_RS=$(elapsed "$t")
borg init -e repokey > /dev/null 2>&1; t=$(now); borg create --compression lz4 ::bench data; T_BG=$(elapsed "$t")
export RUSTIC_REPOSITORY=${WORK}/rustic RUSTIC_PASSWORD=bench RUSTIC_CACHE_DIR=${WORK}/rustic-cache
BORG14_REPO=${WORK}/borg14
for p in "${PEERS[@]}"; do
    case $p in
        rc) "${RUSTIC}" init > /dev/null 2>&1; t=$(now); "${RUSTIC}" backup data > /dev/null 2>&1; T_RC=$(elapsed "$t") ;;
        b4) BORG_BASE_DIR=${WORK}/borg14-base "${BORG14}" init -e repokey "${BORG14_REPO}" > /dev/null 2>&1
            t=$(now); BORG_BASE_DIR=${WORK}/borg14-base "${BORG14}" create --compression lz4 "${BORG14_REPO}::bench" data
            T_B4=$(elapsed "$t") ;;
    esac
done

mkdir -p m-bk m-rs m-bg
"$B" mount m-bk --cache-dir "${WORK}/cache" > bk.log 2>&1 & PIDS+=($!); BK_PID=$!; MOUNTS+=("${WORK}/m-bk")
restic mount m-rs > rs.log 2>&1 & PIDS+=($!); RS_PID=$!; MOUNTS+=("${WORK}/m-rs")
borg mount -f :: m-bg > bg.log 2>&1 & PIDS+=($!); BG_PID=$!; MOUNTS+=("${WORK}/m-bg")
wait_path m-bk/by-name/data/latest/data/big.bin
wait_path m-bk/by-name/edata/latest/edata/big.bin
wait_path m-rs/snapshots/latest
wait_path m-bg/bench
for p in "${PEERS[@]}"; do
    mkdir -p "m-$p"; MOUNTS+=("${WORK}/m-$p")
    case $p in
        rc) "${RUSTIC}" mount m-rc > rc.log 2>&1 & PIDS+=($!); RC_PID=$! ;;
        b4) BORG_BASE_DIR=${WORK}/borg14-base "${BORG14}" mount -f "${BORG14_REPO}::bench" m-b4 > b4.log 2>&1 & PIDS+=($!); B4_PID=$! ;;
    esac
    for _ in $(seq 1 600); do [[ -n $(find "m-$p" -name big.bin 2>/dev/null | head -1) ]] && break; sleep 0.1; done
    found=$(find "m-$p" -name big.bin | head -1)
    [[ -n ${found} ]] || die "the ${p} mount shows no big.bin (see ${WORK}/${p}.log)"
    declare "F_${p^^}=$(dirname "${found}")"
done
F_BK=$(readlink -f m-bk/by-name/data/latest)/data
F_BKE=$(readlink -f m-bk/by-name/edata/latest)/edata
F_RS=$(dirname "$(find m-rs/snapshots/latest/ -name big.bin | head -1)")
F_BG=$(dirname "$(find m-bg/bench -name big.bin | head -1)")
[[ -f "${F_RS}/big.bin" && -f "${F_BG}/big.bin" ]] || die "restic or borg mount shows no big.bin"

read_time() { local t; t=$(now); cat "$1" > /dev/null; elapsed "$t"; }
ttfb() { local t; t=$(now); head -c 1 "$1" > /dev/null; elapsed "$t"; }

# Each measurement is taken ROUNDS times, tools interleaved, and the median kept (a 2-core VM is noisy).
# bakthat starts each round with a new, empty cache directory on a fresh mount: emptying the old one instead would
# make ext4 scan for recently deleted inodes on every cache write (perf: find_get_block/recently_deleted), an
# artifact of the benchmark deleting thousands of files a moment before.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
remount_bk() {
    fusermount3 -u "${WORK}/m-bk"
    wait "${BK_PID}" 2>/dev/null || true
    "$B" mount m-bk --cache-dir "$1" > bk.log 2>&1 & PIDS+=($!); BK_PID=$!
    wait_path m-bk/by-name/edata/latest/edata/big.bin
}
declare -A COLD WARM TTFB
declare -A C_ALL W_ALL T_ALL
for round in $(seq 1 "${ROUNDS}"); do
    remount_bk "${WORK}/cache-round${round}"
    for tool in bk bke rs bg "${PEERS[@]}"; do
        dir_var=F_${tool^^}
        dir=${!dir_var}
        # The plain and the encrypted read each start from an empty cache.
        [[ ${tool} == bke ]] && remount_bk "${WORK}/cache-round${round}-enc"
        drop
        T_ALL[$tool]+=" $(ttfb "${dir}/small.txt")"
        C_ALL[$tool]+=" $(read_time "${dir}/big.bin")"
        W_ALL[$tool]+=" $(read_time "${dir}/big.bin")"
    done
done
for tool in bk bke rs bg "${PEERS[@]}"; do
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    TTFB[$tool]=$(median ${T_ALL[$tool]}); COLD[$tool]=$(median ${C_ALL[$tool]}); WARM[$tool]=$(median ${W_ALL[$tool]})
done
SIZE=$((BIG_MB * 1048576))
fi


log "ls -lR over ${BACKUPS} backups (bakthat)"
export BAKTHAT_DB=${WORK}/many.sqlite
"$GEN" "${BAKTHAT_DB}" "${BACKUPS}"
mkdir -p m-many
"$B" mount m-many --cache-dir "${WORK}/cache-many" > many.log 2>&1 & PIDS+=($!); MANY_PID=$!; MOUNTS+=("${WORK}/m-many")
wait_path m-many/by-name
t=$(now); ENTRIES=$(ls -lR m-many/by-name | wc -l); T_LS=$(elapsed "$t")
t=$(now); ls -lR m-many/by-name > /dev/null; T_LS2=$(elapsed "$t")
t=$(now); ls -lR m-many > /dev/null; T_LS_ALL=$(elapsed "$t")
attr() { getfattr --only-values -n "user.bakthat.$2" "$1"; }
LS_REQUESTS=$(attr m-many store_requests)
R_MANY=$(awk '/^VmHWM/ {print $2}' "/proc/${MANY_PID}/status")

if (( SCALE > 0 )); then
    log "mounting ${SCALE} backups"
    export BAKTHAT_DB=${WORK}/scale-${SCALE}.sqlite
    if [[ ! -s ${BAKTHAT_DB} ]]; then
        t=$(now); "$GEN" "${BAKTHAT_DB}.tmp" "${SCALE}"; mv "${BAKTHAT_DB}.tmp" "${BAKTHAT_DB}"
        log "made the inventory in $(elapsed "$t") s"
    fi
    mkdir -p m-scale
    t=$(now)
    "$B" mount m-scale --cache-dir "${WORK}/cache-scale" > scale.log 2>&1 & PIDS+=($!); SCALE_PID=$!; MOUNTS+=("${WORK}/m-scale")
    for _ in $(seq 1 6000); do [[ -e m-scale/by-name ]] && break; sleep 0.01; done
    [[ -e m-scale/by-name ]] || die "the mount of ${SCALE} backups did not come up (see ${WORK}/scale.log)"
    T_READY=$(elapsed "$t")
    t=$(now); N_NAMES=$(ls m-scale/by-name | wc -l); T_LS_NAMES=$(elapsed "$t")
    t=$(now); N_ONE=$(ls -lR m-scale/by-name/svc000 | wc -l); T_LS_ONE=$(elapsed "$t")
    t=$(now); ls -lR m-scale/by-name/svc000 > /dev/null; T_LS_ONE2=$(elapsed "$t")
    R_SCALE=$(awk '/^VmHWM/ {print $2}' "/proc/${SCALE_PID}/status")
    SCALE_REQUESTS=$(attr m-scale store_requests)
fi

if [[ ${ONLY} != listing ]]; then
log "a 4 KiB read in the middle of a ${HUGE_MB} MiB backup"
export BAKTHAT_DB=${WORK}/inventory.sqlite
mkdir -p huge
head -c $((HUGE_MB * 1048576 / 2)) /dev/urandom > huge/huge.bin
head -c $((HUGE_MB * 1048576 / 2)) /dev/zero >> huge/huge.bin
"$B" backup huge --prompt no -q > /dev/null
rm -rf huge
mkdir -p m-huge
"$B" mount m-huge --cache-dir "${WORK}/cache-huge" > huge.log 2>&1 & PIDS+=($!); HUGE_PID=$!; MOUNTS+=("${WORK}/m-huge")
wait_path m-huge/by-name/huge/latest/huge/huge.bin
before=$(attr m-huge store_bytes_read)
dd if=m-huge/by-name/huge/latest/huge/huge.bin of=/dev/null bs=4096 count=1 skip=$((HUGE_MB * 256 / 4)) iflag=direct status=none
FETCHED=$(( $(attr m-huge store_bytes_read) - before ))

rss() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
R_BK=$(rss "${BK_PID}"); R_RS=$(rss "${RS_PID}"); R_BG=$(rss "${BG_PID}")

printf '\n%-34s %12s %12s %12s %14s %14s\n' "" bakthat restic borg "bakthat/restic" "bakthat/borg"
printf '%-34s %12.1f %12.1f %12.1f\n' "backup of ${BIG_MB} MiB (s)" "${T_BK}" "${T_RS}" "${T_BG}"
printf '%-34s %12.1f\n' "  encrypted (s)" "${T_BKE}"
c_rs=$(mbps $SIZE "${COLD[rs]}"); c_bg=$(mbps $SIZE "${COLD[bg]}")
w_rs=$(mbps $SIZE "${WARM[rs]}"); w_bg=$(mbps $SIZE "${WARM[bg]}")
for v in bk bke; do
    label="bakthat"; [[ $v == bke ]] && label="bakthat encrypted"
    c=$(mbps $SIZE "${COLD[$v]}"); w=$(mbps $SIZE "${WARM[$v]}")
    printf '%-34s %12s %12s %12s %14s %14s\n' "cold read, ${label} (MiB/s)" "$c" "$c_rs" "$c_bg" "$(ratio "$c" "$c_rs")" "$(ratio "$c" "$c_bg")"
    printf '%-34s %12s %12s %12s %14s %14s\n' "warm re-read, ${label} (MiB/s)" "$w" "$w_rs" "$w_bg" "$(ratio "$w" "$w_rs")" "$(ratio "$w" "$w_bg")"
done
printf '%-34s %12.4f %12.4f %12.4f %14s %14s\n' "time to first byte, small (s)" "${TTFB[bk]}" "${TTFB[rs]}" "${TTFB[bg]}" \
    "$(ratio "${TTFB[bk]}" "${TTFB[rs]}")" "$(ratio "${TTFB[bk]}" "${TTFB[bg]}")"
printf '%-34s %12s %12s %12s %14s %14s\n' "peak RSS (MiB)" "$((R_BK / 1024))" "$((R_RS / 1024))" "$((R_BG / 1024))" \
    "$(ratio "$R_BK" "$R_RS")" "$(ratio "$R_BK" "$R_BG")"
declare -A PEER_NAME=([rc]=rustic [b4]="borg 1.4") PEER_PID=([rc]=RC_PID [b4]=B4_PID) PEER_T=([rc]=T_RC [b4]=T_B4)
for p in "${PEERS[@]}"; do
    pid_var=${PEER_PID[$p]}; t_var=${PEER_T[$p]}
    c=$(mbps $SIZE "${COLD[bk]}"); w=$(mbps $SIZE "${WARM[bk]}")
    cp_=$(mbps $SIZE "${COLD[$p]}"); wp=$(mbps $SIZE "${WARM[$p]}"); rp=$(rss "${!pid_var}")
    printf '%-34s %12s %12s %14s\n' "vs ${PEER_NAME[$p]}" bakthat "${PEER_NAME[$p]}" "bakthat/peer"
    printf '%-34s %12.1f %12.1f\n' "  backup of ${BIG_MB} MiB (s)" "${T_BK}" "${!t_var}"
    printf '%-34s %12s %12s %14s\n' "  cold read (MiB/s)" "$c" "$cp_" "$(ratio "$c" "$cp_")"
    printf '%-34s %12s %12s %14s\n' "  warm re-read (MiB/s)" "$w" "$wp" "$(ratio "$w" "$wp")"
    printf '%-34s %12.4f %12.4f %14s\n' "  time to first byte, small (s)" "${TTFB[bk]}" "${TTFB[$p]}" "$(ratio "${TTFB[bk]}" "${TTFB[$p]}")"
    printf '%-34s %12s %12s %14s\n' "  peak RSS (MiB)" "$((R_BK / 1024))" "$((rp / 1024))" "$(ratio "$R_BK" "$rp")"
done
printf 'bytes read from the store for a 4 KiB read in a %s MiB backup: %s (%.2f MiB)\n' "${HUGE_MB}" "${FETCHED}" \
    "$(echo "${FETCHED} / 1048576" | bc -l)"
printf 'bakthat mount peak RSS after the huge read: %s MiB\n' "$(( $(rss "${HUGE_PID}") / 1024 ))"
fi

printf '\nls -lR /by-name over %s backups (%s lines): %.3f s first, %.3f s again; ls -lR of the whole mount: %.3f s; store requests: %s\n' \
    "${BACKUPS}" "${ENTRIES}" "${T_LS}" "${T_LS2}" "${T_LS_ALL}" "${LS_REQUESTS}"
printf 'mount of %s backups: peak RSS %s MiB\n' "${BACKUPS}" "$((R_MANY / 1024))"
if (( SCALE > 0 )); then
    printf '%s backups: mount up in %.3f s; ls /by-name (%s names) %.3f s; ls -lR /by-name/svc000 (%s lines) %.3f s first, %.3f s again; peak RSS %s MiB; store requests %s\n' \
        "${SCALE}" "${T_READY}" "${N_NAMES}" "${T_LS_NAMES}" "${N_ONE}" "${T_LS_ONE}" "${T_LS_ONE2}" "$((R_SCALE / 1024))" "${SCALE_REQUESTS}"
fi

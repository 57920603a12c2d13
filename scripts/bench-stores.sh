#!/usr/bin/env bash
# Usage: scripts/bench-stores.sh
#
# Backup and restore of a ~200 MB corpus (copies of /usr/share/doc and /usr/lib/python3) through moto S3 and through
# the Swift all-in-one, with bakthat's release build (encrypted, as restic always is) and with restic and rustic
# (scripts/peers.sh; through OpenDAL's s3 and swift services) on the same servers, in the same run. Prints a Markdown
# table (wall-clock seconds, stored bytes, peer/bakthat ratios) and writes it to $OUT/results.md. Every restore is
# compared with the corpus (diff -r); a difference fails the run. borg is not here: it has no S3 or Swift repository.
#
# Environment:
#   OUT              work directory (default /tmp/bakthat-bench-stores); the corpus, stores and restores live there
#   BENCH_TARGET_DIR cargo target dir of the release build (default /work/target-bench, else ~/.cache/bakthat-bench)
#   BAKTHAT_TEST_S3_ENDPOINT, BAKTHAT_TEST_SWIFT_AUTH   use running servers; otherwise the script starts moto and
#                    the Swift all-in-one with state under $OUT/state and stops them at the end
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/bakthat-bench-stores}
if [[ -z "${BENCH_TARGET_DIR:-}" ]]; then
    if [[ -d /work/target-bench ]]; then BENCH_TARGET_DIR=/work/target-bench; else BENCH_TARGET_DIR=${HOME}/.cache/bakthat-bench; fi
fi
command -v restic >/dev/null || { echo "bench-stores: restic is missing (apt-get install restic)" >&2; exit 1; }
# shellcheck source=scripts/peers.sh
source "${ROOT}/scripts/peers.sh"
if [[ ${BENCH_PEERS:-1} == 1 ]]; then bash "${ROOT}/scripts/peers.sh" install >&2 || true; fi
peers_env
[[ -n ${RUSTIC} ]] || echo "bench-stores: rustic is not installed: its rows are skipped (scripts/peers.sh install)" >&2

log() { printf '==> bench-stores: %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

log "building the release CLI in ${BENCH_TARGET_DIR}"
(cd "${ROOT}" && CARGO_TARGET_DIR=${BENCH_TARGET_DIR} cargo build --release --quiet --bin bakthat)
BIN=${BENCH_TARGET_DIR}/release/bakthat

rm -rf "${OUT}/corpus" "${OUT}/restore" "${OUT}/home" "${OUT}/restic-cache"
mkdir -p "${OUT}/corpus" "${OUT}/restore" "${OUT}/home"

STARTED=()
cleanup() {
    local s
    for s in "${STARTED[@]}"; do
        BAKTHAT_TEST_STATE=${OUT}/state bash "${ROOT}/scripts/${s}" stop >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
if [[ -z "${BAKTHAT_TEST_S3_ENDPOINT:-}" ]]; then
    log "starting moto"
    BAKTHAT_TEST_STATE=${OUT}/state bash "${ROOT}/scripts/moto-server.sh" start >&2
    STARTED+=(moto-server.sh)
    eval "$(BAKTHAT_TEST_STATE=${OUT}/state bash "${ROOT}/scripts/moto-server.sh" env)"
fi
if [[ -z "${BAKTHAT_TEST_SWIFT_AUTH:-}" ]]; then
    log "starting the Swift all-in-one"
    BAKTHAT_TEST_STATE=${OUT}/state bash "${ROOT}/scripts/swift-aio.sh" start >&2
    STARTED+=(swift-aio.sh)
    eval "$(BAKTHAT_TEST_STATE=${OUT}/state bash "${ROOT}/scripts/swift-aio.sh" env)"
fi
S3=${BAKTHAT_TEST_S3_ENDPOINT}
SWIFT_AUTH=${BAKTHAT_TEST_SWIFT_AUTH}

log "copying the corpus"
cp -a /usr/share/doc "${OUT}/corpus/doc"
cp -a /usr/lib/python3 "${OUT}/corpus/python3"
CORPUS_BYTES=$(find "${OUT}/corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
CORPUS_FILES=$(find "${OUT}/corpus" -type f | wc -l)
log "corpus: ${CORPUS_BYTES} bytes in ${CORPUS_FILES} files"

RUN=$(date +%s)
BUCKET=bench-${RUN}
cat >"${OUT}/bakthat.yml" <<EOF
s3:
  access_key: test
  secret_key: test
  region_name: us-east-1
  s3_bucket: ${BUCKET}
  endpoint_url: ${S3}
swift:
  access_key: 'test:tester'
  secret_key: testing
  s3_bucket: ${BUCKET}
  auth_url: ${SWIFT_AUTH}
  auth_version: '1'
  region_name: us-east-1
EOF
export BAKTHAT_CONFIG=${OUT}/bakthat.yml BAKTHAT_DB=${OUT}/inventory-${RUN}.sqlite HOME=${OUT}/home
export BAKTHAT_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export ST_AUTH=${SWIFT_AUTH} ST_USER=test:tester ST_KEY=testing

declare -A T SIZE
check() { # restored-root
    diff -r --no-dereference "${OUT}/corpus" "$1" >/dev/null || { echo "bench-stores: restore in $1 differs from the corpus" >&2; exit 1; }
}

bakthat_run() { # store
    local store=$1 t0 t1 t2 stored
    t0=$(now)
    "${BIN}" -q -p "${store}" backup "${OUT}/corpus" -d "${store}" --name "corpus-${store}" >"${OUT}/${store}.out"
    t1=$(now)
    stored=$(awk '/^stored /{print $2}' "${OUT}/${store}.out")
    rm -rf "${OUT}/restore/bakthat-${store}"
    "${BIN}" -q -p "${store}" restore "corpus-${store}" -d "${store}" --to "${OUT}/restore/bakthat-${store}" >/dev/null
    t2=$(now)
    check "${OUT}/restore/bakthat-${store}/corpus"
    T[bakthat-${store}-backup]=$(secs "${t0}" "${t1}")
    T[bakthat-${store}-restore]=$(secs "${t1}" "${t2}")
    SIZE[bakthat-${store}]=$("${BIN}" -p "${store}" show --json "${stored}" | awk -F': ' '/"size"/{gsub(/,/, "", $2); print $2; exit}')
    rm -rf "${OUT}/restore/bakthat-${store}"
}

restic_run() { # store repo
    local store=$1 repo=$2 t0 t1 t2
    restic -q -r "${repo}" --cache-dir "${OUT}/restic-cache" init >/dev/null
    t0=$(now)
    (cd "${OUT}" && restic -q -r "${repo}" --cache-dir "${OUT}/restic-cache" backup corpus >/dev/null)
    t1=$(now)
    rm -rf "${OUT}/restore/restic-${store}"
    restic -q -r "${repo}" --cache-dir "${OUT}/restic-cache" restore latest --target "${OUT}/restore/restic-${store}" >/dev/null
    t2=$(now)
    check "${OUT}/restore/restic-${store}/corpus"
    T[restic-${store}-backup]=$(secs "${t0}" "${t1}")
    T[restic-${store}-restore]=$(secs "${t1}" "${t2}")
    SIZE[restic-${store}]=$(restic -q -r "${repo}" --cache-dir "${OUT}/restic-cache" stats --mode raw-data --json |
        sed -n 's/.*"total_size":\([0-9]*\).*/\1/p')
    rm -rf "${OUT}/restore/restic-${store}"
}

# rustic_run STORE: rustic with an OpenDAL repository described by $OUT/rustic-STORE.toml (a rustic profile).
rustic_run() {
    local store=$1 t0 t1 t2 profile root=""
    profile=${OUT}/rustic-${store}
    "${RUSTIC}" -P "${profile}" init >"${OUT}/rustic-${store}.log" 2>&1 ||
        { echo "bench-stores: rustic init on ${store} failed: $(tail -n 3 "${OUT}/rustic-${store}.log")" >&2; exit 1; }
    t0=$(now)
    (cd "${OUT}" && "${RUSTIC}" -P "${profile}" backup corpus >>"${OUT}/rustic-${store}.log" 2>&1)
    t1=$(now)
    rm -rf "${OUT}/restore/rustic-${store}"
    "${RUSTIC}" -P "${profile}" restore latest "${OUT}/restore/rustic-${store}" >>"${OUT}/rustic-${store}.log" 2>&1
    t2=$(now)
    for c in "${OUT}/restore/rustic-${store}/corpus" "${OUT}/restore/rustic-${store}"; do
        if [[ -d ${c}/doc ]]; then root=${c}; break; fi
    done
    check "${root:-${OUT}/restore/rustic-${store}}"
    T[rustic-${store}-backup]=$(secs "${t0}" "${t1}")
    T[rustic-${store}-restore]=$(secs "${t1}" "${t2}")
    SIZE[rustic-${store}]=$("${RUSTIC}" -P "${profile}" repoinfo --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(t.get("size", 0) for t in d["files"]["repo"]))' 2>/dev/null || echo 0)
    rm -rf "${OUT}/restore/rustic-${store}"
}
# rustic_profile STORE SERVICE KEY=VALUE...: writes the rustic profile $OUT/rustic-STORE.toml for an OpenDAL service.
rustic_profile() {
    local store=$1 service=$2 kv
    shift 2
    {
        printf '[repository]\nrepository = "opendal:%s"\npassword = "bench-password"\n' "${service}"
        printf 'cache-dir = "%s"\n[repository.options]\n' "${OUT}/rustic-cache"
        for kv in "$@"; do printf '%s = "%s"\n' "${kv%%=*}" "${kv#*=}"; done
    } >"${OUT}/rustic-${store}.toml"
}
if [[ -n ${RUSTIC} ]]; then
    rustic_profile s3 s3 "bucket=${BUCKET}-rustic" root=/ "endpoint=${S3}" region=us-east-1 \
        access_key_id=test secret_access_key=test
    # rustic does not create its bucket (moto takes an unsigned PUT).
    curl -sS -f -X PUT "${S3}/${BUCKET}-rustic" >/dev/null
    # Swift: OpenDAL takes the storage URL and a token; tempauth hands both out.
    read -r SWIFT_URL SWIFT_TOKEN < <(curl -sS -D - -o /dev/null -H "X-Storage-User: test:tester" \
        -H "X-Storage-Pass: testing" "${SWIFT_AUTH}" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-storage-url" { u = $2 } tolower($1) == "x-auth-token" { t = $2 } END { print u, t }')
    curl -sS -X PUT -H "X-Auth-Token: ${SWIFT_TOKEN}" "${SWIFT_URL}/${BUCKET}-rustic" >/dev/null
    rustic_profile swift swift "endpoint=${SWIFT_URL}" "container=${BUCKET}-rustic" "token=${SWIFT_TOKEN}"
fi

log "bakthat on moto S3";   bakthat_run s3
log "restic on moto S3";    restic_run s3 "s3:${S3}/${BUCKET}-restic"
log "bakthat on Swift";     bakthat_run swift
log "restic on Swift";      restic_run swift "swift:${BUCKET}-restic:/"
if [[ -n ${RUSTIC} ]]; then
    log "rustic on moto S3";    rustic_run s3
    log "rustic on Swift";      rustic_run swift
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1048576 }'; }
{
    echo "Corpus: ${CORPUS_BYTES} bytes ($(mb "${CORPUS_BYTES}") MiB) in ${CORPUS_FILES} files (/usr/share/doc + /usr/lib/python3);"
    echo "$(nproc) cores; bakthat $("${BIN}" --version | awk '{print $2}') release build, encrypted; $(restic version | awk '{print $1, $2}'); ${RUSTIC:+$("${RUSTIC}" --version);}"
    echo "wall-clock seconds, one run each, same servers; ratio = peer / bakthat (above 1: bakthat is faster or smaller);"
    echo "stored: bakthat's archive object (its entry index sidecar aside), restic's \`stats --mode raw-data\`, rustic's repoinfo (after dedup and compression)."
    echo
    echo "| store | tool | backup s | restore s | stored MiB |"
    echo "|---|---|---:|---:|---:|"
    for s in s3 swift; do
        for tool in bakthat restic rustic; do
            [[ -n ${T[${tool}-${s}-backup]:-} ]] || continue
            echo "| ${s} | ${tool} | ${T[${tool}-${s}-backup]} | ${T[${tool}-${s}-restore]} | $(mb "${SIZE[${tool}-${s}]}") |"
        done
        for tool in restic rustic; do
            [[ -n ${T[${tool}-${s}-backup]:-} ]] || continue
            echo "| ${s} | **${tool} / bakthat** | **$(ratio "${T[${tool}-${s}-backup]}" "${T[bakthat-${s}-backup]}")** | **$(ratio "${T[${tool}-${s}-restore]}" "${T[bakthat-${s}-restore]}")** | $(ratio "${SIZE[${tool}-${s}]}" "${SIZE[bakthat-${s}]}") |"
        done
    done
} | tee "${OUT}/results.md"
log "written to ${OUT}/results.md"

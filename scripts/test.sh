#!/usr/bin/env bash
# Usage: scripts/test.sh [ARGS...]
#
# The one command that runs every check and test of bakthat (this is what CI runs, through .ci/run):
#   1. scripts/install-test-deps.sh (Debian packages + the Python venv; about 1 s when all is there)
#   2. starts moto (S3 + Glacier) and the Swift all-in-one on 127.0.0.1 and exports their BAKTHAT_TEST_* variables
#   3. scripts/deps.sh (no dependency cycle between modules); cargo fmt --check (also python/); cargo clippy
#      --all-targets -- -D warnings (and -p bakthat-python); scripts/python-test.sh (builds the Python package with
#      maturin, pytest against moto); cargo test --doc; cargo nextest run --no-fail-fast ARGS (or cargo test ARGS
#      when cargo-nextest is missing)
#   4. on exit, also on failure or Ctrl-C: stops the servers, unmounts FUSE mounts left under the state directory
#      and fails if any remain.
# Every step runs even when an earlier one failed; the exit status is non-zero when any step failed.
# ARGS go to the test runner, e.g. `scripts/test.sh storage::` to run only matching tests.
#
# Exported for the tests:
#   BAKTHAT_TEST_S3_ENDPOINT                      moto (any credentials; also serves Glacier)
#   BAKTHAT_TEST_SWIFT_AUTH/_USER/_KEY/_S3_ENDPOINT  Swift (tempauth v1.0, and s3api on the same port)
#   BAKTHAT_PYTHON                                the venv's python (has cryptography, boto3), for scripts/bakthat-decrypt
#   TMPDIR                                        $BAKTHAT_TEST_STATE/tmp, so temp dirs (and mounts in them) are swept
# Environment:
#   BAKTHAT_TEST_STATE  server state, logs, temp dirs (default /tmp/bakthat-test); one run at a time per directory
#   BAKTHAT_VENV        the Python venv (default /opt/bakthat-venv)
#   BAKTHAT_DEBIAN_PYTHON  Debian's python3 for scripts/bakthat-decrypt with python3-cryptography + python3-argon2
#                       (default /usr/bin/python3; the packages come from scripts/install-test-deps.sh)
#   CARGO_TARGET_DIR    default $HOME/.cache/bakthat-target: outside the clone, so re-runs on this machine are
#                       incremental; never required
#   CI=true             adds --locked to cargo
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

export BAKTHAT_TEST_STATE=${BAKTHAT_TEST_STATE:-/tmp/bakthat-test}
export BAKTHAT_VENV=${BAKTHAT_VENV:-/opt/bakthat-venv}
export BAKTHAT_PYTHON=${BAKTHAT_VENV}/bin/python
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${HOME}/.cache/bakthat-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-always}
# PyO3's build script (python/) asks this interpreter for its version.
export PYO3_PYTHON=${BAKTHAT_PYTHON}

log() { printf '\n==> test.sh: %s\n' "$*"; }

mkdir -p "${BAKTHAT_TEST_STATE}"
# One run per state directory: a second run would share (and at its end stop) the first one's servers.
exec 9>"${BAKTHAT_TEST_STATE}/.test.lock"
if ! flock -n 9; then
    echo "test.sh: another scripts/test.sh is running with BAKTHAT_TEST_STATE=${BAKTHAT_TEST_STATE};" \
        "wait for it or set BAKTHAT_TEST_STATE to another directory" >&2
    exit 1
fi

# FUSE mounts (fstype fuse or fuse.*) whose mount point is under the state directory, one per line.
our_mounts() {
    local state mp fstype
    state=$(realpath -m "${BAKTHAT_TEST_STATE}")
    while read -r _ mp fstype _; do
        [[ ${fstype} == fuse || ${fstype} == fuse.* ]] || continue
        mp=$(printf '%b' "${mp}") # /proc/mounts escapes spaces and the like as \040
        if [[ "${mp}" == "${state}" || "${mp}" == "${state}/"* ]]; then
            printf '%s\n' "${mp}"
        fi
    done </proc/mounts
}

unmount_leftovers() {
    local mp
    # Deepest first, so nested mounts go before their parents.
    our_mounts | sort -r | while IFS= read -r mp; do
        echo "test.sh: unmounting leftover FUSE mount ${mp}" >&2
        fusermount3 -u "${mp}" 2>/dev/null || umount -l "${mp}" || true
    done
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$? left
    bash scripts/moto-server.sh stop || rc=1
    bash scripts/swift-aio.sh stop || rc=1
    unmount_leftovers
    left=$(our_mounts)
    if [[ -n "${left}" ]]; then
        printf 'test.sh: FUSE mounts still present under %s:\n%s\n' "${BAKTHAT_TEST_STATE}" "${left}" >&2
        grep fuse /proc/mounts >&2 || true
        rc=1
    fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -a results=()
failed=0
# run NAME CMD...: runs one step, records its result and time, and keeps going when it fails.
run() {
    local name=$1 t0=${SECONDS} rc=0
    shift
    log "${name}: $*"
    "$@" || rc=$?
    results+=("$(printf '%-28s %-6s %4d s' "${name}" "$([[ ${rc} -eq 0 ]] && echo ok || echo FAILED)" \
        $((SECONDS - t0)))")
    [[ ${rc} -eq 0 ]] || failed=1
    return 0
}

t_start=${SECONDS}
log "installing test dependencies"
bash scripts/install-test-deps.sh

# Leftovers of an earlier, interrupted run: mounts first, then its temp files.
unmount_leftovers
export TMPDIR=${BAKTHAT_TEST_STATE}/tmp
rm -rf --one-file-system "${TMPDIR}"
mkdir -p "${TMPDIR}"

log "starting test servers"
# 9>&-: the servers must not inherit (and so keep holding) the run lock.
bash scripts/moto-server.sh start 9>&-
bash scripts/swift-aio.sh start 9>&-
eval "$(bash scripts/moto-server.sh env)"
eval "$(bash scripts/swift-aio.sh env)"
env | grep -E '^(BAKTHAT_TEST_|BAKTHAT_PYTHON=|BAKTHAT_VENV=|CARGO_TARGET_DIR=|TMPDIR=)' | sort # not BAKTHAT_PASSWORD

locked=()
[[ "${CI:-}" == true ]] && locked=(--locked)

run "module graph (no cycle)" bash scripts/deps.sh -q
run "cargo fmt --check" cargo fmt --all -- --check
run "cargo clippy" cargo clippy "${locked[@]}" --all-targets -- -D warnings
# The Python package's native crate (python/, a workspace member; see scripts/python-test.sh).
run "cargo clippy (python/)" cargo clippy "${locked[@]}" -p bakthat-python --all-targets -- -D warnings
# Before the Rust runs too, so that the last summary CI reads stays the main run's.
run "python tests (pytest)" bash scripts/python-test.sh
# Doc tests before the main run, so the test runner's last summary (which CI reads) is the main run's, not a
# "0 passed" of a crate with few doc tests.
run "cargo test --doc" cargo test "${locked[@]}" --doc
if command -v cargo-nextest >/dev/null 2>&1; then
    run "cargo nextest run" cargo nextest run "${locked[@]}" --no-fail-fast "$@"
else
    run "cargo test" cargo test "${locked[@]}" --no-fail-fast "$@"
fi

log "summary ($((SECONDS - t_start)) s in all)"
printf '  %s\n' "${results[@]}"
exit "${failed}"

#!/usr/bin/env bash
# Usage: scripts/python-test.sh [PYTEST ARGS...]
#
# Builds the Python package (python/: the PyO3 module bakthat._native and the pure-Python modules) as a wheel with
# maturin (dev profile, in CARGO_TARGET_DIR, so the core crate's compiled dependencies are reused), installs it into
# a fresh venv under $BAKTHAT_TEST_STATE, as `pip install` would on a user's machine (console script included),
# and runs pytest on python/tests with that venv's python. The venv sees the project venv's packages (pytest,
# boto3) through a .pth file; the wheel is the only thing installed into it.
#
# S3 tests use moto at BAKTHAT_TEST_S3_ENDPOINT (scripts/test.sh starts it and runs this script); a missing server
# or tool is a failure, never a skip.
#
# Environment: BAKTHAT_VENV (default /opt/bakthat-venv, with maturin and pytest from scripts/install-test-deps.sh),
# BAKTHAT_TEST_STATE (default /tmp/bakthat-test), CARGO_TARGET_DIR, CI=true (adds --locked).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BAKTHAT_VENV:-/opt/bakthat-venv}
STATE=${BAKTHAT_TEST_STATE:-/tmp/bakthat-test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${HOME}/.cache/bakthat-target}
# PyO3's build script asks this interpreter for its version (abi3: the wheel is for every CPython >= 3.9).
export PYO3_PYTHON=${VENV}/bin/python

die() { printf 'python-test.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'python-test.sh: %s\n' "$*"; }

[[ -x ${VENV}/bin/maturin ]] || die "${VENV}/bin/maturin is missing: run scripts/install-test-deps.sh"
[[ -n ${BAKTHAT_TEST_S3_ENDPOINT:-} ]] ||
    die "BAKTHAT_TEST_S3_ENDPOINT is not set: run this through scripts/test.sh (it starts moto), or run" \
        "'scripts/moto-server.sh start && eval \"\$(scripts/moto-server.sh env)\"' first"

locked=()
[[ "${CI:-}" == true ]] && locked=(--locked)

wheels=${STATE}/python-wheels
pyenv=${STATE}/python-env
rm -rf "${wheels}" "${pyenv}"
mkdir -p "${wheels}"

t0=${SECONDS}
log "maturin build (dev profile) into ${wheels}"
"${VENV}/bin/maturin" build --quiet "${locked[@]}" --manifest-path "${ROOT}/python/Cargo.toml" \
    --interpreter "${VENV}/bin/python" --out "${wheels}"
wheel=$(ls "${wheels}"/bakthat-*.whl)
log "built $(basename "${wheel}") in $((SECONDS - t0)) s"

"${VENV}/bin/python" -m venv --without-pip "${pyenv}"
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
purelib "${VENV}/bin/python" >"$(purelib "${pyenv}/bin/python")/bakthat-test-deps.pth"
"${VENV}/bin/python" -m pip --disable-pip-version-check --python "${pyenv}/bin/python" install --quiet \
    --no-deps --no-index "${wheel}"

# From the tests' directory: `python -m pytest` puts the current directory first on sys.path, and python/ holds the
# package's sources (without the native module), which must not shadow the installed wheel.
cd "${ROOT}/python/tests"
exec "${pyenv}/bin/python" -m pytest -p no:cacheprovider "$@"

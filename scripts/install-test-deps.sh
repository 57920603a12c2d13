#!/usr/bin/env bash
# Usage: scripts/install-test-deps.sh
#
# Installs everything the test suite needs besides Rust itself (Debian 12, run as root or with sudo):
#   - Debian packages: FUSE, the peer tools (restic, borg, rsync, gio), memcached and an OpenStack Swift
#     all-in-one (see scripts/swift-aio.sh), curl and procps, and python3-cryptography + python3-argon2 (the
#     tests run scripts/bakthat-decrypt under Debian's own /usr/bin/python3 too, as the README tells users to).
#   - A Python venv at ${BAKTHAT_VENV:-/opt/bakthat-venv} with moto (S3 + Glacier emulator, see
#     scripts/moto-server.sh), flask, flask-cors, cryptography (for scripts/bakthat-decrypt) and boto3, and maturin
#     and pytest (the Python package, see scripts/python-test.sh); sqlite3 for its dump-script test.
#
# Idempotent and fast on re-runs: apt is skipped when dpkg-query reports every package installed, and pip is
# skipped when the venv already imports everything at the requested versions.
#
# Environment:
#   BAKTHAT_VENV         where the venv lives (default /opt/bakthat-venv)
#   BAKTHAT_BASE_PYTHON  the interpreter the venv is made from (default python3)
set -euo pipefail

VENV=${BAKTHAT_VENV:-/opt/bakthat-venv}
BASE_PYTHON=${BAKTHAT_BASE_PYTHON:-python3}

APT_PACKAGES=(
    fuse3 pkg-config restic borgbackup python3-llfuse rsync libglib2.0-bin
    memcached swift swift-proxy swift-object swift-account swift-container python3-swiftclient
    curl procps openssl time attr zstd tar
    python3-cryptography python3-argon2
    sqlite3
)
# Bump the requirement list and the venv is updated on the next run (the stamp file records what was installed).
PIP_REQUIREMENTS=("moto[s3]>=5.1,<6" "flask" "flask-cors" "cryptography>=44" "boto3" "maturin>=1.9,<2" "pytest>=8")

log() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [[ ${EUID} -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run this script as root"
    SUDO=(sudo)
fi

is_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# ---- Debian packages -------------------------------------------------------------------------------------------
wanted=("${APT_PACKAGES[@]}")
# The venv needs the venv module and ensurepip; Debian's own python3 only has them with python3-venv.
if ! "${BASE_PYTHON}" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    wanted+=(python3-venv)
fi
missing=()
for pkg in "${wanted[@]}"; do
    is_installed "${pkg}" || missing+=("${pkg}")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    log "apt: all ${#wanted[@]} packages already installed, skipped"
else
    log "apt: installing ${missing[*]}"
    start=${SECONDS}
    # Wait for a dpkg lock held by someone else instead of failing at once.
    apt_opts=(-q -o DPkg::Lock::Timeout=600)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update
    # --no-install-recommends matters: without it swift alone pulls ~160 packages (GTK, gnome-keyring, ...).
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        "${missing[@]}"
    for pkg in "${missing[@]}"; do
        is_installed "${pkg}" || die "apt-get finished but ${pkg} is still not installed"
    done
    log "apt: done in $((SECONDS - start)) s"
fi

# ---- Python venv -----------------------------------------------------------------------------------------------
stamp="${VENV}/.bakthat-requirements"
wanted_stamp=$(printf '%s\n' "${PIP_REQUIREMENTS[@]}")

venv_ok() {
    [[ -x "${VENV}/bin/python" ]] || return 1
    [[ -f "${stamp}" && "$(cat "${stamp}")" == "${wanted_stamp}" ]] || return 1
    # Import what the scripts use and check the versions that matter.
    "${VENV}/bin/python" - <<'EOF' >/dev/null 2>&1
import boto3, cryptography, flask, flask_cors, moto, pytest
import moto.glacier.models, moto.s3.models, moto.server
import os, sys
assert os.access(os.path.join(os.path.dirname(sys.executable), "maturin"), os.X_OK)
major = lambda v: int(v.split(".")[0])
assert major(cryptography.__version__) >= 44, cryptography.__version__
assert major(moto.__version__) == 5, moto.__version__
EOF
}

if venv_ok; then
    log "venv: ${VENV} already has ${PIP_REQUIREMENTS[*]}, skipped"
else
    start=${SECONDS}
    # A venv whose interpreter no longer runs (its base python was removed or upgraded) is rebuilt from scratch.
    if [[ -e "${VENV}" ]] && ! "${VENV}/bin/python" -c '' >/dev/null 2>&1; then
        [[ -f "${VENV}/pyvenv.cfg" ]] || die "${VENV} exists but is not a venv: move it away or set BAKTHAT_VENV"
        log "venv: ${VENV} is broken, recreating it"
        "${SUDO[@]}" rm -rf -- "${VENV}"
    fi
    if [[ ! -x "${VENV}/bin/python" ]]; then
        log "venv: creating ${VENV} from $(command -v "${BASE_PYTHON}")"
        "${SUDO[@]}" "${BASE_PYTHON}" -m venv "${VENV}"
    fi
    log "venv: pip install ${PIP_REQUIREMENTS[*]}"
    "${SUDO[@]}" "${VENV}/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check \
        "${PIP_REQUIREMENTS[@]}"
    printf '%s\n' "${wanted_stamp}" | "${SUDO[@]}" tee "${stamp}" >/dev/null
    venv_ok || die "venv ${VENV} was installed but does not import moto/flask/cryptography/boto3 as required"
    log "venv: done in $((SECONDS - start)) s"
fi

log "ok: $("${VENV}/bin/python" -c 'import moto, cryptography, boto3
print(f"moto {moto.__version__}, cryptography {cryptography.__version__}, boto3 {boto3.__version__}")')"

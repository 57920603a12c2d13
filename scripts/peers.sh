#!/usr/bin/env bash
# The current releases of the peers that bakthat's benchmarks compare against, beside Debian's restic and borg:
#   rustic    `cargo install rustic-rs --locked` (about 20 minutes of build on 2 cores, so it is cached outside the
#             clone and built once per machine)
#   borg 1.4  borgbackup from PyPI in its own venv (an sdist: built against Debian's -dev packages, a minute or two),
#             with pyfuse3 for `borg mount`
# Usage:
#   scripts/peers.sh install         installs what is missing (idempotent; prints what it did)
#   source scripts/peers.sh          then: peers_env (exports RUSTIC and BORG14, or leaves them empty when absent)
#   scripts/peers.sh versions        one line per peer with its version
# Environment:
#   BAKTHAT_PEERS_DIR  where they live (default ~/.cache/bakthat-bench): outside the clone, kept across runs
set -euo pipefail

PEERS_DIR=${BAKTHAT_PEERS_DIR:-$HOME/.cache/bakthat-bench}
RUSTIC_ROOT=$PEERS_DIR/rustic
BORG14_VENV=$PEERS_DIR/borg14-venv

peers_note() { echo "peers.sh: $*" >&2; }

peers_install_rustic() {
    if [[ -x $RUSTIC_ROOT/bin/rustic ]]; then return 0; fi
    command -v cargo >/dev/null || { peers_note "cargo is missing: rustic cannot be built"; return 1; }
    peers_note "building rustic (cargo install rustic-rs --locked; about 20 minutes) into $RUSTIC_ROOT"
    mkdir -p "$RUSTIC_ROOT"
    cargo install rustic-rs --locked --root "$RUSTIC_ROOT" >"$PEERS_DIR/rustic-install.log" 2>&1 || {
        peers_note "cargo install rustic-rs failed; last lines of $PEERS_DIR/rustic-install.log:"
        tail -n 20 "$PEERS_DIR/rustic-install.log" >&2
        return 1
    }
}

peers_install_borg14() {
    if [[ -x $BORG14_VENV/bin/borg ]] && "$BORG14_VENV/bin/borg" --version | grep -q ' 1\.4\.'; then return 0; fi
    peers_note "installing borg 1.4 from PyPI into $BORG14_VENV (build dependencies from Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pkg-config libssl-dev libacl1-dev liblz4-dev libzstd-dev \
        libxxhash-dev libfuse3-dev fuse3 >/dev/null
    local py
    py=$(command -v python3)
    rm -rf "$BORG14_VENV"
    "$py" -m venv "$BORG14_VENV"
    "$BORG14_VENV/bin/pip" install -q --upgrade pip setuptools wheel >/dev/null
    "$BORG14_VENV/bin/pip" install -q 'borgbackup[pyfuse3]>=1.4,<1.5' >"$PEERS_DIR/borg14-install.log" 2>&1 || {
        peers_note "pip install borgbackup 1.4 failed; last lines of $PEERS_DIR/borg14-install.log:"
        tail -n 20 "$PEERS_DIR/borg14-install.log" >&2
        return 1
    }
}

# peers_env: RUSTIC and BORG14 are the binaries' paths, or empty when not installed.
peers_env() {
    RUSTIC=""
    BORG14=""
    [[ -x $RUSTIC_ROOT/bin/rustic ]] && RUSTIC=$RUSTIC_ROOT/bin/rustic
    [[ -x $BORG14_VENV/bin/borg ]] && BORG14=$BORG14_VENV/bin/borg
    export RUSTIC BORG14
}

peers_versions() {
    peers_env
    echo "- $(restic version 2>/dev/null || echo 'restic: not installed')"
    echo "- borg (Debian) $(borg --version 2>/dev/null | awk '{print $2}' || echo 'not installed')"
    if [[ -n $RUSTIC ]]; then echo "- $("$RUSTIC" --version)"; else echo "- rustic: not installed (scripts/peers.sh install)"; fi
    if [[ -n $BORG14 ]]; then echo "- borg (PyPI) $("$BORG14" --version | awk '{print $2}')"; else echo "- borg 1.4: not installed (scripts/peers.sh install)"; fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    mkdir -p "$PEERS_DIR"
    case ${1:-} in
    install)
        rc=0
        peers_install_borg14 || rc=1
        peers_install_rustic || rc=1
        peers_versions
        exit "$rc"
        ;;
    versions) peers_versions ;;
    *)
        echo "usage: scripts/peers.sh install|versions (or source it and call peers_env)" >&2
        exit 2
        ;;
    esac
fi

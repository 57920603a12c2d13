#!/usr/bin/env bash
# Usage: scripts/install.sh [DIR]
#
# Set-up command 1 of the README: builds bakthat from this checkout, installs it, and makes a first backup.
#   1. cargo install --path <this checkout> --locked --root ${PREFIX:-/usr/local}   (the binary: $PREFIX/bin/bakthat)
#   2. bakthat backup --prompt no DIR    DIR defaults to the current directory; the default store is used
#                                        (see ~/.bakthat.yml), and --prompt no means it asks nothing
#   3. bakthat show                      lists the backups, so you can see the one just made
# Needs Rust (cargo) and write access to $PREFIX (use sudo, or PREFIX=$HOME/.local).
# Re-running it rebuilds only what changed and makes another backup.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DIR=$(realpath -e -- "${1:-.}" 2>/dev/null) || { echo "install.sh: ${1:-.} does not exist" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || { echo "install.sh: cargo not found: install Rust from rustup.rs first" >&2; exit 1; }

echo "==> building and installing bakthat into ${PREFIX}/bin"
cargo install --path "${ROOT}" --locked --root "${PREFIX}"
BAKTHAT=${PREFIX}/bin/bakthat
case ":${PATH}:" in
    *":${PREFIX}/bin:"*) ;;
    *) echo "install.sh: note: ${PREFIX}/bin is not on your PATH; add it to run bakthat by name" >&2 ;;
esac

echo "==> bakthat backup --prompt no ${DIR}"
"${BAKTHAT}" backup --prompt no "${DIR}"

echo "==> bakthat show"
"${BAKTHAT}" show

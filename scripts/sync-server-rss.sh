#!/usr/bin/env bash
# Usage: scripts/sync-server-rss.sh [CONNECTIONS] [BODY_MIB]
#
# Measures the sync server's memory under strangers: CONNECTIONS (default 200) connections without credentials (half
# send none, half a wrong password of an existing user) each announce a BODY_MIB (default 60) MiB body, send 64 KiB
# of it and hold the connection open. Prints the peak RSS (VmHWM) of the server, how many connections got an HTTP
# answer (and which statuses) and whether the server still answers an authenticated sync afterwards.
# Target (issue 11): peak RSS under 64 MB for 200 connections of 60 MiB. Not a timed test and not part of CI.
# Environment: BAKTHAT (the binary to measure; default: cargo build, then $CARGO_TARGET_DIR/debug/bakthat),
#              HOLD_SECONDS (how long the connections stay open, default 5).
# Loopback only; every loop is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONNS=${1:-200}
BODY_MIB=${2:-60}
HOLD=${HOLD_SECONDS:-5}
TARGET=${CARGO_TARGET_DIR:-${ROOT}/target}
if [[ -z ${BAKTHAT:-} ]]; then
    (cd "${ROOT}" && cargo build --quiet --bin bakthat)
    BAKTHAT=${TARGET}/debug/bakthat
fi
WORK=$(mktemp -d /tmp/bakthat-syncrss.XXXXXX)
cleanup() {
    [[ -n ${SERVER_PID:-} ]] && kill "${SERVER_PID}" 2>/dev/null && wait "${SERVER_PID}" 2>/dev/null
    rm -rf "${WORK}"
}
trap cleanup EXIT

BAKTHAT_SYNC_PASSWORD=s3cret "${BAKTHAT}" sync-server --db "${WORK}/s.sqlite" --add-user alice >/dev/null
"${BAKTHAT}" sync-server --db "${WORK}/s.sqlite" --listen 127.0.0.1:0 2>"${WORK}/server.log" &
SERVER_PID=$!
ADDR=
for _ in $(seq 1 100); do
    ADDR=$(sed -n 's|.*listening on http://||p' "${WORK}/server.log")
    [[ -n ${ADDR} ]] && break
    sleep 0.1
done
[[ -n ${ADDR} ]] || { cat "${WORK}/server.log" >&2; echo "sync-server-rss: the server did not start" >&2; exit 1; }
rss() { awk "/^$1:/ {print \$2}" "/proc/${SERVER_PID}/status" 2>/dev/null || echo gone; }
echo "server ${BAKTHAT} at ${ADDR}, pid ${SERVER_PID}, RSS at rest $(rss VmRSS) kB"

python3 - "${ADDR}" "${CONNS}" "${BODY_MIB}" "${HOLD}" "${SERVER_PID}" <<'EOF'
import base64, collections, os, socket, sys, time
addr, conns, body_mib, hold, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
host, port = addr.rsplit(":", 1)

def status(field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None

wrong = base64.b64encode(b"alice:wrong").decode()
wrong_share = os.environ.get("WRONG_PASSWORDS", "1") != "0"
socks, refused = [], 0
for i in range(conns):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, int(port)))
        auth = f"Authorization: Basic {wrong}\r\n" if i % 2 and wrong_share else ""
        s.sendall((f"POST /backups/sync HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n{auth}"
                   f"Content-Length: {body_mib << 20}\r\n\r\n").encode())
        s.sendall(b"[" * 65536)
    except OSError:
        refused += 1
        s.close()
        continue
    socks.append(s)
peak_during = 0
deadline = time.time() + hold
while time.time() < deadline:
    peak_during = max(peak_during, status("VmRSS") or 0)
    time.sleep(0.1)
answers = collections.Counter()
for s in socks:
    s.settimeout(0.5)
    try:
        data = s.recv(64)
        answers[data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "closed without an answer"] += 1
    except socket.timeout:
        answers["no answer yet (held)"] += 1
    except OSError as e:
        answers[f"error {e.__class__.__name__}"] += 1
    s.close()

def sync():
    s = socket.create_connection((host, int(port)), timeout=180)
    body = b'{"sync_ts": 0, "new": []}'
    ok = base64.b64encode(b"alice:s3cret").decode()
    s.sendall((f"POST /backups/sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {ok}\r\nconnection: close\r\n"
               f"content-type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    data = s.recv(64)
    s.close()
    return data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "nothing"

try:
    after = sync()
except OSError as e:
    after = f"failed ({e.__class__.__name__})"
print(f"connections: {conns} tried, {len(socks)} opened, {refused} refused at connect")
print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items())))
print(f"RSS: peak while held {peak_during} kB, VmHWM {status('VmHWM')} kB")
print(f"authenticated sync afterwards: {after}")
EOF

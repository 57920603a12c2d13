#!/usr/bin/env bash
# Usage: scripts/moto-server.sh start|stop|status|env
#
# Runs moto (an S3 + Glacier emulator) on 127.0.0.1, on a free port, for the tests.
#   start   start the server (no-op when it already runs and answers); waits until it is ready (30 s at most)
#   stop    stop it (no-op when it is not running)
#   status  exit 0 when it runs and answers, 1 otherwise
#   env     print `export BAKTHAT_TEST_S3_ENDPOINT=http://127.0.0.1:PORT` (eval it); the same endpoint serves
#           Glacier. moto accepts any access key and does not check signatures.
#
# Needs the venv made by scripts/install-test-deps.sh. The server is scripts/moto_fast.py, which makes Glacier
# jobs complete after GLACIER_JOB_DELAY seconds (float, default 0.5) instead of moto's 2-10 s.
# `POST /moto-api/reset` on the endpoint wipes all of moto's state.
#
# Environment: BAKTHAT_VENV (default /opt/bakthat-venv), BAKTHAT_TEST_STATE (default /tmp/bakthat-test);
# pid, port and log are kept in $BAKTHAT_TEST_STATE/moto/.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${BAKTHAT_VENV:-/opt/bakthat-venv}
DIR=${BAKTHAT_TEST_STATE:-/tmp/bakthat-test}/moto
PID_FILE=${DIR}/pid
PORT_FILE=${DIR}/port
LOG=${DIR}/log
READY_TIMEOUT=30

log() { printf 'moto-server: %s\n' "$*" >&2; }
die() { printf 'moto-server: error: %s\n' "$*" >&2; exit 1; }

# The pid of our server if it is alive (checked against its command line, so a reused pid is not taken for it).
running_pid() {
    local pid cmdline
    [[ -f "${PID_FILE}" ]] || return 1
    pid=$(<"${PID_FILE}")
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline") || return 1
    [[ "${cmdline}" == *moto_fast.py* ]] || return 1
    printf '%s\n' "${pid}"
}

healthy() {
    [[ -f "${PORT_FILE}" ]] && running_pid >/dev/null &&
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$(<"${PORT_FILE}")/moto-api/"
}

free_port() {
    "${VENV}/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

stop() {
    local pid i
    if pid=$(running_pid); then
        kill "${pid}" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            log "pid ${pid} ignored SIGTERM for 10 s, killing it"
            kill -9 "${pid}" 2>/dev/null || true
        fi
        log "stopped (pid ${pid})"
    fi
    rm -f "${PID_FILE}" "${PORT_FILE}"
}

# One try on one port: 0 when ready, 2 when the port was taken meanwhile (retry), 1 on any other failure.
try_start() {
    local port=$1 pid i
    : >"${LOG}"
    GLACIER_JOB_DELAY=${GLACIER_JOB_DELAY:-0.5} nohup "${VENV}/bin/python" "${SCRIPTS}/moto_fast.py" \
        -H 127.0.0.1 -p "${port}" </dev/null >>"${LOG}" 2>&1 &
    pid=$!
    printf '%s\n' "${pid}" >"${PID_FILE}"
    printf '%s\n' "${port}" >"${PORT_FILE}"
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        if ! kill -0 "${pid}" 2>/dev/null; then
            rm -f "${PID_FILE}" "${PORT_FILE}"
            grep -q 'Address already in use' "${LOG}" && return 2
            return 1
        fi
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${port}/moto-api/" && return 0
        sleep 0.1
    done
    return 1
}

start() {
    local attempt rc port t0=${SECONDS}
    if healthy; then
        log "already running on 127.0.0.1:$(<"${PORT_FILE}") (pid $(<"${PID_FILE}"))"
        return 0
    fi
    [[ -x "${VENV}/bin/python" ]] || die "no venv at ${VENV}: run scripts/install-test-deps.sh first"
    stop # a leftover that does not answer
    mkdir -p "${DIR}"
    for attempt in 1 2 3; do
        port=$(free_port)
        rc=0
        try_start "${port}" || rc=$?
        case ${rc} in
            0)
                log "ready on 127.0.0.1:${port} (pid $(<"${PID_FILE}"), $((SECONDS - t0)) s, log ${LOG})"
                return 0
                ;;
            2) log "port ${port} was taken before moto bound it (attempt ${attempt}), trying another" ;;
            *) break ;;
        esac
    done
    log "moto did not become ready on 127.0.0.1:${port} within ${READY_TIMEOUT} s; last lines of ${LOG}:"
    tail -n 40 "${LOG}" >&2 || true
    stop
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) healthy ;;
    env)
        healthy || die "moto is not running: run scripts/moto-server.sh start"
        printf 'export BAKTHAT_TEST_S3_ENDPOINT=http://127.0.0.1:%s\n' "$(<"${PORT_FILE}")"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
esac

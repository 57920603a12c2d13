#!/usr/bin/env bash
# Usage: scripts/swift-aio.sh setup|start|stop|status|env
#
# An OpenStack Swift all-in-one on 127.0.0.1 for the tests: memcached, account, container, object and proxy
# servers, one device (a plain directory), replica count 1, tempauth and the S3 API (s3api) in the proxy.
#   setup   write /etc/swift/swift.conf (a path Swift hard-codes) and make the state directories; keeps data
#   start   run setup, pick five free ports, (re)generate configs and rings for them, start the servers and
#           wait (60 s at most) until the proxy's /healthcheck answers and test:tester can authenticate;
#           a no-op when everything already runs and answers
#   stop    stop every server (no-op when none runs)
#   status  exit 0 when the proxy runs and answers, 1 otherwise
#   env     print the `export BAKTHAT_TEST_SWIFT_*` lines for the running proxy (eval them):
#             BAKTHAT_TEST_SWIFT_AUTH=http://127.0.0.1:PORT/auth/v1.0, BAKTHAT_TEST_SWIFT_USER=test:tester,
#             BAKTHAT_TEST_SWIFT_KEY=testing, BAKTHAT_TEST_SWIFT_S3_ENDPOINT=http://127.0.0.1:PORT
#           (for s3api the access key is test:tester and the secret testing; it checks signatures).
# Accounts (tempauth): test:tester / testing (.admin of AUTH_test), admin:admin / admin (.reseller_admin).
#
# Needs the Debian packages from scripts/install-test-deps.sh. Environment: BAKTHAT_TEST_STATE (default
# /tmp/bakthat-test); configs, rings, data, pids and logs are kept in $BAKTHAT_TEST_STATE/swift/.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${BAKTHAT_TEST_STATE:-/tmp/bakthat-test}/swift
ETC=${DIR}/etc
NODE=${DIR}/srv/node
RUN=${DIR}/run
LOGS=${DIR}/log
PORTS_FILE=${RUN}/ports
SWIFT_CONF=/etc/swift/swift.conf
SERVERS=(account container object proxy)
READY_TIMEOUT=60
# Swift and its ring builder are Debian's, so they need Debian's interpreter, not one found first on PATH.
SYS_PYTHON=/usr/bin/python3

log() { printf 'swift-aio: %s\n' "$*" >&2; }
die() { printf 'swift-aio: error: %s\n' "$*" >&2; exit 1; }

# The pid recorded for $1 (memcached, account, ...) if that process is alive and is ours (its command line
# names our config or port, so a reused pid is not taken for it).
running_pid() {
    local name=$1 pid marker cmdline
    [[ -f "${RUN}/${name}.pid" ]] || return 1
    pid=$(<"${RUN}/${name}.pid")
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    if [[ ${name} == memcached ]]; then marker=memcached; else marker="${ETC}/${name}-server.conf"; fi
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline") || return 1
    [[ "${cmdline}" == *"${marker}"* ]] || return 1
    printf '%s\n' "${pid}"
}

load_ports() {
    [[ -f "${PORTS_FILE}" ]] || return 1
    # shellcheck source=/dev/null
    source "${PORTS_FILE}"
}

# Authenticates as test:tester and HEADs the account: proves proxy, memcached and the account server work.
auth_works() {
    local port=$1 headers url token
    headers=$(curl -sf -D - -o /dev/null --max-time 5 -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
        "http://127.0.0.1:${port}/auth/v1.0") || return 1
    url=$(printf '%s\n' "${headers}" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]torage-[Uu]rl: //p')
    token=$(printf '%s\n' "${headers}" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]uth-[Tt]oken: //p')
    [[ -n "${url}" && -n "${token}" ]] || return 1
    curl -sf -o /dev/null --max-time 5 -I -H "X-Auth-Token: ${token}" "${url}"
}

healthy() {
    local name
    load_ports || return 1
    for name in memcached "${SERVERS[@]}"; do
        running_pid "${name}" >/dev/null || return 1
    done
    # shellcheck disable=SC2153 # PROXY_PORT comes from the ports file
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${PROXY_PORT}/healthcheck"
}

setup() {
    local n
    for n in swift-ring-builder memcached swift-proxy-server swift-account-server swift-container-server \
        swift-object-server; do
        command -v "${n}" >/dev/null 2>&1 || die "${n} is missing: run scripts/install-test-deps.sh first"
    done
    mkdir -p "${ETC}" "${NODE}/d1" "${RUN}" "${LOGS}"
    local want
    want=$(printf '%s\n' \
        '# Written by bakthat scripts/swift-aio.sh (a test Swift all-in-one).' \
        '[swift-hash]' \
        'swift_hash_path_suffix = bakthat-test' \
        'swift_hash_path_prefix = bakthat-test' \
        '' \
        '[storage-policy:0]' \
        'name = Policy-0' \
        'default = yes')
    if [[ ! -f "${SWIFT_CONF}" || "$(<"${SWIFT_CONF}")" != "${want}" ]]; then
        mkdir -p "$(dirname "${SWIFT_CONF}")"
        printf '%s\n' "${want}" >"${SWIFT_CONF}"
        log "wrote ${SWIFT_CONF}"
    fi
}

# Five distinct free ports on 127.0.0.1, picked while all five sockets are held open.
pick_ports() {
    "${SYS_PYTHON}" -c 'import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()'
}

write_configs() {
    local user n port
    user=$(id -un)
    for n in account container object; do
        case ${n} in
            account) port=${ACCOUNT_PORT} ;;
            container) port=${CONTAINER_PORT} ;;
            object) port=${OBJECT_PORT} ;;
        esac
        cat >"${ETC}/${n}-server.conf" <<EOF
# Generated by scripts/swift-aio.sh; regenerated at every start.
[DEFAULT]
devices = ${NODE}
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = ${port}
workers = 0
user = ${user}
swift_dir = ${ETC}
log_custom_handlers = swift_log_hook.to_stderr

[pipeline:main]
pipeline = healthcheck ${n}-server

[app:${n}-server]
use = egg:swift#${n}

[filter:healthcheck]
use = egg:swift#healthcheck

[${n}-replicator]
[${n}-updater]
[${n}-auditor]
EOF
    done
    # No proxy-logging in the pipeline: its access logger ignores log_address and log_custom_handlers and, with
    # no /dev/log, sends UDP syslog from a socket bound to 0.0.0.0. Errors are still logged (to proxy.log).
    cat >"${ETC}/proxy-server.conf" <<EOF
# Generated by scripts/swift-aio.sh; regenerated at every start.
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${PROXY_PORT}
workers = 0
user = ${user}
swift_dir = ${ETC}
log_custom_handlers = swift_log_hook.to_stderr

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck cache listing_formats s3api tempurl tempauth copy slo dlo proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${MEMCACHED_PORT}

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
    # Rings embed the servers' ports. One device, so every partition lands on it and data survives new ports.
    # (One Python process instead of nine swift-ring-builder runs: about 1 s instead of about 10 s.)
    "${SYS_PYTHON}" - "${ETC}" "${ACCOUNT_PORT}" "${CONTAINER_PORT}" "${OBJECT_PORT}" <<'EOF'
import os, sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:5]):
    builder = RingBuilder(10, 1, 1)  # 2^10 partitions, 1 replica, min_part_hours 1
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port), "device": "d1", "weight": 100})
    builder.rebalance()
    builder.save(os.path.join(etc, name + ".builder"))
    builder.get_ring().save(os.path.join(etc, name + ".ring.gz"))
EOF
}

launch() {
    local name=$1 pid
    shift
    nohup env PYTHONPATH="${SCRIPTS}${PYTHONPATH:+:${PYTHONPATH}}" "$@" </dev/null >"${LOGS}/${name}.log" 2>&1 &
    pid=$!
    printf '%s\n' "${pid}" >"${RUN}/${name}.pid"
}

dump_logs() {
    local f
    for f in "${LOGS}"/*.log; do
        [[ -f "${f}" ]] || continue
        printf -- '--- last lines of %s ---\n' "${f}" >&2
        tail -n 20 "${f}" >&2 || true
    done
}

# One try with fresh ports: 0 when ready, 2 when a port was taken meanwhile (retry), 1 on any other failure.
try_start() {
    local ports name i dead
    read -r PROXY_PORT ACCOUNT_PORT CONTAINER_PORT OBJECT_PORT MEMCACHED_PORT <<<"$(pick_ports)"
    printf 'PROXY_PORT=%s\nACCOUNT_PORT=%s\nCONTAINER_PORT=%s\nOBJECT_PORT=%s\nMEMCACHED_PORT=%s\n' \
        "${PROXY_PORT}" "${ACCOUNT_PORT}" "${CONTAINER_PORT}" "${OBJECT_PORT}" "${MEMCACHED_PORT}" >"${PORTS_FILE}"
    write_configs
    launch memcached memcached -u "$(id -un)" -l 127.0.0.1 -p "${MEMCACHED_PORT}" -U 0 -m 64
    for name in "${SERVERS[@]}"; do
        launch "${name}" "swift-${name}-server" "${ETC}/${name}-server.conf"
    done
    ports="proxy ${PROXY_PORT}, account ${ACCOUNT_PORT}, container ${CONTAINER_PORT}, object ${OBJECT_PORT}"
    ports+=", memcached ${MEMCACHED_PORT}"
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        dead=
        # kill -0, not running_pid: a child that has not exec'd yet does not show its final command line.
        for name in memcached "${SERVERS[@]}"; do
            kill -0 "$(<"${RUN}/${name}.pid")" 2>/dev/null || dead+=" ${name}"
        done
        if [[ -n "${dead}" ]]; then
            log "exited during start:${dead} (ports: ${ports})"
            # (A swift server retries a taken port for 30 s before it exits with "Could not bind to".)
            grep -qs 'Address already in use\|failed to listen\|Could not bind to' "${LOGS}"/*.log && return 2
            return 1
        fi
        if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${PROXY_PORT}/healthcheck" &&
            curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${ACCOUNT_PORT}/healthcheck" &&
            curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${CONTAINER_PORT}/healthcheck" &&
            curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${OBJECT_PORT}/healthcheck" &&
            auth_works "${PROXY_PORT}"; then
            log "ready (${ports}; logs in ${LOGS})"
            return 0
        fi
        sleep 0.1
    done
    log "not ready within ${READY_TIMEOUT} s (ports: ${ports})"
    return 1
}

stop() {
    local name pid i stopped=()
    for name in proxy object container account memcached; do
        if pid=$(running_pid "${name}"); then
            kill "${pid}" 2>/dev/null || true
            stopped+=("${name}:${pid}")
        fi
    done
    for entry in "${stopped[@]}"; do
        pid=${entry#*:}
        for ((i = 0; i < 100; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            log "${entry%%:*} (pid ${pid}) ignored SIGTERM for 10 s, killing it"
            kill -9 "${pid}" 2>/dev/null || true
        fi
    done
    rm -f "${RUN}"/*.pid "${PORTS_FILE}"
    [[ ${#stopped[@]} -eq 0 ]] || log "stopped ${stopped[*]}"
}

start() {
    local attempt rc t0=${SECONDS}
    if healthy; then
        log "already running (proxy on 127.0.0.1:${PROXY_PORT})"
        return 0
    fi
    stop # leftovers of a broken or partial run
    setup
    for attempt in 1 2 3; do
        rc=0
        try_start || rc=$?
        case ${rc} in
            0)
                log "started in $((SECONDS - t0)) s"
                return 0
                ;;
            2)
                log "a port was taken before a server bound it (attempt ${attempt}), trying other ports"
                stop
                ;;
            *) break ;;
        esac
    done
    dump_logs
    stop
    die "swift did not start; see the logs above (all in ${LOGS})"
}

case "${1:-}" in
    setup) setup ;;
    start) start ;;
    stop) stop ;;
    status) healthy ;;
    env)
        healthy || die "swift is not running: run scripts/swift-aio.sh start"
        printf 'export BAKTHAT_TEST_SWIFT_AUTH=http://127.0.0.1:%s/auth/v1.0\n' "${PROXY_PORT}"
        printf 'export BAKTHAT_TEST_SWIFT_USER=test:tester\n'
        printf 'export BAKTHAT_TEST_SWIFT_KEY=testing\n'
        printf 'export BAKTHAT_TEST_SWIFT_S3_ENDPOINT=http://127.0.0.1:%s\n' "${PROXY_PORT}"
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
esac

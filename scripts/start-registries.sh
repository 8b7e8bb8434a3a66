#!/usr/bin/env bash
# Starts (or stops) the two local CNCF distribution registries the tests pull from:
#   plain  on $CRIUS_TEST_REGISTRY       (default 127.0.0.1:5000), no auth
#   auth   on $CRIUS_TEST_AUTH_REGISTRY  (default 127.0.0.1:5001), htpasswd basic auth
#          user $CRIUS_TEST_AUTH_USER / $CRIUS_TEST_AUTH_PASSWORD (crius / crius-pass)
# State lives under $CRIUS_TEST_DIR (default /var/lib/crius-test): registry-<name>/
# (storage), registry-<name>.yml (config), registry-<name>.log, registry-<name>.pid.
#
# Usage: scripts/start-registries.sh [start|stop|status]   (default: start)
# Idempotent: a registry that already answers GET /v2/ as expected is left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
. "$here/ci-env.sh"

REGISTRY_BIN="${CRIUS_REGISTRY_BIN:-$(command -v docker-registry || true)}"
WAIT_SECS="${CRIUS_REGISTRY_WAIT_SECS:-20}"

log() { printf 'start-registries: %s\n' "$*"; }
die() { printf 'start-registries: error: %s\n' "$*" >&2; exit 1; }

# HTTP status of GET /v2/ on host:port, or 000 when nothing answers.
v2_status() {
    curl -s -o /dev/null -w '%{http_code}' --connect-timeout 1 --max-time 2 \
        "http://$1/v2/" 2>/dev/null || true
}

# The pid recorded for a registry, only if that process is still a registry
# (a stale pid file may name a recycled pid).
live_pid() {
    local pidfile="$CRIUS_TEST_DIR/registry-$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "registry-$1.yml" || return 1
    echo "$pid"
}

write_config() {
    local name="$1" addr="$2" auth="$3" cfg="$CRIUS_TEST_DIR/registry-$1.yml" tmp
    tmp="$cfg.tmp.$$"
    {
        echo "# Written by scripts/start-registries.sh; rewritten on every start."
        echo "version: 0.1"
        echo "log:"
        echo "  level: info"
        echo "  fields:"
        echo "    service: crius-test-registry-$name"
        echo "storage:"
        echo "  filesystem:"
        echo "    rootdirectory: $CRIUS_TEST_DIR/registry-$name"
        echo "  delete:"
        echo "    enabled: true"
        echo "  maintenance:"
        echo "    uploadpurging:"
        echo "      enabled: false"
        echo "http:"
        echo "  addr: $addr"
        # A fixed secret silences the per-start random-secret warning; these
        # registries are loopback-only test fixtures.
        echo "  secret: crius-test-not-a-secret"
        if [ "$auth" = yes ]; then
            echo "auth:"
            echo "  htpasswd:"
            echo "    realm: crius-test"
            echo "    path: $CRIUS_TEST_DIR/registry-auth.htpasswd"
        fi
    } >"$tmp"
    mv -f "$tmp" "$cfg"
}

ensure_htpasswd() {
    local f="$CRIUS_TEST_DIR/registry-auth.htpasswd"
    if [ -s "$f" ] && htpasswd -vb "$f" "$CRIUS_TEST_AUTH_USER" "$CRIUS_TEST_AUTH_PASSWORD" >/dev/null 2>&1; then
        return 0
    fi
    command -v htpasswd >/dev/null 2>&1 || die "htpasswd not found (apt-get install apache2-utils)"
    htpasswd -Bbn "$CRIUS_TEST_AUTH_USER" "$CRIUS_TEST_AUTH_PASSWORD" >"$f.tmp.$$"
    mv -f "$f.tmp.$$" "$f"
    log "wrote $f for user $CRIUS_TEST_AUTH_USER"
}

# start_one NAME HOST:PORT AUTH(yes|no) EXPECTED_STATUS
start_one() {
    local name="$1" addr="$2" auth="$3" want="$4" status pid deadline
    status="$(v2_status "$addr")"
    if [ "$status" = "$want" ]; then
        log "$name registry already answering on $addr (GET /v2/ -> $status)"
        return 0
    fi
    if [ "$status" != 000 ]; then
        die "$addr answers GET /v2/ with $status, expected $want: something else holds the port"
    fi
    [ -n "$REGISTRY_BIN" ] || die "docker-registry not found (run scripts/install-deps.sh)"
    if pid="$(live_pid "$name")"; then
        # Started by us but not answering yet (or wedged): give it the same
        # bounded wait below rather than starting a second one.
        log "$name registry pid $pid exists but does not answer yet"
    else
        mkdir -p "$CRIUS_TEST_DIR/registry-$name"
        [ "$auth" = yes ] && ensure_htpasswd
        write_config "$name" "$addr" "$auth"
        # setsid + nohup: the registry must outlive the shell or test harness
        # that started it, and must not receive its terminal's signals.
        setsid nohup "$REGISTRY_BIN" serve "$CRIUS_TEST_DIR/registry-$name.yml" \
            >>"$CRIUS_TEST_DIR/registry-$name.log" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$CRIUS_TEST_DIR/registry-$name.pid"
        log "started $name registry on $addr (pid $pid, log $CRIUS_TEST_DIR/registry-$name.log)"
    fi
    deadline=$((SECONDS + WAIT_SECS))
    while [ "$SECONDS" -lt "$deadline" ]; do
        status="$(v2_status "$addr")"
        if [ "$status" = "$want" ]; then
            log "$name registry ready on $addr (GET /v2/ -> $status)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$CRIUS_TEST_DIR/registry-$name.log" >&2 || true
            die "$name registry (pid $pid) exited; see $CRIUS_TEST_DIR/registry-$name.log"
        fi
        sleep 0.1
    done
    tail -n 20 "$CRIUS_TEST_DIR/registry-$name.log" >&2 || true
    die "$name registry on $addr did not answer GET /v2/ with $want within ${WAIT_SECS}s (last: $status)"
}

stop_one() {
    local name="$1" pid
    if ! pid="$(live_pid "$name")"; then
        rm -f "$CRIUS_TEST_DIR/registry-$name.pid"
        log "$name registry not running (no live pid file)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        log "$name registry (pid $pid) did not stop on SIGTERM; killed"
    else
        log "stopped $name registry (pid $pid)"
    fi
    rm -f "$CRIUS_TEST_DIR/registry-$name.pid"
}

status_one() {
    local name="$1" addr="$2" pid
    pid="$(live_pid "$name" || echo none)"
    log "$name: $addr GET /v2/ -> $(v2_status "$addr"), pid $pid"
}

[ "$(id -u)" -eq 0 ] || [ -w "$(dirname "$CRIUS_TEST_DIR")" ] || [ -w "$CRIUS_TEST_DIR" ] \
    || die "cannot write $CRIUS_TEST_DIR (run as root or set CRIUS_TEST_DIR)"
command -v curl >/dev/null 2>&1 || die "curl not found (run scripts/install-deps.sh)"
mkdir -p "$CRIUS_TEST_DIR"

# Test binaries run in parallel may all call this script; serialise them so
# only one starts each registry and the rest see it answering.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CRIUS_TEST_DIR/.registries.lock"
    flock -w 60 9 || die "timed out waiting for $CRIUS_TEST_DIR/.registries.lock"
fi

case "${1:-start}" in
start)
    start_one plain "$CRIUS_TEST_REGISTRY" no 200
    start_one auth "$CRIUS_TEST_AUTH_REGISTRY" yes 401
    ;;
stop)
    stop_one plain
    stop_one auth
    ;;
status)
    status_one plain "$CRIUS_TEST_REGISTRY"
    status_one auth "$CRIUS_TEST_AUTH_REGISTRY"
    ;;
*)
    die "usage: $0 [start|stop|status]"
    ;;
esac

#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, starts the local registries, builds
# the test images, builds every binary, runs critest v1.36 once per runtime handler (runc, crun, runsc,
# youki), then unit and end-to-end tests (real daemon, runc, CNI plugins, registry). Root is required
# (namespaces, mounts, cgroups). Each phase prints how long it took.
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "${HOME:-/root}/.cargo/env" ] && . "${HOME:-/root}/.cargo/env"

. scripts/ci-env.sh
# A fresh clone gains nothing from incremental state, and it costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . /tmp | sed 's/^/test.sh: disk: /'
scripts/install-deps.sh
scripts/start-registries.sh start
python3 scripts/build-test-images.py

# Every binary first: the e2e tests run the daemon, the monitor and the pause binary from target/.
cargo build --workspace --bins --locked 2>&1 | tail -n 3

failed=()
# youki (the Rust OCI runtime; Debian has no package) is built from crates.io in the background while
# critest runs for the other handlers: the critest youki run and tests/youki.rs need it.
youki_log="$(mktemp /tmp/crius-install-youki.XXXXXX.log)"
scripts/install-youki.sh >"$youki_log" 2>&1 &
youki_pid=$!
wait_youki() {
    [ -n "$youki_pid" ] || return 0
    local rc=0
    wait "$youki_pid" || rc=$?
    youki_pid=""
    sed 's/^/test.sh: /' "$youki_log"
    rm -f "$youki_log"
    [ "$rc" = 0 ] || failed+=("install youki")
}
# critest v1.36 against the daemon, once per runtime handler (runc, crun, runsc, youki), each compared
# with its expectation file (tests/critest/expect-HANDLER.txt). CRIUS_CRITEST=0 skips it (e.g. while
# iterating on unit tests); CRIUS_CRITEST_HANDLERS picks handlers.
if [ "${CRIUS_CRITEST:-1}" != 0 ]; then
    read -r -a handlers <<<"${CRIUS_CRITEST_HANDLERS:-runc crun runsc youki}"
    for handler in "${handlers[@]}"; do
        [ "$handler" = youki ] && wait_youki
        start=$SECONDS
        bash scripts/critest.sh "$handler" || failed+=("critest $handler")
        echo "test.sh: critest $handler took $((SECONDS - start)) s"
    done
fi
wait_youki

# Coverage-guided fuzzing, bounded (CRIUS_FUZZ_SECS per target, 10 targets); CRIUS_FUZZ=0 skips it.
if [ "${CRIUS_FUZZ:-1}" != 0 ]; then
    start=$SECONDS
    CRIUS_FUZZ_SECS="${CRIUS_FUZZ_SECS:-10}" bash scripts/fuzz.sh || failed+=("fuzz")
    echo "test.sh: fuzzing took $((SECONDS - start)) s"
fi

df -h . /tmp | sed 's/^/test.sh: disk: /'
# Bounded: a hung test fails the run instead of eating CI's time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
start=$SECONDS
timeout --signal=KILL "${CRIUS_TEST_TIMEOUT:-2400}" cargo test --workspace --locked --no-fail-fast "$@" \
    || failed+=("cargo test")
echo "test.sh: cargo test took $((SECONDS - start)) s"

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi

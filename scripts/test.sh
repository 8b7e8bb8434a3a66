#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, starts the local registries, builds
# the test images, builds every binary, runs critest v1.36 once per runtime handler (runc, crun), then
# unit and end-to-end tests (real daemon, runc, CNI plugins, registry). Root is required (namespaces,
# mounts, cgroups).
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
# critest v1.36 against the daemon, once per runtime handler (runc, crun; youki with CRIUS_CRITEST_YOUKI=1), each compared with its expectation file
# (tests/critest/expect-HANDLER.txt). CRIUS_CRITEST=0 skips it (e.g. while iterating on unit tests).
if [ "${CRIUS_CRITEST:-1}" != 0 ]; then
    handlers=(runc crun)
    # youki (built from crates.io) is measured on demand, not gated: its own intermittent failures
    # (e.g. "failed to seal /proc/self/exe: EBUSY" on kill) would make the suite flaky.
    if [ "${CRIUS_CRITEST_YOUKI:-0}" = 1 ]; then
        scripts/install-youki.sh
        handlers+=(youki)
    fi
    for handler in "${handlers[@]}"; do
        bash scripts/critest.sh "$handler" || failed+=("critest $handler")
    done
fi

# Coverage-guided fuzzing, bounded (CRIUS_FUZZ_SECS per target, 10 targets); CRIUS_FUZZ=0 skips it.
if [ "${CRIUS_FUZZ:-1}" != 0 ]; then
    CRIUS_FUZZ_SECS="${CRIUS_FUZZ_SECS:-10}" bash scripts/fuzz.sh || failed+=("fuzz")
fi

df -h . /tmp | sed 's/^/test.sh: disk: /'
# Bounded: a hung test fails the run instead of eating CI's time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
timeout --signal=KILL "${CRIUS_TEST_TIMEOUT:-2400}" cargo test --workspace --locked --no-fail-fast "$@" \
    || failed+=("cargo test")

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi

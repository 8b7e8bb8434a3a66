#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, starts the local registries, builds
# the test images, builds every binary, then runs unit and end-to-end tests (real daemon, runc, CNI
# plugins, registry). Root is required (namespaces, mounts, cgroups).
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "${HOME:-/root}/.cargo/env" ] && . "${HOME:-/root}/.cargo/env"

. scripts/ci-env.sh
scripts/install-deps.sh
scripts/start-registries.sh start
python3 scripts/build-test-images.py

# Every binary first: the e2e tests run the daemon, the monitor and the pause binary from target/.
cargo build --workspace --bins --locked 2>&1 | tail -n 3

# Bounded: a hung test fails the run instead of eating CI's time.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
timeout --signal=KILL "${CRIUS_TEST_TIMEOUT:-2400}" cargo test --workspace --locked --no-fail-fast "$@"

#!/usr/bin/env bash
# Builds youki (the Rust OCI runtime, from crates.io) into $CRIUS_TEST_DIR/youki/bin/youki for the youki
# runtime-handler tests, with the cgroup v1 and v2 drivers and seccomp (Debian packages no youki).
# Idempotent: a present binary of the pinned version is kept. Needs libseccomp-dev and pkg-config
# (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ci-env.sh
version="${CRIUS_YOUKI_VERSION:-0.7.0}"
dest="$CRIUS_TEST_DIR/youki"
bin="$dest/bin/youki"
# The output is taken whole first: `grep -q` closing the pipe early would fail it under pipefail.
if [ -x "$bin" ] && grep -qx "youki version: $version" <<<"$("$bin" --version 2>/dev/null || true)"; then
    echo "install-youki: youki $version present ($bin)"
    exit 0
fi
echo "install-youki: building youki $version from crates.io (cgroup v1+v2, seccomp; unoptimised)"
# A test tool, not a production runtime: without optimisation (opt-level 0, no debug info) it builds
# in well under half the time on CI's 2 cores (about 1.5 min instead of 4), and critest and
# tests/youki.rs give the same results with it. CARGO_PROFILE_RELEASE_OPT_LEVEL=3 builds the usual way.
CARGO_PROFILE_RELEASE_OPT_LEVEL="${CARGO_PROFILE_RELEASE_OPT_LEVEL:-0}" \
CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-false}" \
CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install youki --version "$version" --locked --no-default-features --features v1,v2,seccomp \
    --root "$dest" --quiet
# Whole output first (youki panics on a closed stdout, which `| head` would make fail the script).
built="$("$bin" --version)"
echo "install-youki: built ${built%%$'\n'*} ($bin)"

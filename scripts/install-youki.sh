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
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "youki version: $version\$"; then
    echo "install-youki: youki $version present ($bin)"
    exit 0
fi
echo "install-youki: building youki $version from crates.io (cgroup v1+v2, seccomp)"
cargo install youki --version "$version" --locked --no-default-features --features v1,v2,seccomp \
    --root "$dest" --quiet
"$bin" --version | head -n 1

#!/usr/bin/env bash
# Installs what is missing, builds crius in release mode and runs the daemon with its embedded defaults
# (socket /run/crius/crius.sock, runc, CNI from /etc/cni/net.d or the built-in bridge crius0).
# Extra arguments go to `crius daemon`, e.g. scripts/run.sh --log-level debug
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "${HOME:-/root}/.cargo/env" ] && . "${HOME:-/root}/.cargo/env"
CRIUS_SKIP_MODULES= scripts/install-deps.sh
cargo build --release --workspace --bins --locked 2>&1 | tail -n 3
exec target/release/crius daemon "$@"

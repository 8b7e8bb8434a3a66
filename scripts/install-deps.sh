#!/usr/bin/env bash
# Installs the Debian packages that crius' build and integration tests rely on.
#
# Idempotent: apt-get update/install only run when a package is actually missing,
# so a second run costs a few dpkg-query calls. Safe to run on a fresh Debian 12
# machine (as root) and repeatedly on a developer machine.
#
# Usage: scripts/install-deps.sh            # install what is missing, load modules
#        CRIUS_SKIP_MODULES=1 scripts/install-deps.sh   # do not touch kernel modules
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# gcc and libc6-dev build the static stand-ins in scripts/test-images (critest's web-server, pause and
# nonewprivs images); xz-utils unpacks critest/crictl from ../shared/tools/cri-tools; criu is probed by
# the checkpoint-discovery test (it installs here but cannot start on this kernel: both cases are covered);
# libseccomp-dev and pkg-config build youki (scripts/install-youki.sh); apparmor brings apparmor_parser,
# which compiles the generated default profile in a test even where the kernel has no AppArmor.
# The dynamic `busybox` package is deliberately absent: it conflicts with
# busybox-static (which tests use on the host). The image builder fetches the
# dynamic one with `apt-get download` instead, without installing it.
PACKAGES=(
    runc crun containernetworking-plugins docker-registry busybox-static
    iptables iproute2 apache2-utils zstd python3 ca-certificates util-linux
    procps kmod curl skopeo
    gcc libc6-dev xz-utils criu libseccomp-dev pkg-config apparmor
    # debootstrap builds the systemd test node's rootfs (scripts/build-systemd-node.sh).
    debootstrap
    # gVisor: the runsc runtime handler (a sandbox per pod).
    runsc
    # libfuzzer-sys compiles libFuzzer (C++) for scripts/fuzz.sh.
    g++
)

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (apt-get install, modprobe)"
fi
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script targets Debian 12"

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages already installed"
else
    log "missing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    apt-get update -qq
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    for p in "${missing[@]}"; do
        installed "$p" || die "package $p is still not installed after apt-get install"
    done
    log "installed: ${missing[*]}"
fi

if installed busybox; then
    log "warning: the dynamic 'busybox' package is installed; it conflicts with busybox-static"
fi

if [ -z "${CRIUS_SKIP_MODULES:-}" ]; then
    if command -v modprobe >/dev/null 2>&1; then
        for m in overlay br_netfilter veth; do
            # Inside containers or on kernels with these built in, modprobe fails
            # harmlessly; the tests that need a module detect it themselves.
            if modprobe "$m" 2>/dev/null; then
                log "module $m: loaded"
            elif grep -qw "^$m" /proc/modules 2>/dev/null || [ -d "/sys/module/$m" ]; then
                log "module $m: already present"
            else
                log "module $m: could not load (ignored)"
            fi
        done
    else
        log "modprobe not found: skipping kernel modules"
    fi
fi

if command -v cargo >/dev/null 2>&1; then
    log "cargo: $(cargo --version)"
elif [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    log "cargo found at ${HOME:-/root}/.cargo/bin/cargo but not on PATH:"
    log "  run: . \"\$HOME/.cargo/env\"   (or add ~/.cargo/bin to PATH)"
else
    log "cargo NOT found. Install the Rust toolchain with rustup:"
    log "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    log "  . \"\$HOME/.cargo/env\""
    log "(or: apt-get install cargo rustc, if the Debian version is recent enough for the workspace)"
fi
log "done"

#!/usr/bin/env bash
# Builds the root filesystem of a "systemd node": Debian 12 with systemd as its init, runc and the CNI
# plugins, in which the e2e test crates/crius/tests/systemd_node.rs boots systemd as PID 1 (in new
# namespaces, as kind node images do) and runs crius with the systemd cgroup driver.
#
# Idempotent: the rootfs is cached in $CRIUS_SYSTEMD_NODE (default /var/lib/crius-test/systemd-node) and
# only rebuilt when its stamp is missing or the package list changed. The mirror is the first Debian
# URI of the host's apt sources (override with CRIUS_DEBIAN_MIRROR).
set -euo pipefail

log() { printf 'build-systemd-node: %s\n' "$*"; }
die() { printf 'build-systemd-node: error: %s\n' "$*" >&2; exit 1; }

NODE=${CRIUS_SYSTEMD_NODE:-/var/lib/crius-test/systemd-node}
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus,runc,iproute2,procps,containernetworking-plugins,ca-certificates
STAMP_WANT="$SUITE $INCLUDE v1"

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap)"

if [ -f "$NODE/.crius-node-stamp" ] && [ "$(cat "$NODE/.crius-node-stamp")" = "$STAMP_WANT" ]; then
    log "cached: $NODE"
    exit 0
fi

mirror=${CRIUS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '(URIs:|^deb)[[:space:]]+[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -n1 || true)
fi
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
log "mirror $mirror"

tmp="$NODE.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$NODE")"
start=$(date +%s)
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" \
    > "$(dirname "$NODE")/systemd-node-debootstrap.log" 2>&1 \
    || { tail -n 30 "$(dirname "$NODE")/systemd-node-debootstrap.log" >&2; die "debootstrap failed"; }

# Units that make no sense in a test node (no consoles, no hardware, no network config).
for u in getty@tty1.service serial-getty@.service systemd-networkd.service systemd-resolved.service \
        systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
        fstrim.timer man-db.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer; do
    ln -sf /dev/null "$tmp/etc/systemd/system/$u"
done
echo crius-node > "$tmp/etc/hostname"
: > "$tmp/etc/machine-id"
mkdir -p "$tmp/opt/crius/bin" "$tmp/etc/crius" "$tmp/run/crius-out"
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* || true
echo "$STAMP_WANT" > "$tmp/.crius-node-stamp"

rm -rf "$NODE"
mv "$tmp" "$NODE"
log "built $NODE in $(( $(date +%s) - start ))s ($(du -sh "$NODE" | cut -f1))"

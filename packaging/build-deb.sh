#!/usr/bin/env bash
# Builds the crius .deb with dpkg-deb from already-built binaries.
#
#   packaging/build-deb.sh [--bin-dir DIR] [--out DIR] [--compress xz|gzip|none]
#
# DIR defaults to target/release (`cargo build --release --workspace --bins` first). The package holds
# /usr/bin/{crius,crius-monitor,crius-pause} (stripped), the systemd unit, and /etc/crius/crius.toml, the
# default config as `crius config default` prints it (a conffile: upgrades keep local edits).
#
# Why not `cargo deb`: cargo-deb is a crates.io tool that must be compiled first (several minutes on the
# 2-core CI machine, every fresh CI run); this script needs only dpkg-deb, which every Debian has, and
# produces the same layout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bin_dir="$repo/target/release"
out="$repo/target/deb"
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --compress) compress="$2"; shift 2 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

for b in crius crius-monitor crius-pause; do
    [ -x "$bin_dir/$b" ] || { echo "build-deb.sh: $bin_dir/$b missing (build the binaries first)" >&2; exit 1; }
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
[ -n "$version" ] || { echo "build-deb.sh: no version in $repo/Cargo.toml" >&2; exit 1; }
arch="$(dpkg --print-architecture)"

mkdir -p "$out"
stage="$(mktemp -d "$out/stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/crius" \
    "$stage/usr/share/doc/crius"
for b in crius crius-monitor crius-pause; do
    objcopy --strip-debug "$bin_dir/$b" "$stage/usr/bin/$b"
    chmod 0755 "$stage/usr/bin/$b"
done
install -m 0644 "$here/crius.service" "$stage/lib/systemd/system/crius.service"
"$bin_dir/crius" config default > "$stage/etc/crius/crius.toml"
chmod 0644 "$stage/etc/crius/crius.toml"
install -m 0644 "$repo/README.md" "$stage/usr/share/doc/crius/README.md"

installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: crius
Version: $version
Architecture: $arch
Maintainer: crius developers <crius@localhost>
Installed-Size: $installed_size
Depends: runc | crun, containernetworking-plugins, libc6
Recommends: apparmor
Section: admin
Priority: optional
Description: Kubernetes CRI container runtime
 crius serves the Kubernetes Container Runtime Interface on a unix socket
 (/run/crius/crius.sock) and runs Linux containers through OCI runtimes
 (runc, crun).
CONTROL
echo /etc/crius/crius.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
POSTINST
chmod 0755 "$stage/DEBIAN/postinst"

deb="$out/crius_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >/dev/null
echo "$deb"

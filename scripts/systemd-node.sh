#!/usr/bin/env bash
# Boots a "systemd node": the Debian rootfs made by scripts/build-systemd-node.sh, with systemd as PID 1
# in new PID, mount, UTS, IPC and cgroup namespaces (as kind node images run), sharing the host's network
# namespace so the node reaches the test registries on 127.0.0.1. The rootfs is an overlay over the cached
# one (the cache stays clean); each cgroup hierarchy gets a cgroup of its own for the node, which the node
# sees as its root (cgroupns) and owns entirely.
#
#   systemd-node.sh start DIR BIN_DIR  boot a node whose state lives in DIR; BIN_DIR appears at /opt/crius/bin,
#                                      DIR/out at /crius-out (sockets the host talks to). With
#                                      CRIUS_NODE_SELINUX_MARKER=1 the node has /sys/fs/selinux/enforce
#                                      but no selinuxfs (crius labels; nothing enforces)
#   systemd-node.sh exec DIR CMD...    run CMD inside the node (all its namespaces)
#   systemd-node.sh stop DIR           kill everything in the node, remove its cgroups, mounts and DIR
set -euo pipefail

die() { printf 'systemd-node: error: %s\n' "$*" >&2; exit 1; }
ROOTFS=${CRIUS_SYSTEMD_NODE:-/var/lib/crius-test/systemd-node}

# Mount points of the v1 hierarchies and the v2 one, with their mount options.
hierarchies() {
    # Only the host's own hierarchies under /sys/fs/cgroup (other mounts of a hierarchy are not ours).
    sed -n 's/^[0-9]* [0-9]* [0-9:]* \/ \(\/sys\/fs\/cgroup\/[^ ]*\) .* - \(cgroup2\?\) [^ ]* \([^ ]*\)$/\1 \2 \3/p' \
        /proc/self/mountinfo
}

cgname() { printf 'crius-sdnode-%s' "$(basename "$1")"; }

node_pid() { cat "$1/pid1" 2>/dev/null || true; }

cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || die "usage: $0 start|exec|stop DIR ..."

case "$cmd" in
start)
    bindir=${3:?BIN_DIR}
    [ -f "$ROOTFS/.crius-node-stamp" ] || die "$ROOTFS missing: run scripts/build-systemd-node.sh"
    dir=$(realpath -m "$dir")
    mkdir -p "$dir"/{upper,work,merged,out,crius-root}
    cg=$(cgname "$dir")
    while read -r mnt fstype opts; do
        mkdir -p "$mnt/$cg"
        if [ -f "$mnt/cpuset.cpus" ] && [ "$fstype" = cgroup ]; then
            cat "$mnt/cpuset.cpus" > "$mnt/$cg/cpuset.cpus"
            cat "$mnt/cpuset.mems" > "$mnt/$cg/cpuset.mems"
        fi
    done < <(hierarchies)
    hierarchies > "$dir/hierarchies"
    cat > "$dir/init.sh" <<INIT
#!/bin/sh
# PID 1 of the node's PID namespace until it execs systemd.
set -e
m=$dir/merged
mount -t overlay overlay -o lowerdir=$ROOTFS,upperdir=$dir/upper,workdir=$dir/work \$m
mount -t proc proc \$m/proc
mount -t sysfs sysfs \$m/sys
mount -t tmpfs -o mode=755 cgroup \$m/sys/fs/cgroup
while read -r mnt fstype opts; do
    t=\$m/sys/fs/cgroup/\$(basename \$mnt)
    mkdir -p \$t
    if [ "\$fstype" = cgroup2 ]; then
        mount -t cgroup2 cgroup2 \$t
    else
        o=\$(echo "\$opts" | tr , '\n' | grep -Ev '^(rw|ro)\$' | paste -sd, -)
        case "\$o" in name=*) o="none,\$o" ;; esac
        mount -t cgroup -o "\$o" cgroup \$t
    fi
done < $dir/hierarchies
if [ -n "${CRIUS_NODE_SELINUX_MARKER:-}" ]; then
    # Only /sys/fs/selinux/enforce, no selinuxfs: crius' probe sees an SELinux host and labels, while
    # systemd and runc (which check for selinuxfs itself) see none and run unconfined.
    mkdir -p \$m/run/cg
    mount --move \$m/sys/fs/cgroup \$m/run/cg
    mount -t tmpfs -o mode=755 sysfs-fs \$m/sys/fs
    mkdir -p \$m/sys/fs/cgroup \$m/sys/fs/selinux
    mount --move \$m/run/cg \$m/sys/fs/cgroup
    echo 1 > \$m/sys/fs/selinux/enforce
fi
mount -t tmpfs -o mode=755 dev \$m/dev
for d in null zero full random urandom tty; do
    touch \$m/dev/\$d
    mount --bind /dev/\$d \$m/dev/\$d
done
mkdir -p \$m/dev/pts \$m/dev/shm \$m/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts \$m/dev/pts
ln -s pts/ptmx \$m/dev/ptmx
mount -t tmpfs -o mode=1777 shm \$m/dev/shm
mount -t mqueue mqueue \$m/dev/mqueue
ln -s /proc/self/fd \$m/dev/fd
ln -s /proc/self/fd/0 \$m/dev/stdin
ln -s /proc/self/fd/1 \$m/dev/stdout
ln -s /proc/self/fd/2 \$m/dev/stderr
mkdir -p \$m/opt/crius/bin \$m/crius-out \$m/var/lib/crius
mount --bind $bindir \$m/opt/crius/bin
mount -o remount,bind,ro \$m/opt/crius/bin
mount --bind $dir/out \$m/crius-out
mount --bind $dir/crius-root \$m/var/lib/crius
cd \$m
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=crius-node PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --log-level=info
INIT
    chmod +x "$dir/init.sh"
    (
        while read -r mnt fstype opts; do
            echo "$BASHPID" > "$mnt/$cg/cgroup.procs"
        done < "$dir/hierarchies"
        exec setsid unshare --mount --pid --uts --ipc --cgroup --fork --propagation private \
            -- "$dir/init.sh" </dev/null >"$dir/console.log" 2>&1
    ) &
    outer=$!
    echo "$outer" > "$dir/unshare.pid"
    # The node's PID 1 is unshare's only child.
    for _ in $(seq 1 200); do
        child=$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | awk '{print $1}')
        if [ -n "$child" ]; then echo "$child" > "$dir/pid1"; break; fi
        sleep 0.05
    done
    [ -s "$dir/pid1" ] || { cat "$dir/console.log" >&2; die "node did not start"; }
    # Up once systemd runs as PID 1 and answers on its private socket (systemctl works from then on).
    pid=$(cat "$dir/pid1")
    for _ in $(seq 1 300); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && [ -S "/proc/$pid/root/run/systemd/private" ]; then
            exit 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/console.log" >&2
    die "systemd did not come up in the node"
    ;;
exec)
    shift 2
    pid=$(node_pid "$dir")
    [ -n "$pid" ] || die "no node in $dir"
    exec nsenter -t "$pid" -m -u -i -p -C -r -w -- "$@"
    ;;
stop)
    pid=$(node_pid "$dir")
    cg=$(cgname "$dir")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    outer=$(cat "$dir/unshare.pid" 2>/dev/null || true)
    # Everything in the node's cgroups (the PID namespace dies with its PID 1; stragglers are killed).
    for _ in $(seq 1 100); do
        left=0
        while read -r mnt fstype opts; do
            [ -d "$mnt/$cg" ] || continue
            for f in $(find "$mnt/$cg" -name cgroup.procs); do
                for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; left=1; done
            done
        done < <(hierarchies)
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    [ -n "$outer" ] && { kill -9 "$outer" 2>/dev/null || true; }
    while read -r mnt fstype opts; do
        [ -d "$mnt/$cg" ] || continue
        find "$mnt/$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$mnt/$cg" ] && die "cgroup $mnt/$cg remains"
    done < <(hierarchies)
    # The node's mounts lived in its own mount namespace, gone with its last process.
    if grep -q " $(realpath -m "$dir")/" /proc/self/mountinfo; then die "mounts under $dir remain"; fi
    rm -rf "$dir"
    ;;
*)
    die "unknown command $cmd"
    ;;
esac

#!/usr/bin/env bash
# Runs critest v1.36 (the CRI validation suite, static build from ../shared/tools/cri-tools) against a
# fresh crius daemon with one runtime handler as its default, then compares the per-spec results with
# tests/critest/expect-<handler>.txt. Fails on any spec that fails or skips without being listed there,
# and on any listed spec that now passes (the file only ever shrinks).
#
# Usage: scripts/critest.sh HANDLER [extra critest args]      HANDLER: runc | crun | youki | runsc
# Needs: root, the test registry and images (scripts/start-registries.sh, scripts/build-test-images.py),
# the debug binaries (cargo build --workspace --bins). Everything it starts or mounts is undone on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
. scripts/ci-env.sh

handler="${1:?usage: scripts/critest.sh HANDLER [critest args]}"
shift
expect="tests/critest/expect-$handler.txt"
[ -f "$expect" ] || { echo "critest: no expectation file $expect" >&2; exit 2; }
tools="${CRIUS_CRI_TOOLS:-$root_dir/../shared/tools/cri-tools}"
bin_dir="${CRIUS_BIN_DIR:-$root_dir/target/debug}"
[ -x "$bin_dir/crius" ] || { echo "critest: $bin_dir/crius missing (cargo build --workspace --bins)" >&2; exit 2; }

log() { printf 'critest[%s]: %s\n' "$handler" "$*"; }

# The static tools, unpacked once and checked against the README's digests.
tool_dir="$CRIUS_TEST_DIR/cri-tools"
mkdir -p "$tool_dir"
unpack() {
    local name="$1" sum="$2"
    if ! echo "$sum  $tool_dir/$name" | sha256sum -c --quiet - >/dev/null 2>&1; then
        xz -dc "$tools/$name.xz" > "$tool_dir/$name.tmp"
        chmod +x "$tool_dir/$name.tmp"
        mv "$tool_dir/$name.tmp" "$tool_dir/$name"
        echo "$sum  $tool_dir/$name" | sha256sum -c --quiet - || { echo "critest: $name digest mismatch" >&2; exit 2; }
    fi
}
unpack critest a6eae80cf271b30a7f8ad7f78065faf055734c825f3deeb6c1702a08575d7591
unpack crictl 66810d0c5748b3a3db91116dad75dc3f9e4b0aeddb8b3f08928268885db62b20

work="$(mktemp -d /tmp/crius-critest-"$handler".XXXXXX)"
# Searchable by others (not listable): containers in a user namespace reach their rootfs through it.
chmod 711 "$work"
daemon_pid=""
hugetlb_mnt=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        # Whatever critest left behind goes first, while the daemon can still tear it down.
        "$tool_dir/crictl" --config "$work/crictl.yaml" rmp -fa >/dev/null 2>&1
        kill -TERM "$daemon_pid"
        for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null
    fi
    # Monitors and pause processes of anything not removed above.
    pkill -KILL -f "$work/" 2>/dev/null
    if [ -n "$hugetlb_mnt" ]; then
        # Cgroups made in it during the run would keep the v1 hierarchy alive (and hugetlb out of
        # cgroup2) after the unmount: remove them, deepest first (retrying while killed processes are
        # reaped), then unmount — before the lazy unmount below, which would detach it first.
        for _ in $(seq 20); do
            find "$hugetlb_mnt" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
            [ -z "$(find "$hugetlb_mnt" -mindepth 1 -type d -print -quit)" ] && break
            sleep 0.1
        done
        umount "$hugetlb_mnt" && rmdir "$hugetlb_mnt"
        # A v1 hierarchy that still had a cgroup when its last mount went (a namespace of a killed
        # container held a copy of the mount) stays alive unmounted, and hugetlb stays out of cgroup2.
        # Mount it again, remove what is left, unmount: until hugetlb is back in cgroup2.
        for _ in 1 2 3 4 5; do
            for _ in $(seq 30); do grep -qw hugetlb "$unified/cgroup.controllers" && break; sleep 0.1; done
            grep -qw hugetlb "$unified/cgroup.controllers" && break
            again="$(mktemp -d /tmp/crius-hugetlb.XXXXXX)"
            if mount -t cgroup -o hugetlb cgroup "$again"; then
                find "$again" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
                umount "$again"
            fi
            rmdir "$again"
        done
        grep -qw hugetlb "$unified/cgroup.controllers" \
            || log "WARNING: hugetlb did not return to cgroup2 ($unified/cgroup.controllers)"
    fi
    # Mounts under the work dir (overlay rootfs, namespace pins, shm), deepest first.
    awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    if [ "$rc" -eq 0 ] || [ -z "${CRIUS_KEEP_FAILED:-}" ]; then
        rm -rf "$work"
    else
        log "kept $work (daemon.log, report.json)"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

# crun 1.8.1 refuses a v1 host whose cgroup2 mount holds a controller. Mounting a v1 hugetlb hierarchy
# moves hugetlb out of cgroup2; the trap unmounts it again (it returns to cgroup2 by itself).
unified=/sys/fs/cgroup/unified
if [ "$handler" = crun ] && [ -r "$unified/cgroup.controllers" ] && [ -n "$(cat "$unified/cgroup.controllers")" ]; then
    hugetlb_mnt="$work/hugetlb"
    mkdir "$hugetlb_mnt"
    mount -t cgroup -o hugetlb cgroup "$hugetlb_mnt"
    for _ in $(seq 50); do [ -z "$(cat "$unified/cgroup.controllers")" ] && break; sleep 0.1; done
    log "released hugetlb from cgroup2 for crun (mounted at $hugetlb_mnt)"
fi

# Registry hosts critest pulls from, mirrored to the local test registry (which serves every image
# under its upstream repository path: scripts/build-test-images.py).
for host in registry.k8s.io k8s.gcr.io gcr.io docker.io public.ecr.aws "$CRIUS_TEST_REGISTRY"; do
    mkdir -p "$work/certs.d/$host"
    printf 'server = "http://%s"\n' "$CRIUS_TEST_REGISTRY" > "$work/certs.d/$host/hosts.toml"
done
mkdir -p "$work/cni"
cat > "$work/crius.toml" <<TOML
root = "$work/root"
state = "$work/state"
listen = "$work/crius.sock"
registry_config_dir = "$work/certs.d"
cni_conf_dir = "$work/cni"
cni_bin_dir = ["$CRIUS_TEST_CNI_BIN_DIR"]
default_runtime = "$handler"
TOML
# youki is built from crates.io by scripts/install-youki.sh into the test dir, not installed system-wide.
if [ "$handler" = youki ]; then
    youki="${CRIUS_YOUKI:-$CRIUS_TEST_DIR/youki/bin/youki}"
    [ -x "$youki" ] || youki="$(command -v youki || true)"
    [ -n "$youki" ] || { log "no youki binary (scripts/install-youki.sh)"; exit 1; }
    printf '[runtimes.youki]\npath = "%s"\n' "$youki" >> "$work/crius.toml"
fi
cat > "$work/crictl.yaml" <<YAML
runtime-endpoint: unix://$work/crius.sock
image-endpoint: unix://$work/crius.sock
timeout: 60
YAML
printf 'defaultTestContainerImage: registry.k8s.io/e2e-test-images/busybox:1.29-2\nwebServerTestImage: registry.k8s.io/e2e-test-images/nginx:1.14-2\n' > "$work/images.yaml"

"$bin_dir/crius" daemon --config "$work/crius.toml" > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$work/crius.sock" ] && break; kill -0 "$daemon_pid" || break; sleep 0.1; done
[ -S "$work/crius.sock" ] || { log "daemon did not start"; tail -n 30 "$work/daemon.log" >&2; exit 1; }
# The handler must be the one in use, and ready: a critest run against a fallback proves nothing.
"$tool_dir/crictl" --config "$work/crictl.yaml" info > "$work/info.json"
python3 - "$work/info.json" "$handler" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
conds = {c["type"]: c for c in info.get("status", {}).get("conditions", [])}
bad = [f'{t}: {c.get("reason")} {c.get("message")}' for t, c in conds.items() if not c.get("status")]
if bad:
    sys.exit("critest: daemon not ready: " + "; ".join(bad))
handler = sys.argv[2]
if info.get("config", {}).get("default_runtime") != handler:
    sys.exit(f"critest: default_runtime is {info.get('config', {}).get('default_runtime')!r}, not {handler!r}")
h = (info.get("runtimeHandlers") or {}).get(handler) or {}
if not h.get("available"):
    sys.exit(f"critest: handler {handler} is not available: {h}")
print(f"critest: default handler {handler}: {h.get('version')} ({h.get('binary')})")
PY

log "running critest ($(date -u +%T))"
set +e
timeout --signal=KILL "${CRIUS_CRITEST_TIMEOUT:-900}" "$tool_dir/critest" \
    -runtime-endpoint "unix://$work/crius.sock" -image-endpoint "unix://$work/crius.sock" \
    -config "$work/crictl.yaml" -test-images-file "$work/images.yaml" \
    -ginkgo.no-color -ginkgo.json-report "$work/report.json" -ginkgo.junit-report "$work/junit.xml" \
    "$@" > "$work/critest.log" 2>&1
critest_rc=$?
set -e
log "critest exited $critest_rc ($(date -u +%T)); log: $work/critest.log"
out="${CRIUS_CRITEST_OUT:-$CRIUS_TEST_DIR/critest-results}"
mkdir -p "$out"
cp "$work/critest.log" "$out/critest-$handler.log"
[ -f "$work/report.json" ] && cp "$work/report.json" "$out/report-$handler.json"
cp "$work/daemon.log" "$out/daemon-$handler.log"
if [ ! -f "$work/report.json" ]; then
    tail -n 40 "$work/critest.log" >&2
    log "no report written"
    exit 1
fi
python3 scripts/critest-check.py "$work/report.json" "$expect" "$handler" || {
    grep -n -A12 '\[FAILED\]\|\[FAIL\]' "$work/critest.log" | head -n 150 >&2
    exit 1
}

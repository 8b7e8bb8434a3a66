#!/usr/bin/env bash
# crius vs containerd, one run on this machine (issue 16): starts Debian's containerd 1.6 with a config of
# its own (own root/state dirs, own socket, own CNI conf dir with bridge cni0-ctd on 10.99.0.0/16, runc),
# pushes a multi-layer pull image (gzip and zstd layers, a few hundred MiB) to the local plain registry
# under crius-bench/pull (once; reused when present), runs `crius-bench --compare` against both, prints the
# ratios table, then stops and removes everything it started.
#
# Usage: scripts/bench-vs-containerd.sh [crius-bench args, e.g. --runs 20 --churn 200]
# Needs: a release build (cargo build --release -p crius --bins -p crius-monitor), containerd
# (apt-get install containerd), the test registry on 127.0.0.1:5000 with scripts/build-test-images.py run.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CRIUS_BENCH_BIN:-$here/target/release}
registry=${CRIUS_TEST_REGISTRY:-127.0.0.1:5000}
pull_repo=crius-bench/pull
work=$(mktemp -d /tmp/crius-vs-ctd.XXXXXX)
bridge=cni0-ctd
subnet=10.99.0.0/16
ctd_pid=""

log() { echo "bench-vs-containerd: $*" >&2; }

cleanup() {
    set +e
    if [ -n "$ctd_pid" ] && kill -0 "$ctd_pid" 2>/dev/null; then
        kill -TERM "$ctd_pid"
        for _ in $(seq 50); do kill -0 "$ctd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$ctd_pid" 2>/dev/null
    fi
    # Shims (and their containers) of this containerd only: their command line names its socket.
    for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $work/containerd.sock" || true); do
        kill -KILL "$p" 2>/dev/null
    done
    sleep 0.3
    # Mounts under the work dir (sandbox shm, overlay rootfs), deepest first.
    awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    # Network namespaces containerd made for our pods, the bridge and masquerade rules on our subnet.
    ip link del "$bridge" 2>/dev/null
    if command -v iptables >/dev/null; then
        iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "$subnet" | grep -o 'CNI-[0-9a-f]*' | sort -u |
            while read -r ch; do
                iptables -t nat -S POSTROUTING | grep -F -- "-j $ch" | sed 's/^-A/-D/' |
                    while read -r rule; do eval iptables -t nat "$rule"; done
                iptables -t nat -F "$ch"; iptables -t nat -X "$ch"
            done
    fi
    # Cgroups of our pods (cgroup parent /crius-bench is shared with crius-bench's own daemon, removed
    # by it; what containerd left is removed here if empty).
    find /sys/fs/cgroup -depth -type d -path '*crius-bench*' -exec rmdir {} \; 2>/dev/null
    [ -n "${CRIUS_BENCH_KEEP:-}" ] && { cp "$work/containerd.log" /tmp/perf-ctd.log; }
    rm -rf "$work"
}
trap cleanup EXIT

command -v containerd >/dev/null || { log "containerd missing: apt-get install containerd"; exit 1; }
[ -x "$bin/crius-bench" ] && [ -x "$bin/crius" ] && [ -x "$bin/crius-monitor" ] || {
    log "release binaries missing in $bin: cargo build --release -p crius --bins -p crius-monitor"; exit 1; }
! ip link show "$bridge" >/dev/null 2>&1 || { log "bridge $bridge exists already (another run?)"; exit 1; }

# ---------------------------------------------------------------- the pull image (built once)
pull_bytes=$(python3 - "$registry" "$pull_repo" <<'EOF'
import gzip, hashlib, io, json, os, random, subprocess, sys, tarfile, urllib.request

registry, repo = sys.argv[1], sys.argv[2]
base = f"http://{registry}/v2/{repo}"
MT = "application/vnd.oci.image.manifest.v1+json"

def req(method, url, data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(r, timeout=600)

try:
    m = json.load(req("GET", f"{base}/manifests/latest", headers={"Accept": MT}))
    print(sum(l["size"] for l in m["layers"]))
    sys.exit(0)
except Exception:
    pass

rng = random.Random(16)
words = [("".join(chr(97 + rng.randrange(26)) for _ in range(rng.randrange(3, 10)))).encode() for _ in range(4000)]

def layer(i):
    # ~48 MiB of files: half incompressible bytes, half text (compresses like binaries and configs do)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo(f"layer{i}"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        for f in range(48):
            data = rng.randbytes(512 * 1024) + b" ".join(rng.choice(words) for _ in range(90000))[: 512 * 1024]
            ti = tarfile.TarInfo(f"layer{i}/f{f}"); ti.size = len(data); ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

def push_blob(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    r = req("POST", f"{base}/blobs/uploads/")
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{registry}{loc}"
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={dg}", data=data, headers={"Content-Type": "application/octet-stream"})
    return dg

layers, diff_ids = [], []
for i in range(6):
    tar = layer(i)
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    if i % 2 == 0:
        blob, mt = gzip.compress(tar, compresslevel=6, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    else:
        blob = subprocess.run(["zstd", "-q", "-c", "-10"], input=tar, capture_output=True, check=True).stdout
        mt = "application/vnd.oci.image.layer.v1.tar+zstd"
    layers.append({"mediaType": mt, "digest": push_blob(blob), "size": len(blob)})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
man = {"schemaVersion": 2, "mediaType": MT,
       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": push_blob(cfg), "size": len(cfg)},
       "layers": layers}
req("PUT", f"{base}/manifests/latest", data=json.dumps(man).encode(), headers={"Content-Type": MT})
print(sum(l["size"] for l in layers))
EOF
)
log "pull image $registry/$pull_repo:latest: $((pull_bytes / 1048576)) MiB compressed (3 gzip + 3 zstd layers)"

# ---------------------------------------------------------------- containerd
mkdir -p "$work"/{root,state,runc,net.d,certs.d/"$registry",opt,ipam}
cat > "$work/certs.d/$registry/hosts.toml" <<EOF
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
EOF
cat > "$work/net.d/10-ctd-bench.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "ctd-bench", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cat > "$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$registry/pause:3.9"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # No CAP_SYS_RESOURCE here: an oom_score_adj below containerd's own fails in runc's nsexec.
  restrict_oom_score_adj = true
  # pod network namespaces under the state dir (removed with it), not /run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$work/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$work/certs.d"
EOF
containerd --config "$work/config.toml" > "$work/containerd.log" 2>&1 &
ctd_pid=$!
for _ in $(seq 100); do [ -S "$work/containerd.sock" ] && break; sleep 0.1; done
[ -S "$work/containerd.sock" ] || { log "containerd did not come up:"; cat "$work/containerd.log" >&2; exit 1; }
sleep 1
log "containerd $(containerd --version | awk '{print $3}') pid $ctd_pid on $work/containerd.sock; load: $(cut -d' ' -f1-3 /proc/loadavg)"

"$bin/crius-bench" --compare --endpoint "unix://$work/containerd.sock" --endpoint-pid "$ctd_pid" \
    --endpoint-name "containerd 1.6 (runc)" --pull "$registry/$pull_repo:latest" --pull-bytes "$pull_bytes" "$@"
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env python3
"""Builds crius' test images and pushes them to the local test registries.

Owns: the content of every `crius-test/*` image, the two archive tarballs under
$CRIUS_TEST_DIR/images/, and $CRIUS_TEST_DIR/images/manifest.json, which is the
only place tests should learn digests and image ids from.

The images are built from Debian's *dynamic* busybox (fetched with
`apt-get download`, never installed: it conflicts with busybox-static) plus the
host's shared libraries it links, so a pull exercises a real dynamically linked
rootfs. Output is deterministic (fixed mtimes, sorted entries, gzip mtime 0,
canonical JSON): a rerun on the same host produces the same digests, finds
every blob and manifest already in the registries (HEAD) and uploads nothing.

Usage:
    scripts/build-test-images.py            # build, push to both registries, write archives
    scripts/build-test-images.py --no-push  # build archives and manifest.json only
    scripts/build-test-images.py --force    # re-upload blobs and manifests even if present

Environment (defaults from scripts/ci-env.sh): CRIUS_TEST_DIR, CRIUS_TEST_REGISTRY,
CRIUS_TEST_AUTH_REGISTRY, CRIUS_TEST_AUTH_USER, CRIUS_TEST_AUTH_PASSWORD.

Python standard library only, plus the `zstd`, `ldd`, `dpkg-deb` and `apt-get` CLIs.

Images (pushed under the same names and digests to both registries):
    crius-test/busybox:latest, :1.36   schema2, one gzip layer, Cmd ["sh"]
    crius-test/busybox-oci:latest      OCI, one uncompressed layer
    crius-test/busybox-user:latest     User crius (1000:1000, extra group 2000), WorkingDir
                                       /home/crius, Env FOO=bar, Entrypoint ["sleep"], Cmd ["3600"]
    crius-test/stopsignal:latest       StopSignal SIGUSR1; exits 42 on USR1
    crius-test/layered:latest          OCI, gzip + zstd + plain + gzip layers: whiteout, opaque dir,
                                       hard link, symlinks, ownership; see "expect"
    crius-test/multiarch:latest        OCI index, foreign arch listed first
    crius-test/multiarch-docker:latest Docker manifest list, foreign arch listed first
    crius-test/evil-{traversal,symlink,abs,hardlink}:latest   hostile layers; see "escape_markers"

manifest.json (keys tests rely on):
    images[<repo:tag>]: repository, tag, media_type, manifest_digest, manifest_size,
        config_digest, image_id (== config_digest), os, architecture, config (the image's
        runtime config: Cmd, Env, User, ...), layers[{digest, media_type, size, diff_id}];
        for the indexes also platform_manifest_digest and platforms{<os/arch[/variant]>: {...}},
        with image_id/config_digest/layers being those of the host platform;
        layered: expect{files, absent, hardlinks, symlinks, modes};
        evil-*: escape_markers (paths that must not exist after a pull), protected_target.
    archives["docker-save" | "oci-layout"]: path, reference, image_id, sha256 of the tarball, ...
    registries{plain, auth}, auth{registry, username, password}
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import glob
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
from dataclasses import dataclass, field

# 2023-11-14T22:13:20Z: every timestamp in every layer and config, so that
# digests only change when content does.
EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
CHUNK = 1 << 20  # blobs larger than this are uploaded in chunks (PATCH), smaller ones monolithically
HTTP_TIMEOUT = 60.0
LABEL = "org.crius.test.image"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
ACCEPT_ALL = ", ".join([MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_DOCKER_LIST])

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(Exception):
    """A step failed; the message names the step and the object involved."""


def log(msg: str) -> None:
    print(f"build-test-images: {msg}", flush=True)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, timeout=300, **kw)
    except FileNotFoundError as e:
        raise BuildError(f"{cmd[0]} not found (run scripts/install-deps.sh): {e}") from e
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{' '.join(cmd)} failed ({e.returncode}): "
                         f"{e.stderr.decode(errors='replace').strip()}") from e
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"{' '.join(cmd)} timed out") from e


# --------------------------------------------------------------------------- layers


@dataclass
class Layer:
    """An uncompressed layer tar built from explicit entries.

    Entries are written sorted by name; parent directories of ordinary entries
    are added implicitly. `raw` entries (the evil ones) are written verbatim so
    that names like `../x` or `/x` reach the tar unchanged.
    """

    entries: dict = field(default_factory=dict)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None, implicit_parents: bool = True):
        info.mtime = EPOCH
        info.uname = info.gname = ""
        if implicit_parents:
            parts = info.name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                parent = "/".join(parts[:i])
                if parent not in self.entries:
                    self.dir(parent)
        self.entries[info.name] = (info, data)

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, gid
        self._add(info)

    def file(self, name: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.size = tarfile.REGTYPE, mode, uid, gid, len(data)
        self._add(info, data)

    def symlink(self, name: str, target: str):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, target
        self._add(info)

    def hardlink(self, name: str, target: str, raw: bool = False):
        if not raw and (target not in self.entries or target >= name):
            # Unpackers resolve hard links against entries already extracted.
            raise BuildError(f"hard link {name} -> {target}: target must be an earlier entry")
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.linkname = tarfile.LNKTYPE, 0o644, target
        self._add(info, implicit_parents=not raw)

    def raw_file(self, name: str, data: bytes):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, len(data)
        self._add(info, data, implicit_parents=False)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                tf.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


@dataclass
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


_compress_cache: dict = {}


def compress(tar: bytes, how: str) -> bytes:
    key = (hashlib.sha256(tar).digest(), how)
    if key in _compress_cache:
        return _compress_cache[key]
    if how == "gzip":
        out = gzip.compress(tar, compresslevel=6, mtime=0)
    elif how == "zstd":
        out = run(["zstd", "-q", "-c", "-10", "--no-progress"], input=tar).stdout
    elif how == "none":
        out = tar
    else:
        raise BuildError(f"unknown compression {how}")
    _compress_cache[key] = out
    return out


LAYER_TYPES = {
    ("docker", "gzip"): MT_DOCKER_LAYER_GZIP,
    # Only used for the `docker save` archive, which carries no manifest.
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
    ("oci", "gzip"): MT_OCI_LAYER_GZIP,
    ("oci", "zstd"): MT_OCI_LAYER_ZSTD,
    ("oci", "none"): MT_OCI_LAYER,
}


@dataclass
class Image:
    """One single-platform image: config + layers + manifest, ready to push."""

    name: str  # repository, e.g. crius-test/busybox
    manifest: Blob
    config: Blob
    layers: list  # [Blob]
    diff_ids: list  # [str]
    config_obj: dict

    def blobs(self) -> list:
        return [*self.layers, self.config]

    def summary(self) -> dict:
        return {
            "media_type": self.manifest.media_type,
            "manifest_digest": self.manifest.digest,
            "manifest_size": self.manifest.size,
            "config_digest": self.config.digest,
            "image_id": self.config.digest,
            "os": self.config_obj["os"],
            "architecture": self.config_obj["architecture"],
            "config": self.config_obj["config"],
            "layers": [
                {"digest": b.digest, "media_type": b.media_type, "size": b.size, "diff_id": d}
                for b, d in zip(self.layers, self.diff_ids)
            ],
        }


def make_image(name: str, layers: list, fmt: str, config: dict, arch: str,
               variant: str | None = None, history: list | None = None) -> Image:
    """layers: [(Layer tar bytes, compression)]; fmt: "docker" (schema2) or "oci"."""
    blobs, diff_ids = [], []
    for tar, how in layers:
        mt = LAYER_TYPES.get((fmt, how))
        if mt is None:
            raise BuildError(f"{name}: {how} layers are not expressible in {fmt} manifests")
        blobs.append(Blob(compress(tar, how), mt))
        diff_ids.append(sha256(tar))
    cfg = dict(config)
    labels = dict(cfg.get("Labels") or {})
    labels.setdefault(LABEL, name)
    cfg["Labels"] = labels
    config_obj = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": h}
                    for h in (history or [f"layer {i}" for i in range(len(layers))])],
    }
    if variant:
        config_obj["variant"] = variant
    config_blob = Blob(canonical_json(config_obj), MT_DOCKER_CONFIG if fmt == "docker" else MT_OCI_CONFIG)
    manifest_mt = MT_DOCKER_MANIFEST if fmt == "docker" else MT_OCI_MANIFEST
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": manifest_mt,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in blobs],
    }
    return Image(name, Blob(canonical_json(manifest_obj), manifest_mt), config_blob, blobs,
                 diff_ids, config_obj)


# --------------------------------------------------------------------------- rootfs


def host_arch() -> str:
    arch = run(["dpkg", "--print-architecture"]).stdout.decode().strip()
    return {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "i386": "386",
            "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(arch, arch)


def fetch_busybox(cache: str) -> str:
    """Returns the path of Debian's dynamic busybox binary, extracted under cache."""
    debs_dir = os.path.join(cache, "debs")
    extract_dir = os.path.join(cache, "busybox-deb")
    binary = os.path.join(extract_dir, "bin", "busybox")
    os.makedirs(debs_dir, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(debs_dir, "busybox_*.deb")))
    if not debs:
        log("downloading the dynamic busybox .deb (apt-get download busybox)")
        try:
            run(["apt-get", "download", "-q", "busybox"], cwd=debs_dir)
        except BuildError as first:
            # A fresh machine may have no package lists yet.
            log(f"apt-get download failed ({first}); running apt-get update once")
            run(["apt-get", "update", "-qq"])
            run(["apt-get", "download", "-q", "busybox"], cwd=debs_dir)
        debs = sorted(glob.glob(os.path.join(debs_dir, "busybox_*.deb")))
        if not debs:
            raise BuildError(f"apt-get download busybox left no busybox_*.deb in {debs_dir}")
    deb = debs[-1]
    stamp = os.path.join(extract_dir, ".from")
    try:
        with open(stamp) as f:
            fresh = f.read() == deb and os.path.isfile(binary)
    except FileNotFoundError:
        fresh = False
    if not fresh:
        shutil.rmtree(extract_dir, ignore_errors=True)
        os.makedirs(extract_dir)
        run(["dpkg-deb", "-x", deb, extract_dir])
        if not os.path.isfile(binary):
            raise BuildError(f"{deb} has no bin/busybox")
        with open(stamp, "w") as f:
            f.write(deb)
    return binary


def shared_libs(binary: str) -> list:
    """(path inside the image, host file to copy) for every library ldd reports."""
    out = run(["ldd", binary]).stdout.decode()
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().split(" ")[0]
        else:
            path = line.split(" ")[0]
        if not path.startswith("/"):
            continue  # the vDSO has no file
        if not os.path.exists(path):
            raise BuildError(f"ldd {binary}: {path} does not exist")
        libs.append((path.lstrip("/"), os.path.realpath(path)))
    if not any("ld-linux" in p or "/ld-" in p or p.startswith("ld-") for p, _ in libs):
        raise BuildError(f"ldd {binary}: no dynamic loader found in:\n{out}")
    return libs


def read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BuildError(f"reading {path}: {e}") from e


PASSWD = b"""root:x:0:0:root:/root:/bin/sh
crius:x:1000:1000:crius test user:/home/crius:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = b"""root:x:0:
crius:x:1000:
extra:x:2000:crius
nobody:x:65534:
"""


def base_rootfs(busybox: str, hardlinks: bool = False) -> Layer:
    """hardlinks: applets as hard links to /bin/busybox (as upstream busybox images have them), so that
    masking one applet path (critest masks /bin/ls) does not mask the busybox binary behind it."""
    layer = Layer()
    for d in ("bin", "dev", "etc", "home", "lib", "proc", "sbin", "sys", "usr", "usr/bin",
              "usr/sbin", "var"):
        layer.dir(d)
    layer.dir("root", mode=0o700)
    layer.dir("tmp", mode=0o1777)
    layer.dir("home/crius", uid=1000, gid=1000)
    applets = run([busybox, "--list-full"]).stdout.decode().split()
    if len(applets) < 100:
        raise BuildError(f"{busybox} --list-full listed only {len(applets)} applets")
    # Every applet in /bin so tests can rely on /bin/<applet>; the Debian location too when it differs
    # (scripts use /usr/bin/env and the like). linuxrc is listed at the root: an initramfs detail.
    paths = {"bin/busybox"}
    for full in applets:
        base = full.rsplit("/", 1)[-1]
        paths.update(p for p in (f"bin/{base}", full) if "/" in p)
    if hardlinks:
        # Upstream busybox images: one regular file (the first name in tar order), the rest hard links.
        first, *rest = sorted(paths)
        layer.file(first, read(busybox), mode=0o755)
        for path in rest:
            layer.hardlink(path, first)
    else:
        layer.file("bin/busybox", read(busybox), mode=0o755)
        for path in sorted(paths - {"bin/busybox"}):
            layer.symlink(path, "/bin/busybox")
    for path, host in shared_libs(busybox):
        mode = os.stat(host).st_mode & 0o777
        layer.file(path, read(host), mode=mode)
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)
    return layer


# --------------------------------------------------------------------------- images


@dataclass
class ImageSet:
    images: dict  # reference (repo:tag) -> Image or Index
    extra: dict  # reference -> extra manifest.json fields


@dataclass
class Index:
    name: str
    manifest: Blob
    children: list  # [(platform string, Image)]
    default: Image  # the child a pull on this host must choose


def build_images(busybox: str, arch: str) -> tuple:
    base_layer = base_rootfs(busybox)
    base = base_layer.tar()
    busybox_cfg = {"Cmd": ["sh"], "Env": [PATH_ENV]}
    images: dict = {}
    extra: dict = {}

    bb = make_image("crius-test/busybox", [(base, "gzip")], "docker", busybox_cfg, arch,
                    history=["busybox rootfs (Debian dynamic busybox + host libc)"])
    images["crius-test/busybox:latest"] = bb
    images["crius-test/busybox:1.36"] = bb

    images["crius-test/busybox-oci:latest"] = make_image(
        "crius-test/busybox-oci", [(base, "none")], "oci", busybox_cfg, arch,
        history=["busybox rootfs, uncompressed"])

    images["crius-test/busybox-user:latest"] = make_image(
        "crius-test/busybox-user", [(base, "gzip")], "docker",
        {"User": "crius", "WorkingDir": "/home/crius", "Env": [PATH_ENV, "FOO=bar"],
         "Entrypoint": ["sleep"], "Cmd": ["3600"]}, arch, history=["busybox rootfs"])

    # As pid 1 the shell only gets USR1 because it traps it; `wait` returns as
    # soon as the signal arrives, so the exit is immediate.
    images["crius-test/stopsignal:latest"] = make_image(
        "crius-test/stopsignal", [(base, "gzip")], "docker",
        {"Env": [PATH_ENV], "StopSignal": "SIGUSR1",
         "Cmd": ["sh", "-c", "trap 'echo stopsignal: got USR1; exit 42' USR1; "
                             "echo stopsignal: ready; sleep 3600 & wait"]},
        arch, history=["busybox rootfs"])

    # layered: base (gzip) + data (zstd) + changes (plain) + ownership (gzip).
    data = Layer()
    data.file("data/keep.txt", b"keep\n")
    data.file("data/remove-me.txt", b"remove me\n")
    data.file("data/overwrite.txt", b"v1\n")
    data.file("data/opaque-dir/old-a.txt", b"old a\n")
    data.file("data/opaque-dir/sub/old-b.txt", b"old b\n")
    data.file("data/plain-dir/lower.txt", b"lower\n")
    changes = Layer()
    changes.dir("data")
    changes.file("data/.wh.remove-me.txt", b"")
    changes.file("data/overwrite.txt", b"v2\n")
    changes.dir("data/opaque-dir")
    changes.file("data/opaque-dir/.wh..wh..opq", b"")
    changes.file("data/opaque-dir/new-c.txt", b"new c\n")
    changes.file("data/plain-dir/upper.txt", b"upper\n")
    changes.file("data/a-link-target.txt", b"linked\n")
    changes.hardlink("data/hardlink.txt", "data/a-link-target.txt")
    changes.symlink("data/symlink-rel", "keep.txt")
    changes.symlink("data/symlink-abs", "/data/keep.txt")
    owned = Layer()
    owned.dir("data")
    owned.file("data/owned-by-crius.txt", b"mine\n", mode=0o640, uid=1000, gid=1000)
    owned.dir("data/setgid-dir", mode=0o2775, uid=1000, gid=2000)
    images["crius-test/layered:latest"] = make_image(
        "crius-test/layered",
        [(base, "gzip"), (data.tar(), "zstd"), (changes.tar(), "none"), (owned.tar(), "gzip")],
        "oci", busybox_cfg, arch,
        history=["busybox rootfs (gzip)", "data files (zstd)",
                 "whiteout, opaque dir, overwrite, hard link, symlinks (uncompressed)",
                 "ownership and modes (gzip)"])
    extra["crius-test/layered:latest"] = {"expect": {
        "files": {
            "/data/keep.txt": "keep\n",
            "/data/overwrite.txt": "v2\n",
            "/data/opaque-dir/new-c.txt": "new c\n",
            "/data/plain-dir/lower.txt": "lower\n",
            "/data/plain-dir/upper.txt": "upper\n",
            "/data/a-link-target.txt": "linked\n",
            "/data/hardlink.txt": "linked\n",
            "/data/owned-by-crius.txt": "mine\n",
        },
        "absent": ["/data/remove-me.txt", "/data/.wh.remove-me.txt", "/data/opaque-dir/old-a.txt",
                   "/data/opaque-dir/sub", "/data/opaque-dir/.wh..wh..opq"],
        "hardlinks": [["/data/a-link-target.txt", "/data/hardlink.txt"]],
        "symlinks": {"/data/symlink-rel": "keep.txt", "/data/symlink-abs": "/data/keep.txt"},
        "modes": {"/data/owned-by-crius.txt": {"mode": "0640", "uid": 1000, "gid": 1000},
                  "/data/setgid-dir": {"mode": "2775", "uid": 1000, "gid": 2000},
                  "/tmp": {"mode": "1777", "uid": 0, "gid": 0}},
    }}

    # multiarch (OCI index) and multiarch-docker (Docker manifest list): the
    # foreign platform comes first, so a client that takes the first entry
    # instead of matching the platform gets caught.
    other = "arm64" if arch != "arm64" else "amd64"
    for repo, fmt, list_mt in (("crius-test/multiarch", "oci", MT_OCI_INDEX),
                               ("crius-test/multiarch-docker", "docker", MT_DOCKER_LIST)):
        images[f"{repo}:latest"] = multiarch_index(repo, fmt, list_mt, base, busybox_cfg, arch, other)

    # Hostile images. Every marker lands in /tmp on a vulnerable unpacker; tests
    # assert the marker is absent after the pull (whether it fails or not).
    ev = Layer()
    ev.file("ok.txt", b"fine\n")
    ev.raw_file("../../../../tmp/crius-evil-traversal", b"escaped via ..\n")
    images["crius-test/evil-traversal:latest"] = make_image(
        "crius-test/evil-traversal", [(ev.tar(), "gzip")], "oci", {"Cmd": ["/ok.txt"]}, arch)
    extra["crius-test/evil-traversal:latest"] = {"escape_markers": ["/tmp/crius-evil-traversal"]}

    l1 = Layer()
    l1.symlink("escape", "/tmp")
    l1.symlink("escape-rel", "../../../../../../../../tmp")
    l2 = Layer()
    l2.raw_file("escape/crius-evil-symlink", b"escaped via absolute symlink\n")
    l2.raw_file("escape-rel/crius-evil-symlink-rel", b"escaped via relative symlink\n")
    images["crius-test/evil-symlink:latest"] = make_image(
        "crius-test/evil-symlink", [(l1.tar(), "gzip"), (l2.tar(), "gzip")], "oci",
        {"Cmd": ["/escape"]}, arch)
    extra["crius-test/evil-symlink:latest"] = {
        "escape_markers": ["/tmp/crius-evil-symlink", "/tmp/crius-evil-symlink-rel"]}

    ab = Layer()
    ab.file("ok.txt", b"fine\n")
    ab.raw_file("/tmp/crius-evil-abs", b"escaped via absolute name\n")
    images["crius-test/evil-abs:latest"] = make_image(
        "crius-test/evil-abs", [(ab.tar(), "gzip")], "oci", {"Cmd": ["/ok.txt"]}, arch)
    extra["crius-test/evil-abs:latest"] = {
        "escape_markers": ["/tmp/crius-evil-abs"],
        "note": "a safe unpacker either rejects the entry or writes it as <rootfs>/tmp/crius-evil-abs"}

    # A hard link naming a host file, then a regular file written through it.
    # Tests create the target first and assert it is unchanged with nlink 1.
    h1 = Layer()
    h1.hardlink("link", "../../../../../../../../tmp/crius-evil-hardlink-target", raw=True)
    h2 = Layer()
    h2.file("link", b"overwritten through a hard link\n")
    images["crius-test/evil-hardlink:latest"] = make_image(
        "crius-test/evil-hardlink", [(h1.tar(), "gzip"), (h2.tar(), "gzip")], "oci",
        {"Cmd": ["/link"]}, arch)
    extra["crius-test/evil-hardlink:latest"] = {
        "escape_markers": [],
        "protected_target": "/tmp/crius-evil-hardlink-target",
        "note": "create protected_target before the pull; it must keep its content and nlink 1"}

    return ImageSet(images, extra), base


IPCS_STANDIN = b"""#!/bin/sh
# crius test image: busybox has no ipcs applet; this lists System V IPC objects from /proc/sysvipc.
case "$1" in -q) f=msg ;; -s) f=sem ;; *) f=shm ;; esac
echo "------ $f (/proc/sysvipc/$f) ------"
cat "/proc/sysvipc/$f"
"""

PGREP_STANDIN = b"""#!/bin/sh
# crius test image: Debian's busybox has no pgrep applet; this prints the pids whose name contains $1
# (zombies included, as procps pgrep does) and exits 1 when there is none.
[ -n "$1" ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
found=1
for d in /proc/[0-9]*; do
    read -r name 2>/dev/null < "$d/comm" || continue
    case "$name" in *"$1"*) echo "${d#/proc/}"; found=0 ;; esac
done
exit $found
"""

CRITEST_PASSWD = PASSWD + b"www-data:x:33:33:www-data:/var/www:/bin/sh\n"
# uid 1000 (crius) is a member of group 50000 only: the supplemental-groups-policy specs compare the
# exact list.
CRITEST_GROUP = (b"root:x:0:\ncrius:x:1000:\nnobody:x:65534:\nwww-data:x:33:\nspecial:x:1004:\n"
                 b"predefined:x:50000:crius\n")


def compile_static(src: str, out_dir: str) -> bytes:
    """Builds one of scripts/test-images/*.c as a static binary (gcc, glibc's libc.a)."""
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "test-images", src)
    out = os.path.join(out_dir, src[:-2])
    if not (os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(source)):
        run(["gcc", "-static", "-Os", "-s", "-o", out + ".tmp", source])
        os.replace(out + ".tmp", out)
    return read(out)


def critest_images(busybox: str, arch: str, cache: str) -> dict:
    """Every image critest v1.36 pulls (shared/data/critest-images.md), under its upstream repository
    path, so that hosts.toml mirrors for registry.k8s.io, k8s.gcr.io, gcr.io, docker.io and
    public.ecr.aws can point at the plain test registry. Keys are "repo:tag" in that registry."""
    os.makedirs(cache, exist_ok=True)
    base = base_rootfs(busybox, hardlinks=True).tar()
    web = compile_static("webserver.c", cache)
    nnp = compile_static("nnp.c", cache)
    pause = compile_static("pause.c", cache)
    out: dict = {}
    sh_cfg = {"Cmd": ["sh"], "Env": [PATH_ENV]}

    def img(key: str, extra_layers: list, config: dict, with_base: bool = True):
        layers = ([(base, "gzip")] if with_base else []) + [(t.tar(), "gzip") for t in extra_layers]
        name = key.rpartition(":")[0]
        out[key] = make_image(name, layers, "docker", config, arch,
                              history=[f"layer {i}" for i in range(len(layers))])

    def marker(text: str) -> Layer:
        m = Layer()
        m.file("etc/crius-test-image", f"{text}\n".encode())
        return m

    tools = Layer()
    tools.file("usr/bin/ipcs", IPCS_STANDIN, mode=0o755)
    tools.file("usr/bin/pgrep", PGREP_STANDIN, mode=0o755)
    tools.file("etc/passwd", CRITEST_PASSWD)
    tools.file("etc/group", CRITEST_GROUP)
    tools.dir("var/run")
    tools.dir("var/www", uid=33, gid=33)
    img("e2e-test-images/busybox:1.29-2", [tools], sh_cfg)

    nginx = Layer()
    nginx.file("usr/sbin/nginx", web, mode=0o755)
    nginx.dir("var/run")
    img("e2e-test-images/nginx:1.14-2", [tools, nginx],
        {"Cmd": ["nginx", "-g", "daemon off;"], "Env": [PATH_ENV], "ExposedPorts": {"80/tcp": {}},
         "StopSignal": "SIGQUIT"})
    img("k8s-staging-cri-tools/hostnet-nginx-" + arch + ":latest", [tools, nginx],
        {"Cmd": ["nginx", "-g", "daemon off;"], "Env": [PATH_ENV, "PORT=12003"],
         "ExposedPorts": {"12003/tcp": {}}, "StopSignal": "SIGQUIT"})
    httpd = Layer()
    httpd.file("usr/local/bin/httpd", web, mode=0o755)
    img("e2e-test-images/httpd:2.4.39-4", [tools, httpd],
        {"Cmd": ["httpd"], "Env": [PATH_ENV], "ExposedPorts": {"80/tcp": {}}})
    nnp_layer = Layer()
    nnp_layer.file("usr/local/bin/nnp", nnp, mode=0o4755)
    img("e2e-test-images/nonewprivs:1.3", [tools, nnp_layer],
        {"Entrypoint": ["/usr/local/bin/nnp"], "Env": [PATH_ENV], "User": "1000"})

    for tag in ("3.6", "3.8", "3.9", "3.10", "3.10.1"):
        p = Layer()
        p.file("pause", pause, mode=0o755)
        img(f"pause:{tag}", [p],
            {"Entrypoint": ["/pause"], "User": "65535:65535", "Labels": {LABEL: f"pause:{tag}"}},
            with_base=False)

    cri = "k8s-staging-cri-tools/"
    img(cri + "test-image-latest:latest", [marker("test-image-latest")], sh_cfg)
    img(cri + "test-image-tag:test", [marker("test-image-tag:test")], sh_cfg)
    img(cri + "test-image-tag:all", [marker("test-image-tag:all")], sh_cfg)
    for i in (1, 2, 3):
        img(f"{cri}test-image-{i}:latest", [marker(f"test-image-{i}")], sh_cfg)
    for t in ("1", "2", "3"):
        img(f"{cri}test-image-tags:{t}", [marker("test-image-tags")], sh_cfg)
    for name, user in (("user-uid", "1002"), ("user-username", "www-data"),
                       ("user-uid-group", "1003:1004"), ("user-username-group", "www-data:1004"),
                       ("predefined-group", "1000")):
        img(f"{cri}test-image-{name}:latest", [tools, marker(f"test-image-{name}")],
            {"Cmd": ["sh"], "Env": [PATH_ENV], "User": user})

    for key in ("library/busybox:latest", "library/busybox:1.37.0",
                "docker/library/busybox:1.35.0-glibc", "docker/library/busybox:1-uclibc",
                "docker/library/busybox:1", "docker/library/busybox:1-glibc",
                "docker/library/busybox:1-musl"):
        img(key, [tools], sh_cfg)
    return out


def multiarch_index(repo: str, fmt: str, list_mt: str, base: bytes, busybox_cfg: dict,
                    arch: str, other: str) -> "Index":
    native = make_image(repo, [(base, "gzip")], fmt,
                        dict(busybox_cfg, Labels={"org.crius.test.platform": f"linux/{arch}"}),
                        arch, history=["busybox rootfs"])
    marker = Layer()
    marker.file("ARCH", f"{other}\n".encode())
    variant = "v8" if other == "arm64" else None
    foreign = make_image(repo, [(marker.tar(), "gzip")], fmt,
                         {"Cmd": ["/ARCH"], "Labels": {"org.crius.test.platform": f"linux/{other}"}},
                         other, variant=variant, history=["marker file, not runnable"])
    foreign_platform = {"architecture": other, "os": "linux"}
    if variant:
        foreign_platform["variant"] = variant
    index_obj = {
        "schemaVersion": 2,
        "mediaType": list_mt,
        "manifests": [
            foreign.manifest.descriptor(platform=foreign_platform),
            native.manifest.descriptor(platform={"architecture": arch, "os": "linux"}),
        ],
    }
    foreign_name = f"linux/{other}" + (f"/{variant}" if variant else "")
    return Index(repo, Blob(canonical_json(index_obj), list_mt),
                 [(foreign_name, foreign), (f"linux/{arch}", native)], native)


# --------------------------------------------------------------------------- registry


class Registry:
    """Minimal distribution-API client: blob HEAD/mount/upload, manifest HEAD/PUT."""

    def __init__(self, addr: str, user: str | None = None, password: str | None = None):
        self.addr = addr
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise BuildError(f"registry address {addr!r} is not host:port")
        self.host, self.port = host, int(port)
        self.auth = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth = f"Basic {token}"
        self.known: dict = {}  # blob digest -> a repository known to hold it
        self.stats = {"blobs_uploaded": 0, "blobs_mounted": 0, "blobs_present": 0,
                      "manifests_put": 0, "manifests_present": 0, "bytes_uploaded": 0}

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple:
        parts = urllib.parse.urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        h = {"Host": self.addr}
        if self.auth:
            h["Authorization"] = self.auth
        if body is not None:
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.headers, data
        except OSError as e:
            raise BuildError(f"{method} http://{self.addr}{path}: {e}") from e
        finally:
            conn.close()

    def check(self) -> None:
        try:
            status, _, body = self.request("GET", "/v2/")
        except BuildError as e:
            raise BuildError(f"{e} (start the registries: scripts/start-registries.sh)") from e
        if status == 401:
            raise BuildError(f"GET http://{self.addr}/v2/ -> 401: credentials rejected "
                             "(CRIUS_TEST_AUTH_USER / CRIUS_TEST_AUTH_PASSWORD)")
        if status != 200:
            raise BuildError(f"GET http://{self.addr}/v2/ -> {status} {body[:200]!r} "
                             "(are the registries running? scripts/start-registries.sh)")

    def _expect(self, what: str, status: int, want: tuple, body: bytes) -> None:
        if status not in want:
            raise BuildError(f"{what} on {self.addr}: HTTP {status}: {body[:300].decode(errors='replace')}")

    def ensure_blob(self, repo: str, blob: Blob, force: bool) -> None:
        if not force:
            status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")
            if status == 200:
                self.stats["blobs_present"] += 1
                self.known.setdefault(blob.digest, repo)
                return
            src = self.known.get(blob.digest)
            if src and src != repo:
                q = urllib.parse.urlencode({"mount": blob.digest, "from": src})
                status, _, body = self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", b"")
                if status == 201:
                    self.stats["blobs_mounted"] += 1
                    return
                # 202 means the registry opened an upload instead of mounting;
                # fall through and upload (the session is simply abandoned).
        status, hdrs, body = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        self._expect(f"start upload of {blob.digest} to {repo}", status, (202,), body)
        location = hdrs.get("Location")
        if not location:
            raise BuildError(f"start upload of {blob.digest} to {repo}: no Location header")
        if blob.size > CHUNK:
            offset = 0
            while offset < blob.size:
                chunk = blob.data[offset:offset + CHUNK]
                status, hdrs, body = self.request(
                    "PATCH", location, chunk,
                    {"Content-Type": "application/octet-stream",
                     "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                self._expect(f"PATCH chunk @{offset} of {blob.digest} to {repo}", status, (202,), body)
                location = hdrs.get("Location") or location
                offset += len(chunk)
            final_body = b""
        else:
            final_body = blob.data
        sep = "&" if "?" in location else "?"
        status, _, body = self.request(
            "PUT", f"{location}{sep}{urllib.parse.urlencode({'digest': blob.digest})}", final_body,
            {"Content-Type": "application/octet-stream"})
        self._expect(f"finish upload of {blob.digest} to {repo}", status, (201,), body)
        self.stats["blobs_uploaded"] += 1
        self.stats["bytes_uploaded"] += blob.size
        self.known[blob.digest] = repo

    def ensure_manifest(self, repo: str, ref: str, manifest: Blob, force: bool) -> None:
        if not force:
            status, hdrs, _ = self.request("HEAD", f"/v2/{repo}/manifests/{ref}",
                                           headers={"Accept": ACCEPT_ALL})
            if status == 200 and hdrs.get("Docker-Content-Digest") == manifest.digest:
                self.stats["manifests_present"] += 1
                return
        status, hdrs, body = self.request("PUT", f"/v2/{repo}/manifests/{ref}", manifest.data,
                                          {"Content-Type": manifest.media_type})
        self._expect(f"PUT manifest {repo}:{ref}", status, (201,), body)
        got = hdrs.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise BuildError(f"PUT manifest {repo}:{ref}: registry computed {got}, expected {manifest.digest}")
        self.stats["manifests_put"] += 1

    def push_image(self, repo: str, ref: str, image: Image, force: bool) -> None:
        for blob in image.blobs():
            self.ensure_blob(repo, blob, force)
        self.ensure_manifest(repo, ref, image.manifest, force)

    def push(self, reference: str, obj, force: bool) -> None:
        repo, _, tag = reference.rpartition(":")
        if isinstance(obj, Index):
            for _, child in obj.children:
                self.push_image(repo, child.manifest.digest, child, force)
            self.ensure_manifest(repo, tag, obj.manifest, force)
        else:
            self.push_image(repo, tag, obj, force)


# --------------------------------------------------------------------------- archives


def tar_of(files: list) -> bytes:
    """Deterministic tar of (name, bytes) pairs, directories implied."""
    layer = Layer()
    for name, data in files:
        layer.file(name, data)
    return layer.tar()


def docker_save_archive(base: bytes, arch: str) -> tuple:
    ref = "crius-test/imported:v1"
    img = make_image("crius-test/imported", [(base, "none")], "docker",
                     {"Cmd": ["sh"], "Env": [PATH_ENV]}, arch, history=["busybox rootfs"])
    layer_id = img.diff_ids[0].split(":", 1)[1]
    config_name = img.config.digest.split(":", 1)[1] + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_id}/layer.tar"]}]
    files = [
        ("manifest.json", canonical_json(manifest)),
        ("repositories", canonical_json({"crius-test/imported": {"v1": layer_id}})),
        (config_name, img.config.data),
        (f"{layer_id}/VERSION", b"1.0"),
        (f"{layer_id}/json", canonical_json({"id": layer_id, "created": CREATED})),
        (f"{layer_id}/layer.tar", base),
    ]
    info = {"reference": ref, "image_id": img.config.digest, "config_digest": img.config.digest,
            "diff_ids": img.diff_ids, "config": img.config_obj["config"]}
    return tar_of(files), info


def oci_layout_archive(base: bytes, arch: str) -> tuple:
    ref = "crius-test/oci-imported:v1"
    img = make_image("crius-test/oci-imported", [(base, "gzip")], "oci",
                     {"Cmd": ["sh"], "Env": [PATH_ENV]}, arch, history=["busybox rootfs"])
    index = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [img.manifest.descriptor(
            annotations={"org.opencontainers.image.ref.name": ref},
            platform={"architecture": arch, "os": "linux"})],
    }
    files = [("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
             ("index.json", canonical_json(index))]
    for blob in [img.manifest, img.config, *img.layers]:
        files.append((f"blobs/sha256/{blob.digest.split(':', 1)[1]}", blob.data))
    info = {"reference": ref, "ref_name_annotation": "org.opencontainers.image.ref.name"}
    info.update(img.summary())
    return tar_of(files), info


def write_if_changed(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise BuildError(f"writing {path}: {e}") from e
    return True


def verify(registries: list, images: dict, base: bytes, test_dir: str) -> None:
    """Proves what tests rely on: tags resolve to the recorded digests on every
    registry, and the busybox rootfs actually runs (dynamic loader + libc)."""
    for reg in registries:
        for reference, obj in images.items():
            repo, _, tag = reference.rpartition(":")
            status, hdrs, body = reg.request("GET", f"/v2/{repo}/manifests/{tag}",
                                             headers={"Accept": ACCEPT_ALL})
            reg._expect(f"GET manifest {reference}", status, (200,), body)
            if sha256(body) != obj.manifest.digest:
                raise BuildError(f"{reg.addr}/{reference}: manifest digest {sha256(body)}, "
                                 f"expected {obj.manifest.digest}")
        log(f"{reg.addr}: all {len(images)} tags resolve to the recorded digests")
    rootfs = os.path.join(test_dir, "cache", "verify-rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    os.makedirs(rootfs)
    try:
        run(["tar", "-xf", "-", "-C", rootfs], input=base)
        out = run(["chroot", rootfs, "/bin/sh", "-c",
                   "id crius && ls /bin/ls /lib64 >/dev/null && echo chroot-ok"]).stdout.decode()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    if "chroot-ok" not in out or "2000(extra)" not in out:
        raise BuildError(f"busybox rootfs under chroot printed unexpected output: {out!r}")
    log(f"busybox rootfs runs under chroot: {out.splitlines()[0]}")


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-push", action="store_true", help="do not talk to the registries")
    ap.add_argument("--force", action="store_true", help="upload even what the registry already has")
    ap.add_argument("--verify", action="store_true",
                    help="read every manifest back from both registries and run the busybox "
                         "rootfs under chroot (needs root)")
    args = ap.parse_args()

    t0 = time.monotonic()
    test_dir = os.environ.get("CRIUS_TEST_DIR", "/var/lib/crius-test")
    plain_addr = os.environ.get("CRIUS_TEST_REGISTRY", "127.0.0.1:5000")
    auth_addr = os.environ.get("CRIUS_TEST_AUTH_REGISTRY", "127.0.0.1:5001")
    user = os.environ.get("CRIUS_TEST_AUTH_USER", "crius")
    password = os.environ.get("CRIUS_TEST_AUTH_PASSWORD", "crius-pass")
    images_dir = os.path.join(test_dir, "images")
    os.makedirs(images_dir, exist_ok=True)

    # Several test binaries may run this at once; one builds, the others wait
    # and then find everything present.
    lock_path = os.path.join(images_dir, ".lock")
    lock = open(lock_path, "w")
    deadline = time.monotonic() + 300
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise BuildError(f"timed out waiting for {lock_path}")
            time.sleep(0.2)

    busybox = fetch_busybox(os.path.join(test_dir, "cache"))
    arch = host_arch()
    image_set, base = build_images(busybox, arch)
    critest = critest_images(busybox, arch, os.path.join(test_dir, "cache", "critest-bin"))
    t_build = time.monotonic()
    log(f"built {len(image_set.images)} references in {t_build - t0:.2f}s")

    registries = []
    if not args.no_push:
        registries = [Registry(plain_addr), Registry(auth_addr, user, password)]
        for reg in registries:
            reg.check()
        for reg in registries:
            for reference, obj in image_set.images.items():
                reg.push(reference, obj, args.force)
            log(f"{reg.addr}: {reg.stats}")
        for reference, obj in critest.items():
            registries[0].push(reference, obj, args.force)
        log(f"{registries[0].addr}: critest images: {len(critest)} references")
    t_push = time.monotonic()
    if args.verify:
        verify(registries, image_set.images, base, test_dir)

    docker_tar, docker_info = docker_save_archive(base, arch)
    oci_tar, oci_info = oci_layout_archive(base, arch)
    docker_path = os.path.join(images_dir, "busybox-docker-save.tar")
    oci_path = os.path.join(images_dir, "busybox-oci-layout.tar")
    for path, data in ((docker_path, docker_tar), (oci_path, oci_tar)):
        if write_if_changed(path, data):
            log(f"wrote {path}")

    out_images = {}
    for reference, obj in image_set.images.items():
        repo, _, tag = reference.rpartition(":")
        if isinstance(obj, Index):
            entry = {"repository": repo, "tag": tag}
            entry.update(obj.default.summary())
            # A pull by tag resolves to the index; the image it yields is the
            # native child.
            entry.update({"media_type": obj.manifest.media_type,
                          "manifest_digest": obj.manifest.digest,
                          "manifest_size": obj.manifest.size,
                          "platform_manifest_digest": obj.default.manifest.digest,
                          "platforms": {p: c.summary() for p, c in obj.children}})
        else:
            entry = {"repository": repo, "tag": tag}
            entry.update(obj.summary())
        entry.update(image_set.extra.get(reference, {}))
        out_images[reference] = entry
    out = {
        "schema": 1,
        "generated_by": "scripts/build-test-images.py",
        "registries": {"plain": plain_addr, "auth": auth_addr},
        "auth": {"registry": auth_addr, "username": user, "password": password},
        "pushed": not args.no_push,
        "images": out_images,
        # critest v1.36's images under their upstream repository paths (see scripts/critest.sh).
        "critest_images": {ref: {"repository": ref.rpartition(":")[0], "tag": ref.rpartition(":")[2],
                                 **obj.summary()} for ref, obj in critest.items()},
        "archives": {
            "docker-save": dict(path=docker_path, sha256=sha256(docker_tar), **docker_info),
            "oci-layout": dict(path=oci_path, sha256=sha256(oci_tar), **oci_info),
        },
    }
    manifest_path = os.path.join(images_dir, "manifest.json")
    write_if_changed(manifest_path, json.dumps(out, indent=2, sort_keys=True).encode() + b"\n")
    t_end = time.monotonic()
    log(f"done in {t_end - t0:.2f}s (build {t_build - t0:.2f}s, push {t_push - t_build:.2f}s); "
        f"digests in {manifest_path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"build-test-images: error: {e}", file=sys.stderr)
        sys.exit(1)

#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/<name>, from first principles.

Each seed is a small, valid (or interestingly broken) input of its target's format, so the fuzzer
starts inside the grammar. Rerun after changing a format: `python3 fuzz/seeds.py`.
"""
import io
import json
import os
import re
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# -- image_reference -------------------------------------------------------------------------
for i, r in enumerate([
    "busybox", "library/busybox:latest", "docker.io/library/busybox:1.36",
    "127.0.0.1:5000/crius/busybox:latest", "localhost/x", "[::1]:5000/a/b:c",
    "quay.io/a/b/c@sha256:" + "ab" * 32, "reg:5000/a:t@sha256:" + "0" * 64,
    "sha256:" + "f" * 64, "A/B", "a//b", "a/../b", "x:" + "t" * 129, "a@sha512:" + "1" * 128,
]):
    put("image_reference", f"seed{i}", r)

# -- hosts_toml ---------------------------------------------------------------------------------
put("hosts_toml", "mirror", '''server = "https://registry.example"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  override_path = false

[host."https://mirror.example/v2/x"]
  capabilities = ["pull"]
  ca = ["/etc/crius/ca.pem"]
  client = [["/c.pem", "/k.pem"]]
  override_path = true
  [host."https://mirror.example/v2/x".header]
    x-custom = ["a", "b"]
''')
put("hosts_toml", "server_only", 'server = "http://127.0.0.1:5000"\n')
put("hosts_toml", "bad", '[host."ftp://x"]\ncapabilities = "pull"\n')

# -- SPDY -------------------------------------------------------------------------------------
src = open(os.path.join(HERE, "..", "crates", "crius-streaming", "src", "spdy", "frame.rs")).read()
words_src = src[src.index("const DICTIONARY_WORDS"):src.index("const DICTIONARY_TAIL")]
tail_src = src[src.index("const DICTIONARY_TAIL"):src.index("pub static DICTIONARY")]
words = re.findall(r'"((?:[^"\\]|\\.)*)"', words_src)
tail = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', tail_src))
DICT = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()
assert len(DICT) == 1423, len(DICT)


def header_block(headers):
    b = struct.pack(">I", len(headers))
    for n, v in headers:
        b += struct.pack(">I", len(n)) + n.encode() + struct.pack(">I", len(v)) + v.encode()
    return b


class Comp:
    def __init__(self):
        self.z = zlib.compressobj(zdict=DICT)

    def __call__(self, block):
        return self.z.compress(block) + self.z.flush(zlib.Z_SYNC_FLUSH)


def control(ftype, flags, payload):
    return struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload)) + payload


def data_frame(sid, flags, data):
    return struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(data)) + data


comp = Comp()
hdrs = [("streamtype", "stdin"), ("port", "8080"), ("requestid", "0")]
syn = control(1, 0, struct.pack(">IIBB", 1, 0, 0, 0) + comp(header_block(hdrs)))
syn3 = control(1, 0x2, struct.pack(">IIBB", 3, 0, 0x60, 0) + comp(header_block([("streamtype", "error")])))
reply = control(2, 0, struct.pack(">I", 1) + comp(header_block([])))
frames = [
    syn, syn3, reply,
    control(4, 0, struct.pack(">I", 2) + struct.pack(">II", 4, 128) + struct.pack(">II", 7, 65536)),
    control(6, 0, struct.pack(">I", 1)),
    control(9, 0, struct.pack(">II", 1, 4096)),
    data_frame(1, 0, b"echo hello\n"), data_frame(1, 1, b""),
    control(3, 0, struct.pack(">II", 3, 5)),
    control(7, 0, struct.pack(">II", 3, 0)),
]
put("spdy_frames", "session", b"".join(frames))
for i, f in enumerate(frames):
    put("spdy_frames", f"frame{i}", f)
put("spdy_frames", "headers", control(8, 0, struct.pack(">I", 1) + Comp()(header_block(hdrs))))
put("spdy_frames", "unknown_type", control(10, 0, b"\0\0\0\0"))

put("spdy_header_block", "plain", header_block(hdrs))
put("spdy_header_block", "empty", header_block([]))
put("spdy_header_block", "compressed", Comp()(header_block(hdrs)))
c = Comp()
put("spdy_header_block", "compressed_two", c(header_block(hdrs)) + c(header_block([("a", "b\0c")])))
put("spdy_header_block", "truncated", header_block(hdrs)[:-3])


# -- WebSocket --------------------------------------------------------------------------------
def ws(fin, op, payload, mask=None):
    b = bytes([(0x80 if fin else 0) | op])
    mb = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        b += bytes([mb | n])
    elif n < 65536:
        b += bytes([mb | 126]) + struct.pack(">H", n)
    else:
        b += bytes([mb | 127]) + struct.pack(">Q", n)
    if mask:
        b += mask + bytes(p ^ mask[i % 4] for i, p in enumerate(payload))
    else:
        b += payload
    return b


m = b"\x01\x02\x03\x04"
put("ws_frames", "stdin_binary", ws(1, 2, b"\x00ls -l\n", m))
put("ws_frames", "base64_text", ws(1, 1, b"0bHMK", m))
put("ws_frames", "fragmented", ws(0, 2, b"\x00ab", m) + ws(1, 9, b"p", m) + ws(1, 0, b"cd", m))
put("ws_frames", "resize", ws(1, 2, b'\x04{"Width":80,"Height":24}', m))
put("ws_frames", "close", ws(1, 8, b"\x03\xe8bye", m))
put("ws_frames", "len16", ws(1, 2, b"\x01" + b"x" * 300, m))
put("ws_frames", "unmasked_pong", ws(1, 10, b"pong"))

# -- authority_rewrite: frames after the preface (the target adds the preface) ------------------
def h2(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hblock(auth):
    b = bytes([0x83, 0x86, 0x44, 5]) + b"/a/Bc" + bytes([0x41, len(auth)]) + auth
    return b + bytes([0x40, 12]) + b"content-type" + bytes([16]) + b"application/grpc" + bytes([0xBE])


settings = h2(4, 0, 0, struct.pack(">HI", 3, 100))
put("authority_rewrite", "grpc_go_unix", settings + h2(1, 4, 1, hblock(b"/run/crius/crius.sock")) + h2(0, 1, 1, b"\0\0\0\0\0"))
put("authority_rewrite", "padded_priority", h2(1, 0x4 | 0x8 | 0x20, 3, b"\x02" + b"\0\0\0\0\x10" + hblock(b"/x") + b"\0\0"))
put("authority_rewrite", "literal_name", h2(1, 4, 5, b"\x00\x0a:authority\x04/x/y\x82"))
put("authority_rewrite", "huffman", h2(1, 4, 7, bytes([0x11, 0x83, 0xAA, 0xBB, 0xCC, 0x3F, 0xE1, 0x1F])))
put("authority_rewrite", "continuation", h2(1, 0, 9, hblock(b"/s")[:6]) + h2(9, 4, 9, hblock(b"/s")[6:]))
put("authority_rewrite", "block_only", hblock(b"/run/crius/crius.sock"))

# -- tar_unpack ---------------------------------------------------------------------------------
def tar_of(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def ti(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    m = tarfile.TarInfo(name)
    m.type = kind
    m.mode = mode
    m.mtime = 1_600_000_000
    m.linkname = link
    m.size = len(data) if kind == tarfile.REGTYPE else 0
    return (m, data if kind == tarfile.REGTYPE else None)


def trim(b):
    # Keep one end-of-archive block instead of tarfile's padding to 10 KiB.
    end = len(b)
    while end >= 512 and b[end - 512:end] == b"\0" * 512:
        end -= 512
    return b[:end] + b"\0" * 1024


put("tar_unpack", "plain", trim(tar_of([ti("etc/", tarfile.DIRTYPE, mode=0o755), ti("etc/hosts", data=b"127.0.0.1 x\n"),
                                      ti("bin/", tarfile.DIRTYPE), ti("bin/sh", data=b"#!", mode=0o4755)])))
put("tar_unpack", "links", trim(tar_of([ti("a", data=b"x"), ti("b", tarfile.LNKTYPE, link="a"),
                                      ti("s", tarfile.SYMTYPE, link="/tmp/crius-fuzz-unpack/outside/dir"),
                                      ti("s/f", data=b"escape"), ti("u", tarfile.SYMTYPE, link="../outside"),
                                      ti("u/canary", data=b"overwritten")])))
put("tar_unpack", "dotdot", trim(tar_of([ti("../outside/x", data=b"x"), ti("/tmp/crius-fuzz-unpack/outside/y", data=b"y"),
                                       ti("h", tarfile.LNKTYPE, link="../outside/canary")])))
put("tar_unpack", "whiteouts", trim(tar_of([ti("d/", tarfile.DIRTYPE), ti("d/.wh..wh..opq"), ti("d/.wh.x"),
                                          ti("d/.wh.."), ti(".wh...")])))
put("tar_unpack", "devices", trim(tar_of([ti("dev/null", tarfile.CHRTYPE), ti("p", tarfile.FIFOTYPE)])))
pax = io.BytesIO()
with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as t:
    m = tarfile.TarInfo("x" * 120)
    m.pax_headers = {"SCHILY.xattr.user.a": "b", "SCHILY.xattr.security.capability": "\x01"}
    data = b"long name"
    m.size = len(data)
    t.addfile(m, io.BytesIO(data))
put("tar_unpack", "pax_xattrs", trim(pax.getvalue()))


def gnu_sparse(name, realsize, chunks):
    """An old-GNU sparse entry ('S'): up to 4 (offset, size) chunks in the header."""
    data = b"".join(b"D" * n for _, n in chunks)
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % len(data)
    h[136:148] = b"%011o\0" % 1_600_000_000
    h[156] = ord("S")
    h[257:265] = b"ustar  \0"
    for i, (off, n) in enumerate(chunks):
        at = 386 + i * 24
        h[at:at + 12] = b"%011o\0" % off
        h[at + 12:at + 24] = b"%011o\0" % n
    h[483:495] = b"%011o\0" % realsize
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    pad = (-len(data)) % 512
    return bytes(h) + data + b"\0" * pad + b"\0" * 1024


put("tar_unpack", "sparse", gnu_sparse("sparse", 4096, [(0, 512), (3584, 512)]))
# Declares 1 TiB in 2 KiB: wrote zeros until the disk was full before the unpacker charged a file's
# declared size against max_layer_unpacked_bytes.
put("tar_unpack", "sparse_bomb", gnu_sparse("bomb", 1 << 40, [(0, 1), (1 << 40, 0)]))

# -- cri_log: first byte seeds the chunking, 0xFE k expands to k*100 'x' ------------------------
put("cri_log", "lines", b"\x05hello\nworld\r\npartial")
put("cri_log", "long", b"\x01\xfe\xa4\n\xfe\xa3xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n")
put("cri_log", "timestamps", b"\x00" + struct.pack("<qq", 1_700_000_000_000_000_000, -1) + b"\n\n")

# -- cni_result -------------------------------------------------------------------------------
put("cni_result", "v1", json.dumps({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "aa:bb"}, {"name": "eth0", "sandbox": "/var/run/netns/x"}],
    "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 1},
            {"address": "fd00::2/64", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}))
put("cni_result", "v020", json.dumps({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/24"}, "ip6": {"ip": "fd00::5/64"}}))
put("cni_result", "broken", '{"ips": [{"address": "999.1.1.1/8", "interface": 18446744073709551615}], "interfaces": 3}')

# -- monitor_control ----------------------------------------------------------------------------
put("monitor_control", "reopen", b"reopen\n")
put("monitor_control", "ping", b" ping ")
put("monitor_control", "start", b"start\n")
put("monitor_control", "abandon", b"abandon\n")
put("monitor_control", "attach", b"\x00\x00\x00\x00\x03ls\n\x01\x00\x00\x00\x0b{\"w\":80,\"h\":24}")
put("monitor_control", "too_big", b"\x00\x00\x10\x00\x01abc")

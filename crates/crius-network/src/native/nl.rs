//! A minimal netlink client: message building (header, fixed header, attributes, nests), one
//! request/acknowledge exchange or a dump over an `AF_NETLINK` socket. rtnetlink (links, addresses,
//! routes) and nfnetlink (nftables) are built on it; nothing here knows either protocol.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(crate) const NETLINK_ROUTE: i32 = 0;
pub(crate) const NETLINK_NETFILTER: i32 = 12;

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Set on nested attributes where the protocol validates it strictly (nftables).
pub(crate) const NLA_F_NESTED: u16 = 0x8000;

const HDR_LEN: usize = 16;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message under construction: `nlmsghdr`, the protocol's fixed header, attributes.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    pub(crate) fn new(ty: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[0; HDR_LEN]);
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        let mut m = Msg {
            buf,
            nests: Vec::new(),
        };
        m.raw(fixed);
        m
    }

    /// Bytes appended as they are, padded to 4 (a fixed header inside a nest, as veth's peer has).
    pub(crate) fn raw(&mut self, data: &[u8]) -> &mut Msg {
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Msg {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.raw(data)
    }

    pub(crate) fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    pub(crate) fn be32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_be_bytes())
    }

    /// A NUL-terminated string.
    pub(crate) fn str(&mut self, ty: u16, s: &str) -> &mut Msg {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    pub(crate) fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self
    }

    pub(crate) fn end(&mut self) -> &mut Msg {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message with its length and sequence number.
    pub(crate) fn bytes(&self, seq: u32) -> Vec<u8> {
        debug_assert!(self.nests.is_empty(), "unclosed nest");
        let mut b = self.buf.clone();
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b[8..12].copy_from_slice(&seq.to_ne_bytes());
        b
    }

    pub(crate) fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }
}

/// The attributes of a payload: (type without flag bits, data).
pub(crate) fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    out
}

/// A received message: type and payload (after `nlmsghdr`).
pub(crate) struct Reply {
    pub ty: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// Splits a datagram into messages.
pub(crate) fn parse(mut b: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while b.len() >= HDR_LEN {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < HDR_LEN || len > b.len() {
            break;
        }
        out.push(Reply {
            ty: u16::from_ne_bytes([b[4], b[5]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            payload: b[HDR_LEN..len].to_vec(),
        });
        b = &b[align(len).min(b.len())..];
    }
    out
}

/// The errno of an `NLMSG_ERROR` payload (0 is an acknowledgement).
fn error_code(payload: &[u8]) -> i32 {
    if payload.len() < 4 {
        return libc::EPROTO;
    }
    -i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]])
}

pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// A socket of `protocol` in the calling thread's network namespace.
    pub(crate) fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: plain socket(2); the result is checked before it is wrapped.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Replies that never come (a kernel bug, a lost message) must not hang a pod's setup.
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval for the duration of the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let one: libc::c_int = 1;
        // Extended acks: the kernel's own reason text is not needed, but capped acks keep replies small.
        // SAFETY: one is a valid c_int for the duration of the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_CAP_ACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Socket { fd, seq: 1 })
    }

    fn send(&self, data: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; zeroed means "the kernel".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: data and addr are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr() as *const libc::c_void,
                data.len(),
                0,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid and writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends `msgs` in one datagram (an nftables batch is several) and waits for the
    /// acknowledgement of every one that asked for it; the first error wins. Returns the replies
    /// other than acknowledgements (what NLM_F_ECHO or a GET answers).
    pub(crate) fn transact(&mut self, msgs: &[&Msg]) -> io::Result<Vec<Reply>> {
        let mut data = Vec::new();
        let mut waiting = Vec::new();
        for m in msgs {
            self.seq = self.seq.wrapping_add(1);
            if m.flags() & NLM_F_ACK != 0 {
                waiting.push(self.seq);
            }
            data.extend_from_slice(&m.bytes(self.seq));
        }
        self.send(&data)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        while !waiting.is_empty() {
            let n = self.recv(&mut buf)?;
            for r in parse(&buf[..n]) {
                if r.ty == NLMSG_ERROR {
                    waiting.retain(|s| *s != r.seq);
                    let code = error_code(&r.payload);
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(code));
                    }
                } else {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// A dump request: every reply until `NLMSG_DONE`.
    pub(crate) fn dump(&mut self, msg: &Msg) -> io::Result<Vec<Reply>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&msg.bytes(seq))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.recv(&mut buf)?;
            for r in parse(&buf[..n]) {
                if r.seq != seq {
                    continue;
                }
                match r.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = error_code(&r.payload);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(code));
                        }
                    }
                    _ => out.push(r),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout_and_nests() {
        let mut m = Msg::new(16, NLM_F_ACK | NLM_F_CREATE, &[1, 2, 3]);
        m.str(3, "eth0").begin(18).str(1, "veth").end();
        let b = m.bytes(7);
        // Header: length, type, flags (REQUEST added), seq, pid.
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 16);
        assert_eq!(
            u16::from_ne_bytes([b[6], b[7]]),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // The fixed header is padded to 4 bytes.
        assert_eq!(&b[16..20], &[1, 2, 3, 0]);
        let a = attrs(&b[20..]);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (3, &b"eth0\0"[..]));
        // "eth0\0" is 9 bytes with its header, padded to 12: the nest starts at 20 + 12.
        assert_eq!(a[1].0, 18);
        // The nest length covers the padded inner attribute, as libmnl makes it.
        assert_eq!(u16::from_ne_bytes([b[32], b[33]]), 4 + 4 + 8);
        assert_eq!(attrs(a[1].1), vec![(1, &b"veth\0"[..])]);
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn parse_splits_datagrams_and_ignores_truncation() {
        let a = Msg::new(2, 0, &[0xff, 0xff, 0xff, 0xff]).bytes(1);
        let b = Msg::new(3, 0, &[]).bytes(2);
        let mut d = a.clone();
        d.extend_from_slice(&b);
        let r = parse(&d);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].ty, r[0].seq), (2, 1));
        assert_eq!(error_code(&r[0].payload), 1);
        assert_eq!((r[1].ty, r[1].seq), (3, 2));
        assert_eq!(parse(&d[..d.len() - 1]).len(), 1);
        assert!(
            attrs(&[8, 0, 1, 0, 1]).is_empty(),
            "attribute longer than the buffer"
        );
    }
}

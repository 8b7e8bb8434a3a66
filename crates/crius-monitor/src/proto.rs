//! The monitor's wire protocols, pure so they can be tested and fuzzed without a container (the
//! fuzz target `fuzz/fuzz_targets/monitor_control.rs` includes this file as it is): attach frames
//! from the attach socket's clients and requests on the control socket.

/// Longest attach frame accepted from a client; stdin comes in small pieces, so a bigger one
/// means a confused peer.
pub const MAX_FRAME: usize = 1 << 20;

/// One step of decoding a client's attach stream (`u8 kind, u32 BE length, payload`).
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// The length exceeds MAX_FRAME: a confused or hostile peer, dropped.
    TooBig,
    Got(u8, Vec<u8>),
}

/// Takes the next complete frame off the front of `inbuf`.
pub fn next_frame(inbuf: &mut Vec<u8>) -> Frame {
    if inbuf.len() < 5 {
        return Frame::Incomplete;
    }
    let len = u32::from_be_bytes([inbuf[1], inbuf[2], inbuf[3], inbuf[4]]) as usize;
    if len > MAX_FRAME {
        return Frame::TooBig;
    }
    if inbuf.len() < 5 + len {
        return Frame::Incomplete;
    }
    let kind = inbuf[0];
    let payload = inbuf[5..5 + len].to_vec();
    inbuf.drain(..5 + len);
    Frame::Got(kind, payload)
}

/// A control-socket request.
#[derive(Debug, PartialEq, Eq)]
pub enum Ctl {
    Reopen,
    Ping,
    /// `--start-by-monitor`: run `<runtime> start` with the container's stdio.
    Start,
    /// `--start-by-monitor`: the container was deleted before it started; stop waiting.
    Abandon,
    Unknown(String),
}

pub fn parse_ctl(req: &[u8]) -> Ctl {
    let cmd = String::from_utf8_lossy(req);
    match cmd.trim() {
        "reopen" => Ctl::Reopen,
        "ping" => Ctl::Ping,
        "start" => Ctl::Start,
        "abandon" => Ctl::Abandon,
        other => Ctl::Unknown(other.to_string()),
    }
}

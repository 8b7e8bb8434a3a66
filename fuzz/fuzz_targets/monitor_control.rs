//! The monitor's protocols (its clients are the daemon and the streaming server, on sockets in
//! the container's state dir): attach frames decode in any chunking, whole and in order, and an
//! oversized length is refused before anything is buffered for it; a control request is one of
//! the two commands only when it says exactly that word.
#![no_main]

#[path = "../../crates/crius-monitor/src/proto.rs"]
mod proto;

use proto::{next_frame, parse_ctl, Ctl, Frame, MAX_FRAME};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let trimmed = String::from_utf8_lossy(data).trim().to_string();
    match parse_ctl(data) {
        Ctl::Reopen => assert_eq!(trimmed, "reopen"),
        Ctl::Ping => assert_eq!(trimmed, "ping"),
        Ctl::Start => assert_eq!(trimmed, "start"),
        Ctl::Abandon => assert_eq!(trimmed, "abandon"),
        Ctl::Unknown(s) => assert!(
            !["reopen", "ping", "start", "abandon"].contains(&s.as_str()),
            "{s:?}"
        ),
    }

    // The same bytes as an attach stream: all at once versus in chunks of 1..=16 bytes.
    let whole = frames(data, data.len().max(1));
    let step = data.first().map(|&b| (b as usize % 16) + 1).unwrap_or(1);
    assert_eq!(
        frames(data, step),
        whole,
        "decoding depends on the chunking"
    );
    // Re-encoding what was decoded gives back the consumed prefix of the input.
    let mut wire = Vec::new();
    for (k, p) in &whole.0 {
        assert!(p.len() <= MAX_FRAME);
        wire.push(*k);
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(p);
    }
    assert!(data.starts_with(&wire));
});

/// Decoded frames, and whether the stream was refused (TooBig), and the bytes left over.
fn frames(data: &[u8], step: usize) -> (Vec<(u8, Vec<u8>)>, bool, usize) {
    let mut inbuf = Vec::new();
    let mut got = Vec::new();
    for chunk in data.chunks(step) {
        inbuf.extend_from_slice(chunk);
        loop {
            match next_frame(&mut inbuf) {
                Frame::Got(k, p) => got.push((k, p)),
                Frame::Incomplete => break,
                Frame::TooBig => {
                    assert!(inbuf.len() >= 5);
                    let len = u32::from_be_bytes([inbuf[1], inbuf[2], inbuf[3], inbuf[4]]);
                    assert!(len as usize > MAX_FRAME);
                    return (got, true, inbuf.len().min(5));
                }
            }
        }
        assert!(inbuf.len() < 5 + MAX_FRAME, "more buffered than one frame");
    }
    (got, false, inbuf.len())
}

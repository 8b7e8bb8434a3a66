//! The `:authority` rewriter sees every byte a CRI client sends before the HTTP/2 server does.
//! Any header block: no panic, a rewritten block parses again and rewriting is idempotent. Any
//! byte stream, in any chunking: the filter neither panics nor loses or invents bytes outside
//! rewritten HEADERS frames, its output is the same whatever the chunking, and every frame it
//! emits keeps the HTTP/2 framing (length field = payload length, at most 16 KiB if it grew).
#![no_main]

#[path = "../../crates/crius/src/server/authority/rewrite.rs"]
#[allow(dead_code)]
mod rewrite;

use rewrite::{rewrite_block, FrameFilter, PREFACE_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(once) = rewrite_block(data) {
        let twice = rewrite_block(&once).expect("a rewritten block parses");
        assert_eq!(twice, once);
    }

    // The stream: the preface, then the input as frames (whatever its bytes say).
    let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    input.extend_from_slice(data);
    let whole = run(&input, input.len());
    let step = data.first().map(|&b| (b as usize % 13) + 1).unwrap_or(1);
    assert_eq!(run(&input, step), whole, "output depends on the chunking");
    assert_eq!(&whole[..PREFACE_LEN], &input[..PREFACE_LEN]);

    // Walk input and output frame by frame in step.
    let (mut i, mut o) = (PREFACE_LEN, PREFACE_LEN);
    while input.len() - i >= 9 {
        let ilen = u32::from_be_bytes([0, input[i], input[i + 1], input[i + 2]]) as usize;
        if input.len() - i < 9 + ilen {
            break;
        }
        assert!(whole.len() - o >= 9, "a frame vanished");
        let olen = u32::from_be_bytes([0, whole[o], whole[o + 1], whole[o + 2]]) as usize;
        assert!(whole.len() - o >= 9 + olen, "a frame was truncated");
        let (iframe, oframe) = (&input[i..i + 9 + ilen], &whole[o..o + 9 + olen]);
        if iframe != oframe {
            assert_eq!(
                iframe[3],
                rewrite::FRAME_HEADERS,
                "only HEADERS frames change"
            );
            assert_eq!(&iframe[5..9], &oframe[5..9], "the stream id is kept");
            assert!(
                olen <= rewrite::MAX_FRAME || olen <= ilen,
                "a frame grew past 16 KiB"
            );
        }
        i += 9 + ilen;
        o += 9 + olen;
    }
    // An incomplete tail passes as it is.
    assert_eq!(&whole[o..], &input[i..]);
});

fn run(input: &[u8], step: usize) -> Vec<u8> {
    let mut f = FrameFilter::default();
    let mut out = Vec::new();
    for chunk in input.chunks(step) {
        f.push(chunk, &mut out);
    }
    f.finish(&mut out);
    out
}

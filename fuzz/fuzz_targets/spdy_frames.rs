//! What a streaming client sends over SPDY/3.1 (kubectl exec/attach/port-forward): frames are
//! decoded in order with one header decompressor per connection, as the session does. Decoding
//! never panics or spins; every decoded frame encodes again and decodes to itself.
#![no_main]

use crius_streaming::spdy::frame::{self, Frame, HeaderCompressor, HeaderDecompressor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decomp = HeaderDecompressor::new();
    let mut comp = HeaderCompressor::new();
    let mut redecomp = HeaderDecompressor::new();
    let mut rest = data;
    while let Ok(Some((f, used))) = frame::decode(rest, &mut decomp) {
        assert!(
            used >= 8 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        rest = &rest[used..];
        if let Frame::Unknown { .. } = f {
            continue;
        }
        let wire = frame::encode(&f, &mut comp).expect("a decoded frame encodes");
        let (again, n) = frame::decode(&wire, &mut redecomp)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert_eq!(n, wire.len());
        assert_eq!(normalise(again), normalise(f));
    }
});

/// Flags and reserved bits the encoder canonicalises (header names are lowercased on the wire).
fn normalise(f: Frame) -> Frame {
    let lower = |h: Vec<(String, String)>| {
        h.into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect::<Vec<_>>()
    };
    match f {
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            flags,
            headers,
        } => Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            flags,
            headers: lower(headers),
        },
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => Frame::SynReply {
            stream_id,
            flags,
            headers: lower(headers),
        },
        Frame::Headers {
            stream_id,
            flags,
            headers,
        } => Frame::Headers {
            stream_id,
            flags,
            headers: lower(headers),
        },
        other => other,
    }
}

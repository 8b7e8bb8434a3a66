//! What a streaming client sends over WebSocket (v4/v5 channel protocols): single frames decode
//! totally and re-encode to the same bytes' meaning; the message reader reassembles any byte
//! stream, in any chunking, without panicking, spinning or exceeding its message bound; channel
//! payloads (binary and base64) split totally.
#![no_main]

use crius_streaming::ws::frame::{self, Message, MessageReader, MAX_MESSAGE};
use crius_streaming::ws::{decode_channel, encode_channel};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // One frame at a time off the front, as the tunnel's reader does.
    let mut rest = data;
    while let Ok(Some((f, used))) = frame::decode(rest) {
        assert!(used >= 2 && used <= rest.len());
        assert!(f.payload.len() <= MAX_MESSAGE);
        rest = &rest[used..];
        let mask = f.masked.then_some([0x12, 0x34, 0x56, 0x78]);
        let wire = frame::encode(f.fin, f.opcode, &f.payload, mask);
        let (again, n) = frame::decode(&wire)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert_eq!(n, wire.len());
        assert_eq!(again, f);
        for b64 in [false, true] {
            if let Ok((ch, payload)) = decode_channel(&f.payload, b64) {
                let (_, enc) = encode_channel(ch, &payload, b64);
                assert_eq!(
                    decode_channel(&enc, b64).as_ref().ok(),
                    Some(&(ch, payload))
                );
            }
        }
    }

    // The reassembling reader over the whole input, read in small pieces.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async {
        let chunk = data.first().map(|&b| (b as usize % 7) + 1).unwrap_or(1);
        let reader = Chunked { data, chunk };
        let mut r = MessageReader::new(reader);
        let mut guard = 0usize;
        while let Ok(Some(m)) = r.next().await {
            guard += 1;
            assert!(guard <= data.len(), "more messages than input bytes");
            match m {
                Message::Text(d) | Message::Binary(d) => assert!(d.len() <= MAX_MESSAGE),
                Message::Ping(d) | Message::Pong(d) => assert!(d.len() <= 125),
                Message::Close(_) => {}
            }
        }
    });
});

/// An AsyncRead handing out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl tokio::io::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

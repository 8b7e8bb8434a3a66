//! Property tests of the HTTP/2 `:authority` rewriter, which sees every byte a client sends before
//! the HTTP/2 server does.

use proptest::prelude::*;

use super::authority::{rewrite_block, AuthorityFix};

fn block() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        // Literal :authority without indexing, with the name by index 1 and as a string.
        Just(vec![0x01, 0x05, b'/', b'r', b'u', b'n', b'/']),
        Just(b"\x00\x0a:authority\x03abc".to_vec()),
        Just(vec![0x41, 0x02, b'h', b'i']),
        Just(vec![0x82]),
        Just(vec![0x3f, 0xe1, 0x1f]),
        Just(vec![0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any header block: no panic; a rewritten block parses again and rewriting is idempotent.
    #[test]
    fn rewrite_block_is_total_and_idempotent(b in block()) {
        if let Some(once) = rewrite_block(&b) {
            let twice = rewrite_block(&once).expect("a rewritten block parses");
            prop_assert_eq!(twice, once);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any byte stream through the connection filter: it terminates, never panics, and passes at
    /// least everything that is not a HEADERS frame unchanged in length.
    #[test]
    fn connection_filter_passes_any_stream(frames in prop::collection::vec(
        (0u8..10, any::<u8>(), block()), 0..6), tail in prop::collection::vec(any::<u8>(), 0..16)
    ) {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for (ty, flags, payload) in &frames {
            let len = payload.len() as u32;
            input.extend_from_slice(&len.to_be_bytes()[1..]);
            input.push(*ty);
            input.push(*flags);
            input.extend_from_slice(&[0, 0, 0, 1]);
            input.extend_from_slice(payload);
        }
        input.extend_from_slice(&tail);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
            let writer = tokio::spawn(async move {
                let _ = b.write_all(&input).await;
                let _ = b.shutdown().await;
                input
            });
            let mut fix = AuthorityFix::new(a);
            let mut out = Vec::new();
            tokio::time::timeout(std::time::Duration::from_secs(5), fix.read_to_end(&mut out))
                .await
                .expect("the filter must reach EOF")
                .unwrap();
            (out, writer.await.unwrap())
        });
        let (out, input) = out;
        let non_header: usize = frames.iter().filter(|f| f.0 != 1).map(|f| 9 + f.2.len()).sum();
        prop_assert!(out.len() + 64 >= non_header.min(input.len()));
    }
}

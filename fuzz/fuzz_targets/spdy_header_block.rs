//! SPDY name/value blocks, compressed (zlib with the SPDY dictionary) and plain: decompression
//! is bounded and total; a decoded block encodes and decodes to itself; a block compressed by
//! our compressor decompresses to the same bytes.
#![no_main]

use crius_streaming::spdy::frame::{self, HeaderCompressor, HeaderDecompressor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Plain block.
    if let Ok(h) = frame::decode_header_block(data) {
        let enc = frame::encode_header_block(&h);
        let again = frame::decode_header_block(&enc).expect("an encoded block decodes");
        assert_eq!(again, h);
    }
    // Compressed: the same bytes as a peer's zlib stream, split in two frames.
    let cut = data
        .first()
        .map(|&b| b as usize % (data.len() + 1))
        .unwrap_or(0);
    let mut d = HeaderDecompressor::new();
    if let Ok(out) = d.decompress(&data[..cut]) {
        assert!(out.len() <= 1024 * 1024, "{} bytes out", out.len());
        let _ = d.decompress(&data[cut..]);
    }
    // Our compressor and decompressor agree on any bytes, block after block.
    let mut c = HeaderCompressor::new();
    let mut d = HeaderDecompressor::new();
    for part in [&data[..cut], &data[cut..]] {
        let z = c.compress(part).expect("compression succeeds");
        let back = d.decompress(&z).expect("our own stream decompresses");
        assert_eq!(back, part);
    }
});

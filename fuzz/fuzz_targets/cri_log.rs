//! CRI log writing (the monitor's LineSplitter and record format, what the kubelet and
//! `kubectl logs` read back). Whatever a container prints, in any chunking: records reproduce its
//! bytes (F adds the newline back, P does not; a terminal's CR before LF may be dropped), no
//! record holds a newline or exceeds MAX_LINE, and every written line parses back as
//! `<timestamp> <stream> <F|P> <content>`. Timestamps have one fixed layout and sort like time.
#![no_main]

#[path = "../../crates/crius-monitor/src/crilog.rs"]
#[allow(dead_code)]
mod crilog;

use crilog::{format_record, format_timestamp, LineSplitter, Stream, Tag, MAX_LINE};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((&seed, rest)) = input.split_first() else {
        return;
    };
    // 0xFE k expands to k*100 bytes of 'x' so that lines reach MAX_LINE from small inputs.
    let mut data = Vec::new();
    let mut it = rest.iter();
    while let Some(&b) = it.next() {
        if b == 0xFE {
            let k = it.next().copied().unwrap_or(1) as usize;
            data.resize(data.len() + k * 100, b'x');
        } else {
            data.push(b);
        }
    }

    let ts = format_timestamp(1_700_000_000_123_456_789);
    let step = (seed as usize % 64) * 331 + 1;
    let mut splitter = LineSplitter::default();
    let mut records: Vec<(Tag, Vec<u8>)> = Vec::new();
    let mut emit = |tag: Tag, content: &[u8]| records.push((tag, content.to_vec()));
    for chunk in data.chunks(step) {
        splitter.push(chunk, &mut emit);
    }
    splitter.finish(&mut emit);

    let mut rebuilt = Vec::new();
    let mut file = Vec::new();
    for (tag, content) in &records {
        assert!(
            content.len() <= MAX_LINE,
            "record of {} bytes",
            content.len()
        );
        assert!(!content.contains(&b'\n'));
        rebuilt.extend_from_slice(content);
        if *tag == Tag::Full {
            rebuilt.push(b'\n');
        }
        format_record(&ts, Stream::Stderr, *tag, content, &mut file);
    }
    // The records reproduce the stream; the only bytes allowed to go are CRs right before LFs.
    let (mut i, mut j) = (0, 0);
    while i < data.len() {
        if j < rebuilt.len() && data[i] == rebuilt[j] {
            i += 1;
            j += 1;
        } else if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
        } else {
            panic!("records diverge from the stream at byte {i}");
        }
    }
    assert_eq!(j, rebuilt.len(), "records hold bytes the stream did not");

    // The file parses back line by line into the same records.
    let mut lines = file.split(|&b| b == b'\n');
    for (tag, content) in &records {
        let line = lines.next().expect("one line per record");
        let mut parts = line.splitn(4, |&b| b == b' ');
        assert_eq!(parts.next(), Some(ts.as_bytes()));
        assert_eq!(parts.next(), Some(&b"stderr"[..]));
        assert_eq!(parts.next(), Some(tag.letter().as_bytes()));
        assert_eq!(parts.next(), Some(&content[..]));
    }
    assert_eq!(lines.next(), Some(&b""[..]));
    assert_eq!(lines.next(), None);

    // Timestamps over the whole range a clock can give (i64 nanoseconds).
    if rest.len() >= 16 {
        let a = i64::from_le_bytes(rest[..8].try_into().unwrap_or_default()) as i128;
        let b = i64::from_le_bytes(rest[8..16].try_into().unwrap_or_default()) as i128;
        let (ta, tb) = (format_timestamp(a), format_timestamp(b));
        for t in [&ta, &tb] {
            let bytes = t.as_bytes();
            assert_eq!(bytes.len(), 30, "{t}");
            for (k, c) in bytes.iter().enumerate() {
                match k {
                    4 | 7 => assert_eq!(*c, b'-', "{t}"),
                    10 => assert_eq!(*c, b'T', "{t}"),
                    13 | 16 => assert_eq!(*c, b':', "{t}"),
                    19 => assert_eq!(*c, b'.', "{t}"),
                    29 => assert_eq!(*c, b'Z', "{t}"),
                    _ => assert!(c.is_ascii_digit(), "{t}"),
                }
            }
        }
        assert_eq!(a.cmp(&b), ta.cmp(&tb), "{a} {ta} / {b} {tb}");
    }
});

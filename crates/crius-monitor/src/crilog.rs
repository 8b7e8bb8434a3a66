//! The CRI container log format: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`.
//!
//! Pure parts only (timestamps, line splitting) so they can be unit-tested without a container.
//! Output is cut at newlines; an unterminated run is held back until it completes, reaches
//! [`MAX_LINE`] bytes (then emitted as `P`), or the stream ends. At the end of a stream the held
//! piece is written as `P`, like CRI-O: the kubelet's reader then reproduces the bytes exactly
//! (no newline is invented). containerd writes that last piece as `F` instead.

/// Longest content of one log record; longer lines are split into `P` records (containerd and
/// CRI-O both use 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    pub fn letter(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Formats unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always 9 fractional digits so
/// that lines sort lexically; Go's RFC3339Nano parser accepts it).
pub fn format_timestamp(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One log record, ready to be written.
pub fn format_record(ts: &str, stream: Stream, tag: Tag, content: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.letter().as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// A terminal ends lines with `\r\n`; like containerd, the `\r` is not part of the line.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Cuts one stream's bytes into log records, holding back an unterminated tail.
#[derive(Default)]
pub struct LineSplitter {
    held: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; `emit` receives each complete record's tag and content (without newline).
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Tag, &[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.held.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.held.is_empty() {
                        emit(Tag::Full, strip_cr(&window[..i]));
                    } else {
                        self.held.extend_from_slice(&window[..i]);
                        emit(Tag::Full, strip_cr(&self.held));
                        self.held.clear();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.held.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.held.len() == MAX_LINE {
                        // A newline right after a full chunk still ends the line: peek for it so
                        // a line of exactly MAX_LINE bytes is one F record, not P + empty F.
                        if data.first() == Some(&b'\n') {
                            emit(Tag::Full, strip_cr(&self.held));
                            data = &data[1..];
                        } else {
                            emit(Tag::Partial, &self.held);
                        }
                        self.held.clear();
                    }
                }
            }
        }
        if self.held.capacity() > MAX_LINE && self.held.is_empty() {
            self.held = Vec::new();
        }
    }

    /// End of stream: the unterminated tail, if any, as a `P` record.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Tag, &[u8])) {
        if !self.held.is_empty() {
            emit(Tag::Partial, &self.held);
            self.held = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]], finish: bool) -> Vec<(Tag, Vec<u8>)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |t, b| out.push((t, b.to_vec())));
        }
        if finish {
            s.finish(&mut |t, b| out.push((t, b.to_vec())));
        }
        out
    }

    #[test]
    fn timestamps_are_utc_with_nanoseconds() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-25T10:21:36.123456789Z
        let ns = 1_795_602_096_123_456_789i128;
        assert_eq!(format_timestamp(ns), "2026-11-25T10:21:36.123456789Z");
        // leap day and end of year
        assert_eq!(
            format_timestamp(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            format_timestamp(1_735_689_599_999_999_999),
            "2024-12-31T23:59:59.999999999Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn record_layout() {
        let mut out = Vec::new();
        format_record("T", Stream::Stderr, Tag::Partial, b"a b", &mut out);
        assert_eq!(out, b"T stderr P a b\n");
        out.clear();
        format_record("T", Stream::Stdout, Tag::Full, b"", &mut out);
        assert_eq!(out, b"T stdout F \n");
    }

    #[test]
    fn full_lines_and_held_tail() {
        let out = collect(&[b"one\ntw", b"o\n\nthr"], false);
        assert_eq!(
            out,
            vec![
                (Tag::Full, b"one".to_vec()),
                (Tag::Full, b"two".to_vec()),
                (Tag::Full, b"".to_vec())
            ]
        );
        let out = collect(&[b"one\nthr"], true);
        assert_eq!(
            out,
            vec![
                (Tag::Full, b"one".to_vec()),
                (Tag::Partial, b"thr".to_vec())
            ]
        );
    }

    #[test]
    fn long_lines_split_at_16k() {
        let line = vec![b'x'; MAX_LINE * 2 + 5];
        let mut input = line.clone();
        input.push(b'\n');
        // fed in odd-sized chunks to cross chunk boundaries
        let chunks: Vec<&[u8]> = input.chunks(3000).collect();
        let out = collect(&chunks, true);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], (Tag::Partial, vec![b'x'; MAX_LINE]));
        assert_eq!(out[1], (Tag::Partial, vec![b'x'; MAX_LINE]));
        assert_eq!(out[2], (Tag::Full, vec![b'x'; 5]));
    }

    #[test]
    fn exactly_max_line_is_one_full_record() {
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        input.extend_from_slice(b"z\n");
        let out = collect(&[&input], true);
        assert_eq!(
            out,
            vec![
                (Tag::Full, vec![b'y'; MAX_LINE]),
                (Tag::Full, b"z".to_vec())
            ]
        );
    }

    #[test]
    fn crlf_line_endings_lose_the_cr() {
        let out = collect(&[b"a\r\nb\r", b"\nc\rd\n"], true);
        assert_eq!(
            out,
            vec![
                (Tag::Full, b"a".to_vec()),
                (Tag::Full, b"b".to_vec()),
                (Tag::Full, b"c\rd".to_vec())
            ]
        );
    }

    #[test]
    fn empty_input_emits_nothing() {
        assert!(collect(&[b""], true).is_empty());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// However the bytes arrive, the records reproduce them exactly (F adds the newline back, P
        /// does not), and no record is longer than MAX_LINE.
        #[test]
        fn records_reproduce_the_stream(
            lines in prop::collection::vec((0usize..40_000, any::<bool>(), any::<u8>()), 0..6),
            cuts in prop::collection::vec(1usize..20_000, 0..6),
        ) {
            // Lines around and across MAX_LINE, some unterminated, with an arbitrary byte (not CR:
            // a terminal's CR before LF is dropped on purpose) somewhere in each.
            let mut data = Vec::new();
            for (len, newline, odd) in lines {
                let start = data.len();
                data.resize(start + len, b'a');
                if len > 0 && odd != b'\r' {
                    data[start + (odd as usize * 97) % len] = odd;
                }
                if newline {
                    data.push(b'\n');
                }
            }
            let mut s = LineSplitter::default();
            let mut out = Vec::new();
            let mut longest = 0;
            let mut emit = |tag: Tag, content: &[u8]| {
                longest = longest.max(content.len());
                out.extend_from_slice(content);
                if tag == Tag::Full {
                    out.push(b'\n');
                }
            };
            let mut rest = &data[..];
            for c in cuts {
                let n = c.min(rest.len());
                s.push(&rest[..n], &mut emit);
                rest = &rest[n..];
            }
            s.push(rest, &mut emit);
            s.finish(&mut emit);
            prop_assert!(longest <= MAX_LINE);
            prop_assert_eq!(out, data);
        }
    }
}

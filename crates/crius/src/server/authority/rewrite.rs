//! The pure part of the `:authority` rewriter: HPACK block and HTTP/2 frame rewriting, and the
//! framing state machine the connection filter drives. No I/O, so the fuzz target
//! (`fuzz/fuzz_targets/authority_rewrite.rs`) includes this file as it is.

pub const PREFACE_LEN: usize = 24;
pub const FRAME_HEADERS: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;
/// The default SETTINGS_MAX_FRAME_SIZE; a rewrite never grows a frame past it.
pub const MAX_FRAME: usize = 16384;
pub const NEW_AUTHORITY: &[u8] = b"localhost";

/// Decodes an HPACK prefix integer (RFC 7541 §5.1) at `buf[*pos]` with an `n`-bit prefix.
fn read_int(buf: &[u8], pos: &mut usize, n: u8) -> Option<usize> {
    let mask = (1u16 << n) as usize - 1;
    let first = *buf.get(*pos)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Some(first);
    }
    let mut value = mask;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)? as usize;
        *pos += 1;
        value = value.checked_add((b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Skips a string literal; returns (huffman, bytes range).
fn read_str(buf: &[u8], pos: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *buf.get(*pos)? & 0x80 != 0;
    let len = read_int(buf, pos, 7)?;
    let start = *pos;
    let end = start.checked_add(len)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some((huffman, start..end))
}

/// Returns the header block with every literal `:authority` value replaced, or None if the block does
/// not parse (it is then passed on untouched, and the server judges it).
pub fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let b = block[pos];
        if b & 0x80 != 0 {
            read_int(block, &mut pos, 7)?;
            out.extend_from_slice(&block[start..pos]);
            continue;
        }
        if b & 0xe0 == 0x20 {
            read_int(block, &mut pos, 5)?;
            out.extend_from_slice(&block[start..pos]);
            continue;
        }
        // A literal: with incremental indexing (01), or without / never indexed (0000 / 0001).
        let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
        let index = read_int(block, &mut pos, prefix)?;
        let mut is_authority = index == 1;
        if index == 0 {
            let (huffman, name) = read_str(block, &mut pos)?;
            is_authority = !huffman && &block[name] == b":authority";
        }
        let name_end = pos;
        read_str(block, &mut pos)?;
        out.extend_from_slice(&block[start..name_end]);
        if is_authority {
            out.push(NEW_AUTHORITY.len() as u8);
            out.extend_from_slice(NEW_AUTHORITY);
        } else {
            out.extend_from_slice(&block[name_end..pos]);
        }
    }
    Some(out)
}

/// Rewrites one complete frame (9-byte header + payload) into `out`.
pub fn rewrite_frame(frame: &[u8], out: &mut Vec<u8>) {
    let (ty, flags) = (frame[3], frame[4]);
    if ty != FRAME_HEADERS || flags & FLAG_END_HEADERS == 0 {
        out.extend_from_slice(frame);
        return;
    }
    let payload = &frame[9..];
    let mut pos = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        let Some(&p) = payload.first() else {
            out.extend_from_slice(frame);
            return;
        };
        pad = p as usize;
        pos = 1;
    }
    let prio = if flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
    if pos + prio + pad > payload.len() {
        out.extend_from_slice(frame);
        return;
    }
    let block = &payload[pos + prio..payload.len() - pad];
    let Some(new_block) = rewrite_block(block) else {
        out.extend_from_slice(frame);
        return;
    };
    let len = prio + new_block.len();
    if new_block == block || len > MAX_FRAME {
        out.extend_from_slice(frame);
        return;
    }
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(ty);
    // Padding is dropped with its flag; the rest of the frame header stays.
    out.push(flags & !FLAG_PADDED);
    out.extend_from_slice(&frame[5..9]);
    out.extend_from_slice(&payload[pos..pos + prio]);
    out.extend_from_slice(&new_block);
}

/// Cuts an inbound byte stream into the preface and whole frames and rewrites each frame; bytes of
/// an incomplete frame wait in `raw` until the rest arrives (or the stream ends).
#[derive(Default)]
pub struct FrameFilter {
    raw: Vec<u8>,
    preface_done: bool,
}

impl FrameFilter {
    /// Appends received bytes and moves every complete unit (preface, frames) to `ready`.
    pub fn push(&mut self, bytes: &[u8], ready: &mut Vec<u8>) {
        self.raw.extend_from_slice(bytes);
        if !self.preface_done {
            if self.raw.len() < PREFACE_LEN {
                return;
            }
            ready.extend(self.raw.drain(..PREFACE_LEN));
            self.preface_done = true;
        }
        let mut pos = 0;
        while self.raw.len() - pos >= 9 {
            let len = u32::from_be_bytes([0, self.raw[pos], self.raw[pos + 1], self.raw[pos + 2]])
                as usize;
            if self.raw.len() - pos < 9 + len {
                break;
            }
            rewrite_frame(&self.raw[pos..pos + 9 + len], ready);
            pos += 9 + len;
        }
        self.raw.drain(..pos);
    }

    /// End of stream: whatever incomplete bytes remain go out as they are (the server sees the
    /// truncation).
    pub fn finish(&mut self, ready: &mut Vec<u8>) {
        ready.append(&mut self.raw);
    }
}

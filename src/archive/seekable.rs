//! zstd's seekable format (facebook/zstd `contrib/seekable_format`): independent zstd frames, then one skippable
//! frame holding the seek table. `zstd -d`, `tar --zstd` and `tar -I zstd` read the frames and skip the table.
//!
//! ```text
//! frame … frame | 5e 2a 4d 18 | table len u32le | per frame: clen u32le, ulen u32le | count u32le | 00 | b1 ea 92 8f
//! ```
//!
//! Every frame bakthat writes declares its content size and carries zstd's content checksum, so a reader knows a
//! frame's output size before inflating it, and a flipped byte fails the checksum. The seek table has no checksums
//! (descriptor 0): the frames carry their own.
//!
//! Everything read here is untrusted: a frame header must declare its content size, within [`MAX_MEMBER_LEN`], and
//! a window no larger; block sizes stay within the format's 128 KiB; the seek table must list exactly the frames
//! before it and end the stream. Memory is one frame and its output. This module knows nothing of tar, of
//! encryption or of gzip; [`super::codec`] chooses between the two member formats.

use std::cell::RefCell;
use std::io::{self, Read};

use super::members::{read_full, MemberLens, MAX_MEMBER_LEN};

/// The first four bytes of a zstd frame.
pub const FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The skippable-frame magic the seekable format uses for its seek table.
const SEEK_TABLE_MAGIC: u32 = 0x184d_2a5e;
/// The last four bytes of a seekable archive.
const SEEKABLE_MAGIC: u32 = 0x8f92_eab1;
/// Seek table footer: frame count, descriptor, magic.
const FOOTER_LEN: usize = 9;
/// The format's largest block (`Block_Maximum_Size`).
const MAX_BLOCK: usize = 128 << 10;
/// zstd levels bakthat accepts (20 to 22 need windows far beyond a member's size).
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` into one zstd frame declaring its content size and carrying a content checksum.
pub fn compress_frame(data: &[u8], level: i32) -> Vec<u8> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            let mut c = zstd::bulk::Compressor::new(level.clamp(*LEVELS.start(), *LEVELS.end()))
                .expect("a zstd context can be made");
            c.include_checksum(true).expect("a valid parameter");
            c.include_contentsize(true).expect("a valid parameter");
            *slot = Some((level, c));
        }
        let (_, c) = slot.as_mut().expect("compressor was just created");
        c.compress(data).expect("compressing into a buffer of the compress bound cannot fail")
    })
}

/// The seek table frame for frames of these lengths.
pub fn seek_table(frames: &[MemberLens]) -> Vec<u8> {
    let body = frames.len() * 8 + FOOTER_LEN;
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&SEEK_TABLE_MAGIC.to_le_bytes());
    out.extend_from_slice(&(body as u32).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&f.clen.to_le_bytes());
        out.extend_from_slice(&f.ulen.to_le_bytes());
    }
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    out
}

/// Parses a whole seek table frame (from its skippable magic to the end of the archive).
pub fn parse_seek_table(buf: &[u8]) -> io::Result<Vec<MemberLens>> {
    if buf.len() < 8 + FOOTER_LEN || u32le(buf, 0) != SEEK_TABLE_MAGIC {
        return Err(corrupt("the zstd seek table is missing or cut short"));
    }
    let body = u32le(buf, 4) as usize;
    if body != buf.len() - 8 {
        return Err(corrupt("the zstd seek table's length does not match its frame"));
    }
    let foot = buf.len() - FOOTER_LEN;
    if u32le(buf, foot + 5) != SEEKABLE_MAGIC {
        return Err(corrupt("the zstd seek table does not end in the seekable magic"));
    }
    let descriptor = buf[foot + 4];
    if descriptor & 0x7c != 0 {
        return Err(corrupt("the zstd seek table sets reserved bits"));
    }
    let entry = if descriptor & 0x80 != 0 { 12 } else { 8 };
    let count = u32le(buf, foot) as usize;
    if count.checked_mul(entry) != Some(foot - 8) {
        return Err(corrupt("the zstd seek table's frame count does not match its length"));
    }
    Ok((0..count)
        .map(|i| {
            let at = 8 + i * entry;
            MemberLens { clen: u32le(buf, at), ulen: u32le(buf, at + 4) }
        })
        .collect())
}

/// What a frame header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    /// Bytes of the header, magic included.
    len: usize,
    content_size: u64,
    checksum: bool,
}

/// Header length from the first five bytes (magic and descriptor).
fn header_len(fhd: u8) -> usize {
    let single = fhd & 0x20 != 0;
    let dict = [0, 1, 2, 4][(fhd & 3) as usize];
    let fcs = match fhd >> 6 {
        0 if single => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    5 + usize::from(!single) + dict + fcs
}

/// Parses and bounds a frame header (`buf` holds at least [`header_len`] bytes).
fn parse_header(buf: &[u8]) -> io::Result<FrameHeader> {
    if buf.len() < 5 || buf[..4] != FRAME_MAGIC {
        return Err(corrupt("not a zstd frame"));
    }
    let fhd = buf[4];
    let len = header_len(fhd);
    if buf.len() < len {
        return Err(corrupt("truncated zstd frame header"));
    }
    if fhd & 0x08 != 0 {
        return Err(corrupt("zstd frame header sets its reserved bit"));
    }
    if fhd & 3 != 0 {
        return Err(corrupt("zstd frame needs a dictionary; bakthat writes none"));
    }
    let single = fhd & 0x20 != 0;
    // No dictionary ID (refused above): the content size field follows the window descriptor, if any.
    let fcs_field = &buf[5 + usize::from(!single)..len];
    let content_size = match fcs_field.len() {
        0 => return Err(corrupt("zstd frame does not declare its content size; bakthat's frames all do")),
        1 => u64::from(fcs_field[0]),
        2 => u64::from(u16::from_le_bytes([fcs_field[0], fcs_field[1]])) + 256,
        4 => u64::from(u32le(fcs_field, 0)),
        _ => u64::from_le_bytes(fcs_field[..8].try_into().expect("8 bytes")),
    };
    if content_size > MAX_MEMBER_LEN as u64 {
        return Err(corrupt(&format!("zstd frame declares {content_size} bytes, more than a member may hold")));
    }
    if !single {
        let wd = buf[5];
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        let window = base + (base / 8) * u64::from(wd & 7);
        if window > (MAX_MEMBER_LEN as u64) * 2 {
            return Err(corrupt(&format!("zstd frame declares a window of {window} bytes, more than bakthat accepts")));
        }
    }
    Ok(FrameHeader { len, content_size, checksum: fhd & 0x04 != 0 })
}

/// Inflates one whole frame, checking its declared size and content checksum.
pub fn decompress_frame(frame: &[u8]) -> io::Result<Vec<u8>> {
    let head = parse_header(frame)?;
    let mut out = Vec::with_capacity(head.content_size as usize);
    let n = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("decompressor was just created").decompress_to_buffer(frame, &mut out)
    });
    let n = n.map_err(|e| corrupt(&format!("zstd frame does not decompress: {e}")))?;
    if n as u64 != head.content_size {
        return Err(corrupt("zstd frame decompressed to another size than it declares"));
    }
    Ok(out)
}

/// Reads bakthat's seekable zstd stream frame by frame, without inflating: each frame whole, then the seek table,
/// checked against the frames read.
#[derive(Debug, Default)]
pub struct FrameReader {
    seen: Vec<MemberLens>,
    done: bool,
}

impl FrameReader {
    /// The next whole frame and its lengths; `None` once the seek table has been read and checked.
    pub fn next_frame<R: Read>(&mut self, r: &mut R) -> io::Result<Option<(Vec<u8>, MemberLens)>> {
        if self.done {
            return Ok(None);
        }
        let mut magic = [0u8; 4];
        let got = read_full(r, &mut magic)?;
        if got < 4 {
            return Err(corrupt("the zstd stream ends before its seek table (truncated)"));
        }
        if magic == FRAME_MAGIC {
            let (frame, lens) = read_frame(r)?;
            self.seen.push(lens);
            return Ok(Some((frame, lens)));
        }
        let m = u32::from_le_bytes(magic);
        if m == SEEK_TABLE_MAGIC {
            self.read_seek_table(r)?;
            self.done = true;
            return Ok(None);
        }
        if m & 0xffff_fff0 == 0x184d_2a50 {
            return Err(corrupt("unexpected skippable frame in the zstd stream"));
        }
        Err(corrupt("not a zstd frame"))
    }

    fn read_seek_table<R: Read>(&mut self, r: &mut R) -> io::Result<()> {
        let mut len = [0u8; 4];
        if read_full(r, &mut len)? < 4 {
            return Err(corrupt("the zstd seek table is cut short"));
        }
        let body = u32::from_le_bytes(len) as usize;
        // Bounded by what the frames read so far allow (12 bytes an entry at most), before allocating.
        if body > self.seen.len() * 12 + FOOTER_LEN {
            return Err(corrupt("the zstd seek table is longer than its frames need"));
        }
        let mut table = vec![0u8; 8 + body];
        table[..4].copy_from_slice(&SEEK_TABLE_MAGIC.to_le_bytes());
        table[4..8].copy_from_slice(&len);
        if read_full(r, &mut table[8..])? < body {
            return Err(corrupt("the zstd seek table is cut short"));
        }
        if parse_seek_table(&table)? != self.seen {
            return Err(corrupt("the zstd seek table does not match the frames before it"));
        }
        if read_full(r, &mut [0u8; 1])? != 0 {
            return Err(corrupt("data follows the zstd seek table"));
        }
        Ok(())
    }
}

/// Reads the rest of a frame whose magic was just read: header, blocks, checksum. Returns the whole frame.
fn read_frame<R: Read>(r: &mut R) -> io::Result<(Vec<u8>, MemberLens)> {
    let mut frame = Vec::with_capacity(64 << 10);
    frame.extend_from_slice(&FRAME_MAGIC);
    let mut fhd = [0u8; 1];
    if read_full(r, &mut fhd)? < 1 {
        return Err(corrupt("truncated zstd frame header"));
    }
    frame.push(fhd[0]);
    let hl = header_len(fhd[0]);
    frame.resize(hl, 0);
    if read_full(r, &mut frame[5..])? < hl - 5 {
        return Err(corrupt("truncated zstd frame header"));
    }
    let head = parse_header(&frame)?;
    // zstd stores a block compressed only when that is smaller than the block, so an honest frame holds at most its
    // content plus a 3-byte header per 128 KiB block (and one empty block). Anything longer is refused as it is read,
    // which bounds memory by the declared size, itself bounded.
    let limit = head.len as u64 + head.content_size + 3 * (head.content_size / MAX_BLOCK as u64 + 2) + 4;
    let mut regenerated = 0u64;
    loop {
        let mut bh = [0u8; 3];
        if read_full(r, &mut bh)? < 3 {
            return Err(corrupt("truncated zstd frame"));
        }
        let v = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
        let (last, kind, size) = (v & 1 != 0, (v >> 1) & 3, (v >> 3) as usize);
        if size > MAX_BLOCK {
            return Err(corrupt("zstd block larger than the format allows"));
        }
        let (stored, out) = match kind {
            0 => (size, size),
            1 => (1, size),
            2 => (size, 0),
            _ => return Err(corrupt("zstd block of a reserved type")),
        };
        regenerated += out as u64;
        frame.extend_from_slice(&bh);
        if frame.len() as u64 + stored as u64 > limit || regenerated > head.content_size {
            return Err(corrupt("zstd frame is larger than its declared content allows"));
        }
        let at = frame.len();
        frame.resize(at + stored, 0);
        if read_full(r, &mut frame[at..])? < stored {
            return Err(corrupt("truncated zstd frame"));
        }
        if last {
            break;
        }
    }
    if head.checksum {
        let at = frame.len();
        frame.resize(at + 4, 0);
        if read_full(r, &mut frame[at..])? < 4 {
            return Err(corrupt("truncated zstd frame"));
        }
    }
    let lens = MemberLens { clen: frame.len() as u32, ulen: head.content_size as u32 };
    Ok((frame, lens))
}

fn u32le(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("archive is corrupt: {what}"))
}

#[cfg(test)]
mod tests;

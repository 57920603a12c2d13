//! The member codec: one tar span compressed as one independent unit, gzip ([`super::members`]) or zstd
//! ([`super::seekable`]), and the parallel reader of a stream of them. Pack, the ranged reads of the index and the
//! mount, restore, verify and import all go through here; none of them names a compression format.
//!
//! A stream's format is told by its first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`), so readers need no hint from the
//! stored name. A gzip stream that is not bakthat's members (0.6's single member, a `.tar.gz` stored as is) is read
//! by flate2 on one core. Not here: tar, encryption, stores.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::RangeInclusive;

use rayon::prelude::*;

use super::members::{self, read_full, MemberLens};
use super::seekable;
pub use crate::model::Compression;

/// libdeflate level by default: 1.5× faster than level 6 and within 1% of `gzip -6`'s size (see the README).
pub const GZIP_DEFAULT_LEVEL: i32 = 4;
/// zstd level by default (see the README's performance section for the measurement).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// The default level of a compression.
pub fn default_level(c: Compression) -> i32 {
    match c {
        Compression::Gzip => GZIP_DEFAULT_LEVEL,
        Compression::Zstd => ZSTD_DEFAULT_LEVEL,
    }
}

/// The levels a compression accepts (libdeflate's 1 to 12; zstd's 1 to 19).
pub fn levels(c: Compression) -> RangeInclusive<i32> {
    match c {
        Compression::Gzip => 1..=12,
        Compression::Zstd => seekable::LEVELS,
    }
}

/// Compresses one span into one independent member.
pub fn compress(c: Compression, data: &[u8], level: i32) -> Vec<u8> {
    match c {
        Compression::Gzip => members::compress_member(data, level),
        Compression::Zstd => seekable::compress_frame(data, level),
    }
}

/// What follows the last member: nothing for gzip, the seek table for zstd.
pub fn trailer(c: Compression, written: &[MemberLens]) -> Vec<u8> {
    match c {
        Compression::Gzip => Vec::new(),
        Compression::Zstd => seekable::seek_table(written),
    }
}

/// The format a stream (or one member) starts with, if it is one of the two.
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&seekable::FRAME_MAGIC) {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// Inflates one whole member of either format, checking its checksum and length.
pub fn decompress(member: &[u8]) -> io::Result<Vec<u8>> {
    match sniff(member) {
        Some(Compression::Zstd) => seekable::decompress_frame(member),
        _ => members::inflate_member(member),
    }
}

/// Inflates several whole members in parallel.
pub fn decompress_all(members: &[&[u8]]) -> io::Result<Vec<Vec<u8>>> {
    members.par_iter().map(|m| decompress(m)).collect()
}

/// Cuts a stream of members into whole members, without inflating them.
enum Framing {
    Gzip,
    Zstd(seekable::FrameReader),
}

impl Framing {
    fn next<R: Read>(&mut self, r: &mut R) -> io::Result<Option<(Vec<u8>, MemberLens)>> {
        match self {
            Framing::Gzip => members::read_member(r),
            Framing::Zstd(f) => f.next_frame(r),
        }
    }
}

/// Observes each member as a reader passes it: (offset in the compressed stream, lengths).
pub type MemberObserver = Box<dyn FnMut(u64, MemberLens) + Send>;

/// Inflates a stream of bakthat members, a batch at a time on all cores. Memory: one batch of members.
pub struct ParallelInflate<R: Read> {
    inner: R,
    framing: Framing,
    batch: usize,
    offset: u64,
    /// Inflated members not yet handed out, served in order without copying them together.
    out: VecDeque<Vec<u8>>,
    pos: usize,
    done: bool,
    observer: Option<MemberObserver>,
}

impl<R: Read> ParallelInflate<R> {
    /// Reads members of format `c` from `inner`; `batch` members are inflated together (use a few per core).
    pub fn new(inner: R, c: Compression, batch: usize) -> Self {
        let framing = match c {
            Compression::Gzip => Framing::Gzip,
            Compression::Zstd => Framing::Zstd(seekable::FrameReader::default()),
        };
        let out = VecDeque::new();
        ParallelInflate { inner, framing, batch: batch.max(1), offset: 0, out, pos: 0, done: false, observer: None }
    }

    /// Calls `f` for each member read, in order.
    pub fn with_observer(mut self, f: MemberObserver) -> Self {
        self.observer = Some(f);
        self
    }

    fn refill(&mut self) -> io::Result<()> {
        let mut batch = Vec::with_capacity(self.batch);
        while batch.len() < self.batch {
            match self.framing.next(&mut self.inner)? {
                Some((m, lens)) => {
                    if let Some(f) = self.observer.as_mut() {
                        f(self.offset, lens);
                    }
                    self.offset += u64::from(lens.clen);
                    batch.push(m);
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        let inflated: Vec<Vec<u8>> = batch.par_iter().map(|m| decompress(m)).collect::<io::Result<_>>()?;
        self.out.extend(inflated.into_iter().filter(|p| !p.is_empty()));
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for ParallelInflate<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(front) = self.out.front() {
                let n = buf.len().min(front.len() - self.pos);
                buf[..n].copy_from_slice(&front[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == front.len() {
                    self.out.pop_front();
                    self.pos = 0;
                }
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
    }
}

/// A decoded stream handed out as owned blocks, so a consumer on another thread gets the inflater's buffers
/// themselves rather than copies of them.
pub trait Blocks: Send {
    /// The next block (never empty), or `None` at the end.
    fn next_block(&mut self) -> io::Result<Option<Vec<u8>>>;
}

impl<R: Read + Send> Blocks for ParallelInflate<R> {
    fn next_block(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(front) = self.out.pop_front() {
                let pos = std::mem::take(&mut self.pos);
                return Ok(Some(if pos == 0 { front } else { front[pos..].to_vec() }));
            }
            if self.done {
                return Ok(None);
            }
            self.refill()?;
        }
    }
}

/// Any reader, in blocks of 1 MiB.
struct ReadBlocks<R>(R);

impl<R: Read + Send> Blocks for ReadBlocks<R> {
    fn next_block(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut block = vec![0u8; 1 << 20];
        let n = read_full(&mut self.0, &mut block)?;
        block.truncate(n);
        Ok((n > 0).then_some(block))
    }
}

/// Opens a compressed tar stream: bakthat's members (gzip or zstd) are inflated in parallel, any other gzip
/// (bakthat 0.6's single member, or a `.tar.gz` stored as is) streams through flate2.
pub fn open<'a, R: Read + Send + 'a>(inner: R, batch: usize) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match sniff_stream(inner, batch)? {
        Opened::Members(g) => Box::new(g),
        Opened::Other(d) => Box::new(d),
    })
}

/// [`open`] as [`Blocks`]: bakthat members are handed out as inflated, without a copy.
pub fn open_blocks<'a, R: Read + Send + 'a>(inner: R, batch: usize) -> io::Result<Box<dyn Blocks + 'a>> {
    Ok(match sniff_stream(inner, batch)? {
        Opened::Members(g) => Box::new(g),
        Opened::Other(d) => Box::new(ReadBlocks(d)),
    })
}

type Chained<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

enum Opened<R: Read> {
    Members(ParallelInflate<Chained<R>>),
    Other(Box<flate2::read::MultiGzDecoder<Chained<R>>>),
}

fn sniff_stream<R: Read>(mut inner: R, batch: usize) -> io::Result<Opened<R>> {
    let mut head = [0u8; members::HEADER_LEN];
    let got = read_full(&mut inner, &mut head)?;
    let chained = io::Cursor::new(head[..got].to_vec()).chain(inner);
    match sniff(&head[..got]) {
        Some(Compression::Zstd) => Ok(Opened::Members(ParallelInflate::new(chained, Compression::Zstd, batch))),
        Some(Compression::Gzip) if members::parse_header(&head[..got]).is_some() => {
            Ok(Opened::Members(ParallelInflate::new(chained, Compression::Gzip, batch)))
        }
        Some(Compression::Gzip) => Ok(Opened::Other(Box::new(flate2::read::MultiGzDecoder::new(chained)))),
        // An empty stream reads as an empty gzip stream did: nothing (the tar reader then says what is missing).
        None if got < 2 => Ok(Opened::Other(Box::new(flate2::read::MultiGzDecoder::new(chained)))),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a gzip or zstd stream (wrong password, or not a .tgz / .tar.zst)",
        )),
    }
}

#[cfg(test)]
mod tests;

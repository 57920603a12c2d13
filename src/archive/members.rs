//! Independent gzip members: the unit of compression, parallelism and random access.
//!
//! Each member is an ordinary RFC 1952 gzip member (so `gzip -t` and `tar xzf` read the concatenation), carrying one
//! extra subfield `BK` (RFC 1952 FEXTRA) with the member's total compressed length and its uncompressed length:
//!
//! ```text
//! 1f 8b 08 04 | mtime 00000000 | xfl 00 | os ff | xlen 0c 00 | 'B' 'K' 08 00 | clen u32le | ulen u32le
//! deflate data | crc32 u32le | isize u32le
//! ```
//!
//! `clen` counts the whole member (header, deflate data and trailer). With it a reader finds every member boundary
//! without inflating, so members can be inflated in parallel and the member table of an archive can be rebuilt.
//! This module does not know about tar or encryption.

use std::cell::RefCell;
use std::io::{self, Read};

use libdeflater::{CompressionLvl, Compressor, Decompressor};
use rayon::prelude::*;

/// Length of the gzip header written by [`compress_member`].
pub const HEADER_LEN: usize = 24;
/// Largest uncompressed member a reader accepts (a guard against hostile lengths).
pub const MAX_MEMBER_LEN: usize = 64 << 20;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, Compressor)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Decompressor> = RefCell::new(Decompressor::new());
}

/// Compresses `data` into one gzip member with the `BK` subfield, at `level` (1..=12, libdeflate levels).
pub fn compress_member(data: &[u8], level: i32) -> Vec<u8> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            let lvl = CompressionLvl::new(level).unwrap_or_default();
            *slot = Some((level, Compressor::new(lvl)));
        }
        let (_, compressor) = slot.as_mut().expect("compressor was just created");
        let bound = compressor.deflate_compress_bound(data.len());
        let mut out = vec![0u8; HEADER_LEN + bound + 8];
        let n = compressor
            .deflate_compress(data, &mut out[HEADER_LEN..HEADER_LEN + bound])
            .expect("the output buffer is at least the compress bound");
        out.truncate(HEADER_LEN + n);
        out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let clen = out.len() as u32;
        write_header(&mut out[..HEADER_LEN], clen, data.len() as u32);
        out
    })
}

fn write_header(h: &mut [u8], clen: u32, ulen: u32) {
    h[..10].copy_from_slice(&[0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff]);
    h[10..12].copy_from_slice(&12u16.to_le_bytes());
    h[12..16].copy_from_slice(&[b'B', b'K', 8, 0]);
    h[16..20].copy_from_slice(&clen.to_le_bytes());
    h[20..24].copy_from_slice(&ulen.to_le_bytes());
}

/// Lengths read from a member's `BK` subfield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLens {
    /// The whole member, header to trailer.
    pub clen: u32,
    /// Its uncompressed bytes.
    pub ulen: u32,
}

/// Reads the `BK` subfield from the start of a member; `None` if `buf` is not a member written by bakthat.
pub fn parse_header(buf: &[u8]) -> Option<MemberLens> {
    if buf.len() < HEADER_LEN || buf[..4] != [0x1f, 0x8b, 8, 0x04] || buf[10..16] != [12, 0, b'B', b'K', 8, 0] {
        return None;
    }
    let clen = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    let ulen = u32::from_le_bytes(buf[20..24].try_into().ok()?);
    if (clen as usize) < HEADER_LEN + 8 || ulen as usize > MAX_MEMBER_LEN {
        return None;
    }
    Some(MemberLens { clen, ulen })
}

/// Inflates one whole member, checking its CRC and length.
pub fn inflate_member(member: &[u8]) -> io::Result<Vec<u8>> {
    let lens = parse_header(member).ok_or_else(|| corrupt("gzip member header is not bakthat's"))?;
    if member.len() != lens.clen as usize {
        return Err(corrupt("gzip member length does not match its header"));
    }
    let mut out = vec![0u8; lens.ulen as usize];
    let n = DECOMPRESSOR
        .with(|d| d.borrow_mut().gzip_decompress(member, &mut out))
        .map_err(|e| corrupt(&format!("gzip member does not inflate: {e:?}")))?;
    if n != out.len() {
        return Err(corrupt("gzip member inflated to the wrong length"));
    }
    Ok(out)
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("archive is corrupt: {what}"))
}

/// Observes each member as a reader passes it: (offset in the gzip stream, lengths).
pub type MemberObserver = Box<dyn FnMut(u64, MemberLens) + Send>;

/// Inflates a stream of bakthat members, a batch at a time on all cores. Memory: one batch of members.
pub struct ParallelGunzip<R: Read> {
    inner: R,
    batch: usize,
    offset: u64,
    /// Inflated members not yet handed out, served in order without copying them together.
    out: std::collections::VecDeque<Vec<u8>>,
    pos: usize,
    done: bool,
    observer: Option<MemberObserver>,
}

impl<R: Read> ParallelGunzip<R> {
    /// Reads members from `inner`; `batch` members are inflated together (use a few per core).
    pub fn new(inner: R, batch: usize) -> Self {
        let out = std::collections::VecDeque::new();
        ParallelGunzip { inner, batch: batch.max(1), offset: 0, out, pos: 0, done: false, observer: None }
    }

    /// Calls `f` for each member read, in order.
    pub fn with_observer(mut self, f: MemberObserver) -> Self {
        self.observer = Some(f);
        self
    }

    fn next_member(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut head = [0u8; HEADER_LEN];
        let got = read_full(&mut self.inner, &mut head)?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(corrupt("truncated gzip member header"));
        }
        let lens = parse_header(&head).ok_or_else(|| corrupt("gzip member header is not bakthat's"))?;
        let mut member = vec![0u8; lens.clen as usize];
        member[..HEADER_LEN].copy_from_slice(&head);
        if read_full(&mut self.inner, &mut member[HEADER_LEN..])? < member.len() - HEADER_LEN {
            return Err(corrupt("truncated gzip member"));
        }
        if let Some(f) = self.observer.as_mut() {
            f(self.offset, lens);
        }
        self.offset += lens.clen as u64;
        Ok(Some(member))
    }

    fn refill(&mut self) -> io::Result<()> {
        let mut members = Vec::with_capacity(self.batch);
        while members.len() < self.batch {
            match self.next_member()? {
                Some(m) => members.push(m),
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        let inflated: Vec<Vec<u8>> = members.par_iter().map(|m| inflate_member(m)).collect::<io::Result<_>>()?;
        self.out.extend(inflated.into_iter().filter(|p| !p.is_empty()));
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for ParallelGunzip<R> {
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

impl<R: Read + Send> Blocks for ParallelGunzip<R> {
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

/// Reads until `buf` is full or EOF; returns the bytes read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens a gzip stream: bakthat members are inflated in parallel, any other gzip (bakthat 0.6's single member, or a
/// `.tar.gz` stored as is) streams through flate2.
pub fn gunzip<'a, R: Read + Send + 'a>(inner: R, batch: usize) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match sniff(inner, batch)? {
        Gunzip::Members(g) => Box::new(g),
        Gunzip::Other(d) => Box::new(d),
    })
}

/// [`gunzip`] as [`Blocks`]: bakthat members are handed out as inflated, without a copy.
pub fn gunzip_blocks<'a, R: Read + Send + 'a>(inner: R, batch: usize) -> io::Result<Box<dyn Blocks + 'a>> {
    Ok(match sniff(inner, batch)? {
        Gunzip::Members(g) => Box::new(g),
        Gunzip::Other(d) => Box::new(ReadBlocks(d)),
    })
}

type Chained<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

enum Gunzip<R: Read> {
    Members(ParallelGunzip<Chained<R>>),
    Other(Box<flate2::read::MultiGzDecoder<Chained<R>>>),
}

fn sniff<R: Read>(mut inner: R, batch: usize) -> io::Result<Gunzip<R>> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut inner, &mut head)?;
    let chained = io::Cursor::new(head[..got].to_vec()).chain(inner);
    if got >= 2 && head[..2] != [0x1f, 0x8b] {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a gzip stream (wrong password, or not a .tgz)"));
    }
    if parse_header(&head[..got]).is_some() {
        Ok(Gunzip::Members(ParallelGunzip::new(chained, batch)))
    } else {
        Ok(Gunzip::Other(Box::new(flate2::read::MultiGzDecoder::new(chained))))
    }
}

/// Inflates several whole members in parallel.
pub fn inflate_members(members: &[&[u8]]) -> io::Result<Vec<Vec<u8>>> {
    members.par_iter().map(|m| inflate_member(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + i / 300) % 251) as u8).collect()
    }

    #[test]
    fn member_round_trips_and_is_plain_gzip() {
        for n in [0, 1, 1000, 200_000] {
            let data = sample(n);
            let m = compress_member(&data, 6);
            assert_eq!(parse_header(&m).unwrap(), MemberLens { clen: m.len() as u32, ulen: n as u32 });
            assert_eq!(inflate_member(&m).unwrap(), data);
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&m[..]).read_to_end(&mut plain).unwrap();
            assert_eq!(plain, data);
        }
    }

    #[test]
    fn parallel_gunzip_reads_many_members_and_reports_offsets() {
        let parts: Vec<Vec<u8>> = (0..9).map(|i| sample(10_000 + i * 3000)).collect();
        let stream: Vec<u8> = parts.iter().flat_map(|p| compress_member(p, 6)).collect();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut r = ParallelGunzip::new(&stream[..], 4)
            .with_observer(Box::new(move |off, l| s2.lock().unwrap().push((off, l))));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, parts.concat());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 9);
        assert_eq!(seen[1].0, seen[0].1.clen as u64);
    }

    #[test]
    fn corrupt_members_are_errors() {
        let m = compress_member(&sample(50_000), 6);
        for pos in [30, m.len() / 2, m.len() - 6, m.len() - 2] {
            let mut bad = m.clone();
            bad[pos] ^= 0x40;
            assert!(inflate_member(&bad).is_err(), "flip at {pos} not detected");
        }
        let mut r = ParallelGunzip::new(&m[..m.len() - 10], 2);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn foreign_gzip_falls_back_to_flate2() {
        let data = sample(100_000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        gunzip(&gz[..], 4).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(gunzip(&b"not gzip at all"[..], 4).is_err());
    }

    fn all_blocks(mut b: Box<dyn Blocks + '_>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(block) = b.next_block()? {
            assert!(!block.is_empty());
            out.extend_from_slice(&block);
        }
        Ok(out)
    }

    #[test]
    fn blocks_give_the_same_bytes_as_reading() {
        // bakthat members (one of them empty), handed out whole.
        let parts: Vec<Vec<u8>> = [10_000, 0, 70_000, 3].iter().map(|&n| sample(n)).collect();
        let stream: Vec<u8> = parts.iter().flat_map(|p| compress_member(p, 4)).collect();
        assert_eq!(all_blocks(gunzip_blocks(&stream[..], 2).unwrap()).unwrap(), parts.concat());
        // A partly read member continues where the reader stopped.
        let mut g = ParallelGunzip::new(&stream[..], 2);
        let mut head = [0u8; 100];
        g.read_exact(&mut head).unwrap();
        let mut rest = head.to_vec();
        rest.extend(all_blocks(Box::new(g)).unwrap());
        assert_eq!(rest, parts.concat());
        // Foreign gzip, in 1 MiB blocks; a truncated stream is an error.
        let data = sample(2_500_000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(all_blocks(gunzip_blocks(&gz[..], 2).unwrap()).unwrap(), data);
        assert!(all_blocks(gunzip_blocks(&stream[..stream.len() - 5], 2).unwrap()).is_err());
    }
}

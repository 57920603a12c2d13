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
//! This module does not know about tar, encryption or zstd; [`super::codec`] reads streams of members.

use std::cell::RefCell;
use std::io::{self, Read};

use libdeflater::{CompressionLvl, Compressor, Decompressor};

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

/// Reads the next whole member from a stream of bakthat members; `None` at the end of the stream.
pub fn read_member<R: Read>(r: &mut R) -> io::Result<Option<(Vec<u8>, MemberLens)>> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(r, &mut head)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(corrupt("truncated gzip member header"));
    }
    let lens = parse_header(&head).ok_or_else(|| corrupt("gzip member header is not bakthat's"))?;
    let mut member = vec![0u8; lens.clen as usize];
    member[..HEADER_LEN].copy_from_slice(&head);
    if read_full(r, &mut member[HEADER_LEN..])? < member.len() - HEADER_LEN {
        return Err(corrupt("truncated gzip member"));
    }
    Ok(Some((member, lens)))
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("archive is corrupt: {what}"))
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
    fn corrupt_members_are_errors() {
        let m = compress_member(&sample(50_000), 6);
        for pos in [30, m.len() / 2, m.len() - 6, m.len() - 2] {
            let mut bad = m.clone();
            bad[pos] ^= 0x40;
            assert!(inflate_member(&bad).is_err(), "flip at {pos} not detected");
        }
        assert!(read_member(&mut &m[..m.len() - 10]).is_err());
        assert!(read_member(&mut &m[..10]).is_err());
        assert!(read_member(&mut &[][..]).unwrap().is_none());
    }
}

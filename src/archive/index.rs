//! The entry index: every tar entry with its data offset, and the member table that maps tar offsets to offsets in
//! the compressed stream (gzip members or zstd frames). Built while an archive is written (or on the first full
//! read of a legacy archive), stored as a sidecar object beside the archive and copied into the inventory. This
//! module only models and (de)serializes it; it does no I/O besides reading a tar stream in
//! [`Index::from_tar_stream`].
//!
//! Serialized form (version 1): the 8 bytes `BKTIDX\0\x01`, then one gzip stream holding the body below. Integers
//! are unsigned LEB128 varints, `i64` values are zigzag-encoded, byte strings are a varint length plus bytes:
//!
//! ```text
//! flags (bit 0: seekable, bit 1: has crypto header) | span | tar_len | stored_len | [crypto header bytes]
//! member count | per member: tar_len, comp_len          (offsets are running sums from 0)
//! entry count  | per entry: shared path prefix length with the previous entry, path suffix,
//!                kind, mode (+ flags), uid, gid, mtime (zigzag), size, header_offset, data_offset - header_offset,
//!                [link target, for symlinks and hard links]
//! ```
//!
//! The mode varint carries entry flags above bit 31, which readers before the flags existed drop (they keep the low
//! 32 bits), so the format stays readable both ways: bit 32 ([`DAMAGED_FLAG`]) marks a file whose read failed or
//! came up short part way at backup time; its stored content from that point on is zeros, not the file's bytes.

use std::io::{self, Read, Write};
use std::ops::Range;

use thiserror::Error;

/// Magic and version of the serialized index.
pub const MAGIC: &[u8; 8] = b"BKTIDX\x00\x01";

/// The mode varint's bit marking an [`Entry::damaged`] file.
pub const DAMAGED_FLAG: u64 = 1 << 32;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// Anything else (fifo, device): listed, never extracted.
    Other,
}

impl EntryKind {
    fn code(self) -> u64 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
            EntryKind::HardLink => 3,
            EntryKind::Other => 4,
        }
    }

    fn from_code(c: u64) -> Result<Self, IndexError> {
        Ok(match c {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::HardLink,
            4 => EntryKind::Other,
            _ => return Err(IndexError::Corrupt("unknown entry kind")),
        })
    }
}

/// One tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, as bytes, without a trailing slash (the first component is the backup's basename).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Data bytes (0 for anything but regular files).
    pub size: u64,
    /// Permission bits and file type bits as in the tar header.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Symlink target, or the archive path a hard link points to.
    pub link: Option<Vec<u8>>,
    /// Offset in the tar stream of the entry's own header block (any GNU long-name or PAX blocks come before it).
    pub header_offset: u64,
    /// Offset in the tar stream of the entry's data.
    pub data_offset: u64,
    /// The file's read failed (or came up short) part way at backup time: the stored content ends in zeros that were
    /// not in the file. Restore warns about it and the mount answers EIO.
    pub damaged: bool,
}

/// One member (a gzip member or a zstd frame): `tar_len` bytes of the tar stream starting at `tar_offset`, stored as
/// `comp_len` bytes at `comp_offset` of the compressed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub tar_offset: u64,
    pub tar_len: u64,
    pub comp_offset: u64,
    pub comp_len: u64,
}

/// The index of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    /// Tar bytes per member (the last member may be shorter).
    pub span: u64,
    /// Whether members are independent (false for a legacy single-stream archive: reads inflate from the start).
    pub seekable: bool,
    pub tar_len: u64,
    /// Bytes of the stored object (after encryption).
    pub stored_len: u64,
    /// The archive's encryption header, when it is encrypted with bakthat's format.
    pub crypto_header: Option<Vec<u8>>,
    pub members: Vec<Member>,
    pub entries: Vec<Entry>,
}

/// Why an index could not be read.
#[derive(Debug, Error)]
pub enum IndexError {
    #[error("entry index is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("entry index has unsupported version {0}; upgrade bakthat")]
    Version(u8),
    #[error("reading the entry index")]
    Io(#[from] io::Error),
}

impl Index {
    /// Members that hold tar bytes `[start, end)`.
    pub fn members_covering(&self, start: u64, end: u64) -> Range<usize> {
        if start >= end || self.members.is_empty() {
            return 0..0;
        }
        let first = self.members.partition_point(|m| m.tar_offset + m.tar_len <= start);
        let last = self.members.partition_point(|m| m.tar_offset < end);
        first..last.max(first)
    }

    /// Total length of the members (a zstd archive's seek table follows them).
    pub fn comp_len(&self) -> u64 {
        self.members.last().map(|m| m.comp_offset + m.comp_len).unwrap_or(0)
    }

    /// Looks an entry up by its archive path.
    pub fn entry(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Serializes the index (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.entries.len() * 48);
        let flags = u64::from(self.seekable) | (u64::from(self.crypto_header.is_some()) << 1);
        put(&mut body, flags);
        put(&mut body, self.span);
        put(&mut body, self.tar_len);
        put(&mut body, self.stored_len);
        if let Some(h) = &self.crypto_header {
            put_bytes(&mut body, h);
        }
        put(&mut body, self.members.len() as u64);
        for m in &self.members {
            put(&mut body, m.tar_len);
            put(&mut body, m.comp_len);
        }
        put(&mut body, self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let shared = prev.iter().zip(&e.path).take_while(|(a, b)| a == b).count();
            put(&mut body, shared as u64);
            put_bytes(&mut body, &e.path[shared..]);
            put(&mut body, e.kind.code());
            put(&mut body, e.mode as u64 | if e.damaged { DAMAGED_FLAG } else { 0 });
            put(&mut body, e.uid);
            put(&mut body, e.gid);
            put(&mut body, zigzag(e.mtime));
            put(&mut body, e.size);
            put(&mut body, e.header_offset);
            put(&mut body, e.data_offset.saturating_sub(e.header_offset));
            if matches!(e.kind, EntryKind::Symlink | EntryKind::HardLink) {
                put_bytes(&mut body, e.link.as_deref().unwrap_or_default());
            }
            prev = &e.path;
        }
        let mut out = MAGIC.to_vec();
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
        gz.write_all(&body).expect("writing to a Vec cannot fail");
        gz.finish().expect("writing to a Vec cannot fail");
        out
    }

    /// Parses a serialized index.
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, IndexError> {
        if bytes.len() < MAGIC.len() || bytes[..7] != MAGIC[..7] {
            return Err(IndexError::Corrupt("bad magic"));
        }
        if bytes[7] != MAGIC[7] {
            return Err(IndexError::Version(bytes[7]));
        }
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(&bytes[8..])
            .read_to_end(&mut body)
            .map_err(|_| IndexError::Corrupt("body does not inflate"))?;
        let mut c = Cursor { buf: &body, pos: 0 };
        let flags = c.get()?;
        let mut idx = Index {
            seekable: flags & 1 != 0,
            span: c.get()?,
            tar_len: c.get()?,
            stored_len: c.get()?,
            ..Index::default()
        };
        if flags & 2 != 0 {
            idx.crypto_header = Some(c.bytes()?.to_vec());
        }
        let n = c.count()?;
        let (mut tar_offset, mut comp_offset) = (0u64, 0u64);
        for _ in 0..n {
            let tar_len = c.get()?;
            let comp_len = c.get()?;
            idx.members.push(Member { tar_offset, tar_len, comp_offset, comp_len });
            tar_offset = tar_offset.checked_add(tar_len).ok_or(IndexError::Corrupt("member offsets overflow"))?;
            comp_offset = comp_offset.checked_add(comp_len).ok_or(IndexError::Corrupt("member offsets overflow"))?;
        }
        let n = c.count()?;
        let mut prev: Vec<u8> = Vec::new();
        for _ in 0..n {
            let shared = c.get()? as usize;
            if shared > prev.len() {
                return Err(IndexError::Corrupt("path prefix longer than the previous path"));
            }
            let mut path = prev[..shared].to_vec();
            path.extend_from_slice(c.bytes()?);
            let kind = EntryKind::from_code(c.get()?)?;
            let mode_and_flags = c.get()?;
            let (mode, damaged) = (mode_and_flags as u32, mode_and_flags & DAMAGED_FLAG != 0);
            let uid = c.get()?;
            let gid = c.get()?;
            let mtime = unzigzag(c.get()?);
            let size = c.get()?;
            let header_offset = c.get()?;
            let data_offset = header_offset.saturating_add(c.get()?);
            let link = match kind {
                EntryKind::Symlink | EntryKind::HardLink => Some(c.bytes()?.to_vec()),
                _ => None,
            };
            prev.clone_from(&path);
            let e = Entry { path, kind, size, mode, uid, gid, mtime, link, header_offset, data_offset, damaged };
            idx.entries.push(e);
        }
        if c.pos != body.len() {
            return Err(IndexError::Corrupt("trailing bytes"));
        }
        Ok(idx)
    }

    /// Builds the entry list from a plain tar stream (legacy archives, or an archive whose sidecar is lost). The
    /// member table is left empty; the caller fills it in from what it observed while reading the gzip stream.
    pub fn from_tar_stream<R: Read>(tar: R) -> io::Result<Index> {
        let mut archive = tar::Archive::new(Counted::new(tar));
        let mut idx = Index::default();
        for entry in archive.entries()? {
            let entry = entry?;
            let h = entry.header();
            let kind = match h.entry_type() {
                // GNU's dumpdir (incremental backups): a directory whose data lists its contents.
                t if super::incremental::is_dumpdir(t) => EntryKind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink,
                tar::EntryType::Link => EntryKind::HardLink,
                _ => EntryKind::Other,
            };
            let path = entry.path_bytes();
            let path = path.strip_suffix(b"/").unwrap_or(&path).to_vec();
            let path = path.strip_prefix(b"./").map(<[u8]>::to_vec).unwrap_or(path);
            idx.entries.push(Entry {
                path,
                kind,
                size: if kind == EntryKind::File { entry.size() } else { 0 },
                mode: h.mode().unwrap_or(0o644),
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                mtime: h.mtime().unwrap_or(0) as i64,
                link: entry.link_name_bytes().map(|l| l.into_owned()),
                header_offset: entry.raw_header_position(),
                data_offset: entry.raw_file_position(),
                damaged: false,
            });
        }
        // The tar reader stops at the end-of-archive blocks; read the rest so tar_len is the stream's length.
        let mut rest = archive.into_inner();
        rest.check_ended()?;
        io::copy(&mut rest, &mut io::sink())?;
        idx.tar_len = rest.count;
        Ok(idx)
    }
}

/// A tar stream as the tar reader gets it: counted, and noting whether its source ran out. The tar reader ends at
/// the end-of-archive blocks or, just the same, at EOF on an entry boundary; only the first means the archive is
/// whole (issue 15: a payload cut at a member boundary, members ending on entries, read as a complete archive).
pub(super) struct Counted<R> {
    inner: R,
    count: u64,
    ran_out: bool,
}

impl<R: Read> Counted<R> {
    pub(super) fn new(inner: R) -> Counted<R> {
        Counted { inner, count: 0, ran_out: false }
    }

    /// Once the tar reader stopped: an error unless it stopped at the end-of-archive blocks.
    pub(super) fn check_ended(&self) -> io::Result<()> {
        if self.ran_out {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the tar stream stops after {} bytes, at an entry boundary, without its end-of-archive blocks: \
                     the archive is truncated",
                    self.count
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.ran_out |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

pub(super) fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn get(&mut self) -> Result<u64, IndexError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(IndexError::Corrupt("truncated"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(IndexError::Corrupt("varint too long"))
    }

    /// A count of items, bounded by the bytes left (each item takes at least one byte).
    pub(super) fn count(&mut self) -> Result<usize, IndexError> {
        let n = self.get()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(IndexError::Corrupt("count larger than the index"));
        }
        Ok(n as usize)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], IndexError> {
        let n = self.get()? as usize;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(IndexError::Corrupt("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(path: &str, kind: EntryKind, size: u64, off: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            size,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            mtime: 1_700_000_000,
            link: (kind == EntryKind::Symlink).then(|| b"../target".to_vec()),
            header_offset: off,
            data_offset: off + 512,
            damaged: false,
        }
    }

    #[test]
    fn covering_members() {
        let idx = Index {
            members: (0..4)
                .map(|i| Member { tar_offset: i * 100, tar_len: 100, comp_offset: i * 50, comp_len: 50 })
                .collect(),
            ..Index::default()
        };
        assert_eq!(idx.members_covering(0, 1), 0..1);
        assert_eq!(idx.members_covering(99, 101), 0..2);
        assert_eq!(idx.members_covering(100, 200), 1..2);
        assert_eq!(idx.members_covering(350, 1000), 3..4);
        assert_eq!(idx.members_covering(5, 5), 0..0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn round_trip(paths in proptest::collection::vec("[a-z/é]{1,40}", 0..40), mtime in any::<i64>(), hdr in proptest::option::of(proptest::collection::vec(any::<u8>(), 90))) {
            let mut idx = Index { span: 1 << 19, seekable: true, tar_len: 12345, stored_len: 999, crypto_header: hdr, ..Index::default() };
            for (i, p) in paths.iter().enumerate() {
                let kind = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink, EntryKind::HardLink][i % 4];
                let mut e = entry(p, kind, i as u64 * 1000, i as u64 * 4096);
                e.mtime = mtime;
                e.damaged = kind == EntryKind::File && i % 3 == 0;
                if kind == EntryKind::HardLink { e.link = Some(b"x/y".to_vec()); }
                idx.entries.push(e);
                idx.members.push(Member { tar_offset: i as u64 * 7, tar_len: 7, comp_offset: i as u64 * 3, comp_len: 3 });
            }
            let bytes = idx.to_bytes();
            prop_assert_eq!(Index::from_bytes(&bytes).unwrap(), idx);
        }
    }

    // The damaged flag rides above bit 31 of the mode varint: a reader from before the flag (which keeps the low 32
    // bits) still reads the index, with the right mode.
    #[test]
    fn damaged_flag_is_invisible_to_the_mode() {
        let mut e = entry("a/b", EntryKind::File, 3, 0);
        e.damaged = true;
        let idx = Index { entries: vec![e.clone()], ..Index::default() };
        let back = Index::from_bytes(&idx.to_bytes()).unwrap();
        assert_eq!(back.entries[0], e);
        assert_eq!((e.mode as u64 | DAMAGED_FLAG) as u32, e.mode);
        e.damaged = false;
        let plain = Index { entries: vec![e], ..Index::default() };
        assert!(!Index::from_bytes(&plain.to_bytes()).unwrap().entries[0].damaged);
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        let idx = Index { entries: vec![entry("a/b", EntryKind::File, 3, 0)], ..Index::default() };
        let mut bytes = idx.to_bytes();
        assert!(matches!(Index::from_bytes(b"nope"), Err(IndexError::Corrupt(_))));
        bytes[7] = 9;
        assert!(matches!(Index::from_bytes(&bytes), Err(IndexError::Version(9))));
        let bytes = idx.to_bytes();
        assert!(Index::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }
}

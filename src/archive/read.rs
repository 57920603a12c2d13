//! Reading archives: random access to one entry through the index, fetching only the byte range it needs.
//!
//! The storage layer implements [`RangeRead`]; this module does not know stores, caches or the inventory.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use thiserror::Error;

use super::codec;
use super::crypto::{self, CryptoError, FileKeys, Header, KeyCache};
use super::index::{Entry, EntryKind, Index};

/// A source of byte ranges of one stored object (a local file, an S3 object, a cache...).
pub trait RangeRead: Sync {
    /// Total length of the object.
    fn len(&self) -> u64;
    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes `[start, start + len)`, clamped to the end of the object.
    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>>;
}

impl RangeRead for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        let s = (start as usize).min(<[u8]>::len(self));
        let e = (start.saturating_add(len) as usize).min(<[u8]>::len(self));
        Ok(self[s..e].to_vec())
    }
}

impl RangeRead for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        self.as_slice().read_range(start, len)
    }
}

/// A local file as a range source.
pub struct FileRange {
    file: File,
    len: u64,
}

impl FileRange {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileRange { file, len })
    }
}

impl RangeRead for FileRange {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = start.saturating_add(len).min(self.len);
        let mut buf = vec![0u8; end.saturating_sub(start) as usize];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf)
    }
}

/// Why a read failed.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("this archive has no seekable index (a bakthat 0.6 archive); read it whole")]
    NotSeekable,
    #[error("{0} is not a regular file in the archive")]
    NotAFile(String),
    #[error("the archive is encrypted; a password is needed")]
    PasswordNeeded,
    #[error(
        "the stored archive is {actual} bytes but its index says {expected}; the index is stale or the object damaged"
    )]
    LengthMismatch { expected: u64, actual: u64 },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("reading the archive")]
    Io(#[from] io::Error),
}

/// Random access into one archive.
pub struct Decoder<'a> {
    index: &'a Index,
    src: &'a dyn RangeRead,
    keys: Option<FileKeys>,
}

impl<'a> Decoder<'a> {
    /// Prepares reads of `src` through `index`; an encrypted archive needs `keys` (a wrong password fails here).
    pub fn new(index: &'a Index, src: &'a dyn RangeRead, keys: Option<&KeyCache>) -> Result<Self, ReadError> {
        if !index.seekable {
            return Err(ReadError::NotSeekable);
        }
        if index.stored_len != 0 && src.len() != index.stored_len {
            return Err(ReadError::LengthMismatch { expected: index.stored_len, actual: src.len() });
        }
        let keys = match &index.crypto_header {
            None => None,
            Some(h) => {
                let header = Header::parse(h)?;
                Some(keys.ok_or(ReadError::PasswordNeeded)?.open(&header)?)
            }
        };
        Ok(Decoder { index, src, keys })
    }

    /// Fetches the compressed-stream bytes `[start, end)`, decrypting if needed (only the touched chunks).
    fn fetch(&self, start: u64, end: u64) -> Result<Vec<u8>, ReadError> {
        match &self.keys {
            None => Ok(self.src.read_range(start, end - start)?),
            Some(keys) => {
                let fetch = |s: u64, l: u64| self.src.read_range(s, l);
                Ok(crypto::decrypt_range(keys, self.src.len(), &fetch, start, end)?)
            }
        }
    }

    /// Inflated tar bytes of members `range`, one buffer per member, fetched with one ranged read.
    pub fn members(&self, range: Range<usize>) -> Result<Vec<Vec<u8>>, ReadError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let ms = &self.index.members[range];
        let start = ms[0].comp_offset;
        let end = ms[ms.len() - 1].comp_offset + ms[ms.len() - 1].comp_len;
        let raw = self.fetch(start, end)?;
        let parts: Vec<&[u8]> = ms
            .iter()
            .map(|m| {
                let s = (m.comp_offset - start) as usize;
                raw.get(s..s + m.comp_len as usize).ok_or_else(short_read)
            })
            .collect::<io::Result<_>>()?;
        let out = codec::decompress_all(&parts)?;
        for (m, o) in ms.iter().zip(&out) {
            if o.len() as u64 != m.tar_len {
                return Err(
                    io::Error::new(io::ErrorKind::InvalidData, "archive member does not match its index").into()
                );
            }
        }
        Ok(out)
    }

    /// Bytes `[offset, offset + len)` of a regular file entry (clamped to its size).
    pub fn read(&self, entry: &Entry, offset: u64, len: u64) -> Result<Vec<u8>, ReadError> {
        if entry.kind != EntryKind::File {
            return Err(ReadError::NotAFile(String::from_utf8_lossy(&entry.path).into_owned()));
        }
        let end = offset.saturating_add(len).min(entry.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let (tar_start, tar_end) = (entry.data_offset + offset, entry.data_offset + end);
        let range = self.index.members_covering(tar_start, tar_end);
        let first = self.index.members[range.start].tar_offset;
        let parts = self.members(range)?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = first;
        for p in parts {
            let (ps, pe) = (pos, pos + p.len() as u64);
            let s = tar_start.max(ps);
            let e = tar_end.min(pe);
            if s < e {
                out.extend_from_slice(&p[(s - ps) as usize..(e - ps) as usize]);
            }
            pos = pe;
        }
        if out.len() as u64 != end - offset {
            return Err(short_read().into());
        }
        Ok(out)
    }
}

fn short_read() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "archive is shorter than its index says")
}

//! The archive format: tar, independent gzip members or zstd frames, chunked authenticated encryption, entry index;
//! and the legacy bakthat 0.6 (beefish) reader. Knows nothing about stores or the inventory.
//!
//! - [`pack`] walks a source into a tar stream cut into spans, each compressed as one independent member.
//! - [`codec`] is the member codec: gzip [`members`] (`.tgz`) or zstd frames in zstd's [`seekable`] format
//!   (`.tar.zst`), and the parallel reader of either.
//! - [`crypto`] is the `.enc` container: a versioned header (Argon2id) and AES-256-CBC + HMAC-SHA256 chunks.
//! - [`index`] lists every entry with its data offset, and maps tar offsets to compressed offsets.
//! - [`read`] reads one entry's byte range through any [`read::RangeRead`], fetching only what it needs.
//! - [`extract`] restores a tar stream safely and atomically.
//! - [`legacy`] reads beefish Blowfish/AES archives.
//!
//! The functions below compose them for whole-archive writes and reads.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroizing;

pub mod codec;
pub mod crypto;
pub mod extract;
pub mod incremental;
pub mod index;
pub mod legacy;
pub mod members;
pub mod pack;
pub mod read;
pub mod seekable;

use crypto::{CryptoError, DecryptReader, EncryptWriter, KeyCache, MasterKey};
use extract::{ExtractError, ExtractOptions, ExtractSummary};
use index::{Index, IndexError};
use legacy::{LegacyCipher, LegacyError};
use pack::{PackError, PackOptions, PackReport};

/// A password, with the key derivations made from it so far.
pub struct Secret {
    password: Zeroizing<Vec<u8>>,
    keys: KeyCache,
}

impl Secret {
    pub fn new(password: &[u8]) -> Self {
        Secret { password: Zeroizing::new(password.to_vec()), keys: KeyCache::new(password) }
    }

    /// The key cache for bakthat's format.
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// The raw password bytes (legacy archives use them as the Blowfish key).
    pub fn bytes(&self) -> &[u8] {
        &self.password
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Any failure of the archive layer, classified so callers can tell the user what to do.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error(transparent)]
    Extract(ExtractError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Read(#[from] read::ReadError),
    #[error("the archive is encrypted; give its password (BAKTHAT_PASSWORD, or the prompt)")]
    PasswordNeeded,
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    #[error("reading the archive")]
    Io(#[source] io::Error),
}

impl ArchiveError {
    /// Classifies an I/O error that came up through a reader chain (decryption, decompression, tar).
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<CryptoError>()) {
            return ArchiveError::Crypto(CryptoError::from_io(e));
        }
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<LegacyError>()) {
            return ArchiveError::Legacy(match inner {
                LegacyError::WrongPassword => LegacyError::WrongPassword,
                LegacyError::Truncated => LegacyError::Truncated,
                LegacyError::BadKeyLength { len } => LegacyError::BadKeyLength { len: *len },
                LegacyError::Io(_) => return ArchiveError::Io(e),
            });
        }
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => ArchiveError::Corrupt(e.to_string()),
            _ => ArchiveError::Io(e),
        }
    }

    /// Whether the error means a wrong password.
    pub fn is_wrong_password(&self) -> bool {
        matches!(
            self,
            ArchiveError::Crypto(CryptoError::WrongPassword) | ArchiveError::Legacy(LegacyError::WrongPassword)
        )
    }

    /// Whether the error means damaged or tampered data.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            ArchiveError::Crypto(
                CryptoError::Integrity { .. }
                    | CryptoError::Truncated
                    | CryptoError::BadHeader(_)
                    | CryptoError::UnsupportedVersion(_)
                    | CryptoError::UnsupportedKdf(_)
                    | CryptoError::NotEncrypted
            ) | ArchiveError::Legacy(LegacyError::Truncated)
                | ArchiveError::Corrupt(_)
                | ArchiveError::Index(IndexError::Corrupt(_))
        )
    }
}

impl From<ExtractError> for ArchiveError {
    fn from(e: ExtractError) -> Self {
        match e {
            ExtractError::Archive(io) => ArchiveError::from_io(io),
            other => ArchiveError::Extract(other),
        }
    }
}

/// Counts the bytes written through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the bytes read through it.
pub struct CountingReader<R> {
    pub inner: R,
    pub count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Encryption settings of a new archive.
#[derive(Clone)]
pub struct Encryption {
    pub master: Arc<MasterKey>,
    pub chunk_size: u32,
}

/// Writes an archive of `source` into `out`: tar, compressed members, optional encryption. Returns the complete index
/// (with the stored length and the encryption header) and `out`.
pub fn write_archive<W: Write>(
    source: &Path,
    arcname: &str,
    opts: &PackOptions,
    enc: Option<&Encryption>,
    out: W,
) -> Result<(PackReport, W), ArchiveError> {
    let counted = CountingWriter { inner: out, count: 0 };
    let (mut report, counted) = match enc {
        None => {
            let mut counted = counted;
            let report = pack::pack(source, arcname, opts, &mut counted)?;
            (report, counted)
        }
        Some(e) => {
            let mut w = EncryptWriter::new(counted, &e.master, e.chunk_size).map_err(ArchiveError::Io)?;
            let header = w.header().to_bytes().to_vec();
            let mut report = pack::pack(source, arcname, opts, &mut w)?;
            report.index.crypto_header = Some(header);
            (report, w.finish().map_err(ArchiveError::Io)?)
        }
    };
    let mut counted = counted;
    counted.flush().map_err(ArchiveError::Io)?;
    report.index.stored_len = counted.count;
    Ok((report, counted.inner))
}

/// Writes a payload stored as is (compression off, or an input that is already a `.tgz`), optionally encrypted.
/// Returns the bytes written.
pub fn write_raw<R: Read, W: Write>(mut input: R, enc: Option<&Encryption>, out: W) -> Result<(u64, W), ArchiveError> {
    let mut counted = CountingWriter { inner: out, count: 0 };
    match enc {
        None => {
            io::copy(&mut input, &mut counted).map_err(ArchiveError::Io)?;
        }
        Some(e) => {
            let mut w = EncryptWriter::new(&mut counted, &e.master, e.chunk_size).map_err(ArchiveError::Io)?;
            io::copy(&mut input, &mut w).map_err(ArchiveError::Io)?;
            w.finish().map_err(ArchiveError::Io)?;
        }
    }
    counted.flush().map_err(ArchiveError::Io)?;
    Ok((counted.count, counted.inner))
}

/// The sidecar bytes of an index: the serialized index, encrypted with the archive's master key if it has one.
pub fn index_sidecar(index: &Index, enc: Option<&Encryption>) -> Vec<u8> {
    let plain = index.to_bytes();
    match enc {
        None => plain,
        Some(e) => crypto::encrypt_bytes(&e.master, &plain),
    }
}

/// Reads an index sidecar (or the inventory's copy of it).
pub fn read_index_sidecar(bytes: &[u8], secret: Option<&Secret>) -> Result<Index, ArchiveError> {
    if crypto::is_v1(bytes) {
        let secret = secret.ok_or(ArchiveError::PasswordNeeded)?;
        Ok(Index::from_bytes(&crypto::decrypt_bytes(secret.keys(), bytes)?)?)
    } else {
        Ok(Index::from_bytes(bytes)?)
    }
}

/// What a stored object's name and metadata say about its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    /// Whether the object is said to be encrypted (`.enc`/`.ae`, or `is_enc` metadata).
    pub encrypted: bool,
    /// Which legacy cipher, should the object turn out to be a beefish file.
    pub legacy: LegacyCipher,
    /// The compression of the tar archive the payload is, by its name; `None` for a payload stored as is.
    pub archive: Option<codec::Compression>,
    /// Whether the inventory says the object is in bakthat's own encrypted format (so a missing header is damage,
    /// not a legacy file).
    pub v1: bool,
}

impl Hints {
    /// Hints from an object key and the `is_enc` flag.
    pub fn from_name(key: &str, is_enc: bool) -> Self {
        let legacy = LegacyCipher::from_object_name(key).unwrap_or(LegacyCipher::Blowfish);
        let encrypted = is_enc || key.ends_with(".enc") || key.ends_with(".ae");
        let base = key.strip_suffix(".ae").unwrap_or(key);
        let archive = crate::model::StoredName::from_key(base).archive();
        Hints { encrypted, legacy, archive, v1: false }
    }
}

/// Which encoding [`decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Plain,
    V1,
    Legacy(LegacyCipher),
}

/// Opens the payload of a stored object as a plaintext stream: bakthat's format is recognised by its magic, a
/// legacy beefish file by the hints (a wrong legacy password is caught by checking the gzip magic of `.tgz`
/// payloads). The stream yields the compressed (or raw) payload; see [`decompress_payload`].
pub fn decode<'a, R: Read + Send + 'a>(
    mut r: R,
    hints: Hints,
    secret: Option<&Secret>,
) -> Result<(Box<dyn Read + Send + 'a>, Found), ArchiveError> {
    let mut head = [0u8; 8];
    let n = members::read_full(&mut r, &mut head).map_err(ArchiveError::Io)?;
    let chained = io::Cursor::new(head[..n].to_vec()).chain(r);
    if n == 8 && crypto::is_v1(&head) {
        let secret = secret.ok_or(ArchiveError::PasswordNeeded)?;
        let reader = DecryptReader::new(chained, secret.keys())?;
        return Ok((Box::new(reader), Found::V1));
    }
    if hints.v1 {
        return Err(ArchiveError::Corrupt("the object does not start with bakthat's encryption header".into()));
    }
    if hints.encrypted {
        let secret = secret.ok_or(ArchiveError::PasswordNeeded)?;
        let reader = hints.legacy.reader(chained, secret.bytes(), hints.archive == Some(codec::Compression::Gzip))?;
        return Ok((Box::new(reader), Found::Legacy(hints.legacy)));
    }
    Ok((Box::new(chained), Found::Plain))
}

/// Inflates a compressed tar payload (gzip or zstd, told by its first bytes), in parallel for bakthat's members.
pub fn decompress_payload<'a>(r: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>, ArchiveError> {
    codec::open(r, rayon::current_num_threads() * 4).map_err(ArchiveError::from_io)
}

/// Restores a whole stored archive into `dest`: decrypt, inflate in parallel, extract safely.
pub fn restore_archive<R: Read + Send>(
    r: R,
    hints: Hints,
    secret: Option<&Secret>,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractSummary, ArchiveError> {
    let (plain, _) = decode(r, hints, secret)?;
    let tar = codec::open_blocks(plain, rayon::current_num_threads() * 4).map_err(ArchiveError::from_io)?;
    // Decrypting and inflating run on their own thread while this one writes files; inflated members travel as
    // they are (no re-blocking copy).
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
        scope.spawn(move || pump(tar, tx));
        Ok(extract::extract(ChannelReader::new(rx), dest, opts)?)
    })
}

/// Sends the blocks of `r` into `tx` until the end, an error, or the receiver going away.
fn pump(mut r: Box<dyn codec::Blocks + '_>, tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let (block, last) = match r.next_block() {
            Ok(Some(b)) => (Ok(b), false),
            Ok(None) => return,
            Err(e) => (Err(e), true),
        };
        if tx.send(block).is_err() || last {
            return;
        }
    }
}

/// The reading end of [`pump`] (and of other producers of blocks, such as a chain's restore): blocks in order, an
/// error as the producer sent it, the end when the producer is gone.
pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ChannelReader { rx, buf: Vec::new(), pos: 0 }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.buf = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads a whole stored archive and checks it (every MAC, every member's checksum, a zstd archive's seek table,
/// the tar structure) without writing anything. Returns the entry index rebuilt from the archive itself.
pub fn verify_archive<R: Read + Send>(r: R, hints: Hints, secret: Option<&Secret>) -> Result<Index, ArchiveError> {
    let (plain, _) = decode(r, hints, secret)?;
    let tar = decompress_payload(plain)?;
    let mut counted = ReadCounter { inner: tar, count: 0 };
    let idx = Index::from_tar_stream(&mut counted).map_err(ArchiveError::from_io)?;
    if counted.count == 0 {
        return Err(ArchiveError::Corrupt("the archive holds no data".into()));
    }
    Ok(idx)
}

struct ReadCounter<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for ReadCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

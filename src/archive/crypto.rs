//! bakthat's encrypted container, format version 1: a header, then authenticated chunks.
//!
//! The container wraps any byte stream (the `.tgz` archive, the index sidecar, small key-value objects).
//! Layout, all integers little endian:
//!
//! ```text
//! offset len  field
//! 0      8    magic 89 42 4B 54 0D 0A 1A 0A   ("\x89BKT\r\n\x1a\n")
//! 8      1    format version = 1
//! 9      1    kdf id: 1 = Argon2id (version 0x13)
//! 10     4    argon2 memory cost in KiB (u32)
//! 14     4    argon2 iterations (u32)
//! 18     4    argon2 parallelism (u32)
//! 22     16   kdf salt
//! 38     16   file id (random per file)
//! 54     4    chunk size C in plaintext bytes (u32), a multiple of 16, 16 <= C <= 16 MiB
//! 58     32   key check = HMAC-SHA256(mac_key, "bakthat key check" || bytes 0..58)
//! 90          end of header; chunks follow
//! ```
//!
//! Keys: `master = Argon2id(password, salt, m, t, p, 32 bytes)`,
//! `okm = HKDF-SHA256(salt = file id, ikm = master, info = "bakthat v1 archive keys", L = 64)`,
//! `enc_key = okm[0..32]`, `mac_key = okm[32..64]`.
//!
//! The plaintext is cut into chunks of C bytes; the last one holds 0..=C bytes (an empty plaintext is one empty
//! chunk; a plaintext whose length is a multiple of C ends with a full chunk). Chunk `i` is stored as
//! `iv(16) || AES-256-CBC(enc_key, iv, PKCS#7(chunk)) || tag(32)` with
//! `tag = HMAC-SHA256(mac_key, "bakthat chunk" || u64le(i) || u8(last) || iv || ct)`. A full chunk takes C + 64
//! bytes, so chunk `i` starts at `90 + i * (C + 64)` and the final chunk is whatever remains. Binding the index
//! and the last flag into the tag detects reordering, truncation at a chunk boundary and extension.
//!
//! Readers verify each tag in constant time before decrypting, and release no plaintext of a chunk that fails.
//! Batches of chunks are sealed and opened in parallel with rayon; memory stays bounded by one batch.
//!
//! This module is not the tar/gzip layer, knows nothing about stores, and does not read the legacy bakthat 0.6
//! (beefish) format: see [`super::legacy`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;
use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rayon::prelude::*;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod stream;
pub use stream::{DecryptReader, EncryptWriter};

type HmacSha256 = Hmac<Sha256>;

/// The first eight bytes of every encrypted object: `"\x89BKT\r\n\x1a\n"`.
pub const MAGIC: [u8; 8] = *b"\x89BKT\r\n\x1a\n";
/// The format version this module writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Key derivation function id of Argon2id (version 0x13).
pub const KDF_ARGON2ID: u8 = 1;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 90;
/// Default chunk size in plaintext bytes.
pub const DEFAULT_CHUNK_SIZE: u32 = 65536;
/// Smallest allowed chunk size.
pub const MIN_CHUNK_SIZE: u32 = 16;
/// Largest allowed chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Bytes a full chunk adds on disk: IV, one block of PKCS#7 padding and the tag.
pub const CHUNK_OVERHEAD: u64 = 64;

const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
const BLOCK: usize = 16;
/// The smallest possible chunk: IV, one padding block, tag.
const MIN_SEALED_LEN: usize = IV_LEN + BLOCK + TAG_LEN;
const KEY_CHECK_LABEL: &[u8] = b"bakthat key check";
const CHUNK_LABEL: &[u8] = b"bakthat chunk";
const HKDF_INFO: &[u8] = b"bakthat v1 archive keys";
/// At most this many chunks are sealed or opened per batch.
const MAX_BATCH_CHUNKS: usize = 16;
/// Batches are cut so that their plaintext stays around this size (but hold at least two chunks).
const MAX_BATCH_BYTES: usize = 32 << 20;

/// Errors of the encrypted container.
#[derive(thiserror::Error, Debug)]
pub enum CryptoError {
    /// The password does not produce the key check stored in the header.
    #[error("wrong password (the archive's key check does not match)")]
    WrongPassword,
    /// A chunk's tag does not verify, or its padding or length is invalid.
    #[error("archive is corrupt or was tampered with: chunk {chunk} failed authentication")]
    Integrity {
        /// Index of the first chunk that failed (0-based).
        chunk: u64,
    },
    /// The object ends inside the header or inside a chunk's framing.
    #[error("archive is truncated")]
    Truncated,
    /// The object does not start with [`MAGIC`].
    #[error("not a bakthat encrypted object (the magic bytes are missing)")]
    NotEncrypted,
    /// The header names a format version this build does not know.
    #[error("unsupported encryption format version {0}; a newer bakthat may read it")]
    UnsupportedVersion(u8),
    /// The header names a key derivation function this build does not know.
    #[error("unsupported key derivation function id {0}; a newer bakthat may read it")]
    UnsupportedKdf(u8),
    /// A header field is out of range.
    #[error("invalid encryption header: {0}")]
    BadHeader(String),
    /// A chunk size given for writing is out of range.
    #[error("invalid chunk size {0}: use a multiple of 16 between 16 bytes and 16 MiB")]
    InvalidChunkSize(u32),
    /// Argon2 rejected its parameters or failed.
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// Reading or writing the underlying stream failed.
    #[error("reading or writing the encrypted stream failed")]
    Io(#[from] io::Error),
}

impl CryptoError {
    /// Recovers the `CryptoError` from an `io::Error` produced by [`DecryptReader`] or [`EncryptWriter`];
    /// any other I/O error becomes [`CryptoError::Io`].
    pub fn from_io(err: io::Error) -> CryptoError {
        if err.get_ref().is_some_and(|inner| inner.is::<CryptoError>()) {
            match err.into_inner().map(|inner| inner.downcast::<CryptoError>()) {
                Some(Ok(crypto)) => *crypto,
                Some(Err(other)) => CryptoError::Io(io::Error::new(io::ErrorKind::InvalidData, other)),
                None => CryptoError::Io(io::Error::from(io::ErrorKind::InvalidData)),
            }
        } else {
            CryptoError::Io(err)
        }
    }

    /// Wraps the error in an `io::Error` of kind `InvalidData` (I/O errors pass through unchanged).
    pub fn into_io(self) -> io::Error {
        match self {
            CryptoError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// A copy for reporting the same failure again (I/O errors keep their kind and text).
    fn duplicate(&self) -> CryptoError {
        match self {
            CryptoError::WrongPassword => CryptoError::WrongPassword,
            CryptoError::Integrity { chunk } => CryptoError::Integrity { chunk: *chunk },
            CryptoError::Truncated => CryptoError::Truncated,
            CryptoError::NotEncrypted => CryptoError::NotEncrypted,
            CryptoError::UnsupportedVersion(v) => CryptoError::UnsupportedVersion(*v),
            CryptoError::UnsupportedKdf(k) => CryptoError::UnsupportedKdf(*k),
            CryptoError::BadHeader(s) => CryptoError::BadHeader(s.clone()),
            CryptoError::InvalidChunkSize(c) => CryptoError::InvalidChunkSize(*c),
            CryptoError::Kdf(s) => CryptoError::Kdf(s.clone()),
            CryptoError::Io(e) => CryptoError::Io(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// Argon2id cost parameters, as stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { m_cost_kib: 65536, t_cost: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// Largest accepted memory cost (4 GiB), so a corrupt header cannot make us allocate without bound.
    pub const MAX_M_COST_KIB: u32 = 4 << 20;
    /// Largest accepted number of passes.
    pub const MAX_T_COST: u32 = 64;
    /// Largest accepted parallelism.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Checks the parameters against Argon2's rules and our bounds.
    pub fn check(&self) -> Result<(), String> {
        let KdfParams { m_cost_kib: m, t_cost: t, parallelism: p } = *self;
        if !(1..=Self::MAX_PARALLELISM).contains(&p) {
            return Err(format!("argon2 parallelism {p} is outside 1..={}", Self::MAX_PARALLELISM));
        }
        if !(1..=Self::MAX_T_COST).contains(&t) {
            return Err(format!("argon2 iterations {t} is outside 1..={}", Self::MAX_T_COST));
        }
        if m < 8 * p || m > Self::MAX_M_COST_KIB {
            return Err(format!("argon2 memory cost {m} KiB is outside {}..={} KiB", 8 * p, Self::MAX_M_COST_KIB));
        }
        Ok(())
    }
}

/// The Argon2id output for one (password, salt, params), with the salt and params it was derived for.
#[derive(Clone)]
pub struct MasterKey {
    salt: [u8; 16],
    params: KdfParams,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("salt", &self.salt).field("params", &self.params).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Runs Argon2id (version 0x13) over the password. This is deliberately slow; see [`KeyCache`].
    pub fn derive(password: &[u8], salt: [u8; 16], params: KdfParams) -> Result<MasterKey, CryptoError> {
        params.check().map_err(CryptoError::Kdf)?;
        let argon_params = argon2::Params::new(params.m_cost_kib, params.t_cost, params.parallelism, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon.hash_password_into(password, &salt, &mut key[..]).map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(MasterKey { salt, params, key })
    }

    /// A fresh random salt from the operating system.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn random_salt() -> [u8; 16] {
        random_array()
    }

    /// The salt this key was derived with.
    pub fn salt(&self) -> [u8; 16] {
        self.salt
    }

    /// The Argon2 parameters this key was derived with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// A key for a purpose other than archives (HKDF-SHA256 of this key with `label` as the info): keys for
    /// different labels are independent, and none of them can open or forge an archive.
    pub fn subkey(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        let hkdf = Hkdf::<Sha256>::new(None, &self.key[..]);
        hkdf.expand(label, &mut out[..]).expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The format requires OS randomness; there is no sensible way to continue without it.
    getrandom::getrandom(&mut out).expect("the operating system's random number generator failed");
    out
}

fn check_chunk_size(c: u32) -> bool {
    c % 16 == 0 && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&c)
}

/// The parsed 90-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Argon2id parameters of the master key.
    pub params: KdfParams,
    /// Argon2id salt of the master key.
    pub salt: [u8; 16],
    /// Random per-file id, the HKDF salt of this file's keys.
    pub file_id: [u8; 16],
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// HMAC-SHA256 over the first 58 header bytes; proves the password before any data is read.
    pub key_check: [u8; 32],
}

impl Header {
    /// Parses and range-checks a header from the first bytes of an object (at least [`HEADER_LEN`] of them).
    ///
    /// Fewer bytes that start like the magic give [`CryptoError::Truncated`]; other bytes give
    /// [`CryptoError::NotEncrypted`]. The key check is verified by [`FileKeys::open`], not here.
    pub fn parse(buf: &[u8]) -> Result<Header, CryptoError> {
        let m = buf.len().min(MAGIC.len());
        if buf[..m] != MAGIC[..m] {
            return Err(CryptoError::NotEncrypted);
        }
        if buf.len() < HEADER_LEN {
            return Err(CryptoError::Truncated);
        }
        if buf[8] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(buf[8]));
        }
        if buf[9] != KDF_ARGON2ID {
            return Err(CryptoError::UnsupportedKdf(buf[9]));
        }
        let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let params = KdfParams { m_cost_kib: u32_at(10), t_cost: u32_at(14), parallelism: u32_at(18) };
        params.check().map_err(CryptoError::BadHeader)?;
        let chunk_size = u32_at(54);
        if !check_chunk_size(chunk_size) {
            return Err(CryptoError::BadHeader(format!(
                "chunk size {chunk_size} is not a multiple of 16 between 16 and {MAX_CHUNK_SIZE}"
            )));
        }
        let mut header = Header { params, salt: [0; 16], file_id: [0; 16], chunk_size, key_check: [0; 32] };
        header.salt.copy_from_slice(&buf[22..38]);
        header.file_id.copy_from_slice(&buf[38..54]);
        header.key_check.copy_from_slice(&buf[58..90]);
        Ok(header)
    }

    /// Serializes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8] = FORMAT_VERSION;
        out[9] = KDF_ARGON2ID;
        out[10..14].copy_from_slice(&self.params.m_cost_kib.to_le_bytes());
        out[14..18].copy_from_slice(&self.params.t_cost.to_le_bytes());
        out[18..22].copy_from_slice(&self.params.parallelism.to_le_bytes());
        out[22..38].copy_from_slice(&self.salt);
        out[38..54].copy_from_slice(&self.file_id);
        out[54..58].copy_from_slice(&self.chunk_size.to_le_bytes());
        out[58..90].copy_from_slice(&self.key_check);
        out
    }

    /// Number of chunks in an object of `total_len` bytes, and the on-disk length of its final chunk.
    fn layout(&self, total_len: u64) -> Result<(u64, u64), CryptoError> {
        chunk_layout(self.chunk_size, total_len.checked_sub(HEADER_LEN as u64).ok_or(CryptoError::Truncated)?)
    }
}

/// Splits `body_len` bytes of chunks into (chunk count, length of the final chunk).
fn chunk_layout(chunk_size: u32, body_len: u64) -> Result<(u64, u64), CryptoError> {
    let full = u64::from(chunk_size) + CHUNK_OVERHEAD;
    if body_len == 0 {
        return Err(CryptoError::Truncated);
    }
    let n = body_len.div_ceil(full);
    let last = body_len - (n - 1) * full;
    if last < MIN_SEALED_LEN as u64 {
        return Err(CryptoError::Truncated);
    }
    Ok((n, last))
}

/// Whether an object starts with the v1 magic (pass its first bytes, at least 8 of them).
pub fn is_v1(prefix: &[u8]) -> bool {
    prefix.len() >= MAGIC.len() && prefix[..MAGIC.len()] == MAGIC
}

/// The encryption and MAC keys of one file, with its header.
pub struct FileKeys {
    header: Header,
    enc_key: Zeroizing<[u8; 32]>,
    mac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeys").field("header", &self.header).finish_non_exhaustive()
    }
}

fn hmac_with(key: &[u8; 32]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key).expect("hmac accepts keys of any length")
}

impl FileKeys {
    /// Derives a file's keys from the master key and checks them against the header's key check.
    ///
    /// Returns [`CryptoError::WrongPassword`] if the key check does not match (a wrong password, or a header
    /// that was altered), and [`CryptoError::Kdf`] if `master` was derived for another salt or other parameters.
    pub fn open(header: &Header, master: &MasterKey) -> Result<FileKeys, CryptoError> {
        if master.salt != header.salt || master.params != header.params {
            return Err(CryptoError::Kdf("the master key was derived for another salt or other parameters".into()));
        }
        let keys = Self::derive(header, master);
        let expected = keys.key_check();
        if bool::from(expected.ct_eq(&header.key_check)) {
            Ok(keys)
        } else {
            Err(CryptoError::WrongPassword)
        }
    }

    /// Keys and header for a new file with a random file id.
    fn create(master: &MasterKey, chunk_size: u32) -> Result<FileKeys, CryptoError> {
        if !check_chunk_size(chunk_size) {
            return Err(CryptoError::InvalidChunkSize(chunk_size));
        }
        let header = Header {
            params: master.params,
            salt: master.salt,
            file_id: random_array(),
            chunk_size,
            key_check: [0; 32],
        };
        let mut keys = Self::derive(&header, master);
        keys.header.key_check = keys.key_check();
        Ok(keys)
    }

    fn derive(header: &Header, master: &MasterKey) -> FileKeys {
        let hkdf = Hkdf::<Sha256>::new(Some(&header.file_id), &master.key[..]);
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf.expand(HKDF_INFO, &mut okm[..]).expect("64 bytes is a valid HKDF-SHA256 output length");
        let mut enc_key = Zeroizing::new([0u8; 32]);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        enc_key.copy_from_slice(&okm[..32]);
        mac_key.copy_from_slice(&okm[32..]);
        FileKeys { header: *header, enc_key, mac_key }
    }

    fn key_check(&self) -> [u8; 32] {
        let mut mac = hmac_with(&self.mac_key);
        mac.update(KEY_CHECK_LABEL);
        mac.update(&self.header.to_bytes()[..58]);
        mac.finalize().into_bytes().into()
    }

    /// The header these keys belong to.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn chunk_size(&self) -> usize {
        self.header.chunk_size as usize
    }

    fn chunk_mac(&self, index: u64, last: bool, iv_ct: &[u8]) -> HmacSha256 {
        let mut mac = hmac_with(&self.mac_key);
        mac.update(CHUNK_LABEL);
        mac.update(&index.to_le_bytes());
        mac.update(&[u8::from(last)]);
        mac.update(iv_ct);
        mac
    }

    /// Encrypts `pt` into `out`, which must be exactly `sealed_len(pt.len())` bytes.
    fn seal_chunk(&self, index: u64, last: bool, iv: &[u8], pt: &[u8], out: &mut [u8]) {
        debug_assert_eq!(out.len(), sealed_len(pt.len()));
        let (iv_ct, tag) = out.split_at_mut(out.len() - TAG_LEN);
        iv_ct[..IV_LEN].copy_from_slice(iv);
        let body = &mut iv_ct[IV_LEN..];
        body[..pt.len()].copy_from_slice(pt);
        let enc =
            cbc::Encryptor::<Aes256>::new(GenericArray::from_slice(&self.enc_key[..]), GenericArray::from_slice(iv));
        let ct_len =
            enc.encrypt_padded_mut::<Pkcs7>(body, pt.len()).expect("the chunk buffer has room for the padding").len();
        debug_assert_eq!(ct_len, body.len());
        tag.copy_from_slice(&self.chunk_mac(index, last, iv_ct).finalize().into_bytes());
    }

    /// Verifies and decrypts one stored chunk in place; returns its plaintext length. The plaintext is then at
    /// `chunk[16..16 + len]`. No decryption happens unless the tag verifies.
    fn open_chunk(&self, index: u64, last: bool, chunk: &mut [u8]) -> Result<usize, CryptoError> {
        let bad = || CryptoError::Integrity { chunk: index };
        if chunk.len() < MIN_SEALED_LEN || (chunk.len() - IV_LEN - TAG_LEN) % BLOCK != 0 {
            return Err(bad());
        }
        let (iv_ct, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
        self.chunk_mac(index, last, iv_ct).verify_slice(tag).map_err(|_| bad())?;
        let (iv, ct) = iv_ct.split_at_mut(IV_LEN);
        let dec =
            cbc::Decryptor::<Aes256>::new(GenericArray::from_slice(&self.enc_key[..]), GenericArray::from_slice(iv));
        let pt_len = dec.decrypt_padded_mut::<Pkcs7>(ct).map_err(|_| bad())?.len();
        let c = self.chunk_size();
        // A non-final chunk always holds exactly C bytes; a final one at most C.
        if (last && pt_len > c) || (!last && pt_len != c) {
            return Err(bad());
        }
        Ok(pt_len)
    }

    /// Seals `pt` as chunks `base..`, the final one flagged `last` if `is_final`, appending to `out`.
    /// An empty `pt` makes one empty chunk (only meaningful as the final chunk of an empty plaintext).
    fn seal_batch(&self, base: u64, pt: &[u8], is_final: bool, out: &mut Vec<u8>) -> io::Result<()> {
        let c = self.chunk_size();
        let n = pt.len().div_ceil(c).max(1);
        let last_len = pt.len() - (n - 1) * c;
        let total = (n - 1) * (c + CHUNK_OVERHEAD as usize) + sealed_len(last_len);
        let mut ivs = vec![0u8; IV_LEN * n];
        getrandom::getrandom(&mut ivs).map_err(|e| io::Error::other(format!("os random number generator: {e}")))?;
        let start = out.len();
        out.resize(start + total, 0);
        let pts: Vec<&[u8]> = if pt.is_empty() { vec![pt] } else { pt.chunks(c).collect() };
        out[start..]
            .par_chunks_mut(c + CHUNK_OVERHEAD as usize)
            .zip(pts.par_iter())
            .zip(ivs.par_chunks(IV_LEN))
            .enumerate()
            .for_each(|(j, ((dst, pt), iv))| self.seal_chunk(base + j as u64, is_final && j == n - 1, iv, pt, dst));
        Ok(())
    }

    /// Verifies and decrypts a run of stored chunks `base..` in parallel, in place. `final_index` is the index
    /// of the object's final chunk if it is known to be in this run. Returns each chunk's plaintext length, or the
    /// error of the lowest failing chunk.
    fn open_batch(&self, base: u64, data: &mut [u8], final_index: Option<u64>) -> Result<Vec<usize>, CryptoError> {
        let full = self.chunk_size() + CHUNK_OVERHEAD as usize;
        let results: Vec<Result<usize, CryptoError>> = data
            .par_chunks_mut(full)
            .enumerate()
            .map(|(j, chunk)| {
                let index = base + j as u64;
                self.open_chunk(index, Some(index) == final_index, chunk)
            })
            .collect();
        results.into_iter().collect()
    }
}

/// On-disk length of a chunk holding `pt_len` plaintext bytes.
fn sealed_len(pt_len: usize) -> usize {
    IV_LEN + (pt_len / BLOCK + 1) * BLOCK + TAG_LEN
}

fn batch_chunks(chunk_size: usize) -> usize {
    (MAX_BATCH_BYTES / chunk_size).clamp(2, MAX_BATCH_CHUNKS)
}

type Slot = Arc<Mutex<Option<Arc<MasterKey>>>>;

/// Derives master keys lazily and caches them per (salt, params), so many files sharing a salt cost one Argon2 run.
///
/// Concurrent requests for the same (salt, params) wait for one derivation; different ones run independently.
pub struct KeyCache {
    password: Zeroizing<Vec<u8>>,
    slots: Mutex<HashMap<([u8; 16], KdfParams), Slot>>,
    derivations: AtomicUsize,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache").field("derivations", &self.derivations()).finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache for one password (its UTF-8 bytes, for passwords typed as text).
    pub fn new(password: &[u8]) -> Self {
        KeyCache {
            password: Zeroizing::new(password.to_vec()),
            slots: Mutex::default(),
            derivations: AtomicUsize::new(0),
        }
    }

    /// The master key for (salt, params), derived on first use.
    pub fn master(&self, salt: [u8; 16], params: KdfParams) -> Result<Arc<MasterKey>, CryptoError> {
        let slot = lock(&self.slots).entry((salt, params)).or_default().clone();
        let mut guard = lock(&slot);
        if let Some(key) = guard.as_ref() {
            return Ok(key.clone());
        }
        self.derivations.fetch_add(1, Ordering::Relaxed);
        let key = Arc::new(MasterKey::derive(&self.password, salt, params)?);
        *guard = Some(key.clone());
        Ok(key)
    }

    /// Adds a master key derived elsewhere (for example by the writer of a backup); the caller vouches that it
    /// belongs to this cache's password.
    pub fn insert(&self, master: Arc<MasterKey>) {
        let slot = Arc::new(Mutex::new(Some(master.clone())));
        lock(&self.slots).insert((master.salt, master.params), slot);
    }

    /// The keys of the file with this header; [`CryptoError::WrongPassword`] if the key check fails.
    pub fn open(&self, header: &Header) -> Result<FileKeys, CryptoError> {
        let master = self.master(header.salt, header.params)?;
        FileKeys::open(header, &master)
    }

    /// How many Argon2 runs this cache has started.
    pub fn derivations(&self) -> usize {
        self.derivations.load(Ordering::Relaxed)
    }
}

/// Ciphertext byte range `[start, end)` covering plaintext `[pt_start, pt_end)`, given the header and the
/// ciphertext's total length. The range is made of whole chunks; a range that starts past the last chunk is empty
/// (`(total_len, total_len)`).
pub fn ciphertext_range(header: &Header, total_len: u64, pt_start: u64, pt_end: u64) -> (u64, u64) {
    let c = u64::from(header.chunk_size);
    let full = c + CHUNK_OVERHEAD;
    let h = HEADER_LEN as u64;
    let n = total_len.saturating_sub(h).div_ceil(full).max(1);
    let first = pt_start / c;
    if pt_end <= pt_start || first >= n {
        let at = if first >= n { total_len } else { (h + first * full).min(total_len) };
        return (at, at);
    }
    let last = ((pt_end - 1) / c).min(n - 1);
    ((h + first * full).min(total_len), (h + (last + 1) * full).min(total_len))
}

/// Random access: fetches only the chunks covering plaintext `[pt_start, pt_end)` through `fetch(start, len)` (one
/// call), verifies and decrypts only those (in parallel), and returns exactly the plaintext bytes of that range,
/// clamped to the plaintext's end. `total_len` is the ciphertext's total length, which decides the final chunk.
pub fn decrypt_range(
    keys: &FileKeys,
    total_len: u64,
    fetch: &(dyn Fn(u64, u64) -> io::Result<Vec<u8>> + Sync),
    pt_start: u64,
    pt_end: u64,
) -> Result<Vec<u8>, CryptoError> {
    let header = keys.header();
    let (n, _) = header.layout(total_len)?;
    let c = u64::from(header.chunk_size);
    let full = c + CHUNK_OVERHEAD;
    let (start, end) = ciphertext_range(header, total_len, pt_start, pt_end);
    if start == end {
        return Ok(Vec::new());
    }
    let first = (start - HEADER_LEN as u64) / full;
    let mut data = fetch(start, end - start)?;
    if data.len() as u64 != end - start {
        return Err(CryptoError::Truncated);
    }
    let lens = keys.open_batch(first, &mut data, Some(n - 1))?;
    let mut out = Vec::new();
    for (j, len) in lens.into_iter().enumerate() {
        let chunk_pt = (first + j as u64) * c;
        let lo = pt_start.max(chunk_pt) - chunk_pt;
        let hi = pt_end.min(chunk_pt + len as u64).saturating_sub(chunk_pt);
        if lo < hi {
            let at = j * full as usize + IV_LEN;
            out.extend_from_slice(&data[at + lo as usize..at + hi as usize]);
        }
    }
    Ok(out)
}

/// The plaintext length of an object, found by fetching, verifying and decrypting its final chunk only.
pub fn plaintext_len(
    keys: &FileKeys,
    total_len: u64,
    fetch: &(dyn Fn(u64, u64) -> io::Result<Vec<u8>> + Sync),
) -> Result<u64, CryptoError> {
    let (n, last_len) = keys.header().layout(total_len)?;
    let mut data = fetch(total_len - last_len, last_len)?;
    if data.len() as u64 != last_len {
        return Err(CryptoError::Truncated);
    }
    let len = keys.open_chunk(n - 1, true, &mut data)?;
    Ok((n - 1) * u64::from(keys.header().chunk_size) + len as u64)
}

/// Encrypts a whole (small) object in memory with [`DEFAULT_CHUNK_SIZE`].
///
/// # Panics
/// If the operating system's random number generator fails.
pub fn encrypt_bytes(master: &MasterKey, data: &[u8]) -> Vec<u8> {
    let keys = FileKeys::create(master, DEFAULT_CHUNK_SIZE).expect("the default chunk size is valid");
    let chunks = data.len().div_ceil(DEFAULT_CHUNK_SIZE as usize).max(1);
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + chunks * CHUNK_OVERHEAD as usize);
    out.extend_from_slice(&keys.header.to_bytes());
    keys.seal_batch(0, data, true, &mut out).expect("the operating system's random number generator failed");
    out
}

/// Decrypts a whole (small) object in memory, verifying every chunk.
pub fn decrypt_bytes(keys: &KeyCache, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let header = Header::parse(data)?;
    let file_keys = keys.open(&header)?;
    let mut body = data[HEADER_LEN..].to_vec();
    let (n, _) = chunk_layout(header.chunk_size, body.len() as u64)?;
    let lens = file_keys.open_batch(0, &mut body, Some(n - 1))?;
    let full = header.chunk_size as usize + CHUNK_OVERHEAD as usize;
    let mut out = Vec::with_capacity(body.len());
    for (j, len) in lens.into_iter().enumerate() {
        out.extend_from_slice(&body[j * full + IV_LEN..j * full + IV_LEN + len]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

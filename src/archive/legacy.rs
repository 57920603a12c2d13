//! Reader (and test-only writer) for the encrypted archives of bakthat 0.6, i.e. the beefish format.
//!
//! bakthat 0.6 encrypted every archive with beefish's Blowfish format: `IV (8 random bytes) || Blowfish-CBC(K, IV,
//! plaintext || pad)`, where the key `K` is the password bytes as given (1 to 56 bytes, no KDF) and the pad is
//! `p - 1` random bytes and a flag byte whose value modulo 8 is `p` modulo 8 (`1 <= p <= 8`). beefish 0.2 added an
//! AES mode (`.ae`), whose key and IV come from a SHA-256 chain over the password and whose stored IV is ignored;
//! bakthat never wrote it, but [`AesReader`] reads it.
//!
//! The format has no MAC, no magic and no version: a wrong password silently yields garbage. The readers therefore
//! offer `expect_gzip`, which checks the gzip magic `1f 8b` at the start of the plaintext (bakthat always encrypted
//! `.tgz` data) and reports [`LegacyError::WrongPassword`] otherwise. Nothing else is, or can be, authenticated.
//!
//! This module is not the current archive format (see `crate::archive::crypto`) and knows nothing about object
//! names beyond [`LegacyCipher::from_object_name`], nor about stores or the inventory. bakthat never writes the
//! legacy format by default: [`blowfish_encrypt`] exists for tests and an explicit `--legacy-format`.

use std::io::{self, Read, Write};

use blowfish::Blowfish;
use cbc::cipher::generic_array::GenericArray;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, BlockSizeUser, InnerIvInit, KeyIvInit};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Blowfish block (and IV) size in bytes.
const BF_BLOCK: usize = 8;
/// AES block size, and the size of the (ignored) IV header of beefish AES files.
const AES_BLOCK: usize = 16;
/// Shortest and longest password the Blowfish key schedule of pycrypto accepted.
const MIN_KEY: usize = 1;
const MAX_KEY: usize = 56;
/// Ciphertext bytes read from the inner reader at a time (a multiple of both block sizes).
const CHUNK: usize = 64 * 1024;
/// The gzip magic that every bakthat 0.6 payload starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Errors of the legacy (beefish) reader and writer.
#[derive(thiserror::Error, Debug)]
pub enum LegacyError {
    /// The password cannot be a beefish Blowfish key (empty or longer than 56 bytes).
    #[error("legacy (bakthat 0.6) archives need a password of 1 to 56 bytes, got {len}")]
    BadKeyLength {
        /// Length of the password that was given, in bytes.
        len: usize,
    },
    /// The decrypted data does not start with the gzip magic, so the password is (almost surely) wrong.
    #[error("wrong password for this bakthat 0.6 archive (decrypted data is not gzip)")]
    WrongPassword,
    /// The ciphertext ended inside a cipher block (or inside the IV header).
    #[error("legacy archive is truncated (its length is not a multiple of 8)")]
    Truncated,
    /// Reading the ciphertext or writing the output failed.
    #[error("i/o error on a legacy archive")]
    Io(#[from] io::Error),
}

impl LegacyError {
    /// The `LegacyError` inside an `io::Error` returned by one of this module's `Read` impls, if any.
    pub fn from_io(err: &io::Error) -> Option<&LegacyError> {
        err.get_ref()?.downcast_ref::<LegacyError>()
    }
}

impl From<LegacyError> for io::Error {
    /// I/O errors of the inner reader come back unchanged; format errors become `InvalidData` wrapping the
    /// `LegacyError` (see [`LegacyError::from_io`]).
    fn from(err: LegacyError) -> io::Error {
        match err {
            LegacyError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Which legacy cipher an object name implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyCipher {
    /// beefish Blowfish-CBC: what bakthat 0.6 wrote (`.enc`), and the beefish CLI's `.e`.
    Blowfish,
    /// beefish AES mode (`.ae`), written only by the beefish 0.2 CLI with `-a`.
    Aes,
}

impl LegacyCipher {
    /// `.ae` means [`LegacyCipher::Aes`], `.enc` and `.e` mean [`LegacyCipher::Blowfish`]; anything else `None`.
    pub fn from_object_name(name: &str) -> Option<LegacyCipher> {
        if name.ends_with(".ae") {
            Some(LegacyCipher::Aes)
        } else if name.ends_with(".enc") || name.ends_with(".e") {
            Some(LegacyCipher::Blowfish)
        } else {
            None
        }
    }

    /// Opens a decrypting reader for this cipher; see [`BlowfishReader::new`] and [`AesReader::new`].
    pub fn reader<R: Read>(self, inner: R, password: &[u8], expect_gzip: bool) -> Result<LegacyReader<R>, LegacyError> {
        Ok(match self {
            LegacyCipher::Blowfish => {
                LegacyReader::Blowfish(Box::new(BlowfishReader::new(inner, password, expect_gzip)?))
            }
            LegacyCipher::Aes => LegacyReader::Aes(Box::new(AesReader::new(inner, password, expect_gzip)?)),
        })
    }
}

/// Either legacy reader, as opened by [`LegacyCipher::reader`].
pub enum LegacyReader<R: Read> {
    /// A beefish Blowfish file (boxed, as the AES one: the cipher states differ a lot in size).
    Blowfish(Box<BlowfishReader<R>>),
    /// A beefish AES file.
    Aes(Box<AesReader<R>>),
}

impl<R: Read> Read for LegacyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LegacyReader::Blowfish(r) => r.read(buf),
            LegacyReader::Aes(r) => r.read(buf),
        }
    }
}

/// Streaming CBC decryption with the beefish padding rule, generic over the block cipher.
///
/// Holds back the last decrypted block until the inner reader reaches EOF, then strips `n = last % bs` bytes (or
/// `bs` if that is 0). Memory use is one chunk of ciphertext plus one chunk of plaintext.
struct CbcStream<R, D> {
    inner: R,
    dec: D,
    /// Ciphertext staging buffer (`CHUNK` bytes); `cfill` bytes of it are valid, always fewer than one block
    /// between calls to `fill`.
    cbuf: Vec<u8>,
    cfill: usize,
    /// Released plaintext; `out[out_pos..]` is not yet returned to the caller.
    out: Vec<u8>,
    out_pos: usize,
    /// The last decrypted block, released only once it is known not to be the final (padded) one.
    held: Vec<u8>,
    /// The inner reader reached EOF and the padding is stripped.
    done: bool,
}

impl<R: Read, D: BlockDecryptMut + BlockSizeUser> CbcStream<R, D> {
    fn new(inner: R, dec: D) -> Self {
        CbcStream {
            inner,
            dec,
            cbuf: vec![0; CHUNK],
            cfill: 0,
            out: Vec::with_capacity(CHUNK),
            out_pos: 0,
            held: Vec::with_capacity(D::block_size()),
            done: false,
        }
    }

    fn available(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Decrypts more ciphertext until some more plaintext is released or the stream is done. Appends to the
    /// plaintext not yet returned (the buffer is reset only once it is drained).
    fn fill(&mut self) -> Result<(), LegacyError> {
        let bs = D::block_size();
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let before = self.out.len();
        while !self.done && self.out.len() == before {
            let n = match self.inner.read(&mut self.cbuf[self.cfill..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LegacyError::Io(e)),
            };
            if n == 0 {
                return self.finish();
            }
            self.cfill += n;
            let full = self.cfill / bs * bs;
            if full == 0 {
                continue;
            }
            self.out.extend_from_slice(&self.held);
            let dec_start = self.out.len();
            self.out.extend_from_slice(&self.cbuf[..full]);
            for block in self.out[dec_start..].chunks_exact_mut(bs) {
                self.dec.decrypt_block_mut(GenericArray::from_mut_slice(block));
            }
            let last = self.out.len() - bs;
            self.held.clear();
            self.held.extend_from_slice(&self.out[last..]);
            self.out.truncate(last);
            self.cbuf.copy_within(full..self.cfill, 0);
            self.cfill -= full;
        }
        Ok(())
    }

    /// At EOF: a partial block means truncation; otherwise strip the padding from the held block.
    fn finish(&mut self) -> Result<(), LegacyError> {
        if self.cfill != 0 {
            return Err(LegacyError::Truncated);
        }
        let bs = D::block_size();
        // An empty ciphertext body decrypts to nothing (beefish truncates nothing in that case).
        if let Some(&flag) = self.held.last() {
            let mut n = usize::from(flag) % bs;
            if n == 0 {
                n = bs;
            }
            self.out.extend_from_slice(&self.held[..bs - n]);
            self.held.zeroize();
        }
        self.done = true;
        Ok(())
    }

    /// Decrypts until `want` plaintext bytes are available or the stream ends, and returns them.
    fn peek(&mut self, want: usize) -> Result<&[u8], LegacyError> {
        while self.available() < want && !self.done {
            self.fill()?;
        }
        Ok(&self.out[self.out_pos..])
    }

    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.available() == 0 {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = buf.len().min(self.available());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }

    /// Applies the `expect_gzip` check to the first plaintext bytes.
    fn check_gzip(&mut self) -> Result<(), LegacyError> {
        if self.peek(GZIP_MAGIC.len())?.starts_with(&GZIP_MAGIC) {
            Ok(())
        } else {
            Err(LegacyError::WrongPassword)
        }
    }
}

impl<R, D> Drop for CbcStream<R, D> {
    fn drop(&mut self) {
        self.out.zeroize();
        self.held.zeroize();
    }
}

/// Reads exactly `buf.len()` header bytes, or fails with [`LegacyError::Truncated`] at an early EOF.
fn read_header<R: Read>(inner: &mut R, buf: &mut [u8]) -> Result<(), LegacyError> {
    match inner.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(LegacyError::Truncated),
        Err(e) => Err(LegacyError::Io(e)),
    }
}

/// The Blowfish cipher beefish builds from a password: the password bytes are the key (1 to 56 bytes).
///
/// Uses the standard cyclic key schedule directly, because `KeyInit::new_from_slice` rejects 1–3 byte keys that
/// pycrypto (and so bakthat 0.6) accepted.
fn blowfish_cipher(password: &[u8]) -> Result<Blowfish, LegacyError> {
    if !(MIN_KEY..=MAX_KEY).contains(&password.len()) {
        return Err(LegacyError::BadKeyLength { len: password.len() });
    }
    let mut cipher = Blowfish::bc_init_state();
    cipher.bc_expand_key(password);
    Ok(cipher)
}

/// Streaming beefish Blowfish-CBC decryption: an 8-byte IV prefix, then the CBC body with the §1.2 pad rule.
///
/// Holds back the final block until EOF to strip the padding. Errors from `read` are the inner reader's I/O
/// errors, or `InvalidData` wrapping a [`LegacyError`] (see [`LegacyError::from_io`]).
pub struct BlowfishReader<R: Read> {
    stream: CbcStream<R, cbc::Decryptor<Blowfish>>,
}

impl<R: Read> BlowfishReader<R> {
    /// Reads the IV and prepares decryption with `password` (1 to 56 bytes, used as the key as is).
    ///
    /// If `expect_gzip` is true, the first two plaintext bytes must be `1f 8b`, otherwise this returns
    /// [`LegacyError::WrongPassword`] (without the check, a wrong password gives silent garbage, as in beefish).
    pub fn new(mut inner: R, password: &[u8], expect_gzip: bool) -> Result<Self, LegacyError> {
        let cipher = blowfish_cipher(password)?;
        let mut iv = [0u8; BF_BLOCK];
        read_header(&mut inner, &mut iv)?;
        let dec = cbc::Decryptor::inner_iv_init(cipher, GenericArray::from_slice(&iv));
        let mut stream = CbcStream::new(inner, dec);
        if expect_gzip {
            stream.check_gzip()?;
        }
        Ok(BlowfishReader { stream })
    }
}

impl<R: Read> Read for BlowfishReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read_plain(buf)
    }
}

/// The beefish AES mode key and IV for `password`:
/// `d = b''; di = b''; while len(d) < 48: di = sha256(di + password); d += di[:16]`, key `d[0..32]`, IV
/// `d[32..48]`.
pub fn aes_key_iv(password: &[u8]) -> ([u8; 32], [u8; 16]) {
    let mut d = [0u8; 48];
    let mut di: Vec<u8> = Vec::new();
    for part in d.chunks_exact_mut(16) {
        let digest = Sha256::new().chain_update(&di).chain_update(password).finalize();
        di.zeroize();
        di = digest.to_vec();
        part.copy_from_slice(&di[..16]);
    }
    di.zeroize();
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&d[..32]);
    iv.copy_from_slice(&d[32..]);
    d.zeroize();
    (key, iv)
}

/// beefish AES mode (never written by bakthat): the 16-byte header IV is read and ignored; the AES-256-CBC key and
/// IV are derived from the password by the SHA-256 chain of [`aes_key_iv`]; padding as Blowfish with 16-byte
/// blocks. Errors as for [`BlowfishReader`]; a body that is not a whole number of 16-byte blocks is
/// [`LegacyError::Truncated`].
pub struct AesReader<R: Read> {
    stream: CbcStream<R, cbc::Decryptor<aes::Aes256>>,
}

impl<R: Read> AesReader<R> {
    /// Reads (and ignores) the IV header and prepares decryption; any password length is accepted.
    ///
    /// `expect_gzip` works as in [`BlowfishReader::new`].
    pub fn new(mut inner: R, password: &[u8], expect_gzip: bool) -> Result<Self, LegacyError> {
        let mut header = [0u8; AES_BLOCK];
        read_header(&mut inner, &mut header)?;
        let (mut key, mut iv) = aes_key_iv(password);
        let dec = cbc::Decryptor::<aes::Aes256>::new(GenericArray::from_slice(&key), GenericArray::from_slice(&iv));
        key.zeroize();
        iv.zeroize();
        let mut stream = CbcStream::new(inner, dec);
        if expect_gzip {
            stream.check_gzip()?;
        }
        Ok(AesReader { stream })
    }
}

impl<R: Read> Read for AesReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read_plain(buf)
    }
}

/// Where the padding bytes come from.
enum PadSource {
    /// The OS RNG, as beefish (which used Python's `random`).
    Os,
    /// Fixed pad bytes and flag parameter, for deterministic tests.
    Fixed { pad_byte: u8, flag_r: u8 },
}

impl PadSource {
    /// Fills `pad` (`p` bytes, `1 <= p <= 8`): `p - 1` pad bytes, then the flag `r - r % 8 + p`.
    fn fill(&self, pad: &mut [u8]) -> Result<(), LegacyError> {
        let p = pad.len();
        let (body, flag) = pad.split_at_mut(p - 1);
        let r = match *self {
            PadSource::Os => {
                os_random(body)?;
                // beefish: r = random.randrange(6, 248); uniform by rejection sampling.
                loop {
                    let mut b = [0u8; 1];
                    os_random(&mut b)?;
                    if b[0] < 242 {
                        break b[0] + 6;
                    }
                }
            }
            PadSource::Fixed { pad_byte, flag_r } => {
                body.fill(pad_byte);
                flag_r
            }
        };
        // For r in beefish's range [6, 247] this never wraps; wrapping keeps `flag % 8 == p % 8` for any r.
        flag[0] = (r & !7).wrapping_add(p as u8);
        Ok(())
    }
}

fn os_random(buf: &mut [u8]) -> Result<(), LegacyError> {
    getrandom::getrandom(buf).map_err(|e| {
        LegacyError::Io(io::Error::other(format!("the operating system's random number generator failed: {e}")))
    })
}

/// Streams `input` through Blowfish-CBC into `output` in the beefish layout; returns the bytes written.
fn encrypt_stream<R: Read, W: Write>(
    mut input: R,
    mut output: W,
    cipher: Blowfish,
    iv: [u8; BF_BLOCK],
    pad: &PadSource,
) -> Result<u64, LegacyError> {
    let mut enc = cbc::Encryptor::inner_iv_init(cipher, GenericArray::from_slice(&iv));
    output.write_all(&iv)?;
    let mut written = BF_BLOCK as u64;
    let mut buf = vec![0u8; CHUNK];
    let mut fill = 0;
    loop {
        let n = match input.read(&mut buf[fill..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LegacyError::Io(e)),
        };
        if n == 0 {
            break;
        }
        fill += n;
        let full = fill / BF_BLOCK * BF_BLOCK;
        if full == 0 {
            continue;
        }
        for block in buf[..full].chunks_exact_mut(BF_BLOCK) {
            enc.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        output.write_all(&buf[..full])?;
        written += full as u64;
        buf.copy_within(full..fill, 0);
        fill -= full;
    }
    // The final block: the remaining 0..7 plaintext bytes, then p = 8 - remaining pad bytes.
    let mut last = [0u8; BF_BLOCK];
    last[..fill].copy_from_slice(&buf[..fill]);
    pad.fill(&mut last[fill..])?;
    enc.encrypt_block_mut(GenericArray::from_mut_slice(&mut last));
    output.write_all(&last)?;
    written += BF_BLOCK as u64;
    output.flush()?;
    buf.zeroize();
    Ok(written)
}

/// Encrypts `input` into `output` in the beefish Blowfish format (random IV and padding from the OS RNG) and
/// returns the number of bytes written (`8 + 8 * (len / 8 + 1)`).
///
/// Only for tests and an explicit `--legacy-format`: the format is unauthenticated and uses the password as the
/// key, so bakthat never writes it by default.
pub fn blowfish_encrypt<R: Read, W: Write>(input: R, output: W, password: &[u8]) -> Result<u64, LegacyError> {
    let cipher = blowfish_cipher(password)?;
    let mut iv = [0u8; BF_BLOCK];
    os_random(&mut iv)?;
    encrypt_stream(input, output, cipher, iv, &PadSource::Os)
}

/// Deterministic [`blowfish_encrypt`] for tests: the given IV, every pad byte `pad_byte`, and the flag byte
/// `flag_r - flag_r % 8 + p` (beefish draws `flag_r` from `[6, 247]`).
pub fn blowfish_encrypt_with(
    input: &[u8],
    password: &[u8],
    iv: [u8; 8],
    pad_byte: u8,
    flag_r: u8,
) -> Result<Vec<u8>, LegacyError> {
    let cipher = blowfish_cipher(password)?;
    let mut out = Vec::with_capacity(BF_BLOCK + (input.len() / BF_BLOCK + 1) * BF_BLOCK);
    encrypt_stream(input, &mut out, cipher, iv, &PadSource::Fixed { pad_byte, flag_r })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all_with(mut r: impl Read, step: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn object_names_pick_the_cipher() {
        assert_eq!(LegacyCipher::from_object_name("etc.20130605120000.tgz.enc"), Some(LegacyCipher::Blowfish));
        assert_eq!(LegacyCipher::from_object_name("x.tgz.e"), Some(LegacyCipher::Blowfish));
        assert_eq!(LegacyCipher::from_object_name("x.tgz.ae"), Some(LegacyCipher::Aes));
        assert_eq!(LegacyCipher::from_object_name("x.tgz"), None);
        assert_eq!(LegacyCipher::from_object_name("x.tgz.age"), None);
    }

    #[test]
    fn ciphertext_length_and_pad_flag() {
        for len in 0..=17usize {
            let input = vec![7u8; len];
            let ct = blowfish_encrypt_with(&input, b"key", [1; 8], 0xa5, 6).unwrap();
            assert_eq!(ct.len(), 8 + 8 * (len / 8 + 1), "len {len}");
        }
    }

    #[test]
    fn gzip_check_peeks_without_losing_bytes() {
        let plain: Vec<u8> = [0x1f, 0x8b].iter().copied().chain((0..100u8).map(|i| i.wrapping_mul(3))).collect();
        let mut ct = Vec::new();
        blowfish_encrypt(&plain[..], &mut ct, b"pw").unwrap();
        // A one-byte-at-a-time inner reader forces many small fills during the peek.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let r = BlowfishReader::new(Trickle(&ct), b"pw", true).unwrap();
        assert_eq!(read_all_with(r, 3).unwrap(), plain);
    }

    #[test]
    fn io_error_round_trip_keeps_the_legacy_error() {
        let e: io::Error = LegacyError::Truncated.into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(LegacyError::from_io(&e), Some(LegacyError::Truncated)));
        let inner = io::Error::new(io::ErrorKind::ConnectionReset, "boom");
        let e: io::Error = LegacyError::Io(inner).into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }
}

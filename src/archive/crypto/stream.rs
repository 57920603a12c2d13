//! Streaming encryption and decryption of the v1 container ([`EncryptWriter`], [`DecryptReader`]); the format, the
//! keys and the whole-buffer helpers are in the parent module.

use std::fmt;
use std::io::{self, Read, Write};

use super::*;

/// Streaming encryption: buffers a batch of chunks, encrypts the batch in parallel with rayon, writes it.
///
/// The header is written by [`EncryptWriter::new`]. The newest chunk is always held back until more data or
/// [`EncryptWriter::finish`] arrives, because only then is its last flag known; so `flush` flushes only the inner
/// writer, and dropping the writer without `finish` leaves an object that readers reject as corrupt.
pub struct EncryptWriter<W: Write> {
    inner: W,
    keys: FileKeys,
    /// Plaintext not yet sealed; at most `batch_capacity` bytes.
    pending: Vec<u8>,
    batch_capacity: usize,
    out: Vec<u8>,
    next_index: u64,
    broken: bool,
}

impl<W: Write> fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptWriter")
            .field("header", &self.keys.header)
            .field("pending", &self.pending.len())
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl<W: Write> EncryptWriter<W> {
    /// Starts an object: picks a random file id, derives its keys and writes the header to `inner`.
    /// `chunk_size` must be a multiple of 16 between 16 and 16 MiB (else `InvalidInput`).
    pub fn new(mut inner: W, master: &MasterKey, chunk_size: u32) -> io::Result<Self> {
        let keys = FileKeys::create(master, chunk_size).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        inner.write_all(&keys.header.to_bytes())?;
        let c = chunk_size as usize;
        let batch_capacity = batch_chunks(c) * c;
        Ok(EncryptWriter {
            inner,
            keys,
            pending: Vec::with_capacity(batch_capacity),
            batch_capacity,
            out: Vec::new(),
            next_index: 0,
            broken: false,
        })
    }

    /// The header written at the start of the object.
    pub fn header(&self) -> &Header {
        &self.keys.header
    }

    /// The inner writer (holding the header and the batches written so far).
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    fn check_broken(&self) -> io::Result<()> {
        if self.broken {
            Err(io::Error::other("the encrypted stream is incomplete after an earlier write error"))
        } else {
            Ok(())
        }
    }

    fn write_pending(&mut self, is_final: bool) -> io::Result<()> {
        self.out.clear();
        let sealed = self.keys.seal_batch(self.next_index, &self.pending, is_final, &mut self.out);
        if let Err(e) = sealed {
            self.broken = true;
            return Err(e);
        }
        let c = self.keys.chunk_size();
        self.next_index += self.pending.len().div_ceil(c).max(1) as u64;
        self.pending.clear();
        if let Err(e) = self.inner.write_all(&self.out) {
            self.broken = true;
            return Err(e);
        }
        Ok(())
    }

    /// Seals the held-back chunks, the final one flagged last, flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check_broken()?;
        // Non-final batches are only written when more data follows, so `pending` is empty here only for an
        // empty plaintext, which becomes exactly one empty final chunk.
        self.write_pending(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_broken()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.len() == self.batch_capacity {
            // More data follows, so every pending chunk is a non-final one.
            self.write_pending(false)?;
        }
        let n = buf.len().min(self.batch_capacity - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Flushes the inner writer only; held-back chunks are written by later writes or [`EncryptWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streaming decryption: reads the header, opens keys via the [`KeyCache`] (wrong password reported here, before
/// any data), then reads batches of chunks, verifies and decrypts them in parallel, and only then hands out their
/// plaintext.
///
/// Errors from `read` are `io::Error`s of kind `InvalidData` wrapping a [`CryptoError`] (see
/// [`CryptoError::from_io`]); errors of the inner reader pass through unchanged. After a crypto error every
/// further read fails the same way.
pub struct DecryptReader<R: Read> {
    inner: R,
    keys: FileKeys,
    batch: usize,
    /// Raw chunks of the current batch (decrypted in place) and the read-ahead after them.
    buf: Vec<u8>,
    filled: usize,
    /// End of the current batch's chunks in `buf`; the read-ahead starts here.
    consumed: usize,
    /// Plaintext ranges in `buf` still to hand out, in order; `seg` is the current one.
    segments: Vec<(usize, usize)>,
    seg: usize,
    next_index: u64,
    state: ReadState,
}

enum ReadState {
    Running,
    Done,
    Failed(CryptoError),
}

impl<R: Read> fmt::Debug for DecryptReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptReader")
            .field("header", &self.keys.header)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

/// Reads until `buf` is full or the reader ends; returns the number of bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl<R: Read> DecryptReader<R> {
    /// Reads and checks the header and opens the file's keys. Reads nothing past the header.
    pub fn new(mut inner: R, keys: &KeyCache) -> Result<Self, CryptoError> {
        let mut head = [0u8; HEADER_LEN];
        let n = read_full(&mut inner, &mut head)?;
        let header = Header::parse(&head[..n])?;
        let keys = keys.open(&header)?;
        Ok(Self::with_keys(inner, keys))
    }

    /// Continues after a header that the caller already read and opened; `inner` must be positioned just after it.
    pub fn with_keys(inner: R, keys: FileKeys) -> Self {
        let c = keys.chunk_size();
        let batch = batch_chunks(c);
        DecryptReader {
            inner,
            batch,
            buf: vec![0; batch * (c + CHUNK_OVERHEAD as usize) + 1],
            keys,
            filled: 0,
            consumed: 0,
            segments: Vec::with_capacity(batch),
            seg: 0,
            next_index: 0,
            state: ReadState::Running,
        }
    }

    /// The object's header.
    pub fn header(&self) -> &Header {
        &self.keys.header
    }

    /// Reads, verifies and decrypts the next batch of chunks.
    fn next_batch(&mut self) -> Result<(), CryptoError> {
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        self.segments.clear();
        self.seg = 0;
        let full = self.keys.chunk_size() + CHUNK_OVERHEAD as usize;
        // One byte beyond a whole batch tells whether the batch's chunks are followed by more.
        let target = self.batch * full + 1;
        let mut at_end = false;
        while self.filled < target {
            // `filled` advances with every successful read, so after an I/O error a retried read continues where
            // this one stopped.
            match self.inner.read(&mut self.buf[self.filled..target]) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CryptoError::Io(e)),
            }
        }
        let (count, region) = if at_end {
            let (count, _) = chunk_layout(self.keys.header.chunk_size, self.filled as u64)?;
            (count, self.filled)
        } else {
            (self.batch as u64, self.batch * full)
        };
        let final_index = at_end.then(|| self.next_index + count - 1);
        let lens = self.keys.open_batch(self.next_index, &mut self.buf[..region], final_index)?;
        self.segments.extend(lens.iter().enumerate().map(|(j, len)| (j * full + IV_LEN, j * full + IV_LEN + len)));
        self.consumed = region;
        self.next_index += count;
        if at_end {
            self.state = ReadState::Done;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            while let Some(&(start, end)) = self.segments.get(self.seg) {
                if start == end {
                    self.seg += 1;
                    continue;
                }
                let n = out.len().min(end - start);
                out[..n].copy_from_slice(&self.buf[start..start + n]);
                self.segments[self.seg].0 += n;
                return Ok(n);
            }
            match &self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed(e) => return Err(e.duplicate().into_io()),
                ReadState::Running => {}
            }
            match self.next_batch() {
                Ok(()) => {}
                Err(CryptoError::Io(e)) => return Err(e),
                Err(e) => {
                    let err = e.duplicate().into_io();
                    self.state = ReadState::Failed(e);
                    return Err(err);
                }
            }
        }
    }
}

//! The on-disk block cache: decoded (decrypted, inflated) archive members and whole decoded legacy objects, as
//! plaintext files in one directory of mode 0700, with a hard size cap enforced at insert time.
//!
//! The bookkeeping is an LRU (the `lru` crate) of key -> bytes plus a running total. [`BlockCache::insert`] evicts
//! least recently used files until the new one fits, so the directory never holds more than the cap (an object larger
//! than the cap is not cached at all). At start the LRU is rebuilt from the directory (oldest modification first), so
//! the cache survives a remount. Each block file carries a CRC32 of its content, checked on every read: a damaged
//! file is dropped and reads as a miss, never as wrong bytes. Concurrent misses of one key are fetched once
//! ([`BlockCache::lock_key`]).
//!
//! It knows nothing about archives or stores: keys are opaque file names.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::lock;
use lru::LruCache;

const MAGIC: &[u8; 4] = b"BKC1";
const HEADER: usize = 16;

/// The block cache. See the module docs.
pub struct BlockCache {
    dir: PathBuf,
    cap: u64,
    state: Mutex<State>,
    inflight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

struct State {
    lru: LruCache<String, u64>,
    /// Bytes of the files in the LRU plus `pending`.
    total: u64,
    /// Bytes reserved for files being written.
    pending: u64,
}

/// A cached file opened for reads at any offset (whole decoded objects).
pub struct CachedFile {
    file: File,
    len: u64,
}

impl CachedFile {
    /// Length of the cached content.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `[offset, offset + len)`, clamped to the end.
    pub fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.len);
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        self.file.read_exact_at(&mut buf, HEADER as u64 + offset)?;
        Ok(buf)
    }
}

impl BlockCache {
    /// Opens (creating, mode 0700) the cache directory and rebuilds the LRU from it, trimming it to `cap` bytes.
    pub fn open(dir: &Path, cap: u64) -> io::Result<BlockCache> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut found = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata()?;
            if !meta.is_file() {
                continue;
            }
            if is_tmp_name(&name) {
                let _ = fs::remove_file(e.path());
                continue;
            }
            // Only block files are the cache's to count and evict: the mount's log (`mount.log`) and anything
            // else a user keeps in the directory are left alone.
            if !starts_with_magic(&e.path()) {
                continue;
            }
            found.push((meta.modified().ok(), name, meta.len()));
        }
        found.sort();
        let cache = BlockCache {
            dir: dir.to_path_buf(),
            cap,
            state: Mutex::new(State { lru: LruCache::unbounded(), total: 0, pending: 0 }),
            inflight: Mutex::new(HashMap::new()),
        };
        {
            let mut st = lock(&cache.state);
            for (_, name, len) in found {
                st.total += len;
                st.lru.put(name, len);
            }
            cache.evict_to(&mut st, 0);
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes currently held (file sizes on disk, headers included).
    pub fn used(&self) -> u64 {
        lock(&self.state).total
    }

    /// Whether `key` is cached (without touching its recency).
    pub fn contains(&self, key: &str) -> bool {
        lock(&self.state).lru.contains(key)
    }

    /// Serialises the fetch of one key: hold the guard while checking, fetching and inserting.
    pub fn lock_key(&self, key: &str) -> Arc<Mutex<()>> {
        let mut map = lock(&self.inflight);
        if map.len() > 4096 {
            map.retain(|_, m| Arc::strong_count(m) > 1);
        }
        map.entry(key.to_string()).or_default().clone()
    }

    fn tmp_path(&self, key: &str) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        self.dir.join(format!("{key}.{}-{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn evict_to(&self, st: &mut State, incoming: u64) {
        while st.total + incoming > self.cap {
            let Some((key, len)) = st.lru.pop_lru() else { break };
            st.total -= len;
            let _ = fs::remove_file(self.path(&key));
        }
    }

    fn forget(&self, key: &str) {
        let mut st = lock(&self.state);
        if let Some(len) = st.lru.pop(key) {
            st.total -= len;
        }
        let _ = fs::remove_file(self.path(key));
    }

    /// A cached block, checked against its CRC; `None` on a miss or a damaged file (which is dropped).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.state).lru.get(key)?;
        match read_checked(&self.path(key)) {
            Ok(Some(data)) => Some(data),
            Ok(None) => {
                tracing::warn!(key, "cache block failed its checksum; dropped, fetching it again");
                self.forget(key);
                None
            }
            Err(_) => {
                self.forget(key);
                None
            }
        }
    }

    /// Opens a cached whole object for ranged reads.
    pub fn open_file(&self, key: &str) -> Option<CachedFile> {
        lock(&self.state).lru.get(key)?;
        let file = File::open(self.path(key)).ok()?;
        let mut head = [0u8; HEADER];
        file.read_exact_at(&mut head, 0).ok()?;
        let len = u64::from_le_bytes(head[8..16].try_into().ok()?);
        let on_disk = file.metadata().ok()?.len();
        if &head[..4] != MAGIC || on_disk != HEADER as u64 + len {
            self.forget(key);
            return None;
        }
        Some(CachedFile { file, len })
    }

    /// Counts `n` more bytes against the cap before they are written, evicting least recently used files until
    /// they fit (so the directory never holds more than the cap, temporary files included). False when even an
    /// empty cache could not hold them.
    fn reserve(&self, n: u64) -> bool {
        let mut st = lock(&self.state);
        if st.pending + n > self.cap {
            return false;
        }
        if st.total + n > self.cap {
            self.evict_to(&mut st, n);
        }
        if st.total + n > self.cap {
            return false;
        }
        st.total += n;
        st.pending += n;
        true
    }

    fn unreserve(&self, n: u64) {
        let mut st = lock(&self.state);
        st.total -= n;
        st.pending -= n;
    }

    /// Stores a block. Returns false (and stores nothing) when it is larger than the whole cap.
    pub fn insert(&self, key: &str, data: &[u8]) -> io::Result<bool> {
        let size = (HEADER + data.len()) as u64;
        if size > self.cap || !self.reserve(size) {
            return Ok(false);
        }
        let tmp = self.tmp_path(key);
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(&header(crc32fast::hash(data), data.len() as u64))?;
            f.write_all(data)
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            self.unreserve(size);
            return Err(e);
        }
        self.commit(key, &tmp, size)
    }

    /// Stores a whole decoded object written by `fill` into a temporary file (streamed: never held in memory; the
    /// space is reserved as it grows). The content is not checksummed (it may be gigabytes); it is written under a
    /// temporary name and renamed. Returns false when it turned out larger than the cap.
    pub fn insert_stream(&self, key: &str, fill: impl FnOnce(&mut dyn Write) -> io::Result<u64>) -> io::Result<bool> {
        let tmp = self.tmp_path(key);
        let file = File::create(&tmp)?;
        let mut w = Reserving { cache: self, file, reserved: 0, full: false };
        let result = w.file.write_all(&[0u8; HEADER]).and_then(|_| fill(&mut w));
        let Reserving { file, reserved, full, .. } = w;
        let len = match (result, full) {
            (Ok(n), false) => n,
            (result, full) => {
                let _ = fs::remove_file(&tmp);
                self.unreserve(reserved);
                return if full { Ok(false) } else { result.map(|_| false) };
            }
        };
        let size = HEADER as u64 + len;
        let fixed = file.write_all_at(&header(0, len), 0);
        drop(file);
        if let Err(e) = fixed {
            let _ = fs::remove_file(&tmp);
            self.unreserve(reserved);
            return Err(e);
        }
        // Settle the reservation to the exact size.
        if size > reserved && !self.reserve(size - reserved) {
            let _ = fs::remove_file(&tmp);
            self.unreserve(reserved);
            return Ok(false);
        }
        if reserved > size {
            self.unreserve(reserved - size);
        }
        self.commit(key, &tmp, size)
    }

    /// Moves a written temporary file (whose size is already counted) into place.
    fn commit(&self, key: &str, tmp: &Path, size: u64) -> io::Result<bool> {
        let mut st = lock(&self.state);
        st.pending -= size;
        if let Err(e) = fs::rename(tmp, self.path(key)) {
            let _ = fs::remove_file(tmp);
            st.total -= size;
            return Err(e);
        }
        if let Some(old) = st.lru.put(key.to_string(), size) {
            st.total -= old;
        }
        Ok(true)
    }
}

/// A temporary cache file that reserves its space (in 1 MiB steps) before writing.
struct Reserving<'a> {
    cache: &'a BlockCache,
    file: File,
    reserved: u64,
    full: bool,
}

impl Write for Reserving<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.metadata()?.len();
        let need = written + buf.len() as u64;
        if need > self.reserved {
            let step = (need - self.reserved).max((self.cache.cap / 64).min(1 << 20));
            if !self.cache.reserve(step) {
                self.full = true;
                return Err(io::Error::other("larger than the cache"));
            }
            self.reserved += step;
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Whether a file name is one of [`BlockCache::tmp_path`]'s, `<key>.<pid>-<seq>.tmp`, left by an interrupted write.
fn is_tmp_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(".tmp") else { return false };
    let Some((_, suffix)) = rest.rsplit_once('.') else { return false };
    let Some((pid, seq)) = suffix.split_once('-') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(pid) && digits(seq)
}

/// Whether a file starts with the block files' magic (what tells a block file from anything else in the directory).
fn starts_with_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC
}

fn header(crc: u32, len: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h[8..16].copy_from_slice(&len.to_le_bytes());
    h
}

/// The content of a block file, or `None` when it does not match its header.
fn read_checked(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut raw = fs::read(path)?;
    if raw.len() < HEADER || &raw[..4] != MAGIC {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
    if len != (raw.len() - HEADER) as u64 || crc32fast::hash(&raw[HEADER..]) != crc {
        return Ok(None);
    }
    raw.drain(..HEADER);
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_bytes(d: &Path) -> u64 {
        fs::read_dir(d).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    }

    #[test]
    fn cap_is_hard_and_lru_evicts_oldest() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        let c = BlockCache::open(&d, 3 * (HEADER as u64 + 100)).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        for i in 0..3 {
            assert!(c.insert(&format!("k{i}"), &[i as u8; 100]).unwrap());
        }
        assert!(c.get("k0").is_some(), "k0 becomes the most recent");
        c.insert("k3", &[3; 100]).unwrap();
        assert!(c.get("k1").is_none(), "k1 was the least recently used");
        assert!(c.get("k0").is_some() && c.get("k2").is_some() && c.get("k3").is_some());
        assert!(dir_bytes(&d) <= c.cap() && c.used() == dir_bytes(&d));
        assert!(!c.insert("huge", &vec![0; 1000]).unwrap(), "larger than the cap: not cached");
        for i in 0..50 {
            c.insert(&format!("x{i}"), &vec![1; 30 + i]).unwrap();
            assert!(dir_bytes(&d) <= c.cap(), "never over the cap");
        }
    }

    /// Regression (issue 11, item 8): eviction deleted the mount's own log, `<cache-dir>/mount.log`, because the
    /// LRU was rebuilt from every file in the directory.
    #[test]
    fn eviction_keeps_the_mount_log_and_other_files_that_are_not_blocks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        fs::create_dir(&d).unwrap();
        let log = "mount started\n".repeat(100);
        fs::write(d.join("mount.log"), &log).unwrap();
        fs::write(d.join("notes.tmp"), b"a user's file").unwrap();
        let cap = 3 * (HEADER as u64 + 100);
        let c = BlockCache::open(&d, cap).unwrap();
        assert_eq!(c.used(), 0, "only block files count against the cap");
        for i in 0..10 {
            assert!(c.insert(&format!("k{i}"), &[i as u8; 100]).unwrap());
        }
        drop(c);
        let c = BlockCache::open(&d, HEADER as u64 + 100).unwrap();
        c.insert("last", &[9; 100]).unwrap();
        assert_eq!(fs::read_to_string(d.join("mount.log")).unwrap(), log, "the log survives eviction and reopening");
        assert!(d.join("notes.tmp").exists());
        assert!(c.used() <= c.cap());
    }

    #[test]
    fn survives_reopen_and_drops_damaged_blocks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        {
            let c = BlockCache::open(&d, 1 << 20).unwrap();
            c.insert("a", b"hello").unwrap();
            c.insert("b", b"world").unwrap();
            c.insert_stream("w", |f| f.write_all(b"whole object").map(|_| 12)).unwrap();
            assert!(!c.insert_stream("big", |f| f.write_all(&vec![0; 2 << 20]).map(|_| 2 << 20)).unwrap());
        }
        let c = BlockCache::open(&d, 1 << 20).unwrap();
        assert_eq!(c.get("a").unwrap(), b"hello");
        assert_eq!(c.open_file("w").unwrap().read_at(6, 100).unwrap(), b"object");
        let mut raw = fs::read(d.join("b")).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        fs::write(d.join("b"), raw).unwrap();
        assert!(c.get("b").is_none(), "a flipped byte is a miss, never wrong bytes");
        assert!(!d.join("b").exists());
        // Reopening with a smaller cap trims.
        drop(c);
        let c = BlockCache::open(&d, HEADER as u64 + 12).unwrap();
        assert!(c.used() <= HEADER as u64 + 12);
    }
}

//! Reading backup content: archive members fetched with ranged reads and decoded through the block cache, and
//! legacy or raw backups decoded whole into the cache on first read.
//!
//! Not here: which members to fetch ahead (`prefetch.rs`), whether a cold object can be read (`cold.rs`).

use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::archive::index::EntryKind;
use crate::archive::read::Decoder;
use crate::archive::{self, ArchiveError};
use crate::model::BackupRecord;
use crate::ops::range::ObjectRange;
use crate::storage::metered::Metered;
use crate::storage::Backend;

use super::cache;
use super::error::{archive_error, cache_io, classify_read, is_full, storage_error};
use super::handles::Handle;
use super::tree::{Content, Loaded, NodeKind};
use super::{lock, FsError, Inner, Result};

pub(super) fn key_hash(stored: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(stored.as_bytes());
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn block_key(stored: &str, member: usize) -> String {
    format!("b-{}-{member}", key_hash(stored))
}

pub(super) fn whole_key(stored: &str) -> String {
    format!("w-{}", key_hash(stored))
}

pub(super) fn index_key(stored: &str) -> String {
    format!("i-{}", key_hash(stored))
}

impl Inner {
    pub(super) fn backend(&self, record: &BackupRecord) -> Result<Arc<dyn Backend>> {
        let which = (record.backend, record.store.clone());
        if let Some(b) = lock(&self.backends).get(&which) {
            return Ok(b.clone());
        }
        let b = (self.open_backend)(record)
            .map_err(|e| FsError::Open { stored: record.stored_filename.to_string(), source: Box::new(e) })?;
        let b: Arc<dyn Backend> = Arc::new(Metered::new(b, self.meter.clone()));
        lock(&self.backends).insert(which, b.clone());
        Ok(b)
    }

    /// A decoded whole object (legacy archive or raw file) from the cache, downloading it on a miss.
    pub(super) fn whole(&self, record: &BackupRecord) -> Result<cache::CachedFile> {
        let stored = record.stored_filename.as_str();
        let key = whole_key(stored);
        if let Some(f) = self.cache.open_file(&key) {
            return Ok(f);
        }
        let guard = self.cache.lock_key(&key);
        let _g = lock(&guard);
        if let Some(f) = self.cache.open_file(&key) {
            return Ok(f);
        }
        let backend = self.backend(record)?;
        self.ensure_retrievable(record, backend.as_ref())?;
        let stream = backend.get(stored).map_err(|e| storage_error(stored, e))?;
        let h = crate::ops::hints(record);
        let tar = record.stored_filename.is_archive();
        let (plain, _) = archive::decode(stream, h, self.secret.as_deref()).map_err(|e| archive_error(stored, e))?;
        let mut reader =
            if tar { archive::decompress_payload(plain).map_err(|e| archive_error(stored, e))? } else { plain };
        tracing::info!(stored, "reading a backup without a seekable index whole into the cache");
        let mut failure: Option<FsError> = None;
        let stored_ok = self
            .cache
            .insert_stream(&key, |f| {
                io::copy(&mut reader, f).map_err(|e| {
                    if e.to_string() == "larger than the cache" || is_full(&e) {
                        return e;
                    }
                    failure = Some(archive_error(stored, ArchiveError::from_io(e)));
                    io::Error::other("decoding failed")
                })
            })
            .map_err(|e| failure.take().unwrap_or_else(|| cache_io(e)))?;
        if !stored_ok {
            return Err(FsError::TooLarge { stored: stored.into(), detail: "the decoded backup".into() });
        }
        self.cache.open_file(&key).ok_or_else(|| FsError::Cache(io::Error::other("cache entry vanished")))
    }

    /// Decoded members `range` of a backup, fetched with one ranged read.
    pub(super) fn fetch_members(
        &self,
        record: &BackupRecord,
        loaded: &Loaded,
        range: Range<usize>,
    ) -> Result<Vec<Vec<u8>>> {
        let stored = record.stored_filename.as_str();
        let backend = self.backend(record)?;
        self.ensure_retrievable(record, backend.as_ref())?;
        let len = if loaded.index.stored_len != 0 { loaded.index.stored_len } else { record.size };
        let src = ObjectRange::new(backend.as_ref(), stored, len);
        let keys = self.secret.as_ref().map(|s| s.keys());
        let result = Decoder::new(&loaded.index, &src, keys).and_then(|d| d.members(range));
        result.map_err(|e| {
            let err = classify_read(stored, e, src.take_error());
            if matches!(err, FsError::Integrity { .. }) {
                tracing::error!("{err}");
            }
            err
        })
    }

    /// One decoded member, from the handle, the cache, or the store (fetching the uncached members up to
    /// `want_end` with it in one request).
    pub(super) fn member(
        &self,
        record: &BackupRecord,
        loaded: &Loaded,
        m: usize,
        want_end: usize,
        h: &mut Handle,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some((lm, data)) = &h.last {
            if *lm == m {
                return Ok(data.clone());
            }
        }
        let stored = record.stored_filename.as_str();
        let key = block_key(stored, m);
        let data = match self.cache.get(&key) {
            Some(d) => d,
            None => {
                let guard = self.cache.lock_key(&key);
                let _g = lock(&guard);
                match self.cache.get(&key) {
                    Some(d) => d,
                    None => {
                        let mut end = m + 1;
                        while end < want_end && !self.cache.contains(&block_key(stored, end)) {
                            end += 1;
                        }
                        let mut parts = self.fetch_members(record, loaded, m..end)?.into_iter();
                        let first = parts.next().unwrap_or_default();
                        self.cache_put(&key, &first);
                        for (i, p) in parts.enumerate() {
                            self.cache_put(&block_key(stored, m + 1 + i), &p);
                        }
                        first
                    }
                }
            }
        };
        let data = Arc::new(data);
        h.last = Some((m, data.clone()));
        Ok(data)
    }

    /// Keeps a decoded block for later reads. Best effort: the data in hand is served whatever happens, so a full
    /// or failing cache disk costs refetches, never a failed read (warned about once).
    pub(super) fn cache_put(&self, key: &str, data: &[u8]) {
        if let Err(e) = self.cache.insert(key, data) {
            if !self.cache_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!("cannot keep decoded blocks in the cache ({e}); reads go on, fetching again as needed");
            }
        }
    }

    pub(super) fn read(self: &Arc<Inner>, h: &mut Handle, offset: u64, size: u64) -> Result<Vec<u8>> {
        let (kind, id, loaded) = {
            let t = self.tree();
            let node = t.node(h.ino)?;
            match node.kind {
                NodeKind::Status(id) => {
                    let text = self.status_of(t.slot(id)?).text().into_bytes();
                    let s = (offset as usize).min(text.len());
                    let e = (offset.saturating_add(size) as usize).min(text.len());
                    return Ok(text[s..e].to_vec());
                }
                NodeKind::Latest => return Err(FsError::NotFound),
                NodeKind::Dir
                | NodeKind::Backup(_)
                | NodeKind::ImpliedDir(_)
                | NodeKind::Incoming
                | NodeKind::VersionDir => return Err(FsError::IsADirectory),
                NodeKind::Version => {
                    drop(t);
                    return self.read_version(h, offset, size);
                }
                NodeKind::Raw(id) => (node.kind, id, None),
                NodeKind::Entry(id, _) => (node.kind, id, Some(t.loaded(id)?.clone())),
            }
        };
        let record = self.record(id)?;
        if let NodeKind::Raw(_) = kind {
            let whole = self.handle_whole(h, &record)?;
            return whole.read_at(offset, size).map_err(FsError::Cache);
        }
        let NodeKind::Entry(_, e) = kind else { return Err(FsError::NotFound) };
        let loaded = loaded.ok_or(FsError::NotFound)?;
        let target = loaded.link_target(e).ok_or(FsError::NotFound)?;
        // An incremental backup's file is read from the archive of its chain that holds its bytes.
        let held = loaded.chain.as_ref().and_then(|c| {
            let (at, entry) = c.holders.get(target)?.as_ref()?;
            Some((c.records[*at].clone(), c.archives.get(at)?.clone(), entry.clone()))
        });
        let (record, loaded, entry) = match held {
            Some(h) => h,
            None => {
                let entry = loaded.index.entries[target].clone();
                (record, loaded, entry)
            }
        };
        self.read_entry(h, record, loaded, &entry, offset, size)
    }

    /// Reads `size` bytes at `offset` of file `entry` of the archive `record` whose index is `loaded`.
    pub(super) fn read_entry(
        self: &Arc<Inner>,
        h: &mut Handle,
        record: BackupRecord,
        loaded: Arc<Loaded>,
        entry: &crate::archive::index::Entry,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        if entry.kind != EntryKind::File {
            return Err(FsError::IsADirectory);
        }
        if entry.damaged {
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            return Err(FsError::IncompleteAtBackup { stored: record.stored_filename.to_string(), path });
        }
        let end = offset.saturating_add(size).min(entry.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if loaded.content != Content::Members {
            let whole = self.handle_whole(h, &record)?;
            let data = whole.read_at(entry.data_offset + offset, end - offset).map_err(FsError::Cache)?;
            if data.len() as u64 != end - offset {
                return Err(FsError::Integrity {
                    stored: record.stored_filename.to_string(),
                    detail: "short archive".into(),
                });
            }
            return Ok(data);
        }
        let (tar_start, tar_end) = (entry.data_offset + offset, entry.data_offset + end);
        let range = loaded.index.members_covering(tar_start, tar_end);
        let mut out = Vec::with_capacity((end - offset) as usize);
        for m in range.clone() {
            let member = loaded.index.members[m];
            let data = self.member(&record, &loaded, m, range.end, h)?;
            if data.len() as u64 != member.tar_len {
                return Err(FsError::Integrity {
                    stored: record.stored_filename.to_string(),
                    detail: "a member does not match its index".into(),
                });
            }
            let s = tar_start.max(member.tar_offset);
            let e = tar_end.min(member.tar_offset + member.tar_len);
            if s < e {
                out.extend_from_slice(&data[(s - member.tar_offset) as usize..(e - member.tar_offset) as usize]);
            }
        }
        let sequential = offset == h.next_offset || offset == 0;
        h.next_offset = end;
        if sequential {
            self.prefetch(&record, &loaded, range.end, tar_end, entry.data_offset + entry.size, h);
        }
        Ok(out)
    }

    pub(super) fn handle_whole(&self, h: &mut Handle, record: &BackupRecord) -> Result<Arc<cache::CachedFile>> {
        if let Some(w) = &h.whole {
            return Ok(w.clone());
        }
        let w = Arc::new(self.whole(record)?);
        h.whole = Some(w.clone());
        Ok(w)
    }

    /// The plaintext size of a raw backup: recorded at backup time, or exact once cached; for rows written before
    /// bakthat recorded it, the stored size (an upper bound for encrypted ones).
    pub(super) fn raw_size(&self, record: &BackupRecord) -> u64 {
        if let Some(n) = record.plain_size() {
            return n;
        }
        self.cache.open_file(&whole_key(record.stored_filename.as_str())).map(|f| f.len()).unwrap_or(record.size)
    }
}

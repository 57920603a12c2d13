//! Loading a backup's entry index: from the inventory's copy (decrypted with the mount's password), or for a
//! legacy archive without one, from the cache or by reading the archive whole once. And the check, at mount time,
//! that the password opens the indexes.
//!
//! Not here: laying the index out as directories (`tree.rs`), reading file content (`read.rs`).

use std::io::{self, Read};
use std::sync::Arc;

use crate::archive::index::Index;
use crate::archive::{self};
use crate::model::BackupRecord;

use super::cache;
use super::error::archive_error;
use super::read::index_key;
use super::tree::{Content, Loaded};
use super::{FsError, Inner, Result};

impl Inner {
    /// Loads a backup's index (from the inventory; for a legacy archive without one, from the cache or by
    /// reading it whole once, which is the only listing that reaches a store).
    pub(super) fn load(&self, slot: usize) -> Result<Arc<Loaded>> {
        if let Some(l) = &self.tree().slots[slot].loaded {
            return Ok(l.clone());
        }
        let record = self.record(slot);
        let stored = record.stored_filename.as_str();
        let loaded = if !record.stored_filename.is_tgz() {
            Loaded::new(Index::default(), Content::Raw)
        } else if let Some(bytes) = self.ctx.inventory.get_index(&record.stored_filename)? {
            let index =
                archive::read_index_sidecar(&bytes, self.secret.as_deref()).map_err(|e| archive_error(stored, e))?;
            let content = if index.seekable { Content::Members } else { Content::Whole };
            Loaded::new(index, content)
        } else if let Some(bytes) = self.cache.get(&index_key(stored)) {
            let index = crate::archive::index::Index::from_bytes(&bytes)
                .map_err(|e| FsError::Integrity { stored: stored.into(), detail: e.to_string() })?;
            Loaded::new(index, Content::Whole)
        } else {
            let whole = self.whole(&record)?;
            let mut reader = WholeReader { file: &whole, pos: 0 };
            let index = Index::from_tar_stream(&mut reader)
                .map_err(|e| FsError::Integrity { stored: stored.into(), detail: e.to_string() })?;
            self.cache_put(&index_key(stored), &index.to_bytes());
            Loaded::new(index, Content::Whole)
        };
        let loaded = Arc::new(loaded);
        let mut t = self.tree_mut();
        Ok(t.slots[slot].loaded.get_or_insert(loaded).clone())
    }

    /// Decrypts one encrypted index, so that a wrong password fails the mount.
    pub(super) fn check_password(&self) -> Result<()> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let records: Vec<BackupRecord> = self.tree().slots.iter().map(|s| s.record.clone()).collect();
        for r in records.iter().filter(|r| r.is_enc()) {
            if let Some(bytes) = self.ctx.inventory.get_index(&r.stored_filename)? {
                return match archive::read_index_sidecar(&bytes, Some(secret)) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(archive_error(r.stored_filename.as_str(), e)),
                };
            }
        }
        Ok(())
    }
}

/// Reads a cached whole object sequentially.
struct WholeReader<'a> {
    file: &'a cache::CachedFile,
    pos: u64,
}

impl Read for WholeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.file.read_at(self.pos, buf.len() as u64)?;
        buf[..data.len()].copy_from_slice(&data);
        self.pos += data.len() as u64;
        Ok(data.len())
    }
}

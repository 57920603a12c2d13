//! Loading a backup's entry index: from the inventory's copy (decrypted with the mount's password), or for a
//! legacy archive without one, from the cache or by reading the archive whole once. A copy that cannot be opened
//! makes its backup [`Unreadable`] (kept on its slot and shown in its status) and nothing else: the other backups
//! stay readable. And the check, at mount time, that the password opens the indexes.
//!
//! Not here: laying the index out as directories (`tree.rs`), reading file content (`read.rs`).

use std::io::{self, Read};
use std::sync::Arc;

use crate::archive::crypto::{self, KdfParams};
use crate::archive::index::Index;
use crate::archive::{self, ArchiveError};
use crate::model::BackupRecord;

use super::cache;
use super::read::index_key;
use super::tree::{Content, Loaded};
use super::{lock, FsError, Inner, Result};

/// The key settings of an encrypted copy: its Argon2 salt and cost parameters.
pub(super) type KeySettings = ([u8; 16], KdfParams);

/// Why a backup's content cannot be listed in this mount. Found once, kept on the backup's slot, shown in its
/// status file and xattrs; its files answer with [`Unreadable::error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unreadable {
    /// Encrypted, and the mount has no password.
    PasswordNeeded,
    /// The key check of the index copy fails, although this password opens other copies with the same salt and
    /// cost settings: the copy's header is damaged, not the password wrong.
    HeaderDamaged,
    /// The key check fails, and no other copy with the same key settings opens to tell a wrong password (say, one
    /// from another host) from a damaged header.
    WrongPasswordOrDamaged,
    /// The copy is damaged past its header (a chunk fails authentication, or it is not an index).
    Damaged(String),
}

impl Unreadable {
    /// The one-word state of `user.bakthat.state`.
    pub fn state_word(&self) -> &'static str {
        match self {
            Unreadable::PasswordNeeded => "password-needed",
            Unreadable::HeaderDamaged | Unreadable::Damaged(_) => "damaged",
            Unreadable::WrongPasswordOrDamaged => "unreadable",
        }
    }

    /// The sentence of `user.bakthat.error` and of the status file's `error:` line.
    pub fn describe(&self) -> String {
        match self {
            Unreadable::PasswordNeeded => "password needed: this backup is encrypted and the mount has no password \
                                           (mount with BAKTHAT_PASSWORD or --password-file)"
                .into(),
            Unreadable::HeaderDamaged => "header damaged: the inventory's copy of its index does not open, though \
                                          this password opens the other backups (`bakthat verify` checks the archive \
                                          itself)"
                .into(),
            Unreadable::WrongPasswordOrDamaged => "wrong password, or the archive header is damaged: the key check \
                                                   of the inventory's copy of its index fails, and no other backup \
                                                   with the same key settings opens to tell which"
                .into(),
            Unreadable::Damaged(detail) => format!(
                "damaged: the inventory's copy of its index does not open ({detail}; `bakthat verify` checks the \
                 archive itself)"
            ),
        }
    }

    /// What a lookup or listing inside the backup fails with.
    pub fn error(&self, stored: &str) -> FsError {
        let stored = stored.to_string();
        match self {
            Unreadable::PasswordNeeded => FsError::PasswordNeeded { stored },
            Unreadable::HeaderDamaged => FsError::Integrity {
                stored,
                detail: "the header of the inventory's copy of its index is damaged".into(),
            },
            Unreadable::WrongPasswordOrDamaged => FsError::WrongPasswordOrDamaged { stored },
            Unreadable::Damaged(detail) => FsError::Integrity { stored, detail: detail.clone() },
        }
    }
}

/// The key settings of an encrypted copy whose header parses.
fn key_settings(bytes: &[u8]) -> Option<KeySettings> {
    let header = crypto::Header::parse(bytes.get(..crypto::HEADER_LEN)?).ok()?;
    Some((header.salt, header.params))
}

impl Inner {
    /// Loads a backup's index (from the inventory; for a legacy archive without one, from the cache or by
    /// reading it whole once, which is the only listing that reaches a store).
    pub(super) fn load(&self, id: i64) -> Result<Arc<Loaded>> {
        self.open_slot(id)?;
        let record = {
            let t = self.tree();
            let s = t.slot(id)?;
            if let Some(l) = &s.loaded {
                return Ok(l.clone());
            }
            if let Some(why) = &s.unreadable {
                return Err(why.error(s.record.stored_filename.as_str()));
            }
            s.record.clone()
        };
        let stored = record.stored_filename.as_str();
        let loaded = if !record.stored_filename.is_archive() {
            Loaded::new(Index::default(), Content::Raw)
        } else if record.parent().is_some() {
            // An incremental: its complete tree from the chain's snapshots and indexes (inventory copies).
            match crate::ops::incremental::chain_tree(self.ctx(), &record, self.secret.as_deref()) {
                Ok(tree) => Loaded::chain(tree),
                Err(crate::ops::OpsError::Archive(e)) => {
                    let bytes = self.ctx().inventory.get_index(&record.stored_filename)?.unwrap_or_default();
                    return Err(self.mark_unreadable(id, stored, &bytes, &e));
                }
                Err(e) => return Err(FsError::Open { stored: stored.into(), source: Box::new(e) }),
            }
        } else if let Some(bytes) = self.ctx().inventory.get_index(&record.stored_filename)? {
            let index = match self.open_copy(&bytes) {
                Ok(index) => index,
                Err(e) => return Err(self.mark_unreadable(id, stored, &bytes, &e)),
            };
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
        Ok(self.tree_mut().hold_loaded(id, record, loaded))
    }

    /// Notes why a backup's index cannot be opened (its directory then holds only its status file); the error.
    fn mark_unreadable(&self, id: i64, stored: &str, bytes: &[u8], e: &ArchiveError) -> FsError {
        let why = self.unreadable(bytes, e);
        let err = why.error(stored);
        if let Some(s) = self.tree_mut().slots.get_mut(&id) {
            s.unreadable = Some(why);
        }
        err
    }

    /// Opens the inventory's copy of an index, remembering the key settings of an encrypted one whose key check
    /// passes (even when a chunk after the header turns out damaged).
    pub(super) fn open_copy(&self, bytes: &[u8]) -> Result<Index, ArchiveError> {
        let result = archive::read_index_sidecar(bytes, self.secret.as_deref());
        let key_check_passed = match &result {
            Ok(_) => true,
            Err(e) => !e.is_wrong_password() && !matches!(e, ArchiveError::PasswordNeeded),
        };
        if let (true, Some(secret)) = (key_check_passed && crypto::is_v1(bytes), &self.secret) {
            let header = bytes.get(..crypto::HEADER_LEN).and_then(|h| crypto::Header::parse(h).ok());
            if let Some(h) = header.filter(|h| secret.keys().open(h).is_ok()) {
                lock(&self.opened_keys).insert((h.salt, h.params));
            }
        }
        result
    }

    /// Why a copy that failed to open cannot be read: a failed key check blames the header when the password
    /// opened another copy with the same key settings, and says it cannot tell otherwise.
    fn unreadable(&self, bytes: &[u8], e: &ArchiveError) -> Unreadable {
        if matches!(e, ArchiveError::PasswordNeeded) {
            Unreadable::PasswordNeeded
        } else if !e.is_wrong_password() {
            Unreadable::Damaged(format!("{e:#}"))
        } else if key_settings(bytes).is_some_and(|k| lock(&self.opened_keys).contains(&k)) {
            Unreadable::HeaderDamaged
        } else {
            Unreadable::WrongPasswordOrDamaged
        }
    }

    /// Opens encrypted index copies until one opens, so that a wrong password fails the mount. A copy that does
    /// not open while another does makes only its own backup unreadable. When none opens, two failed key checks
    /// mean a wrong password; a single one cannot tell a wrong password from a damaged header, and says so.
    pub(super) fn check_password(&self) -> Result<()> {
        if self.secret.is_none() {
            return Ok(());
        }
        let encrypted: Vec<i64> = self.tree().cat.rows().iter().filter(|r| r.enc).map(|r| r.id).collect();
        let mut failed: Vec<(BackupRecord, Vec<u8>, ArchiveError)> = Vec::new();
        let key_checks_failed = |failed: &[(BackupRecord, Vec<u8>, ArchiveError)]| -> Vec<String> {
            let wrong = failed.iter().filter(|(_, _, e)| e.is_wrong_password());
            wrong.map(|(r, _, _)| r.stored_filename.to_string()).collect()
        };
        for id in encrypted {
            let Some(r) = self.ctx().inventory.get_by_id(id)? else { continue };
            if !r.is_enc() {
                continue;
            }
            let Some(bytes) = self.ctx().inventory.get_index(&r.stored_filename)? else { continue };
            match self.open_copy(&bytes) {
                Ok(_) => break,
                Err(e) => failed.push((r, bytes, e)),
            }
            if key_checks_failed(&failed).len() >= 2 && lock(&self.opened_keys).is_empty() {
                break;
            }
        }
        if lock(&self.opened_keys).is_empty() {
            match key_checks_failed(&failed).as_slice() {
                [] => {}
                [only] => return Err(FsError::WrongPasswordOrDamaged { stored: only.clone() }),
                [first, ..] => return Err(FsError::WrongPassword { stored: first.clone() }),
            }
        }
        let mut t = self.tree_mut();
        for (record, bytes, e) in failed {
            let why = self.unreadable(&bytes, &e);
            tracing::warn!("{}: {}", record.stored_filename, why.describe());
            if let Some(id) = record.id {
                t.hold(id, record);
                if let Some(s) = t.slots.get_mut(&id) {
                    s.unreadable = Some(why);
                }
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

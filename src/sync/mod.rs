//! Inventory sync: several hosts, one inventory.
//!
//! **Through the store** (no server): every change to a backup (a new backup, a delete, a rotation) appends one small
//! immutable *journal entry* beside the archives, under `bakthat-journal.<epoch-ms>.<random>` (for Glacier, in the
//! profile's S3 bucket). A backup's entry carries its whole inventory row (name, date, tags, size, metadata with the
//! host, `last_updated`) and its entry index, and is encrypted (v1 container, the backup's master key) when the
//! backup is. A delete leaves a *tombstone*: the stored name, backend, dates and `is_deleted`, never encrypted (a
//! delete needs no password, and the stored name is already visible in the store's listing).
//!
//! [`sync_store`] lists the journal from a cursor kept in the inventory (S3 `start-after`, Swift `marker`), so a sync
//! that finds nothing new costs one listing request, reads only the entries it has not applied yet, and applies them
//! with [`Inventory::upsert_newer`](crate::inventory::Inventory::upsert_newer): the newer `last_updated` wins. The
//! listing starts [`SKEW_MS`] before the newest key seen, so writers whose clocks lag by less than that are not
//! missed; entries already applied are remembered and not read again. Entries that cannot be read (no password, a
//! wrong one, damage) are reported and retried on the next sync.
//!
//! **Through a server**: [`server`] is the bakthat 0.6 sync server (`POST /clients`, `POST /backups/sync`) with its
//! bugs fixed, and [`client`] is the matching client. This module does not decide *when* to sync (the CLI does).

pub mod client;
pub mod server;

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::archive::crypto::{self, MasterKey};
use crate::archive::Secret;
use crate::inventory::{InventoryError, UpsertOutcome};
use crate::model::{BackupRecord, BadRecordName, Epoch, StoredName};
use crate::ops::{Ctx, OpsError};
use crate::storage::{Backend, PutOptions, StorageError};

/// The key prefix of journal entries.
pub const JOURNAL_PREFIX: &str = "bakthat-journal.";

/// How far before the newest seen key a sync starts listing, for writers whose clocks lag (10 minutes).
pub const SKEW_MS: i64 = 10 * 60 * 1000;

/// The first line of a plaintext entry starts with this.
const ENTRY_MAGIC: &str = "bakthat-record-1 ";

/// Why a sync failed.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// The sync server could not be reached or answered with an error.
    #[error("sync server {url}: {message}")]
    Remote { url: String, message: String },
    /// Publishing the entry of an encrypted backup needs the password.
    #[error("{0} is encrypted: give the password (BAKTHAT_PASSWORD) to publish its journal entry")]
    PasswordNeeded(String),
    /// An entry or a server row whose names could not be file names (see [`crate::model::FileName`]): never applied.
    #[error(transparent)]
    Refused(#[from] BadRecordName),
    /// The sync server section of the config is incomplete.
    #[error("the sync server needs {0}; set it in the sync: block of the config")]
    Config(&'static str),
}

/// What a journal entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A new backup (or a new state of one).
    Backup,
    /// The backup was deleted.
    Tombstone,
}

#[derive(Serialize, Deserialize)]
struct EntryHead {
    kind: EntryKind,
    record: BackupRecord,
}

/// One decoded journal entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    pub record: BackupRecord,
    /// The index sidecar bytes, as stored beside the archive (empty when there is none).
    pub index: Vec<u8>,
}

/// What [`sync_store`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Journal entries listed (including ones already applied).
    pub listed: usize,
    /// Entries downloaded.
    pub fetched: usize,
    /// Rows added to the inventory.
    pub inserted: usize,
    /// Rows replaced by a newer state (deletions included).
    pub updated: usize,
    /// Entries older than or as old as the local row.
    pub unchanged: usize,
    /// Entries that could not be read: (key, why). They are retried on the next sync, except refused ones (a name
    /// that cannot be a file name), which will not change.
    pub unreadable: Vec<(String, String)>,
}

impl SyncReport {
    /// Counts what [`apply`] did with one entry; a refused entry is listed as unreadable under `key`.
    fn count(&mut self, key: &str, applied: Result<UpsertOutcome, SyncError>) -> Result<(), SyncError> {
        match applied {
            Ok(UpsertOutcome::Inserted) => self.inserted += 1,
            Ok(UpsertOutcome::Updated) => self.updated += 1,
            Ok(UpsertOutcome::KeptLocal) => self.unchanged += 1,
            Err(SyncError::Refused(bad)) => self.unreadable.push((key.to_string(), bad.to_string())),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} new, {} updated, {} unchanged, {} unreadable ({} journal entries listed, {} read)",
            self.inserted,
            self.updated,
            self.unchanged,
            self.unreadable.len(),
            self.listed,
            self.fetched
        )
    }
}

/// The store holding the journal (and index sidecars) for backups in `destination`: the store itself, except for
/// S3, where it is the same bucket without the profile's archive storage class (journal entries must stay readable),
/// and Glacier, whose journal sits in the profile's S3 bucket (`None` when the profile has none or it cannot be
/// opened: Glacier backups are then not journaled).
pub fn journal_for(
    ctx: &Ctx,
    destination: &str,
    backend: &Arc<dyn Backend>,
) -> Result<Option<Arc<dyn Backend>>, OpsError> {
    match destination {
        "s3" => return Ok(Some(Arc::new(ctx.s3_store()?))),
        "glacier" => {}
        _ => return Ok(Some(backend.clone())),
    }
    if ctx.profile.s3_bucket.as_deref().unwrap_or_default().is_empty() {
        return Ok(None);
    }
    match ctx.s3_store() {
        Ok(s) => Ok(Some(Arc::new(s))),
        // Glacier works without S3; its backups then go unjournaled.
        Err(e) => {
            ctx.reporter.warn(&format!("glacier backups are not journaled for sync: the s3 bucket is unusable ({e})"));
            Ok(None)
        }
    }
}

/// A new journal key: `bakthat-journal.<13-digit epoch ms>.<16 random hex digits>`. The milliseconds never repeat
/// or go back within a process, so one host's entries sort in the order it wrote them (two in the same millisecond
/// used to be ordered by their random part: a delete could be replayed before the backup it followed).
fn new_key() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_millis().max(0);
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    let ms = if now > prev { now } else { LAST.fetch_add(1, Ordering::SeqCst) + 1 };
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{JOURNAL_PREFIX}{ms:013}.{}", &rand[..16])
}

/// The epoch milliseconds of a journal key.
fn key_ms(key: &str) -> Option<i64> {
    key.strip_prefix(JOURNAL_PREFIX)?.split('.').next()?.parse().ok()
}

/// Encodes an entry: a first line `bakthat-record-1 <json>`, then the index bytes; encrypted when `master` is given.
pub fn encode_entry(entry: &Entry, master: Option<&MasterKey>) -> Vec<u8> {
    let mut record = entry.record.clone();
    record.id = None;
    let head = EntryHead { kind: entry.kind, record };
    let mut plain = ENTRY_MAGIC.as_bytes().to_vec();
    plain.extend_from_slice(&serde_json::to_vec(&head).unwrap_or_default());
    plain.push(b'\n');
    plain.extend_from_slice(&entry.index);
    match master {
        Some(m) => crypto::encrypt_bytes(m, &plain),
        None => plain,
    }
}

/// Decodes an entry (decrypting it with `secret` when it is encrypted).
pub fn decode_entry(bytes: &[u8], secret: Option<&Secret>) -> Result<Entry, String> {
    let plain = if crypto::is_v1(bytes) {
        let secret = secret.ok_or("encrypted; give the password (BAKTHAT_PASSWORD)")?;
        crypto::decrypt_bytes(secret.keys(), bytes).map_err(|e| format!("cannot decrypt ({e}); wrong password?"))?
    } else {
        bytes.to_vec()
    };
    let nl = plain.iter().position(|b| *b == b'\n').ok_or("not a bakthat journal entry")?;
    let line = std::str::from_utf8(&plain[..nl]).map_err(|_| "not a bakthat journal entry")?;
    let json = line.strip_prefix(ENTRY_MAGIC).ok_or("not a bakthat journal entry (unknown version)")?;
    let head: EntryHead = serde_json::from_str(json).map_err(|e| format!("damaged journal entry: {e}"))?;
    Ok(Entry { kind: head.kind, record: head.record, index: plain[nl + 1..].to_vec() })
}

/// Appends a backup's entry to the journal; returns its key.
pub fn publish_backup(
    journal: &dyn Backend,
    record: &BackupRecord,
    index: Option<&[u8]>,
    master: Option<&MasterKey>,
) -> Result<String, StorageError> {
    let entry = Entry { kind: EntryKind::Backup, record: record.clone(), index: index.unwrap_or_default().to_vec() };
    let key = new_key();
    journal.put_bytes(&key, &encode_entry(&entry, master), &PutOptions::default())?;
    Ok(key)
}

/// Appends a tombstone for `record`, deleted at `when`; returns its key.
pub fn publish_tombstone(journal: &dyn Backend, record: &BackupRecord, when: Epoch) -> Result<String, StorageError> {
    let tomb = BackupRecord {
        id: None,
        backend: record.backend.clone(),
        backend_hash: record.backend_hash.clone(),
        backup_date: record.backup_date,
        filename: record.filename.clone(),
        is_deleted: true,
        last_updated: when,
        metadata: json!({}),
        size: 0,
        stored_filename: record.stored_filename.clone(),
        tags: String::new(),
    };
    let entry = Entry { kind: EntryKind::Tombstone, record: tomb, index: Vec::new() };
    let key = new_key();
    journal.put_bytes(&key, &encode_entry(&entry, None), &PutOptions::default())?;
    Ok(key)
}

/// Writes a journal entry for every inventory row of `destination` (deleted rows as tombstones): for backups made
/// before the journal existed or imported from 0.6. Entries already in the journal are harmless duplicates. Rows of
/// encrypted backups need `secret` (their entries are encrypted with it). Returns how many entries were written.
pub fn publish_all(
    ctx: &Ctx,
    journal: &dyn Backend,
    destination: &str,
    secret: Option<&Secret>,
) -> Result<usize, SyncError> {
    let rows = ctx.inventory.search(&crate::inventory::Query {
        backends: vec![destination.to_string()],
        include_deleted: true,
        ..Default::default()
    })?;
    let mut master = None;
    for row in &rows {
        if row.is_enc() && !row.is_deleted && master.is_none() {
            let secret = secret.ok_or(SyncError::PasswordNeeded(row.stored_filename.to_string()))?;
            let m = MasterKey::derive(secret.bytes(), MasterKey::random_salt(), crypto::KdfParams::default())
                .map_err(|e| OpsError::Archive(e.into()))?;
            master = Some(m);
        }
    }
    for row in &rows {
        if row.is_deleted {
            publish_tombstone(journal, row, row.last_updated)?;
        } else {
            let index = ctx.inventory.get_index(&row.stored_filename)?;
            let m = if row.is_enc() { master.as_ref() } else { None };
            publish_backup(journal, row, index.as_deref(), m)?;
        }
    }
    Ok(rows.len())
}

/// The sync position for one journal store, kept in the inventory's config table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// The newest key time seen (epoch ms).
    ms: i64,
    /// Keys applied within [`SKEW_MS`] of `ms`.
    seen: BTreeSet<String>,
    /// Keys that could not be read; retried.
    failed: BTreeSet<String>,
}

fn cursor_key(journal: &dyn Backend) -> String {
    format!("sync_journal:{}", journal.describe())
}

/// Forgets the sync position for a journal store (the next sync reads the whole journal).
pub fn reset_store(ctx: &Ctx, journal: &dyn Backend) -> Result<(), SyncError> {
    ctx.inventory.set_config(&cursor_key(journal), &Value::Null)?;
    Ok(())
}

/// Reconciles the inventory with the journal in `journal`. With `rebuild`, the whole journal is read again.
pub fn sync_store(
    ctx: &Ctx,
    journal: &dyn Backend,
    secret: Option<&Secret>,
    rebuild: bool,
) -> Result<SyncReport, SyncError> {
    let state_key = cursor_key(journal);
    let mut cursor: Cursor = match ctx.inventory.get_config(&state_key)? {
        Some(v) if !rebuild => serde_json::from_value(v).unwrap_or_default(),
        _ => Cursor::default(),
    };
    let start =
        if cursor.ms > 0 { format!("{JOURNAL_PREFIX}{:013}", (cursor.ms - SKEW_MS).max(0)) } else { String::new() };
    let listed = journal.list_after(JOURNAL_PREFIX, &start)?;
    let mut report = SyncReport { listed: listed.len(), ..SyncReport::default() };
    let mut todo: Vec<String> = cursor.failed.iter().cloned().collect();
    todo.extend(
        listed.iter().map(|o| o.key.clone()).filter(|k| !cursor.seen.contains(k) && !cursor.failed.contains(k)),
    );
    todo.sort();
    let mut failed = BTreeSet::new();
    for key in todo {
        report.fetched += 1;
        let entry = match read_object(journal, &key) {
            Ok(bytes) => decode_entry(&bytes, secret),
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => Err(e.to_string()),
        };
        match entry {
            Ok(entry) => report.count(&key, apply(ctx, &entry))?,
            Err(why) => {
                report.unreadable.push((key.clone(), why));
                failed.insert(key.clone());
            }
        }
        cursor.seen.insert(key);
    }
    if let Some(max) = listed.iter().filter_map(|o| key_ms(&o.key)).max() {
        cursor.ms = cursor.ms.max(max);
    }
    let floor = cursor.ms - SKEW_MS;
    cursor.seen.retain(|k| key_ms(k).is_some_and(|ms| ms >= floor) && !failed.contains(k));
    cursor.failed = failed;
    let value = serde_json::to_value(&cursor).unwrap_or(Value::Null);
    ctx.inventory.set_config(&state_key, &value)?;
    Ok(report)
}

fn read_object(store: &dyn Backend, key: &str) -> Result<Vec<u8>, StorageError> {
    let mut r = store.get(key)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| StorageError::io(store.describe(), key, e))?;
    Ok(out)
}

/// Applies one entry to the inventory: a new row (recorded under the current profile), or the newer state of a
/// known one. A tombstone keeps the local row's details and marks it deleted. An entry whose names could not be
/// file names is [`SyncError::Refused`] (the journal, `sync --rebuild` and a sync server all come through here).
pub fn apply(ctx: &Ctx, entry: &Entry) -> Result<UpsertOutcome, SyncError> {
    entry.record.check_names()?;
    let inv = &ctx.inventory;
    let stored: &StoredName = &entry.record.stored_filename;
    let local = inv.get(stored)?;
    let mut incoming = entry.record.clone();
    incoming.id = None;
    if entry.kind == EntryKind::Tombstone {
        incoming.is_deleted = true;
        if let Some(l) = &local {
            incoming = BackupRecord { id: None, is_deleted: true, last_updated: incoming.last_updated, ..l.clone() };
        }
    }
    let outcome = match local {
        None => match inv.insert_for_profile(&incoming, Some(&ctx.profile_name)) {
            Ok(_) => UpsertOutcome::Inserted,
            Err(InventoryError::Duplicate(_)) => inv.upsert_newer(&incoming)?,
            Err(e) => return Err(e.into()),
        },
        Some(_) => inv.upsert_newer(&incoming)?,
    };
    if outcome != UpsertOutcome::KeptLocal && !incoming.is_deleted && !entry.index.is_empty() {
        inv.put_index(stored, &entry.index)?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keys_of_one_process_sort_in_the_order_they_were_made() {
        let keys: Vec<String> = (0..2000).map(|_| new_key()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys made in a burst must sort in order");
        let ms: Vec<i64> = keys.iter().map(|k| key_ms(k).unwrap()).collect();
        assert!(ms.windows(2).all(|w| w[0] < w[1]));
        let now = chrono::Utc::now().timestamp_millis();
        assert!(ms[0] <= now && now - ms[0] < 60_000, "keys stay close to the clock");
    }
}

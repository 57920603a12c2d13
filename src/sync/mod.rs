//! Inventory sync: several hosts, one inventory.
//!
//! **Through the store** (no server): the journal of [`crate::journal`] sits beside the archives (for Glacier, in
//! the profile's S3 bucket). [`sync_store`] lists it from a cursor kept in the inventory (S3 `start-after`, Swift
//! `marker`), so a sync that finds nothing new costs one listing request, reads only the entries it has not applied
//! yet, and applies them with [`Inventory::upsert_newer`](crate::inventory::Inventory::upsert_newer): the newer
//! `last_updated` wins. The listing starts [`SKEW_MS`] before the newest key seen, so writers whose clocks lag by
//! less than that are not missed; entries already applied are remembered and not read again. Entries that cannot be
//! read (no password, damage) are reported and retried on the next sync; entries not believed ([`Trust`]: plain
//! ones in a profile with a password, tampered ones) are reported as rejected and never applied.
//!
//! **Through a server**: [`server`] is the bakthat 0.6 sync server (`POST /clients`, `POST /backups/sync`) with its
//! bugs fixed, and [`client`] is the matching client.
//!
//! **When**: [`run`] syncs with whichever of the two the profile uses, and [`after_backup`] is the `sync.auto`
//! policy, which [`crate::client::Client::backup`] applies to every backup however it starts. Not here: writing
//! journal entries (the leaf [`crate::journal`], called by [`crate::ops`]).

pub mod client;
pub mod server;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::archive::Secret;
use crate::inventory::{InventoryError, UpsertOutcome};
use crate::journal::{
    decode_entry, key_ms, publish_backup, publish_tombstone, read_object, DecodeError, Decoded, Entry, EntryKind,
    JOURNAL_PREFIX,
};
use crate::model::{BackupRecord, BadRecordName, Destination, StoredName};
use crate::ops::{journal_for, Ctx, OpsError};
use crate::storage::{Backend, StorageError};

/// How far before the newest seen key a sync starts listing, for writers whose clocks lag (10 minutes).
pub const SKEW_MS: i64 = 10 * 60 * 1000;

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
    /// Glacier's journal lives in the profile's S3 bucket, and the profile has none (or it cannot be opened).
    #[error("glacier backups are journaled in the profile's S3 bucket; set s3_bucket in profile {profile}")]
    NoJournal { profile: String },
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
    /// Entries read but not believed (see [`Trust`]): (key, why). Never applied; reported again by each sync
    /// until removed from the store (a wrong password makes good entries fail too, and a later sync with the right
    /// one applies them).
    pub rejected: Vec<(String, String)>,
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
            "{} new, {} updated, {} unchanged, {} unreadable, {} rejected ({} journal entries listed, {} read)",
            self.inserted,
            self.updated,
            self.unchanged,
            self.unreadable.len(),
            self.rejected.len(),
            self.listed,
            self.fetched
        )
    }
}

/// Writes a journal entry for every inventory row of `destination` (deleted rows as tombstones): for backups made
/// before the journal existed or imported from 0.6. Entries already in the journal are harmless duplicates. Rows of
/// encrypted backups need `secret` (their entries are encrypted with it). Returns how many entries were written.
pub fn publish_all(
    ctx: &Ctx,
    journal: &dyn Backend,
    destination: Destination,
    secret: Option<&Secret>,
) -> Result<usize, SyncError> {
    let rows = ctx.inventory.search(&crate::inventory::Query {
        backends: vec![destination],
        include_deleted: true,
        ..Default::default()
    })?;
    if let Some(row) = rows.iter().find(|r| r.is_enc() && !r.is_deleted).filter(|_| secret.is_none()) {
        return Err(SyncError::PasswordNeeded(row.stored_filename.to_string()));
    }
    // With the password every entry is authenticated (and those of encrypted backups encrypted) with it.
    let master = secret.map(|s| crate::ops::master_key(ctx, s)).transpose()?;
    let key = master.as_deref();
    for row in &rows {
        if row.is_deleted {
            publish_tombstone(journal, row, row.last_updated, key)?;
        } else {
            let index = ctx.inventory.get_index(&row.stored_filename)?;
            publish_backup(journal, row, index.as_deref(), key)?;
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
    /// Keys that could not be read or were rejected; retried.
    failed: BTreeSet<String>,
    /// Set once a sync of this journal ran with a password: from then on plain entries are not believed here even
    /// when a later sync runs without one (a sync without the password then applies nothing and says so).
    #[serde(default)]
    authenticated: bool,
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
    let saved: Cursor =
        ctx.inventory.get_config(&state_key)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let authenticated = saved.authenticated || secret.is_some();
    let mut cursor = if rebuild { Cursor::default() } else { saved };
    cursor.authenticated = authenticated;
    let trust = if authenticated { Trust::Password } else { Trust::Store };
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
        let bytes = match read_object(journal, &key) {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => {
                report.unreadable.push((key.clone(), e.to_string()));
                failed.insert(key.clone());
                cursor.seen.insert(key);
                continue;
            }
        };
        match admit(ctx, trust, decode_entry(&bytes, secret)) {
            Ok(mut entry) => {
                // The entry is in this store's journal, so its backup is in this store, whatever the entry says
                // (it was validated as a store identity when decoded, and is not believed).
                entry.record.store = ctx.stores().identity(entry.record.backend).map_err(OpsError::from)?;
                report.count(&key, apply(ctx, &entry))?
            }
            Err(Refused::Unreadable(why)) => {
                report.unreadable.push((key.clone(), why));
                failed.insert(key.clone());
            }
            Err(Refused::Rejected(why)) => {
                report.rejected.push((key.clone(), why));
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

/// What a sync believes of the journal.
///
/// A profile with a password (the sync has it, or an earlier sync of this journal had it) believes only entries
/// authenticated with it ([`crate::journal::encode_entry`]): anyone who can write to the store could have written a
/// plain one. A profile without a password believes plain entries: its archives are not authenticated either, so
/// whoever can write to the store can already replace them. Either way a plain tombstone is believed only once the
/// archive it names is gone from the store (in [`Trust::Store`], only for rows of unencrypted backups it is
/// believed as it is): so a host without the password can still delete, and a planted tombstone hides nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Password,
    Store,
}

/// Why [`admit`] did not let an entry through.
enum Refused {
    /// Retried: the password is missing, or the store could not be asked.
    Unreadable(String),
    /// Not believed.
    Rejected(String),
}

/// Decides whether a decoded entry may be applied (see [`Trust`]).
fn admit(ctx: &Ctx, trust: Trust, decoded: Result<Decoded, DecodeError>) -> Result<Entry, Refused> {
    let decoded = match decoded {
        Ok(d) => d,
        Err(DecodeError::NeedsPassword) => return Err(Refused::Unreadable(DecodeError::NeedsPassword.to_string())),
        Err(e @ DecodeError::BadTag) => return Err(Refused::Rejected(e.to_string())),
        Err(e @ DecodeError::Damaged(_)) => return Err(Refused::Unreadable(e.to_string())),
    };
    let entry = decoded.entry;
    if decoded.authenticated {
        return Ok(entry);
    }
    let local = ctx.inventory.get(&entry.record.stored_filename).map_err(|e| Refused::Unreadable(e.to_string()))?;
    match (entry.kind, trust) {
        (EntryKind::Backup, Trust::Store) => Ok(entry),
        // It would change nothing (this host's own plain entries, say): no need to believe it, nor to complain.
        (EntryKind::Backup, Trust::Password) if local.as_ref().is_some_and(|l| same_row(l, &entry.record)) => Ok(entry),
        (EntryKind::Backup, Trust::Password) => Err(Refused::Rejected(
            "not authenticated: this profile has a password, and only entries written with it are believed".into(),
        )),
        (EntryKind::Tombstone, Trust::Store) if !local.as_ref().is_some_and(|l| l.is_enc()) => Ok(entry),
        (EntryKind::Tombstone, _) => {
            let row = local.as_ref().unwrap_or(&entry.record);
            let gone = ctx
                .stores()
                .open(row.backend)
                .map_err(OpsError::from)
                .and_then(|b| Ok(b.head(row.stored_filename.as_str())?))
                .map_err(|e| Refused::Unreadable(format!("cannot check whether the archive is gone: {e}")))?
                .is_none();
            if gone {
                Ok(entry)
            } else {
                Err(Refused::Rejected(format!(
                    "an unauthenticated tombstone, and {} is still in the store: not believed",
                    row.stored_filename
                )))
            }
        }
    }
}

/// Whether two records say the same (their inventory ids aside).
fn same_row(a: &BackupRecord, b: &BackupRecord) -> bool {
    BackupRecord { id: None, ..a.clone() } == BackupRecord { id: None, ..b.clone() }
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

/// The journal store of `destination`, or why there is none.
fn journal_of(ctx: &Ctx, destination: Destination) -> Result<std::sync::Arc<dyn Backend>, SyncError> {
    let backend = ctx.stores().open(destination).map_err(OpsError::from)?;
    journal_for(ctx, destination, &backend)?.ok_or_else(|| SyncError::NoJournal { profile: ctx.profile_name.clone() })
}

/// Writes a journal entry for every inventory row of `destination` into its journal (see [`publish_all`]).
pub fn publish_destination(ctx: &Ctx, destination: Destination, secret: Option<&Secret>) -> Result<usize, SyncError> {
    publish_all(ctx, journal_of(ctx, destination)?.as_ref(), destination, secret)
}

/// Syncs with the server when the profile's `sync.url` is set, else with the store journal of `destination` (the
/// profile's default destination when `None`).
pub fn run(
    ctx: &Ctx,
    destination: Option<Destination>,
    secret: Option<&Secret>,
    rebuild: bool,
) -> Result<SyncReport, SyncError> {
    let server = ctx.config.sync_for(&ctx.profile);
    if server.url.as_deref().is_some_and(|u| !u.is_empty()) {
        return client::sync(ctx, &server, rebuild);
    }
    let journal = journal_of(ctx, ctx.destination(destination))?;
    sync_store(ctx, journal.as_ref(), secret, rebuild)
}

/// The `sync.auto` policy (0.6's `sync_auto`): after a backup stored as `record`, a sync of its destination when
/// the profile asks for one, `None` when it does not.
pub fn after_backup(
    ctx: &Ctx,
    secret: Option<&Secret>,
    record: &BackupRecord,
) -> Option<Result<SyncReport, SyncError>> {
    ctx.config.sync_for(&ctx.profile).auto.then(|| run(ctx, Some(record.backend), secret, false))
}

//! The sync journal's objects: how one entry is encoded, named and written to a store.
//!
//! Every change to a backup (a new backup, a delete, a rotation) appends one small immutable *journal entry* beside
//! the archives, under `bakthat-journal.<epoch-ms>.<random>`. A backup's entry carries its whole inventory row
//! (name, date, tags, size, metadata with the host, `last_updated`) and its entry index, and is encrypted (v1
//! container, the backup's master key) when the backup is. A delete leaves a *tombstone*: the stored name, backend,
//! dates and `is_deleted`, never encrypted (a delete needs no password, and the stored name is already visible in
//! the store's listing).
//!
//! A leaf: it takes a store and a key and knows nothing of the inventory, of profiles or of when to sync. Not here:
//! which store holds a destination's journal ([`crate::ops::journal_for`]), reading the journal back into an
//! inventory ([`crate::sync`]).

use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::archive::crypto::{self, MasterKey};
use crate::archive::Secret;
use crate::model::{BackupRecord, Epoch};
use crate::storage::{Backend, PutOptions, StorageError};

/// The key prefix of journal entries.
pub const JOURNAL_PREFIX: &str = "bakthat-journal.";

/// The first line of a plaintext entry starts with this.
const ENTRY_MAGIC: &str = "bakthat-record-1 ";

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
pub fn key_ms(key: &str) -> Option<i64> {
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

/// Appends a backup's entry to the journal in `store`; returns its key.
pub fn publish_backup(
    store: &dyn Backend,
    record: &BackupRecord,
    index: Option<&[u8]>,
    master: Option<&MasterKey>,
) -> Result<String, StorageError> {
    let entry = Entry { kind: EntryKind::Backup, record: record.clone(), index: index.unwrap_or_default().to_vec() };
    let key = new_key();
    store.put_bytes(&key, &encode_entry(&entry, master), &PutOptions::default())?;
    Ok(key)
}

/// Appends a tombstone for `record`, deleted at `when`, to the journal in `store`; returns its key.
pub fn publish_tombstone(store: &dyn Backend, record: &BackupRecord, when: Epoch) -> Result<String, StorageError> {
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
    store.put_bytes(&key, &encode_entry(&entry, None), &PutOptions::default())?;
    Ok(key)
}

/// Reads one journal object whole.
pub fn read_object(store: &dyn Backend, key: &str) -> Result<Vec<u8>, StorageError> {
    let mut r = store.get(key)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| StorageError::io(store.describe(), key, e))?;
    Ok(out)
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

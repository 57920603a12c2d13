//! The sync journal's objects: how one entry is encoded, named and written to a store.
//!
//! Every change to a backup (a new backup, a delete, a rotation) appends one small immutable *journal entry* beside
//! the archives, under `bakthat-journal.<epoch-ms>.<random>`. A backup's entry carries its whole inventory row
//! (name, date, tags, size, metadata with the host, `last_updated`) and its entry index. A delete leaves a
//! *tombstone*: the stored name, backend, dates and `is_deleted`, never encrypted.
//!
//! An entry written with the password is *authenticated* (an HMAC-SHA256 tag under a key derived from the
//! password, see [`encode_entry`]) and, when its backup is encrypted, encrypted too; one written without it is
//! plain. What a reader believes of each kind is decided in [`crate::sync`] (`Trust`).
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

/// Encodes an entry: a first line `bakthat-record-1 <json>`, then the index bytes.
///
/// With `key` (the writer's password-derived master key) the entry is *authenticated*: [`AUTH_MAGIC`], the key's
/// salt and Argon2 parameters and an HMAC-SHA256 tag on a first line, then the entry, encrypted (v1 container) when
/// the record is of an encrypted backup. The tag's key is [`MasterKey::subkey`] with the label [`AUTH_LABEL`], so no
/// other object encrypted with the same password (an archive whose content imitates an entry) passes for one.
/// Without `key` the entry is plain, and only a profile without a password believes it (see [`crate::sync`]).
pub fn encode_entry(entry: &Entry, key: Option<&MasterKey>) -> Vec<u8> {
    let mut record = entry.record.clone();
    record.id = None;
    let head = EntryHead { kind: entry.kind, record };
    let mut plain = ENTRY_MAGIC.as_bytes().to_vec();
    plain.extend_from_slice(&serde_json::to_vec(&head).unwrap_or_default());
    plain.push(b'\n');
    plain.extend_from_slice(&entry.index);
    let Some(master) = key else { return plain };
    let body = if entry.record.is_enc() { crypto::encrypt_bytes(master, &plain) } else { plain };
    let p = master.params();
    let salt: String = master.salt().iter().map(|b| format!("{b:02x}")).collect();
    let signed = format!("{AUTH_MAGIC}{salt} {} {} {} ", p.m_cost_kib, p.t_cost, p.parallelism);
    let tag = auth_tag(master, signed.as_bytes(), &body);
    let mut out = signed.into_bytes();
    out.extend(tag.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

/// The first line of an authenticated entry starts with this.
pub const AUTH_MAGIC: &str = "bakthat-journal-auth-1 ";

/// The HKDF label of the key that authenticates journal entries.
pub const AUTH_LABEL: &[u8] = b"bakthat journal entry authentication v1";

fn auth_tag(master: &MasterKey, signed: &[u8], body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let key = master.subkey(AUTH_LABEL);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key[..]).expect("HMAC takes any key length");
    mac.update(signed);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// A decoded entry, and whether it was authenticated with the reader's password.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub entry: Entry,
    pub authenticated: bool,
}

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Authenticated (or encrypted) with a password that was not given: read it again with the password.
    NeedsPassword,
    /// Its tag does not match under the given password: tampered, damaged, or written with another password.
    BadTag,
    /// Not an entry this version can read.
    Damaged(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NeedsPassword => {
                f.write_str("written with the profile's password; give it (BAKTHAT_PASSWORD)")
            }
            DecodeError::BadTag => {
                f.write_str("fails authentication: tampered with, damaged, or written with another password")
            }
            DecodeError::Damaged(why) => f.write_str(why),
        }
    }
}

/// Decodes an entry, checking its tag (and decrypting it) with `secret` when it is authenticated.
pub fn decode_entry(bytes: &[u8], secret: Option<&Secret>) -> Result<Decoded, DecodeError> {
    let damaged = |why: &str| DecodeError::Damaged(why.to_string());
    if !bytes.starts_with(AUTH_MAGIC.as_bytes()) {
        if crypto::is_v1(bytes) {
            return Err(damaged("an encrypted object without an authentication line: not a journal entry"));
        }
        return parse_plain(bytes).map(|entry| Decoded { entry, authenticated: false });
    }
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| damaged("damaged authenticated entry"))?;
    let line = std::str::from_utf8(&bytes[..nl]).map_err(|_| damaged("damaged authenticated entry"))?;
    let fields: Vec<&str> = line[AUTH_MAGIC.len()..].split(' ').collect();
    let [salt, m, t, p, tag] = fields[..] else { return Err(damaged("damaged authenticated entry")) };
    let (Some(salt), Some(tag)) = (hex::<16>(salt), hex::<32>(tag)) else {
        return Err(damaged("damaged authenticated entry"));
    };
    let num = |s: &str| s.parse::<u32>().map_err(|_| damaged("damaged authenticated entry"));
    let params = crypto::KdfParams { m_cost_kib: num(m)?, t_cost: num(t)?, parallelism: num(p)? };
    let secret = secret.ok_or(DecodeError::NeedsPassword)?;
    let master =
        secret.keys().master(salt, params).map_err(|e| DecodeError::Damaged(format!("bad key parameters: {e}")))?;
    let signed = &bytes[..nl - 64];
    let body = &bytes[nl + 1..];
    use subtle::ConstantTimeEq;
    if !bool::from(auth_tag(&master, signed, body).ct_eq(&tag)) {
        return Err(DecodeError::BadTag);
    }
    let plain = if crypto::is_v1(body) {
        crypto::decrypt_bytes(secret.keys(), body).map_err(|e| DecodeError::Damaged(format!("cannot decrypt ({e})")))?
    } else {
        body.to_vec()
    };
    parse_plain(&plain).map(|entry| Decoded { entry, authenticated: true })
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_plain(plain: &[u8]) -> Result<Entry, DecodeError> {
    let not = || DecodeError::Damaged("not a bakthat journal entry".into());
    let nl = plain.iter().position(|b| *b == b'\n').ok_or_else(not)?;
    let line = std::str::from_utf8(&plain[..nl]).map_err(|_| not())?;
    let json = line
        .strip_prefix(ENTRY_MAGIC)
        .ok_or_else(|| DecodeError::Damaged("not a bakthat journal entry (unknown version)".into()))?;
    let head: EntryHead =
        serde_json::from_str(json).map_err(|e| DecodeError::Damaged(format!("damaged journal entry: {e}")))?;
    Ok(Entry { kind: head.kind, record: head.record, index: plain[nl + 1..].to_vec() })
}

/// Appends a backup's entry to the journal in `store`, authenticated with `key` when given (see
/// [`encode_entry`]); returns its key.
pub fn publish_backup(
    store: &dyn Backend,
    record: &BackupRecord,
    index: Option<&[u8]>,
    key: Option<&MasterKey>,
) -> Result<String, StorageError> {
    let entry = Entry { kind: EntryKind::Backup, record: record.clone(), index: index.unwrap_or_default().to_vec() };
    let name = new_key();
    store.put_bytes(&name, &encode_entry(&entry, key), &PutOptions::default())?;
    Ok(name)
}

/// Appends a tombstone for `record`, deleted at `when`, to the journal in `store`, authenticated with `key` when
/// given; returns its key. A tombstone is never encrypted.
pub fn publish_tombstone(
    store: &dyn Backend,
    record: &BackupRecord,
    when: Epoch,
    key: Option<&MasterKey>,
) -> Result<String, StorageError> {
    let tomb = BackupRecord {
        id: None,
        backend: record.backend,
        backend_hash: record.backend_hash.clone(),
        backup_date: record.backup_date,
        filename: record.filename.clone(),
        is_deleted: true,
        last_updated: when,
        metadata: json!({}),
        size: 0,
        stored_filename: record.stored_filename.clone(),
        tags: String::new(),
        store: record.store.clone(),
    };
    let entry = Entry { kind: EntryKind::Tombstone, record: tomb, index: Vec::new() };
    let name = new_key();
    store.put_bytes(&name, &encode_entry(&entry, key), &PutOptions::default())?;
    Ok(name)
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

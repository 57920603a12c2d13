//! Names, timestamps and backup records. No I/O.
//!
//! A [`StoredName`] is the object key in a store (`name.YYYYmmddHHMMSS.tgz[.enc]`), a [`BackupRecord`] is one row of
//! the inventory, mirroring bakthat 0.6's `backups` table.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC. (bakthat 0.6 stored local-offset-shifted values; see `inventory`.)
pub type Epoch = i64;

/// Formats an epoch as the 14-digit UTC date component used in stored names.
pub fn date_component(epoch: Epoch) -> String {
    utc(epoch).format("%Y%m%d%H%M%S").to_string()
}

/// An epoch as a UTC datetime (out-of-range values clamp to the epoch).
pub fn utc(epoch: Epoch) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0).single().unwrap_or_default()
}

/// How the payload of a stored object is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Not encrypted.
    None,
    /// bakthat's own format (`\x89BKT` header, Argon2id, AES-256-CBC + HMAC-SHA256 chunks).
    V1,
    /// beefish Blowfish-CBC, as written by bakthat 0.6 (read only).
    LegacyBlowfish,
    /// beefish AES mode (`.ae`, read only).
    LegacyAes,
}

/// The object key of a backup: `name.YYYYmmddHHMMSS.tgz`, `.tgz.enc`, or without `.tgz` when compression was off.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredName(String);

/// The parts of a stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub name: String,
    pub date: String,
    pub tgz: bool,
    pub enc: bool,
}

impl StoredName {
    /// Builds the stored name of a new backup.
    pub fn new(name: &str, epoch: Epoch, tgz: bool, enc: bool) -> Self {
        let mut s = format!("{name}.{}", date_component(epoch));
        if tgz {
            s.push_str(".tgz");
        }
        if enc {
            s.push_str(".enc");
        }
        StoredName(s)
    }

    /// Wraps an existing key as found in a store or an inventory.
    pub fn from_key(key: impl Into<String>) -> Self {
        StoredName(key.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name says the payload is encrypted (`.enc`, or beefish's `.ae`).
    pub fn is_enc(&self) -> bool {
        self.0.ends_with(".enc") || self.0.ends_with(".ae")
    }

    /// Whether the payload is a tar archive (`.tgz` or `.tgz.enc`).
    pub fn is_tgz(&self) -> bool {
        self.0.ends_with(".tgz") || self.0.ends_with(".tgz.enc")
    }

    /// Splits `name.YYYYmmddHHMMSS[.tgz][.enc]`, also the pre-0.4 form without the dot before the date.
    pub fn parse(&self) -> Option<ParsedName> {
        let mut rest = self.0.as_str();
        let enc = rest.ends_with(".enc");
        if enc {
            rest = &rest[..rest.len() - 4];
        }
        let tgz = rest.ends_with(".tgz");
        if tgz {
            rest = &rest[..rest.len() - 4];
        }
        if rest.len() < 15 || !rest.is_char_boundary(rest.len() - 14) {
            return None;
        }
        let (head, date) = rest.split_at(rest.len() - 14);
        if !date.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let name = head.strip_suffix('.').unwrap_or(head);
        if name.is_empty() {
            return None;
        }
        Some(ParsedName { name: name.to_string(), date: date.to_string(), tgz, enc })
    }
}

impl fmt::Display for StoredName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One backup as the inventory records it (bakthat 0.6's `backups` columns, plus `profile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Local row id; never synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// `local`, `s3`, `glacier` or `swift`.
    pub backend: String,
    /// sha512(access_key + container) as in 0.6, or a hash identifying the local store.
    pub backend_hash: Option<String>,
    /// UTC epoch of the backup.
    pub backup_date: Epoch,
    /// The backup's name (the basename of what was backed up, or a custom name).
    pub filename: String,
    pub is_deleted: bool,
    /// UTC epoch of the last change to this row (used by sync: newer wins).
    pub last_updated: Epoch,
    /// JSON object: `is_enc`, `client`, `enc`, …
    pub metadata: serde_json::Value,
    /// Size in bytes of the stored object.
    pub size: u64,
    pub stored_filename: StoredName,
    /// Tags, space separated as in 0.6 (use [`BackupRecord::tag_list`]).
    pub tags: String,
}

impl BackupRecord {
    /// The tags as whole words.
    pub fn tag_list(&self) -> Vec<&str> {
        self.tags.split_whitespace().collect()
    }

    /// Whether every one of `wanted` is one of this record's tags (whole-tag match, AND).
    pub fn has_all_tags<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        let have = self.tag_list();
        wanted.iter().all(|w| have.contains(&w.as_ref()))
    }

    /// Whether the payload is encrypted, by metadata or by name.
    pub fn is_enc(&self) -> bool {
        self.metadata.get("is_enc").and_then(|v| v.as_bool()).unwrap_or(false) || self.stored_filename.is_enc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        let n = StoredName::new("mydir", 1_795_000_000, true, true);
        let p = n.parse().unwrap();
        assert_eq!(p.name, "mydir");
        assert!(p.tgz && p.enc);
        assert_eq!(p.date, date_component(1_795_000_000));
        assert!(n.is_enc() && n.is_tgz());
    }

    #[test]
    fn parses_legacy_and_plain_names() {
        let p = StoredName::from_key("name20120927093000.tgz").parse().unwrap();
        assert_eq!((p.name.as_str(), p.date.as_str(), p.tgz, p.enc), ("name", "20120927093000", true, false));
        let p = StoredName::from_key("a.txt.20261122040810.enc").parse().unwrap();
        assert_eq!((p.name.as_str(), p.tgz, p.enc), ("a.txt", false, true));
        assert!(StoredName::from_key("bakthat_glacier_inventory").parse().is_none());
    }

    #[test]
    fn tags_match_whole_words() {
        let r = BackupRecord {
            id: None,
            backend: "local".into(),
            backend_hash: None,
            backup_date: 0,
            filename: "x".into(),
            is_deleted: false,
            last_updated: 0,
            metadata: serde_json::json!({}),
            size: 0,
            stored_filename: StoredName::from_key("x.20200101000000.tgz"),
            tags: "daily db".into(),
        };
        assert!(r.has_all_tags(&["db", "daily"]));
        assert!(!r.has_all_tags(&["d"]));
        assert!(!r.has_all_tags(&["db", "weekly"]));
    }
}

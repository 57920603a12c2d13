//! Names, timestamps and backup records. No I/O.
//!
//! A [`StoredName`] is the object key in a store (`name.YYYYmmddHHMMSS.tgz[.enc]`, `.tar.zst[.enc]`), a
//! [`Compression`] says which of the two its archive uses, a [`BackupRecord`] is one row of
//! the inventory, mirroring bakthat 0.6's `backups` table. [`relative_path`] and [`FileName`] say which names from
//! outside (a store, the journal, a sync server, a 0.6 database, an archive entry) bakthat accepts. A
//! [`Destination`] is a kind of store, parsed once where its name enters (config, `-d`, an inventory row, a journal
//! entry); nothing else compares store names.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

/// A kind of store: where a backup goes (`-d`, `default_destination`) and the inventory's `backend` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Destination {
    /// A directory (`local_path`).
    Local,
    /// An S3 bucket (`s3_bucket`), whose archive class may be cold (`s3_storage_class: GLACIER`).
    S3,
    /// A Glacier vault (`glacier_vault`): always cold.
    Glacier,
    /// A Swift container (`s3_bucket`).
    Swift,
}

impl Destination {
    /// Every destination, in the order `configure` and messages list them.
    pub const ALL: [Destination; 4] = [Destination::S3, Destination::Glacier, Destination::Swift, Destination::Local];

    /// The name used in the config, on the command line and in the inventory.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Local => "local",
            Destination::S3 => "s3",
            Destination::Glacier => "glacier",
            Destination::Swift => "swift",
        }
    }

    /// Whether objects in this kind of store may need a retrieval before they can be read.
    pub fn may_be_cold(self) -> bool {
        match self {
            Destination::Glacier | Destination::S3 => true,
            Destination::Local | Destination::Swift => false,
        }
    }

    /// Whether an object stored here with `storage_class` (S3's class; `None` when not recorded) is archived, that
    /// is, cannot be read before a retrieval. Glacier always is; S3 is in `GLACIER` and `DEEP_ARCHIVE` (not
    /// `GLACIER_IR`, which reads at once).
    pub fn is_archived(self, storage_class: Option<&str>) -> bool {
        match self {
            Destination::Glacier => true,
            Destination::S3 => matches!(storage_class, Some("GLACIER" | "DEEP_ARCHIVE")),
            Destination::Local | Destination::Swift => false,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination name that is none of `local`, `s3`, `glacier`, `swift`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown destination {0:?}; use local, s3, glacier or swift")]
pub struct UnknownDestination(pub String);

impl FromStr for Destination {
    type Err = UnknownDestination;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Destination::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| UnknownDestination(s.to_string()))
    }
}

impl TryFrom<String> for Destination {
    type Error = UnknownDestination;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Destination> for String {
    fn from(d: Destination) -> String {
        d.as_str().to_string()
    }
}

/// How the payload of a stored object is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Not encrypted.
    #[default]
    None,
    /// bakthat's own format (`\x89BKT` header, Argon2id, AES-256-CBC + HMAC-SHA256 chunks).
    V1,
    /// beefish Blowfish-CBC, as written by bakthat 0.6 (read only).
    LegacyBlowfish,
    /// beefish AES mode (`.ae`, read only).
    LegacyAes,
}

/// How a tar archive's members are compressed; the stored name says which (`.tgz` or `.tar.zst`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Independent gzip members (`.tgz`), as every bakthat has written; the default.
    #[default]
    Gzip,
    /// Independent zstd frames and a seek table (`.tar.zst`), zstd's seekable format.
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// The name in a profile and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The stored name's suffix for an archive of this compression (before any `.enc`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".tgz",
            Compression::Zstd => ".tar.zst",
        }
    }

    /// The compression a name's suffix says (`.enc` already taken off), if it names an archive.
    fn of_suffix(name: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| name.ends_with(c.suffix()))
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("expected gzip or zstd, got {s:?}"))
    }
}

/// The object key of a backup: `name.YYYYmmddHHMMSS.tgz` or `.tar.zst`, either with `.enc` when encrypted, or
/// without the archive suffix when compression was off.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredName(String);

/// The parts of a stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub name: String,
    pub date: String,
    /// The archive's compression; `None` for a payload stored as is.
    pub archive: Option<Compression>,
    pub enc: bool,
    /// `name.YYYYmmddHHMMSS.inc.tgz[.enc]`: an incremental backup (see [`BackupRecord::parent`]).
    pub incremental: bool,
}

impl StoredName {
    /// Builds the stored name of a new backup: a tar archive when `archive` says how it is compressed.
    pub fn new(name: &str, epoch: Epoch, archive: Option<Compression>, enc: bool) -> Self {
        let mut s = format!("{name}.{}", date_component(epoch));
        if let Some(c) = archive {
            s.push_str(c.suffix());
        }
        if enc {
            s.push_str(".enc");
        }
        StoredName(s)
    }

    /// The stored name of a new incremental backup: `name.YYYYmmddHHMMSS.inc.tgz[.enc]` (`.inc.tar.zst` for zstd).
    pub fn incremental(name: &str, epoch: Epoch, compression: Compression, enc: bool) -> Self {
        let mut s = format!("{name}.{}.inc{}", date_component(epoch), compression.suffix());
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

    /// The compression of the tar archive the name says the payload is (`.tgz`, `.tar.zst`, either with `.enc`);
    /// `None` for a payload stored as is.
    pub fn archive(&self) -> Option<Compression> {
        Compression::of_suffix(self.0.strip_suffix(".enc").unwrap_or(&self.0))
    }

    /// Whether the payload is a tar archive (`.tgz`, `.tar.zst`, either with `.enc`).
    pub fn is_archive(&self) -> bool {
        self.archive().is_some()
    }

    /// Splits `name.YYYYmmddHHMMSS[.tgz|.tar.zst][.enc]`, also the pre-0.4 form without the dot before the date.
    pub fn parse(&self) -> Option<ParsedName> {
        let mut rest = self.0.as_str();
        let enc = rest.ends_with(".enc");
        if enc {
            rest = &rest[..rest.len() - 4];
        }
        let archive = Compression::of_suffix(rest);
        if let Some(c) = archive {
            rest = &rest[..rest.len() - c.suffix().len()];
        }
        let incremental = archive.is_some() && rest.ends_with(".inc");
        if incremental {
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
        Some(ParsedName { name: name.to_string(), date: date.to_string(), archive, enc, incremental })
    }
}

impl fmt::Display for StoredName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most bytes one path component may have (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The most bytes a relative path may have (Linux `PATH_MAX` less its NUL).
pub const PATH_MAX: usize = 4095;

/// Why a name from outside is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Nul,
    Absolute,
    DotDot,
    ComponentTooLong,
    PathTooLong,
    NotNormal,
    NotOneComponent,
    /// `metadata.parent` names the row itself.
    ParentIsItself,
    /// `metadata.parent` is not a stored name of a backup of the same name, or is dated after the row.
    ParentOfAnotherBackup,
}

impl NameError {
    /// What is wrong, in a few words (also the `Display` text).
    pub fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "empty name",
            NameError::Nul => "name contains a NUL byte",
            NameError::Absolute => "absolute path",
            NameError::DotDot => "path contains a .. component",
            NameError::ComponentTooLong => "a path component is longer than 255 bytes (NAME_MAX)",
            NameError::PathTooLong => "path longer than 4095 bytes (PATH_MAX)",
            NameError::NotNormal => "name is not in normal form (a . component, // or a trailing /)",
            NameError::NotOneComponent => "name has more than one path component",
            NameError::ParentIsItself => "a backup cannot be its own parent",
            NameError::ParentOfAnotherBackup => {
                "a parent must be an earlier backup of the same name (NAME.YYYYmmddHHMMSS…, dated no later)"
            }
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for NameError {}

/// The one confinement rule for names that become paths below a directory: an archive's tar entries, the entry
/// index the mount shows, a record's `filename` restored with `--to`. Strips `./` and empty components; refuses
/// absolute names, `..`, NUL, components over [`NAME_MAX`] and paths over [`PATH_MAX`] bytes. `Ok(None)` means the
/// name is the root itself (`.` or `./`). The result joined to a directory stays inside it (as long as nothing
/// on the way is a symlink, which the callers check on disk).
///
/// Names are bytes: no Unicode normalisation is applied. `café` in NFC and in NFD are two names, two rows and two
/// files; bakthat never merges them, and restore replaces an existing name (byte-equal) only with `--force`.
pub fn relative_path(bytes: &[u8]) -> Result<Option<PathBuf>, NameError> {
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.contains(&0) {
        return Err(NameError::Nul);
    }
    if bytes[0] == b'/' {
        return Err(NameError::Absolute);
    }
    if bytes.len() > PATH_MAX {
        return Err(NameError::PathTooLong);
    }
    let mut path = PathBuf::new();
    for component in bytes.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(NameError::DotDot),
            name if name.len() > NAME_MAX => return Err(NameError::ComponentTooLong),
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok(if path.as_os_str().is_empty() { None } else { Some(path) })
}

/// A record's `filename` (the backup's name) or stored name, checked: a [`relative_path`] already in normal form.
/// Names bakthat makes are one component; a KeyValue row's key (0.6's `helper.KeyValue`) may hold `/` between
/// real components. Every row that enters the inventory from outside (`import-legacy`, the sync journal, a sync
/// server, a store's listing) is checked with [`BackupRecord::check_names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    /// Checks a name (see the type's docs).
    pub fn new(name: &str) -> Result<FileName, NameError> {
        match relative_path(name.as_bytes())? {
            Some(p) if p.as_os_str().as_bytes() == name.as_bytes() => Ok(FileName(name.to_string())),
            _ => Err(NameError::NotNormal),
        }
    }

    /// The path a restore of this name writes in `dest`: `dest/<name>`, for a one-component name only.
    pub fn target_in(&self, dest: &Path) -> Result<PathBuf, NameError> {
        if self.0.contains('/') {
            return Err(NameError::NotOneComponent);
        }
        Ok(dest.join(&self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A row refused by [`BackupRecord::check_names`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing a row whose {field} is {name:?}: {reason}")]
pub struct BadRecordName {
    pub field: &'static str,
    pub name: String,
    pub reason: NameError,
}

impl fmt::Display for FileName {
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
    /// The kind of store holding it.
    pub backend: Destination,
    /// sha512(access_key + container) as in 0.6, or a hash identifying the local store.
    pub backend_hash: Option<String>,
    /// UTC epoch of the backup.
    pub backup_date: Epoch,
    /// The backup's name (the basename of what was backed up, or a custom name).
    pub filename: String,
    pub is_deleted: bool,
    /// UTC epoch of the last change to this row (used by sync: newer wins).
    pub last_updated: Epoch,
    /// JSON object: `is_enc`, `client`, `enc`, … (0.6's free-form column). Read it through the typed accessors
    /// ([`BackupRecord::encryption`], [`BackupRecord::plain_size`], …), which know each key's meaning.
    pub metadata: serde_json::Value,
    /// Size in bytes of the stored object.
    pub size: u64,
    pub stored_filename: StoredName,
    /// Tags, space separated as in 0.6 (use [`BackupRecord::tag_list`]).
    pub tags: String,
    /// The store holding it ([`StoreId`]); unknown for rows older than this column that could not be placed.
    #[serde(default, skip_serializing_if = "StoreId::is_unknown")]
    pub store: StoreId,
}

/// Which store holds a backup, as text: `local:<canonical dir>`, `s3:<endpoint or aws>/<bucket>`,
/// `glacier:<endpoint or aws:region>/<vault>`, `swift:<auth_url>/<container>`. Built from a profile in
/// `crate::stores` (no request is made); empty means "store unknown" (a row recorded before stores had an identity
/// and not placed since), which resolves as the profile's store of the row's kind.
///
/// Validated wherever it is parsed (a journal entry, a sync answer, the inventory): a known kind, no control
/// characters, at most [`StoreId::MAX_LEN`] bytes, and for `local:` an absolute path without `.` or `..`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreId(String);

/// A store identity refused by [`StoreId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing the store identity {text:?}: {reason}")]
pub struct BadStoreId {
    pub text: String,
    pub reason: &'static str,
}

impl StoreId {
    /// The longest identity accepted, in bytes.
    pub const MAX_LEN: usize = 2048;

    /// "Store unknown".
    pub fn unknown() -> StoreId {
        StoreId(String::new())
    }

    /// The identity of a store of kind `kind` at `place` (a directory, or `<endpoint>/<container>`).
    pub fn new(kind: Destination, place: &str) -> Result<StoreId, BadStoreId> {
        StoreId::parse(&format!("{kind}:{place}"))
    }

    /// Parses and validates an identity (see the type's docs); the empty text is "store unknown".
    pub fn parse(text: &str) -> Result<StoreId, BadStoreId> {
        let bad = |reason| Err(BadStoreId { text: text.chars().take(200).collect(), reason });
        if text.is_empty() {
            return Ok(StoreId::unknown());
        }
        if text.len() > Self::MAX_LEN {
            return bad("it is too long");
        }
        if text.chars().any(char::is_control) {
            return bad("it has a control character");
        }
        let Some((kind, place)) = text.split_once(':') else { return bad("it names no kind of store") };
        let Ok(kind) = kind.parse::<Destination>() else { return bad("unknown kind of store") };
        if place.is_empty() {
            return bad("it names no store");
        }
        if kind == Destination::Local {
            let path = std::path::Path::new(place);
            let plain =
                path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
            if !path.is_absolute() || !plain || place.contains("//") {
                return bad("a local store must be an absolute directory without . or ..");
            }
        }
        Ok(StoreId(text.to_string()))
    }

    pub fn is_unknown(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind of store (`None` when unknown).
    pub fn destination(&self) -> Option<Destination> {
        self.0.split_once(':').and_then(|(k, _)| k.parse().ok())
    }

    /// The directory of a `local:` store.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.0.strip_prefix("local:").map(std::path::Path::new)
    }
}

impl TryFrom<String> for StoreId {
    type Error = BadStoreId;
    fn try_from(s: String) -> Result<Self, BadStoreId> {
        StoreId::parse(&s)
    }
}

impl From<StoreId> for String {
    fn from(s: StoreId) -> String {
        s.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "(store unknown)" } else { &self.0 })
    }
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

    /// Checks the names of a row that came from outside (see [`FileName`]), its parent's too.
    pub fn check_names(&self) -> Result<(), BadRecordName> {
        let parent = self.metadata.get(META_PARENT).map(|p| p.as_str().unwrap_or("\0"));
        let names =
            [("filename", Some(self.filename.as_str())), ("stored_filename", Some(self.stored_filename.as_str()))];
        for (field, name) in names.into_iter().chain([("metadata.parent", parent)]) {
            let Some(name) = name else { continue };
            FileName::new(name).map_err(|reason| BadRecordName { field, name: name.to_string(), reason })?;
        }
        if let Some(p) = parent {
            let bad = |reason| BadRecordName { field: "metadata.parent", name: p.to_string(), reason };
            if p == self.stored_filename.as_str() {
                return Err(bad(NameError::ParentIsItself));
            }
            if !self.may_be_parent(&StoredName::from_key(p)) {
                return Err(bad(NameError::ParentOfAnotherBackup));
            }
        }
        Ok(())
    }

    /// Whether `parent` can be this backup's parent by its stored name: an archive of the same name, dated no later
    /// (a chain's full and its first incremental may share a second). So no chain of such rows has a cycle across
    /// seconds, nor crosses names.
    pub fn may_be_parent(&self, parent: &StoredName) -> bool {
        match (self.stored_filename.parse(), parent.parse()) {
            (Some(me), Some(p)) => p.archive.is_some() && p.name == me.name && p.date <= me.date,
            _ => false,
        }
    }

    /// The backup an incremental backup was made against (`None` for a full backup). A parent that is not a plain
    /// stored name (a row from outside that [`BackupRecord::check_names`] did not see) reads as `None`.
    pub fn parent(&self) -> Option<StoredName> {
        let p = self.meta_str(META_PARENT)?;
        (FileName::new(p).is_ok() && p != self.stored_filename.as_str()).then(|| StoredName::from_key(p))
    }

    /// Whether the backup is a member of an incremental chain (a full made under an `incremental:` policy, or an
    /// incremental): it has a `.snap` sidecar and GNU dumpdirs.
    pub fn in_chain(&self) -> bool {
        self.meta_bool(META_CHAIN).unwrap_or(false) || self.parent().is_some()
    }

    /// Whether the payload is encrypted, by metadata or by name.
    pub fn is_enc(&self) -> bool {
        self.meta_bool(META_IS_ENC).unwrap_or(false) || self.stored_filename.is_enc()
    }

    /// How the payload is encrypted: bakthat's own format when the row says so (`enc: v1`), else a 0.6 beefish
    /// file (AES for `.ae` names), else none.
    pub fn encryption(&self) -> Encryption {
        if !self.is_enc() {
            Encryption::None
        } else if self.meta_str(META_ENC) == Some("v1") {
            Encryption::V1
        } else if self.stored_filename.as_str().ends_with(".ae") {
            Encryption::LegacyAes
        } else {
            Encryption::LegacyBlowfish
        }
    }

    /// The plaintext size of a raw (not tar) backup, when it was recorded.
    pub fn plain_size(&self) -> Option<u64> {
        self.metadata.get(META_PLAIN_SIZE).and_then(|v| v.as_u64())
    }

    /// The S3 storage class the archive was stored with, when it was recorded (`s3_storage_class`).
    pub fn storage_class(&self) -> Option<&str> {
        self.meta_str(META_STORAGE_CLASS)
    }

    /// Whether the archive cannot be read before a retrieval, by its store and storage class (see
    /// [`Destination::is_archived`]).
    pub fn is_archived(&self) -> bool {
        self.backend.is_archived(self.storage_class())
    }

    /// Whether the backup has an `.index` sidecar beside it: a tar archive written by this version
    /// (`format: bakthat-1`).
    pub fn has_sidecar(&self) -> bool {
        self.stored_filename.is_archive() && self.meta_str(META_FORMAT) == Some(FORMAT_ARCHIVE)
    }

    /// The host that made the backup (0.6's `client`).
    pub fn client(&self) -> Option<&str> {
        self.meta_str(META_CLIENT)
    }

    /// The absolute path that was backed up, on the host that made it (recorded since 0.7; `None` before).
    pub fn source(&self) -> Option<&str> {
        self.meta_str(META_SOURCE)
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }

    fn meta_bool(&self, key: &str) -> Option<bool> {
        self.metadata.get(key).and_then(|v| v.as_bool())
    }
}

/// What a stored payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A bakthat 0.7 tar archive with an `.index` sidecar.
    Archive,
    /// The backed-up file itself.
    Raw,
}

/// The metadata of a new backup, as [`BackupRecord::metadata`] stores it (the keys the accessors read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMetadata {
    /// The host making the backup.
    pub client: String,
    /// How the payload is encrypted.
    pub encryption: Encryption,
    /// What the payload is, when known.
    pub format: Option<Format>,
    /// The plaintext size of a raw backup.
    pub plain_size: Option<u64>,
    /// The S3 storage class the archive was stored with.
    pub storage_class: Option<String>,
    /// The absolute path that was backed up.
    pub source: Option<String>,
    /// A member of an incremental chain ([`BackupRecord::in_chain`]).
    pub chain: bool,
    /// The parent of an incremental backup ([`BackupRecord::parent`]).
    pub parent: Option<StoredName>,
}

impl NewMetadata {
    /// The JSON object for [`BackupRecord::metadata`].
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::json!({
            META_IS_ENC: self.encryption != Encryption::None,
            META_CLIENT: self.client,
            META_ENC: (self.encryption == Encryption::V1).then_some("v1"),
        });
        if let Some(f) = self.format {
            m[META_FORMAT] = serde_json::json!(match f {
                Format::Archive => FORMAT_ARCHIVE,
                Format::Raw => "raw",
            });
        }
        if let Some(p) = self.plain_size {
            m[META_PLAIN_SIZE] = serde_json::json!(p);
        }
        if let Some(c) = &self.storage_class {
            m[META_STORAGE_CLASS] = serde_json::json!(c);
        }
        if let Some(s) = &self.source {
            m[META_SOURCE] = serde_json::json!(s);
        }
        if self.chain {
            m[META_CHAIN] = serde_json::json!(true);
        }
        if let Some(p) = &self.parent {
            m[META_PARENT] = serde_json::json!(p.as_str());
        }
        m
    }
}

const META_IS_ENC: &str = "is_enc";
const META_ENC: &str = "enc";
const META_CLIENT: &str = "client";
const META_PLAIN_SIZE: &str = "plain_size";
const META_STORAGE_CLASS: &str = "storage_class";
const META_FORMAT: &str = "format";
const META_SOURCE: &str = "source";
const META_CHAIN: &str = "chain";
const META_PARENT: &str = "parent";
const FORMAT_ARCHIVE: &str = "bakthat-1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        let n = StoredName::new("mydir", 1_795_000_000, Some(Compression::Gzip), true);
        let p = n.parse().unwrap();
        assert_eq!(p.name, "mydir");
        assert!(p.archive == Some(Compression::Gzip) && p.enc);
        assert_eq!(p.date, date_component(1_795_000_000));
        assert!(n.is_enc() && n.is_archive());
        for enc in [false, true] {
            let z = StoredName::new("my.dir", 1_795_000_000, Some(Compression::Zstd), enc);
            assert_eq!(
                z.as_str(),
                format!("my.dir.{}.tar.zst{}", date_component(1_795_000_000), if enc { ".enc" } else { "" })
            );
            let p = z.parse().unwrap();
            assert_eq!((p.name.as_str(), p.archive, p.enc), ("my.dir", Some(Compression::Zstd), enc));
            assert_eq!((z.archive(), z.is_enc()), (Some(Compression::Zstd), enc));
        }
        // A raw backup of a file named like an archive keeps its name: `x.tar` is no archive suffix.
        let p = StoredName::from_key("x.tar.20200101000000").parse().unwrap();
        assert_eq!((p.name.as_str(), p.archive), ("x.tar", None));
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert!("lz4".parse::<Compression>().is_err());
    }

    #[test]
    fn parses_legacy_and_plain_names() {
        let p = StoredName::from_key("name20120927093000.tgz").parse().unwrap();
        assert_eq!(
            (p.name.as_str(), p.date.as_str(), p.archive, p.enc),
            ("name", "20120927093000", Some(Compression::Gzip), false)
        );
        let p = StoredName::from_key("a.txt.20261122040810.enc").parse().unwrap();
        assert_eq!((p.name.as_str(), p.archive, p.enc), ("a.txt", None, true));
        assert!(StoredName::from_key("bakthat_glacier_inventory").parse().is_none());
        let inc = StoredName::incremental("site", 1_795_000_000, Compression::Gzip, true);
        let p = inc.parse().unwrap();
        assert_eq!((p.name.as_str(), p.archive, p.enc, p.incremental), ("site", Some(Compression::Gzip), true, true));
        assert!(inc.is_archive() && inc.is_enc() && inc.as_str().ends_with(".inc.tgz.enc"));
        let zst = StoredName::incremental("site", 1_795_000_000, Compression::Zstd, false);
        assert_eq!(zst.as_str(), format!("site.{}.inc.tar.zst", date_component(1_795_000_000)));
        assert!(zst.parse().unwrap().incremental);
        let plain = StoredName::new("site.inc", 1_795_000_000, Some(Compression::Gzip), false);
        assert!(!plain.parse().unwrap().incremental);
        assert_eq!(StoredName::from_key("a.inc.20261122040810.tgz").parse().unwrap().name, "a.inc");
    }

    #[test]
    fn tags_match_whole_words() {
        let r = BackupRecord {
            id: None,
            backend: Destination::Local,
            backend_hash: None,
            backup_date: 0,
            filename: "x".into(),
            is_deleted: false,
            last_updated: 0,
            metadata: serde_json::json!({}),
            size: 0,
            stored_filename: StoredName::from_key("x.20200101000000.tgz"),
            tags: "daily db".into(),
            store: Default::default(),
        };
        assert!(r.has_all_tags(&["db", "daily"]));
        assert!(!r.has_all_tags(&["d"]));
        assert!(!r.has_all_tags(&["db", "weekly"]));
    }
}

//! Browsing backups without reaching a store: the entries of one backup (`ls`), which backups hold a path (`find`),
//! what changed between two backups (`diff`), and totals (`stats`). Everything here reads the inventory and its
//! copies of the backups' entry indexes; nothing here talks to a terminal.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use super::restore::find;
use super::{Ctx, OpsError};
use crate::archive::index::{Entry, EntryKind, Index};
use crate::archive::{self, ArchiveError, Secret};
use crate::inventory::Query;
use crate::model::{utc, BackupRecord, Destination, Epoch};

/// The entry index of a backup, from the inventory's copy (`None`: the backup has none, as a raw payload or a 0.6
/// archive never read whole). An encrypted copy needs `secret`.
pub fn inventory_index(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Result<Option<Index>, OpsError> {
    let Some(bytes) = ctx.inventory.get_index(&record.stored_filename)? else { return Ok(None) };
    Ok(Some(archive::read_index_sidecar(&bytes, secret)?))
}

/// What `ls`, `find` and `diff` list of a backup: its entry index, or for an incremental backup the complete tree
/// at its time ([`super::incremental::chain_tree`], from the inventory's copies as well).
fn listing_index(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Result<Option<Index>, OpsError> {
    if record.parent().is_some() {
        return Ok(Some(super::incremental::chain_tree(ctx, record, secret)?.index));
    }
    inventory_index(ctx, record, secret)
}

/// [`listing_index`] for a backup that must have one.
fn required_index(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Result<Index, OpsError> {
    listing_index(ctx, record, secret)?.ok_or_else(|| OpsError::NoIndex { stored: record.stored_filename.to_string() })
}

/// One entry of a backup, as `ls --json` and `find --json` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Path inside the backup; its first component is the backup's basename.
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink` or `other`.
    pub kind: &'static str,
    /// Permission bits (e.g. 420 for 0644).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Seconds since the epoch, and the same as `YYYY-MM-DDTHH:MM:SSZ`.
    pub mtime: Epoch,
    pub mtime_utc: String,
    /// Symlink target, or the path a hard link points to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Listed {
    fn new(e: &Entry) -> Listed {
        Listed {
            path: String::from_utf8_lossy(&e.path).into_owned(),
            kind: kind_word(e.kind),
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            mtime: e.mtime,
            mtime_utc: iso(e.mtime),
            link: e.link.as_ref().map(|l| String::from_utf8_lossy(l).into_owned()),
        }
    }
}

/// An epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso(epoch: Epoch) -> String {
    utc(epoch).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn kind_word(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::HardLink => "hardlink",
        EntryKind::Other => "other",
    }
}

/// The entries of one backup.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub stored_filename: String,
    pub backup_date: Epoch,
    pub entries: Vec<Listed>,
}

/// Whether archive path `path` is `prefix` or under it (`prefix` without slashes at either end).
pub(super) fn under(path: &[u8], prefix: &[u8]) -> bool {
    prefix.is_empty() || path == prefix || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// The entries of the backup `name` refers to (its newest backup, or an exact stored name), limited to the subtree
/// at `path` (a path inside the backup, starting with its basename, as `ls` prints them). A path not in the backup
/// is [`OpsError::NotInBackup`].
pub fn ls(
    ctx: &Ctx,
    name: &str,
    destination: Option<Destination>,
    path: Option<&str>,
    secret: Option<&Secret>,
) -> Result<Listing, OpsError> {
    let record = find(ctx, name, destination)?;
    let index = required_index(ctx, &record, secret)?;
    let prefix = path.unwrap_or("").trim_matches('/').as_bytes();
    let entries: Vec<Listed> = index.entries.iter().filter(|e| under(&e.path, prefix)).map(Listed::new).collect();
    if entries.is_empty() && !prefix.is_empty() {
        return Err(OpsError::NotInBackup {
            path: path.unwrap_or_default().to_string(),
            stored: record.stored_filename.to_string(),
        });
    }
    Ok(Listing { stored_filename: record.stored_filename.to_string(), backup_date: record.backup_date, entries })
}

/// A path found in a backup.
#[derive(Debug, Serialize)]
pub struct Found {
    pub stored_filename: String,
    pub backup_date: Epoch,
    pub backup_date_utc: String,
    #[serde(flatten)]
    pub entry: Listed,
}

/// Backups whose indexes could not be searched, with why (encrypted without a password, no index copy).
pub type Skipped = Vec<(String, String)>;

/// The non-deleted backups (of `name` only, when given), oldest first.
fn backups(ctx: &Ctx, name: Option<&str>) -> Result<Vec<BackupRecord>, OpsError> {
    let q = Query { exact_name: name.map(str::to_string), ..Query::default() };
    let mut rows = ctx.inventory.search(&q)?;
    rows.sort_by_key(|r| (r.backup_date, r.stored_filename.to_string()));
    Ok(rows)
}

/// Compiles a `find` pattern: a glob (`*`, `?`, `[..]`, `{a,b}`; `*` crosses `/`) on the whole path or on the
/// basename.
fn matcher(pattern: &str) -> Result<GlobMatcher, OpsError> {
    let glob = GlobBuilder::new(pattern).backslash_escape(true).build().map_err(|e| OpsError::Io {
        context: format!("bad pattern {pattern:?}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.kind().to_string()),
    })?;
    Ok(glob.compile_matcher())
}

/// The entries matching `pattern` (a glob on the path or its basename, as restic's `find`) in every backup (of
/// `name` only, when given), oldest backup first. Backups whose index cannot be read are listed in the second
/// half of the answer, not errors.
pub fn find_paths(
    ctx: &Ctx,
    pattern: &str,
    name: Option<&str>,
    secret: Option<&Secret>,
) -> Result<(Vec<Found>, Skipped), OpsError> {
    let m = matcher(pattern)?;
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for record in backups(ctx, name)?.into_iter().filter(|r| r.stored_filename.is_archive()) {
        let index = match readable_index(ctx, &record, secret, &mut skipped, true)? {
            Some(i) => i,
            None => continue,
        };
        for e in &index.entries {
            let path = String::from_utf8_lossy(&e.path);
            let base = path.rsplit('/').next().unwrap_or(&path);
            if m.is_match(path.as_ref()) || m.is_match(base) {
                found.push(Found {
                    stored_filename: record.stored_filename.to_string(),
                    backup_date: record.backup_date,
                    backup_date_utc: iso(record.backup_date),
                    entry: Listed::new(e),
                });
            }
        }
    }
    Ok((found, skipped))
}

/// The index of a backup when it can be read (with `tree`, what [`listing_index`] lists; without, its archive's own
/// entries); when not for want of a password or a copy, notes why in `skipped`.
fn readable_index(
    ctx: &Ctx,
    record: &BackupRecord,
    secret: Option<&Secret>,
    skipped: &mut Skipped,
    tree: bool,
) -> Result<Option<Index>, OpsError> {
    let stored = record.stored_filename.to_string();
    let index = if tree { listing_index(ctx, record, secret) } else { inventory_index(ctx, record, secret) };
    match index {
        Ok(Some(i)) => Ok(Some(i)),
        Ok(None) => {
            skipped.push((stored, "no entry index in the inventory (a bakthat 0.6 archive)".into()));
            Ok(None)
        }
        Err(OpsError::Archive(ArchiveError::PasswordNeeded)) => {
            skipped.push((stored, "encrypted; give its password to search it".into()));
            Ok(None)
        }
        Err(OpsError::Archive(e)) => {
            skipped.push((stored, crate::error_chain(&e)));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One path that differs between two backups.
#[derive(Debug, Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `M` changed.
    pub change: &'static str,
    pub path: String,
    /// For `M`: what changed (`size`, `mtime`, `mode`, `type`, `link`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
}

/// What changed from backup `a` to backup `b`.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub from: String,
    pub to: String,
    pub changes: Vec<Change>,
}

/// Compares the indexes of two backups (each a name, for its newest backup, or an exact stored name), by path.
pub fn diff(ctx: &Ctx, a: &str, b: &str, secret: Option<&Secret>) -> Result<Diff, OpsError> {
    let (ra, rb) = (find(ctx, a, None)?, find(ctx, b, None)?);
    let (ia, ib) = (required_index(ctx, &ra, secret)?, required_index(ctx, &rb, secret)?);
    let old: BTreeMap<&[u8], &Entry> = ia.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let new: BTreeMap<&[u8], &Entry> = ib.entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut paths: Vec<&[u8]> = old.keys().chain(new.keys()).copied().collect();
    paths.sort();
    paths.dedup();
    let mut changes = Vec::new();
    for p in paths {
        let (change, fields) = match (old.get(p), new.get(p)) {
            (None, Some(_)) => ("+", Vec::new()),
            (Some(_), None) => ("-", Vec::new()),
            (Some(x), Some(y)) => {
                let fields = changed_fields(x, y);
                if fields.is_empty() {
                    continue;
                }
                ("M", fields)
            }
            (None, None) => continue,
        };
        changes.push(Change { change, path: String::from_utf8_lossy(p).into_owned(), fields });
    }
    Ok(Diff { from: ra.stored_filename.to_string(), to: rb.stored_filename.to_string(), changes })
}

fn changed_fields(x: &Entry, y: &Entry) -> Vec<&'static str> {
    let mut f = Vec::new();
    if x.kind != y.kind {
        f.push("type");
    }
    if x.size != y.size {
        f.push("size");
    }
    if x.mtime != y.mtime {
        f.push("mtime");
    }
    if x.mode & 0o7777 != y.mode & 0o7777 {
        f.push("mode");
    }
    if x.link != y.link {
        f.push("link");
    }
    f
}

/// Totals over a set of backups.
#[derive(Debug, Default, Serialize)]
pub struct NameStats {
    pub backups: u64,
    /// Bytes of the stored objects.
    pub stored_bytes: u64,
    /// Files and their plain bytes, over the backups whose index (or raw size) is known.
    pub files: u64,
    pub plain_bytes: u64,
    /// Stored bytes of the backups whose plain size is known (the denominator of `ratio`).
    #[serde(skip)]
    known_stored: u64,
    /// Plain bytes / stored bytes, over the backups whose plain size is known.
    pub ratio: Option<f64>,
    /// How many backups' plain size is unknown (encrypted without a password, 0.6 archives without an index).
    pub unknown: u64,
    pub oldest: Option<Epoch>,
    pub newest: Option<Epoch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_utc: Option<String>,
}

/// Per store.
#[derive(Debug, Serialize)]
pub struct StoreStats {
    pub store: String,
    pub backups: u64,
    pub stored_bytes: u64,
}

/// What `stats` reports: everything, per store, per name.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub total: NameStats,
    pub stores: Vec<StoreStats>,
    pub names: BTreeMap<String, NameStats>,
}

impl NameStats {
    fn add(&mut self, r: &BackupRecord, plain: Option<(u64, u64)>) {
        self.backups += 1;
        self.stored_bytes += r.size;
        match plain {
            Some((files, bytes)) => {
                self.files += files;
                self.plain_bytes += bytes;
                self.known_stored += r.size;
            }
            None => self.unknown += 1,
        }
        self.oldest = Some(self.oldest.map_or(r.backup_date, |o| o.min(r.backup_date)));
        self.newest = Some(self.newest.map_or(r.backup_date, |n| n.max(r.backup_date)));
    }

    fn finish(&mut self) {
        self.ratio = (self.known_stored > 0).then(|| self.plain_bytes as f64 / self.known_stored as f64);
        self.oldest_utc = self.oldest.map(iso);
        self.newest_utc = self.newest.map(iso);
    }
}

/// Totals over the non-deleted backups of the inventory, from the rows and the index copies.
pub fn stats(ctx: &Ctx, secret: Option<&Secret>) -> Result<Stats, OpsError> {
    let mut total = NameStats::default();
    let mut stores: BTreeMap<String, StoreStats> = BTreeMap::new();
    let mut names: BTreeMap<String, NameStats> = BTreeMap::new();
    let mut skipped = Vec::new();
    for r in backups(ctx, None)? {
        let plain = if r.stored_filename.is_archive() {
            readable_index(ctx, &r, secret, &mut skipped, false)?.map(|i| {
                let files = i.entries.iter().filter(|e| e.kind == EntryKind::File);
                files.fold((0, 0), |(n, b), e| (n + 1, b + e.size))
            })
        } else {
            r.plain_size().map(|s| (1, s))
        };
        total.add(&r, plain);
        names.entry(r.filename.clone()).or_default().add(&r, plain);
        let store = r.backend.to_string();
        let s = stores.entry(store.clone()).or_insert(StoreStats { store, backups: 0, stored_bytes: 0 });
        s.backups += 1;
        s.stored_bytes += r.size;
    }
    total.finish();
    names.values_mut().for_each(NameStats::finish);
    Ok(Stats { total, stores: stores.into_values().collect(), names })
}

//! `check`: the whole inventory against its stores, as restic's `check` does for a repository. Every live row's
//! archive is in its store, index sidecars are there and match the inventory's copy, journal entries can be read,
//! archives without a row (a `kill -9` between storing and recording leaves them) are found, and, on request, the
//! contents of all or a deterministic part of the backups are read and verified. [`adopt`] records such an archive.
//!
//! Not here: printing, prompts and exit codes (`cli/check.rs`); the per-backup read itself ([`super::restore`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use super::restore::{self, SidecarState};
use super::{Ctx, OpsError};
use crate::archive::{self, crypto, Secret};
use crate::inventory::Query;
use crate::journal::JOURNAL_PREFIX;
use crate::model::{BackupRecord, Destination, Encryption, Format, NewMetadata, StoredName};
use crate::storage::{Backend, Retrieval, StorageError};

use super::backup::INDEX_SUFFIX;

/// How much of the backups' contents to read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// None: objects, sidecars and the journal only.
    #[default]
    None,
    /// Every backup.
    All,
    /// A deterministic part of the backups, chosen by a hash of the stored name.
    Subset(Subset),
}

/// A part of the backups, the same on every run: `n/m` is the n-th of m parts (together the m parts are every
/// backup), `p%` the backups whose name hashes below p percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    Part { n: u64, m: u64 },
    Percent(f64),
}

impl Subset {
    /// Parses `n/m` (1 <= n <= m) or `p%` (0 < p <= 100).
    pub fn parse(s: &str) -> Result<Subset, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Subset::Percent(p)),
                _ => Err(format!("{s:?}: a percentage must be above 0% and at most 100%")),
            };
        }
        let parsed = s.split_once('/').and_then(|(n, m)| Some((n.trim().parse().ok()?, m.trim().parse().ok()?)));
        match parsed {
            Some((n, m)) if n >= 1 && n <= m => Ok(Subset::Part { n, m }),
            _ => Err(format!("{s:?} is not a subset such as 1/5 (the first of five parts) or 10%")),
        }
    }

    /// Whether a stored name falls into this part.
    pub fn contains(&self, stored: &StoredName) -> bool {
        let h = fnv1a(stored.as_str().as_bytes());
        match *self {
            Subset::Part { n, m } => h % m == n - 1,
            Subset::Percent(p) => ((h % 1_000_000) as f64) < p * 10_000.0,
        }
    }
}

/// FNV-1a: a stable hash (the same in every build), so that a subset is the same on every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// What to check.
#[derive(Default)]
pub struct CheckOptions {
    /// Only these destinations; when empty, the profile's default destination and every destination with rows.
    pub destinations: Vec<Destination>,
    pub read_data: ReadData,
    /// Needed to read encrypted journal entries, sidecars and contents.
    pub password: Option<Arc<Secret>>,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The stored name, journal key or destination it concerns.
    pub subject: String,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The destination's store could not be opened or listed.
    Store(String),
    /// A live row's archive is not in its store.
    Missing { destination: Destination },
    /// The archive's `.index` sidecar is not in the store.
    SidecarMissing,
    /// The sidecar differs from the inventory's copy, or from the archive, or does not decode.
    SidecarDiffers(String),
    /// Reading the contents failed (damage, tampering, a wrong password).
    Data(String),
    /// The inventory's copy of the entry index does not match the archive.
    IndexDiffers,
    /// A journal entry cannot be read or authenticated.
    Journal(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.subject;
        match &self.kind {
            ProblemKind::Store(why) => write!(f, "store {s}: {why}"),
            ProblemKind::Missing { destination } => write!(f, "{s}: missing from {destination}"),
            ProblemKind::SidecarMissing => write!(f, "{s}: its index sidecar {s}{INDEX_SUFFIX} is missing"),
            ProblemKind::SidecarDiffers(why) => write!(f, "{s}: its index sidecar {s}{INDEX_SUFFIX} {why}"),
            ProblemKind::Data(why) => write!(f, "{s}: {why}"),
            ProblemKind::IndexDiffers => {
                write!(f, "{s}: reads back fine, but its entry index in the inventory differs")
            }
            ProblemKind::Journal(why) => write!(f, "journal entry {s}: {why}"),
        }
    }
}

/// A complete archive in a store that no inventory row names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub destination: Destination,
    pub stored: StoredName,
    /// Whether the store's journal has an entry for it (then `bakthat sync` would also bring its row back).
    pub journaled: bool,
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Live rows checked.
    pub rows: usize,
    /// Sidecars compared.
    pub sidecars: usize,
    /// Journal entries read.
    pub journal_entries: usize,
    /// Encrypted journal entries left unread for want of the password.
    pub journal_locked: usize,
    /// Backups whose contents were read and verified.
    pub read: usize,
    /// Backups whose contents were to be read but were not, and why (encrypted without the password, in cold
    /// storage): not a failure, since nothing was found wrong.
    pub not_read: Vec<(StoredName, String)>,
    pub problems: Vec<Problem>,
    pub orphans: Vec<Orphan>,
}

impl CheckReport {
    /// Nothing wrong and no orphan.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.orphans.is_empty()
    }

    /// One line: what was checked, and how many problems.
    pub fn summary(&self) -> String {
        let locked = match self.journal_locked {
            0 => String::new(),
            n => format!(" ({n} encrypted ones not read: no password)"),
        };
        let not_read = match self.not_read.len() {
            0 => String::new(),
            n => format!(" ({n} not read)"),
        };
        format!(
            "{} backups, {} sidecars, {} journal entries{locked}, contents of {} read{not_read}: {} problems, {} archives without a row",
            self.rows,
            self.sidecars,
            self.journal_entries,
            self.read,
            self.problems.len(),
            self.orphans.len()
        )
    }

    fn problem(&mut self, subject: impl fmt::Display, kind: ProblemKind) {
        self.problems.push(Problem { subject: subject.to_string(), kind });
    }
}

/// Checks the inventory against its stores.
pub fn check(ctx: &Ctx, opts: &CheckOptions) -> Result<CheckReport, OpsError> {
    let all = ctx.inventory.search(&Query { include_deleted: true, ..Query::default() })?;
    let known: BTreeSet<&StoredName> = all.iter().map(|r| &r.stored_filename).collect();
    let mut by_dest: BTreeMap<Destination, Vec<&BackupRecord>> = BTreeMap::new();
    // The profile's own store is always looked at, so that archives without rows are found even by an empty (lost,
    // or new) inventory.
    let wanted = if opts.destinations.is_empty() { vec![ctx.destination(None)] } else { opts.destinations.clone() };
    for d in wanted {
        by_dest.entry(d).or_default();
    }
    // Rows of other stores (another profile's, or a local_path this profile had before) are not this profile's to
    // check: their archives are not in its stores. `check -p PROFILE` checks another profile's.
    let stores = ctx.stores();
    let own = |r: &BackupRecord| r.store.is_unknown() || stores.identity(r.backend).is_ok_and(|id| id == r.store);
    for r in all.iter().filter(|r| !r.is_deleted && own(r)) {
        if opts.destinations.is_empty() || opts.destinations.contains(&r.backend) {
            by_dest.entry(r.backend).or_default().push(r);
        }
    }
    let mut report = CheckReport::default();
    let mut journals_read = BTreeSet::new();
    let password = opts.password.as_deref();
    for (dest, rows) in &by_dest {
        let backend = match ctx.stores().open(*dest) {
            Ok(b) => b,
            Err(e) => {
                report.problem(dest, ProblemKind::Store(crate::error_chain(&e)));
                continue;
            }
        };
        let listed: HashMap<String, u64> = match backend.list("") {
            Ok(objects) => objects.into_iter().map(|o| (o.key, o.size)).collect(),
            Err(e) => {
                report.problem(dest, ProblemKind::Store(crate::error_chain(&e)));
                continue;
            }
        };
        let journal = super::journal_for(ctx, *dest, &backend)?;
        // Journal entries (a journal store may serve two destinations: read it once).
        let mut journaled = BTreeSet::new();
        if let Some(j) = &journal {
            if journals_read.insert(j.describe()) {
                read_journal(j.as_ref(), password, &mut report, &mut journaled)?;
            }
        }
        for record in rows {
            report.rows += 1;
            let stored = &record.stored_filename;
            if !listed.contains_key(stored.as_str()) {
                report.problem(stored, ProblemKind::Missing { destination: *dest });
                continue;
            }
            if let Some(j) = &journal {
                check_sidecar(ctx, j.as_ref(), record, password, &mut report)?;
            }
            let wanted = match opts.read_data {
                ReadData::None => false,
                ReadData::All => true,
                ReadData::Subset(s) => s.contains(stored),
            };
            if wanted {
                read_contents(ctx, backend.as_ref(), record, password, &mut report)?;
            }
        }
        for key in listed.keys() {
            let stored = StoredName::from_key(key.as_str());
            if key.starts_with(JOURNAL_PREFIX) || key.ends_with(INDEX_SUFFIX) || known.contains(&stored) {
                continue;
            }
            if stored.parse().is_some() {
                let journaled = journaled.contains(&stored);
                report.orphans.push(Orphan { destination: *dest, stored, journaled });
            }
        }
    }
    report.orphans.sort_by(|a, b| (&a.destination, &a.stored).cmp(&(&b.destination, &b.stored)));
    Ok(report)
}

/// Reads every journal entry; notes the stored names that backup entries describe.
fn read_journal(
    journal: &dyn Backend,
    password: Option<&Secret>,
    report: &mut CheckReport,
    journaled: &mut BTreeSet<StoredName>,
) -> Result<(), OpsError> {
    for o in journal.list(JOURNAL_PREFIX)? {
        let bytes = match read_all(journal, &o.key) {
            Ok(b) => b,
            Err(e) => {
                report.problem(&o.key, ProblemKind::Journal(crate::error_chain(&e)));
                continue;
            }
        };
        let decoded = match crate::journal::decode_entry(&bytes, password) {
            Err(crate::journal::DecodeError::NeedsPassword) => {
                report.journal_locked += 1;
                continue;
            }
            other => other,
        };
        report.journal_entries += 1;
        match decoded {
            Ok(d) => {
                if d.entry.kind == crate::journal::EntryKind::Backup {
                    journaled.insert(d.entry.record.stored_filename);
                }
            }
            Err(why) => report.problem(&o.key, ProblemKind::Journal(why.to_string())),
        }
    }
    Ok(())
}

/// Compares the sidecar in the store with the inventory's copy of the index.
fn check_sidecar(
    ctx: &Ctx,
    journal: &dyn Backend,
    record: &BackupRecord,
    password: Option<&Secret>,
    report: &mut CheckReport,
) -> Result<(), OpsError> {
    let inventory_copy = ctx.inventory.get_index(&record.stored_filename)?;
    let state = restore::stored_sidecar(journal, record, inventory_copy.as_deref(), None, password)?;
    if state != SidecarState::NotExpected {
        report.sidecars += 1;
    }
    match state {
        SidecarState::Missing => report.problem(&record.stored_filename, ProblemKind::SidecarMissing),
        SidecarState::Differs(why) => report.problem(&record.stored_filename, ProblemKind::SidecarDiffers(why)),
        SidecarState::Matches | SidecarState::NotExpected | SidecarState::Unchecked => {}
    }
    Ok(())
}

/// Reads and verifies one backup's contents, if it can be read now (a cold store's backup is not thawed for this).
fn read_contents(
    ctx: &Ctx,
    backend: &dyn Backend,
    record: &BackupRecord,
    password: Option<&Secret>,
    report: &mut CheckReport,
) -> Result<(), OpsError> {
    let stored = &record.stored_filename;
    if record.is_enc() && password.is_none() {
        report.not_read.push((stored.clone(), "encrypted; give the password".into()));
        return Ok(());
    }
    match backend.retrieval_state(stored.as_str())? {
        Retrieval::Ready => {}
        _ => {
            let why = format!("in cold storage; `bakthat verify {stored}` starts its retrieval");
            report.not_read.push((stored.clone(), why));
            return Ok(());
        }
    }
    match restore::verify_record(ctx, record.clone(), password) {
        Ok(out) => {
            report.read += 1;
            if out.index_matches == Some(false) {
                report.problem(stored, ProblemKind::IndexDiffers);
            }
            if let SidecarState::Differs(why) = out.sidecar {
                // The cheap check above compared the sidecar with the inventory's copy; this is against the archive.
                if !report.problems.iter().any(|p| p.subject == stored.as_str()) {
                    report.problem(stored, ProblemKind::SidecarDiffers(why));
                }
            }
        }
        Err(OpsError::Interrupted) => return Err(OpsError::Interrupted),
        Err(e) => report.problem(stored, ProblemKind::Data(crate::error_chain(&e))),
    }
    Ok(())
}

fn read_all(store: &dyn Backend, key: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    store.get(key)?.read_to_end(&mut out).map_err(|e| StorageError::io(store.describe(), key, e))?;
    Ok(out)
}

/// Records an archive that is in the store but has no row (see [`Orphan`]): reads it whole (every MAC and CRC),
/// keeps its sidecar when the sidecar matches what was read (else indexes it from the read, as for a 0.6 archive),
/// then journals and records it like a new backup. Refuses a name that already has a row.
pub fn adopt(
    ctx: &Ctx,
    destination: Destination,
    stored: &StoredName,
    password: Option<&Secret>,
) -> Result<BackupRecord, OpsError> {
    if ctx.inventory.get(stored)?.is_some() {
        return Err(OpsError::AlreadyRecorded { stored: stored.to_string() });
    }
    let parsed =
        stored.parse().ok_or_else(|| OpsError::NoMatch { name: stored.to_string(), destination: Some(destination) })?;
    let backend = ctx.stores().open(destination)?;
    let info = backend
        .head(stored.as_str())?
        .ok_or_else(|| OpsError::NoMatch { name: stored.to_string(), destination: Some(destination) })?;
    let journal = super::journal_for(ctx, destination, &backend)?;
    let hints = archive::Hints::from_name(stored.as_str(), stored.is_enc());
    if hints.encrypted && password.is_none() {
        return Err(OpsError::Archive(archive::ArchiveError::PasswordNeeded));
    }
    let date = chrono::NaiveDateTime::parse_from_str(&parsed.date, "%Y%m%d%H%M%S")
        .map(|d| d.and_utc().timestamp())
        .unwrap_or_else(|_| ctx.now());
    let stream = backend.get(stored.as_str())?;
    let legacy = if hints.encrypted { Encryption::LegacyBlowfish } else { Encryption::None };
    let mut metadata = NewMetadata { client: ctx.host.clone(), encryption: legacy, ..NewMetadata::default() };
    let mut sidecar = None;
    if hints.archive.is_some() {
        let (plain, found) = archive::decode(stream, hints, password).map_err(OpsError::from)?;
        let tar = archive::decompress_payload(plain).map_err(OpsError::from)?;
        let mut rebuilt = archive::index::Index::from_tar_stream(tar)
            .map_err(|e| OpsError::from(archive::ArchiveError::from_io(e)))?;
        if found == archive::Found::V1 {
            metadata.encryption = Encryption::V1;
        }
        let stored_copy = journal.as_ref().and_then(|j| read_all(j.as_ref(), &format!("{stored}{INDEX_SUFFIX}")).ok());
        let genuine = stored_copy
            .filter(|bytes| archive::read_index_sidecar(bytes, password).is_ok_and(|i| i.entries == rebuilt.entries));
        sidecar = Some(match genuine {
            Some(bytes) => {
                metadata.format = Some(Format::Archive);
                bytes
            }
            None => {
                rebuilt.stored_len = info.size;
                let enc = match password {
                    Some(secret) if hints.encrypted => Some(archive::Encryption {
                        master: super::backup::master_key(ctx, secret)?,
                        chunk_size: crypto::DEFAULT_CHUNK_SIZE,
                    }),
                    _ => None,
                };
                archive::index_sidecar(&rebuilt, enc.as_ref())
            }
        });
    } else {
        let (mut plain, found) = archive::decode(stream, hints, password).map_err(OpsError::from)?;
        let n = io::copy(&mut plain, &mut io::sink()).map_err(|e| OpsError::from(archive::ArchiveError::from_io(e)))?;
        metadata.format = Some(Format::Raw);
        metadata.plain_size = Some(n);
        if found == archive::Found::V1 {
            metadata.encryption = Encryption::V1;
        }
    }
    let record = BackupRecord {
        id: None,
        backend: destination,
        backend_hash: Some(ctx.stores().backend_hash(destination)?),
        backup_date: date,
        filename: parsed.name,
        is_deleted: false,
        last_updated: ctx.now(),
        metadata: metadata.to_json(),
        size: info.size,
        stored_filename: stored.clone(),
        tags: String::new(),
        store: ctx.stores().identity(destination)?,
    };
    let master = match password {
        Some(secret) if hints.encrypted => Some(super::backup::master_key(ctx, secret)?),
        _ => None,
    };
    let mut entry_key = None;
    super::backup::finish(
        ctx,
        backend.as_ref(),
        journal.as_deref(),
        master.as_deref(),
        &record,
        sidecar.as_deref(),
        &mut entry_key,
    )?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_partition_the_backups_the_same_way_every_time() {
        assert_eq!(Subset::parse("2/5"), Ok(Subset::Part { n: 2, m: 5 }));
        assert_eq!(Subset::parse("10%"), Ok(Subset::Percent(10.0)));
        for bad in ["0/5", "6/5", "5", "0%", "101%", "x/y", "/"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
        let names: Vec<StoredName> = (0..1000)
            .map(|i| StoredName::new(&format!("b{i}"), 1_700_000_000 + i, Some(crate::model::Compression::Gzip), false))
            .collect();
        // The m parts cover every backup exactly once.
        for n in &names {
            let parts = (1..=3).filter(|k| Subset::Part { n: *k, m: 3 }.contains(n)).count();
            assert_eq!(parts, 1, "{n}");
        }
        let some = names.iter().filter(|n| Subset::Percent(10.0).contains(n)).count();
        assert!((50..=150).contains(&some), "about 10% of 1000, got {some}");
        assert!(names.iter().all(|n| Subset::Percent(100.0).contains(n)));
        let again = names.iter().filter(|n| Subset::Percent(10.0).contains(n)).count();
        assert_eq!(some, again, "deterministic");
    }
}

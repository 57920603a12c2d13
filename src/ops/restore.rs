//! `restore` and `verify`: find a backup in the inventory, read it from its store, check every byte on the way.

use std::fs;
use std::io::{self, Read as _};
use std::path::PathBuf;
use std::sync::Arc;

use super::{ensure_readable, hints, Ctx, OpsError, Watched};
use crate::archive::extract::{ExtractOptions, ExtractSummary};
use crate::archive::{self, Secret};
use crate::model::{BackupRecord, Destination, FileName, StoreId};
use crate::storage::{Backend, StorageError};

/// What to restore and where.
#[derive(Default)]
pub struct RestoreOptions {
    /// A backup name (the newest backup of it) or an exact stored name.
    pub name: String,
    /// Only look in this destination.
    pub destination: Option<Destination>,
    /// Where to restore; the current directory when `None`.
    pub to: Option<PathBuf>,
    pub force: bool,
    pub password: Option<Arc<Secret>>,
    /// Only these paths of the backup (files or subtrees, as `ls` prints them); all when empty.
    pub paths: Vec<String>,
}

/// What a restore wrote.
#[derive(Debug)]
pub struct RestoreOutcome {
    pub record: BackupRecord,
    /// The paths created in the destination directory.
    pub written: Vec<PathBuf>,
    pub entries: u64,
    pub bytes: u64,
    /// Restored files (relative to the destination) whose read failed part way at backup time: their content ends
    /// in zeros that were not in the original. Each was also reported as a warning.
    pub incomplete: Vec<PathBuf>,
}

/// Finds the backup a name refers to (the newest non-deleted one): first among the rows held by the profile's own
/// stores (or whose store is unknown), then among all rows, so that a row of another store is named with its store
/// when it is opened ([`crate::stores::Stores::open_record`]) rather than reported missing.
pub(crate) fn find(ctx: &Ctx, name: &str, destination: Option<Destination>) -> Result<BackupRecord, OpsError> {
    let mut own = ctx.stores().identities();
    own.push(StoreId::unknown());
    let found = match ctx.inventory.newest_in(name, destination, Some(&own))? {
        Some(r) => Some(r),
        None => ctx.inventory.newest(name, destination)?,
    };
    found.ok_or_else(|| OpsError::NoMatch { name: name.to_string(), destination })
}

/// Opens the record's store and checks the object is readable now (cold stores: starts a retrieval once).
fn open(ctx: &Ctx, record: &BackupRecord) -> Result<Arc<dyn Backend>, OpsError> {
    let backend = ctx.stores().open_record(record)?;
    ensure_readable(ctx, record, backend.as_ref())?;
    Ok(backend)
}

/// Restores a backup.
pub fn restore(ctx: &Ctx, opts: &RestoreOptions) -> Result<RestoreOutcome, OpsError> {
    let record = find(ctx, &opts.name, opts.destination)?;
    let dest = match &opts.to {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| OpsError::Io { context: "finding the current directory".into(), source: e })?,
    };
    fs::create_dir_all(&dest)
        .map_err(|e| OpsError::Io { context: format!("creating {}", dest.display()), source: e })?;
    if record.in_chain() {
        // A chain's member: its tree at that time, from the archives that hold each file (see chain_restore).
        return super::chain_restore::restore_chain(ctx, record, &dest, opts);
    }
    let backend = open(ctx, &record)?;
    let h = hints(&record);
    if h.encrypted && opts.password.is_none() {
        return Err(OpsError::Archive(archive::ArchiveError::PasswordNeeded));
    }
    if !opts.paths.is_empty() {
        let mut out = super::restore_paths::restore_paths(ctx, record, backend.as_ref(), &dest, opts)?;
        out.incomplete = incomplete_entries(ctx, &out.record, opts.password.as_deref());
        out.incomplete.retain(|p| opts.paths.iter().any(|q| p.starts_with(q.trim_matches('/'))));
        warn_incomplete(ctx, &dest, &out.incomplete);
        return Ok(out);
    }
    let meter = ctx.reporter.start(&format!("restoring {}", record.stored_filename), Some(record.size));
    let stream =
        Watched { inner: backend.get(record.stored_filename.as_str())?, meter: Some(meter), cancel: &ctx.cancel };
    let secret = opts.password.as_deref();
    if h.archive.is_some() {
        let summary: ExtractSummary = archive::restore_archive(
            stream,
            h,
            secret,
            &dest,
            &ExtractOptions { overwrite: opts.force, preserve_owner: false },
        )
        .map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
        for (path, why) in &summary.skipped {
            ctx.reporter.warn(&format!("{}: {why}", path.display()));
        }
        let incomplete = incomplete_entries(ctx, &record, secret);
        warn_incomplete(ctx, &dest, &incomplete);
        let written = summary.top_level.iter().map(|p| dest.join(p)).collect();
        return Ok(RestoreOutcome { record, written, entries: summary.entries, bytes: summary.bytes, incomplete });
    }
    // A payload stored as is: written to <dest>/<name> under a temporary name, renamed when complete. The name is
    // a row's, which may have come from a journal, a sync server or a 0.6 database: confined like a tar entry.
    let target = FileName::new(&record.filename)
        .and_then(|n| n.target_in(&dest))
        .map_err(|reason| OpsError::UnsafeName { name: record.filename.clone(), reason })?;
    if !opts.force && fs::symlink_metadata(&target).is_ok() {
        return Err(OpsError::Exists { path: target });
    }
    let (mut plain, _) = archive::decode(stream, h, secret).map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
    let io_err = |e: io::Error| OpsError::Io { context: format!("writing {}", target.display()), source: e };
    let mut tmp = tempfile::Builder::new().prefix(".bakthat-restore-").tempfile_in(&dest).map_err(io_err)?;
    let bytes = io::copy(&mut plain, tmp.as_file_mut())
        .map_err(|e| OpsError::from(archive::ArchiveError::from_io(e)).classify(&ctx.cancel))?;
    tmp.as_file().sync_all().map_err(io_err)?;
    if opts.force {
        tmp.persist(&target).map_err(|e| io_err(e.error))?;
    } else {
        tmp.persist_noclobber(&target).map_err(|e| io_err(e.error))?;
    }
    Ok(RestoreOutcome { record, written: vec![target], entries: 1, bytes, incomplete: Vec::new() })
}

/// Warns about each restored file that was read incompletely at backup time.
fn warn_incomplete(ctx: &Ctx, dest: &std::path::Path, incomplete: &[PathBuf]) {
    for path in incomplete {
        ctx.reporter.warn(&format!(
            "{}: could not be read completely when it was backed up; the restored file ends in zeros that were not \
             in the original",
            dest.join(path).display()
        ));
    }
}

/// The files of a backup whose read failed part way at backup time (marked in its entry index; see
/// [`crate::archive::index::DAMAGED_FLAG`]). An index that cannot be read marks nothing: the data was checked anyway.
fn incomplete_entries(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Vec<PathBuf> {
    let Ok(Some(index)) = super::browse::inventory_index(ctx, record, secret) else { return Vec::new() };
    index
        .entries
        .iter()
        .filter(|e| e.damaged)
        .filter_map(|e| crate::model::relative_path(&e.path).ok().flatten())
        .collect()
}

/// What verify found.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub record: BackupRecord,
    pub entries: usize,
    /// Whether the inventory's copy of the entry index matched the archive (None: no index to compare).
    pub index_matches: Option<bool>,
    /// How the `.index` sidecar in the store compares with the archive and the inventory's copy.
    pub sidecar: SidecarState,
}

/// How a backup's `.index` sidecar in the store compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarState {
    /// The backup has no sidecar in the store by design (raw payloads, 0.6 archives, Glacier without an S3 bucket).
    NotExpected,
    /// It is there and equal to what it was compared with.
    Matches,
    Missing,
    /// It does not decode, or is not the sidecar of this archive; says how.
    Differs(String),
    /// Encrypted, and no password to decode it with.
    Unchecked,
}

/// Downloads a backup and checks every MAC, every gzip CRC and the tar structure, and its index sidecar, writing no
/// files.
pub fn verify(
    ctx: &Ctx,
    name: &str,
    destination: Option<Destination>,
    password: Option<&Secret>,
) -> Result<VerifyOutcome, OpsError> {
    verify_record(ctx, find(ctx, name, destination)?, password)
}

/// [`verify`] of one row.
pub(crate) fn verify_record(
    ctx: &Ctx,
    record: BackupRecord,
    password: Option<&Secret>,
) -> Result<VerifyOutcome, OpsError> {
    let backend = open(ctx, &record)?;
    let h = hints(&record);
    let meter = ctx.reporter.start(&format!("verifying {}", record.stored_filename), Some(record.size));
    let stream =
        Watched { inner: backend.get(record.stored_filename.as_str())?, meter: Some(meter), cancel: &ctx.cancel };
    if h.archive.is_none() {
        let (mut plain, _) =
            archive::decode(stream, h, password).map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
        io::copy(&mut plain, &mut io::sink())
            .map_err(|e| OpsError::from(archive::ArchiveError::from_io(e)).classify(&ctx.cancel))?;
        return Ok(VerifyOutcome { record, entries: 1, index_matches: None, sidecar: SidecarState::NotExpected });
    }
    let mut rebuilt =
        archive::verify_archive(stream, h, password).map_err(|e| OpsError::from(e).classify(&ctx.cancel))?;
    let inventory_copy = ctx.inventory.get_index(&record.stored_filename)?;
    let sidecar = match super::journal_for(ctx, record.backend, &backend)? {
        Some(store) => stored_sidecar(store.as_ref(), &record, inventory_copy.as_deref(), Some(&rebuilt), password)?,
        None => SidecarState::NotExpected,
    };
    let index_matches = match inventory_copy {
        Some(bytes) => Some(archive::read_index_sidecar(&bytes, password)?.entries == rebuilt.entries),
        None => {
            // A legacy (0.6) archive has no index: keep the one this full read built, encrypted like the archive.
            rebuilt.stored_len = record.size;
            let enc = match password {
                Some(secret) if h.encrypted => Some(archive::Encryption {
                    master: super::backup::master_key(ctx, secret)?,
                    chunk_size: archive::crypto::DEFAULT_CHUNK_SIZE,
                }),
                _ => None,
            };
            ctx.inventory.put_index(&record.stored_filename, &archive::index_sidecar(&rebuilt, enc.as_ref()))?;
            None
        }
    };
    Ok(VerifyOutcome { record, entries: rebuilt.entries.len(), index_matches, sidecar })
}

/// Reads a backup's `.index` sidecar from `store` (where its backup stored it: beside the journal) and compares it
/// with the inventory's copy (byte for byte) and, when given, with the entries `rebuilt` from reading the archive.
/// Only bakthat 0.7 archives have one (`format: bakthat-1`).
pub(crate) fn stored_sidecar(
    store: &dyn Backend,
    record: &BackupRecord,
    inventory_copy: Option<&[u8]>,
    rebuilt: Option<&archive::index::Index>,
    password: Option<&Secret>,
) -> Result<SidecarState, OpsError> {
    if !record.has_sidecar() {
        return Ok(SidecarState::NotExpected);
    }
    let key = format!("{}{}", record.stored_filename, super::backup::INDEX_SUFFIX);
    let mut bytes = Vec::new();
    match store.get(&key) {
        Ok(mut r) => r.read_to_end(&mut bytes).map_err(|e| StorageError::io(store.describe(), &key, e))?,
        Err(StorageError::NotFound { .. }) => return Ok(SidecarState::Missing),
        Err(e) => return Err(e.into()),
    };
    if inventory_copy.is_some_and(|copy| copy != bytes) {
        return Ok(SidecarState::Differs("differs from the inventory's copy".into()));
    }
    if inventory_copy.is_some() && rebuilt.is_none() {
        return Ok(SidecarState::Matches);
    }
    let index = match archive::read_index_sidecar(&bytes, password) {
        Ok(i) => i,
        Err(archive::ArchiveError::PasswordNeeded) => return Ok(SidecarState::Unchecked),
        Err(e) => return Ok(SidecarState::Differs(format!("cannot be read ({})", crate::error_chain(&e)))),
    };
    if rebuilt.is_some_and(|r| r.entries != index.entries) {
        return Ok(SidecarState::Differs("lists other entries than the archive holds".into()));
    }
    Ok(SidecarState::Matches)
}

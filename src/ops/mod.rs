//! Operations: backup, restore, verify, check, show, delete, delete_older_than, rotate. Each composes the archive format,
//! a store and the inventory. No terminal I/O here: progress goes through [`Reporter`], passwords come in resolved.
//!
//! Invariant kept by every operation: the inventory never has a live row whose object is not in the store. A
//! backup inserts its row only after the archive and its index sidecar are committed, and removes the objects again
//! if the row cannot be written; a delete removes the object first and then marks the row.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::archive::ArchiveError;
use crate::archive::Hints;
use crate::config::{Config, ConfigError, Profile};
use crate::interval::IntervalError;
use crate::inventory::{Inventory, InventoryError};
use crate::model::{BackupRecord, Destination, Encryption, Epoch, UnknownDestination};
use crate::rotation::RotationError;
use crate::storage::{Backend, Retrieval, StorageError};
pub use crate::stores::StoreLayer;
use crate::stores::{OpenError, Stores};

mod backup;
mod browse;
mod chain_restore;
mod check;
mod glacier_inventory;
pub mod incremental;
mod journal;
mod manage;
pub(crate) mod range;
mod restore;
mod restore_paths;
mod share;
mod tree_restore;

pub(crate) use backup::master_key;
pub(crate) use backup::tree_size;
pub use backup::{backup, plan, BackupOptions, BackupOutcome, Plan};
pub use browse::{
    diff, find_paths, inventory_index, ls, stats, Change, Diff, Found, Listed, Listing, NameStats, Stats, StoreStats,
};
pub use check::{adopt, check, CheckOptions, CheckReport, Orphan, Problem, ProblemKind, ReadData, Subset};
pub use glacier_inventory::{
    backup_glacier_inventory, restore_glacier_inventory, show_glacier_inventory, show_local_glacier_inventory,
    LocalArchive, RestoredInventory, GLACIER_INVENTORY_KEY,
};
pub use incremental::BackupKind;
pub use journal::journal_for;
pub use manage::{
    delete, delete_older_than, delete_with, rotate, show, Planned, RotateOptions, ShowQuery, SUGGESTED_POLICY,
};
pub use restore::{restore, verify, RestoreOptions, RestoreOutcome, SidecarState, VerifyOutcome};
pub use share::{recipient_command, share, Shared};

/// Everything an operation needs: the loaded config and profile, the inventory, the clock.
pub struct Ctx {
    pub config: Config,
    pub profile_name: String,
    pub profile: Profile,
    /// Shared with the Glacier store, which keeps archive ids and retrieval jobs in it.
    pub inventory: Arc<Inventory>,
    /// Host name recorded with each backup.
    pub host: String,
    /// Returns "now" in UTC epoch seconds; tests pass a fixed clock.
    pub clock: Arc<dyn Fn() -> Epoch + Send + Sync>,
    pub reporter: Arc<dyn Reporter>,
    /// Wraps every store [`Ctx::stores`] opens: tests put a counting or fault-injecting store here (see
    /// [`crate::storage::testing`]).
    pub store_layer: Option<StoreLayer>,
    /// Cancels the operations run in this context (see [`Cancel`]); a fresh token by default. Replace it with one
    /// you keep to stop an operation from another thread.
    pub cancel: Cancel,
}

impl Ctx {
    /// A context with the system clock, the machine's host name and no progress output.
    pub fn new(config: Config, profile_name: &str, inventory: Inventory) -> Result<Ctx, OpsError> {
        let profile = config.profile(profile_name)?;
        let inventory = Arc::new(inventory);
        // Rows from before stores had an identity (or synced without one) get it when their backend hash says.
        if let Err(e) = crate::stores::place_unknown_rows(&config, &inventory) {
            tracing::warn!("cannot record the stores of older rows: {}", crate::error_chain(&e));
        }
        Ok(Ctx {
            config,
            profile_name: profile_name.to_string(),
            profile,
            inventory,
            host: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into()),
            clock: Arc::new(|| chrono::Utc::now().timestamp()),
            reporter: Arc::new(NoProgress),
            store_layer: None,
            cancel: Cancel::new(),
        })
    }

    pub fn now(&self) -> Epoch {
        (self.clock)()
    }

    /// The destination named by `-d`, or the profile's default.
    pub fn destination(&self, flag: Option<Destination>) -> Destination {
        flag.unwrap_or_else(|| self.profile.destination())
    }

    /// The profile's stores (built in [`crate::stores`]; opening one makes no request), wrapped by
    /// [`Ctx::store_layer`] when there is one.
    pub fn stores(&self) -> Stores<'_> {
        Stores {
            config: &self.config,
            profile_name: &self.profile_name,
            profile: &self.profile,
            inventory: &self.inventory,
            layer: self.store_layer.as_ref(),
        }
    }
}

/// Progress output, implemented by the CLI (bars on a terminal) and by nothing in library use.
pub trait Reporter: Send + Sync {
    /// Starts a meter for `label`, of `total` bytes when known.
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Meter>;
    /// A warning the user should see (a skipped file...).
    fn warn(&self, message: &str);
}

/// One progress meter.
pub trait Meter: Send + Sync {
    fn inc(&self, n: u64);
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Reporter for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) -> Box<dyn Meter> {
        Box::new(NoProgress)
    }

    fn warn(&self, message: &str) {
        tracing::warn!("{message}");
    }
}

impl Meter for NoProgress {
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

/// Asks one operation to stop: the [`Ctx`] it runs in holds a clone ([`Ctx::cancel`]), and whoever started it keeps
/// another. [`Cancel::cancel`] makes the operation stop at its next block of I/O (and a running hook be killed); the
/// operation then removes what it had written under temporary names and fails with [`OpsError::Interrupted`].
/// Cancelling one operation leaves every other in the process running: the command line's Ctrl-C handler cancels
/// the command's own token, a library caller (the Python binding) the token of the call it stops.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the operations holding this token to stop. Async-signal-safe (one atomic store).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for loops that poll an `AtomicBool` (the mount's serve loop).
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }

    fn check(&self) -> io::Result<()> {
        if self.0.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: write_all and read_exact retry those forever.
            Err(io::Error::other(Interrupted))
        } else {
            Ok(())
        }
    }
}

/// The marker error of an interrupted operation.
#[derive(Debug, Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Passes I/O through, counting it on a meter and stopping when its operation is cancelled.
pub(crate) struct Watched<'c, T> {
    pub inner: T,
    pub meter: Option<Box<dyn Meter>>,
    pub cancel: &'c Cancel,
}

impl<W: Write> Write for Watched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cancel.check()?;
        let n = self.inner.write(buf)?;
        if let Some(m) = &self.meter {
            m.inc(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        let n = self.inner.read(buf)?;
        if let Some(m) = &self.meter {
            m.inc(n as u64);
        }
        Ok(n)
    }
}

/// Why an operation failed. The CLI maps these to exit codes ([`OpsError::exit_code`]).
#[derive(Debug, Error)]
pub enum OpsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Destination(#[from] UnknownDestination),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Interval(#[from] IntervalError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("no backup matches {name}{}; see `bakthat show`", destination.as_ref().map(|d| format!(" in {d}")).unwrap_or_default())]
    NoMatch { name: String, destination: Option<Destination> },
    #[error("{path} does not exist; give the file or directory to back up")]
    SourceMissing { path: PathBuf },
    #[error("compress is off in this profile, so only a single file can be backed up, and {path} is a directory")]
    NeedsFile { path: PathBuf },
    #[error("{stored} is already in the inventory; nothing to adopt")]
    AlreadyRecorded { stored: String },
    #[error("{path} already exists; pass --force to overwrite it, or restore to another directory with --to")]
    Exists { path: PathBuf },
    /// A row's name that cannot be a file name in the restore directory (a hostile or damaged row).
    #[error("refusing to restore under the name {name:?}: {reason}")]
    UnsafeName { name: String, reason: crate::model::NameError },
    #[error("{stored} is in cold storage; its retrieval is {state}. Run the same command again later{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Pending { stored: String, state: String, hint: Option<String> },
    #[error("{stored} is in {backend}; only backups in s3 can be shared (presigned URLs)")]
    NotShareable { stored: String, backend: Destination },
    #[error("no rotation policy in profile {profile}; pass --keep-daily N (--keep-weekly, --keep-monthly, ...) for this run, or set one with `bakthat configure_backups_rotation -p {profile}`")]
    NoRotation { profile: String },
    /// A backup without the inventory's copy of its entry index (a 0.6 archive that was never read whole).
    #[error("{stored} has no entry index in the inventory (a bakthat 0.6 archive); `bakthat verify {stored}` reads it once and keeps one")]
    NoIndex { stored: String },
    #[error("{path} is not in {stored}; `bakthat ls {stored}` lists its paths")]
    NotInBackup { path: String, stored: String },
    #[error("the chain of {stored} is broken: it needs {missing}, which is not in the inventory or was deleted; restore an older backup, or `bakthat sync` if another host made it")]
    BrokenChain { stored: String, missing: String },
    #[error("the chain of {stored} is broken: {child} names {parent} as its parent, but {why}; restore an older backup, or make a full one (`backup --full`)")]
    BadParent { stored: String, child: String, parent: String, why: &'static str },
    #[error("the chain of {stored} is broken: it needs {missing}, which is missing from its store")]
    MissingArchive { stored: String, missing: String },
    #[error("the snapshot of {stored} ({stored}.snap) cannot be used; make a full backup (`backup --full`) to start a new chain")]
    BadSnapshot {
        stored: String,
        #[source]
        source: crate::archive::index::IndexError,
    },
    #[error("the snapshot of {stored} ({stored}.snap) is missing from its store and the inventory")]
    MissingSnapshot { stored: String },
    #[error(
        "{stored} is needed by {dependents}; delete those first, or pass --with-dependents to delete the whole chain"
    )]
    HasDependents { stored: String, dependents: String },
    #[error("the backups {stored} are in cold storage and their retrievals are in progress or were just started. Run the same command again later")]
    ChainPending { stored: String },
    #[error("interrupted; nothing was left under a final name")]
    Interrupted,
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl OpsError {
    /// The process exit code: 1 for failures, 75 while a cold-storage retrieval is pending, 130 if interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            OpsError::Pending { .. } | OpsError::ChainPending { .. } => EXIT_PENDING,
            OpsError::Interrupted => 130,
            _ => 1,
        }
    }

    /// Turns interrupted I/O deep inside an archive error into [`OpsError::Interrupted`].
    fn classify(self, cancel: &Cancel) -> OpsError {
        if cancel.is_cancelled() {
            return OpsError::Interrupted;
        }
        self
    }
}

/// Exit code for "retrieval pending, run again later" (EX_TEMPFAIL).
pub const EXIT_PENDING: i32 = 75;

/// How to read a record's object: its name and what the inventory says about its encryption.
pub fn hints(record: &BackupRecord) -> Hints {
    let mut h = Hints::from_name(record.stored_filename.as_str(), record.is_enc());
    h.v1 = record.encryption() == Encryption::V1;
    h
}

/// Checks that a record's object can be read now; a cold one gets its retrieval started (once) and the error says
/// it is pending. See [`crate::stores::cold`].
pub(crate) fn ensure_readable(ctx: &Ctx, record: &BackupRecord, store: &dyn Backend) -> Result<(), OpsError> {
    match crate::stores::cold::request(&ctx.inventory, record, store, ctx.now())?.state {
        Retrieval::Ready => Ok(()),
        other => Err(pending(record.stored_filename.as_str(), &other)),
    }
}

/// Explains a retrieval state for [`OpsError::Pending`].
pub(crate) fn pending(stored: &str, state: &Retrieval) -> OpsError {
    let (state, hint) = match state {
        Retrieval::Ready => ("ready".to_string(), None),
        Retrieval::NotStarted => ("not started".to_string(), None),
        Retrieval::Pending { job_id, ready_at } => (
            format!("in progress{}", job_id.as_deref().map(|j| format!(" (job {j})")).unwrap_or_default()),
            ready_at.map(|t| format!("expected ready at {}", crate::model::utc(t).format("%Y-%m-%d %H:%M UTC"))),
        ),
    };
    OpsError::Pending { stored: stored.to_string(), state, hint }
}

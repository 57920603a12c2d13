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
use crate::config::{Config, ConfigError, Profile};
use crate::interval::IntervalError;
use crate::inventory::{Inventory, InventoryError};
use crate::model::Epoch;
use crate::rotation::RotationError;
use crate::storage::aws::AwsAccess;
use crate::storage::glacier::{GlacierSettings, GlacierStore};
use crate::storage::local::LocalStore;
use crate::storage::s3::{S3Settings, S3Store};
use crate::storage::swift::{AuthVersion, SwiftSettings, SwiftStore};
use crate::storage::{Backend, Retrieval, StorageError};

mod backup;
mod catalog;
mod check;
mod glacier_inventory;
mod journal;
mod manage;
mod restore;
mod share;

pub(crate) use backup::master_key;
pub(crate) use backup::tree_size;
pub use backup::{backup, BackupOptions, BackupOutcome};
pub use catalog::InventoryCatalog;
pub use check::{adopt, check, CheckOptions, CheckReport, Orphan, Problem, ProblemKind, ReadData, Subset};
pub use glacier_inventory::{
    backup_glacier_inventory, restore_glacier_inventory, show_glacier_inventory, show_local_glacier_inventory,
    LocalArchive, RestoredInventory, GLACIER_INVENTORY_KEY,
};
pub use journal::journal_for;
pub use manage::{delete, delete_older_than, rotate, show, Planned, RotateOptions, ShowQuery};
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
    /// Wraps every store [`Ctx::backend`] opens: tests put a counting or fault-injecting store here (see
    /// [`crate::storage::testing`]).
    pub store_layer: Option<StoreLayer>,
}

/// A wrapper around a store, see [`Ctx::store_layer`].
pub type StoreLayer = Arc<dyn Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync>;

impl Ctx {
    /// A context with the system clock, the machine's host name and no progress output.
    pub fn new(config: Config, profile_name: &str, inventory: Inventory) -> Result<Ctx, OpsError> {
        let profile = config.profile(profile_name)?;
        Ok(Ctx {
            config,
            profile_name: profile_name.to_string(),
            profile,
            inventory: Arc::new(inventory),
            host: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into()),
            clock: Arc::new(|| chrono::Utc::now().timestamp()),
            reporter: Arc::new(NoProgress),
            store_layer: None,
        })
    }

    pub fn now(&self) -> Epoch {
        (self.clock)()
    }

    /// The destination named by `-d`, or the profile's default.
    pub fn destination(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string).unwrap_or_else(|| self.profile.destination().to_string())
    }

    /// Opens the store for a destination (wrapped by [`Ctx::store_layer`] when there is one).
    pub fn backend(&self, destination: &str) -> Result<Arc<dyn Backend>, OpsError> {
        let store = self.open_backend(destination)?;
        Ok(match &self.store_layer {
            Some(wrap) => wrap(store),
            None => store,
        })
    }

    fn open_backend(&self, destination: &str) -> Result<Arc<dyn Backend>, OpsError> {
        match destination {
            "local" => {
                let dir = match self.profile.local_dir() {
                    Some(d) => d,
                    None => dirs::data_dir().ok_or(OpsError::NoDataDir)?.join("bakthat").join("store"),
                };
                Ok(Arc::new(LocalStore::open(&dir)?))
            }
            "s3" => {
                // Archives take the profile's storage class; small objects use `s3_store` and stay hot.
                let settings =
                    S3Settings { storage_class: self.profile.s3_storage_class.clone(), ..self.s3_settings() };
                Ok(Arc::new(S3Store::new(&settings)?))
            }
            "glacier" => Ok(Arc::new(self.glacier_store()?)),
            "swift" => Ok(Arc::new(SwiftStore::new(&self.swift_settings()?)?)),
            other => Err(OpsError::UnknownDestination(other.to_string())),
        }
    }

    /// The profile's S3 bucket (`s3_bucket`, `region_name`, `endpoint_url`, keys) for small objects that must stay
    /// readable at once (KeyValue, index sidecars, the sync journal, the Glacier inventory copy) and for what only S3
    /// does (presigned URLs). It never applies `s3_storage_class`: that is for archives, see [`Ctx::backend`].
    pub fn s3_store(&self) -> Result<S3Store, OpsError> {
        Ok(S3Store::new(&self.s3_settings())?)
    }

    /// The profile's `region_name`, `endpoint_url` and keys, as the S3 and Glacier stores take them.
    fn aws_access(&self) -> AwsAccess {
        let p = &self.profile;
        AwsAccess {
            region: p.region_name.clone(),
            endpoint_url: p.endpoint_url.clone(),
            access_key: p.access_key.clone(),
            secret_key: p.secret_key.clone(),
        }
    }

    fn s3_settings(&self) -> S3Settings {
        let p = &self.profile;
        S3Settings {
            bucket: p.s3_bucket.clone().unwrap_or_default(),
            access: self.aws_access(),
            ..S3Settings::default()
        }
    }

    /// The profile's Glacier vault (`glacier_vault`), with the inventory as its catalog of archive ids.
    pub fn glacier_store(&self) -> Result<GlacierStore, OpsError> {
        let p = &self.profile;
        let settings = GlacierSettings {
            vault: p.glacier_vault.clone().unwrap_or_default(),
            access: self.aws_access(),
            ..GlacierSettings::default()
        };
        Ok(GlacierStore::new(&settings, Arc::new(InventoryCatalog::new(self.inventory.clone())))?)
    }

    /// The Swift settings of the profile: `auth_url`, `access_key` (`ACCOUNT:USER`), `secret_key`, `s3_bucket` (the
    /// container), `auth_version`, `region_name`, `swift_insecure`, and for Keystone v3 the extra keys
    /// `user_domain_name` and `project_domain_name`.
    pub fn swift_settings(&self) -> Result<SwiftSettings, OpsError> {
        let p = &self.profile;
        let invalid = |key: &str, message: String| {
            OpsError::Config(ConfigError::Invalid {
                path: self.config.path().to_path_buf(),
                key: format!("{}.{key}", self.profile_name),
                message,
            })
        };
        let required = |value: &Option<String>, key: &str, what: &str| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "the swift destination needs {what}; set it with `bakthat configure -p {}`",
                        self.profile_name
                    ),
                )
            })
        };
        let auth_url = required(&p.auth_url, "auth_url", "auth_url (e.g. https://host/auth/v1.0)")?;
        let user = required(&p.access_key, "access_key", "access_key (ACCOUNT:USER)")?;
        let key = required(&p.secret_key, "secret_key", "secret_key (the Swift key or password)")?;
        let container = required(&p.s3_bucket, "s3_bucket", "s3_bucket (the container name)")?;
        let auth_version =
            AuthVersion::from_setting(p.auth_version.as_deref(), &auth_url).map_err(|m| invalid("auth_version", m))?;
        let extra = |k: &str| p.extra.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Ok(SwiftSettings {
            auth_url,
            auth_version,
            user,
            key,
            container,
            region: p.region_name.clone(),
            insecure: p.swift_insecure,
            user_domain: extra("user_domain_name"),
            project_domain: extra("project_domain_name"),
            ..SwiftSettings::default()
        })
    }

    /// The backend hash recorded with rows of a destination (0.6: sha512(access_key + container)).
    pub fn backend_hash(&self, destination: &str, backend: &dyn Backend) -> String {
        let p = &self.profile;
        let key = p.access_key.clone().unwrap_or_default();
        match destination {
            "glacier" => crate::config::backend_hash(&key, p.glacier_vault.as_deref().unwrap_or_default()),
            "s3" | "swift" => crate::config::backend_hash(&key, p.s3_bucket.as_deref().unwrap_or_default()),
            _ => crate::config::backend_hash("local", &backend.describe()),
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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks running operations to stop at the next block of I/O (set from a SIGINT/SIGTERM handler).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The flag the signal handlers set.
pub fn interrupt_flag() -> &'static AtomicBool {
    &INTERRUPTED
}

fn check_interrupt() -> io::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        // Not ErrorKind::Interrupted: write_all and read_exact retry those forever.
        Err(io::Error::other(Interrupted))
    } else {
        Ok(())
    }
}

/// The marker error of an interrupted operation.
#[derive(Debug, Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Passes I/O through, counting it on a meter and stopping when the user interrupts.
pub(crate) struct Watched<T> {
    pub inner: T,
    pub meter: Option<Box<dyn Meter>>,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check_interrupt()?;
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

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check_interrupt()?;
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
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Interval(#[from] IntervalError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("no backup matches {name}{}; see `bakthat show`", destination.as_ref().map(|d| format!(" in {d}")).unwrap_or_default())]
    NoMatch { name: String, destination: Option<String> },
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
    NotShareable { stored: String, backend: String },
    #[error("unknown destination {0:?}; use local, s3, glacier or swift")]
    UnknownDestination(String),
    #[error("no rotation policy in profile {profile}; run `bakthat configure_backups_rotation -p {profile}` or add a rotation: block")]
    NoRotation { profile: String },
    #[error("no data directory found for the default store; set local_path in the profile")]
    NoDataDir,
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
            OpsError::Pending { .. } => EXIT_PENDING,
            OpsError::Interrupted => 130,
            _ => 1,
        }
    }

    /// Turns interrupted I/O deep inside an archive error into [`OpsError::Interrupted`].
    fn classify(self) -> OpsError {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return OpsError::Interrupted;
        }
        self
    }
}

/// Exit code for "retrieval pending, run again later" (EX_TEMPFAIL).
pub const EXIT_PENDING: i32 = 75;

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

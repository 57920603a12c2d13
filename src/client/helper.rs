//! The backup-script helper (bakthat 0.6's `BakHelper`): a [`Scope`] owning a fresh temporary directory to dump
//! files into or run commands in, then backup, rotate, restore and delete_older_than under the helper's name.
//!
//! The directory is `<tmp>/bakthat-XXXXXX/<name>/`, so the archive's top-level entry and the backup's name are both
//! the helper's name (0.6 named the stored file after its random temporary directory). It is removed when the scope
//! is dropped: at the end of the block, on an early `?` return, or while a panic unwinds.
//!
//! This module adds no behaviour of its own to the actions: they are the [`Client`]'s, with their events and hooks.
//!
//! ```
//! use bakthat::client::Client;
//! use bakthat::config::{Config, Profile, RotationConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let mut config = Config::empty(&tmp.path().join("bakthat.yml"));
//! # let rotation = Some(RotationConfig { days: Some(7), ..RotationConfig::default() });
//! # config.set_profile("default", Profile { local_path: Some(tmp.path().join("store")), rotation, ..Profile::default() });
//! # let client = Client::from_config(config, "default", &tmp.path().join("inventory.sqlite"))?;
//! let scope = client.helper("mysql")?;
//! // A real script would run `mysqldump --all-databases --result-file=all.sql` here.
//! scope.command("sh").args(["-c", "echo 'create table t (x int);' > all.sql"]).status()?;
//! let stored = scope.backup()?;
//! assert_eq!(stored.record.filename, "mysql");
//! assert!(stored.record.stored_filename.as_str().starts_with("mysql."));
//! scope.rotate()?;
//! let dir = scope.path().to_path_buf();
//! drop(scope);
//! assert!(!dir.exists());
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::{Client, ClientError};
use crate::archive::Secret;
use crate::model::Destination;
use crate::ops::{BackupOptions, BackupOutcome, Planned, RestoreOptions, RestoreOutcome, RotateOptions};

/// A temporary working directory and the actions on backups named after it. Made by [`Client::helper`].
pub struct Scope<'c> {
    client: &'c Client,
    name: String,
    dir: PathBuf,
    root: Option<tempfile::TempDir>,
    destination: Option<Destination>,
    password: Option<Arc<Secret>>,
    tags: Vec<String>,
}

impl Client {
    /// A scope for backups named `name`, owning a fresh, empty temporary directory (see [`Scope`]).
    pub fn helper(&self, name: &str) -> Result<Scope<'_>, ClientError> {
        let io = |context: String| move |source| ClientError::Io { context, source };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ClientError::BadName { name: name.to_string() });
        }
        let root = tempfile::Builder::new()
            .prefix("bakthat-")
            .tempdir()
            .map_err(io("creating a temporary directory for the helper".into()))?;
        let dir = root.path().join(name);
        fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Scope {
            client: self,
            name: name.to_string(),
            dir,
            root: Some(root),
            destination: None,
            password: None,
            tags: Vec::new(),
        })
    }
}

impl<'c> Scope<'c> {
    /// The temporary directory to fill; it is what [`Scope::backup`] stores.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The name of the backups.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the actions go through.
    pub fn client(&self) -> &'c Client {
        self.client
    }

    /// Uses this destination instead of the profile's default.
    pub fn destination(mut self, destination: Destination) -> Self {
        self.destination = Some(destination);
        self
    }

    /// Encrypts backups with this password (and uses it to restore).
    pub fn password(mut self, password: Arc<Secret>) -> Self {
        self.password = Some(password);
        self
    }

    /// Tags the backups.
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// A command that will run in the temporary directory, e.g. `scope.command("mysqldump").arg("--all-databases")`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.dir);
        c
    }

    /// Backs up the temporary directory as a backup named after the helper.
    pub fn backup(&self) -> Result<BackupOutcome, ClientError> {
        self.backup_with(BackupOptions::default())
    }

    /// Backs up with more options; `source` and `name` are the helper's, and the scope's destination, password
    /// and tags fill the options left unset.
    pub fn backup_with(&self, mut opts: BackupOptions) -> Result<BackupOutcome, ClientError> {
        opts.source = self.dir.clone();
        opts.name = Some(self.name.clone());
        if opts.destination.is_none() {
            opts.destination = self.destination;
        }
        if opts.password.is_none() {
            opts.password.clone_from(&self.password);
        }
        if opts.tags.is_empty() {
            opts.tags.clone_from(&self.tags);
        }
        self.client.backup(&opts)
    }

    /// Applies the profile's rotation policy to this helper's backups.
    pub fn rotate(&self) -> Result<Vec<Planned>, ClientError> {
        let opts = RotateOptions {
            destination: self.destination,
            dry_run: false,
            policy: None,
            password: self.password.clone(),
        };
        self.client.rotate(&self.name, &opts)
    }

    /// Deletes this helper's backups older than `interval` (e.g. `3M2D`).
    pub fn delete_older_than(&self, interval: &str) -> Result<Vec<Planned>, ClientError> {
        self.client.delete_older_than(&self.name, interval, self.destination, false, self.password.as_deref())
    }

    /// Restores the newest backup of this helper into `to` (which then holds a directory named after the helper).
    pub fn restore(&self, to: &Path) -> Result<RestoreOutcome, ClientError> {
        self.client.restore(&RestoreOptions {
            name: self.name.clone(),
            destination: self.destination,
            to: Some(to.to_path_buf()),
            force: false,
            password: self.password.clone(),
            paths: Vec::new(),
        })
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        let Some(root) = self.root.take() else { return };
        let path = root.path().to_path_buf();
        if root.close().is_ok() {
            return;
        }
        // A dump may leave read-only directories, which block removal of their entries: open them up and retry.
        make_writable(&path);
        if let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!("could not remove the helper's temporary directory {}: {e}", path.display());
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

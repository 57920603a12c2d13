//! bakthat as a library: [`Client`], its [`events`], the profile's hooks, the [backup-script
//! helper](helper::Scope) and [plugins](plugin::Plugin).
//!
//! A client is one profile of a config plus an inventory. Its actions are the operations of [`crate::ops`] wrapped
//! in events: each backup, restore, delete, delete_older_than and rotate_backups gets a session id, fires
//! `before_<action>` (Rust callbacks, then guards and the profile's `before_*` hook commands, which may stop it),
//! runs, and fires `on_<action>` with the result. The command line goes through a client too, so hooks apply to its
//! users.
//!
//! ```
//! use bakthat::client::Client;
//! use bakthat::config::{Config, Profile};
//! use bakthat::ops::{BackupOptions, RestoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! // A config built in code: one profile storing into a local directory.
//! let mut config = Config::empty(&tmp.path().join("bakthat.yml"));
//! config.set_profile("default", Profile { local_path: Some(tmp.path().join("store")), ..Profile::default() });
//! let client = Client::from_config(config, "default", &tmp.path().join("inventory.sqlite"))?;
//!
//! let docs = tmp.path().join("docs");
//! std::fs::create_dir(&docs)?;
//! std::fs::write(docs.join("notes.txt"), "remember the milk")?;
//! let stored = client.backup(&BackupOptions { source: docs, ..BackupOptions::default() })?;
//! assert_eq!(stored.record.filename, "docs");
//! assert!(stored.record.stored_filename.as_str().starts_with("docs."));
//!
//! let listed = client.show(&Default::default())?;
//! assert_eq!(listed.len(), 1);
//!
//! let out = tmp.path().join("restored");
//! client.restore(&RestoreOptions { name: "docs".into(), to: Some(out.clone()), ..RestoreOptions::default() })?;
//! assert_eq!(std::fs::read_to_string(out.join("docs/notes.txt"))?, "remember the milk");
//! # Ok(())
//! # }
//! ```
//!
//! # A database-dump backup script
//!
//! bakthat 0.6's `BakHelper` example, for a nightly cron job: dump MySQL into a temporary directory, back it up
//! encrypted, apply the rotation policy. The directory is removed when `scope` goes out of scope, also when the
//! dump fails. (The doctest writes the dump with `sh` so that it runs without MySQL.)
//!
//! ```
//! use std::sync::Arc;
//!
//! use bakthat::archive::Secret;
//! use bakthat::client::Client;
//! # use bakthat::config::{Config, Profile, RotationConfig};
//!
//! fn nightly(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
//!     let password = Arc::new(Secret::new(b"correct horse battery staple"));
//!     let scope = client.helper("mysql")?.password(password).tags(["db", "nightly"]);
//!     // For real: scope.command("mysqldump").args(["--all-databases", "--result-file=all.sql"]).status()?
//!     let status = scope.command("sh").args(["-c", "echo 'CREATE TABLE t (x INT);' > all.sql"]).status()?;
//!     if !status.success() {
//!         return Err(format!("mysqldump failed ({status})").into());
//!     }
//!     let stored = scope.backup()?;
//!     println!("stored {} ({} bytes)", stored.record.stored_filename, stored.record.size);
//!     for p in scope.rotate()?.iter().filter(|p| !p.keep) {
//!         println!("deleted {}", p.record.stored_filename);
//!     }
//!     Ok(())
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let mut config = Config::empty(&tmp.path().join("bakthat.yml"));
//! # let rotation = Some(RotationConfig { days: Some(7), weeks: Some(4), ..RotationConfig::default() });
//! # config.set_profile("default", Profile { local_path: Some(tmp.path().join("store")), rotation, ..Profile::default() });
//! // In a script: Client::open(None, "default")? reads ~/.bakthat.yml.
//! let client = Client::from_config(config, "default", &tmp.path().join("inventory.sqlite"))?;
//! nightly(&client)?;
//! assert!(client.show(&Default::default())?[0].is_enc());
//! # Ok(())
//! # }
//! ```
//!
//! A plugin that times backups is in [`plugin`].

use std::path::Path;

use thiserror::Error;
use uuid::Uuid;

use crate::archive::Secret;
use crate::config::{self, Config, ConfigError, Profile};
use crate::inventory::{Inventory, InventoryError};
use crate::model::{BackupRecord, Destination};
use crate::ops::{
    self, BackupOptions, BackupOutcome, Ctx, OpsError, Planned, RestoreOptions, RestoreOutcome, RotateOptions,
    ShowQuery, VerifyOutcome,
};

pub mod events;
pub mod helper;
pub mod hooks;
pub mod host;
pub mod plugin;
pub mod webhook;

use events::{Action, Event, Events, Outcome};
pub use hooks::{HookExit, HookSettings};
use plugin::{Plugin, PluginContext};

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The operation itself failed (see [`OpsError`] for the cases).
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The profile's `hooks:` key is malformed.
    #[error("profile {profile}: `{key}`: {message}; see \"Hooks\" in the README")]
    HookConfig { profile: String, key: String, message: String },
    /// A `before_*` hook command failed, so the action did not run.
    #[error("the {event} hook `{command}` failed ({exit}), so nothing was done; fix the hook, or set hooks.before_fail_aborts: false to go on regardless")]
    HookFailed { event: String, command: String, exit: HookExit },
    /// A monitoring key was given but the profile has no `webhook_url`.
    #[error("profile {profile} has no webhook_url, so the monitoring key was not reported; add `webhook_url: https://…` to the profile")]
    NoWebhook { profile: String },
    /// The webhook did not take the report (the backup itself is stored).
    #[error("reporting the backup to {url} failed: {message}; the backup itself is stored")]
    Webhook { url: String, message: String },
    /// A guard registered with [`Events::guard`] refused the action.
    #[error("refused before {event}: {reason}")]
    Refused { event: String, reason: String },
    /// [`Client::helper`] was given a name that cannot name a backup.
    #[error("{name:?} cannot name a backup; use a plain name such as \"mysql\" (no `/`)")]
    BadName { name: String },
    /// A plugin refused to activate.
    #[error("plugin {name} failed to activate")]
    Plugin {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file-system step of the client itself (such as a helper's temporary directory) failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The process exit code, as for [`OpsError::exit_code`]; 1 for the client's own errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Ops(e) => e.exit_code(),
            ClientError::HookFailed { exit: HookExit::Interrupted, .. } => 130,
            _ => 1,
        }
    }

    /// The operation error inside, if this is one.
    pub fn as_ops(&self) -> Option<&OpsError> {
        match self {
            ClientError::Ops(e) => Some(e),
            _ => None,
        }
    }
}

/// One profile of a config, with its inventory, events and hooks. See the [module docs](self).
pub struct Client {
    ctx: Ctx,
    events: Events,
    hooks: HookSettings,
    /// In a mutex only so that a client can be shared between threads (the mount backs up /incoming from one).
    plugins: std::sync::Mutex<Vec<Box<dyn Plugin>>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        let plugins = self.plugins.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(mut p) = plugins.pop() {
            p.deactivate();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.ctx.profile_name)
            .field("inventory", &self.ctx.inventory.path())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// What the events of one action are about.
struct Subject<'a> {
    name: &'a str,
    source: Option<&'a Path>,
    destination: Option<&'a str>,
    dry_run: bool,
}

impl Client {
    /// Opens `profile` of the config file at `config_path` (default: `$BAKTHAT_CONFIG`, else `~/.bakthat.yml`)
    /// with the default inventory (`$BAKTHAT_DB`, else `~/.local/share/bakthat/inventory.sqlite` or the platform's
    /// equivalent).
    ///
    /// ```
    /// use bakthat::client::{Client, ClientError};
    /// use bakthat::config::ConfigError;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let tmp = tempfile::tempdir()?;
    /// # std::env::set_var("BAKTHAT_DB", tmp.path().join("inventory.sqlite"));
    /// let path = tmp.path().join("bakthat.yml");
    /// std::fs::write(&path, format!("default:\n  local_path: {}\n", tmp.path().join("store").display()))?;
    /// let client = Client::open(Some(&path), "default")?;
    /// assert!(client.show(&Default::default())?.is_empty());
    /// // Only `default` may be missing from the file.
    /// let err = Client::open(Some(&path), "work").unwrap_err();
    /// assert!(matches!(err, ClientError::Config(ConfigError::UnknownProfile { .. })), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(config_path: Option<&Path>, profile: &str) -> Result<Client, ClientError> {
        let config = Config::load(&config::config_path(config_path))?;
        let inventory = Inventory::open(Inventory::default_path()?)?;
        Client::from_ctx(Ctx::new(config, profile, inventory).map_err(config_error)?)
    }

    /// A client for `profile` of a config built in code, with the inventory at `inventory_path` (created when
    /// missing).
    pub fn from_config(config: Config, profile: &str, inventory_path: &Path) -> Result<Client, ClientError> {
        let inventory = Inventory::open(inventory_path)?;
        Client::from_ctx(Ctx::new(config, profile, inventory).map_err(config_error)?)
    }

    /// A client around an operations context (to set its clock or progress reporter first). The process's
    /// [plugin host](host), when one is installed, attaches to it here.
    pub fn from_ctx(ctx: Ctx) -> Result<Client, ClientError> {
        let hooks = HookSettings::parse(&ctx.profile_name, ctx.profile.hooks.as_ref())?;
        let client = Client { ctx, events: Events::new(), hooks, plugins: Default::default() };
        host::attach(&client)?;
        Ok(client)
    }

    /// The callbacks of this client; register with `client.events().on_backup(|ev| …)`.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Activates `plugin` with this client's profile and events, and keeps it until the client is dropped (then
    /// its `deactivate` runs).
    pub fn add_plugin(&mut self, mut plugin: impl Plugin + 'static) -> Result<&mut Client, ClientError> {
        let name = plugin.name().to_string();
        let ctx = PluginContext {
            profile_name: self.ctx.profile_name.clone(),
            profile: self.ctx.profile.clone(),
            events: self.events.clone(),
            span: tracing::info_span!("plugin", name = %name),
        };
        plugin.activate(ctx).map_err(|source| ClientError::Plugin { name, source })?;
        self.plugins.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(plugin));
        Ok(self)
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.ctx.profile
    }

    /// The name of the profile in use.
    pub fn profile_name(&self) -> &str {
        &self.ctx.profile_name
    }

    /// The whole config the profile comes from.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// The hook commands of the profile.
    pub fn hooks(&self) -> &HookSettings {
        &self.hooks
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.ctx.inventory
    }

    /// The operations context (clock, reporter, host name).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The operations context, to replace its clock or reporter.
    pub fn ctx_mut(&mut self) -> &mut Ctx {
        &mut self.ctx
    }

    /// The KeyValue store of this profile (small JSON values in its S3 bucket; see [`crate::kv`]).
    pub fn kv(&self) -> Result<crate::kv::KeyValue<'_>, crate::kv::KvError> {
        crate::kv::KeyValue::open(&self.ctx)
    }

    /// Runs one action inside its session: `before_*` callbacks and hooks, the action, `on_*` callbacks and hooks.
    fn session<T>(
        &self,
        action: Action,
        subject: Subject<'_>,
        run: impl FnOnce() -> Result<T, ClientError>,
        view: impl for<'t> Fn(&'t T) -> Outcome<'t>,
    ) -> Result<T, ClientError> {
        let session_id = Uuid::new_v4();
        let _span = tracing::info_span!("bakthat", action = action.as_str(), session = %session_id).entered();
        let mut event = Event {
            kind: action.before(),
            session_id,
            profile: &self.ctx.profile_name,
            name: subject.name,
            source: subject.source,
            destination: subject.destination,
            dry_run: subject.dry_run,
            result: None,
        };
        self.events.emit(&event);
        let result =
            self.events.check(&event).and_then(|()| self.hooks.run(&event, &self.ctx.cancel)).and_then(|()| run());
        event.kind = action.on();
        event.result = Some(result.as_ref().map(&view));
        self.events.emit(&event);
        if let Err(e) = self.hooks.run(&event, &self.ctx.cancel) {
            tracing::warn!("{e}");
        }
        result
    }

    /// Backs up `opts.source` (see [`ops::backup`]); fires `before_backup` and `on_backup`, then syncs when the
    /// profile's `sync.auto` is set (a failed sync is a warning: the backup stands). Every backup goes through
    /// here, whether the command line, a script or the mount's `/incoming` starts it.
    pub fn backup(&self, opts: &BackupOptions) -> Result<BackupOutcome, ClientError> {
        let out = self.backup_session(opts)?;
        self.auto_sync(opts.password.as_deref(), &out.record);
        Ok(out)
    }

    /// The `sync.auto` step of [`Client::backup`]: problems are warnings through the context's reporter.
    fn auto_sync(&self, secret: Option<&Secret>, record: &BackupRecord) {
        let warn = |m: &str| self.ctx.reporter.warn(m);
        match crate::sync::after_backup(&self.ctx, secret, record) {
            None => {}
            Some(Ok(report)) => {
                for (key, why) in &report.unreadable {
                    warn(&format!("cannot read journal entry {key}: {why}"));
                }
                for (key, why) in &report.rejected {
                    warn(&format!("rejected journal entry {key}: {why}"));
                }
            }
            Some(Err(e)) => {
                warn(&format!("the backup is stored, but the sync after it failed: {}", crate::error_chain(&e)))
            }
        }
    }

    fn backup_session(&self, opts: &BackupOptions) -> Result<BackupOutcome, ClientError> {
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => std::fs::canonicalize(&opts.source)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| opts.source.display().to_string()),
        };
        let dest = self.ctx.destination(opts.destination);
        let subject =
            Subject { name: &name, source: Some(&opts.source), destination: Some(dest.as_str()), dry_run: false };
        self.session(Action::Backup, subject, || Ok(ops::backup(&self.ctx, opts)?), |b| Outcome::Backup(b))
    }

    /// Backs up like [`Client::backup`], then reports the backup under the monitoring `key` to the profile's
    /// `webhook_url` (the CLI's `backup -k KEY`). A failed report is logged as a warning, never an error.
    ///
    /// The report uses a blocking HTTP client, as the remote stores do: call this from a plain thread or through
    /// `tokio::task::spawn_blocking`, not directly inside an async runtime.
    pub fn backup_monitored(&self, opts: &BackupOptions, key: &str) -> Result<BackupOutcome, ClientError> {
        let out = self.backup(opts)?;
        if let Err(e) = self.report(key, &out.record) {
            tracing::warn!("{e}");
        }
        Ok(out)
    }

    /// POSTs `{"key", "host", "size", "stored_filename", "backup_date"}` for `record` to the profile's
    /// `webhook_url` (see [`webhook`]).
    pub fn report(&self, key: &str, record: &BackupRecord) -> Result<(), ClientError> {
        let url = self
            .ctx
            .profile
            .webhook_url
            .as_deref()
            .ok_or_else(|| ClientError::NoWebhook { profile: self.ctx.profile_name.clone() })?;
        webhook::post(url, &webhook::payload(key, &self.ctx.host, record))
            .map_err(|message| ClientError::Webhook { url: url.to_string(), message })
    }

    /// Restores the newest backup of `opts.name` (see [`ops::restore`]); fires `before_restore` and `on_restore`.
    pub fn restore(&self, opts: &RestoreOptions) -> Result<RestoreOutcome, ClientError> {
        let subject = Subject {
            name: &opts.name,
            source: None,
            destination: opts.destination.map(Destination::as_str),
            dry_run: false,
        };
        self.session(Action::Restore, subject, || Ok(ops::restore(&self.ctx, opts)?), |r| Outcome::Restore(r))
    }

    /// Lists backups from the inventory (no events).
    pub fn show(&self, query: &ShowQuery) -> Result<Vec<BackupRecord>, ClientError> {
        Ok(ops::show(&self.ctx, query)?)
    }

    /// Deletes the newest backup of `name`; fires `before_delete` and `on_delete`. With `password` its journal
    /// tombstone is authenticated, so it reaches every host of a profile with a password.
    pub fn delete(
        &self,
        name: &str,
        destination: Option<Destination>,
        password: Option<&Secret>,
    ) -> Result<BackupRecord, ClientError> {
        let dest = self.ctx.destination(destination);
        let subject = Subject { name, source: None, destination: Some(dest.as_str()), dry_run: false };
        let run = || Ok(ops::delete(&self.ctx, name, Some(dest), password)?);
        self.session(Action::Delete, subject, run, |r| Outcome::Delete(r))
    }

    /// [`Client::delete`] of a backup that incrementals need, deleting them too (`delete --with-dependents`):
    /// every backup deleted, dependents first; fires `before_delete` and `on_delete` once for all of them.
    pub fn delete_with_dependents(
        &self,
        name: &str,
        destination: Option<Destination>,
        password: Option<&Secret>,
    ) -> Result<Vec<Planned>, ClientError> {
        let dest = self.ctx.destination(destination);
        let subject = Subject { name, source: None, destination: Some(dest.as_str()), dry_run: false };
        let run = || {
            let mut deleted = ops::delete_with(&self.ctx, name, Some(dest), password, true)?;
            let asked = deleted.pop().expect("delete_with deletes the backup asked for");
            let needs = format!("needs {}", asked.stored_filename);
            let mut plan: Vec<Planned> = deleted
                .into_iter()
                .map(|record| Planned { record, keep: false, reasons: vec![needs.clone()] })
                .collect();
            plan.push(Planned { record: asked, keep: false, reasons: vec!["asked for".into()] });
            Ok(plan)
        };
        self.session(Action::Delete, subject, run, |p| Outcome::Plan(p))
    }

    /// Deletes the backups named exactly `name` older than `interval` (e.g. `3M2D`); fires
    /// `before_delete_older_than` and `on_delete_older_than`.
    pub fn delete_older_than(
        &self,
        name: &str,
        interval: &str,
        destination: Option<Destination>,
        dry_run: bool,
        password: Option<&Secret>,
    ) -> Result<Vec<Planned>, ClientError> {
        let dest = self.ctx.destination(destination);
        let subject = Subject { name, source: None, destination: Some(dest.as_str()), dry_run };
        self.session(
            Action::DeleteOlderThan,
            subject,
            || Ok(ops::delete_older_than(&self.ctx, name, interval, Some(dest), dry_run, password)?),
            |p| Outcome::Plan(p),
        )
    }

    /// Applies the profile's rotation policy to the backups named exactly `name`; fires `before_rotate_backups`
    /// and `on_rotate_backups`.
    pub fn rotate(&self, name: &str, opts: &RotateOptions) -> Result<Vec<Planned>, ClientError> {
        let dest = self.ctx.destination(opts.destination);
        let subject = Subject { name, source: None, destination: Some(dest.as_str()), dry_run: opts.dry_run };
        self.session(Action::RotateBackups, subject, || Ok(ops::rotate(&self.ctx, name, opts)?), |p| Outcome::Plan(p))
    }

    /// Downloads a backup and checks every checksum, writing no files (no events).
    pub fn verify(
        &self,
        name: &str,
        destination: Option<Destination>,
        password: Option<&Secret>,
    ) -> Result<VerifyOutcome, ClientError> {
        Ok(ops::verify(&self.ctx, name, destination, password)?)
    }
}

/// A config problem found while making the context is a [`ClientError::Config`], as one found while loading.
fn config_error(e: OpsError) -> ClientError {
    match e {
        OpsError::Config(c) => ClientError::Config(c),
        other => ClientError::Ops(other),
    }
}

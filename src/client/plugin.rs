//! Plugins for Rust users: code that attaches to a [`Client`](super::Client) when added and is told when the client
//! goes away. A Rust plugin is added in code with [`Client::add_plugin`](super::Client::add_plugin). bakthat 0.6
//! loaded Python classes named in the profile's `plugins:` list: the Python package runs those, through the
//! [plugin host](super::host); this module does not.
//!
//! A plugin that times backups and logs the duration:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::{Duration, Instant};
//!
//! use bakthat::client::plugin::{Plugin, PluginContext, PluginError};
//! use bakthat::client::Client;
//! use bakthat::config::{Config, Profile};
//! use bakthat::ops::BackupOptions;
//!
//! #[derive(Default)]
//! struct BackupTimer {
//!     started: Arc<Mutex<HashMap<uuid::Uuid, Instant>>>,
//!     /// (stored name, duration) of each finished backup.
//!     done: Arc<Mutex<Vec<(String, Duration)>>>,
//! }
//!
//! impl Plugin for BackupTimer {
//!     fn name(&self) -> &str {
//!         "backup-timer"
//!     }
//!
//!     fn activate(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
//!         let started = self.started.clone();
//!         ctx.events.before_backup(move |ev| {
//!             started.lock().unwrap().insert(ev.session_id, Instant::now());
//!         });
//!         let (started, done, span) = (self.started.clone(), self.done.clone(), ctx.span.clone());
//!         ctx.events.on_backup(move |ev| {
//!             let Some(t0) = started.lock().unwrap().remove(&ev.session_id) else { return };
//!             for r in ev.records() {
//!                 span.in_scope(|| tracing::info!("{} took {:?}", r.stored_filename, t0.elapsed()));
//!                 done.lock().unwrap().push((r.stored_filename.to_string(), t0.elapsed()));
//!             }
//!         });
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let mut config = Config::empty(&tmp.path().join("bakthat.yml"));
//! # config.set_profile("default", Profile { local_path: Some(tmp.path().join("store")), ..Profile::default() });
//! let mut client = Client::from_config(config, "default", &tmp.path().join("inventory.sqlite"))?;
//! let timer = BackupTimer::default();
//! let done = timer.done.clone();
//! client.add_plugin(timer)?;
//! # let src = tmp.path().join("photos");
//! # std::fs::create_dir(&src)?;
//! client.backup(&BackupOptions { source: src, ..BackupOptions::default() })?;
//! assert_eq!(done.lock().unwrap().len(), 1);
//! # Ok(())
//! # }
//! ```

use super::events::Events;
use crate::config::Profile;

/// The error a plugin's activation may return.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// What a plugin gets when it is activated.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// The name of the client's profile.
    pub profile_name: String,
    /// The client's profile; settings of the plugin's own go in the profile as extra keys ([`Profile::extra`],
    /// also [`PluginContext::setting`]).
    pub profile: Profile,
    /// The client's event registry: register callbacks here.
    pub events: Events,
    /// A `tracing` span named after the plugin, to log in (`span.in_scope(|| tracing::info!(..))`).
    pub span: tracing::Span,
}

impl PluginContext {
    /// A key of the profile that bakthat itself does not use, e.g. `my_plugin: {threshold: 3}`.
    pub fn setting(&self, key: &str) -> Option<&serde_norway::Value> {
        self.profile.extra.get(key)
    }
}

/// A plugin. `activate` runs once, when the plugin is added to a client; `deactivate` runs when the client is
/// dropped (plugins in reverse order of activation).
pub trait Plugin: Send {
    /// The name used in logs and errors (default: the type's name).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Registers callbacks and reads settings. An error stops [`Client::add_plugin`](super::Client::add_plugin),
    /// and the plugin is not kept.
    fn activate(&mut self, ctx: PluginContext) -> Result<(), PluginError>;

    /// Releases what `activate` set up (flush, close connections). Its callbacks stay registered until the
    /// client is gone.
    fn deactivate(&mut self) {}
}

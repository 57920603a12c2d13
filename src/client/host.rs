//! The plugin host: one process-wide object that every new [`Client`] is shown to, so that a host embedding
//! bakthat can attach to each client, whoever makes it (a script or the command line run in-process).
//!
//! The Python package (`python/` in the repository) installs one: it forwards every event to Python's
//! `bakthat.events` and loads the profile's 0.6 `plugins:` (Python classes) once per process, which is how
//! `bakthat backup` started from the package's `bakthat` command runs a `TimerPlugin`. Without a host, a profile
//! that lists plugins gets one warning saying how to run them (the Rust binary cannot import Python classes).
//!
//! This module does not know Python, and does not run plugins itself: Rust plugins are added in code with
//! [`Client::add_plugin`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::{Client, ClientError};

/// What a host does with each client.
pub trait Host: Send + Sync {
    /// Called once for every client, after it is made and before it is returned: register callbacks or guards on
    /// [`Client::events`], read [`Client::profile`]. An error fails the client's creation.
    fn attach(&self, client: &Client) -> Result<(), ClientError>;
}

static HOST: OnceLock<Arc<dyn Host>> = OnceLock::new();

/// Installs the process's host. There is one per process: a second call returns `false` and changes nothing.
pub fn install(host: Arc<dyn Host>) -> bool {
    HOST.set(host).is_ok()
}

/// Whether a host is installed.
pub fn installed() -> bool {
    HOST.get().is_some()
}

/// Shows a new client to the host; without one, warns (once per process) about a profile's plugins.
pub(super) fn attach(client: &Client) -> Result<(), ClientError> {
    if let Some(host) = HOST.get() {
        return host.attach(client);
    }
    let plugins = &client.profile().plugins;
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !plugins.is_empty() && !WARNED.swap(true, Ordering::SeqCst) {
        tracing::warn!("{}", not_run_line(client.profile_name(), plugins));
    }
    Ok(())
}

/// The one line a profile with `plugins:` gets when no host runs them.
pub fn not_run_line(profile: &str, plugins: &[String]) -> String {
    format!(
        "profile {profile} lists plugins ({}), which are Python classes: they run only under the Python package's \
         `bakthat` command (pip install ./python, then run that `bakthat`; see \"Python\" in the README)",
        plugins.join(", ")
    )
}

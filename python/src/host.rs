//! The plugin host the package installs in the core (`bakthat::client::host`): every client made in this process,
//! by a Python call or by the command line run in-process, forwards its events to `bakthat.events` and runs the
//! profile's 0.6 `plugins:` (imported and activated once per process by `bakthat.plugin`).
//!
//! A Python callback that raises: in a `before_*` event it stops the action (a guard refuses it), in an `on_*`
//! event the action stands. A Python call then raises the callback's exception (see [`take_errors`]); the command
//! line prints its traceback and, for `before_*`, fails with `refused before before_backup: …`. Not here: the
//! Python side of events and plugins (`bakthat/events.py`, `bakthat/plugin.py`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bakthat::client::events::{Action, Event};
use bakthat::client::host::Host;
use bakthat::client::{Client, ClientError};
use pyo3::prelude::*;
use uuid::Uuid;

use crate::convert;

/// Set while the command line runs in-process: callback errors are printed as they happen.
pub static CLI: AtomicBool = AtomicBool::new(false);

/// Exceptions raised by callbacks, by session, until the call that started the session takes them.
static ERRORS: Mutex<Vec<CallbackError>> = Mutex::new(Vec::new());

struct CallbackError {
    session: Uuid,
    before: bool,
    /// `TypeName: message`, made when the callback raised (the guard reads it without the GIL).
    message: String,
    err: PyErr,
}

/// The lock is never held while taking the GIL (a thread holding the GIL may be waiting for it).
fn errors() -> std::sync::MutexGuard<'static, Vec<CallbackError>> {
    ERRORS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes and returns the first callback exception of these sessions (the others are dropped).
pub fn take_errors(sessions: &[Uuid]) -> Option<PyErr> {
    let mut all = errors();
    let (mine, others): (Vec<CallbackError>, Vec<CallbackError>) =
        std::mem::take(&mut *all).into_iter().partition(|e| sessions.contains(&e.session));
    *all = others;
    drop(all);
    mine.into_iter().next().map(|e| e.err)
}

/// The Python functions the host calls: `bakthat.events._dispatch(name, session_id, records, error)` and
/// `bakthat.plugin._setup(profile_name, conf_json)`.
pub struct PyHost {
    pub dispatch: Arc<Py<PyAny>>,
    pub setup_plugins: Py<PyAny>,
}

/// The error a plugin setup failure becomes.
#[derive(Debug)]
struct PluginFailure(String);

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginFailure {}

impl Host for PyHost {
    fn attach(&self, client: &Client) -> Result<(), ClientError> {
        let profile = client.profile();
        if !profile.plugins.is_empty() {
            let conf = serde_json::to_string(profile).unwrap_or_else(|_| "{}".into());
            Python::attach(|py| {
                self.setup_plugins.call1(py, (client.profile_name(), conf)).map(drop).map_err(|e| ClientError::Plugin {
                    name: profile.plugins.join(", "),
                    source: Box::new(PluginFailure(e.value(py).to_string())),
                })
            })?;
        }
        let dispatch = self.dispatch.clone();
        client.events().on_any(move |ev| forward(&dispatch, ev));
        for action in Action::ALL {
            client.events().guard(action, refuse_after_failed_callback);
        }
        Ok(())
    }
}

/// Calls `bakthat.events._dispatch` with the event; keeps what it raises.
fn forward(dispatch: &Py<PyAny>, ev: &Event<'_>) {
    Python::attach(|py| {
        let records = if ev.kind.before { Ok(None) } else { convert::records(py, ev.records()).map(Some) };
        let error = ev.error().map(|e| bakthat::error_chain(e));
        let called = records.and_then(|records| {
            dispatch.call1(py, (ev.kind.name(), ev.session_id.to_string(), records, error)).map(drop)
        });
        if let Err(err) = called {
            let value = err.value(py);
            let name = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
            let message = format!("a Python callback raised {name}: {value}");
            let cli = CLI.load(Ordering::SeqCst);
            if cli {
                eprintln!("bakthat: warning: a Python callback of {} raised:", ev.kind.name());
                err.clone_ref(py).print(py);
            }
            // The command line only needs the `before_*` ones, for the guard.
            if !cli || ev.kind.before {
                errors().push(CallbackError { session: ev.session_id, before: ev.kind.before, message, err });
            }
        }
    });
}

/// The guard: a `before_*` callback that raised stops the action.
fn refuse_after_failed_callback(ev: &Event<'_>) -> Result<(), String> {
    let mut all = errors();
    let Some(i) = all.iter().position(|e| e.session == ev.session_id && e.before) else { return Ok(()) };
    let message = all[i].message.clone();
    if CLI.load(Ordering::SeqCst) {
        // Its traceback is printed; nothing will take it.
        let gone = all.remove(i);
        drop(all);
        Python::attach(|_| drop(gone));
    }
    Err(message)
}

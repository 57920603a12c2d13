//! Events: `before_*` and `on_*` for backup, restore, delete, delete_older_than and rotate_backups, and the
//! registry of Rust callbacks a [`Client`](super::Client) fires them through.
//!
//! Every action of a client gets a session id (a UUID v4). `before_<action>` fires first, then the action runs, then
//! `on_<action>` fires with the result: the typed outcome, or the error. Both events of one action carry the same
//! session id. Callbacks run synchronously on the thread doing the action, in the order they were registered.
//!
//! Callbacks observe; they cannot stop an action. A [guard](Events::guard) can: it runs after the `before_*`
//! callbacks and an error from it stops the action, as a failing `before_*` hook does. This module does not run
//! shell commands (see the `hooks` key of a profile, handled by the client).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Value};
use uuid::Uuid;

use super::ClientError;
use crate::model::BackupRecord;
use crate::ops::{BackupOutcome, Planned, RestoreOutcome};

/// The actions that fire events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Backup,
    Restore,
    Delete,
    DeleteOlderThan,
    RotateBackups,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 5] =
        [Action::Backup, Action::Restore, Action::Delete, Action::DeleteOlderThan, Action::RotateBackups];

    /// The name used in event names and hooks: `backup`, `restore`, `delete`, `delete_older_than`,
    /// `rotate_backups`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Backup => "backup",
            Action::Restore => "restore",
            Action::Delete => "delete",
            Action::DeleteOlderThan => "delete_older_than",
            Action::RotateBackups => "rotate_backups",
        }
    }

    /// The event fired before this action runs.
    pub fn before(self) -> EventKind {
        EventKind { action: self, before: true }
    }

    /// The event fired after this action, with its result.
    pub fn on(self) -> EventKind {
        EventKind { action: self, before: false }
    }
}

/// One of the ten events: an action and whether it is the `before_*` or the `on_*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKind {
    pub action: Action,
    /// `true` for `before_*`, `false` for `on_*`.
    pub before: bool,
}

impl EventKind {
    /// All ten events, `before_*` and `on_*` of each action.
    pub fn all() -> impl Iterator<Item = EventKind> {
        Action::ALL.into_iter().flat_map(|a| [a.before(), a.on()])
    }

    /// The event's name, e.g. `before_backup` or `on_rotate_backups`.
    pub fn name(self) -> String {
        format!("{}_{}", if self.before { "before" } else { "on" }, self.action.as_str())
    }

    /// Parses a name such as `on_delete_older_than`.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::all().find(|k| k.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What an action produced, as `on_*` events see it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Backup(&'a BackupOutcome),
    Restore(&'a RestoreOutcome),
    Delete(&'a BackupRecord),
    /// delete_older_than and rotate_backups: every backup considered, with `keep` and the reasons.
    Plan(&'a [Planned]),
}

impl<'a> Outcome<'a> {
    /// The backups the action stored, restored or deleted (for a plan: those deleted, or that a dry run would
    /// delete).
    pub fn records(&self) -> Vec<&'a BackupRecord> {
        match *self {
            Outcome::Backup(b) => vec![&b.record],
            Outcome::Restore(r) => vec![&r.record],
            Outcome::Delete(r) => vec![r],
            Outcome::Plan(p) => p.iter().filter(|p| !p.keep).map(|p| &p.record).collect(),
        }
    }
}

/// One event, as callbacks and hooks receive it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: EventKind,
    /// The same for the `before_*` and `on_*` events of one action.
    pub session_id: Uuid,
    /// The profile of the client.
    pub profile: &'a str,
    /// The backup's name (for restore and delete: the name or stored name asked for).
    pub name: &'a str,
    /// What is backed up (backup only).
    pub source: Option<&'a Path>,
    /// The destination, when the action is limited to one.
    pub destination: Option<&'a str>,
    /// Whether a delete_older_than or rotate_backups only plans.
    pub dry_run: bool,
    /// `None` for `before_*`; for `on_*` the outcome or the error.
    pub result: Option<Result<Outcome<'a>, &'a ClientError>>,
}

impl Event<'_> {
    /// The records of a successful `on_*` event (empty otherwise).
    pub fn records(&self) -> Vec<&BackupRecord> {
        match &self.result {
            Some(Ok(outcome)) => outcome.records(),
            _ => Vec::new(),
        }
    }

    /// The error of a failed `on_*` event.
    pub fn error(&self) -> Option<&ClientError> {
        match self.result {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// The event as the JSON document hooks read on stdin (see the README, "Hooks").
    pub fn to_json(&self) -> Value {
        let status = match &self.result {
            None => Value::Null,
            Some(Ok(_)) => "ok".into(),
            Some(Err(_)) => "error".into(),
        };
        let plan = match &self.result {
            Some(Ok(Outcome::Plan(p))) => Value::Array(
                p.iter()
                    .map(|p| json!({"stored_filename": p.record.stored_filename, "keep": p.keep, "reasons": p.reasons}))
                    .collect(),
            ),
            _ => Value::Null,
        };
        json!({
            "event": self.kind.name(),
            "action": self.kind.action.as_str(),
            "session_id": self.session_id.to_string(),
            "profile": self.profile,
            "name": self.name,
            "source": self.source.map(|s| s.display().to_string()),
            "destination": self.destination,
            "dry_run": self.dry_run,
            "status": status,
            "records": self.records(),
            "plan": plan,
            "error": self.error().map(|e| e.to_string()),
        })
    }
}

type Handler = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
/// Callbacks with the event they are for (`None`: every event).
type Registry = Vec<(Option<EventKind>, Handler)>;
type Guard = Arc<dyn Fn(&Event<'_>) -> Result<(), String> + Send + Sync>;

/// The callbacks registered on a client. Cloning gives another handle to the same registry (plugins keep one).
#[derive(Clone, Default)]
pub struct Events {
    handlers: Arc<Mutex<Registry>>,
    guards: Arc<Mutex<Vec<(Action, Guard)>>>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.handlers.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Events").field("handlers", &n).finish()
    }
}

macro_rules! shortcuts {
    ($($(#[$doc:meta])* $fname:ident => $action:ident . $phase:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $fname(&self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> &Self {
                self.on(Action::$action.$phase(), f)
            }
        )*
    };
}

impl Events {
    /// A registry with no callbacks.
    pub fn new() -> Events {
        Events::default()
    }

    /// Calls `f` on every `kind` event.
    pub fn on(&self, kind: EventKind, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> &Self {
        self.lock().push((Some(kind), Arc::new(f)));
        self
    }

    /// Calls `f` on every event.
    pub fn on_any(&self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> &Self {
        self.lock().push((None, Arc::new(f)));
        self
    }

    /// Calls `f` before each `action` runs (after the `before_*` callbacks, before the profile's hooks). An error
    /// stops the action: it fails with [`ClientError::Refused`] carrying the message, and `on_*` reports that.
    pub fn guard(&self, action: Action, f: impl Fn(&Event<'_>) -> Result<(), String> + Send + Sync + 'static) -> &Self {
        self.guards.lock().unwrap_or_else(PoisonError::into_inner).push((action, Arc::new(f)));
        self
    }

    /// Runs the guards of a `before_*` event in registration order; the first error stops.
    pub(crate) fn check(&self, event: &Event<'_>) -> Result<(), ClientError> {
        let guards: Vec<Guard> = self
            .guards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(a, _)| event.kind.before && *a == event.kind.action)
            .map(|(_, g)| g.clone())
            .collect();
        for g in guards {
            g(event).map_err(|reason| ClientError::Refused { event: event.kind.name(), reason })?;
        }
        Ok(())
    }

    shortcuts! {
        /// Before a backup is made.
        before_backup => Backup.before;
        /// After a backup, with the stored record or the error.
        on_backup => Backup.on;
        /// Before a restore.
        before_restore => Restore.before;
        /// After a restore.
        on_restore => Restore.on;
        /// Before a delete.
        before_delete => Delete.before;
        /// After a delete, with the deleted record.
        on_delete => Delete.on;
        /// Before delete_older_than.
        before_delete_older_than => DeleteOlderThan.before;
        /// After delete_older_than, with the plan.
        on_delete_older_than => DeleteOlderThan.on;
        /// Before rotate_backups.
        before_rotate_backups => RotateBackups.before;
        /// After rotate_backups, with the plan.
        on_rotate_backups => RotateBackups.on;
    }

    /// Calls the callbacks registered for `event.kind`, in registration order. Callbacks may register more
    /// callbacks; those run from the next event on.
    pub fn emit(&self, event: &Event<'_>) {
        let matching: Vec<Handler> =
            self.lock().iter().filter(|(k, _)| k.is_none_or(|k| k == event.kind)).map(|(_, h)| h.clone()).collect();
        for h in matching {
            h(event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.handlers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn names_round_trip() {
        let names: Vec<String> = EventKind::all().map(|k| k.name()).collect();
        assert_eq!(names.len(), 10);
        assert!(names.contains(&"before_delete_older_than".to_string()));
        assert!(names.contains(&"on_rotate_backups".to_string()));
        for k in EventKind::all() {
            assert_eq!(EventKind::parse(&k.name()), Some(k));
        }
        assert_eq!(EventKind::parse("on_bakup"), None);
    }

    #[test]
    fn callbacks_run_for_their_event_only() {
        let events = Events::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let all = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        events.on_backup(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        let a = all.clone();
        events.on_any(move |_| {
            a.fetch_add(1, Ordering::SeqCst);
        });
        let mut ev = Event {
            kind: Action::Backup.before(),
            session_id: Uuid::new_v4(),
            profile: "default",
            name: "x",
            source: None,
            destination: None,
            dry_run: false,
            result: None,
        };
        events.emit(&ev);
        ev.kind = Action::Backup.on();
        events.emit(&ev);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(all.load(Ordering::SeqCst), 2);
        assert_eq!(ev.to_json()["event"], "on_backup");
    }
}

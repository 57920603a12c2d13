//! Cold storage in the mount: what is known in memory about each cold object, asking [`crate::stores::cold`] (the
//! one place that starts a retrieval and records its job, shared with `bakthat restore`) at most once per poll
//! interval, and polling pending ones.
//!
//! Not here: what the status file says about it (`status.rs`).

use std::time::Instant;

use crate::model::BackupRecord;
use crate::storage::{Backend, Retrieval};
use crate::stores::cold;

use super::error::storage_error;
use super::{lock, FsError, Inner, Result};

/// What is known about a cold object's readability.
#[derive(Debug, Clone)]
pub(super) struct Cold {
    pub state: Retrieval,
    pub checked: Instant,
}

/// How a retrieval state reads in error messages.
pub(super) fn state_word(r: &Retrieval) -> &'static str {
    match r {
        Retrieval::Ready => "ready",
        Retrieval::NotStarted => "not started",
        Retrieval::Pending { .. } => "in progress",
    }
}

impl Inner {
    /// Succeeds when the object can be read now; otherwise starts its retrieval (once) and says it is pending.
    pub(super) fn ensure_retrievable(&self, record: &BackupRecord, backend: &dyn Backend) -> Result<()> {
        if !record.backend.may_be_cold() {
            return Ok(());
        }
        let stored = record.stored_filename.as_str();
        let pending = |state: &Retrieval| FsError::RetrievalPending {
            stored: stored.to_string(),
            state: state_word(state).to_string(),
        };
        if let Some(c) = lock(&self.cold).get(stored) {
            match &c.state {
                Retrieval::Ready => return Ok(()),
                s @ Retrieval::Pending { .. } if c.checked.elapsed() < self.opts.poll_interval => {
                    return Err(pending(s))
                }
                _ => {}
            }
        }
        // One thread at a time decides for one object, so the retrieval is started once.
        let guard = self.cache.lock_key(&format!("retrieval-{stored}"));
        let _g = lock(&guard);
        if let Some(c) = lock(&self.cold).get(stored) {
            if c.state == Retrieval::Ready {
                return Ok(());
            }
        }
        let requested = cold::request(&self.ctx().inventory, record, backend, self.ctx().now())
            .map_err(|e| storage_error(stored, e))?;
        let state = requested.state;
        if requested.started {
            tracing::warn!(
                stored,
                state = state_word(&state),
                "started the retrieval of a cold backup; reads give EAGAIN until it completes"
            );
        }
        self.note_state(stored, state.clone());
        match state {
            Retrieval::Ready => Ok(()),
            other => Err(pending(&other)),
        }
    }

    /// Remembers a retrieval state (its job is in the inventory, see [`crate::stores::cold`]).
    pub(super) fn note_state(&self, stored: &str, state: Retrieval) {
        let before =
            lock(&self.cold).insert(stored.to_string(), Cold { state: state.clone(), checked: Instant::now() });
        if state == Retrieval::Ready && before.is_some_and(|c| matches!(c.state, Retrieval::Pending { .. })) {
            tracing::warn!(stored, "the retrieval of a cold backup completed; reads work now");
        }
    }

    pub(super) fn poll_retrievals(&self) {
        let pending: Vec<String> = lock(&self.cold)
            .iter()
            .filter(|(_, c)| matches!(c.state, Retrieval::Pending { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for stored in pending {
            let record = match self.ctx().inventory.get(&crate::model::StoredName::from_key(stored.clone())) {
                Ok(Some(r)) if !r.is_deleted => r,
                _ => continue,
            };
            let res = self.backend(&record).and_then(|b| {
                let r = cold::request(&self.ctx().inventory, &record, b.as_ref(), self.ctx().now());
                self.note_state(&stored, r.map_err(|e| storage_error(&stored, e))?.state);
                Ok(())
            });
            if let Err(e) = res {
                tracing::warn!("polling the retrieval of {stored}: {e:#}");
            }
        }
    }
}

//! Cold storage: whether a backup's object can be read now, starting its retrieval (once) when it cannot, the
//! retrieval jobs recorded in the inventory (shared with `bakthat restore`), and polling pending ones.
//!
//! Not here: what the status file says about it (`status.rs`).

use std::time::Instant;

use crate::inventory::{Job, JobKind, JobStatus};
use crate::model::BackupRecord;
use crate::storage::{Backend, Retrieval};

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

/// Stores whose objects may need a retrieval before they can be read.
pub(super) fn may_be_cold(kind: &str) -> bool {
    matches!(kind, "glacier" | "s3")
}

impl Inner {
    /// Succeeds when the object can be read now; otherwise starts its retrieval (once) and says it is pending.
    pub(super) fn ensure_retrievable(&self, record: &BackupRecord, backend: &dyn Backend) -> Result<()> {
        if !may_be_cold(backend.kind()) {
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
        let mut state = backend.retrieval_state(stored).map_err(|e| storage_error(stored, e))?;
        if state == Retrieval::NotStarted {
            state = backend.start_retrieval(stored).map_err(|e| storage_error(stored, e))?;
            tracing::warn!(
                stored,
                state = state_word(&state),
                "started the retrieval of a cold backup; reads give EAGAIN until it completes"
            );
        }
        self.note_state(record, backend, &state)?;
        match state {
            Retrieval::Ready => Ok(()),
            other => Err(pending(&other)),
        }
    }

    /// Records a retrieval state in memory and its job in the inventory (shared with `bakthat restore`).
    pub(super) fn note_state(&self, record: &BackupRecord, backend: &dyn Backend, state: &Retrieval) -> Result<()> {
        let stored = record.stored_filename.as_str();
        lock(&self.cold).insert(stored.to_string(), Cold { state: state.clone(), checked: Instant::now() });
        let kind = if backend.kind() == "glacier" { JobKind::ArchiveRetrieval } else { JobKind::S3Restore };
        let now = self.ctx().now();
        let inv = &self.ctx().inventory;
        match state {
            Retrieval::Pending { job_id, .. } => {
                let existing = inv.job(stored, kind)?;
                if existing.as_ref().is_none_or(|j| j.status != JobStatus::Pending) {
                    inv.put_job(&Job {
                        target: stored.to_string(),
                        job_id: job_id.clone().unwrap_or_else(|| "restore".into()),
                        backend: backend.kind().to_string(),
                        kind,
                        status: JobStatus::Pending,
                        created_at: now,
                        ready_at: None,
                        updated_at: now,
                    })?;
                }
            }
            Retrieval::Ready => {
                if inv.job(stored, kind)?.is_some_and(|j| j.status == JobStatus::Pending) {
                    inv.update_job_status(stored, kind, JobStatus::Ready, now)?;
                    tracing::warn!(stored, "the retrieval of a cold backup completed; reads work now");
                }
            }
            Retrieval::NotStarted => {}
        }
        Ok(())
    }

    pub(super) fn poll_retrievals(&self) {
        let pending: Vec<String> = lock(&self.cold)
            .iter()
            .filter(|(_, c)| matches!(c.state, Retrieval::Pending { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for stored in pending {
            let slot = self.tree().slot_of.get(&stored).copied();
            let Some(slot) = slot else { continue };
            let record = self.record(slot);
            let res = self.backend(&record).and_then(|b| {
                let s = b.retrieval_state(&stored).map_err(|e| storage_error(&stored, e))?;
                self.note_state(&record, b.as_ref(), &s)
            });
            if let Err(e) = res {
                tracing::warn!("polling the retrieval of {stored}: {e:#}");
            }
        }
    }
}

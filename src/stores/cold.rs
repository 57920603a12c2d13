//! Cold retrievals: the one place that checks whether a backup's object can be read now and, when it cannot,
//! starts its retrieval (once) and records the job in the inventory. `restore`, `verify`, `share` and the mount all
//! come here, so a retrieval started by one is seen as "retrieving" by the others.
//!
//! Not here: how long to wait or how often to ask again (the mount keeps its own poll interval), nor the messages.

use crate::inventory::{Inventory, Job, JobKind, JobStatus};
use crate::model::{BackupRecord, Destination, Epoch};
use crate::storage::{Backend, Retrieval, StorageError};

/// What [`request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The object's state after the call.
    pub state: Retrieval,
    /// Whether this call started the retrieval.
    pub started: bool,
}

/// The kind of job that makes an object of `destination` readable.
pub fn job_kind(destination: Destination) -> JobKind {
    match destination {
        Destination::Glacier => JobKind::ArchiveRetrieval,
        Destination::S3 | Destination::Local | Destination::Swift => JobKind::S3Restore,
    }
}

/// Whether `record` can be read from `store` now; if its retrieval has not started, starts it. The job is recorded
/// in the inventory (best effort: a failure to record it is logged, the retrieval still counts).
pub fn request(
    inventory: &Inventory,
    record: &BackupRecord,
    store: &dyn Backend,
    now: Epoch,
) -> Result<Requested, StorageError> {
    if !record.backend.may_be_cold() {
        return Ok(Requested { state: Retrieval::Ready, started: false });
    }
    let key = record.stored_filename.as_str();
    let mut state = store.retrieval_state(key)?;
    let started = state == Retrieval::NotStarted;
    if started {
        state = store.start_retrieval(key)?;
    }
    if let Err(e) = note(inventory, record, &state, now) {
        tracing::warn!(stored = key, "the retrieval job could not be recorded in the inventory: {e}");
    }
    Ok(Requested { state, started })
}

/// Records a retrieval state as the object's job: a pending retrieval gets a job row (unless one is pending
/// already), a ready object marks its pending job ready.
fn note(
    inventory: &Inventory,
    record: &BackupRecord,
    state: &Retrieval,
    now: Epoch,
) -> Result<(), crate::inventory::InventoryError> {
    let stored = record.stored_filename.as_str();
    let kind = job_kind(record.backend);
    match state {
        Retrieval::Pending { job_id, .. } => {
            let existing = inventory.job(stored, kind)?;
            if existing.as_ref().is_none_or(|j| j.status != JobStatus::Pending) {
                inventory.put_job(&Job {
                    target: stored.to_string(),
                    job_id: job_id.clone().unwrap_or_else(|| "restore".into()),
                    backend: record.backend,
                    kind,
                    status: JobStatus::Pending,
                    created_at: now,
                    ready_at: None,
                    updated_at: now,
                })?;
            }
        }
        Retrieval::Ready => {
            if inventory.job(stored, kind)?.is_some_and(|j| j.status == JobStatus::Pending) {
                inventory.update_job_status(stored, kind, JobStatus::Ready, now)?;
            }
        }
        Retrieval::NotStarted => {}
    }
    Ok(())
}

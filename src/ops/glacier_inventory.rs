//! The Glacier inventory commands: `show_glacier_inventory` (what the vault holds, through an inventory-retrieval
//! job), `show_local_glacier_inventory` (the archive ids the local inventory knows), and `backup_glacier_inventory`
//! / `restore_glacier_inventory` (a JSON copy of those ids under the S3 key [`GLACIER_INVENTORY_KEY`] of the
//! profile's bucket, as 0.6 designed it, so a new machine can restore from the vault).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Ctx, OpsError};
use crate::inventory::{Job, JobKind, JobStatus};
use crate::model::{BackupRecord, Destination, StoredName};
use crate::storage::glacier::{VaultArchive, VaultInventory};
use crate::storage::{Backend, PutOptions, Retrieval};
use crate::stores::GLACIER_META_PREFIX as META_PREFIX;

/// The S3 key of the JSON copy of the archive ids (0.6's name).
pub const GLACIER_INVENTORY_KEY: &str = "bakthat_glacier_inventory";

/// An archive the local inventory knows; also one element of the JSON copy (`filename` and `archive_id` are 0.6's
/// fields; `size` is bakthat's addition and optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalArchive {
    /// The stored filename (the archive description).
    pub filename: String,
    pub archive_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What `restore_glacier_inventory` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoredInventory {
    /// Archive ids added to the local inventory.
    pub added: usize,
    /// Entries the local inventory already had.
    pub known: usize,
    /// Backup rows created for archives the inventory had no row for (so `restore NAME` finds them).
    pub rows_created: usize,
}

/// What the vault holds, from an inventory-retrieval job. The first call starts the job and, like a Glacier
/// restore, fails with [`OpsError::Pending`] (exit 75) until Glacier has run it (hours on AWS); the job is kept in
/// the inventory and its output reused until Glacier forgets it (24 hours).
pub fn show_glacier_inventory(ctx: &Ctx) -> Result<Vec<VaultArchive>, OpsError> {
    let store = ctx.stores().glacier()?;
    let target = format!("vault:{}", store.vault());
    let known = ctx.inventory.job(&target, JobKind::InventoryRetrieval)?;
    let what = format!("the inventory of glacier vault {}", store.vault());
    let now = ctx.now();
    let job = |job_id: &str, status, created_at| Job {
        target: target.clone(),
        job_id: job_id.to_string(),
        backend: Destination::Glacier,
        kind: JobKind::InventoryRetrieval,
        status,
        created_at,
        ready_at: (status == JobStatus::Ready).then_some(now),
        updated_at: now,
    };
    match store.vault_inventory(known.as_ref().map(|j| j.job_id.as_str()))? {
        VaultInventory::Ready { job_id, archives } => {
            if known.as_ref().is_some_and(|j| j.status != JobStatus::Ready) {
                ctx.inventory.update_job_status(&target, JobKind::InventoryRetrieval, JobStatus::Ready, now)?;
            } else if known.is_none() {
                ctx.inventory.put_job(&job(&job_id, JobStatus::Ready, now))?;
            }
            Ok(archives)
        }
        VaultInventory::Pending { job_id, ready_at, .. } => {
            Err(super::pending(&what, &Retrieval::Pending { job_id: Some(job_id), ready_at: Some(ready_at) }))
        }
        VaultInventory::Started { job_id } => {
            ctx.inventory.put_job(&job(&job_id, JobStatus::Pending, now))?;
            Err(super::pending(&what, &Retrieval::Pending { job_id: Some(job_id), ready_at: Some(now + 4 * 3600) }))
        }
    }
}

/// The archives the local inventory knows (no network).
pub fn show_local_glacier_inventory(ctx: &Ctx) -> Result<Vec<LocalArchive>, OpsError> {
    let mut out = Vec::new();
    for (name, archive_id) in ctx.inventory.all_archive_ids()? {
        let size = match ctx.inventory.get_config(&format!("{META_PREFIX}{name}"))? {
            Some(m) => m.get("size").and_then(|v| v.as_u64()),
            None => None,
        };
        let size = match size {
            Some(s) => Some(s),
            None => ctx.inventory.get(&name)?.map(|r| r.size),
        };
        out.push(LocalArchive { filename: name.as_str().to_string(), archive_id, size });
    }
    Ok(out)
}

/// Writes the local archive ids as JSON to [`GLACIER_INVENTORY_KEY`] in the profile's S3 bucket; returns how many.
pub fn backup_glacier_inventory(ctx: &Ctx) -> Result<usize, OpsError> {
    let archives = show_local_glacier_inventory(ctx)?;
    let bytes = serde_json::to_vec_pretty(&archives)
        .map_err(|e| OpsError::Io { context: "encoding the glacier inventory".into(), source: e.into() })?;
    ctx.stores().s3_hot()?.put_bytes(GLACIER_INVENTORY_KEY, &bytes, &PutOptions::default())?;
    Ok(archives.len())
}

/// Reads [`GLACIER_INVENTORY_KEY`] back into the local inventory: archive ids it lacks, and a backup row (from the
/// stored name) for archives it has no row for.
pub fn restore_glacier_inventory(ctx: &Ctx) -> Result<RestoredInventory, OpsError> {
    let store = ctx.stores().s3_hot()?;
    let Some((bytes, _)) = store.get_with_metadata(GLACIER_INVENTORY_KEY)? else {
        return Err(crate::storage::StorageError::NotFound {
            store: store.describe(),
            key: format!("{GLACIER_INVENTORY_KEY} (run backup_glacier_inventory first)"),
        }
        .into());
    };
    let archives: Vec<LocalArchive> = serde_json::from_slice(&bytes).map_err(|e| OpsError::Io {
        context: format!(
            "{GLACIER_INVENTORY_KEY} in {} is not a JSON list of {{filename, archive_id}}",
            store.describe()
        ),
        source: e.into(),
    })?;
    let mut done = RestoredInventory::default();
    for a in archives {
        let name = StoredName::from_key(a.filename.clone());
        if ctx.inventory.archive_id(&name)?.as_deref() == Some(a.archive_id.as_str()) {
            done.known += 1;
        } else {
            ctx.inventory.put_archive_id(&name, &a.archive_id)?;
            if let Some(size) = a.size {
                ctx.inventory.set_config(&format!("{META_PREFIX}{name}"), &json!({ "size": size, "created": null }))?;
            }
            done.added += 1;
        }
        if ctx.inventory.get(&name)?.is_none() {
            if let Some(record) = row_for(ctx, &name, a.size) {
                ctx.inventory.insert_for_profile(&record, Some(&ctx.profile_name))?;
                done.rows_created += 1;
            }
        }
    }
    Ok(done)
}

/// A backup row for an archive known only by its stored name (`name.YYYYmmddHHMMSS.tgz[.enc]`).
fn row_for(ctx: &Ctx, stored: &StoredName, size: Option<u64>) -> Option<BackupRecord> {
    let parsed = stored.parse()?;
    let date = chrono::NaiveDateTime::parse_from_str(&parsed.date, "%Y%m%d%H%M%S").ok()?.and_utc().timestamp();
    let record = BackupRecord {
        id: None,
        backend: Destination::Glacier,
        backend_hash: ctx.stores().backend_hash(Destination::Glacier).ok(),
        backup_date: date,
        filename: parsed.name,
        is_deleted: false,
        last_updated: ctx.now(),
        metadata: json!({ "is_enc": parsed.enc, "restored_from": GLACIER_INVENTORY_KEY }),
        size: size.unwrap_or(0),
        stored_filename: stored.clone(),
        tags: String::new(),
        store: ctx.stores().identity(Destination::Glacier).unwrap_or_default(),
    };
    // The description is whatever the vault's uploader wrote: a name that cannot be a file name gets no row.
    record.check_names().map_err(|bad| ctx.reporter.warn(&bad.to_string())).ok()?;
    Some(record)
}

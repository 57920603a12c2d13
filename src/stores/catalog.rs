//! The inventory as the Glacier store's catalog: archive ids in the `inventory` table, retrieval jobs in `jobs`
//! (kind `archive-retrieval`), and each archive's size and upload time in the `config` table under
//! `glacier-archive:<key>` (the 0.6 `inventory` table has no column for them).
//!
//! This is only an adapter: the storage module does not know the inventory, and the inventory does not know Glacier.

use std::sync::Arc;

use serde_json::json;

use crate::inventory::{Inventory, Job, JobKind, JobStatus};
use crate::model::{Destination, StoredName};
use crate::storage::glacier::{ArchiveEntry, CatalogError, GlacierCatalog, JobState, RetrievalJob};

/// Prefix of the config keys holding archive sizes.
pub(crate) const META_PREFIX: &str = "glacier-archive:";

/// [`GlacierCatalog`] over the inventory.
pub struct InventoryCatalog {
    inventory: Arc<Inventory>,
}

impl InventoryCatalog {
    pub fn new(inventory: Arc<Inventory>) -> Self {
        InventoryCatalog { inventory }
    }

    fn entry(&self, key: &str, archive_id: String) -> Result<ArchiveEntry, CatalogError> {
        let meta = self.inventory.get_config(&format!("{META_PREFIX}{key}"))?;
        let size = meta.as_ref().and_then(|m| m.get("size")).and_then(|v| v.as_u64());
        let created = meta.as_ref().and_then(|m| m.get("created")).and_then(|v| v.as_i64());
        // Archives uploaded by 0.6 have no recorded size: the backup row's is the archive's.
        let size = match size {
            Some(s) => Some(s),
            None => self.inventory.get(&StoredName::from_key(key))?.map(|r| r.size),
        };
        Ok(ArchiveEntry { archive_id, size, created })
    }
}

impl GlacierCatalog for InventoryCatalog {
    fn archive(&self, key: &str) -> Result<Option<ArchiveEntry>, CatalogError> {
        match self.inventory.archive_id(&StoredName::from_key(key))? {
            Some(id) => Ok(Some(self.entry(key, id)?)),
            None => Ok(None),
        }
    }

    fn put_archive(&self, key: &str, entry: &ArchiveEntry) -> Result<(), CatalogError> {
        self.inventory.put_archive_id(&StoredName::from_key(key), &entry.archive_id)?;
        self.inventory
            .set_config(&format!("{META_PREFIX}{key}"), &json!({ "size": entry.size, "created": entry.created }))?;
        Ok(())
    }

    fn remove_archive(&self, key: &str) -> Result<(), CatalogError> {
        self.inventory.remove_archive_id(&StoredName::from_key(key))?;
        self.inventory.set_config(&format!("{META_PREFIX}{key}"), &serde_json::Value::Null)?;
        Ok(())
    }

    fn archives(&self, prefix: &str) -> Result<Vec<(String, ArchiveEntry)>, CatalogError> {
        let mut out = Vec::new();
        for (name, id) in self.inventory.all_archive_ids()? {
            let key = name.as_str().to_string();
            if key.starts_with(prefix) {
                let entry = self.entry(&key, id)?;
                out.push((key, entry));
            }
        }
        Ok(out)
    }

    fn job(&self, key: &str) -> Result<Option<RetrievalJob>, CatalogError> {
        Ok(self.inventory.job(key, JobKind::ArchiveRetrieval)?.and_then(|j| {
            let state = match j.status {
                JobStatus::Pending => JobState::Pending,
                JobStatus::Ready => JobState::Ready,
                // A failed or expired job is as good as none: a new one is started.
                JobStatus::Failed | JobStatus::Expired => return None,
            };
            Some(RetrievalJob { job_id: j.job_id, state, created_at: j.created_at })
        }))
    }

    fn put_job(&self, key: &str, job: &RetrievalJob) -> Result<(), CatalogError> {
        let ready = job.state == JobState::Ready;
        self.inventory.put_job(&Job {
            target: key.to_string(),
            job_id: job.job_id.clone(),
            backend: Destination::Glacier,
            kind: JobKind::ArchiveRetrieval,
            status: if ready { JobStatus::Ready } else { JobStatus::Pending },
            created_at: job.created_at,
            ready_at: ready.then_some(job.created_at),
            updated_at: job.created_at,
        })?;
        Ok(())
    }

    fn set_job_ready(&self, key: &str, now: i64) -> Result<(), CatalogError> {
        self.inventory.update_job_status(key, JobKind::ArchiveRetrieval, JobStatus::Ready, now)?;
        Ok(())
    }

    fn delete_job(&self, key: &str) -> Result<(), CatalogError> {
        self.inventory.delete_job(key, JobKind::ArchiveRetrieval)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_and_jobs_round_trip_through_the_inventory() {
        let c = InventoryCatalog::new(Arc::new(Inventory::open_in_memory().unwrap()));
        assert!(c.archive("a.tgz").unwrap().is_none());
        let e = ArchiveEntry { archive_id: "id-1".into(), size: Some(42), created: Some(1000) };
        c.put_archive("a.tgz", &e).unwrap();
        c.put_archive("b.tgz", &ArchiveEntry { archive_id: "id-2".into(), size: None, created: None }).unwrap();
        assert_eq!(c.archive("a.tgz").unwrap(), Some(e.clone()));
        let keys: Vec<String> = c.archives("a").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["a.tgz"]);
        assert_eq!(c.archives("").unwrap().len(), 2);

        assert!(c.job("a.tgz").unwrap().is_none());
        c.put_job("a.tgz", &RetrievalJob { job_id: "j1".into(), state: JobState::Pending, created_at: 5 }).unwrap();
        assert_eq!(c.job("a.tgz").unwrap().map(|j| j.state), Some(JobState::Pending));
        c.set_job_ready("a.tgz", 9).unwrap();
        let j = c.job("a.tgz").unwrap().unwrap();
        assert_eq!((j.job_id.as_str(), j.state, j.created_at), ("j1", JobState::Ready, 5));
        c.delete_job("a.tgz").unwrap();
        assert!(c.job("a.tgz").unwrap().is_none());

        c.remove_archive("a.tgz").unwrap();
        assert!(c.archive("a.tgz").unwrap().is_none());
        assert_eq!(c.archives("").unwrap().len(), 1);
    }
}

//! What the mount says about itself: each backup's [`BackupStatus`] (built from memory and the inventory, never a
//! store), rendered as the `.bakthat-status` file and as `user.bakthat.*` extended attributes; /incoming units'
//! progress; the root's request meters.
//!
//! Not here: changing any of that state (`cold.rs` records retrievals, `incoming.rs` runs units).

use crate::inventory::{Job, JobKind, JobStatus};
use crate::model::Epoch;
use crate::storage::Retrieval;

use super::incoming::UnitState;
use super::index::Unreadable;
use super::tree::{NodeKind, Slot};
use super::{lock, Area, Fs, FsError, Inner, Ino, Result, XattrReply, ROOT, XATTR_PREFIX};

/// Whether a backup's data can be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Availability {
    /// Readable now (a hot store, or a completed retrieval).
    Ready,
    /// A retrieval runs; reads give EAGAIN until it completes.
    Retrieving,
    /// In cold storage with no retrieval asked for; the first read starts one.
    Archived,
}

impl Availability {
    fn word(self) -> &'static str {
        match self {
            Availability::Ready => "ready",
            Availability::Retrieving => "retrieving",
            Availability::Archived => "archived",
        }
    }

    fn is_cold(self) -> bool {
        matches!(self, Availability::Retrieving | Availability::Archived)
    }
}

/// Everything the status file and the xattrs say about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BackupStatus {
    pub availability: Availability,
    pub storage_class: String,
    pub backend: String,
    pub stored_name: String,
    pub job_id: Option<String>,
    pub ready_at: Option<Epoch>,
    pub size: u64,
    pub tags: String,
    /// Why its content cannot be listed in this mount, if it cannot.
    pub unreadable: Option<Unreadable>,
}

impl BackupStatus {
    /// The extended attributes, by short name.
    pub fn xattrs(&self) -> Vec<(&'static str, String)> {
        let state = self.unreadable.as_ref().map_or(self.availability.word(), Unreadable::state_word);
        let mut out = vec![("state", state.to_string())];
        if let Some(why) = &self.unreadable {
            out.push(("error", why.describe()));
        }
        out.extend([
            ("storage_class", self.storage_class.clone()),
            ("backend", self.backend.clone()),
            ("stored_name", self.stored_name.clone()),
        ]);
        if let Some(j) = &self.job_id {
            out.push(("job_id", j.clone()));
        }
        if let Some(r) = self.ready_at {
            out.push(("ready_at", crate::model::utc(r).format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        out
    }

    /// The text of `.bakthat-status`: the xattrs, then the size, the tags and a note for cold backups.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (k, v) in self.xattrs() {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&format!("size: {}\n", self.size));
        if !self.tags.is_empty() {
            s.push_str(&format!("tags: {}\n", self.tags));
        }
        if self.availability.is_cold() && self.unreadable.is_none() {
            s.push_str(
                "note: this backup is in cold storage. Reading any file in it starts a retrieval (once); until it \
                 completes reads fail with EAGAIN (\"Resource temporarily unavailable\"). Run the copy again later.\n",
            );
        }
        s
    }
}

impl Fs {
    /// Names of the extended attributes of a node (`user.bakthat.*` on backup content).
    ///
    /// The archive's own files and directories answer `getxattr` by name but list none, so that `cp -a`, `rsync -X`
    /// and file managers do not copy bakthat's state onto restored files; backup directories, status files, the
    /// root and `/incoming` entries list theirs (`getfattr -d`).
    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let content = matches!(self.inner.area(ino)?, Area::Archive)
            && matches!(
                self.inner.tree().node(ino)?.kind,
                NodeKind::Entry(..) | NodeKind::ImpliedDir(_) | NodeKind::Raw(_)
            );
        if content {
            return sized(Vec::new(), size);
        }
        let names = self.inner.xattrs(ino)?;
        let mut data = Vec::new();
        for (n, _) in names {
            data.extend_from_slice(n.as_bytes());
            data.push(0);
        }
        sized(data, size)
    }

    /// One extended attribute of a node.
    pub fn getxattr(&self, ino: Ino, name: &[u8], size: u32) -> Result<XattrReply> {
        // `ls -l` asks every file for `security.selinux` and the POSIX ACLs. "Not supported" (rather than "no such
        // attribute") is the truth, and lets ls and file managers stop asking for the rest of the mount: one round
        // trip per file less for each.
        if !name.starts_with(b"user.") {
            return Err(FsError::XattrNamespace);
        }
        if !name.starts_with(XATTR_PREFIX.as_bytes()) {
            return Err(FsError::NoXattr);
        }
        let attrs = self.inner.xattrs(ino)?;
        let value = attrs.into_iter().find(|(n, _)| n.as_bytes() == name).ok_or(FsError::NoXattr)?.1;
        sized(value.into_bytes(), size)
    }
}

fn sized(data: Vec<u8>, size: u32) -> Result<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(data.len() as u32))
    } else if data.len() > size as usize {
        Err(FsError::XattrTooSmall)
    } else {
        Ok(XattrReply::Data(data))
    }
}

/// The xattrs of an /incoming unit: its state and, while it is backed up, its progress.
fn unit_xattrs(state: Option<UnitState>, progress: Option<(u64, u64)>) -> Vec<(&'static str, String)> {
    match state {
        None => Vec::new(),
        Some(UnitState::Staged) => vec![("state", "staged".into())],
        Some(UnitState::BackingUp) => {
            let mut v = vec![("state", "backing-up".into())];
            if let Some((done, total)) = progress {
                let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
                v.push(("progress", format!("{done}/{total} bytes ({pct}%)")));
            }
            v
        }
        Some(UnitState::Failed(e)) => vec![("state", "failed".into()), ("error", e)],
    }
}

impl Inner {
    /// A backup's status, from memory and the inventory only (never a store).
    pub(super) fn status_of(&self, slot: &Slot) -> BackupStatus {
        let record = &slot.record;
        let stored = record.stored_filename.as_str();
        // The row says where the backup is and with which storage class (no store is asked).
        let storage_class = record.storage_class().map(str::to_string).unwrap_or_else(|| {
            if record.backend.is_archived(None) {
                "GLACIER".into()
            } else {
                "STANDARD".into()
            }
        });
        // Only a backup in cold storage can have a retrieval job: the others cost no query (`ls -l` of ten thousand
        // status files made twenty thousand).
        let job: Option<Job> = if record.is_archived() || lock(&self.cold).contains_key(stored) {
            [JobKind::ArchiveRetrieval, JobKind::S3Restore]
                .into_iter()
                .find_map(|k| self.ctx().inventory.job(stored, k).ok().flatten())
        } else {
            None
        };
        let mem = lock(&self.cold).get(stored).map(|c| c.state.clone());
        let cold_class = record.is_archived();
        let availability = match (&mem, &job) {
            (Some(Retrieval::Ready), _) => Availability::Ready,
            (Some(Retrieval::Pending { .. }), _) => Availability::Retrieving,
            (Some(Retrieval::NotStarted), _) => Availability::Archived,
            (None, Some(j)) if j.status == JobStatus::Pending => Availability::Retrieving,
            (None, Some(j)) if j.status == JobStatus::Ready => Availability::Ready,
            _ if cold_class => Availability::Archived,
            _ => Availability::Ready,
        };
        let mem_job = match &mem {
            Some(Retrieval::Pending { job_id, ready_at }) => Some((job_id.clone(), *ready_at)),
            _ => None,
        };
        let job_id = mem_job.as_ref().and_then(|(j, _)| j.clone()).or_else(|| job.as_ref().map(|j| j.job_id.clone()));
        let ready_at = mem_job.and_then(|(_, r)| r).or_else(|| job.as_ref().and_then(|j| j.ready_at));
        BackupStatus {
            availability,
            storage_class,
            backend: record.backend.to_string(),
            stored_name: stored.to_string(),
            job_id,
            ready_at,
            size: record.size,
            tags: record.tags.clone(),
            unreadable: slot
                .unreadable
                .clone()
                .or_else(|| (record.is_enc() && self.secret.is_none()).then_some(Unreadable::PasswordNeeded)),
        }
    }

    /// The extended attributes of a node, with their full names (`user.bakthat.` + [`Inner::xattr_values`]).
    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>> {
        Ok(self.xattr_values(ino)?.into_iter().map(|(k, v)| (format!("{XATTR_PREFIX}{k}"), v)).collect())
    }

    /// The extended attributes of a node, by short name: an /incoming unit's state and progress, the root's
    /// meters, or the status of the backup a node belongs to.
    fn xattr_values(&self, ino: Ino) -> Result<Vec<(&'static str, String)>> {
        match self.area(ino)? {
            Area::Staged(rel) => return Ok(unit_xattrs(self.incoming.state(&rel), self.incoming.progress(&rel))),
            Area::IncomingRoot => return Ok(Vec::new()),
            Area::Archive => {}
        }
        if ino == ROOT {
            let totals = self.meter.totals();
            return Ok(vec![
                ("store_requests", totals.requests.to_string()),
                ("store_bytes_read", totals.bytes_read.to_string()),
                ("cache_bytes", self.cache.used().to_string()),
                ("cache_cap", self.cache.cap().to_string()),
            ]);
        }
        let id = match self.tree().node(ino)?.kind {
            NodeKind::Backup(id)
            | NodeKind::Entry(id, _)
            | NodeKind::ImpliedDir(id)
            | NodeKind::Raw(id)
            | NodeKind::Status(id) => id,
            NodeKind::Dir | NodeKind::Latest | NodeKind::Incoming | NodeKind::VersionDir | NodeKind::Version => {
                return Ok(Vec::new())
            }
        };
        self.open_slot(id)?;
        let t = self.tree();
        let status = self.status_of(t.slot(id)?);
        drop(t);
        Ok(status.xattrs())
    }
}

//! Importing a bakthat 0.6 `~/.bakthat.sqlite`, opened read-only and immutable so the old file, its mtime and its
//! directory stay exactly as they were (no `-wal`, `-shm` or `-journal` appears). A hot journal left by a crashed
//! 0.6 process is therefore ignored: the import sees the last committed state.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{get_row, insert_row, record_from_row, Inventory, InventoryError, Job, JobKind, JobStatus, Result};
use crate::model::{BackupRecord, BadRecordName, Epoch};

/// How many rows [`Inventory::import_legacy`] copied, how many it skipped because they were already present, and
/// which it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// `backups` rows copied.
    pub backups: usize,
    /// `backups` rows whose stored name was already in the inventory.
    pub backups_skipped: usize,
    /// `backups` rows not copied because a name in them could not be a file name (an absolute path, `..`, NUL, a
    /// name over 255 bytes: see [`crate::model::FileName`]); a restore would have written outside its target.
    pub backups_refused: Vec<BadRecordName>,
    /// Glacier archive ids (`inventory` rows) copied.
    pub archive_ids: usize,
    /// Archive ids whose stored name or id was already known.
    pub archive_ids_skipped: usize,
    /// Glacier jobs copied (as pending archive retrievals).
    pub jobs: usize,
    /// Jobs already present for the same stored name.
    pub jobs_skipped: usize,
    /// `config` rows copied.
    pub config: usize,
    /// `config` keys already set here.
    pub config_skipped: usize,
}

impl ImportReport {
    /// One sentence for the user: what was copied, and what was already here or refused.
    pub fn summary(&self) -> String {
        let part = |n: usize, skipped: usize, what: &str| {
            let skipped = if skipped > 0 { format!(" ({skipped} already here)") } else { String::new() };
            format!("{n} {what}{skipped}")
        };
        let mut text = format!(
            "imported {}, {}, {} and {}",
            part(self.backups, self.backups_skipped, "backups"),
            part(self.archive_ids, self.archive_ids_skipped, "Glacier archive ids"),
            part(self.jobs, self.jobs_skipped, "retrieval jobs"),
            part(self.config, self.config_skipped, "config values"),
        );
        if !self.backups_refused.is_empty() {
            text.push_str(&format!("; refused {} rows with unsafe names", self.backups_refused.len()));
        }
        text
    }
}

/// `file:` URI for a path, percent-encoding everything but unreserved characters and `/`.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    let bytes = path.as_os_str().as_encoded_bytes();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

fn open_legacy(path: &Path) -> Result<Connection> {
    let open_err = |source| InventoryError::Open { path: path.to_path_buf(), source };
    // A relative URI also works; absolute only fails without a current directory.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(immutable_uri(&abs), flags).map_err(open_err)?;
    // Touch the header now so a non-database fails as Open.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map_err(open_err)?;
    Ok(conn)
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [name], |r| {
        r.get(0)
    })
}

fn pairs(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Everything worth copying from a 0.6 database.
struct Legacy {
    backups: Vec<BackupRecord>,
    archive_ids: Vec<(String, String)>,
    jobs: Vec<(String, String)>,
    config: Vec<(String, String)>,
}

fn read_legacy(path: &Path) -> Result<Legacy> {
    let conn = open_legacy(path)?;
    if !has_table(&conn, "backups")? {
        return Err(InventoryError::NotLegacy { path: path.to_path_buf() });
    }
    let mut stmt = conn.prepare(
        "SELECT id, backend, backend_hash, backup_date, filename, is_deleted, last_updated, metadata, size, \
         stored_filename, tags, '' AS store FROM backups ORDER BY id",
    )?;
    let backups = stmt.query_map([], record_from_row)?.collect::<rusqlite::Result<_>>()?;
    let archive_ids = if has_table(&conn, "inventory")? {
        pairs(&conn, "SELECT filename, archive_id FROM inventory ORDER BY id")?
    } else {
        Vec::new()
    };
    let jobs = if has_table(&conn, "jobs")? {
        pairs(&conn, "SELECT filename, job_id FROM jobs ORDER BY id")?
    } else {
        Vec::new()
    };
    let config = if has_table(&conn, "config")? {
        pairs(&conn, "SELECT key, value FROM config ORDER BY id")?
    } else {
        Vec::new()
    };
    Ok(Legacy { backups, archive_ids, jobs, config })
}

impl Inventory {
    /// Copies a bakthat 0.6 database's backups, Glacier archive ids, jobs and config into this inventory, in one
    /// transaction, skipping what is already here. The legacy file is only read.
    ///
    /// Dates are copied as they are: 0.6 stored UTC wall-clock seconds, which equal true epochs on UTC hosts. Jobs
    /// become pending archive retrievals (the store will say if they expired), dated by the legacy file's mtime.
    /// Rows get no profile; their host is the metadata's `client`. Rows with a name that cannot be a file name are
    /// refused (listed in the report), the rest imported.
    pub fn import_legacy(&self, legacy_path: &Path) -> Result<ImportReport> {
        let legacy = read_legacy(legacy_path)?;
        let job_date: Epoch = std::fs::metadata(legacy_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| Epoch::try_from(d.as_secs()).ok())
            .unwrap_or(0);

        let mut report = ImportReport::default();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for record in &legacy.backups {
            if let Err(bad) = record.check_names() {
                // Reported through the report (the CLI prints each), not logged: a warning printed twice is noise.
                report.backups_refused.push(bad);
            } else if get_row(&tx, record.stored_filename.as_str())?.is_some() {
                report.backups_skipped += 1;
            } else {
                insert_row(&tx, record, None)?;
                report.backups += 1;
            }
        }
        for (filename, archive_id) in &legacy.archive_ids {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT id FROM inventory WHERE filename = ?1 OR archive_id = ?2",
                    [filename, archive_id],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                report.archive_ids_skipped += 1;
            } else {
                tx.execute("INSERT INTO inventory (archive_id, filename) VALUES (?1, ?2)", [archive_id, filename])?;
                report.archive_ids += 1;
            }
        }
        for (filename, job_id) in &legacy.jobs {
            let job = Job {
                target: filename.clone(),
                job_id: job_id.clone(),
                backend: crate::model::Destination::Glacier,
                kind: JobKind::ArchiveRetrieval,
                status: JobStatus::Pending,
                created_at: job_date,
                ready_at: None,
                updated_at: job_date,
            };
            let n = tx.execute(
                "INSERT INTO jobs (filename, job_id, backend, kind, status, created_at, ready_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (filename, kind) DO NOTHING",
                rusqlite::params![
                    job.target,
                    job.job_id,
                    job.backend,
                    job.kind,
                    job.status,
                    job.created_at,
                    job.ready_at,
                    job.updated_at
                ],
            )?;
            if n == 0 {
                report.jobs_skipped += 1;
            } else {
                report.jobs += 1;
            }
        }
        for (key, value) in &legacy.config {
            let n = tx.execute(
                "INSERT INTO config (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                [key, value],
            )?;
            if n == 0 {
                report.config_skipped += 1;
            } else {
                report.config += 1;
            }
        }
        tx.commit()?;
        tracing::info!(from = %legacy_path.display(), ?report, "imported bakthat 0.6 inventory");
        Ok(report)
    }
}

//! The SQLite inventory: which backups exist where, Glacier archive ids and retrieval jobs, the archive entry
//! indexes, and small config values (sync state). The only module that names rusqlite.
//!
//! It is a record keeper, not a policy: it does not talk to stores, decide what to delete, or know the time (every
//! timestamp is a parameter). Its `backups` table keeps bakthat 0.6's columns and meanings (see `schema.rs`), so
//! [`Inventory::import_legacy`] copies a 0.6 `~/.bakthat.sqlite` without translation.
//!
//! Matching fixes 0.6's surprises: names match exactly (`foo` never selects `foobar`), text search is a literal
//! substring (`*`, `?`, `%`, `_` are ordinary characters), tags match as whole words and all of them, and deleted
//! rows stay hidden unless asked for.
//!
//! An [`Inventory`] is `Send + Sync`: it holds one connection behind a mutex, so share it with an `Arc`. Several
//! processes may open the same file (WAL mode, 5 s busy timeout).

mod chains;
mod legacy;
pub mod sample;
mod schema;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, ToSql, TransactionBehavior};
use serde_json::Value;

use crate::model::{BackupRecord, Destination, Epoch, StoreId, StoredName};

pub use legacy::ImportReport;
pub use schema::SCHEMA_VERSION;

/// A `backups` row as [`Inventory::for_each_live_row`] hands it out: the columns, text borrowed from SQLite.
#[derive(Debug, Clone, Copy)]
pub struct LiveRow<'a> {
    pub id: i64,
    pub backend: Destination,
    pub backup_date: Epoch,
    pub filename: &'a str,
    /// The JSON text of the `metadata` column, unparsed.
    pub metadata: &'a str,
    pub stored_filename: &'a str,
    pub tags: &'a str,
    pub store: &'a str,
}

/// What the live rows up to some id add up to: their number, their highest id, and sums over their columns. It
/// changes when one of them is deleted, undeleted or updated (a sync bumps `last_updated`; a change of date, name,
/// tags, store or metadata changes a sum), not when rows with higher ids are added. A sum can in principle come
/// out the same after an edit (one row's tag one letter longer, another's one shorter in the same transaction);
/// `last_updated` makes that unlikely for every writer bakthat has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowsDigest {
    pub count: i64,
    pub max_id: i64,
    sums: [i64; 3],
}

impl RowsDigest {
    fn plus(&self, other: &RowsDigest) -> RowsDigest {
        let mut sums = self.sums;
        for (s, o) in sums.iter_mut().zip(other.sums) {
            *s = s.wrapping_add(o);
        }
        RowsDigest { count: self.count + other.count, max_id: self.max_id.max(other.max_id), sums }
    }
}

impl LiveRow<'_> {
    /// Whether the backup is encrypted, as [`BackupRecord::is_enc`] says: by its stored name, or by its metadata
    /// (parsed only when the text mentions `is_enc`).
    pub fn is_enc(&self) -> bool {
        // StoredName::is_enc's suffixes, without making a StoredName per row.
        self.stored_filename.ends_with(".enc")
            || self.stored_filename.ends_with(".ae")
            || (self.metadata.contains("is_enc")
                && serde_json::from_str::<Value>(self.metadata)
                    .ok()
                    .and_then(|v| v.get("is_enc").and_then(|b| b.as_bool()))
                    .unwrap_or(false))
    }
}

/// Errors of the inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The database file could not be opened or set up (permissions, missing directory, not a database).
    #[error("cannot open inventory {}; check the path and its permissions (or set BAKTHAT_DB)", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The directory for the default inventory could not be created.
    #[error("cannot create the inventory directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No per-user data directory is known and `BAKTHAT_DB` is not set.
    #[error("no data directory for the inventory is known on this system; set BAKTHAT_DB to a file path")]
    NoDataDir,
    /// Any other SQLite failure.
    #[error("inventory query failed")]
    Sqlite(#[from] rusqlite::Error),
    /// A row with this stored name already exists.
    #[error("the inventory already has a backup stored as {0}")]
    Duplicate(StoredName),
    /// No row with this stored name exists.
    #[error("the inventory has no backup stored as {0}")]
    NotFound(StoredName),
    /// Upgrading the schema failed; the database is left at the previous version.
    #[error("cannot upgrade inventory {} to schema {version}; it was left unchanged", path.display())]
    Migration {
        path: PathBuf,
        version: u32,
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer bakthat.
    #[error("inventory {} was written by a newer bakthat (schema {found}, this one knows {supported}); upgrade bakthat", path.display())]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    /// The file is a bakthat 0.6 database, which is imported, not opened.
    #[error(
        "{} is a bakthat 0.6 database; keep it as it is and import it into a new inventory (bakthat import-legacy)",
        path.display()
    )]
    LegacyDatabase { path: PathBuf },
    /// The file given to [`Inventory::import_legacy`] is not a bakthat 0.6 database.
    #[error("{} is not a bakthat 0.6 database (it has no backups table)", path.display())]
    NotLegacy { path: PathBuf },
}

/// Result of inventory operations.
pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

/// Filters for [`Inventory::search`]; the default selects every non-deleted row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Literal, case-sensitive substring of `filename` or `stored_filename` (no wildcards).
    pub text: Option<String>,
    /// `filename` equality (never a substring).
    pub exact_name: Option<String>,
    /// Backends to include; empty means all.
    pub backends: Vec<Destination>,
    /// Tags that must all be present, as whole tags (each entry is itself split on whitespace).
    pub tags: Vec<String>,
    /// Only rows with `backup_date < older_than`.
    pub older_than: Option<Epoch>,
    /// Include rows marked deleted.
    pub include_deleted: bool,
    /// Only rows recorded for this profile.
    pub profile: Option<String>,
    /// Only rows with this backend hash.
    pub backend_hash: Option<String>,
}

/// What [`Inventory::upsert_newer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// No row had this stored name; it was inserted.
    Inserted,
    /// The incoming row was strictly newer and replaced the local one.
    Updated,
    /// The local row was as new or newer; nothing changed.
    KeptLocal,
}

/// The kind of a cold-storage job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Glacier `archive-retrieval`.
    ArchiveRetrieval,
    /// Glacier `inventory-retrieval`.
    InventoryRetrieval,
    /// S3 `RestoreObject` from a Glacier storage class.
    S3Restore,
}

impl JobKind {
    /// The value stored in `jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ArchiveRetrieval => "archive-retrieval",
            JobKind::InventoryRetrieval => "inventory-retrieval",
            JobKind::S3Restore => "s3-restore",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [JobKind::ArchiveRetrieval, JobKind::InventoryRetrieval, JobKind::S3Restore]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The state of a cold-storage job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Submitted, not finished.
    Pending,
    /// The output can be downloaded.
    Ready,
    /// The store reported a failure.
    Failed,
    /// The output is no longer available; submit a new job.
    Expired,
}

impl JobStatus {
    /// The value stored in `jobs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Ready => "ready",
            JobStatus::Failed => "failed",
            JobStatus::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [JobStatus::Pending, JobStatus::Ready, JobStatus::Failed, JobStatus::Expired]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

macro_rules! sql_enum {
    ($t:ty) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                <$t>::parse(s).ok_or_else(|| FromSqlError::Other(format!("unknown value {s:?}").into()))
            }
        }
    };
}
sql_enum!(JobKind);
sql_enum!(JobStatus);

impl ToSql for Destination {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Destination {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A cold-storage job (one row of `jobs`), unique per (`target`, `kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The stored name the job is about; for an inventory retrieval, the vault name.
    pub target: String,
    /// The store's job id.
    pub job_id: String,
    /// The store that runs the job.
    pub backend: Destination,
    pub kind: JobKind,
    pub status: JobStatus,
    pub created_at: Epoch,
    /// When the job was first seen ready.
    pub ready_at: Option<Epoch>,
    pub updated_at: Epoch,
}

/// The SQLite inventory. See the module docs.
#[derive(Debug)]
pub struct Inventory {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const BACKUP_COLUMNS: &str =
    "id, backend, backend_hash, backup_date, filename, is_deleted, last_updated, metadata, size, stored_filename, tags, \
     store";

const JOB_COLUMNS: &str = "filename, job_id, backend, kind, status, created_at, ready_at, updated_at";

/// Parses a JSON column; text that is not JSON is kept as a string (0.6's `JsonField`).
fn json_column(raw: String) -> Value {
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<BackupRecord> {
    Ok(BackupRecord {
        id: Some(row.get(0)?),
        backend: row.get(1)?,
        backend_hash: row.get(2)?,
        backup_date: row.get(3)?,
        filename: row.get(4)?,
        is_deleted: row.get::<_, i64>(5)? != 0,
        last_updated: row.get(6)?,
        metadata: json_column(row.get(7)?),
        size: row.get(8)?,
        stored_filename: StoredName::from_key(row.get::<_, String>(9)?),
        tags: row.get(10)?,
        // Written only through StoreId; a value edited into the file that is not one reads as "store unknown".
        store: StoreId::parse(&row.get::<_, String>(11)?).unwrap_or_default(),
    })
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        target: row.get(0)?,
        job_id: row.get(1)?,
        backend: row.get(2)?,
        kind: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
        ready_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

/// The host recorded with a row: the `client` of its metadata, as 0.6 wrote it.
fn host_of(record: &BackupRecord) -> Option<&str> {
    record.client()
}

/// The tables that keep one blob per backup, keyed by its stored name.
#[derive(Clone, Copy)]
enum Blob {
    /// `entry_index`: the entry index sidecar's copy.
    EntryIndex,
    /// `snapshot`: an incremental chain member's snapshot delta (see `chains`).
    Snapshot,
}

impl Blob {
    fn table(self) -> &'static str {
        match self {
            Blob::EntryIndex => "entry_index",
            Blob::Snapshot => "snapshot",
        }
    }
}

/// The `parent` column of a row: its parent's stored name, '' for a full backup.
fn parent_of(record: &BackupRecord) -> String {
    record.parent().map(|p| p.as_str().to_string()).unwrap_or_default()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// Inserts a backups row (any incoming `id` is ignored); shared by insert, upsert and the legacy import.
fn insert_row(conn: &Connection, record: &BackupRecord, profile: Option<&str>) -> Result<i64> {
    let metadata = serde_json::to_string(&record.metadata)
        .map_err(|e| InventoryError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    let res = conn.execute(
        "INSERT INTO backups (backend, backend_hash, backup_date, filename, is_deleted, last_updated, metadata, size, \
         stored_filename, tags, profile, host, store, parent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            record.backend,
            record.backend_hash,
            record.backup_date,
            record.filename,
            i64::from(record.is_deleted),
            record.last_updated,
            metadata,
            record.size,
            record.stored_filename.as_str(),
            record.tags,
            profile,
            host_of(record),
            record.store.as_str(),
            parent_of(record),
        ],
    );
    match res {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(e) if is_unique_violation(&e) => Err(InventoryError::Duplicate(record.stored_filename.clone())),
        Err(e) => Err(e.into()),
    }
}

fn get_row(conn: &Connection, stored: &str) -> rusqlite::Result<Option<BackupRecord>> {
    conn.prepare_cached(&format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE stored_filename = ?1"))?
        .query_row([stored], record_from_row)
        .optional()
}

impl Inventory {
    /// Opens (creating if needed) the inventory at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Inventory> {
        let path = path.as_ref();
        let conn = Connection::open(path).map_err(|source| InventoryError::Open { path: path.into(), source })?;
        Self::setup(conn, path)
    }

    /// A private in-memory inventory (for tests and dry runs).
    pub fn open_in_memory() -> Result<Inventory> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| InventoryError::Open { path: path.into(), source })?;
        Self::setup(conn, path)
    }

    fn setup(mut conn: Connection, path: &Path) -> Result<Inventory> {
        let open_err = |source| InventoryError::Open { path: path.into(), source };
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        // Before any write (WAL mode persists in the file): refuse newer schemas and 0.6 databases.
        let found = schema::preflight(&conn, path)?;
        // Switching a fresh file to WAL needs it to itself, and SQLite answers SQLITE_BUSY there at once instead of
        // calling the busy handler: retry for as long as the busy timeout (two openers of a new inventory).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let _mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other.map_err(open_err)?,
            }
        };
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
        schema::migrate(&mut conn, path, found)?;
        Ok(Inventory { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// `$BAKTHAT_DB`, else `<data dir>/bakthat/inventory.sqlite` (creating `<data dir>/bakthat` with mode 0700).
    pub fn default_path() -> Result<PathBuf> {
        default_path_from(std::env::var_os("BAKTHAT_DB"), dirs::data_dir())
    }

    /// The path this inventory was opened from (`:memory:` for in-memory ones).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (open transactions roll back on drop).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- backups ----

    /// Inserts a new row with no profile recorded; returns its id. `record.id` is ignored.
    pub fn insert(&self, record: &BackupRecord) -> Result<i64> {
        self.insert_for_profile(record, None)
    }

    /// Inserts a new row recording the config profile it was made with; returns its id.
    pub fn insert_for_profile(&self, record: &BackupRecord, profile: Option<&str>) -> Result<i64> {
        insert_row(&self.conn(), record, profile)
    }

    /// The profile recorded with a row (`None` when the row is unknown or has none).
    pub fn profile_of(&self, stored: &StoredName) -> Result<Option<String>> {
        let conn = self.conn();
        let p = conn
            .query_row("SELECT profile FROM backups WHERE stored_filename = ?1", [stored.as_str()], |r| r.get(0))
            .optional()?;
        Ok(p.flatten())
    }

    /// The sync rule: inserts an unknown row, or replaces the local one only if `incoming.last_updated` is strictly
    /// newer. The local `id` and `profile` are kept. A row that becomes deleted loses its entry index.
    pub fn upsert_newer(&self, incoming: &BackupRecord) -> Result<UpsertOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let local: Option<Epoch> = tx
            .query_row(
                "SELECT last_updated FROM backups WHERE stored_filename = ?1",
                [incoming.stored_filename.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let outcome = match local {
            None => {
                insert_row(&tx, incoming, None)?;
                UpsertOutcome::Inserted
            }
            Some(local) if incoming.last_updated > local => {
                let metadata = serde_json::to_string(&incoming.metadata)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.execute(
                    "UPDATE backups SET backend = ?1, backend_hash = ?2, backup_date = ?3, filename = ?4, \
                     is_deleted = ?5, last_updated = ?6, metadata = ?7, size = ?8, tags = ?9, host = ?10, \
                     store = CASE WHEN ?12 = '' THEN store ELSE ?12 END, parent = ?13 WHERE stored_filename = ?11",
                    params![
                        incoming.backend,
                        incoming.backend_hash,
                        incoming.backup_date,
                        incoming.filename,
                        i64::from(incoming.is_deleted),
                        incoming.last_updated,
                        metadata,
                        incoming.size,
                        incoming.tags,
                        host_of(incoming),
                        incoming.stored_filename.as_str(),
                        incoming.store.as_str(),
                        parent_of(incoming),
                    ],
                )?;
                if incoming.is_deleted {
                    tx.execute(
                        "DELETE FROM entry_index WHERE stored_filename = ?1",
                        [incoming.stored_filename.as_str()],
                    )?;
                    tx.execute("DELETE FROM snapshot WHERE stored_filename = ?1", [incoming.stored_filename.as_str()])?;
                }
                UpsertOutcome::Updated
            }
            Some(_) => UpsertOutcome::KeptLocal,
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Rows matching `query`, newest `backup_date` first (ties: newest id first).
    pub fn search(&self, query: &Query) -> Result<Vec<BackupRecord>> {
        let mut sql = format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE 1");
        let mut args: Vec<&dyn ToSql> = Vec::new();
        // instr() compares bytes literally: no GLOB/LIKE wildcards, case-sensitive like 0.6's GLOB.
        if let Some(text) = &query.text {
            args.push(text);
            let n = args.len();
            sql.push_str(&format!(" AND (instr(filename, ?{n}) > 0 OR instr(stored_filename, ?{n}) > 0)"));
        }
        if let Some(name) = &query.exact_name {
            args.push(name);
            sql.push_str(&format!(" AND filename = ?{}", args.len()));
        }
        if !query.backends.is_empty() {
            let mut marks = Vec::new();
            for b in &query.backends {
                args.push(b);
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND backend IN ({})", marks.join(", ")));
        }
        if let Some(t) = &query.older_than {
            args.push(t);
            sql.push_str(&format!(" AND backup_date < ?{}", args.len()));
        }
        if !query.include_deleted {
            sql.push_str(" AND is_deleted = 0");
        }
        if let Some(p) = &query.profile {
            args.push(p);
            sql.push_str(&format!(" AND profile = ?{}", args.len()));
        }
        if let Some(h) = &query.backend_hash {
            args.push(h);
            sql.push_str(&format!(" AND backend_hash = ?{}", args.len()));
        }
        sql.push_str(" ORDER BY backup_date DESC, stored_filename DESC");

        // Tags: whole words, all of them (0.6 used only the last tag, as a substring). Done here rather than in SQL
        // because tags are split on any whitespace.
        let wanted: Vec<&str> = query.tags.iter().flat_map(|t| t.split_whitespace()).collect();
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(args.as_slice(), record_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let record = row?;
            if record.has_all_tags(&wanted) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// The backup a user means by `name_or_stored`, never a deleted one: the row with exactly this stored name;
    /// else the newest row whose `filename` equals it; else the newest row whose stored name starts with it
    /// literally, provided the prefix reaches past the backup name (`mydir.2026` selects `mydir.20261122040805.tgz`,
    /// but `foo` never selects `foobar.…`).
    pub fn newest(&self, name_or_stored: &str, backend: Option<Destination>) -> Result<Option<BackupRecord>> {
        self.newest_in(name_or_stored, backend, None)
    }

    /// [`Inventory::newest`] among the rows held by one of `stores` (all rows when `None`; include
    /// [`StoreId::unknown`] to take rows whose store is unknown).
    pub fn newest_in(
        &self,
        name_or_stored: &str,
        backend: Option<Destination>,
        stores: Option<&[StoreId]>,
    ) -> Result<Option<BackupRecord>> {
        let conn = self.conn();
        let mut args: Vec<&dyn ToSql> = vec![&name_or_stored, &backend];
        let names: Vec<&str> = stores.unwrap_or_default().iter().map(StoreId::as_str).collect();
        let mut filter = String::from(" AND is_deleted = 0 AND (?2 IS NULL OR backend = ?2)");
        if stores.is_some() {
            let mut marks = Vec::new();
            for n in &names {
                args.push(n);
                marks.push(format!("?{}", args.len()));
            }
            filter.push_str(&format!(" AND store IN ({})", marks.join(", ")));
        }
        let order = " ORDER BY backup_date DESC, stored_filename DESC";
        let exact = conn
            .query_row(
                &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE stored_filename = ?1{filter}"),
                args.as_slice(),
                record_from_row,
            )
            .optional()?;
        if exact.is_some() {
            return Ok(exact);
        }
        let by_name = conn
            .query_row(
                &format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE filename = ?1{filter}{order} LIMIT 1"),
                args.as_slice(),
                record_from_row,
            )
            .optional()?;
        if by_name.is_some() {
            return Ok(by_name);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE substr(stored_filename, 1, length(?1)) = ?1{filter}{order}"
        ))?;
        let rows = stmt.query_map(args.as_slice(), record_from_row)?;
        for row in rows {
            let record = row?;
            let past_name = record.stored_filename.parse().is_some_and(|p| name_or_stored.len() > p.name.len());
            if past_name {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Records `store` as the store of every row of `backend` with this `backend_hash` whose store is unknown (see
    /// [`crate::stores::place_unknown_rows`]); returns how many rows were placed.
    pub fn place_unknown(&self, backend: Destination, backend_hash: &str, store: &StoreId) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE backups SET store = ?3 WHERE store = '' AND backend = ?1 AND backend_hash = ?2",
            params![backend, backend_hash, store.as_str()],
        )?)
    }

    /// Whether any row's store is unknown.
    pub fn has_unknown_stores(&self) -> Result<bool> {
        Ok(self.conn().query_row("SELECT EXISTS (SELECT 1 FROM backups WHERE store = '')", [], |r| r.get(0))?)
    }

    /// How many live (not deleted) rows are held by `store`.
    pub fn count_in_store(&self, store: &StoreId) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM backups WHERE store = ?1 AND is_deleted = 0",
            [store.as_str()],
            |r| r.get(0),
        )?)
    }

    /// A value that changes whenever the `backups` table may have changed, from this process or another one
    /// (SQLite's `data_version`, which counts other connections' commits, and this connection's total changes); it
    /// reads no table, so polling it every second costs the same over a million rows as over ten.
    pub fn change_stamp(&self) -> Result<(i64, i64, i64, i64)> {
        let conn = self.conn();
        let dv: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        Ok((dv, conn.total_changes() as i64, 0, 0))
    }

    /// Every row that is not deleted, oldest id first, handed to `each` one at a time with borrowed text (the
    /// mount lays out a million rows this way without holding them all as [`BackupRecord`]s).
    pub fn for_each_live_row(&self, each: impl FnMut(LiveRow<'_>)) -> Result<()> {
        self.live_rows_after(i64::MIN, each).map(drop)
    }

    /// The rows that are not deleted and whose id is past `after`, oldest first (as [`Self::for_each_live_row`]),
    /// and, read in the same transaction, the [`RowsDigest`] of the live rows up to `after` and that of all live
    /// rows. The mount reads only the rows added since its last look this way, when the rows it had still add up
    /// to the same digest.
    pub fn live_rows_after(&self, after: i64, mut each: impl FnMut(LiveRow<'_>)) -> Result<(RowsDigest, RowsDigest)> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let digest = |cond: &str| -> Result<RowsDigest> {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT count(*), ifnull(max(id), 0), ifnull(sum(last_updated), 0), ifnull(sum(backup_date), 0), \
                 ifnull(sum(length(filename) + length(tags) + length(store) + length(stored_filename) \
                 + length(metadata) + length(backend)), 0) FROM backups WHERE is_deleted = 0 AND {cond}"
            ))?;
            Ok(stmt.query_row([after], |r| {
                Ok(RowsDigest { count: r.get(0)?, max_id: r.get(1)?, sums: [r.get(2)?, r.get(3)?, r.get(4)?] })
            })?)
        };
        let before = digest("id <= ?1")?;
        let added = digest("id > ?1")?;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, backend, backup_date, filename, metadata, stored_filename, tags, store FROM backups \
                 WHERE is_deleted = 0 AND id > ?1 ORDER BY id",
            )?;
            let mut rows = stmt.query([after])?;
            while let Some(row) = rows.next()? {
                let text = |i: usize| row.get_ref(i).and_then(|v| v.as_str().map_err(Into::into));
                each(LiveRow {
                    id: row.get(0)?,
                    backend: row.get(1)?,
                    backup_date: row.get(2)?,
                    filename: text(3)?,
                    metadata: text(4)?,
                    stored_filename: text(5)?,
                    tags: text(6)?,
                    store: text(7)?,
                });
            }
        }
        tx.commit()?;
        Ok((before, before.plus(&added)))
    }

    /// The row with this id, deleted or not.
    pub fn get_by_id(&self, id: i64) -> Result<Option<BackupRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = ?1"))?;
        Ok(stmt.query_row([id], record_from_row).optional()?)
    }

    /// The row with this stored name, deleted or not.
    pub fn get(&self, stored: &StoredName) -> Result<Option<BackupRecord>> {
        Ok(get_row(&self.conn(), stored.as_str())?)
    }

    /// Marks a row deleted (`is_deleted = 1`, `last_updated = now`) and drops its entry index.
    pub fn set_deleted(&self, stored: &StoredName, now: Epoch) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE backups SET is_deleted = 1, last_updated = ?1 WHERE stored_filename = ?2",
            params![now, stored.as_str()],
        )?;
        if n == 0 {
            return Err(InventoryError::NotFound(stored.clone()));
        }
        tx.execute("DELETE FROM entry_index WHERE stored_filename = ?1", [stored.as_str()])?;
        tx.execute("DELETE FROM snapshot WHERE stored_filename = ?1", [stored.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a row and its entry index outright (for uploads that never completed). Returns whether it existed.
    pub fn remove(&self, stored: &StoredName) -> Result<bool> {
        let n = self.conn().execute("DELETE FROM backups WHERE stored_filename = ?1", [stored.as_str()])?;
        Ok(n > 0)
    }

    /// Every row with `last_updated >= since`, deleted ones and all backends included, oldest change first.
    pub fn changed_since(&self, since: Epoch) -> Result<Vec<BackupRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE last_updated >= ?1 ORDER BY last_updated, id"
        ))?;
        let rows = stmt.query_map([since], record_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- entry index ----

    /// Stores (or replaces) the archive entry index of a backup; the row must exist.
    pub fn put_index(&self, stored: &StoredName, data: &[u8]) -> Result<()> {
        self.put_blob(Blob::EntryIndex, stored, data)
    }

    /// The archive entry index of a backup, if one was stored.
    pub fn get_index(&self, stored: &StoredName) -> Result<Option<Vec<u8>>> {
        self.get_blob(Blob::EntryIndex, stored)
    }

    /// Stores (or replaces) a per-backup blob; the row must exist.
    fn put_blob(&self, blob: Blob, stored: &StoredName, data: &[u8]) -> Result<()> {
        let table = blob.table();
        let res = self.conn().execute(
            &format!(
                "INSERT INTO {table} (stored_filename, data) VALUES (?1, ?2) \
                 ON CONFLICT (stored_filename) DO UPDATE SET data = excluded.data"
            ),
            params![stored.as_str(), data],
        );
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => Err(InventoryError::NotFound(stored.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts rows, each with its entry index, in one transaction: all of them or none (a bulk import; the
    /// benchmarks' million-row inventories).
    pub fn insert_with_indexes(&self, rows: &[(BackupRecord, Vec<u8>)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (record, index) in rows {
            insert_row(&tx, record, None)?;
            tx.execute(
                &format!("INSERT INTO {} (stored_filename, data) VALUES (?1, ?2)", Blob::EntryIndex.table()),
                params![record.stored_filename.as_str(), index],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A per-backup blob, if one was stored.
    fn get_blob(&self, blob: Blob, stored: &StoredName) -> Result<Option<Vec<u8>>> {
        let conn = self.conn();
        let data = conn
            .prepare_cached(&format!("SELECT data FROM {} WHERE stored_filename = ?1", blob.table()))?
            .query_row([stored.as_str()], |r| r.get(0))
            .optional()?;
        Ok(data)
    }

    // ---- config ----

    /// A config value (JSON; text that is not JSON comes back as a string).
    pub fn get_config(&self, key: &str) -> Result<Option<Value>> {
        let conn = self.conn();
        let raw: Option<String> =
            conn.query_row("SELECT value FROM config WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        Ok(raw.map(json_column))
    }

    /// Sets a config value.
    pub fn set_config(&self, key: &str, value: &Value) -> Result<()> {
        self.conn().execute(
            "INSERT INTO config (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value.to_string()],
        )?;
        Ok(())
    }

    // ---- glacier archive ids ----

    /// Records the Glacier archive id of a stored object, replacing any previous one for it.
    pub fn put_archive_id(&self, stored: &StoredName, archive_id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM inventory WHERE filename = ?1 OR archive_id = ?2", [stored.as_str(), archive_id])?;
        tx.execute("INSERT INTO inventory (archive_id, filename) VALUES (?1, ?2)", [archive_id, stored.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    /// The Glacier archive id of a stored object.
    pub fn archive_id(&self, stored: &StoredName) -> Result<Option<String>> {
        let conn = self.conn();
        let id = conn
            .query_row(
                "SELECT archive_id FROM inventory WHERE filename = ?1 ORDER BY id DESC LIMIT 1",
                [stored.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id)
    }

    /// Forgets the archive id of a stored object; returns whether there was one.
    pub fn remove_archive_id(&self, stored: &StoredName) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM inventory WHERE filename = ?1", [stored.as_str()])? > 0)
    }

    /// Every (stored name, archive id) pair, ordered by stored name.
    pub fn all_archive_ids(&self) -> Result<Vec<(StoredName, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT filename, archive_id FROM inventory ORDER BY filename, id")?;
        let rows = stmt.query_map([], |r| Ok((StoredName::from_key(r.get::<_, String>(0)?), r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- jobs ----

    /// Records a job, replacing any job of the same kind for the same target.
    pub fn put_job(&self, job: &Job) -> Result<()> {
        self.conn().execute(
            &format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (filename, kind) DO UPDATE SET job_id = excluded.job_id, backend = excluded.backend, \
                 status = excluded.status, created_at = excluded.created_at, ready_at = excluded.ready_at, \
                 updated_at = excluded.updated_at"
            ),
            params![
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
        Ok(())
    }

    /// The job of this kind for a target.
    pub fn job(&self, target: &str, kind: JobKind) -> Result<Option<Job>> {
        let conn = self.conn();
        // Asked for every backup a mount lists (its status file): a cached statement, parsed once.
        let job = conn
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE filename = ?1 AND kind = ?2"))?
            .query_row(params![target, kind], job_from_row)
            .optional()?;
        Ok(job)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets a job's status (`updated_at = now`; `ready_at = now` the first time it becomes ready). Returns whether
    /// the job exists.
    pub fn update_job_status(&self, target: &str, kind: JobKind, status: JobStatus, now: Epoch) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE jobs SET status = ?1, updated_at = ?2, \
             ready_at = CASE WHEN ?1 = 'ready' THEN coalesce(ready_at, ?2) ELSE ready_at END \
             WHERE filename = ?3 AND kind = ?4",
            params![status, now, target, kind],
        )?;
        Ok(n > 0)
    }

    /// Forgets a job; returns whether it existed.
    pub fn delete_job(&self, target: &str, kind: JobKind) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM jobs WHERE filename = ?1 AND kind = ?2", params![target, kind])? > 0)
    }
}

fn default_path_from(env: Option<std::ffi::OsString>, data_dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = data_dir.ok_or(InventoryError::NoDataDir)?.join("bakthat");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(|source| InventoryError::CreateDir { path: dir.clone(), source })?;
    Ok(dir.join("inventory.sqlite"))
}

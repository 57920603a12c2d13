//! The inventory's schema and its migrations, keyed on `PRAGMA user_version`.
//!
//! Version 1 keeps bakthat 0.6's `backups`, `jobs`, `inventory` and `config` tables with their exact column names and
//! types (so a 0.6 row reads the same here), and extends them: `backups.profile`/`backups.host`, the job-tracking
//! columns of `jobs`, and the new `entry_index` table. 0.6's `history` table (created, never written) is not kept.
//! Version 2 adds `backups.store`, the identity of the store holding each row. Version 3 adds incremental chains:
//! `backups.parent` (the stored name an incremental backup was made against, '' for a full one; the metadata's
//! `parent` is the synced truth, the column a query's key) and the `snapshot` table (each chain member's `.snap`
//! delta, a copy of its sidecar).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::InventoryError;

/// The newest schema this build knows; `PRAGMA user_version` of a fully migrated inventory.
pub const SCHEMA_VERSION: u32 = 3;

/// Version 1: everything. Each later version appends one entry; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE "backups" ("id" INTEGER NOT NULL PRIMARY KEY, "backend" VARCHAR(255) NOT NULL,
  "backend_hash" VARCHAR(255), "backup_date" INTEGER NOT NULL, "filename" TEXT NOT NULL,
  "is_deleted" SMALLINT NOT NULL, "last_updated" INTEGER NOT NULL, "metadata" VARCHAR(255) NOT NULL,
  "size" INTEGER NOT NULL, "stored_filename" TEXT NOT NULL, "tags" VARCHAR(255) NOT NULL,
  "profile" TEXT, "host" TEXT);
CREATE INDEX "backups_backup_date" ON "backups" ("backup_date");
CREATE UNIQUE INDEX "backups_stored_filename" ON "backups" ("stored_filename");
CREATE INDEX "backups_backend_hash" ON "backups" ("backend_hash");
CREATE INDEX "backups_filename" ON "backups" ("filename");
CREATE INDEX "backups_backend" ON "backups" ("backend");
CREATE INDEX "backups_last_updated" ON "backups" ("last_updated");
CREATE INDEX "backups_profile" ON "backups" ("profile");

CREATE TABLE "jobs" ("id" INTEGER NOT NULL PRIMARY KEY, "filename" VARCHAR(255) NOT NULL,
  "job_id" VARCHAR(255) NOT NULL,
  "backend" TEXT NOT NULL DEFAULT 'glacier',
  "kind" TEXT NOT NULL DEFAULT 'archive-retrieval'
    CHECK ("kind" IN ('archive-retrieval', 'inventory-retrieval', 's3-restore')),
  "status" TEXT NOT NULL DEFAULT 'pending' CHECK ("status" IN ('pending', 'ready', 'failed', 'expired')),
  "created_at" INTEGER NOT NULL, "ready_at" INTEGER, "updated_at" INTEGER NOT NULL);
CREATE INDEX "jobs_filename" ON "jobs" ("filename");
CREATE UNIQUE INDEX "jobs_filename_kind" ON "jobs" ("filename", "kind");

CREATE TABLE "inventory" ("id" INTEGER NOT NULL PRIMARY KEY, "archive_id" VARCHAR(255) NOT NULL,
  "filename" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX "inventory_archive_id" ON "inventory" ("archive_id");
CREATE INDEX "inventory_filename" ON "inventory" ("filename");

CREATE TABLE "config" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX "config_key" ON "config" ("key");

CREATE TABLE "entry_index" ("stored_filename" TEXT PRIMARY KEY
    REFERENCES "backups" ("stored_filename") ON DELETE CASCADE,
  "data" BLOB NOT NULL);
"#,
    // Version 2: the identity of the store holding each row (see `model::StoreId`); '' is "store unknown". Rows of
    // version 1 start unknown and are placed by `stores::place_unknown_rows` from their backend hash.
    r#"
ALTER TABLE "backups" ADD COLUMN "store" TEXT NOT NULL DEFAULT '';
CREATE INDEX "backups_store" ON "backups" ("store");
"#,
    // Version 3: incremental chains (issue 15). Rows of version 2 are all full backups; any that a newer host synced
    // with a parent get it from their metadata.
    r#"
ALTER TABLE "backups" ADD COLUMN "parent" TEXT NOT NULL DEFAULT '';
UPDATE "backups" SET "parent" = coalesce(json_extract("metadata", '$.parent'), '')
  WHERE json_valid("metadata") AND json_type("metadata", '$.parent') = 'text';
CREATE INDEX "backups_parent" ON "backups" ("parent");
CREATE TABLE "snapshot" ("stored_filename" TEXT PRIMARY KEY
    REFERENCES "backups" ("stored_filename") ON DELETE CASCADE,
  "data" BLOB NOT NULL);
"#,
];

/// Reads `PRAGMA user_version`.
pub fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Reads the schema version and refuses what this build must not touch: a newer schema, or a bakthat 0.6
/// database (which has tables but `user_version` 0). Runs before anything is written, WAL mode included.
pub fn preflight(conn: &Connection, path: &Path) -> Result<u32, InventoryError> {
    let open_err = |source| InventoryError::Open { path: path.to_path_buf(), source };
    // One read transaction, so that both reads see one state: another process migrating a fresh file between
    // them made it look like a 0.6 database (version 0, but tables).
    let tx = conn.unchecked_transaction().map_err(open_err)?;
    let conn: &Connection = &tx;
    let found = user_version(conn).map_err(open_err)?;
    if found > SCHEMA_VERSION {
        return Err(InventoryError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    if found == 0 {
        let has_backups: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'backups')",
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;
        if has_backups {
            return Err(InventoryError::LegacyDatabase { path: path.to_path_buf() });
        }
    }
    tx.commit().map_err(open_err)?;
    Ok(found)
}

/// Brings the database from version `found` (see [`preflight`]) to [`SCHEMA_VERSION`], one transaction per
/// version.
pub fn migrate(conn: &mut Connection, path: &Path, found: u32) -> Result<(), InventoryError> {
    for version in found + 1..=SCHEMA_VERSION {
        let migration_err = |source| InventoryError::Migration { path: path.to_path_buf(), version, source };
        // Immediate: take the write lock up front, so two processes opening a fresh file do not both migrate.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(migration_err)?;
        // Another process may have migrated between our read and our lock.
        let now = user_version(&tx).map_err(migration_err)?;
        if now >= version {
            continue;
        }
        tx.execute_batch(MIGRATIONS[version as usize - 1]).map_err(migration_err)?;
        tx.pragma_update(None, "user_version", version).map_err(migration_err)?;
        tx.commit().map_err(migration_err)?;
        tracing::debug!(path = %path.display(), version, "inventory schema migrated");
    }
    Ok(())
}

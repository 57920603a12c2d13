//! Incremental chains in the inventory: each row's parent, and each chain member's snapshot delta (a copy of its
//! `.snap` sidecar). Not here: what a delta holds (`archive::incremental`), walking or restoring a chain
//! (`ops::incremental`).

use super::{record_from_row, Blob, Result, BACKUP_COLUMNS};
use crate::model::{BackupRecord, StoredName};

impl super::Inventory {
    /// Stores (or replaces) the snapshot delta of a backup; the row must exist.
    pub fn put_snapshot(&self, stored: &StoredName, data: &[u8]) -> Result<()> {
        self.put_blob(Blob::Snapshot, stored, data)
    }

    /// The snapshot delta of a backup, if the inventory has a copy.
    pub fn get_snapshot(&self, stored: &StoredName) -> Result<Option<Vec<u8>>> {
        self.get_blob(Blob::Snapshot, stored)
    }

    /// The live (not deleted) backups made against `parent`, oldest first.
    pub fn children_of(&self, parent: &StoredName) -> Result<Vec<BackupRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE parent = ?1 AND is_deleted = 0 ORDER BY backup_date, id"
        ))?;
        let rows = stmt.query_map([parent.as_str()], record_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

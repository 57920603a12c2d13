//! `restore NAME --path P`: restores only some paths of a backup, fetching only the archive members that hold
//! them (through the inventory's copy of the entry index and ranged reads of the store), streamed through
//! `super::tree_restore` with the same confinement as every restore. A hard link whose first name is not restored
//! becomes a file with that name's bytes.

use std::collections::HashMap;
use std::path::Path;

use super::browse::inventory_index;
use super::restore::{RestoreOptions, RestoreOutcome};
use super::tree_restore::{check_paths, extract_items, members_needed, read_error, select, Fetcher};
use super::{Ctx, OpsError};
use crate::archive::read::Decoder;
use crate::archive::{ArchiveError, Secret};
use crate::model::BackupRecord;
use crate::storage::Backend;

/// Restores the entries at or under `opts.paths` of `record` into `dest`, reading only the members that hold them.
pub(super) fn restore_paths(
    ctx: &Ctx,
    record: BackupRecord,
    backend: &dyn Backend,
    dest: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, OpsError> {
    let stored = record.stored_filename.as_str();
    let secret = opts.password.as_deref();
    let index = match inventory_index(ctx, &record, secret)? {
        Some(i) => i,
        None if !record.stored_filename.is_archive() => {
            let path = opts.paths.join(", ");
            return Err(OpsError::NotInBackup { path, stored: stored.to_string() });
        }
        None => return Err(OpsError::NoIndex { stored: stored.to_string() }),
    };
    check_paths(&index.entries, &opts.paths, stored)?;
    let entries = &index.entries;
    let sel = select(
        entries,
        &opts.paths,
        |i| Some((0, entries[i].data_offset, entries[i].size)),
        |path, why| {
            OpsError::Archive(ArchiveError::Corrupt(format!(
                "the index of {stored} lists {}, but {why}",
                String::from_utf8_lossy(path)
            )))
        },
    )?;
    for e in &sel.skipped {
        ctx.reporter
            .warn(&format!("{}: not restored (not a file, directory or link)", String::from_utf8_lossy(&e.path)));
    }
    let len = if index.stored_len != 0 { index.stored_len } else { record.size };
    let src = super::range::ObjectRange::new(backend, stored, len);
    let decoder = Decoder::new(&index, &src, secret.map(Secret::keys)).map_err(read_error)?;
    let wanted = members_needed(&sel.items, |_| &index).remove(&0).unwrap_or_default();
    let mut fetchers = HashMap::from([(0, Fetcher::new(decoder, &index, wanted))]);
    let summary = extract_items(&sel.items, &mut fetchers, &[&src], dest, opts.force)?;
    let written = summary.top_level.iter().map(|p| dest.join(p)).collect();
    Ok(RestoreOutcome { record, written, entries: summary.entries, bytes: summary.bytes, incomplete: Vec::new() })
}

//! `restore` of an incremental backup: the complete tree at that time, built from the chain's snapshots, with each
//! file's bytes read from the archive that holds them (the last one of the chain that stored it), fetching only the
//! members those files are in, written through `super::tree_restore` like a `restore --path` of one backup.
//!
//! Not here: which backup is whose parent, reading snapshots (`super::incremental`).

use std::collections::HashMap;
use std::path::Path;

use super::incremental::chain_tree;
use super::restore::{RestoreOptions, RestoreOutcome};
use super::tree_restore::{check_paths, extract_items, members_needed, read_error, select, Fetcher, Item};
use super::{Ctx, OpsError};
use crate::archive::read::Decoder;
use crate::archive::{ArchiveError, Secret};
use crate::model::BackupRecord;

/// Restores `record`, an incremental backup (or a chain's full), into `dest`.
pub(super) fn restore_chain(
    ctx: &Ctx,
    record: BackupRecord,
    dest: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, OpsError> {
    let secret = opts.password.as_deref();
    let tree = chain_tree(ctx, &record, secret)?;
    check_paths(&tree.index.entries, &opts.paths, record.stored_filename.as_str())?;
    let sel = select(
        &tree.index.entries,
        &opts.paths,
        |i| tree.holders[i].as_ref().map(|(at, h)| (*at, h.data_offset, h.size)),
        |path, why| corrupt(&record, path, why),
    )?;
    let items = sel.items;
    // The archives that hold the bytes of a restored file; only those are opened and read.
    let mut members = members_needed(&items, |at| &tree.indexes[&at]);
    let mut stores = Vec::new();
    let mut pending = Vec::new();
    for &at in members.keys() {
        let member = &tree.chain[at];
        let backend = ctx.stores().open_record(member)?;
        if backend.head(member.stored_filename.as_str())?.is_none() {
            return Err(OpsError::MissingArchive {
                stored: record.stored_filename.to_string(),
                missing: member.stored_filename.to_string(),
            });
        }
        match super::ensure_readable(ctx, member, backend.as_ref()) {
            Ok(()) => {}
            Err(OpsError::Pending { stored, .. }) => pending.push(stored),
            Err(e) => return Err(e),
        }
        stores.push((at, backend));
    }
    if !pending.is_empty() {
        return Err(OpsError::ChainPending { stored: pending.join(", ") });
    }
    let indexes = &tree.indexes;
    let sources: Vec<(usize, super::range::ObjectRange<'_>)> = stores
        .iter()
        .map(|(at, b)| {
            let index = &indexes[at];
            let member = &tree.chain[*at];
            let len = if index.stored_len != 0 { index.stored_len } else { member.size };
            (*at, super::range::ObjectRange::new(b.as_ref(), member.stored_filename.as_str(), len))
        })
        .collect();
    let mut fetchers: HashMap<usize, Fetcher<'_>> = HashMap::new();
    for (at, src) in &sources {
        let decoder = Decoder::new(&indexes[at], src, secret.map(Secret::keys)).map_err(read_error)?;
        fetchers.insert(*at, Fetcher::new(decoder, &indexes[at], members.remove(at).unwrap_or_default()));
    }
    let sources: Vec<&super::range::ObjectRange<'_>> = sources.iter().map(|(_, s)| s).collect();
    let summary = extract_items(&items, &mut fetchers, &sources, dest, opts.force)?;
    for (path, why) in &summary.skipped {
        ctx.reporter.warn(&format!("{}: {why}", path.display()));
    }
    let written = summary.top_level.iter().map(|p| dest.join(p)).collect();
    let incomplete = items
        .iter()
        .filter_map(|i| match i {
            Item::File(e, _) if e.damaged => crate::model::relative_path(&e.path).ok().flatten(),
            _ => None,
        })
        .collect();
    Ok(RestoreOutcome { record, written, entries: summary.entries, bytes: summary.bytes, incomplete })
}

fn corrupt(record: &BackupRecord, path: &[u8], why: &str) -> OpsError {
    OpsError::Archive(ArchiveError::Corrupt(format!(
        "the snapshot of {} lists {}, but {why}",
        record.stored_filename,
        String::from_utf8_lossy(path)
    )))
}

//! `restore NAME --path P`: restores only some paths of a backup, fetching only the archive members that hold
//! them (through the inventory's copy of the entry index and ranged reads of the store), then extracting them
//! with the same confinement as every restore ([`crate::archive::extract`]).

use std::io::{self, Cursor};
use std::ops::Range;
use std::path::Path;

use super::browse::{inventory_index, under};
use super::restore::{RestoreOptions, RestoreOutcome};
use super::{Ctx, OpsError};
use crate::archive::extract::{self, ExtractOptions};
use crate::archive::index::Index;
use crate::archive::read::{Decoder, ReadError};
use crate::archive::{ArchiveError, Secret};
use crate::model::BackupRecord;
use crate::storage::Backend;

/// The tar byte ranges of the entries to restore: those at or under one of `paths`, and their parent directories
/// (for their modes and times). Each range runs from the end of the previous entry (so that long-name and PAX
/// blocks come along) to the end of the entry's padded data. A path with no entry is [`OpsError::NotInBackup`].
fn selected_ranges(index: &Index, paths: &[String], stored: &str) -> Result<Vec<Range<u64>>, OpsError> {
    let mut wanted = vec![false; index.entries.len()];
    for p in paths {
        let p = p.trim_matches('/').as_bytes();
        let mut any = false;
        for (i, e) in index.entries.iter().enumerate() {
            if under(&e.path, p) {
                wanted[i] = true;
                any = true;
            } else if under(p, &e.path) {
                wanted[i] = true;
            }
        }
        if !any {
            return Err(OpsError::NotInBackup { path: String::from_utf8_lossy(p).into_owned(), stored: stored.into() });
        }
    }
    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut prev_end = 0;
    for (e, want) in index.entries.iter().zip(wanted) {
        let end = e.data_offset + e.size.div_ceil(512) * 512;
        if want {
            match ranges.last_mut() {
                Some(r) if r.end == prev_end => r.end = end,
                _ => ranges.push(prev_end..end),
            }
        }
        prev_end = end;
    }
    Ok(ranges)
}

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
    let ranges = selected_ranges(&index, &opts.paths, stored)?;
    let len = if index.stored_len != 0 { index.stored_len } else { record.size };
    let src = super::range::ObjectRange::new(backend, stored, len);
    let decoder = Decoder::new(&index, &src, secret.map(Secret::keys)).map_err(read_error)?;
    // Members of all ranges, each contiguous run fetched with one ranged read.
    let mut runs: Vec<Range<usize>> = Vec::new();
    for r in &ranges {
        let m = index.members_covering(r.start, r.end);
        match runs.last_mut() {
            Some(last) if last.end >= m.start => last.end = last.end.max(m.end),
            _ => runs.push(m),
        }
    }
    let mut tar = Vec::new();
    let mut ri = 0;
    for run in runs {
        let base = index.members[run.start].tar_offset;
        let data: Vec<u8> = decoder.members(run).map_err(read_error)?.concat();
        let end = base + data.len() as u64;
        while let Some(r) = ranges.get(ri).filter(|r| r.end <= end) {
            tar.extend_from_slice(&data[(r.start - base) as usize..(r.end - base) as usize]);
            ri += 1;
        }
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let ex = ExtractOptions { overwrite: opts.force, preserve_owner: false };
    let summary =
        extract::extract(Cursor::new(tar), dest, &ex).map_err(|e| OpsError::Archive(ArchiveError::from(e)))?;
    let written = summary.top_level.iter().map(|p| dest.join(p)).collect();
    Ok(RestoreOutcome { record, written, entries: summary.entries, bytes: summary.bytes, incomplete: Vec::new() })
}

fn read_error(e: ReadError) -> OpsError {
    match e {
        ReadError::PasswordNeeded => OpsError::Archive(ArchiveError::PasswordNeeded),
        e => OpsError::Io { context: "reading the archive".into(), source: io::Error::other(crate::error_chain(&e)) },
    }
}

//! `show`, `delete`, `delete_older_than` and `rotate_backups`: inventory queries and deletions.

use std::collections::BTreeMap;

use super::restore::find;
use super::{Ctx, OpsError};
use crate::archive::crypto::MasterKey;
use crate::archive::Secret;
use crate::interval::parse_interval;
use crate::inventory::Query;
use crate::model::{utc, BackupRecord, Destination};
use crate::rotation::{self, Decision, Policy};

/// Filters of `show`.
#[derive(Debug, Default, Clone)]
pub struct ShowQuery {
    /// Literal substring of the name or stored name.
    pub text: Option<String>,
    /// Only these destinations (all when empty).
    pub destinations: Vec<Destination>,
    /// Whole tags that must all be present.
    pub tags: Vec<String>,
    pub include_deleted: bool,
}

/// Lists backups from the inventory (no store is contacted).
pub fn show(ctx: &Ctx, q: &ShowQuery) -> Result<Vec<BackupRecord>, OpsError> {
    Ok(ctx.inventory.search(&Query {
        text: q.text.clone().filter(|t| !t.is_empty()),
        backends: q.destinations.clone(),
        tags: q.tags.clone(),
        include_deleted: q.include_deleted,
        ..Query::default()
    })?)
}

/// The key that authenticates this run's tombstones: with the password, a delete's tombstone is believed by every
/// host of a password profile, even one whose store still seems to hold the archive (Glacier asks this host's own
/// catalog); without it the tombstone is plain and believed once the archive is gone (see [`crate::sync::Trust`]).
fn tombstone_key(ctx: &Ctx, password: Option<&Secret>) -> Result<Option<std::sync::Arc<MasterKey>>, OpsError> {
    password.map(|s| super::master_key(ctx, s)).transpose()
}

/// Deletes one backup's objects and marks its row deleted; its tombstone is authenticated with `key` when given.
fn delete_record(ctx: &Ctx, record: &BackupRecord, key: Option<&MasterKey>) -> Result<(), OpsError> {
    let backend = ctx.stores().open_record(record)?;
    backend.delete(record.stored_filename.as_str())?;
    let index = format!("{}{}", record.stored_filename, super::backup::INDEX_SUFFIX);
    backend.delete(&index)?;
    let snapshot = format!("{}{}", record.stored_filename, super::incremental::SNAPSHOT_SUFFIX);
    if record.in_chain() {
        backend.delete(&snapshot)?;
    }
    // Strictly newer than the row, so that a delete right after the backup still wins on other hosts.
    let when = ctx.now().max(record.last_updated + 1);
    if let Some(journal) = super::journal_for(ctx, record.backend, &backend)? {
        if record.backend == Destination::Glacier {
            // Glacier's sidecar lives in the S3 bucket beside the journal (see backup); best effort, as there.
            for key in [&index, &snapshot] {
                if let Err(e) = journal.delete(key) {
                    ctx.reporter.warn(&format!("{key} could not be removed from the S3 bucket: {e}"));
                }
            }
        }
        match crate::journal::publish_tombstone(journal.as_ref(), record, when, key) {
            Ok(_) => {}
            // As for backups: Glacier's journal is in S3, which the credentials may not reach.
            Err(e) if record.backend == Destination::Glacier => ctx
                .reporter
                .warn(&format!("{} is deleted but the delete is not journaled for sync ({e})", record.stored_filename)),
            Err(e) => return Err(e.into()),
        }
    }
    ctx.inventory.set_deleted(&record.stored_filename, when)?;
    Ok(())
}

/// Deletes the newest backup matching `name` in `destination` (the profile's default when `None`). With `password`
/// its tombstone is authenticated (see [`tombstone_key`]).
pub fn delete(
    ctx: &Ctx,
    name: &str,
    destination: Option<Destination>,
    password: Option<&Secret>,
) -> Result<BackupRecord, OpsError> {
    let mut deleted = delete_with(ctx, name, destination, password, false)?;
    Ok(deleted.pop().expect("delete_with deletes the backup asked for"))
}

/// [`delete`], refusing ([`OpsError::HasDependents`]) a backup that live incrementals need unless
/// `with_dependents`, which deletes them too (newest first, so no incremental is ever left without its parent).
/// Returns what was deleted, the backup asked for last.
pub fn delete_with(
    ctx: &Ctx,
    name: &str,
    destination: Option<Destination>,
    password: Option<&Secret>,
    with_dependents: bool,
) -> Result<Vec<BackupRecord>, OpsError> {
    let dest = ctx.destination(destination);
    let record = find(ctx, name, Some(dest))?;
    let mut doomed = super::incremental::dependents(ctx, &record)?;
    if !doomed.is_empty() && !with_dependents {
        let names: Vec<&str> = doomed.iter().map(|r| r.stored_filename.as_str()).collect();
        return Err(OpsError::HasDependents {
            stored: record.stored_filename.to_string(),
            dependents: names.join(", "),
        });
    }
    doomed.reverse();
    doomed.push(record);
    let key = tombstone_key(ctx, password)?;
    for r in &doomed {
        delete_record(ctx, r, key.as_deref())?;
    }
    Ok(doomed)
}

/// For each row, the position in `rows` of its parent (when it is one of them), and the rows' stored names: what
/// [`rotation::keep_chains`] takes.
fn chain_links(rows: &[BackupRecord]) -> (Vec<Option<usize>>, Vec<&str>) {
    let at: std::collections::HashMap<&str, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.stored_filename.as_str(), i)).collect();
    let parents = rows.iter().map(|r| r.parent().and_then(|p| at.get(p.as_str()).copied())).collect();
    (parents, rows.iter().map(|r| r.stored_filename.as_str()).collect())
}

/// A backup a destructive command would delete (or did).
#[derive(Debug, Clone)]
pub struct Planned {
    pub record: BackupRecord,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Deletes every backup named exactly `name` older than `interval` (the 0.6 grammar, e.g. `3M2D`); with `password`
/// the tombstones are authenticated.
pub fn delete_older_than(
    ctx: &Ctx,
    name: &str,
    interval: &str,
    destination: Option<Destination>,
    dry_run: bool,
    password: Option<&Secret>,
) -> Result<Vec<Planned>, OpsError> {
    let seconds = parse_interval(interval)?;
    let cutoff = ctx.now() - seconds;
    let dest = ctx.destination(destination);
    let all = ctx.inventory.search(&Query {
        exact_name: Some(name.to_string()),
        backends: vec![dest],
        ..Query::default()
    })?;
    let old = ctx.inventory.search(&Query {
        exact_name: Some(name.to_string()),
        backends: vec![dest],
        older_than: Some(cutoff),
        ..Query::default()
    })?;
    let is_old: std::collections::HashSet<&str> = old.iter().map(|r| r.stored_filename.as_str()).collect();
    // Kept: what is not old, and what a kept incremental needs.
    let mut decisions: Vec<Decision> = all
        .iter()
        .enumerate()
        .map(|(index, r)| Decision {
            index,
            date: utc(r.backup_date).naive_utc(),
            keep: !is_old.contains(r.stored_filename.as_str()),
            reasons: Vec::new(),
        })
        .collect();
    let (parents, names) = chain_links(&all);
    rotation::keep_chains(&mut decisions, &parents, &names);
    let deletes = decisions.iter().any(|d| !d.keep);
    let key = if dry_run || !deletes { None } else { tombstone_key(ctx, password)? };
    let mut done = Vec::new();
    for d in decisions {
        let record = all[d.index].clone();
        if !is_old.contains(record.stored_filename.as_str()) {
            continue;
        }
        if !d.keep && !dry_run {
            delete_record(ctx, &record, key.as_deref())?;
        }
        let reasons = if d.keep {
            d.reasons.iter().map(|r| r.describe()).collect()
        } else {
            vec![format!("older than {interval} (before {})", utc(cutoff).format("%Y-%m-%d %H:%M:%S UTC"))]
        };
        done.push(Planned { record, keep: d.keep, reasons });
    }
    Ok(done)
}

/// Options of `rotate_backups`.
#[derive(Debug, Default, Clone)]
pub struct RotateOptions {
    pub destination: Option<Destination>,
    pub dry_run: bool,
    /// A policy for this run instead of the profile's (the command line's `--keep-*` flags, as restic's `forget`).
    pub policy: Option<Policy>,
    /// Authenticates the tombstones of the deleted backups (see [`delete`]).
    pub password: Option<std::sync::Arc<Secret>>,
}

/// A policy to suggest where a profile has none: 7 daily, 4 weekly and 12 monthly backups.
pub const SUGGESTED_POLICY: Policy = Policy { days: 7, weeks: 4, months: 12, ..rotation::NO_POLICY };

/// Applies the profile's grandfather-father-son policy (or `opts.policy`) to the backups named exactly `name`.
pub fn rotate(ctx: &Ctx, name: &str, opts: &RotateOptions) -> Result<Vec<Planned>, OpsError> {
    let policy = match opts.policy {
        Some(p) if !p.is_empty() => p,
        Some(_) => return Err(OpsError::NoRotation { profile: ctx.profile_name.clone() }),
        None => profile_policy(ctx)?,
    };
    let dest = ctx.destination(opts.destination);
    let rows = ctx.inventory.search(&Query {
        exact_name: Some(name.to_string()),
        backends: vec![dest],
        ..Query::default()
    })?;
    let dates: Vec<_> = rows.iter().map(|r| utc(r.backup_date).naive_utc()).collect();
    let mut plan: Vec<Decision> = rotation::plan(&dates, utc(ctx.now()).naive_utc(), &policy);
    let (parents, names) = chain_links(&rows);
    rotation::keep_chains(&mut plan, &parents, &names);
    let deletes = !opts.dry_run && plan.iter().any(|d| !d.keep);
    let key = if deletes { tombstone_key(ctx, opts.password.as_deref())? } else { None };
    let mut out = Vec::new();
    for d in plan {
        let record = rows[d.index].clone();
        if !d.keep && !opts.dry_run {
            delete_record(ctx, &record, key.as_deref())?;
        }
        out.push(Planned { record, keep: d.keep, reasons: d.reasons.iter().map(|r| r.describe()).collect() });
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.record.backup_date));
    Ok(out)
}

/// The profile's `rotation:` block as a policy; [`OpsError::NoRotation`] when it has none (or all zero).
fn profile_policy(ctx: &Ctx) -> Result<Policy, OpsError> {
    let cfg = ctx.profile.rotation.clone().ok_or_else(|| OpsError::NoRotation { profile: ctx.profile_name.clone() })?;
    let mut map = BTreeMap::new();
    for (k, v) in [
        ("years", cfg.years),
        ("months", cfg.months),
        ("weeks", cfg.weeks),
        ("days", cfg.days),
        ("hours", cfg.hours),
        ("minutes", cfg.minutes),
        ("seconds", cfg.seconds),
    ] {
        if let Some(v) = v {
            map.insert(k.to_string(), v);
        }
    }
    let policy = rotation::policy_from_rotation_map(&map, Some(cfg.week_start()))?;
    if policy.is_empty() {
        return Err(OpsError::NoRotation { profile: ctx.profile_name.clone() });
    }
    Ok(policy)
}

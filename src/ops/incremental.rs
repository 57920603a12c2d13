//! Incremental chains (issue 15): which backup a new one continues from, the `.snap` snapshot deltas kept beside
//! the archives (and copied into the inventory), and walking a chain back to its full backup.
//!
//! A chain is a full backup made under an `incremental:` policy (or `backup --incremental` with nothing to continue
//! from) and the incrementals made after it, each naming its parent in its row's metadata (`parent`, journaled and
//! synced like every other field). Each member's `.snap` object holds its snapshot delta (see
//! [`crate::archive::incremental`]), so an inventory rebuilt by `sync --rebuild` continues a chain from the store
//! alone and any host restores it; each host continues only the chains it made.
//!
//! Not here: the dumpdir format and change detection (`archive::incremental`), restoring a chain
//! ([`super::chain_restore`]), keeping chains whole when deleting ([`super::manage`]).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{Ctx, OpsError};
use crate::archive::crypto;
use crate::archive::incremental::{Delta, Node, NodeKind, Snapshot, Tracker, MAX_SNAPSHOT_LEN};
use crate::archive::index::IndexError;
use crate::archive::index::{Entry, EntryKind, Index};
use crate::archive::{ArchiveError, Encryption, Secret};
use crate::inventory::Query;
use crate::model::{BackupRecord, Destination, StoreId, StoredName};
use crate::storage::{Backend, PutOptions, StorageError};

/// Suffix of the snapshot delta object stored beside each archive of a chain.
pub const SNAPSHOT_SUFFIX: &str = ".snap";

/// `backup --full` / `--incremental`, or the profile's `incremental:` policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackupKind {
    /// The profile's policy; a full 0.6-style backup when it has none.
    #[default]
    Policy,
    /// A full backup (the start of a new chain when the profile has a policy).
    Full,
    /// An incremental backup of the newest chain member of the same name, source and store (a chain's full when
    /// there is none).
    Incremental,
}

/// How a new backup joins a chain.
pub(crate) struct ChainStart {
    /// The backup it continues from (`None`: it is a chain's full backup).
    pub parent: Option<BackupRecord>,
    /// Decides what the walk stores, and records the new snapshot.
    pub tracker: Arc<Tracker>,
}

/// Decides whether a backup of `source` (a directory) named `name` into the store `store` is a full backup outside
/// any chain (`None`), a chain's full, or an incremental; for an incremental, rebuilds the parent's snapshot.
pub(crate) fn start(
    ctx: &Ctx,
    kind: BackupKind,
    name: &str,
    source: &Path,
    store: &StoreId,
    destination: Destination,
    secret: Option<&Secret>,
) -> Result<Option<ChainStart>, OpsError> {
    let policy = ctx.profile.incremental.clone();
    let full = |parent: Option<BackupRecord>, snapshot: Snapshot| {
        Ok(Some(ChainStart { parent, tracker: Arc::new(Tracker::new(snapshot)) }))
    };
    match (kind, &policy) {
        (BackupKind::Policy, None) => return Ok(None),
        (BackupKind::Full, None) => return Ok(None),
        (BackupKind::Full, Some(_)) => return full(None, Snapshot::default()),
        _ => {}
    }
    let Some(parent) = newest_member(ctx, name, source, store, destination)? else {
        if kind == BackupKind::Incremental {
            ctx.reporter.warn(&format!("no earlier backup of {} to continue from: this one is full", source.display()));
        }
        return full(None, Snapshot::default());
    };
    let chain = match chain_of(ctx, &parent) {
        Ok(c) => c,
        Err(e) => {
            ctx.reporter.warn(&format!("starting a new chain with a full backup: {}", crate::error_chain(&e)));
            return full(None, Snapshot::default());
        }
    };
    if kind == BackupKind::Policy {
        let policy = policy.unwrap_or_default();
        let age = ctx.now() - chain[0].backup_date;
        let incrementals = chain.len() - 1;
        if age >= policy.full_every_seconds() || incrementals >= policy.max_chain() as usize {
            return full(None, Snapshot::default());
        }
    }
    let snapshot = match replay(ctx, &chain, secret) {
        Ok((s, _)) => s,
        Err(e @ OpsError::Archive(ArchiveError::PasswordNeeded)) => return Err(e),
        Err(e) => {
            ctx.reporter.warn(&format!("starting a new chain with a full backup: {}", crate::error_chain(&e)));
            return full(None, Snapshot::default());
        }
    };
    full(Some(parent), snapshot)
}

/// The newest live chain member with this name, source and store, made by this host. Another host's backup of the
/// same path in a shared store is never a parent: its snapshot holds that machine's devices and inodes, so every file
/// would count as changed, and the two hosts' chains would hang on each other.
fn newest_member(
    ctx: &Ctx,
    name: &str,
    source: &Path,
    store: &StoreId,
    destination: Destination,
) -> Result<Option<BackupRecord>, OpsError> {
    let rows = ctx.inventory.search(&Query {
        exact_name: Some(name.to_string()),
        backends: vec![destination],
        ..Query::default()
    })?;
    let source = source.to_string_lossy();
    Ok(rows.into_iter().find(|r| {
        r.in_chain()
            && r.source() == Some(source.as_ref())
            && r.client() == Some(ctx.host.as_str())
            && (r.store == *store || r.store.is_unknown())
    }))
}

/// The chain that ends with `record`, its full backup first. A parent missing from the inventory (or deleted) is
/// [`OpsError::BrokenChain`]; one that cannot be this chain's (another name's backup, a later one, one in another
/// store, or a loop back into the chain: rows from a journal, a sync server or an old inventory) is
/// [`OpsError::BadParent`].
pub fn chain_of(ctx: &Ctx, record: &BackupRecord) -> Result<Vec<BackupRecord>, OpsError> {
    let mut chain = vec![record.clone()];
    let mut seen = HashSet::from([record.stored_filename.clone()]);
    while let Some(child) = chain.last() {
        let Some(parent) = child.parent() else { break };
        let bad = |why: &'static str| OpsError::BadParent {
            stored: record.stored_filename.to_string(),
            child: child.stored_filename.to_string(),
            parent: parent.to_string(),
            why,
        };
        if !child.may_be_parent(&parent) {
            return Err(bad("it is not an earlier backup of the same name"));
        }
        if !seen.insert(parent.clone()) {
            return Err(bad("it is already in the chain (a loop)"));
        }
        let found = match ctx.inventory.get(&parent)? {
            Some(r) if !r.is_deleted && r.in_chain() => r,
            _ => {
                return Err(OpsError::BrokenChain {
                    stored: record.stored_filename.to_string(),
                    missing: parent.to_string(),
                })
            }
        };
        let same_store = found.store == child.store || found.store.is_unknown() || child.store.is_unknown();
        if found.backend != child.backend || !same_store {
            return Err(bad("it is in another store"));
        }
        if found.filename != child.filename {
            return Err(bad("it is a backup of another name"));
        }
        chain.push(found);
    }
    chain.reverse();
    Ok(chain)
}

/// The complete snapshot at the end of `chain`, and for each path the position in the chain of the archive that
/// holds its bytes (the last one whose delta names it).
pub fn replay(
    ctx: &Ctx,
    chain: &[BackupRecord],
    secret: Option<&Secret>,
) -> Result<(Snapshot, HashMap<Vec<u8>, usize>), OpsError> {
    let mut snapshot = Snapshot::default();
    let mut holder = HashMap::new();
    for (i, record) in chain.iter().enumerate() {
        let delta = delta_of(ctx, record, secret)?;
        for p in &delta.removed {
            holder.remove(p);
        }
        snapshot.apply(&delta, |p| {
            holder.insert(p.to_vec(), i);
        });
    }
    Ok((snapshot, holder))
}

/// The store that keeps a backup's sidecars (`.index`, `.snap`): beside the journal, as [`super::backup`] does.
fn sidecar_store(ctx: &Ctx, record: &BackupRecord) -> Result<Option<Arc<dyn Backend>>, OpsError> {
    let backend = ctx.stores().open_record(record)?;
    let journal = super::journal_for(ctx, record.backend, &backend)?;
    Ok(match (record.backend, journal) {
        (_, Some(j)) => Some(j),
        (Destination::Glacier, None) => None,
        (_, None) => Some(backend),
    })
}

/// A chain member's snapshot delta: the inventory's copy, else its `.snap` object (kept in the inventory once
/// read). Decrypted with the password when the backup is encrypted; checked as untrusted input.
pub fn delta_of(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Result<Delta, OpsError> {
    let stored = &record.stored_filename;
    let (bytes, from_store) = match ctx.inventory.get_snapshot(stored)? {
        Some(b) => (b, false),
        None => {
            let missing = || OpsError::MissingSnapshot { stored: stored.to_string() };
            let store = sidecar_store(ctx, record)?.ok_or_else(missing)?;
            let key = format!("{stored}{SNAPSHOT_SUFFIX}");
            let bytes = match read_bounded(store.as_ref(), &key) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    let source = IndexError::Corrupt("the snapshot is larger than 64 MiB");
                    return Err(OpsError::BadSnapshot { stored: stored.to_string(), source });
                }
                Err(StorageError::NotFound { .. }) => return Err(missing()),
                Err(e) => return Err(e.into()),
            };
            (bytes, true)
        }
    };
    let delta = open_delta(record, &bytes, secret)?;
    // Kept in the inventory once it opened (a bad one is not kept: a repaired object is read again).
    if from_store {
        ctx.inventory.put_snapshot(stored, &bytes)?;
    }
    Ok(delta)
}

/// Decrypts (when the backup is encrypted) and checks a `.snap`'s bytes.
fn open_delta(record: &BackupRecord, bytes: &[u8], secret: Option<&Secret>) -> Result<Delta, OpsError> {
    let stored = &record.stored_filename;
    let plain = if crypto::is_v1(bytes) {
        let secret = secret.ok_or(ArchiveError::PasswordNeeded)?;
        crypto::decrypt_bytes(secret.keys(), bytes).map_err(ArchiveError::from)?
    } else if record.is_enc() {
        // An encrypted backup's snapshot is encrypted: a plain one in its place was swapped in.
        return Err(ArchiveError::Corrupt(format!("the snapshot of {stored} is not encrypted like its archive")).into());
    } else {
        bytes.to_vec()
    };
    Delta::from_bytes_of(&plain, stored.as_str())
        .map_err(|source| OpsError::BadSnapshot { stored: stored.to_string(), source })
}

/// An object of at most [`MAX_SNAPSHOT_LEN`] bytes (`None`: it is larger; the rest is not read).
fn read_bounded(store: &dyn Backend, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let mut out = Vec::new();
    store
        .get(key)?
        .take(MAX_SNAPSHOT_LEN + 1)
        .read_to_end(&mut out)
        .map_err(|e| StorageError::io(store.describe(), key, e))?;
    Ok((out.len() as u64 <= MAX_SNAPSHOT_LEN).then_some(out))
}

/// The `.snap` bytes of a new backup: the delta, encrypted like the archive.
pub(crate) fn snapshot_sidecar(delta: &Delta, stored: &StoredName, enc: Option<&Encryption>) -> Vec<u8> {
    let plain = delta.to_bytes(stored.as_str());
    match enc {
        None => plain,
        Some(e) => crypto::encrypt_bytes(&e.master, &plain),
    }
}

/// Stores a new backup's `.snap` object beside its index sidecar (before its row is recorded).
pub(crate) fn put_snapshot(
    ctx: &Ctx,
    record: &BackupRecord,
    backend: &dyn Backend,
    journal: Option<&dyn Backend>,
    bytes: &[u8],
) -> Result<(), OpsError> {
    let key = format!("{}{SNAPSHOT_SUFFIX}", record.stored_filename);
    match (record.backend, journal) {
        (_, Some(j)) => j.put_bytes(&key, bytes, &PutOptions::default())?,
        (Destination::Glacier, None) => {
            ctx.reporter.warn(&format!("{key} is kept in the inventory only: the profile has no s3_bucket"));
            return Ok(());
        }
        (_, None) => backend.put_bytes(&key, bytes, &PutOptions::default())?,
    };
    Ok(())
}

/// The live backups that need `record` (its incrementals, theirs, …), oldest first.
pub fn dependents(ctx: &Ctx, record: &BackupRecord) -> Result<Vec<BackupRecord>, OpsError> {
    let mut out: Vec<BackupRecord> = Vec::new();
    let mut todo = vec![record.stored_filename.clone()];
    let mut seen: HashSet<StoredName> = todo.iter().cloned().collect();
    while let Some(p) = todo.pop() {
        for child in ctx.inventory.children_of(&p)? {
            if seen.insert(child.stored_filename.clone()) {
                todo.push(child.stored_filename.clone());
                out.push(child);
            }
        }
    }
    out.sort_by_key(|r| (r.backup_date, r.stored_filename.clone()));
    Ok(out)
}

/// The complete tree of a chain member at its time, as the rest of bakthat lists a backup: index entries in the
/// order an archive has them (depth first, children by name), each file with the archive of the chain that holds
/// its bytes. Built from the inventory's copies of the snapshots and indexes: no store request when they are there.
pub struct ChainTree {
    /// The chain, its full backup first; `holders` point into it.
    pub chain: Vec<BackupRecord>,
    /// The tree as entries: paths, kinds, modes (with the type bits), owners, sizes, mtimes, link targets; a file's
    /// later paths of one inode are hard links to its first. Offsets are those of `holders`, not of one archive.
    pub index: Index,
    /// For each entry that is a file: the position in `chain` of the archive holding its bytes, and that archive's
    /// entry for them (a hard link there resolved to its target).
    pub holders: Vec<Option<(usize, Entry)>>,
    /// The entry indexes of the archives that hold files, by position in `chain`.
    pub indexes: HashMap<usize, Index>,
}

/// See [`ChainTree`]. The archive indexes are read only where files are (`indexes` caches them by chain position).
pub fn chain_tree(ctx: &Ctx, record: &BackupRecord, secret: Option<&Secret>) -> Result<ChainTree, OpsError> {
    let chain = chain_of(ctx, record)?;
    let (snapshot, holder) = replay(ctx, &chain, secret)?;
    let mut order: Vec<(&Vec<u8>, &Node)> = snapshot.nodes.iter().collect();
    order.sort_by(|a, b| a.0.split(|&c| c == b'/').cmp(b.0.split(|&c| c == b'/')));
    let mut indexes: HashMap<usize, Index> = HashMap::new();
    let mut lookups: HashMap<usize, HashMap<Vec<u8>, usize>> = HashMap::new();
    let mut first_of_inode: HashMap<(u64, u64, i64, u32), Vec<u8>> = HashMap::new();
    let mut index = Index { seekable: true, ..Index::default() };
    let mut holders = Vec::with_capacity(order.len());
    for (path, node) in order {
        let (kind, type_bits) = match node.kind {
            NodeKind::Dir => (EntryKind::Dir, 0o040000),
            NodeKind::Symlink => (EntryKind::Symlink, 0o120000),
            NodeKind::File => (EntryKind::File, 0o100000),
            NodeKind::Other => continue,
        };
        let mut entry = Entry {
            path: path.clone(),
            kind,
            size: 0,
            mode: node.mode | type_bits,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            link: node.link.clone(),
            header_offset: 0,
            data_offset: 0,
            damaged: false,
        };
        let mut held = None;
        if kind == EntryKind::File {
            let inode = (node.dev, node.ino, node.ctime, node.ctime_ns);
            let first = (node.nlink > 1).then(|| first_of_inode.get(&inode).cloned()).flatten();
            if let Some(first) = first {
                entry.kind = EntryKind::HardLink;
                entry.link = Some(first);
            } else {
                if node.nlink > 1 {
                    first_of_inode.insert(inode, path.clone());
                }
                let at = *holder.get(path.as_slice()).ok_or_else(|| unheld(record, path, "no archive holds it"))?;
                if let std::collections::hash_map::Entry::Vacant(v) = indexes.entry(at) {
                    let member = &chain[at];
                    let idx = super::inventory_index(ctx, member, secret)?
                        .ok_or_else(|| OpsError::NoIndex { stored: member.stored_filename.to_string() })?;
                    lookups.insert(at, idx.entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect());
                    v.insert(idx);
                }
                let (entries, lookup) = (&indexes[&at].entries, &lookups[&at]);
                let find =
                    |p: &[u8], why| lookup.get(p).map(|&i| &entries[i]).ok_or_else(|| unheld(&chain[at], path, why));
                let mut e = find(path, "its archive lacks it")?;
                if e.kind == EntryKind::HardLink {
                    e = find(e.link.as_deref().unwrap_or_default(), "its hard link target is missing")?;
                }
                if e.kind != EntryKind::File {
                    return Err(unheld(&chain[at], path, "its archive holds something else there"));
                }
                entry.size = e.size;
                entry.header_offset = e.header_offset;
                entry.data_offset = e.data_offset;
                entry.damaged = e.damaged;
                held = Some((at, e.clone()));
            }
        }
        index.entries.push(entry);
        holders.push(held);
    }
    Ok(ChainTree { chain, index, holders, indexes })
}

fn unheld(record: &BackupRecord, path: &[u8], why: &str) -> OpsError {
    OpsError::Archive(ArchiveError::Corrupt(format!(
        "the snapshot of {} lists {}, but {why}",
        record.stored_filename,
        String::from_utf8_lossy(path)
    )))
}

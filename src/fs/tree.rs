//! The archive tree: what each inode is and its attributes. The virtual directories come from the [`Catalog`] of
//! the inventory's rows; a backup's directory is filled in from its entry index when first opened ([`Expansion`]),
//! and let go again under the listing budget. Also the refresh that re-reads the inventory when it changed and
//! queues what the kernel must forget ([`Invalidation`]).
//!
//! Not here: `/incoming` (see `incoming.rs`), reading content (`read.rs`), loading an index (`index.rs`), the
//! layout of the virtual directories (`catalog.rs`) and of a backup's content (`expand.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::archive::index::{EntryKind, Index};
use crate::inventory::RowsDigest;
use crate::model::{BackupRecord, Destination, StoreId};

use super::catalog::{Builder, Catalog, Changes, Virtual, ENTRY_BASE};
use super::expand::{Expansion, Expansions, Found, Part};
use super::index::Unreadable;
use super::versions::{self, Item, View, Views};
use super::{cost, lock, Attr, Entry, FsError, Inner, Ino, Kind, Result};

/// How long the kernel may keep what it was told about the archive tree. The content of a backup never changes,
/// and the mount tells the kernel itself when the virtual directories change (see [`Invalidation`]).
pub(super) const TREE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Status files change with cold-storage state; their reads bypass the page cache, so only `ls -l` sizes may lag.
pub(super) const STATUS_TTL: Duration = Duration::from_secs(1);

/// The archive tree: catalog, opened backups, expansions.
#[derive(Default)]
pub(super) struct Tree {
    pub cat: Catalog,
    pub stamp: Option<(i64, i64, i64, i64)>,
    /// What the rows the catalog was built from add up to (see [`RowsDigest`]).
    digest: Option<RowsDigest>,
    /// Rows read from the inventory by the last refresh.
    pub rows_read: usize,
    /// Opened backups by row id: the full row, the loaded index.
    pub slots: HashMap<i64, Slot>,
    exp: Expansions,
    /// The `/versions/<name>` views laid out (`versions.rs`).
    pub versions: Views,
    /// Directories whose listing changed since they were last opened: the next open must not reuse the kernel's
    /// cached listing (a notification may still be on its way).
    dirty: HashSet<Ino>,
    /// Bytes the opened backups hold (estimated), and the most they may.
    pub used: usize,
    pub budget: usize,
    tick: u64,
}

pub(super) struct Slot {
    pub record: BackupRecord,
    pub loaded: Option<Arc<Loaded>>,
    /// Why its index cannot be opened, once that is known: its directory then holds only its status file.
    pub unreadable: Option<Unreadable>,
    cost: usize,
    used: u64,
}

impl Slot {
    pub(super) fn new(record: BackupRecord) -> Slot {
        Slot { record, loaded: None, unreadable: None, cost: 0, used: 0 }
    }
}

/// A backup's content description, loaded on first use from the inventory's copy of its entry index.
pub(super) struct Loaded {
    pub index: Index,
    /// Entry by path, for following hard links (empty when the archive has none).
    by_path: HashMap<Vec<u8>, usize>,
    pub content: Content,
    /// An incremental backup: `index` is its complete tree, and each file is read from the chain's archive that
    /// holds its bytes.
    pub chain: Option<ChainReads>,
}

/// Where an incremental backup's files are (see [`crate::ops::incremental::ChainTree`]).
pub(super) struct ChainReads {
    /// The chain, its full backup first.
    pub records: Vec<BackupRecord>,
    /// Per entry of the tree: the position of the archive holding a file's bytes, and its entry there.
    pub holders: Vec<Option<(usize, crate::archive::index::Entry)>>,
    /// The holding archives' own indexes, by position in `records`.
    pub archives: HashMap<usize, Arc<Loaded>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Content {
    /// Independent gzip members: ranged reads.
    Members,
    /// A legacy single-stream archive: decoded whole into the cache on first read.
    Whole,
    /// A single file stored as is (compression off): decoded whole into the cache on first read.
    Raw,
}

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NodeKind {
    /// A directory of the virtual tree (root, by-name…).
    Dir,
    /// `latest`.
    Latest,
    /// A backup's directory (by row id); its children are filled in from the index on first use.
    Backup(i64),
    /// An entry of a backup's archive: (row id, entry index).
    Entry(i64, usize),
    /// A directory implied by archive paths that has no entry of its own.
    ImpliedDir(i64),
    /// The single file of a raw backup.
    Raw(i64),
    /// The status file of a backup.
    Status(i64),
    /// `/incoming`.
    Incoming,
    /// A directory of `/versions` past the catalog's (a name's view, or a path in it).
    VersionDir,
    /// A version of a file under `/versions`.
    Version,
}

/// An inode resolved: what it is, its parent, and whether it is a directory whose children are known.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub kind: NodeKind,
    pub parent: Ino,
    /// A directory (a backup's directory counts once expanded).
    pub listable: bool,
}

/// A directory entry: its name, inode and type.
pub(super) type Listed = (Vec<u8>, Ino, Kind);

/// The file type encoded in tar mode bits, for entries that are neither files, directories nor links.
fn other_kind(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o010000 => Kind::Fifo,
        0o020000 => Kind::CharDevice,
        0o060000 => Kind::BlockDevice,
        0o140000 => Kind::Socket,
        _ => Kind::Fifo,
    }
}

impl Tree {
    /// An empty tree whose opened backups may hold about `budget` bytes.
    pub(super) fn new(budget: usize) -> Tree {
        Tree { budget, ..Tree::default() }
    }

    /// What `ino` is. An inode of a backup whose content was let go answers [`FsError::NotFound`] here;
    /// [`Inner::area`] lays that content out again first.
    pub(super) fn node(&self, ino: Ino) -> Result<Node> {
        if versions::owns(ino) {
            let (_, item, parent) = self.versions.find(ino).ok_or(FsError::NotFound)?;
            return Ok(match item {
                Item::Dir(_) => Node { kind: NodeKind::VersionDir, parent, listable: true },
                Item::Version(_) => Node { kind: NodeKind::Version, parent, listable: false },
            });
        }
        if ino >= ENTRY_BASE {
            let Found::Node { dir, k } = self.exp.find(ino) else { return Err(FsError::NotFound) };
            let e = self.exp.get(dir).ok_or(FsError::NotFound)?;
            let n = e.node(k).ok_or(FsError::NotFound)?;
            let kind = match n.part {
                Part::Entry(i) => NodeKind::Entry(e.id, i as usize),
                Part::ImpliedDir => NodeKind::ImpliedDir(e.id),
                Part::Raw => NodeKind::Raw(e.id),
                Part::Status => NodeKind::Status(e.id),
            };
            return Ok(Node { kind, parent: e.parent(dir, k), listable: e.is_dir(k) });
        }
        let parent = self.cat.parent(ino).ok_or(FsError::NotFound)?;
        let (kind, listable) = match self.cat.kind(ino).ok_or(FsError::NotFound)? {
            Virtual::Dir => (NodeKind::Dir, true),
            Virtual::Incoming => (NodeKind::Incoming, true),
            Virtual::Latest => (NodeKind::Latest, false),
            Virtual::Backup(row) => (NodeKind::Backup(row.id), self.exp.get(ino).is_some()),
            Virtual::Versions => (NodeKind::VersionDir, self.versions.get(ino).is_some()),
        };
        Ok(Node { kind, parent, listable })
    }

    /// The backup directory an inode of backup content belongs to, when that content was let go.
    pub(super) fn evicted_owner(&self, ino: Ino) -> Option<Ino> {
        match self.exp.find(ino) {
            Found::Evicted { dir } => Some(dir),
            Found::Node { .. } | Found::Unknown => None,
        }
    }

    /// The `/versions/<name>` directory an inode of its view belongs to, when that view was let go (or not laid
    /// out yet).
    pub(super) fn versions_owner(&self, ino: Ino) -> Option<Ino> {
        let dir = versions::owner(ino)?;
        (self.versions.get(dir).is_none() && self.cat.kind(dir) == Some(Virtual::Versions)).then_some(dir)
    }

    /// The view holding directory `ino` of `/versions` and the node in it (`None`: the top).
    fn view_of(&self, ino: Ino) -> Option<(&View, Option<u32>)> {
        if versions::owns(ino) {
            return match self.versions.find(ino)? {
                (view, Item::Dir(k), _) => Some((view, Some(k))),
                (_, Item::Version(_), _) => None,
            };
        }
        self.versions.get(ino).map(|v| (v, None))
    }

    /// The expansion holding `ino` (a backup directory or its content) and the node in it (`None`: the top).
    fn expansion_of(&self, ino: Ino) -> Option<(&Expansion, Option<u32>)> {
        if ino >= ENTRY_BASE {
            let Found::Node { dir, k } = self.exp.find(ino) else { return None };
            return Some((self.exp.get(dir)?, Some(k)));
        }
        Some((self.exp.get(ino)?, None))
    }

    /// The child `name` of directory `parent`. In a backup whose index cannot be opened, any name but the status
    /// file fails with the reason (its files are unknown, not missing).
    pub(super) fn child(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        if let Some(found) = self.cat.child(parent, name) {
            return found.ok_or(FsError::NotFound);
        }
        let node = self.node(parent)?;
        if !node.listable {
            return Err(FsError::NotADirectory);
        }
        if let Some((view, k)) = self.view_of(parent) {
            return view.child(k, name).ok_or(FsError::NotFound);
        }
        let (e, k) = self.expansion_of(parent).ok_or(FsError::NotFound)?;
        if let Some(c) = e.child(k, name) {
            return Ok(e.ino(c));
        }
        match node.kind {
            NodeKind::Backup(id) => match self.slots.get(&id) {
                Some(s) => {
                    Err(s.unreadable.as_ref().map_or(FsError::NotFound, |w| w.error(s.record.stored_filename.as_str())))
                }
                None => Err(FsError::NotFound),
            },
            _ => Err(FsError::NotFound),
        }
    }

    /// The parent of directory `ino` and up to `max` of its children after the first `skip`, with their types.
    pub(super) fn listing(&self, ino: Ino, skip: usize, max: usize) -> Result<(Ino, Vec<Listed>)> {
        if let Some(l) = self.cat.listing(ino, skip, max) {
            return Ok(l);
        }
        let node = self.node(ino)?;
        if let Some((view, k)) = self.view_of(ino).filter(|_| node.listable) {
            return Ok((node.parent, view.listing(k, skip, max)));
        }
        let (e, k) = self.expansion_of(ino).filter(|_| node.listable).ok_or(FsError::NotADirectory)?;
        let children = e.children(k).ok_or(FsError::NotADirectory)?;
        let list = children
            .iter()
            .skip(skip)
            .take(max)
            .map(|(name, c)| {
                let ino = e.ino(*c);
                (name.to_vec(), ino, self.kind_of(ino).unwrap_or(Kind::File))
            })
            .collect();
        Ok((node.parent, list))
    }

    pub(super) fn loaded(&self, id: i64) -> Result<&Arc<Loaded>> {
        self.slots.get(&id).and_then(|s| s.loaded.as_ref()).ok_or(FsError::NotFound)
    }

    pub(super) fn slot(&self, id: i64) -> Result<&Slot> {
        self.slots.get(&id).ok_or(FsError::NotFound)
    }

    pub(super) fn kind_of(&self, ino: Ino) -> Option<Kind> {
        let node = self.node(ino).ok()?;
        Some(match node.kind {
            NodeKind::Dir
            | NodeKind::Backup(_)
            | NodeKind::ImpliedDir(_)
            | NodeKind::Incoming
            | NodeKind::VersionDir => Kind::Dir,
            NodeKind::Latest => Kind::Symlink,
            NodeKind::Raw(_) | NodeKind::Status(_) | NodeKind::Version => Kind::File,
            NodeKind::Entry(id, e) => {
                let entry = &self.loaded(id).ok()?.index.entries[e];
                match entry.kind {
                    EntryKind::File | EntryKind::HardLink => Kind::File,
                    EntryKind::Dir => Kind::Dir,
                    EntryKind::Symlink => Kind::Symlink,
                    EntryKind::Other => other_kind(entry.mode),
                }
            }
        })
    }

    pub(super) fn attr(&self, fs: &Inner, ino: Ino) -> Result<Entry> {
        let node = self.node(ino)?;
        let (uid, gid) = (fs.opts.uid, fs.opts.gid);
        let dir = |perm: u16, mtime: i64| Attr { ino, kind: Kind::Dir, size: 0, perm, nlink: 2, uid, gid, mtime };
        let date =
            |id: i64| self.cat.row(id).map(|r| r.date).or_else(|| self.slots.get(&id).map(|s| s.record.backup_date));
        let attr = match node.kind {
            NodeKind::Dir => dir(0o555, fs.mounted_at),
            NodeKind::Incoming => dir(0o755, fs.mounted_at),
            NodeKind::Latest => {
                let (t, mtime) = self.cat.latest(ino).ok_or(FsError::NotFound)?;
                Attr { ino, kind: Kind::Symlink, size: t.len() as u64, perm: 0o777, nlink: 1, uid, gid, mtime }
            }
            NodeKind::Backup(id) => dir(0o555, date(id).ok_or(FsError::NotFound)?),
            // What /versions lists changes with the name's backups; its inner directories are not invalidated one
            // by one, so the kernel keeps them only briefly.
            NodeKind::VersionDir => {
                let newest = self.versions.find(ino).and_then(|(v, item, _)| match item {
                    Item::Dir(k) => v.newest(k),
                    Item::Version(_) => None,
                });
                return Ok(Entry { attr: dir(0o555, newest.unwrap_or(fs.mounted_at)), ttl: STATUS_TTL });
            }
            NodeKind::Version => {
                let (view, item, _) = self.versions.find(ino).ok_or(FsError::NotFound)?;
                let Item::Version(k) = item else { return Err(FsError::NotFound) };
                let v = view.version(k).ok_or(FsError::NotFound)?;
                let perm = (v.mode & 0o7777) as u16;
                let attr = Attr { ino, kind: Kind::File, size: v.size, perm, nlink: 1, uid, gid, mtime: v.mtime };
                return Ok(Entry { attr, ttl: STATUS_TTL });
            }
            NodeKind::ImpliedDir(id) => dir(0o755, date(id).ok_or(FsError::NotFound)?),
            NodeKind::Status(id) => {
                let slot = self.slot(id)?;
                let size = fs.status_of(slot).text().len() as u64;
                let mtime = slot.record.backup_date;
                let attr = Attr { ino, kind: Kind::File, size, perm: 0o444, nlink: 1, uid, gid, mtime };
                return Ok(Entry { attr, ttl: STATUS_TTL });
            }
            NodeKind::Raw(id) => {
                let record = &self.slot(id)?.record;
                let size = fs.raw_size(record);
                Attr { ino, kind: Kind::File, size, perm: 0o644, nlink: 1, uid, gid, mtime: record.backup_date }
            }
            NodeKind::Entry(id, e) => {
                let loaded = self.loaded(id)?;
                let entry = &loaded.index.entries[e];
                let kind = self.kind_of(ino).unwrap_or(Kind::File);
                let size = match entry.kind {
                    EntryKind::File => entry.size,
                    EntryKind::HardLink => loaded.link_target(e).map(|t| loaded.index.entries[t].size).unwrap_or(0),
                    EntryKind::Symlink => entry.link.as_ref().map(|l| l.len() as u64).unwrap_or(0),
                    EntryKind::Dir | EntryKind::Other => 0,
                };
                Attr {
                    ino,
                    kind,
                    size,
                    perm: (entry.mode & 0o7777) as u16,
                    nlink: if kind == Kind::Dir { 2 } else { 1 },
                    uid: u32::try_from(entry.uid).unwrap_or(u32::MAX),
                    gid: u32::try_from(entry.gid).unwrap_or(u32::MAX),
                    mtime: entry.mtime,
                }
            }
        };
        Ok(Entry { attr, ttl: TREE_TTL })
    }

    /// Whether the kernel may reuse its cached listing of `ino` on this open (and, either way, it may from now on).
    pub(super) fn take_clean(&mut self, ino: Ino) -> bool {
        !self.dirty.remove(&ino)
    }

    /// Fills a backup directory from its slot's index (once), letting go of the least recently used backups when
    /// the opened ones pass the budget.
    pub(super) fn expand(&mut self, dir: Ino, id: i64) {
        if self.exp.get(dir).is_some() {
            return;
        }
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if slot.loaded.is_none() && slot.unreadable.is_none() {
            return;
        }
        let e = Expansion::new(id, slot);
        let cost = e.cost();
        slot.cost += cost;
        self.used += cost;
        self.exp.insert(dir, e);
        self.charged(id);
    }

    /// Keeps backup `id`'s full row (for its status file, attributes and reads), charged to the budget, unless it
    /// is kept already.
    pub(super) fn hold(&mut self, id: i64, record: BackupRecord) {
        if self.slots.contains_key(&id) {
            return;
        }
        let mut slot = Slot::new(record);
        slot.cost = cost::slot(&slot);
        self.used += slot.cost;
        self.slots.insert(id, slot);
        self.charged(id);
    }

    /// Keeps the loaded index of backup `id` (the first one kept wins), charged to the budget.
    pub(super) fn hold_loaded(&mut self, id: i64, record: BackupRecord, loaded: Arc<Loaded>) -> Arc<Loaded> {
        self.hold(id, record);
        let Some(slot) = self.slots.get_mut(&id) else { return loaded };
        if let Some(l) = &slot.loaded {
            return l.clone();
        }
        let cost = cost::loaded(&loaded);
        slot.loaded = Some(loaded.clone());
        slot.cost += cost;
        self.used += cost;
        self.charged(id);
        loaded
    }

    /// After backup `id` was charged more: marks it used, and lets others go if the budget is passed.
    fn charged(&mut self, id: i64) {
        self.touch(id);
        if self.used > self.budget {
            self.evict(id);
        }
    }

    /// Marks backup `id` as just used.
    pub(super) fn touch(&mut self, id: i64) {
        self.tick += 1;
        if let Some(s) = self.slots.get_mut(&id) {
            s.used = self.tick;
        }
    }

    /// Lets go of the least recently used backups (never `keep`) until three quarters of the budget are used.
    fn evict(&mut self, keep: i64) {
        let mut order: Vec<(u64, i64)> =
            self.slots.iter().filter(|(&id, _)| id != keep).map(|(&id, s)| (s.used, id)).collect();
        order.sort_unstable();
        for (_, id) in order {
            if self.used <= self.budget / 4 * 3 {
                break;
            }
            self.forget(id);
        }
        give_back_free_memory();
    }

    /// Drops an opened backup and its expansions.
    fn forget(&mut self, id: i64) {
        if let Some(s) = self.slots.remove(&id) {
            self.used = self.used.saturating_sub(s.cost);
        }
        self.exp.remove_backup(id);
    }

    /// Takes a new catalog; drops what no longer exists. Returns what changed, for the kernel.
    fn install(&mut self, cat: Catalog, changes: &Changes) {
        self.cat = cat;
        let gone: Vec<i64> = self.slots.keys().copied().filter(|&id| self.cat.row(id).is_none()).collect();
        for id in gone {
            self.forget(id);
        }
        let cat = &self.cat;
        self.exp.retain_dirs(|dir, id| cat.placement(dir).is_some_and(|(r, _)| r.id == id));
        let changed: HashSet<Ino> = changes.inodes.iter().copied().collect();
        self.versions.retain(|dir| !changed.contains(&dir) && cat.kind(dir) == Some(Virtual::Versions));
        self.dirty.extend(changes.inodes.iter().copied());
    }
}

impl Loaded {
    pub(super) fn new(index: Index, content: Content) -> Loaded {
        let links = index.entries.iter().any(|e| e.kind == EntryKind::HardLink);
        let by_path = if links {
            index.entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect()
        } else {
            HashMap::new()
        };
        Loaded { index, by_path, content, chain: None }
    }

    /// Whether it keeps a map of paths (its archive has hard links).
    pub(super) fn has_links(&self) -> bool {
        !self.by_path.is_empty()
    }

    /// An incremental backup's complete tree, its files read from the archives of its chain.
    pub(super) fn chain(tree: crate::ops::incremental::ChainTree) -> Loaded {
        let archives =
            tree.indexes.into_iter().map(|(at, index)| (at, Arc::new(Loaded::new(index, Content::Members)))).collect();
        let reads = ChainReads { records: tree.chain, holders: tree.holders, archives };
        Loaded { chain: Some(reads), ..Loaded::new(tree.index, Content::Members) }
    }

    /// The entry a hard link points to (followed once; a link to a link is resolved too).
    pub(super) fn link_target(&self, e: usize) -> Option<usize> {
        let mut cur = e;
        for _ in 0..8 {
            let entry = &self.index.entries[cur];
            if entry.kind != EntryKind::HardLink {
                return Some(cur);
            }
            let link = entry.link.as_ref()?;
            let link = link.strip_prefix(b"./").unwrap_or(link);
            cur = *self.by_path.get(link)?;
        }
        None
    }
}

impl Inner {
    pub(super) fn tree(&self) -> RwLockReadGuard<'_, Tree> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn tree_mut(&self) -> RwLockWriteGuard<'_, Tree> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the inventory if it changed (checked at most once per `refresh_interval` unless `force`), and
    /// queues what the kernel must forget.
    pub(super) fn refresh(&self, force: bool) -> Result<()> {
        {
            let mut checked = lock(&self.checked);
            if !force && checked.is_some_and(|t| t.elapsed() < self.opts.refresh_interval) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        // One refresh at a time: two would both rebuild, and the second would see no change to report.
        let _one = lock(&self.refreshing);
        let stamp = self.ctx().inventory.change_stamp()?;
        if self.tree().stamp == Some(stamp) {
            return Ok(());
        }
        // Rows added since the last look are all that is read when the rows seen then are unchanged (the same
        // digest); any other change (a row deleted, a sync's update) lays everything out from the inventory again.
        let prev = self.tree().digest;
        let mut b = match prev {
            Some(_) => Builder::from_catalog(&self.tree().cat),
            None => Builder::default(),
        };
        let (before, mut digest, mut read) = self.read_rows(&mut b, prev.map_or(i64::MIN, |d| d.max_id))?;
        if prev.is_some_and(|p| p != before) {
            b = Builder::default();
            (_, digest, read) = self.read_rows(&mut b, i64::MIN)?;
        }
        let (cat, changes) = {
            let prev = self.tree();
            let first = prev.stamp.is_none();
            let (cat, changes) = Catalog::build(b, (!first).then_some(&prev.cat));
            (cat, changes)
        };
        // Rows of opened backups are read again (tags or sizes may have changed).
        let open: Vec<i64> = self.tree().slots.keys().copied().collect();
        let mut records = Vec::new();
        for id in open {
            if let Some(r) = self.ctx().inventory.get_by_id(id)? {
                records.push(r);
            }
        }
        {
            let mut t = self.tree_mut();
            t.install(cat, &changes);
            for r in records {
                if let Some(s) = r.id.and_then(|id| t.slots.get_mut(&id)) {
                    s.record = r;
                }
            }
            t.stamp = Some(stamp);
            t.digest = Some(digest);
            t.rows_read = read;
        }
        self.queue(changes);
        // The old catalog and the rows read are freed now.
        give_back_free_memory();
        Ok(())
    }

    /// Adds the live rows past id `after` that this profile can read to `b`. Returns the digests of the rows up to
    /// `after` and of all rows, and how many rows were read.
    fn read_rows(&self, b: &mut Builder, after: i64) -> Result<(RowsDigest, RowsDigest, usize)> {
        // Only backups this profile can read: another profile's rows would be files that answer EIO. Decided once
        // per store, not per row.
        let stores = self.ctx().stores();
        let mut readable: HashMap<(Destination, String), bool> = HashMap::new();
        let mut n = 0;
        let (before, all) = self.ctx().inventory.live_rows_after(after, |r| {
            n += 1;
            let key = (r.backend, r.store.to_string());
            let ok = *readable.entry(key).or_insert_with(|| {
                let store = StoreId::parse(r.store).unwrap_or_default();
                stores.can_open(&probe(r.backend, store))
            });
            if ok {
                b.push(r.id, r.backup_date, r.filename, r.tags, r.is_enc());
            }
        })?;
        Ok((before, all, n))
    }

    /// Before listing or looking up in a directory: refresh the virtual tree, or load a backup's index.
    pub(super) fn prepare_dir(&self, ino: Ino) -> Result<()> {
        let kind = self.tree().node(ino)?.kind;
        match kind {
            NodeKind::Dir => self.refresh(false),
            NodeKind::Backup(id) => self.expand(ino, id),
            NodeKind::VersionDir if !versions::owns(ino) => self.lay_out_versions(ino),
            _ => Ok(()),
        }
    }

    /// Fills backup directory `dir` (of row `id`) from its index, if it is not yet.
    pub(super) fn expand(&self, dir: Ino, id: i64) -> Result<()> {
        {
            let t = self.tree();
            if t.node(dir)?.listable {
                drop(t);
                self.tree_mut().touch(id);
                return Ok(());
            }
        }
        if let Err(e) = self.load(id) {
            // An index that cannot be opened leaves the directory with its status file, which says why.
            if self.tree().slots.get(&id).is_none_or(|s| s.unreadable.is_none()) {
                return Err(e);
            }
        }
        self.tree_mut().expand(dir, id);
        Ok(())
    }

    /// The full row of backup `id`, read from the inventory if it is not open.
    pub(super) fn record(&self, id: i64) -> Result<BackupRecord> {
        if let Some(s) = self.tree().slots.get(&id) {
            return Ok(s.record.clone());
        }
        self.ctx().inventory.get_by_id(id)?.ok_or(FsError::NotFound)
    }

    /// Makes sure backup `id` has a slot (its full row), for its status and attributes.
    pub(super) fn open_slot(&self, id: i64) -> Result<()> {
        if self.tree().slots.contains_key(&id) {
            return Ok(());
        }
        let record = self.ctx().inventory.get_by_id(id)?.ok_or(FsError::NotFound)?;
        self.tree_mut().hold(id, record);
        Ok(())
    }
}

/// Returns the heap's free pages to the system. glibc's malloc keeps what was freed inside each thread's arena:
/// measured over an `ls -lR` of 10,000 backups, the mount's RSS was 254 MiB while its live heap was about 100 MiB,
/// and 77 MiB after a `malloc_trim(0)`. Called after backups are let go and after a refresh, not per request.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A row that only says where a backup is (what `Stores::can_open` looks at).
fn probe(backend: Destination, store: StoreId) -> BackupRecord {
    BackupRecord {
        id: None,
        backend,
        backend_hash: None,
        backup_date: 0,
        filename: String::new(),
        is_deleted: false,
        last_updated: 0,
        metadata: serde_json::Value::Null,
        size: 0,
        stored_filename: crate::model::StoredName::from_key(String::new()),
        tags: String::new(),
        store,
    }
}

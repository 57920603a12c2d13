//! `/versions/<name>/<path…>/<timestamp>`: every distinct version of each file across the backups of one name
//! (issue 15). A file's path is a directory there, listing one read-only file per version, named after the backup
//! that first held those bytes (`~2`, `~3`… for backups made in the same second); reading one reads the archive
//! that holds the bytes. Two backups hold the same version when the file has the same size and mtime in both, so an
//! incremental chain (whose archives hold only what changed) and a row of full backups give the same view.
//!
//! The view of a name is laid out when `/versions/<name>` is first opened, from the inventory's copies of the
//! entry indexes (the archives' own indexes, one at a time): listing it makes no store request. What is kept is one
//! node per distinct path and about 40 bytes per version. Views count against the mount's listing budget and are
//! let go, least recently used first; a view's inode numbers are given in the order its backups were made (oldest
//! first), so laying it out again gives the same numbers, and a new backup adds numbers without moving the others.
//! A view is dropped when its name's backups change (the catalog reports that directory as changed), and what it
//! lists is not cached by the kernel past [`super::tree::STATUS_TTL`].
//!
//! Not here: the `/versions` directories themselves (`catalog.rs`), reading bytes (`read.rs`), the backups' own
//! trees (`expand.rs`). Symbolic links, raw (single-file) backups and legacy archives without an index copy have no
//! versions here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::archive::index::{EntryKind, Index};
use crate::model::Epoch;

use super::handles::Handle;
use super::tree::{Content, Loaded};
use super::{names, FsError, Inner, Ino, Kind, Result};

/// Inodes of versions views: `VERSIONS_BASE + (the /versions/<name> directory's inode << SHIFT) + serial`.
pub(super) const VERSIONS_BASE: Ino = 1 << 63;
const SHIFT: u32 = 26;
/// The most nodes and versions one view numbers (the rest is left out, with a warning).
const MAX_SERIAL: u32 = (1 << SHIFT) - 1;
/// Archives' own indexes kept for reading versions.
const OWN_INDEXES: usize = 8;
/// The parent of a view's top-level nodes (the `/versions/<name>` directory).
const TOP: u32 = u32::MAX;

/// One version of a file: the backup whose archive holds its bytes, and the entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    /// The backup's row id.
    pub row: i64,
    pub date: Epoch,
    /// The entry holding the bytes in that archive's own index (a hard link resolved to its target).
    pub entry: u32,
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
    serial: u32,
}

/// A path of some backup of the name: a directory, and (when it was a file in some backup) its versions.
struct Node {
    parent: u32,
    serial: u32,
    /// Sorted by name.
    children: Vec<(Box<[u8]>, u32)>,
    /// Indexes into [`View::versions`], oldest first.
    versions: std::ops::Range<u32>,
}

/// What an inode of a view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    /// A directory: a path (node), listing its children and its versions.
    Dir(u32),
    /// A version (index into the view's versions).
    Version(u32),
}

/// The view of one name.
pub(super) struct View {
    /// The `/versions/<name>` directory.
    dir: Ino,
    top: Vec<(Box<[u8]>, u32)>,
    nodes: Vec<Node>,
    versions: Vec<Version>,
    /// Item by serial.
    serials: Vec<Item>,
    cost: usize,
    used: u64,
}

/// Every view laid out, and the archives' own indexes that version reads use.
#[derive(Default)]
pub(super) struct Views {
    by_dir: HashMap<Ino, View>,
    own: Vec<(i64, Arc<Loaded>)>,
    used: usize,
    tick: u64,
}

/// A node being built: parent, serial, children by name, versions.
type Building = (u32, u32, HashMap<Box<[u8]>, u32>, Vec<Version>);

/// Builds a view from the name's backups, oldest first.
pub(super) struct Builder {
    dir: Ino,
    top: HashMap<Box<[u8]>, u32>,
    nodes: Vec<Building>,
    next: u32,
    full: bool,
}

impl Builder {
    pub fn new(dir: Ino) -> Builder {
        Builder { dir, top: HashMap::new(), nodes: Vec::new(), next: 0, full: false }
    }

    fn serial(&mut self) -> Option<u32> {
        if self.next >= MAX_SERIAL {
            if !self.full {
                tracing::warn!("/versions: a name with more than {MAX_SERIAL} paths and versions is shown in part");
            }
            self.full = true;
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    fn node(&mut self, parent: u32, name: &[u8]) -> Option<u32> {
        let existing = match parent {
            TOP => self.top.get(name),
            p => self.nodes[p as usize].2.get(name),
        };
        if let Some(&n) = existing {
            return Some(n);
        }
        let serial = self.serial()?;
        let n = self.nodes.len() as u32;
        self.nodes.push((parent, serial, HashMap::new(), Vec::new()));
        match parent {
            TOP => self.top.insert(name.into(), n),
            p => self.nodes[p as usize].2.insert(name.into(), n),
        };
        Some(n)
    }

    /// Adds the versions that backup `row` (made at `date`) holds in its own archive, described by `index`.
    pub fn add(&mut self, row: i64, date: Epoch, index: &Index) {
        let links = index.entries.iter().any(|e| e.kind == EntryKind::HardLink);
        let by_path: HashMap<&[u8], usize> = if links {
            index.entries.iter().enumerate().map(|(i, e)| (e.path.as_slice(), i)).collect()
        } else {
            HashMap::new()
        };
        for (i, e) in index.entries.iter().enumerate() {
            let target = match e.kind {
                EntryKind::File => i,
                EntryKind::HardLink => {
                    let link = e.link.as_deref().unwrap_or_default();
                    match by_path.get(link.strip_prefix(b"./").unwrap_or(link)) {
                        Some(&t) if index.entries[t].kind == EntryKind::File => t,
                        _ => continue,
                    }
                }
                EntryKind::Dir | EntryKind::Symlink | EntryKind::Other => continue,
            };
            let held = &index.entries[target];
            if held.damaged {
                continue;
            }
            // The confinement rule restore applies (crate::model::relative_path): hostile paths are not shown.
            let Ok(Some(rel)) = crate::model::relative_path(&e.path) else { continue };
            let mut at = TOP;
            for c in rel.as_os_str().as_encoded_bytes().split(|&b| b == b'/') {
                match self.node(at, c) {
                    Some(n) => at = n,
                    None => return,
                }
            }
            let versions = &self.nodes[at as usize].3;
            if versions.last().is_some_and(|v| v.size == held.size && v.mtime == held.mtime) {
                continue;
            }
            let Some(serial) = self.serial() else { return };
            let v = Version {
                row,
                date,
                entry: target as u32,
                size: held.size,
                mtime: held.mtime,
                mode: held.mode,
                serial,
            };
            self.nodes[at as usize].3.push(v);
        }
    }

    pub fn finish(self) -> View {
        let sorted = |m: HashMap<Box<[u8]>, u32>| {
            let mut v: Vec<(Box<[u8]>, u32)> = m.into_iter().collect();
            v.sort_unstable();
            v
        };
        let mut serials = vec![Item::Dir(0); self.next as usize];
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut versions = Vec::new();
        let mut cost = 256;
        for (k, (parent, serial, children, vs)) in self.nodes.into_iter().enumerate() {
            serials[serial as usize] = Item::Dir(k as u32);
            let start = versions.len() as u32;
            for v in vs {
                serials[v.serial as usize] = Item::Version(versions.len() as u32);
                versions.push(v);
            }
            let children = sorted(children);
            cost += 64 + children.iter().map(|(n, _)| n.len() + 24).sum::<usize>();
            nodes.push(Node { parent, serial, children, versions: start..versions.len() as u32 });
        }
        cost += versions.len() * std::mem::size_of::<Version>() + serials.len() * std::mem::size_of::<Item>();
        View { dir: self.dir, top: sorted(self.top), nodes, versions, serials, cost, used: 0 }
    }
}

/// The `/versions/<name>` directory an inode of a view belongs to.
pub(super) fn owner(ino: Ino) -> Option<Ino> {
    ino.checked_sub(VERSIONS_BASE).map(|v| v >> SHIFT)
}

/// Whether `ino` is an inode of some view's content.
pub(super) fn owns(ino: Ino) -> bool {
    ino >= VERSIONS_BASE
}

/// The name of version `k` of `node`: its backup's timestamp, with `~2`… after others of the same second.
fn version_name(view: &View, range: &std::ops::Range<u32>, k: u32) -> Vec<u8> {
    let v = &view.versions[k as usize];
    let mut run = 0;
    while k - run > range.start && view.versions[(k - run - 1) as usize].date == v.date {
        run += 1;
    }
    let name = names::timestamp(v.date);
    if run > 0 {
        names::disambiguate(&name, run as usize + 1)
    } else {
        name
    }
}

impl View {
    fn ino_of(&self, serial: u32) -> Ino {
        VERSIONS_BASE + (self.dir << SHIFT) + Ino::from(serial)
    }

    fn node_ino(&self, k: u32) -> Ino {
        match k {
            TOP => self.dir,
            k => self.ino_of(self.nodes[k as usize].serial),
        }
    }

    /// What `ino` (of this view) is, and its parent.
    pub fn item(&self, ino: Ino) -> Option<(Item, Ino)> {
        let serial = ino.checked_sub(self.ino_of(0))?;
        let item = *self.serials.get(usize::try_from(serial).ok()?)?;
        let parent = match item {
            Item::Dir(k) => self.node_ino(self.nodes[k as usize].parent),
            Item::Version(v) => {
                // The node whose range holds it: versions are stored node by node.
                let k = self.nodes.partition_point(|n| n.versions.end <= v);
                self.node_ino(k as u32)
            }
        };
        Some((item, parent))
    }

    pub fn version(&self, v: u32) -> Option<&Version> {
        self.versions.get(v as usize)
    }

    /// The top (`None`) or node `k`'s entries: its children (directories), then its versions (files).
    pub fn listing(&self, k: Option<u32>, skip: usize, max: usize) -> Vec<(Vec<u8>, Ino, Kind)> {
        let (children, range) = match k {
            None => (&self.top, 0..0),
            Some(k) => (&self.nodes[k as usize].children, self.nodes[k as usize].versions.clone()),
        };
        let dirs = children.iter().map(|(n, c)| (n.to_vec(), self.node_ino(*c), Kind::Dir));
        let files = range
            .clone()
            .map(|v| (version_name(self, &range, v), self.ino_of(self.versions[v as usize].serial), Kind::File));
        dirs.chain(files).skip(skip).take(max).collect()
    }

    /// The child `name` of the top (`None`) or of node `k`.
    pub fn child(&self, k: Option<u32>, name: &[u8]) -> Option<Ino> {
        let (children, range) = match k {
            None => (&self.top, 0..0),
            Some(k) => (&self.nodes[k as usize].children, self.nodes[k as usize].versions.clone()),
        };
        if let Ok(i) = children.binary_search_by(|(n, _)| (**n).cmp(name)) {
            return Some(self.node_ino(children[i].1));
        }
        let v = range.clone().find(|&v| version_name(self, &range, v) == name)?;
        Some(self.ino_of(self.versions[v as usize].serial))
    }

    /// The newest backup date among a node's versions (a directory's mtime), if it has any.
    pub fn newest(&self, k: u32) -> Option<Epoch> {
        let r = &self.nodes[k as usize].versions;
        r.clone().last().map(|v| self.versions[v as usize].date)
    }
}

impl Views {
    /// The view of `/versions/<name>` directory `dir`, if laid out.
    pub fn get(&self, dir: Ino) -> Option<&View> {
        self.by_dir.get(&dir)
    }

    /// The view an inode of view content belongs to, and what the inode is there.
    pub fn find(&self, ino: Ino) -> Option<(&View, Item, Ino)> {
        let view = self.by_dir.get(&owner(ino)?)?;
        let (item, parent) = view.item(ino)?;
        Some((view, item, parent))
    }

    /// Keeps a view, letting go of the least recently used others past `budget` bytes.
    pub fn insert(&mut self, mut view: View, budget: usize) {
        self.tick += 1;
        view.used = self.tick;
        self.used += view.cost;
        if let Some(old) = self.by_dir.insert(view.dir, view) {
            self.used -= old.cost;
        }
        let mut order: Vec<(u64, Ino)> = self.by_dir.values().map(|v| (v.used, v.dir)).collect();
        order.sort_unstable();
        for (_, dir) in order.iter().take(order.len().saturating_sub(1)) {
            if self.used <= budget {
                break;
            }
            self.remove(*dir);
        }
    }

    /// Marks the view of `dir` as just used.
    pub fn touch(&mut self, dir: Ino) {
        self.tick += 1;
        if let Some(v) = self.by_dir.get_mut(&dir) {
            v.used = self.tick;
        }
    }

    pub fn remove(&mut self, dir: Ino) {
        if let Some(v) = self.by_dir.remove(&dir) {
            self.used -= v.cost;
        }
    }

    /// Lets go of the views whose directory `keep` says no longer holds what they were laid out from.
    pub fn retain(&mut self, keep: impl Fn(Ino) -> bool) {
        let gone: Vec<Ino> = self.by_dir.keys().copied().filter(|&d| !keep(d)).collect();
        for d in gone {
            self.remove(d);
        }
        self.own.clear();
    }

    /// The own index of backup `row`, if kept.
    pub fn own(&self, row: i64) -> Option<Arc<Loaded>> {
        self.own.iter().find(|(r, _)| *r == row).map(|(_, l)| l.clone())
    }

    /// Keeps the own index of backup `row` (a few of them, the oldest let go first).
    pub fn keep_own(&mut self, row: i64, loaded: Arc<Loaded>) {
        self.own.retain(|(r, _)| *r != row);
        if self.own.len() >= OWN_INDEXES {
            self.own.remove(0);
        }
        self.own.push((row, loaded));
    }
}

impl Inner {
    /// Lays out the view of `/versions/<name>` directory `dir` (once; again after it was let go or its name's
    /// backups changed) from the inventory's copies of the backups' own indexes.
    pub(super) fn lay_out_versions(&self, dir: Ino) -> Result<()> {
        if self.tree().versions.get(dir).is_some() {
            self.tree_mut().versions.touch(dir);
            return Ok(());
        }
        let rows = self.tree().cat.versions_rows(dir).ok_or(FsError::NotFound)?;
        let mut b = Builder::new(dir);
        for row in rows {
            if let Some(index) = self.own_index(row.id)? {
                b.add(row.id, row.date, &index);
            }
        }
        let view = b.finish();
        let mut t = self.tree_mut();
        let budget = t.budget / 2;
        t.versions.insert(view, budget);
        Ok(())
    }

    /// A backup's own entry index from the inventory's copy (`None`: it has none that opens, so it shows no
    /// versions: a raw backup, a legacy archive, or a copy this password does not open).
    fn own_index(&self, id: i64) -> Result<Option<Index>> {
        let Some(record) = self.ctx().inventory.get_by_id(id)? else { return Ok(None) };
        if !record.stored_filename.is_archive() {
            return Ok(None);
        }
        let Some(bytes) = self.ctx().inventory.get_index(&record.stored_filename)? else { return Ok(None) };
        match self.open_copy(&bytes) {
            Ok(index) => Ok(Some(index)),
            Err(e) => {
                tracing::debug!("/versions leaves out {}: {e}", record.stored_filename);
                Ok(None)
            }
        }
    }

    /// Reads `size` bytes at `offset` of the version open in `h`, from the archive that holds it.
    pub(super) fn read_version(self: &Arc<Inner>, h: &mut Handle, offset: u64, size: u64) -> Result<Vec<u8>> {
        let (v, own) = {
            let t = self.tree();
            let (view, item, _) = t.versions.find(h.ino).ok_or(FsError::NotFound)?;
            let Item::Version(k) = item else { return Err(FsError::IsADirectory) };
            let v = *view.version(k).ok_or(FsError::NotFound)?;
            (v, t.versions.own(v.row))
        };
        let record = self.record(v.row)?;
        let loaded = match own {
            Some(l) => l,
            None => {
                let index = self.own_index(v.row)?.ok_or(FsError::NotFound)?;
                let content = if index.seekable { Content::Members } else { Content::Whole };
                let l = Arc::new(Loaded::new(index, content));
                self.tree_mut().versions.keep_own(v.row, l.clone());
                l
            }
        };
        let entry = loaded.index.entries.get(v.entry as usize).cloned().ok_or(FsError::NotFound)?;
        self.read_entry(h, record, loaded, &entry, offset, size)
    }
}

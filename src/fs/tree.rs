//! The archive tree: the virtual directories (`by-name`, `by-tag`, `by-date`) laid out from the inventory's rows,
//! each backup's directory filled in from its entry index on first use, inode numbers that survive a rebuild, and
//! the attributes of every node.
//!
//! Not here: `/incoming` (see `incoming.rs`), reading content (`read.rs`), loading an index (`index.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::archive::index::{EntryKind, Index};
use crate::inventory::Query;
use crate::model::{BackupRecord, Epoch};

use super::index::Unreadable;
use super::{lock, names, Attr, Entry, FsError, Inner, Ino, Kind, Result, ROOT, STATUS_FILE};

#[derive(Default)]
pub(super) struct Tree {
    pub nodes: Vec<Node>,
    pub paths: HashMap<Vec<u8>, Ino>,
    pub slots: Vec<Slot>,
    pub slot_of: HashMap<String, usize>,
    pub stamp: Option<(i64, i64, i64, i64)>,
}

pub(super) struct Slot {
    pub record: BackupRecord,
    pub loaded: Option<Arc<Loaded>>,
    /// Why its index cannot be opened, once that is known: its directory then holds only its status file.
    pub unreadable: Option<Unreadable>,
}

/// A backup's content description, loaded on first use from the inventory's copy of its entry index.
pub(super) struct Loaded {
    pub index: Index,
    pub by_path: HashMap<Vec<u8>, usize>,
    pub content: Content,
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

pub(super) struct Node {
    pub parent: Ino,
    pub kind: NodeKind,
    pub children: Option<BTreeMap<Vec<u8>, Ino>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NodeKind {
    /// A directory of the virtual tree (root, by-name…).
    Dir,
    /// `latest`.
    /// The target and the newest backup's date (the link's mtime).
    Latest(Vec<u8>, Epoch),
    /// A backup's directory; its children are filled in from the index on first use.
    Backup(usize),
    /// An entry of a backup's archive: (slot, entry index).
    Entry(usize, usize),
    /// A directory implied by archive paths that has no entry of its own.
    ImpliedDir(usize),
    /// The single file of a raw backup.
    Raw(usize),
    /// The status file of a backup.
    Status(usize),
    /// `/incoming`.
    Incoming,
}

/// A directory entry: its name, inode and type.
pub(super) type Listed = (Vec<u8>, Ino, Kind);

pub(super) const DIR_TTL: Duration = Duration::from_secs(1);
pub(super) const CONTENT_TTL: Duration = Duration::from_secs(3600);

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
    /// A tree holding only the root.
    pub(super) fn new() -> Tree {
        let mut t = Tree::default();
        t.nodes.push(Node { parent: ROOT, kind: NodeKind::Dir, children: Some(BTreeMap::new()) });
        t.paths.insert(Vec::new(), ROOT);
        t
    }

    /// The child `name` of directory `parent`. In a backup whose index cannot be opened, any name but the status
    /// file fails with the reason (its files are unknown, not missing).
    pub(super) fn child(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        let node = self.node(parent)?;
        if let Some(&ino) = node.children.as_ref().ok_or(FsError::NotADirectory)?.get(name) {
            return Ok(ino);
        }
        match &node.kind {
            NodeKind::Backup(slot) => {
                let s = &self.slots[*slot];
                Err(s.unreadable.as_ref().map_or(FsError::NotFound, |w| w.error(s.record.stored_filename.as_str())))
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// The parent of directory `ino` and up to `max` of its children after the first `skip`, with their types.
    pub(super) fn listing(&self, ino: Ino, skip: usize, max: usize) -> Result<(Ino, Vec<Listed>)> {
        let node = self.node(ino)?;
        let children = node.children.as_ref().ok_or(FsError::NotADirectory)?;
        let list = children
            .iter()
            .skip(skip)
            .take(max)
            .map(|(name, &child)| (name.clone(), child, self.kind_of(child).unwrap_or(Kind::File)))
            .collect();
        Ok((node.parent, list))
    }

    pub(super) fn node(&self, ino: Ino) -> Result<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize)).ok_or(FsError::NotFound)
    }

    pub(super) fn loaded(&self, slot: usize) -> Result<&Arc<Loaded>> {
        self.slots[slot].loaded.as_ref().ok_or(FsError::NotFound)
    }

    fn push(&mut self, parent: Ino, kind: NodeKind, dir: bool) -> Ino {
        self.nodes.push(Node { parent, kind, children: dir.then(BTreeMap::new) });
        self.nodes.len() as Ino
    }

    pub(super) fn kind_of(&self, ino: Ino) -> Option<Kind> {
        let node = self.node(ino).ok()?;
        Some(match &node.kind {
            NodeKind::Dir | NodeKind::Backup(_) | NodeKind::ImpliedDir(_) | NodeKind::Incoming => Kind::Dir,
            NodeKind::Latest(..) => Kind::Symlink,
            NodeKind::Raw(_) | NodeKind::Status(_) => Kind::File,
            NodeKind::Entry(slot, e) => {
                let entry = &self.slots[*slot].loaded.as_ref()?.index.entries[*e];
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
        let (attr, ttl) = match &node.kind {
            NodeKind::Dir => (dir(0o555, fs.mounted_at), DIR_TTL),
            NodeKind::Incoming => (dir(0o755, fs.mounted_at), DIR_TTL),
            NodeKind::Latest(t, mtime) => (
                Attr { ino, kind: Kind::Symlink, size: t.len() as u64, perm: 0o777, nlink: 1, uid, gid, mtime: *mtime },
                DIR_TTL,
            ),
            NodeKind::Backup(slot) => (dir(0o555, self.slots[*slot].record.backup_date), DIR_TTL),
            NodeKind::ImpliedDir(slot) => (dir(0o755, self.slots[*slot].record.backup_date), CONTENT_TTL),
            NodeKind::Status(slot) => {
                let size = fs.status_of(&self.slots[*slot]).text().len() as u64;
                let mtime = self.slots[*slot].record.backup_date;
                (Attr { ino, kind: Kind::File, size, perm: 0o444, nlink: 1, uid, gid, mtime }, Duration::ZERO)
            }
            NodeKind::Raw(slot) => {
                let record = &self.slots[*slot].record;
                let size = fs.raw_size(record);
                let mtime = record.backup_date;
                (Attr { ino, kind: Kind::File, size, perm: 0o644, nlink: 1, uid, gid, mtime }, CONTENT_TTL)
            }
            NodeKind::Entry(slot, e) => {
                let loaded = self.loaded(*slot)?;
                let entry = &loaded.index.entries[*e];
                let kind = self.kind_of(ino).unwrap_or(Kind::File);
                let size = match entry.kind {
                    EntryKind::File => entry.size,
                    EntryKind::HardLink => loaded.link_target(*e).map(|t| loaded.index.entries[t].size).unwrap_or(0),
                    EntryKind::Symlink => entry.link.as_ref().map(|l| l.len() as u64).unwrap_or(0),
                    EntryKind::Dir | EntryKind::Other => 0,
                };
                let attr = Attr {
                    ino,
                    kind,
                    size,
                    perm: (entry.mode & 0o7777) as u16,
                    nlink: if kind == Kind::Dir { 2 } else { 1 },
                    uid: u32::try_from(entry.uid).unwrap_or(u32::MAX),
                    gid: u32::try_from(entry.gid).unwrap_or(u32::MAX),
                    mtime: entry.mtime,
                };
                (attr, CONTENT_TTL)
            }
        };
        Ok(Entry { attr, ttl })
    }

    /// The inode of a virtual directory at `path` (components escaped), created as needed.
    fn ensure_dir(&mut self, path: &[&[u8]]) -> Ino {
        let mut key: Vec<u8> = Vec::new();
        let mut ino = ROOT;
        for c in path {
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(c);
            let child = match self.paths.get(&key) {
                Some(&i) => i,
                None => {
                    let i = self.push(ino, NodeKind::Dir, true);
                    self.paths.insert(key.clone(), i);
                    i
                }
            };
            if let Some(ch) = self.nodes[ino as usize - 1].children.as_mut() {
                ch.insert(c.to_vec(), child);
            }
            ino = child;
        }
        ino
    }

    /// Places a leaf in virtual directory `dir` under `name` (or `name~2`… when taken); reuses the inode a
    /// previous rebuild gave the same path and kind.
    fn place(&mut self, dir: &[&[u8]], name: &[u8], kind: NodeKind) -> Vec<u8> {
        let parent = self.ensure_dir(dir);
        let taken =
            |t: &Tree, n: &[u8]| t.nodes[parent as usize - 1].children.as_ref().is_some_and(|c| c.contains_key(n));
        let mut chosen = name.to_vec();
        let mut k = 2;
        while taken(self, &chosen) {
            chosen = names::disambiguate(name, k);
            k += 1;
        }
        let mut key = dir.join(&b'/');
        key.push(b'/');
        key.extend_from_slice(&chosen);
        let reuse = self.paths.get(&key).copied().filter(|&i| {
            let n = &self.nodes[i as usize - 1];
            match (&n.kind, &kind) {
                (NodeKind::Latest(..), NodeKind::Latest(..)) => true,
                (a, b) => a == b,
            }
        });
        let ino = match reuse {
            Some(i) => {
                self.nodes[i as usize - 1].kind = kind;
                i
            }
            None => {
                let i = self.push(parent, kind, false);
                self.paths.insert(key, i);
                i
            }
        };
        if let Some(c) = self.nodes[parent as usize - 1].children.as_mut() {
            c.insert(chosen.clone(), ino);
        }
        chosen
    }

    /// Lays the virtual tree out again from the inventory's rows (inode numbers of unchanged paths are kept).
    pub(super) fn rebuild(&mut self, mut records: Vec<BackupRecord>) {
        records.sort_by_key(|r| (r.backup_date, r.id));
        for n in self.nodes.iter_mut() {
            if n.kind == NodeKind::Dir {
                n.children = Some(BTreeMap::new());
            }
        }
        for top in [&b"by-name"[..], b"by-tag", b"by-date"] {
            self.ensure_dir(&[top]);
        }
        if !self.paths.contains_key(&b"incoming"[..]) {
            let i = self.push(ROOT, NodeKind::Incoming, true);
            self.paths.insert(b"incoming".to_vec(), i);
        }
        let incoming = self.paths[&b"incoming"[..]];
        self.nodes[0].children.as_mut().expect("root is a directory").insert(b"incoming".to_vec(), incoming);
        let mut latest: BTreeMap<Vec<u8>, (Vec<u8>, Epoch)> = BTreeMap::new();
        for r in records {
            let slot = match self.slot_of.get(r.stored_filename.as_str()) {
                Some(&s) => {
                    if self.slots[s].record != r {
                        self.slots[s].record = r.clone();
                    }
                    s
                }
                None => {
                    self.slots.push(Slot { record: r.clone(), loaded: None, unreadable: None });
                    self.slot_of.insert(r.stored_filename.as_str().to_string(), self.slots.len() - 1);
                    self.slots.len() - 1
                }
            };
            let name = names::escape(&r.filename);
            let ts = names::timestamp(r.backup_date);
            let placed = self.place(&[b"by-name", &name], &ts, NodeKind::Backup(slot));
            let newest = latest.get(&name).is_none_or(|(_, date)| r.backup_date >= *date);
            if newest {
                latest.insert(name.clone(), (placed, r.backup_date));
            }
            for tag in r.tag_list() {
                let tag = names::escape(tag);
                self.place(&[b"by-tag", &tag, &name], &ts, NodeKind::Backup(slot));
            }
            let [y, m, d] = names::date_parts(r.backup_date);
            self.place(&[b"by-date", &y, &m, &d], &names::date_entry(&name, r.backup_date), NodeKind::Backup(slot));
        }
        for (name, (target, date)) in latest {
            self.place(&[b"by-name", &name], b"latest", NodeKind::Latest(target, date));
        }
    }

    /// Fills a backup directory from its index (once).
    pub(super) fn expand(&mut self, ino: Ino, slot: usize) {
        if self.nodes[ino as usize - 1].children.is_some() {
            return;
        }
        let loaded = self.slots[slot].loaded.clone();
        if loaded.is_none() && self.slots[slot].unreadable.is_none() {
            return;
        }
        self.nodes[ino as usize - 1].children = Some(BTreeMap::new());
        if let Some(loaded) = loaded {
            self.fill(ino, slot, &loaded);
        }
        let has_status = self.nodes[ino as usize - 1].children.as_ref().is_some_and(|c| c.contains_key(STATUS_FILE));
        if !has_status {
            let s = self.push(ino, NodeKind::Status(slot), false);
            self.nodes[ino as usize - 1].children.as_mut().expect("just set").insert(STATUS_FILE.to_vec(), s);
        }
    }

    /// Adds a backup's entries under its directory `ino`.
    fn fill(&mut self, ino: Ino, slot: usize, loaded: &Loaded) {
        if loaded.content == Content::Raw {
            let name = names::escape(&self.slots[slot].record.filename);
            let f = self.push(ino, NodeKind::Raw(slot), false);
            self.nodes[ino as usize - 1].children.as_mut().expect("just set").insert(name, f);
        }
        let mut dirs: HashMap<Vec<u8>, Ino> = HashMap::new();
        dirs.insert(Vec::new(), ino);
        'entries: for (i, e) in loaded.index.entries.iter().enumerate() {
            // The confinement rule restore applies (crate::model::relative_path): a hostile entry (absolute, `..`,
            // NUL, over NAME_MAX/PATH_MAX) is not shown.
            let Ok(Some(rel)) = crate::model::relative_path(&e.path) else { continue };
            let comps: Vec<&[u8]> = rel.as_os_str().as_encoded_bytes().split(|&b| b == b'/').collect();
            let mut parent = ino;
            let mut key: Vec<u8> = Vec::new();
            for c in &comps[..comps.len() - 1] {
                if !key.is_empty() {
                    key.push(b'/');
                }
                key.extend_from_slice(c);
                parent = match dirs.get(&key) {
                    Some(&d) => d,
                    None => {
                        let d = self.push(parent, NodeKind::ImpliedDir(slot), true);
                        match self.nodes[parent as usize - 1].children.as_mut() {
                            Some(ch) => {
                                ch.insert(c.to_vec(), d);
                            }
                            None => continue 'entries,
                        }
                        dirs.insert(key.clone(), d);
                        d
                    }
                };
            }
            let name = comps[comps.len() - 1];
            if !key.is_empty() {
                key.push(b'/');
            }
            key.extend_from_slice(name);
            let is_dir = e.kind == EntryKind::Dir;
            if let Some(&existing) = dirs.get(&key) {
                if is_dir {
                    // A directory entry after its implied directory (or a repeated one): it gives the attributes.
                    self.nodes[existing as usize - 1].kind = NodeKind::Entry(slot, i);
                    continue;
                }
            }
            let n = self.push(parent, NodeKind::Entry(slot, i), is_dir);
            if let Some(ch) = self.nodes[parent as usize - 1].children.as_mut() {
                ch.insert(name.to_vec(), n);
            }
            if is_dir {
                dirs.insert(key, n);
            } else {
                dirs.remove(&key);
            }
        }
    }
}

impl Loaded {
    pub(super) fn new(index: Index, content: Content) -> Loaded {
        let by_path = index.entries.iter().enumerate().map(|(i, e)| (e.path.clone(), i)).collect();
        Loaded { index, by_path, content }
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

    /// Re-reads the inventory if it changed (checked at most once per `refresh_interval` unless `force`).
    pub(super) fn refresh(&self, force: bool) -> Result<()> {
        {
            let mut checked = lock(&self.checked);
            if !force && checked.is_some_and(|t| t.elapsed() < self.opts.refresh_interval) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        let stamp = self.ctx().inventory.change_stamp()?;
        if self.tree().stamp == Some(stamp) {
            return Ok(());
        }
        let mut records = self.ctx().inventory.search(&Query::default())?;
        // Only backups this profile can read: another profile's rows would be files that answer EIO.
        records.retain(|r| self.ctx().stores().can_open(r));
        let mut t = self.tree_mut();
        t.rebuild(records);
        t.stamp = Some(stamp);
        Ok(())
    }

    /// Before listing or looking up in a directory: refresh the virtual tree, or load a backup's index.
    pub(super) fn prepare_dir(&self, ino: Ino) -> Result<()> {
        let kind = self.tree().node(ino)?.kind.clone();
        match kind {
            NodeKind::Dir => self.refresh(false),
            NodeKind::Backup(slot) => {
                if self.tree().node(ino)?.children.is_some() {
                    return Ok(());
                }
                if let Err(e) = self.load(slot) {
                    // An index that cannot be opened leaves the directory with its status file, which says why.
                    if self.tree().slots[slot].unreadable.is_none() {
                        return Err(e);
                    }
                }
                self.tree_mut().expand(ino, slot);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn record(&self, slot: usize) -> BackupRecord {
        self.tree().slots[slot].record.clone()
    }
}

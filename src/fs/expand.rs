//! A backup's own directories: laid out from its entry index when its directory is first opened, numbered from a
//! range of inodes kept for that directory for the life of the mount (so the same entry keeps its number), and let
//! go again, least recently used first, when the loaded backups pass the mount's listing budget. An inode of a
//! backup that was let go is laid out again the next time the kernel asks about it.
//!
//! Not here: loading the index (`index.rs`), the virtual directories (`catalog.rs`), attributes (`tree.rs`).

use std::collections::{BTreeMap, HashMap};

use crate::archive::index::EntryKind;

use super::catalog::ENTRY_BASE;
use super::tree::{Content, Loaded, Slot};
use super::{cost, names, Ino, STATUS_FILE};

/// Named children (node indexes), sorted by name.
type Children = Vec<(Box<[u8]>, u32)>;
/// A node being built: parent, what it is, its children by name if a directory.
type Building = (u32, Part, Option<BTreeMap<Box<[u8]>, u32>>);

/// The parent of a backup's top-level entries.
const TOP: u32 = u32::MAX;

/// What a node of a backup's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// An entry of the archive (its index in the entry index).
    Entry(u32),
    /// A directory implied by archive paths that has no entry of its own.
    ImpliedDir,
    /// The single file of a raw backup.
    Raw,
    /// `.bakthat-status`.
    Status,
}

pub(super) struct Node {
    /// Index of the parent node in the same expansion, or [`TOP`].
    parent: u32,
    pub part: Part,
    /// Sorted by name (directories only).
    children: Option<Children>,
}

/// A backup directory's content.
pub(super) struct Expansion {
    /// The backup's row id.
    pub id: i64,
    base: Ino,
    top: Children,
    nodes: Vec<Node>,
}

/// Where a node of some expansion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// In the expansion of backup directory `dir`: node `k`.
    Node {
        dir: Ino,
        k: u32,
    },
    /// It belongs to backup directory `dir`, whose content was let go: expand it again.
    Evicted {
        dir: Ino,
    },
    Unknown,
}

/// Every expansion, and the inode ranges ever handed out.
#[derive(Default)]
pub(super) struct Expansions {
    by_dir: HashMap<Ino, Expansion>,
    /// (first inode, backup directory, length), by first inode.
    ranges: Vec<(Ino, Ino, u32)>,
    range_of: HashMap<Ino, usize>,
}

impl Expansion {
    /// Lays out a backup's content under its directory: the archive's entries (hostile paths left out), the raw
    /// file of a raw backup, and the status file.
    pub fn new(id: i64, slot: &Slot) -> Expansion {
        let mut b = Build { nodes: Vec::new(), top: BTreeMap::new() };
        if let Some(loaded) = &slot.loaded {
            b.fill(&slot.record.filename, loaded);
        }
        if !b.top.contains_key(STATUS_FILE) {
            b.push(TOP, STATUS_FILE, Part::Status, false);
        }
        let sorted = |m: BTreeMap<Box<[u8]>, u32>| m.into_iter().collect::<Vec<_>>();
        let nodes = b
            .nodes
            .into_iter()
            .map(|(parent, part, children)| Node { parent, part, children: children.map(sorted) })
            .collect();
        Expansion { id, base: 0, top: sorted(b.top), nodes }
    }

    /// The heap it holds, for the listing budget (see `cost.rs`): its nodes, the sorted child lists and their
    /// names, and its places in [`Expansions`].
    pub fn cost(&self) -> usize {
        let list = |c: &Children| {
            cost::array::<(Box<[u8]>, u32)>(c.capacity()) + c.iter().map(|(n, _)| cost::chunk(n.len())).sum::<usize>()
        };
        cost::array::<Node>(self.nodes.capacity())
            + list(&self.top)
            + self.nodes.iter().filter_map(|n| n.children.as_ref()).map(list).sum::<usize>()
            + cost::hashed::<(Ino, Expansion)>()
            + cost::hashed::<(Ino, usize)>()
            + 2 * std::mem::size_of::<(Ino, Ino, u32)>()
    }

    pub fn node(&self, k: u32) -> Option<&Node> {
        self.nodes.get(k as usize)
    }

    pub fn ino(&self, k: u32) -> Ino {
        self.base + Ino::from(k)
    }

    /// The inode of a node's parent (`dir` for the top level).
    pub fn parent(&self, dir: Ino, k: u32) -> Ino {
        match self.nodes[k as usize].parent {
            TOP => dir,
            p => self.ino(p),
        }
    }

    /// The children of the top level (`None`) or of node `k`, if it is a directory.
    pub fn children(&self, k: Option<u32>) -> Option<&Children> {
        match k {
            None => Some(&self.top),
            Some(k) => self.nodes.get(k as usize)?.children.as_ref(),
        }
    }

    pub fn child(&self, k: Option<u32>, name: &[u8]) -> Option<u32> {
        let c = self.children(k)?;
        c.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|i| c[i].1)
    }

    /// Whether node `k` is a directory.
    pub fn is_dir(&self, k: u32) -> bool {
        self.nodes.get(k as usize).is_some_and(|n| n.children.is_some())
    }
}

struct Build {
    nodes: Vec<Building>,
    top: BTreeMap<Box<[u8]>, u32>,
}

impl Build {
    fn push(&mut self, parent: u32, name: &[u8], part: Part, dir: bool) -> u32 {
        let k = self.nodes.len() as u32;
        self.nodes.push((parent, part, dir.then(BTreeMap::new)));
        self.children(parent).map(|c| c.insert(name.into(), k));
        k
    }

    fn children(&mut self, parent: u32) -> Option<&mut BTreeMap<Box<[u8]>, u32>> {
        match parent {
            TOP => Some(&mut self.top),
            p => self.nodes[p as usize].2.as_mut(),
        }
    }

    fn fill(&mut self, filename: &str, loaded: &Loaded) {
        if loaded.content == Content::Raw {
            self.push(TOP, &names::escape(filename), Part::Raw, false);
        }
        let mut dirs: HashMap<Vec<u8>, u32> = HashMap::new();
        dirs.insert(Vec::new(), TOP);
        'entries: for (i, e) in loaded.index.entries.iter().enumerate() {
            // The confinement rule restore applies (crate::model::relative_path): a hostile entry (absolute, `..`,
            // NUL, over NAME_MAX/PATH_MAX) is not shown.
            let Ok(Some(rel)) = crate::model::relative_path(&e.path) else { continue };
            let comps: Vec<&[u8]> = rel.as_os_str().as_encoded_bytes().split(|&b| b == b'/').collect();
            let mut parent = TOP;
            let mut key: Vec<u8> = Vec::new();
            for c in &comps[..comps.len() - 1] {
                if !key.is_empty() {
                    key.push(b'/');
                }
                key.extend_from_slice(c);
                parent = match dirs.get(&key) {
                    Some(&d) => d,
                    None => {
                        if self.children(parent).is_none() {
                            continue 'entries;
                        }
                        let d = self.push(parent, c, Part::ImpliedDir, true);
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
                if is_dir && existing != TOP {
                    // A directory entry after its implied directory (or a repeated one): it gives the attributes.
                    self.nodes[existing as usize].1 = Part::Entry(i as u32);
                    continue;
                }
            }
            if self.children(parent).is_none() {
                continue;
            }
            let n = self.push(parent, name, Part::Entry(i as u32), is_dir);
            if is_dir {
                dirs.insert(key, n);
            } else {
                dirs.remove(&key);
            }
        }
    }
}

impl Expansions {
    /// Where inode `ino` (at or past [`ENTRY_BASE`]) belongs.
    pub fn find(&self, ino: Ino) -> Found {
        let i = self.ranges.partition_point(|r| r.0 <= ino);
        let Some(&(base, dir, len)) = i.checked_sub(1).and_then(|i| self.ranges.get(i)) else { return Found::Unknown };
        if ino >= base + Ino::from(len) {
            return Found::Unknown;
        }
        match self.by_dir.get(&dir) {
            Some(e) if e.base == base => Found::Node { dir, k: (ino - base) as u32 },
            Some(_) => Found::Unknown,
            None => Found::Evicted { dir },
        }
    }

    pub fn get(&self, dir: Ino) -> Option<&Expansion> {
        self.by_dir.get(&dir)
    }

    /// Keeps the content of backup directory `dir`, numbered as it was before if it has the same shape.
    pub fn insert(&mut self, dir: Ino, mut e: Expansion) {
        let len = e.nodes.len() as u32;
        let reuse = self.range_of.get(&dir).map(|&i| self.ranges[i]).filter(|r| r.2 == len);
        e.base = match reuse {
            Some((base, _, _)) => base,
            None => {
                let base = self.ranges.last().map_or(ENTRY_BASE, |r| r.0 + Ino::from(r.2.max(1)));
                self.ranges.push((base, dir, len.max(1)));
                self.range_of.insert(dir, self.ranges.len() - 1);
                base
            }
        };
        self.by_dir.insert(dir, e);
    }

    /// Lets go of every expansion of backup `id`.
    pub fn remove_backup(&mut self, id: i64) {
        self.by_dir.retain(|_, e| e.id != id);
    }

    /// Lets go of expansions whose directory `keep` says no longer exists.
    pub fn retain_dirs(&mut self, keep: impl Fn(Ino, i64) -> bool) {
        self.by_dir.retain(|&d, e| keep(d, e.id));
    }
}
